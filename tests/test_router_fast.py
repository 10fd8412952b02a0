"""The local router's fresh-request path, held by behaviour (never by wall-clock time): the
synthetic answer is counted as it is built, shaping trusts those counts, and the results equal
what counting and truncating the text afresh gives."""

from __future__ import annotations

import pytest

from orq_core.emulator import app as router_app
from orq_core.emulator import content
from orq_core.tokens import text_tokens

SONNET = "anthropic/claude-sonnet-4-5-20250929"


def _payload(question, **extra) -> dict:
    messages = [{"role": "user", "content": question}]
    if "system" in extra:
        messages.insert(0, {"role": "system", "content": extra.pop("system")})
    if "earlier" in extra:
        messages[-1:-1] = [{"role": "user", "content": extra.pop("earlier")}, {"role": "assistant", "content": "ok"}]
    return {"model": SONNET, "max_tokens": 4000, "messages": messages, **extra}


QUESTIONS = [
    "How long is the river Nile?",
    "Explain photosynthesis in detail, with a thorough, comprehensive essay",
    "Brief: what is Rust's borrow checker?",
    "Write 300 words about glaciers and their moraines",
    "List the pros and cons of electric cars",
    "",
    "hi",
    "Ünïcode façade naïve café — résumé? 東京 and Zürich",
    "x" * 400,
    "Question 7: how long is river number 7?",
]
SETTINGS = [{}, {"system": "You are a terse geologist. Answer in metric units."},
            {"earlier": "What about the Danube's tributaries?"},
            {"thinking": {"type": "enabled", "budget_tokens": 2048}}]


def _answers():
    for question in QUESTIONS:
        for extra in SETTINGS:
            yield content.compose_answer(_payload(question, **dict(extra)), model_label="Claude Sonnet 4.5", secret=b"s")


def test_a_composed_answer_knows_its_tokens_and_where_its_paragraphs_start():
    for answer in _answers():
        assert answer.text_tokens == text_tokens(answer.text), answer.text
        assert answer.text_marks[0] == (0, 0)
        for before, offset in answer.text_marks:
            assert text_tokens(answer.text[:offset]) == before
            assert offset == 0 or answer.text[offset - 2:offset] == "\n\n"
        if answer.reasoning:
            assert answer.reasoning_tokens == text_tokens(answer.reasoning)


def test_every_body_template_is_counted_by_arithmetic():
    pairs = [("river", "Nile"), ("your question", "the context around it"), ("Zürich", "don't"),
             ("antidisestablishmentarianism", "your goal"), ("a", "b-c")]
    for template in content._BODY_TEMPLATES:
        for a, b in pairs:
            sentence = template.text.format(a=a, A=a[:1].upper() + a[1:], b=b)
            uses_a = template.lower_a + template.upper_a
            assert text_tokens(sentence) == template.tokens + uses_a * text_tokens(a) + template.b * text_tokens(b)
            assert len(sentence.split()) == (template.words + uses_a * (len(a.split()) - 1)
                                             + template.b * (len(b.split()) - 1))


def test_body_sentences_are_not_tokenized_one_by_one(monkeypatch):
    counted: list[str] = []
    monkeypatch.setattr(content, "text_tokens", lambda text: counted.append(text) or text_tokens(text))
    answer = content.compose_answer(_payload("Write 2000 words about rivers and their deltas"),
                                    model_label="Claude Sonnet 4.5", secret=b"s")
    assert answer.text_tokens > 2500 and len(answer.text_marks) > 40
    assert len(counted) <= 8 and sum(map(len, counted)) < 400  # the opening, the keywords: not the body


@pytest.mark.parametrize("question", ["Explain glaciers in detail", "How long is the river Nile?"])
def test_shaping_with_the_composers_counts_equals_truncating_the_text_afresh(question):
    answer = content.compose_answer(_payload(question, thinking={"type": "enabled", "budget_tokens": 2048}),
                                    model_label="Claude Sonnet 4.5", secret=b"s")
    total = text_tokens(answer.text) + text_tokens(answer.reasoning)
    for max_tokens in range(0, total + 2):
        gen = router_app.shape_answer(answer, max_tokens, [])
        kept_reasoning = router_app.truncate_to_tokens(answer.reasoning, max_tokens)
        kept_text = router_app.truncate_to_tokens(answer.text, max_tokens - text_tokens(kept_reasoning))
        assert (gen.reasoning, gen.text) == (kept_reasoning, kept_text), max_tokens
        assert gen.output_tokens == text_tokens(kept_text) + text_tokens(kept_reasoning)
        assert gen.reasoning_tokens == text_tokens(kept_reasoning)
        assert gen.finish_reason == ("stop" if max_tokens >= total else "length")


def test_a_stop_sequence_is_counted_on_the_text_it_keeps():
    answer = content.compose_answer(_payload("How long is the river Nile?"), model_label="Claude Sonnet 4.5",
                                    secret=b"s")
    stop = answer.text.split()[12]
    gen = router_app.shape_answer(answer, 4000, [stop])
    assert gen.finish_reason == "stop" and gen.text == answer.text[:answer.text.index(stop)]
    assert gen.output_tokens == text_tokens(gen.text)


def test_the_same_request_composes_the_same_answer_and_another_a_different_one():
    first = content.compose_answer(_payload("How long is the river Nile?"), model_label="S", secret=b"s")
    again = content.compose_answer(_payload("How long is the river Nile?"), model_label="S", secret=b"s")
    other = content.compose_answer(_payload("How long is the river Amazon?"), model_label="S", secret=b"s")
    assert first == again and first.text != other.text


# --- streaming ---------------------------------------------------------------------------------

SAMPLES = ["", "   \n", "Hello, wonderful world!  Tokens: 1234567 and more...\n", "antidisestablishmentarianism",
           "café \"q\" 🎉 naïve\tZürich—東京 a,b,c  ", "x"]


def test_stream_pieces_hold_exactly_the_chunk_size_but_the_last():
    for text in SAMPLES:
        for size in (1, 3, 4, 9):
            pieces = router_app.split_for_stream(text, size)
            assert "".join(p for p, _ in pieces) == text
            assert [n for _, n in pieces] == [text_tokens(p) for p, _ in pieces]
            assert all(n == size for _, n in pieces[:-1]) and (not pieces or 0 <= pieces[-1][1] <= size)
    # a chunk may end inside a long word, after one of its 4-character units
    assert router_app.split_for_stream("antidisestablishment arianism", 2) == [
        ("antidise", 2), ("stablish", 2), ("ment aria", 2), ("nism", 1)]


def _generations():
    call = {"id": "call_1", "name": "get_weather", "arguments": '{"city": "Zürich", "unit": "celsius"}'}
    yield router_app.Generation("", "", None, (), (), "stop")
    yield router_app.Generation("   ", "", None, (), (), "stop")
    yield router_app.Generation("Hello there, rivers run to the sea. " * 5, "Think first, then “quote”.", "sig",
                                ("r1", "r2"), (call,), "tool_calls")
    yield router_app.Generation("", "", None, (), (call, {**call, "id": "call_2"}), "tool_calls")
    for answer in _answers():
        yield router_app.shape_answer(answer, 300, [])


def test_the_encoded_plan_is_the_delta_plan_encoded():
    for gen in _generations():
        for size in (1, 4):
            assert router_app.encoded_delta_plan(gen, size) == [
                (router_app._to_json(delta), tokens) for delta, tokens in router_app.delta_plan(gen, size)]


def test_the_encoded_stream_is_the_plans_deltas_and_its_run_the_events_one_by_one():
    base = {"id": "chatcmpl-1", "created": 5, "model": SONNET, "object": "chat.completion.chunk"}
    for extra in ({}, {"orq": {"cache_hit": True}}):
        events = router_app.ChunkEvents(base, extra)
        for gen in _generations():
            for size in (1, 4):
                deltas = [delta for delta, _ in gen.encoded_plan(size)]
                assert gen.encoded_stream(size).split(b"\0") == [delta.encode() for delta in deltas]
                assert events.encoded_run(gen.encoded_stream(size)) == b"".join(
                    events.encoded_delta(d, None) for d in deltas)


def _stream(router_factory, **settings) -> tuple[list[bytes], bytes]:
    import httpx

    router = router_factory(**settings)
    payload = {"model": SONNET, "max_tokens": 1100, "stream": True, "stream_options": {"include_usage": True},
               "thinking": {"type": "enabled", "budget_tokens": 1024},
               "messages": [{"role": "user", "content": "How long is the river Nile?"}]}
    with httpx.stream("POST", f"{router.base_url}/chat/completions", json=payload,
                      headers={"Authorization": "Bearer k"}, timeout=30) as response:
        reads = list(response.iter_raw())
    body = b"".join(reads)
    import re
    return reads, re.sub(rb'"id":"chatcmpl-[0-9a-f]+","created":\d+', b'"id":"-","created":0', body)


def test_an_unpaced_stream_is_one_write_with_the_bytes_of_the_paced_one(router_factory):
    async def no_wait(seconds: float) -> None:
        return None

    _, paced = _stream(router_factory, time_scale=1, sleep=no_wait)
    reads, unpaced = _stream(router_factory, time_scale=0)
    assert unpaced == paced and unpaced.endswith(b"data: [DONE]\n\n") and unpaced.count(b"data: ") > 20


# --- checking -------------------------------------------------------------------------------------

def test_a_request_is_searched_for_cache_markers_once(monkeypatch):
    from orq_core import request
    from orq_core.emulator import EmulatorSettings
    from orq_core.request import text_part

    router = router_app.Router(EmulatorSettings(time_scale=0))
    walks: list[int] = []
    real = request._cache_sites
    monkeypatch.setattr(request, "_cache_sites", lambda payload: walks.append(1) or real(payload))
    payload = {"model": SONNET, "max_tokens": 100,
               "messages": [{"role": "system", "content": [text_part("Rivers. " * 400, cache_ttl="1h")]},
                            {"role": "user", "content": [text_part("How long is the Nile?", cache_ttl="5m")]}]}
    blocks = router.check_payload(payload)
    assert len(walks) == 1
    assert [b.cache_ttl for b in blocks] == ["1h", "5m"]
    from orq_core.emulator.prompt import segment_prompt
    assert blocks == segment_prompt(payload)
