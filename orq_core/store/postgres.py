"""The shared backend: PostgreSQL through psycopg 3, for several app instances behind a load balancer.

One connection per store (autocommit), shared across threads under a lock; it is opened again
when the server dropped it (a restart, an idle timeout). SQL is written once with ``?``
placeholders for both backends and turned into psycopg's ``%s`` here.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator
from urllib.parse import urlsplit, urlunsplit

from ..errors import StoreUnavailable

# Any constant: the key of the advisory lock that makes concurrent migrations take turns.
_MIGRATION_LOCK_KEY = 0x6F72715F706C6179  # "orq_play"


def is_postgres_url(value: str) -> bool:
    return value.startswith(("postgresql://", "postgres://"))


def redact_url(url: str) -> str:
    """The URL without its password, safe for a page or a log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class PostgresBackend:
    dialect = "postgres"

    def __init__(self, url: str, *, connect_timeout: float = 10.0):
        self.url = url
        self.location = f"PostgreSQL {redact_url(url)}"
        self._connect_timeout = connect_timeout
        self._lock = threading.RLock()
        self._conn = self._connect()

    def _connect(self):
        import psycopg

        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=int(self._connect_timeout))
        except psycopg.Error as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise StoreUnavailable(
                f"Could not connect to {self.location}: {redact_url(reason)}. Check that the server runs and that "
                "the URL's host, port, database, user and password are right.") from None

    def _live(self):
        if self._conn.closed or self._conn.broken:
            self._conn = self._connect()
        return self._conn

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._live().execute(_pg(sql), params).fetchall()

    def execute(self, sql: str, params: tuple = ()) -> int:
        with self._lock:
            return self._live().execute(_pg(sql), params).rowcount

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock, self._live().transaction():
            yield

    @contextmanager
    def migration_transaction(self) -> Iterator[None]:
        with self.transaction():
            self.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK_KEY,))
            yield

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _pg(sql: str) -> str:
    return sql.replace("?", "%s")
