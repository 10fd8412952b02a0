"""Who is in this browser session: the proxy's header, Streamlit's login, or the single user.

The rules live in ``orq_core.identity``; this file only reads Streamlit's headers, secrets and
``st.user``, and renders the sidebar line or the sign-in screen.
"""

from __future__ import annotations

import os

import streamlit as st

from orq_core.errors import describe
from orq_core.identity import (SINGLE_USER, USER_HEADER_ENV, Identity, IdentityError, identity_from_header,
                               identity_from_login, listens_beyond_loopback)


def secret(name: str):
    """A value from .streamlit/secrets.toml, or None (shared by the sidebar and identity)."""
    try:
        return st.secrets.get(name)
    except Exception:  # no secrets.toml at all is normal
        return None


def user_header() -> str:
    return (os.environ.get(USER_HEADER_ENV) or secret("user_header") or "").strip()


def login_configured() -> bool:
    """Streamlit's OIDC login is on when secrets.toml has an [auth] section."""
    return bool(secret("auth"))


def current_identity() -> Identity:
    """The person using this session; stops the page with a sentence (or the sign-in button) when
    the server expects to know who it is and does not."""
    try:
        header = user_header()
        if header:
            return identity_from_header(dict(st.context.headers or {}), header)
        if login_configured():
            if not st.user.is_logged_in:
                _sign_in_screen()
            return identity_from_login(st.user.to_dict())
    except IdentityError as error:
        st.error(describe(error))
        st.stop()
    return SINGLE_USER


def _sign_in_screen() -> None:
    st.title("Claude playground")
    st.info("Sign in to use the playground: your conversations, experiments and history are yours alone.")
    st.button("Sign in", on_click=st.login, type="primary")
    st.stop()


def identity_sidebar(identity: Identity) -> None:
    """Who you are, or a note that everyone reaching this server shares one single user."""
    if identity.shared:
        st.sidebar.caption(f"Signed in as **{identity.owner}**: you see only your own work.")
        if identity.source == "login":
            st.sidebar.button("Sign out", on_click=st.logout, key="sign_out")
    elif listens_beyond_loopback(st.get_option("server.address")):
        # A caption, not st.warning: the note is true on every default `streamlit run`, and a page's
        # warnings are for what that page has to say.
        st.sidebar.caption(":material/group: Single-user mode on a server others can reach: everyone here shares one history and "
                           f"one set of saved work. Set {USER_HEADER_ENV} (behind a sign-in proxy) or [auth] in "
                           "secrets.toml to give each person their own (README: Deploy for a team).")
