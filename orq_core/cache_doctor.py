"""The cache doctor: before a request is sent, what it will read from and write to the prompt
cache, and why in one sentence; afterwards, that prediction held against the router's usage.

Prediction applies Anthropic's prompt-caching rules (``cache_rules.py``, the same functions the
local router runs; the sources are cited there and in ``emulator/prompt.py``) to the request's
blocks (``emulator/prompt.segment_prompt``: the local router's own segmentation and token counts)
and to a **prefix ledger**: what this connection wrote, kept in the store (kind ``cache_ledger``)
so predictions hold across pages, browser sessions and CLI runs.

A ledger is one store document per connection and model slug (entries are per provider slug,
as the local router keeps them). Its id is the base URL, a digest of the key (never the key) and
the slug; its items are the entries, keyed by the prefix hash (a hash chained over the block
digests, so no prompt text is kept), plus the last request's section digests (``_last``), which
explain a miss: "the system prompt changed since the last request".
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Callable

from .cache_rules import (LOOKBACK_BLOCKS, TTL_SECONDS, breakpoints_to_write, chain_digests, cumulative_tokens,
                          lookback_candidates, read_and_write_tokens)
from .catalog import UnknownModelError, catalog

LEDGER_KIND = "cache_ledger"
LAST_KEY = "_last"
FORGET_AFTER_S = 86_400.0
"""Entries expired this long ago are dropped from the ledger."""

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


# --- the ledger ---------------------------------------------------------------------------------

class Ledger:
    """The entries one connection wrote for one model slug, in the store (one item each)."""

    def __init__(self, store, connection_id: str, slug: str):
        self.store = store
        self.doc_id = f"{connection_id}|{slug}"

    def load(self) -> tuple[dict[str, LedgerEntry], dict | None]:
        entries, last = {}, None
        for key, data in self.store.items(LEDGER_KIND, self.doc_id):
            if key == LAST_KEY:
                last = data
            elif isinstance(data, dict):
                try:
                    entries[key] = LedgerEntry(**data)
                except TypeError:
                    continue
        return entries, last

    def put(self, key: str, entry: LedgerEntry) -> None:
        self.store.put_item(LEDGER_KIND, self.doc_id, key, asdict(entry))

    def get(self, key: str) -> LedgerEntry | None:
        data = self.store.get_item(LEDGER_KIND, self.doc_id, key)
        try:
            return LedgerEntry(**data) if isinstance(data, dict) else None
        except TypeError:
            return None

    def forget(self, key: str) -> None:
        """Drops one entry (an item of the document); the store has no per-item delete, so the
        entry is kept as expired long ago."""
        entry = self.get(key)
        if entry is not None:
            self.put(key, replace(entry, expires_at=-FORGET_AFTER_S, readable_at=None))

    def set_last(self, data: dict) -> None:
        self.store.put_item(LEDGER_KIND, self.doc_id, LAST_KEY, data)


# --- the request as the cache sees it -------------------------------------------------------------

@dataclass(frozen=True)
class _Shape:
    blocks: list
    keys: list[str]
    cumulative: list[int]
    breakpoints: list[int]
    sections: dict

    @property
    def total(self) -> int:
        return self.cumulative[-1] if self.cumulative else 0


def _section_of(path: str, payload: dict) -> str:
    if path.startswith("tools"):
        return "tools"
    index = int(path.split("[", 1)[1].split("]", 1)[0])
    message = payload["messages"][index]
    return "system" if message.get("role") == "system" else "messages"


def _shape(payload: dict, slug: str) -> _Shape:
    from .emulator.prompt import message_context, segment_prompt

    blocks = segment_prompt(payload)
    keys = [k.hex()[:32] for k in chain_digests(b"cache-ledger\0" + slug.encode("utf-8"), (b.digest for b in blocks))]
    digests: dict[str, Any] = {"tools": hashlib.sha256(), "system": hashlib.sha256()}
    for block in blocks:
        section = _section_of(block.path, payload)
        if section in digests:
            digests[section].update(block.digest)
    context = message_context(payload)
    sections = {"tools": digests["tools"].hexdigest()[:16], "system": digests["system"].hexdigest()[:16],
                "tool_choice": repr((context["tool_choice"], context["parallel_tool_calls"])),
                "thinking": repr(context["thinking"]), "images": context["images"]}
    return _Shape(blocks, keys, cumulative_tokens(b.tokens for b in blocks),
                  [i for i, b in enumerate(blocks) if b.cache_ttl], sections)


def _writer_label(payload: dict, now: float) -> str:
    turns = sum(1 for m in payload.get("messages") or [] if isinstance(m, dict) and m.get("role") == "user")
    if turns >= 2:
        return f"turn {turns}"
    return "the request at " + time.strftime("%H:%M:%S", time.gmtime(now))


def _segments(shape: _Shape, payload: dict, read_at: int, written_to: int) -> tuple[MapSegment, ...]:
    """Blocks merged by section label and state; a breakpoint closes a segment."""
    segments: list[MapSegment] = []
    for i, block in enumerate(shape.blocks):
        state = "read" if i <= read_at else "write" if i <= written_to else "uncached"
        section = _section_of(block.path, payload)
        label = section if section != "messages" else "message " + block.path.split("[", 1)[1].split("]", 1)[0]
        last = segments[-1] if segments else None
        if last is not None and last.label == label and last.state == state and last.breakpoint is None:
            segments[-1] = MapSegment(label, last.tokens + block.tokens, state, block.cache_ttl)
        else:
            segments.append(MapSegment(label, block.tokens, state, block.cache_ttl))
    return tuple(segments)


# --- the doctor ------------------------------------------------------------------------------------

class CacheDoctor:
    """Predicts, records and compares, for one connection. ``clock`` is the router's clock
    (the local router's own when it runs in this process; wall time otherwise)."""

    def __init__(self, store, connection_id: str, clock: Clock = time.time):
        self.store = store
        self.connection_id = connection_id
        self.clock = clock

    def ledger(self, slug: str) -> Ledger:
        return Ledger(self.store, self.connection_id, slug)

    # -- before sending ------------------------------------------------------------------------

    def predict(self, payload: dict) -> CacheCheck:
        slug = str(payload.get("model") or "")
        shape = _shape(payload, slug)
        entries, last = self.ledger(slug).load()
        now = self.clock()
        min_cacheable = _min_cacheable(slug)
        candidates = lookback_candidates(shape.breakpoints)
        read_at = next((j for j in candidates if self._usable(entries.get(shape.keys[j]), now)), -1)
        to_write = breakpoints_to_write(shape.cumulative, shape.breakpoints, read_at, min_cacheable)
        read, write = read_and_write_tokens(shape.cumulative, read_at, to_write)
        why = self._why(shape, entries, last, now, read_at, to_write, read, write, slug, min_cacheable)
        return CacheCheck(
            model=slug, expected_read_tokens=read, expected_write_tokens=write,
            uncached_tokens=shape.total - read - write, why=why,
            segments=_segments(shape, payload, read_at, to_write[-1] if to_write else read_at),
            predicted_at=now, read_key=shape.keys[read_at] if read_at >= 0 else None,
            write_keys=tuple(shape.keys[b] for b in to_write),
            candidate_keys=tuple(shape.keys[j] for j in candidates),
            candidate_tokens=tuple(shape.cumulative[j] for j in candidates),
            write_plan=tuple((shape.keys[b], shape.cumulative[b], b + 1, shape.blocks[b].cache_ttl or "5m")
                             for b in to_write),
            sections=shape.sections, writer=_writer_label(payload, now))

    @staticmethod
    def _usable(entry: LedgerEntry | None, now: float) -> bool:
        return entry is not None and entry.expires_at > now and entry.readable(now)

    def _why(self, shape: _Shape, entries: dict, last: dict | None, now: float, read_at: int,
             to_write: list[int], read: int, write: int, slug: str, min_cacheable: int) -> str:
        if not shape.breakpoints:
            return "no caching: the request has no cache breakpoint"
        if read == 0 and write == 0:
            longest = max(shape.cumulative[b] for b in shape.breakpoints)
            return (f"no caching: the prefix is {longest:,} tokens, below {_model_label(slug)}'s minimum "
                    f"of {min_cacheable:,}")
        cause = self._miss_cause(shape, entries, last, now, read_at)
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

    def _miss_cause(self, shape: _Shape, entries: dict, last: dict | None, now: float, read_at: int) -> str | None:
        """Why no longer prefix was read: an entry that expired, one not yet readable, one beyond
        the lookback, or a change since the last request (Anthropic's invalidation table)."""
        later = [j for j in lookback_candidates(shape.breakpoints) if j > read_at]
        for j in later:
            entry = entries.get(shape.keys[j])
            if entry is None or entry.expires_at <= -FORGET_AFTER_S + 1:
                continue
            if entry.expires_at <= now:
                return (f"miss: the entry expired {ago(now - entry.expires_at)} ago ({entry.ttl} TTL, "
                        f"last used {ago(now - entry.last_used)} ago)")
            if not entry.readable(now):
                return "miss: sent before the first response began"
        candidates = set(lookback_candidates(shape.breakpoints))
        last_breakpoint = max(shape.breakpoints)
        for j in range(last_breakpoint - 1, read_at, -1):
            if j in candidates:
                continue
            entry = entries.get(shape.keys[j])
            if self._usable(entry, now):
                beyond = min(b for b in shape.breakpoints if b > j)
                return (f"miss: the breakpoint is {beyond - j} blocks past the last write, beyond the "
                        f"{LOOKBACK_BLOCKS}-block lookback; add a breakpoint nearer the end")
        if last:
            previous = last.get("sections") or {}
            if previous.get("tools") != shape.sections["tools"]:
                return "rewrites everything: the tool definitions changed since the last request"
            if previous.get("system") != shape.sections["system"]:
                return "the system prompt changed since the last request"
            for name, words in (("thinking", "the thinking settings"), ("tool_choice", "tool_choice"),
                                ("images", "the number of images")):
                if previous.get(name) != shape.sections[name]:
                    return f"{words} changed since the last request, which invalidates the cached messages"
        return None

    # -- recording ----------------------------------------------------------------------------------

    def begin(self, payload: dict, check: CacheCheck) -> None:
        """Records what the request is about to do: the read refreshes its entry, the writes are
        pending until the first byte arrives."""
        ledger = self.ledger(check.model)
        now = check.predicted_at
        if check.read_key:
            entry = ledger.get(check.read_key)
            if entry is not None:
                ledger.put(check.read_key, replace(entry, expires_at=now + entry.ttl_seconds, last_used=now))
        self._write_entries(ledger, check.write_plan, check.writer, now, readable_at=None)

    def _write_entries(self, ledger: Ledger, plan, writer: str, now: float, readable_at: float | None) -> None:
        for key, tokens, blocks, ttl in plan:
            entry = LedgerEntry(tokens, blocks, ttl, now, now + TTL_SECONDS[ttl], readable_at, now, writer)
            earlier = ledger.get(key)
            if earlier is not None and earlier.expires_at > now:
                # a write racing an unreadable entry: the first to answer wins (as the router does)
                if earlier.readable_at is not None:
                    entry.readable_at = earlier.readable_at if readable_at is None else min(earlier.readable_at,
                                                                                            readable_at)
                entry.expires_at = max(earlier.expires_at, entry.expires_at)
            ledger.put(key, entry)

    def first_byte(self, check: CacheCheck) -> None:
        """The writer started answering: what it wrote is readable from now on."""
        ledger = self.ledger(check.model)
        now = self.clock()
        for key in check.write_keys:
            entry = ledger.get(key)
            if entry is not None and (entry.readable_at is None or entry.readable_at > now):
                ledger.put(key, replace(entry, readable_at=now))

    def abandon(self, check: CacheCheck) -> None:
        """The request failed before anything came back: it wrote nothing."""
        ledger = self.ledger(check.model)
        for key in check.write_keys:
            entry = ledger.get(key)
            if entry is not None and entry.readable_at is None:
                ledger.forget(key)

    # -- after the answer ----------------------------------------------------------------------------

    def settle(self, payload: dict, check: CacheCheck, *, read: int, write: int, answered_by: str,
               response_cache_hit: bool = False, has_usage: bool = True) -> CacheCheck:
        """Holds the prediction against the router's usage and corrects the ledger where they differ."""
        if response_cache_hit:
            self.abandon(check)
            return replace(check, reported_read_tokens=read, reported_write_tokens=write,
                           verdict="served by Orq's response cache: the prompt cache was not used")
        if not has_usage:
            return replace(check, verdict="no usage came back to compare")
        if answered_by and answered_by != check.model:
            self.abandon(check)
            verdict = (f"answered by {answered_by}, whose cache is separate from {check.model}'s: "
                       f"the router read {read:,} and wrote {write:,}")
            self._reconcile(payload, replace(check, model=answered_by, read_key=None, write_keys=()),
                            answered_by, read)
            return replace(check, reported_read_tokens=read, reported_write_tokens=write, verdict=verdict)
        self.ledger(check.model).set_last({"sections": check.sections, "at": check.predicted_at})
        checked = replace(check, reported_read_tokens=read, reported_write_tokens=write)
        if read == check.expected_read_tokens and write == check.expected_write_tokens:
            return replace(checked, verdict="as predicted")
        self._reconcile(payload, check, check.model, read)
        return replace(checked, verdict=self._difference(check, read, write))

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
        shape = _shape({**payload, "model": slug}, slug)
        ledger = self.ledger(slug)
        now = check.predicted_at
        if check.read_key and read < check.expected_read_tokens:
            ledger.forget(check.read_key)
        for key in check.write_keys:
            ledger.forget(key)
        candidates = lookback_candidates(shape.breakpoints)
        read_at = next((j for j in candidates if shape.cumulative[j] == read), -1) if read else -1
        if read_at >= 0:
            key = shape.keys[read_at]
            entry = ledger.get(key)
            ttl = shape.blocks[read_at].cache_ttl or "5m"
            ledger.put(key, LedgerEntry(read, read_at + 1, ttl, entry.written_at if entry else now,
                                        now + TTL_SECONDS[ttl], now, now,
                                        entry.writer if entry else "another client"))
        to_write = breakpoints_to_write(shape.cumulative, shape.breakpoints, read_at, _min_cacheable(slug))
        plan = [(shape.keys[b], shape.cumulative[b], b + 1, shape.blocks[b].cache_ttl or "5m") for b in to_write]
        self._write_entries(ledger, plan, _writer_label(payload, now), now, readable_at=self.clock())


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
