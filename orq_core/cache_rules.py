"""Anthropic's prompt-caching rules, as pure functions over a prompt's blocks.

One copy, shared by the local router (``emulator/cache.py``, which applies them to its cache) and
the cache doctor (``cache_doctor.py``, which applies them to its ledger to predict a request), so a
prediction equals what the local router then reports.

Source: Anthropic, "Prompt caching", https://platform.claude.com/docs/en/build-with-claude/prompt-caching
(read 2026-12-01), and "Tool use with prompt caching",
https://platform.claude.com/docs/en/agents-and-tools/tool-use/tool-use-with-prompt-caching:

- The prefix is tools, then system, then messages; a ``cache_control`` breakpoint caches the
  prefix that ends at its block. At most 4 breakpoints.
- Reads: "the system automatically checks for cache hits at previous content block boundaries
  (up to about 20 blocks before the explicit breakpoint)"; the longest hit wins. The breakpoint
  itself counts as the first of the 20 positions.
- A prefix shorter than the model's minimum cacheable length is not cached (no error).
- TTL 5 minutes (default) or 1 hour, refreshed each time the entry is used; 1h breakpoints must
  come before 5m ones (``request.py`` refuses the other order).
- "A cache entry only becomes available after the first response begins."
"""

from __future__ import annotations

import hashlib
from typing import Iterable, Sequence

LOOKBACK_BLOCKS = 20
TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}


def cumulative_tokens(token_counts: Iterable[int]) -> list[int]:
    """cumulative[i] = tokens of blocks 0..i (the prefix that ends at block i)."""
    out, total = [], 0
    for tokens in token_counts:
        total += tokens
        out.append(total)
    return out


def lookback_candidates(breakpoints: Sequence[int]) -> list[int]:
    """The block positions a request may read at, longest prefix first: each breakpoint and the
    ``LOOKBACK_BLOCKS - 1`` boundaries before it."""
    candidates = {j for b in breakpoints for j in range(max(0, b - LOOKBACK_BLOCKS + 1), b + 1)}
    return sorted(candidates, reverse=True)


def breakpoints_to_write(cumulative: Sequence[int], breakpoints: Sequence[int], read_at: int,
                         min_cacheable: int) -> list[int]:
    """Every breakpoint after the read point whose prefix reaches the model's minimum."""
    return [b for b in breakpoints if b > read_at and cumulative[b] >= min_cacheable]


def read_and_write_tokens(cumulative: Sequence[int], read_at: int, to_write: Sequence[int]) -> tuple[int, int]:
    """(read, write): the read prefix, and the tokens from there up to the last breakpoint written."""
    read = cumulative[read_at] if read_at >= 0 else 0
    write = cumulative[to_write[-1]] - read if to_write else 0
    return read, write


def chain_digests(seed: bytes, digests: Iterable[bytes], after: bytes | None = None) -> list[bytes]:
    """keys[i] identifies the prefix of blocks 0..i: a hash chained over the block digests.
    ``after``: the key of the blocks before these (continues a chain; ``seed`` is then unused)."""
    running = hashlib.sha256(seed).digest() if after is None else after
    keys = []
    for digest in digests:
        running = hashlib.sha256(running + digest).digest()
        keys.append(running)
    return keys
