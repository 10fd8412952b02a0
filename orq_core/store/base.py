"""The store's one interface over both backends: run log, saved documents, items of a document.

Every request the playground sends becomes one row in ``runs`` (simonw/llm style: history is a
query). Every row carries its owner: a ``Store`` reads and writes only the rows of its ``owner``
(``''``, the single user, for ``Store.default()``; ``for_owner(person)`` for a person on a shared
server), so another person's document id answers None exactly like an id that never existed.
No key is ever stored: there is no key parameter anywhere, and any ``Bearer ...`` text that slips
into a string is scrubbed on the way in.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from ..errors import StoreConfigError
from ..types import RunRecord
from ..usage import Usage
from .migrations import migrate
from .postgres import PostgresBackend, is_postgres_url, redact_url
from .sqlite import SqliteBackend

DB_ENV = "ORQ_PLAYGROUND_DB"
DEFAULT_DB_PATH = Path("~/.local/share/orq-playground/playground.db")
DOC_KINDS = ("conversation", "experiment", "comparison", "tool_trace", "batch", "notebook")

_BEARER = re.compile(r"Bearer\s+[^\s\"'\\,;]+", re.IGNORECASE)
_SCRUBBED = "Bearer [redacted]"
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

_RUN_COLUMNS = ("id, ts, page, model, answered_by, status, http_status, input_tokens, cache_read_tokens, "
                "cache_write_tokens, output_tokens, reasoning_tokens, usage_json, cost_usd, ttft_ms, "
                "latency_ms, error, request_id")
_DOC_COLUMNS = "kind, id, name, data, created, updated"
_KEYS_PER_QUERY = 150
"""Keys (or rows of six values) per statement: well under SQLite's oldest limit of 999 parameters."""


def scrub(text: str | None) -> str | None:
    """Cheap defence: an Authorization value that leaked into a message never reaches the disk."""
    if text is None:
        return None
    return _BEARER.sub(_SCRUBBED, text)


def default_db_path() -> Path:
    """``$ORQ_PLAYGROUND_DB`` when set, else ``~/.local/share/orq-playground/playground.db``.
    (For a postgresql:// value this is not a path: use ``resolve_location``.)"""
    configured = os.environ.get(DB_ENV)
    return Path(configured).expanduser() if configured else DEFAULT_DB_PATH.expanduser()


def resolve_location(target: str | os.PathLike | None = None) -> Path | str:
    """A SQLite file path, or a postgresql:// URL (a str). Refuses anything else with a sentence:
    ``mysql://...``, ``sqlite:///...``, ``postgresql:`` without ``//``, a folder."""
    raw = os.environ.get(DB_ENV, "") if target is None else os.fspath(target)
    value = raw.strip()
    if not value:
        return DEFAULT_DB_PATH.expanduser()
    if is_postgres_url(value):
        return value
    if _URL_SCHEME.match(value) or value.lower().startswith(("postgresql:", "postgres:")):
        raise StoreConfigError(
            f"ORQ_PLAYGROUND_DB={redact_url(value)!s} is neither a file path nor a postgresql:// URL. "
            "Give a SQLite file path such as ~/.local/share/orq-playground/playground.db, or a URL such as "
            "postgresql://user:password@host:5432/playground.")
    if value == ":memory:":
        return Path(value)
    path = Path(value).expanduser()
    if path.is_dir():
        raise StoreConfigError(
            f"ORQ_PLAYGROUND_DB={path} is a folder, not a file. Name the database file inside it, "
            f"for example {path / 'playground.db'}.")
    return path


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
    """Thread-safe store on SQLite (a path) or PostgreSQL (a postgresql:// URL).
    ``Store.default()`` is the process-wide one for ``$ORQ_PLAYGROUND_DB``."""

    _instances: dict[str, "Store"] = {}
    _instances_lock = threading.Lock()

    def __init__(self, target: str | os.PathLike | None = None, *, clock: Callable[[], float] = time.time):
        location = resolve_location(target)
        self._clock = clock
        self.owner = ""
        if isinstance(location, str):
            self.path: Path | None = None
            self.url: str | None = location
            self._backend = PostgresBackend(location)
        else:
            self.path, self.url = location, None
            self._backend = SqliteBackend(location)
        migrate(self._backend, clock())

    @classmethod
    def default(cls, path: str | os.PathLike | None = None) -> "Store":
        """One shared Store per resolved location (the env var is read on each call)."""
        location = resolve_location(path)
        key = location if isinstance(location, str) else _path_key(location)
        with cls._instances_lock:
            store = cls._instances.get(key)
            if store is None:
                store = cls._instances[key] = cls(location)
            return store

    def for_owner(self, owner: str) -> "Store":
        """The same store seen by one person: every method reads and writes only ``owner``'s rows."""
        if not isinstance(owner, str):
            raise TypeError("owner must be a str")
        view = copy.copy(self)
        view.owner = owner
        return view

    @property
    def backend(self) -> str:
        """'sqlite' or 'postgres'."""
        return self._backend.dialect

    @property
    def location(self) -> str:
        """Where the data lives, safe to show (no password)."""
        return self._backend.location

    def close(self) -> None:
        self._backend.close()

    # --- run log -----------------------------------------------------------------------------

    def log_run(self, record: RunRecord) -> int:
        """Stores one request; fills ``record.ts`` (when 0) and ``record.id``; returns the id."""
        if not record.ts:
            record.ts = self._clock()
        usage = record.usage or Usage()
        usage_json = scrub(json.dumps(usage.raw, default=str)) if usage.raw is not None else None
        rows = self._backend.query(
            f"INSERT INTO runs (owner, {_RUN_COLUMNS.removeprefix('id, ')}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (self.owner, record.ts, scrub(record.page), scrub(record.model), scrub(record.answered_by or ""),
             scrub(record.status), record.http_status, usage.input_tokens, usage.cache_read_tokens,
             usage.cache_write_tokens, usage.output_tokens, usage.reasoning_tokens, usage_json,
             float(record.cost_usd or 0.0), record.ttft_ms, record.latency_ms, scrub(record.error),
             scrub(record.request_id)),
        )
        record.id = int(rows[0][0])
        return record.id

    def runs(self, limit: int = 200, page: str | None = None, *, since: float | None = None,
             until: float | None = None) -> list[RunRecord]:
        """Newest first; ``since`` inclusive, ``until`` exclusive (epoch seconds)."""
        where, params = ["owner = ?"], [self.owner]
        for clause, value in (("page = ?", page), ("ts >= ?", since), ("ts < ?", until)):
            if value is not None:
                where.append(clause)
                params.append(value)
        rows = self._backend.query(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE {' AND '.join(where)} ORDER BY ts DESC, id DESC LIMIT ?",
            tuple(params) + (int(limit),))
        return [_run_from_row(row) for row in rows]

    def spend_since(self, ts: float) -> float:
        """USD logged at or after ``ts`` (epoch seconds)."""
        (total,) = self._backend.query("SELECT COALESCE(SUM(cost_usd), 0) FROM runs WHERE owner = ? AND ts >= ?",
                                       (self.owner, float(ts)))[0]
        return float(total)

    # --- saved documents ---------------------------------------------------------------------

    def save_doc(self, kind: str, doc_id: str, name: str, data: dict) -> None:
        """Insert or replace; ``created`` survives an update."""
        now = self._clock()
        self._backend.execute(
            "INSERT INTO docs (owner, kind, id, name, data, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (owner, kind, id) DO UPDATE SET name = excluded.name, data = excluded.data, "
            "updated = excluded.updated",
            (self.owner, kind, doc_id, scrub(name), scrub(json.dumps(data, default=str)), now, now),
        )

    def load_doc(self, kind: str, doc_id: str) -> Doc | None:
        rows = self._backend.query(f"SELECT {_DOC_COLUMNS} FROM docs WHERE owner = ? AND kind = ? AND id = ?",
                                   (self.owner, kind, doc_id))
        return _doc_from_row(rows[0], with_data=True) if rows else None

    def list_docs(self, kind: str, with_data: bool = False) -> list[Doc]:
        """Newest (last updated) first."""
        rows = self._backend.query(f"SELECT {_DOC_COLUMNS} FROM docs WHERE owner = ? AND kind = ? "
                                   "ORDER BY updated DESC, seq DESC", (self.owner, kind))
        return [_doc_from_row(row, with_data) for row in rows]

    def rename_doc(self, kind: str, doc_id: str, name: str) -> bool:
        changed = self._backend.execute(
            "UPDATE docs SET name = ?, updated = ? WHERE owner = ? AND kind = ? AND id = ?",
            (scrub(name), self._clock(), self.owner, kind, doc_id))
        return changed > 0

    def delete_doc(self, kind: str, doc_id: str) -> bool:
        """Deletes the document and its items."""
        with self._backend.transaction():
            self.delete_items(kind, doc_id)
            changed = self._backend.execute("DELETE FROM docs WHERE owner = ? AND kind = ? AND id = ?",
                                            (self.owner, kind, doc_id))
        return changed > 0

    # --- items of a document (saved one at a time as long work goes on) --------------------------
    # A batch's rows, a lab run's records, a ledger's entries: each is written on its own as it
    # arrives, so a killed server loses only what was in flight, and a 10,000-row batch never
    # rewrites one growing JSON blob.

    def put_item(self, kind: str, doc_id: str, key: str, data: dict) -> None:
        """Insert or replace the item ``key`` of document (kind, doc_id)."""
        self._backend.execute(
            "INSERT INTO doc_items (owner, kind, doc_id, key, data, updated) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (owner, kind, doc_id, key) DO UPDATE SET data = excluded.data, updated = excluded.updated",
            (self.owner, kind, doc_id, key, scrub(json.dumps(data, default=str)), self._clock()),
        )

    def get_item(self, kind: str, doc_id: str, key: str) -> dict | None:
        rows = self._backend.query(
            "SELECT data FROM doc_items WHERE owner = ? AND kind = ? AND doc_id = ? AND key = ?",
            (self.owner, kind, doc_id, key))
        return _loads(rows[0][0]) if rows else None

    def items(self, kind: str, doc_id: str) -> list[tuple[str, dict]]:
        """Every (key, data) of the document, ordered by key (zero-pad numeric keys)."""
        rows = self._backend.query(
            "SELECT key, data FROM doc_items WHERE owner = ? AND kind = ? AND doc_id = ? ORDER BY key",
            (self.owner, kind, doc_id))
        return [(key, _loads(data)) for key, data in rows]

    def get_items(self, kind: str, doc_id: str, keys: Iterable[str], *, decode: Callable[[str], Any] = None
                  ) -> dict[str, Any]:
        """The items among ``keys`` that exist, by key: one indexed query (per ``_KEYS_PER_QUERY`` keys),
        however many items the document holds. ``decode`` turns each item's JSON text into its value
        (default: the parsed JSON; the cache ledger parses lazily)."""
        decode = decode or _loads
        found: dict[str, Any] = {}
        wanted = list(dict.fromkeys(keys))
        for start in range(0, len(wanted), _KEYS_PER_QUERY):
            chunk = wanted[start:start + _KEYS_PER_QUERY]
            rows = self._backend.query(
                "SELECT key, data FROM doc_items WHERE owner = ? AND kind = ? AND doc_id = ? "
                f"AND key IN ({', '.join('?' * len(chunk))})", (self.owner, kind, doc_id, *chunk))
            found.update((key, decode(data)) for key, data in rows)
        return found

    def put_items(self, kind: str, doc_id: str, items: dict[str, dict]) -> None:
        """Insert or replace several items of a document at once: all of them or none."""
        if not items:
            return
        now = self._clock()
        rows = [(self.owner, kind, doc_id, key, scrub(json.dumps(data, default=str)), now)
                for key, data in items.items()]
        with self._chunked(len(rows)):
            for start in range(0, len(rows), _KEYS_PER_QUERY):
                chunk = rows[start:start + _KEYS_PER_QUERY]
                self._backend.execute(
                    "INSERT INTO doc_items (owner, kind, doc_id, key, data, updated) VALUES "
                    + ", ".join(["(?, ?, ?, ?, ?, ?)"] * len(chunk))
                    + " ON CONFLICT (owner, kind, doc_id, key) DO UPDATE SET data = excluded.data, "
                    "updated = excluded.updated", tuple(value for row in chunk for value in row))

    def delete_items(self, kind: str, doc_id: str, keys: Iterable[str] | None = None) -> int:
        """Deletes the document's items: all of them, or only those among ``keys``."""
        if keys is None:
            return self._backend.execute("DELETE FROM doc_items WHERE owner = ? AND kind = ? AND doc_id = ?",
                                         (self.owner, kind, doc_id))
        wanted, deleted = list(dict.fromkeys(keys)), 0
        with self._chunked(len(wanted)):
            for start in range(0, len(wanted), _KEYS_PER_QUERY):
                chunk = wanted[start:start + _KEYS_PER_QUERY]
                deleted += self._backend.execute(
                    "DELETE FROM doc_items WHERE owner = ? AND kind = ? AND doc_id = ? "
                    f"AND key IN ({', '.join('?' * len(chunk))})", (self.owner, kind, doc_id, *chunk))
        return deleted

    def _chunked(self, count: int):
        """One statement is a transaction of its own; several chunks are grouped into one."""
        return self._backend.transaction() if count > _KEYS_PER_QUERY else contextlib.nullcontext()


def _path_key(path: Path) -> str:
    return ":memory:" if str(path) == ":memory:" else str(path.resolve())


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
