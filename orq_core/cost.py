"""Cost of a request from its Usage and the catalog's prices: the one source of truth.

Amounts are ``Decimal`` USD so hand-computed examples compare exactly.
Reasoning tokens are billed as output and are already inside ``output_tokens``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from .catalog import PER_MILLION, Model, catalog
from .usage import Usage


@dataclass(frozen=True)
class CostBreakdown:
    input: Decimal
    cache_read: Decimal
    cache_write: Decimal
    output: Decimal
    no_cache_total: Decimal
    """What the same tokens would have cost with no prompt caching at all."""

    @property
    def total(self) -> Decimal:
        return self.input + self.cache_read + self.cache_write + self.output

    @property
    def saved(self) -> Decimal:
        """Positive when caching saved money, negative when a write cost extra."""
        return self.no_cache_total - self.total

    def to_dict(self) -> dict:
        return {
            "total": float(self.total),
            "input": float(self.input),
            "cache_read": float(self.cache_read),
            "cache_write": float(self.cache_write),
            "output": float(self.output),
            "no_cache_total": float(self.no_cache_total),
            "saved": float(self.saved),
        }

    def __add__(self, other: "CostBreakdown") -> "CostBreakdown":
        return CostBreakdown(
            self.input + other.input, self.cache_read + other.cache_read,
            self.cache_write + other.cache_write, self.output + other.output,
            self.no_cache_total + other.no_cache_total,
        )


ZERO_COST = CostBreakdown(Decimal(0), Decimal(0), Decimal(0), Decimal(0), Decimal(0))


def _model(model: Model | str) -> Model:
    return model if isinstance(model, Model) else catalog().resolve(model).model


def cost_of(usage: Usage, model: Model | str, write_ttl: str = "5m") -> CostBreakdown:
    """Cost in USD. ``write_ttl`` is the TTL of the request's cache breakpoints: the wire's
    usage does not split writes by TTL, so the caller says which price applies."""
    prices = _model(model).prices
    return CostBreakdown(
        input=usage.input_tokens * prices.input / PER_MILLION,
        cache_read=usage.cache_read_tokens * prices.cache_read / PER_MILLION,
        cache_write=usage.cache_write_tokens * prices.cache_write(write_ttl) / PER_MILLION,
        output=usage.output_tokens * prices.output / PER_MILLION,
        no_cache_total=(usage.prompt_tokens * prices.input + usage.output_tokens * prices.output) / PER_MILLION,
    )


def worst_case_cost(model: Model | str, input_tokens: int, max_tokens: int, write_ttl: str | None = None) -> Decimal:
    """Upper bound used by the spend guard: all input written to the cache when caching is
    asked for (the dearest way to bill input), else uncached; output at max_tokens."""
    prices = _model(model).prices
    input_price = prices.cache_write(write_ttl) if write_ttl else prices.input
    return (input_tokens * input_price + max_tokens * prices.output) / PER_MILLION


def format_usd(amount: Decimal | float) -> str:
    amount = float(amount)
    if amount == 0:
        return "$0"
    if abs(amount) < 0.01:
        return f"${amount:.6f}".rstrip("0")
    return f"${amount:,.4f}"
