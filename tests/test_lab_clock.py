"""Waiting between Caching Lab rounds: fast-forwarding the local router's clock, and stepwise sleeps."""

import pytest

from orq_core.client import OrqClient
from orq_core.lab import ExperimentConfig, run_experiment
from orq_core.lab_clock import (FastForward, MovableClock, install_movable_clock, local_fast_forward,
                                sleep_in_steps)


def test_movable_clock_adds_a_growing_offset():
    clock = MovableClock(lambda: 100.0)
    assert clock() == 100.0
    clock.advance(30)
    clock.advance(0.5)
    assert clock() == 130.5 and clock.offset == 30.5
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_install_wraps_the_existing_clock_once(fake_clock):
    from orq_core.emulator import EmulatorSettings

    settings = EmulatorSettings(time_scale=0, clock=fake_clock)
    first = install_movable_clock(settings)
    assert install_movable_clock(settings) is first and settings.clock is first
    fake_clock.advance(5)
    first.advance(10)
    assert settings.clock() == fake_clock.now + 10


def test_sleep_in_steps_ticks_the_remaining_time():
    slept, ticks = [], []
    sleep_in_steps(2.5, ticks.append, sleep=slept.append)
    assert slept == [1.0, 1.0, 0.5]
    assert ticks == [2.5, 1.5, 0.5, 0.0]


def _two_requests(router, interval_s: float):
    forward = FastForward(install_movable_clock(router.settings))
    config = ExperimentConfig(preset="book", context_tokens=2_000, requests=2, interval_s=interval_s,
                              arms=("prompt-cache",), max_tokens=32)
    with OrqClient(router.base_url, router.api_key) as client:
        result = run_experiment(config, client, sleep=forward.sleep, clock=forward.clock)
    return forward, result.records


def test_fast_forward_past_the_ttl_makes_the_cache_expire(router_factory):
    forward, (first, second) = _two_requests(router_factory(), interval_s=301)
    assert forward.skipped_s == 301
    assert first.cache_write_tokens > 1_024 and second.cache_read_tokens == 0
    assert second.cache_write_tokens == first.cache_write_tokens
    assert second.t_s >= 301  # the run's clock includes the skipped wait


def test_fast_forward_within_the_ttl_reads_the_cache(router_factory):
    forward, (first, second) = _two_requests(router_factory(), interval_s=299)
    assert forward.skipped_s == 299
    assert second.cache_read_tokens == first.cache_write_tokens and second.cache_write_tokens == 0


def test_local_fast_forward_only_for_the_in_process_router(monkeypatch):
    from orq_core.emulator.server import get_local_router

    monkeypatch.setenv("ORQ_LOCAL_ROUTER_TIME_SCALE", "0")
    router = get_local_router()
    forward = local_fast_forward(router.base_url)
    assert isinstance(forward, FastForward)
    assert isinstance(router.settings.clock, MovableClock)
    assert local_fast_forward("https://api.orq.ai/v2/router") is None


def _run(router, api_key: str, requests: int, interval_s: float = 0.0, forward: FastForward | None = None):
    config = ExperimentConfig(preset="book", context_tokens=2_000, requests=requests, interval_s=interval_s,
                              arms=("prompt-cache",), max_tokens=32, fresh_cache=False)  # both people: one prompt
    options = {"sleep": forward.sleep, "clock": forward.clock} if forward else {}
    with OrqClient(router.base_url, api_key) as client:
        return run_experiment(config, client, **options).records


def test_a_key_clock_moves_only_that_keys_time(fake_clock):
    from orq_core.emulator import EmulatorSettings
    from orq_core.lab_clock import KeyClock

    settings = EmulatorSettings(time_scale=0, clock=fake_clock)
    ann, bob = KeyClock(settings, "key-ann"), KeyClock(settings, "key-bob")
    ann.advance(301)
    ann.advance(0.5)
    assert (ann(), bob(), ann.offset, bob.offset) == (fake_clock.now + 301.5, fake_clock.now, 301.5, 0.0)
    assert KeyClock(settings, "key-ann").offset == 301.5  # the offset lives in the router's settings
    assert all(b"key-ann" not in scope for scope in settings.key_clock_offsets)  # a digest, never the key
    with pytest.raises(ValueError):
        ann.advance(-1)


def test_one_persons_fast_forward_leaves_another_persons_cache_entry_readable(router_factory, fake_clock):
    from orq_core.lab_clock import KeyClock

    router = router_factory(clock=fake_clock)
    (bob_first,) = _run(router, "key-bob", 1)
    ann_forward = FastForward(KeyClock(router.settings, "key-ann"))
    ann_first, ann_second = _run(router, "key-ann", 2, interval_s=301, forward=ann_forward)
    (bob_second,) = _run(router, "key-bob", 1)

    assert ann_forward.skipped_s == 301 and fake_clock.now == 1_000_000.0  # the router's own clock never moved
    assert ann_first.cache_write_tokens > 1_024 and ann_second.cache_read_tokens == 0  # Ann's entry expired
    assert ann_second.cache_write_tokens == ann_first.cache_write_tokens
    assert bob_first.cache_write_tokens == ann_first.cache_write_tokens
    assert bob_second.cache_read_tokens == bob_first.cache_write_tokens  # Bob's did not
    assert bob_second.cache_write_tokens == 0


def test_local_fast_forward_with_a_key_moves_only_that_key(monkeypatch):
    from orq_core.emulator.server import get_local_router
    from orq_core.lab_clock import KeyClock

    monkeypatch.setenv("ORQ_LOCAL_ROUTER_TIME_SCALE", "0")
    router = get_local_router()
    forward = local_fast_forward(router.base_url, "local-router-ann")
    before = router.settings.clock()
    forward.sleep(10)
    assert KeyClock(router.settings, "local-router-ann").offset == 10
    assert KeyClock(router.settings, "local-router-bob").offset == 0
    assert router.settings.clock() - before < 5  # the shared clock did not jump by 10 s


def test_the_cache_doctor_reads_the_time_of_the_persons_own_key(router_factory, fake_clock):
    from orq_core.cache_doctor import clock_for
    from orq_core.lab_clock import KeyClock

    router = router_factory(clock=fake_clock)
    KeyClock(router.settings, "key-ann").advance(400)
    assert clock_for(router.base_url, "key-ann")() == fake_clock.now + 400
    assert clock_for(router.base_url, "key-bob")() == fake_clock.now
