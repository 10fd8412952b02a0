"""The latency model: its calibration, and the waits the router actually asks for (recorded, not slept)."""

from __future__ import annotations

import json

import httpx
import pytest

from orq_core.catalog import catalog
from orq_core.emulator.latency import output_ms, predicted_latency_ms, predicted_ttft_ms, profile_for
from orq_core.request import text_part
from orq_core.tokens import text_tokens
from orq_core.usage import Usage

SONNET = "anthropic/claude-sonnet-4-5-20250929"
HAIKU = "anthropic/claude-haiku-4-5-20251001"
OPUS = "anthropic/claude-opus-4-5-20251101"


def test_calibrated_to_the_prompt_caching_announcement():
    # Anthropic, Aug 2024: 100K-token book, 11.5 s uncached -> 2.4 s cached (-79%); 10K prompt 1.6 s uncached.
    uncached, cached = predicted_ttft_ms(SONNET, 100_000, 0), predicted_ttft_ms(SONNET, 0, 100_000)
    assert uncached == pytest.approx(11_500)
    assert cached == pytest.approx(2_400)
    assert round(100 * (1 - cached / uncached)) == 79
    assert predicted_ttft_ms(SONNET, 10_000, 0) == pytest.approx(1_600)


def test_written_tokens_cost_like_uncached_ones():
    assert predicted_ttft_ms(SONNET, 1_000, 0, written=9_000) == pytest.approx(predicted_ttft_ms(SONNET, 10_000, 0))


def test_families_differ_in_speed():
    rates = [profile_for(slug).output_tokens_per_s for slug in (HAIKU, SONNET, OPUS)]
    assert rates == [150.0, 70.0, 45.0]
    assert output_ms(HAIKU, 1_500) == pytest.approx(10_000)
    ttfts = [predicted_ttft_ms(slug, 50_000, 0) for slug in (HAIKU, SONNET, OPUS)]
    assert ttfts == sorted(ttfts) and len(set(ttfts)) == 3


def test_model_can_be_given_as_model_slug_or_id():
    model = catalog().model("claude-sonnet-4-5-20250929")
    forms = (model, "claude-sonnet-4-5-20250929", SONNET)
    assert [predicted_latency_ms(m, 10, 0, 0, 70) for m in forms] == [pytest.approx(500 + 1.1 + 1_000)] * 3


def chat(**extra) -> dict:
    messages = [{"role": "system", "content": [text_part("word " * 2000, cache_ttl="5m")]},
                {"role": "user", "content": "Describe a river."}]
    return {"model": SONNET, "max_tokens": 300, "messages": messages, **extra}


def post(router, payload: dict) -> httpx.Response:
    return httpx.post(f"{router.base_url}/chat/completions", json=payload, headers={"Authorization": "Bearer k"},
                      timeout=30)


def expected_ttft_s(usage: Usage) -> float:
    return predicted_ttft_ms(SONNET, usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens) / 1000


def test_a_plain_request_waits_ttft_plus_output_time(router_factory, wait_recorder):
    router = router_factory(time_scale=1, sleep=wait_recorder)
    usage = Usage.from_wire(post(router, chat()).json()["usage"])
    total_s = expected_ttft_s(usage) + output_ms(SONNET, usage.output_tokens) / 1000
    assert wait_recorder.waits == [pytest.approx(total_s)]


def test_a_stream_waits_ttft_then_paces_chunks_at_the_model_rate(router_factory, wait_recorder):
    router = router_factory(time_scale=1, sleep=wait_recorder)
    with httpx.stream("POST", f"{router.base_url}/chat/completions", headers={"Authorization": "Bearer k"},
                      json=chat(stream=True, stream_options={"include_usage": True}), timeout=30) as response:
        chunks = [json.loads(line[6:]) for line in response.iter_lines()
                  if line.startswith("data: ") and line != "data: [DONE]"]
    usage = Usage.from_wire(chunks[-1]["usage"])
    first_tokens = text_tokens(chunks[0]["choices"][0]["delta"]["content"])
    assert wait_recorder.waits[0] == pytest.approx(expected_ttft_s(usage))
    assert sum(wait_recorder.waits[1:]) == pytest.approx(output_ms(SONNET, usage.output_tokens - first_tokens) / 1000)


def test_time_scale_multiplies_every_wait_and_a_cache_read_shortens_ttft(router_factory, wait_recorder, fake_clock):
    async def wait_on_the_clock(seconds):  # the entry is readable once the writer's first byte is out
        await wait_recorder(seconds)
        fake_clock.advance(seconds)

    router = router_factory(time_scale=0.5, sleep=wait_on_the_clock, clock=fake_clock)
    first = Usage.from_wire(post(router, chat()).json()["usage"])
    second = Usage.from_wire(post(router, chat()).json()["usage"])
    assert second.cache_read_tokens > 0
    output_s = output_ms(SONNET, first.output_tokens) / 1000
    assert wait_recorder.waits[0] == pytest.approx(0.5 * (expected_ttft_s(first) + output_s))
    assert wait_recorder.waits[1] == pytest.approx(0.5 * (expected_ttft_s(second) + output_s))
    assert wait_recorder.waits[1] < wait_recorder.waits[0]


def test_time_scale_zero_never_waits(router_factory, wait_recorder):
    router = router_factory(time_scale=0, sleep=wait_recorder)
    post(router, chat())
    assert wait_recorder.waits == []
