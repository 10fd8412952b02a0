"""The Notebook page's cells: each kind's input widgets and its recorded output, drawn with
Streamlit. Model output is Markdown with HTML off. The notebook itself is ``orq_core.notebook``."""

from __future__ import annotations

import streamlit as st

from orq_core.catalog import catalog
from orq_core.compare import MAX_COLUMNS
from orq_core.cost import format_usd
from orq_core.lab import ARMS, MAX_CONTEXT_TOKENS, MAX_REQUESTS, MIN_CONTEXT_TOKENS
from orq_core.lab_presets import PRESETS
from orq_core.notebook import (BatchInputs, Cell, CompareInputs, LabInputs, MarkdownInputs, Notebook, NotebookError,
                               PromptInputs, RequestFigures, VariablesInputs, parse_variables, substitute)
from playground_ui.render import cache_doctor_line, fmt_ms, usage_summary

TARGETS = {t.slug: t for t in catalog().targets()}
TTLS = ["5m", "1h"]


def wkey(cell: Cell, name: str) -> str:
    return f"nb_{cell.id}_{name}"


def _init(cell: Cell, name: str, value) -> str:
    """The widget key for ``name``, seeded from the cell's saved inputs the first time it is drawn."""
    key = wkey(cell, name)
    if key not in st.session_state:
        st.session_state[key] = list(value) if isinstance(value, tuple) else value
    return key


def target_label(slug: str) -> str:
    return TARGETS[slug].label if slug in TARGETS else slug


# --- inputs ------------------------------------------------------------------------------------

def markdown_inputs(cell: Cell) -> MarkdownInputs:
    text = st.text_area("Markdown", key=_init(cell, "text", cell.inputs.text), height=120,
                        help="Rendered below with HTML off. {{name}} takes a variable's value.")
    return MarkdownInputs(text)


def variables_inputs(cell: Cell) -> VariablesInputs:
    text = st.text_area("Variables: one `name = value` per line", key=_init(cell, "text", cell.inputs.text),
                        height=100, help="Later cells use them as {{name}}; a cell that uses one goes stale "
                                         "when its value changes.")
    return VariablesInputs(text)


def _system_and_user(cell: Cell, inputs, user_label: str) -> tuple[str, str]:
    system = st.text_area("System prompt", key=_init(cell, "system", inputs.system), height=80)
    user = st.text_area(user_label, key=_init(cell, "user", inputs.user), height=80)
    return system, user


def prompt_inputs(cell: Cell) -> PromptInputs:
    i: PromptInputs = cell.inputs
    model = st.selectbox("Model", list(TARGETS), format_func=target_label, key=_init(cell, "model", i.model))
    system, user = _system_and_user(cell, i, "User message")
    c = st.columns(4)
    max_tokens = c[0].number_input("max_tokens", 1, TARGETS[model].model.max_output,
                                   key=_init(cell, "max_tokens", min(i.max_tokens, TARGETS[model].model.max_output)))
    thinking = c[1].number_input("Thinking budget (0 = off)", 0, step=512,
                                 key=_init(cell, "thinking", i.thinking_budget or 0),
                                 disabled=not TARGETS[model].model.thinking)
    temperature = c[2].number_input("temperature (empty = default)", 0.0, 1.0, step=0.1,
                                    key=_init(cell, "temperature", i.temperature), disabled=bool(thinking))
    ttl = c[3].segmented_control("Cache TTL", TTLS, key=_init(cell, "ttl", i.cache_ttl)) or "5m"
    t = st.columns(2)
    cache_system = t[0].toggle("Cache the system prompt", key=_init(cell, "cache_system", i.cache_system))
    cache_user = t[1].toggle("Cache the user message", key=_init(cell, "cache_user", i.cache_user))
    thinking = int(thinking) if thinking and TARGETS[model].model.thinking else None
    return PromptInputs(system, user, model, int(max_tokens), None if thinking else temperature, thinking,
                        cache_system, cache_user, ttl)


def compare_inputs(cell: Cell) -> CompareInputs:
    i: CompareInputs = cell.inputs
    targets = st.multiselect("Targets (2 to 4)", list(TARGETS), format_func=target_label, max_selections=MAX_COLUMNS,
                             key=_init(cell, "targets", [t for t in i.targets if t in TARGETS]))
    system, user = _system_and_user(cell, i, "Prompt")
    c = st.columns(3)
    max_tokens = c[0].number_input("max_tokens", 1, 64_000, key=_init(cell, "max_tokens", i.max_tokens))
    cache_system = c[1].toggle("Cache the system prompt", key=_init(cell, "cache_system", i.cache_system))
    ttl = c[2].segmented_control("Cache TTL", TTLS, key=_init(cell, "ttl", i.cache_ttl)) or "5m"
    return CompareInputs(tuple(targets), system, user, int(max_tokens), cache_system, ttl)


def lab_inputs(cell: Cell) -> LabInputs:
    i: LabInputs = cell.inputs
    c = st.columns([1, 2, 1])
    preset = c[0].selectbox("Preset", PRESETS, key=_init(cell, "preset", i.preset))
    models = c[1].multiselect("Models", list(TARGETS), format_func=target_label,
                              key=_init(cell, "models", [m for m in i.models if m in TARGETS]))
    arms = c[2].multiselect("Arms", ARMS, key=_init(cell, "arms", list(i.arms)))
    d = st.columns(4)
    requests = d[0].number_input("Requests per arm", 1, MAX_REQUESTS, key=_init(cell, "requests", i.requests))
    context = d[1].number_input("Context (tokens)", MIN_CONTEXT_TOKENS, MAX_CONTEXT_TOKENS, step=1_000,
                                key=_init(cell, "context_tokens", i.context_tokens))
    ttl = d[2].segmented_control("TTL", TTLS, key=_init(cell, "ttl", i.ttl)) or "5m"
    max_tokens = d[3].number_input("max_tokens", 1, 8_192, key=_init(cell, "max_tokens", i.max_tokens))
    custom = i.custom_context
    if preset == "custom":
        custom = st.text_area("Context text", key=_init(cell, "custom_context", i.custom_context), height=100)
    return LabInputs(preset, tuple(models), int(requests), int(context), tuple(arms), ttl, int(max_tokens),
                     i.questions, custom)


def batch_inputs(cell: Cell) -> BatchInputs:
    i: BatchInputs = cell.inputs
    template = st.text_area("Template (the user message; {{column}} takes each row's value)",
                            key=_init(cell, "template", i.template), height=80)
    table_key = _init(cell, "table", i.table)
    upload = st.file_uploader("Or upload a table (CSV or JSON Lines)", type=["csv", "jsonl", "txt"],
                              key=wkey(cell, "upload"))
    if upload is not None and st.session_state.get(wkey(cell, "uploaded")) != upload.file_id:
        st.session_state[wkey(cell, "uploaded")] = upload.file_id
        try:
            st.session_state[table_key] = upload.getvalue().decode("utf-8")
        except UnicodeDecodeError:
            st.error("That file is not UTF-8 text: save it as CSV (UTF-8) or JSON Lines and upload it again.")
    table = st.text_area("Table (CSV with a header row, or JSON Lines)", key=table_key, height=100)
    targets = st.multiselect("Targets (1 to 4)", list(TARGETS), format_func=target_label, max_selections=4,
                             key=_init(cell, "targets", [t for t in i.targets if t in TARGETS]))
    system = st.text_area("System prompt", key=_init(cell, "system", i.system), height=68)
    c = st.columns(3)
    cache_system = c[0].toggle("Cache the system prompt", key=_init(cell, "cache_system", i.cache_system))
    max_tokens = c[1].number_input("max_tokens", 1, 64_000, key=_init(cell, "max_tokens", i.max_tokens))
    concurrency = c[2].number_input("Concurrency", 1, 16, key=_init(cell, "concurrency", i.concurrency))
    return BatchInputs(template, table, tuple(targets), system, cache_system, int(max_tokens), int(concurrency))


INPUT_WIDGETS = {"markdown": markdown_inputs, "variables": variables_inputs, "prompt": prompt_inputs,
                 "compare": compare_inputs, "lab": lab_inputs, "batch": batch_inputs}


# --- outputs -----------------------------------------------------------------------------------

def request_line(request: RequestFigures) -> str:
    if request.error and not request.usage.total_tokens:
        return f"`{request.label}` · failed"
    return (f"{usage_summary(request.usage)} tokens · **{format_usd(request.cost_usd)}** "
            f"(without caching {format_usd(request.no_cache_usd)}) · TTFT {fmt_ms(request.ttft_ms)} · "
            f"total {fmt_ms(request.latency_ms)} · answered by `{request.model}`")


def show_markdown_cell(cell: Cell, notebook: Notebook) -> None:
    text = substitute(cell.inputs.text, notebook.variables_before(cell.id), keep_unknown=True)
    st.markdown(text or "_(empty Markdown cell)_")


def show_variables(cell: Cell) -> None:
    try:
        variables = parse_variables(cell.inputs.text)
    except NotebookError as error:
        st.error(str(error), icon=":material/error:")
        return
    if variables:
        st.caption(" · ".join(f"`{name}` = {value}" for name, value in variables.items()))


def _answer(answer) -> None:
    if answer.reasoning:
        with st.expander("Thinking", icon=":material/psychology:"):
            st.markdown(answer.reasoning)
    st.markdown(answer.text or "_(no text)_")
    if answer.error:
        st.error(answer.error, icon=":material/error:")


def show_output(cell: Cell) -> None:
    """The output recorded at the cell's last run."""
    output = cell.output
    if output is None:
        st.caption("Not run yet.")
        return
    if cell.kind == "prompt":
        for answer in output.answers:
            _answer(answer)
    elif cell.kind == "compare":
        columns = st.columns(max(len(output.answers), 1), border=True)
        for column, answer, request in zip(columns, output.answers, output.requests + [None] * len(output.answers)):
            with column:
                st.caption(f"`{answer.label}`")
                _answer(answer)
                if request is not None and not request.error:
                    st.caption(request_line(request))
                    cache_doctor_line(request.cache)
        if output.table:
            st.dataframe(output.table, hide_index=True,
                         column_order=["target", "best", "cost_usd", "latency_ms", "ttft_ms", "tokens_per_s",
                                       "cache_read_tokens", "cache_write_tokens", "output_tokens", "error"])
    elif cell.kind == "lab" and output.lab:
        show_lab(cell)
    elif cell.kind == "batch":
        show_batch(cell)
    if cell.kind == "prompt":
        for request in output.requests:
            st.caption(request_line(request))
            cache_doctor_line(request.cache)
    for note in output.notes:
        st.caption(note)
    if output.error and not (cell.kind in ("prompt", "compare") and any(a.error for a in output.answers)):
        st.error(output.error, icon=":material/error:")
    where = "Orq" if output.router == "orq" else "local router (synthetic text)"
    st.caption(f"{len(output.requests)} request(s) on the {where} in {output.elapsed_s:,.1f} s")


def show_lab(cell: Cell) -> None:
    from orq_core.charts import cost_figure, latency_figure, tokens_figure
    from orq_core.lab import ExperimentResult
    from orq_core.notebook_export import lab_summary_markdown

    result = ExperimentResult.from_dict(cell.output.lab)
    st.markdown(lab_summary_markdown(result))
    tabs = st.tabs(["Tokens", "Cost", "Latency"])
    for tab, (name, figure) in zip(tabs, (("tokens", tokens_figure), ("cost", cost_figure),
                                          ("latency", latency_figure))):
        with tab:
            st.plotly_chart(figure(result), key=f"nb_{cell.id}_{name}_chart", config={"displaylogo": False})


def show_batch(cell: Cell) -> None:
    from orq_core.notebook_batch import batch_figures, batch_rows

    output = cell.output
    if output.table:
        st.dataframe(output.table, hide_index=True,
                     column_order=["target", "ok", "failed", "cost_usd", "no_cache_cost_usd", "cache_read_tokens",
                                   "cache_write_tokens", "cost_per_1000_rows_usd", "latency_ms_p50"])
    rows = batch_rows(output)
    if rows:
        st.dataframe(rows, hide_index=True, column_order=["row", "target", "status", "output", "cache_read_tokens",
                                                          "cache_write_tokens", "cost_usd", "latency_ms", "error"])
    for number, figure in enumerate(batch_figures(output)):
        st.plotly_chart(figure, key=f"nb_{cell.id}_batch_chart_{number}", config={"displaylogo": False})
