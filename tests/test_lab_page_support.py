"""The two small lab.py helpers the Caching Lab page uses: the experiment's spend guard and the
comparison table."""

from decimal import Decimal

import pytest

from orq_core.budget import SpendGuardError
from orq_core.lab import (COMPARED_FIGURES, ExperimentConfig, ExperimentResult, LabRecord, Preflight,
                          check_experiment_budget, compare_runs, comparison_table)

SONNET = "anthropic/claude-sonnet-4-5-20250929"


def plan(worst_case: str) -> Preflight:
    return Preflight(prefix_tokens=2_000, prompt_tokens=2_050, estimates=(), break_even={SONNET: 2},
                     worst_case=Decimal(worst_case), warnings=())


def test_budget_passes_under_and_at_the_limit_and_when_off():
    assert check_experiment_budget(plan("0.40"), 0.10, 0.50) == Decimal("0.40")
    assert check_experiment_budget(plan("0.40"), 0.0, 0.40) == Decimal("0.40")
    assert check_experiment_budget(plan("99"), 5.0, 0) == Decimal("99")
    assert check_experiment_budget(plan("99"), 5.0, None) == Decimal("99")


def test_budget_refuses_with_the_figures():
    with pytest.raises(SpendGuardError) as raised:
        check_experiment_budget(plan("0.45"), 0.10, 0.50)
    message = str(raised.value.message)
    assert message.startswith("Not started") and "$0.4500" in message and "$0.1000" in message
    assert "$0.5000" in message


def result(costs: list[str], baselines: list[str], ttl: str = "5m") -> ExperimentResult:
    config = ExperimentConfig(requests=len(costs), ttl=ttl, arms=("prompt-cache",))
    records = [LabRecord("prompt-cache", SONNET, n, "ok", cache_read_tokens=100 * (n > 1), cost_usd=Decimal(c),
                         baseline_usd=Decimal(b), ttft_ms=100.0, latency_ms=200.0)
               for n, (c, b) in enumerate(zip(costs, baselines), start=1)]
    return ExperimentResult(config=config, records=records)


def test_comparison_table_has_one_row_per_figure_with_a_b_and_delta():
    a = result(["0.02", "0.01"], ["0.02", "0.02"])
    b = result(["0.03", "0.01"], ["0.02", "0.02"], ttl="1h")
    rows = comparison_table(compare_runs(a, b))
    assert len(rows) == len(COMPARED_FIGURES)
    assert {r["arm"] for r in rows} == {"prompt-cache"} and {r["model"] for r in rows} == {SONNET}
    total = next(r for r in rows if r["figure"] == "Total cost ($)")
    assert total["A"] == pytest.approx(0.03) and total["B"] == pytest.approx(0.04)
    assert total["B − A"] == pytest.approx(0.01)
    saved = next(r for r in rows if r["figure"] == "Saved (%)")
    assert saved["A"] == pytest.approx(25.0) and saved["B"] == pytest.approx(0.0)
