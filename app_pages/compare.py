"""Compare: one prompt to 2-4 models or providers at once, streamed side by side, with a decision table."""

import time
from contextlib import closing

import streamlit as st

from orq_core.catalog import catalog
from orq_core.compare import (FAULTS, MAX_COLUMNS, CompareTarget, Comparison, LiveProgress, check_batch_budget,
                              default_slugs, latency_figure, latency_points, summary_csv)
from orq_core.errors import OrqError, describe
from playground_ui.render import local_banner, usage_line
from playground_ui.session import require_context
from playground_ui.streaming import CURSOR, REPAINT_EVERY_S

ctx = require_context()
store = ctx.store
TARGETS = {t.slug: t for t in catalog().targets()}
FAULT_NAMES = list(FAULTS)


def key(name: str, column: int) -> str:
    return f"cmp_{name}_{column}"


def current_comparison() -> Comparison | None:
    return st.session_state.get("compare")


def show_comparison(comparison: Comparison | None) -> None:
    """Make ``comparison`` current and put its settings back into the widgets."""
    st.session_state["compare"] = comparison
    if comparison is None:
        return
    st.session_state["cmp_columns"] = len(comparison.columns)
    st.session_state["cmp_system"] = comparison.system
    st.session_state["cmp_cache"] = comparison.cache_ttl is not None
    st.session_state["cmp_cache_ttl"] = comparison.cache_ttl or "5m"
    for i, target in enumerate(comparison.targets):
        st.session_state[key("target", i)] = target.slug
        st.session_state[key("max_tokens", i)] = target.max_tokens
        st.session_state[key("set_temperature", i)] = target.temperature is not None
        st.session_state[key("temperature", i)] = target.temperature if target.temperature is not None else 1.0
        st.session_state[key("thinking", i)] = target.thinking_budget or 0
        st.session_state[key("fault", i)] = next((n for n, v in FAULTS.items() if v == target.fault), "none")


# --- saved comparisons -------------------------------------------------------------------------

def start_new() -> None:
    show_comparison(None)
    st.session_state["cmp_open"] = None


def open_saved() -> None:
    chosen = st.session_state.get("cmp_open")
    loaded = Comparison.load(store, chosen) if chosen else None
    if loaded is not None:
        show_comparison(loaded)


with st.sidebar:
    st.markdown("### Comparisons")
    st.button("New comparison", icon=":material/add:", width="stretch", key="cmp_new", on_click=start_new)
    saved = store.list_docs("comparison")
    if saved:
        names = {doc.id: doc.name[:40] for doc in saved}
        st.selectbox("Open a saved comparison", list(names), format_func=names.get, index=None, key="cmp_open",
                     placeholder="choose one", on_change=open_saved)

comparison = current_comparison()
locked = comparison is not None and comparison.turns > 0  # each column's conversation belongs to its model


# --- shared settings ---------------------------------------------------------------------------

st.title("Compare")
local_banner(ctx.connection)
st.caption("One prompt to several models or providers at once; answers stream side by side and the table "
           "below puts their time and money next to each other.")

st.session_state.setdefault("cmp_columns", 3)
st.session_state.setdefault("cmp_repeat", 1)
top = st.columns([2, 2, 3])
count = top[0].segmented_control("Columns", [2, 3, 4], key="cmp_columns", disabled=locked,
                                 help="Fixed once a comparison has started: start a new one to change.") or 3
repeat = int(top[1].number_input("Repeat each request", min_value=1, max_value=10, key="cmp_repeat",
                                 help="Send the same request N times in a row per column: the table shows "
                                      "medians and the spread instead of one noisy sample."))
if locked:
    top[2].caption(f"{comparison.turns} turn(s) so far: each column continues its own conversation. "
                   "Use *New comparison* in the sidebar to change models.")

with st.expander("Shared system prompt", expanded=not locked, icon=":material/tune:"):
    st.session_state.setdefault("cmp_system", "")
    system = st.text_area("System prompt", key="cmp_system", height=90, placeholder="You are a concise assistant…")
    c1, c2 = st.columns(2)
    cache_system = c1.toggle("Cache the system prompt", key="cmp_cache",
                             help="Adds a cache breakpoint; prompts under a model's minimum are silently not "
                                  "cached. With repeats, the first run writes the cache and the next ones read it.")
    st.session_state.setdefault("cmp_cache_ttl", "5m")
    cache_ttl = c2.segmented_control("Cache TTL", ["5m", "1h"], key="cmp_cache_ttl", disabled=not cache_system) or "5m"


# --- columns -----------------------------------------------------------------------------------

def column_settings(i: int, default_slug: str) -> CompareTarget:
    """The target picker and its parameters popover for column ``i``."""
    st.session_state.setdefault(key("target", i), default_slug)
    slug = st.selectbox(f"Column {i + 1}", list(TARGETS), key=key("target", i), disabled=locked,
                        format_func=lambda s: TARGETS[s].short_label)
    model = TARGETS[slug].model
    st.markdown(f"**{TARGETS[slug].provider.label}** · {model.label}")  # wraps where the box above cuts
    max_key = key("max_tokens", i)
    st.session_state[max_key] = min(st.session_state.get(max_key, 1024), model.max_output)
    with st.popover("Parameters", icon=":material/tune:", width="stretch"):
        max_tokens = st.number_input("max_tokens", min_value=1, max_value=model.max_output, step=256, key=max_key)
        st.session_state.setdefault(key("thinking", i), 0)
        thinking = st.number_input("Thinking budget (0 = off)", min_value=0, step=512, key=key("thinking", i),
                                   disabled=not model.thinking,
                                   help="At least 1,024 and below max_tokens." if model.thinking
                                   else f"{model.label} has no extended thinking.")
        thinking = int(thinking) if model.thinking and thinking else None
        set_temperature = st.toggle("Set temperature", key=key("set_temperature", i), disabled=bool(thinking),
                                    help="With thinking, Claude fixes temperature at 1.")
        st.session_state.setdefault(key("temperature", i), 1.0)
        temperature = st.slider("temperature", 0.0, 1.0, step=0.05, key=key("temperature", i),
                                disabled=not set_temperature or bool(thinking))
        fault = None
        if ctx.connection.local:
            st.session_state.setdefault(key("fault", i), "none")
            fault = FAULTS[st.selectbox("Simulate a fault", FAULT_NAMES, key=key("fault", i),
                                        help="Local router only: this column's requests fail on purpose "
                                             "(X-Emulator-Fault header), to show the others carry on.")]
    shown = [f"max_tokens {int(max_tokens):,}"]
    if thinking:
        shown.append(f"thinking {thinking:,}")
    elif set_temperature:
        shown.append(f"temperature {temperature:g}")
    if fault:
        shown.append(f":material/bug_report: simulating `{fault}`")
    st.caption(" · ".join(shown))
    return CompareTarget.with_fault(slug, fault, max_tokens=int(max_tokens), thinking_budget=thinking,
                                    temperature=temperature if set_temperature and not thinking else None)


def render_history(column) -> None:
    for j, exchange in enumerate(column.exchanges):
        st.chat_message("user").markdown(exchange.user_text)
        answer = exchange.answer
        with st.chat_message("assistant"):
            if answer is None:
                st.caption("Stopped before an answer arrived.")
                continue
            completion = answer.completion
            if completion is not None:
                if completion.reasoning:
                    with st.expander("Thinking", icon=":material/psychology:"):
                        st.markdown(completion.reasoning)
                st.markdown(completion.text or "_(no text)_")
            for failed in dict.fromkeys(s.error for s in exchange.samples if s.error):
                st.error(failed, icon=":material/error:")
            if completion is not None:
                usage_line(completion, answer.write_ttl, key=f"cmp_{id(column)}_{j}")
            if len(exchange.samples) > 1:
                st.caption(f"Answer {exchange.samples.index(answer) + 1} of {len(exchange.samples)} shown; "
                           "the table has the medians.")


defaults = default_slugs(ctx.slug, MAX_COLUMNS)
grid = st.columns(count, border=True)
targets, live_areas = [], []
for i, area in enumerate(grid):
    with area:
        targets.append(column_settings(i, defaults[i]))
        if comparison is not None and i < len(comparison.columns):
            render_history(comparison.columns[i])
        live_areas.append(st.container())


# --- sending -----------------------------------------------------------------------------------

def comparison_for_send() -> Comparison:
    """The current comparison with this run's settings, or a new one when the models changed."""
    current = current_comparison()
    if current is not None:
        try:
            current.retarget(targets)
        except ValueError:
            current = None
    if current is None:
        current = Comparison(targets)
    current.set_prompt(system, cache_system, cache_ttl)
    return current


def paint(area: dict, state, status: str, final: bool = False) -> None:
    area["status"].caption(status)
    if state.reasoning:
        area["reasoning"].markdown(state.reasoning)
    if state.text:
        area["text"].markdown(state.text + ("" if final else CURSOR))
    if state.notes:
        area["notes"].warning("\n\n".join(state.notes))


def send(prompt: str) -> None:
    chosen = comparison_for_send()
    prepared = chosen.prepare(prompt)
    payloads = [p for p in prepared if isinstance(p, dict)]
    try:
        for payload in payloads:
            ctx.guard(payload)
        check_batch_budget(payloads, repeat, ctx.spend.total_usd, ctx.budget_usd)
    except OrqError as error:  # nothing was sent; the message is kept for the person to resend
        st.session_state["cmp_send_error"] = describe(error)
        st.session_state["cmp_draft"] = prompt
        st.rerun()
    st.session_state["compare"] = chosen
    st.session_state.pop("cmp_draft", None)
    areas = []
    for live, target in zip(live_areas, chosen.targets):
        with live:
            st.chat_message("user").markdown(prompt)
            with st.chat_message("assistant"):
                status = st.empty()
                reasoning = (st.expander("Thinking…", icon=":material/psychology:").empty() if target.thinking_budget
                             else st.empty())
                areas.append({"status": status, "reasoning": reasoning, "text": st.empty(), "notes": st.empty()})
    progress = LiveProgress(len(chosen.columns), repeat)
    last_paint = [0.0] * len(chosen.columns)
    # closing(): when the person interrupts (a click reruns the script), the streams still running are cancelled
    with closing(chosen.ask(ctx.client, prompt, repeat=repeat, prepared=prepared)) as events:
        for item in events:
            state = progress.apply(item)
            status = progress.status(item.column)
            now = time.monotonic()
            if now - last_paint[item.column] >= REPAINT_EVERY_S or status == "done":
                paint(areas[item.column], state, status, final=status == "done")
                last_paint[item.column] = now
    if chosen.id in {doc.id for doc in store.list_docs("comparison")}:
        chosen.save(store)  # a saved comparison stays up to date with its new turns
    st.rerun()


if st.session_state.get("cmp_send_error"):
    st.error(st.session_state.pop("cmp_send_error"), icon=":material/block:")
    if st.session_state.get("cmp_draft"):
        st.caption("Your message was not sent; here it is to copy back:")
        st.code(st.session_state["cmp_draft"], language=None)

prompt = st.chat_input("Message every column (Enter to send)", key="cmp_prompt")
if prompt:
    send(prompt)


# --- the decision table ------------------------------------------------------------------------

SUMMARY_CONFIG = {  # the deciding figures first: the slugs are long and push the rest off screen
    "target": st.column_config.TextColumn("Target"),
    "best": st.column_config.TextColumn("Best", help="cheapest: lowest median cost; fastest: lowest median latency"),
    "cost_usd": st.column_config.NumberColumn("Cost (USD)", format="$%.6f", help="median cost per request"),
    "latency_ms": st.column_config.NumberColumn("Latency", format="%.0f ms", help="median total latency"),
    "latency_min_ms": st.column_config.NumberColumn("Latency min", format="%.0f ms"),
    "latency_max_ms": st.column_config.NumberColumn("Latency max", format="%.0f ms"),
    "ttft_ms": st.column_config.NumberColumn("TTFT", format="%.0f ms", help="median time to first token"),
    "tokens_per_s": st.column_config.NumberColumn("Output tok/s", format="%.1f",
                                                  help="output tokens / (latency - TTFT)"),
    "input_tokens": st.column_config.NumberColumn("Input (uncached)", format="%d"),
    "cache_read_tokens": st.column_config.NumberColumn("Cache read", format="%d"),
    "cache_write_tokens": st.column_config.NumberColumn("Cache write", format="%d"),
    "output_tokens": st.column_config.NumberColumn("Output", format="%d"),
    "runs": st.column_config.NumberColumn("Runs", format="%d"),
    "failed": st.column_config.NumberColumn("Failed", format="%d"),
    "answered_by": st.column_config.TextColumn("Answered by"),
    "error": st.column_config.TextColumn("Error"),
}

comparison = current_comparison()
if comparison is not None and comparison.turns:
    rows = comparison.summary_rows()
    repeated = any(r["runs"] > 1 for r in rows)
    order = [c for c in SUMMARY_CONFIG if repeated or c not in ("latency_min_ms", "latency_max_ms", "runs")]
    st.markdown("#### Latest turn, side by side")
    st.dataframe(rows, column_config=SUMMARY_CONFIG, column_order=order, hide_index=True, width="stretch")
    if ctx.connection.local:
        st.caption("Local router: latency is simulated and costs are what Orq would charge for these tokens.")
    points = latency_points(comparison)
    if repeated and points:
        st.plotly_chart(latency_figure(points), width="stretch", key="cmp_latency_chart")
    actions = st.columns([1, 1, 2, 1])
    actions[0].download_button("Export JSON", comparison.to_json(), file_name=f"comparison-{comparison.id}.json",
                               mime="application/json", icon=":material/download:", on_click="ignore")
    actions[1].download_button("Table CSV", summary_csv(rows), file_name=f"comparison-{comparison.id}.csv",
                               mime="text/csv", icon=":material/table:", on_click="ignore")
    comparison.title = actions[2].text_input("Name", value=comparison.title, key=f"cmp_title_{comparison.id}",
                                             label_visibility="collapsed")
    if actions[3].button("Save", icon=":material/save:", key="cmp_save"):
        comparison.save(store)
        st.toast(f"Saved “{comparison.title}”.")
