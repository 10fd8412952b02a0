"""How a Caching Lab run waits between its rounds.

A TTL demo needs long gaps (a 5-minute cache expires only after 5 minutes). Two ways to wait:

- really wait, in short steps, so a page can paint a countdown and Streamlit's Stop lands
  between steps (``sleep_in_steps``);
- on the in-process local router, move its clock instead (``FastForward``): the router's prompt
  and response caches read ``EmulatorSettings.clock``, so advancing it ages every cache entry at
  once and the next request sees exactly what it would see after the real wait.

The local router is one per process, shared by everyone on the server; each person reaches it with
their own key, and a fast-forward moves only that key's clock (``KeyClock``), so it ages only that
person's cache entries. Offsets only grow, so no entry ever comes back to life.
"""

from __future__ import annotations

import threading
import time
from typing import Callable


class MovableClock:
    """Seconds from ``base`` plus an offset that only grows."""

    def __init__(self, base: Callable[[], float] = time.time):
        self.base = base
        self._offset = 0.0
        self._lock = threading.Lock()

    @property
    def offset(self) -> float:
        return self._offset

    def __call__(self) -> float:
        return self.base() + self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("A clock cannot go back")
        with self._lock:
            self._offset += seconds


def install_movable_clock(settings) -> MovableClock:
    """Make ``settings.clock`` (an EmulatorSettings) a MovableClock wrapping the clock it had;
    idempotent, so every caller shares one offset. Settings are live: the router reads the clock
    through them at every request."""
    clock = settings.clock
    if not isinstance(clock, MovableClock):
        clock = MovableClock(clock)
        settings.clock = clock
    return clock


_KEY_OFFSETS_LOCK = threading.Lock()


class KeyClock:
    """One API key's time on a local router: the router's clock plus an offset that only this
    key's cache entries see (``EmulatorSettings.key_clock_offsets``)."""

    def __init__(self, settings, api_key: str):
        from .emulator.cache import key_scope

        self._settings = settings
        self._scope = key_scope(api_key)

    @property
    def offset(self) -> float:
        return self._settings.key_clock_offsets.get(self._scope, 0.0)

    def __call__(self) -> float:
        return self._settings.clock() + self.offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("A clock cannot go back")
        with _KEY_OFFSETS_LOCK:
            offsets = self._settings.key_clock_offsets
            offsets[self._scope] = offsets.get(self._scope, 0.0) + seconds


class FastForward:
    """A ``sleep`` for run_experiment that advances a router's clock instead of waiting, and the
    matching ``clock`` so each record's time since the start includes the skipped time."""

    def __init__(self, clock: MovableClock | KeyClock):
        self._clock = clock
        self.skipped_s = 0.0

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._clock.advance(seconds)
            self.skipped_s += seconds

    def clock(self) -> float:
        return self._clock()


def local_fast_forward(base_url: str, api_key: str | None = None) -> FastForward | None:
    """FastForward for the in-process local router serving ``base_url``; None for any other router
    (Orq, or a local router in another process, whose clock this process cannot move). With
    ``api_key`` only that key's clock moves; without, the router's clock for every key."""
    from .emulator.server import get_local_router

    router = get_local_router()
    if router.base_url.rstrip("/") != base_url.rstrip("/"):
        return None
    if api_key:
        return FastForward(KeyClock(router.settings, api_key))
    return FastForward(install_movable_clock(router.settings))


def sleep_in_steps(seconds: float, tick: Callable[[float], None], *, step: float = 1.0,
                   sleep: Callable[[float], None] = time.sleep) -> None:
    """Waits ``seconds`` in pieces of at most ``step``, calling ``tick(remaining)`` before each piece
    and ``tick(0)`` at the end."""
    remaining = max(0.0, float(seconds))
    while remaining > 0:
        tick(remaining)
        piece = min(step, remaining)
        sleep(piece)
        remaining -= piece
    tick(0.0)


__all__ = ["MovableClock", "KeyClock", "FastForward", "install_movable_clock", "local_fast_forward", "sleep_in_steps"]
