"""The shared backend: PostgreSQL through psycopg 3, for several app instances behind a load balancer.

A pool of connections per store (psycopg_pool, autocommit), so one person's slow History load
does not hold up another's run-log write on the same instance. A connection idle for a while is
checked as it is taken and opened again when the server dropped it (a restart, an idle timeout). A transaction
keeps its connection for the thread that opened it. SQL is written once with ``?`` placeholders
for both backends and turned into psycopg's ``%s`` here.
"""

from __future__ import annotations

import threading
import time
import weakref
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
    max_connections = 8
    """Per app instance: Streamlit runs each browser session's script on its own thread."""

    def __init__(self, url: str, *, connect_timeout: float = 10.0):
        self.url = url
        self.location = f"PostgreSQL {redact_url(url)}"
        self._connect_timeout = connect_timeout
        self._held = threading.local()  # the connection of the calling thread's open transaction
        self._returned_at: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._connect().close()  # a wrong URL is a sentence now, not a pool retrying in the background
        self._pool = self._open_pool()

    def _connect(self):
        import psycopg

        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=int(self._connect_timeout))
        except psycopg.Error as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise StoreUnavailable(
                f"Could not connect to {self.location}: {redact_url(reason)}. Check that the server runs and that "
                "the URL's host, port, database, user and password are right.") from None

    def _open_pool(self):
        from psycopg_pool import ConnectionPool

        return ConnectionPool(self.url, min_size=1, max_size=self.max_connections, num_workers=1, open=True,
                              kwargs={"autocommit": True, "connect_timeout": int(self._connect_timeout)},
                              check=self._check_if_idle, reset=self._note_return, timeout=self._connect_timeout,
                              name="orq-playground-store")

    # Checking a connection is a round trip (it doubled a run-log write); a server restart or an
    # idle timeout drops connections that sat unused, so only those are checked before use.
    _CHECK_AFTER_IDLE_S = 5.0

    def _note_return(self, conn) -> None:
        self._returned_at[conn] = time.monotonic()

    def _check_if_idle(self, conn) -> None:
        from psycopg_pool import ConnectionPool

        if time.monotonic() - self._returned_at.get(conn, 0.0) > self._CHECK_AFTER_IDLE_S:
            ConnectionPool.check_connection(conn)

    @contextmanager
    def _connection(self) -> Iterator:
        held = getattr(self._held, "conn", None)
        if held is not None:
            yield held
            return
        from psycopg_pool import PoolTimeout

        try:
            with self._pool.connection() as conn:
                yield conn
        except PoolTimeout:
            raise StoreUnavailable(
                f"No connection to {self.location} came free within {self._connect_timeout:g} s: the server is "
                "down or overloaded. Try again in a moment.") from None

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._connection() as conn:
            return conn.execute(_pg(sql), params).fetchall()

    def execute(self, sql: str, params: tuple = ()) -> int:
        with self._connection() as conn:
            return conn.execute(_pg(sql), params).rowcount

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._connection() as conn, conn.transaction():
            outer = getattr(self._held, "conn", None)
            self._held.conn = conn
            try:
                yield
            finally:
                self._held.conn = outer

    @contextmanager
    def migration_transaction(self) -> Iterator[None]:
        with self.transaction():
            self.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK_KEY,))
            yield

    def close(self) -> None:
        self._pool.close()


def _pg(sql: str) -> str:
    return sql.replace("?", "%s")
