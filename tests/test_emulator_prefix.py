"""A resent long prefix costs the router no pass over its text beyond reading it (issue 16, "Cache
hits on long prefixes"), held by counting what is hashed and copied, never by wall-clock time."""

from __future__ import annotations

import hashlib
import tracemalloc
import types
from collections import OrderedDict

import pytest

from orq_core.emulator import prompt
from orq_core.emulator.prompt import segment_prompt
from orq_core.request import text_part, validate_payload

SONNET = "anthropic/claude-sonnet-4-5-20250929"
LONG = "The ferryman painted the cold gull near the chapel. " * 400  # ~21K characters


def _chat(system: str, question: str) -> dict:
    return {"model": SONNET, "max_tokens": 8,
            "messages": [{"role": "system", "content": [text_part(system, cache_ttl="5m")]},
                         {"role": "user", "content": question}]}


@pytest.fixture
def fresh_memo(monkeypatch):
    monkeypatch.setattr(prompt, "_LONG_TEXTS", OrderedDict(), raising=False)
    monkeypatch.setattr(prompt, "_long_texts_chars", 0, raising=False)


def _counting_hashes(monkeypatch) -> list[int]:
    """Lengths of what the prompt module hashes."""
    lengths: list[int] = []

    def sha256(data=b""):
        lengths.append(len(data))
        return hashlib.sha256(data)

    monkeypatch.setattr(prompt, "hashlib", types.SimpleNamespace(sha256=sha256))
    return lengths


def test_a_resent_long_text_is_not_hashed_again(monkeypatch, fresh_memo):
    first = segment_prompt(_chat(LONG, "first question"))
    lengths = _counting_hashes(monkeypatch)
    again = segment_prompt(_chat(LONG, "second question"))
    assert again[0] == first[0]
    assert max(lengths) < 1_000  # neither the text nor its JSON was hashed a second time


def test_a_remembered_digest_is_the_digest_of_the_text():
    text = LONG + "once more"
    blocks = [segment_prompt(_chat(text, "q"))[0] for _ in range(2)]
    direct = prompt._digest({"message": {"role": "system"}, "unit": {"type": "text", "text": text}})
    assert blocks[0].digest == blocks[1].digest == direct


def test_a_text_with_the_same_length_and_ends_but_another_middle_gets_its_own_digest(fresh_memo):
    middle = len(LONG) // 2
    other = LONG[:middle] + "X" + LONG[middle + 1:]
    assert len(other) == len(LONG) and other[:200] == LONG[:200] and other[-200:] == LONG[-200:]
    first = segment_prompt(_chat(LONG, "q"))[0]
    second = segment_prompt(_chat(other, "q"))[0]
    assert second.digest != first.digest
    assert second.digest == prompt._digest({"message": {"role": "system"}, "unit": {"type": "text", "text": other}})
    assert segment_prompt(_chat(LONG, "q"))[0] == first  # and the first is still told apart


def test_remembered_long_texts_stay_within_their_character_budget(monkeypatch, fresh_memo):
    monkeypatch.setattr(prompt, "LONG_TEXTS_KEPT_CHARS", 3 * len(LONG) + 100)
    texts = [f"{n} {LONG}" for n in range(5)]
    for text in texts:
        segment_prompt(_chat(text, "q"))
    kept = [text for text, _ in prompt._LONG_TEXTS.values()]
    assert kept == texts[2:]  # the three most recent
    assert prompt._long_texts_chars == sum(map(len, kept)) <= prompt.LONG_TEXTS_KEPT_CHARS
    segment_prompt(_chat("too long " + LONG * 4, "q"))  # bigger than the whole budget: not kept
    assert [text for text, _ in prompt._LONG_TEXTS.values()] == texts[2:]


def test_checking_a_long_string_message_does_not_copy_it():
    text = "A pasted report.\n" * 250_000 + "\n"  # 4.25 MB, ending in a newline as pasted text does
    payload = {"model": SONNET, "max_tokens": 8, "messages": [{"role": "user", "content": text}]}
    tracemalloc.start()
    try:
        validate_payload(payload)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100_000


@pytest.mark.parametrize("content", ["", " ", "\n\t ", "\u2003"])
def test_a_blank_string_message_is_still_refused(content):
    from orq_core.errors import RequestValidationError

    with pytest.raises(RequestValidationError) as refused:
        validate_payload({"model": SONNET, "max_tokens": 8, "messages": [{"role": "user", "content": content}]})
    assert refused.value.field == "messages[0].content"
