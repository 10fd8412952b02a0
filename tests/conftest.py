"""Shared fixtures: an isolated run log for every test, and the local router on loopback."""

from __future__ import annotations

import pytest

from pg_support import postgres_server  # noqa: F401  (session fixture: a throwaway PostgreSQL)


@pytest.fixture(autouse=True)
def isolated_db(tmp_path, monkeypatch):
    """Every test writes its run log (if any) to its own temporary SQLite file."""
    path = tmp_path / "playground.db"
    monkeypatch.setenv("ORQ_PLAYGROUND_DB", str(path))
    return path


class FakeClock:
    """Seconds that only move when a test says so (the router's caches read it)."""

    def __init__(self, start: float = 1_000_000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


class WaitRecorder:
    """Stands in for the router's asyncio.sleep: records each wait (seconds) and returns at once."""

    def __init__(self):
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def wait_recorder() -> WaitRecorder:
    """Pass as ``sleep=`` to router_factory to see the waits the latency model asks for."""
    return WaitRecorder()


@pytest.fixture
def router_factory():
    """start(**settings) -> LocalRouter with time_scale=0 unless given; all stopped afterwards."""
    from orq_core.emulator import EmulatorSettings, start_local_router

    started = []

    def start(**settings):
        settings.setdefault("time_scale", 0)
        router = start_local_router(EmulatorSettings(**settings))
        started.append(router)
        return router

    yield start
    for router in started:
        router.stop(wait=False)  # its daemon thread ends ~0.2 s later; no test waits for that


@pytest.fixture
def local_router(router_factory):
    """A fresh local router (time_scale=0: no waiting) on a free loopback port."""
    return router_factory()



@pytest.fixture
def page_env(monkeypatch, tmp_path):
    """What every page test needs: no key (so the local router), no simulated waiting, a fresh run
    log, and no spend budget from the environment."""
    monkeypatch.delenv("ORQ_API_KEY", raising=False)
    monkeypatch.delenv("ORQ_SPEND_BUDGET_USD", raising=False)
    monkeypatch.setenv("ORQ_LOCAL_ROUTER_TIME_SCALE", "0")
    monkeypatch.setenv("ORQ_PLAYGROUND_DB", str(tmp_path / "pages.db"))
    return tmp_path
