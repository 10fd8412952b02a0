"""The breakpoint advisor: for a Chat conversation, which breakpoints (of at most 4) make the
next N turns cheapest, and what that saves.

The Chat page offers two breakpoints: the system prompt, and the newest user message moved each
turn (Anthropic's multi-turn pattern: "mark the final block of the final message with
cache_control so the conversation can be incrementally cached"). The advisor prices the four
combinations over the next ``turns`` turns:

- turn 1 is the cache doctor's exact prediction for the next request (ledger and rules);
- later turns assume the conversation grows by the average user message and answer so far, with
  what turn k wrote readable by turn k + 1 (inside the TTL: turns are minutes apart).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from .cost import cost_of
from .tokens import text_tokens
from .usage import Usage

OPTIONS = ((False, False), (True, False), (False, True), (True, True))
DEFAULT_TURNS = 5


@dataclass(frozen=True)
class BreakpointAdvice:
    cache_system: bool
    cache_conversation: bool
    turns: int
    expected_usd: Decimal
    current_usd: Decimal

    @property
    def saving_usd(self) -> Decimal:
        return self.current_usd - self.expected_usd

    @property
    def placements(self) -> list[str]:
        names = []
        if self.cache_system:
            names.append("the system prompt")
        if self.cache_conversation:
            names.append("the newest message (moved each turn)")
        return names

    def same_as(self, cache_system: bool, cache_conversation: bool) -> bool:
        return (self.cache_system, self.cache_conversation) == (cache_system, cache_conversation)

    def sentence(self) -> str:
        from .cost import format_usd

        where = " and ".join(self.placements) or "nowhere (caching costs more than it saves here)"
        return (f"Put breakpoints on {where}: the next {self.turns} turns' input costs about "
                f"{format_usd(self.expected_usd)} instead of {format_usd(self.current_usd)} "
                f"(saves {format_usd(self.saving_usd)}).")


def _averages(conversation) -> tuple[int, int]:
    users = [text_tokens(t.text) for t in conversation.turns if t.role == "user"]
    answers = [t.completion.usage.output_tokens for t in conversation.turns
               if t.role == "assistant" and t.completion is not None]
    return (sum(users) // len(users) if users else 40) + 3, (sum(answers) // len(answers) if answers else 200) + 3


def _cost(usage: Usage, slug: str, ttl: str) -> Decimal:
    try:
        return cost_of(usage, slug, ttl).total
    except ValueError:
        return Decimal(0)


def _expected_cost(conversation, doctor, cache_system: bool, cache_conversation: bool, turns: int) -> Decimal:
    from .catalog import catalog

    settings = replace(conversation.settings, cache_system=cache_system, cache_conversation=cache_conversation)
    probe = type(conversation)(settings, list(conversation.turns))
    if not probe.turns or probe.turns[-1].role != "user":
        probe.add_user("(your next message)")
    payload = probe.payload_for_next_answer()
    slug, ttl = settings.model, settings.cache_ttl
    check = doctor.predict(payload)
    total = _cost(Usage(check.uncached_tokens, check.expected_read_tokens, check.expected_write_tokens), slug, ttl)
    minimum = catalog().resolve(slug).model.min_cacheable
    system = sum(s.tokens for s in check.segments if s.label in ("tools", "system"))
    prompt = check.expected_read_tokens + check.expected_write_tokens + check.uncached_tokens
    user, answer = _averages(conversation)
    for _ in range(turns - 1):
        grown = prompt + answer + user
        if cache_conversation and grown >= minimum:
            usage = Usage(0, prompt if prompt >= minimum else 0, grown - (prompt if prompt >= minimum else 0))
        elif cache_system and system >= minimum:
            usage = Usage(grown - system, system, 0)
        else:
            usage = Usage(grown, 0, 0)
        total += _cost(usage, slug, ttl)
        prompt = grown
    return total


def advise(conversation, doctor, turns: int = DEFAULT_TURNS) -> BreakpointAdvice:
    """The cheapest of the four breakpoint choices over the next ``turns`` turns, against the
    conversation's current choice."""
    settings = conversation.settings
    costs = {option: _expected_cost(conversation, doctor, *option, turns) for option in OPTIONS}
    best = min(OPTIONS, key=lambda option: (costs[option], sum(option)))
    current = (settings.cache_system, settings.cache_conversation)
    return BreakpointAdvice(best[0], best[1], turns, costs[best], costs[current])


def apply_advice(conversation, advice: BreakpointAdvice) -> None:
    conversation.settings.cache_system = advice.cache_system
    conversation.settings.cache_conversation = advice.cache_conversation


@dataclass(frozen=True)
class LabAdvice:
    """For a Caching Lab design: the breakpoint placement whose prompt-caching arm costs least over
    the experiment's requests (the Lab's own preflight estimate), against the chosen one."""

    placement: str
    current: str
    expected_usd: Decimal
    current_usd: Decimal

    @property
    def saving_usd(self) -> Decimal:
        return self.current_usd - self.expected_usd


def advise_lab(config, estimate=None) -> LabAdvice:
    """``estimate(config) -> Preflight`` (default ``lab.preflight``; a page passes its cached one)."""
    from .lab import BREAKPOINTS, preflight

    estimate = estimate or preflight

    def cost(placement: str) -> Decimal:
        plan = estimate(replace(config, breakpoint=placement, arms=("prompt-cache",)))
        return sum((e.total for e in plan.estimates if e.arm == "prompt-cache"), Decimal(0))

    costs = {placement: cost(placement) for placement in BREAKPOINTS[config.preset]}
    best = min(costs, key=costs.get)
    return LabAdvice(best, config.placement, costs[best], costs[config.placement])
