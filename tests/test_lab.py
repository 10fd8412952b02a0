"""Caching Lab: presets, request building, estimates, the runner and its results.

The runner is tested twice: against a small fake client (ordering, cancel, failures) and against
the real local router over loopback HTTP at time_scale 0 with a fake clock that the lab's
injected ``sleep`` moves (TTL expiry without waiting).
"""

from __future__ import annotations

import argparse
import json
import threading
from dataclasses import replace
from decimal import Decimal

import pytest

from orq_core.cost import cost_of
from orq_core.lab import (ARMS, ExperimentConfig, ExperimentResult, LabRecord, add_lab_arguments, build_requests,
                          cli_lab, compare_runs, preflight, prompt_shape, run_experiment)
from orq_core.lab_presets import filler_text, many_shot_examples, tool_catalogue
from orq_core.request import cache_breakpoints
from orq_core.tokens import text_tokens
from orq_core.types import Completion, Done, TextDelta
from orq_core.usage import Usage

SONNET = "anthropic/claude-sonnet-4-5-20250929"
HAIKU = "anthropic/claude-haiku-4-5-20251001"


# --- presets -----------------------------------------------------------------------------------

@pytest.mark.parametrize("target", [1_000, 1_024, 4_096, 37_500, 100_000, 150_000])
def test_filler_text_hits_the_token_target_within_one_percent(target):
    text = filler_text(target)
    assert abs(text_tokens(text) - target) <= target * 0.01
    assert text == filler_text(target)  # deterministic


def test_filler_text_reads_like_a_book():
    text = filler_text(2_000)
    assert text.startswith("Chapter 1. The Harbour\n\n")
    first_paragraph = text.split("\n\n")[1]
    assert first_paragraph.endswith(".") and first_paragraph[0].isupper()
    assert len(first_paragraph.split(". ")) >= 3
    assert filler_text(2_000, seed=1) != text


def test_many_shot_and_tools_are_deterministic_and_sized():
    examples = many_shot_examples(3)
    assert examples.count("Sentiment:") == 3 and examples.startswith("Example 1\nReview: ")
    assert many_shot_examples(50) == many_shot_examples(50)
    tools = tool_catalogue(40)
    assert len({t["function"]["name"] for t in tools}) == 40
    assert tools == tool_catalogue(40)


# --- building requests -------------------------------------------------------------------------

def _config(**changes) -> ExperimentConfig:
    base = dict(preset="book", context_tokens=2_000, models=(SONNET,), requests=3, cache_salt="salt1",
                fresh_cache=False, arms=ARMS)
    base.update(changes)
    return ExperimentConfig(**base)


def test_book_prompt_cache_marks_the_document_and_asks_different_questions():
    config = _config()
    payloads = build_requests(config, "prompt-cache", SONNET)
    assert len(payloads) == 3
    for payload in payloads:
        assert [(b.path, b.ttl) for b in cache_breakpoints(payload)] == [("messages[1].content[0]", "5m")]
        assert payload["messages"][1]["content"][0]["text"] == filler_text(2_000)
        assert payload["messages"][0]["content"].startswith("[Run salt1]\n")
    questions = [p["messages"][1]["content"][1]["text"] for p in payloads]
    assert len(set(questions)) == 3


def test_no_cache_has_no_breakpoints_and_response_cache_repeats_one_request():
    config = _config(ttl="1h")
    assert all(not cache_breakpoints(p) for p in build_requests(config, "no-cache", SONNET))
    repeated = build_requests(config, "response-cache", SONNET)
    assert len(repeated) == 3 and repeated[0] == repeated[1] == repeated[2]
    assert repeated[0]["orq"]["cache"] == {"type": "exact_match", "ttl": 3600}
    assert not cache_breakpoints(repeated[0])


def test_system_placement_and_one_hour_ttl():
    payload = build_requests(_config(breakpoint="system", ttl="1h"), "prompt-cache", SONNET)[0]
    assert [(b.path, b.ttl) for b in cache_breakpoints(payload)] == [("messages[0].content[0]", "1h")]
    assert filler_text(2_000) in payload["messages"][0]["content"][0]["text"]


def test_multi_turn_adds_a_turn_per_request_and_moves_the_breakpoint():
    payloads = build_requests(_config(preset="multi-turn", requests=4), "prompt-cache", SONNET)
    users = [[m for m in p["messages"] if m["role"] == "user"] for p in payloads]
    assert [len(u) for u in users] == [1, 2, 3, 4]
    assert [b.path for b in cache_breakpoints(payloads[0])] == ["messages[1].content[0]"]
    # newest turn writes the new part; the previous turn is where the last request wrote
    assert [b.path for b in cache_breakpoints(payloads[3])] == ["messages[5].content[0]", "messages[7].content[0]"]
    unmarked = [[_unmarked(m) for m in p["messages"]] for p in payloads]
    assert unmarked[3][:6] == unmarked[2]  # each request extends the previous prompt


def _unmarked(message: dict) -> dict:
    if not isinstance(message["content"], list):
        return message
    return {**message, "content": [{k: v for k, v in part.items() if k != "cache_control"}
                                   for part in message["content"]]}


def test_tools_preset_marks_the_last_tool_and_salts_the_first():
    payloads = build_requests(_config(preset="tools", tool_count=12), "prompt-cache", SONNET)
    assert [b.path for b in cache_breakpoints(payloads[2])] == ["tools[11]"]
    assert payloads[0]["tools"][0]["function"]["description"].startswith("[Run salt1]\n")
    assert payloads[1]["tools"] == payloads[0]["tools"]


def test_invalid_configs_are_refused_with_a_sentence():
    with pytest.raises(ValueError, match="book preset puts its breakpoint on: context or system"):
        _config(breakpoint="last-turn").validate()
    with pytest.raises(ValueError, match="1,000 to 150,000"):
        _config(context_tokens=200_000).validate()
    with pytest.raises(ValueError, match="Unknown model"):
        _config(models=("anthropic/claude-9",)).validate()
    with pytest.raises(ValueError, match="custom preset needs"):
        _config(preset="custom").validate()


def test_config_round_trips_through_a_dict():
    config = _config(questions=("a?", "b?"), models=(SONNET, HAIKU))
    assert ExperimentConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


# --- estimates ---------------------------------------------------------------------------------

def test_preflight_book_costs_by_hand():
    config = _config(context_tokens=100_000, requests=5, max_tokens=100)
    check = preflight(config)
    total, prefix = prompt_shape(build_requests(config, "prompt-cache", SONNET)[0])
    assert check.prefix_tokens == prefix and check.prompt_tokens == total
    assert abs(prefix - 100_000) < 100
    questions = sum(t - prefix for t, _ in map(prompt_shape, build_requests(config, "prompt-cache", SONNET)))
    output = Decimal(5 * 100 * 15) / 1_000_000
    # Sonnet 4.5: input $3, write 5m $3.75, read $0.30, output $15 per MTok
    cached = check.estimate("prompt-cache", SONNET)
    expected = (Decimal(prefix) * Decimal("3.75") + 4 * Decimal(prefix) * Decimal("0.30")
                + questions * Decimal(3)) / 1_000_000 + output
    assert cached.total == expected
    plain = check.estimate("no-cache", SONNET)
    assert plain.total == sum(Decimal(t) * 3 for t in (prompt_shape(p)[0] for p in
                              build_requests(config, "no-cache", SONNET))) / 1_000_000 + output
    assert cached.baseline == plain.total
    assert check.break_even == {SONNET: 2}  # 1.25 + 0.1 <= 1 + 1
    assert check.estimate("response-cache", SONNET).total == Decimal(total * 3 + 100 * 15) / 1_000_000
    assert check.warnings == ()


def test_preflight_interval_past_ttl_never_breaks_even_and_warns():
    check = preflight(_config(context_tokens=5_000, interval_s=400, requests=4))
    assert check.break_even == {SONNET: None}
    assert any("every request will write the cache again" in w for w in check.warnings)
    usages = check.estimate("prompt-cache", SONNET).usages
    assert all(u.cache_read_tokens == 0 and u.cache_write_tokens == check.prefix_tokens for u in usages)


def test_preflight_warns_when_the_prefix_is_below_the_minimum():
    check = preflight(_config(preset="many-shot", shots=20, models=(SONNET, HAIKU)))
    assert check.prefix_tokens < 1_024
    assert sum("will not be cached" in w for w in check.warnings) == 2
    assert "Claude Haiku 4.5's minimum of 4,096" in " ".join(check.warnings)
    assert check.estimate("prompt-cache", HAIKU).total == check.estimate("no-cache", HAIKU).total


def test_worst_case_prices_all_input_as_writes_and_output_at_max_tokens():
    config = _config(context_tokens=10_000, requests=2, arms=("prompt-cache",), max_tokens=500)
    totals = [prompt_shape(p)[0] for p in build_requests(config, "prompt-cache", SONNET)]
    expected = sum(Decimal(t) * Decimal("3.75") + 500 * 15 for t in totals) / 1_000_000
    assert preflight(config).worst_case == expected


# --- the runner with a fake client -------------------------------------------------------------

class FakeClient:
    """Answers from a script: usage per call, or an exception to raise."""

    def __init__(self, script=None, cancel_on=None):
        self.calls: list[dict] = []
        self.script = script or (lambda payload, n: Usage(input_tokens=100, output_tokens=10))
        self.cancel_on = cancel_on

    def stream(self, payload, *, page=None, headers=None, cancel=None):
        self.calls.append(payload)
        outcome = self.script(payload, len(self.calls))
        if isinstance(outcome, Exception):
            raise outcome
        yield TextDelta("hi")
        if self.cancel_on == len(self.calls):
            cancel.set()
            yield Done(Completion(text="hi", model=payload["model"], partial=True, ttft_ms=5.0, latency_ms=6.0))
            return
        hit = isinstance(outcome, tuple)
        usage = outcome[0] if hit else outcome
        yield Done(Completion(text="hi", model=payload["model"], usage=usage, ttft_ms=5.0, latency_ms=50.0,
                              response_cache_hit=hit))


def test_runner_interleaves_arms_and_sleeps_the_interval_between_rounds(fake_clock):
    clock, slept, seen = fake_clock, [], []

    def sleep(seconds):
        slept.append(seconds)
        clock.advance(seconds)

    client = FakeClient()
    config = _config(requests=3, interval_s=30, arms=("no-cache", "prompt-cache"), models=(SONNET, HAIKU))
    result = run_experiment(config, client, on_record=seen.append, sleep=sleep, clock=clock)
    order = [(r.request, r.model, r.arm) for r in result.records]
    assert order[:4] == [(1, SONNET, "no-cache"), (1, SONNET, "prompt-cache"),
                         (1, HAIKU, "no-cache"), (1, HAIKU, "prompt-cache")]
    assert len(order) == 12 and seen == result.records
    assert slept == [30, 30]
    assert [r.t_s for r in result.records if r.request == 3] == [60.0] * 4
    assert all(p["model"] in (SONNET, HAIKU) for p in client.calls)


def test_fresh_cache_salts_each_run_differently():
    client = FakeClient()
    config = _config(fresh_cache=True, cache_salt="", requests=1, arms=("prompt-cache",))
    first = run_experiment(config, client, sleep=lambda s: None)
    second = run_experiment(config, client, sleep=lambda s: None)
    assert first.config.cache_salt and first.config.cache_salt != second.config.cache_salt
    assert client.calls[0]["messages"][0]["content"].startswith(f"[Run {first.config.cache_salt}]")


def test_failures_become_rows_and_the_run_goes_on():
    from orq_core.errors import OverloadedError

    def script(payload, n):
        return OverloadedError("Overloaded", status=529) if n == 2 else Usage(input_tokens=100, output_tokens=10)

    result = run_experiment(_config(requests=3, arms=("no-cache",)), FakeClient(script), sleep=lambda s: None)
    assert [r.status for r in result.records] == ["ok", "failed", "ok"]
    failed = result.records[1]
    assert "overloaded" in failed.error.lower() and failed.cost_usd == 0
    assert result.summary()[SONNET]["no-cache"]["failed"] == 1


def test_cancel_keeps_finished_rows_and_marks_the_one_in_flight():
    cancel = threading.Event()
    client = FakeClient(cancel_on=3)
    result = run_experiment(_config(requests=5, arms=("no-cache", "prompt-cache")), client, cancel=cancel,
                            sleep=lambda s: None)
    assert [r.status for r in result.records] == ["ok", "ok", "cancelled"]
    assert result.cancelled and len(client.calls) == 3


def test_response_cache_hit_is_not_billed_but_keeps_its_baseline():
    def script(payload, n):
        usage = Usage(input_tokens=2_000, output_tokens=100)
        return (usage,) if n > 1 else usage  # tuple = served from Orq's response cache

    result = run_experiment(_config(requests=3, arms=("response-cache",)), FakeClient(script), sleep=lambda s: None)
    first, hit = result.records[0], result.records[1]
    assert first.cost_usd == Decimal("0.0075")  # 2,000 x $3 + 100 x $15 per MTok
    assert hit.response_cache_hit and hit.cost_usd == 0 and hit.input_tokens == 0
    assert hit.baseline_usd == first.cost_usd
    figures = result.summary()[SONNET]["response-cache"]
    assert figures["hit_rate"] == pytest.approx(2 / 3)
    assert figures["saved_usd"] == pytest.approx(0.015)


# --- results -----------------------------------------------------------------------------------

def _result_with(records, **config) -> ExperimentResult:
    return ExperimentResult(config=_config(**config), records=records, id="r1", name="run one")


def _rec(arm, n, cost, baseline, ttft=100.0, read=0, write=0, model=SONNET):
    return LabRecord(arm, model, n, "ok", input_tokens=10, cache_read_tokens=read, cache_write_tokens=write,
                     cost_usd=Decimal(cost), baseline_usd=Decimal(baseline), ttft_ms=ttft, latency_ms=ttft * 2)


def test_summary_figures():
    result = _result_with([
        _rec("no-cache", 1, "0.30", "0.30", ttft=1000), _rec("prompt-cache", 1, "0.375", "0.30", 1000, write=100),
        _rec("no-cache", 2, "0.30", "0.30", ttft=1200), _rec("prompt-cache", 2, "0.03", "0.30", 200, read=100),
        _rec("no-cache", 3, "0.30", "0.30", ttft=1100), _rec("prompt-cache", 3, "0.03", "0.30", 300, read=100),
    ], arms=("no-cache", "prompt-cache"))
    figures = result.summary()[SONNET]
    cached = figures["prompt-cache"]
    assert cached["total_cost_usd"] == pytest.approx(0.435)
    assert cached["saved_usd"] == pytest.approx(0.465)
    assert cached["saved_pct"] == pytest.approx(0.465 / 0.9 * 100)
    assert cached["median_ttft_ms"] == 300
    assert cached["ttft_reduction_pct"] == pytest.approx((1100 - 300) / 1100 * 100)
    assert cached["latency_reduction_pct"] == pytest.approx((2200 - 600) / 2200 * 100)
    assert cached["hit_rate"] == pytest.approx(2 / 3)
    assert (cached["cache_read_tokens"], cached["cache_write_tokens"]) == (200, 100)
    assert cached["break_even_request"] == 2  # 0.405 <= 0.60
    assert figures["no-cache"]["break_even_request"] is None
    assert figures["no-cache"]["saved_usd"] == 0


def test_json_csv_dataframe_and_store_round_trips(tmp_path):
    from orq_core.store import Store

    result = _result_with([_rec("no-cache", 1, "0.0000123", "0.0000123"), _rec("prompt-cache", 1, "0.5", "0.3")])
    again = ExperimentResult.from_json(result.to_json())
    assert again.records == result.records and again.config == result.config
    assert again.records[0].cost_usd == Decimal("0.0000123")
    lines = result.to_csv().splitlines()
    assert lines[0].startswith("arm,model,request,status,input_tokens,cache_read_tokens,cache_write_tokens")
    assert lines[1].startswith(f"no-cache,{SONNET},1,ok,10,0,0")
    frame = result.to_dataframe()
    assert list(frame["cost_usd"]) == [0.0000123, 0.5]
    store = Store(tmp_path / "lab.db")
    result.save(store)
    loaded = ExperimentResult.load(store, "r1")
    assert loaded.records == result.records and loaded.name == "run one"
    assert ExperimentResult.load(store, "nope") is None


def test_compare_runs_gives_deltas_per_arm():
    a = _result_with([_rec("prompt-cache", 1, "0.4", "0.3", ttft=900)], arms=("prompt-cache",))
    b = ExperimentResult(config=_config(arms=("prompt-cache",), ttl="1h", models=(HAIKU,)),
                         records=[_rec("prompt-cache", 1, "0.1", "0.3", ttft=500, model=HAIKU)], id="r2")
    comparison = compare_runs(a, b)
    row = comparison["rows"][0]
    assert (row["arm"], row["model_a"], row["model_b"]) == ("prompt-cache", SONNET, HAIKU)
    assert row["total_cost_usd"]["delta"] == pytest.approx(-0.3)
    assert row["median_ttft_ms"] == {"a": 900, "b": 500, "delta": -400}
    assert comparison["config_changes"]["ttl"] == ["5m", "1h"]
    assert comparison["config_changes"]["models"] == [[SONNET], [HAIKU]]


def test_cli_prints_a_json_summary_and_writes_csv(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_lab_arguments(parser)
    out = tmp_path / "lab.csv"
    args = parser.parse_args(["--preset", "many-shot", "--model", SONNET, "--requests", "2",
                              "--arms", "no-cache,prompt-cache", "--out", str(out)])
    assert cli_lab(args, client_factory=FakeClient) == 0
    printed = json.loads(capsys.readouterr().out)
    figures = printed["summary"][SONNET]["prompt-cache"]
    assert set(figures) >= {"total_cost_usd", "saved_usd", "median_ttft_ms", "cache_read_tokens", "cache_write_tokens"}
    assert len(out.read_text().splitlines()) == 5


def test_cli_spend_guard_refuses_a_costly_run(capsys):
    parser = argparse.ArgumentParser()
    add_lab_arguments(parser)
    args = parser.parse_args(["--context-tokens", "100000", "--requests", "5", "--max-spend", "0.5"])
    assert cli_lab(args, client_factory=FakeClient) == 2
    assert "could cost up to $" in capsys.readouterr().err


# --- charts ------------------------------------------------------------------------------------

def _two_arm_result() -> ExperimentResult:
    return _result_with([
        _rec("no-cache", 1, "0.30", "0.30", ttft=1000), _rec("prompt-cache", 1, "0.375", "0.30", 1000, write=100),
        _rec("no-cache", 2, "0.30", "0.30", ttft=1200), _rec("prompt-cache", 2, "0.03", "0.30", 200, read=100),
    ], arms=("no-cache", "prompt-cache"))


def test_tokens_chart_stacks_the_four_kinds_per_arm():
    from orq_core.charts import tokens_figure

    fig = tokens_figure(_two_arm_result())
    assert fig.layout.barmode == "stack"
    names = {t.name for t in fig.data}
    assert names == {"Uncached input", "Cache write", "Cache read", "Output"}
    reads = [t for t in fig.data if t.name == "Cache read"]
    assert [list(t.y) for t in reads] == [[0, 0], [0, 100]]
    assert fig.layout.yaxis.title.text == "Tokens" and fig.layout.xaxis.title.text == "Request #"


def test_cost_chart_has_cumulative_lines_and_the_baseline():
    from orq_core.charts import cost_figure

    fig = cost_figure(_two_arm_result())
    lines = {t.name: list(t.y) for t in fig.data if t.type == "scatter"}
    assert lines["prompt-cache"] == pytest.approx([0.375, 0.405])
    assert lines["no-cache baseline"] == pytest.approx([0.30, 0.60])
    assert fig.layout.yaxis.title.text == "Cost ($)" and fig.layout.yaxis2.title.text == "Cumulative cost ($)"


def test_latency_chart_and_html_export():
    from orq_core.charts import figure_to_html, latency_figure

    fig = latency_figure(_two_arm_result())
    ttft = {t.name: list(t.y) for t in fig.data if t.xaxis == "x"}
    assert ttft == {"no-cache": [1000, 1200], "prompt-cache": [1000, 200]}
    assert fig.layout.yaxis.title.text == "TTFT (ms)" and fig.layout.yaxis2.title.text == "Latency (ms)"
    html = figure_to_html(fig)
    assert "<html>" in html[:40] and "Time to first token" in html and len(html) > 1_000_000  # plotly.js inlined: works offline


def test_importing_the_lab_does_not_import_pandas_or_plotly():
    import subprocess
    import sys

    code = ("import sys, orq_core, orq_core.lab, orq_core.charts; "
            "print(sorted(m for m in ('pandas', 'plotly', 'streamlit') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- against the real local router (loopback HTTP, time_scale 0, movable clock) ----------------

@pytest.fixture
def router_clock(fake_clock):
    return fake_clock


@pytest.fixture
def router(router_factory, router_clock):
    """A fresh local router at time_scale 0 whose caches read the test's clock."""
    return router_factory(clock=router_clock)


@pytest.fixture
def store(tmp_path):
    from orq_core.store import Store

    return Store(tmp_path / "runs.db")


def _client(router, store, **options):
    from orq_core.client import OrqClient

    return OrqClient(router.base_url, router.api_key, run_log=store, page="lab", max_retries=0,
                     sleep=lambda s: None, **options)


def _run(router, clock, store, config, **options):
    client = _client(router, store, **options.pop("client_options", {}))
    try:
        return run_experiment(config, client, sleep=clock.advance, clock=clock, **options)
    finally:
        client.close()


BOOK_100K = ExperimentConfig(preset="book", context_tokens=100_000, models=(SONNET,), requests=5, ttl="5m",
                             arms=("no-cache", "prompt-cache"), max_tokens=64)


def test_book_100k_sonnet_writes_once_then_reads(router, router_clock, store):
    from orq_core.emulator.latency import predicted_ttft_ms

    result = _run(router, router_clock, store, replace(BOOK_100K, interval_s=60))
    cached = result.arm_records(SONNET, "prompt-cache")
    plain = result.arm_records(SONNET, "no-cache")
    assert [r.status for r in result.records] == ["ok"] * 10
    assert abs(cached[0].cache_write_tokens - 100_000) <= 2_000 and cached[0].cache_read_tokens == 0
    for record in cached[1:]:
        assert record.cache_read_tokens == cached[0].cache_write_tokens
        assert record.cache_write_tokens == 0
        assert record.input_tokens < 30  # only the question is uncached
    assert all(r.cache_read_tokens == r.cache_write_tokens == 0 for r in plain)
    # input cost of a cached request is about a tenth of the same input uncached
    for c, p in zip(cached[1:], plain[1:]):
        cached_input = cost_of(c.usage, SONNET).input + cost_of(c.usage, SONNET).cache_read
        assert cached_input / cost_of(p.usage, SONNET).input == pytest.approx(Decimal("0.1"), abs=Decimal("0.001"))
    # At time_scale 0 the measured TTFT is loopback time only, so the drop is asserted on the
    # latency model's prediction for the usage the router reported (the same function it waits by).
    assert all(r.ttft_ms is not None and r.ttft_ms >= 0 for r in result.records)
    first = predicted_ttft_ms(SONNET, cached[0].input_tokens, cached[0].cache_read_tokens, cached[0].cache_write_tokens)
    later = predicted_ttft_ms(SONNET, cached[1].input_tokens, cached[1].cache_read_tokens, cached[1].cache_write_tokens)
    assert first == pytest.approx(11_500, rel=0.02) and later == pytest.approx(2_400, rel=0.02)
    summary = result.summary()[SONNET]["prompt-cache"]
    assert summary["hit_rate"] == pytest.approx(0.8) and summary["break_even_request"] == 2
    assert summary["saved_pct"] > 60


def test_interval_longer_than_the_ttl_writes_every_time(router, router_clock, store):
    slept_from = router_clock.now
    result = _run(router, router_clock, store, replace(BOOK_100K, context_tokens=5_000, interval_s=301,
                                                       arms=("prompt-cache",)))
    assert router_clock.now - slept_from == pytest.approx(4 * 301)
    writes = [r.cache_write_tokens for r in result.records]
    assert [r.cache_read_tokens for r in result.records] == [0] * 5
    assert len(set(writes)) == 1 and abs(writes[0] - 5_000) <= 100
    assert result.summary()[SONNET]["prompt-cache"]["break_even_request"] is None


def test_lab_costs_equal_cost_of_and_the_run_log(router, router_clock, store):
    result = _run(router, router_clock, store, replace(BOOK_100K, context_tokens=3_000, requests=3,
                                                       ttl="1h", arms=ARMS))
    for record in result.records:
        billed = Usage() if record.response_cache_hit else record.usage
        assert record.cost_usd == cost_of(billed, SONNET, "1h" if record.arm == "prompt-cache" else "5m").total
    logged = store.runs(page="lab")
    assert len(logged) == len(result.records) == 9
    by_request = {(r.usage.prompt_tokens, r.usage.cache_write_tokens): r.cost_usd
                  for r in logged if r.usage.cache_write_tokens}
    write = next(r for r in result.records if r.cache_write_tokens)
    assert by_request[(write.usage.prompt_tokens, write.cache_write_tokens)] == pytest.approx(float(write.cost_usd))


def test_one_run_recomputed_by_hand(router, router_clock, store):
    result = _run(router, router_clock, store, replace(BOOK_100K, context_tokens=2_000, requests=2,
                                                       arms=("prompt-cache",)))
    first, second = result.records
    # Sonnet 4.5 per million tokens: input $3.00, 5-minute write $3.75, read $0.30, output $15.00
    assert first.cost_usd == (Decimal(first.input_tokens) * Decimal("3.00")
                              + Decimal(first.cache_write_tokens) * Decimal("3.75")
                              + Decimal(first.output_tokens) * Decimal("15.00")) / 1_000_000
    assert second.cost_usd == (Decimal(second.input_tokens) * Decimal("3.00")
                               + Decimal(second.cache_read_tokens) * Decimal("0.30")
                               + Decimal(second.output_tokens) * Decimal("15.00")) / 1_000_000
    assert second.baseline_usd == (Decimal(second.usage.prompt_tokens) * 3
                                   + Decimal(second.output_tokens) * 15) / 1_000_000
    total = float(first.cost_usd + second.cost_usd)
    assert result.summary()[SONNET]["prompt-cache"]["total_cost_usd"] == pytest.approx(total)


def test_preflight_matches_what_the_router_reports(router, router_clock, store):
    config = ExperimentConfig(preset="multi-turn", context_tokens=2_000, requests=4, arms=("prompt-cache",),
                              cache_salt="pf1", fresh_cache=False, max_tokens=64)
    estimate = preflight(config).estimate("prompt-cache", SONNET).usages
    result = _run(router, router_clock, store, config)
    measured = [(r.input_tokens, r.cache_read_tokens, r.cache_write_tokens) for r in result.records]
    assert measured == [(u.input_tokens, u.cache_read_tokens, u.cache_write_tokens) for u in estimate]
    # each turn reads the previous prefix and writes only the new part
    assert all(r.cache_read_tokens == p.cache_read_tokens + p.cache_write_tokens
               for p, r in zip(result.records, result.records[1:]))
    assert all(0 < r.cache_write_tokens < 200 for r in result.records[1:])


def test_tools_preset_reads_the_tool_definitions(router, router_clock, store):
    config = ExperimentConfig(preset="tools", tool_count=30, requests=3, arms=("prompt-cache",), max_tokens=200)
    records = _run(router, router_clock, store, config).records
    assert records[0].cache_write_tokens > 5_000 and records[0].cache_read_tokens == 0
    assert [r.cache_read_tokens for r in records[1:]] == [records[0].cache_write_tokens] * 2


def test_response_cache_arm_hits_after_the_first_request(router, router_clock, store):
    result = _run(router, router_clock, store, replace(BOOK_100K, context_tokens=2_000, requests=3,
                                                       arms=("response-cache",)))
    records = result.records
    assert [r.response_cache_hit for r in records] == [False, True, True]
    assert records[0].cost_usd > 0 and records[1].cost_usd == records[2].cost_usd == 0
    assert records[1].baseline_usd == records[0].baseline_usd


def test_cancel_on_the_router_keeps_finished_rows(router, router_clock, store):
    cancel = threading.Event()

    def stop_after_three(record):
        if len(seen) == 2:
            cancel.set()
        seen.append(record)

    seen: list[LabRecord] = []
    result = _run(router, router_clock, store, replace(BOOK_100K, context_tokens=2_000),
                  on_record=stop_after_three, cancel=cancel)
    assert len(result.records) == 3 and result.cancelled
    assert [r.status for r in result.records] == ["ok", "ok", "ok"]


def test_a_failed_request_is_recorded_as_failed(router, router_clock, store):
    import uuid

    fault = {"X-Emulator-Fault": f"500x1#lab-{uuid.uuid4().hex[:6]}"}  # only the first attempt fails
    result = _run(router, router_clock, store, replace(BOOK_100K, context_tokens=2_000, requests=2),
                  client_options={"headers": fault})
    assert [r.status for r in result.records] == ["failed", "ok", "ok", "ok"]
    failed = result.records[0]
    assert failed.error and failed.cost_usd == 0 and failed.arm == "no-cache"
    assert result.summary()[SONNET]["no-cache"]["failed"] == 1


def test_a_stream_cut_midway_is_a_failed_row(router, router_clock, store):
    result = _run(router, router_clock, store, replace(BOOK_100K, context_tokens=2_000, requests=1,
                                                       arms=("no-cache",)),
                  client_options={"headers": {"X-Emulator-Fault": "cut:after=3"}})
    (record,) = result.records
    assert record.status == "failed" and record.error


# --- a run that survives a kill (issue 16, item 5) ----------------------------------------------

KILLED_RUNNER = '''
import sys, threading
from orq_core.lab import ExperimentConfig, run_experiment
from orq_core.store import Store
from orq_core.types import Completion, Done
from orq_core.usage import Usage


class HangsAfterThree:
    """Answers three requests, then hangs inside the fourth: the parent kills the process there."""

    def __init__(self):
        self.sent = 0

    def stream(self, payload, **options):
        self.sent += 1
        if self.sent > 3:
            threading.Event().wait()
        yield Done(Completion(text="ok", model=payload["model"], usage=Usage(1200, 0, 0, 20)))


config = ExperimentConfig(preset="book", context_tokens=1_000, requests=5, arms=("no-cache",))
run_experiment(config, HangsAfterThree(), store=Store.default(), result_id=sys.argv[1],
               on_record=lambda record: print(f"saved {record.request}", flush=True))
'''


def test_a_run_killed_midway_keeps_its_records_and_opens_as_interrupted(tmp_path, isolated_db):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from orq_core.store import Store

    script = tmp_path / "runner.py"
    script.write_text(KILLED_RUNNER)
    repo = str(Path(__file__).resolve().parent.parent)
    child = subprocess.Popen([sys.executable, str(script), "killedrun01"], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": repo, "ORQ_PLAYGROUND_DB": str(isolated_db)})
    try:
        heard = [child.stdout.readline().strip() for _ in range(3)]  # each line comes after its record is saved
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    assert heard == ["saved 1", "saved 2", "saved 3"] and child.returncode == -signal.SIGKILL

    store = Store(isolated_db)
    assert store.load_doc("experiment", "killedrun01").data["status"] == "running"  # what the kill left
    reopened = ExperimentResult.load(store, "killedrun01")
    assert reopened.status == "interrupted" and reopened.cancelled
    assert [(r.request, r.status, r.input_tokens) for r in reopened.records] == [(1, "ok", 1200), (2, "ok", 1200),
                                                                                  (3, "ok", 1200)]
    assert store.load_doc("experiment", "killedrun01").data["status"] == "interrupted"  # marked once opened
    assert ExperimentResult.load(store, "killedrun01").records == reopened.records


def test_a_run_saves_each_record_as_it_arrives_and_marks_itself_finished(tmp_path):
    from orq_core.store import Store

    store = Store(tmp_path / "lab.db")
    seen_saved = []

    def on_record(record):
        seen_saved.append(len(store.items("experiment", "run2")))

    config = _config(requests=3, arms=("no-cache", "prompt-cache"))
    result = run_experiment(config, FakeClient(), store=store, result_id="run2", on_record=on_record)
    assert seen_saved == [1, 2, 3, 4, 5, 6]
    assert result.status == "finished" and store.load_doc("experiment", "run2").data["status"] == "finished"
    assert ExperimentResult.load(store, "run2").records == result.records
