"""Who is using the playground, on a server several people share.

Three ways, chosen by configuration:
- an authenticating proxy (oauth2-proxy and the like) puts the signed-in person in a request
  header named by ``ORQ_PLAYGROUND_USER_HEADER`` (e.g. ``X-Forwarded-Email``);
- Streamlit's own OIDC login (``st.login``) when ``[auth]`` is configured in secrets.toml;
- neither: one single user (owner ``''``), as on a laptop.

The owner is what the store scopes every row by, and what the local router's per-person key is
derived from. Nothing here imports Streamlit: the UI passes in headers and the login's user info.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import unicodedata
from dataclasses import dataclass
from typing import Mapping

from .errors import OrqError

USER_HEADER_ENV = "ORQ_PLAYGROUND_USER_HEADER"
MAX_OWNER_LENGTH = 320  # the longest e-mail address RFC 3696 allows
LOOPBACK_ADDRESSES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})

# Per process: a person's local-router key cannot be guessed from their address, and a new
# process starts every person's local-router cache cold anyway.
_LOCAL_KEY_SALT = secrets.token_bytes(16)


class IdentityError(OrqError):
    """The server expects to know who is asking, and this request does not say (or says it oddly)."""


@dataclass(frozen=True)
class Identity:
    owner: str
    """What the store scopes rows by: a lower-cased e-mail, ``sub:...`` for a login without one,
    or '' for the single user."""
    source: str
    """'header', 'login' or 'single-user'."""

    @property
    def shared(self) -> bool:
        return self.source != "single-user"


SINGLE_USER = Identity("", "single-user")


def normalize_owner(value: str, *, origin: str) -> str:
    """Trimmed; e-mail addresses lower-cased (the proxy and the login spell them differently)."""
    owner = unicodedata.normalize("NFC", value.strip())
    if not owner:
        raise IdentityError(f"{origin} is empty, so the playground cannot tell whose work this is.")
    if len(owner) > MAX_OWNER_LENGTH or any(unicodedata.category(c).startswith("C") for c in owner):
        raise IdentityError(f"{origin} does not look like a user name or e-mail address (too long, or control "
                            "characters). Check the sign-in proxy's configuration.")
    return owner.lower() if "@" in owner else owner


def identity_from_header(headers: Mapping[str, str], header_name: str) -> Identity:
    """The person the authenticating proxy vouches for. Refused with a sentence when the header is
    missing: the app is being reached around the proxy, and must not fall back to a shared user."""
    wanted = header_name.strip().lower()
    value = next((v for k, v in headers.items() if k.lower() == wanted), None)
    if value is None or not value.strip():
        raise IdentityError(
            f"This server gives each person their own work using the {header_name} header set by its sign-in "
            f"proxy, and this request came without it. Open the playground through the proxy's address; if you "
            f"did, ask whoever runs the server to make the proxy pass {header_name}.")
    return Identity(normalize_owner(value, origin=f"The {header_name} header"), "header")


def identity_from_login(user_info: Mapping[str, object]) -> Identity:
    """The person Streamlit's OIDC login signed in (``st.user``): their e-mail, else the subject."""
    email = user_info.get("email")
    if isinstance(email, str) and email.strip():
        return Identity(normalize_owner(email, origin="The login's e-mail"), "login")
    subject = user_info.get("sub")
    if isinstance(subject, str) and subject.strip():
        return Identity("sub:" + normalize_owner(subject, origin="The login's subject"), "login")
    raise IdentityError("The sign-in provider returned neither an e-mail nor a subject, so the playground cannot "
                        "tell whose work this is. Ask whoever runs the server to request the 'email' scope.")


def listens_beyond_loopback(address: str | None) -> bool:
    """Streamlit listens on every interface unless ``server.address`` names a loopback one."""
    return (address or "").strip().lower() not in LOOPBACK_ADDRESSES


def local_router_key(base_key: str, owner: str) -> str:
    """The key a person's requests carry to the local router. The router keys its prompt cache,
    response cache and clock by a digest of the key, so each person gets their own; the single
    user keeps the router's plain key."""
    if not owner:
        return base_key
    tag = hmac.new(_LOCAL_KEY_SALT, owner.encode("utf-8"), hashlib.sha256).hexdigest()[:24]
    return f"{base_key}-{tag}"
