"""One Usage type, normalised from whatever usage object the router sends."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def _count(value: Any) -> int:
    """Absent, null or junk counters read as 0 (WIRE.md: 'Both may be absent or null')."""
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0


@dataclass(frozen=True)
class Usage:
    """Token counts of one request. ``input_tokens`` is the *uncached* input only."""

    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    raw: dict | None = field(default=None, compare=False)

    @property
    def prompt_tokens(self) -> int:
        """All input tokens, cached or not."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens

    @classmethod
    def from_wire(cls, usage: dict | None) -> "Usage":
        usage = usage or {}
        details = usage.get("prompt_tokens_details") or {}
        cache_read = _count(details.get("cached_tokens"))
        # Orq documents `cache_creation_tokens`; other OpenAI-compatible gateways and the
        # openai SDK's types say `cache_write_tokens`. Accept either.
        cache_write = _count(details.get("cache_creation_tokens")) or _count(details.get("cache_write_tokens"))
        prompt = _count(usage.get("prompt_tokens"))
        # OpenAI convention: prompt_tokens includes the cached and written tokens. Where the
        # difference would be negative the router evidently reported uncached input alone.
        uncached = prompt - cache_read - cache_write
        if uncached < 0:
            uncached = prompt
        reasoning = _count((usage.get("completion_tokens_details") or {}).get("reasoning_tokens"))
        return cls(
            input_tokens=uncached,
            cache_read_tokens=cache_read,
            cache_write_tokens=cache_write,
            output_tokens=_count(usage.get("completion_tokens")),
            reasoning_tokens=reasoning,
            raw=dict(usage),
        )

    def to_wire(self) -> dict:
        """The usage object as the router documents it (used by the local router)."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": {
                "cached_tokens": self.cache_read_tokens,
                "cache_creation_tokens": self.cache_write_tokens,
            },
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }

    def to_dict(self) -> dict:
        return {
            "input_tokens": self.input_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "output_tokens": self.output_tokens,
            "reasoning_tokens": self.reasoning_tokens,
        }

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(
            self.input_tokens + other.input_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.output_tokens + other.output_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
        )
