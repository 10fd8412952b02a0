"""The Notebook: a document of cells (Markdown, Prompt, Compare, Lab, Batch, Variables) that run,
go stale when what they use changes, save, and export (see notebook_export and notebook_report).

Staleness follows marimo / Observable: a cell depends on its own inputs and on the variables it
names as ``{{name}}``. A run records a fingerprint of exactly those; when the fingerprint of the
cell as it is now differs, the cell is stale. Markdown and Variables cells have nothing to run.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Callable, Iterator, get_type_hints

from .budget import PAGE_BUDGET, BudgetWords, check_budget
from .catalog import DEFAULT_MODEL, catalog
from .cost import cost_of, format_usd
from .errors import OrqError, describe
from .request import (CACHE_TTLS, ChatParams, build_payload, cache_write_ttl, system_message, user_message,
                      with_cache_on_last_part)
from .types import Completion, Done, ReasoningDelta, TextDelta
from .usage import Usage

FORMAT = "orq-playground.notebook/1"
DOC_KIND = "notebook"
KINDS = ("markdown", "prompt", "compare", "lab", "batch", "variables")
KIND_LABELS = {"markdown": "Markdown", "prompt": "Prompt", "compare": "Compare", "lab": "Lab", "batch": "Batch",
               "variables": "Variables"}
RUNNABLE = ("prompt", "compare", "lab", "batch")
MAX_CELLS = 200
MAX_TEXT = 400_000
"""Characters in one input field: a 100K-token book fits, a pasted database does not."""
HAIKU = "anthropic/claude-haiku-4-5-20251001"

VARIABLE_REF = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
VARIABLE_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")


class NotebookError(OrqError):
    """A notebook or a cell that cannot be used as it is; the message is a sentence for a person."""


# --------------------------------------------------------------------------------------------
# Cell inputs, one dataclass per kind
# --------------------------------------------------------------------------------------------

@dataclass
class MarkdownInputs:
    text: str = ""


@dataclass
class VariablesInputs:
    text: str = ""
    """One ``name = value`` per line; ``#`` starts a comment line."""


@dataclass
class PromptInputs:
    system: str = ""
    user: str = ""
    model: str = DEFAULT_MODEL
    max_tokens: int = 1024
    temperature: float | None = None
    thinking_budget: int | None = None
    cache_system: bool = False
    cache_user: bool = False
    cache_ttl: str = "5m"


@dataclass
class CompareInputs:
    targets: tuple[str, ...] = (DEFAULT_MODEL, HAIKU)
    system: str = ""
    user: str = ""
    max_tokens: int = 1024
    cache_system: bool = False
    cache_ttl: str = "5m"


@dataclass
class LabInputs:
    preset: str = "book"
    models: tuple[str, ...] = (DEFAULT_MODEL,)
    requests: int = 4
    context_tokens: int = 5_000
    arms: tuple[str, ...] = ("no-cache", "prompt-cache")
    ttl: str = "5m"
    max_tokens: int = 256
    questions: tuple[str, ...] = ()
    custom_context: str = ""


@dataclass
class BatchInputs:
    template: str = ""
    """The user message; ``{{column}}`` takes each row's value, ``{{name}}`` a notebook variable."""
    table: str = ""
    """CSV (with a header row) or JSON Lines, pasted or uploaded."""
    targets: tuple[str, ...] = (DEFAULT_MODEL,)
    system: str = ""
    cache_system: bool = False
    max_tokens: int = 256
    concurrency: int = 2


INPUTS = {"markdown": MarkdownInputs, "variables": VariablesInputs, "prompt": PromptInputs,
          "compare": CompareInputs, "lab": LabInputs, "batch": BatchInputs}
TEMPLATED = {"markdown": ("text",), "prompt": ("system", "user"), "compare": ("system", "user"),
             "lab": ("questions", "custom_context"), "batch": ("template", "system"), "variables": ()}


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------

@dataclass
class RequestFigures:
    """One request a cell sent: what it used, what it cost, how long it took."""

    label: str
    model: str
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    no_cache_usd: float = 0.0
    """The same tokens priced with no caching."""
    ttft_ms: float | None = None
    latency_ms: float | None = None
    error: str | None = None
    cache: Any = None
    """The cache doctor's CacheCheck for this request (prediction, why, comparison)."""

    def to_dict(self) -> dict:
        data = asdict(self)
        data["usage"] = self.usage.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "RequestFigures":
        usage = Usage(**{k: int(v) for k, v in (data.get("usage") or {}).items() if k in _USAGE_FIELDS})
        return cls(label=str(data.get("label", "")), model=str(data.get("model", "")), usage=usage,
                   cost_usd=float(data.get("cost_usd") or 0), no_cache_usd=float(data.get("no_cache_usd") or 0),
                   ttft_ms=_opt_float(data.get("ttft_ms")), latency_ms=_opt_float(data.get("latency_ms")),
                   error=data.get("error"), cache=_cache_check(data.get("cache")))


def _cache_check(data: Any) -> Any:
    from .cache_doctor import CacheCheck

    try:
        return CacheCheck.from_dict(data) if isinstance(data, dict) else None
    except (TypeError, ValueError):
        return None


_USAGE_FIELDS = ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens")


def _opt_float(value) -> float | None:
    return None if value is None else float(value)


@dataclass
class Answer:
    """One answer a cell shows (a Prompt has one, a Compare one per target)."""

    label: str
    text: str = ""
    reasoning: str = ""
    error: str | None = None


@dataclass
class CellOutput:
    fingerprint: str
    status: str
    """'ok' or 'error'."""
    ran_at: float = 0.0
    elapsed_s: float = 0.0
    router: str = "local"
    """'local' (the local router: synthetic text) or 'orq'."""
    answers: list[Answer] = field(default_factory=list)
    requests: list[RequestFigures] = field(default_factory=list)
    error: str | None = None
    table: list[dict] = field(default_factory=list)
    """Compare's decision table, Batch's per-target summary."""
    lab: dict | None = None
    """ExperimentResult.to_dict() of a Lab cell."""
    batch: dict | None = None
    """Batch.to_dict() of a Batch cell (its rows, settings and every record)."""
    notes: list[str] = field(default_factory=list)
    """Sentences about the requests (e.g. why a cache read or write happened)."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict:
        data = asdict(self)
        data["requests"] = [r.to_dict() for r in self.requests]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "CellOutput":
        return cls(fingerprint=str(data["fingerprint"]), status=str(data["status"]),
                   ran_at=float(data.get("ran_at") or 0), elapsed_s=float(data.get("elapsed_s") or 0),
                   router=str(data.get("router") or "local"),
                   answers=[Answer(**{k: a.get(k) for k in ("label", "text", "reasoning", "error") if k in a})
                            for a in data.get("answers") or []],
                   requests=[RequestFigures.from_dict(r) for r in data.get("requests") or []],
                   error=data.get("error"), table=list(data.get("table") or []), lab=data.get("lab"),
                   batch=data.get("batch"), notes=[str(n) for n in data.get("notes") or []])


# --------------------------------------------------------------------------------------------
# Cells and the notebook
# --------------------------------------------------------------------------------------------

def _new_id() -> str:
    return uuid.uuid4().hex[:10]


@dataclass
class Cell:
    kind: str
    inputs: object
    id: str = field(default_factory=_new_id)
    collapsed: bool = False
    output: CellOutput | None = None

    @classmethod
    def new(cls, kind: str, **values) -> "Cell":
        if kind not in INPUTS:
            raise NotebookError(f"There is no '{kind}' cell; the kinds are: {', '.join(KINDS)}.")
        return cls(kind, INPUTS[kind](**values))

    @property
    def label(self) -> str:
        return KIND_LABELS[self.kind]

    @property
    def runnable(self) -> bool:
        return self.kind in RUNNABLE

    def references(self) -> list[str]:
        """The variables this cell names, in order of first use (a Batch cell's table columns are
        the rows' values, not variables)."""
        names: dict[str, None] = {}
        for name in TEMPLATED[self.kind]:
            value = getattr(self.inputs, name)
            for text in (value if isinstance(value, tuple) else (value,)):
                names.update(dict.fromkeys(VARIABLE_REF.findall(text)))
        own = set(self.own_names())
        return [n for n in names if n not in own]

    def own_names(self) -> list[str]:
        """Placeholders the cell fills itself: a Batch cell's table columns."""
        if self.kind != "batch":
            return []
        from .notebook_batch import table_columns

        return list(table_columns(self.inputs.table))

    def to_dict(self, with_output: bool = True) -> dict:
        data = {"id": self.id, "kind": self.kind, "collapsed": self.collapsed, "inputs": inputs_to_dict(self.inputs)}
        if with_output:
            data["output"] = self.output.to_dict() if self.output else None
        return data

    @classmethod
    def from_dict(cls, data: dict, where: str = "A cell") -> "Cell":
        if not isinstance(data, dict):
            raise NotebookError(f"{where} is not a cell (expected an object with kind and inputs).")
        kind = data.get("kind")
        if kind not in INPUTS:
            raise NotebookError(f"{where} has the unknown kind {str(kind)[:40]!r}; the kinds are: {', '.join(KINDS)}.")
        inputs = inputs_from_dict(kind, data.get("inputs") or {}, f"{where} ({KIND_LABELS[kind]})")
        output = None
        if data.get("output") is not None:
            try:
                output = CellOutput.from_dict(data["output"])
            except (KeyError, TypeError, ValueError, AttributeError) as error:
                raise NotebookError(f"{where} has a damaged recorded output ({type(error).__name__}); "
                                    "run the cell again in the playground and export anew.") from error
        cell_id = data.get("id")
        return cls(kind, inputs, id=cell_id if isinstance(cell_id, str) and cell_id.isalnum() else _new_id(),
                   collapsed=bool(data.get("collapsed")), output=output)


def inputs_to_dict(inputs) -> dict:
    data = asdict(inputs)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}


def _checked(value, hint, name: str, where: str):
    """``value`` as the type ``hint`` names, or a NotebookError saying what is wrong."""
    text = str(hint)
    if value is None and "None" in text:
        return None
    if text.startswith("tuple"):
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise NotebookError(f"{where}: {name} must be a list of texts.")
        if sum(len(v) for v in value) > MAX_TEXT:
            raise NotebookError(f"{where}: {name} is longer than {MAX_TEXT:,} characters.")
        return tuple(value)
    if hint is str:
        if not isinstance(value, str):
            raise NotebookError(f"{where}: {name} must be text, not {type(value).__name__}.")
        if len(value) > MAX_TEXT:
            raise NotebookError(f"{where}: {name} is longer than {MAX_TEXT:,} characters; shorten it.")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise NotebookError(f"{where}: {name} must be true or false.")
        return value
    if "int" in text and "float" not in text:
        if isinstance(value, bool) or not isinstance(value, int):
            raise NotebookError(f"{where}: {name} must be a whole number, not {str(value)[:20]!r}.")
        return value
    if "float" in text:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise NotebookError(f"{where}: {name} must be a number, not {str(value)[:20]!r}.")
        return float(value)
    return value


def inputs_from_dict(kind: str, data: dict, where: str):
    cls = INPUTS[kind]
    if not isinstance(data, dict):
        raise NotebookError(f"{where}: its inputs must be an object of named values.")
    hints = get_type_hints(cls)
    values = {f.name: _checked(data[f.name], hints[f.name], f.name, where) for f in fields(cls) if f.name in data}
    return cls(**values)


def parse_variables(text: str) -> dict[str, str]:
    """``name = value`` lines; blank and ``#`` lines skipped; quotes around a value are dropped."""
    variables: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = VARIABLE_LINE.match(stripped)
        if not match:
            raise NotebookError(f"Line {number} of the Variables cell is not `name = value` "
                                f"(a name is letters, digits and _, not starting with a digit): {stripped[:60]!r}.")
        name, value = match.group(1), match.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        variables[name] = value
    return variables


def substitute(text: str, variables: dict[str, str], *, keep_unknown: bool = False) -> str:
    def value(match: re.Match) -> str:
        name = match.group(1)
        if name in variables:
            return variables[name]
        if keep_unknown:
            return match.group(0)
        raise NotebookError(f"The cell uses {{{{{name}}}}}, but no Variables cell above it defines {name}. "
                            f"Add `{name} = ...` to a Variables cell above, or remove it.")

    return VARIABLE_REF.sub(value, text)


def resolved_inputs(cell: Cell, variables: dict[str, str], *, keep_unknown: bool = False):
    """The cell's inputs with ``{{name}}`` replaced by the variables' values."""
    own = cell.own_names()
    if own:  # the cell's own placeholders stay for it to fill
        variables = {**variables, **{name: f"{{{{{name}}}}}" for name in own}}
    changes = {}
    for name in TEMPLATED[cell.kind]:
        value = getattr(cell.inputs, name)
        if isinstance(value, tuple):
            changes[name] = tuple(substitute(v, variables, keep_unknown=keep_unknown) for v in value)
        else:
            changes[name] = substitute(value, variables, keep_unknown=keep_unknown)
    return replace(cell.inputs, **changes)


class Notebook:
    def __init__(self, title: str = "Untitled notebook", cells: list[Cell] | None = None, *,
                 id: str | None = None, created: float | None = None):
        self.title = title
        self.cells: list[Cell] = list(cells or [])
        self.id = id or _new_id()
        self.created = created if created is not None else time.time()

    # --- editing ------------------------------------------------------------------------------

    def index(self, cell_id: str) -> int:
        for i, cell in enumerate(self.cells):
            if cell.id == cell_id:
                return i
        raise NotebookError("That cell is no longer in the notebook.")

    def cell(self, cell_id: str) -> Cell:
        return self.cells[self.index(cell_id)]

    def add(self, kind: str, after: str | None = None, **values) -> Cell:
        """A new cell of ``kind`` below the cell ``after`` (at the end when None)."""
        if len(self.cells) >= MAX_CELLS:
            raise NotebookError(f"A notebook holds at most {MAX_CELLS} cells; start a second notebook.")
        cell = Cell.new(kind, **values)
        position = len(self.cells) if after is None else self.index(after) + 1
        self.cells.insert(position, cell)
        return cell

    def move(self, cell_id: str, step: int) -> None:
        i = self.index(cell_id)
        j = min(max(i + step, 0), len(self.cells) - 1)
        self.cells.insert(j, self.cells.pop(i))

    def duplicate(self, cell_id: str) -> Cell:
        if len(self.cells) >= MAX_CELLS:
            raise NotebookError(f"A notebook holds at most {MAX_CELLS} cells; start a second notebook.")
        i = self.index(cell_id)
        original = self.cells[i]
        copy = Cell(original.kind, replace(original.inputs), collapsed=original.collapsed)
        self.cells.insert(i + 1, copy)
        return copy

    def delete(self, cell_id: str) -> None:
        del self.cells[self.index(cell_id)]

    def toggle_collapsed(self, cell_id: str) -> None:
        cell = self.cell(cell_id)
        cell.collapsed = not cell.collapsed

    def set_inputs(self, cell_id: str, inputs) -> bool:
        """Replace a cell's inputs; True when they changed."""
        cell = self.cell(cell_id)
        if cell.inputs == inputs:
            return False
        cell.inputs = inputs
        return True

    # --- variables and staleness ----------------------------------------------------------------

    def variables_before(self, cell_id: str) -> dict[str, str]:
        """Variables defined by the Variables cells above ``cell_id`` (a later definition wins).
        A Variables cell that does not parse contributes nothing (it shows its own error)."""
        variables: dict[str, str] = {}
        for cell in self.cells[:self.index(cell_id)]:
            if cell.kind == "variables":
                try:
                    variables.update(parse_variables(cell.inputs.text))
                except NotebookError:
                    pass
        return variables

    def fingerprint(self, cell: Cell) -> str:
        variables = self.variables_before(cell.id)
        used = {name: variables.get(name) for name in cell.references()}
        text = json.dumps([cell.kind, inputs_to_dict(cell.inputs), used], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def is_stale(self, cell: Cell) -> bool:
        """A runnable cell never run, or whose inputs or used variables changed since its run."""
        return cell.runnable and (cell.output is None or cell.output.fingerprint != self.fingerprint(cell))

    def stale_cells(self) -> list[Cell]:
        return [c for c in self.cells if self.is_stale(c)]

    def totals(self) -> "Totals":
        return Totals.of([c.output for c in self.cells if c.output is not None])

    def routers(self) -> set[str]:
        return {c.output.router for c in self.cells if c.output is not None and c.output.requests}

    # --- storage --------------------------------------------------------------------------------

    def to_dict(self, with_outputs: bool = True) -> dict:
        return {"format": FORMAT, "id": self.id, "title": self.title, "created": self.created,
                "cells": [c.to_dict(with_outputs) for c in self.cells]}

    @classmethod
    def from_dict(cls, data: dict) -> "Notebook":
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise NotebookError("This is not a playground notebook (its format is missing or unknown).")
        cells = data.get("cells")
        if not isinstance(cells, list):
            raise NotebookError("The notebook has no list of cells.")
        if len(cells) > MAX_CELLS:
            raise NotebookError(f"The notebook has {len(cells)} cells; at most {MAX_CELLS} are allowed.")
        title = data.get("title")
        if not isinstance(title, str) or not title.strip():
            title = "Untitled notebook"
        notebook_id = data.get("id")
        return cls(title[:200], [Cell.from_dict(c, f"Cell {i + 1}") for i, c in enumerate(cells)],
                   id=notebook_id if isinstance(notebook_id, str) and notebook_id.isalnum() else None,
                   created=float(data["created"]) if isinstance(data.get("created"), (int, float)) else None)

    def copy(self, title: str | None = None) -> "Notebook":
        """A new notebook (new ids) with the same cells and outputs."""
        twin = Notebook.from_dict(self.to_dict())
        twin.id, twin.created, twin.title = _new_id(), time.time(), title or f"{self.title} (copy)"
        for cell in twin.cells:
            cell.id = _new_id()
        # the outputs' fingerprints do not hold ids, so copied cells stay fresh
        return twin

    def save(self, store) -> None:
        """The document (cells' inputs) and each cell's output as an item of it."""
        store.save_doc(DOC_KIND, self.id, self.title, self.to_dict(with_outputs=False))
        for cell in self.cells:
            self.save_output(store, cell)

    def save_output(self, store, cell: Cell, output: "CellOutput | None" = None) -> None:
        """The cell's output, or ``output`` (a running cell's output so far) in its place."""
        output = output or cell.output
        store.put_item(DOC_KIND, self.id, cell.id, {"output": output.to_dict() if output else None})

    @classmethod
    def load(cls, store, notebook_id: str) -> "Notebook | None":
        doc = store.load_doc(DOC_KIND, notebook_id)
        if doc is None or not doc.data:
            return None
        notebook = cls.from_dict(doc.data)
        notebook.title = doc.name
        outputs = dict(store.items(DOC_KIND, notebook_id))
        for cell in notebook.cells:
            saved = (outputs.get(cell.id) or {}).get("output")
            if saved:
                try:
                    cell.output = CellOutput.from_dict(saved)
                except (KeyError, TypeError, ValueError, AttributeError):
                    cell.output = None  # a damaged output only makes the cell stale
        return notebook


# --------------------------------------------------------------------------------------------
# Totals
# --------------------------------------------------------------------------------------------

@dataclass
class Totals:
    requests: int = 0
    failed: int = 0
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    no_cache_usd: float = 0.0
    elapsed_s: float = 0.0

    @property
    def saved_usd(self) -> float:
        return self.no_cache_usd - self.cost_usd

    @classmethod
    def of(cls, outputs: list[CellOutput]) -> "Totals":
        totals = cls()
        for output in outputs:
            totals.elapsed_s += output.elapsed_s
            for request in output.requests:
                totals.requests += 1
                totals.failed += request.error is not None
                totals.usage = totals.usage + request.usage
                totals.cost_usd += request.cost_usd
                totals.no_cache_usd += request.no_cache_usd
        return totals

    def rows(self) -> list[tuple[str, str]]:
        """(label, value) pairs, the same in the page, the report and the CLI."""
        u = self.usage
        return [("Requests", f"{self.requests:,}" + (f" ({self.failed} failed)" if self.failed else "")),
                ("Uncached input tokens", f"{u.input_tokens:,}"), ("Cache read tokens", f"{u.cache_read_tokens:,}"),
                ("Cache write tokens", f"{u.cache_write_tokens:,}"), ("Output tokens", f"{u.output_tokens:,}"),
                ("Reasoning tokens (in output)", f"{u.reasoning_tokens:,}"),
                ("Cost", format_usd(self.cost_usd)), ("Without caching", format_usd(self.no_cache_usd)),
                ("Saved by caching", format_usd(self.saved_usd)), ("Time", f"{self.elapsed_s:,.1f} s")]


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------

@dataclass
class RunContext:
    client: object
    local: bool = True
    on_event: Callable[[Cell, object], None] | None = None
    """Called with each stream event (TextDelta, ColumnEvent, LabRecord, ...) as it arrives."""
    spent_usd: Callable[[], float] = lambda: 0.0
    """What this session has spent so far (the spend guard adds a cell's worst case to it)."""
    budget_usd: float | None = None
    """None or 0: no spend guard."""
    budget_words: BudgetWords = PAGE_BUDGET
    """How a refusal names the budget: the sidebar's on a page, ``--max-spend`` from the CLI."""
    cancel: threading.Event | None = None
    clock: Callable[[], float] = time.monotonic
    save_partial: Callable[[Cell, CellOutput], None] | None = None
    """Saves a Lab or Batch cell's output so far while it runs (see ``PartialOutputs``)."""
    partial_every_s: float = 1.0


INTERRUPTED = ("Interrupted after {done:,} of {total:,} requests: the server stopped while this cell ran. "
               "What finished is shown; run the cell again for the rest.")


class PartialOutputs:
    """A long cell's output so far, saved as it runs (at most every ``ctx.partial_every_s``) in the
    form it should have if the server dies now: an error saying it was interrupted, no fingerprint
    (so the cell is stale and "Run stale" picks it up). The cell's final output replaces it."""

    def __init__(self, cell: Cell, output: CellOutput, ctx: RunContext, total: int):
        self.cell, self.output, self.ctx, self.total = cell, output, ctx, total
        self.saved_at: float | None = None

    def offer(self, done: int, fill: Callable[[CellOutput], None]) -> None:
        if self.ctx.save_partial is None or done >= self.total:
            return
        now = self.ctx.clock()
        if self.saved_at is not None and now - self.saved_at < self.ctx.partial_every_s:
            return
        self.saved_at = now
        partial = CellOutput("", "error", ran_at=self.output.ran_at, router=self.output.router,
                             error=INTERRUPTED.format(done=done, total=self.total))
        fill(partial)
        self.ctx.save_partial(self.cell, partial)


def _priced(answered: str, requested: str) -> str:
    try:
        catalog().resolve(answered)
        return answered
    except ValueError:
        return requested


def figures_of(label: str, completion: Completion, requested: str, write_ttl: str) -> RequestFigures:
    cost = cost_of(completion.usage, _priced(completion.model, requested), write_ttl)
    return RequestFigures(label, completion.model or requested, completion.usage, float(cost.total),
                          float(cost.no_cache_total), completion.ttft_ms, completion.latency_ms, completion.error,
                          completion.cache)


def prompt_payload(inputs: PromptInputs) -> dict:
    ttl = inputs.cache_ttl if inputs.cache_ttl in CACHE_TTLS else "5m"
    messages = [system_message(inputs.system, cache_ttl=ttl if inputs.cache_system else None)] if inputs.system else []
    user = user_message(inputs.user)
    messages.append(with_cache_on_last_part(user, ttl) if inputs.cache_user else user)
    params = ChatParams(model=inputs.model, max_tokens=inputs.max_tokens, temperature=inputs.temperature,
                        thinking_budget=inputs.thinking_budget, stream=True)
    return build_payload(params, messages)


def _run_prompt(cell: Cell, inputs: PromptInputs, ctx: RunContext, output: CellOutput) -> None:
    if not inputs.user.strip():
        raise NotebookError("The Prompt cell has no user message: write one, then run it.")
    payload = prompt_payload(inputs)
    check_budget(payload, ctx.spent_usd(), ctx.budget_usd, ctx.budget_words)
    completion = None
    for event in ctx.client.stream(payload, page="notebook", cancel=ctx.cancel):
        if ctx.on_event and isinstance(event, (TextDelta, ReasoningDelta)):
            ctx.on_event(cell, event)
        if isinstance(event, Done):
            completion = event.completion
    output.answers = [Answer(inputs.model, completion.text, completion.reasoning, completion.error)]
    output.requests = [figures_of(inputs.model, completion, inputs.model, cache_write_ttl(payload))]
    if completion.error:
        raise NotebookError(f"The answer stopped halfway: {completion.error}. What arrived is kept.")


def _run_compare(cell: Cell, inputs: CompareInputs, ctx: RunContext, output: CellOutput) -> None:
    from .compare import MAX_COLUMNS, CompareTarget, Comparison, check_batch_budget, column_labels

    if not 2 <= len(inputs.targets) <= MAX_COLUMNS:
        raise NotebookError(f"A Compare cell takes 2 to {MAX_COLUMNS} targets; it has {len(inputs.targets)}.")
    if not inputs.user.strip():
        raise NotebookError("The Compare cell has no prompt: write one, then run it.")
    for slug in inputs.targets:
        catalog().resolve(slug)
    comparison = Comparison([CompareTarget(slug, max_tokens=inputs.max_tokens) for slug in inputs.targets],
                            inputs.system, inputs.cache_system, inputs.cache_ttl)
    prepared = comparison.prepare(inputs.user)
    check_batch_budget([p for p in prepared if isinstance(p, dict)], 1, ctx.spent_usd(), ctx.budget_usd,
                       ctx.budget_words)
    events = comparison.ask(ctx.client, inputs.user, prepared=prepared, cancel=ctx.cancel)
    try:
        for event in events:
            if ctx.on_event:
                ctx.on_event(cell, event)
    finally:
        events.close()
    labels = column_labels(comparison.targets)
    for label, column in zip(labels, comparison.columns):
        sample = column.samples[0] if column.samples else None
        completion = sample.completion if sample else None
        output.answers.append(Answer(label, completion.text if completion else "",
                                     completion.reasoning if completion else "",
                                     sample.error if sample else "no answer arrived"))
        if completion is not None:
            output.requests.append(figures_of(label, completion, column.target.slug, sample.write_ttl))
        elif sample is not None:
            output.requests.append(RequestFigures(label, column.target.slug, error=sample.error))
    output.table = comparison.summary_rows()
    failed = [a for a in output.answers if a.error]
    if failed:
        raise NotebookError(f"{len(failed)} of {len(output.answers)} targets failed; "
                            f"the first: {failed[0].label}: {failed[0].error}")


def lab_config(inputs: LabInputs):
    from .lab import ExperimentConfig

    config = ExperimentConfig(preset=inputs.preset, models=inputs.models, requests=inputs.requests,
                              context_tokens=inputs.context_tokens, arms=inputs.arms, ttl=inputs.ttl,
                              max_tokens=inputs.max_tokens, questions=inputs.questions,
                              custom_context=inputs.custom_context)
    try:
        config.validate()
    except ValueError as error:
        raise NotebookError(f"The Lab cell's settings do not work: {error}.") from error
    return config


def _run_lab(cell: Cell, inputs: LabInputs, ctx: RunContext, output: CellOutput) -> None:
    from .lab import check_experiment_budget, preflight, run_experiment

    config = lab_config(inputs)
    plan = preflight(config)
    check_experiment_budget(plan, ctx.spent_usd(), ctx.budget_usd, ctx.budget_words)
    records = []
    partial = PartialOutputs(cell, output, ctx, total=sum(len(e.usages) for e in plan.estimates))

    def recorded(record) -> None:
        records.append(record)
        if ctx.on_event:
            ctx.on_event(cell, record)
        partial.offer(len(records), lambda out: _fill_lab_requests(out, records))

    result = run_experiment(config, ctx.client, on_record=recorded, cancel=ctx.cancel)
    output.lab = result.to_dict()
    _fill_lab_requests(output, result.records)
    failed = [r for r in result.records if r.status == "failed"]
    if failed:
        raise NotebookError(f"{len(failed)} of {len(result.records)} lab requests failed; the first: {failed[0].error}")


def _fill_lab_requests(output: CellOutput, records) -> None:
    output.requests = [RequestFigures(f"{r.arm} #{r.request}", r.answered_by or r.model, r.usage, float(r.cost_usd),
                                      float(r.baseline_usd), r.ttft_ms, r.latency_ms, r.error)
                       for r in records]


def _run_batch(cell: Cell, inputs: BatchInputs, ctx: RunContext, output: CellOutput) -> None:
    from .notebook_batch import run_batch_cell

    run_batch_cell(cell, inputs, ctx, output)


RUNNERS = {"prompt": _run_prompt, "compare": _run_compare, "lab": _run_lab, "batch": _run_batch}


def run_cell(notebook: Notebook, cell_id: str, ctx: RunContext) -> CellOutput:
    """Runs one cell and stores its output on it (an error is an output too: nothing raises)."""
    cell = notebook.cell(cell_id)
    output = CellOutput(notebook.fingerprint(cell), "ok", ran_at=time.time(), router="local" if ctx.local else "orq")
    started = ctx.clock()
    try:
        if cell.kind == "variables":
            parse_variables(cell.inputs.text)
        elif cell.runnable:
            inputs = resolved_inputs(cell, notebook.variables_before(cell.id))
            RUNNERS[cell.kind](cell, inputs, ctx, output)
    except OrqError as error:
        output.status, output.error = "error", describe(error)
    except ValueError as error:  # a catalog or config check: its message is already a sentence
        output.status, output.error = "error", str(error)
    except Exception as error:  # noqa: BLE001 - one cell's failure is shown in that cell, never a traceback
        output.status, output.error = "error", describe(error)
    output.elapsed_s = ctx.clock() - started
    if cell.runnable:
        cell.output = output
    return output


@dataclass
class Progress:
    done: int
    total: int
    cell: Cell
    output: CellOutput | None = None


def run_all(notebook: Notebook, ctx: RunContext, *, only_stale: bool = False,
            on_cell_done: Callable[[Cell], None] | None = None) -> Iterator[Progress]:
    """Runs every runnable cell top to bottom (or only the stale ones), yielding progress before
    and after each; stops at the first cell that ends in an error (its error stays on it). Variables
    cells are checked on the way, so a broken one stops the run where it is."""
    plan = [c for c in notebook.cells
            if c.kind == "variables" or (c.runnable and (not only_stale or notebook.is_stale(c)))]
    total = sum(c.runnable for c in plan)
    done = 0
    for cell in plan:
        if cell.runnable:
            yield Progress(done, total, cell)
        output = run_cell(notebook, cell.id, ctx)
        if cell.runnable:
            done += 1
            if on_cell_done:
                on_cell_done(cell)
            yield Progress(done, total, cell, output)
        if not output.ok:
            if not cell.runnable:
                yield Progress(done, total, cell, output)
            return


def first_error(notebook: Notebook) -> tuple[int, Cell] | None:
    for number, cell in enumerate(notebook.cells, start=1):
        if cell.output is not None and not cell.output.ok:
            return number, cell
    return None


# --------------------------------------------------------------------------------------------
# The built-in demo
# --------------------------------------------------------------------------------------------

DEMO_TITLE = "What prompt caching saves"


def demo_notebook() -> Notebook:
    """"What prompt caching saves": explanation, variables, a prompt sent twice (write, then read),
    a comparison, a caching experiment and a batch."""
    from .lab_presets import filler_text

    guide = ("You are a guide to the novel below. Answer briefly and quote it where you can.\n\n"
             + filler_text(1_600, seed=13))
    notebook = Notebook(DEMO_TITLE)
    notebook.add("markdown", text=(
        "# What prompt caching saves\n\n"
        "Claude can keep the start of a prompt (the **prefix**) in a cache. The first request that marks it "
        "*writes* the cache at 1.25x the input price; every request within the TTL that starts the same way "
        "*reads* it at 0.1x, and answers sooner.\n\n"
        "Change `question` below and the cells that use it go stale: **Run stale** re-runs just those."))
    notebook.add("variables", text="question = Who keeps the lighthouse?\nlength = two sentences")
    notebook.add("markdown", text="## One prompt, sent twice\nThe system prompt (a ~1,600-token book) carries a "
                                  "cache breakpoint. The first run writes it; the second reads it.")
    for _ in range(2):
        notebook.add("prompt", system=guide, user="{{question}} Answer in {{length}}.", cache_system=True,
                     max_tokens=300)
    notebook.add("markdown", text="## Two models, one prompt\nThe same question to Sonnet 4.5 and Haiku 4.5, "
                                  "side by side: time and money next to each other.")
    notebook.add("compare", targets=(DEFAULT_MODEL, HAIKU), user="{{question}} Answer in {{length}}.",
                 max_tokens=300)
    notebook.add("markdown", text="## A caching experiment\nFour questions about a 5,000-token book, with and "
                                  "without a cache breakpoint. The charts show what each request was billed for.")
    notebook.add("lab", preset="book", requests=4, context_tokens=5_000, max_tokens=200)
    notebook.add("markdown", text="## A small batch\nOne template over a small table of cities, with the same "
                                  "cached book as the prompts above: it is still in the cache, so every row reads "
                                  "it instead of writing it again.")
    notebook.add("batch", template="{{question}} Answer in {{length}}, as a guide from {{city}} would.",
                 table="city\nLisbon\nBergen\nValparaíso", system=guide, cache_system=True, max_tokens=200,
                 concurrency=1)
    notebook.add("markdown", text="## What to take away\nThe totals at the top add up every request: the "
                                  "*saved by caching* figure is what the same tokens would have cost uncached, "
                                  "minus what they cost.")
    return notebook


def describe_cell(number: int, cell: Cell) -> str:
    return f"cell {number} ({cell.label})"


__all__ = ["Notebook", "Cell", "CellOutput", "RequestFigures", "Answer", "Totals", "RunContext", "Progress",
           "NotebookError", "KINDS", "KIND_LABELS", "INPUTS", "run_cell", "run_all", "demo_notebook",
           "parse_variables", "substitute", "resolved_inputs", "prompt_payload", "lab_config", "first_error"]
