"""The cache doctor: predictions against the local router, exactly, with the reason in words."""

from __future__ import annotations

import io
import random
from collections import Counter

import pytest

from orq_core.cache_doctor import FORGET_AFTER_S, LEDGER_KIND, ago, connection_digest, doctor_for
from orq_core.client import OrqClient
from orq_core.request import image_part_from_bytes, system_message, text_part, user_message
from orq_core.store import Store

SONNET = "anthropic/claude-sonnet-4-5-20250929"
AWS_SONNET = "aws/anthropic/claude-sonnet-4-5-20250929"
HAIKU = "anthropic/claude-haiku-4-5-20251001"
LONG_SYSTEM = "You are a careful librarian who cites the shelf of every book. " * 150  # ~1,800 tokens


@pytest.fixture
def router(router_factory, fake_clock):
    return router_factory(clock=fake_clock)


@pytest.fixture
def store():
    return Store(":memory:")


def client_for(router, store, key="local-router"):
    return OrqClient(router.base_url, key, doctor=doctor_for(router.base_url, key, store), max_retries=0)


def payload(system=LONG_SYSTEM, messages=None, model=SONNET, ttl="5m", **extra) -> dict:
    msgs = [system_message(system, ttl)] if system else []
    return {"model": model, "max_tokens": 1600, "messages": msgs + (messages or [user_message("Hello")]), **extra}


def png(colour=(200, 30, 30)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(out, "PNG")
    return out.getvalue()


def test_write_then_read_then_rewrite_when_the_system_prompt_changes(router, store):
    client = client_for(router, store)
    first = client.create(payload()).cache
    assert first.why == f"writes {first.expected_write_tokens:,}: first request with this prefix"
    assert first.verdict == "as predicted" and first.expected_write_tokens > 1024
    second = client.create(payload(messages=[user_message("Another question")])).cache
    assert second.why.startswith(f"reads {first.expected_write_tokens:,} tokens written 0 s ago by the request at ")
    assert second.verdict == "as predicted"
    third = client.create(payload(system=LONG_SYSTEM + " Be brief.")).cache
    assert third.why == f"rewrites {third.expected_write_tokens:,}: the system prompt changed since the last request"
    assert third.matched


def test_below_minimum_expired_and_tools_changed(router, store, fake_clock):
    client = client_for(router, store)
    short = client.create(payload(system="Be brief.")).cache
    assert short.why.startswith("no caching: the prefix is ") and \
        short.why.endswith("tokens, below Claude Sonnet 4.5's minimum of 1,024")
    assert short.matched
    client.create(payload())
    fake_clock.advance(360)
    expired = client.create(payload()).cache
    assert expired.why == (f"miss: the entry expired 1 min ago (5m TTL, last used 6 min ago); "
                           f"writes {expired.expected_write_tokens:,}")
    assert expired.matched
    tools = [{"type": "function", "function": {"name": "lookup", "description": "Find a book",
                                               "parameters": {"type": "object", "properties": {}}}}]
    client.create(payload(tools=tools))
    tools[0]["function"]["description"] = "Find a book by title"
    changed = client.create(payload(tools=tools)).cache
    assert changed.why.startswith("rewrites everything: the tool definitions changed since the last request")
    assert changed.matched


def test_thinking_change_keeps_the_system_prompt_and_rewrites_the_messages(router, store):
    """Anthropic's invalidation table: thinking settings invalidate message blocks only."""
    client = client_for(router, store)
    turn = [user_message("First question"), {"role": "assistant", "content": "An answer."},
            user_message([text_part("Second question", "5m")])]
    client.create(payload(messages=turn))
    changed = client.create(payload(messages=turn, thinking={"type": "enabled", "budget_tokens": 1024})).cache
    assert changed.expected_read_tokens > 1024 and changed.expected_write_tokens > 0
    assert "the thinking settings changed since the last request, which invalidates the cached messages" in changed.why
    assert changed.matched


def test_lookback_miss_is_explained(router, store):
    client = client_for(router, store)
    history = [user_message([text_part("Start", "5m")])]
    client.create(payload(messages=history))
    history[0] = user_message("Start")
    for i in range(12):
        history += [{"role": "assistant", "content": f"Answer {i}."}, user_message(f"Question {i}")]
    history[-1] = user_message([text_part("Last question", "5m")])
    far = client.create(payload(system=LONG_SYSTEM, ttl=None, messages=history)).cache
    assert far.why.startswith("miss: the breakpoint is 24 blocks past the last write, beyond the 20-block "
                              "lookback; add a breakpoint nearer the end")
    assert far.matched


def test_sent_before_the_first_response_began_predicts_a_miss(router_factory, fake_clock, store, wait_recorder):
    router = router_factory(clock=fake_clock, time_scale=1, sleep=wait_recorder)
    doctor = doctor_for(router.base_url, "local-router", store)
    plain = OrqClient(router.base_url, "local-router", max_retries=0)
    first = payload()
    check = doctor.predict(first)
    doctor.begin(first, check)  # sent; its first byte has not come back yet
    plain.create(first)  # the router writes; its entry is readable only after the emulated TTFT
    second = doctor.predict(payload())
    assert second.why == f"miss: sent before the first response began; writes {second.expected_write_tokens:,}"
    answer = plain.create(payload())
    assert (answer.usage.cache_read_tokens, answer.usage.cache_write_tokens) == (0, second.expected_write_tokens)


def test_another_client_on_the_key_is_named_in_the_difference(router, store):
    client = client_for(router, store)
    OrqClient(router.base_url, "local-router").create(payload())  # no doctor: the ledger never saw it
    check = client.create(payload()).cache
    assert check.expected_read_tokens == 0 and check.reported_read_tokens > 0
    assert check.verdict.startswith(f"the router read {check.reported_read_tokens:,} where 0 were expected")
    assert client.create(payload()).cache.matched  # the ledger was corrected


def test_an_entry_expired_within_a_day_still_explains_the_miss(router, store, fake_clock):
    client = client_for(router, store)
    entry_key = client.create(payload()).cache.write_keys[0]
    fake_clock.advance(300 + 23 * 3600)  # expired 23 h ago: past its use, not past the sentence's
    client.create(payload(system=LONG_SYSTEM + " Be brief."))  # a write: the ledger is pruned now
    assert store.get_item(LEDGER_KIND, client.doctor.ledger(SONNET).doc_id, entry_key) is not None
    back = client.create(payload()).cache
    assert back.why == (f"miss: the entry expired 23 h 0 min ago (5m TTL, last used 23 h 5 min ago); "
                        f"writes {back.expected_write_tokens:,}")
    assert back.matched


def test_an_entry_expired_more_than_a_day_ago_is_pruned(router, store, fake_clock):
    client = client_for(router, store)
    doc_id = client.doctor.ledger(SONNET).doc_id
    old_key = client.create(payload()).cache.write_keys[0]
    fake_clock.advance(300 + FORGET_AFTER_S + 60)
    new_key = client.create(payload(system=LONG_SYSTEM + " Be brief.")).cache.write_keys[0]
    assert store.get_item(LEDGER_KIND, doc_id, old_key) is None
    assert store.get_item(LEDGER_KIND, doc_id, new_key)["tokens"] > 1024
    assert [key for key, _ in store.items(LEDGER_KIND, doc_id)] == sorted(["_last", new_key])
    back = client.create(payload()).cache  # nothing left to say it expired: the change is the reason
    assert back.why == f"rewrites {back.expected_write_tokens:,}: the system prompt changed since the last request"
    assert back.matched


def test_a_prediction_reads_only_its_own_positions_from_the_ledger(router, store):
    client = client_for(router, store)
    for n in range(30):  # thirty distinct cached prefixes in one ledger
        client.create(payload(system=f"{n}. " + LONG_SYSTEM))
    asked = []
    original = store.get_items

    def recording(kind, doc_id, keys, **options):
        asked.append(list(keys))
        return original(kind, doc_id, keys, **options)

    store.get_items = recording
    check = client.doctor.predict(payload(system="7. " + LONG_SYSTEM))
    assert check.expected_read_tokens > 1024
    assert asked == [["_last", check.candidate_keys[0]]]  # one breakpoint: one position, not 30 entries


def test_ledger_is_kept_per_connection_without_the_key(store):
    digest = connection_digest("http://127.0.0.1:1/v2/router/", "sk-secret-key-123")
    assert "sk-secret" not in digest and digest.startswith("http://127.0.0.1:1/v2/router#")
    assert ago(59) == "59 s" and ago(360) == "6 min" and ago(3720) == "1 h 2 min"


# --- the randomised property: prediction == router, every time --------------------------------------

TOOLS = [[{"type": "function", "function": {"name": f"tool_{v}_{i}", "description": f"Tool {i} variant {v}",
                                             "parameters": {"type": "object", "properties": {
                                                 "x": {"type": "string", "description": "x " * 40}}}}}
          for i in range(3)] for v in range(2)]
SYSTEMS = [LONG_SYSTEM, LONG_SYSTEM + " Answer in French.", "Short system prompt."]
WAITS = [0, 0, 0, 30, 299, 301, 900, 3599, 3601]


def random_request(rng: random.Random, state: dict) -> dict:
    """One request of a sequence: mostly the conversation growing, sometimes one thing changed."""
    change = rng.random()
    if change < 0.1:
        state["tools"] = rng.choice([None, 0, 1])
    elif change < 0.2:
        state["system"] = rng.randrange(len(SYSTEMS))
    elif change < 0.3:
        state["thinking"] = rng.choice([None, 1024, 1500])
    elif change < 0.38:
        state["images"] += 1
    elif change < 0.45:
        state["model"] = rng.choice([SONNET, AWS_SONNET, HAIKU])
    elif change < 0.5:
        state["tool_choice"] = rng.choice([None, "auto", "none"])
    grow = 12 if rng.random() < 0.1 else rng.randint(0, 2)
    for _ in range(grow):
        n = len(state["history"])
        state["history"] += [user_message(f"Question {n}: " + "word " * rng.randint(1, 120)),
                             {"role": "assistant", "content": f"Answer {n}."}]
    messages = [dict(m) for m in state["history"]]
    if state["images"]:
        parts = [image_part_from_bytes(png((40 * i % 255, 90, 30)), "image/png") for i in range(state["images"])]
        messages.insert(0, user_message(parts + [text_part("Look at these.")]))
        messages.insert(1, {"role": "assistant", "content": "I see them."})
    messages.append(user_message(f"Now {len(messages)}"))
    ttls = sorted(rng.choice(["5m", "1h"]) for _ in range(4))  # "1h" < "5m": 1h before 5m, as Anthropic requires
    marks = rng.sample(range(len(messages)), k=min(len(messages), rng.randint(0, 2)))
    for slot, index in enumerate(sorted(marks)):
        message = messages[index]
        text = message["content"] if isinstance(message["content"], str) else None
        if text is not None:
            messages[index] = {**message, "content": [text_part(text, ttls[2 + slot])]}
    body = payload(system=SYSTEMS[state["system"]], ttl=ttls[1] if rng.random() < 0.8 else None,
                   messages=messages, model=state["model"])
    if state["tools"] is not None:
        tools = [dict(t) for t in TOOLS[state["tools"]]]
        if rng.random() < 0.5:
            tools[-1] = {**tools[-1], "cache_control": {"type": "ephemeral", "ttl": ttls[0]}}
        body["tools"] = tools
        if state["tool_choice"]:
            body["tool_choice"] = state["tool_choice"]
    if state["thinking"]:
        body["thinking"] = {"type": "enabled", "budget_tokens": state["thinking"]}
    return body


def _kind(why: str) -> str:
    for words, kind in (("expired", "expired"), ("lookback", "lookback"), ("tool definitions changed", "tools changed"),
                        ("system prompt changed", "system changed"), ("invalidates the cached messages",
                                                                      "messages invalidated"),
                        ("below", "below minimum"), ("no cache breakpoint", "no breakpoint")):
        if words in why:
            return kind
    return why.split(" ")[0]


def test_predictions_equal_the_router_over_random_sequences(router, fake_clock):
    store = Store(":memory:")
    rng = random.Random(20261201)
    checked = misses = reads = 0
    kinds = Counter()
    client = client_for(router, store)
    for sequence in range(200):
        router.app.state.router.prompt_cache.clear()  # a fresh cache and ledger per sequence
        client.doctor = doctor_for(router.base_url, f"key-{sequence}", store)
        state = {"tools": None, "system": 0, "thinking": None, "images": 0, "model": SONNET,
                 "tool_choice": None, "history": []}
        for _ in range(rng.randint(2, 6)):
            fake_clock.advance(rng.choice(WAITS))
            body = random_request(rng, state)
            completion = client.create(body)
            check = completion.cache
            assert check is not None
            assert (completion.usage.cache_read_tokens, completion.usage.cache_write_tokens) == \
                (check.expected_read_tokens, check.expected_write_tokens), (sequence, check.why, body)
            assert check.verdict == "as predicted"
            checked += 1
            reads += check.expected_read_tokens > 0
            misses += check.why.startswith("miss:")
            kinds[_kind(check.why)] += 1
    print(f"checked {checked} requests, {reads} reads, {misses} explained misses: {dict(kinds)}")
    assert {"expired", "lookback", "tools changed", "system changed", "messages invalidated",
            "below minimum"} <= set(kinds)
    assert checked > 600 and reads > 200 and misses > 40, (checked, reads, misses)
