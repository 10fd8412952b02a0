"""The local router over real loopback HTTP: the openai SDK, the wire shapes, validation and auth."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

import httpx
import openai
import pytest

from orq_core import media
from orq_core.catalog import catalog
from orq_core.emulator import LOCAL_API_KEY, get_local_router
from orq_core.emulator.app import delta_plan, shape_answer, split_for_stream
from orq_core.emulator.prompt import MESSAGE_OVERHEAD_TOKENS, count_prompt_tokens
from orq_core.request import text_part
from orq_core.tokens import image_tokens, pdf_page_tokens, text_tokens

SONNET = "anthropic/claude-sonnet-4-5-20250929"
LONG = "word " * 1200
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def sdk(router, key: str = "any-key") -> openai.OpenAI:
    return openai.OpenAI(base_url=router.base_url, api_key=key, max_retries=0, timeout=30)


def post(router, payload, key: str | None = "key-a", **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return httpx.post(f"{router.base_url}/chat/completions", json=payload, headers=headers, timeout=30, **kwargs)


def chat(**extra) -> dict:
    return {"model": SONNET, "max_tokens": 256, "messages": [{"role": "user", "content": "Describe a river."}], **extra}


def stream_chunks(router, payload: dict) -> list:
    with httpx.stream("POST", f"{router.base_url}/chat/completions", json=payload,
                      headers={"Authorization": "Bearer k"}, timeout=30) as response:
        lines = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def png_bytes(width: int, height: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    import base64

    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


# --- the official openai SDK -----------------------------------------------------------------------

def test_openai_sdk_plain_request(local_router):
    response = sdk(local_router).chat.completions.create(
        model=SONNET, max_tokens=256, messages=[{"role": "user", "content": "Describe a river."}])
    assert response.model == SONNET
    assert response.choices[0].message.content
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.prompt_tokens == count_prompt_tokens(chat())
    assert response.usage.completion_tokens == text_tokens(response.choices[0].message.content)


def test_openai_sdk_stream_with_usage_reports_cached_tokens(local_router):
    messages = [{"role": "system", "content": [text_part(LONG, cache_ttl="5m")]},
                {"role": "user", "content": "Summarise the text."}]
    client = sdk(local_router)
    usages, texts = [], []
    for _ in range(2):
        stream = client.chat.completions.create(model=SONNET, max_tokens=256, messages=messages, stream=True,
                                                stream_options={"include_usage": True})
        chunks = list(stream)
        texts.append("".join(c.choices[0].delta.content or "" for c in chunks if c.choices))
        assert chunks[-1].choices == []
        usages.append(chunks[-1].usage)
    prefix = MESSAGE_OVERHEAD_TOKENS + text_tokens(LONG)
    assert usages[0].prompt_tokens_details.cached_tokens == 0
    assert usages[1].prompt_tokens_details.cached_tokens == prefix
    assert usages[1].prompt_tokens == count_prompt_tokens({"messages": messages})
    assert usages[1].completion_tokens == text_tokens(texts[1])


def test_openai_sdk_tool_call_round_trip(local_router):
    client = sdk(local_router)
    messages = [{"role": "user", "content": "What is the weather in Utrecht?"}]
    first = client.chat.completions.create(model=SONNET, max_tokens=512, messages=messages, tools=[WEATHER_TOOL],
                                           tool_choice={"type": "function", "function": {"name": "get_weather"}})
    assert first.choices[0].finish_reason == "tool_calls"
    call = first.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and "city" in json.loads(call.function.arguments)
    assert first.usage.completion_tokens >= text_tokens(call.function.arguments)
    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 11, "sky": "rain"}'}]
    second = client.chat.completions.create(model=SONNET, max_tokens=512, messages=messages, tools=[WEATHER_TOOL])
    assert second.choices[0].message.content


def test_openai_sdk_thinking_round_trip_and_tampering(local_router):
    client = sdk(local_router)
    thinking = {"thinking": {"type": "enabled", "budget_tokens": 1024}}
    messages = [{"role": "user", "content": "Is 91 prime?"}]
    first = client.chat.completions.create(model=SONNET, max_tokens=2048, messages=messages, extra_body=thinking)
    extra = first.choices[0].message.model_extra
    assert extra["reasoning"] and extra["reasoning_signature"]
    assert first.usage.completion_tokens_details.reasoning_tokens == text_tokens(extra["reasoning"])
    replay = {"role": "assistant", "content": [
        {"type": "reasoning", "reasoning": extra["reasoning"], "signature": extra["reasoning_signature"]},
        {"type": "text", "text": first.choices[0].message.content}]}
    follow_up = {"role": "user", "content": "And 97?"}
    second = client.chat.completions.create(model=SONNET, max_tokens=2048, extra_body=thinking,
                                            messages=[*messages, replay, follow_up])
    assert second.choices[0].message.content
    replay["content"][0]["reasoning"] += " (edited)"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=SONNET, max_tokens=2048, extra_body=thinking,
                                       messages=[*messages, replay, follow_up])


def test_openai_sdk_sees_a_bad_key_as_authentication_error(router_factory):
    router = router_factory(api_key="the-right-key")
    with pytest.raises(openai.AuthenticationError):
        sdk(router, key="a-wrong-key").chat.completions.create(model=SONNET, max_tokens=10, messages=[
            {"role": "user", "content": "hi"}])
    assert sdk(router, key="the-right-key").chat.completions.create(
        model=SONNET, max_tokens=64, messages=[{"role": "user", "content": "hi"}]).choices


# --- auth, ids, models -------------------------------------------------------------------------------------

def test_no_key_is_a_401_in_the_documented_shape(local_router):
    response = post(local_router, chat(), key=None)
    assert response.status_code == 401
    assert set(response.json()["error"]) >= {"message", "type", "code"}
    assert response.json()["error"]["type"] == "authentication_error"
    basic = httpx.post(f"{local_router.base_url}/chat/completions", json=chat(), headers={"Authorization": "Basic abc"})
    assert basic.status_code == 401


def test_a_wrong_configured_key_is_refused_and_never_echoed(router_factory):
    router = router_factory(api_key="sk-right-0123456789")
    response = post(router, chat(), key="sk-wrong-0123456789")
    assert response.status_code == 401 and "sk-wrong" not in response.text
    assert post(router, chat(), key="sk-right-0123456789").status_code == 200
    assert router.api_key == "sk-right-0123456789"


def test_every_response_has_a_request_id(local_router):
    responses = [post(local_router, chat()), post(local_router, chat(max_tokens=None)),
                 post(local_router, chat(), key=None),
                 httpx.get(f"{local_router.base_url}/nothing-here", headers={"Authorization": "Bearer k"})]
    ids = [r.headers.get("x-request-id", "") for r in responses]
    assert [r.status_code for r in responses] == [200, 400, 401, 404]
    assert all(i.startswith("req_") for i in ids) and len(set(ids)) == 4


def test_models_lists_every_route_and_needs_a_key(local_router):
    url = f"{local_router.base_url}/models"
    assert httpx.get(url).status_code == 401
    data = httpx.get(url, headers={"Authorization": f"Bearer {LOCAL_API_KEY}"}).json()["data"]
    assert [m["id"] for m in data] == [t.slug for t in catalog().targets()]


def test_get_local_router_is_one_router_per_process(monkeypatch):
    monkeypatch.setenv("ORQ_LOCAL_ROUTER_TIME_SCALE", "0")
    first, second = get_local_router(), get_local_router()
    assert first is second and first.running
    assert first.settings.time_scale == 0
    assert first.base_url.startswith("http://127.0.0.1:") and first.base_url.endswith("/v2/router")
    assert first.api_key == LOCAL_API_KEY


# --- validation --------------------------------------------------------------------------------------------

def five_breakpoints() -> dict:
    return chat(messages=[{"role": "user", "content": [text_part(f"part {n}", cache_ttl="5m") for n in range(5)]}])


@pytest.mark.parametrize("payload,param", [
    (chat(max_tokens=None), "max_tokens"),
    (chat(temperature=0.5, top_p=0.9), "top_p"),
    (chat(max_tokens=1024, thinking={"type": "enabled", "budget_tokens": 1024}), "thinking.budget_tokens"),
    (chat(thinking={"type": "enabled", "budget_tokens": 100}), "thinking.budget_tokens"),
    (five_breakpoints(), "messages[0].content[4].cache_control"),
    (chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": "not-an-object"}]}]),
     "messages[0].content[0].image_url"),
    (chat(messages=[{"role": "user", "content": [{"type": "video", "url": "x"}]}]), "messages[0].content[0].type"),
    (chat(tool_choice="auto"), "tool_choice"),
    (chat(tools=[WEATHER_TOOL], tool_choice={"type": "function", "function": {"name": "nope"}}),
     "tool_choice.function.name"),
])
def test_validation_errors_are_400_naming_the_field(local_router, payload, param):
    payload = {k: v for k, v in payload.items() if v is not None}
    response = post(local_router, payload)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert error["message"].startswith(param)


def test_a_body_that_is_not_json_is_a_400(local_router):
    response = httpx.post(f"{local_router.base_url}/chat/completions", content=b"{nope",
                          headers={"Authorization": "Bearer k", "Content-Type": "application/json"})
    assert response.status_code == 400


@pytest.mark.parametrize("model", ["anthropic/claude-imaginary-9", "openai/claude-sonnet-4-5-20250929"])
def test_unknown_model_or_provider_is_a_404(local_router, model):
    response = post(local_router, chat(model=model))
    assert response.status_code == 404 and response.json()["error"]["type"] == "not_found_error"


def test_prompt_plus_max_tokens_beyond_the_context_window_is_a_400(local_router):
    response = post(local_router, chat(max_tokens=64000, messages=[{"role": "user", "content": "word " * 140_000}]))
    assert response.status_code == 400 and "context window" in response.json()["error"]["message"]


def test_a_tampered_signature_is_a_400(local_router):
    payload = chat(messages=[{"role": "user", "content": "q"}, {"role": "assistant", "content": [
        {"type": "reasoning", "reasoning": "I made this up", "signature": "forged"}, {"type": "text", "text": "a"}]},
        {"role": "user", "content": "q2"}])
    assert post(local_router, payload).status_code == 400


# --- media ----------------------------------------------------------------------------------------------------

def test_an_inline_image_is_decoded_and_counted(local_router):
    part = {"type": "image_url", "image_url": {"url": data_url(png_bytes(300, 150))}}
    payload = chat(messages=[{"role": "user", "content": [part, text_part("What colour?")]}])
    response = post(local_router, payload)
    assert response.status_code == 200
    expected = image_tokens(300, 150) + MESSAGE_OVERHEAD_TOKENS + text_tokens("What colour?")
    assert response.json()["usage"]["prompt_tokens"] == expected


def test_a_damaged_image_is_a_400_and_an_oversize_one_a_413(local_router):
    damaged = {"type": "image_url", "image_url": {"url": data_url(png_bytes(20, 20)[:40])}}
    assert post(local_router, chat(messages=[{"role": "user", "content": [damaged]}])).status_code == 400
    oversize = {"type": "image_url", "image_url": {"url": data_url(png_bytes(20, 20) + b"\0" * (5 * 1024 * 1024))}}
    assert post(local_router, chat(messages=[{"role": "user", "content": [oversize]}])).status_code == 413


# --- answer shaping and streaming --------------------------------------------------------------------------

def answer(text="", reasoning=None, signature=None, tool_calls=(), finish="stop"):
    return SimpleNamespace(text=text, reasoning=reasoning, signature=signature, redacted=[],
                           tool_calls=list(tool_calls), finish_reason=finish)


def test_max_tokens_truncates_in_generation_order():
    gen = shape_answer(answer("one two three four five six", reasoning="think hard"), 5, [])  # 3 + 2 tokens
    assert (gen.reasoning, gen.text, gen.finish_reason) == ("think hard", "one two ", "length")
    assert gen.output_tokens == 5 and gen.signature is None
    call = {"id": "c1", "name": "f", "arguments": '{"city": "Utrecht"}'}
    dropped = shape_answer(answer("ok", tool_calls=[call], finish="tool_calls"), 3, [])
    assert (dropped.tool_calls, dropped.finish_reason) == ((), "length")
    kept = shape_answer(answer("ok", tool_calls=[call], finish="tool_calls"), 100, [])
    assert kept.tool_calls == (call,) and kept.output_tokens == text_tokens("ok") + text_tokens(call["arguments"])


def test_a_stop_sequence_cuts_before_it():
    gen = shape_answer(answer("Rivers flow. END of story"), 100, ["END", "flow"])
    assert (gen.text, gen.finish_reason) == ("Rivers ", "stop")


def test_max_tokens_over_http_reports_length_and_exact_count(local_router):
    body = post(local_router, chat(max_tokens=5)).json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 5 == text_tokens(body["choices"][0]["message"]["content"])


def test_stop_sequence_over_http(local_router):
    body = post(local_router, chat(stop=["e"])).json()
    assert body["choices"][0]["finish_reason"] == "stop"
    assert "e" not in body["choices"][0]["message"]["content"]


def test_stream_pieces_cover_the_text_and_its_tokens():
    text = "Hello, wonderful world!  Tokens: 1234567 and more...\n"
    pieces = split_for_stream(text, 3)
    assert "".join(p for p, _ in pieces) == text
    assert sum(n for _, n in pieces) == text_tokens(text)


def test_stream_order_reasoning_signature_then_tool_fragments():
    call = {"id": "call_1", "name": "get_weather", "arguments": '{"city": "Utrecht", "unit": "celsius"}'}
    plan = [delta for delta, _ in delta_plan(shape_answer(
        answer("", "Let me look that up for you.", "sig123", [call], "tool_calls"), 1000, []), 4)]
    kinds = [next(k for k in d if k != "role") for d in plan]
    assert kinds[0] == "reasoning" and plan[0]["role"] == "assistant"
    signature_at = kinds.index("reasoning_signature")
    assert set(kinds[:signature_at]) == {"reasoning"} and plan[signature_at] == {"reasoning_signature": "sig123"}
    fragments = [d["tool_calls"][0] for d in plan[signature_at + 1:]]
    assert fragments[0] == {"index": 0, "id": "call_1", "type": "function",
                            "function": {"name": "get_weather", "arguments": ""}}
    assert all(set(f) == {"index", "function"} and set(f["function"]) == {"arguments"} for f in fragments[1:])
    assert "".join(f["function"]["arguments"] for f in fragments) == call["arguments"]


def test_a_streamed_thinking_answer_adds_up(local_router):
    payload = chat(max_tokens=2048, thinking={"type": "enabled", "budget_tokens": 1024}, stream=True,
                   stream_options={"include_usage": True})
    chunks = stream_chunks(local_router, payload)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    reasoning = "".join(d.get("reasoning", "") for d in deltas)
    content = "".join(d.get("content") or "" for d in deltas)
    first_content = next(i for i, d in enumerate(deltas) if d.get("content"))
    signature_at = next(i for i, d in enumerate(deltas) if "reasoning_signature" in d)
    assert signature_at < first_content and set(deltas[signature_at]) == {"reasoning_signature"}
    usage = chunks[-1]["usage"]
    assert chunks[-1]["choices"] == [] and chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert usage["completion_tokens"] == text_tokens(reasoning) + text_tokens(content)
    assert usage["completion_tokens_details"]["reasoning_tokens"] == text_tokens(reasoning)


def test_without_include_usage_there_is_no_usage_chunk(local_router):
    chunks = stream_chunks(local_router, chat(stream=True))
    assert all(c["choices"] for c in chunks) and "usage" not in chunks[-1]


def test_redacted_reasoning_streams_after_the_signature_and_is_a_string_in_json(local_router):
    from orq_core.emulator.content import MAGIC_REDACTED_TRIGGER

    payload = chat(max_tokens=2048, thinking={"type": "enabled", "budget_tokens": 1024},
                   messages=[{"role": "user", "content": f"Think about this. {MAGIC_REDACTED_TRIGGER}"}])
    message = post(local_router, payload).json()["choices"][0]["message"]
    assert isinstance(message["redacted_reasoning"], str) and message["redacted_reasoning"]
    chunks = stream_chunks(local_router, {**payload, "stream": True})
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"] and c["choices"][0]["delta"]]
    keys = [next(k for k in d if k != "role") for d in deltas]
    assert keys.index("redacted_reasoning") == keys.index("reasoning_signature") + 1
    assert deltas[keys.index("redacted_reasoning")]["redacted_reasoning"] == message["redacted_reasoning"]


def test_an_inline_pdf_is_counted_page_by_page(local_router):
    from fpdf import FPDF

    pdf = FPDF()
    for text in ("First page about rivers.", "Second page about deltas."):
        pdf.add_page()
        pdf.set_font("Helvetica", size=12)
        pdf.cell(text=text)
    part = {"type": "file", "file": {"file_data": data_url(bytes(pdf.output()), "application/pdf"),
                                     "filename": "rivers.pdf"}}
    payload = chat(messages=[{"role": "user", "content": [part, text_part("Summarise.")]}])
    pages = media.pdf_info(bytes(pdf.output())).page_texts
    expected = sum(pdf_page_tokens(t) for t in pages) + MESSAGE_OVERHEAD_TOKENS + text_tokens("Summarise.")
    assert post(local_router, payload).json()["usage"]["prompt_tokens"] == expected
    assert len(pages) == 2 and "rivers" in pages[0]


def test_a_prompt_over_the_context_window_is_blamed_on_the_prompt_not_max_tokens(local_router):
    """Anthropic's text for this case: "prompt is too long: 208310 tokens > 200000 maximum"."""
    response = post(local_router, chat(max_tokens=100, messages=[{"role": "user", "content": "word " * 210_000}]))
    message = response.json()["error"]["message"]
    assert response.status_code == 400 and message.startswith("prompt is too long: ")
    assert message.endswith(" tokens > 200000 maximum") and "max_tokens" not in message
