"""Prompt caching in the local router: segmentation, counting and every cache rule, over HTTP."""

from __future__ import annotations

import httpx
import pytest

from orq_core.emulator.cache import PromptCache
from orq_core.emulator.prompt import (MESSAGE_OVERHEAD_TOKENS, TOOL_OVERHEAD_TOKENS, TOOL_USE_SYSTEM_PROMPT_TOKENS,
                                      URL_IMAGE_TOKENS, count_prompt_tokens, segment_prompt)
from orq_core.request import text_part, tool_result_message
from orq_core.tokens import text_tokens
from orq_core.usage import Usage

SONNET = "anthropic/claude-sonnet-4-5-20250929"
AWS_SONNET = "aws/anthropic/claude-sonnet-4-5-20250929"
HAIKU = "anthropic/claude-haiku-4-5-20251001"
LONG = "word " * 1200  # 1,200 tokens: above Sonnet's 1,024 minimum, below Haiku 4.5's 4,096


def cached_text(text: str, ttl: str = "5m") -> dict:
    return text_part(text, cache_ttl=ttl)


def chat(messages: list, model: str = SONNET, **extra) -> dict:
    return {"model": model, "max_tokens": 64, "messages": messages, **extra}


def system_cached(text: str = LONG, ttl: str = "5m") -> dict:
    return {"role": "system", "content": [cached_text(text, ttl)]}


def post(router, payload: dict, key: str = "key-a", headers: dict | None = None) -> httpx.Response:
    return httpx.post(f"{router.base_url}/chat/completions", json=payload,
                      headers={"Authorization": f"Bearer {key}", **(headers or {})}, timeout=30)


def usage_of(response: httpx.Response) -> Usage:
    assert response.status_code == 200, response.text
    return Usage.from_wire(response.json()["usage"])


# --- segmentation and counting -------------------------------------------------------------------

def test_blocks_come_in_prefix_order_tools_system_messages():
    tool = {"type": "function", "function": {"name": "clock", "description": "time",
                                             "parameters": {"type": "object", "properties": {}}}}
    payload = chat([{"role": "user", "content": "hi"}, {"role": "system", "content": "be brief"}], tools=[tool])
    assert [b.path for b in segment_prompt(payload)] == ["tools[0]", "messages[1]", "messages[0]"]


def test_token_counts_are_text_tokens_plus_documented_overheads():
    tool = {"type": "function", "function": {"name": "clock", "parameters": {"type": "object"}}}
    blocks = segment_prompt(chat([{"role": "user", "content": [text_part("Hello there"), text_part("and more")]}],
                                 tools=[tool]))
    assert blocks[0].tokens == (TOOL_USE_SYSTEM_PROMPT_TOKENS + TOOL_OVERHEAD_TOKENS
                                + text_tokens('{"name": "clock", "parameters": {"type": "object"}}'))
    assert blocks[1].tokens == MESSAGE_OVERHEAD_TOKENS + text_tokens("Hello there")
    assert blocks[2].tokens == text_tokens("and more")


def test_url_images_are_counted_without_fetching():
    part = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    tokens = count_prompt_tokens(chat([{"role": "user", "content": [part, text_part("What is it?")]}]))
    assert tokens == URL_IMAGE_TOKENS + MESSAGE_OVERHEAD_TOKENS + text_tokens("What is it?")


def test_breakpoints_mark_the_part_the_whole_tool_message_and_the_tool():
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}},
            "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    messages = [system_cached(), {"role": "user", "content": "q"},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]},
                tool_result_message("c1", "result text", cache_ttl="5m")]
    marked = {b.path: b.cache_ttl for b in segment_prompt(chat(messages, tools=[tool])) if b.cache_ttl}
    assert marked == {"tools[0]": "1h", "messages[0].content[0]": "5m", "messages[3]": "5m"}


def test_moving_a_breakpoint_does_not_change_the_cached_prefix():
    first = segment_prompt(chat([system_cached(), {"role": "user", "content": "q"}]))
    second = segment_prompt(chat([{"role": "system", "content": [text_part(LONG)]},
                                  {"role": "user", "content": [text_part("q", cache_ttl="5m")]}]))
    assert [b.digest for b in first] == [b.digest for b in second]


def test_router_prompt_tokens_equal_the_shared_count(local_router):
    payload = chat([system_cached(), {"role": "user", "content": "How long is this prompt?"}])
    assert usage_of(post(local_router, payload)).prompt_tokens == count_prompt_tokens(payload)


# --- the cache rules, over HTTP ----------------------------------------------------------------------

def test_first_request_writes_the_prefix_and_the_second_reads_it(local_router):
    payload = chat([system_cached(), {"role": "user", "content": "Summarise."}])
    prefix = MESSAGE_OVERHEAD_TOKENS + text_tokens(LONG)
    first, second = usage_of(post(local_router, payload)), usage_of(post(local_router, payload))
    assert (first.cache_read_tokens, first.cache_write_tokens) == (0, prefix)
    assert (second.cache_read_tokens, second.cache_write_tokens) == (prefix, 0)
    assert first.prompt_tokens == second.prompt_tokens == count_prompt_tokens(payload)
    assert second.input_tokens == count_prompt_tokens(payload) - prefix


def test_wire_usage_reports_reads_as_cached_tokens_and_writes_as_cache_creation(local_router):
    payload = chat([system_cached(), {"role": "user", "content": "Summarise."}])
    post(local_router, payload)
    wire = post(local_router, payload).json()["usage"]
    assert wire["prompt_tokens_details"] == {"cached_tokens": 1203, "cache_creation_tokens": 0}
    assert wire["prompt_tokens"] == count_prompt_tokens(payload)


def test_a_prefix_below_the_model_minimum_is_silently_not_cached(local_router):
    short = chat([system_cached("word " * 1000), {"role": "user", "content": "q"}])  # 1,003 < 1,024
    for _ in range(2):
        usage = usage_of(post(local_router, short))
        assert (usage.cache_read_tokens, usage.cache_write_tokens) == (0, 0)
    haiku = chat([system_cached(), {"role": "user", "content": "q"}], model=HAIKU)  # 1,203 < 4,096
    assert usage_of(post(local_router, haiku)).cache_write_tokens == 0
    assert usage_of(post(local_router, haiku)).cache_read_tokens == 0


def test_a_5m_entry_expires_after_five_minutes(router_factory, fake_clock):
    router = router_factory(clock=fake_clock)
    payload = chat([system_cached(), {"role": "user", "content": "q"}])
    post(router, payload)
    fake_clock.advance(299)
    assert usage_of(post(router, payload)).cache_read_tokens == 1203
    fake_clock.advance(301)  # 301 s after the read that refreshed it
    usage = usage_of(post(router, payload))
    assert (usage.cache_read_tokens, usage.cache_write_tokens) == (0, 1203)


def test_a_1h_entry_outlives_five_minutes_but_not_an_hour(router_factory, fake_clock):
    router = router_factory(clock=fake_clock)
    payload = chat([system_cached(ttl="1h"), {"role": "user", "content": "q"}])
    post(router, payload)
    fake_clock.advance(1800)
    assert usage_of(post(router, payload)).cache_read_tokens == 1203
    fake_clock.advance(3601)
    assert usage_of(post(router, payload)).cache_write_tokens == 1203


def test_a_read_refreshes_the_expiry(router_factory, fake_clock):
    router = router_factory(clock=fake_clock)
    payload = chat([system_cached(), {"role": "user", "content": "q"}])
    post(router, payload)  # expires at t+300 unless read
    for _ in range(3):
        fake_clock.advance(200)
        assert usage_of(post(router, payload)).cache_read_tokens == 1203  # t+600 now: alive by refreshes


def test_a_longer_prefix_reads_the_longest_cached_one_and_writes_the_rest(local_router):
    turn1 = [system_cached(), {"role": "user", "content": [cached_text("First question about the text")]}]
    first = usage_of(post(local_router, chat(turn1)))
    assert first.cache_write_tokens == count_prompt_tokens(chat(turn1))
    # Turn 2 moves the breakpoint to the new last message (the multi-turn pattern).
    turn2 = [system_cached(), {"role": "user", "content": [text_part("First question about the text")]},
             {"role": "assistant", "content": "An answer of some length here."},
             {"role": "user", "content": [cached_text("A follow-up question")]}]
    second = usage_of(post(local_router, chat(turn2)))
    assert second.cache_read_tokens == count_prompt_tokens(chat(turn1))
    assert second.cache_write_tokens == count_prompt_tokens(chat(turn2)) - count_prompt_tokens(chat(turn1))
    assert second.input_tokens == 0


def test_fewer_breakpoints_still_read_a_prefix_written_by_more(local_router):
    both = [system_cached(), {"role": "user", "content": [cached_text("Question one")]}]
    post(local_router, chat(both))
    only_system = [system_cached(), {"role": "user", "content": "A different question"}]
    usage = usage_of(post(local_router, chat(only_system)))
    assert (usage.cache_read_tokens, usage.cache_write_tokens) == (1203, 0)


def test_a_breakpoint_further_on_finds_an_earlier_entry_by_looking_back(local_router):
    post(local_router, chat([system_cached(), {"role": "user", "content": "q1"}]))
    later = [{"role": "system", "content": [text_part(LONG)]}, {"role": "user", "content": "q1"},
             {"role": "assistant", "content": "a1"}, {"role": "user", "content": [cached_text("q2")]}]
    usage = usage_of(post(local_router, chat(later)))
    assert usage.cache_read_tokens == 1203
    assert usage.cache_write_tokens == count_prompt_tokens(chat(later)) - 1203


def test_1h_after_5m_is_refused_before_caching(local_router):
    payload = chat([system_cached(ttl="5m"), {"role": "user", "content": [cached_text("q", ttl="1h")]}])
    response = post(local_router, payload)
    assert response.status_code == 400
    param = response.json()["error"]["param"]
    assert param.startswith("messages[1].content[0]") and param.endswith("ttl")
    assert "1h cache entries must come before 5m" in response.json()["error"]["message"]


def test_entries_belong_to_one_api_key(local_router):
    payload = chat([system_cached(), {"role": "user", "content": "q"}])
    post(local_router, payload, key="key-a")
    other = usage_of(post(local_router, payload, key="key-b"))
    assert (other.cache_read_tokens, other.cache_write_tokens) == (0, 1203)
    assert usage_of(post(local_router, payload, key="key-a")).cache_read_tokens == 1203


def test_entries_belong_to_one_model_and_provider(local_router):
    messages = [system_cached(), {"role": "user", "content": "q"}]
    post(local_router, chat(messages))
    assert usage_of(post(local_router, chat(messages, model=AWS_SONNET))).cache_read_tokens == 0
    other_model = chat(messages, model="anthropic/claude-sonnet-4-20250514")
    assert usage_of(post(local_router, other_model)).cache_read_tokens == 0


def test_a_whole_tool_message_is_a_breakpoint(local_router):
    tool = {"type": "function", "function": {"name": "fetch_doc", "parameters": {"type": "object"}}}
    messages = [{"role": "user", "content": "Read the doc"},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "fetch_doc", "arguments": "{}"}}]},
                tool_result_message("c1", LONG, cache_ttl="5m")]
    payload = chat(messages, tools=[tool])
    first, second = usage_of(post(local_router, payload)), usage_of(post(local_router, payload))
    assert first.cache_write_tokens == count_prompt_tokens(payload) == second.cache_read_tokens


def test_prompt_cache_evicts_when_full():
    cache = PromptCache(clock=lambda: 0.0, max_entries=2)
    for n in range(3):
        blocks = segment_prompt(chat([system_cached(f"{n} " + LONG), {"role": "user", "content": "q"}]))
        assert cache.process(api_key="k", model_slug=SONNET, blocks=blocks, min_cacheable=1024).write_tokens > 0
    assert len(cache) == 2


@pytest.mark.parametrize("count,status", [(4, 200), (5, 400)])
def test_at_most_four_breakpoints(local_router, count, status):
    parts = [cached_text(f"part {n} " + "x " * 300) for n in range(count)]
    response = post(local_router, chat([{"role": "user", "content": parts}]))
    assert response.status_code == status


# --- an entry is readable only once its writer starts answering ---------------------------------------

def sonnet_ttft_seconds(written: int, uncached: int) -> float:
    from orq_core.emulator.latency import predicted_ttft_ms
    return predicted_ttft_ms(SONNET, uncached, 0, written) / 1000


def test_an_entry_is_unreadable_until_its_writer_answers_then_readable(fake_clock):
    cache = PromptCache(clock=fake_clock)
    blocks = segment_prompt(chat([system_cached(), {"role": "user", "content": "q"}]))

    def process():
        return cache.process(api_key="k", model_slug=SONNET, blocks=blocks, min_cacheable=1024,
                             ready_after=lambda outcome: 2.0)

    assert process().write_tokens == 1203
    fake_clock.advance(1.999)
    again = process()  # arrives before the first byte of the writer: writes again
    assert (again.read_tokens, again.write_tokens) == (0, 1203)
    fake_clock.advance(0.001)  # the first writer's first byte: readable now, not at the rewrite's
    read = process()
    assert (read.read_tokens, read.write_tokens) == (1203, 0)


def test_without_a_delay_an_entry_is_readable_at_once():
    cache = PromptCache(clock=lambda: 5.0)
    blocks = segment_prompt(chat([system_cached(), {"role": "user", "content": "q"}]))
    outcomes = [cache.process(api_key="k", model_slug=SONNET, blocks=blocks, min_cacheable=1024) for _ in range(2)]
    assert [(o.read_tokens, o.write_tokens) for o in outcomes] == [(0, 1203), (1203, 0)]


def test_over_http_a_request_before_the_writers_ttft_writes_again(router_factory, fake_clock, wait_recorder):
    router = router_factory(time_scale=1, clock=fake_clock, sleep=wait_recorder)
    payload = chat([system_cached(), {"role": "user", "content": "q"}])
    uncached = count_prompt_tokens(payload) - 1203
    first = usage_of(post(router, payload))
    fake_clock.advance(sonnet_ttft_seconds(1203, uncached) - 0.01)
    second = usage_of(post(router, payload))
    fake_clock.advance(0.01)
    third = usage_of(post(router, payload))
    assert [(u.cache_read_tokens, u.cache_write_tokens) for u in (first, second, third)] == [
        (0, 1203), (0, 1203), (1203, 0)]


def test_a_parallel_cold_wave_writes_once_per_request(router_factory, fake_clock, wait_recorder):
    import threading
    from concurrent.futures import ThreadPoolExecutor

    router = router_factory(time_scale=1, clock=fake_clock, sleep=wait_recorder)
    payload = chat([system_cached(), {"role": "user", "content": "q"}])
    barrier = threading.Barrier(4)

    def send(_):
        barrier.wait(timeout=60)
        return usage_of(post(router, payload))

    with ThreadPoolExecutor(4) as pool:
        wave = list(pool.map(send, range(4)))
    assert [u.cache_write_tokens for u in wave] == [1203] * 4
    fake_clock.advance(10)
    assert usage_of(post(router, payload)).cache_read_tokens == 1203


def test_time_scale_zero_makes_an_entry_readable_at_once(router_factory, fake_clock):
    router = router_factory(clock=fake_clock)
    payload = chat([system_cached(), {"role": "user", "content": "q"}])
    post(router, payload)
    assert usage_of(post(router, payload)).cache_read_tokens == 1203
