"""Rendering helpers shared by the pages. Model output goes through st.markdown with HTML off."""

from __future__ import annotations

import streamlit as st

from orq_core.codegen import to_curl, to_python, to_typescript
from orq_core.connection import Connection
from orq_core.cost import cost_of, format_usd
from orq_core.errors import describe
from orq_core.types import Completion
from orq_core.usage import Usage


def local_banner(connection: Connection) -> None:
    if connection.local:
        st.info("Answers on this page come from the **local router**: synthetic text produced on this machine, "
                "not from Claude. Token counts, caching, latency and costs follow Claude's published rules. "
                "Set ORQ_API_KEY or choose Orq in the sidebar for real answers.", icon=":material/science:")


def show_error(error: BaseException) -> None:
    st.error(describe(error), icon=":material/error:")


def fmt_ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f} ms"


def usage_summary(usage: Usage) -> str:
    parts = [f"input {usage.input_tokens:,} uncached · {usage.cache_read_tokens:,} cache read · "
             f"{usage.cache_write_tokens:,} cache write", f"output {usage.output_tokens:,}"]
    if usage.reasoning_tokens:
        parts[-1] += f" (reasoning {usage.reasoning_tokens:,})"
    return " · ".join(parts)


def usage_line(completion: Completion, write_ttl: str = "5m", key: str = "") -> None:
    """Tokens, cost with its breakdown, TTFT, latency, who answered, finish reason."""
    try:
        cost = cost_of(completion.usage, completion.model, write_ttl)
        cost_text = format_usd(cost.total)
    except ValueError:
        cost, cost_text = None, "cost unknown (model not in catalog)"
    who = completion.model or "?"
    finish = completion.finish_reason or ("stopped" if completion.partial else "?")
    flags = " · ⚡ response cache hit" if completion.response_cache_hit else ""
    st.caption(f"{usage_summary(completion.usage)} tokens · **{cost_text}** · TTFT {fmt_ms(completion.ttft_ms)} · "
               f"total {fmt_ms(completion.latency_ms)} · answered by `{who}` · finish: {finish}{flags}")
    cache_doctor_line(completion.cache)
    if cost is not None:
        with st.popover("Cost breakdown", icon=":material/receipt:"):
            st.markdown(
                f"| item | tokens | USD |\n|---|---:|---:|\n"
                f"| uncached input | {completion.usage.input_tokens:,} | {format_usd(cost.input)} |\n"
                f"| cache read | {completion.usage.cache_read_tokens:,} | {format_usd(cost.cache_read)} |\n"
                f"| cache write ({write_ttl}) | {completion.usage.cache_write_tokens:,} | {format_usd(cost.cache_write)} |\n"
                f"| output (incl. reasoning) | {completion.usage.output_tokens:,} | {format_usd(cost.output)} |\n"
                f"| **total** | | **{format_usd(cost.total)}** |\n"
                f"| without caching | | {format_usd(cost.no_cache_total)} |")
            st.caption("Raw usage from the router:")
            st.json(completion.usage.raw or {}, expanded=False)


MAP_WIDTH = 48
MAP_COLOURS = {"read": "green", "write": "orange", "uncached": "gray"}


def prefix_map(segments) -> str:
    """The request's blocks as one bar (Streamlit colour directives, no HTML): green read from the
    cache, orange written to it, grey uncached; ┃ marks a breakpoint."""
    total = sum(s.tokens for s in segments) or 1
    pieces = []
    for segment in segments:
        width = max(1, round(segment.tokens / total * MAP_WIDTH))
        pieces.append(f":{MAP_COLOURS.get(segment.state, 'gray')}[{'█' * width}]")
        if segment.breakpoint:
            pieces.append(f":blue[┃]")
    return "".join(pieces)


def cache_doctor_line(check) -> None:
    """The cache doctor beside a usage line: the prefix map and the why sentence, with the
    comparison against what the router reported."""
    if check is None:
        return
    mark = ":material/check_circle:" if check.matched else ":material/help:" if check.verdict is None \
        else ":material/error:"
    st.caption(f"{prefix_map(check.segments)}  \n{mark} Cache doctor: {check.sentence()}  \n"
               f"predicted read {check.expected_read_tokens:,} · write {check.expected_write_tokens:,} · "
               f":green[█] read :orange[█] written :gray[█] uncached :blue[┃] breakpoint")


def code_view(payload: dict | None, base_url: str, *, abbreviate: bool = False) -> None:
    """The exact request as curl / Python / TypeScript, with $ORQ_API_KEY in place of the key."""
    if not payload:
        st.caption("Send a request to see its code.")
        return
    curl, python, typescript = st.tabs(["curl", "Python (httpx)", "TypeScript (openai)"])
    with curl:
        st.code(to_curl(payload, base_url, abbreviate=abbreviate), language="bash")
    with python:
        st.code(to_python(payload, base_url, abbreviate=abbreviate), language="python")
    with typescript:
        st.code(to_typescript(payload, base_url, abbreviate=abbreviate), language="typescript")
