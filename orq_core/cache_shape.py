"""A request's blocks as the prompt cache sees them, for the cache doctor: the local router's own
segmentation (``emulator/prompt.py``), reused from the previous request wherever the prompt did
not change.

A conversation resends everything before its newest turn, and segmenting it again (a JSON dump
and a hash per block) was most of the doctor's cost. So the doctor keeps the last request's
``Shape`` per model slug, as units: the tool definitions, then each message in prefix order
(system messages first, as the router orders them), each with a private copy of its source. A
new request reuses every leading unit whose source is equal (``==``, cache_control markers
included) and segments only the rest with the router's functions; the chained prefix hashes
and cumulative token counts are reused up to the first unit that changed. The first non-system
message carries the router's salt of the message settings (``message_context``), so when those
change it is segmented again with everything after it.

Breakpoints are marked per unit the way ``emulator/prompt._mark_breakpoints`` marks them over
``request.cache_breakpoints``: a marker on a content part marks that part's block, a marker on
the message (after its parts) its last block, a marker on a tool or its function that tool's
block. ``tests/test_cache_shape.py`` holds every field equal to ``segment_prompt`` over random
prompts and sequences.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from .cache_rules import chain_digests
from .emulator.prompt import Block, _digest, _message_blocks, _ordered_messages, _tool_blocks, message_context


@dataclass(frozen=True)
class _Unit:
    """The tool definitions (``index`` None) or one message, segmented."""

    index: int | None
    source: Any
    """A copy of the tools list or the message, compared with the next request's."""
    blocks: tuple[Block, ...]
    section: str
    """'tools', 'system' or 'messages'."""
    salted: bool = False
    user: bool = False


@dataclass(frozen=True)
class Shape:
    """The request's blocks in prefix order, with what the doctor derives from them."""

    slug: str
    units: tuple[_Unit, ...]
    context: dict
    blocks: tuple[Block, ...]
    chain: tuple[bytes, ...]
    keys: tuple[str, ...]
    """The ledger's key of the prefix ending at each block (the chain, shortened)."""
    cumulative: tuple[int, ...]
    labels: tuple[str, ...]
    """Per block: 'tools', 'system' or 'message N' (N its index in the request)."""
    breakpoints: tuple[int, ...]
    sections: dict
    unit_ends: tuple[int, ...] = ()
    """Per unit, the number of blocks up to and including it."""
    user_turns: tuple[int, ...] = ()
    """Per unit, the number of user messages up to and including it."""

    @property
    def total(self) -> int:
        return self.cumulative[-1] if self.cumulative else 0

    @property
    def user_messages(self) -> int:
        return self.user_turns[-1] if self.user_turns else 0


def shape_of(payload: dict, slug: str, previous: Shape | None = None) -> Shape:
    """The request's shape; ``previous`` (the same slug's last one) lends its unchanged prefix."""
    tools = payload.get("tools") if isinstance(payload.get("tools"), list) else []
    messages = payload.get("messages") if isinstance(payload.get("messages"), list) else []
    context = message_context(payload)
    sources: list[tuple[int | None, Any]] = [(None, tools), *_ordered_messages(messages)]
    reused = _reusable(sources, context, previous) if previous is not None and previous.slug == slug else 0
    units = list(previous.units[:reused]) if reused else []
    salted = any(unit.salted for unit in units)
    for index, source in sources[reused:]:
        unit = _tools_unit(source) if index is None else _message_unit(index, source, context, salted)
        salted = salted or unit.salted
        units.append(unit)
    return _assemble(slug, units, context, previous if reused else None, reused)


def _reusable(sources: list, context: dict, previous: Shape) -> int:
    """How many leading units of ``previous`` the request repeats unchanged."""
    count = 0
    for (index, source), unit in zip(sources, previous.units):
        if unit.index != index or unit.source != source or (unit.salted and context != previous.context):
            break
        count += 1
    return count


def _tools_unit(tools: list) -> _Unit:
    blocks = list(_tool_blocks(tools, _digest))
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            continue
        function = tool.get("function")
        for holder in (tool, function if isinstance(function, dict) else {}):
            ttl = _marker_ttl(holder)
            if ttl is not None:
                blocks[i] = _marked(blocks[i], ttl)
    return _Unit(None, _copy(tools), tuple(blocks), "tools")


def _message_unit(index: int, message: dict, context: dict, salted: bool) -> _Unit:
    blocks = list(_message_blocks(index, message, _digest))
    system = message.get("role") == "system"
    salt_here = not salted and not system and bool(blocks)
    if salt_here:  # the router's salt (emulator/prompt._blocks): message settings invalidate messages only
        first = blocks[0]
        salt = _digest({"context": context})
        blocks[0] = Block(first.path, first.tokens, hashlib.sha256(first.digest + salt).digest())
    content = message.get("content")
    for j, part in enumerate(content if isinstance(content, list) else []):
        ttl = _marker_ttl(part) if isinstance(part, dict) else None
        if ttl is not None:
            path = f"messages[{index}].content[{j}]"
            at = next(n for n, block in enumerate(blocks) if block.path == path)
            blocks[at] = _marked(blocks[at], ttl)
    ttl = _marker_ttl(message)
    if ttl is not None and blocks:
        blocks[-1] = _marked(blocks[-1], ttl)
    return _Unit(index, _copy(message), tuple(blocks), "system" if system else "messages", salt_here,
                 message.get("role") == "user")


def _marker_ttl(holder: dict) -> str | None:
    """The TTL of a cache_control marker (request.cache_breakpoints: default "5m", non-objects skipped)."""
    value = holder.get("cache_control")
    return str(value.get("ttl", "5m")) if isinstance(value, dict) else None


def _marked(block: Block, ttl: str) -> Block:
    return Block(block.path, block.tokens, block.digest, ttl)


def _assemble(slug: str, units: list[_Unit], context: dict, previous: Shape | None, reused: int) -> Shape:
    """Blocks, hashes, sums and labels: the first ``reused`` units' taken from ``previous``."""
    kept = previous.unit_ends[reused - 1] if previous is not None and reused else 0
    unit_ends = list(previous.unit_ends[:reused]) if reused else []
    user_turns = list(previous.user_turns[:reused]) if reused else []
    for unit in units[reused:]:
        unit_ends.append((unit_ends[-1] if unit_ends else 0) + len(unit.blocks))
        user_turns.append((user_turns[-1] if user_turns else 0) + unit.user)
    fresh = [block for unit in units[reused:] for block in unit.blocks]
    fresh_labels = [_label(unit) for unit in units[reused:] for _ in unit.blocks]
    if kept:
        chain = previous.chain[:kept] + tuple(chain_digests(b"", (b.digest for b in fresh), after=previous.chain[kept - 1]))
        keys, cumulative = previous.keys[:kept], previous.cumulative[:kept]
        blocks, labels = previous.blocks[:kept], previous.labels[:kept]
        breakpoints = tuple(b for b in previous.breakpoints if b < kept)
    else:
        chain = tuple(chain_digests(b"cache-ledger\0" + slug.encode("utf-8"), (b.digest for b in fresh)))
        keys = cumulative = blocks = labels = breakpoints = ()
    keys += tuple(k.hex()[:32] for k in chain[kept:])
    total, sums = (cumulative[-1] if cumulative else 0), []
    for block in fresh:
        total += block.tokens
        sums.append(total)
    return Shape(slug, tuple(units), context, blocks + tuple(fresh), chain, keys, cumulative + tuple(sums),
                 labels + tuple(fresh_labels),
                 breakpoints + tuple(kept + i for i, block in enumerate(fresh) if block.cache_ttl),
                 previous.sections if _same_sections(units, context, previous, reused) else _sections(units, context),
                 tuple(unit_ends), tuple(user_turns))


def _same_sections(units: list[_Unit], context: dict, previous: Shape | None, reused: int) -> bool:
    """The same message settings, and every tools and system unit of both requests among the reused."""
    return previous is not None and context == previous.context and \
        all(unit.section == "messages" for unit in units[reused:] + list(previous.units[reused:]))


def _label(unit: _Unit) -> str:
    return unit.section if unit.section != "messages" else f"message {unit.index}"


def _sections(units: list[_Unit], context: dict) -> dict:
    """Digests of what a miss is explained by: the tools, the system prompt, the message settings."""
    digests = {"tools": hashlib.sha256(), "system": hashlib.sha256()}
    for unit in units:
        if unit.section in digests:
            for block in unit.blocks:
                digests[unit.section].update(block.digest)
    return {"tools": digests["tools"].hexdigest()[:16], "system": digests["system"].hexdigest()[:16],
            "tool_choice": repr((context["tool_choice"], context["parallel_tool_calls"])),
            "thinking": repr(context["thinking"]), "images": context["images"]}


def _copy(value: Any) -> Any:
    """A copy of JSON-like data that the caller's later edits cannot reach (strings are shared)."""
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value
