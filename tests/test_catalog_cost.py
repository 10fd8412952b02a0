from decimal import Decimal

import pytest

from orq_core.catalog import UnknownModelError, catalog
from orq_core.cost import cost_of, worst_case_cost
from orq_core.usage import Usage

SONNET = "anthropic/claude-sonnet-4-5-20250929"


def test_six_documented_models_with_wire_prices():
    expected = {
        "claude-opus-4-5-20251101": ("5", "25", 4096),
        "claude-sonnet-4-5-20250929": ("3", "15", 1024),
        "claude-haiku-4-5-20251001": ("1", "5", 4096),
        "claude-opus-4-1-20250805": ("15", "75", 1024),
        "claude-sonnet-4-20250514": ("3", "15", 1024),
        "claude-3-5-haiku-20241022": ("0.8", "4", 2048),
    }
    for model_id, (inp, out, minimum) in expected.items():
        model = catalog().model(model_id)
        assert model.prices.input == Decimal(inp)
        assert model.prices.output == Decimal(out)
        assert model.min_cacheable == minimum
        assert model.prices.cache_write_5m == Decimal(inp) * Decimal("1.25")
        assert model.prices.cache_write_1h == Decimal(inp) * 2
        assert model.prices.cache_read == Decimal(inp) / 10


def test_resolve_providers_longest_prefix_first():
    assert catalog().resolve("aws/anthropic/claude-haiku-4-5-20251001").provider.id == "aws"
    assert catalog().resolve("google/anthropic/claude-haiku-4-5-20251001").provider.id == "google"
    assert catalog().resolve(SONNET).provider.id == "anthropic"
    assert catalog().resolve("claude-sonnet-4-5-20250929").slug == SONNET
    with pytest.raises(UnknownModelError, match="Unknown model"):
        catalog().resolve("anthropic/claude-9")
    with pytest.raises(UnknownModelError, match="Unknown provider"):
        catalog().resolve("azure/anthropic/claude-sonnet-4-5-20250929")


def test_sonnet_cache_read_example_is_exact():
    usage = Usage(input_tokens=200, cache_read_tokens=10_000, output_tokens=300)
    cost = cost_of(usage, SONNET)
    assert cost.total == Decimal("0.0081")
    assert cost.cache_read == Decimal("0.003")
    assert cost.input == Decimal("0.0006")
    assert cost.output == Decimal("0.0045")
    assert cost.no_cache_total == Decimal("0.0351")  # 10,200 x $3 + 300 x $15 per MTok


def test_one_hour_write_costs_twice_input():
    assert cost_of(Usage(cache_write_tokens=10_000), SONNET, "1h").total == Decimal("0.06")
    assert cost_of(Usage(cache_write_tokens=10_000), SONNET, "5m").total == Decimal("0.0375")


def test_worst_case_counts_output_at_max_tokens():
    assert worst_case_cost(SONNET, 1000, 1000) == Decimal("0.018")
    assert worst_case_cost(SONNET, 1000, 1000, "1h") == Decimal("0.021")


@pytest.mark.parametrize("wire, expected", [
    ({"prompt_tokens": 10_200, "completion_tokens": 300,
      "prompt_tokens_details": {"cached_tokens": 10_000, "cache_creation_tokens": 0}}, (200, 10_000, 0, 300)),
    ({"prompt_tokens": 5_000, "completion_tokens": 10,
      "prompt_tokens_details": {"cached_tokens": None, "cache_write_tokens": 4_000}}, (1_000, 0, 4_000, 10)),
    # prompt_tokens smaller than cached + written: it was the uncached count alone
    ({"prompt_tokens": 50, "completion_tokens": 5,
      "prompt_tokens_details": {"cached_tokens": 3_000, "cache_creation_tokens": 100}}, (50, 3_000, 100, 5)),
    ({"prompt_tokens": 12, "completion_tokens": None, "prompt_tokens_details": None}, (12, 0, 0, 0)),
    ({}, (0, 0, 0, 0)),
    (None, (0, 0, 0, 0)),
])
def test_usage_from_wire(wire, expected):
    usage = Usage.from_wire(wire)
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens, usage.output_tokens) == expected


def test_usage_keeps_raw_and_reasoning():
    wire = {"prompt_tokens": 10, "completion_tokens": 20, "completion_tokens_details": {"reasoning_tokens": 7}}
    usage = Usage.from_wire(wire)
    assert usage.reasoning_tokens == 7
    assert usage.raw == wire
    assert Usage.from_wire(usage.to_wire()) == usage
