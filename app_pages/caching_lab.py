"""Caching Lab: what does caching save, on this prompt, with this model?

The experiment is ``orq_core.lab`` (requests, preflight, run, summary, comparison) and its charts
are ``orq_core.charts``. This page reads the designer form, runs the experiment in the script
thread (``on_record`` repaints the progress bar, figures and charts as records arrive), and keeps
every run in the store.

Stop is Streamlit's own: any click during a run starts the script again in a new thread and the
old one gets StopException at its next st call. So each record goes into session state as it
arrives, the run's ``finally`` saves what finished, and the new script run waits for that hand-over
(``RunHandle``) before drawing the page.
"""

import threading
import time
import uuid
from dataclasses import replace

import streamlit as st

from orq_core.catalog import catalog
from orq_core.cache_advisor import advise_lab
from orq_core.cache_breakers import run_cache_breakers
from orq_core.charts import breakers_figure, cost_figure, figure_to_html, latency_figure, tokens_figure
from orq_core.cost import format_usd
from orq_core.errors import OrqError, describe
from orq_core.lab import (ARMS, MAX_CONTEXT_TOKENS, MAX_INTERVAL_S, MAX_LAB_OUTPUT, MIN_CONTEXT_TOKENS,
                          TTL_SECONDS,
                          FINISHED, INTERRUPTED, RUNNING, STOPPED, ExperimentConfig, ExperimentResult, Preflight,
                          check_experiment_budget,
                          compare_runs, comparison_table, default_name, preflight, run_experiment)
from orq_core.lab_clock import local_fast_forward, sleep_in_steps
from orq_core.lab_presets import BREAKPOINTS, PRESETS
from playground_ui.render import fmt_ms, local_banner
from playground_ui.session import require_context

ctx = require_context()
store = ctx.store
state = st.session_state
TARGETS = {t.slug: t for t in catalog().targets()}

ARM_LABELS = {"no-cache": "No caching", "prompt-cache": "Prompt caching", "response-cache": "Orq response cache"}
PRESET_LABELS = {"book": "Long document Q&A", "many-shot": "Many-shot prompting",
                 "multi-turn": "Multi-turn conversation", "tools": "Tools-heavy prompt", "custom": "Custom"}
PRESET_HELP = {
    "book": "A book-sized text, then one question per request about it.",
    "many-shot": "N labelled examples before the question: the examples are the cached prefix.",
    "multi-turn": "A long system prompt (a guidebook), and a conversation that grows by one turn per request.",
    "tools": "Dozens of tool definitions sent with every request: the tool list is the cached prefix.",
    "custom": "Your own text (pasted or a .txt/.md file), then one question per request.",
}
BREAKPOINT_LABELS = {"context": "After the document (in the user turn)", "system": "End of the system prompt",
                     "last-turn": "Last user turns (the growing conversation)", "tools": "After the last tool"}
FAST_FORWARD, REAL_WAIT = "Fast-forward the local router's clock", "Really wait"
REPAINT_EVERY_S = 0.3  # building three figures takes ~0.1 s: on an instant router, paint at most this often
HEARTBEAT_S = 0.25
STOP_WAIT_S = 20.0
TABLE_COLUMNS = ["model", "arm", "request", "status", "input_tokens", "cache_read_tokens", "cache_write_tokens",
                 "output_tokens", "cost_usd", "baseline_usd", "ttft_ms", "latency_ms", "response_cache_hit",
                 "expected_read_tokens", "expected_write_tokens", "cache_why", "error"]


def target_label(slug: str) -> str:
    return TARGETS[slug].label if slug in TARGETS else slug


def signed_usd(amount: float) -> str:
    return f"-{format_usd(-amount)}" if amount < 0 else format_usd(amount)


def model_label(slug: str) -> str:
    return TARGETS[slug].model.label if slug in TARGETS else slug


# --- the designer --------------------------------------------------------------------------------

def preset_inputs(preset: str) -> dict:
    """The widgets that only one preset has; returns ExperimentConfig fields."""
    values: dict = {}
    size_help = f"{MIN_CONTEXT_TOKENS:,} to {MAX_CONTEXT_TOKENS:,} tokens (counted as the local router counts them)."
    if preset == "book":
        values["context_tokens"] = st.slider("Book size (tokens)", MIN_CONTEXT_TOKENS, MAX_CONTEXT_TOKENS,
                                             10_000, step=1_000, key="lab_book_tokens", help=size_help)
    elif preset == "multi-turn":
        values["context_tokens"] = st.slider("System prompt size (tokens)", MIN_CONTEXT_TOKENS, MAX_CONTEXT_TOKENS,
                                             10_000, step=1_000, key="lab_guide_tokens", help=size_help)
        values["turns"] = int(st.number_input("Earlier turns before request 1", value=0, key="lab_turns",
                                              help="0 to 100."))
    elif preset == "many-shot":
        values["shots"] = int(st.number_input("Examples (N)", value=100, step=10, key="lab_shots",
                                              help="1 to 2,000."))
    elif preset == "tools":
        values["tool_count"] = int(st.number_input("Tool definitions", value=40, step=5, key="lab_tools",
                                                   help="1 to 500."))
    else:
        pasted = st.text_area("Context", key="lab_custom_text", height=150,
                              placeholder="Paste a document, a long system prompt, examples…")
        uploaded = st.file_uploader("…or upload it (.txt, .md)", type=["txt", "md"], key="lab_custom_file",
                                    help="An uploaded file is used instead of the pasted text.")
        values["custom_context"] = (uploaded.getvalue().decode("utf-8", errors="replace") if uploaded is not None
                                    else pasted)
    return values


def designer(preset: str) -> tuple[ExperimentConfig, bool]:
    """The form's widgets -> (config, fast-forward the local router between rounds)."""
    values = preset_inputs(preset)
    state.setdefault("lab_models", [ctx.slug])
    left, right = st.columns([3, 2])
    values["models"] = tuple(left.multiselect("Models and providers", list(TARGETS), key="lab_models",
                                              format_func=target_label, max_selections=4,
                                              help="Catalog slugs; the sidebar's choice comes first."))
    values["arms"] = tuple(right.multiselect("Arms to compare", list(ARMS), default=["no-cache", "prompt-cache"],
                                             key="lab_arms", format_func=ARM_LABELS.get))
    cells = st.columns(4)
    # No min/max on these boxes: Streamlit would keep the last valid value while the box shows the
    # typed one. The plan checks what the box shows and refuses it with a sentence.
    values["requests"] = int(cells[0].number_input("Requests per arm", value=5, key="lab_requests"))
    values["interval_s"] = float(cells[1].number_input(
        "Interval between requests (s)", value=0.0, step=30.0, key="lab_interval",
        help=f"0 to {MAX_INTERVAL_S:,} s. Set it above the TTL (e.g. 330 s with 5m) to watch the cache expire "
             "and be written again."))
    values["ttl"] = cells[2].radio("Cache TTL", list(TTL_SECONDS), horizontal=True, key="lab_ttl",
                                   help="5m: writes cost 1.25× input, refreshed by each read. 1h: writes cost 2×. "
                                        "Also the TTL of Orq's response cache arm.")
    fast_forward = False
    if ctx.connection.local:
        fast_forward = cells[3].radio(
            "Waiting between rounds", [FAST_FORWARD, REAL_WAIT], key="lab_wait",
            help="Fast-forward moves the local router's cache clock by the interval instead of sleeping, so a "
                 "5-minute TTL demo takes seconds. The local router is shared by this whole app: moving its "
                 "clock also ages other sessions' cache entries.") == FAST_FORWARD
    with st.expander("Breakpoint, questions, max_tokens"):
        placements = BREAKPOINTS[preset]
        values["breakpoint"] = st.selectbox("Breakpoint (prompt-caching arm)", placements,
                                            key=f"lab_breakpoint_{preset}", format_func=BREAKPOINT_LABELS.get,
                                            help="Where the prompt-caching arm puts its cache_control marker; "
                                                 "everything before it is the cached prefix.")
        questions = st.text_area("Questions, one per line (blank: the preset's own)", key=f"lab_questions_{preset}",
                                 height=90, help="Asked in turn, one per request.")
        values["questions"] = tuple(line.strip() for line in questions.splitlines() if line.strip())
        values["max_tokens"] = int(st.number_input("max_tokens", value=256, step=64, key="lab_max_tokens",
                                                   help=f"1 to {MAX_LAB_OUTPUT:,}. Output is billed as produced; "
                                                        "estimates count it in full."))
    return ExperimentConfig(preset=preset, **values), fast_forward


def show_preflight(check: Preflight, config: ExperimentConfig) -> None:
    first = config.models[0]
    headline = check.estimate("prompt-cache", first) or check.estimates[0]
    cells = st.columns(4)
    cells[0].metric("Cached prefix (request 1)", f"{check.prefix_tokens:,} tokens",
                    help=f"Tokens up to the breakpoint, of {check.prompt_tokens:,} input tokens in request 1.")
    cells[1].metric(f"Estimated cost · {ARM_LABELS[headline.arm]}", format_usd(headline.total),
                    help=f"{target_label(first)}, output counted at max_tokens. Every arm and model is listed below.")
    cells[2].metric("Most it can cost", format_usd(check.worst_case),
                    help="The spend guard's rule over every request of every arm and model.")
    break_even = check.break_even.get(first)
    cells[3].metric("Break-even request", f"#{break_even}" if break_even else "not reached",
                    help="First request where prompt caching has cost no more in total than no caching.")
    for slug in config.models:
        model = TARGETS[slug].model
        mark = ":material/check_circle:" if check.prefix_tokens >= model.min_cacheable else ":material/warning:"
        mine = [e for e in check.estimates if e.model == slug]
        estimates = " · ".join(f"{ARM_LABELS[e.arm]} ≈ {format_usd(e.total)}" for e in mine)
        baseline = (check.estimate("prompt-cache", slug) or mine[0]).baseline if mine else None
        st.caption(f"{mark} **{target_label(slug)}**: caches prefixes of at least {model.min_cacheable:,} tokens · "
                   f"{estimates}" + (f" (no caching at all: {format_usd(baseline)})" if baseline is not None else "")
                   + (f" · break-even at #{check.break_even[slug]}" if check.break_even.get(slug) else ""))
    for warning in check.warnings:
        st.warning(warning, icon=":material/warning:")
    budget = f"{format_usd(ctx.spend.total_usd)} spent of {format_usd(ctx.budget_usd)}" if ctx.budget_usd else "off"
    st.caption(f"Spend guard: {budget} (sidebar).")


@st.cache_data(max_entries=32, show_spinner="Estimating tokens and cost…")
def cached_preflight(config: ExperimentConfig) -> Preflight:
    """Large plans take seconds to estimate; every rerun of the page would pay it again."""
    return preflight(config)


# --- results -------------------------------------------------------------------------------------

def figures(result: ExperimentResult) -> dict:
    return {"tokens": tokens_figure(result), "cost": cost_figure(result), "latency": latency_figure(result)}


def summary_metrics(result: ExperimentResult) -> None:
    summary = result.summary()
    for slug, arms in summary.items():
        if len(summary) > 1:
            st.markdown(f"**{target_label(slug)}**")
        cached_arms = [arm for arm in ("prompt-cache", "response-cache") if arm in arms]
        if not cached_arms:
            st.caption("Add a caching arm to see what it saves.")
        reference = arms.get("no-cache", {})
        for arm in cached_arms:
            s = arms[arm]
            cells = st.columns(4)
            cells[0].metric(f"Saved · {ARM_LABELS[arm]}", signed_usd(s["saved_usd"]), delta=f"{s['saved_pct']:.1f}%",
                            help=f"{format_usd(s['total_cost_usd'])} instead of {format_usd(s['baseline_cost_usd'])}"
                                 " for the same requests without caching.")
            reduction = s.get("ttft_reduction_pct")
            cells[1].metric(f"TTFT reduction · {ARM_LABELS[arm]}", "–" if reduction is None else f"{reduction:.1f}%",
                            help=f"Median time to first token {fmt_ms(s['median_ttft_ms'])} vs "
                                 f"{fmt_ms(reference.get('median_ttft_ms'))} with no caching.")
            cells[2].metric(f"Hit rate · {ARM_LABELS[arm]}", f"{s['hit_rate']:.0%}",
                            help="Share of completed requests that read the cache (or were served by Orq's cache).")
            cells[3].metric(f"Break-even · {ARM_LABELS[arm]}",
                            f"request #{s['break_even_request']}" if s["break_even_request"] else "not reached",
                            help="First request where the running total is no more than without caching.")


def charts(result: ExperimentResult, figs: dict, key: str) -> None:
    for name, fig in figs.items():
        st.plotly_chart(fig, key=f"lab_{key}_{name}", config={"displaylogo": False})


def failures(result: ExperimentResult) -> None:
    failed = [r for r in result.records if r.status != "ok"]
    if failed:
        lines = "\n".join(f"- {ARM_LABELS.get(r.arm, r.arm)} #{r.request} ({model_label(r.model)}): "
                          f"**{r.status}**: {r.error or 'no detail'}" for r in failed[:5])
        more = f"\n- … and {len(failed) - 5} more" if len(failed) > 5 else ""
        st.warning(f"{len(failed)} request(s) did not complete:\n{lines}{more}", icon=":material/error:")


def tables(result: ExperimentResult) -> None:
    with st.expander("Figures per arm and every request", icon=":material/table:"):
        rows = [{"model": slug, "arm": arm, **arm_figures}
                for slug, arms in result.summary().items() for arm, arm_figures in arms.items()]
        st.dataframe(rows, hide_index=True)
        st.dataframe(result.to_dataframe(), hide_index=True, column_order=TABLE_COLUMNS)


def exports(result: ExperimentResult, figs: dict) -> None:
    cells = st.columns(5)
    cells[0].download_button("CSV", result.to_csv(), file_name=f"experiment-{result.id}.csv", mime="text/csv",
                             icon=":material/download:", on_click="ignore", key="lab_csv")
    cells[1].download_button("JSON", result.to_json(), file_name=f"experiment-{result.id}.json",
                             mime="application/json", icon=":material/download:", on_click="ignore", key="lab_json")
    for cell, (name, fig) in zip(cells[2:], figs.items()):
        # A callable is only run on click: each page is ~4 MB with plotly.js inlined (works offline).
        cell.download_button(f"{name.capitalize()} chart (HTML)", lambda fig=fig: figure_to_html(fig),
                             file_name=f"experiment-{result.id}-{name}.html", mime="text/html",
                             icon=":material/download:", on_click="ignore", key=f"lab_html_{name}")
    st.caption("PNG: the camera button in each chart's toolbar saves it as an image.")


def show_result(result: ExperimentResult) -> None:
    st.subheader(result.name or default_name(result.config))
    started = time.strftime("%Y-%m-%d %H:%M", time.localtime(result.started_at)) if result.started_at else "?"
    note = {INTERRUPTED: " · **interrupted**: the server stopped mid-run; the requests saved before are kept",
            RUNNING: " · **still running** elsewhere"}.get(
        result.status, " · **stopped early**: the requests that finished are kept" if result.cancelled else "")
    st.caption(f"Run {result.id} · started {started} · {len(result.records)} requests{note}")
    failures(result)
    summary_metrics(result)
    figs = figures(result)
    charts(result, figs, "result")
    tables(result)
    exports(result, figs)
    if st.button("Delete this run", icon=":material/delete:", key="lab_delete"):
        store.delete_doc("experiment", result.id)
        state.pop("lab_result", None)
        st.rerun()


# --- running -------------------------------------------------------------------------------------

class LivePainter:
    """on_record for run_experiment: keeps each record in session state, repaints progress, figures
    and charts. Runs in the script thread, so a Stop click ends the run at the next paint."""

    def __init__(self, config: ExperimentConfig, total: int):
        self.config = config
        self.total = total
        self.records = state["lab_records"] = []
        self.progress = st.progress(0.0, text=f"0 of {total} requests")
        self.waiting = st.empty()
        self.live = st.empty()
        self.paints = 0
        self.last_paint = 0.0

    def __call__(self, record) -> None:
        self.records.append(record)  # first: a Stop during the paint below keeps it
        self.waiting.empty()
        done = len(self.records)
        self.progress.progress(done / self.total, text=f"{done} of {self.total} requests · last: "
                               f"{ARM_LABELS[record.arm]} #{record.request} on {model_label(record.model)} "
                               f"({record.status})")
        if done == self.total or time.monotonic() - self.last_paint >= REPAINT_EVERY_S:
            self.paint()

    def paint(self) -> None:
        self.paints += 1
        partial = ExperimentResult(config=self.config, records=list(self.records))
        with self.live.container():
            failures(partial)
            summary_metrics(partial)
            charts(partial, figures(partial), f"live{self.paints}")
        self.last_paint = time.monotonic()

    def in_flight(self, chunks: int) -> None:
        self.waiting.caption(f":material/downloading: Request in flight: {chunks:,} chunks received")

    def countdown(self, remaining: float) -> None:
        self.waiting.caption(f":material/hourglass_top: Next round in {remaining:,.0f} s (Stop keeps what finished)"
                             if remaining > 0 else "")


class StoppableClient:
    """The session's client for run_experiment, touching the page while chunks arrive: Streamlit
    stops a script only inside an st call, so this is where a Stop click lands mid-request (the
    stream is then closed and that request is not kept)."""

    def __init__(self, client, painter: LivePainter):
        self._client = client
        self._painter = painter

    def stream(self, payload: dict, **options):
        events = self._client.stream(payload, **options)
        chunks, last_paint = 0, 0.0
        try:
            for event in events:
                chunks += 1
                if time.monotonic() - last_paint >= HEARTBEAT_S:
                    self._painter.in_flight(chunks)
                    last_paint = time.monotonic()
                yield event
        finally:
            events.close()


class RunHandle:
    """Shared by a run and the script run that stops it. Once stopped, the run's thread may not
    touch session state (Streamlit raises StopException at every access), so it hands its result
    over here."""

    def __init__(self):
        self.stop = threading.Event()
        self.done = threading.Event()
        self.result: ExperimentResult | None = None


def adopt(handle: RunHandle) -> None:
    state.pop("lab_active", None)
    if handle.result is not None and handle.result.records:
        state["lab_result"] = handle.result


def run(config: ExperimentConfig, fast_forward: bool) -> None:
    config = replace(config, cache_salt=uuid.uuid4().hex[:8])  # fresh cache; the partial result keeps it
    total = len(config.models) * len(config.arms) * config.requests
    handle = state["lab_active"] = RunHandle()
    st.button("Stop", icon=":material/stop_circle:", key="lab_stop")
    painter = LivePainter(config, total)
    forward = local_fast_forward(ctx.connection.base_url, ctx.connection.api_key) if fast_forward else None
    if forward is not None:
        timing = {"sleep": forward.sleep, "clock": forward.clock}
    else:
        timing = {"sleep": lambda seconds: sleep_in_steps(seconds, painter.countdown, sleep=handle.stop.wait)}
    started, run_id = time.time(), uuid.uuid4().hex[:12]
    try:  # saved as it goes: a killed server keeps every record that arrived
        handle.result = run_experiment(config, StoppableClient(ctx.client, painter), on_record=painter,
                                       cancel=handle.stop, store=store, result_id=run_id, **timing)
    finally:  # no st call and no session state in here: see RunHandle
        if handle.result is None:  # stopped between records: run_experiment saved it as stopped
            handle.result = ExperimentResult(config=config, records=list(painter.records), started_at=started,
                                             finished_at=time.time(), cancelled=True, name=default_name(config),
                                             id=run_id, status=STOPPED)
        if not handle.result.records:
            store.delete_doc("experiment", run_id)
        handle.done.set()
    adopt(handle)
    st.rerun()


def finish_stopped_run() -> None:
    """Any click during a run (Stop, or any other widget) starts this script again at once, while
    the run is still ending in its own thread (Streamlit's fast reruns). Tell it to stop between
    chunks and wait until it has saved what finished, so this run shows it."""
    handle = state.get("lab_active")
    if handle is None:
        return
    handle.stop.set()
    if not handle.done.is_set():
        with st.spinner("Stopping the experiment: keeping the requests that finished…"):
            handle.done.wait(STOP_WAIT_S)
    if handle.done.is_set():
        adopt(handle)
    else:
        st.info("The stopped experiment is still closing its last request; it will appear under "
                "Experiments in the sidebar.", icon=":material/hourglass_top:")


# --- history and comparison ----------------------------------------------------------------------

def run_label(doc) -> str:
    status = (doc.data or {}).get("status", FINISHED)
    note = "" if status == FINISHED else f" · {status}"
    return f"{doc.name} · {time.strftime('%m-%d %H:%M:%S', time.localtime(doc.created))}{note}"


def open_saved() -> None:
    chosen = state.get("lab_open")
    loaded = ExperimentResult.load(store, chosen) if chosen else None
    if loaded is not None:
        state["lab_result"] = loaded


def history_sidebar(saved: list) -> None:
    with st.sidebar:
        st.markdown("### Experiments")
        if not saved:
            st.caption("Every run is saved here.")
            return
        labels = {doc.id: run_label(doc) for doc in saved}
        st.selectbox("Open a saved run", list(labels), format_func=labels.get, index=None, key="lab_open",
                     placeholder="choose a run", on_change=open_saved)


def compare_section(saved: list) -> None:
    st.subheader("Compare two runs")
    if len(saved) < 2:
        st.caption("Run two experiments (say, 5m against 1h TTL, or two models) to compare them here.")
        return
    labels = {doc.id: run_label(doc) for doc in saved}
    left, right = st.columns(2)
    first = left.selectbox("Run A", list(labels), index=1, format_func=labels.get, key="lab_cmp_a")
    second = right.selectbox("Run B", list(labels), index=0, format_func=labels.get, key="lab_cmp_b")
    if first == second:
        st.info("Choose two different runs.")
        return
    a, b = ExperimentResult.load(store, first), ExperimentResult.load(store, second)
    if a is None or b is None:
        st.info("That run was deleted.")
        return
    comparison = compare_runs(a, b)
    changes = comparison["config_changes"]
    if changes:
        st.caption("What changed from A to B: " + "; ".join(f"{key}: {old} → {new}" for key, (old, new)
                                                              in changes.items()))
    st.dataframe(comparison_table(comparison), hide_index=True)
    for side, result, column in zip("ab", (a, b), st.columns(2)):
        with column:
            for name, fig in (("cost", cost_figure(result)), ("latency", latency_figure(result))):
                fig.update_layout(title=f"{fig.layout.title.text} · run {side.upper()}",
                                  legend={"orientation": "h", "y": -0.3})  # half width: legend below
                st.plotly_chart(fig, key=f"lab_cmp_{side}_{name}", config={"displaylogo": False})


# --- the page ------------------------------------------------------------------------------------

st.title("Caching Lab")
local_banner(ctx.connection)
st.caption("**No caching**: every request pays full input price. **Prompt caching**: the same requests with a "
           "`cache_control` breakpoint; the first writes the prefix, later ones read it at a tenth of the price "
           "while it lives. **Orq response cache**: the same request again and again; a hit is answered by Orq "
           "without calling the model. "
           + ("On the local router, figures follow Claude's published prices and the router's latency model."
              if ctx.connection.local else "Figures are Orq's reported usage priced at Claude's published prices."))

finish_stopped_run()
saved = store.list_docs("experiment", with_data=True)  # headers only: records are items
history_sidebar(saved)

preset = st.radio("Preset", PRESETS, format_func=PRESET_LABELS.get, horizontal=True, key="lab_preset")
st.caption(PRESET_HELP[preset])
with st.form("lab_designer", enter_to_submit=False):
    config, fast_forward = designer(preset)
    try:
        plan = cached_preflight(config)
    except ValueError as error:
        plan = None
        st.error(str(error), icon=":material/block:")
    else:
        show_preflight(plan, config)
    buttons = st.columns([2, 2, 5])
    buttons[0].form_submit_button("Check plan", icon=":material/fact_check:")
    run_clicked = buttons[1].form_submit_button("Run experiment", type="primary", icon=":material/play_arrow:")
    buttons[2].caption("The plan above is for the settings last checked; Run checks the current ones first.")

def lab_advisor(config: ExperimentConfig) -> None:
    """The cache doctor's placement advice for this design, applied with one click."""
    try:
        advice = advise_lab(config, cached_preflight)
    except ValueError:
        return
    if advice.placement == advice.current or advice.saving_usd <= 0:
        return

    def apply() -> None:
        state[f"lab_breakpoint_{config.preset}"] = advice.placement

    cols = st.columns([5, 2])
    cols[0].caption(f":material/cached: Cache doctor: a breakpoint {BREAKPOINT_LABELS[advice.placement].lower()} "
                    f"makes the prompt-caching arm cost about {format_usd(advice.expected_usd)} instead of "
                    f"{format_usd(advice.current_usd)} (saves {format_usd(advice.saving_usd)}).")
    cols[1].button("Apply the suggestion", key="apply_lab_advice", on_click=apply, icon=":material/auto_fix_high:")


if plan is not None:
    lab_advisor(config)

if run_clicked and plan is not None:
    try:
        check_experiment_budget(plan, ctx.spend.total_usd, ctx.budget_usd)
    except OrqError as error:
        st.error(describe(error), icon=":material/block:")
    else:
        run(config, fast_forward)

result = state.get("lab_result")
if result is not None:
    show_result(result)
compare_section(saved)


def cache_breakers_section() -> None:
    """The scripted "What breaks the cache" sequence, with the cache doctor's reason per request."""
    st.subheader("What breaks the cache")
    st.caption(f"One model ({ctx.model.label}), one change at a time: tool definitions, the system prompt, an "
               "image, the thinking budget, a prefix below the minimum, a wait past the TTL and a conversation that "
               "grows past the 20-block lookback. Each request is predicted before it is sent, then checked.")
    if st.button("Run the sequence", icon=":material/science:", key="run_cache_breakers"):
        forward = local_fast_forward(ctx.connection.base_url, ctx.connection.api_key) if ctx.connection.local else None
        with st.spinner("Sending the sequence…"):
            state["cache_breakers"] = run_cache_breakers(ctx.client, ctx.slug,
                                                         advance=forward.sleep if forward else None)
    run = state.get("cache_breakers")
    if run is None:
        return
    st.dataframe([{"step": s.step, "change": s.change, "outcome": s.outcome, "predicted read": s.expected_read_tokens,
                   "predicted write": s.expected_write_tokens, "router read": s.cache_read_tokens,
                   "router write": s.cache_write_tokens, "why": s.why} for s in run.steps],
                 hide_index=True, use_container_width=True)
    st.plotly_chart(breakers_figure(run), use_container_width=True, key="cache_breakers_chart")


cache_breakers_section()
