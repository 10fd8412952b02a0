"""The local router's synthetic answers: text, thinking signatures, tool calls, media facts."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import io
import json

import pytest
from jsonschema import FormatChecker, validate
from PIL import Image

from orq_core import media
from orq_core.emulator.content import (MAGIC_REDACTED_TRIGGER, check_replayed_signatures, compose_answer,
                                       inspect_media_parts)
from orq_core.request import image_part, image_part_from_bytes, pdf_part_from_bytes, pdf_part_from_url, text_part
from orq_core.tokens import text_tokens
from test_media import make_pdf  # tests/ is on sys.path under pytest

SECRET = b"test-secret"
LABEL = "Claude Sonnet 4.5"


def ask(question, **extra) -> dict:
    messages = extra.pop("messages", None) or [{"role": "user", "content": question}]
    return {"model": "anthropic/claude-sonnet-4-5-20250929", "max_tokens": 4096, "messages": messages, **extra}


def answer(payload):
    return compose_answer(payload, model_label=LABEL, secret=SECRET)


def fn(name, description, parameters):
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


WEATHER = fn("get_weather", "Get the current weather for a city",
             {"type": "object", "properties": {"location": {"type": "string"},
                                               "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
              "required": ["location"]})
CALCULATOR = fn("calculator", "Evaluate an arithmetic expression",
                {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]})
CLOCK = fn("get_time", "Current time in a timezone",
           {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]})


# --- text --------------------------------------------------------------------------------------

def test_answer_is_labelled_deterministic_and_about_the_question():
    payload = ask("Which neighbourhoods in Lisbon suit a first visit on a budget?")
    first, again = answer(payload), answer(copy.deepcopy(payload))
    assert first == again
    assert first.text.startswith(f"[Local router · synthetic answer from {LABEL} emulation")
    assert '"Which neighbourhoods in Lisbon suit a first visit on a budget?"' in first.text
    body = first.text.split("\n\n", 2)[2]
    assert "neighbourhoods" in body or "Lisbon" in body
    assert (first.finish_reason, first.tool_calls, first.reasoning, first.signature) == ("stop", [], None, None)
    assert answer(ask("Which neighbourhoods in Porto suit a first visit?")).text != first.text


def test_streaming_flag_does_not_change_the_answer():
    payload = ask("Explain prompt caching")
    assert answer({**payload, "stream": True, "stream_options": {"include_usage": True}}) == answer(payload)


def test_system_prompt_gist_and_earlier_turn_are_mentioned():
    messages = [{"role": "system", "content": "You are a pirate who answers in rhymes. Never break character."},
                {"role": "user", "content": "Tell me about tides and moons"},
                {"role": "assistant", "content": "Arr."},
                {"role": "user", "content": "And what about storms?"}]
    text = answer(ask("", messages=messages)).text
    assert '("You are a pirate who answers in rhymes.")' in text
    assert "turn 2 of our conversation" in text and "tides" in text
    assert "storms" in text


def test_length_follows_the_question():
    plain = text_tokens(answer(ask("How do solar panels work?")).text)
    assert 60 <= plain <= 260
    short = text_tokens(answer(ask("Briefly: how do solar panels work?")).text)
    long = text_tokens(answer(ask("Give a long, detailed explanation of how solar panels work")).text)
    assert short < plain < long
    words = len(answer(ask("Write 400 words about solar panels")).text.split())
    assert 400 <= words <= 460


# --- thinking ----------------------------------------------------------------------------------

def thinking_payload(question="Why is the sky blue?", budget=4000):
    return ask(question, thinking={"type": "enabled", "budget_tokens": budget})


def test_thinking_has_reasoning_and_a_verifiable_signature():
    result = answer(thinking_payload())
    assert result.reasoning and "Why is the sky blue?" in result.reasoning
    expected = base64.b64encode(hmac.new(SECRET, result.reasoning.encode(), hashlib.sha256).digest()).decode()
    assert result.signature == expected
    assert text_tokens(result.reasoning) <= 4000 * 0.2 + 60
    assert result.redacted == []


def test_reasoning_length_grows_with_budget_up_to_a_cap():
    small = text_tokens(answer(thinking_payload(budget=1024)).reasoning)
    large = text_tokens(answer(thinking_payload(budget=32000)).reasoning)
    assert small <= 1024 * 0.2 + 60
    assert small < large <= 700


def replay(result, question="Why is the sky blue?") -> dict:
    assistant = {"role": "assistant", "content": [
        {"type": "reasoning", "reasoning": result.reasoning, "signature": result.signature},
        {"type": "text", "text": result.text}]}
    return ask("", messages=[{"role": "user", "content": question}, assistant,
                             {"role": "user", "content": "And at sunset?"}])


def test_replayed_signature_verifies_and_a_one_char_tamper_fails():
    result = answer(thinking_payload())
    payload = replay(result)
    check_replayed_signatures(payload, SECRET)
    tampered = copy.deepcopy(payload)
    part = tampered["messages"][1]["content"][0]
    part["reasoning"] = part["reasoning"][:-1] + ("X" if part["reasoning"][-1] != "X" else "Y")
    with pytest.raises(ValueError, match=r"^Invalid signature in thinking block: messages\.1\.content\.0$"):
        check_replayed_signatures(tampered, SECRET)
    forged = copy.deepcopy(payload)
    sig = forged["messages"][1]["content"][0]["signature"]
    forged["messages"][1]["content"][0]["signature"] = ("A" if sig[0] != "A" else "B") + sig[1:]
    with pytest.raises(ValueError, match="Invalid signature"):
        check_replayed_signatures(forged, SECRET)
    with pytest.raises(ValueError, match="Invalid signature"):
        check_replayed_signatures(payload, b"another-router")
    missing = copy.deepcopy(payload)
    del missing["messages"][1]["content"][0]["signature"]
    with pytest.raises(ValueError, match=r"messages\.1\.content\.0\.signature: Field required"):
        check_replayed_signatures(missing, SECRET)


def test_magic_string_adds_a_redacted_block():
    result = answer(thinking_payload(f"Think about this {MAGIC_REDACTED_TRIGGER}"))
    assert len(result.redacted) == 1
    assert len(base64.b64decode(result.redacted[0], validate=True)) == 128
    assert MAGIC_REDACTED_TRIGGER not in result.text
    assert answer(ask(f"no thinking {MAGIC_REDACTED_TRIGGER}")).redacted == []


# --- tools -------------------------------------------------------------------------------------

SCHEMAS = [  # (question, parameters schema, expected values from the question or None)
    ("What's the weather in Paris in fahrenheit?",
     {"type": "object", "properties": {"location": {"type": "string"},
                                       "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
      "required": ["location"]}, {"location": "Paris", "unit": "fahrenheit"}),
    ("Calculate (2 + 3) * 4.5 please",
     {"type": "object", "properties": {"expression": {"type": "string", "minLength": 1}},
      "required": ["expression"]}, {"expression": "(2 + 3) * 4.5"}),
    ("Convert 10 km to miles",
     {"type": "object", "properties": {
         "value": {"type": "number"},
         "from_unit": {"type": "string", "enum": ["kilometers", "miles", "meters"]},
         "to_unit": {"type": "string", "enum": ["kilometers", "miles", "meters"]}},
      "required": ["value", "from_unit", "to_unit"]}, {"value": 10, "from_unit": "kilometers", "to_unit": "miles"}),
    ("Add 3 and 4",
     {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
      "required": ["a", "b"]}, {"a": 3, "b": 4}),
    ("Pick numbers",
     {"type": "object", "properties": {
         "n": {"type": "integer", "minimum": 5, "maximum": 10, "multipleOf": 3},
         "ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
         "step": {"type": "number", "multipleOf": 0.1, "minimum": 0.25}},
      "required": ["n", "ratio", "step"]}, None),
    ("Look up order 12345",
     {"type": "object", "properties": {
         "code": {"type": "string", "pattern": "^[A-Z]{2}-\\d{4}$"},
         "order_id": {"type": "string"},
         "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b", "c"]},
                  "minItems": 2, "uniqueItems": True}},
      "required": ["code", "order_id", "tags"]}, {"order_id": "12345"}),
    ("Email bob@example.org about the meeting on 2024-05-01",
     {"type": "object", "properties": {
         "to": {"type": "string", "format": "email"}, "when": {"type": "string", "format": "date"},
         "subject": {"type": "string", "minLength": 20, "maxLength": 30}},
      "required": ["to", "when", "subject"]}, {"to": "bob@example.org", "when": "2024-05-01"}),
    ("Save an address",
     {"type": "object", "$defs": {"address": {"type": "object", "properties": {
         "street": {"type": "string"}, "zip": {"type": "string", "pattern": "^\\d{5}$"}},
         "required": ["street", "zip"], "additionalProperties": False}},
      "properties": {"home": {"$ref": "#/$defs/address"}, "kind": {"const": "home"},
                     "priority": {"oneOf": [{"type": "integer"}, {"type": "number", "minimum": 0}]},
                     "note": {"anyOf": [{"type": "null"}, {"type": "string", "minLength": 3}]}},
      "required": ["home", "kind", "priority", "note"]}, {"kind": "home"}),
    ("Average of 3, 5 and 9",
     {"type": "object", "properties": {"numbers": {"type": "array", "items": {"type": "number"}, "minItems": 1}},
      "required": ["numbers"]}, {"numbers": [3, 5, 9]}),
    ("Compare the weather in Paris and Tokyo",
     {"type": "object", "properties": {"cities": {"type": "array", "items": {"type": "string"}, "maxItems": 5}},
      "required": ["cities"]}, {"cities": ["Paris", "Tokyo"]}),
    ("Schedule it",
     {"type": "object", "properties": {
         "urgent": {"type": "boolean"}, "at": {"type": ["string", "null"], "format": "date-time"},
         "ref": {"type": "string", "format": "uuid"},
         "meta": {"allOf": [{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
                            {"properties": {"b": {"type": "string", "maxLength": 4}}, "required": ["b"]}]}},
      "required": ["urgent", "at", "ref", "meta"]}, None),
    ("Search the web for the latest Python release?",
     {"type": "object", "properties": {"query": {"type": "string", "maxLength": 40},
                                       "max_results": {"type": "integer", "minimum": 1, "maximum": 10}},
      "required": ["query", "max_results"]}, {"query": "the latest Python release"}),
    ("Book a table",
     {"type": "object", "properties": {
         "party": {"type": "object", "properties": {
             "size": {"type": "integer", "minimum": 2, "maximum": 12},
             "names": {"type": "array", "items": {"type": "string", "minLength": 2}, "minItems": 2, "maxItems": 3}},
             "required": ["size", "names"]},
         "slot": {"type": "string", "pattern": "^(lunch|dinner)-[0-9]{2}$"}},
      "required": ["party", "slot"], "minProperties": 2}, None),
]


@pytest.mark.parametrize("question, schema, expected", SCHEMAS, ids=[s[0][:24] for s in SCHEMAS])
def test_forced_tool_arguments_validate_against_the_schema(question, schema, expected):
    payload = ask(question, tools=[fn("do_it", "Does the thing", schema)],
                  tool_choice={"type": "function", "function": {"name": "do_it"}})
    result = answer(payload)
    assert result.finish_reason == "tool_calls" and result.text == ""
    assert len(result.tool_calls) == 1
    call = result.tool_calls[0]
    assert call["name"] == "do_it" and call["id"].startswith("call_")
    arguments = json.loads(call["arguments"])
    validate(arguments, schema, format_checker=FormatChecker())
    for key, value in (expected or {}).items():
        assert arguments[key] == value


def test_auto_picks_the_fitting_tool_and_says_so():
    result = answer(ask("What is 17 * (3 + 4)?", tools=[WEATHER, CALCULATOR, CLOCK]))
    assert [(c["name"], json.loads(c["arguments"])) for c in result.tool_calls] == [
        ("calculator", {"expression": "17 * (3 + 4)"})]
    assert result.finish_reason == "tool_calls"
    assert "I'll call `calculator`" in result.text and result.text.startswith("[Local router")


def test_auto_without_a_fitting_tool_answers_in_text():
    result = answer(ask("Tell me a joke about owls", tools=[WEATHER, CALCULATOR]))
    assert (result.tool_calls, result.finish_reason) == ([], "stop")
    assert "owls" in result.text


def test_tool_choice_none_required_and_named():
    question = "What's the weather in Rome?"
    assert answer(ask(question, tools=[WEATHER], tool_choice="none")).tool_calls == []
    required = answer(ask("Tell me a joke", tools=[CALCULATOR, WEATHER], tool_choice="required"))
    assert [c["name"] for c in required.tool_calls] == ["calculator"]
    named = answer(ask(question, tools=[WEATHER, CLOCK],
                       tool_choice={"type": "function", "function": {"name": "get_time"}}))
    assert [c["name"] for c in named.tool_calls] == ["get_time"]
    validate(json.loads(named.tool_calls[0]["arguments"]), CLOCK["function"]["parameters"])


def test_parallel_calls_one_per_fitting_tool_unless_disabled():
    question = "What time is it in Europe/Berlin, and how warm is it in Berlin?"
    result = answer(ask(question, tools=[CALCULATOR, CLOCK, WEATHER]))
    calls = [(c["name"], json.loads(c["arguments"])) for c in result.tool_calls]
    assert sorted(calls, key=lambda c: c[0]) == [("get_time", {"timezone": "Europe/Berlin"}),
                                                 ("get_weather", {"location": "Berlin"})]
    assert len({c["id"] for c in result.tool_calls}) == 2
    single = answer(ask(question, tools=[CALCULATOR, CLOCK, WEATHER], parallel_tool_calls=False))
    assert len(single.tool_calls) == 1


def test_one_call_per_place():
    result = answer(ask("What's the weather in Paris and Tokyo?", tools=[WEATHER]))
    assert [json.loads(c["arguments"]) for c in result.tool_calls] == [{"location": "Paris"}, {"location": "Tokyo"}]
    assert "(2 calls)" in result.text


def tool_loop(content: str, name="calculator", arguments='{"expression": "17 * (3 + 4)"}') -> dict:
    return ask("", tools=[CALCULATOR, WEATHER], messages=[
        {"role": "user", "content": "What is 17 * (3 + 4)?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": name, "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": content}])


def test_final_answer_quotes_the_tool_result_and_makes_no_new_call():
    result = answer(tool_loop("119"))
    assert (result.tool_calls, result.finish_reason) == ([], "stop")
    assert 'The tool `calculator` with {"expression": "17 * (3 + 4)"} returned: "119".' in result.text
    assert "the answer from `calculator` is 119" in result.text


def test_forced_tool_choice_calls_again_after_tool_results():
    required = answer({**tool_loop("119"), "tool_choice": "required"})
    assert required.finish_reason == "tool_calls" and required.tool_calls
    named = answer({**tool_loop("119"), "tool_choice": {"type": "function", "function": {"name": "get_weather"}}})
    assert [c["name"] for c in named.tool_calls] == ["get_weather"]


def test_final_answer_from_json_and_failed_results():
    result = answer(tool_loop('{"temperature": 18, "condition": "sunny"}', "get_weather", '{"location": "Rome"}'))
    assert "temperature is 18, condition is sunny" in result.text
    failed = answer(tool_loop("Error: division by zero"))
    assert 'failed: "Error: division by zero"' in failed.text


def test_thinking_with_tools_explains_the_call():
    result = answer(ask("What is 2 + 2?", tools=[CALCULATOR], thinking={"type": "enabled", "budget_tokens": 2000}))
    assert result.tool_calls and "call `calculator` with" in result.reasoning


# --- media -------------------------------------------------------------------------------------

def png(size=(300, 200), colour=(220, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


def with_parts(*parts) -> dict:
    return ask("", messages=[{"role": "user", "content": list(parts)}])


def test_image_described_from_its_pixels():
    img = Image.new("RGB", (3000, 2000), (255, 255, 255))
    img.paste((220, 30, 30), (0, 0, 1500, 2000))
    out = io.BytesIO()
    img.save(out, "PNG")
    text = answer(with_parts(text_part("What is in this image?"),
                             image_part_from_bytes(out.getvalue(), "image/png"))).text
    assert "The image is a 3000×2000 PNG" in text
    assert "red (#dc1e1e, 50%)" in text and "white (#ffffff, 50%)" in text
    assert "scaled to 1313×875" in text and "about 1,532 input tokens" in text


def test_image_url_is_not_fetched():
    text = answer(with_parts(text_part("Describe"), image_part("https://example.com/cat.jpg"))).text
    assert "I was given an image at https://example.com/cat.jpg; the local router does not fetch URLs" in text


def test_pdf_facts_from_real_extraction():
    data = make_pdf(3)
    text = answer(with_parts(text_part("Summarise this"), pdf_part_from_bytes(data, "notes.pdf"))).text
    assert 'The PDF "notes.pdf", titled "Quarterly Report", has 3 pages' in text
    assert 'Its first lines read: "Page 1 heading" / "Second line of page 1" / "Page 2 heading".' in text
    page = answer(with_parts(text_part("What is on page 3?"), pdf_part_from_bytes(data, "notes.pdf"))).text
    assert 'Page 3 begins: "Page 3 heading" / "Second line of page 3".' in page


def test_pdf_urls_are_not_fetched():
    text = answer(with_parts(text_part("Read"), pdf_part_from_url("https://example.com/a.pdf"),
                             {"type": "document", "document": {"type": "pdf", "url": "https://example.com/b.pdf"}})).text
    assert "I was given a PDF at https://example.com/a.pdf" in text
    assert "I was given a PDF at https://example.com/b.pdf" in text


def test_inspect_accepts_good_media_and_urls():
    inspect_media_parts(with_parts(text_part("hi"), image_part_from_bytes(png(), "image/png"),
                                   pdf_part_from_bytes(make_pdf(2), "a.pdf"), image_part("https://example.com/x.png")))


@pytest.mark.parametrize("part, status, message", [
    (image_part("data:image/png;base64," + base64.b64encode(b"not an image at all").decode()), 400,
     "not a PNG, JPEG, GIF or WebP image"),
    (image_part("data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * (5 * 2**20 + 1)).decode()),
     413, "the limit is 5 MB per image"),
    (image_part("data:image/png;base64,%%%"), 400, "base64"),
    (image_part_from_bytes(png(size=(8001, 10)), "image/png"), 400, "The image is 8001×10 px; the limit is 8000"),
    (image_part_from_bytes(png(), "image/jpeg"), 400, "This file is a PNG image, but it was declared as image/jpeg"),
    ({"type": "file", "file": {"file_data": "data:application/pdf;base64," + base64.b64encode(png()).decode(),
                               "filename": "photo.pdf"}}, 400, "This file is a PNG image, not a PDF"),
    ({"type": "file", "file": {"file_data": "data:application/pdf;base64,"
                               + base64.b64encode(b"%PDF-1.7\n" + b"\0" * (33 * 2**20)).decode()}}, 413,
     "The PDF is 33.0 MB; the limit is 32 MB"),
])
def test_inspect_refuses_bad_media(part, status, message):
    with pytest.raises(media.MediaError) as error:
        inspect_media_parts(with_parts(text_part("look"), part))
    assert error.value.status == status
    assert message in error.value.message
    assert error.value.message.startswith("messages.0.content.1: ")


def test_inspect_refuses_long_encrypted_and_corrupt_pdfs():
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf(1))))
    writer.encrypt("pw")
    locked = io.BytesIO()
    writer.write(locked)
    data = make_pdf(4)
    cases = [(make_pdf(101), "101 pages"), (locked.getvalue(), "needs a password"),
             (data[: len(data) // 2], "damaged")]
    for pdf, message in cases:
        with pytest.raises(media.MediaError, match=message) as error:
            inspect_media_parts(with_parts(pdf_part_from_bytes(pdf, "x.pdf")))
        assert error.value.status == 400


def test_inspect_counts_pages_across_pdfs():
    sixty = pdf_part_from_bytes(make_pdf(60), "a.pdf")
    with pytest.raises(media.MediaError, match="120 pages in all; the limit is 100 pages per request"):
        inspect_media_parts(with_parts(sixty, sixty))
