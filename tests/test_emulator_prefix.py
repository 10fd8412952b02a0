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


# --- the request body read as JSON (orjson where it reads the same as json.loads) ----------------

ODD_BODIES = [
    b'{"a":NaN}', b'{"a":Infinity}', b'{"a":-Infinity}', b'{"a":1e400}', b'{"a":-0.0}', b'{"a":1e-320}',
    b'{"a":18446744073709551615}', b'{"a":18446744073709551616}', b'{"a":-9223372036854775808}',
    b'{"a":-9223372036854775809}', b'{"max_tokens":1180591620717411303424}', b'{"a":1e19}', b'{"a":-1e30}',
    b'{"a":1,"a":2,"b":3}', b'{"a":"\\ud83d\\ude00"}', b'\xef\xbb\xbf{"a":1}',
    '{"a":1}'.encode("utf-16"), b'{"a":"\x01"}', b'[1,]', b'', b'  ', b'null', b' {"a" : [ 1 , 2 ] } \n',
    b'{"a":"\\u0000"}', b'{"a":"\xff"}', b'{"a":01}', b'{"a":.5}', b'"x"',
    b'[' * 1100 + b']' * 1100, b'{"a":123456789012345678901234567890.5}', b'{"a":4.9e-324}', b'{"a":5e-325}',
    '{"é":"€","t":[true,false,null,{"x":[0.1,2,"\\n"]}]}'.encode(), b'{"a":1} x', b'{"a":1}{"b":2}',
]


def _outcome(parse, body: bytes) -> str:
    try:
        return "value " + repr(parse(body))
    except Exception as error:  # the same exception, with the same message, is part of "the same"
        return f"error {type(error).__name__}: {error}"


@pytest.mark.parametrize("body", ODD_BODIES, ids=[repr(b[:24]) for b in ODD_BODIES])
def test_a_body_reads_exactly_as_json_loads_reads_it(body):
    import json

    from orq_core.emulator.body import parse_body

    assert _outcome(parse_body, body) == _outcome(json.loads, body)


@pytest.mark.parametrize("body", [b'{"a":"\\ud800"}', b'{"a":["x \\udfff y"]}', b'{"\\ud83d":1}',
                                  b'{"a":"\xed\xa0\x80"}'])  # the last: a surrogate encoded in the bytes
def test_an_unpaired_surrogate_is_refused_as_anthropic_refuses_it(body):
    from orq_core.emulator.body import UnpairedSurrogate, parse_body

    with pytest.raises(UnpairedSurrogate, match="^no low surrogate in string"):
        parse_body(body)


def test_an_unpaired_surrogate_is_a_400_with_the_parsers_reason_not_a_500():
    from starlette.testclient import TestClient

    from orq_core.emulator.app import create_app
    from orq_core.emulator.server import EmulatorSettings

    body = b'{"model":"%s","max_tokens":8,"messages":[{"role":"user","content":"hi \\ud800"}]}' % SONNET.encode()
    with TestClient(create_app(EmulatorSettings(time_scale=0))) as client:
        answer = client.post("/v2/router/chat/completions", content=body,
                             headers={"Authorization": "Bearer k", "Content-Type": "application/json"})
    assert answer.status_code == 400
    assert answer.json()["error"]["message"] == (
        "The request body is not valid JSON: no low surrogate in string (an unpaired \\ud800 escape at character 3 "
        "of a string)")


def test_an_integer_past_64_bits_stays_an_exact_integer():
    from orq_core.emulator.body import parse_body

    payload = parse_body(b'{"max_tokens":18446744073709551616,"n":[{"k":-99999999999999999999}]}')
    assert payload == {"max_tokens": 2 ** 64, "n": [{"k": -99999999999999999999}]}
    assert type(payload["max_tokens"]) is int


def test_floats_read_to_the_same_numbers():
    import json
    import random
    import struct

    from orq_core.emulator.body import parse_body

    rng = random.Random(7)
    numbers = [struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0] for _ in range(3000)]
    numbers = [n for n in numbers if n == n and abs(n) != float("inf")]
    body = json.dumps({"temperature": numbers, "text": [repr(n) for n in numbers]}).encode()
    assert repr(parse_body(body)) == repr(json.loads(body))


def test_a_long_prompt_is_not_parsed_by_json_loads(monkeypatch):
    import json

    from orq_core.emulator import body as body_module

    calls: list[int] = []
    monkeypatch.setattr(body_module, "json", types.SimpleNamespace(loads=lambda b: calls.append(len(b)) or json.loads(b)))
    payload = _chat(LONG * 20, "q")
    assert body_module.parse_body(json.dumps(payload).encode()) == payload
    assert calls == []
