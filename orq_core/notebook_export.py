"""A Notebook as a Jupyter notebook (nbformat 4) and back.

Request cells become Python that sends the same request with the official ``openai`` SDK, reading
``ORQ_BASE_URL`` and ``ORQ_API_KEY`` from the environment (the key is never written anywhere).
Lab and Batch cells replay through ``orq_core`` (the intro cell says so). The outputs recorded in
the playground are embedded as each cell's outputs, and every playground cell keeps its own
definition in the cell's metadata, so an exported notebook imports back (a round trip).
"""

from __future__ import annotations

import json

from .codegen import _python_literal
from .connection import DEFAULT_BASE_URL
from .cost import format_usd
from .notebook import (FORMAT, KIND_LABELS, Cell, CellOutput, Notebook, NotebookError, lab_config, prompt_payload,
                       resolved_inputs)
from .usage import Usage

META = "orq_playground"
MAX_IMPORT_BYTES = 20 * 1024 * 1024

SDK_KEYS = ("model", "messages", "max_tokens", "temperature", "top_p", "stop", "stream", "stream_options",
            "tools", "tool_choice")
"""Keys the openai SDK takes as arguments; the rest (thinking, top_k, orq) go in ``extra_body``."""

SETUP = f'''\
import os

from IPython.display import Markdown, display
from openai import OpenAI

BASE_URL = os.environ.get("ORQ_BASE_URL", "{DEFAULT_BASE_URL}")
client = OpenAI(base_url=BASE_URL, api_key=os.environ["ORQ_API_KEY"])


def usage_table(usage) -> str:
    """Orq's usage object as a Markdown table (uncached input = prompt - cache read - cache write)."""
    usage = usage if isinstance(usage, dict) else usage.model_dump()
    details = usage.get("prompt_tokens_details") or {{}}
    read = details.get("cached_tokens") or 0
    write = details.get("cache_creation_tokens") or details.get("cache_write_tokens") or 0
    prompt = usage.get("prompt_tokens") or 0
    uncached = prompt - read - write if prompt >= read + write else prompt
    reasoning = (usage.get("completion_tokens_details") or {{}}).get("reasoning_tokens") or 0
    rows = [("uncached input", uncached), ("cache read", read), ("cache write", write),
            ("output", usage.get("completion_tokens") or 0), ("reasoning (in output)", reasoning)]
    return "| tokens | count |\\n|---|---:|\\n" + "\\n".join(f"| {{name}} | {{count:,}} |" for name, count in rows)


def show(stream) -> str:
    """Prints a streamed answer as it arrives, then its usage as a table; returns the text."""
    text, usage = "", None
    for chunk in stream:
        for choice in chunk.choices:
            piece = choice.delta.content or ""
            text += piece
            print(piece, end="", flush=True)
        usage = chunk.usage or usage
    print()
    if usage is not None:
        display(Markdown(usage_table(usage)))
    return text


def send(request: dict):
    """The openai SDK call for a request body; Claude's and Orq's keys that the SDK does not know
    (thinking, top_k, orq) go in extra_body, unchanged."""
    known = {{k: v for k, v in request.items() if k in {SDK_KEYS!r}}}
    extra = {{k: v for k, v in request.items() if k not in known}}
    return client.chat.completions.create(**known, extra_body=extra or None)


print("Requests go to ORQ_BASE_URL (default {DEFAULT_BASE_URL}).")
'''
SETUP_OUTPUT = f"Requests go to ORQ_BASE_URL (default {DEFAULT_BASE_URL}).\n"


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------

def _router_sentence(notebook: Notebook) -> str:
    routers = notebook.routers()
    if routers == {"orq"}:
        return "The recorded answers came from **Orq's AI Router**."
    if routers == {"local"}:
        return ("The recorded answers came from the playground's **local router**: their text is synthetic, "
                "their token counts, caching and costs follow Claude's published rules.")
    if routers:
        return ("Some recorded answers came from Orq's AI Router and some from the playground's local router "
                "(synthetic text); each cell's output says which.")
    return "Nothing has been run yet: the cells have no recorded outputs."


def _intro(notebook: Notebook) -> str:
    needs_core = any(c.kind in ("lab", "batch") for c in notebook.cells)
    lines = [f"# {notebook.title}", "",
             "Exported from the Claude playground on Orq's AI Router. " + _router_sentence(notebook), "",
             "To run it: `pip install openai`, set `ORQ_API_KEY` (and `ORQ_BASE_URL` for another router), "
             "then run all cells. The key is read from the environment and never written here."]
    if needs_core:
        lines += ["", "**Lab and Batch cells need `orq_core`**, the playground's own package: start Jupyter in "
                      "the playground's folder (or add that folder to `sys.path`)."]
    return "\n".join(lines)


def _stream(text: str) -> dict:
    import nbformat.v4 as v4

    return v4.new_output("stream", name="stdout", text=text)


def usage_markdown(usage: Usage, cost_usd: float | None = None) -> str:
    rows = [("uncached input", usage.input_tokens), ("cache read", usage.cache_read_tokens),
            ("cache write", usage.cache_write_tokens), ("output", usage.output_tokens),
            ("reasoning (in output)", usage.reasoning_tokens)]
    table = "| tokens | count |\n|---|---:|\n" + "\n".join(f"| {name} | {count:,} |" for name, count in rows)
    if cost_usd is not None:
        table += f"\n| cost (playground prices) | {format_usd(cost_usd)} |"
    return table


def _table_output(markdown: str) -> dict:
    import nbformat.v4 as v4

    return v4.new_output("display_data", data={"text/markdown": markdown, "text/plain": markdown})


def _error_output(message: str) -> dict:
    return _stream(f"[recorded error] {message}\n")


def _answer_outputs(output: CellOutput, headed: bool) -> list[dict]:
    outputs = []
    for answer, request in zip(output.answers, output.requests + [None] * len(output.answers)):
        head = f"### {answer.label}\n" if headed else ""
        outputs.append(_stream(f"{head}{answer.text}\n"))
        if request is not None and not request.error:
            outputs.append(_table_output(usage_markdown(request.usage, request.cost_usd)))
        if answer.error:
            outputs.append(_error_output(answer.error))
    return outputs


def _sdk_call(payload: dict, indent: str = "") -> str:
    args = {k: v for k, v in payload.items() if k in SDK_KEYS}
    extra = {k: v for k, v in payload.items() if k not in SDK_KEYS}
    lines = [f"{indent}stream = client.chat.completions.create("]
    for name, value in args.items():
        lines.append(f"{indent}    {name}={_python_literal(value, 1)},")
    if extra:  # Claude's and Orq's keys the SDK does not know: sent as they are
        lines.append(f"{indent}    extra_body={_python_literal(extra, 1)},")
    lines.append(f"{indent})")
    return "\n".join(lines)


def _prompt_code(cell: Cell, notebook: Notebook) -> str:
    inputs = resolved_inputs(cell, notebook.variables_before(cell.id), keep_unknown=True)
    payload = prompt_payload(inputs)
    return f"# {cell.label} cell: the same request through the openai SDK\n{_sdk_call(payload)}\nanswer = show(stream)\n"


def _compare_code(cell: Cell, notebook: Notebook) -> str:
    from .compare import CompareTarget, Comparison

    inputs = resolved_inputs(cell, notebook.variables_before(cell.id), keep_unknown=True)
    comparison = Comparison([CompareTarget(slug, max_tokens=inputs.max_tokens) for slug in inputs.targets],
                            inputs.system, inputs.cache_system, inputs.cache_ttl)
    payloads = [comparison.payload_for(column, inputs.user) for column in comparison.columns]
    shared = {k: v for k, v in payloads[0].items() if k != "model"}
    return ("# Compare cell: one prompt to each target in turn (the playground sends them at once)\n"
            f"request = {_python_literal(shared)}\n"
            f"for model in {_python_literal(list(inputs.targets))}:\n"
            '    print(f"### {model}")\n'
            "    show(send({**request, \"model\": model}))\n")


def _lab_code(cell: Cell, notebook: Notebook) -> str:
    inputs = resolved_inputs(cell, notebook.variables_before(cell.id), keep_unknown=True)
    config = lab_config(inputs).to_dict()
    return (
        "# Lab cell: replays the Caching Lab experiment (needs orq_core, see the first cell)\n"
        "from orq_core.client import OrqClient\n"
        "from orq_core.lab import ExperimentConfig, run_experiment\n"
        "from orq_core.notebook_export import lab_summary_markdown\n\n"
        f"config = ExperimentConfig.from_dict({_python_literal(config)})\n"
        'with OrqClient(BASE_URL, os.environ["ORQ_API_KEY"], page="notebook") as lab_client:\n'
        "    result = run_experiment(config, lab_client)\n"
        "display(Markdown(lab_summary_markdown(result)))\n")


def _batch_code(cell: Cell, notebook: Notebook) -> str:
    from .notebook_batch import batch_code

    return batch_code(cell, notebook)


def lab_summary_markdown(result) -> str:
    """The per-arm figures of an ExperimentResult as a Markdown table."""
    lines = ["| model | arm | requests | cost | without caching | saved | cache read | cache write | median TTFT |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for model, arms in result.summary().items():
        for arm, s in arms.items():
            ttft = "–" if s["median_ttft_ms"] is None else f"{s['median_ttft_ms']:,.0f} ms"
            lines.append(f"| {model} | {arm} | {s['requests']} | {format_usd(s['total_cost_usd'])} | "
                         f"{format_usd(s['baseline_cost_usd'])} | {format_usd(s['saved_usd'])} | "
                         f"{s['cache_read_tokens']:,} | {s['cache_write_tokens']:,} | {ttft} |")
    return "\n".join(lines)


def _lab_outputs(output: CellOutput) -> list[dict]:
    from .lab import ExperimentResult

    if not output.lab:
        return []
    return [_table_output(lab_summary_markdown(ExperimentResult.from_dict(output.lab)))]


CODE = {"prompt": _prompt_code, "compare": _compare_code, "lab": _lab_code, "batch": _batch_code}


def _code_outputs(cell: Cell) -> list[dict]:
    output = cell.output
    if output is None:
        return []
    if cell.kind == "lab":
        outputs = _lab_outputs(output)
    elif cell.kind == "batch":
        from .notebook_batch import batch_outputs

        outputs = batch_outputs(output)
    else:
        outputs = _answer_outputs(output, headed=cell.kind == "compare")
    if output.error and not any(a.error for a in output.answers):
        outputs.append(_error_output(output.error))
    return outputs


def _variables_code(cell: Cell) -> tuple[str, str]:
    from .notebook import parse_variables

    try:
        variables = parse_variables(cell.inputs.text)
    except NotebookError:
        variables = {}
    code = ("# Variables cell: its values are already written into the cells below\n"
            f"variables = {_python_literal(variables)}\n"
            "for name, value in variables.items():\n"
            '    print(f"{name} = {value}")\n')
    return code, "".join(f"{name} = {value}\n" for name, value in variables.items())


def _meta(cell: Cell) -> dict:
    return {META: {"cell": cell.to_dict()}}


def to_ipynb(notebook: Notebook):
    """The notebook as an ``nbformat.NotebookNode`` (version 4), validated."""
    import nbformat
    import nbformat.v4 as v4

    has_run = any(c.output is not None for c in notebook.cells)  # else no cell shows an output, as in Jupyter
    cells = [v4.new_markdown_cell(_intro(notebook), metadata={META: {"generated": "intro"}})]
    if any(c.kind != "markdown" for c in notebook.cells):
        cells.append(v4.new_code_cell(SETUP, metadata={META: {"generated": "setup"}}, execution_count=None,
                                      outputs=[_stream(SETUP_OUTPUT)] if has_run else []))
    for cell in notebook.cells:
        if cell.kind == "markdown":
            cells.append(v4.new_markdown_cell(cell.inputs.text, metadata=_meta(cell)))
        elif cell.kind == "variables":
            code, printed = _variables_code(cell)
            cells.append(v4.new_code_cell(code, metadata=_meta(cell), outputs=[_stream(printed)] if printed and has_run else []))
        else:
            try:
                code = CODE[cell.kind](cell, notebook)
            except (NotebookError, ValueError) as error:  # a cell that cannot be built says why
                code = f"# {cell.label} cell: not exported as code: {error}\nprint({str(error)!r})\n"
            cells.append(v4.new_code_cell(code, metadata=_meta(cell), outputs=_code_outputs(cell)))
    nb = v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
        META: {"format": FORMAT, "id": notebook.id, "title": notebook.title, "created": notebook.created},
    })
    for number, cell in enumerate(nb.cells, start=1):
        cell["id"] = f"cell-{number}"
        if cell.cell_type == "code":
            cell.execution_count = number if cell.outputs else None
            for output in cell.outputs:
                if output.output_type == "execute_result":
                    output.execution_count = number
    nbformat.validate(nb)
    return nb


def export_ipynb(notebook: Notebook) -> str:
    import nbformat

    return nbformat.writes(to_ipynb(notebook))


# --------------------------------------------------------------------------------------------
# Import
# --------------------------------------------------------------------------------------------

NOT_OURS = ("This notebook was not exported by the playground (it has no playground cells), so it cannot be "
            "opened here. Export a notebook from the Notebook page, or build this one there.")


def import_ipynb(data: bytes | str) -> Notebook:
    """A Notebook from an .ipynb the playground exported; NotebookError with a sentence otherwise.
    Markdown cells take their text from the .ipynb (edits made in Jupyter are kept)."""
    import nbformat

    raw = data.encode("utf-8") if isinstance(data, str) else data
    if len(raw) > MAX_IMPORT_BYTES:
        raise NotebookError(f"The file is {len(raw) / 1e6:.1f} MB; a notebook to import may be at most "
                            f"{MAX_IMPORT_BYTES // (1024 * 1024)} MB.")
    try:
        text = raw.decode("utf-8")
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
    except UnicodeDecodeError as error:
        raise NotebookError("The file is not text (UTF-8), so it is not an .ipynb notebook.") from error
    except RecursionError as error:
        raise NotebookError("The file nests too deeply to be a notebook.") from error
    except Exception as error:  # nbformat raises NotJSONError, ValidationError, KeyError, ...
        raise NotebookError(f"The file is not a valid Jupyter notebook ({type(error).__name__}): "
                            "export it again, or choose the .ipynb file itself.") from error
    meta = nb.metadata.get(META)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise NotebookError(NOT_OURS)
    cells = []
    for number, nb_cell in enumerate(nb.cells, start=1):
        saved = (nb_cell.metadata.get(META) or {}).get("cell")
        if saved is None:
            continue
        cell = Cell.from_dict(_plain(saved), f"Cell {number} of the file")
        if cell.kind == "markdown" and nb_cell.cell_type == "markdown":
            cell.inputs.text = nb_cell.source
        cells.append(cell)
    if not cells:
        raise NotebookError(NOT_OURS)
    return Notebook.from_dict({"format": FORMAT, "id": meta.get("id"), "title": meta.get("title"),
                               "created": meta.get("created"), "cells": [c.to_dict() for c in cells]})


def _plain(node):
    """NotebookNode (a dict subclass) to plain JSON types."""
    return json.loads(json.dumps(node))


__all__ = ["to_ipynb", "export_ipynb", "import_ipynb", "lab_summary_markdown", "usage_markdown", "KIND_LABELS"]
