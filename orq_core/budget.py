"""The spend guard: refuse a request that could take a session past its budget, before sending.

The estimate is deliberately pessimistic: input counted the way the local router counts it
(cache-write price when the request asks for caching), output counted at max_tokens.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from decimal import Decimal

from .cost import format_usd, worst_case_cost
from .errors import OrqError
from .request import cache_breakpoints, cache_write_ttl


class SpendGuardError(OrqError):
    """The request was not sent: it could exceed the session's budget."""


SPEND_LIMIT_OPTION = "--max-spend"


@dataclass(frozen=True)
class BudgetWords:
    """Whose budget a refusal names and where it is raised: the page's sidebar or the CLI's option."""

    holder: str
    remedy: str


PAGE_BUDGET = BudgetWords("this session", "raise the budget in the sidebar")
CLI_BUDGET = BudgetWords("this run", f"raise {SPEND_LIMIT_OPTION}")


def estimate_input_tokens(payload: dict) -> int:
    from .emulator.prompt import count_prompt_tokens

    return count_prompt_tokens(payload)


def request_ceiling(payload: dict) -> Decimal:
    """The most this request can cost."""
    ttl = cache_write_ttl(payload) if cache_breakpoints(payload) else None
    return worst_case_cost(payload["model"], estimate_input_tokens(payload), int(payload.get("max_tokens") or 0), ttl)


def check_budget(payload: dict, spent_usd: float, budget_usd: float | None,
                 words: BudgetWords = PAGE_BUDGET) -> Decimal:
    """Returns the ceiling; raises SpendGuardError when spent + ceiling would pass the budget.
    A budget of None or 0 means no guard."""
    ceiling = request_ceiling(payload)
    if budget_usd and Decimal(str(spent_usd)) + ceiling > Decimal(str(budget_usd)):
        raise SpendGuardError(
            f"Not sent: this request could cost up to {format_usd(ceiling)} (input estimate, output at "
            f"max_tokens) and {words.holder} has spent {format_usd(spent_usd)} of its {format_usd(budget_usd)} "
            f"budget. Lower max_tokens, shorten the prompt, or {words.remedy}.")
    return ceiling


class SessionSpend:
    """A run log that also adds up what one browser session spent (thread-safe: Compare streams
    columns on worker threads). Forwards every record to the real run log."""

    def __init__(self, run_log=None):
        self._run_log = run_log
        self._lock = threading.Lock()
        self.total_usd = 0.0
        self.requests = 0

    def log_run(self, record) -> None:
        with self._lock:
            self.total_usd += record.cost_usd or 0.0
            self.requests += 1
        if self._run_log is not None:
            self._run_log.log_run(record)


@dataclass(frozen=True)
class BudgetDefaults:
    local_usd: float = 0.0
    """The local router bills nothing real: no guard unless the person sets one."""
    orq_usd: float = 1.0


def add_spend_limit_option(parser, refusal: str = "refuse to start when the worst case exceeds this many USD") -> None:
    """``--max-spend`` for CLI commands that send many requests (lab, batch, notebook run)."""
    parser.add_argument(SPEND_LIMIT_OPTION, type=float, default=None,
                        help=f"{refusal} (default: $1 against Orq, no limit on the local router)")


def cli_spend_limit(max_spend: float | None, local: bool) -> float | None:
    """``--max-spend`` when given, else the pages' defaults: $1 against Orq, none on the local router."""
    if max_spend is not None:
        return max_spend
    return None if local else BudgetDefaults().orq_usd
