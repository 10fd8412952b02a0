"""The Batch cell of the Notebook, on the batch core (orq_core/batch.py) once it is there."""

from __future__ import annotations

import csv
import io


def table_columns(text: str) -> list[str]:
    """The header of a pasted CSV table (first line); [] when there is none."""
    first = text.strip().splitlines()[:1]
    if not first:
        return []
    try:
        return [c.strip() for c in next(csv.reader(io.StringIO(first[0]))) if c.strip()]
    except csv.Error:
        return []


def run_batch_cell(cell, inputs, ctx, output) -> None:
    from .notebook import NotebookError

    raise NotebookError("Batch cells need the batch core, which this build does not have yet.")


def batch_code(cell, notebook) -> str:
    return "# Batch cell: not exported as code in this build\nprint('Batch cells are not exported yet.')\n"


def batch_outputs(output) -> list[dict]:
    return []


def batch_report(output) -> str:
    return ""
