"""The Caching Lab: run the same prompt N times per arm (no cache, prompt cache, Orq's response
cache) and measure tokens, cost and latency per request.

Order of a run: requests are interleaved by request number (request 1 of every model and arm,
then request 2 of every model and arm, ...), with ``interval_s`` waited between rounds. So every
arm sees the same gap between its own requests, and a run takes ``requests x interval`` rather
than ``arms x requests x interval``. Arms do not disturb each other: only the prompt-cache arm
marks breakpoints, and only the response-cache arm asks for Orq's exact-match cache.

Money comes from ``cost_of`` only. A response-cache hit is served by Orq without calling the
model ("without paying per call", Orq's cache docs), so it is priced as no tokens billed; its
no-cache baseline is the price of the same request answered by the model.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import socket
import statistics
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, fields, replace
from decimal import Decimal
from typing import Callable, Iterable

from .budget import PAGE_BUDGET, SPEND_LIMIT_OPTION, BudgetWords, add_spend_limit_option, cli_spend_limit
from .catalog import DEFAULT_MODEL, Model, catalog
from .connection import add_local_option
from .cost import CostBreakdown, cost_of, worst_case_cost
from .errors import OrqError, describe
from .lab_presets import (BOOK_INSTRUCTIONS, BREAKPOINTS, CUSTOM_INSTRUCTIONS, DEFAULT_QUESTIONS,
                          MANY_SHOT_INSTRUCTIONS, MULTI_TURN_INSTRUCTIONS, PRESETS, TOOLS_INSTRUCTIONS,
                          filler_text, many_shot_examples, scripted_reply, tool_catalogue)
from .request import (ChatParams, build_payload, cache_control, cache_write_ttl,
                      system_message, text_part, user_message)
from .types import Completion, Done
from .usage import Usage

ARMS = ("no-cache", "prompt-cache", "response-cache")
TTL_SECONDS = {"5m": 300, "1h": 3600}
MIN_CONTEXT_TOKENS = 1_000
MAX_CONTEXT_TOKENS = 150_000
MAX_REQUESTS = 200
MAX_INTERVAL_S = 7_200
MAX_LAB_OUTPUT = 8_192
DOC_KIND = "experiment"


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExperimentConfig:
    preset: str = "book"
    context_tokens: int = 10_000
    """Size of the book / guidebook (book, multi-turn)."""
    shots: int = 100
    """Examples in the many-shot preset."""
    turns: int = 0
    """Earlier turns already in the conversation when request 1 is sent (multi-turn)."""
    tool_count: int = 40
    """Tool definitions in the tools preset."""
    models: tuple[str, ...] = (DEFAULT_MODEL,)
    requests: int = 5
    interval_s: float = 0.0
    ttl: str = "5m"
    breakpoint: str | None = None
    """Where the prompt-cache arm marks its breakpoint; None = the preset's default."""
    arms: tuple[str, ...] = ("no-cache", "prompt-cache")
    max_tokens: int = 256
    questions: tuple[str, ...] = ()
    """Asked in turn, one per request; empty = the preset's questions."""
    custom_context: str = ""
    fresh_cache: bool = True
    """Start every run cold: run_experiment puts a run-unique salt at the head of the prefix, so a
    previous run's cache entries (and Orq's stored responses) cannot serve request 1."""
    cache_salt: str = ""

    @property
    def placement(self) -> str:
        return self.breakpoint or BREAKPOINTS[self.preset][0]

    @property
    def question_list(self) -> tuple[str, ...]:
        return self.questions or DEFAULT_QUESTIONS[self.preset]

    def validate(self) -> None:
        """Raises ValueError with a sentence the page can show."""
        if self.preset not in PRESETS:
            raise ValueError(f"Unknown preset '{self.preset}'. Use one of: {', '.join(PRESETS)}")
        if self.placement not in BREAKPOINTS[self.preset]:
            raise ValueError(f"The {self.preset} preset puts its breakpoint on: "
                             f"{' or '.join(BREAKPOINTS[self.preset])} (not '{self.placement}')")
        if self.preset in ("book", "multi-turn") and not MIN_CONTEXT_TOKENS <= self.context_tokens <= MAX_CONTEXT_TOKENS:
            raise ValueError(f"Context size must be {MIN_CONTEXT_TOKENS:,} to {MAX_CONTEXT_TOKENS:,} tokens")
        if self.preset == "custom" and not self.custom_context.strip():
            raise ValueError("The custom preset needs some context text")
        if self.preset == "many-shot" and not _whole_within(self.shots, 1, 2_000):
            raise ValueError(f"Many-shot needs 1 to 2,000 examples (you gave {_number(self.shots)})")
        if self.preset == "tools" and not _whole_within(self.tool_count, 1, 500):
            raise ValueError(f"The tools preset needs 1 to 500 tools (you gave {_number(self.tool_count)})")
        if not _whole_within(self.turns, 0, 100):
            raise ValueError(f"Earlier turns must be 0 to 100 (you gave {_number(self.turns)})")
        if not _whole_within(self.requests, 1, MAX_REQUESTS):
            raise ValueError(f"Requests per arm must be a whole number from 1 to {MAX_REQUESTS} "
                             f"(you gave {_number(self.requests)})")
        if not (isinstance(self.interval_s, (int, float)) and 0 <= self.interval_s <= MAX_INTERVAL_S):
            raise ValueError(f"The interval must be from 0 to {MAX_INTERVAL_S:,} seconds "
                             f"(you gave {_number(self.interval_s)})")
        if self.ttl not in TTL_SECONDS:
            raise ValueError("TTL must be 5m or 1h")
        if not self.arms or any(arm not in ARMS for arm in self.arms):
            raise ValueError(f"Arms must be some of: {', '.join(ARMS)}")
        if not self.models:
            raise ValueError("Choose at least one model")
        for slug in self.models:
            catalog().resolve(slug)  # UnknownModelError is a ValueError with a clear message
        if not _whole_within(self.max_tokens, 1, MAX_LAB_OUTPUT):
            raise ValueError(f"max_tokens must be a whole number from 1 to {MAX_LAB_OUTPUT:,} "
                             f"(you gave {_number(self.max_tokens)})")

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(models=list(self.models), arms=list(self.arms), questions=list(self.questions))
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "ExperimentConfig":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("models", "arms", "questions"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


def _whole_within(value, low: int, high: int) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == int(value) \
        and low <= value <= high


def _number(value) -> str:
    """A number as the person typed it, readable: 10,000, -5, 2.5, 1,000,000,000,000."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{value:,}" if isinstance(value, (int, float)) else repr(value)


# --------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------

def _salted(text: str, config: ExperimentConfig) -> str:
    return f"[Run {config.cache_salt}]\n{text}" if config.cache_salt else text


def _context_text(config: ExperimentConfig) -> tuple[str, str]:
    """(instructions, context) for the presets that put one long text before the question."""
    if config.preset == "book":
        return BOOK_INSTRUCTIONS, filler_text(config.context_tokens)
    if config.preset == "many-shot":
        return MANY_SHOT_INSTRUCTIONS, many_shot_examples(config.shots)
    return CUSTOM_INSTRUCTIONS, config.custom_context


def _question(config: ExperimentConfig, index: int) -> str:
    questions = config.question_list
    question = questions[index % len(questions)]
    return f"Review: {question}\nSentiment:" if config.preset == "many-shot" else question


def _document_messages(config: ExperimentConfig, index: int, ttl: str | None) -> list[dict]:
    instructions, context = _context_text(config)
    question = _question(config, index)
    if config.placement == "system":
        return [system_message(_salted(f"{instructions}\n\n{context}", config), cache_ttl=ttl),
                user_message(question)]
    return [system_message(_salted(instructions, config)),
            user_message([text_part(context, cache_ttl=ttl), text_part(question)])]


def _conversation_messages(config: ExperimentConfig, index: int, ttl: str | None) -> list[dict]:
    """Request ``index`` (0-based) holds ``turns + index + 1`` user turns. With "last-turn" the
    newest user turn is marked (it writes the new part) and so is the one before it, where the
    previous request wrote: Anthropic's documented pattern for reading the longest cached prefix."""
    guidebook = filler_text(config.context_tokens, seed=7)
    on_system = ttl if config.placement == "system" else None
    messages = [system_message(_salted(f"{MULTI_TURN_INSTRUCTIONS}\n\n{guidebook}", config), cache_ttl=on_system)]
    last = config.turns + index
    for turn in range(last + 1):
        marked = ttl if config.placement == "last-turn" and turn >= last - 1 else None
        messages.append(user_message([text_part(_question(config, turn), cache_ttl=marked)]))
        if turn < last:
            messages.append({"role": "assistant", "content": scripted_reply(turn)})
    return messages


def _tools_request(config: ExperimentConfig, index: int, ttl: str | None) -> tuple[list[dict], list[dict]]:
    tools = tool_catalogue(config.tool_count)
    if config.cache_salt:
        # The prefix starts with the tools, so the salt goes in the first definition.
        first = tools[0]["function"]
        first["description"] = _salted(first["description"], config)
    if ttl and config.placement == "tools":
        tools[-1]["cache_control"] = cache_control(ttl)
    system = system_message(_salted(TOOLS_INSTRUCTIONS, config),
                            cache_ttl=ttl if config.placement == "system" else None)
    return [system, user_message(_question(config, index))], tools


def _messages_and_tools(config: ExperimentConfig, index: int, ttl: str | None) -> tuple[list[dict], list[dict] | None]:
    if config.preset == "tools":
        return _tools_request(config, index, ttl)
    if config.preset == "multi-turn":
        return _conversation_messages(config, index, ttl), None
    return _document_messages(config, index, ttl), None


def build_requests(config: ExperimentConfig, arm: str, model: str) -> list[dict]:
    """The payloads one arm sends to one model, in order (pure: same config, same bytes).

    - no-cache: the preset's requests, no breakpoints;
    - prompt-cache: the same requests with a breakpoint (``config.ttl``) at ``config.placement``;
    - response-cache: request 1 of no-cache, sent ``requests`` times with Orq's exact-match cache
      (it only ever serves identical requests)."""
    if arm not in ARMS:
        raise ValueError(f"Unknown arm '{arm}'. Use one of: {', '.join(ARMS)}")
    ttl = config.ttl if arm == "prompt-cache" else None
    response_ttl = TTL_SECONDS[config.ttl] if arm == "response-cache" else None
    count = 1 if arm == "response-cache" else config.requests
    payloads: list[dict] = []
    for index in range(count):
        messages, tools = _messages_and_tools(config, index, ttl)
        params = ChatParams(model=model, max_tokens=config.max_tokens, tools=tools,
                            response_cache_ttl=response_ttl)
        if tools and payloads:
            # Same tool list in every request: validate it once (schema checks cost ~3 ms a tool).
            payload = build_payload(replace(params, tools=None), messages)
            payload = {key: tools if key == "tools" else payload[key] for key in payloads[0]}
        else:
            payload = build_payload(params, messages)
        payloads.append(payload)
    return payloads * config.requests if arm == "response-cache" else payloads


# --------------------------------------------------------------------------------------------
# Estimates before running
# --------------------------------------------------------------------------------------------

def prompt_shape(payload: dict) -> tuple[int, int]:
    """(all prompt tokens, tokens up to and including the last cache breakpoint), counted the way
    the local router counts and caches them (the same blocks and overheads)."""
    from .emulator.prompt import segment_prompt

    blocks = segment_prompt(payload)
    marked = [n for n, block in enumerate(blocks) if block.cache_ttl]
    prefix = sum(block.tokens for block in blocks[:marked[-1] + 1]) if marked else 0
    return sum(block.tokens for block in blocks), prefix


@dataclass(frozen=True)
class ArmEstimate:
    arm: str
    model: str
    usages: tuple[Usage, ...]
    costs: tuple[CostBreakdown, ...]
    baseline: Decimal
    """The same requests answered by the model with no caching of any kind."""

    @property
    def total(self) -> Decimal:
        return sum((c.total for c in self.costs), Decimal(0))


@dataclass(frozen=True)
class Preflight:
    prefix_tokens: int
    """Tokens up to the prompt-cache arm's breakpoint in request 1."""
    prompt_tokens: int
    """All input tokens of request 1."""
    estimates: tuple[ArmEstimate, ...]
    """Estimated cost per arm and model: output counted at max_tokens."""
    break_even: dict[str, int | None]
    """Per model: first request number where cumulative prompt-cache cost <= no-cache cost."""
    worst_case: Decimal
    """Most the whole experiment can cost (the spend guard's ceiling summed over requests)."""
    warnings: tuple[str, ...]

    def estimate(self, arm: str, model: str) -> ArmEstimate | None:
        return next((e for e in self.estimates if e.arm == arm and e.model == model), None)

    def to_dict(self) -> dict:
        return {
            "prefix_tokens": self.prefix_tokens, "prompt_tokens": self.prompt_tokens,
            "estimates": [{"arm": e.arm, "model": e.model, "cost_usd": float(e.total),
                           "baseline_usd": float(e.baseline)} for e in self.estimates],
            "break_even": self.break_even, "worst_case_usd": float(self.worst_case),
            "warnings": list(self.warnings),
        }


def _estimated_usages(arm: str, totals: list[int], prefixes: list[int], config: ExperimentConfig,
                      model: Model) -> list[Usage]:
    """Request 1 writes the prefix; later requests read what the previous one wrote when it is
    still alive (interval < TTL; a read refreshes the TTL) and write the rest."""
    out = config.max_tokens
    alive = config.interval_s < TTL_SECONDS[config.ttl]
    if arm == "response-cache":  # request 1, repeated
        totals, prefixes = totals[:1] * len(totals), prefixes[:1] * len(prefixes)
    usages = []
    for i, (total, prefix) in enumerate(zip(totals, prefixes)):
        if arm == "response-cache" and i > 0 and alive:
            usages.append(Usage())
        elif arm != "prompt-cache" or prefix < model.min_cacheable:
            usages.append(Usage(input_tokens=total, output_tokens=out))
        else:
            previous = prefixes[i - 1] if i > 0 else 0
            read = previous if alive and model.min_cacheable <= previous <= prefix else 0
            usages.append(Usage(input_tokens=total - prefix, cache_read_tokens=read,
                                cache_write_tokens=prefix - read, output_tokens=out))
    return usages


def _break_even(cached: list[CostBreakdown], plain: list[CostBreakdown]) -> int | None:
    cum_cached = cum_plain = Decimal(0)
    for n, (a, b) in enumerate(zip(cached, plain), start=1):
        cum_cached += a.total
        cum_plain += b.total
        if cum_cached <= cum_plain:
            return n
    return None


def preflight(config: ExperimentConfig) -> Preflight:
    """Token and cost estimates for the whole experiment, before anything is sent. Token counts do
    not depend on the model or on cache markers, so the prompt-cache arm's requests to the first
    model are counted once for all."""
    config.validate()
    shapes = [prompt_shape(p) for p in build_requests(config, "prompt-cache", config.models[0])]
    totals, prefixes = [t for t, _ in shapes], [p for _, p in shapes]
    estimates, break_even, warnings = [], {}, []
    worst = Decimal(0)
    for slug in config.models:
        model = catalog().resolve(slug).model
        costs = {}
        for arm in ARMS:
            ttl = config.ttl if arm == "prompt-cache" else "5m"
            usages = _estimated_usages(arm, totals, prefixes, config, model)
            costs[arm] = [cost_of(u, model, ttl) for u in usages]
            if arm in config.arms:
                plain = _estimated_usages("no-cache", totals[:1] * len(totals) if arm == "response-cache"
                                          else totals, prefixes, config, model)
                baseline = sum((cost_of(u, model).total for u in plain), Decimal(0))
                estimates.append(ArmEstimate(arm, slug, tuple(usages), tuple(costs[arm]), baseline))
                worst += _worst_case(arm, totals, config, model)
        break_even[slug] = _break_even(costs["prompt-cache"], costs["no-cache"])
        warnings += _warnings(config, model, prefixes[0], max(totals))
    return Preflight(prefixes[0], totals[0], tuple(estimates), break_even, worst, tuple(dict.fromkeys(warnings)))


def _worst_case(arm: str, totals: list[int], config: ExperimentConfig, model: Model) -> Decimal:
    """The spend guard's ceiling (budget.request_ceiling's rule) summed over the arm's requests:
    all input at the cache-write price when caching is asked for, output at max_tokens."""
    if arm == "response-cache":
        totals = totals[:1] * len(totals)
    ttl = config.ttl if arm == "prompt-cache" else None
    return sum((worst_case_cost(model, t, config.max_tokens, ttl) for t in totals), Decimal(0))


def _warnings(config: ExperimentConfig, model: Model, prefix: int, largest: int) -> list[str]:
    warnings = []
    if "prompt-cache" in config.arms and prefix < model.min_cacheable:
        warnings.append(f"The cached prefix is about {prefix:,} tokens, below {model.label}'s minimum of "
                        f"{model.min_cacheable:,}: it will not be cached (no error, both cache counters 0).")
    if largest + config.max_tokens > model.context_window:
        warnings.append(f"The largest request needs about {largest + config.max_tokens:,} tokens, more than "
                        f"{model.label}'s {model.context_window:,}-token context window.")
    if "prompt-cache" in config.arms and config.interval_s >= TTL_SECONDS[config.ttl]:
        warnings.append(f"The interval ({config.interval_s:g} s) is not shorter than the {config.ttl} TTL: "
                        "every request will write the cache again.")
    return warnings


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------

@dataclass
class LabRecord:
    """One request of one arm. Costs are exact Decimal USD from cost_of."""

    arm: str
    model: str
    request: int
    """1-based request number within the arm."""
    status: str
    """'ok', 'failed' or 'cancelled'."""
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    baseline_usd: Decimal = Decimal(0)
    """What the same request costs with no caching of any kind."""
    ttft_ms: float | None = None
    latency_ms: float | None = None
    response_cache_hit: bool = False
    error: str | None = None
    write_ttl: str = "5m"
    answered_by: str = ""
    request_id: str | None = None
    t_s: float = 0.0
    """Seconds since the experiment started, by the run's clock."""
    ts: float = 0.0
    """Wall-clock time (epoch seconds)."""
    expected_read_tokens: int | None = None
    expected_write_tokens: int | None = None
    cache_why: str = ""
    """The cache doctor's prediction and reason, with how the router's figures compared."""

    @property
    def usage(self) -> Usage:
        return Usage(self.input_tokens, self.cache_read_tokens, self.cache_write_tokens,
                     self.output_tokens, self.reasoning_tokens)

    @property
    def cache_hit(self) -> bool:
        return self.cache_read_tokens > 0 or self.response_cache_hit

    def to_dict(self) -> dict:
        data = asdict(self)
        data["cost_usd"], data["baseline_usd"] = str(self.cost_usd), str(self.baseline_usd)
        return data

    def to_row(self) -> dict:
        """Flat row for tables and charts: costs as float."""
        data = asdict(self)
        data["cost_usd"], data["baseline_usd"] = float(self.cost_usd), float(self.baseline_usd)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "LabRecord":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("cost_usd", "baseline_usd"):
            values[key] = Decimal(str(values.get(key) or 0))
        return cls(**values)


def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _reduction_pct(value: float | None, reference: float | None) -> float | None:
    if value is None or not reference:
        return None
    return (reference - value) / reference * 100


def _arm_summary(records: list[LabRecord]) -> dict:
    total = sum((r.cost_usd for r in records), Decimal(0))
    baseline = sum((r.baseline_usd for r in records), Decimal(0))
    ok = [r for r in records if r.status == "ok"]
    cum_cost = cum_base = Decimal(0)
    break_even = None
    for r in records:
        cum_cost, cum_base = cum_cost + r.cost_usd, cum_base + r.baseline_usd
        if break_even is None and r.arm != "no-cache" and cum_base > 0 and cum_cost <= cum_base:
            break_even = r.request
    return {
        "requests": len(records),
        "ok": len(ok),
        "failed": sum(r.status == "failed" for r in records),
        "total_cost_usd": float(total),
        "baseline_cost_usd": float(baseline),
        "saved_usd": float(baseline - total),
        "saved_pct": float((baseline - total) / baseline * 100) if baseline else 0.0,
        "median_ttft_ms": _median(r.ttft_ms for r in ok),
        "median_latency_ms": _median(r.latency_ms for r in ok),
        "hit_rate": sum(r.cache_hit for r in ok) / len(ok) if ok else 0.0,
        "input_tokens": sum(r.input_tokens for r in records),
        "cache_read_tokens": sum(r.cache_read_tokens for r in records),
        "cache_write_tokens": sum(r.cache_write_tokens for r in records),
        "output_tokens": sum(r.output_tokens for r in records),
        "break_even_request": break_even,
    }


RUNNING, FINISHED, STOPPED, INTERRUPTED = "running", "finished", "stopped", "interrupted"
_ACTIVE_RUNS: set[str] = set()
"""Ids of the runs this process is running now (a saved "running" run not here may be dead)."""


def _runner_alive(runner: dict | None) -> bool:
    """Whether the process that saved a "running" run can still be running it. Another machine's
    process (a shared PostgreSQL store) cannot be checked, so it counts as alive."""
    if not isinstance(runner, dict) or runner.get("host") != socket.gethostname():
        return isinstance(runner, dict)
    pid = runner.get("pid")
    if pid == os.getpid() or not isinstance(pid, int):
        return False  # this process runs none by that id (see _ACTIVE_RUNS)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class ExperimentResult:
    config: ExperimentConfig
    records: list[LabRecord] = field(default_factory=list)
    started_at: float = 0.0
    finished_at: float = 0.0
    cancelled: bool = False
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    name: str = ""
    status: str = FINISHED
    """running (saved as it goes), finished, stopped (by the person) or interrupted (its process
    died mid-run: what was saved before is kept)."""

    def arm_records(self, model: str, arm: str) -> list[LabRecord]:
        return [r for r in self.records if r.model == model and r.arm == arm]

    def groups(self) -> list[tuple[str, str]]:
        """(model, arm) pairs that have records, in the config's order."""
        present = {(r.model, r.arm) for r in self.records}
        return [(m, a) for m in self.config.models for a in self.config.arms if (m, a) in present]

    def summary(self) -> dict:
        """{model: {arm: figures}}. Savings compare each request with the same request priced
        without caching; latency reductions compare medians with the no-cache arm."""
        result: dict = {}
        for model, arm in self.groups():
            result.setdefault(model, {})[arm] = _arm_summary(self.arm_records(model, arm))
        for arms in result.values():
            reference = arms.get("no-cache", {})
            for arm, figures in arms.items():
                figures["ttft_reduction_pct"] = None if arm == "no-cache" else _reduction_pct(
                    figures["median_ttft_ms"], reference.get("median_ttft_ms"))
                figures["latency_reduction_pct"] = None if arm == "no-cache" else _reduction_pct(
                    figures["median_latency_ms"], reference.get("median_latency_ms"))
        return result

    def to_dict(self, with_records: bool = True) -> dict:
        data = {"id": self.id, "name": self.name, "config": self.config.to_dict(), "status": self.status,
                "started_at": self.started_at, "finished_at": self.finished_at, "cancelled": self.cancelled}
        if with_records:
            data["records"] = [r.to_dict() for r in self.records]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "ExperimentResult":
        return cls(config=ExperimentConfig.from_dict(data["config"]),
                   records=[LabRecord.from_dict(r) for r in data.get("records", [])],
                   started_at=data.get("started_at", 0.0), finished_at=data.get("finished_at", 0.0),
                   cancelled=data.get("cancelled", False), id=data.get("id") or uuid.uuid4().hex[:12],
                   name=data.get("name", ""), status=data.get("status", FINISHED))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "ExperimentResult":
        return cls.from_dict(json.loads(text))

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=[f.name for f in fields(LabRecord)], lineterminator="\n")
        writer.writeheader()
        for record in self.records:
            writer.writerow(record.to_dict())
        return out.getvalue()

    def to_dataframe(self):
        import pandas as pd

        columns = [f.name for f in fields(LabRecord)]
        return pd.DataFrame([r.to_row() for r in self.records], columns=columns)

    # Saved as it goes: the document holds the run's header (config, status), and each record is
    # an item of it, written when it arrives. A killed process loses only the request in flight.

    def save_header(self, store) -> None:
        header = self.to_dict(with_records=False)
        if self.status == RUNNING:
            header["runner"] = {"host": socket.gethostname(), "pid": os.getpid()}
        store.save_doc(DOC_KIND, self.id, self.name or default_name(self.config), header)

    def save_record(self, store, index: int, record: LabRecord) -> None:
        store.put_item(DOC_KIND, self.id, f"{index:06d}", record.to_dict())

    def save(self, store) -> str:
        """The whole run at once (a run that was not saved as it went, e.g. an import)."""
        self.save_header(store)
        for index, record in enumerate(self.records):
            self.save_record(store, index, record)
        return self.id

    @classmethod
    def load(cls, store, experiment_id: str) -> "ExperimentResult | None":
        """The run with every record saved so far. A run saved as running whose process is gone is
        marked interrupted (here, and in the store)."""
        doc = store.load_doc(DOC_KIND, experiment_id)
        if doc is None:
            return None
        result = cls.from_dict(doc.data)
        items = store.items(DOC_KIND, experiment_id)
        if items:
            result.records = [LabRecord.from_dict(data) for _, data in items]
        if (result.status == RUNNING and experiment_id not in _ACTIVE_RUNS
                and not _runner_alive(doc.data.get("runner"))):
            result.status, result.cancelled = INTERRUPTED, True
            result.save_header(store)
        return result


def default_name(config: ExperimentConfig) -> str:
    labels = ", ".join(catalog().resolve(slug).model.label for slug in config.models)
    size = {"book": f" {config.context_tokens // 1000}K", "multi-turn": f" {config.context_tokens // 1000}K",
            "many-shot": f" {config.shots} shots", "tools": f" {config.tool_count} tools"}.get(config.preset, "")
    return (f"{config.preset}{size} · {labels} · {config.requests} req every {config.interval_s:g}s"
            f" · TTL {config.ttl}")


COMPARED_FIGURES = ("total_cost_usd", "saved_usd", "saved_pct", "median_ttft_ms", "median_latency_ms",
                    "hit_rate", "cache_read_tokens", "cache_write_tokens", "break_even_request")


def compare_runs(a: ExperimentResult, b: ExperimentResult) -> dict:
    """Side by side: per arm (and model) each figure of a and b with b - a. When each run used one
    model and they differ, arms are matched by name alone (comparing models is the point)."""
    sa, sb = a.summary(), b.summary()
    single = len(sa) == 1 and len(sb) == 1
    pairs = []
    for model_a, arms_a in sa.items():
        model_b = next(iter(sb)) if single else model_a
        for arm, figures_a in arms_a.items():
            figures_b = sb.get(model_b, {}).get(arm)
            if figures_b is not None:
                pairs.append((model_a, model_b, arm, figures_a, figures_b))
    rows = []
    for model_a, model_b, arm, fa, fb in pairs:
        row = {"arm": arm, "model_a": model_a, "model_b": model_b}
        for key in COMPARED_FIGURES:
            x, y = fa.get(key), fb.get(key)
            row[key] = {"a": x, "b": y, "delta": (y - x) if x is not None and y is not None else None}
        rows.append(row)
    ca, cb = a.config.to_dict(), b.config.to_dict()
    changed = {k: [ca[k], cb[k]] for k in ca if ca[k] != cb[k] and k != "cache_salt"}
    return {"a": {"id": a.id, "name": a.name}, "b": {"id": b.id, "name": b.name},
            "config_changes": changed, "rows": rows}


# --------------------------------------------------------------------------------------------
# For the Caching Lab page
# --------------------------------------------------------------------------------------------

COMPARED_LABELS = {"total_cost_usd": "Total cost ($)", "saved_usd": "Saved ($)", "saved_pct": "Saved (%)",
                   "median_ttft_ms": "Median TTFT (ms)", "median_latency_ms": "Median latency (ms)",
                   "hit_rate": "Hit rate", "cache_read_tokens": "Cache read tokens",
                   "cache_write_tokens": "Cache write tokens", "break_even_request": "Break-even request"}


def comparison_table(comparison: dict) -> list[dict]:
    """``compare_runs`` flattened for a table: one row per arm (and model) and figure."""
    rows = []
    for row in comparison["rows"]:
        models = row["model_a"] if row["model_a"] == row["model_b"] else f"{row['model_a']} → {row['model_b']}"
        for key in COMPARED_FIGURES:
            cell = row[key]
            rows.append({"arm": row["arm"], "model": models, "figure": COMPARED_LABELS.get(key, key),
                         "A": cell["a"], "B": cell["b"], "B − A": cell["delta"]})
    return rows


def check_experiment_budget(check: Preflight, spent_usd: float, budget_usd: float | None,
                            words: BudgetWords = PAGE_BUDGET) -> Decimal:
    """``budget.check_budget`` for a whole experiment: returns the most it can cost, or raises
    SpendGuardError (nothing sent) when the session's spend plus that could pass the budget.
    A budget of None or 0 means no guard."""
    from .budget import SpendGuardError
    from .cost import format_usd

    if budget_usd and Decimal(str(spent_usd)) + check.worst_case > Decimal(str(budget_usd)):
        raise SpendGuardError(
            f"Not started: this experiment could cost up to {format_usd(check.worst_case)} (every request of "
            f"every arm and model, input estimated, output at max_tokens) and {words.holder} has spent "
            f"{format_usd(spent_usd)} of its {format_usd(budget_usd)} budget. Use fewer requests, arms or "
            f"models, a smaller context or max_tokens, or {words.remedy}.")
    return check.worst_case


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------

def _completion_of(client, payload: dict, cancel: threading.Event | None) -> Completion:
    completion = None
    for event in client.stream(payload, page="lab", cancel=cancel):
        if isinstance(event, Done):
            completion = event.completion
    return completion


def _record(arm: str, model: str, number: int, payload: dict, completion: Completion, cancelled: bool,
            last_baseline: Decimal) -> LabRecord:
    ttl = cache_write_ttl(payload)
    hit = completion.response_cache_hit
    billed = Usage() if hit else completion.usage  # a response-cache hit never reaches the model
    priced = _priced_model(completion.model, model)
    cost = cost_of(billed, priced, ttl)
    if hit:  # priced as if the model had answered; the router may report no usage on a hit
        baseline = cost_of(completion.usage, priced).no_cache_total if completion.usage.prompt_tokens else last_baseline
    else:
        baseline = cost.no_cache_total
    status, error = "ok", completion.error
    if completion.partial:
        status = "cancelled" if cancelled else "failed"
        error = error or ("stopped" if cancelled else "the stream ended before the answer finished")
    return LabRecord(
        arm, model, number, status,
        input_tokens=billed.input_tokens, cache_read_tokens=billed.cache_read_tokens,
        cache_write_tokens=billed.cache_write_tokens, output_tokens=billed.output_tokens,
        reasoning_tokens=billed.reasoning_tokens, cost_usd=cost.total, baseline_usd=baseline,
        ttft_ms=completion.ttft_ms, latency_ms=completion.latency_ms, response_cache_hit=hit,
        error=error, write_ttl=ttl, answered_by=completion.model, request_id=completion.request_id,
        **_doctor_fields(completion.cache))


def _doctor_fields(check) -> dict:
    if check is None:
        return {}
    return {"expected_read_tokens": check.expected_read_tokens, "expected_write_tokens": check.expected_write_tokens,
            "cache_why": check.sentence()}


def _priced_model(answered: str, requested: str) -> str:
    """A fallback may have answered: price the tokens at the model that produced them."""
    try:
        catalog().resolve(answered)
        return answered
    except ValueError:
        return requested


def _send(client, arm: str, model: str, number: int, payload: dict, cancel: threading.Event | None,
          last_baseline: Decimal) -> LabRecord:
    try:
        completion = _completion_of(client, payload, cancel)
    except OrqError as exc:
        error = describe(exc)
    except Exception as exc:  # keep the experiment's rows whatever one request does
        error = f"{type(exc).__name__}: {exc}"
    else:
        return _record(arm, model, number, payload, completion, bool(cancel and cancel.is_set()), last_baseline)
    return LabRecord(arm, model, number, "failed", error=error, write_ttl=cache_write_ttl(payload))


def _wait(seconds: float, sleep: Callable[[float], None], cancel: threading.Event | None) -> None:
    if seconds <= 0:
        return
    if cancel is not None and sleep is time.sleep:
        cancel.wait(seconds)  # a real wait that Stop can cut short
    else:
        sleep(seconds)


def run_experiment(config: ExperimentConfig, client, *, on_record: Callable[[LabRecord], None] | None = None,
                   cancel: threading.Event | None = None, sleep: Callable[[float], None] = time.sleep,
                   clock: Callable[[], float] = time.monotonic, store=None,
                   result_id: str | None = None) -> ExperimentResult:
    """Runs every (model, arm) of ``config``, interleaved by request number (see the module doc).
    Failures become 'failed' rows; on cancel the request in flight ends as 'cancelled' and the
    rest are not sent. The client logs every request to the run log. With ``store`` the run is
    saved as it goes: its header first (status running), each record as it arrives (before
    ``on_record`` sees it), its final status last."""
    config.validate()
    if config.fresh_cache and not config.cache_salt:
        config = replace(config, cache_salt=uuid.uuid4().hex[:8])
    plan = [(model, arm, build_requests(config, arm, model)) for model in config.models for arm in config.arms]
    result = ExperimentResult(config=config, started_at=time.time(), name=default_name(config), status=RUNNING)
    if result_id:
        result.id = result_id
    _ACTIVE_RUNS.add(result.id)
    try:
        if store is not None:
            result.save_header(store)
        _run_rounds(result, plan, client, on_record, cancel, sleep, clock, store)
    finally:
        _ACTIVE_RUNS.discard(result.id)
        result.finished_at = time.time()
        if result.status == RUNNING:  # an exception (e.g. the page's Stop) ended it between records
            result.status, result.cancelled = STOPPED, True
        if store is not None:
            result.save_header(store)
    return result


def _run_rounds(result: ExperimentResult, plan: list, client, on_record, cancel, sleep, clock, store) -> None:
    config = result.config
    start = clock()
    baselines: dict[tuple[str, str], Decimal] = {}
    stopped = lambda: cancel is not None and cancel.is_set()  # noqa: E731
    for index in range(config.requests):
        if index:
            _wait(config.interval_s, sleep, cancel)
        for model, arm, payloads in plan:
            if stopped():
                break
            record = _send(client, arm, model, index + 1, payloads[index], cancel,
                           baselines.get((model, arm), Decimal(0)))
            record.t_s = clock() - start
            record.ts = result.started_at + record.t_s
            baselines[(model, arm)] = record.baseline_usd or baselines.get((model, arm), Decimal(0))
            if store is not None:
                result.save_record(store, len(result.records), record)
            result.records.append(record)
            if on_record:
                on_record(record)
        if stopped():
            break
    planned = len(plan) * config.requests
    result.cancelled = stopped() and (len(result.records) < planned
                                      or any(r.status == "cancelled" for r in result.records))
    result.status = STOPPED if result.cancelled else FINISHED


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

def add_lab_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=PRESETS + ("cache-breakers",), default="book",
                        help="cache-breakers: the scripted 'What breaks the cache' sequence on one model")
    parser.add_argument("--model", action="append", dest="models", metavar="SLUG",
                        help=f"model slug; repeat for several (default {DEFAULT_MODEL})")
    parser.add_argument("--requests", type=int, default=5)
    parser.add_argument("--interval", type=float, default=0.0, help="seconds between requests")
    parser.add_argument("--ttl", choices=tuple(TTL_SECONDS), default="5m")
    parser.add_argument("--arms", default="no-cache,prompt-cache", help=f"comma-separated: {','.join(ARMS)}")
    parser.add_argument("--breakpoint", help="system, context, last-turn or tools (default: the preset's)")
    parser.add_argument("--context-tokens", type=int, default=10_000)
    parser.add_argument("--shots", type=int, default=100)
    parser.add_argument("--tools", type=int, default=40, dest="tool_count")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--context-file", help="text file for the custom preset")
    parser.add_argument("--out", help="write every request as CSV (or JSON when the name ends in .json)")
    add_spend_limit_option(parser)
    add_local_option(parser)
    parser.add_argument("--json", action="store_true", help="print JSON (the lab always does)")


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    custom = ""
    if getattr(args, "context_file", None):
        with open(args.context_file, encoding="utf-8") as handle:
            custom = handle.read()
    return ExperimentConfig(
        preset=args.preset, context_tokens=args.context_tokens, shots=args.shots, tool_count=args.tool_count,
        models=tuple(args.models or (DEFAULT_MODEL,)), requests=args.requests, interval_s=args.interval,
        ttl=args.ttl, breakpoint=args.breakpoint, arms=tuple(a.strip() for a in args.arms.split(",") if a.strip()),
        max_tokens=args.max_tokens, custom_context=custom)


def cli_summary(result: ExperimentResult) -> dict:
    figures = ("total_cost_usd", "saved_usd", "saved_pct", "median_ttft_ms", "cache_read_tokens",
               "cache_write_tokens", "hit_rate", "break_even_request", "failed")
    return {model: {arm: {k: s[k] for k in figures} for arm, s in arms.items()}
            for model, arms in result.summary().items()}


def cli_lab(args: argparse.Namespace, *, client_factory: Callable[..., object] | None = None) -> int:
    """`python -m orq_core lab ...`: runs one experiment and prints a JSON summary."""
    import sys

    if args.preset == "cache-breakers":
        from .cache_breakers import cli_cache_breakers

        return cli_cache_breakers(args)

    from .cost import format_usd

    config = config_from_args(args)
    check = preflight(config)
    local = True
    if client_factory is None:
        from .connection import make_client, resolve_connection

        connection = resolve_connection(force_local=getattr(args, "local", False))
        local = connection.local
        client_factory = lambda: make_client(connection, page="lab")  # noqa: E731
    limit = cli_spend_limit(args.max_spend, local)
    if limit is not None and check.worst_case > Decimal(str(limit)):
        print(f"error: not started: this experiment could cost up to {format_usd(check.worst_case)}, "
              f"over the {format_usd(limit)} limit (raise it with {SPEND_LIMIT_OPTION})", file=sys.stderr)
        return 2
    for warning in check.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    client = client_factory()
    from .store import Store

    try:
        result = run_experiment(config, client, store=Store.default())
    finally:
        close = getattr(client, "close", None)
        if close:
            close()
    if args.out:
        with open(args.out, "w", encoding="utf-8", newline="") as handle:
            handle.write(result.to_json() if args.out.endswith(".json") else result.to_csv())
    print(json.dumps({"experiment": result.name, "local_router": local,
                      "estimate": check.to_dict(), "summary": cli_summary(result)}, indent=2))
    return 1 if any(r.status == "failed" for r in result.records) else 0


__all__ = ["ARMS", "ExperimentConfig", "LabRecord", "ExperimentResult", "Preflight", "ArmEstimate",
           "build_requests", "preflight", "run_experiment", "compare_runs", "add_lab_arguments", "cli_lab",
           "prompt_shape", "default_name", "comparison_table", "check_experiment_budget", "RUNNING", "FINISHED",
           "STOPPED", "INTERRUPTED"]
