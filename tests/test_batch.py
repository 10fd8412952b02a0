"""Batch core: datasets, the template, warm-first against the local router's cache rule, records,
summaries, stop and resume, the spend guard, exports."""

from __future__ import annotations

import csv
import io
import json
import threading
from decimal import Decimal

import pytest

from orq_core.batch import (RECORD_COLUMNS, Batch, BatchInputError, BatchRecord, BatchSpec, Row, check_batch_budget,
                            check_output, check_spec, choose_rows, cost_figure, cumulative_cost_figure,
                            latency_figure, load_dataset, parse_csv, parse_jsonl, percentile, predict, records_csv,
                            render, run_batch, template_columns)
from orq_core.budget import SpendGuardError
from orq_core.client import OrqClient
from orq_core.cost import cost_of
from orq_core.store import Store
from orq_core.types import Completion, Done, TextDelta
from orq_core.usage import Usage

SONNET = "anthropic/claude-sonnet-4-5-20250929"
HAIKU = "anthropic/claude-haiku-4-5-20251001"
SYSTEM_6000 = "word " * 5997  # 5,997 text tokens + 3 message overhead = a 6,000-token cached prefix


def client_for(router, **options) -> OrqClient:
    return OrqClient(router.base_url, router.api_key, max_connections=40, **options)


def questions(count: int) -> list[Row]:
    return [Row(n, {"question": f"What is item {n}?", "answer": f"item {n}"}) for n in range(1, count + 1)]


# --- datasets ------------------------------------------------------------------------------------

def test_csv_rows_keep_their_numbers_and_missing_cells_read_empty():
    dataset = parse_csv(b"\xef\xbb\xbfname,city\nAda,London\n\nBob\n")
    assert dataset.columns == ("name", "city")
    assert [(r.number, r.values) for r in dataset.rows] == [(1, {"name": "Ada", "city": "London"}),
                                                            (2, {"name": "Bob", "city": ""})]
    assert dataset.preview(1) == [{"row": "1", "name": "Ada", "city": "London"}]


@pytest.mark.parametrize("data,message", [
    (b"", "The file is empty: upload a CSV with a header row and at least one data row."),
    (b"name,city\n", "The file holds no data rows: add at least one row under the header."),
    (b"name,name\na,b\n", "The header names name more than once: make column names unique."),
    (b"name,\na,b\n", "Column 2 of the header has no name: name every column."),
    (b"name\na,b\n", "CSV line 2 has 2 cells but the header has 1: quote cells that contain commas."),
    (b"name\n\xff\xfe\n", "The file is not UTF-8 text: save it as UTF-8 CSV or JSONL and upload it again."),
])
def test_bad_csv_is_refused_with_a_sentence(data, message):
    with pytest.raises(BatchInputError) as caught:
        parse_csv(data)
    assert caught.value.message == message


def test_jsonl_columns_come_in_order_of_first_appearance_and_nested_values_as_json():
    dataset = load_dataset('{"q": "a", "n": 1}\n\n{"q": "b", "tags": ["x"]}\n', "rows.jsonl")
    assert dataset.columns == ("q", "n", "tags")
    assert [r.values for r in dataset.rows] == [{"q": "a", "n": "1", "tags": ""},
                                                {"q": "b", "n": "", "tags": '["x"]'}]


@pytest.mark.parametrize("text,message", [
    ('{"q": 1}\nnot json\n', "JSONL line 2 is not valid JSON: one JSON object per line."),
    ('[1, 2]\n', 'JSONL line 1 is not a JSON object: each line must be {"column": value, ...}.'),
    ("\n\n", "The file is empty: upload JSONL with one JSON object per line."),
])
def test_bad_jsonl_names_the_line(text, message):
    with pytest.raises(BatchInputError) as caught:
        parse_jsonl(text)
    assert caught.value.message == message


def test_first_n_rows_or_a_seeded_sample_in_dataset_order():
    dataset = parse_csv("n\n" + "".join(f"{i}\n" for i in range(1, 21)))
    assert [r.number for r in choose_rows(dataset, limit=3)] == [1, 2, 3]
    sample = [r.number for r in choose_rows(dataset, sample=5, seed=7)]
    assert sample == sorted(sample) and len(set(sample)) == 5
    assert sample == [r.number for r in choose_rows(dataset, sample=5, seed=7)]
    assert sample != [r.number for r in choose_rows(dataset, sample=5, seed=8)]


# --- the template ------------------------------------------------------------------------------

def test_placeholders_fill_and_an_empty_cell_is_flagged():
    assert template_columns("{{a}} and {{ b }} and {{a}}") == ["a", "b"]
    assert render("Q: {{a}} / {{ b }}", {"a": "x", "b": " "}) == ("Q: x /  ", ("b",))


def test_an_unknown_column_is_refused_naming_it():
    spec = BatchSpec(template="Tell me about {{cty}}", targets=(SONNET,))
    with pytest.raises(BatchInputError) as caught:
        check_spec(spec, ["name", "city"])
    assert caught.value.message == ("The template uses {{cty}} but the data has no column 'cty'; its columns are: "
                                    "name, city.")


@pytest.mark.parametrize("change,message", [
    ({"targets": ("anthropic/claude-nope",)}, "Unknown target 'anthropic/claude-nope': use a slug from "
                                              "`python -m orq_core models`, e.g. anthropic/claude-haiku-4-5-20251001."),
    ({"concurrency": 33}, "Concurrency must be 1 to 32 (got 33)."),
    ({"targets": ()}, "Choose 1 to 4 targets (got 0)."),
    ({"expected_column": "nope"}, "The expected-answer column 'nope' is not in the data; its columns are: question, "
                                  "answer."),
])
def test_bad_settings_are_refused_before_sending(change, message):
    spec = BatchSpec(**{"template": "{{question}}", "targets": (SONNET,), **change})
    with pytest.raises(BatchInputError) as caught:
        check_spec(spec, ["question", "answer"])
    assert caught.value.message == message


def test_chat_parameter_rules_apply():
    from orq_core.errors import RequestValidationError

    with pytest.raises(RequestValidationError):
        check_spec(BatchSpec(template="{{question}}", targets=(SONNET,), temperature=0.5, top_p=0.9),
                   ["question"])


@pytest.mark.parametrize("output,expected,how,passed", [
    (" Paris ", "Paris", "exact", True), ("Paris.", "Paris", "exact", False),
    ("It is Paris.", "Paris", "contains", True), ("order 42 shipped", r"\d+", "regex", True),
    ('{"a": 1}', "", "json", True), ("{a: 1}", "", "json", False),
])
def test_checks(output, expected, how, passed):
    assert check_output(output, expected, how) is passed


# --- warm the cache first, against the local router at its default time scale ------------------------

def cache_batch(warm_first: bool) -> Batch:
    spec = BatchSpec(template="{{question}}", targets=(SONNET, HAIKU), system=SYSTEM_6000, cache_system=True,
                     concurrency=8, warm_first=warm_first, max_tokens=8)
    return Batch.new(spec, questions(16))


def writes_and_reads(batch: Batch, slug: str) -> tuple[int, int]:
    records = batch.target_records(slug)
    assert len(records) == 16 and all(r.ok for r in records), [r.error for r in records]
    assert {r.usage.cache_write_tokens for r in records} <= {0, 6000}
    assert {r.usage.cache_read_tokens for r in records} <= {0, 6000}
    return (sum(1 for r in records if r.usage.cache_write_tokens),
            sum(1 for r in records if r.usage.cache_read_tokens))


def test_warm_first_writes_the_prefix_once_per_target_and_reads_it_15_times(router_factory):
    router = router_factory(time_scale=1)
    with client_for(router) as client:
        batch = run_batch(client, cache_batch(warm_first=True))
    assert [writes_and_reads(batch, slug) for slug in (SONNET, HAIKU)] == [(1, 15), (1, 15)]


class FirstWaveTogether:
    """Holds each target's first ``size`` requests until the runner has started all of them (a runner
    that did not start ``size`` at once breaks the barrier and fails the test), then lets them go.

    The router's clock stands still until every target's first wave has answered, so however loaded the
    machine is (however far apart the wave reaches the router), no request of it sees what another one
    wrote: an entry becomes readable only at its writer's first byte, an emulated TTFT later. Then the
    clock moves a minute on (past every TTFT, well within the 5-minute TTL) before any later request
    is sent, so every later one reads."""

    def __init__(self, client: OrqClient, size: int, targets: int, clock):
        self._client, self._size, self._clock = client, size, clock
        self._lock = threading.Lock()
        self._started: dict[str, int] = {}
        self._barriers: dict[str, threading.Barrier] = {}
        self._waves_left = size * targets
        self._waves_done = threading.Event()

    def __getattr__(self, name):
        return getattr(self._client, name)

    def stream(self, payload, **options):
        model = payload["model"]
        with self._lock:
            position = self._started[model] = self._started.get(model, 0) + 1
            barrier = self._barriers.setdefault(model, threading.Barrier(self._size))
        if position > self._size:
            assert self._waves_done.wait(timeout=120), "the first waves did not all answer"
            yield from self._client.stream(payload, **options)
            return
        barrier.wait(timeout=60)
        try:
            yield from self._client.stream(payload, **options)
        finally:
            with self._lock:
                self._waves_left -= 1
                if self._waves_left == 0:
                    self._clock.advance(60)
                    self._waves_done.set()


def test_without_warming_a_cold_wave_of_eight_all_write(router_factory, fake_clock):
    router = router_factory(time_scale=1, clock=fake_clock)
    with client_for(router) as client:
        batch = run_batch(FirstWaveTogether(client, 8, targets=2, clock=fake_clock), cache_batch(warm_first=False))
    assert [writes_and_reads(batch, slug) for slug in (SONNET, HAIKU)] == [(8, 8), (8, 8)]


def test_the_prediction_says_both_ways_what_the_run_then_shows():
    sonnet, haiku = predict(cache_batch(warm_first=True))
    assert (sonnet.prefix_tokens, sonnet.writes_warm, sonnet.writes_cold) == (6000, 1, 8)
    # 7 extra writes instead of reads: 7 x 6,000 x (3.75 - 0.30) $/MTok on Sonnet 4.5
    assert sonnet.extra_cold == Decimal("0.1449")
    assert haiku.extra_cold == Decimal(7 * 6000) * (Decimal("1.25") - Decimal("0.10")) / 1_000_000


# --- records, cost and summaries ----------------------------------------------------------------

def test_every_row_costs_what_cost_of_says_and_summaries_are_the_sums(local_router):
    spec = BatchSpec(template="{{question}}", targets=(SONNET, HAIKU), system=SYSTEM_6000, cache_system=True,
                     cache_ttl="1h", concurrency=4, max_tokens=40, expected_column="answer", check="contains")
    with client_for(local_router) as client:
        batch = run_batch(client, Batch.new(spec, questions(10)))
    for record in batch.records.values():
        assert record.cost == cost_of(record.usage, record.target, "1h")
    for summary in batch.summary():
        records = batch.target_records(summary.target)
        assert summary.cost_usd == sum((r.cost_usd for r in records), Decimal(0))
        assert summary.usage == sum((r.usage for r in records), Usage())
        assert (summary.ok, summary.failed) == (10, 0)
        assert summary.cache_hit_rate == summary.usage.cache_read_tokens / summary.usage.prompt_tokens
        assert summary.cost_per_1000_rows_usd == summary.cost_usd * 100
        with_cache, without = summary.projection(1000, 30)
        assert with_cache == summary.cost_usd * 3000 and without == summary.cost.no_cache_total * 3000
        assert summary.pass_rate == sum(bool(r.passed) for r in records) / 10


def test_percentile_interpolates_between_ranks():
    assert percentile([10, 20, 30, 40], 50) == 25
    assert percentile([10, 20, 30, 40], 95) == pytest.approx(38.5)
    assert percentile([], 50) is None


class ScriptedClient:
    """Streams a fixed answer; rows listed in ``fail`` raise, ``barrier`` holds every request."""

    def __init__(self, fail: set[int] = frozenset(), usage: Usage = Usage(input_tokens=100, output_tokens=20)):
        self.fail = fail
        self.usage = usage
        self.sent: list[str] = []
        self.lock = threading.Lock()

    def stream(self, payload, *, page=None, headers=None, cancel=None):
        text = payload["messages"][-1]["content"]
        with self.lock:
            self.sent.append(f"{payload['model']}:{text}")
        if text in {f"What is item {n}?" for n in self.fail}:
            from orq_core.errors import RateLimitError
            raise RateLimitError("Rate limit exceeded", status=429)
        yield TextDelta("answer")
        yield Done(Completion(text="answer", model=payload["model"], usage=self.usage, ttft_ms=100.0,
                              latency_ms=300.0))


def test_failed_rows_are_recorded_and_resume_sends_only_what_is_missing(tmp_path):
    store = Store(tmp_path / "b.db")
    spec = BatchSpec(template="{{question}}", targets=(SONNET,), concurrency=2)
    batch = Batch.new(spec, questions(5))
    first = ScriptedClient(fail={2, 4})
    run_batch(first, batch, store=store)
    assert [(r.row, r.status) for r in batch.ordered_records()] == [(1, "ok"), (2, "error"), (3, "ok"),
                                                                     (4, "error"), (5, "ok")]
    assert batch.records["00000002|" + SONNET].error.startswith("Rate limited (429): Rate limit exceeded.")
    reopened = Batch.load(store, batch.id)
    assert [r.status for r in reopened.ordered_records()] == ["ok", "error", "ok", "error", "ok"]
    second = ScriptedClient()
    run_batch(second, reopened, store=store)
    assert sorted(second.sent) == [f"{SONNET}:What is item 2?", f"{SONNET}:What is item 4?"]
    assert [r.status for r in Batch.load(store, batch.id).ordered_records()] == ["ok"] * 5


def test_stop_keeps_finished_rows_and_each_is_saved_as_it_completes(tmp_path):
    store = Store(tmp_path / "b.db")
    batch = Batch.new(BatchSpec(template="{{question}}", targets=(SONNET,), concurrency=1), questions(10))
    saved_counts = []

    def on_record(record, progress):
        saved_counts.append(len(store.items("batch", batch.id)))

    run_batch(ScriptedClient(), batch, store=store, on_record=on_record, should_stop=lambda: len(saved_counts) >= 3)
    assert saved_counts == [1, 2, 3]
    reopened = Batch.load(store, batch.id)
    assert (len(reopened.records), reopened.stopped, len(reopened.missing())) == (3, True, 7)


def test_progress_counts_done_failed_and_cost():
    seen = []
    batch = Batch.new(BatchSpec(template="{{question}}", targets=(SONNET,), concurrency=1), questions(4))
    run_batch(ScriptedClient(fail={3}), batch, on_record=lambda r, p: seen.append((p.done, p.failed, p.total)))
    assert seen == [(1, 0, 4), (2, 0, 4), (3, 1, 4), (4, 1, 4)]


def test_an_empty_cell_sends_with_nothing_and_flags_the_row():
    batch = Batch.new(BatchSpec(template="Q: {{question}}", targets=(SONNET,)),
                      [Row(1, {"question": ""}), Row(2, {"question": "x"})])
    client = ScriptedClient()
    run_batch(client, batch)
    assert sorted(client.sent) == [f"{SONNET}:Q: ", f"{SONNET}:Q: x"]
    assert [r.empty_columns for r in batch.ordered_records()] == [("question",), ()]


# --- spend guard and exports ------------------------------------------------------------------------

def test_the_spend_guard_covers_rows_times_targets_and_names_the_numbers():
    spec = BatchSpec(template="{{question}}", targets=(SONNET, HAIKU), max_tokens=1000)
    batch = Batch.new(spec, questions(50))
    ceiling = check_batch_budget(batch, 0.0, 10.0)
    assert Decimal("0.5") < ceiling < Decimal("1.1")
    with pytest.raises(SpendGuardError) as caught:
        check_batch_budget(batch, 0.0, 0.5)
    assert caught.value.message.startswith(
        f"Not sent: 50 rows x 2 targets = 100 requests could cost up to ${float(ceiling):,.4f} together (input "
        "estimate, output at max_tokens 1,000) and this session has spent $0 of its $0.5000 budget.")


def test_csv_and_json_exports_hold_every_record(tmp_path):
    batch = Batch.new(BatchSpec(template="{{question}}", targets=(SONNET, HAIKU)), questions(3))
    run_batch(ScriptedClient(fail={2}), batch)
    rows = list(csv.DictReader(io.StringIO(records_csv(batch.ordered_records()))))
    assert tuple(rows[0]) == RECORD_COLUMNS
    assert [(r["row"], r["target"], r["status"]) for r in rows] == [
        ("1", SONNET, "ok"), ("1", HAIKU, "ok"), ("2", SONNET, "error"), ("2", HAIKU, "error"),
        ("3", SONNET, "ok"), ("3", HAIKU, "ok")]
    assert rows[0]["cost_usd"] == str(cost_of(Usage(input_tokens=100, output_tokens=20), SONNET).total)
    data = json.loads(batch.to_json())
    assert [s["ok"] for s in data["summary"]] == [2, 2]
    again = Batch.from_dict(data)
    assert again.ordered_records() == batch.ordered_records()


def test_charts_have_one_trace_per_target():
    batch = Batch.new(BatchSpec(template="{{question}}", targets=(SONNET, HAIKU)), questions(3))
    run_batch(ScriptedClient(), batch)
    assert [t.name for t in latency_figure(batch).data] == [SONNET, HAIKU]
    assert [t.name for t in cost_figure(batch).data] == ["with caching", "without caching"]
    assert [len(t.y) for t in cumulative_cost_figure(batch).data] == [3, 3]


def test_a_record_round_trips_through_its_dict():
    record = BatchRecord(3, SONNET, "ok", "hi", Usage(1, 2, 3, 4, raw={"x": 1}),
                         cost_of(Usage(1, 2, 3, 4), SONNET), 10.0, 20.0, None, SONNET, ("a",), True, "")
    assert BatchRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record


def test_each_row_carries_the_cache_doctors_reason(router_factory):
    from orq_core.cache_doctor import doctor_for

    router = router_factory()
    with client_for(router, doctor=doctor_for(router.base_url, router.api_key, Store(":memory:"))) as client:
        batch = run_batch(client, cache_batch(warm_first=True))
    for slug in (SONNET, HAIKU):
        records = sorted(batch.target_records(slug), key=lambda r: r.usage.cache_read_tokens)
        assert records[0].why.startswith(f"writes {records[0].usage.cache_write_tokens:,}: ")
        assert all(r.why.startswith(f"reads {r.usage.cache_read_tokens:,} tokens written ") for r in records[1:])
        assert all(r.why.endswith(" · as predicted") for r in records), [r.why for r in records]


def test_a_run_that_keeps_no_records_has_the_same_summary_as_its_saved_records(tmp_path):
    store = Store(tmp_path / "b.db")
    spec = BatchSpec(template="{{question}}", targets=(SONNET, HAIKU), concurrency=3, expected_column="answer",
                     check="contains")
    batch = Batch.new(spec, questions(9))
    run_batch(ScriptedClient(fail={4}), batch, store=store, keep_records=False)
    assert batch.records == {}
    saved = Batch.load(store, batch.id)
    assert len(saved.records) == 18
    assert batch.summary() == saved.summary()
    run_batch(ScriptedClient(), saved, store=store, keep_records=False)  # resume: only row 4 is sent again
    assert [(s.ok, s.failed) for s in saved.summary()] == [(9, 0), (9, 0)]
    assert saved.summary() == Batch.load(store, batch.id).summary()
