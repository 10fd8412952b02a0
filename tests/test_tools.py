import json
import re

import pytest

from orq_core.errors import RateLimitError
from orq_core.request import validate_payload
from orq_core.tools import (BUILTIN_TOOLS, FACTS, TEMPLATES, ExecutedCall, ToolError, ToolLoop, ToolStep,
                            builtin_handlers, convert, convert_units, current_time, lookup_table,
                            parse_tool_definitions, validate_arguments, validate_tool_definition)
from orq_core.types import Completion, Done, TextDelta, ToolCall
from orq_core.usage import Usage

SONNET = "anthropic/claude-sonnet-4-5-20250929"
NOV_14_2023_22_13_20_UTC = 1_700_000_000
JUL_3_2024_09_46_40_UTC = 1_720_000_000


# --- built-in tools ----------------------------------------------------------------------------

def test_current_time_with_injected_clock():
    paris = json.loads(current_time("Europe/Paris", clock=lambda: NOV_14_2023_22_13_20_UTC))
    assert paris == {"timezone": "Europe/Paris", "iso": "2023-11-14T23:13:20+01:00", "date": "2023-11-14",
                     "time": "23:13:20", "weekday": "Tuesday", "utc_offset": "+01:00", "abbreviation": "CET"}
    summer = json.loads(current_time("america/new_york", clock=lambda: JUL_3_2024_09_46_40_UTC))
    assert (summer["timezone"], summer["iso"], summer["abbreviation"]) == (
        "America/New_York", "2024-07-03T05:46:40-04:00", "EDT")
    assert json.loads(current_time("UTC", clock=lambda: 0))["iso"] == "1970-01-01T00:00:00+00:00"


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "../../etc/passwd", "/etc/localtime", ""])
def test_current_time_unknown_zone_is_an_error(zone):
    if zone == "":
        assert json.loads(current_time(zone, clock=lambda: 0))["timezone"] == "UTC"
        return
    with pytest.raises(ToolError, match="unknown time zone"):
        current_time(zone, clock=lambda: 0)


def test_builtin_handlers_use_the_injected_clock():
    handlers = builtin_handlers(clock=lambda: NOV_14_2023_22_13_20_UTC)
    assert json.loads(handlers["current_time"]({"timezone": "Asia/Tokyo"}))["iso"] == "2023-11-15T07:13:20+09:00"
    assert handlers["calculator"]({"expression": "6 * 7"}) == "42"


@pytest.mark.parametrize("value, source, target, expected", [
    (1, "mi", "km", 1.609344),
    (0.1, "mi", "m", 160.9344),
    (12, "in", "cm", 30.48),
    (3, "ft", "m", 0.9144),
    (1, "nmi", "m", 1852.0),
    (1, "lb", "g", 453.59237),
    (16, "oz", "lb", 1.0),
    (1, "st", "kg", 6.35029318),
    (100, "c", "f", 212.0),
    (32, "f", "c", 0.0),
    (98.6, "f", "c", 37.0),
    (-40, "c", "f", -40.0),
    (0, "k", "c", -273.15),
    (25, "c", "k", 298.15),
    (1, "gal", "l", 3.785411784),
    (1, "cup", "ml", 236.5882365),
    (1, "imp_gal", "l", 4.54609),
    (1, "m3", "l", 1000.0),
    (60, "mph", "km/h", 96.56064),
    (1, "kn", "km/h", 1.852),
    (36, "km/h", "m/s", 10.0),
    (5, "Miles", "kilometres", 8.04672),
    (212, "degrees Fahrenheit", "Celsius", 100.0),
])
def test_unit_conversions_exact(value, source, target, expected):
    assert convert(value, source, target) == expected


def test_convert_units_tool_output():
    assert json.loads(convert_units(100, "c", "f")) == {
        "value": 100, "from_unit": "c", "to_unit": "f", "result": 212.0, "text": "100 °C = 212 °F"}


@pytest.mark.parametrize("args, message", [
    ((1, "kg", "m"), "cannot convert mass (kg) to length (m)"),
    ((1, "c", "mph"), "cannot convert temperature (c) to speed (mph)"),
    ((1, "parsec", "m"), "unknown unit 'parsec'"),
    ((-300, "c", "k"), "below absolute zero"),
    ((-1, "k", "c"), "below absolute zero"),
    ((True, "m", "km"), "value must be a number"),
    (("abc", "m", "km"), "value must be a number"),
])
def test_convert_errors(args, message):
    with pytest.raises(ToolError, match=re.escape(message)):
        convert(*args)


def test_lookup_table_by_name_or_code():
    france = json.loads(lookup_table("france"))
    assert (france["country"], france["capital"], france["currency"]) == ("France", "Paris", "Euro (EUR)")
    assert json.loads(lookup_table("JP"))["capital"] == "Tokyo"
    assert FACTS["Brazil"]["capital"] == "Brasília"
    with pytest.raises(ToolError, match="no entry for 'Atlantis'; the table holds: France, Germany"):
        lookup_table("Atlantis")


def test_builtin_and_template_definitions_are_valid_for_the_router():
    definitions = [tool.definition for tool in BUILTIN_TOOLS.values()] + list(TEMPLATES.values())
    for definition in definitions:
        assert validate_tool_definition(definition) == []
    validate_payload({"model": SONNET, "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}],
                      "tools": definitions})
    assert set(BUILTIN_TOOLS) == {"calculator", "current_time", "convert_units", "lookup_table"}


# --- definitions and arguments -----------------------------------------------------------------

GOOD = {"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                        "required": ["city"]}}}


def test_validate_tool_definition_problems():
    assert validate_tool_definition(GOOD) == []
    assert validate_tool_definition(GOOD["function"]) == []  # bare function object
    assert validate_tool_definition([]) == ["a tool definition must be a JSON object, not an array"]
    bad = {"type": "tool", "function": {"name": "get weather!", "parameters": {"type": "array"}}}
    assert validate_tool_definition(bad) == [
        '"type" must be "function"',
        "name must be 1-64 letters, digits, _ or - (got 'get weather!')",
        "description must be a non-empty string (the model reads it to decide when to call)",
        'parameters must have "type": "object" at the top',
    ]
    assert validate_tool_definition({"name": "a" * 65, "description": "d", "parameters": {"type": "object"}}) == [
        f"name must be 1-64 letters, digits, _ or - (got {'a' * 65!r})"]
    not_schema = {"name": "x", "description": "d",
                  "parameters": {"type": "object", "properties": {"a": {"type": "strng"}}}}
    (problem,) = validate_tool_definition(not_schema)
    assert problem.startswith("parameters/properties/a/type is not valid JSON Schema: 'strng' is not valid")
    assert validate_tool_definition({"name": "x", "description": "d", "parameters": "object"}) == [
        'parameters must be a JSON Schema object like {"type": "object", "properties": {...}}']


def test_parse_tool_definitions_names_line_and_column_of_syntax_errors():
    text = '[\n  {"name": "x",\n  }\n]'
    assert parse_tool_definitions(text) == (
        [], ["JSON syntax error at line 3, column 3: Expecting property name enclosed in double quotes"])


def test_parse_tool_definitions_forms_and_problems():
    wrapped = {"type": "function", "function": GOOD["function"]}
    assert parse_tool_definitions(json.dumps(GOOD)) == ([wrapped], [])
    assert parse_tool_definitions(json.dumps({"tools": [GOOD["function"]]})) == ([wrapped], [])
    assert parse_tool_definitions("  ") == ([], [])
    definitions, problems = parse_tool_definitions(json.dumps([GOOD, GOOD, {"name": "bad name", "description": "d",
                                                                             "parameters": {"type": "object"}}]))
    assert definitions == [wrapped]
    assert problems == ["tool 2 (get_weather): the name 'get_weather' is used twice",
                        "tool 3 (bad name): name must be 1-64 letters, digits, _ or - (got 'bad name')"]


def test_validate_arguments():
    weather = TEMPLATES["get_weather"]
    assert validate_arguments(weather, '{"location": "Paris", "unit": "celsius"}') == []
    assert validate_arguments(weather, '{"location": "Paris",}') == [
        "not valid JSON: JSON syntax error at line 1, column 22: Expecting property name enclosed in double quotes"]
    assert validate_arguments(weather, "[1]") == ["arguments must be a JSON object, not an array"]
    assert validate_arguments(weather, '{"unit": "kelvin", "extra": 1}') == [
        "arguments: 'location' is a required property",
        "arguments: Additional properties are not allowed ('extra' was unexpected)",
        "arguments.unit: 'kelvin' is not one of ['celsius', 'fahrenheit']",
    ]
    assert validate_arguments(TEMPLATES["send_email"], '{"to": ["not-an-email"], "subject": "s", "body": "b"}') == [
        "arguments.to[0]: 'not-an-email' is not a 'email'"]
    no_args = {"name": "ping", "description": "d", "parameters": {"type": "object", "properties": {}}}
    assert validate_arguments(no_args, "") == []


# --- the tool loop with a scripted client ----------------------------------------------------

def answer(text: str, input_tokens: int = 100, output_tokens: int = 20) -> Completion:
    return Completion(text=text, finish_reason="stop", model=SONNET, usage=Usage(input_tokens, 0, 0, output_tokens))


def calls(*tool_calls: tuple[str, str, str]) -> Completion:
    return Completion(tool_calls=tuple(ToolCall(*c) for c in tool_calls), finish_reason="tool_calls", model=SONNET,
                      usage=Usage(100, 0, 0, 20))


class FakeClient:
    """Returns scripted completions (or raises scripted errors) and keeps every payload."""

    def __init__(self, *script):
        self.script = list(script)
        self.payloads: list[dict] = []

    def create(self, payload: dict, *, page: str | None = None) -> Completion:
        self.payloads.append(json.loads(json.dumps(payload)))
        item = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(item, Exception):
            raise item
        return item


class FakeStreamingClient(FakeClient):
    def stream(self, payload: dict, *, page: str | None = None):
        completion = self.create(payload, page=page)
        yield TextDelta(completion.text)
        yield Done(completion)


USER = [{"role": "user", "content": "What is 2+2?"}]
BASE = {"model": SONNET, "max_tokens": 500, "stream": False}
ALL_BUILTINS = [tool.definition for tool in BUILTIN_TOOLS.values()]


def loop_for(client, tools=None, handlers=None, **options) -> ToolLoop:
    return ToolLoop(client, BASE, ALL_BUILTINS if tools is None else tools,
                    builtin_handlers() if handlers is None else handlers, **options)


def test_calculator_is_called_and_its_result_sent_back():
    client = FakeClient(calls(("call_1", "calculator", '{"expression": "2+2"}')), answer("It is 4."))
    steps: list[ToolStep] = []
    result = loop_for(client, on_step=steps.append).run(USER)
    assert result.stopped_by == "answer"
    assert result.final_text == "It is 4."
    assert [s.index for s in steps] == [1, 2]
    second = client.payloads[1]["messages"]
    assert second[0] == USER[0]
    assert second[1]["role"] == "assistant"
    assert second[1]["tool_calls"] == [{"id": "call_1", "type": "function",
                                        "function": {"name": "calculator", "arguments": '{"expression": "2+2"}'}}]
    assert second[2] == {"role": "tool", "tool_call_id": "call_1", "content": "4"}
    assert result.messages[-1] == {"role": "assistant", "content": "It is 4."}
    executed = result.steps[0].calls[0]
    assert (executed.valid, executed.ran, executed.is_error, executed.result) == (True, True, False, "4")
    assert result.total_usage == Usage(200, 0, 0, 40)
    # Sonnet 4.5: $3 in / $15 out per MTok -> (100*3 + 20*15) / 1e6 per step
    assert result.total_cost_usd == pytest.approx(2 * 0.0006)
    assert result.steps[0].cost_usd == pytest.approx(0.0006)


def test_two_parallel_calls_both_run_and_results_keep_order():
    client = FakeClient(calls(("a", "calculator", '{"expression": "10/4"}'),
                              ("b", "convert_units", '{"value": 1, "from_unit": "mi", "to_unit": "km"}')),
                        answer("done"))
    result = loop_for(client).run(USER)
    assert result.stopped_by == "answer"
    tool_messages = client.payloads[1]["messages"][2:]
    assert [m["tool_call_id"] for m in tool_messages] == ["a", "b"]
    assert tool_messages[0]["content"] == "2.5"
    assert json.loads(tool_messages[1]["content"])["result"] == 1.609344
    assert len(client.payloads) == 2


def test_step_limit_stops_an_endless_loop():
    client = FakeClient(calls(("c", "calculator", '{"expression": "1+1"}')))  # always asks again
    result = loop_for(client, max_steps=3).run(USER)
    assert result.stopped_by == "step_limit"
    assert len(result.steps) == 3 and len(client.payloads) == 3
    assert result.final_text == ""
    assert result.messages[-1]["role"] == "tool"


def test_invalid_arguments_never_reach_the_handler():
    seen = []
    handlers = {"calculator": lambda args: seen.append(args) or "ran"}
    client = FakeClient(calls(("x", "calculator", '{"expression": 5}'), ("y", "calculator", "{not json"),
                              ("z", "nonexistent", "{}")),
                        answer("sorry"))
    result = loop_for(client, handlers=handlers).run(USER)
    assert seen == []
    assert result.stopped_by == "answer"
    x, y, z = result.steps[0].calls
    assert (x.valid, x.ran, x.is_error) == (False, False, True)
    assert x.result == "Error: invalid arguments: arguments.expression: 5 is not of type 'string'"
    assert y.result.startswith("Error: invalid arguments: not valid JSON: JSON syntax error at line 1, column 2")
    assert z.result == "Error: no tool named 'nonexistent' was offered"
    sent = [m["content"] for m in client.payloads[1]["messages"][2:]]
    assert sent == [x.result, y.result, z.result]


def test_a_raising_handler_becomes_an_error_result_and_the_loop_goes_on():
    def broken(args):
        raise RuntimeError("boom")

    client = FakeClient(calls(("r", "calculator", '{"expression": "1"}')),
                        calls(("s", "calculator", '{"expression": "1/0"}')), answer("ok"))
    handlers = {"calculator": broken}
    result = loop_for(client, handlers=handlers).run(USER)
    assert result.stopped_by == "answer"
    first = result.steps[0].calls[0]
    assert (first.ran, first.is_error, first.result) == (True, True, "Error: RuntimeError: boom")
    assert client.payloads[1]["messages"][2]["content"] == "Error: RuntimeError: boom"

    real = loop_for(FakeClient(calls(("s", "calculator", '{"expression": "1/0"}')), answer("ok"))).run(USER)
    assert real.steps[0].calls[0].result == "Error: division by zero"


def test_user_tool_without_handler_needs_input_then_resumes():
    tools = ALL_BUILTINS + [TEMPLATES["get_weather"]]
    client = FakeClient(calls(("w", "get_weather", '{"location": "Paris"}'),
                              ("c", "calculator", '{"expression": "3*3"}')),
                        answer("Sunny and 9."))
    loop = loop_for(client, tools=tools)
    paused = loop.run(USER)
    assert paused.stopped_by == "needs_input"
    assert [p.call.id for p in paused.pending] == ["w"]
    assert paused.steps[0].calls[1].result == "9"
    assert paused.messages[-1]["role"] == "assistant"
    with pytest.raises(ValueError, match="get_weather \\(w\\) has no result yet"):
        loop.results_message(paused.steps[0].calls)

    done = loop.resume(paused, {"w": '{"temp_c": 18, "sky": "sunny"}'})
    assert done.stopped_by == "answer" and done.final_text == "Sunny and 9."
    assert len(done.steps) == 2
    sent = client.payloads[1]["messages"][2:]
    assert sent == [{"role": "tool", "tool_call_id": "w", "content": '{"temp_c": 18, "sky": "sunny"}'},
                    {"role": "tool", "tool_call_id": "c", "content": "9"}]


def test_manual_step_proposes_checked_calls_without_running_them():
    seen = []
    client = FakeClient(calls(("m", "calculator", '{"expression": "2*3"}'), ("n", "calculator", "[]")))
    loop = loop_for(client, handlers={"calculator": lambda a: seen.append(a) or "6"})
    step = loop.step(USER)
    assert seen == []
    good, bad = step.calls
    assert (good.valid, good.ran, good.result) == (True, False, "")
    assert (bad.valid, bad.is_error) == (False, True)
    assert bad.result == "Error: invalid arguments: arguments must be a JSON object, not an array"
    messages = loop.results_message(step.calls, edited={"m": "six"})
    assert messages == [{"role": "tool", "tool_call_id": "m", "content": "six"},
                        {"role": "tool", "tool_call_id": "n", "content": bad.result}]
    assert loop.results_message([good], edited={"m": "nope"}, errors={"m"})[0]["content"] == "Error: nope"
    ran = loop.execute(good)
    assert (ran.ran, ran.result) == (True, "6") and seen == [{"expression": "2*3"}]
    following = loop.next_messages(USER, step, edited={"m": "6"})
    assert [m["role"] for m in following] == ["user", "assistant", "tool", "tool"]
    assert following[2] == {"role": "tool", "tool_call_id": "m", "content": "6"}


def test_client_error_stops_with_error():
    client = FakeClient(RateLimitError("slow down", status=429))
    result = loop_for(client).run(USER)
    assert result.stopped_by == "error"
    assert result.steps[0].completion is None and result.steps[0].cost_usd == 0.0
    assert result.error and "slow down" in result.error


def test_invalid_payload_is_an_error_step_before_sending():
    client = FakeClient(answer("never"))
    loop = ToolLoop(client, {"model": SONNET, "max_tokens": 0, "stream": False}, ALL_BUILTINS, builtin_handlers())
    result = loop.run(USER)
    assert result.stopped_by == "error" and client.payloads == []
    assert "max_tokens" in result.error


def test_cache_tools_puts_cache_control_on_the_last_definition_only():
    client = FakeClient(answer("hi"))
    loop_for(client, cache_tools_ttl="1h").run(USER)
    tools = client.payloads[0]["tools"]
    assert tools[-1]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert all("cache_control" not in t for t in tools[:-1])
    assert all("cache_control" not in t for t in ALL_BUILTINS)  # the loop's copy, not the originals


def test_cost_uses_the_one_hour_write_price_when_tools_are_cached_for_an_hour():
    written = Completion(text="x", model=SONNET, usage=Usage(0, 0, 1_000_000, 0))
    result = loop_for(FakeClient(written), cache_tools_ttl="1h").run(USER)
    assert result.total_cost_usd == pytest.approx(6.0)  # 2 x $3 input


def test_forced_tool_choice_applies_to_the_first_step_only():
    client = FakeClient(calls(("c", "calculator", '{"expression": "1"}')), answer("one"))
    base = {**BASE, "tool_choice": {"type": "function", "function": {"name": "calculator"}}}
    ToolLoop(client, base, ALL_BUILTINS, builtin_handlers()).run(USER)
    assert client.payloads[0]["tool_choice"] == {"type": "function", "function": {"name": "calculator"}}
    assert client.payloads[1]["tool_choice"] == "auto"


def test_streaming_client_events_reach_on_event():
    events = []
    client = FakeStreamingClient(answer("streamed"))
    loop = ToolLoop(client, {**BASE, "stream": True, "stream_options": {"include_usage": True}}, ALL_BUILTINS,
                    builtin_handlers(), on_event=events.append)
    result = loop.run(USER)
    assert result.final_text == "streamed"
    assert [type(e).__name__ for e in events] == ["TextDelta", "Done"]


def test_stream_flag_falls_back_to_create_for_a_client_without_stream():
    client = FakeClient(answer("plain"))
    ToolLoop(client, {**BASE, "stream": True, "stream_options": {"include_usage": True}}, ALL_BUILTINS,
             builtin_handlers()).run(USER)
    assert client.payloads[0]["stream"] is False and "stream_options" not in client.payloads[0]


def test_trace_exports_as_json():
    client = FakeClient(calls(("c", "calculator", '{"expression": "2+2"}')), answer("4"))
    result = loop_for(client).run(USER)
    exported = json.loads(result.to_json())
    assert exported["stopped_by"] == "answer"
    assert [s["index"] for s in exported["steps"]] == [1, 2]
    assert exported["steps"][0]["calls"][0] == {
        "id": "c", "name": "calculator", "arguments": '{"expression": "2+2"}', "valid": True, "problems": [],
        "result": "4", "is_error": False, "ran": True, "elapsed_ms": exported["steps"][0]["calls"][0]["elapsed_ms"]}
    assert exported["steps"][0]["request"]["tools"] == list(BUILTIN_TOOLS)
    assert exported["total_usage"]["output_tokens"] == 40
    assert exported["total_cost_usd"] == pytest.approx(0.0012)
    assert "Bearer" not in result.to_json()


def test_executed_call_fields():
    executed = ExecutedCall(ToolCall("i", "n", "{}"), True, [])
    assert (executed.result, executed.is_error, executed.ran, executed.elapsed_ms) == ("", False, False, 0.0)


def test_loop_over_the_local_router_with_the_real_client(local_router):
    from orq_core.client import OrqClient
    from orq_core.store import Store

    store = Store.default()
    client = OrqClient(local_router.base_url, local_router.api_key, run_log=store, page="tools")
    base = {"model": SONNET, "max_tokens": 400, "stream": True, "stream_options": {"include_usage": True}}
    loop = ToolLoop(client, base, [BUILTIN_TOOLS["calculator"].definition], builtin_handlers(),
                    cache_tools_ttl="5m")
    try:
        result = loop.run([{"role": "user", "content": "What is (2.5 + 4) * sqrt(16) / 3?"}])
    finally:
        client.close()
    assert result.stopped_by == "answer", result.error
    first = result.steps[0]
    assert [c.call.name for c in first.calls] == ["calculator"] and first.calls[0].ran
    assert result.messages[2]["role"] == "tool" and result.messages[2]["content"] == first.calls[0].result
    assert result.final_text
    assert result.total_usage.output_tokens > 0 and result.total_cost_usd > 0
    logged = store.runs(page="tools")
    assert len(logged) == 2 and all(r.status == "ok" for r in logged)
    assert store.spend_since(0) == pytest.approx(result.total_cost_usd)


# --- hostile schemas (issue 16, item 4) ------------------------------------------------------------

def nested(levels: int) -> dict:
    schema: dict = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"inner": schema}}
    return schema


def tool_with(parameters: dict) -> dict:
    return {"name": "deep", "description": "d", "parameters": parameters}


def test_a_schema_nested_100_levels_is_refused_in_the_definition_check():
    assert validate_tool_definition(tool_with(nested(100))) == [
        "parameters nest more than 32 levels deep; flatten them to 32 levels or fewer"]
    assert validate_tool_definition(tool_with(nested(15))) == []


@pytest.mark.parametrize("parameters, problem", [
    ({"type": "object", "properties": {"child": {"$ref": "#"}}},
     "parameters/properties/child: $ref '#' leads back to a schema that holds it, a loop with no end; "
     "spell out a fixed number of levels instead"),
    ({"type": "object", "properties": {"a": {"$ref": "#/$defs/x"}},
      "$defs": {"x": {"type": "object", "properties": {"y": {"$ref": "#/$defs/y"}}},
                "y": {"type": "object", "properties": {"x": {"$ref": "#/$defs/x"}}}}},
     "$ref '#/$defs/x' leads back to a schema that holds it, a loop with no end; spell out a fixed number of "
     "levels instead"),
    ({"type": "object", "properties": {"a": {"$ref": "http://169.254.169.254/schema.json"}}},
     "parameters/properties/a: $ref 'http://169.254.169.254/schema.json' is not in this schema; only local "
     "references like '#/$defs/name' are accepted (nothing is fetched)"),
    ({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}},
     "parameters/properties/a: $ref '#/$defs/missing' points at nothing in this schema"),
])
def test_references_that_loop_leave_or_miss_are_refused(parameters, problem):
    (found,) = validate_tool_definition(tool_with(parameters))
    assert found.endswith(problem)


def test_a_reference_used_twice_without_a_loop_is_fine_and_runs():
    shared = {"type": "object", "properties": {"from": {"$ref": "#/$defs/place"}, "to": {"$ref": "#/$defs/place"}},
              "required": ["from", "to"], "$defs": {"place": {"type": "string"}}}
    assert validate_tool_definition(tool_with(shared)) == []
    assert validate_arguments(tool_with(shared), '{"from": "Paris", "to": "Rome"}') == []


def test_editor_text_nested_100000_levels_is_refused_without_recursion():
    text = '[{"name": "x", "description": "d", "parameters": ' + "[" * 100_000 + "]" * 100_000 + "}]"
    assert parse_tool_definitions(text) == ([], [
        "the definitions nest lists or objects more than 64 levels deep; flatten them"])


def test_definitions_past_the_context_window_are_refused_with_their_size():
    from orq_core.tool_session import combine_tools

    huge = [{"name": "big", "description": "word " * 300_000, "parameters": {"type": "object"}}]
    toolset = combine_tools([], json.dumps(huge), context_window=200_000, model_label="Claude Sonnet 4.5")
    assert toolset.problems == [
        "The tool definitions are about 300,386 tokens, more than Claude Sonnet 4.5's 200,000-token context "
        "window, so no request could carry them: shorten the descriptions and schemas, or offer fewer tools."]
    small = combine_tools([], json.dumps([GOOD]), context_window=200_000, model_label="Claude Sonnet 4.5")
    assert small.problems == [] and small.tokens == 424
