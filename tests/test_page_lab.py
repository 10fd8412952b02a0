"""The Caching Lab page driven through the real entry point against the local router."""

import csv
import io

import pytest
from streamlit.testing.v1 import AppTest

from page_support import by_label, downloaded, keep_media_files, open_app

from orq_core.cost import format_usd
from orq_core.lab import ExperimentResult
from orq_core.store import Store

SONNET = "anthropic/claude-sonnet-4-5-20250929"


def open_lab(monkeypatch) -> AppTest:
    keep_media_files(monkeypatch)
    return open_app("app_pages/caching_lab.py")


@pytest.fixture
def app(page_env, monkeypatch):
    return open_lab(monkeypatch)


def run_book(at, *, tokens=2_000, requests=3, ttl="5m", arms=("no-cache", "prompt-cache")) -> ExperimentResult:
    by_label(at.slider, "Book size (tokens)").set_value(tokens)
    by_label(at.number_input, "Requests per arm").set_value(requests)
    by_label(at.radio, "Cache TTL").set_value(ttl)
    by_label(at.multiselect, "Arms to compare").set_value(list(arms))
    by_label(at.button, "Run experiment").click().run()
    assert not at.exception, at.exception
    return at.session_state["lab_result"]


def metric(at, label):
    return by_label(at.metric, label)


def test_designer_shows_the_preflight_before_running(app):
    assert by_label(app.multiselect, "Models and providers").value == [SONNET]
    by_label(app.slider, "Book size (tokens)").set_value(2_000)
    by_label(app.button, "Check plan").click().run()
    prefix = metric(app, "Cached prefix (request 1)").value
    assert prefix.endswith(" tokens") and 2_000 <= int(prefix.split()[0].replace(",", "")) < 2_200
    assert metric(app, "Break-even request").value == "#2"
    assert any("at least 1,024 tokens" in c.value for c in app.caption)
    assert "lab_result" not in app.session_state


def test_short_prefix_warns_against_the_model_minimum(app):
    by_label(app.multiselect, "Models and providers").set_value(["anthropic/claude-haiku-4-5-20251001"])
    by_label(app.slider, "Book size (tokens)").set_value(2_000)
    by_label(app.button, "Check plan").click().run()
    assert any("below Claude Haiku 4.5's minimum of 4,096" in w.value for w in app.warning)


@pytest.mark.parametrize("preset, label, value", [
    ("many-shot", "Examples (N)", 300), ("multi-turn", "Earlier turns before request 1", 2),
    ("tools", "Tool definitions", 60)])
def test_each_preset_plans_a_cacheable_prefix(app, preset, label, value):
    by_label(app.radio, "Preset").set_value(preset).run()
    by_label(app.number_input, label).set_value(value)
    by_label(app.button, "Check plan").click().run()
    assert not app.exception and not app.error
    prefix = int(metric(app, "Cached prefix (request 1)").value.split()[0].replace(",", ""))
    assert prefix > 1_024


def test_custom_preset_needs_text_then_takes_an_uploaded_file(app):
    by_label(app.radio, "Preset").set_value("custom").run()
    assert any("needs some context text" in e.value for e in app.error)
    document = "# Field notes\n\n" + "The tide came in twice before noon, and the gulls followed it. " * 200
    uploader = by_label(app.file_uploader, "…or upload it (.txt, .md)")
    uploader.set_value(("notes.md", document.encode(), "text/markdown"))
    by_label(app.button, "Run experiment").click().run()
    assert not app.exception and not app.error
    result = app.session_state["lab_result"]
    assert result.config.preset == "custom" and result.config.custom_context == document
    assert result.arm_records(SONNET, "prompt-cache")[1].cache_read_tokens > 1_024


def test_run_shows_charts_metrics_and_exports_csv(app, isolated_db, tmp_path):
    result = run_book(app)
    records = result.records
    assert [(r.arm, r.request, r.status) for r in records] == [
        (arm, n, "ok") for n in (1, 2, 3) for arm in ("no-cache", "prompt-cache")]
    cached = result.arm_records(SONNET, "prompt-cache")
    assert cached[0].cache_write_tokens > 1_024 and cached[1].cache_read_tokens == cached[0].cache_write_tokens

    assert len(app.get("plotly_chart")) == 3  # tokens, cost, latency
    summary = result.summary()[SONNET]["prompt-cache"]
    saved = metric(app, "Saved · Prompt caching")
    assert saved.delta == f"{summary['saved_pct']:.1f}%" and summary["saved_pct"] > 30
    assert saved.value == format_usd(summary["saved_usd"])
    assert metric(app, "Hit rate · Prompt caching").value == f"{summary['hit_rate']:.0%}" == "67%"
    assert metric(app, "Break-even · Prompt caching").value == f"request #{summary['break_even_request']}"

    saved_docs = Store(tmp_path / "pages.db").list_docs("experiment")
    assert [d.id for d in saved_docs] == [result.id]

    button = by_label(app.download_button, "CSV")
    data = downloaded(button).decode()
    assert data == result.to_csv()
    rows = list(csv.DictReader(io.StringIO(data)))
    assert len(rows) == 6 and rows[3]["arm"] == "prompt-cache" and rows[3]["request"] == "2"
    assert int(rows[3]["cache_read_tokens"]) == cached[1].cache_read_tokens
    assert {b.label for b in app.download_button} >= {"JSON", "Tokens chart (HTML)", "Cost chart (HTML)"}


def test_reopen_from_history_and_compare_two_runs(app):
    first = run_book(app, requests=2)
    second = run_book(app, requests=2, ttl="1h")
    assert app.session_state["lab_result"].id == second.id

    by_label(app.sidebar.selectbox, "Open a saved run").set_value(first.id).run()
    assert app.session_state["lab_result"].id == first.id
    assert any(first.id in c.value for c in app.caption)

    assert by_label(app.selectbox, "Run A").value == first.id
    assert by_label(app.selectbox, "Run B").value == second.id
    assert any("ttl: 5m → 1h" in c.value for c in app.caption)
    table = app.dataframe[-1].value
    row = table[(table["arm"] == "prompt-cache") & (table["figure"] == "Total cost ($)")].iloc[0]
    a_total = first.summary()[SONNET]["prompt-cache"]["total_cost_usd"]
    b_total = second.summary()[SONNET]["prompt-cache"]["total_cost_usd"]
    assert row["A"] == pytest.approx(a_total) and row["B"] == pytest.approx(b_total)
    assert b_total > a_total  # a 1h write costs 2x input instead of 1.25x
    assert len(app.get("plotly_chart")) == 3 + 4  # the open run, then cost + latency of A and B


def test_spend_guard_refuses_an_experiment_over_budget(page_env, monkeypatch, tmp_path):
    monkeypatch.setenv("ORQ_SPEND_BUDGET_USD", "0.01")  # the sidebar's default budget
    app = open_lab(monkeypatch)
    by_label(app.slider, "Book size (tokens)").set_value(50_000)
    by_label(app.button, "Run experiment").click().run()
    assert any("Not started" in e.value and "budget" in e.value for e in app.error)
    assert "lab_result" not in app.session_state
    assert Store(tmp_path / "pages.db").list_docs("experiment") == []


def test_failed_request_is_shown_as_failed(app, monkeypatch):
    from orq_core.emulator.server import get_local_router

    monkeypatch.setattr(get_local_router().settings, "faults", ["400"])  # the next request fails, no retry
    result = run_book(app, tokens=1_000, requests=2, arms=("no-cache",))
    assert [r.status for r in result.records] == ["failed", "ok"]
    assert any("did not complete" in w.value and "**failed**" in w.value for w in app.warning)


def test_fast_forward_shows_the_cache_expiring_between_requests(app):
    by_label(app.number_input, "Interval between requests (s)").set_value(330.0)
    assert by_label(app.radio, "Waiting between rounds").value == "Fast-forward the local router's clock"
    result = run_book(app, requests=2, arms=("prompt-cache",))
    first, second = result.records
    assert second.cache_read_tokens == 0 and second.cache_write_tokens == first.cache_write_tokens
    assert second.t_s >= 330  # time on the router's clock, not waited for
    assert any("not shorter than the 5m TTL" in w.value for w in app.warning)


# --- numbers a person can trust (issue 16, item 6) ------------------------------------------------

@pytest.mark.parametrize("label, typed, sentence", [
    ("Requests per arm", 0, "Requests per arm must be a whole number from 1 to 200 (you gave 0)"),
    ("Requests per arm", 10_000, "Requests per arm must be a whole number from 1 to 200 (you gave 10,000)"),
    ("Requests per arm", -3, "Requests per arm must be a whole number from 1 to 200 (you gave -3)"),
    ("Interval between requests (s)", -5.0,
     "The interval must be from 0 to 7,200 seconds (you gave -5)"),
    ("Interval between requests (s)", 1e12,
     "The interval must be from 0 to 7,200 seconds (you gave 1,000,000,000,000)"),
])
def test_a_number_out_of_range_is_refused_as_shown_not_replaced(app, label, typed, sentence):
    by_label(app.number_input, label).set_value(typed)
    by_label(app.button, "Check plan").click().run()
    assert not app.exception, app.exception
    assert by_label(app.number_input, label).value == typed
    assert sentence in [e.value for e in app.error]
    assert not [m for m in app.metric if m.label == "Cached prefix (request 1)"]  # no plan for other numbers
    by_label(app.button, "Run experiment").click().run()
    assert "lab_result" not in app.session_state


def test_a_run_whose_server_died_opens_as_interrupted_with_its_records(app):
    import socket
    import subprocess
    import sys

    first = run_book(app, requests=2)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # its process id now runs nothing
    store = Store.default()
    header = {**store.load_doc("experiment", first.id).data, "status": "running",
              "runner": {"host": socket.gethostname(), "pid": gone.pid}}
    store.save_doc("experiment", "deadrun00001", "died mid-run", {**header, "id": "deadrun00001"})
    for index, record in enumerate(first.records[:3]):
        store.put_item("experiment", "deadrun00001", f"{index:06d}", record.to_dict())
    app.run()
    by_label(app.sidebar.selectbox, "Open a saved run").set_value("deadrun00001").run()
    assert not app.exception, app.exception
    opened = app.session_state["lab_result"]
    assert opened.status == "interrupted" and len(opened.records) == 3
    assert any("**interrupted**: the server stopped mid-run; the requests saved before are kept" in c.value
               for c in app.caption)


def test_what_breaks_the_cache_runs_and_every_prediction_holds(app):
    by_label(app.button, "Run the sequence").click().run()
    assert not app.exception, app.exception
    run = app.session_state["cache_breakers"]
    assert len(run.steps) == 11 and run.all_matched
    assert [s.outcome for s in run.steps] == ["wrote", "read", "missed", "missed", "read", "read", "read", "none",
                                              "missed", "read", "read"]
    assert run.steps[8].why.startswith("miss: the entry expired 1 min ago (5m TTL, last used 6 min ago)")
    assert any(chart.proto.spec and "What breaks the cache" in chart.proto.spec
               for chart in app.get("plotly_chart"))


def test_lab_records_carry_the_cache_doctor_reason(app):
    result = run_book(app, requests=2, arms=("prompt-cache",))
    first, second = result.records
    assert first.cache_why.startswith(f"writes {first.cache_write_tokens:,}: ")
    assert second.cache_why.startswith(f"reads {second.cache_read_tokens:,} tokens written ")
    assert (second.expected_read_tokens, second.expected_write_tokens) == (second.cache_read_tokens,
                                                                            second.cache_write_tokens)


def test_the_advisor_moves_the_custom_presets_breakpoint_to_where_it_pays(app):
    by_label(app.radio, "Preset").set_value("custom").run()
    by_label(app.text_area, "Context").set_value("The harbour ledger, page by page. " * 400)
    by_label(app.selectbox, "Breakpoint (prompt-caching arm)").set_value("system")
    by_label(app.button, "Check plan").click().run()
    advice = " ".join(c.value for c in app.caption if "Cache doctor:" in c.value)
    assert "Cache doctor: a breakpoint after the document (in the user turn) makes the prompt-caching arm cost" in advice
    by_label(app.button, "Apply the suggestion").click().run()
    assert not app.exception, app.exception
    assert by_label(app.selectbox, "Breakpoint (prompt-caching arm)").value == "context"
    assert not any("Cache doctor: a breakpoint" in c.value for c in app.caption)
