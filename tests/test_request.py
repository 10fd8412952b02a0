import base64
import copy

import pytest

from orq_core.errors import RequestValidationError
from orq_core.request import (
    Breakpoint, ChatParams, abbreviate_payload, build_payload, cache_breakpoints, cache_write_ttl,
    image_part, image_part_from_bytes, pdf_part_from_bytes, pdf_part_from_url, system_message,
    text_part, tool_result_message, user_message, validate_payload, with_cache_on_last_part,
)

SONNET = "anthropic/claude-sonnet-4-5-20250929"
OLD_HAIKU = "anthropic/claude-3-5-haiku-20241022"  # no extended thinking, max output 8,192
PNG_URL = "data:image/png;base64," + base64.b64encode(b"\x89PNG fake").decode()
PDF_URL = "data:application/pdf;base64," + base64.b64encode(b"%PDF-1.4 fake").decode()
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CLOCK = {"type": "function", "function": {"name": "clock", "parameters": {"type": "object", "properties": {}}}}


def base() -> dict:
    return {"model": SONNET, "max_tokens": 1024, "messages": [{"role": "user", "content": "Hello"}]}


def tool_turn() -> list[dict]:
    return [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
    ]


def with_(**changes) -> dict:
    payload = base()
    payload.update(copy.deepcopy(changes))
    return payload


def without(key: str) -> dict:
    payload = base()
    del payload[key]
    return payload


def user_parts(*parts) -> dict:
    return with_(messages=[{"role": "user", "content": list(parts)}])


def rejected(payload: dict) -> RequestValidationError:
    with pytest.raises(RequestValidationError) as info:
        validate_payload(payload)
    return info.value


# Each case: one documented rule -> (payload breaking it, exact field, words of the message).
CASES = {
    "model missing": (without("model"), "model", "required"),
    "model not a string": (with_(model=3), "model", "non-empty string"),
    "messages empty": (with_(messages=[]), "messages", "non-empty list"),
    "message not an object": (with_(messages=["hi"]), "messages[0]", "object with role"),
    "bad role": (with_(messages=[{"role": "robot", "content": "x"}]), "messages[0].role",
                 "system, user, assistant, tool"),
    "empty user content": (with_(messages=[{"role": "user", "content": "  "}]), "messages[0].content",
                           "must not be empty"),
    "content not string or list": (with_(messages=[{"role": "user", "content": 5}]), "messages[0].content",
                                   "string or a list"),
    "empty part list": (with_(messages=[{"role": "user", "content": []}]), "messages[0].content",
                        "must not be empty"),
    "unknown part type": (user_parts({"type": "video", "url": "x"}), "messages[0].content[0].type",
                          "unknown part type 'video'"),
    "part wrong for role": (with_(messages=[{"role": "system", "content": [image_part(PNG_URL)]},
                                            {"role": "user", "content": "x"}]),
                            "messages[0].content[0].type", "a system message cannot hold a image_url part"),
    "text not a string": (user_parts({"type": "text", "text": 7}), "messages[0].content[0].text", "must be a string"),
    "text empty": (user_parts({"type": "text", "text": ""}), "messages[0].content[0].text", "must not be empty"),
    "image url scheme": (user_parts(image_part("ftp://x/a.png")), "messages[0].content[0].image_url.url",
                         "http(s) URL or a data:image"),
    "image data url not image": (user_parts(image_part(PDF_URL)), "messages[0].content[0].image_url.url",
                                 "data:image/(png|jpeg|gif|webp)"),
    "image_url not object": (user_parts({"type": "image_url", "image_url": "https://x/a.png"}),
                             "messages[0].content[0].image_url", "must be an object"),
    "file without data or uri": (user_parts({"type": "file", "file": {"filename": "a.pdf"}}),
                                 "messages[0].content[0].file", "needs file_data"),
    "file_data not a data URL": (user_parts({"type": "file", "file": {"file_data": "JVBERi0x"}}),
                                 "messages[0].content[0].file.file_data", "data URL"),
    "file uri not http": (user_parts({"type": "file", "file": {"uri": "file:///etc/passwd"}}),
                          "messages[0].content[0].file.uri", "http(s) URL"),
    "document without url": (user_parts({"type": "document", "document": {"type": "pdf"}}),
                             "messages[0].content[0].document.url", "http(s) URL"),
    "reasoning not a string": (with_(messages=[{"role": "user", "content": "q"}, {"role": "assistant", "content": [
        {"type": "reasoning", "reasoning": None, "signature": "s"}]}]), "messages[1].content[0].reasoning",
        "must be a string"),
    "redacted reasoning without data": (with_(messages=[{"role": "user", "content": "q"}, {"role": "assistant", "content": [
        {"type": "redacted_reasoning"}]}]), "messages[1].content[0].data", "unmodified"),
    "reasoning from a user": (user_parts({"type": "reasoning", "reasoning": "x", "signature": "s"}),
                              "messages[0].content[0].type", "a user message cannot hold a reasoning part"),
    "tool message without id": (with_(messages=[{"role": "tool", "content": "x"}]),
                                "messages[0].tool_call_id", "id of the call"),
    "tool result for unknown call": (with_(messages=tool_turn()[:2] + [
        {"role": "tool", "tool_call_id": "call_9", "content": "x"}]), "messages[2].tool_call_id",
        "'call_9' answers no tool call"),
    "tool call left unanswered": (with_(messages=tool_turn()[:2] + [{"role": "user", "content": "and?"}]),
                                  "messages[2]", "call_1 have no tool result"),
    "tool call without id": (with_(messages=[{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": [
        {"type": "function", "function": {"name": "f", "arguments": "{}"}}]}]),
        "messages[1].tool_calls[0].id", "needs an id"),
    "tool call arguments not a string": (with_(messages=[{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": {}}}]}]),
        "messages[1].tool_calls[0].function.arguments", "JSON string"),
    "cache_control on a user message": (with_(messages=[{"role": "user", "content": "x",
                                                          "cache_control": {"type": "ephemeral"}}]),
                                        "messages[0].cache_control", "only tool messages"),
    "max_tokens missing": (without("max_tokens"), "max_tokens", "required"),
    "max_tokens zero": (with_(max_tokens=0), "max_tokens", "integer >= 1"),
    "max_tokens a float": (with_(max_tokens=10.5), "max_tokens", "integer >= 1"),
    "max_tokens over model output": (with_(model=OLD_HAIKU, max_tokens=9000), "max_tokens",
                                     "Claude Haiku 3.5 writes at most 8,192 output tokens"),
    "temperature above 1": (with_(temperature=1.5), "temperature", "between 0 and 1"),
    "temperature a bool": (with_(temperature=True), "temperature", "between 0 and 1"),
    "top_p zero": (with_(top_p=0), "top_p", "greater than 0 and at most 1"),
    "top_k zero": (with_(top_k=0), "top_k", "integer >= 1"),
    "temperature with top_p": (with_(temperature=0.5, top_p=0.9), "top_p",
                               "send one of temperature and top_p: newer Claude models reject both"),
    "stop not a list": (with_(stop={"a": 1}), "stop", "list of strings"),
    "stop whitespace": (with_(stop=["END", "  "]), "stop[1]", "non-whitespace"),
    "stop not a string": (with_(stop=[3]), "stop[0]", "non-whitespace"),
    "stream not bool": (with_(stream="yes"), "stream", "true or false"),
    "thinking not an object": (with_(thinking=True), "thinking", "must be an object"),
    "thinking type": (with_(thinking={"type": "on", "budget_tokens": 2048}, max_tokens=4096),
                      "thinking.type", "\"enabled\""),
    "thinking budget missing": (with_(thinking={"type": "enabled"}, max_tokens=4096),
                                "thinking.budget_tokens", "required"),
    "thinking budget below 1024": (with_(thinking={"type": "enabled", "budget_tokens": 1000}, max_tokens=4096),
                                   "thinking.budget_tokens", "at least 1,024"),
    "thinking budget not below max_tokens": (with_(thinking={"type": "enabled", "budget_tokens": 4096}, max_tokens=4096),
                                             "thinking.budget_tokens", "less than max_tokens (4,096)"),
    "thinking on a model without it": (with_(model=OLD_HAIKU, thinking={"type": "enabled", "budget_tokens": 2048},
                                             max_tokens=4096), "thinking", "Claude Haiku 3.5 does not support"),
    "thinking with temperature": (with_(thinking={"type": "enabled", "budget_tokens": 2048}, max_tokens=4096,
                                        temperature=0.5), "temperature", "only works with temperature 1"),
    "thinking with top_k": (with_(thinking={"type": "enabled", "budget_tokens": 2048}, max_tokens=4096, top_k=5),
                            "top_k", "does not allow top_k"),
    "thinking with low top_p": (with_(thinking={"type": "enabled", "budget_tokens": 2048}, max_tokens=4096, top_p=0.9),
                                "top_p", "between 0.95 and 1"),
    "thinking with forced tool": (with_(thinking={"type": "enabled", "budget_tokens": 2048}, max_tokens=4096,
                                        tools=[WEATHER], tool_choice="required"), "tool_choice", "\"auto\" or \"none\""),
    "tools not a list": (with_(tools={"a": 1}), "tools", "list of tool definitions"),
    "tool type": (with_(tools=[{"type": "retrieval"}]), "tools[0].type", "\"function\""),
    "tool name pattern": (with_(tools=[CLOCK, {"type": "function", "function": {
        "name": "get weather", "parameters": {"type": "object"}}}]), "tools[1].function.name", "1-64 characters"),
    "tool name too long": (with_(tools=[{"type": "function", "function": {
        "name": "x" * 65, "parameters": {"type": "object"}}}]), "tools[0].function.name", "1-64 characters"),
    "tool names unique": (with_(tools=[WEATHER, CLOCK, WEATHER]), "tools[2].function.name",
                          "'get_weather' is already used by tools[0]"),
    "tool parameters missing": (with_(tools=[{"type": "function", "function": {"name": "f"}}]),
                                "tools[0].function.parameters", "JSON Schema object"),
    "tool parameters not an object schema": (with_(tools=[{"type": "function", "function": {
        "name": "f", "parameters": {"type": "string"}}}]), "tools[0].function.parameters.type", "\"object\""),
    "tool parameters invalid schema": (with_(tools=[{"type": "function", "function": {
        "name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "strin"}}}}}]),
        "tools[0].function.parameters.properties.a.type", "not a valid JSON Schema"),
    "tool_choice without tools": (with_(tool_choice="auto"), "tool_choice", "only together with tools"),
    "tool_choice word": (with_(tools=[WEATHER], tool_choice="any"), "tool_choice", "auto, none, required"),
    "tool_choice unknown function": (with_(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "nope"}}),
                                     "tool_choice.function.name", "'nope' is not one of the tools (get_weather)"),
    "cache_control type": (user_parts({"type": "text", "text": "x", "cache_control": {"type": "persistent"}}),
                           "messages[0].content[0].cache_control", "{\"type\": \"ephemeral\"}"),
    "cache_control ttl": (user_parts({"type": "text", "text": "x", "cache_control": {"type": "ephemeral", "ttl": "10m"}}),
                          "messages[0].content[0].cache_control.ttl", "\"5m\" or \"1h\""),
    "cache_control extra key": (user_parts({"type": "text", "text": "x",
                                            "cache_control": {"type": "ephemeral", "scope": "org"}}),
                                "messages[0].content[0].cache_control", "unknown key(s) scope"),
    "cache_control on reasoning": (with_(messages=[{"role": "user", "content": "q"}, {"role": "assistant", "content": [
        {"type": "reasoning", "reasoning": "r", "signature": "s", "cache_control": {"type": "ephemeral"}}]}]),
        "messages[1].content[0].cache_control", "thinking blocks cannot carry cache_control"),
    "five breakpoints": (user_parts(*[text_part(f"p{i}", "5m") for i in range(5)]),
                         "messages[0].content[4].cache_control", "at most 4 cache breakpoints"),
    "1h after 5m": (with_(messages=[system_message("sys", "5m"), user_message([text_part("q", "1h")])]),
                    "messages[1].content[0].cache_control.ttl", "1h cache entries must come before 5m ones"),
    "5m tool then 1h system": (
        with_(tools=[{**WEATHER, "cache_control": {"type": "ephemeral"}}],
              messages=[system_message("sys", "1h"), user_message("q")]),
        "messages[0].content[0].cache_control.ttl", "1h cache entries must come before 5m ones"),
    "orq not an object": (with_(orq=[]), "orq", "must be an object"),
    "fallback without model": (with_(orq={"fallbacks": [{"model": SONNET}, {"slug": "x"}]}),
                               "orq.fallbacks[1].model", "model slug"),
    "retry count too high": (with_(orq={"retry": {"count": 6}}), "orq.retry.count", "from 1 to 5"),
    "retry codes": (with_(orq={"retry": {"count": 2, "on_codes": [429, "500"]}}), "orq.retry.on_codes[1]",
                    "HTTP error status code"),
    "top-level retry (SDK form)": (with_(retry={"count": 0}), "retry.count", "from 1 to 5"),
    "response cache type": (with_(orq={"cache": {"type": "semantic", "ttl": 60}}), "orq.cache.type",
                            "\"exact_match\""),
    "response cache ttl": (with_(orq={"cache": {"type": "exact_match", "ttl": 259_201}}), "orq.cache.ttl",
                           "1 to 259,200"),
}


@pytest.mark.parametrize("payload,field,words", CASES.values(), ids=CASES.keys())
def test_each_rule_names_its_field(payload, field, words):
    error = rejected(payload)
    assert error.field == field
    assert words in error.reason
    assert str(error).startswith(f"{field}: ")


def test_valid_payloads_pass():
    validate_payload(base())
    validate_payload(with_(model="aws/anthropic/some-future-claude", max_tokens=500_000))  # unknown: the router decides
    validate_payload(with_(messages=tool_turn(), tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "get_weather"}}))
    validate_payload(with_(thinking={"type": "enabled", "budget_tokens": 1024}, max_tokens=1025, temperature=1, top_p=None))
    validate_payload(with_(thinking={"type": "enabled", "budget_tokens": 2048}, max_tokens=4096, top_p=0.95))
    validate_payload(with_(thinking={"type": "disabled"}, top_k=40, temperature=0.2))
    validate_payload(with_(stop=["END", "\n\nHuman:", "x", "y", "z"]))
    validate_payload(user_parts(text_part("look"), image_part(PNG_URL), image_part("https://example.com/a.jpg"),
                                pdf_part_from_url("https://example.com/a.pdf"),
                                {"type": "file", "file": {"file_data": PDF_URL, "filename": "a.pdf"}},
                                {"type": "document", "document": {"type": "pdf", "url": "https://example.com/b.pdf"}}))
    validate_payload(with_(orq={"fallbacks": [{"model": "anthropic/unknown"}], "retry": {"count": 5},
                                "cache": {"type": "exact_match", "ttl": 259_200}}, cache={"type": "exact_match"}))


def test_replayed_thinking_turn_is_valid():
    messages = [{"role": "user", "content": "q"},
                {"role": "assistant", "content": [{"type": "reasoning", "reasoning": "hm", "signature": "sig=="},
                                                  {"type": "redacted_reasoning", "data": "opaque"},
                                                  {"type": "text", "text": "answer"}]},
                {"role": "user", "content": "more"}]
    validate_payload(with_(messages=messages, thinking={"type": "enabled", "budget_tokens": 2048}, max_tokens=4096))


def test_four_breakpoints_and_1h_before_5m_are_accepted():
    payload = with_(tools=[{**WEATHER, "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
                    messages=[system_message("sys", "1h"), user_message([text_part("doc", "5m"), text_part("q", "5m")])])
    validate_payload(payload)


# ---------------------------------------------------------------------------------------------
# Breakpoints
# ---------------------------------------------------------------------------------------------

def test_breakpoints_in_prefix_order_tools_system_messages():
    payload = with_(
        tools=[WEATHER,
               {**CLOCK, "function": {**CLOCK["function"], "cache_control": {"type": "ephemeral", "ttl": "1h"}}},
               {**WEATHER, "function": {**WEATHER["function"], "name": "w2"}, "cache_control": {"type": "ephemeral"}}],
        messages=[user_message([text_part("doc", "5m")]),
                  system_message("late system", "1h"),
                  {"role": "assistant", "content": None, "tool_calls": [
                      {"id": "c1", "type": "function", "function": {"name": "clock", "arguments": "{}"}}]},
                  tool_result_message("c1", "12:00", cache_ttl="5m")])
    assert cache_breakpoints(payload) == [
        Breakpoint("tools[1].function", "1h"),
        Breakpoint("tools[2]", "5m"),
        Breakpoint("messages[1].content[0]", "1h"),
        Breakpoint("messages[0].content[0]", "5m"),
        Breakpoint("messages[3]", "5m"),
    ]


def test_breakpoints_tolerate_unvalidated_payloads():
    assert cache_breakpoints({}) == []
    assert cache_breakpoints({"messages": "x", "tools": 3}) == []
    assert cache_breakpoints({"messages": [None, {"content": [1, {"cache_control": "yes"}]}]}) == []


def test_cache_write_ttl_is_1h_when_any_breakpoint_is_1h():
    assert cache_write_ttl(base()) == "5m"
    assert cache_write_ttl(with_(messages=[system_message("s", "5m"), user_message("q")])) == "5m"
    assert cache_write_ttl(with_(messages=[system_message("s", "1h"), user_message([text_part("q", "5m")])])) == "1h"


# ---------------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------------

def test_part_builders_exact_output():
    assert text_part("hi") == {"type": "text", "text": "hi"}
    assert text_part("hi", "1h") == {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    assert image_part("https://x/a.png") == {"type": "image_url", "image_url": {"url": "https://x/a.png"}}
    assert image_part_from_bytes(b"abc", "image/png") == {"type": "image_url", "image_url": {"url": "data:image/png;base64,YWJj"}}
    assert pdf_part_from_bytes(b"%PDF", "a.pdf") == {
        "type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERg==", "filename": "a.pdf"}}
    assert pdf_part_from_url("https://x/a.pdf") == {"type": "file", "file": {"uri": "https://x/a.pdf"}}
    with pytest.raises(ValueError, match="not an image type"):
        image_part_from_bytes(b"%PDF", "application/pdf")
    with pytest.raises(ValueError, match="'5m' or '1h'"):
        text_part("x", "2h")


def test_message_builders_exact_output():
    assert system_message("be brief") == {"role": "system", "content": "be brief"}
    assert system_message("be brief", "5m") == {"role": "system", "content": [
        {"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral", "ttl": "5m"}}]}
    assert user_message("hi") == {"role": "user", "content": "hi"}
    assert user_message(iter([text_part("a")])) == {"role": "user", "content": [{"type": "text", "text": "a"}]}
    assert tool_result_message("c1", "42") == {"role": "tool", "tool_call_id": "c1", "content": "42"}
    assert tool_result_message("c1", {"t": 1.5}, cache_ttl="1h") == {
        "role": "tool", "tool_call_id": "c1", "content": "{\"t\": 1.5}", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    assert tool_result_message("c1", "division by zero", is_error=True)["content"] == "Error: division by zero"
    assert tool_result_message("c1", "Error: x", is_error=True)["content"] == "Error: x"


def test_with_cache_on_last_part():
    original = user_message("hello")
    marked = with_cache_on_last_part(original, "5m")
    assert marked == {"role": "user", "content": [
        {"type": "text", "text": "hello", "cache_control": {"type": "ephemeral", "ttl": "5m"}}]}
    assert original == {"role": "user", "content": "hello"}  # not modified
    two = with_cache_on_last_part(user_message([text_part("a", "1h"), text_part("b")]), "5m")
    assert [p.get("cache_control") for p in two["content"]] == [{"type": "ephemeral", "ttl": "1h"},
                                                                 {"type": "ephemeral", "ttl": "5m"}]
    assert "cache_control" not in with_cache_on_last_part(two, None)["content"][-1]
    assert with_cache_on_last_part(tool_result_message("c", "x"), "1h")["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    with pytest.raises(ValueError, match="no content"):
        with_cache_on_last_part({"role": "user", "content": []}, "5m")


def test_build_payload_minimal_streaming():
    assert build_payload(ChatParams(model=SONNET), [user_message("hi")]) == {
        "model": SONNET, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1024,
        "stream": True, "stream_options": {"include_usage": True}}


def test_build_payload_everything():
    params = ChatParams(model=SONNET, max_tokens=8000, top_p=0.96, stop=("END",), thinking_budget=4000,
                        tools=[WEATHER], tool_choice="auto", fallbacks=("aws/anthropic/claude-sonnet-4-5-20250929",),
                        retry_count=3, response_cache_ttl=600, stream=False)
    payload = build_payload(params, [user_message("hi")])
    assert payload == {
        "model": SONNET, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8000, "top_p": 0.96,
        "stop": ["END"], "thinking": {"type": "enabled", "budget_tokens": 4000}, "tools": [WEATHER],
        "tool_choice": "auto", "stream": False,
        "orq": {"fallbacks": [{"model": "aws/anthropic/claude-sonnet-4-5-20250929"}],
                "retry": {"count": 3, "on_codes": [429, 500, 502, 503, 504]},
                "cache": {"type": "exact_match", "ttl": 600}}}
    assert payload["tools"] is not params.tools  # a copy: editing the payload leaves the params alone


def test_build_payload_retry_zero_sends_no_retry_and_validates():
    assert "orq" not in build_payload(ChatParams(model=SONNET, retry_count=0), [user_message("hi")])
    with pytest.raises(RequestValidationError) as info:
        build_payload(ChatParams(model=SONNET, max_tokens=2000, thinking_budget=2000), [user_message("hi")])
    assert info.value.field == "thinking.budget_tokens"


# ---------------------------------------------------------------------------------------------
# Display
# ---------------------------------------------------------------------------------------------

def test_abbreviate_payload_shortens_every_data_url():
    image = image_part_from_bytes(b"\x00" * 1_234_567, "image/png")
    pdf = pdf_part_from_bytes(b"%PDF" + b"\x01" * 95, "a.pdf")
    payload = with_(messages=[user_message([text_part("data:text, not base64"), image, pdf,
                                            image_part("data:image/png;base64,QUJD")])])
    short = abbreviate_payload(payload, keep=8)
    parts = short["messages"][0]["content"]
    assert parts[0]["text"] == "data:text, not base64"
    assert parts[1]["image_url"]["url"] == "data:image/png;base64,AAAAAAAA…(1,234,567 bytes)"
    assert parts[2]["file"]["file_data"] == "data:application/pdf;base64,JVBERgEB…(99 bytes)"
    assert parts[2]["file"]["filename"] == "a.pdf"
    assert parts[3]["image_url"]["url"] == "data:image/png;base64,QUJD"  # short enough already
    assert payload["messages"][0]["content"][1] == image  # the original is untouched
    assert abbreviate_payload(payload)["messages"][0]["content"][1]["image_url"]["url"].endswith(
        "A" * 48 + "…(1,234,567 bytes)")
