"""History page under AppTest: its figures equal hand sums of seeded run-log rows, and only the
person's own rows count."""

import pytest
from page_support import by_label, deferred_download, keep_media_files, open_app

from orq_core.history import today_utc
from orq_core.store import Store
from test_history import SONNET, seeded_runs


@pytest.fixture
def app(page_env, monkeypatch):
    keep_media_files(monkeypatch)
    store = Store.default()
    for run in seeded_runs(today_utc()):
        store.log_run(run)  # the single user: the page runs without an identity
    store.for_owner("bob@example.com").log_run(seeded_runs(today_utc())[0])  # someone else's: never counted
    return open_app("app_pages/history.py")


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_the_figures_are_the_hand_sums_of_the_rows(app):
    shown = metrics(app)
    assert shown["Requests"] == "4"
    assert shown["Spend"] == "$0.0198"  # 0.0069 + 0.0120 + 0 + 0.0009
    assert shown["Saved by caching"] == "$0.0075"  # 0.0081 - 0.0015 + 0 + 0.0009
    assert shown["Cache hit rate"] == "47%"  # 4,000 cache-read of 8,500 input tokens
    assert shown["Error rate"] == "25%"  # 1 of 4
    assert shown["TTFT p50 / p95"] == "200 / 300 ms"
    captions = " ".join(c.value for c in app.caption)
    assert "Latency p50 / p95: 1,000 / 2,000 ms" in captions
    assert "2,500 uncached in, 4,000 cache read, 2,000 cache write, 360 out" in captions
    table = app.dataframe[0].value
    assert len(table) == 4 and table["cost_usd"].sum() == pytest.approx(0.0198)
    assert list(table["request_id"]) == ["req_d", "req_a", "req_c", "req_b"]
    exported = deferred_download(by_label(app.download_button, "Export CSV")).decode().splitlines()
    assert len(exported) == 5 and "request_id" in exported[0] and "req_d" in exported[1]
    assert not app.exception


def test_filters_narrow_the_figures(app):
    by_label(app.multiselect, "Status").set_value(["error"]).run()
    assert metrics(app)["Requests"] == "1" and metrics(app)["Error rate"] == "100%"
    by_label(app.multiselect, "Status").set_value([]).run()
    by_label(app.multiselect, "Model").set_value([SONNET]).run()
    assert metrics(app)["Requests"] == "2" and metrics(app)["Spend"] == "$0.0189"
    by_label(app.text_input, "Search").set_value("req_b").run()
    assert metrics(app)["Requests"] == "1"
    today = today_utc()
    by_label(app.text_input, "Search").set_value("").run()
    by_label(app.date_input, "Dates").set_value((today, today)).run()
    assert metrics(app)["Requests"] == "1" and metrics(app)["Spend"] == "$0.0069"
    assert not app.exception


def test_no_rows_is_a_sentence(page_env):
    at = open_app("app_pages/history.py")
    assert [i.value for i in at.info] == ["No requests match. Send one from any page, or widen the dates and filters."]
    assert not at.exception


def test_history_shows_a_request_sent_from_chat(page_env):
    at = open_app()
    at.chat_input[0].set_value("Hello there").run()
    at.switch_page("app_pages/history.py").run()
    assert metrics(at)["Requests"] == "1"
    assert list(at.dataframe[0].value["page"]) == ["chat"]
