"""Batch: one prompt template over a dataset, across 1-4 targets, with caching-aware concurrency."""

import time

import streamlit as st

from orq_core.batch import (CHECKS, MAX_CONCURRENCY, MAX_TARGETS, WARM_FIRST_WHY, Batch, BatchSpec, check_batch_budget,
                            check_expected, check_spec, choose_rows, cost_figure, cumulative_cost_figure,
                            latency_figure, load_dataset, predict, prediction_rows, progress_sentence,
                            projection_sentence, records_csv, run_batch)
from orq_core.catalog import catalog
from orq_core.errors import OrqError, describe
from playground_ui.render import local_banner
from playground_ui.session import require_context

ctx = require_context()
store = ctx.store
TARGETS = {t.slug: t for t in catalog().targets()}
REPAINT_EVERY_S = 0.2


def current_batch() -> Batch | None:
    return st.session_state.get("batch")


def show_batch(batch: Batch | None) -> None:
    """Make ``batch`` current and put its settings back into the widgets."""
    st.session_state["batch"] = batch
    if batch is None:
        return
    spec = batch.spec
    st.session_state.update({
        "batch_template": spec.template, "batch_system": spec.system, "batch_cache": spec.cache_system,
        "batch_ttl": spec.cache_ttl, "batch_targets": list(spec.targets), "batch_concurrency": spec.concurrency,
        "batch_warm": spec.warms, "batch_max_tokens": spec.max_tokens,
        "batch_set_temperature": spec.temperature is not None, "batch_temperature": spec.temperature or 1.0})


def start_new() -> None:
    show_batch(None)
    st.session_state["batch_open"] = None


def open_saved() -> None:
    chosen = st.session_state.get("batch_open")
    loaded = Batch.load(store, chosen) if chosen else None
    if loaded is not None:
        show_batch(loaded)


def request_stop() -> None:
    st.session_state["batch_stop"] = True


with st.sidebar:
    st.markdown("### Batches")
    st.button("New batch", icon=":material/add:", width="stretch", key="batch_new", on_click=start_new)
    saved = store.list_docs("batch")
    if saved:
        names = {doc.id: doc.name[:40] for doc in saved}
        st.selectbox("Open a saved batch", list(names), format_func=names.get, index=None, key="batch_open",
                     placeholder="choose one", on_change=open_saved)

st.title("Batch")
local_banner(ctx.connection)
st.caption("One prompt template over your own rows, across models and providers: cost per 1,000 rows, cache hit "
           "rate and latency percentiles from your inputs, not one prompt.")


# --- 1. data -----------------------------------------------------------------------------------------

st.markdown("#### 1. Data")
upload_tab, paste_tab = st.tabs(["Upload CSV or JSONL", "Paste CSV"])
with upload_tab:
    uploaded = st.file_uploader("Dataset", type=["csv", "jsonl", "ndjson", "json"], key="batch_upload",
                                help="CSV with a header row, or JSONL (one JSON object per line).")
with paste_tab:
    pasted = st.text_area("CSV text", key="batch_paste", height=120, placeholder="question,answer\nWhat is 2+2?,4")

dataset = None
try:
    if uploaded is not None:
        dataset = load_dataset(uploaded.getvalue(), uploaded.name)
    elif pasted.strip():
        dataset = load_dataset(pasted, "pasted.csv")
except OrqError as error:
    st.error(describe(error), icon=":material/error:")

rows = []
if dataset is not None:
    st.caption(f"{len(dataset.rows):,} rows · columns: {', '.join(dataset.columns)}")
    st.dataframe(dataset.preview(5), hide_index=True, width="stretch")
    if st.session_state.get("batch_rows_n", 0) > len(dataset.rows):  # a smaller file than the last one
        st.session_state["batch_rows_n"] = len(dataset.rows)
    pick = st.columns([2, 1, 1])
    how = pick[0].segmented_control("Rows", ["All", "First N", "Random sample"], key="batch_rows_how") or "All"
    count = int(pick[1].number_input("N", min_value=1, max_value=len(dataset.rows), key="batch_rows_n",
                                     value=min(10, len(dataset.rows)), disabled=how == "All"))
    seed = int(pick[2].number_input("Seed", min_value=0, value=0, key="batch_seed", disabled=how != "Random sample"))
    rows = choose_rows(dataset, limit=count if how == "First N" else None,
                       sample=count if how == "Random sample" else None, seed=seed)


# --- 2. prompt -----------------------------------------------------------------------------------------

st.markdown("#### 2. Prompt")
template = st.text_area("User message template", key="batch_template", height=100,
                        placeholder="Classify this review as positive or negative: {{review}}",
                        help="{{column}} takes that column's cell; an empty cell fills with nothing and flags the row.")
with st.expander("System prompt or shared context", icon=":material/tune:"):
    system = st.text_area("System prompt", key="batch_system", height=100)
    context_file = st.file_uploader("…or upload it (.txt, .md)", type=["txt", "md"], key="batch_system_file")
    if context_file is not None:
        system = context_file.getvalue().decode("utf-8", "replace")
        st.caption(f"Using {context_file.name} ({len(system):,} characters) as the system prompt.")
    c1, c2 = st.columns(2)
    cache_system = c1.toggle("Cache the system prompt", key="batch_cache",
                             help="A cache breakpoint on the system prompt: every row after the first reads it.")
    st.session_state.setdefault("batch_ttl", "5m")
    cache_ttl = c2.segmented_control("Cache TTL", ["5m", "1h"], key="batch_ttl", disabled=not cache_system) or "5m"

params = st.columns(3)
st.session_state.setdefault("batch_max_tokens", 256)
max_tokens = int(params[0].number_input("max_tokens", min_value=1, max_value=64_000, key="batch_max_tokens"))
set_temperature = params[1].toggle("Set temperature", key="batch_set_temperature")
st.session_state.setdefault("batch_temperature", 1.0)
temperature = params[2].slider("temperature", 0.0, 1.0, step=0.05, key="batch_temperature",
                               disabled=not set_temperature)
with st.popover("More parameters", icon=":material/tune:"):
    set_top_p = st.toggle("Set top_p", key="batch_set_top_p", help="Not together with temperature on newer models.")
    top_p = st.slider("top_p", 0.0, 1.0, value=0.9, step=0.05, key="batch_top_p", disabled=not set_top_p)
    top_k = int(st.number_input("top_k (0 = off)", min_value=0, value=0, key="batch_top_k"))
    stop_text = st.text_area("Stop sequences (one per line)", key="batch_stop_sequences", height=68)
    thinking = int(st.number_input("Thinking budget (0 = off)", min_value=0, step=512, value=0, key="batch_thinking",
                                   help="At least 1,024 and below max_tokens; billed as output."))
columns = list(dataset.columns) if dataset is not None else []
check_cols = st.columns(2)
expected = check_cols[0].selectbox("Expected-answer column (optional)", columns, index=None, key="batch_expected",
                                   placeholder="none")
check = check_cols[1].selectbox("Check", CHECKS, key="batch_check", disabled=expected is None,
                                help="exact: same text; contains: the expected text appears; regex: the pattern "
                                     "matches; json: the output is valid JSON.")


# --- 3. targets and concurrency ---------------------------------------------------------------------------

st.markdown("#### 3. Targets")
st.session_state.setdefault("batch_targets", [ctx.slug])
targets = st.multiselect("Models and providers", list(TARGETS), key="batch_targets", max_selections=MAX_TARGETS,
                         format_func=lambda s: TARGETS[s].label)
run_cols = st.columns(2)
st.session_state.setdefault("batch_concurrency", 4)
concurrency = int(run_cols[0].slider("Concurrency (requests in flight per target)", 1, MAX_CONCURRENCY,
                                     key="batch_concurrency"))
st.session_state.setdefault("batch_warm", True)
warm_first = run_cols[1].toggle("Warm the cache first", key="batch_warm", disabled=not cache_system,
                                help=WARM_FIRST_WHY)

spec = BatchSpec(template=template, targets=tuple(targets), system=system, cache_system=cache_system,
                 cache_ttl=cache_ttl, max_tokens=max_tokens, temperature=temperature if set_temperature else None,
                 top_p=top_p if set_top_p else None, top_k=top_k or None,
                 stop=tuple(line for line in stop_text.splitlines() if line), thinking_budget=thinking or None,
                 concurrency=concurrency, warm_first=warm_first and cache_system, expected_column=expected,
                 check=check or "exact")


# --- preflight ---------------------------------------------------------------------------------------------

def preflight() -> Batch | None:
    """The batch to run, or None with the reason on screen."""
    if dataset is None or not rows:
        st.info("Upload or paste a dataset to start.", icon=":material/upload_file:")
        return None
    try:
        check_spec(spec, dataset.columns)
        check_expected(spec, rows)
        return Batch.new(spec, rows)
    except OrqError as error:
        st.error(describe(error), icon=":material/error:")
        return None


planned = preflight()
if planned is not None:
    st.markdown("#### Before sending")
    predictions = predict(planned)
    st.dataframe(prediction_rows(predictions), hide_index=True, width="stretch", column_config={
        "cost_warm_first_usd": st.column_config.NumberColumn("Cost, warm first", format="$%.6f"),
        "cost_cold_wave_usd": st.column_config.NumberColumn("Cost, cold wave", format="$%.6f"),
        "extra_without_warming_usd": st.column_config.NumberColumn("Extra without warming", format="$%.6f")})
    if any(p.prefix_tokens for p in predictions):
        st.caption(f"Output counted at max_tokens. {WARM_FIRST_WHY}")
    elif cache_system:
        st.caption("The cached prefix is shorter than these models' minimum: nothing will be cached, "
                   "so warming changes nothing.")


def run(batch: Batch) -> None:
    try:
        check_batch_budget(batch, ctx.spend.total_usd, ctx.budget_usd)
    except OrqError as error:
        st.session_state["batch_error"] = describe(error)
        st.rerun()
    st.session_state["batch"] = batch
    st.session_state["batch_stop"] = False
    st.button("Stop", icon=":material/stop:", key="batch_stop_button", on_click=request_stop,
              help="Finished rows are kept; Run missing rows continues later.")
    bar = st.progress(0.0, text="Starting…")
    last = [0.0]

    def on_record(record, progress) -> None:
        now = time.monotonic()
        if now - last[0] >= REPAINT_EVERY_S or progress.done == progress.total:
            bar.progress(progress.fraction, text=progress_sentence(progress))
            last[0] = now

    run_batch(ctx.client, batch, store=store, on_record=on_record,
              should_stop=lambda: st.session_state.get("batch_stop", False))
    st.rerun()


if st.session_state.get("batch_error"):
    st.error(st.session_state.pop("batch_error"), icon=":material/block:")

if planned is not None and st.button("Run batch", type="primary", icon=":material/play_arrow:", key="batch_run"):
    run(planned)


# --- results --------------------------------------------------------------------------------------------

batch = current_batch()
if batch is not None and batch.records:
    st.markdown(f"#### Results · {batch.name}")
    missing = batch.missing()
    if missing:
        note = "stopped" if batch.stopped else "some rows failed"
        st.warning(f"{len(missing):,} of {batch.total:,} row x target results are missing ({note}).",
                   icon=":material/pending:")
        if st.button("Run missing rows", icon=":material/replay:", key="batch_resume"):
            run(batch)
    st.dataframe([r.flat() for r in batch.ordered_records()], hide_index=True, width="stretch", column_config={
        "cost_usd": st.column_config.NumberColumn("cost_usd", format="$%.6f"),
        "why": st.column_config.TextColumn("why", help="The cache doctor's reason for this row's cache read/write.")})
    summary = batch.summary()
    st.markdown("#### Summary per target")
    st.dataframe([s.to_dict() for s in summary], hide_index=True, width="stretch", column_config={
        "cost_usd": st.column_config.NumberColumn("cost", format="$%.6f"),
        "cost_per_1000_rows_usd": st.column_config.NumberColumn("per 1,000 rows", format="$%.4f"),
        "no_cache_cost_usd": st.column_config.NumberColumn("without caching", format="$%.6f"),
        "cache_hit_rate": st.column_config.NumberColumn("cache hit rate", format="percent"),
        "pass_rate": st.column_config.NumberColumn("pass rate", format="percent")})
    per_day = int(st.number_input("Rows a day (projection)", min_value=1, value=1000, step=100, key="batch_per_day"))
    for line in summary:
        st.markdown(projection_sentence(line, per_day))
    if ctx.connection.local:
        st.caption("Local router: latency is simulated and costs are what Orq would charge for these tokens.")
    charts = st.tabs(["Latency", "Cost", "Cumulative cost"])
    charts[0].plotly_chart(latency_figure(batch), width="stretch", key="batch_latency_chart")
    charts[1].plotly_chart(cost_figure(batch), width="stretch", key="batch_cost_chart")
    charts[2].plotly_chart(cumulative_cost_figure(batch), width="stretch", key="batch_cumulative_chart")
    actions = st.columns(2)
    # Callables: the files are built when clicked, not on every rerun of a page holding thousands of rows.
    actions[0].download_button("Export JSON", batch.to_json, file_name=f"batch-{batch.id}.json",
                               mime="application/json", icon=":material/download:", on_click="ignore")
    actions[1].download_button("Export CSV", lambda: records_csv(batch.ordered_records()),
                               file_name=f"batch-{batch.id}.csv", mime="text/csv", icon=":material/table:",
                               on_click="ignore")
