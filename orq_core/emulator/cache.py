"""The local router's two caches: Anthropic-style prompt caching and Orq's exact-match
response cache. Both are per API key, thread-safe, and read time from an injected clock
(seconds), so tests move time instead of waiting.

Prompt-cache rules (Anthropic's prompt-caching documentation; the rule functions live in
``orq_core/cache_rules.py``, shared with the cache doctor's predictions):
- A breakpoint (``cache_control``) caches the prefix of every block up to and including it.
  An entry's key is a hash of (API key, model slug, the exact prefix content).
- A prefix shorter than the model's ``min_cacheable`` tokens is silently not cached.
- Reads: the longest cached prefix wins. Besides its own breakpoints, a request checks the
  block boundaries up to ``LOOKBACK_BLOCKS`` before each breakpoint, so it finds a prefix that
  an earlier request wrote with a different set of breakpoints (the multi-turn pattern).
- Writes: every breakpoint after the read point whose prefix is long enough is stored;
  ``write_tokens`` = tokens from the read point up to the last stored breakpoint.
- Everything else is uncached input. TTL 5m or 1h; a read refreshes the entry's expiry.
- An entry becomes readable only when the request that wrote it starts answering (Anthropic:
  "a cache entry only becomes available after the first response begins"): ``process`` takes
  ``ready_after(outcome)``, the seconds until that request's first byte (its emulated TTFT,
  scaled). Requests arriving before that moment do not see it and write again; a rewrite keeps
  the earliest readable moment and the latest expiry.
- Entries are keyed by model slug, not bare model id: Bedrock's and Vertex's caches are not
  Anthropic's, so a fallback to another provider starts cold.

Each key may live on its own timeline (the router passes ``now``: its clock plus that key's
fast-forward offset), so one person's fast-forward ages only their entries. Offsets only grow,
so eviction uses the plain clock: what expired there has expired on every key's timeline.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from ..cache_rules import (LOOKBACK_BLOCKS, TTL_SECONDS, breakpoints_to_write, chain_digests,  # noqa: F401
                           cumulative_tokens, lookback_candidates, read_and_write_tokens)
from .prompt import Block
Clock = Callable[[], float]


def key_scope(api_key: str) -> bytes:
    """A digest standing for the key, so no cache ever holds the key itself."""
    return hashlib.sha256(b"orq-local-router-key\0" + api_key.encode("utf-8")).digest()


@dataclass(frozen=True)
class CacheOutcome:
    read_tokens: int
    write_tokens: int
    uncached_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.read_tokens + self.write_tokens + self.uncached_tokens


@dataclass
class _Entry:
    expires_at: float
    ttl_seconds: float
    readable_at: float = 0.0


class _ExpiringStore:
    """A dict of entries with ``expires_at``; past ``max_entries`` it drops the expired, then the
    soonest to expire. A heap of (expires_at, seq, key, entry) finds them in O(log n); an entry
    whose expiry moves (``refresh``) gets a new heap item and its old one is skipped when it
    surfaces. Callers hold ``lock``."""

    def __init__(self, max_entries: int):
        self.lock = threading.Lock()
        self.entries: dict[bytes, Any] = {}
        self.max_entries = max_entries
        self._heap: list[tuple[float, int, bytes, Any]] = []
        self._seq = itertools.count()

    def live(self, key: bytes, now: float) -> Any:
        entry = self.entries.get(key)
        if entry is not None and entry.expires_at <= now:
            del self.entries[key]
            return None
        return entry

    def put(self, key: bytes, entry: Any, now: float) -> None:
        self.entries[key] = entry
        self._push(key, entry)
        if len(self.entries) > self.max_entries:
            self._evict(now)

    def refresh(self, key: bytes, entry: Any, expires_at: float) -> None:
        """Move an entry's expiry (a prompt-cache read refreshes its TTL)."""
        entry.expires_at = expires_at
        self._push(key, entry)

    def _push(self, key: bytes, entry: Any) -> None:
        heapq.heappush(self._heap, (entry.expires_at, next(self._seq), key, entry))
        if len(self._heap) > 2 * len(self.entries) + 64:  # refreshes left stale items: compact, amortised O(1)
            self._rebuild()

    def _rebuild(self) -> None:
        self._heap = [(e.expires_at, next(self._seq), k, e) for k, e in self.entries.items()]
        heapq.heapify(self._heap)

    def _current(self, item: tuple[float, int, bytes, Any]) -> bool:
        expires_at, _, key, entry = item
        return self.entries.get(key) is entry and entry.expires_at == expires_at

    def _evict(self, now: float) -> None:
        while self._heap and (self._heap[0][0] <= now or len(self.entries) > self.max_entries):
            item = heapq.heappop(self._heap)
            if self._current(item):
                del self.entries[item[2]]
            if not self._heap and len(self.entries) > self.max_entries:
                self._rebuild()  # an expiry moved without refresh(): start again from the dict

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()
            self._heap.clear()


def prefix_keys(api_key: str, model_slug: str, blocks: list[Block]) -> list[bytes]:
    """keys[i] identifies the prefix blocks[0..i]: a hash chained over the block digests."""
    return chain_digests(key_scope(api_key) + b"\0" + model_slug.encode("utf-8"), (b.digest for b in blocks))


class PromptCache:
    def __init__(self, clock: Clock = time.time, max_entries: int = 100_000):
        self._clock = clock
        self._store = _ExpiringStore(max_entries)

    def process(self, *, api_key: str, model_slug: str, blocks: list[Block], min_cacheable: int,
                ready_after: Callable[[CacheOutcome], float] | None = None,
                now: float | None = None) -> CacheOutcome:
        """Read the longest readable cached prefix, write the breakpoints after it, count the rest.
        ``ready_after(outcome)``: seconds from now until what this request writes is readable.
        ``now``: the time on this key's timeline (default: the clock)."""
        cumulative = cumulative_tokens(b.tokens for b in blocks)
        total = cumulative[-1] if cumulative else 0
        breakpoints = [i for i, block in enumerate(blocks) if block.cache_ttl]
        if not breakpoints:
            return CacheOutcome(0, 0, total)
        keys = prefix_keys(api_key, model_slug, blocks)
        with self._store.lock:
            base = self._clock()
            now = base if now is None else now
            read_at = self._read(keys, breakpoints, now)
            to_write = breakpoints_to_write(cumulative, breakpoints, read_at, min_cacheable)
            read, write = read_and_write_tokens(cumulative, read_at, to_write)
            outcome = CacheOutcome(read, write, total - read - write)
            if to_write:
                readable_at = now + (max(0.0, ready_after(outcome)) if ready_after else 0.0)
                self._write(keys, blocks, to_write, now, readable_at, base)
        return outcome

    def _read(self, keys: list[bytes], breakpoints: list[int], now: float) -> int:
        for j in lookback_candidates(breakpoints):
            entry = self._store.live(keys[j], now)
            if entry is not None and entry.readable_at <= now:
                self._store.refresh(keys[j], entry, now + entry.ttl_seconds)  # a read refreshes the TTL
                return j
        return -1

    def _write(self, keys, blocks, breakpoints, now: float, readable_at: float, base: float) -> None:
        for b in breakpoints:
            ttl = TTL_SECONDS[blocks[b].cache_ttl]
            entry = _Entry(now + ttl, ttl, readable_at)
            earlier = self._store.live(keys[b], now)
            if earlier is not None:  # a write racing an unreadable entry: the first to answer wins
                entry.readable_at = min(earlier.readable_at, readable_at)
                entry.expires_at = max(earlier.expires_at, entry.expires_at)
            self._store.put(keys[b], entry, base)

    def clear(self) -> None:
        self._store.clear()

    def __len__(self) -> int:
        return len(self._store.entries)


@dataclass
class _Stored:
    expires_at: float
    value: Any


class ResponseCache:
    """Orq's exact-match response cache: key = hash(API key, request body minus stream flags)."""

    STREAM_KEYS = ("stream", "stream_options")

    def __init__(self, clock: Clock = time.time, max_entries: int = 10_000):
        self._clock = clock
        self._store = _ExpiringStore(max_entries)

    def key(self, api_key: str, payload: dict) -> bytes:
        body = {k: v for k, v in payload.items() if k not in self.STREAM_KEYS}
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(key_scope(api_key) + b"\0" + text.encode("utf-8")).digest()

    def get(self, key: bytes, now: float | None = None) -> Any:
        with self._store.lock:
            entry = self._store.live(key, self._clock() if now is None else now)
            return entry.value if entry is not None else None

    def put(self, key: bytes, value: Any, ttl_seconds: float, now: float | None = None) -> None:
        with self._store.lock:
            base = self._clock()
            self._store.put(key, _Stored((base if now is None else now) + ttl_seconds, value), base)

    def clear(self) -> None:
        self._store.clear()
