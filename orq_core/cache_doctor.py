"""The cache doctor: before a request is sent, what it will read from and write to the prompt
cache, and why in one sentence; afterwards, that prediction held against the router's usage.

Prediction applies Anthropic's prompt-caching rules (``cache_rules.py``, the same functions the
local router runs; the sources are cited there and in ``emulator/prompt.py``) to the request's
blocks (``cache_shape.py``: the local router's own segmentation and token counts, reused from the
previous request where the prompt did not change) and to a **prefix ledger**: what this
connection wrote, kept in the store (kind ``cache_ledger``) so predictions hold across pages,
browser sessions and CLI runs.

A ledger is one store document per connection and model slug (entries are per provider slug,
as the local router keeps them). Its id is the base URL, a digest of the key (never the key) and
the slug; its items are the entries, keyed by the prefix hash (a hash chained over the block
digests, so no prompt text is kept), plus the last request's section digests (``_last``), which
explain a miss: "the system prompt changed since the last request".

What a request costs the store: one indexed read of the entries at the positions it may read
from (never the whole ledger), and one write when its answer begins (the entry it read,
refreshed, and the entries it wrote, in one statement). Until then its writes are in flight:
kept in this doctor's memory, where the next request of this session sees them ("miss: sent
before the first response began"); a server killed meanwhile loses only those. ``_last`` is
written only when the sections changed. Entries expired more than ``FORGET_AFTER_S`` ago are
pruned (at most once per ``PRUNE_EVERY_S`` of the router's clock per ledger and doctor).
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Callable, Iterable

from .cache_rules import LOOKBACK_BLOCKS, TTL_SECONDS, breakpoints_to_write, lookback_candidates, read_and_write_tokens
from .cache_shape import Shape, shape_of
from .catalog import UnknownModelError, catalog

LEDGER_KIND = "cache_ledger"
LAST_KEY = "_last"
FORGET_AFTER_S = 86_400.0
"""Entries expired more than this long ago are pruned. A day: the miss that greets someone coming
back the next morning still reads "the entry expired 16 h ago" rather than "first request with
this prefix"; past that the sentence would explain little, and the ledger holds at most about a
day of one connection's distinct cached prefixes per model."""
PRUNE_EVERY_S = 300.0
"""A doctor prunes a ledger at most this often (router clock): the prune reads the whole ledger."""

Clock = Callable[[], float]


def connection_digest(base_url: str, api_key: str) -> str:
    """Names a connection without holding its key."""
    key = hashlib.sha256(b"orq-cache-ledger\0" + api_key.encode("utf-8")).hexdigest()[:16]
    return f"{base_url.rstrip('/')}#{key}"


# --- wording ---------------------------------------------------------------------------------

def ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min"
    hours, rest = divmod(seconds, 3600)
    return f"{hours:.0f} h {rest / 60:.0f} min"


def _model_label(slug: str) -> str:
    try:
        return catalog().resolve(slug).model.label
    except (UnknownModelError, ValueError):
        return slug


def _min_cacheable(slug: str) -> int:
    try:
        return catalog().resolve(slug).model.min_cacheable
    except (UnknownModelError, ValueError):
        return 1024


# --- typed results -----------------------------------------------------------------------------

@dataclass(frozen=True)
class MapSegment:
    """A run of prompt blocks in the same state, for the prefix map."""

    label: str
    tokens: int
    state: str
    """'read', 'write' or 'uncached'."""
    breakpoint: str | None = None
    """The TTL when a breakpoint ends this segment."""


@dataclass(frozen=True)
class CacheCheck:
    """One request's prediction and, once answered, how the router's usage compared."""

    model: str
    expected_read_tokens: int
    expected_write_tokens: int
    uncached_tokens: int
    why: str
    segments: tuple[MapSegment, ...] = ()
    reported_read_tokens: int | None = None
    reported_write_tokens: int | None = None
    verdict: str | None = None
    """"as predicted", or the difference in a sentence; None until the answer came."""
    predicted_at: float = 0.0
    read_key: str | None = field(default=None, repr=False)
    write_keys: tuple[str, ...] = field(default=(), repr=False)
    candidate_keys: tuple[str, ...] = field(default=(), repr=False)
    """Prefix hashes at the positions a read could take, longest first (for reconciling)."""
    candidate_tokens: tuple[int, ...] = field(default=(), repr=False)
    write_plan: tuple[tuple[str, int, int, str], ...] = field(default=(), repr=False)
    """(prefix hash, tokens, blocks, ttl) of each entry the request writes."""
    sections: dict = field(default_factory=dict, repr=False)
    writer: str = ""

    @property
    def matched(self) -> bool:
        return self.verdict == "as predicted"

    def sentence(self) -> str:
        return self.why if self.verdict is None else f"{self.why} · {self.verdict}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "CacheCheck":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in (data or {}).items() if k in known}
        values["segments"] = tuple(MapSegment(**s) for s in values.get("segments") or ())
        for name in ("write_keys", "candidate_keys", "candidate_tokens"):
            values[name] = tuple(values.get(name) or ())
        values["write_plan"] = tuple(tuple(p) for p in values.get("write_plan") or ())
        return cls(**values)


@dataclass
class LedgerEntry:
    tokens: int
    blocks: int
    ttl: str
    written_at: float
    expires_at: float
    readable_at: float | None
    """When the writer's first byte arrived; None while it has not."""
    last_used: float
    writer: str

    @property
    def ttl_seconds(self) -> float:
        return TTL_SECONDS[self.ttl]

    def readable(self, now: float) -> bool:
        return self.readable_at is not None and self.readable_at <= now

    def live(self, now: float) -> bool:
        return self.expires_at > now

    @classmethod
    def from_data(cls, data) -> "LedgerEntry | None":
        try:
            return cls(**data) if isinstance(data, dict) else None
        except TypeError:
            return None

    def to_data(self) -> dict:
        return dict(vars(self))


# --- the ledger ---------------------------------------------------------------------------------

class Ledger:
    """The entries one connection wrote for one model slug, in the store (one item each)."""

    def __init__(self, store, connection_id: str, slug: str):
        self.store = store
        self.doc_id = f"{connection_id}|{slug}"

    def read(self, keys: Iterable[str]) -> tuple[dict[str, LedgerEntry], dict | None]:
        """The entries at ``keys`` (those that exist) and ``_last``: one indexed query."""
        found = self.store.get_items(LEDGER_KIND, self.doc_id, [LAST_KEY, *keys], decode=str)
        last = _parsed(found.pop(LAST_KEY, None))
        return _Entries(found), last if isinstance(last, dict) else None

    def save(self, entries: dict[str, LedgerEntry], last: dict | None = None) -> None:
        """Writes the entries (and ``_last``) in one statement."""
        items = {key: entry.to_data() for key, entry in entries.items()}
        if last is not None:
            items[LAST_KEY] = last
        self.store.put_items(LEDGER_KIND, self.doc_id, items)

    def drop(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        if keys:
            self.store.delete_items(LEDGER_KIND, self.doc_id, keys)

    def prune(self, now: float) -> int:
        """Deletes the entries that expired more than ``FORGET_AFTER_S`` ago (and unreadable items)."""
        stale = [key for key, data in self.store.items(LEDGER_KIND, self.doc_id) if key != LAST_KEY and
                 ((entry := LedgerEntry.from_data(data)) is None or entry.expires_at + FORGET_AFTER_S < now)]
        self.drop(stale)
        return len(stale)


class _Entries(dict):
    """Ledger entries by key, each parsed from the store's JSON on first use: a prediction reads
    the rows at up to 20 positions per breakpoint and looks at one or two of them."""

    def __init__(self, texts: dict[str, str]):
        super().__init__()
        self._texts = texts

    def _load(self, key: str) -> None:
        text = self._texts.pop(key, None)
        if text is not None:
            entry = LedgerEntry.from_data(_parsed(text))
            if entry is not None:
                dict.__setitem__(self, key, entry)

    def __contains__(self, key) -> bool:
        self._load(key)
        return dict.__contains__(self, key)

    def __getitem__(self, key: str) -> LedgerEntry:
        self._load(key)
        return dict.__getitem__(self, key)

    def __setitem__(self, key: str, entry: LedgerEntry) -> None:
        self._texts.pop(key, None)
        dict.__setitem__(self, key, entry)

    def get(self, key: str, default=None):
        self._load(key)
        return dict.get(self, key, default)


def _parsed(text: str | None):
    try:
        return json.loads(text) if text is not None else None
    except ValueError:
        return None


def _merged(earlier: LedgerEntry | None, entry: LedgerEntry, now: float) -> LedgerEntry:
    """A write over a live entry of the same prefix: the first to answer wins, as the router does."""
    if earlier is None or not earlier.live(now):
        return entry
    readable_at = entry.readable_at
    if earlier.readable_at is not None:
        readable_at = earlier.readable_at if readable_at is None else min(earlier.readable_at, readable_at)
    return replace(entry, readable_at=readable_at, expires_at=max(earlier.expires_at, entry.expires_at))


@dataclass
class _Flight:
    """A request between ``begin`` and its first byte: what it read (refreshed) and will write."""

    slug: str
    started: float
    read: dict[str, LedgerEntry]
    writes: dict[str, LedgerEntry]
    answered: bool = False


# --- the request as the cache sees it -------------------------------------------------------------

def _writer_label(shape: Shape, now: float) -> str:
    turns = shape.user_messages
    if turns >= 2:
        return f"turn {turns}"
    return "the request at " + time.strftime("%H:%M:%S", time.gmtime(now))


def _segments(shape: Shape, read_at: int, written_to: int) -> tuple[MapSegment, ...]:
    """Blocks merged by section label and state; a breakpoint closes a segment."""
    runs: list[list] = []
    for i, (block, label) in enumerate(zip(shape.blocks, shape.labels)):
        state = "read" if i <= read_at else "write" if i <= written_to else "uncached"
        last = runs[-1] if runs else None
        if last is not None and last[0] == label and last[2] == state and last[3] is None:
            last[1] += block.tokens
            last[3] = block.cache_ttl
        else:
            runs.append([label, block.tokens, state, block.cache_ttl])
    return tuple(_segment(*run) for run in runs)


_segment = functools.lru_cache(maxsize=4096)(MapSegment)
"""Segments are immutable and a conversation repeats most of its map on every turn."""


# --- the doctor ------------------------------------------------------------------------------------

class CacheDoctor:
    """Predicts, records and compares, for one connection. ``clock`` is the router's clock
    (the local router's own when it runs in this process; wall time otherwise). Thread-safe:
    Compare and Batch send through one doctor from several threads."""

    def __init__(self, store, connection_id: str, clock: Clock = time.time):
        self.store = store
        self.connection_id = connection_id
        self.clock = clock
        self._lock = threading.Lock()
        self._shapes: dict[str, Shape] = {}
        """The last request's shape per slug: the next one reuses its unchanged prefix."""
        self._seen: OrderedDict[int, tuple[CacheCheck, dict[str, LedgerEntry]]] = OrderedDict()
        """What each recent prediction read from the ledger, for its ``begin`` (bounded)."""
        self._flights: dict[int, tuple[CacheCheck, _Flight]] = {}
        self._last_sections: dict[str, dict | None] = {}
        """Per slug, the ``_last`` sections the store held at the latest read or write."""
        self._pruned_at: dict[str, float] = {}

    def ledger(self, slug: str) -> Ledger:
        return Ledger(self.store, self.connection_id, slug)

    def _shape(self, payload: dict, slug: str) -> Shape:
        shape = shape_of(payload, slug, self._shapes.get(slug))
        self._shapes[slug] = shape
        return shape

    def _entries(self, slug: str, keys: list[str], now: float) -> dict[str, LedgerEntry]:
        """The ledger's entries at ``keys``, with what this doctor's requests in flight did to them."""
        entries, last = self.ledger(slug).read(keys)
        self._last_sections[slug] = (last or {}).get("sections")
        wanted = set(keys)
        with self._lock:
            flights = [flight for _, flight in self._flights.values() if flight.slug == slug and not flight.answered]
        for flight in flights:
            for key, refreshed in flight.read.items():
                entry = entries.get(key)
                if key in wanted and entry is not None:
                    entries[key] = replace(entry, expires_at=max(entry.expires_at, refreshed.expires_at),
                                           last_used=max(entry.last_used, refreshed.last_used))
            for key, pending in flight.writes.items():
                if key in wanted:
                    entries[key] = _merged(entries.get(key), pending, now)
        return entries

    # -- before sending ------------------------------------------------------------------------

    def predict(self, payload: dict) -> CacheCheck:
        slug = str(payload.get("model") or "")
        shape = self._shape(payload, slug)
        now = self.clock()
        candidates = lookback_candidates(shape.breakpoints)
        entries = self._entries(slug, [shape.keys[j] for j in candidates], now)
        last_sections = self._last_sections.get(slug)
        min_cacheable = _min_cacheable(slug)
        read_at = next((j for j in candidates if self._usable(entries.get(shape.keys[j]), now)), -1)
        to_write = breakpoints_to_write(shape.cumulative, shape.breakpoints, read_at, min_cacheable)
        read, write = read_and_write_tokens(shape.cumulative, read_at, to_write)
        why = self._why(shape, entries, last_sections, now, read_at, to_write, read, write, slug, min_cacheable)
        check = CacheCheck(
            model=slug, expected_read_tokens=read, expected_write_tokens=write,
            uncached_tokens=shape.total - read - write, why=why,
            segments=_segments(shape, read_at, to_write[-1] if to_write else read_at),
            predicted_at=now, read_key=shape.keys[read_at] if read_at >= 0 else None,
            write_keys=tuple(shape.keys[b] for b in to_write),
            candidate_keys=tuple(shape.keys[j] for j in candidates),
            candidate_tokens=tuple(shape.cumulative[j] for j in candidates),
            write_plan=tuple((shape.keys[b], shape.cumulative[b], b + 1, shape.blocks[b].cache_ttl or "5m")
                             for b in to_write),
            sections=shape.sections, writer=_writer_label(shape, now))
        with self._lock:
            self._seen[id(check)] = (check, entries)
            while len(self._seen) > _SEEN_KEPT:
                self._seen.popitem(last=False)
        return check

    @staticmethod
    def _usable(entry: LedgerEntry | None, now: float) -> bool:
        return entry is not None and entry.live(now) and entry.readable(now)

    def _why(self, shape: Shape, entries: dict, last: dict | None, now: float, read_at: int,
             to_write: list[int], read: int, write: int, slug: str, min_cacheable: int) -> str:
        if not shape.breakpoints:
            return "no caching: the request has no cache breakpoint"
        if read == 0 and write == 0:
            longest = max(shape.cumulative[b] for b in shape.breakpoints)
            return (f"no caching: the prefix is {longest:,} tokens, below {_model_label(slug)}'s minimum "
                    f"of {min_cacheable:,}")
        cause = self._miss_cause(shape, entries, last, now, read_at, slug)
        if read:
            entry = entries[shape.keys[read_at]]
            text = f"reads {read:,} tokens written {ago(now - entry.written_at)} ago by {entry.writer}"
            if write:
                text += f"; writes {write:,}" + (f": {cause}" if cause else " after it")
            return text
        if cause is None:
            cause = "first request with this prefix"
        if cause.startswith("rewrites everything"):
            return f"{cause}; writes {write:,}"
        if cause.startswith("miss:"):
            return f"{cause}; writes {write:,}"
        if cause.endswith("since the last request") or "changed since" in cause:
            return f"rewrites {write:,}: {cause}"
        return f"writes {write:,}: {cause}"

    def _miss_cause(self, shape: Shape, entries: dict, last: dict | None, now: float, read_at: int,
                    slug: str) -> str | None:
        """Why no longer prefix was read: an entry that expired, one not yet readable, one beyond
        the lookback, or a change since the last request (Anthropic's invalidation table).
        ``last``: the previous request's sections."""
        candidates = lookback_candidates(shape.breakpoints)
        for j in (j for j in candidates if j > read_at):
            entry = entries.get(shape.keys[j])
            if entry is None or entry.expires_at <= -FORGET_AFTER_S + 1:  # forgotten by an older doctor
                continue
            if not entry.live(now):
                return (f"miss: the entry expired {ago(now - entry.expires_at)} ago ({entry.ttl} TTL, "
                        f"last used {ago(now - entry.last_used)} ago)")
            if not entry.readable(now):
                return "miss: sent before the first response began"
        reachable = set(candidates)
        beyond = [j for j in range(max(shape.breakpoints) - 1, read_at, -1) if j not in reachable]
        if beyond:  # an entry the lookback cannot reach: read only on this path
            farther = self._entries(slug, [shape.keys[j] for j in beyond], now)
            for j in beyond:
                if self._usable(farther.get(shape.keys[j]), now):
                    past = min(b for b in shape.breakpoints if b > j)
                    return (f"miss: the breakpoint is {past - j} blocks past the last write, beyond the "
                            f"{LOOKBACK_BLOCKS}-block lookback; add a breakpoint nearer the end")
        if last:
            if last.get("tools") != shape.sections["tools"]:
                return "rewrites everything: the tool definitions changed since the last request"
            if last.get("system") != shape.sections["system"]:
                return "the system prompt changed since the last request"
            for name, words in (("thinking", "the thinking settings"), ("tool_choice", "tool_choice"),
                                ("images", "the number of images")):
                if last.get(name) != shape.sections[name]:
                    return f"{words} changed since the last request, which invalidates the cached messages"
        return None

    # -- recording ----------------------------------------------------------------------------------

    def begin(self, payload: dict, check: CacheCheck) -> None:
        """The request is being sent: the entry it reads is refreshed and its writes are in flight
        (in memory: readable once its first byte arrives, which is when they reach the store)."""
        with self._lock:
            seen = self._seen.pop(id(check), None)
        entries = seen[1] if seen is not None and seen[0] is check else \
            self.ledger(check.model).read([k for k in (check.read_key, *check.write_keys) if k])[0]
        now = check.predicted_at
        read = {}
        if check.read_key and check.read_key in entries:
            entry = entries[check.read_key]
            read[check.read_key] = replace(entry, expires_at=now + entry.ttl_seconds, last_used=now)
        writes = {key: _merged(entries.get(key), LedgerEntry(tokens, blocks, ttl, now, now + TTL_SECONDS[ttl], None,
                                                            now, check.writer), now)
                  for key, tokens, blocks, ttl in check.write_plan}
        with self._lock:
            self._flights[id(check)] = (check, _Flight(check.model, now, read, writes))
            self._drop_stale_flights(now)

    def _drop_stale_flights(self, now: float) -> None:
        """Flights whose request vanished without a word (a stream abandoned before its first byte)."""
        for key in [k for k, (_, f) in self._flights.items() if now - f.started > TTL_SECONDS["1h"]]:
            del self._flights[key]

    def _flight(self, check: CacheCheck, *, pop: bool = False) -> _Flight | None:
        with self._lock:
            found = self._flights.pop(id(check), None) if pop else self._flights.get(id(check))
        return found[1] if found is not None and found[0] is check else None

    def first_byte(self, check: CacheCheck) -> None:
        """The writer started answering: what it wrote is readable from now on. One store write."""
        flight = self._flight(check)
        if flight is None or flight.answered:
            return
        now = self.clock()
        written = {key: entry if entry.readable_at is not None and entry.readable_at <= now
                   else replace(entry, readable_at=now) for key, entry in flight.writes.items()}
        ledger = self.ledger(check.model)
        ledger.save({**flight.read, **written})
        flight.answered = True
        if now - self._pruned_at.get(check.model, float("-inf")) >= PRUNE_EVERY_S:
            self._pruned_at[check.model] = now
            ledger.prune(now)

    def abandon(self, check: CacheCheck) -> None:
        """The request failed before anything came back: it read and wrote nothing."""
        self._flight(check, pop=True)

    # -- after the answer ----------------------------------------------------------------------------

    def settle(self, payload: dict, check: CacheCheck, *, read: int, write: int, answered_by: str,
               response_cache_hit: bool = False, has_usage: bool = True) -> CacheCheck:
        """Holds the prediction against the router's usage and corrects the ledger where they differ."""
        self._flight(check, pop=True)  # answered, or never will be
        if response_cache_hit:
            return replace(check, reported_read_tokens=read, reported_write_tokens=write,
                           verdict="served by Orq's response cache: the prompt cache was not used")
        if not has_usage:
            return replace(check, verdict="no usage came back to compare")
        if answered_by and answered_by != check.model:
            verdict = (f"answered by {answered_by}, whose cache is separate from {check.model}'s: "
                       f"the router read {read:,} and wrote {write:,}")
            self._reconcile(payload, replace(check, model=answered_by, read_key=None, write_keys=()),
                            answered_by, read)
            return replace(check, reported_read_tokens=read, reported_write_tokens=write, verdict=verdict)
        if self._last_sections.get(check.model) != check.sections:
            self.ledger(check.model).save({}, last={"sections": check.sections, "at": check.predicted_at})
            self._last_sections[check.model] = check.sections
        if read == check.expected_read_tokens and write == check.expected_write_tokens:
            verdict = "as predicted"
        else:
            self._reconcile(payload, check, check.model, read)
            verdict = self._difference(check, read, write)
        return replace(check, reported_read_tokens=read, reported_write_tokens=write, verdict=verdict)

    @staticmethod
    def _difference(check: CacheCheck, read: int, write: int) -> str:
        expected = check.expected_read_tokens
        if read < expected:
            return (f"the router read {read:,} where {expected:,} were expected: another client on this key, "
                    f"or the entry was evicted")
        if read > expected:
            return (f"the router read {read:,} where {expected:,} were expected: another client on this key "
                    f"wrote that prefix")
        return f"the router wrote {write:,} where {check.expected_write_tokens:,} were expected"

    def _reconcile(self, payload: dict, check: CacheCheck, slug: str, read: int) -> None:
        """Makes the ledger say what the router evidently did: it read ``read`` tokens."""
        shape = self._shape({**payload, "model": slug}, slug)
        ledger = self.ledger(slug)
        now = check.predicted_at
        forget = set(check.write_keys)
        if check.read_key and read < check.expected_read_tokens:
            forget.add(check.read_key)
        candidates = lookback_candidates(shape.breakpoints)
        read_at = next((j for j in candidates if shape.cumulative[j] == read), -1) if read else -1
        to_write = breakpoints_to_write(shape.cumulative, shape.breakpoints, read_at, _min_cacheable(slug))
        touched = [shape.keys[j] for j in ([read_at] if read_at >= 0 else []) + to_write]
        known = ledger.read(touched)[0]
        entries: dict[str, LedgerEntry] = {}
        if read_at >= 0:
            key = shape.keys[read_at]
            entry = known.get(key)
            ttl = shape.blocks[read_at].cache_ttl or "5m"
            entries[key] = LedgerEntry(read, read_at + 1, ttl, entry.written_at if entry else now,
                                       now + TTL_SECONDS[ttl], now, now, entry.writer if entry else "another client")
        readable_at, writer = self.clock(), _writer_label(shape, now)
        for b in to_write:
            key, ttl = shape.keys[b], shape.blocks[b].cache_ttl or "5m"
            earlier = None if key in forget else known.get(key)
            entries[key] = _merged(earlier, LedgerEntry(shape.cumulative[b], b + 1, ttl, now, now + TTL_SECONDS[ttl],
                                                        readable_at, now, writer), now)
        ledger.drop(forget - set(entries))
        ledger.save(entries)


_SEEN_KEPT = 256


def clock_for(base_url: str, api_key: str | None = None) -> Clock:
    """The clock the router at ``base_url`` keeps ``api_key``'s cache by: the in-process local
    router's own (a test's fake clock, the Lab's fast-forward of that key), else wall time."""
    from .emulator.server import local_router_at
    from .lab_clock import KeyClock

    router = local_router_at(base_url)
    if router is not None:
        return KeyClock(router.settings, api_key) if api_key else (lambda: router.settings.clock())
    return time.time


def doctor_for(base_url: str, api_key: str, store=None) -> CacheDoctor:
    """The doctor for one connection, its ledger in ``store`` (default: the default store)."""
    if store is None:
        from .store import Store

        store = Store.default()
    return CacheDoctor(store, connection_digest(base_url, api_key), clock_for(base_url, api_key))
