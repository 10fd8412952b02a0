"""Who is asking: the proxy's header, the OIDC login, or the single user; and each person's local-router key."""

import pytest

from orq_core.connection import resolve_connection
from orq_core.errors import describe
from orq_core.identity import (SINGLE_USER, Identity, IdentityError, identity_from_header, identity_from_login,
                               listens_beyond_loopback, local_router_key)


def test_the_proxy_header_names_the_owner_whatever_its_case():
    headers = {"Host": "play.example.com", "x-forwarded-email": "  Ann.Lee@Example.COM "}
    assert identity_from_header(headers, "X-Forwarded-Email") == Identity("ann.lee@example.com", "header")
    assert identity_from_header({"X-Forwarded-User": "ann"}, "x-forwarded-user").owner == "ann"


def test_a_missing_header_is_refused_with_a_sentence_not_a_shared_user():
    with pytest.raises(IdentityError) as caught:
        identity_from_header({"Host": "x"}, "X-Forwarded-Email")
    assert describe(caught.value) == (
        "This server gives each person their own work using the X-Forwarded-Email header set by its sign-in proxy, "
        "and this request came without it. Open the playground through the proxy's address; if you did, ask whoever "
        "runs the server to make the proxy pass X-Forwarded-Email.")
    with pytest.raises(IdentityError):
        identity_from_header({"X-Forwarded-Email": "   "}, "X-Forwarded-Email")


def test_an_odd_header_value_is_refused():
    with pytest.raises(IdentityError) as caught:
        identity_from_header({"X-Forwarded-Email": "ann\x00@example.com"}, "X-Forwarded-Email")
    assert describe(caught.value) == (
        "The X-Forwarded-Email header does not look like a user name or e-mail address (too long, or control "
        "characters). Check the sign-in proxy's configuration.")
    with pytest.raises(IdentityError):
        identity_from_header({"X-Forwarded-Email": "a" * 321}, "X-Forwarded-Email")


def test_the_login_gives_the_email_else_the_subject():
    assert identity_from_login({"email": "Bob@Example.com", "sub": "123"}) == Identity("bob@example.com", "login")
    assert identity_from_login({"sub": "google-oauth2|123"}) == Identity("sub:google-oauth2|123", "login")
    with pytest.raises(IdentityError) as caught:
        identity_from_login({"name": "Bob"})
    assert "request the 'email' scope" in describe(caught.value)


def test_the_same_person_by_header_or_login_is_one_owner():
    assert identity_from_header({"X-Forwarded-Email": "Ann@Example.com"}, "X-Forwarded-Email").owner == \
        identity_from_login({"email": "ann@example.com"}).owner


def test_single_user_is_the_empty_owner_and_not_shared():
    assert SINGLE_USER.owner == "" and not SINGLE_USER.shared
    assert Identity("ann@example.com", "header").shared


@pytest.mark.parametrize("address, beyond", [(None, True), ("", True), ("0.0.0.0", True), ("10.0.0.5", True),
                                             ("127.0.0.1", False), ("localhost", False), ("::1", False)])
def test_which_addresses_reach_beyond_loopback(address, beyond):
    assert listens_beyond_loopback(address) is beyond


def test_each_person_gets_their_own_local_router_key_and_the_single_user_the_plain_one():
    ann, bob = local_router_key("local-router", "ann@example.com"), local_router_key("local-router", "bob@example.com")
    assert local_router_key("local-router", "") == "local-router"
    assert ann != bob and ann == local_router_key("local-router", "ann@example.com")
    assert ann.startswith("local-router-") and len(ann) == len("local-router-") + 24
    assert "ann" not in ann.removeprefix("local-router-")


def test_the_local_connection_carries_the_persons_key(monkeypatch):
    monkeypatch.setenv("ORQ_LOCAL_ROUTER_TIME_SCALE", "0")
    single = resolve_connection(force_local=True)
    ann = resolve_connection(force_local=True, owner="ann@example.com")
    assert ann.local and ann.base_url == single.base_url
    assert ann.api_key == local_router_key(single.api_key, "ann@example.com") != single.api_key


def test_the_app_without_the_configured_header_shows_the_sentence_and_nothing_else(page_env, monkeypatch):
    from page_support import open_app

    monkeypatch.setenv("ORQ_PLAYGROUND_USER_HEADER", "X-Forwarded-Email")
    at = open_app()
    assert [e.value for e in at.error] == [
        "This server gives each person their own work using the X-Forwarded-Email header set by its sign-in proxy, "
        "and this request came without it. Open the playground through the proxy's address; if you did, ask whoever "
        "runs the server to make the proxy pass X-Forwarded-Email."]
    assert not at.chat_input and not at.exception


def test_single_user_mode_beyond_loopback_says_so_in_the_sidebar(page_env):
    from page_support import open_app

    at = open_app()
    assert any(c.value.startswith(":material/group: Single-user mode on a server others can reach")
               for c in at.sidebar.caption)
    assert not any("Single-user" in w.value for w in at.warning)
