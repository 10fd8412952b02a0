"""Compare: one prompt to 2-4 targets at once, each column its own conversation.

Columns run concurrently on worker threads sharing one pooled client; events come back through a
queue so the caller (a Streamlit page, the CLI) renders on its own thread. A failing column ends
with its error and never stops the others.
"""

from __future__ import annotations

import argparse
import json
import queue
import statistics
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterator

from .cost import cost_of
from .errors import OrqError, describe
from .request import ChatParams, build_payload, cache_write_ttl, system_message, user_message
from .types import Completion, Done

MAX_COLUMNS = 4


@dataclass(frozen=True)
class CompareTarget:
    slug: str
    max_tokens: int = 1024
    temperature: float | None = None
    thinking_budget: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    """Extra request headers for this column (e.g. the local router's fault injection)."""


@dataclass
class Sample:
    """One answer of one column: a completion, or the error that prevented it."""

    completion: Completion | None
    error: str | None = None
    write_ttl: str = "5m"

    @property
    def ok(self) -> bool:
        return self.completion is not None and not self.error

    @property
    def cost_usd(self) -> float:
        if not self.completion:
            return 0.0
        try:
            return float(cost_of(self.completion.usage, self.completion.model, self.write_ttl).total)
        except ValueError:
            return 0.0

    @property
    def tokens_per_second(self) -> float | None:
        c = self.completion
        if not c or not c.latency_ms or c.ttft_ms is None or not c.usage.output_tokens:
            return None
        generating_ms = c.latency_ms - c.ttft_ms
        return c.usage.output_tokens / (generating_ms / 1000) if generating_ms > 0 else None


@dataclass
class Column:
    target: CompareTarget
    messages: list[dict] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    """Every sample of the latest turn (several when repeated)."""


@dataclass(frozen=True)
class ColumnEvent:
    column: int
    event: object
    """A stream event (TextDelta, ..., Done), or an ``OrqError`` that ended the column."""


class Comparison:
    def __init__(self, targets: list[CompareTarget], system: str = "", cache_system: bool = False,
                 cache_ttl: str = "5m"):
        if not 1 <= len(targets) <= MAX_COLUMNS:
            raise ValueError(f"Compare takes 1 to {MAX_COLUMNS} targets, got {len(targets)}")
        self.columns = [Column(t) for t in targets]
        self.system = system
        self.cache_ttl = cache_ttl if cache_system else None

    def payload_for(self, column: Column, user_text: str) -> dict:
        target = column.target
        messages = [system_message(self.system, cache_ttl=self.cache_ttl)] if self.system else []
        messages += column.messages + [user_message(user_text)]
        params = ChatParams(model=target.slug, max_tokens=target.max_tokens, temperature=target.temperature,
                            thinking_budget=target.thinking_budget, stream=True)
        return build_payload(params, messages)

    def ask(self, client, user_text: str, *, repeat: int = 1,
            cancel: threading.Event | None = None) -> Iterator[ColumnEvent]:
        """Send ``user_text`` to every column concurrently, ``repeat`` times in a row per column;
        yields events as they arrive. Afterwards each column's history holds its first answer."""
        payloads = [self.payload_for(column, user_text) for column in self.columns]
        for column in self.columns:
            column.samples = []
        jobs = [(i, payload, dict(self.columns[i].target.headers)) for i, payload in enumerate(payloads)]
        for item in stream_concurrently(client, jobs, repeat=repeat, cancel=cancel):
            column = self.columns[item.column]
            if isinstance(item.event, Done):
                column.samples.append(Sample(item.event.completion, item.event.completion.error,
                                             cache_write_ttl(payloads[item.column])))
            elif isinstance(item.event, Exception):
                column.samples.append(Sample(None, describe(item.event)))
            yield item
        for column in self.columns:
            first_ok = next((s for s in column.samples if s.ok), None)
            if first_ok:
                column.messages += [user_message(user_text), first_ok.completion.assistant_message()]

    def summary_rows(self) -> list[dict]:
        return summarise([c.samples for c in self.columns], [c.target.slug for c in self.columns])


def stream_concurrently(client, jobs: list[tuple[int, dict, dict]], *, repeat: int = 1,
                        cancel: threading.Event | None = None) -> Iterator[ColumnEvent]:
    """Run each (column, payload, headers) job on its own thread; yield its events in arrival order."""
    events: queue.Queue = queue.Queue()
    finished = object()

    def work(column: int, payload: dict, headers: dict) -> None:
        try:
            for _ in range(repeat):
                if cancel is not None and cancel.is_set():
                    break
                try:
                    for event in client.stream(payload, page="compare", headers=headers or None, cancel=cancel):
                        events.put(ColumnEvent(column, event))
                except OrqError as error:
                    events.put(ColumnEvent(column, error))
        finally:
            events.put(ColumnEvent(column, finished))

    threads = [threading.Thread(target=work, args=job, daemon=True, name=f"compare-{job[0]}") for job in jobs]
    for thread in threads:
        thread.start()
    remaining = len(threads)
    while remaining:
        item = events.get()
        if item.event is finished:
            remaining -= 1
            continue
        yield item


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarise(samples_per_column: list[list[Sample]], labels: list[str]) -> list[dict]:
    """The decision table: medians over repeats, spread as min-max, cheapest and fastest marked."""
    rows = []
    for label, samples in zip(labels, samples_per_column):
        good = [s for s in samples if s.ok]
        usage = [s.completion.usage for s in good]
        row = {
            "target": label,
            "answered_by": good[0].completion.model if good else "",
            "runs": len(samples),
            "failed": len(samples) - len(good),
            "ttft_ms": _median([s.completion.ttft_ms for s in good if s.completion.ttft_ms is not None]),
            "latency_ms": _median([s.completion.latency_ms for s in good if s.completion.latency_ms is not None]),
            "tokens_per_s": _median([s.tokens_per_second for s in good if s.tokens_per_second]),
            "input_tokens": _median([u.input_tokens for u in usage]),
            "cache_read_tokens": _median([u.cache_read_tokens for u in usage]),
            "cache_write_tokens": _median([u.cache_write_tokens for u in usage]),
            "output_tokens": _median([u.output_tokens for u in usage]),
            "cost_usd": _median([s.cost_usd for s in good]),
            "latency_min_ms": min((s.completion.latency_ms for s in good if s.completion.latency_ms), default=None),
            "latency_max_ms": max((s.completion.latency_ms for s in good if s.completion.latency_ms), default=None),
            "error": next((s.error for s in samples if s.error), None),
        }
        rows.append(row)
    _mark_best(rows, "cost_usd", "cheapest")
    _mark_best(rows, "latency_ms", "fastest")
    return rows


def _mark_best(rows: list[dict], key: str, flag: str) -> None:
    values = [r[key] for r in rows if r[key] is not None]
    best = min(values) if values else None
    for row in rows:
        row[flag] = best is not None and row[key] == best


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--targets", required=True, help="comma-separated slugs, 2 to 4")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--system", default="")
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--local", action="store_true", help="use the local router even when ORQ_API_KEY is set")


def cli_compare(args: argparse.Namespace, print_fn: Callable[[str], None] = print) -> int:
    from .catalog import catalog
    from .connection import make_client, resolve_connection

    slugs = [s.strip() for s in args.targets.split(",") if s.strip()]
    for slug in slugs:
        catalog().resolve(slug)  # unknown slugs fail here with a clear message, before any request
    if args.repeat < 1:
        raise ValueError("--repeat must be at least 1")
    comparison = Comparison([CompareTarget(s, max_tokens=args.max_tokens) for s in slugs], system=args.system)
    client = make_client(resolve_connection(force_local=args.local), page="compare")
    try:
        for _ in comparison.ask(client, args.prompt, repeat=args.repeat):
            pass
    finally:
        client.close()
    rows = comparison.summary_rows()
    if args.json:
        print_fn(json.dumps({"rows": rows, "answers": [
            (c.samples[0].completion.text if c.samples and c.samples[0].completion else None)
            for c in comparison.columns]}, indent=2))
    else:
        for row in rows:
            marks = " ".join(m for m in ("cheapest", "fastest") if row[m])
            shown = f"{row['latency_ms']:.0f} ms" if row["latency_ms"] is not None else "failed"
            cost = f"${row['cost_usd']:.6f}" if row["cost_usd"] is not None else "-"
            print_fn(f"{row['target']:<50} {shown:>10} {cost:>12} {marks} {row['error'] or ''}".rstrip())
    return 1 if any(r["failed"] == r["runs"] for r in rows) else 0
