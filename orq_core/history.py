"""The person's run log as a dashboard: spend per day, cache hit rate and savings, latency
percentiles, error rate, and a searchable table exported as CSV.

Everything is computed from the rows the store returns for one owner (``store.runs``), so every
total is the sum of the rows shown. Days are UTC calendar days. Plotly is imported inside the
figure functions only.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from functools import lru_cache
from dataclasses import dataclass, field
from datetime import date, datetime, time as day_time, timedelta, timezone
from decimal import Decimal

from .catalog import Model, UnknownModelError, catalog
from .cost import cost_of
from .types import RunRecord

MAX_ROWS = 100_000
GROUPINGS = ("model", "provider", "page")
CSV_COLUMNS = ("time_utc", "page", "model", "answered_by", "provider", "status", "http_status", "input_tokens",
               "cache_read_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens", "cost_usd",
               "saved_usd", "ttft_ms", "latency_ms", "error", "request_id")


@dataclass(frozen=True)
class HistoryFilter:
    first_day: date | None = None
    last_day: date | None = None
    """Inclusive, UTC."""
    pages: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    """Empty = all."""
    text: str = ""
    """Searched in model, answered_by, page, status, error and request id (case-insensitive)."""

    def window(self) -> tuple[float | None, float | None]:
        since = _day_start(self.first_day) if self.first_day else None
        until = _day_start(self.last_day + timedelta(days=1)) if self.last_day else None
        return since, until

    def keeps(self, run: RunRecord) -> bool:
        if self.pages and run.page not in self.pages:
            return False
        if self.models and run.model not in self.models:
            return False
        if self.statuses and run.status not in self.statuses:
            return False
        needle = self.text.strip().lower()
        if needle:
            haystack = " ".join(str(v or "") for v in (run.model, run.answered_by, run.page, run.status, run.error,
                                                       run.request_id)).lower()
            return needle in haystack
        return True


@dataclass(frozen=True)
class Totals:
    requests: int
    errors: int
    cost_usd: float
    saved_usd: float
    input_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    output_tokens: int
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def hit_rate(self) -> float:
        """Share of input tokens read from the prompt cache."""
        return self.cache_read_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


@dataclass(frozen=True)
class DayCache:
    day: date
    hit_rate: float
    saved_usd: float
    requests: int


@dataclass
class History:
    runs: list[RunRecord] = field(default_factory=list)
    """Newest first, as filtered."""
    truncated: bool = False
    """True when more than MAX_ROWS rows matched the date range (the oldest were left out)."""


def load_history(store, history_filter: HistoryFilter, *, limit: int = MAX_ROWS) -> History:
    since, until = history_filter.window()
    fetched = store.runs(limit + 1, since=since, until=until)
    truncated = len(fetched) > limit
    return History([r for r in fetched[:limit] if history_filter.keeps(r)], truncated)


def choices(store, *, limit: int = MAX_ROWS) -> tuple[list[str], list[str], list[str]]:
    """The pages, models and statuses this person's log holds, for the filter widgets."""
    runs = store.runs(limit)
    return (sorted({r.page for r in runs}), sorted({r.model for r in runs}), sorted({r.status for r in runs}))


def saved_usd(run: RunRecord) -> float:
    """What prompt caching saved on this request (negative when a write cost more than it saved):
    the same tokens at the uncached input price, minus what was logged."""
    model = _priced_model(run.answered_by or run.model)
    if model is None:
        return 0.0
    return float(cost_of(run.usage, model).no_cache_total - Decimal(str(run.cost_usd or 0.0)))


@lru_cache(maxsize=256)
def _priced_model(slug: str) -> Model | None:
    """Resolved once per slug: a History of 100,000 rows names a handful of models."""
    try:
        return catalog().resolve(slug).model
    except (UnknownModelError, KeyError, ValueError):
        return None


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100): always one of the values."""
    ordered = sorted(v for v in values if v is not None)
    if not ordered:
        return None
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def totals(runs: list[RunRecord]) -> Totals:
    ttfts = [r.ttft_ms for r in runs if r.ttft_ms is not None]
    latencies = [r.latency_ms for r in runs if r.latency_ms is not None]
    return Totals(
        requests=len(runs),
        errors=sum(1 for r in runs if r.status == "error"),
        cost_usd=math.fsum(r.cost_usd or 0.0 for r in runs),
        saved_usd=math.fsum(saved_usd(r) for r in runs),
        input_tokens=sum(r.usage.input_tokens for r in runs),
        cache_read_tokens=sum(r.usage.cache_read_tokens for r in runs),
        cache_write_tokens=sum(r.usage.cache_write_tokens for r in runs),
        output_tokens=sum(r.usage.output_tokens for r in runs),
        ttft_p50_ms=percentile(ttfts, 50), ttft_p95_ms=percentile(ttfts, 95),
        latency_p50_ms=percentile(latencies, 50), latency_p95_ms=percentile(latencies, 95),
    )


def group_of(run: RunRecord, by: str) -> str:
    if by == "provider":
        return run.provider
    if by == "page":
        return run.page
    return run.model


def spend_by_day(runs: list[RunRecord], by: str = "model") -> dict[date, dict[str, float]]:
    """{day: {model (or provider, or page): USD}}, days ascending."""
    if by not in GROUPINGS:
        raise ValueError(f"group by one of {', '.join(GROUPINGS)}")
    days: dict[date, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        days[day_of(run.ts)][group_of(run, by)].append(run.cost_usd or 0.0)
    return {day: {group: math.fsum(costs) for group, costs in sorted(groups.items())}
            for day, groups in sorted(days.items())}


def cache_by_day(runs: list[RunRecord]) -> list[DayCache]:
    by_day: dict[date, list[RunRecord]] = defaultdict(list)
    for run in runs:
        by_day[day_of(run.ts)].append(run)
    out = []
    for day, day_runs in sorted(by_day.items()):
        day_totals = totals(day_runs)
        out.append(DayCache(day, day_totals.hit_rate, day_totals.saved_usd, day_totals.requests))
    return out


def table_rows(runs: list[RunRecord]) -> list[dict]:
    """One dict per request, the CSV's columns, newest first."""
    return [{
        "time_utc": datetime.fromtimestamp(r.ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "page": r.page, "model": r.model, "answered_by": r.answered_by, "provider": r.provider,
        "status": r.status, "http_status": r.http_status, "input_tokens": r.usage.input_tokens,
        "cache_read_tokens": r.usage.cache_read_tokens, "cache_write_tokens": r.usage.cache_write_tokens,
        "output_tokens": r.usage.output_tokens, "reasoning_tokens": r.usage.reasoning_tokens,
        "cost_usd": r.cost_usd, "saved_usd": round(saved_usd(r), 10), "ttft_ms": r.ttft_ms,
        "latency_ms": r.latency_ms, "error": r.error or "", "request_id": r.request_id or "",
    } for r in runs]


def to_csv(runs: list[RunRecord]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in table_rows(runs):
        writer.writerow({k: _csv_safe(v) for k, v in row.items()})
    return buffer.getvalue()


def _csv_safe(value):
    """A cell starting with = + - @ is a formula to a spreadsheet: prefix it so it stays text."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value


def today_utc() -> date:
    return datetime.now(timezone.utc).date()


def day_of(ts: float) -> date:
    return datetime.fromtimestamp(ts, timezone.utc).date()


def _day_start(day: date) -> float:
    return datetime.combine(day, day_time(0), timezone.utc).timestamp()


# --- figures -----------------------------------------------------------------------------------

def spend_figure(runs: list[RunRecord], by: str = "model"):
    import plotly.graph_objects as go

    per_day = spend_by_day(runs, by)
    groups = sorted({g for groups in per_day.values() for g in groups})
    days = list(per_day)
    fig = go.Figure([go.Bar(name=g, x=days, y=[per_day[d].get(g, 0.0) for d in days]) for g in groups])
    fig.update_layout(barmode="stack", title=f"Spend per day by {by} (USD)", height=320,
                      margin={"t": 40, "b": 30, "l": 50, "r": 10}, legend={"orientation": "h"})
    return fig


def cache_figure(runs: list[RunRecord]):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    days = cache_by_day(runs)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_bar(x=[d.day for d in days], y=[d.saved_usd for d in days], name="Saved by caching (USD)")
    fig.add_trace(go.Scatter(x=[d.day for d in days], y=[d.hit_rate * 100 for d in days], name="Cache hit rate (%)",
                             mode="lines+markers"), secondary_y=True)
    fig.update_layout(title="Cache hit rate and savings per day", height=320,
                      margin={"t": 40, "b": 30, "l": 50, "r": 10}, legend={"orientation": "h"})
    fig.update_yaxes(range=[0, 100], secondary_y=True)
    return fig


def latency_figure(runs: list[RunRecord]):
    import plotly.graph_objects as go

    by_day: dict[date, list[RunRecord]] = defaultdict(list)
    for run in runs:
        by_day[day_of(run.ts)].append(run)
    days = sorted(by_day)
    fig = go.Figure()
    for label, attr, q in (("TTFT p50", "ttft_ms", 50), ("TTFT p95", "ttft_ms", 95),
                           ("Latency p50", "latency_ms", 50), ("Latency p95", "latency_ms", 95)):
        fig.add_scatter(x=days, y=[percentile([getattr(r, attr) for r in by_day[d]], q) for d in days],
                        name=label, mode="lines+markers")
    fig.update_layout(title="Time to first token and latency per day (ms)", height=320,
                      margin={"t": 40, "b": 30, "l": 50, "r": 10}, legend={"orientation": "h"})
    return fig
