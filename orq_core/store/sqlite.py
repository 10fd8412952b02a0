"""The embedded backend: one SQLite file (or ``:memory:``).

One connection per store, shared across threads under a lock, in autocommit mode (each statement
is its own transaction unless ``transaction()`` groups them); WAL so a second process (the CLI
next to the app) can read while the app writes.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import StoreConfigError


def _enter_wal(db: sqlite3.Connection, timeout_s: float) -> None:
    """Switches the file to WAL, waiting for another connection's lock like any other statement.

    Changing the journal mode takes an exclusive lock, and SQLite answers "database is locked"
    at once instead of calling the busy handler: two instances opening a new file at the same
    moment (one already migrating) would fail. So the retry is ours, up to the same timeout.
    """
    deadline = time.monotonic() + timeout_s
    pause_s = 0.005
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
        time.sleep(pause_s)
        pause_s = min(pause_s * 2, 0.1)


class SqliteBackend:
    dialect = "sqlite"

    def __init__(self, path: Path):
        self.path = path
        self.location = f"SQLite file {path}"
        self._lock = threading.RLock()
        in_memory = str(path) == ":memory:"
        try:
            if not in_memory:
                path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=10.0, isolation_level=None)
            if not in_memory:
                _enter_wal(self._db, timeout_s=10.0)
            self._db.execute("PRAGMA synchronous=NORMAL")
        except (OSError, sqlite3.Error) as error:
            raise StoreConfigError(
                f"ORQ_PLAYGROUND_DB={path} cannot be opened as a SQLite file ({error}). Give a file path in a "
                "folder this server may write to, or a postgresql:// URL.") from None

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def execute(self, sql: str, params: tuple = ()) -> int:
        """Runs one statement; returns the number of rows it changed."""
        with self._lock:
            return self._db.execute(sql, params).rowcount

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    migration_transaction = transaction

    def close(self) -> None:
        with self._lock:
            self._db.close()
