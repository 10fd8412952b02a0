"""The doctor's reused segmentation equals the local router's own, block for block."""

from __future__ import annotations

import random

from orq_core.cache_shape import shape_of
from orq_core.emulator.prompt import segment_prompt
from orq_core.request import image_part, system_message, text_part, user_message

SLUG = "anthropic/claude-sonnet-4-5-20250929"


def _marker(rng: random.Random) -> dict:
    return rng.choice([{"type": "ephemeral"}, {"type": "ephemeral", "ttl": "1h"}, {"type": "ephemeral", "ttl": "5m"}])


def _message(rng: random.Random, n: int) -> dict:
    kind = rng.random()
    if kind < 0.3:
        message = user_message(f"Question {n}: " + "word " * rng.randint(0, 60))
    elif kind < 0.5:
        message = {"role": "assistant", "content": f"Answer {n}."}
    elif kind < 0.6:
        message = {"role": "assistant", "content": None, "tool_calls": [
            {"id": f"call_{n}", "type": "function", "function": {"name": "lookup", "arguments": '{"q": 1}'}}]}
    elif kind < 0.7:
        message = {"role": "tool", "tool_call_id": f"call_{n}", "content": f"result {n}"}
    elif kind < 0.8:
        message = system_message(f"Extra system rule {n}.")  # lifted before the others
    else:
        parts = [text_part(f"Part {n}"), image_part(f"https://example.com/{n}.png"), "not a part",
                 {"type": "text", "text": "tail"}]
        message = user_message(parts[:rng.randint(1, 4)])
    if rng.random() < 0.15:
        message["cache_control"] = _marker(rng)
    if isinstance(message.get("content"), list) and rng.random() < 0.3:
        part = rng.choice([p for p in message["content"] if isinstance(p, dict)] or [{}])
        part["cache_control"] = _marker(rng) if rng.random() < 0.9 else "not an object"
    return message


def _tools(rng: random.Random, variant: int) -> list:
    tools = [{"type": "function", "function": {"name": f"t{variant}_{i}", "description": "d",
                                               "parameters": {"type": "object", "properties": {}}}}
             for i in range(rng.randint(0, 3))]
    if tools and rng.random() < 0.5:
        rng.choice(tools)["cache_control"] = _marker(rng)
    if tools and rng.random() < 0.3:
        rng.choice(tools)["function"]["cache_control"] = _marker(rng)
    return tools


def _assert_same(shape, payload):
    fresh = shape_of(payload, SLUG)
    assert list(shape.blocks) == segment_prompt(payload)
    for name in ("keys", "chain", "cumulative", "labels", "breakpoints", "sections", "unit_ends", "user_turns"):
        assert getattr(shape, name) == getattr(fresh, name), name
    assert shape.user_messages == sum(1 for m in payload["messages"] if m.get("role") == "user")


def test_reused_segmentation_equals_the_routers_over_random_sequences():
    rng = random.Random(1412)
    for _ in range(150):
        history = [system_message("You are helpful. " * rng.randint(1, 40), rng.choice([None, "5m", "1h"]))]
        tools, previous = _tools(rng, 0), None
        for step in range(rng.randint(1, 8)):
            change = rng.random()
            if change < 0.1:
                tools = _tools(rng, step)
            elif change < 0.2 and len(history) > 1:
                history[rng.randrange(len(history))] = _message(rng, step)  # an edit in the middle
            history += [_message(rng, len(history)) for _ in range(rng.randint(0, 3))]
            payload = {"model": SLUG, "messages": [dict(m) for m in history], "max_tokens": 10}
            if tools:
                payload["tools"] = tools
            if rng.random() < 0.3:
                payload["thinking"] = {"type": "enabled", "budget_tokens": rng.choice([1024, 2048])}
            if tools and rng.random() < 0.3:
                payload["tool_choice"] = rng.choice(["auto", "none"])
            shape = shape_of(payload, SLUG, previous)
            _assert_same(shape, payload)
            previous = shape


def test_a_message_edited_in_place_after_sending_is_segmented_again():
    message = user_message([text_part("The first question", "5m")])
    payload = {"model": SLUG, "messages": [system_message("Rules."), message]}
    first = shape_of(payload, SLUG)
    message["content"][0]["text"] = "The first question, edited"
    again = shape_of(payload, SLUG, first)
    assert again.keys[-1] != first.keys[-1]
    _assert_same(again, payload)


def test_an_unchanged_prefix_is_reused_not_segmented_again():
    history = [system_message("Rules. " * 50, "5m"), user_message("One"), {"role": "assistant", "content": "Two"}]
    first = shape_of({"model": SLUG, "messages": history}, SLUG)
    second = shape_of({"model": SLUG, "messages": history + [user_message("Three")]}, SLUG, first)
    assert all(a is b for a, b in zip(first.units, second.units))
    assert len(second.units) == len(first.units) + 1
    other_model = shape_of({"model": "aws/" + SLUG, "messages": history}, "aws/" + SLUG, second)
    assert other_model.keys[0] != first.keys[0]  # a ledger key is per slug: nothing borrowed across slugs
