"""Per-browser-session state shared by all pages: connection, client, model choice, spend.

Streamlit code lives here and in ``render.py``; everything else is in ``orq_core``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import streamlit as st

from orq_core.budget import BudgetDefaults, SessionSpend, check_budget
from orq_core.catalog import DEFAULT_MODEL, Model, Target, catalog
from orq_core.connection import DEFAULT_BASE_URL, Connection, clean_key, resolve_connection
from orq_core.errors import OrqError, describe
from orq_core.store import Store
from playground_ui.identity import current_identity, identity_sidebar, secret

LOCAL, ORQ = "Local router", "Orq"
POOL_CONNECTIONS = 128
"""A Batch runs up to 32 requests per target, 4 targets, on the session's one client."""


@dataclass
class PageContext:
    connection: Connection
    client: object
    target: Target
    spend: SessionSpend
    budget_usd: float
    store: Store

    @property
    def slug(self) -> str:
        return self.target.slug

    @property
    def model(self) -> Model:
        return self.target.model

    def guard(self, payload: dict) -> None:
        """Raises SpendGuardError before anything is sent when the budget could be passed."""
        check_budget(payload, self.spend.total_usd, self.budget_usd)


def configured_key() -> str:
    """A key from the environment or secrets.toml (never shown, never pre-filled)."""
    return clean_key(os.environ.get("ORQ_API_KEY") or secret("ORQ_API_KEY"))


def default_budget(connection_kind: str) -> float:
    value = os.environ.get("ORQ_SPEND_BUDGET_USD") or secret("spend_budget_usd")
    if value not in (None, ""):
        try:
            return float(value)
        except (TypeError, ValueError):
            pass
    defaults = BudgetDefaults()
    return defaults.orq_usd if connection_kind == ORQ else defaults.local_usd


def _connection_choice(owner: str) -> Connection | None:
    has_key = bool(configured_key())
    kind = st.sidebar.radio("Connection", [LOCAL, ORQ], index=1 if has_key else 0, horizontal=True,
                            key="connection_kind",
                            help="Local router: a stand-in on this machine with synthetic answers; no key needed.")
    if kind == LOCAL:
        return resolve_connection(force_local=True, owner=owner)
    if has_key:
        st.sidebar.caption(f"API key: {Connection('', configured_key()).key_hint()} from the environment")
    typed = st.sidebar.text_input("API key", type="password", key="typed_api_key", value="",
                                  placeholder="paste a key (kept for this browser session only)",
                                  help="Overrides ORQ_API_KEY for this browser session.")
    base_url = st.sidebar.text_input("Base URL", value=os.environ.get("ORQ_BASE_URL") or DEFAULT_BASE_URL,
                                     key="base_url")
    key = clean_key(typed) or configured_key()
    if not key:
        st.sidebar.warning("No API key: paste one above, or switch to the local router.")
        return None
    if not key.isascii():
        st.sidebar.error("The API key has characters an API key never has (letters outside ASCII): "
                         "paste it again from Orq's dashboard.")
        return None
    return resolve_connection(api_key=key, base_url=base_url)


def _client_for(connection: Connection, spend: SessionSpend, store: Store):
    """One pooled client per session and connection; rebuilt when the connection changes. The cache
    doctor's ledger lives in the person's own store (two people may share one Orq key)."""
    from orq_core.cache_doctor import doctor_for
    from orq_core.client import OrqClient

    marker = (connection.base_url, hash(connection.api_key), store.owner, id(spend))
    if st.session_state.get("_client_marker") != marker:
        old = st.session_state.get("_client")
        if old is not None:
            old.close()
        st.session_state["_client"] = OrqClient(connection.base_url, connection.api_key, run_log=spend,
                                                page="playground", max_connections=POOL_CONNECTIONS,
                                                doctor=doctor_for(connection.base_url, connection.api_key, store))
        st.session_state["_client_marker"] = marker
    return st.session_state["_client"]


def _ping(client) -> tuple[float, str, bool]:
    try:
        return time.monotonic(), f"reachable, {client.ping():.0f} ms", True
    except OrqError as error:
        return time.monotonic(), describe(error), False


def _typed_in_sidebar() -> bool:
    """A key or base URL typed in this session rather than configured: a half-typed pair must not
    send the key anywhere, so it is tested only on request."""
    configured_url = os.environ.get("ORQ_BASE_URL") or DEFAULT_BASE_URL
    return bool(clean_key(st.session_state.get("typed_api_key"))) or \
        (st.session_state.get("base_url") or configured_url) != configured_url


def _ping_status(client, connection: Connection) -> None:
    cache = st.session_state.setdefault("_ping", {})
    marker = (connection.base_url, hash(connection.api_key))
    cached = cache.get(marker)
    if not connection.local and _typed_in_sidebar():
        if st.sidebar.button("Test connection", key="test_connection", icon=":material/network_check:"):
            cached = cache[marker] = _ping(client)
        if cached is None:
            st.sidebar.caption("Not tested yet: check the base URL, then press Test connection. Nothing is sent "
                               "with the key before that.")
            return
    elif not cached or time.monotonic() - cached[0] > 30:
        cached = cache[marker] = _ping(client)
    (st.sidebar.success if cached[2] else st.sidebar.error)(f"{connection.label}: {cached[1]}")


def model_label(model: Model) -> str:
    p = model.prices
    return f"{model.label} · ${p.input:g}/${p.output:g} per MTok · {model.context_window // 1000}K"


def _target_choice() -> Target:
    models = list(catalog().models)
    default_id = DEFAULT_MODEL.split("/")[-1]
    model = st.sidebar.selectbox("Model", models, format_func=model_label, key="model_choice",
                                 index=next(i for i, m in enumerate(models) if m.id == default_id))
    providers = [catalog().provider(p) for p in model.providers]
    provider = st.sidebar.selectbox("Provider", providers, format_func=lambda p: p.label, key="provider_choice")
    return Target(model, provider)


def person_store(owner: str) -> Store:
    """The store seen by the person in this browser session: only their own documents and runs.
    A store that cannot be opened stops the app with a sentence (never a traceback)."""
    try:
        return Store.default().for_owner(owner)
    except OrqError as error:
        st.error(describe(error))
        st.stop()


def page_context() -> PageContext | None:
    """Render the shared sidebar and return what a page needs; None when no connection is usable."""
    identity = current_identity()
    store = person_store(identity.owner)
    identity_sidebar(identity)
    st.sidebar.markdown("### Connection")
    if st.session_state.get("_spend_owner") != identity.owner:  # a sign-out and in starts a new tally
        st.session_state["_spend"] = SessionSpend(store)
        st.session_state["_spend_owner"] = identity.owner
    spend = st.session_state["_spend"]
    connection = _connection_choice(identity.owner)
    st.sidebar.markdown("### Model")
    target = _target_choice()
    kind = st.session_state.get("connection_kind", LOCAL)
    budget = st.sidebar.number_input("Spend guard (USD, 0 = off)", min_value=0.0, step=0.5, format="%.2f",
                                     value=default_budget(kind), key=f"budget_{kind}",
                                     help="A request that could take this session past the budget is refused "
                                          "before it is sent (input estimated, output counted at max_tokens).")
    st.sidebar.metric("Spent this session", f"${spend.total_usd:.4f}", help=f"{spend.requests} requests")
    if connection is None:
        return None
    client = _client_for(connection, spend, store)
    _ping_status(client, connection)
    if connection.local:
        st.sidebar.caption("Figures show what Orq would charge for these tokens; the local router bills nothing.")
    return PageContext(connection, client, target, spend, budget, store)


def require_context() -> PageContext:
    """The context app.py built for this run; stops the page with a clear note when there is none."""
    ctx = st.session_state.get("ctx")
    if ctx is None:
        st.warning("No usable connection: paste an API key in the sidebar, or choose the local router.")
        st.stop()
    return ctx
