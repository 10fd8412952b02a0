from decimal import Decimal

import pytest

from orq_core.budget import SessionSpend, SpendGuardError, check_budget, request_ceiling
from orq_core.request import ChatParams, build_payload, system_message, user_message
from orq_core.types import RunRecord

SONNET = "anthropic/claude-sonnet-4-5-20250929"


def payload(system_ttl=None, max_tokens=1000):
    return build_payload(ChatParams(model=SONNET, max_tokens=max_tokens),
                         [system_message("word " * 2000, cache_ttl=system_ttl), user_message("hi")])


def test_ceiling_counts_output_at_max_tokens_and_caching_at_write_price():
    plain, cached_1h = payload(), payload("1h")
    from orq_core.budget import estimate_input_tokens
    tokens = estimate_input_tokens(plain)
    assert tokens > 2000
    assert request_ceiling(plain) == (tokens * Decimal(3) + 1000 * Decimal(15)) / Decimal(1_000_000)
    assert request_ceiling(cached_1h) == (tokens * Decimal(6) + 1000 * Decimal(15)) / Decimal(1_000_000)


def test_guard_refuses_past_budget_and_allows_below():
    p = payload()
    ceiling = request_ceiling(p)
    assert check_budget(p, 0.0, None) == ceiling
    assert check_budget(p, 0.0, float(ceiling) + 0.001) == ceiling
    with pytest.raises(SpendGuardError, match=r"has spent \$0.5000 of its \$0.5000 budget"):
        check_budget(p, 0.5, 0.5)


def test_session_spend_adds_up_and_forwards():
    forwarded = []

    class Log:
        def log_run(self, record):
            forwarded.append(record)

    spend = SessionSpend(Log())
    spend.log_run(RunRecord(page="chat", model=SONNET, status="ok", cost_usd=0.25))
    spend.log_run(RunRecord(page="chat", model=SONNET, status="error", cost_usd=0.0))
    assert spend.total_usd == 0.25 and spend.requests == 2 and len(forwarded) == 2
