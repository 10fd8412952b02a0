"""From decoded ``data:`` payloads (``chat.completion.chunk`` JSON) to typed events and a Completion.

``ChunkAssembler`` is fed one payload at a time and answers with the events it carries; tool-call
fragments are joined into whole ``ToolCall``s. ``completion_from_response`` does the same for a
non-streamed ``chat.completion`` body. Raw dicts stop here.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import error_message_from_body
from .types import (Completion, ErrorEvent, FinishEvent, ReasoningDelta, RedactedReasoning, SignatureDelta,
                    StreamEvent, TextDelta, ToolCall, ToolCallDelta, ToolCallDone, UsageEvent)
from .usage import Usage

DONE = "[DONE]"

# Anthropic-style error types that arrive mid-stream without an HTTP status of their own.
_STATUS_BY_ERROR_TYPE = {
    "invalid_request_error": 400, "authentication_error": 401, "permission_error": 403,
    "not_found_error": 404, "request_too_large": 413, "rate_limit_error": 429,
    "api_error": 500, "overloaded_error": 529,
}


def error_status(error: Any) -> int | None:
    """The HTTP status an in-band ``{"error": {...}}`` stands for, when it says or implies one."""
    if not isinstance(error, dict):
        return None
    for key in ("status", "status_code", "code"):
        value = error.get(key)
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, int) and 400 <= value <= 599:
            return value
    return _STATUS_BY_ERROR_TYPE.get(error.get("type") or error.get("code"))


def _cache_hit(body: dict) -> bool:
    orq = body.get("orq")
    return isinstance(orq, dict) and orq.get("cache_hit") is True


def _redacted_items(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list):
        return [v if isinstance(v, str) else str(v.get("data", "")) for v in value if v]
    return []


class _PartialCall:
    __slots__ = ("id", "name", "arguments", "done")

    def __init__(self) -> None:
        self.id = ""
        self.name = ""
        self.arguments: list[str] = []
        self.done = False

    def call(self) -> ToolCall:
        return ToolCall(self.id, self.name, "".join(self.arguments))


class ChunkAssembler:
    """Feed ``data:`` payloads in order; read events back, then ``completion()``."""

    def __init__(self, model: str = "") -> None:
        self.model = model
        """The slug that answered (from the chunks), else the one asked for."""
        self.id = ""
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.error: ErrorEvent | None = None
        self.saw_done = False
        self.response_cache_hit = False
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._signature: list[str] = []
        self._redacted: list[str] = []
        self._calls: dict[int, _PartialCall] = {}
        self._last_index = -1

    # --- feeding -----------------------------------------------------------------------------

    def feed(self, data: str, event: str = "message") -> list[StreamEvent]:
        """One ``data:`` payload: a JSON chunk, ``[DONE]`` or an in-band error.
        ``event`` is the SSE event type; an ``error`` event's data is the error itself."""
        if data == DONE or data.strip() == DONE:
            self.saw_done = True
            return self.finish()
        try:
            chunk = json.loads(data)
        except ValueError:
            return self._fail({"message": f"The router sent a stream chunk that is not JSON: {data[:200]!r}"})
        if not isinstance(chunk, dict):
            return self._fail({"message": f"The router sent an unexpected stream chunk: {data[:200]!r}"})
        if event == "error" and not chunk.get("error"):
            chunk = {"error": chunk}
        return self.feed_chunk(chunk)

    def feed_chunk(self, chunk: dict) -> list[StreamEvent]:
        if "error" in chunk and chunk["error"]:
            error = chunk["error"]
            return self._fail(error if isinstance(error, dict) else {"message": str(error)})
        events: list[StreamEvent] = []
        if not self.id and chunk.get("id"):
            self.id = chunk["id"]
        if chunk.get("model"):
            self.model = chunk["model"]
        choices = chunk.get("choices")
        if choices:
            choice = choices[0]
            delta = choice.get("delta")
            if delta:
                self._delta(delta, events)
            reason = choice.get("finish_reason")
            if reason:
                self.finish_reason = reason
                self._finish_calls(events)
                events.append(FinishEvent(reason))
        usage = chunk.get("usage")
        if usage:
            self.usage = Usage.from_wire(usage)
            events.append(UsageEvent(self.usage))
        if "orq" in chunk and _cache_hit(chunk):
            self.response_cache_hit = True
        return events

    def finish(self) -> list[StreamEvent]:
        """End of stream: join the tool calls still open, when the stream really finished."""
        events: list[StreamEvent] = []
        if self.complete:
            self._finish_calls(events)
        return events

    def _delta(self, delta: dict, events: list[StreamEvent]) -> None:
        content = delta.get("content")
        if content:
            self._text.append(content)
            events.append(TextDelta(content))
            if len(delta) == 1 or (len(delta) == 2 and "role" in delta):
                return  # the common case: a text token alone
        reasoning = delta.get("reasoning")
        if reasoning:
            self._reasoning.append(reasoning)
            events.append(ReasoningDelta(reasoning))
        signature = delta.get("reasoning_signature")
        if signature:
            self._signature.append(signature)
            events.append(SignatureDelta(signature))
        for data in _redacted_items(delta.get("redacted_reasoning")):
            self._redacted.append(data)
            events.append(RedactedReasoning(data))
        for fragment in delta.get("tool_calls") or ():
            events.append(self._tool_fragment(fragment))

    def _tool_fragment(self, fragment: dict) -> ToolCallDelta:
        call_id = fragment.get("id") or None
        index = fragment.get("index")
        if not isinstance(index, int):
            # Some gateways omit the index: a new id opens the next call, else the last one goes on.
            known = any(c.id == call_id for c in self._calls.values())
            index = self._last_index + 1 if (call_id and not known) or self._last_index < 0 else self._last_index
        self._last_index = index
        call = self._calls.get(index)
        if call is None:
            call = self._calls[index] = _PartialCall()
        function = fragment.get("function") or {}
        name = function.get("name") or None
        arguments = function.get("arguments") or ""
        if call_id and not call.id:
            call.id = call_id
        if name and not call.name:
            call.name = name
        if arguments:
            call.arguments.append(arguments)
        return ToolCallDelta(index, call_id, name, arguments)

    def _finish_calls(self, events: list[StreamEvent]) -> None:
        for index in sorted(self._calls):
            call = self._calls[index]
            if not call.done:
                call.done = True
                events.append(ToolCallDone(call.call()))

    def _fail(self, error: dict) -> list[StreamEvent]:
        message = error_message_from_body({"error": error}, "The router reported an error mid-stream")
        self.error = ErrorEvent(message, error_status(error), error)
        return [self.error]

    # --- reading -----------------------------------------------------------------------------

    @property
    def complete(self) -> bool:
        """The answer is whole: ``[DONE]`` or a finish_reason arrived (a missing ``[DONE]``
        after the finish and usage chunks is tolerated), and no error came in-band."""
        return self.error is None and (self.saw_done or self.finish_reason is not None)

    @property
    def text(self) -> str:
        return "".join(self._text)

    def completion(self, *, ttft_ms: float | None = None, latency_ms: float | None = None,
                   request_id: str | None = None, partial: bool | None = None, error: str | None = None,
                   response_cache_hit: bool = False) -> Completion:
        if error is None and self.error is not None:
            error = self.error.message
        return Completion(
            text="".join(self._text),
            reasoning="".join(self._reasoning),
            reasoning_signature="".join(self._signature) or None,
            redacted_reasoning=tuple(self._redacted),
            tool_calls=tuple(self._calls[i].call() for i in sorted(self._calls) if self._calls[i].done),
            finish_reason=self.finish_reason,
            model=self.model,
            id=self.id,
            usage=self.usage or Usage(),
            ttft_ms=ttft_ms,
            latency_ms=latency_ms,
            request_id=request_id,
            partial=(not self.complete) if partial is None else partial,
            error=error,
            response_cache_hit=response_cache_hit or self.response_cache_hit,
        )


def is_token(event: StreamEvent) -> bool:
    """Events that carry answer content: the first one marks the time to first token."""
    return isinstance(event, (TextDelta, ReasoningDelta, ToolCallDelta, SignatureDelta, RedactedReasoning))


# --- non-streamed bodies -------------------------------------------------------------------------

def _message_parts(content: Any) -> tuple[str, str, str | None, list[str]]:
    """(text, reasoning, signature, redacted) from a message's content, string or list of parts."""
    if isinstance(content, str) or content is None:
        return content or "", "", None, []
    text, reasoning, redacted = [], [], []
    signature = None
    for part in content:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text":
            text.append(part.get("text") or "")
        elif kind in ("reasoning", "thinking"):
            reasoning.append(part.get("reasoning") or part.get("thinking") or "")
            signature = part.get("signature") or signature
        elif kind == "redacted_reasoning":
            redacted.append(part.get("data") or "")
    return "".join(text), "".join(reasoning), signature, redacted


def completion_from_response(body: dict, *, model: str = "", ttft_ms: float | None = None,
                             latency_ms: float | None = None, request_id: str | None = None,
                             response_cache_hit: bool = False) -> Completion:
    """A Completion from a non-streamed ``chat.completion`` body."""
    choices = body.get("choices") or [{}]
    choice = choices[0] or {}
    message = choice.get("message") or {}
    text, reasoning, signature, redacted = _message_parts(message.get("content"))
    calls = tuple(
        ToolCall(c.get("id") or "", (c.get("function") or {}).get("name") or "",
                 (c.get("function") or {}).get("arguments") or "")
        for c in message.get("tool_calls") or ()
    )
    return Completion(
        text=text,
        reasoning=message.get("reasoning") or reasoning,
        reasoning_signature=message.get("reasoning_signature") or signature,
        redacted_reasoning=tuple(_redacted_items(message.get("redacted_reasoning")) or redacted),
        tool_calls=calls,
        finish_reason=choice.get("finish_reason"),
        model=body.get("model") or model,
        id=body.get("id") or "",
        usage=Usage.from_wire(body.get("usage")),
        ttft_ms=ttft_ms,
        latency_ms=latency_ms,
        request_id=request_id,
        response_cache_hit=response_cache_hit or _cache_hit(body),
    )
