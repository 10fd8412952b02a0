"""Batch: one prompt template over a dataset, across 1-4 targets, with caching-aware concurrency.

Public API (no Streamlit here; pages, the CLI and the notebook call these)::

    dataset = load_dataset(data, filename)            # CSV or JSONL bytes/text -> Dataset
    dataset = parse_csv(text) / parse_jsonl(text)
    rows = choose_rows(dataset, limit=N, sample=N, seed=0)
    spec = BatchSpec(template="Summarise: {{text}}", targets=("anthropic/...",), system="...",
                     cache_system=True, concurrency=8, warm_first=True, max_tokens=256)
    check_spec(spec, dataset.columns)                 # BatchInputError naming the problem
    batch = Batch.new(spec, rows)                      # or Batch.load(store, batch_id)
    check_batch_budget(batch, spent_usd, budget_usd)  # SpendGuardError naming the numbers
    predict(batch)                                     # per target: cost with and without warm-first
    run_batch(client, batch, store=store, on_record=..., should_stop=...)
    batch.summary()                                    # per target: TargetSummary
    records_csv(batch.records) / batch.to_json()

Each finished (row, target) is a ``BatchRecord``, saved with ``Store.put_item`` as it completes, so
a killed server loses at most the requests in flight; ``run_batch`` on a batch that already holds
records sends only the missing or failed (row, target) pairs ("Run missing rows").

Warm the cache first: Anthropic's prompt-caching docs say a cache entry only becomes available
after the first response begins, so N requests sent together before that moment all pay the
write price. With ``warm_first``, each target sends its first pending row alone, waits for its
first streamed byte, then fans out to ``concurrency`` requests (per target: each target has its
own cache, so a "wave" is counted per target). The client's connection pool must allow
``pool_size(spec)`` connections.
"""

from __future__ import annotations

import collections
import csv
import io
import json
import queue
import random
import re
import threading
import time
import uuid
from array import array
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Callable, Iterable

from .budget import PAGE_BUDGET, BudgetWords, SpendGuardError, request_ceiling
from .catalog import UnknownModelError, catalog
from .cost import ZERO_COST, CostBreakdown, cost_of, format_usd
from .errors import OrqError, describe
from .request import ChatParams, build_payload, cache_write_ttl, system_message, user_message
from .types import Done, ErrorEvent
from .usage import Usage

DOC_KIND = "batch"
EXPORT_FORMAT = "orq-playground.batch/1"
MAX_TARGETS = 4
MAX_CONCURRENCY = 32
MAX_ROWS = 100_000
CHECKS = ("exact", "contains", "regex", "json")
PLACEHOLDER = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")
RECORD_COLUMNS = ("row", "target", "status", "output", "input_tokens", "cache_read_tokens", "cache_write_tokens",
                  "output_tokens", "cost_usd", "ttft_ms", "latency_ms", "error", "answered_by", "empty_columns",
                  "passed", "why")


class BatchInputError(OrqError, ValueError):
    """Bad batch input (file, template, settings), refused before anything is sent or stored."""


# --- the dataset ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    number: int
    """1-based position in the uploaded dataset (kept through sampling, so results name it)."""
    values: dict[str, str]


@dataclass(frozen=True)
class Dataset:
    columns: tuple[str, ...]
    rows: tuple[Row, ...]

    def preview(self, count: int = 5) -> list[dict[str, str]]:
        return [{"row": str(r.number), **r.values} for r in self.rows[:count]]


def _text_of(data: bytes | str) -> str:
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BatchInputError("The file is not UTF-8 text: save it as UTF-8 CSV or JSONL and upload it again.") \
            from None


def _checked(columns: list[str], rows: list[Row]) -> Dataset:
    if not rows:
        raise BatchInputError("The file holds no data rows: add at least one row under the header.")
    if len(rows) > MAX_ROWS:
        raise BatchInputError(f"The file holds {len(rows):,} rows; a batch takes at most {MAX_ROWS:,}. "
                              "Split it or take the first rows.")
    return Dataset(tuple(columns), tuple(rows))


def parse_csv(data: bytes | str) -> Dataset:
    """A CSV with a header row. Missing cells read as empty; extra cells are an error."""
    text = _text_of(data)
    if not text.strip():
        raise BatchInputError("The file is empty: upload a CSV with a header row and at least one data row.")
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader, [])
        columns = [name.strip() for name in header]
        _check_header(columns)
        rows = []
        for number, cells in enumerate(reader, start=1):
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) > len(columns):
                raise BatchInputError(f"CSV line {reader.line_num} has {len(cells)} cells but the header has "
                                      f"{len(columns)}: quote cells that contain commas.")
            cells += [""] * (len(columns) - len(cells))
            rows.append(Row(len(rows) + 1, dict(zip(columns, cells))))
    except csv.Error as error:
        raise BatchInputError(f"The CSV cannot be read ({error}): check its quotes.") from None
    return _checked(columns, rows)


def _check_header(columns: list[str]) -> None:
    if not columns or not any(columns):
        raise BatchInputError("The CSV has no header row: put the column names on the first line.")
    if "" in columns:
        raise BatchInputError(f"Column {columns.index('') + 1} of the header has no name: name every column.")
    duplicates = sorted({c for c in columns if columns.count(c) > 1})
    if duplicates:
        raise BatchInputError(f"The header names {', '.join(duplicates)} more than once: make column names unique.")


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def parse_jsonl(data: bytes | str) -> Dataset:
    """One JSON object per line; columns in order of first appearance; nested values as JSON text."""
    text = _text_of(data)
    columns: dict[str, None] = {}
    objects = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            raise BatchInputError(f"JSONL line {line_number} is not valid JSON: one JSON object per line.") from None
        if not isinstance(value, dict):
            raise BatchInputError(f"JSONL line {line_number} is not a JSON object: each line must be {{\"column\": "
                                  "value, ...}.")
        columns.update(dict.fromkeys(str(k) for k in value))
        objects.append(value)
    if not objects:
        raise BatchInputError("The file is empty: upload JSONL with one JSON object per line.")
    names = list(columns)
    rows = [Row(i, {name: _cell(obj.get(name)) for name in names}) for i, obj in enumerate(objects, start=1)]
    return _checked(names, rows)


def load_dataset(data: bytes | str, filename: str = "data.csv") -> Dataset:
    """CSV or JSONL by the file's extension (.jsonl / .ndjson / .json lines; anything else CSV)."""
    if filename.lower().endswith((".jsonl", ".ndjson", ".json")):
        return parse_jsonl(data)
    return parse_csv(data)


def choose_rows(dataset: Dataset, *, limit: int | None = None, sample: int | None = None,
                seed: int = 0) -> list[Row]:
    """The first ``limit`` rows, or a seeded random ``sample`` of rows (kept in dataset order)."""
    rows = list(dataset.rows)
    if sample is not None:
        if sample < 1:
            raise BatchInputError("The sample size must be at least 1.")
        picked = sorted(random.Random(seed).sample(range(len(rows)), min(sample, len(rows))))
        return [rows[i] for i in picked]
    if limit is not None:
        if limit < 1:
            raise BatchInputError("The number of rows to take must be at least 1.")
        return rows[:limit]
    return rows


# --- the template ------------------------------------------------------------------------------

def template_columns(template: str) -> list[str]:
    """Column names used as ``{{column}}`` in ``template``, in order, without repeats."""
    return list(dict.fromkeys(m.group(1) for m in PLACEHOLDER.finditer(template)))


def render(template: str, values: dict[str, str]) -> tuple[str, tuple[str, ...]]:
    """The filled template and the columns whose cell was empty (filled with nothing)."""
    empty = tuple(name for name in template_columns(template) if not str(values.get(name, "")).strip())
    return PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), "")), template), empty


# --- settings ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BatchSpec:
    template: str
    targets: tuple[str, ...]
    system: str = ""
    cache_system: bool = False
    cache_ttl: str = "5m"
    max_tokens: int = 256
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple[str, ...] = ()
    thinking_budget: int | None = None
    concurrency: int = 4
    warm_first: bool | None = None
    """None: on when the system prompt is cached (the default the page shows)."""
    expected_column: str | None = None
    check: str = "exact"
    """How output is held against the expected column: exact, contains, regex or json."""

    @property
    def warms(self) -> bool:
        return self.cache_system if self.warm_first is None else bool(self.warm_first and self.cache_system)

    @property
    def write_ttl(self) -> str:
        return self.cache_ttl if self.cache_system else "5m"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "BatchSpec":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["targets"] = tuple(known.get("targets") or ())
        known["stop"] = tuple(known.get("stop") or ())
        return cls(**known)


def check_spec(spec: BatchSpec, columns: Iterable[str]) -> None:
    """Everything that can be wrong before sending, as one sentence each (BatchInputError)."""
    columns = list(columns)
    if not spec.template.strip():
        raise BatchInputError("The template is empty: write the user message, with {{column}} where a cell goes.")
    unknown = [name for name in template_columns(spec.template) if name not in columns]
    if unknown:
        raise BatchInputError(f"The template uses {{{{{unknown[0]}}}}} but the data has no column "
                              f"{unknown[0]!r}; its columns are: {', '.join(columns)}.")
    if not 1 <= len(spec.targets) <= MAX_TARGETS:
        raise BatchInputError(f"Choose 1 to {MAX_TARGETS} targets (got {len(spec.targets)}).")
    for slug in spec.targets:
        try:
            catalog().resolve(slug)
        except UnknownModelError:
            raise BatchInputError(f"Unknown target {slug!r}: use a slug from `python -m orq_core models`, "
                                  "e.g. anthropic/claude-haiku-4-5-20251001.") from None
    if len(set(spec.targets)) != len(spec.targets):
        raise BatchInputError("The same target is chosen twice: pick different models or providers.")
    if not 1 <= spec.concurrency <= MAX_CONCURRENCY:
        raise BatchInputError(f"Concurrency must be 1 to {MAX_CONCURRENCY} (got {spec.concurrency}).")
    if spec.cache_ttl not in ("5m", "1h"):
        raise BatchInputError(f"The cache TTL must be 5m or 1h (got {spec.cache_ttl!r}).")
    if spec.expected_column is not None and spec.expected_column not in columns:
        raise BatchInputError(f"The expected-answer column {spec.expected_column!r} is not in the data; its columns "
                              f"are: {', '.join(columns)}.")
    if spec.check not in CHECKS:
        raise BatchInputError(f"The check must be one of {', '.join(CHECKS)} (got {spec.check!r}).")
    for slug in spec.targets:  # the Chat page's parameter rules (request.py), once per target
        build_payload(_params(spec, slug), [user_message("x")])


def _params(spec: BatchSpec, slug: str) -> ChatParams:
    return ChatParams(model=slug, max_tokens=spec.max_tokens, temperature=spec.temperature, top_p=spec.top_p,
                      top_k=spec.top_k, stop=spec.stop, thinking_budget=spec.thinking_budget, stream=True)


def payload_for(spec: BatchSpec, slug: str, row: Row) -> tuple[dict, tuple[str, ...]]:
    """The request for one (row, target) and the template columns that were empty in that row."""
    text, empty = render(spec.template, row.values)
    messages = [system_message(spec.system, cache_ttl=spec.cache_ttl if spec.cache_system else None)] \
        if spec.system else []
    messages.append(user_message(text))
    return build_payload(_params(spec, slug), messages), empty


# --- checks against an expected answer -------------------------------------------------------------

def check_output(output: str, expected: str, how: str) -> bool:
    """exact (surrounding space ignored), contains, regex (search) or json (output parses)."""
    if how == "exact":
        return output.strip() == expected.strip()
    if how == "contains":
        return expected.strip() in output
    if how == "regex":
        return re.search(expected, output) is not None
    if how == "json":
        try:
            json.loads(output)
        except ValueError:
            return False
        return True
    raise BatchInputError(f"Unknown check {how!r}")


def check_expected(spec: BatchSpec, rows: Iterable[Row]) -> None:
    """A regex check refuses a pattern that does not compile, naming the row."""
    if spec.expected_column is None or spec.check != "regex":
        return
    for row in rows:
        try:
            re.compile(row.values.get(spec.expected_column, ""))
        except re.error as error:
            raise BatchInputError(f"Row {row.number}: the expected pattern is not a valid regular expression "
                                  f"({error}).") from None


# --- records -------------------------------------------------------------------------------------

@dataclass
class BatchRecord:
    """One (row, target) result."""

    row: int
    target: str
    status: str
    """'ok' or 'error'."""
    output: str = ""
    usage: Usage = field(default_factory=Usage)
    cost: CostBreakdown = ZERO_COST
    ttft_ms: float | None = None
    latency_ms: float | None = None
    error: str | None = None
    answered_by: str = ""
    empty_columns: tuple[str, ...] = ()
    """Template columns whose cell was empty in this row (filled with nothing: the row is flagged)."""
    passed: bool | None = None
    """Held against the expected answer; None when there is none."""
    why: str = ""
    """A slot for the cache doctor's sentence on this request's cache read/write."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def key(self) -> str:
        return record_key(self.row, self.target)

    @property
    def cost_usd(self) -> Decimal:
        return self.cost.total

    def to_dict(self) -> dict:
        return {"row": self.row, "target": self.target, "status": self.status, "output": self.output,
                "usage": {**self.usage.to_dict(), "raw": self.usage.raw},
                "cost": {k: str(getattr(self.cost, k)) for k in ("input", "cache_read", "cache_write", "output",
                                                                  "no_cache_total")},
                "ttft_ms": self.ttft_ms, "latency_ms": self.latency_ms, "error": self.error,
                "answered_by": self.answered_by, "empty_columns": list(self.empty_columns), "passed": self.passed,
                "why": self.why}

    @classmethod
    def from_dict(cls, data: dict) -> "BatchRecord":
        usage = dict(data.get("usage") or {})
        raw = usage.pop("raw", None)
        cost = data.get("cost") or {}
        return cls(row=int(data["row"]), target=str(data["target"]), status=str(data["status"]),
                   output=str(data.get("output") or ""), usage=Usage(**{k: int(v) for k, v in usage.items()}, raw=raw),
                   cost=CostBreakdown(*(Decimal(str(cost.get(k, "0"))) for k in
                                        ("input", "cache_read", "cache_write", "output", "no_cache_total"))),
                   ttft_ms=data.get("ttft_ms"), latency_ms=data.get("latency_ms"), error=data.get("error"),
                   answered_by=str(data.get("answered_by") or ""),
                   empty_columns=tuple(data.get("empty_columns") or ()), passed=data.get("passed"),
                   why=str(data.get("why") or ""))

    def flat(self) -> dict:
        """One CSV line (RECORD_COLUMNS)."""
        return {"row": self.row, "target": self.target, "status": self.status, "output": self.output,
                "input_tokens": self.usage.input_tokens, "cache_read_tokens": self.usage.cache_read_tokens,
                "cache_write_tokens": self.usage.cache_write_tokens, "output_tokens": self.usage.output_tokens,
                "cost_usd": str(self.cost_usd), "ttft_ms": _round(self.ttft_ms), "latency_ms": _round(self.latency_ms),
                "error": self.error or "", "answered_by": self.answered_by,
                "empty_columns": " ".join(self.empty_columns),
                "passed": "" if self.passed is None else ("yes" if self.passed else "no"), "why": self.why}


def _round(value: float | None) -> float | str:
    return "" if value is None else round(value, 1)


def record_key(row: int, target: str) -> str:
    return f"{row:08d}|{target}"  # zero-padded: the store orders items by key


def record_cost(usage: Usage, slug: str, write_ttl: str) -> CostBreakdown:
    try:
        return cost_of(usage, slug, write_ttl)
    except UnknownModelError:
        return ZERO_COST


# --- a batch ---------------------------------------------------------------------------------------

@dataclass
class Batch:
    id: str
    spec: BatchSpec
    rows: list[Row]
    name: str = ""
    created: float = 0.0
    records: dict[str, BatchRecord] = field(default_factory=dict)
    """By ``record_key(row, target)``; the latest attempt of each pair."""
    stopped: bool = False
    tallies: dict[str, "TargetTally"] | None = field(default=None, repr=False)
    """Set by ``run_batch(keep_records=False)``: the summary of records that were saved, not kept."""

    @classmethod
    def new(cls, spec: BatchSpec, rows: list[Row], name: str = "") -> "Batch":
        if not rows:
            raise BatchInputError("There are no rows to run: the dataset (or the chosen part of it) is empty.")
        return cls(uuid.uuid4().hex[:12], spec, list(rows), name or _default_name(spec), time.time())

    @property
    def total(self) -> int:
        return len(self.rows) * len(self.spec.targets)

    def missing(self) -> list[tuple[Row, str]]:
        """(row, target) pairs with no ok record, target by target in row order."""
        return [(row, slug) for slug in self.spec.targets for row in self.rows
                if not (r := self.records.get(record_key(row.number, slug))) or not r.ok]

    def ordered_records(self) -> list[BatchRecord]:
        order = {slug: i for i, slug in enumerate(self.spec.targets)}
        return sorted(self.records.values(), key=lambda r: (r.row, order.get(r.target, 99)))

    def target_records(self, slug: str) -> list[BatchRecord]:
        return sorted((r for r in self.records.values() if r.target == slug), key=lambda r: r.row)

    def summary(self) -> list["TargetSummary"]:
        has_expected = self.spec.expected_column is not None
        if self.tallies is not None:
            return [self.tallies[slug].summary(has_expected) for slug in self.spec.targets]
        return [summarize(slug, self.target_records(slug), has_expected=has_expected) for slug in self.spec.targets]

    # --- storage ------------------------------------------------------------------------------

    def header(self) -> dict:
        return {"format": EXPORT_FORMAT, "id": self.id, "name": self.name, "created": self.created,
                "spec": self.spec.to_dict(), "stopped": self.stopped,
                "columns": list(self.rows[0].values) if self.rows else [],
                "rows": [{"number": r.number, "values": r.values} for r in self.rows]}

    def save(self, store) -> None:
        """The settings, rows and summary (records are saved one by one as they complete)."""
        store.save_doc(DOC_KIND, self.id, self.name, {**self.header(),
                                                      "summary": [s.to_dict() for s in self.summary()]})

    @classmethod
    def load(cls, store, batch_id: str) -> "Batch | None":
        doc = store.load_doc(DOC_KIND, batch_id)
        if doc is None or not isinstance(doc.data, dict):
            return None
        batch = cls.from_dict(doc.data)
        for _, item in store.items(DOC_KIND, batch_id):
            if isinstance(item, dict):
                record = BatchRecord.from_dict(item)
                batch.records[record.key] = record
        return batch

    @classmethod
    def from_dict(cls, data: dict) -> "Batch":
        rows = [Row(int(r["number"]), {str(k): str(v) for k, v in r["values"].items()}) for r in data["rows"]]
        batch = cls(str(data["id"]), BatchSpec.from_dict(data["spec"]), rows, str(data.get("name") or ""),
                    float(data.get("created") or 0), stopped=bool(data.get("stopped")))
        for item in data.get("records") or ():
            record = BatchRecord.from_dict(item)
            batch.records[record.key] = record
        return batch

    def to_dict(self) -> dict:
        return {**self.header(), "summary": [s.to_dict() for s in self.summary()],
                "records": [r.to_dict() for r in self.ordered_records()]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)


def _default_name(spec: BatchSpec) -> str:
    return " ".join(spec.template.split())[:60] or "Untitled batch"


def records_csv(records: Iterable[BatchRecord]) -> str:
    out = io.StringIO()
    write_records_csv(out, records)
    return out.getvalue()


def write_records_csv(out, records: Iterable[BatchRecord]) -> None:
    writer = csv.DictWriter(out, fieldnames=RECORD_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(r.flat() for r in records)


# --- spend guard and prediction ------------------------------------------------------------------

def batch_ceiling(batch: Batch) -> Decimal:
    """The most the missing (row, target) pairs can cost: every request at its worst case."""
    return sum((request_ceiling(payload_for(batch.spec, slug, row)[0]) for row, slug in batch.missing()),
               Decimal(0))


def check_batch_budget(batch: Batch, spent_usd: float, budget_usd: float | None,
                       words: BudgetWords = PAGE_BUDGET) -> Decimal:
    """The ceiling of what is left to run; SpendGuardError naming the numbers when it could pass the budget."""
    if not budget_usd:
        return Decimal(0)
    pending = batch.missing()
    ceiling = batch_ceiling(batch)
    if Decimal(str(spent_usd)) + ceiling > Decimal(str(budget_usd)):
        rows = len({row.number for row, _ in pending})
        targets = len({slug for _, slug in pending})
        raise SpendGuardError(
            f"Not sent: {rows:,} rows x {targets} targets = {len(pending):,} requests could cost up to "
            f"{format_usd(ceiling)} together (input estimate, output at max_tokens {batch.spec.max_tokens:,}) and "
            f"{words.holder} has spent {format_usd(spent_usd)} of its {format_usd(budget_usd)} budget. Take fewer "
            f"rows or targets, lower max_tokens, or {words.remedy}.")
    return ceiling


@dataclass(frozen=True)
class Prediction:
    """Predicted cost of one target's pending rows, with and without warming the cache first."""

    target: str
    rows: int
    prefix_tokens: int
    """Tokens of the cached prefix (0 when nothing is cached: no breakpoint or under the minimum)."""
    writes_warm: int
    writes_cold: int
    cost_warm: Decimal
    cost_cold: Decimal

    @property
    def extra_cold(self) -> Decimal:
        return self.cost_cold - self.cost_warm


def cached_prefix_tokens(payload: dict, slug: str) -> int:
    """Tokens up to the last cache breakpoint when that prefix reaches the model's minimum."""
    from .emulator.prompt import segment_prompt  # the shared token count; the package loads the router

    total, prefix = 0, 0
    for block in segment_prompt(payload):
        total += block.tokens
        if block.cache_ttl:
            prefix = total
    return prefix if prefix >= catalog().resolve(slug).model.min_cacheable else 0


def predict(batch: Batch) -> list[Prediction]:
    """Per target: a cold parallel wave writes the prefix once per request in it (min(concurrency, rows));
    warming first writes it once. Output counted at max_tokens (a ceiling, the same both ways)."""
    from .emulator.prompt import count_prompt_tokens

    spec = batch.spec
    predictions = []
    pending = batch.missing()
    for slug in spec.targets:
        rows = [row for row, s in pending if s == slug]
        if not rows:
            predictions.append(Prediction(slug, 0, 0, 0, 0, Decimal(0), Decimal(0)))
            continue
        payloads = [payload_for(spec, slug, row)[0] for row in rows]
        prefix = cached_prefix_tokens(payloads[0], slug)

        uncached = sum(count_prompt_tokens(p) for p in payloads) - prefix * len(rows)
        cold_writes = min(spec.concurrency, len(rows)) if prefix else 0
        warm_writes = 1 if prefix else 0
        costs = []
        for writes in (warm_writes, cold_writes):
            usage = Usage(input_tokens=uncached, cache_write_tokens=writes * prefix,
                          cache_read_tokens=(len(rows) - writes) * prefix, output_tokens=spec.max_tokens * len(rows))
            costs.append(record_cost(usage, slug, spec.write_ttl).total)
        predictions.append(Prediction(slug, len(rows), prefix, warm_writes, cold_writes, costs[0], costs[1]))
    return predictions


WARM_FIRST_WHY = ("Anthropic's prompt-caching docs: a cache entry only becomes available after the first "
                  "response begins, so a cold parallel wave pays the write price once per request in it. "
                  "Warming sends row 1 alone and fans out once its answer has begun.")


# --- running -------------------------------------------------------------------------------------

@dataclass
class Progress:
    done: int
    failed: int
    total: int
    cost_usd: Decimal
    elapsed_s: float

    @property
    def eta_s(self) -> float | None:
        if not self.done or self.done >= self.total:
            return None if self.done < self.total else 0.0
        return self.elapsed_s / self.done * (self.total - self.done)

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


def run_batch(client, batch: Batch, *, store=None, on_record: Callable[[BatchRecord, Progress], None] | None = None,
              should_stop: Callable[[], bool] | None = None, page: str = "batch",
              clock: Callable[[], float] = time.perf_counter, keep_records: bool = True) -> Batch:
    """Send every missing (row, target) of ``batch``, at most ``spec.concurrency`` requests in flight per
    target (so a cold wave of N is N requests to one cache, whatever the other targets do).

    ``client``: an OrqClient (thread-safe; its pool must allow concurrency x targets connections:
    ``pool_size(spec)``).
    ``on_record(record, progress)`` and ``should_stop()`` run on the caller's thread. A stop keeps
    every finished record and cancels the streams in flight. Records are saved as they complete.

    ``keep_records=False`` (the CLI, long runs): new records go to the store and ``on_record`` but not
    into ``batch.records``; ``batch.tallies`` keeps the summary (seeded with the ok records already
    held), so memory stays flat however many rows. Reopen with ``Batch.load`` to see every record."""
    spec = batch.spec
    pending = batch.missing()
    if store is not None:
        batch.stopped = False
        batch.save(store)
    if not keep_records:
        batch.tallies = {slug: summarize_into(TargetTally(slug), batch.target_records(slug)) for slug in spec.targets}
    scheduler = _Scheduler(spec, pending)
    events: queue.Queue = queue.Queue()
    cancel = threading.Event()
    started = clock()
    done = failed = 0
    total = len(pending)
    spent = Decimal(0)
    pool = ThreadPoolExecutor(max_workers=pool_size(spec), thread_name_prefix="batch")
    try:
        while True:
            stopping = should_stop is not None and should_stop()
            if stopping:
                cancel.set()
                batch.stopped = True
            while not stopping:
                job = scheduler.next_job()
                if job is None:
                    break
                pool.submit(_send, client, spec, job[0], job[1], events, cancel, page, clock)
            if not scheduler.inflight_total:
                break
            try:
                kind, value = events.get(timeout=0.1)
            except queue.Empty:
                continue
            if kind == "began":
                scheduler.open(value)
                continue
            record: BatchRecord = value
            scheduler.finished(record.target)
            if cancel.is_set() and not record.ok:
                continue  # cancelled in flight: not a result
            if keep_records:
                batch.records[record.key] = record
            else:
                batch.tallies[record.target].add(record)
            if store is not None:
                store.put_item(DOC_KIND, batch.id, record.key, record.to_dict())
            done += 1
            failed += 0 if record.ok else 1
            spent += record.cost_usd
            if on_record is not None:
                on_record(record, Progress(done, failed, total, spent, clock() - started))
    except BaseException:  # the caller's thread was interrupted (a page rerun on Stop, Ctrl-C)
        batch.stopped = True
        raise
    finally:
        cancel.set()  # stop paying for answers nobody will read
        pool.shutdown(wait=False, cancel_futures=True)
        if store is not None:
            batch.save(store)
    return batch


def pool_size(spec: BatchSpec) -> int:
    """Connections (and worker threads) a run needs: ``concurrency`` per target."""
    return spec.concurrency * len(spec.targets)


class _Scheduler:
    """Which (row, target) goes next: targets in turn; with warm-first, a target's first request
    goes out alone and the rest wait until its answer has begun (``open``)."""

    def __init__(self, spec: BatchSpec, pending: list[tuple[Row, str]]):
        self.targets = list(spec.targets)
        self.concurrency = spec.concurrency
        self.inflight = dict.fromkeys(self.targets, 0)
        self.queues = {slug: collections.deque((row, s) for row, s in pending if s == slug) for slug in self.targets}
        self.opened = {slug: not spec.warms for slug in self.targets}
        self.warming: set[str] = set()
        self.turn = 0

    def open(self, slug: str) -> None:
        self.opened[slug] = True

    def finished(self, slug: str) -> None:
        self.inflight[slug] -= 1
        self.opened[slug] = True  # a warm-up that failed before answering still opens the gate

    @property
    def inflight_total(self) -> int:
        return sum(self.inflight.values())

    def next_job(self) -> tuple[Row, str] | None:
        for step in range(len(self.targets)):
            slug = self.targets[(self.turn + step) % len(self.targets)]
            jobs = self.queues[slug]
            if not jobs or self.inflight[slug] >= self.concurrency:
                continue
            if not self.opened[slug]:
                if slug in self.warming:
                    continue  # its warm-up is out and has not begun answering
                self.warming.add(slug)
            self.turn = (self.turn + step + 1) % len(self.targets)
            self.inflight[slug] += 1
            return jobs.popleft()
        return None


def _send(client, spec: BatchSpec, row: Row, slug: str, events: queue.Queue, cancel: threading.Event,
          page: str, clock: Callable[[], float]) -> None:
    """One request on a worker thread; reports 'began' at its first event, then the record."""
    began = False
    record = BatchRecord(row.number, slug, "error")
    started = clock()
    try:
        payload, record.empty_columns = payload_for(spec, slug, row)
        completion = None
        for event in client.stream(payload, page=page, cancel=cancel):
            if not began:
                began = True
                events.put(("began", slug))
            if isinstance(event, ErrorEvent):
                record.error = f"The answer stopped halfway: {event.message}"
            elif isinstance(event, Done):
                completion = event.completion
        if completion is not None:
            _fill(record, spec, row, slug, completion, cache_write_ttl(payload))
        if cancel.is_set() and completion is not None and completion.partial:
            record.status, record.error = "error", "stopped"
    except OrqError as error:
        record.error = describe(error)
    except Exception as error:  # noqa: BLE001 - one broken row must never stop the batch
        record.error = describe(error)
    if record.latency_ms is None:
        record.latency_ms = (clock() - started) * 1000
    events.put(("done", record))


def _fill(record: BatchRecord, spec: BatchSpec, row: Row, slug: str, completion, write_ttl: str) -> None:
    record.output = completion.text
    record.usage = completion.usage
    record.answered_by = completion.model or slug
    record.cost = record_cost(completion.usage, record.answered_by, write_ttl)
    record.ttft_ms, record.latency_ms = completion.ttft_ms, completion.latency_ms
    check = getattr(completion, "cache", None)  # the cache doctor's prediction, when the client has one
    if check is not None and hasattr(check, "sentence"):
        record.why = check.sentence()
    if completion.partial or completion.error:
        record.error = record.error or completion.error or "the answer was cut short"
        return
    record.status = "ok"
    if spec.expected_column is not None:
        try:
            record.passed = check_output(completion.text, row.values.get(spec.expected_column, ""), spec.check)
        except re.error:
            record.passed = False


# --- summary ------------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class TargetSummary:
    target: str
    ok: int
    failed: int
    usage: Usage
    cost: CostBreakdown
    ttft_ms_p50: float | None
    ttft_ms_p95: float | None
    latency_ms_p50: float | None
    latency_ms_p95: float | None
    output_tokens_per_s: float | None
    pass_rate: float | None

    @property
    def rows(self) -> int:
        return self.ok + self.failed

    @property
    def cost_usd(self) -> Decimal:
        return self.cost.total

    @property
    def no_cache_cost_usd(self) -> Decimal:
        return self.cost.no_cache_total

    @property
    def cost_per_1000_rows_usd(self) -> Decimal | None:
        return self.cost.total / self.rows * 1000 if self.rows else None

    @property
    def cache_hit_rate(self) -> float | None:
        """Share of input tokens read from the cache."""
        prompt = self.usage.prompt_tokens
        return self.usage.cache_read_tokens / prompt if prompt else None

    def projection(self, rows_per_day: int, days: int = 30) -> tuple[Decimal, Decimal] | None:
        """(with caching, without) for ``rows_per_day`` rows a day over ``days`` days, at this batch's
        cost per row."""
        if not self.rows:
            return None
        scale = Decimal(rows_per_day * days) / self.rows
        return self.cost.total * scale, self.cost.no_cache_total * scale

    def to_dict(self) -> dict:
        return {"target": self.target, "ok": self.ok, "failed": self.failed, "cost_usd": float(self.cost_usd),
                "no_cache_cost_usd": float(self.no_cache_cost_usd),
                "cost_per_1000_rows_usd": _float(self.cost_per_1000_rows_usd),
                "input_tokens": self.usage.input_tokens, "cache_read_tokens": self.usage.cache_read_tokens,
                "cache_write_tokens": self.usage.cache_write_tokens, "output_tokens": self.usage.output_tokens,
                "cache_hit_rate": self.cache_hit_rate, "ttft_ms_p50": self.ttft_ms_p50,
                "ttft_ms_p95": self.ttft_ms_p95, "latency_ms_p50": self.latency_ms_p50,
                "latency_ms_p95": self.latency_ms_p95, "output_tokens_per_s": self.output_tokens_per_s,
                "pass_rate": self.pass_rate}


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


class TargetTally:
    """A running summary of one target's records: sums, and the TTFT/latency samples for percentiles
    (8 bytes each), so a run that does not keep its records still has its summary."""

    def __init__(self, target: str):
        self.target = target
        self.ok = self.failed = self.checked = self.passed = self.output_tokens_ok = 0
        self.usage = Usage()
        self.cost = ZERO_COST
        self.ttfts = array("d")
        self.latencies = array("d")
        self.generating_s = 0.0

    def add(self, record: BatchRecord) -> None:
        # every record's tokens and cost count (a cut answer is billed); timings only of the ok ones
        self.usage += record.usage
        self.cost += record.cost
        if not record.ok:
            self.failed += 1
            return
        self.ok += 1
        self.output_tokens_ok += record.usage.output_tokens
        if record.ttft_ms is not None:
            self.ttfts.append(record.ttft_ms)
        if record.latency_ms is not None:
            self.latencies.append(record.latency_ms)
            if record.ttft_ms is not None:
                self.generating_s += (record.latency_ms - record.ttft_ms) / 1000
        if record.passed is not None:
            self.checked += 1
            self.passed += bool(record.passed)

    def summary(self, has_expected: bool = False) -> TargetSummary:
        ttfts, latencies = list(self.ttfts), list(self.latencies)
        return TargetSummary(
            self.target, self.ok, self.failed, self.usage, self.cost, percentile(ttfts, 50), percentile(ttfts, 95),
            percentile(latencies, 50), percentile(latencies, 95),
            self.output_tokens_ok / self.generating_s if self.generating_s > 0 else None,
            self.passed / self.checked if has_expected and self.checked else None)


def summarize_into(tally: TargetTally, records: Iterable[BatchRecord]) -> TargetTally:
    """``tally`` with the ok ``records`` added (failed ones are about to be sent again)."""
    for record in records:
        if record.ok:
            tally.add(record)
    return tally


def summarize(slug: str, records: Iterable[BatchRecord], *, has_expected: bool = False) -> TargetSummary:
    """Sums of the records (every failed row's tokens too: a cut answer is billed), percentiles of the ok ones."""
    tally = TargetTally(slug)
    for record in records:
        tally.add(record)
    return tally.summary(has_expected)


# --- charts (plotly imported lazily) ---------------------------------------------------------------

def latency_figure(batch: Batch):
    import plotly.graph_objects as go

    figure = go.Figure()
    for slug in batch.spec.targets:
        values = [r.latency_ms for r in batch.target_records(slug) if r.ok and r.latency_ms is not None]
        figure.add_trace(go.Box(x=values, name=slug, orientation="h", boxpoints="all", jitter=0.3, pointpos=0))
    figure.update_layout(title="Latency per target", xaxis_title="total latency (ms)", showlegend=False,
                         height=120 + 55 * len(batch.spec.targets), margin=dict(l=10, r=10, t=40, b=10))
    return figure


def cost_figure(batch: Batch):
    import plotly.graph_objects as go

    summary = batch.summary()
    figure = go.Figure()
    figure.add_bar(x=[s.target for s in summary], y=[float(s.cost_usd) for s in summary], name="with caching",
                   marker_color="#2b8a3e")
    figure.add_bar(x=[s.target for s in summary], y=[float(s.no_cache_cost_usd) for s in summary],
                   name="without caching", marker_color="#868e96")
    figure.update_layout(title="Cost per target", yaxis_title="USD", barmode="group", height=340)
    return figure


def cumulative_cost_figure(batch: Batch):
    import plotly.graph_objects as go

    figure = go.Figure()
    for slug in batch.spec.targets:
        records = batch.target_records(slug)
        running, ys = Decimal(0), []
        for record in records:
            running += record.cost_usd
            ys.append(float(running))
        figure.add_scatter(x=[r.row for r in records], y=ys, mode="lines", name=slug)
    figure.update_layout(title="Cumulative cost over rows", xaxis_title="row", yaxis_title="USD", height=340)
    return figure



# --- sentences for the page and the CLI ------------------------------------------------------------

def projection_sentence(summary: TargetSummary, rows_per_day: int, days: int = 30) -> str:
    projected = summary.projection(rows_per_day, days)
    if projected is None:
        return f"{summary.target}: no finished rows to project from."
    with_cache, without = projected
    return (f"{summary.target}: at {rows_per_day:,} rows a day, {days} days cost {format_usd(with_cache)} with "
            f"caching, {format_usd(without)} without.")


def progress_sentence(progress: Progress) -> str:
    eta = progress.eta_s
    eta_text = "" if eta is None else f" · about {eta:,.0f} s left" if eta else ""
    return (f"{progress.done:,} of {progress.total:,} done · {progress.failed:,} failed · "
            f"{format_usd(progress.cost_usd)} so far{eta_text}")


def prediction_rows(predictions: list[Prediction]) -> list[dict]:
    return [{"target": p.target, "rows": p.rows, "cached_prefix_tokens": p.prefix_tokens,
             "writes_warm_first": p.writes_warm, "writes_cold_wave": p.writes_cold,
             "cost_warm_first_usd": float(p.cost_warm), "cost_cold_wave_usd": float(p.cost_cold),
             "extra_without_warming_usd": float(p.extra_cold)} for p in predictions]
