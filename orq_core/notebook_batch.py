"""The Notebook's Batch cell, on the batch core (``orq_core.batch``): a template over a small table
pasted or uploaded into the cell, across 1-4 targets. Its .ipynb code and report block live here too."""

from __future__ import annotations

import json
from functools import lru_cache

from .cost import format_usd

MAX_NOTEBOOK_ROWS = 500
"""A notebook's batch is a small table; bigger datasets belong on the Batch page (resumable, saved per row)."""


def _filename(table: str) -> str:
    return "table.jsonl" if table.lstrip().startswith("{") else "table.csv"


@lru_cache(maxsize=64)
def table_columns(table: str) -> tuple[str, ...]:
    """The table's column names (CSV header or JSON Lines keys); [] when it does not parse yet."""
    from .batch import BatchInputError, load_dataset

    if not table.strip():
        return ()
    try:
        return tuple(load_dataset(table, _filename(table)).columns)
    except BatchInputError:
        return ()


def build_batch(inputs):
    """A Batch (batch core) for the cell's resolved inputs; BatchInputError with a sentence when it cannot run."""
    from .batch import Batch, BatchInputError, BatchSpec, check_spec, load_dataset

    if not inputs.table.strip():
        raise BatchInputError("The Batch cell has no table: paste a CSV with a header row (or JSON Lines), "
                              "or upload one.")
    dataset = load_dataset(inputs.table, _filename(inputs.table))
    if len(dataset.rows) > MAX_NOTEBOOK_ROWS:
        raise BatchInputError(f"The table has {len(dataset.rows):,} rows; a notebook's Batch cell takes at most "
                              f"{MAX_NOTEBOOK_ROWS}. Use the Batch page for big datasets.")
    spec = BatchSpec(template=inputs.template, targets=tuple(inputs.targets), system=inputs.system,
                     cache_system=inputs.cache_system, max_tokens=inputs.max_tokens, concurrency=inputs.concurrency)
    check_spec(spec, dataset.columns)
    return Batch.new(spec, list(dataset.rows))


def run_batch_cell(cell, inputs, ctx, output) -> None:
    from .batch import check_batch_budget, run_batch
    from .notebook import NotebookError, PartialOutputs

    batch = build_batch(inputs)
    check_batch_budget(batch, ctx.spent_usd(), ctx.budget_usd, ctx.budget_words)
    partial = PartialOutputs(cell, output, ctx, total=batch.total)

    def recorded(record, progress) -> None:
        if ctx.on_event:
            ctx.on_event(cell, record)
        partial.offer(progress.done, lambda out: fill_batch_output(out, batch))

    stop = ctx.cancel.is_set if ctx.cancel is not None else None
    run_batch(ctx.client, batch, on_record=recorded, should_stop=stop, page="notebook")
    records = fill_batch_output(output, batch)
    failed = [r for r in records if not r.ok]
    if failed:
        raise NotebookError(f"{len(failed)} of {len(records)} batch requests failed; the first (row {failed[0].row}, "
                            f"{failed[0].target}): {failed[0].error}")


def fill_batch_output(output, batch) -> list:
    """Puts the batch's records so far in the cell's output; returns them in order."""
    from .notebook import RequestFigures

    records = batch.ordered_records()
    output.batch = json.loads(batch.to_json())  # plain JSON types (no tuples): equal to itself reloaded
    output.table = [s.to_dict() for s in batch.summary()]
    output.requests = [RequestFigures(f"row {r.row}", r.answered_by or r.target, r.usage, float(r.cost.total),
                                      float(r.cost.no_cache_total), r.ttft_ms, r.latency_ms, r.error)
                       for r in records]
    output.notes = [f"Row {r.row} · {r.target}: {r.why}" for r in records if r.why]
    return records


def batch_markdown(summary: list[dict], records: list[dict]) -> str:
    """The per-target summary and each row's answer as Markdown tables (``TargetSummary.to_dict()``,
    ``BatchRecord.flat()``), the same in the live notebook and in the recorded outputs."""
    lines = ["| target | rows ok | failed | cost | without caching | cache read | cache write | cost per 1,000 rows |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in summary:
        per_1000 = "–" if s["cost_per_1000_rows_usd"] is None else format_usd(s["cost_per_1000_rows_usd"])
        lines.append(f"| {s['target']} | {s['ok']} | {s['failed']} | {format_usd(s['cost_usd'])} | "
                     f"{format_usd(s['no_cache_cost_usd'])} | {s['cache_read_tokens']:,} | "
                     f"{s['cache_write_tokens']:,} | {per_1000} |")
    lines += ["", "| row | target | answer | cache read | cache write | cost |", "|---:|---|---|---:|---:|---:|"]
    for r in records:
        answer = " ".join(str(r["output"] or r["error"] or "").split())[:90].replace("|", "\\|")
        lines.append(f"| {r['row']} | {r['target']} | {answer} | {r['cache_read_tokens']:,} | "
                     f"{r['cache_write_tokens']:,} | {format_usd(float(r['cost_usd']))} |")
    return "\n".join(lines)


def batch_code(cell, notebook) -> str:
    from .codegen import _python_literal
    from .notebook import resolved_inputs

    inputs = resolved_inputs(cell, notebook.variables_before(cell.id), keep_unknown=True)
    spec = build_batch(inputs).spec
    return (
        "# Batch cell: replays the batch (needs orq_core, see the first cell)\n"
        "from orq_core.batch import Batch, BatchSpec, load_dataset, pool_size, run_batch\n"
        "from orq_core.client import OrqClient\n"
        "from orq_core.notebook_batch import batch_markdown\n\n"
        f"TABLE = {inputs.table!r}\n"
        f"spec = BatchSpec.from_dict({_python_literal(spec.to_dict())})\n"
        f"batch = Batch.new(spec, list(load_dataset(TABLE, {_filename(inputs.table)!r}).rows))\n"
        'with OrqClient(BASE_URL, os.environ["ORQ_API_KEY"], page="notebook",\n'
        "               max_connections=pool_size(spec)) as batch_client:\n"
        "    run_batch(batch_client, batch)\n"
        "display(Markdown(batch_markdown([s.to_dict() for s in batch.summary()],\n"
        "                                [r.flat() for r in batch.ordered_records()])))\n")


def _batch_of(output):
    from .batch import Batch

    return Batch.from_dict(output.batch) if output.batch else None


def batch_rows(output) -> list[dict]:
    """Each (row, target) result as a flat dict (``BatchRecord.flat()``)."""
    batch = _batch_of(output)
    return [] if batch is None else [r.flat() for r in batch.ordered_records()]


def batch_outputs(output) -> list[dict]:
    from .notebook_export import _table_output

    batch = _batch_of(output)
    if batch is None:
        return []
    return [_table_output(batch_markdown(output.table, [r.flat() for r in batch.ordered_records()]))]


def batch_figures(output) -> list:
    from .batch import cost_figure, latency_figure

    batch = _batch_of(output)
    return [] if batch is None or not batch.records else [cost_figure(batch), latency_figure(batch)]


def batch_report(output) -> str:
    from .notebook_report import _figure, render_markdown

    batch = _batch_of(output)
    if batch is None:
        return ""
    return (render_markdown(batch_markdown(output.table, [r.flat() for r in batch.ordered_records()]))
            + "".join(_figure(f) for f in batch_figures(output)))
