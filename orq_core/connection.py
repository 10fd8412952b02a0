"""Which router to talk to: Orq (a key is configured) or the embedded local router (no key).

The pages and the CLI never know which one they talk to: both are a base URL and a key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping

DEFAULT_BASE_URL = "https://api.orq.ai/v2/router"


@dataclass(frozen=True)
class Connection:
    base_url: str
    api_key: str = field(repr=False)
    local: bool = False

    @property
    def label(self) -> str:
        return "Local router (synthetic answers)" if self.local else "Orq AI Router"

    def key_hint(self) -> str:
        """Safe to show: never more than the last 4 characters."""
        if self.local:
            return "not needed (local router)"
        return f"configured (…{self.api_key[-4:]})" if len(self.api_key) >= 12 else "configured"


def clean_key(key: str | None) -> str:
    """Keys pasted from a dashboard often carry spaces or a newline; a key never contains them."""
    return "".join((key or "").split())


def resolve_connection(api_key: str | None = None, base_url: str | None = None,
                       env: Mapping[str, str] | None = None, *, force_local: bool = False,
                       owner: str = "") -> Connection:
    """A typed key wins over ORQ_API_KEY; with no key at all, the local router (started on first use),
    reached with ``owner``'s own key so their cache and clock are theirs alone."""
    env = os.environ if env is None else env
    key = clean_key(api_key) or clean_key(env.get("ORQ_API_KEY"))
    if key and not force_local:
        url = (base_url or env.get("ORQ_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        return Connection(url, key, local=False)
    from .emulator.server import get_local_router

    from .identity import local_router_key

    router = get_local_router()
    return Connection(router.base_url, local_router_key(router.api_key, owner), local=True)


def make_client(connection: Connection | None = None, *, page: str = "cli", store=None, **options):
    """An OrqClient for the connection, logging every request to the run log."""
    from .cache_doctor import doctor_for
    from .client import OrqClient
    from .store import Store

    connection = connection or resolve_connection()
    run_log = store if store is not None else Store.default()
    options.setdefault("doctor", doctor_for(connection.base_url, connection.api_key, run_log))
    return OrqClient(connection.base_url, connection.api_key, run_log=run_log, page=page, **options)


def add_local_option(parser) -> None:
    """``--local`` for every CLI command that sends requests."""
    parser.add_argument("--local", action="store_true", help="use the local router even when ORQ_API_KEY is set")
