"""History: this person's run log as a dashboard (spend, cache, latency, errors) and a searchable table."""

from datetime import timedelta

import streamlit as st

from orq_core.cost import format_usd
from orq_core.history import (GROUPINGS, HistoryFilter, cache_figure, choices, latency_figure, load_history,
                              spend_figure, table_rows, to_csv, today_utc, totals)
from playground_ui.session import require_context

ctx = require_context()
store = ctx.store

st.title("History")
st.caption("Every request you sent from this playground, yours only. Days are UTC.")

pages, models, statuses = choices(store)
with st.container(border=True):
    today = today_utc()
    top = st.columns([3, 2, 2, 2])  # the date range needs room for two full dates
    days = top[0].date_input("Dates", value=(today - timedelta(days=29), today), key="history_days")
    chosen_pages = top[1].multiselect("Page", pages, key="history_pages", placeholder="all pages")
    chosen_models = top[2].multiselect("Model", models, key="history_models", placeholder="all models")
    chosen_statuses = top[3].multiselect("Status", statuses, key="history_statuses", placeholder="all")
    search = st.text_input("Search", key="history_search", placeholder="model, page, error text or request id")

first_day, last_day = (days[0], days[-1]) if isinstance(days, (tuple, list)) and days else (None, None)
history_filter = HistoryFilter(first_day, last_day, tuple(chosen_pages), tuple(chosen_models),
                               tuple(chosen_statuses), search)
history = load_history(store, history_filter)
runs = history.runs
if history.truncated:
    st.warning("More requests match these dates than one page can hold: the oldest are left out. "
               "Narrow the dates to see them.")
if not runs:
    st.info("No requests match. Send one from any page, or widen the dates and filters.")
    st.stop()

summary = totals(runs)
cells = st.columns(6)
cells[0].metric("Requests", f"{summary.requests:,}")
cells[1].metric("Spend", format_usd(summary.cost_usd))
cells[2].metric("Saved by caching", format_usd(summary.saved_usd))
cells[3].metric("Cache hit rate", f"{summary.hit_rate:.0%}", help="Share of input tokens read from the cache")
cells[4].metric("Error rate", f"{summary.error_rate:.0%}", help=f"{summary.errors} of {summary.requests}")
cells[5].metric("TTFT p50 / p95", (f"{summary.ttft_p50_ms:,.0f} / {summary.ttft_p95_ms:,.0f} ms"
                                  if summary.ttft_p50_ms is not None else "–"))
st.caption("Latency p50 / p95: " + (f"{summary.latency_p50_ms:,.0f} / {summary.latency_p95_ms:,.0f} ms"
                                     if summary.latency_p50_ms is not None else "–")
           + f" · tokens: {summary.input_tokens:,} uncached in, {summary.cache_read_tokens:,} cache read, "
             f"{summary.cache_write_tokens:,} cache write, {summary.output_tokens:,} out")

by = st.radio("Spend by", GROUPINGS, horizontal=True, key="history_by")
st.plotly_chart(spend_figure(runs, by), key="history_spend")
left, right = st.columns(2)
left.plotly_chart(cache_figure(runs), key="history_cache")
right.plotly_chart(latency_figure(runs), key="history_latency")

st.subheader("Requests")
st.dataframe(table_rows(runs), hide_index=True, key="history_table")
st.download_button("Export CSV", lambda: to_csv(runs), file_name="history.csv", mime="text/csv",  # built on click
                   icon=":material/download:", on_click="ignore")
