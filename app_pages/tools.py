"""Tools: definitions edited as JSON Schema, built-in tools that really run, an automatic or a
step-by-step loop, and a trace of every step with its tokens and cost."""

import streamlit as st

from orq_core.cost import format_usd
from orq_core.errors import OrqError
from orq_core.tool_session import (ANSWER, AWAITING, ERROR, READY, STEP_LIMIT, TOOL_CHOICE_WORDS, ToolSession,
                                   ToolSettings, add_template, choice_label, combine_tools, definitions_json,
                                   load_trace_json, tool_prefix_tokens)
from orq_core.tools import BUILTIN_TOOLS, FACTS, FACTS_NOTE, TEMPLATES
from playground_ui.render import code_view, fmt_ms, local_banner, show_error, usage_line, usage_summary
from playground_ui.session import require_context

ctx = require_context()
store = ctx.store
EDITOR = "tool_editor"
MODES = {"auto": "Automatic loop", "step": "Step by step"}
st.session_state.setdefault(EDITOR, add_template("", "get_weather")[0])

st.title("Tools")
local_banner(ctx.connection)


# --- the tools on offer ------------------------------------------------------------------------

def insert_template() -> None:
    text, problem = add_template(st.session_state[EDITOR], st.session_state["template_choice"])
    st.session_state[EDITOR] = text
    st.session_state["template_problem"] = problem


with st.expander("Tools offered to the model", expanded=True, icon=":material/build:"):
    left, right = st.columns(2)
    with left:
        builtins = st.multiselect("Built-in tools (they run on this machine)", list(BUILTIN_TOOLS),
                                  default=list(BUILTIN_TOOLS), key="builtin_tools",
                                  help="calculator: arithmetic parsed safely, never eval'd · current_time: "
                                       "a time zone's clock · convert_units · lookup_table: the table below.")
        with st.popover("Built-in definitions", icon=":material/data_object:"):
            st.code(definitions_json([BUILTIN_TOOLS[n].definition for n in builtins]), language="json")
        st.caption(f"**lookup_table** reads this table. {FACTS_NOTE}")
        st.dataframe([{"country": country, **facts} for country, facts in FACTS.items()], hide_index=True,
                     height=220)
    with right:
        t1, t2 = st.columns([3, 1], vertical_alignment="bottom")
        t1.selectbox("Start from a template", list(TEMPLATES), key="template_choice")
        t2.button("Add", on_click=insert_template, icon=":material/add:", use_container_width=True)
        if st.session_state.get("template_problem"):
            st.warning(st.session_state["template_problem"])
        st.text_area("Your tools (JSON: a list of {name, description, parameters})", key=EDITOR, height=300,
                     help="Names: letters, digits, _ and -, at most 64. Parameters: a JSON Schema object. "
                          "Nothing runs these tools: in a run you type what they return.")

toolset = combine_tools(builtins, st.session_state[EDITOR], context_window=ctx.model.context_window,
                        model_label=ctx.model.label)
with right:
    if toolset.problems:
        st.error("These definitions are not sent until fixed:\n\n" + "\n".join(f"- {p}" for p in toolset.problems),
                 icon=":material/rule:")
    elif toolset.user_names:
        st.success(f"Valid: {', '.join(toolset.user_names)} (answered by you during a run) · all definitions "
                   f"≈ {toolset.tokens:,} tokens of {ctx.model.label}'s {ctx.model.context_window:,}",
                   icon=":material/check:")


# --- how to run --------------------------------------------------------------------------------

choices = [*TOOL_CHOICE_WORDS, *toolset.names]
if st.session_state.get("tool_choice") not in choices:
    st.session_state["tool_choice"] = "auto"
model = ctx.model
with st.expander("Run settings", expanded=True, icon=":material/tune:"):
    c1, c2, c3, c4 = st.columns(4)
    mode = c1.radio("Run mode", list(MODES), format_func=MODES.get, key="tool_mode",
                    help="Step by step: you see every call, can edit its arguments or result, or mark it as "
                         "an error, before it is sent.")
    max_steps = c1.number_input("Step limit (model calls)", min_value=1, max_value=25, value=5, key="tool_max_steps")
    tool_choice = c2.selectbox("tool_choice", choices, key="tool_choice",
                               format_func=lambda c: c if c in TOOL_CHOICE_WORDS else f"only {c}")
    forced = tool_choice not in ("auto", "none")
    force_every_step = c2.toggle("Keep forcing it after step 1", key="tool_force", disabled=not forced,
                                 help="By default a forced choice applies to the first step only, so the model can "
                                      "answer; kept on, the model must call a tool every time and the step limit "
                                      "ends the run.")
    parallel = c3.toggle("Parallel tool calls", value=True, key="tool_parallel",
                         help="Off: sends parallel_tool_calls=false, at most one call per step.")
    cache_tools = c3.toggle("Cache the tool definitions", key="tool_cache",
                            help="A cache breakpoint on the last definition: later steps and runs read the tool "
                                 "prefix from the cache.")
    cache_ttl = c3.segmented_control("TTL", ["5m", "1h"], default="5m", key="tool_cache_ttl",
                                     disabled=not cache_tools) or "5m"
    max_tokens = c4.number_input("max_tokens", min_value=1, max_value=model.max_output, value=1024, step=256,
                                 key="tool_max_tokens")
    prefix = toolset.tokens or tool_prefix_tokens(toolset.definitions)
    c4.caption(f"Tool definitions ≈ {prefix:,} tokens; {model.label} caches prefixes from "
               f"{model.min_cacheable:,} tokens" + (" (too short: nothing will be cached)."
                                                    if cache_tools and prefix < model.min_cacheable else "."))
    system = st.text_area("System prompt (optional)", key="tool_system", height=68)

settings = ToolSettings(model=ctx.slug, mode=mode, tool_choice=tool_choice, parallel_calls=parallel,
                        force_every_step=force_every_step and forced, max_steps=int(max_steps),
                        cache_tools=cache_tools, cache_ttl=cache_ttl, max_tokens=int(max_tokens), system=system)


# --- run -----------------------------------------------------------------------------------------

def live_step(step) -> None:
    calls = ", ".join(c.call.name for c in step.calls) or "no tool call"
    st.write(f"Step {step.index}: {calls} · {fmt_ms(step.elapsed_ms)}")


def run_action(action) -> None:
    """Runs a session action with progress shown; errors become a message, nothing is lost."""
    session = st.session_state["tool_session"]
    label = "Running the tool loop…" if session.settings.mode == "auto" else "Calling the model…"
    with st.status(label, expanded=True) as status:
        action(session, live_step if session.settings.mode == "auto" else None)
        status.update(label="Done", state="complete")
    session.save(store)
    st.rerun()


prompt = st.text_area("Your message", value="What is 1234 * 5678?", key="tool_prompt", height=80)
b1, b2, _ = st.columns([1, 1, 4])
start = b1.button("Run", type="primary", icon=":material/play_arrow:", disabled=bool(toolset.problems) or not prompt.strip(),
                  help="Fix the tool definitions first." if toolset.problems else None)
if b2.button("Clear", icon=":material/delete_sweep:"):
    st.session_state.pop("tool_session", None)
    st.rerun()
if start:
    try:
        st.session_state["tool_session"] = ToolSession.start(settings, toolset.definitions, prompt)
    except OrqError as error:
        show_error(error)
    else:
        run_action(lambda s, on_step: s.advance(ctx.client, ctx.guard, on_step))


# --- the trace ---------------------------------------------------------------------------------

def render_call(session: ToolSession, executed) -> None:
    call = executed.call
    who = "built-in" if call.name in BUILTIN_TOOLS else "your tool"
    st.markdown(f":material/build: **{call.name}** ({who}) · `{call.id}`")
    st.code(call.arguments or "{}", language="json")
    if not executed.valid:
        st.warning("Invalid arguments, so the tool was not run; the model gets this error: "
                   + "; ".join(executed.problems), icon=":material/block:")
    label = "Error result" if executed.is_error else "Result"
    timing = f" · ran in {fmt_ms(executed.elapsed_ms)}" if executed.ran else ""
    st.caption(f"{label}{timing}")
    st.code(executed.result, language=None)
    for note in session.notes.get(call.id, []):
        st.caption(f":material/edit: {note}")


def calls_text(n: int) -> str:
    return f"{n} model call{'' if n == 1 else 's'}"


def render_step(session: ToolSession, step, total, waiting: bool, final: bool) -> None:
    summary = step.request_summary
    with st.container(border=True):
        cached = f" · tool definitions cached ({summary['cache_tools_ttl']})" if summary.get("cache_tools_ttl") else ""
        st.markdown(f"**Step {step.index}** · request: {summary['messages']} messages, "
                    f"tools {', '.join(summary['tools']) or 'none'}, tool_choice "
                    f"`{choice_label(summary.get('tool_choice'))}`{cached} · {fmt_ms(step.elapsed_ms)}")
        if step.error:
            st.error(step.error, icon=":material/error:")
        completion = step.completion
        if completion is not None:
            if completion.text and final:
                st.caption("The final answer is shown below the trace.")
            elif completion.text:
                st.markdown(completion.text)
            if waiting:
                st.caption(f"{len(step.calls)} tool call(s) requested: see below.")
            for executed in [] if waiting else step.calls:
                render_call(session, executed)
            usage_line(completion, "1h" if summary.get("cache_tools_ttl") == "1h" else "5m",
                       key=f"step_{session.id}_{step.index}")
        st.caption(f"Running total after step {step.index}: {usage_summary(total.usage)} tokens · "
                   f"**{format_usd(total.cost_usd)}**")


def widget_key(session: ToolSession, what: str, call_id: str) -> str:
    return f"{what}_{session.id}_{len(session.steps)}_{call_id}"


def edit_arguments(session: ToolSession, call_id: str) -> None:
    before = next(c for c in session.pending if c.call.id == call_id)
    updated = session.edit_arguments(call_id, st.session_state[widget_key(session, "args", call_id)])
    result_key = widget_key(session, "result", call_id)
    if updated.ran or not updated.valid:
        st.session_state[result_key] = updated.result
    elif not before.valid:
        st.session_state[result_key] = ""


def render_pending(session: ToolSession) -> None:
    st.subheader(f"{len(session.pending)} tool call{'s' if len(session.pending) != 1 else ''} waiting for you")
    st.caption("Built-in tools already ran; type the result of your own tools. You can edit arguments "
               "(checked against the schema again: invalid ones are not run and go back as an error), "
               "edit a result, or send it as an error.")
    for executed in session.pending:
        call = executed.call
        args_key, result_key = widget_key(session, "args", call.id), widget_key(session, "result", call.id)
        st.session_state.setdefault(args_key, call.arguments)
        st.session_state.setdefault(result_key, executed.result if executed.ran or not executed.valid else "")
        with st.container(border=True):
            st.markdown(f":material/build: **{call.name}** ({'built-in' if call.name in BUILTIN_TOOLS else 'your tool'})"
                        f" · `{call.id}`")
            a, r = st.columns(2)
            a.text_area("Arguments (JSON)", key=args_key, height=110, on_change=edit_arguments,
                        args=(session, call.id))
            if not executed.valid:
                a.warning("Not valid, so the tool will not run: " + "; ".join(executed.problems),
                          icon=":material/block:")
            r.text_area(f"Result of {call.name}", key=result_key, height=110, disabled=not executed.valid,
                        placeholder="Type what the tool returns…")
            r.checkbox("Send as an error", key=widget_key(session, "error", call.id), disabled=not executed.valid)
    more = "and continue the loop" if session.settings.mode == "auto" else "to the model"
    if st.button(f"Send results {more}", type="primary", icon=":material/send:"):
        results = {c.call.id: st.session_state[widget_key(session, "result", c.call.id)] for c in session.pending}
        errors = [c.call.id for c in session.pending if st.session_state.get(widget_key(session, "error", c.call.id))]
        missing = session.missing_answers(results)
        if missing:
            st.warning(f"Type a result for {', '.join(missing)} first.")
        else:
            run_action(lambda s, on_step: s.send(results, errors, ctx.client, ctx.guard, on_step))


session: ToolSession | None = st.session_state.get("tool_session")
if session is not None and session.status != READY:
    st.subheader("Trace")
    totals = session.running_totals()
    for step, total in zip(session.steps, totals):
        last = step is session.steps[-1]
        render_step(session, step, total, waiting=last and session.status == AWAITING,
                    final=last and session.status == ANSWER)
    if session.status == AWAITING:
        render_pending(session)
    elif session.status == ANSWER:
        st.markdown("#### Final answer")
        with st.chat_message("assistant"):
            st.markdown(session.final_text or "_(no text)_")
    elif session.status == STEP_LIMIT:
        st.warning(f"Stopped at the step limit ({calls_text(session.settings.max_steps)}) before a final answer.",
                   icon=":material/front_hand:")
    elif session.status == ERROR:
        st.error(f"The run stopped: {session.error}", icon=":material/error:")
    if totals:
        st.markdown(f"**Total:** {calls_text(len(session.steps))} · {usage_summary(totals[-1].usage)} tokens · "
                    f"**{format_usd(totals[-1].cost_usd)}**")
    x1, x2 = st.columns([1, 3])
    x1.download_button("Export trace (JSON)", session.to_json(), file_name=f"tool-trace-{session.id}.json",
                       mime="application/json", icon=":material/download:", on_click="ignore")
    with x2.expander("View code of the first request", icon=":material/code:"):
        code_view(session.first_request(), ctx.connection.base_url)

with st.sidebar:
    saved = store.list_docs("tool_trace")
    if saved:
        st.markdown("### Saved tool traces")
        labels = {doc.id: doc.name for doc in saved[:50]}
        chosen = st.selectbox("Trace", list(labels), format_func=labels.get, key="saved_trace")
        text = load_trace_json(store, chosen) if chosen else None
        if text:
            st.download_button("Download", text, file_name=f"tool-trace-{chosen}.json", mime="application/json",
                               icon=":material/download:", on_click="ignore", key="download_saved_trace")
