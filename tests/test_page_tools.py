"""The Tools page through the real entry point against the local router, and its session logic."""

import json

import pytest
from page_support import by_label, open_app

from orq_core.client import OrqClient
from orq_core.errors import OrqError
from orq_core.store import Store
from orq_core.tool_session import (ANSWER, AWAITING, ERROR, STEP_LIMIT, TRACE_KIND, ToolSession, ToolSettings,
                                   add_template, combine_tools, load_trace_json, tool_choice_value)
from orq_core.tools import BUILTIN_TOOLS, TEMPLATES

MODEL = "anthropic/claude-sonnet-4-5-20250929"
WEATHER = "It is 17 degrees and drizzling in Paris"


# --- page helpers ------------------------------------------------------------------------------

@pytest.fixture
def page(page_env):
    return open_app("app_pages/tools.py")


def click(at, label):
    by_label(at.button, label).click().run()
    assert not at.exception, at.exception


def run_prompt(at, prompt, *, mode=None, builtins=None):
    if builtins is not None:
        at.multiselect(key="builtin_tools").set_value(builtins)
    if mode is not None:
        at.radio(key="tool_mode").set_value(mode)
    at.text_area(key="tool_prompt").set_value(prompt)
    at.run()
    click(at, "Run")
    return at.session_state["tool_session"]


def page_text(at) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [c.value for c in at.code]
    parts += [h.value for h in at.subheader]
    return "\n".join(parts + [w.value for w in at.warning] + [e.value for e in at.error])


def pending_key(session, what, call):
    return f"{what}_{session.id}_{len(session.steps)}_{call.call.id}"


# --- page tests --------------------------------------------------------------------------------

def test_calculator_result_is_used_in_the_final_answer(page):
    session = run_prompt(page, "What is 1234 * 5678?")
    assert session.status == ANSWER and len(session.steps) == 2
    (call,) = session.steps[0].calls
    assert call.call.name == "calculator" and call.ran and call.result == "7006652"
    assert "7006652" in session.final_text
    text = page_text(page)
    assert "7006652" in text and "Final answer" in text
    total = sum(step.cost_usd for step in session.steps)
    assert total > 0 and "Running total after step 2" in text
    assert session.steps[1].completion.usage.input_tokens > session.steps[0].completion.usage.input_tokens


def test_user_tool_answered_by_hand_step_by_step(page):
    session = run_prompt(page, "What's the weather in Paris?", mode="step", builtins=[])
    assert session.status == AWAITING and len(session.steps) == 1
    (call,) = session.pending
    assert call.call.name == "get_weather" and json.loads(call.call.arguments)["location"] == "Paris"
    assert not call.ran and "1 tool call waiting for you" in page_text(page)
    click(page, "Send results to the model")  # nothing typed yet: refused, nothing sent
    assert "Type a result for get_weather first." in page_text(page) and len(session.steps) == 1
    page.text_area(key=pending_key(session, "result", call)).set_value(WEATHER).run()
    click(page, "Send results to the model")
    session = page.session_state["tool_session"]
    assert session.status == ANSWER and len(session.steps) == 2
    assert WEATHER in session.final_text
    assert session.steps[0].calls[0].result == WEATHER
    assert "result typed by you" in page_text(page) and WEATHER in page_text(page)


def test_two_builtin_tools_called_in_parallel(page):
    session = run_prompt(page, "What time is it in Asia/Tokyo and what is 2.5 miles in km?")
    calls = session.steps[0].calls
    assert sorted(c.call.name for c in calls) == ["convert_units", "current_time"]
    assert all(c.ran and not c.is_error for c in calls)
    by_name = {c.call.name: json.loads(c.result) for c in calls}
    assert by_name["convert_units"]["result"] == pytest.approx(4.02336)
    assert by_name["current_time"]["timezone"] == "Asia/Tokyo"
    assert session.status == ANSWER and "4.02336" in session.final_text


def test_parallel_calls_off_sends_one_call_per_step(page):
    page.toggle(key="tool_parallel").set_value(False)
    session = run_prompt(page, "What time is it in Asia/Tokyo and what is 2.5 miles in km?")
    assert len(session.steps[0].calls) == 1
    assert session.first_request()["parallel_tool_calls"] is False


def test_step_limit_stops_a_forced_loop(page):
    page.selectbox(key="tool_choice").set_value("required")
    page.run()
    page.toggle(key="tool_force").set_value(True)
    page.number_input(key="tool_max_steps").set_value(1)
    session = run_prompt(page, "Tell me about France")
    assert session.status == STEP_LIMIT and len(session.steps) == 1
    assert session.steps[0].request_summary["tool_choice"] == "required"
    assert session.messages[-1]["role"] == "tool"  # results ready, but no model call was left
    assert "Stopped at the step limit (1 model call)" in page_text(page)


def test_edited_invalid_arguments_are_shown_and_never_run(page):
    session = run_prompt(page, "What is 1234 * 5678?", mode="step")
    (call,) = session.pending
    assert call.ran and call.result == "7006652"
    page.text_area(key=pending_key(session, "args", call)).set_value('{"expression": 42}').run()
    edited = session.pending[0]
    assert not edited.valid and not edited.ran and "42 is not of type 'string'" in edited.problems[0]
    assert "Not valid, so the tool will not run" in page_text(page)
    click(page, "Send results to the model")
    sent = session.steps[0].calls[0]
    assert not sent.ran and sent.is_error and sent.result.startswith("Error: invalid arguments")
    assert session.messages[1]["tool_calls"][0]["function"]["arguments"] == '{"expression": 42}'
    assert session.messages[2]["content"].startswith("Error: invalid arguments")
    assert session.status == ANSWER and "failed" in session.final_text and "7006652" not in session.final_text
    assert "arguments edited by you" in page_text(page)


def test_result_marked_as_error_in_step_mode(page):
    session = run_prompt(page, "What is 1234 * 5678?", mode="step")
    (call,) = session.pending
    page.checkbox(key=pending_key(session, "error", call)).check().run()
    click(page, "Send results to the model")
    assert session.messages[2]["content"] == "Error: 7006652"
    assert session.steps[0].calls[0].is_error and "marked as an error by you" in page_text(page)


def test_failing_tool_becomes_an_error_result_and_the_loop_goes_on(page):
    session = run_prompt(page, "What is 1/0?")
    (call,) = session.steps[0].calls
    assert call.ran and call.is_error and call.result == "Error: division by zero"
    assert session.status == ANSWER and "division by zero" in session.final_text


def test_cached_tool_definitions_are_read_by_later_steps(page):
    page.toggle(key="tool_cache").set_value(True)
    session = run_prompt(page, "What is 1234 * 5678?")
    first, second = (s.completion.usage for s in session.steps)
    assert first.cache_write_tokens > 1024 and first.cache_read_tokens == 0
    assert second.cache_read_tokens == first.cache_write_tokens
    assert session.steps[0].request_summary["cache_tools_ttl"] == "5m"
    assert "cache_control" in session.first_request()["tools"][-1]
    click(page, "Run")  # a repeated loop reads the tool prefix from the start
    again = page.session_state["tool_session"].steps[0].completion.usage
    assert again.cache_read_tokens == first.cache_write_tokens and again.cache_write_tokens == 0


def test_definition_editor_is_validated_as_you_type(page):
    editor = page.text_area(key="tool_editor")
    editor.set_value('[{"name": "get weather!", "description": "x", "parameters": {"type": "object"}}]').run()
    assert "name must be 1-64 letters" in page_text(page)
    assert by_label(page.button, "Run").disabled
    editor.set_value('[{"name": "w", "description": "x", "parameters": {"type": "object", '
                     '"properties": {"n": {"type": "integer", "minimum": "zero"}}}}]').run()
    assert "not valid JSON Schema" in page_text(page)
    page.text_area(key="tool_editor").set_value("[").run()
    assert "JSON syntax error at line 1" in page_text(page)
    page.text_area(key="tool_editor").set_value("[]").run()
    page.selectbox(key="template_choice").set_value("web_search").run()
    click(page, "Add")
    assert json.loads(page.text_area(key="tool_editor").value)[0]["function"]["name"] == "web_search"
    assert "Valid: web_search" in "\n".join(s.value for s in page.success)
    assert not by_label(page.button, "Run").disabled


def test_spend_guard_refuses_before_sending(page_env, monkeypatch):
    monkeypatch.setenv("ORQ_SPEND_BUDGET_USD", "0.0001")
    page = open_app("app_pages/tools.py")
    assert page.session_state["ctx"].budget_usd == pytest.approx(0.0001)
    session = run_prompt(page, "What is 1234 * 5678?")
    assert session.status == ERROR and session.steps[0].completion is None
    assert "Not sent" in session.error and "Not sent" in page_text(page)


def test_trace_is_saved_and_exported(page):
    session = run_prompt(page, "What is 1234 * 5678?")
    exported = json.loads(session.to_json())
    assert exported["status"] == "answer" and exported["stopped_by"] == "answer"
    assert exported["steps"][0]["calls"][0]["result"] == "7006652"
    assert exported["total_cost_usd"] == pytest.approx(sum(s.cost_usd for s in session.steps))
    assert exported["total_usage"]["output_tokens"] == sum(s.completion.usage.output_tokens for s in session.steps)
    saved = json.loads(load_trace_json(Store.default(), session.id))
    assert saved["id"] == session.id and saved["steps"][1]["completion"]["text"] == session.final_text


# --- session logic (orq_core) ------------------------------------------------------------------

@pytest.fixture
def client(local_router):
    with OrqClient(local_router.base_url, local_router.api_key) as c:
        yield c


def tools_for(*builtins, user=()):
    return combine_tools(builtins, json.dumps([TEMPLATES[n] for n in user])).definitions


def test_invalid_arguments_never_reach_the_handler(client):
    seen = []
    handlers = {"calculator": lambda args: seen.append(args) or "42"}
    session = ToolSession.start(ToolSettings(MODEL, mode="step"), tools_for("calculator"), "What is 6 * 7?",
                                handlers=handlers)
    session.advance(client)
    assert seen == [{"expression": "6 * 7"}]
    call_id = session.pending[0].call.id
    for bad in ('{"expression": 6}', '{"expr": "6*7"}', "not json", '["6*7"]'):
        assert not session.edit_arguments(call_id, bad).valid
    session.send({}, [], client)
    assert seen == [{"expression": "6 * 7"}]  # only the model's own, valid call ever ran
    assert session.steps[0].calls[0].result.startswith("Error: invalid arguments")
    assert session.status == ANSWER


def test_raising_handler_becomes_an_error_result_and_the_loop_goes_on(client):
    def broken(arguments):
        raise RuntimeError("the database is on fire")

    session = ToolSession.start(ToolSettings(MODEL), tools_for("calculator"), "What is 6 * 7?",
                                handlers={"calculator": broken})
    session.advance(client)
    (call,) = session.steps[0].calls
    assert call.is_error and call.result == "Error: RuntimeError: the database is on fire"
    assert session.status == ANSWER and "the database is on fire" in session.final_text


def test_auto_mode_stops_for_a_user_tool_and_resumes(client):
    session = ToolSession.start(ToolSettings(MODEL), tools_for(user=["get_weather"]), "What's the weather in Oslo?")
    session.advance(client)
    assert session.status == AWAITING and [c.call.name for c in session.pending] == ["get_weather"]
    with pytest.raises(ValueError, match="type a result for get_weather"):
        session.send({}, [], client)
    session.send({session.pending[0].call.id: "Snow, -3 C"}, [], client)
    assert session.status == ANSWER and "Snow, -3 C" in session.final_text
    assert [m["role"] for m in session.messages] == ["user", "assistant", "tool", "assistant"]


class AlwaysCalls:
    """A scripted client whose model calls the calculator every time (as a forced tool_choice makes it)."""

    def __init__(self):
        self.payloads = []

    def create(self, payload, page=None):
        from orq_core.types import Completion, ToolCall
        from orq_core.usage import Usage

        self.payloads.append(payload)
        n = len(self.payloads)
        return Completion(tool_calls=(ToolCall(f"call_{n}", "calculator", '{"expression": "1+1"}'),),
                          finish_reason="tool_calls", model=MODEL, usage=Usage(100, 0, 0, 10))


def test_step_limit_ends_a_loop_that_would_go_on():
    client = AlwaysCalls()
    settings = ToolSettings(MODEL, tool_choice="required", force_every_step=True, max_steps=3)
    session = ToolSession.start(settings, tools_for("calculator"), "Add one and one")
    session.advance(client)
    assert session.status == STEP_LIMIT and len(session.steps) == 3 and len(client.payloads) == 3
    assert [p["tool_choice"] for p in client.payloads] == ["required"] * 3
    totals = session.running_totals()
    assert [t.usage.output_tokens for t in totals] == [10, 20, 30]
    assert totals[-1].cost_usd == pytest.approx(3 * (100 * 3 + 10 * 15) / 1e6)


def test_step_mode_respects_the_step_limit():
    client = AlwaysCalls()
    session = ToolSession.start(ToolSettings(MODEL, mode="step", max_steps=2), tools_for("calculator"), "1+1?")
    session.advance(client)
    session.send({}, [], client)
    assert session.status == AWAITING and len(client.payloads) == 2
    session.send({}, [], client)
    assert session.status == STEP_LIMIT and len(client.payloads) == 2


def test_guard_refusal_sends_nothing():
    client = AlwaysCalls()

    def refuse(payload):
        raise OrqError("Not sent: over budget")

    session = ToolSession.start(ToolSettings(MODEL), tools_for("calculator"), "1+1?")
    session.advance(client, guard=refuse)
    assert session.status == ERROR and session.error == "Not sent: over budget" and client.payloads == []


def test_combine_tools_and_templates():
    text, problem = add_template("", "get_weather")
    assert problem is None
    assert add_template(text, "get_weather")[1] == "get_weather is already in your tools"
    assert "Fix the JSON first" in add_template("{", "web_search")[1]
    clash = json.dumps([BUILTIN_TOOLS["calculator"].definition])
    toolset = combine_tools(["calculator"], clash)
    assert toolset.names == ["calculator"] and "a built-in tool has this name" in toolset.problems[0]
    assert tool_choice_value("get_weather") == {"type": "function", "function": {"name": "get_weather"}}
    assert tool_choice_value("none") == "none"


def test_saved_trace_round_trip(tmp_path):
    store = Store(tmp_path / "t.db")
    session = ToolSession.start(ToolSettings(MODEL), tools_for("calculator"), "1+1?")
    session.advance(AlwaysCalls())
    session.save(store)
    (doc,) = store.list_docs(TRACE_KIND)
    assert doc.name == "1+1?"
    assert json.loads(load_trace_json(store, session.id))["status"] == "step_limit"
    assert load_trace_json(store, "missing") is None


@pytest.mark.parametrize("choice, first_calls", [("lookup_table", ["lookup_table"]), ("none", [])])
def test_tool_choice_a_named_tool_or_none(client, choice, first_calls):
    session = ToolSession.start(ToolSettings(MODEL, tool_choice=choice), tools_for(*BUILTIN_TOOLS),
                                "What is 1234 * 5678 and what is the capital of France?")
    session.advance(client)
    assert [c.call.name for c in session.steps[0].calls] == first_calls
    assert session.steps[0].request_summary["tool_choice"] == tool_choice_value(choice)
    assert session.status == ANSWER
