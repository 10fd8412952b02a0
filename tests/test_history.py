"""The History dashboard's figures, computed from one person's run log rows."""

import csv
import io
from datetime import date, datetime, timedelta, timezone

import pytest

from orq_core.history import (HistoryFilter, cache_by_day, load_history, percentile, saved_usd, spend_by_day,
                              to_csv, totals)
from orq_core.store import Store
from orq_core.types import RunRecord
from orq_core.usage import Usage

SONNET = "anthropic/claude-sonnet-4-5-20250929"
HAIKU = "anthropic/claude-haiku-4-5-20251001"
DAY = date(2026, 11, 20)


def at(day: date, hour: int) -> float:
    return datetime(day.year, day.month, day.day, hour, tzinfo=timezone.utc).timestamp()


def seeded_runs(day: date = DAY) -> list[RunRecord]:
    """Four requests over two days; costs are what Claude's prices give for these tokens."""
    yesterday = day - timedelta(days=1)
    return [
        # 1,000 in at $3 + 3,000 cache read at $0.30 + 200 out at $15 = $0.0069 (no cache: $0.0150)
        RunRecord("chat", SONNET, "ok", Usage(1000, 3000, 0, 200), 0.0069, 100.0, 1000.0, ts=at(day, 10),
                  request_id="req_a"),
        # 1,000 in + 2,000 cache write at $3.75 + 100 out = $0.0120 (no cache: $0.0105)
        RunRecord("caching_lab", SONNET, "ok", Usage(1000, 0, 2000, 100), 0.012, 300.0, 2000.0,
                  ts=at(yesterday, 9), request_id="req_b"),
        RunRecord("compare", HAIKU, "error", Usage(), 0.0, None, 50.0, http_status=529, error="Overloaded",
                  ts=at(yesterday, 11), request_id="req_c"),
        # 500 in at $1 + 1,000 cache read at $0.10 + 60 out at $5 = $0.0009 (no cache: $0.0018)
        RunRecord("chat", HAIKU, "ok", Usage(500, 1000, 0, 60), 0.0009, 200.0, 1500.0, ts=at(day, 12),
                  answered_by="aws/anthropic/claude-haiku-4-5-20251001", request_id="req_d"),
    ]


def test_totals_are_the_hand_sums_of_the_rows():
    summary = totals(seeded_runs())
    assert (summary.requests, summary.errors, summary.error_rate) == (4, 1, 0.25)
    assert summary.cost_usd == pytest.approx(0.0198, abs=1e-12)
    assert summary.saved_usd == pytest.approx(0.0081 - 0.0015 + 0.0 + 0.0009, abs=1e-12)
    assert (summary.input_tokens, summary.cache_read_tokens, summary.cache_write_tokens, summary.output_tokens) == (
        2500, 4000, 2000, 360)
    assert summary.hit_rate == pytest.approx(4000 / 8500)
    assert (summary.ttft_p50_ms, summary.ttft_p95_ms) == (200.0, 300.0)
    assert (summary.latency_p50_ms, summary.latency_p95_ms) == (1000.0, 2000.0)


def test_saved_is_the_uncached_price_minus_what_was_logged():
    runs = seeded_runs()
    assert [round(saved_usd(r), 10) for r in runs] == [0.0081, -0.0015, 0.0, 0.0009]


def test_percentile_is_nearest_rank():
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 95) == 5.0
    assert percentile([], 50) is None


def test_spend_per_day_by_model_provider_and_page():
    runs = seeded_runs()
    yesterday = DAY - timedelta(days=1)
    assert spend_by_day(runs, "model") == {yesterday: {HAIKU: 0.0, SONNET: 0.012},
                                           DAY: {HAIKU: 0.0009, SONNET: 0.0069}}
    assert spend_by_day(runs, "provider") == {yesterday: {"anthropic": 0.012}, DAY: {"anthropic": 0.0069,
                                                                                     "aws": 0.0009}}
    assert spend_by_day(runs, "page") == {yesterday: {"caching_lab": 0.012, "compare": 0.0},
                                          DAY: {"chat": pytest.approx(0.0078)}}
    with pytest.raises(ValueError):
        spend_by_day(runs, "colour")


def test_cache_per_day():
    (first, second) = cache_by_day(seeded_runs())
    assert (first.day, first.requests, first.hit_rate) == (DAY - timedelta(days=1), 2, 0.0)
    assert first.saved_usd == pytest.approx(-0.0015)
    assert (second.day, second.requests, second.hit_rate) == (DAY, 2, 4000 / 5500)
    assert second.saved_usd == pytest.approx(0.009)


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "h.db")
    ann = s.for_owner("ann@example.com")
    for run in seeded_runs():
        ann.log_run(run)
    s.for_owner("bob@example.com").log_run(RunRecord("chat", SONNET, "ok", Usage(1, 0, 0, 1), 9.0, ts=at(DAY, 8)))
    yield ann
    s.close()


def test_filters_by_date_page_model_status_and_text(store):
    everything = load_history(store, HistoryFilter())
    assert [r.request_id for r in everything.runs] == ["req_d", "req_a", "req_c", "req_b"]  # never Bob's
    assert not everything.truncated

    def ids(**kwargs):
        return [r.request_id for r in load_history(store, HistoryFilter(**kwargs)).runs]

    assert ids(first_day=DAY, last_day=DAY) == ["req_d", "req_a"]
    assert ids(last_day=DAY - timedelta(days=1)) == ["req_c", "req_b"]
    assert ids(pages=("chat",)) == ["req_d", "req_a"]
    assert ids(models=(HAIKU,)) == ["req_d", "req_c"]
    assert ids(statuses=("error",)) == ["req_c"]
    assert ids(text="OVERLOAD") == ["req_c"]
    assert ids(text="aws/") == ["req_d"]


def test_more_rows_than_the_limit_say_so(store):
    history = load_history(store, HistoryFilter(), limit=3)
    assert len(history.runs) == 3 and history.truncated


def test_csv_has_one_row_per_request_and_its_costs_add_up(store):
    runs = load_history(store, HistoryFilter()).runs
    rows = list(csv.DictReader(io.StringIO(to_csv(runs))))
    assert len(rows) == 4
    assert sum(float(r["cost_usd"]) for r in rows) == pytest.approx(0.0198)
    assert rows[0]["time_utc"] == "2026-11-20 12:00:00" and rows[0]["provider"] == "aws"
    assert rows[2]["error"] == "Overloaded" and rows[2]["http_status"] == "529"


def test_csv_cells_that_a_spreadsheet_would_run_are_kept_as_text():
    run = RunRecord("chat", SONNET, "error", Usage(), 0.0, error="=HYPERLINK(\"x\")", ts=at(DAY, 1))
    (row,) = csv.DictReader(io.StringIO(to_csv([run])))
    assert row["error"] == "'=HYPERLINK(\"x\")"
