"""Compare: one prompt to 2-4 targets at once, each column its own conversation.

Columns run concurrently on worker threads sharing one pooled client; events come back through a
queue so the caller (a Streamlit page, the CLI) renders on its own thread. A failing column ends
with its error and never stops the others.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import queue
import statistics
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Callable, Iterator

from .budget import PAGE_BUDGET, BudgetWords, SpendGuardError, request_ceiling
from .connection import add_local_option
from .cost import cost_of, format_usd
from .errors import OrqError, describe
from .request import ChatParams, build_payload, cache_write_ttl, system_message, user_message
from .types import Completion, Done, ErrorEvent, ReasoningDelta, TextDelta

MAX_COLUMNS = 4
EXPORT_FORMAT = "orq-playground.comparison/1"

# The local router's fault injection (X-Emulator-Fault), as offered per column for demos.
FAULT_HEADER = "X-Emulator-Fault"
FAULTS = {"none": None, "429 rate limited": "429", "529 overloaded": "529", "500 server error": "500",
          "cut stream": "cut:after=5"}

SUMMARY_COLUMNS = ("target", "answered_by", "runs", "failed", "ttft_ms", "latency_ms", "latency_min_ms",
                   "latency_max_ms", "tokens_per_s", "input_tokens", "cache_read_tokens", "cache_write_tokens",
                   "output_tokens", "cost_usd", "cheapest", "fastest", "best", "error")


@dataclass(frozen=True)
class CompareTarget:
    slug: str
    max_tokens: int = 1024
    temperature: float | None = None
    thinking_budget: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    """Extra request headers for this column (e.g. the local router's fault injection)."""

    @classmethod
    def with_fault(cls, slug: str, fault: str | None = None, **params) -> "CompareTarget":
        """A target whose requests carry the local router's fault header (``fault`` a spec like "429")."""
        return cls(slug, headers=((FAULT_HEADER, fault),) if fault else (), **params)

    @property
    def fault(self) -> str | None:
        return dict(self.headers).get(FAULT_HEADER)


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
    def cost_usd(self) -> float | None:
        """None when the answering model is not in the catalog (no price to apply)."""
        if not self.completion:
            return 0.0
        try:
            return float(cost_of(self.completion.usage, self.completion.model, self.write_ttl).total)
        except ValueError:
            return None

    @property
    def tokens_per_second(self) -> float | None:
        c = self.completion
        if not c or not c.latency_ms or c.ttft_ms is None or not c.usage.output_tokens:
            return None
        generating_ms = c.latency_ms - c.ttft_ms
        return c.usage.output_tokens / (generating_ms / 1000) if generating_ms > 0 else None


@dataclass
class Exchange:
    """One turn of one column: what was asked and every sample of the answer."""

    user_text: str
    samples: list[Sample] = field(default_factory=list)

    @property
    def answer(self) -> Sample | None:
        """The sample the conversation continues from: the first good one, else the first."""
        return next((s for s in self.samples if s.ok), self.samples[0] if self.samples else None)


@dataclass
class Column:
    target: CompareTarget
    messages: list[dict] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    """Every sample of the latest turn (several when repeated)."""
    exchanges: list[Exchange] = field(default_factory=list)
    """Every turn so far, for display and export."""


@dataclass(frozen=True)
class ColumnEvent:
    column: int
    event: object
    """A stream event (TextDelta, ..., Done), or an ``OrqError`` that ended the column."""


class Comparison:
    def __init__(self, targets: list[CompareTarget], system: str = "", cache_system: bool = False,
                 cache_ttl: str = "5m", *, id: str | None = None, title: str = "", created: float | None = None):
        if not 1 <= len(targets) <= MAX_COLUMNS:
            raise ValueError(f"Compare takes 1 to {MAX_COLUMNS} targets, got {len(targets)}")
        self.columns = [Column(t) for t in targets]
        self.system = system
        self.cache_ttl = cache_ttl if cache_system else None
        self.id = id or uuid.uuid4().hex[:12]
        self.title = title
        self.created = created if created is not None else time.time()

    @property
    def targets(self) -> list[CompareTarget]:
        return [c.target for c in self.columns]

    @property
    def turns(self) -> int:
        return max((len(c.exchanges) for c in self.columns), default=0)

    def set_prompt(self, system: str, cache_system: bool, cache_ttl: str = "5m") -> None:
        """The shared system prompt may change between turns (each column replays it)."""
        self.system = system
        self.cache_ttl = cache_ttl if cache_system else None

    def retarget(self, targets: list[CompareTarget]) -> None:
        """New per-column parameters or faults for the next turn; the slugs must stay (each
        column's conversation belongs to its model)."""
        if [t.slug for t in targets] != [c.target.slug for c in self.columns]:
            raise ValueError("Changing a column's model starts a new comparison")
        for column, target in zip(self.columns, targets):
            column.target = target

    def payload_for(self, column: Column, user_text: str) -> dict:
        target = column.target
        messages = [system_message(self.system, cache_ttl=self.cache_ttl)] if self.system else []
        messages += column.messages + [user_message(user_text)]
        params = ChatParams(model=target.slug, max_tokens=target.max_tokens, temperature=target.temperature,
                            thinking_budget=target.thinking_budget, stream=True)
        return build_payload(params, messages)

    def prepare(self, user_text: str) -> list[dict | OrqError]:
        """Each column's payload, or the validation error that keeps that column from sending."""
        prepared: list[dict | OrqError] = []
        for column in self.columns:
            try:
                prepared.append(self.payload_for(column, user_text))
            except OrqError as error:
                prepared.append(error)
        return prepared

    def ask(self, client, user_text: str, *, repeat: int = 1, cancel: threading.Event | None = None,
            prepared: list[dict | OrqError] | None = None) -> Iterator[ColumnEvent]:
        """Send ``user_text`` to every column concurrently, ``repeat`` times in a row per column;
        yields events as they arrive. A column whose payload is invalid yields its error at once
        and the others still run. Afterwards each column's history holds its first good answer."""
        prepared = prepared if prepared is not None else self.prepare(user_text)
        for column in self.columns:
            column.samples = []
        jobs = []
        try:
            for i, item in enumerate(prepared):
                if isinstance(item, OrqError):
                    self._record(i, item, prepared)
                    yield ColumnEvent(i, item)
                else:
                    jobs.append((i, item, dict(self.columns[i].target.headers)))
            events = stream_concurrently(client, jobs, repeat=repeat, cancel=cancel)
            try:
                for event in events:
                    self._record(event.column, event.event, prepared)
                    yield event
            finally:
                events.close()
        finally:  # also when the caller stops early: keep what arrived
            self._close_turn(user_text)

    def _record(self, index: int, event: object, prepared: list) -> None:
        column = self.columns[index]
        if isinstance(event, Done):
            column.samples.append(Sample(event.completion, event.completion.error,
                                         cache_write_ttl(prepared[index])))
        elif isinstance(event, Exception):
            column.samples.append(Sample(None, describe(event)))

    def _close_turn(self, user_text: str) -> None:
        if not self.title:
            self.title = " ".join(user_text.split())[:60]
        for column in self.columns:
            exchange = Exchange(user_text, list(column.samples))
            column.exchanges.append(exchange)
            if exchange.answer is not None and exchange.answer.ok:
                column.messages += [user_message(user_text), exchange.answer.completion.assistant_message()]

    def summary_rows(self) -> list[dict]:
        return summarise([c.samples for c in self.columns], column_labels(self.targets))

    # --- export / storage ----------------------------------------------------------------------

    def to_dict(self) -> dict:

        def sample(s: Sample) -> dict:
            return {"completion": s.completion.to_dict() if s.completion else None,
                    "error": s.error, "write_ttl": s.write_ttl, "cost_usd": s.cost_usd}

        return {
            "format": EXPORT_FORMAT, "id": self.id, "title": self.title, "created": self.created,
            "system": self.system, "cache_system": self.cache_ttl is not None, "cache_ttl": self.cache_ttl or "5m",
            "columns": [{
                "target": {**asdict(c.target), "headers": [list(h) for h in c.target.headers]},
                "messages": c.messages,
                "exchanges": [{"user": e.user_text, "samples": [sample(s) for s in e.samples]}
                              for e in c.exchanges],
            } for c in self.columns],
            "summary": self.summary_rows(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict) -> "Comparison":

        targets = [CompareTarget(**{**c["target"], "headers": tuple(tuple(h) for h in c["target"]["headers"])})
                   for c in data["columns"]]
        comparison = cls(targets, data.get("system", ""), bool(data.get("cache_system")),
                         data.get("cache_ttl", "5m"), id=data.get("id"), title=data.get("title", ""),
                         created=data.get("created"))
        for column, saved in zip(comparison.columns, data["columns"]):
            column.messages = list(saved.get("messages") or [])
            column.exchanges = [Exchange(e["user"], [
                Sample(Completion.from_dict(s["completion"]) if s.get("completion") else None,
                       s.get("error"), s.get("write_ttl", "5m")) for s in e["samples"]])
                for e in saved.get("exchanges") or []]
            column.samples = list(column.exchanges[-1].samples) if column.exchanges else []
        return comparison

    def save(self, store) -> None:
        store.save_doc("comparison", self.id, self.title or "Untitled comparison", self.to_dict())

    @classmethod
    def load(cls, store, comparison_id: str) -> "Comparison | None":
        doc = store.load_doc("comparison", comparison_id)
        return cls.from_dict(doc.data) if doc else None


def default_slugs(slug: str, count: int = MAX_COLUMNS) -> list[str]:
    """Starting columns: the chosen model through each provider (same tokens, different route),
    then the other models direct."""
    from .catalog import catalog

    cat = catalog()
    model = cat.resolve(slug).model
    slugs = [model.slug(p) for p in model.providers]
    slugs += [m.slug() for m in cat.models if m.slug() not in slugs]
    return slugs[:count]


def column_labels(targets: list[CompareTarget]) -> list[str]:
    """The slug, numbered when the same slug appears in two columns."""
    slugs = [t.slug for t in targets]
    return [f"{slug} #{i + 1}" if slugs.count(slug) > 1 else slug for i, slug in enumerate(slugs)]


def stream_concurrently(client, jobs: list[tuple[int, dict, dict]], *, repeat: int = 1,
                        cancel: threading.Event | None = None) -> Iterator[ColumnEvent]:
    """Run each (column, payload, headers) job on its own thread; yield its events in arrival order.
    Closing the iterator early cancels the streams still running."""
    events: queue.Queue = queue.Queue()
    finished = object()
    stop = cancel if cancel is not None else threading.Event()

    def work(column: int, payload: dict, headers: dict) -> None:
        try:
            for _ in range(repeat):
                if stop.is_set():
                    break
                try:
                    for event in client.stream(payload, page="compare", headers=headers or None, cancel=stop):
                        events.put(ColumnEvent(column, event))
                except Exception as error:  # noqa: BLE001 - whatever breaks one column is shown in that column
                    events.put(ColumnEvent(column, error))
        finally:
            events.put(ColumnEvent(column, finished))

    threads = [threading.Thread(target=work, args=job, daemon=True, name=f"compare-{job[0]}") for job in jobs]
    for thread in threads:
        thread.start()
    remaining = len(threads)
    try:
        while remaining:
            item = events.get()
            if item.event is finished:
                remaining -= 1
                continue
            yield item
    finally:
        if remaining:  # the caller stopped listening: do not pay for answers nobody reads
            stop.set()


# --- painting a comparison as it streams -------------------------------------------------------

@dataclass
class LiveColumn:
    """What one column shows while its requests stream (the run in progress)."""

    text: str = ""
    reasoning: str = ""
    finished_runs: int = 0
    notes: list[str] = field(default_factory=list)
    """Errors and broken streams, one per failed run."""
    _fresh: bool = False

    def apply(self, event: object) -> None:
        if isinstance(event, (TextDelta, ReasoningDelta)) and self._fresh:
            self.text, self.reasoning, self._fresh = "", "", False
        if isinstance(event, TextDelta):
            self.text += event.text
        elif isinstance(event, ReasoningDelta):
            self.reasoning += event.text
        elif isinstance(event, ErrorEvent):
            self.notes.append(f"The stream broke: {event.message}")
        elif isinstance(event, Done):
            self.finished_runs += 1
            self._fresh = True
        elif isinstance(event, Exception):
            self.notes.append(describe(event))
            self.finished_runs += 1


class LiveProgress:
    """Per-column state for a page that repaints columns as ``ColumnEvent``s arrive."""

    def __init__(self, columns: int, repeat: int = 1):
        self.repeat = repeat
        self.columns = [LiveColumn() for _ in range(columns)]

    def apply(self, item: ColumnEvent) -> LiveColumn:
        column = self.columns[item.column]
        column.apply(item.event)
        return column

    def status(self, index: int) -> str:
        column = self.columns[index]
        if column.finished_runs >= self.repeat:
            return "done"
        if self.repeat == 1:
            return "streaming…"
        return f"run {column.finished_runs + 1} of {self.repeat}…"


# --- spend guard for a whole batch -------------------------------------------------------------

def batch_ceiling(payloads: list[dict], repeat: int = 1) -> Decimal:
    """The most every column's requests together can cost (each sent ``repeat`` times)."""
    return sum((request_ceiling(p) for p in payloads), Decimal(0)) * repeat


def check_batch_budget(payloads: list[dict], repeat: int, spent_usd: float, budget_usd: float | None,
                       words: BudgetWords = PAGE_BUDGET) -> Decimal:
    """Like ``budget.check_budget`` but for all columns and repeats at once: the per-request guard
    alone would let 4 columns x N repeats pass a budget each one fits under."""
    ceiling = batch_ceiling(payloads, repeat)
    if budget_usd and Decimal(str(spent_usd)) + ceiling > Decimal(str(budget_usd)):
        raise SpendGuardError(
            f"Not sent: these {len(payloads) * repeat} requests could cost up to {format_usd(ceiling)} together "
            f"(input estimate, output at max_tokens) and {words.holder} has spent {format_usd(spent_usd)} of its "
            f"{format_usd(budget_usd)} budget. Lower max_tokens or the repeats, or {words.remedy}.")
    return ceiling


# --- the decision table ------------------------------------------------------------------------

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
            "cost_usd": _median([s.cost_usd for s in good if s.cost_usd is not None]),
            "latency_min_ms": min((s.completion.latency_ms for s in good if s.completion.latency_ms), default=None),
            "latency_max_ms": max((s.completion.latency_ms for s in good if s.completion.latency_ms), default=None),
            "error": next((s.error for s in samples if s.error), None),
        }
        rows.append(row)
    _mark_best(rows, "cost_usd", "cheapest")
    _mark_best(rows, "latency_ms", "fastest")
    for row in rows:
        row["best"] = marks(row)
    return rows


def _mark_best(rows: list[dict], key: str, flag: str) -> None:
    values = [r[key] for r in rows if r[key] is not None]
    best = min(values) if values else None
    for row in rows:
        row[flag] = best is not None and row[key] == best


def marks(row: dict) -> str:
    return " ".join(m for m in ("cheapest", "fastest") if row.get(m))


def summary_csv(rows: list[dict]) -> str:
    """The decision table as CSV (units in the column names: _ms, _usd, _per_s)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=SUMMARY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if row.get(k) is None else row.get(k)) for k in SUMMARY_COLUMNS} for row in rows)
    return out.getvalue()


def latency_points(comparison: Comparison) -> list[dict]:
    """One point per good sample of the latest turn: the data behind the latency chart."""
    points = []
    for label, column in zip(column_labels(comparison.targets), comparison.columns):
        for run, sample in enumerate(column.samples, start=1):
            if sample.ok and sample.completion.latency_ms is not None:
                points.append({"target": label, "run": run, "latency_ms": sample.completion.latency_ms,
                               "ttft_ms": sample.completion.ttft_ms})
    return points


def latency_figure(points: list[dict]):
    """Total latency per target: horizontal boxes (the slugs are long) with every run as a point
    (plotly, imported lazily)."""
    import plotly.graph_objects as go

    figure = go.Figure()
    labels = list(dict.fromkeys(p["target"] for p in points))
    for label in labels:
        mine = [p for p in points if p["target"] == label]
        figure.add_trace(go.Box(x=[p["latency_ms"] for p in mine], name=label, orientation="h", boxpoints="all",
                                jitter=0.3, pointpos=0, customdata=[[p["run"], p["ttft_ms"]] for p in mine],
                                hovertemplate="run %{customdata[0]}: %{x:,.0f} ms "
                                              "(TTFT %{customdata[1]:,.0f} ms)<extra></extra>"))
    figure.update_layout(xaxis_title="total latency (ms)", showlegend=False, height=110 + 55 * len(labels),
                         margin=dict(l=10, r=10, t=40, b=10), title="Latency per target, every run",
                         yaxis=dict(autorange="reversed"))
    return figure


# --- command line ------------------------------------------------------------------------------

def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--targets", required=True, help="comma-separated slugs, 2 to 4")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--system", default="")
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    add_local_option(parser)


def cli_compare(args: argparse.Namespace, print_fn: Callable[[str], None] = print, client=None) -> int:
    """``client`` is for tests (the caller keeps ownership); by default one is made and closed here."""
    from .catalog import catalog
    from .connection import make_client, resolve_connection

    slugs = [s.strip() for s in args.targets.split(",") if s.strip()]
    for slug in slugs:
        catalog().resolve(slug)  # unknown slugs fail here with a clear message, before any request
    if args.repeat < 1:
        raise ValueError("--repeat must be at least 1")
    comparison = Comparison([CompareTarget(s, max_tokens=args.max_tokens) for s in slugs], system=args.system)
    own_client = client is None
    client = client or make_client(resolve_connection(force_local=args.local), page="compare")
    try:
        for _ in comparison.ask(client, args.prompt, repeat=args.repeat):
            pass
    finally:
        if own_client:
            client.close()
    rows = comparison.summary_rows()
    if args.json:
        print_fn(json.dumps({"rows": rows, "answers": [
            (c.samples[0].completion.text if c.samples and c.samples[0].completion else None)
            for c in comparison.columns]}, indent=2))
    else:
        for row in rows:
            shown = f"{row['latency_ms']:.0f} ms" if row["latency_ms"] is not None else "failed"
            cost = f"${row['cost_usd']:.6f}" if row["cost_usd"] is not None else "-"
            print_fn(f"{row['target']:<50} {shown:>10} {cost:>12} {row['best']} {row['error'] or ''}".rstrip())
    return 1 if any(r["failed"] == r["runs"] for r in rows) else 0
