"""The local router: an Orq-compatible ``chat/completions`` endpoint on loopback (Starlette).

It speaks the WIRE.md format and emulates Claude's observable behaviour: validation errors,
prompt caching (``cache.py``), a latency model (``latency.py``), streaming, thinking with
signatures and tool calls (``content.py``), media checks (``orq_core.media``), Orq's fallbacks,
retries and exact-match response cache, and injected faults (``faults.py``). Its text is
synthetic. It makes no outbound network call: URL images and PDFs are acknowledged, never fetched.

Choices where the sources are silent:
- Error body ``{"error": {"message", "type", "code", "param"}}`` with Anthropic's error types and
  ``code`` = the HTTP status.
- Orq options are read from the ``orq`` object first, then from top-level keys.
- Fallbacks: an unknown slug (404) or a retryable error (429, 5xx, 529) moves on to the next
  model; a 400 does not. When every model fails the last error is returned. Retries (Orq
  ``retry``: count 1-5, ``on_codes`` default [429]) wait Orq's documented 1 s, 2 s, 4 s... (or the
  Retry-After if longer), times ``time_scale``.
- Response cache hit: the stored answer at once (no latency model, no faults), header
  ``x-orq-cache: hit``, body (and every chunk) ``"orq": {"cache_hit": true}``, and the usage
  the original request reported (so the page shows what was saved; it flags the hit).
- Output tokens = text + reasoning + tool-call arguments (``text_tokens`` each). ``max_tokens``
  truncates in generation order (reasoning, text, tool calls; calls that do not fit are
  dropped) with finish_reason "length"; a stop sequence cuts the text before it ("stop").
- ``redacted_reasoning`` in a JSON message is a string when there is one, a list when several.
- Streaming: about ``chunk_tokens`` tokens a chunk; the first chunk comes after the modelled
  TTFT, each later one after its own tokens at the model's output rate. Chunks due at the same
  moment go out in one write (with time_scale 0, the whole stream in one).
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import hashlib
import hmac
import itertools
import json
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, AsyncIterator, Awaitable, Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..catalog import Target, UnknownModelError, catalog
from ..errors import OrqError, RequestValidationError, is_retryable
from ..request import validate_payload, validated_breakpoints
from ..tokens import TOKEN_UNITS, text_tokens
from ..usage import Usage
from .body import parse_body
from .cache import PromptCache, ResponseCache, key_scope
from .faults import CUT, ERROR_MIDSTREAM, HEADER, SLOW_FIRST_BYTE, Fault, FaultBoard, parse_faults
from .latency import output_ms, predicted_ttft_ms
from ..media import MediaError
from .content import answer_digest, check_replayed_signatures, compose_answer, has_inline_media, inspect_media_parts
from .prompt import Block, segment_prompt

log = logging.getLogger(__name__)

LOCAL_API_KEY = "local-router"
DEFAULT_SECRET = b"orq-local-router/signatures/v1"
"""Fixed so a conversation exported from one run replays its thinking signatures in the next."""

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
               500: "api_error", 529: "overloaded_error"}
FAULT_MESSAGES = {429: "Rate limit exceeded", 500: "Internal server error", 502: "Bad gateway",
                  503: "Service unavailable", 504: "Gateway timeout", 529: "Overloaded"}
ORQ_DEFAULT_RETRY_CODES = frozenset({429})  # Orq docs: on_codes defaults to [429]
ORQ_DEFAULT_CACHE_TTL = 1800  # seconds, Orq's documented default
INLINE_WORK_BYTES = 1024 * 1024
"""A request body smaller than this, with no inline file, is checked and answered on the event
loop: a worker-thread hop costs more than its work (a long text prompt is tokenized once, then
its counts and digests are remembered). A larger one, or one with an inline file to decode, goes
to a worker thread, so one heavy request does not hold up every other connection."""


@dataclass
class EmulatorSettings:
    time_scale: float = 1.0
    """Multiplies every modelled wait (TTFT, output pacing, retry backoff); 0 = never wait."""
    api_key: str | None = field(default=None, repr=False)
    """When set, only this bearer key is accepted; otherwise any non-empty key."""
    clock: Callable[[], float] = time.time
    """Seconds; the caches' TTLs read it, so tests move time instead of waiting."""
    key_clock_offsets: dict[bytes, float] = field(default_factory=dict, repr=False)
    """Seconds added to ``clock`` for one key (by ``key_scope``): a person's fast-forward ages only
    that person's cache entries (lab_clock.KeyClock moves it; offsets only grow)."""
    faults: list[str] = field(default_factory=list)
    """Fault specs (faults.py grammar) for the next requests; append at run time for a demo."""
    fault_time_scale: float = 1.0
    """Scales slow_first_byte only, so read timeouts work with time_scale=0."""
    secret: bytes = field(default=DEFAULT_SECRET, repr=False)
    chunk_tokens: int = 4
    """About this many tokens per streamed chunk."""
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    """How the router waits (seconds, already scaled); tests record waits instead."""

    def __post_init__(self) -> None:
        for spec in self.faults:
            parse_faults(spec)  # fail at start, not at the first request


# --- wire helpers ----------------------------------------------------------------------------

def error_body(status: int, message: str, param: str | None = None) -> dict:
    error_type = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": error_type, "code": status, "param": param}}


def error_response(error: OrqError, headers: dict | None = None) -> JSONResponse:
    status = 400 if isinstance(error, RequestValidationError) else (error.status or 500)
    headers = dict(headers or {})
    if error.retry_after is not None:
        headers["retry-after"] = f"{error.retry_after:g}"
    param = error.field if isinstance(error, RequestValidationError) else None
    message = error.reason if isinstance(error, RequestValidationError) else error.message
    if param:
        message = f"{param}: {message}"
    return JSONResponse(error_body(status, message, param), status_code=status, headers=headers)


def fault_error(fault: Fault) -> OrqError:
    text = FAULT_MESSAGES.get(fault.status, f"HTTP {fault.status}")
    return OrqError(f"{text} (fault injected by the local router: {fault.spec})",
                    status=fault.status, retry_after=fault.retry_after)


_to_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode  # built once, not per chunk
_response_json = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
"""What Starlette's JSONResponse renders with, built once instead of per response."""
_json_string = json.encoder.encode_basestring  # what _to_json does to a str, without its per-call set-up


def sse(data: Any) -> bytes:
    text = data if isinstance(data, str) else _to_json(data)
    return f"data: {text}\n\n".encode("utf-8")


class ChunkEvents:
    """SSE events of chunks that share an envelope: the envelope is encoded once and each event
    encodes only its delta (the bytes equal ``sse({**base, "choices": [...], **extra})``)."""

    def __init__(self, base: dict, extra: dict):
        self._head = "data: " + _to_json(base)[:-1] + ',"choices":[{"index":0,"delta":'
        self._tail = "}]" + ("," + _to_json(extra)[1:-1] if extra else "") + "}\n\n"

    def delta(self, delta: dict, finish_reason: str | None) -> bytes:
        return self.encoded_delta(_delta_json(delta), finish_reason)

    def encoded_delta(self, delta_json: str, finish_reason: str | None) -> bytes:
        finish = "null" if finish_reason is None else _to_json(finish_reason)
        return f'{self._head}{delta_json},"finish_reason":{finish}{self._tail}'.encode("utf-8")

    def encoded_run(self, joined_deltas: bytes, after: tuple[bytes, ...] = ()) -> bytes:
        """b"".join(self.encoded_delta(d, None) for d in joined_deltas.split(b"\0")), built in one
        replace: ``joined_deltas`` is Generation.encoded_stream (NUL between encoded deltas)."""
        head = self._head.encode("utf-8")
        unfinished = (',"finish_reason":null' + self._tail).encode("utf-8")
        return b"".join((head, joined_deltas.replace(b"\0", unfinished + head), unfinished, *after))


def _delta_json(delta: dict) -> str:
    """_to_json(delta), with the common one-string delta ({"content": ...}) encoded directly."""
    if len(delta) == 1:
        (key, value), = delta.items()
        if type(value) is str and key in ("content", "reasoning"):
            return f'{{"{key}":{_json_string(value)}}}'
    return _to_json(delta)


class _Cut:
    """Yielded by a stream to break the connection without finishing the HTTP body."""


CUT_CONNECTION = _Cut()


class SSEResponse(StreamingResponse):
    """A StreamingResponse that can end abruptly: on CUT_CONNECTION it returns without the final
    empty body message, so the server closes the socket mid-body (what a network cut looks like)."""

    media_type = "text/event-stream"

    async def stream_response(self, send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        async for chunk in self.body_iterator:
            if chunk is CUT_CONNECTION:
                return
            if not chunk:
                continue
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


# --- request options ---------------------------------------------------------------------------

@dataclass(frozen=True)
class OrqOptions:
    fallbacks: tuple[str, ...] = ()
    retry_count: int = 0
    retry_codes: frozenset[int] = ORQ_DEFAULT_RETRY_CODES
    cache_ttl: int | None = None


def orq_options(payload: dict) -> OrqOptions:
    """Orq's router options from the ``orq`` object or top-level keys (validated already)."""
    orq = payload.get("orq") if isinstance(payload.get("orq"), dict) else {}

    def pick(key: str) -> Any:
        return orq[key] if key in orq else payload.get(key)

    fallbacks = tuple(f["model"] for f in pick("fallbacks") or [])
    retry = pick("retry") or {}
    cache = pick("cache")
    return OrqOptions(
        fallbacks=fallbacks,
        retry_count=int(retry.get("count") or 0),
        retry_codes=frozenset(retry.get("on_codes") or ORQ_DEFAULT_RETRY_CODES),
        cache_ttl=int(cache.get("ttl") or ORQ_DEFAULT_CACHE_TTL) if cache else None,
    )


def stop_sequences(payload: dict) -> list[str]:
    stop = payload.get("stop")
    return [stop] if isinstance(stop, str) else list(stop or [])


# --- the answer, shaped by max_tokens and stop sequences -----------------------------------------

@dataclass(frozen=True)
class Generation:
    text: str
    reasoning: str
    signature: str | None
    redacted: tuple[str, ...]
    tool_calls: tuple[dict, ...]
    """{"id", "name", "arguments"}"""
    finish_reason: str
    counted: tuple[int, int] | None = None
    """(text tokens, reasoning tokens) when shaping knew them (None: count them when asked)."""

    @cached_property
    def _encoded_plans(self) -> dict[int, Any]:
        return {}

    def encoded_plan(self, tokens_per_chunk: int) -> tuple[tuple[str, int], ...]:
        """delta_plan with each delta JSON-encoded, remembered on this (immutable) generation: a
        remembered answer streamed again is not split and encoded again."""
        plan = self._encoded_plans.get(tokens_per_chunk)
        if plan is None:
            plan = tuple(encoded_delta_plan(self, tokens_per_chunk))
            self._encoded_plans[tokens_per_chunk] = plan
        return plan

    def encoded_stream(self, tokens_per_chunk: int) -> bytes:
        """The encoded deltas of encoded_plan joined by NUL (which JSON text never holds raw), as
        UTF-8, remembered like the plan: a stream with nothing to wait for is this with each NUL
        replaced by the chunk envelope between two deltas (a bytes replace, no encoding again)."""
        key = -tokens_per_chunk
        joined = self._encoded_plans.get(key)
        if joined is None:
            joined = self._encoded_plans[key] = _encoded_stream(self, tokens_per_chunk).encode("utf-8")
        return joined

    @cached_property
    def reasoning_tokens(self) -> int:
        return self.counted[1] if self.counted else text_tokens(self.reasoning)

    @cached_property
    def text_tokens(self) -> int:
        return self.counted[0] if self.counted else text_tokens(self.text)

    @cached_property
    def output_tokens(self) -> int:
        return (self.text_tokens + self.reasoning_tokens
                + sum(text_tokens(call["arguments"]) for call in self.tool_calls))


def truncate_to_tokens(text: str, budget: int) -> str:
    """The longest prefix of ``text`` within ``budget`` tokens: the text before its token unit
    number budget + 1 (``tokens.TOKEN_UNITS``; a word that overflows keeps its first 4 x (tokens
    left) characters)."""
    return truncate_counted(text, budget)[0]


def truncate_counted(text: str, budget: int, tokens: int | None = None,
                     marks: tuple[tuple[int, int], ...] = ()) -> tuple[str, int]:
    """(truncate_to_tokens(text, budget), its tokens). ``tokens``: text_tokens(text) when known, so
    a text that fits is not walked; ``marks``: (tokens before, offset) at places where a token
    unit starts (after whitespace), ascending, so the walk starts at the last one within budget."""
    budget = max(0, budget)
    if tokens is None:
        tokens = text_tokens(text)  # one pass in the regex engine: a text that fits is not walked
    if tokens <= budget:
        return text, tokens
    at = bisect.bisect_right(marks, (budget, len(text))) - 1
    before, start = marks[at] if at >= 0 else (0, 0)
    overflow = next(itertools.islice(TOKEN_UNITS.finditer(text, start), budget - before, None))
    return text[:overflow.start()], budget


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    positions = [text.find(s) for s in stops if s and s in text]
    return (text[:min(positions)], True) if positions else (text, False)


def shape_answer(answer: Any, max_tokens: int, stops: list[str]) -> Generation:
    """Apply stop sequences and max_tokens in generation order: reasoning, text, tool calls. The
    composer's own counts (``text_tokens``, ``text_marks``, ``reasoning_tokens``) spare walking a
    text that fits and let a long one be cut from the paragraph where the budget runs out."""
    reasoning = answer.reasoning or ""
    kept_reasoning, reasoning_tokens = truncate_counted(reasoning, max_tokens,
                                                        getattr(answer, "reasoning_tokens", None))
    signature = answer.signature if kept_reasoning == reasoning else None
    budget = max_tokens - reasoning_tokens
    text, stopped = cut_at_stop(answer.text or "", stops)
    if stopped:
        kept_text, text_tokens_kept = truncate_counted(text, budget)
    else:
        kept_text, text_tokens_kept = truncate_counted(text, budget, getattr(answer, "text_tokens", None),
                                                       getattr(answer, "text_marks", ()))
    calls = tuple(answer.tool_calls or ())
    if kept_reasoning != reasoning or kept_text != text:
        finish, calls = "length", ()
    elif stopped:
        finish, calls = "stop", ()
    elif sum(text_tokens(c["arguments"]) for c in calls) > budget - text_tokens_kept:
        finish, calls = "length", ()
    else:
        finish = answer.finish_reason
    return Generation(kept_text, kept_reasoning, signature, tuple(answer.redacted or ()), calls, finish,
                      (text_tokens_kept, reasoning_tokens))


# --- streaming plan -------------------------------------------------------------------------------

@functools.lru_cache(maxsize=16)
def _chunk_pattern(tokens_per_chunk: int) -> re.Pattern:
    """Up to ``tokens_per_chunk`` token units (tokens.TOKEN_UNITS) with the whitespace before
    them, and the text's trailing whitespace; or whitespace alone (a text with no token)."""
    # possessive: nothing here ever needs giving back, and the engine skips saving backtrack points
    return re.compile(r"(?:\s*+(?:\w{1,4}+|[^\w\s])){1,%d}+(?:\s++\Z)?|\s++" % tokens_per_chunk, re.UNICODE)


def split_for_stream(text: str, tokens_per_chunk: int) -> list[tuple[str, int]]:
    """(piece, tokens) covering ``text`` exactly: every piece but the last holds exactly
    ``tokens_per_chunk`` token units, so the counts add up to text_tokens(text). One pass in the
    regex engine; a piece may end inside a long word (after a 4-character unit), as a real
    tokenizer's stream does."""
    pieces = _chunk_pattern(tokens_per_chunk).findall(text)
    if not pieces:
        return []
    return [(piece, tokens_per_chunk) for piece in pieces[:-1]] + [(pieces[-1], text_tokens(pieces[-1]))]


def _encoded_pieces(key: str, text: str, tokens_per_chunk: int) -> list[tuple[str, int]]:
    """split_for_stream's pieces as encoded one-string deltas ({"key": piece}), built in one go."""
    head = '{"' + key + '":'
    return [(head + _json_string(piece) + "}", tokens) for piece, tokens in split_for_stream(text, tokens_per_chunk)]


def _encoded_stream(gen: Generation, tokens_per_chunk: int) -> str:
    """"\0".join of encoded_delta_plan's deltas; a text's pieces are encoded and joined inside C
    calls (no Python step per piece) when the answer is plain text and reasoning."""
    if gen.signature or gen.redacted or gen.tool_calls:
        return "\0".join(delta for delta, _ in encoded_delta_plan(gen, tokens_per_chunk))
    pattern = _chunk_pattern(tokens_per_chunk)
    runs = ['{"' + key + '":' + ('}\0{"' + key + '":').join(map(_json_string, pattern.findall(text))) + "}"
            for key, text in (("reasoning", gen.reasoning), ("content", gen.text)) if text]
    return '{"role":"assistant",' + ("\0".join(runs) or '{"content":""}')[1:]


def encoded_delta_plan(gen: Generation, tokens_per_chunk: int) -> list[tuple[str, int]]:
    """delta_plan with every delta JSON-encoded (the same strings as _to_json of each), the
    text's and reasoning's pieces encoded without building a dict per piece."""
    plan = _encoded_pieces("reasoning", gen.reasoning, tokens_per_chunk)
    if gen.signature:
        plan.append((_to_json({"reasoning_signature": gen.signature}), 0))
    plan += [(_to_json({"redacted_reasoning": data}), 0) for data in gen.redacted]
    plan += _encoded_pieces("content", gen.text, tokens_per_chunk)
    for index, call in enumerate(gen.tool_calls):
        first = {"index": index, "id": call["id"], "type": "function",
                 "function": {"name": call["name"], "arguments": ""}}
        plan.append((_to_json({"tool_calls": [first]}), 0))
        plan += [(_to_json({"tool_calls": [{"index": index, "function": {"arguments": p}}]}), n)
                 for p, n in split_for_stream(call["arguments"], tokens_per_chunk)]
    if not plan:
        plan.append(('{"content":""}', 0))
    plan[0] = ('{"role":"assistant",' + plan[0][0][1:], plan[0][1])
    return plan


def delta_plan(gen: Generation, tokens_per_chunk: int) -> list[tuple[dict, int]]:
    """The streamed deltas in order with the output tokens each carries."""
    plan: list[tuple[dict, int]] = [({"reasoning": p}, n) for p, n in split_for_stream(gen.reasoning, tokens_per_chunk)]
    if gen.signature:
        plan.append(({"reasoning_signature": gen.signature}, 0))
    plan += [({"redacted_reasoning": data}, 0) for data in gen.redacted]
    plan += [({"content": p}, n) for p, n in split_for_stream(gen.text, tokens_per_chunk)]
    for index, call in enumerate(gen.tool_calls):
        first = {"index": index, "id": call["id"], "type": "function",
                 "function": {"name": call["name"], "arguments": ""}}
        plan.append(({"tool_calls": [first]}, 0))
        plan += [({"tool_calls": [{"index": index, "function": {"arguments": p}}]}, n)
                 for p, n in split_for_stream(call["arguments"], tokens_per_chunk)]
    if not plan:
        plan.append(({"content": ""}, 0))
    plan[0] = ({"role": "assistant", **plan[0][0]}, plan[0][1])
    return plan


def json_message(gen: Generation) -> dict:
    message: dict = {"role": "assistant", "content": gen.text if gen.text or not gen.tool_calls else None}
    if gen.reasoning:
        message["reasoning"] = gen.reasoning
    if gen.signature:
        message["reasoning_signature"] = gen.signature
    if gen.redacted:
        message["redacted_reasoning"] = gen.redacted[0] if len(gen.redacted) == 1 else list(gen.redacted)
    if gen.tool_calls:
        message["tool_calls"] = [{"id": c["id"], "type": "function",
                                  "function": {"name": c["name"], "arguments": c["arguments"]}}
                                 for c in gen.tool_calls]
    return message


@dataclass(frozen=True)
class Result:
    """What a request produced: kept as is by the response cache."""

    generation: Generation
    usage: Usage
    model: str
    ttft_ms: float = 0.0


@dataclass
class Exchange:
    """One request on its way through the router."""

    request_id: str
    api_key: str
    payload: dict
    options: OrqOptions
    header_faults: list[Fault]
    blocks: list[Block]
    heavy: bool = False
    """Checked and answered in a worker thread (see INLINE_WORK_BYTES)."""

    @property
    def scope(self) -> bytes:
        return key_scope(self.api_key)

    def now(self, settings: "EmulatorSettings") -> float:
        """The time on this key's timeline: the router's clock plus the key's fast-forward."""
        return settings.clock() + settings.key_clock_offsets.get(self.scope, 0.0)

    @property
    def stream(self) -> bool:
        return bool(self.payload.get("stream"))

    @property
    def include_usage(self) -> bool:
        return bool((self.payload.get("stream_options") or {}).get("include_usage"))


# --- the router -------------------------------------------------------------------------------------

class Memo:
    """A bounded least-recently-used map (thread-safe: heavy requests are answered in workers)."""

    def __init__(self, kept: int):
        self.kept = kept
        self.hits = 0
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                self.hits += 1
            return found

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            if len(self._items) > self.kept:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


MEMO_BODY_BYTES = 64 * 1024
MEMO_KEPT = 256  # answers are a few KB each: a bounded, small share of memory


class Router:
    def __init__(self, settings: EmulatorSettings):
        self.settings = settings
        self.checked = Memo(MEMO_KEPT)
        """sha256 of a small request body -> its prompt blocks: the same body passes the same
        checks and segments the same way (they read nothing but the body and the secret)."""
        self.generations = Memo(MEMO_KEPT)
        """(answer digest, model label) -> the shaped answer: the digest seeds the answer and
        covers everything it and its shaping read (max_tokens, stop), so it is the same answer."""
        self.prompt_cache = PromptCache(lambda: self.settings.clock())
        self.response_cache = ResponseCache(lambda: self.settings.clock())
        self.faults = FaultBoard(lambda: self.settings.faults)

    async def wait(self, seconds: float) -> None:
        scaled = seconds * self.settings.time_scale
        if scaled > 0:
            await self.settings.sleep(scaled)

    def authenticate(self, request: Request) -> str:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise OrqError("Missing API key: send 'Authorization: Bearer <key>'", status=401)
        expected = self.settings.api_key
        if expected is not None and not hmac.compare_digest(key.encode(), expected.encode()):
            raise OrqError("Invalid API key", status=401)
        return key

    # -- preparing ------------------------------------------------------------------------------

    async def prepare(self, request: Request) -> Exchange:
        api_key = self.authenticate(request)
        body = await request.body()
        try:
            payload = parse_body(body)
        except ValueError as error:  # Anthropic's wording: "The request body is not valid JSON: <the parser's reason>"
            raise OrqError(f"The request body is not valid JSON: {error}", status=400) from None
        try:
            header_faults = parse_faults(request.headers.get(HEADER))
        except ValueError as error:
            raise OrqError(f"X-Emulator-Fault: {error}", status=400) from None
        # The parts, not the bytes, are searched for a data: URL: scanning a long prompt's bytes
        # costs more than walking its few parts.
        heavy = len(body) >= INLINE_WORK_BYTES or (isinstance(payload, dict) and has_inline_media(payload))
        blocks = await run_in_threadpool(self.check_payload, payload) if heavy else self.checked_blocks(body, payload)
        return Exchange(request.state.request_id, api_key, payload, orq_options(payload), header_faults, blocks,
                        heavy)

    def checked_blocks(self, body: bytes, payload: Any) -> list[Block]:
        """check_payload, remembered by the body's digest (a refused body is not remembered).
        A body past MEMO_BODY_BYTES is not: hashing it whole would cost about what its long texts'
        remembered digests and counts save (prompt.py)."""
        if len(body) > MEMO_BODY_BYTES:
            return self.check_payload(payload)
        key = hashlib.sha256(body).digest()
        blocks = self.checked.get(key)
        if blocks is None:
            blocks = tuple(self.check_payload(payload))
            self.checked.put(key, blocks)
        return list(blocks)

    def check_payload(self, payload: Any) -> list[Block]:
        """The shared rules (request.py), then the router's own: signatures and media."""
        breakpoints = validated_breakpoints(payload)
        try:
            check_replayed_signatures(payload, self.settings.secret)
        except ValueError as error:
            raise OrqError(str(error), status=400) from None
        try:
            inspect_media_parts(payload)
        except MediaError as error:
            raise OrqError(error.message, status=error.status) from None
        return segment_prompt(payload, breakpoints)

    def resolve(self, slug: str, ex: Exchange) -> Target:
        try:
            target = catalog().resolve(slug)
        except UnknownModelError as error:
            raise OrqError(str(error), status=404) from None
        if slug != ex.payload.get("model"):
            validate_payload({**ex.payload, "model": slug})  # model facts: thinking, max output
        prompt = sum(b.tokens for b in ex.blocks)
        if prompt > target.model.context_window:  # Anthropic's own wording: the prompt, not max_tokens, is at fault
            raise OrqError(f"prompt is too long: {prompt} tokens > {target.model.context_window} maximum", status=400)
        if prompt + ex.payload["max_tokens"] > target.model.context_window:
            raise RequestValidationError(
                "max_tokens", f"prompt is too long: {prompt:,} input tokens + max_tokens "
                              f"{ex.payload['max_tokens']:,} > {target.model.context_window:,} context window")
        return target

    # -- choosing the model that answers ---------------------------------------------------------------

    async def pick_target(self, ex: Exchange) -> Target:
        """The first model of [model, *fallbacks] that gets through its faults (after retries)."""
        last_error: OrqError | None = None
        for slug in (ex.payload["model"], *ex.options.fallbacks):
            try:
                target = self.resolve(slug, ex)
            except OrqError as error:
                if error.status != 404:
                    raise
                last_error = error
                continue
            last_error = await self.attempt(target, ex)
            if last_error is None:
                return target
            if not is_retryable(last_error.status):
                break
        assert last_error is not None
        raise last_error

    async def attempt(self, target: Target, ex: Exchange) -> OrqError | None:
        """None when ``target`` answers; else its error after Orq's retries."""
        for attempt in range(ex.options.retry_count + 1):
            fault = self.faults.status_fault(ex.header_faults, ex.scope, target.slug)
            if fault is None:
                return None
            error = fault_error(fault)
            if fault.status not in ex.options.retry_codes or attempt == ex.options.retry_count:
                return error
            await self.wait(max(2.0 ** attempt, fault.retry_after or 0.0))  # Orq: 1 s, 2 s, 4 s, ...
        return None

    # -- answering ---------------------------------------------------------------------------------

    def generate(self, target: Target, ex: Exchange) -> Result:
        gen = self.generation(target, ex)
        outcome = self.prompt_cache.process(api_key=ex.api_key, model_slug=target.slug, blocks=ex.blocks,
                                            min_cacheable=target.model.min_cacheable,
                                            ready_after=lambda o: self.first_byte_after(target, o),
                                            now=ex.now(self.settings))
        usage = Usage(input_tokens=outcome.uncached_tokens, cache_read_tokens=outcome.read_tokens,
                      cache_write_tokens=outcome.write_tokens, output_tokens=gen.output_tokens,
                      reasoning_tokens=gen.reasoning_tokens)
        ttft = predicted_ttft_ms(target.model, outcome.uncached_tokens, outcome.read_tokens, outcome.write_tokens)
        return Result(gen, usage, target.slug, ttft)

    def generation(self, target: Target, ex: Exchange) -> Generation:
        """The shaped answer, remembered by its answer digest and the model's label."""
        digest = answer_digest(ex.payload, [block.digest for block in ex.blocks])
        key = (digest, target.model.label)
        gen = self.generations.get(key)
        if gen is None:
            answer = compose_answer(ex.payload, model_label=target.model.label, secret=self.settings.secret,
                                    digest=digest)
            gen = shape_answer(answer, ex.payload["max_tokens"], stop_sequences(ex.payload))
            self.generations.put(key, gen)
        return gen

    def first_byte_after(self, target: Target, outcome) -> float:
        """Seconds on the router's clock until this request starts answering: what it writes to
        the prompt cache becomes readable then (Anthropic: an entry is available only after the
        first response begins), so a parallel cold wave writes once per request."""
        ttft_ms = predicted_ttft_ms(target.model, outcome.uncached_tokens, outcome.read_tokens, outcome.write_tokens)
        return ttft_ms / 1000 * self.settings.time_scale

    async def handle(self, request: Request) -> Response:
        ex = await self.prepare(request)
        cache_key = self.response_cache.key(ex.api_key, ex.payload) if ex.options.cache_ttl else None
        if cache_key is not None:
            stored = self.response_cache.get(cache_key, ex.now(self.settings))
            if stored is not None:
                return self.deliver(stored, ex, {}, cache_hit=True)
        target = await self.pick_target(ex)
        result = await run_in_threadpool(self.generate, target, ex) if ex.heavy else self.generate(target, ex)
        transport = self.faults.transport_faults(ex.header_faults, ex.scope, target.slug)
        if cache_key is not None and not transport:
            self.response_cache.put(cache_key, result, ex.options.cache_ttl, ex.now(self.settings))
        slow = transport.get(SLOW_FIRST_BYTE)
        if slow is not None and slow.seconds * self.settings.fault_time_scale > 0:
            await self.settings.sleep(slow.seconds * self.settings.fault_time_scale)
        if not ex.stream:
            broken = transport.get(CUT) or transport.get(ERROR_MIDSTREAM)
            if broken is not None:
                raise fault_error(replace(broken, status=broken.status or 500))
            await self.wait((result.ttft_ms + output_ms(target.model, result.usage.output_tokens)) / 1000)
        return self.deliver(result, ex, transport, cache_hit=False)

    def deliver(self, result: Result, ex: Exchange, transport: dict[str, Fault], *, cache_hit: bool) -> Response:
        headers = {"x-orq-cache": "hit" if cache_hit else "miss"} if ex.options.cache_ttl else {}
        completion_id = f"chatcmpl-{os.urandom(12).hex()}"  # 24 random hex digits, as uuid4().hex[:24] gave
        created = int(time.time())
        envelope = {"id": completion_id, "created": created, "model": result.model}
        extra = {"orq": {"cache_hit": True}} if cache_hit else {}
        if ex.stream:
            chunks = self.stream_chunks(result, ex, envelope, extra, transport, paced=not cache_hit)
            return SSEResponse(chunks, headers={**headers, "cache-control": "no-cache"})
        body = {**envelope, "object": "chat.completion",
                "choices": [{"index": 0, "finish_reason": result.generation.finish_reason,
                             "message": json_message(result.generation), "logprobs": None}],
                "usage": result.usage.to_wire(), **extra}
        return Response(_response_json(body).encode("utf-8"), headers=headers, media_type="application/json")

    async def stream_chunks(self, result: Result, ex: Exchange, envelope: dict, extra: dict,
                            transport: dict[str, Fault], *, paced: bool) -> AsyncIterator[Any]:
        base = {**envelope, "object": "chat.completion.chunk"}
        gen = result.generation
        tokens_per_chunk = max(1, self.settings.chunk_tokens)
        events = ChunkEvents(base, extra)
        ending = [events.delta({}, gen.finish_reason)]
        if ex.include_usage:
            ending.append(sse({**base, "choices": [], "usage": result.usage.to_wire(), **extra}))
        cut, midstream = transport.get(CUT), transport.get(ERROR_MIDSTREAM)
        if cut is None and midstream is None and not (paced and self.settings.time_scale > 0):
            # nothing to wait for between chunks: the whole stream is one write, built in one go
            yield events.encoded_run(gen.encoded_stream(tokens_per_chunk), (*ending, sse("[DONE]")))
            return
        plan = gen.encoded_plan(tokens_per_chunk)
        chunks = [events.encoded_delta(delta_json, None) for delta_json, _ in plan] + ending
        rate_model = catalog().resolve(result.model).model
        cut_at = min(cut.after, len(chunks)) if cut else -1
        error_at = min(midstream.after, len(chunks)) if midstream else -1
        pending: list[bytes] = []  # chunks due at the same moment go out in one write
        for n in range(len(chunks) + 1):
            if n == cut_at:
                yield b"".join(pending)
                yield CUT_CONNECTION
                return
            if n == error_at:
                yield b"".join(pending) + sse({"error": error_body(midstream.status,
                                                                   fault_error(midstream).message)["error"]})
                return
            if n == len(chunks):
                yield b"".join(pending) + sse("[DONE]")
                return
            delay = 0.0
            if paced and self.settings.time_scale > 0:
                tokens = plan[n][1] if n < len(plan) else 0
                delay = (result.ttft_ms if n == 0 else output_ms(rate_model, tokens)) / 1000
            if delay * self.settings.time_scale > 0:
                if pending:
                    yield b"".join(pending)
                    pending = []
                await self.wait(delay)
            pending.append(chunks[n])


# --- routes ------------------------------------------------------------------------------------------

async def chat_completions(request: Request) -> Response:
    router: Router = request.app.state.router
    try:
        return await router.handle(request)
    except OrqError as error:
        return error_response(error)
    except Exception:  # a bug must still answer in the documented error shape
        log.exception("local router failed on request %s", request.state.request_id)
        return JSONResponse(error_body(500, "The local router failed on this request (a bug)"), status_code=500)


async def list_models(request: Request) -> Response:
    router: Router = request.app.state.router
    try:
        router.authenticate(request)
    except OrqError as error:
        return error_response(error)
    data = [{"id": t.slug, "object": "model", "created": 0, "owned_by": t.provider.id,
             "name": t.label, "context_window": t.model.context_window, "max_output": t.model.max_output}
            for t in catalog().targets()]
    return JSONResponse({"object": "list", "data": data})


async def http_error(request: Request, exc: HTTPException) -> Response:
    return JSONResponse(error_body(exc.status_code, str(exc.detail)), status_code=exc.status_code)


class RequestIdMiddleware:
    """Gives every request an id, on ``request.state.request_id`` and in an ``x-request-id`` header."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = f"req_{os.urandom(12).hex()}"
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-request-id", request_id.encode("ascii"))]}
            await send(message)

        await self.app(scope, receive, send_with_id)


def create_app(settings: EmulatorSettings | None = None) -> Starlette:
    app = Starlette(
        routes=[Route("/v2/router/chat/completions", chat_completions, methods=["POST"]),
                Route("/v2/router/models", list_models, methods=["GET"])],
        middleware=[Middleware(RequestIdMiddleware)],
        exception_handlers={HTTPException: http_error},
    )
    app.state.router = Router(settings or EmulatorSettings())
    return app
