"""Compare core: concurrency, isolation of failures, follow-ups, the decision table, exports, CLI."""

import argparse
import csv
import io
import json
import threading

import pytest

from orq_core.budget import SpendGuardError, request_ceiling
from orq_core.compare import (FAULT_HEADER, SUMMARY_COLUMNS, ColumnEvent, CompareTarget, Comparison, LiveProgress,
                              batch_ceiling, check_batch_budget, cli_compare, column_labels, latency_figure,
                              latency_points, summary_csv)
from orq_core.cost import cost_of
from orq_core.errors import RateLimitError
from orq_core.store import Store
from orq_core.types import Completion, Done, ErrorEvent, TextDelta
from orq_core.usage import Usage

SONNET = "anthropic/claude-sonnet-4-5-20250929"
HAIKU = "anthropic/claude-haiku-4-5-20251001"
OPUS = "anthropic/claude-opus-4-5-20251101"
AWS_SONNET = "aws/anthropic/claude-sonnet-4-5-20250929"


class FakeClient:
    """Answers every stream with a fixed completion; optional barrier, failures and per-model figures."""

    def __init__(self, barrier: threading.Barrier | None = None, latencies: dict | None = None,
                 usage: Usage = Usage(input_tokens=120, cache_write_tokens=0, output_tokens=40)):
        self.barrier = barrier
        self.latencies = latencies or {}
        self.usage = usage
        self.payloads: list[dict] = []
        self.calls_by_model: dict[str, int] = {}
        self.lock = threading.Lock()

    def stream(self, payload, *, page=None, headers=None, cancel=None):
        with self.lock:
            self.payloads.append(payload)
            run = self.calls_by_model[payload["model"]] = self.calls_by_model.get(payload["model"], 0) + 1
        fault = (headers or {}).get(FAULT_HEADER)
        if fault == "429":
            raise RateLimitError("rate limited by the fake", status=429)
        if self.barrier is not None:
            self.barrier.wait(timeout=60)  # only releases when every column is inside stream() at once
        yield TextDelta(f"answer from {payload['model']} ")
        if fault == "cut":
            yield ErrorEvent("connection closed early")
            yield Done(Completion(text="answer", model=payload["model"], partial=True, error="connection closed early"))
            return
        latencies = self.latencies.get(payload["model"], [500.0])
        latency = latencies[(run - 1) % len(latencies)]
        yield Done(Completion(text=f"answer from {payload['model']}", model=payload["model"], usage=self.usage,
                              ttft_ms=100.0, latency_ms=latency, finish_reason="stop"))


def run(comparison, client, text="Hello", **kwargs):
    return list(comparison.ask(client, text, **kwargs))


def test_four_columns_are_inside_stream_at_the_same_time():
    barrier = threading.Barrier(4)
    comparison = Comparison([CompareTarget(s) for s in (SONNET, HAIKU, OPUS, AWS_SONNET)])
    run(comparison, FakeClient(barrier))
    assert not barrier.broken
    assert [len(c.samples) for c in comparison.columns] == [1, 1, 1, 1]
    assert all(c.samples[0].ok for c in comparison.columns)


def test_a_failing_column_shows_its_error_and_the_others_finish():
    targets = [CompareTarget(SONNET), CompareTarget.with_fault(HAIKU, "429"), CompareTarget(OPUS)]
    comparison = Comparison(targets)
    events = run(comparison, FakeClient(threading.Barrier(2)))  # the two healthy columns still meet
    errors = [e for e in events if isinstance(e.event, Exception)]
    assert [e.column for e in errors] == [1]
    ok, failed, ok2 = comparison.columns
    assert ok.samples[0].ok and ok2.samples[0].ok
    assert not failed.samples[0].ok and "rate limited by the fake" in failed.samples[0].error
    rows = comparison.summary_rows()
    assert [r["failed"] for r in rows] == [0, 1, 0]
    assert rows[1]["cost_usd"] is None and rows[1]["latency_ms"] is None
    assert "rate limited by the fake" in rows[1]["error"]


def test_a_cut_stream_is_a_failed_sample_with_its_partial_text():
    comparison = Comparison([CompareTarget(SONNET), CompareTarget.with_fault(HAIKU, "cut")])
    run(comparison, FakeClient())
    cut = comparison.columns[1].samples[0]
    assert not cut.ok and cut.completion.partial and cut.error == "connection closed early"
    assert comparison.summary_rows()[1]["error"] == "connection closed early"


def test_an_invalid_column_fails_alone_before_sending():
    bad = CompareTarget(HAIKU, max_tokens=1024, thinking_budget=2048)  # budget must be below max_tokens
    comparison = Comparison([CompareTarget(SONNET), bad])
    client = FakeClient()
    events = run(comparison, client)
    assert [p["model"] for p in client.payloads] == [SONNET]
    assert events[0].column == 1 and isinstance(events[0].event, Exception)
    assert "thinking" in comparison.columns[1].samples[0].error
    assert comparison.columns[0].samples[0].ok


def test_follow_ups_continue_each_columns_own_conversation():
    comparison = Comparison([CompareTarget(SONNET), CompareTarget.with_fault(HAIKU, "429")], system="Be brief.")
    client = FakeClient()
    run(comparison, client, "First?")
    comparison.retarget([CompareTarget(SONNET), CompareTarget(HAIKU)])  # the fault is lifted for turn 2
    run(comparison, client, "Second?")
    second = {p["model"]: p for p in client.payloads[-2:]}
    assert [m["role"] for m in second[SONNET]["messages"]] == ["system", "user", "assistant", "user"]
    assert second[SONNET]["messages"][2]["content"] == f"answer from {SONNET}"
    # the failed first turn left nothing to replay in Haiku's conversation
    assert [m["role"] for m in second[HAIKU]["messages"]] == ["system", "user"]
    assert [len(c.exchanges) for c in comparison.columns] == [2, 2] and comparison.turns == 2
    assert comparison.columns[1].exchanges[0].answer.error and comparison.columns[1].exchanges[1].answer.ok


def test_retarget_refuses_a_different_model():
    comparison = Comparison([CompareTarget(SONNET), CompareTarget(HAIKU)])
    with pytest.raises(ValueError, match="new comparison"):
        comparison.retarget([CompareTarget(SONNET), CompareTarget(OPUS)])


def test_repeats_give_medians_spread_and_marks():
    latencies = {SONNET: [900.0, 300.0, 600.0], HAIKU: [200.0, 400.0, 250.0]}
    comparison = Comparison([CompareTarget(SONNET), CompareTarget(HAIKU)])
    run(comparison, FakeClient(latencies=latencies), repeat=3)
    sonnet, haiku = comparison.summary_rows()
    assert (sonnet["runs"], sonnet["latency_ms"], sonnet["latency_min_ms"], sonnet["latency_max_ms"]) == \
        (3, 600.0, 300.0, 900.0)
    assert (haiku["latency_ms"], haiku["latency_min_ms"], haiku["latency_max_ms"]) == (250.0, 200.0, 400.0)
    assert haiku["fastest"] and not sonnet["fastest"]
    assert haiku["cheapest"] and not sonnet["cheapest"]
    # 40 output tokens over (600 - 100) ms of generation
    assert sonnet["tokens_per_s"] == pytest.approx(40 / 0.5)
    # conversation continues from the first good answer only, not from all three
    assert len(comparison.columns[0].messages) == 2


def test_summary_costs_come_from_cost_of():
    usage = Usage(input_tokens=1000, cache_read_tokens=3000, cache_write_tokens=2000, output_tokens=500)
    comparison = Comparison([CompareTarget(SONNET), CompareTarget(OPUS)], system="x" * 50, cache_system=True,
                            cache_ttl="1h")
    run(comparison, FakeClient(usage=usage))
    for row, slug in zip(comparison.summary_rows(), (SONNET, OPUS)):
        assert row["cost_usd"] == float(cost_of(usage, slug, "1h").total)
        assert row["cache_write_tokens"] == 2000 and row["cache_read_tokens"] == 3000


def test_closing_the_stream_early_cancels_the_columns_still_running():
    release = threading.Event()
    seen_cancel: list[threading.Event] = []

    class SlowClient:
        def stream(self, payload, *, page=None, headers=None, cancel=None):
            seen_cancel.append(cancel)
            yield TextDelta("first ")
            release.wait(timeout=60)
            yield Done(Completion(text="late", model=payload["model"], partial=cancel.is_set()))

    comparison = Comparison([CompareTarget(SONNET), CompareTarget(HAIKU)])
    events = comparison.ask(SlowClient(), "Hi")
    next(events)
    events.close()
    release.set()
    assert seen_cancel and all(c.is_set() for c in seen_cancel)
    assert len(comparison.columns[0].exchanges) == 1  # the interrupted turn is kept, with what arrived


def test_live_progress_restarts_text_for_each_repeat_and_keeps_notes():
    progress = LiveProgress(2, repeat=2)
    progress.apply(ColumnEvent(0, TextDelta("one")))
    assert progress.status(0) == "run 1 of 2…"
    progress.apply(ColumnEvent(0, Done(Completion(text="one"))))
    assert progress.columns[0].text == "one" and progress.status(0) == "run 2 of 2…"
    progress.apply(ColumnEvent(0, TextDelta("two")))
    assert progress.columns[0].text == "two"
    progress.apply(ColumnEvent(0, Done(Completion(text="two"))))
    assert progress.status(0) == "done"
    progress.apply(ColumnEvent(1, RateLimitError("slow down", status=429)))
    progress.apply(ColumnEvent(1, RateLimitError("slow down", status=429)))
    assert progress.status(1) == "done" and len(progress.columns[1].notes) == 2


def test_batch_guard_adds_up_every_column_and_repeat():
    comparison = Comparison([CompareTarget(SONNET, max_tokens=1000), CompareTarget(OPUS, max_tokens=1000)])
    payloads = comparison.prepare("How long is a piece of string?")
    each = [request_ceiling(p) for p in payloads]
    assert batch_ceiling(payloads, 3) == (each[0] + each[1]) * 3
    total = float(batch_ceiling(payloads, 3))
    assert check_batch_budget(payloads, 3, 0.0, total + 0.001) == batch_ceiling(payloads, 3)
    assert check_batch_budget(payloads, 3, 5.0, 0) == batch_ceiling(payloads, 3)  # 0 = guard off
    with pytest.raises(SpendGuardError, match="6 requests"):
        check_batch_budget(payloads, 3, 0.0, float(each[0] + each[1]) * 2)


def test_export_json_round_trips_and_csv_has_the_table():
    comparison = Comparison([CompareTarget(SONNET, temperature=0.5), CompareTarget.with_fault(HAIKU, "429")],
                            system="Be brief.", cache_system=True, title="Sonnet vs Haiku")
    run(comparison, FakeClient(), "First?")
    data = json.loads(comparison.to_json())
    assert data["format"] == "orq-playground.comparison/1" and data["summary"] == comparison.summary_rows()
    again = Comparison.from_dict(data)
    assert again.targets == comparison.targets and again.targets[1].fault == "429"
    assert again.system == "Be brief." and again.cache_ttl == "5m" and again.title == "Sonnet vs Haiku"
    assert again.columns[0].messages == comparison.columns[0].messages
    assert again.summary_rows() == comparison.summary_rows()
    table = list(csv.DictReader(io.StringIO(summary_csv(comparison.summary_rows()))))
    assert tuple(table[0]) == SUMMARY_COLUMNS
    assert [r["target"] for r in table] == [SONNET, HAIKU]
    assert float(table[0]["cost_usd"]) == comparison.summary_rows()[0]["cost_usd"]
    assert table[1]["cost_usd"] == "" and "rate limited" in table[1]["error"]


def test_save_and_load_from_the_store(tmp_path):
    store = Store(tmp_path / "compare.db")
    comparison = Comparison([CompareTarget(SONNET), CompareTarget(AWS_SONNET)], title="direct vs bedrock")
    run(comparison, FakeClient())
    comparison.save(store)
    [doc] = store.list_docs("comparison")
    assert doc.name == "direct vs bedrock"
    loaded = Comparison.load(store, comparison.id)
    assert loaded.summary_rows() == comparison.summary_rows()
    assert loaded.columns[1].exchanges[0].answer.completion.text == f"answer from {AWS_SONNET}"


def test_chart_points_and_figure():
    comparison = Comparison([CompareTarget(SONNET), CompareTarget(SONNET)])
    run(comparison, FakeClient(latencies={SONNET: [300.0, 500.0]}), repeat=2)
    points = latency_points(comparison)
    assert column_labels(comparison.targets) == [f"{SONNET} #1", f"{SONNET} #2"]
    assert len(points) == 4 and {p["target"] for p in points} == {f"{SONNET} #1", f"{SONNET} #2"}
    assert sorted(p["latency_ms"] for p in points) == [300.0, 300.0, 500.0, 500.0]
    figure = latency_figure(points)
    assert [t.name for t in figure.data] == [f"{SONNET} #1", f"{SONNET} #2"]


# --- the command line against the local router ---------------------------------------------------

@pytest.fixture
def local_env(monkeypatch, tmp_path):
    monkeypatch.delenv("ORQ_API_KEY", raising=False)
    monkeypatch.setenv("ORQ_LOCAL_ROUTER_TIME_SCALE", "0")
    monkeypatch.setenv("ORQ_PLAYGROUND_DB", str(tmp_path / "cli.db"))


def test_cli_compare_json_against_the_local_router(local_env):
    out: list[str] = []
    args = argparse.Namespace(targets=f"{SONNET},{HAIKU},{AWS_SONNET}", prompt="Name three rivers.", system="",
                              max_tokens=256, repeat=2, json=True, local=True)
    assert cli_compare(args, print_fn=out.append) == 0
    data = json.loads(out[0])
    assert [r["target"] for r in data["rows"]] == [SONNET, HAIKU, AWS_SONNET]
    assert all(r["runs"] == 2 and r["failed"] == 0 and r["output_tokens"] > 0 for r in data["rows"])
    assert all(answer for answer in data["answers"])
    assert sum(r["cheapest"] for r in data["rows"]) >= 1
    haiku = data["rows"][1]
    assert haiku["cheapest"]  # Haiku's prices are the lowest for comparable token counts


def test_cli_compare_text_output_marks_the_cheapest(local_env):
    out: list[str] = []
    args = argparse.Namespace(targets=f"{OPUS},{HAIKU}", prompt="Hi", system="", max_tokens=128, repeat=1,
                              json=False, local=True)
    assert cli_compare(args, print_fn=out.append) == 0
    assert len(out) == 2 and "cheapest" in out[1] and "cheapest" not in out[0]
    assert out[0].startswith(OPUS) and " ms " in out[0] and "$" in out[0]


def test_an_unexpected_exception_stays_in_its_column():
    class BuggyClient(FakeClient):
        def stream(self, payload, **kwargs):
            if payload["model"] == HAIKU:
                raise KeyError("choices")
            return super().stream(payload, **kwargs)

    comparison = Comparison([CompareTarget(SONNET), CompareTarget(HAIKU)])
    run(comparison, BuggyClient())
    assert comparison.columns[0].samples[0].ok
    assert comparison.columns[1].samples[0].error == "Unexpected error: KeyError: 'choices'"
