"""The Compare page driven through the real entry point against the local router."""

import json

import pytest
from page_support import open_app

from orq_core.cost import cost_of
from orq_core.store import Store

SONNET = "anthropic/claude-sonnet-4-5-20250929"
AWS_SONNET = "aws/anthropic/claude-sonnet-4-5-20250929"
GOOGLE_SONNET = "google/anthropic/claude-sonnet-4-5-20250929"
HAIKU = "anthropic/claude-haiku-4-5-20251001"


@pytest.fixture
def start(page_env):
    return lambda: open_app("app_pages/compare.py")


@pytest.fixture
def app(start):
    return start()


def send(at, text):
    at.chat_input(key="cmp_prompt").set_value(text).run()
    assert not at.exception, at.exception


def comparison(at):
    return at.session_state["compare"]


def test_three_columns_answer_side_by_side(app):
    assert [app.selectbox(key=f"cmp_target_{i}").value for i in range(3)] == [SONNET, AWS_SONNET, GOOGLE_SONNET]
    send(app, "What is prompt caching?")
    columns = comparison(app).columns
    assert [c.target.slug for c in columns] == [SONNET, AWS_SONNET, GOOGLE_SONNET]
    for column in columns:
        [sample] = column.samples
        assert sample.ok and sample.completion.usage.output_tokens > 0, sample.error
        assert sample.completion.model == column.target.slug
    texts = [m.value for m in app.markdown]
    for column in columns:
        assert any(column.samples[0].completion.text.strip()[:40] in t for t in texts)
    assert not app.error
    table = app.dataframe[0].value
    assert list(table["target"]) == [SONNET, AWS_SONNET, GOOGLE_SONNET]
    assert (table["failed"] == 0).all() and (table["output_tokens"] > 0).all()
    assert sum(table["cheapest"]) >= 1 and sum(table["fastest"]) >= 1
    assert [b.label for b in app.get("download_button")] == ["Export JSON", "Table CSV"]


def test_a_failing_column_shows_its_error_while_the_others_finish(app):
    app.selectbox(key="cmp_fault_1").set_value("529 overloaded").run()
    send(app, "Name a large river.")
    first, failed, third = comparison(app).columns
    assert first.samples[0].ok and third.samples[0].ok
    assert not failed.samples[0].ok and failed.samples[0].completion is None
    assert "529" in failed.samples[0].error or "overloaded" in failed.samples[0].error.lower()
    assert [e.value for e in app.error] == [failed.samples[0].error]
    rows = comparison(app).summary_rows()
    assert [r["failed"] for r in rows] == [0, 1, 0]
    assert app.dataframe[0].value["error"][1] == failed.samples[0].error


def test_summary_costs_equal_cost_of_each_columns_usage(app):
    app.selectbox(key="cmp_target_2").set_value(HAIKU).run()
    app.text_area(key="cmp_system").set_value("You answer in one sentence. " * 400).run()
    app.toggle(key="cmp_cache").set_value(True).run()
    send(app, "Why is the sky blue?")
    columns = comparison(app).columns
    table = app.dataframe[0].value
    for i, column in enumerate(columns):
        [sample] = column.samples
        completion = sample.completion
        expected = float(cost_of(completion.usage, completion.model, "5m").total)
        assert expected > 0
        assert comparison(app).summary_rows()[i]["cost_usd"] == expected
        assert table["cost_usd"][i] == expected
    assert columns[0].samples[0].completion.usage.cache_write_tokens > 1024
    assert table["cheapest"][2] and not table["cheapest"][0]  # Haiku, on comparable tokens


def test_follow_up_continues_each_columns_conversation(app):
    send(app, "Pick a number.")
    send(app, "Now double it.")
    assert comparison(app).turns == 2
    for column in comparison(app).columns:
        assert [m["role"] for m in column.messages] == ["user", "assistant", "user", "assistant"]
        assert [e.user_text for e in column.exchanges] == ["Pick a number.", "Now double it."]
    assert app.selectbox(key="cmp_target_0").disabled  # models are fixed once a conversation started


def test_repeats_give_medians_and_a_latency_chart(app):
    app.segmented_control(key="cmp_columns").set_value(2).run()
    app.number_input(key="cmp_repeat").set_value(3).run()
    send(app, "Count to three.")
    assert [len(c.samples) for c in comparison(app).columns] == [3, 3]
    table = app.dataframe[0].value
    assert list(table["runs"]) == [3, 3]
    assert (table["latency_min_ms"] <= table["latency_ms"]).all()
    assert (table["latency_ms"] <= table["latency_max_ms"]).all()
    assert len(app.get("plotly_chart")) == 1


def test_spend_guard_refuses_the_whole_batch_and_keeps_the_message(start, monkeypatch):
    # each Sonnet request fits (1,024 output tokens at $15/MTok is about $0.0154), three do not
    monkeypatch.setenv("ORQ_SPEND_BUDGET_USD", "0.04")  # the sidebar's default budget
    app = start()
    send(app, "Write me a very long story.")
    assert "compare" not in app.session_state or app.session_state["compare"] is None
    assert any("Not sent: these 3 requests could cost up to" in e.value for e in app.error)
    assert any("Write me a very long story." in c.value for c in app.code)


def test_save_then_open_from_the_sidebar(app, tmp_path):
    send(app, "Hello there.")
    saved_id = comparison(app).id
    app.button(key="cmp_save").click().run()
    [doc] = Store(tmp_path / "pages.db").list_docs("comparison")
    assert doc.id == saved_id and doc.name == "Hello there."
    assert json.dumps(doc.data)  # stored as plain JSON
    app.sidebar.button(key="cmp_new").click().run()
    assert app.session_state["compare"] is None
    app.sidebar.selectbox(key="cmp_open").set_value(saved_id).run()
    assert not app.exception, app.exception
    assert comparison(app).id == saved_id and comparison(app).turns == 1


def test_thinking_in_one_column_streams_and_replays_its_signature(app):
    app.number_input(key="cmp_max_tokens_0").set_value(4096).run()
    app.number_input(key="cmp_thinking_0").set_value(2048).run()
    send(app, "Think about why the sea is salty.")
    send(app, "And why is it blue?")
    thinking, plain, _ = comparison(app).columns
    for exchange in thinking.exchanges:
        assert exchange.answer.ok, exchange.answer.error
        assert exchange.answer.completion.reasoning and exchange.answer.completion.reasoning_signature
    assert plain.exchanges[1].answer.ok and not plain.exchanges[1].answer.completion.reasoning
    assert thinking.messages[1]["content"][0]["type"] == "reasoning"
    assert not app.error


def test_an_invalid_column_shows_why_and_the_others_answer(app):
    app.number_input(key="cmp_thinking_1").set_value(512).run()  # below the 1,024 minimum
    send(app, "Hello.")
    first, invalid, third = comparison(app).columns
    assert first.samples[0].ok and third.samples[0].ok
    assert invalid.samples[0].completion is None and "1024" in invalid.samples[0].error.replace(",", "")
    assert [e.value for e in app.error] == [invalid.samples[0].error]


def test_columns_are_told_apart_by_their_first_characters(app):
    """At 1024x768 a column's box shows about ten characters: the provider comes first, and the
    full name is written out below the box, where it wraps instead of being cut."""
    boxes = [s for s in app.selectbox if s.label.startswith("Column ")]
    shown = [box.options[box.index] for box in boxes]
    assert shown == ["Anthropic · Sonnet 4.5", "Bedrock · Sonnet 4.5", "Vertex · Sonnet 4.5"]
    assert len({text[:9] for text in shown}) == 3
    names = [m.value for m in app.markdown]
    for full in ("**Anthropic (direct)** · Claude Sonnet 4.5", "**AWS Bedrock** · Claude Sonnet 4.5",
                 "**Google Vertex AI** · Claude Sonnet 4.5"):
        assert full in names
