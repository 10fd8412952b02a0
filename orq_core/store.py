"""SQLite run log and saved documents (conversations, experiments, comparisons, tool traces).

Every request the playground sends becomes one row in ``runs`` (simonw/llm style: history is a
query). One connection per Store, shared across threads under a lock; WAL so a second process
(the CLI next to the app) can read while the app writes. No key is ever stored: there is no key
parameter anywhere, and any ``Bearer ...`` text that slips into a string is scrubbed on the way in.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .types import RunRecord
from .usage import Usage

DB_ENV = "ORQ_PLAYGROUND_DB"
DEFAULT_DB_PATH = Path("~/.local/share/orq-playground/playground.db")
DOC_KINDS = ("conversation", "experiment", "comparison", "tool_trace", "batch", "notebook")

_BEARER = re.compile(r"Bearer\s+[^\s\"'\\,;]+", re.IGNORECASE)
_SCRUBBED = "Bearer [redacted]"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    page TEXT NOT NULL,
    model TEXT NOT NULL,
    answered_by TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    http_status INTEGER,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens INTEGER NOT NULL DEFAULT 0,
    usage_json TEXT,
    cost_usd REAL NOT NULL DEFAULT 0,
    ttft_ms REAL,
    latency_ms REAL,
    error TEXT,
    request_id TEXT
);
CREATE INDEX IF NOT EXISTS runs_ts ON runs (ts);
CREATE INDEX IF NOT EXISTS runs_page_ts ON runs (page, ts);
CREATE TABLE IF NOT EXISTS docs (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    data TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE INDEX IF NOT EXISTS docs_kind_updated ON docs (kind, updated);
CREATE TABLE IF NOT EXISTS doc_items (
    kind TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    key TEXT NOT NULL,
    data TEXT NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (kind, doc_id, key)
);
"""

_RUN_COLUMNS = ("id, ts, page, model, answered_by, status, http_status, input_tokens, cache_read_tokens, "
                "cache_write_tokens, output_tokens, reasoning_tokens, usage_json, cost_usd, ttft_ms, "
                "latency_ms, error, request_id")


def scrub(text: str | None) -> str | None:
    """Cheap defence: an Authorization value that leaked into a message never reaches the disk."""
    if text is None:
        return None
    return _BEARER.sub(_SCRUBBED, text)


def default_db_path() -> Path:
    """``$ORQ_PLAYGROUND_DB`` when set, else ``~/.local/share/orq-playground/playground.db``."""
    configured = os.environ.get(DB_ENV)
    return Path(configured).expanduser() if configured else DEFAULT_DB_PATH.expanduser()


@dataclass(frozen=True)
class Doc:
    kind: str
    id: str
    name: str
    data: dict | None
    """None when listed without data."""
    created: float
    updated: float


class Store:
    """Thread-safe SQLite store. ``Store.default()`` is the process-wide one for the default path."""

    _instances: dict[str, "Store"] = {}
    _instances_lock = threading.Lock()

    def __init__(self, path: str | os.PathLike | None = None, *, clock: Callable[[], float] = time.time):
        self.path = Path(path).expanduser() if path is not None else default_db_path()
        self._clock = clock
        self._lock = threading.RLock()
        in_memory = str(self.path) == ":memory:"
        if not in_memory:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=10.0)
        with self._lock:
            if not in_memory:
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            self._db.commit()

    @classmethod
    def default(cls, path: str | os.PathLike | None = None) -> "Store":
        """One shared Store per resolved path (the env var is read on each call)."""
        resolved = Path(path).expanduser() if path is not None else default_db_path()
        key = str(resolved.resolve()) if str(resolved) != ":memory:" else ":memory:"
        with cls._instances_lock:
            store = cls._instances.get(key)
            if store is None:
                store = cls._instances[key] = cls(resolved)
            return store

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        with self._lock:
            cursor = self._db.execute(sql, params)
            self._db.commit()
            return cursor

    def _read(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # --- run log -----------------------------------------------------------------------------

    def log_run(self, record: RunRecord) -> int:
        """Stores one request; fills ``record.ts`` (when 0) and ``record.id``; returns the id."""
        if not record.ts:
            record.ts = self._clock()
        usage = record.usage or Usage()
        usage_json = scrub(json.dumps(usage.raw, default=str)) if usage.raw is not None else None
        cursor = self._write(
            f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (record.ts, scrub(record.page), scrub(record.model), scrub(record.answered_by or ""),
             scrub(record.status), record.http_status, usage.input_tokens, usage.cache_read_tokens,
             usage.cache_write_tokens, usage.output_tokens, usage.reasoning_tokens, usage_json,
             float(record.cost_usd or 0.0), record.ttft_ms, record.latency_ms, scrub(record.error),
             scrub(record.request_id)),
        )
        record.id = int(cursor.lastrowid)
        return record.id

    def runs(self, limit: int = 200, page: str | None = None) -> list[RunRecord]:
        """Newest first."""
        where, params = ("WHERE page = ?", (page,)) if page is not None else ("", ())
        rows = self._read(f"SELECT {_RUN_COLUMNS} FROM runs {where} ORDER BY ts DESC, id DESC LIMIT ?",
                          params + (int(limit),))
        return [_run_from_row(row) for row in rows]

    def spend_since(self, ts: float) -> float:
        """USD logged at or after ``ts`` (epoch seconds)."""
        (total,) = self._read("SELECT COALESCE(SUM(cost_usd), 0) FROM runs WHERE ts >= ?", (float(ts),))[0]
        return float(total)

    # --- saved documents ---------------------------------------------------------------------

    def save_doc(self, kind: str, doc_id: str, name: str, data: dict) -> None:
        """Insert or replace; ``created`` survives an update."""
        now = self._clock()
        self._write(
            "INSERT INTO docs (kind, id, name, data, created, updated) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (kind, id) DO UPDATE SET name = excluded.name, data = excluded.data, "
            "updated = excluded.updated",
            (kind, doc_id, scrub(name), scrub(json.dumps(data, default=str)), now, now),
        )

    def load_doc(self, kind: str, doc_id: str) -> Doc | None:
        rows = self._read("SELECT kind, id, name, data, created, updated FROM docs WHERE kind = ? AND id = ?",
                          (kind, doc_id))
        return _doc_from_row(rows[0], with_data=True) if rows else None

    def list_docs(self, kind: str, with_data: bool = False) -> list[Doc]:
        """Newest (last updated) first."""
        rows = self._read("SELECT kind, id, name, data, created, updated FROM docs WHERE kind = ? "
                          "ORDER BY updated DESC, rowid DESC", (kind,))
        return [_doc_from_row(row, with_data) for row in rows]

    def rename_doc(self, kind: str, doc_id: str, name: str) -> bool:
        cursor = self._write("UPDATE docs SET name = ?, updated = ? WHERE kind = ? AND id = ?",
                             (scrub(name), self._clock(), kind, doc_id))
        return cursor.rowcount > 0

    def delete_doc(self, kind: str, doc_id: str) -> bool:
        """Deletes the document and its items."""
        self.delete_items(kind, doc_id)
        cursor = self._write("DELETE FROM docs WHERE kind = ? AND id = ?", (kind, doc_id))
        return cursor.rowcount > 0

    # --- items of a document (saved one at a time as long work goes on) --------------------------
    # A batch's rows, a lab run's records, a ledger's entries: each is written on its own as it
    # arrives, so a killed server loses only what was in flight, and a 10,000-row batch never
    # rewrites one growing JSON blob.

    def put_item(self, kind: str, doc_id: str, key: str, data: dict) -> None:
        """Insert or replace the item ``key`` of document (kind, doc_id)."""
        self._write(
            "INSERT INTO doc_items (kind, doc_id, key, data, updated) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (kind, doc_id, key) DO UPDATE SET data = excluded.data, updated = excluded.updated",
            (kind, doc_id, key, scrub(json.dumps(data, default=str)), self._clock()),
        )

    def get_item(self, kind: str, doc_id: str, key: str) -> dict | None:
        rows = self._read("SELECT data FROM doc_items WHERE kind = ? AND doc_id = ? AND key = ?",
                          (kind, doc_id, key))
        return _loads(rows[0][0]) if rows else None

    def items(self, kind: str, doc_id: str) -> list[tuple[str, dict]]:
        """Every (key, data) of the document, ordered by key (zero-pad numeric keys)."""
        rows = self._read("SELECT key, data FROM doc_items WHERE kind = ? AND doc_id = ? ORDER BY key",
                          (kind, doc_id))
        return [(key, _loads(data)) for key, data in rows]

    def delete_items(self, kind: str, doc_id: str) -> int:
        cursor = self._write("DELETE FROM doc_items WHERE kind = ? AND doc_id = ?", (kind, doc_id))
        return cursor.rowcount


def _run_from_row(row: tuple) -> RunRecord:
    (run_id, ts, page, model, answered_by, status, http_status, input_tokens, cache_read, cache_write,
     output_tokens, reasoning_tokens, usage_json, cost_usd, ttft_ms, latency_ms, error, request_id) = row
    usage = Usage(input_tokens, cache_read, cache_write, output_tokens, reasoning_tokens,
                  raw=_loads(usage_json))
    return RunRecord(page=page, model=model, status=status, usage=usage, cost_usd=cost_usd, ttft_ms=ttft_ms,
                     latency_ms=latency_ms, answered_by=answered_by, http_status=http_status, error=error,
                     request_id=request_id, ts=ts, id=run_id)


def _doc_from_row(row: tuple, with_data: bool) -> Doc:
    kind, doc_id, name, data, created, updated = row
    return Doc(kind, doc_id, name, _loads(data) if with_data else None, created, updated)


def _loads(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None
