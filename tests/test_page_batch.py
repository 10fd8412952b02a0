"""The Batch page through the real entry point against the local router."""

import json

import pytest
from page_support import deferred_download, keep_media_files, open_app

import orq_core.batch
from orq_core.batch import Batch, records_csv
from orq_core.cost import cost_of
from orq_core.store import Store

SONNET = "anthropic/claude-sonnet-4-5-20250929"
HAIKU = "anthropic/claude-haiku-4-5-20251001"
CSV = "question,answer\n" + "".join(f"What is item {n}?,item {n}\n" for n in range(1, 7))


@pytest.fixture
def app(page_env, monkeypatch):
    keep_media_files(monkeypatch)
    return open_app("app_pages/batch.py")


def upload(at, data: str = CSV, name: str = "rows.csv"):
    at.file_uploader(key="batch_upload").set_value((name, data.encode("utf-8"), "text/csv")).run()
    assert not at.exception, at.exception


def prepare(at, template="Answer briefly: {{question}}", targets=(SONNET, HAIKU)):
    upload(at)
    at.text_area(key="batch_template").set_value(template).run()
    at.multiselect(key="batch_targets").set_value(list(targets)).run()
    at.number_input(key="batch_max_tokens").set_value(64).run()
    assert not at.exception, at.exception


def run(at, key="batch_run"):
    at.button(key=key).click().run()
    assert not at.exception, at.exception


def test_upload_shows_preview_row_count_and_columns(app):
    upload(app)
    assert "6 rows · columns: question, answer" in [c.value for c in app.caption]
    preview = app.dataframe[0].value
    assert list(preview.columns) == ["row", "question", "answer"] and len(preview) == 5


def test_run_shows_table_summary_projection_and_charts(app):
    prepare(app)
    app.toggle(key="batch_cache").set_value(True).run()
    app.text_area(key="batch_system").set_value("word " * 1197).run()
    run(app)
    batch: Batch = app.session_state["batch"]
    assert len(batch.records) == 12 and all(r.ok for r in batch.records.values())
    table = app.dataframe[-2].value
    assert len(table) == 12 and list(table["status"]) == ["ok"] * 12
    summary = app.dataframe[-1].value
    assert list(summary["target"]) == [SONNET, HAIKU] and list(summary["ok"]) == [6, 6]
    for record in batch.records.values():
        assert record.cost == cost_of(record.usage, record.target, "5m")
    sonnet = batch.summary()[0]
    assert (sonnet.usage.cache_write_tokens, sonnet.usage.cache_read_tokens) == (1200, 6000)
    assert all(r.why for r in batch.records.values())  # the cache doctor's sentence fills the slot
    assert any(m.value.startswith(f"{SONNET}: at 1,000 rows a day, 30 days cost $") for m in app.markdown)
    assert len(app.get("plotly_chart")) == 3
    exports = app.get("download_button")
    assert [b.label for b in exports] == ["Export JSON", "Export CSV"]
    assert json.loads(deferred_download(exports[0]))["summary"][1]["ok"] == 6
    assert deferred_download(exports[1]).decode() == records_csv(batch.ordered_records())
    saved = Batch.load(Store.default(), batch.id)
    assert len(saved.records) == 12 and json.loads(saved.to_json())["summary"][0]["ok"] == 6


def test_an_unknown_column_is_refused_before_anything_is_sent(app):
    prepare(app, template="Answer: {{questoin}}")
    assert [e.value for e in app.error] == [
        "The template uses {{questoin}} but the data has no column 'questoin'; its columns are: question, answer."]
    assert not [b for b in app.button if b.key == "batch_run"]


def test_stop_midway_then_run_missing_rows(app, monkeypatch):
    real_run = orq_core.batch.run_batch

    def stopped_after_three(client, batch, **options):  # what the Stop button does, three rows in
        done = []
        original = options.pop("on_record")
        page_stop = options.pop("should_stop")

        def on_record(record, progress):
            done.append(record)
            original(record, progress)

        return real_run(client, batch, on_record=on_record, should_stop=lambda: page_stop() or len(done) >= 3,
                        **options)

    prepare(app, targets=(HAIKU,))
    app.slider(key="batch_concurrency").set_value(1).run()
    monkeypatch.setattr(orq_core.batch, "run_batch", stopped_after_three)
    run(app)
    batch = app.session_state["batch"]
    assert (len(batch.records), batch.stopped) == (3, True)
    assert "3 of 6 row x target results are missing (stopped)." in [w.value for w in app.warning]
    monkeypatch.setattr(orq_core.batch, "run_batch", real_run)
    run(app, key="batch_resume")
    batch = app.session_state["batch"]
    assert len(batch.records) == 6 and not batch.missing()
    assert not [w for w in app.warning if "missing" in w.value]
    assert [r.row for r in Batch.load(Store.default(), batch.id).ordered_records()] == [1, 2, 3, 4, 5, 6]


def test_a_saved_batch_reopens(app):
    prepare(app, targets=(HAIKU,))
    run(app)
    batch_id = app.session_state["batch"].id
    app.button(key="batch_new").click().run()
    assert app.session_state["batch"] is None
    app.selectbox(key="batch_open").set_value(batch_id).run()
    assert app.session_state["batch"].id == batch_id and len(app.session_state["batch"].records) == 6
    assert app.text_area(key="batch_template").value == "Answer briefly: {{question}}"


def test_the_spend_guard_refuses_with_the_numbers(app):
    prepare(app)
    app.sidebar.number_input(key="budget_Local router").set_value(0.0001).run()
    run(app)
    assert app.session_state.get("batch") is None
    assert app.error[0].value.startswith("Not sent: 6 rows x 2 targets = 12 requests could cost up to $")
    assert app.error[0].value.endswith("and this session has spent $0 of its $0.0001 budget. Take fewer rows or "
                                       "targets, lower max_tokens, or raise the budget in the sidebar.")


def test_the_chat_parameter_rules_apply_before_sending(app):
    prepare(app, targets=(HAIKU,))
    app.number_input(key="batch_thinking").set_value(2048).run()
    assert [e.value for e in app.error] == [
        "The request was not sent: must be less than max_tokens (64): thinking counts against max_tokens (field "
        "`thinking.budget_tokens`). Change it and try again."]
