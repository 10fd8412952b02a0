"""Typed results and stream events. Raw dicts stay at the wire edge (client, emulator)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Union

from .usage import Usage


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str
    """The JSON text exactly as the model produced it (may be invalid JSON)."""

    def parsed_arguments(self) -> Any:
        """Parsed arguments; raises ValueError when the model sent invalid JSON."""
        return json.loads(self.arguments or "{}")

    def to_wire(self) -> dict:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(frozen=True)
class Completion:
    """One finished (or, when ``partial``, cut short) assistant answer with its measurements."""

    text: str = ""
    reasoning: str = ""
    reasoning_signature: str | None = None
    redacted_reasoning: tuple[str, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None
    model: str = ""
    """The slug that actually answered (differs from the request's when a fallback served)."""
    id: str = ""
    usage: Usage = field(default_factory=Usage)
    ttft_ms: float | None = None
    latency_ms: float | None = None
    request_id: str | None = None
    partial: bool = False
    """True when the stream was stopped or cut before it finished."""
    error: str | None = None
    response_cache_hit: bool = False
    """True when Orq's exact-match response cache served it (header or body flag)."""
    cache: Any = None
    """The cache doctor's ``CacheCheck`` (prediction, why, and the comparison), when one ran."""

    def to_dict(self) -> dict:
        data = asdict(self)
        data["usage"] = {**self.usage.to_dict(), "raw": self.usage.raw}
        return data

    @classmethod
    def from_dict(cls, d: dict) -> "Completion":
        usage = dict(d.get("usage") or {})
        raw = usage.pop("raw", None)
        return cls(
            text=str(d.get("text", "")), reasoning=str(d.get("reasoning", "")),
            reasoning_signature=d.get("reasoning_signature"),
            redacted_reasoning=tuple(d.get("redacted_reasoning") or ()),
            tool_calls=tuple(ToolCall(**c) for c in d.get("tool_calls") or ()),
            finish_reason=d.get("finish_reason"), model=str(d.get("model", "")), id=str(d.get("id", "")),
            usage=Usage(**{k: int(v) for k, v in usage.items()}, raw=raw),
            ttft_ms=d.get("ttft_ms"), latency_ms=d.get("latency_ms"), request_id=d.get("request_id"),
            partial=bool(d.get("partial")), error=d.get("error"),
            response_cache_hit=bool(d.get("response_cache_hit")),
            cache=_cache_check(d.get("cache")),
        )

    def assistant_message(self) -> dict:
        """The wire message that replays this answer in the next turn (signature untouched)."""
        if self.reasoning or self.redacted_reasoning:
            content: list[dict] = []
            if self.reasoning:
                content.append({"type": "reasoning", "reasoning": self.reasoning,
                                "signature": self.reasoning_signature or ""})
            content.extend({"type": "redacted_reasoning", "data": d} for d in self.redacted_reasoning)
            if self.text:
                content.append({"type": "text", "text": self.text})
            message: dict = {"role": "assistant", "content": content}
        else:
            message = {"role": "assistant", "content": self.text}
        if self.tool_calls:
            message["tool_calls"] = [c.to_wire() for c in self.tool_calls]
        return message


def _cache_check(data: Any) -> Any:
    if not isinstance(data, dict):
        return None
    from .cache_doctor import CacheCheck

    try:
        return CacheCheck.from_dict(data)
    except (TypeError, ValueError):
        return None


# --- stream events ---------------------------------------------------------------------------

@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True)
class SignatureDelta:
    signature: str


@dataclass(frozen=True)
class RedactedReasoning:
    data: str


@dataclass(frozen=True)
class ToolCallDelta:
    """A fragment of a tool call: ``id``/``name`` in the first fragment, then argument pieces."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True)
class ToolCallDone:
    """A whole tool call, emitted once its fragments are joined (at finish or end of stream)."""

    call: ToolCall


@dataclass(frozen=True)
class FinishEvent:
    reason: str


@dataclass(frozen=True)
class UsageEvent:
    usage: Usage


@dataclass(frozen=True)
class ErrorEvent:
    message: str
    status: int | None = None
    body: Any = None


@dataclass(frozen=True)
class Done:
    """Last event of every stream the client yields: the assembled Completion."""

    completion: Completion


StreamEvent = Union[TextDelta, ReasoningDelta, SignatureDelta, RedactedReasoning, ToolCallDelta,
                    ToolCallDone, FinishEvent, UsageEvent, ErrorEvent, Done]


@dataclass
class RunRecord:
    """One row of the run log: every request the playground sends. Never holds the key."""

    page: str
    model: str
    """The slug that was asked for."""
    status: str
    """'ok', 'partial', 'error' or 'cancelled'."""
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    ttft_ms: float | None = None
    latency_ms: float | None = None
    answered_by: str = ""
    """The slug that actually answered (fallbacks)."""
    http_status: int | None = None
    error: str | None = None
    request_id: str | None = None
    ts: float = 0.0
    id: int | None = None

    @property
    def provider(self) -> str:
        slug = self.answered_by or self.model
        return slug.split("/", 1)[0] if "/" in slug else "anthropic"
