"""The HTTP client for Orq's AI Router (or the local router): create, stream, retries, errors, timing.

One pooled ``httpx.Client`` per ``OrqClient``. The bearer header is built here and lives only in
httpx's header map (whose repr masks it): no exception, repr or run-log row ever carries the key.
Retries: 408/409/429/5xx/529 and connection failures, capped exponential backoff with full
jitter, ``Retry-After`` honoured; never once a stream has delivered anything to the caller.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import random
import re
import threading
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator

import httpx

from .catalog import UnknownModelError
from .cost import cost_of
from .errors import (ConnectionFailed, OrqError, RequestValidationError, StreamInterrupted, TimeoutFailed, describe,
                     error_for_status, is_retryable)
from .request import cache_write_ttl
from .sse import SSEDecoder
from .stream import ChunkAssembler, completion_from_response, error_status, is_token
from .types import Completion, Done, ErrorEvent, RunRecord, StreamEvent
from .usage import Usage

log = logging.getLogger(__name__)

MAX_RETRY_AFTER = 60.0
"""Longest wait a server's Retry-After may impose on us, in seconds."""
REQUEST_ID_HEADERS = ("x-request-id", "request-id", "x-orq-request-id")
USER_AGENT = "orq-claude-playground/0.1"


@dataclass(frozen=True)
class Timeouts:
    """Seconds. ``read`` is the longest silence between two bytes (so also the wait for the first)."""

    connect: float = 5.0
    read: float = 60.0
    write: float = 30.0
    pool: float = 10.0

    def to_httpx(self) -> httpx.Timeout:
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.write, pool=self.pool)


@dataclass
class _StreamState:
    """One streaming attempt as the caller saw it."""

    assembler: ChunkAssembler
    ttft_ms: float | None = None
    delivered: bool = False
    """Something reached the caller: from here on nothing is retried."""
    cancelled: bool = False
    interruption: ErrorEvent | None = None
    check: Any = None
    """The cache doctor's prediction for this request, if any."""


@dataclass
class _Exchange:
    """What one call learned from the wire, for the Completion and the run log."""

    request_id: str | None = None
    http_status: int | None = None
    cache_hit: bool = False


# --- wire helpers --------------------------------------------------------------------------------

def request_id_of(headers: httpx.Headers) -> str | None:
    for name in REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None


def retry_after_seconds(headers: httpx.Headers) -> float | None:
    """Retry-After as seconds (``retry-after-ms``, delta seconds, or an HTTP date), None if absent."""
    try:
        if headers.get("retry-after-ms"):
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
    except ValueError:
        pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        # Measure against the server's own Date when it sent one: clock skew cancels out.
        now = email.utils.parsedate_to_datetime(headers["date"]).timestamp() if headers.get("date") else time.time()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - now)


def _cache_hit_header(headers: httpx.Headers) -> bool:
    return headers.get("x-orq-cache", "").strip().lower() == "hit"


def _timeout_error(exc: httpx.TimeoutException, timeouts: Timeouts) -> TimeoutFailed:
    if isinstance(exc, httpx.ConnectTimeout):
        message = f"connecting took longer than the connect timeout ({timeouts.connect:g} s)"
    elif isinstance(exc, httpx.WriteTimeout):
        message = f"sending the request took longer than the write timeout ({timeouts.write:g} s)"
    elif isinstance(exc, httpx.PoolTimeout):
        message = f"no free connection within the pool timeout ({timeouts.pool:g} s)"
    else:
        message = f"the router sent nothing for {timeouts.read:g} s (read timeout)"
    return TimeoutFailed(message)


def _transport_error(exc: Exception, base_url: str) -> ConnectionFailed:
    if isinstance(exc, httpx.ConnectError):
        return ConnectionFailed(f"could not connect to {base_url}: {exc or type(exc).__name__}")
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
        return ConnectionFailed(f"the base URL {base_url!r} is not a valid http(s) URL")
    return ConnectionFailed(f"the connection to the router broke: {exc or type(exc).__name__}")


def _retryable(exc: OrqError) -> bool:
    if isinstance(exc.__cause__, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
        return False  # a wrong base URL stays wrong
    if isinstance(exc, (ConnectionFailed, TimeoutFailed)):
        return True
    if isinstance(exc, StreamInterrupted) and exc.status is None:
        return True  # ended before anything was delivered: safe to send again
    return is_retryable(exc.status)


def _in_band_error(event: ErrorEvent, exchange: _Exchange) -> OrqError:
    """An ``{"error": ...}`` chunk that came before any token, raised like the status it implies."""
    if event.status:
        return error_for_status(event.status, {"error": event.body}, request_id=exchange.request_id)
    return StreamInterrupted(event.message, request_id=exchange.request_id, body=event.body)


BODY_CHUNK_CHARS = 64 * 1024
"""Long strings in a request body are escaped and sent this many characters at a time."""


def _json_text(value: Any) -> str:
    try:
        # ASCII-only JSON: one non-ASCII character would otherwise make CPython build the whole
        # body as a 2-4 bytes-per-character string before encoding.
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise RequestValidationError("payload", f"cannot be sent as JSON ({exc})") from None


class JSONBody:
    """A request body whose long strings (an inline file's base64 data URL) are sent a slice at
    a time: the rest of the payload is encoded at once around placeholders, and each long
    string is escaped and encoded ``BODY_CHUNK_CHARS`` at a time as the body goes out. So a 40 MB
    data URL is never copied whole, as JSON text or as bytes (json.dumps + encode would hold
    two copies, and the HTTP layer a third when it joins header and body). Iterable again for
    each retry; the bytes equal ``json.dumps(payload, separators=(",", ":")).encode("ascii")``."""

    def __init__(self, payload: Any):
        self._long: list[str] = []
        self._nonce = uuid.uuid4().hex
        skeleton = _json_text(self._swap(payload))
        # text, index, text, index, ..., text (a small body has no long string: no pattern to compile)
        self._parts = re.split(f'"{self._nonce}:(\\d+)"', skeleton) if self._long else [skeleton]
        self.length = sum(len(part) for part in self._parts[::2]) + sum(
            len(s) + 2 if _ESCAPE_ASCII.search(s) is None else sum(len(piece) for piece in _escaped_slices(s)) + 2
            for s in self._long)

    def _swap(self, value: Any) -> Any:
        """``value`` with each long string replaced by a placeholder that names it."""
        if isinstance(value, str) and len(value) > BODY_CHUNK_CHARS:
            self._long.append(value)
            return f"{self._nonce}:{len(self._long) - 1}"
        if isinstance(value, dict):
            return {key: self._swap(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._swap(item) for item in value]
        return value

    @property
    def has_long_strings(self) -> bool:
        return bool(self._long)

    def __iter__(self) -> Iterator[bytes]:
        for n, part in enumerate(self._parts):
            if n % 2 == 0:
                if part:
                    yield part.encode("ascii")
                continue
            text = self._long[int(part)]
            yield b'"'
            if _ESCAPE_ASCII.search(text) is None:  # a data URL: nothing to escape
                for start in range(0, len(text), BODY_CHUNK_CHARS):
                    yield text[start:start + BODY_CHUNK_CHARS].encode("ascii")
            else:
                for piece in _escaped_slices(text):
                    yield piece.encode("ascii")
            yield b'"'


_ESCAPE_ASCII = json.encoder.ESCAPE_ASCII  # what json.dumps(ensure_ascii=True) escapes


def _escaped_slices(text: str) -> Iterator[str]:
    # Escaping is per character (a str never splits a surrogate pair), so slices escape alone.
    for start in range(0, len(text), BODY_CHUNK_CHARS):
        yield json.encoder.encode_basestring_ascii(text[start:start + BODY_CHUNK_CHARS])[1:-1]


def _encode(payload: dict) -> bytes | JSONBody:
    """The request body: bytes, or a JSONBody when the payload holds long strings."""
    body = JSONBody(payload)
    return body if body.has_long_strings else b"".join(body)


# --- the client ----------------------------------------------------------------------------------

class OrqClient:
    """``create()`` for a whole answer, ``stream()`` for typed events ending in ``Done``."""

    def __init__(self, base_url: str, api_key: str, *, timeouts: Timeouts = Timeouts(), max_retries: int = 3,
                 backoff_base: float = 0.5, backoff_cap: float = 8.0, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.perf_counter, transport: httpx.BaseTransport | None = None,
                 run_log: Any = None, page: str = "cli", headers: dict | None = None,
                 rng: random.Random | None = None, max_connections: int = 20, doctor: Any = None):
        if not api_key.isascii():
            raise ValueError("The API key holds characters an HTTP header cannot carry; paste it again.")
        self.base_url = base_url.rstrip("/")
        self.timeouts = timeouts
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.page = page
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._run_log = run_log
        self.doctor = doctor
        """A CacheDoctor: predicts each request's cache read and write and checks the answer."""
        self._http = httpx.Client(
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": USER_AGENT, **(headers or {})},
            timeout=timeouts.to_httpx(),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"OrqClient(base_url={self.base_url!r}, page={self.page!r})"

    def __enter__(self) -> "OrqClient":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- public calls ----------------------------------------------------------------------------

    def create(self, payload: dict, *, page: str | None = None, headers: dict | None = None) -> Completion:
        """One non-streamed answer (``stream`` forced off). Raises OrqError subclasses after retries."""
        page = page or self.page
        started = self._clock()
        exchange = _Exchange()
        body = {k: v for k, v in payload.items() if k != "stream_options"}
        body["stream"] = False
        content = _encode(body)
        check = self._predict(payload)
        try:
            response = self._with_retries(lambda: self._send(content, headers, exchange, stream=False))
            self._doctor_call("first_byte", check)
            completion = self._parse_completion(response, payload, exchange, started)
        except OrqError as exc:
            self._doctor_call("abandon", check)
            self._log_failure(page, payload, exc, exchange, started)
            raise
        completion = self._settle(payload, check, completion)
        self._log(page, payload, "ok", completion, exchange)
        return completion

    def stream(self, payload: dict, *, page: str | None = None, headers: dict | None = None,
               cancel: threading.Event | None = None) -> Iterator[StreamEvent]:
        """Typed events as they arrive; the last one is always ``Done(completion)``.

        Failures before anything was delivered raise (after retries); later ones yield
        ``ErrorEvent`` then ``Done(partial=True)``. ``cancel`` stops between chunks."""
        return self._stream({**payload, "stream": True}, page or self.page, headers, cancel)

    def ping(self) -> float:
        """Milliseconds for GET {base_url}/models (one attempt, no retries)."""
        started = self._clock()
        self._get("/models")
        return (self._clock() - started) * 1000

    def list_models(self) -> list:
        """The router's model list (the ``data`` array of GET {base_url}/models)."""
        body = self._with_retries(lambda: self._get("/models")).json()
        return body.get("data", []) if isinstance(body, dict) else body

    # --- HTTP --------------------------------------------------------------------------------------

    def _send(self, content: bytes | JSONBody, headers: dict | None, exchange: _Exchange, *,
              stream: bool) -> httpx.Response:
        request_headers = {"Content-Type": "application/json"}
        if isinstance(content, JSONBody):  # a length, not chunked transfer: every server takes it
            request_headers["Content-Length"] = str(content.length)
        if stream:
            request_headers["Accept"] = "text/event-stream"
        if headers:
            request_headers.update(headers)
        try:
            request = self._http.build_request("POST", self.base_url + "/chat/completions",
                                               content=content, headers=request_headers)
            response = self._http.send(request, stream=stream)
        except httpx.TimeoutException as exc:
            raise _timeout_error(exc, self.timeouts) from exc
        except (httpx.TransportError, httpx.InvalidURL) as exc:
            raise _transport_error(exc, self.base_url) from exc
        exchange.request_id = request_id_of(response.headers)
        exchange.http_status = response.status_code
        exchange.cache_hit = _cache_hit_header(response.headers)
        if response.status_code >= 400:
            raise self._status_error(response)
        return response

    def _get(self, path: str) -> httpx.Response:
        try:
            response = self._http.get(self.base_url + path)
        except httpx.TimeoutException as exc:
            raise _timeout_error(exc, self.timeouts) from exc
        except (httpx.TransportError, httpx.InvalidURL) as exc:
            raise _transport_error(exc, self.base_url) from exc
        if response.status_code >= 400:
            raise self._status_error(response)
        return response

    def _status_error(self, response: httpx.Response) -> OrqError:
        try:
            body = response.read()
        except httpx.HTTPError:
            body = b""
        finally:
            response.close()
        return error_for_status(response.status_code, body, request_id=request_id_of(response.headers),
                                retry_after=retry_after_seconds(response.headers))

    def _with_retries(self, send: Callable[[], httpx.Response]) -> httpx.Response:
        attempt = 0
        while True:
            try:
                return send()
            except OrqError as exc:
                if attempt >= self.max_retries or not _retryable(exc):
                    raise
                self._sleep(self._wait(exc, attempt))
                attempt += 1

    def _wait(self, exc: OrqError, attempt: int) -> float:
        """Seconds before retry number ``attempt + 1``: the server's Retry-After, else full jitter."""
        if exc.retry_after is not None:
            return min(exc.retry_after, MAX_RETRY_AFTER)
        return min(self.backoff_cap, self.backoff_base * 2 ** attempt) * self._rng.random()

    def _parse_completion(self, response: httpx.Response, payload: dict, exchange: _Exchange,
                          started: float) -> Completion:
        try:
            body = json.loads(response.content)
        except ValueError:
            raise OrqError("The router answered with a body that is not JSON", status=response.status_code,
                           request_id=exchange.request_id, body=response.text[:500]) from None
        if not isinstance(body, dict):
            raise OrqError("The router answered with an unexpected body", status=response.status_code,
                           request_id=exchange.request_id, body=body)
        if body.get("error"):  # an error inside a 200
            error = body["error"]
            raise error_for_status(error_status(error) or 500, body, request_id=exchange.request_id)
        latency_ms = (self._clock() - started) * 1000
        return completion_from_response(body, model=payload.get("model") or "", ttft_ms=latency_ms,
                                        latency_ms=latency_ms, request_id=exchange.request_id,
                                        response_cache_hit=exchange.cache_hit)

    # --- streaming ---------------------------------------------------------------------------------

    def _stream(self, payload: dict, page: str, headers: dict | None,
                cancel: threading.Event | None) -> Iterator[StreamEvent]:
        started = self._clock()
        content = _encode(payload)
        exchange = _Exchange()
        check = self._predict(payload)
        attempt = 0
        while True:
            state = _StreamState(ChunkAssembler(payload.get("model") or ""), check=check)
            try:
                yield from self._deliver(state, content, headers, exchange, cancel, started)
            except OrqError as exc:
                if state.delivered:
                    state.interruption = ErrorEvent(exc.message, exc.status, exc.body)
                elif attempt < self.max_retries and _retryable(exc):
                    self._sleep(self._wait(exc, attempt))
                    attempt += 1
                    continue
                else:
                    self._doctor_call("abandon", check)
                    self._log_failure(page, payload, exc, exchange, started)
                    raise
            except GeneratorExit:  # the caller stopped iterating: a cancel
                state.cancelled = True
                self._log(page, payload, "cancelled", self._completion_of(state, exchange, started), exchange)
                raise
            break
        if state.interruption is not None:
            yield state.interruption
        completion = self._settle(payload, check, self._completion_of(state, exchange, started))
        status = "cancelled" if state.cancelled else "partial" if completion.partial else "ok"
        self._log(page, payload, status, completion, exchange)
        yield Done(completion)

    def _deliver(self, state: "_StreamState", content: bytes | JSONBody, headers: dict | None, exchange: _Exchange,
                 cancel: threading.Event | None, started: float) -> Iterator[StreamEvent]:
        """One attempt, as the caller sees it: raises OrqError for an in-band error before any event."""
        if cancel is not None and cancel.is_set():
            state.cancelled = True
            return
        with contextlib.closing(self._wire_events(content, headers, state.assembler, exchange)) as events:
            for event in events:
                if isinstance(event, ErrorEvent):
                    if not state.delivered:
                        raise _in_band_error(event, exchange)
                    state.interruption = event
                    return
                if state.ttft_ms is None and is_token(event):
                    state.ttft_ms = (self._clock() - started) * 1000
                if not state.delivered:
                    self._doctor_call("first_byte", state.check)
                state.delivered = True
                yield event
                if cancel is not None and cancel.is_set():
                    state.cancelled = True
                    return

    def _completion_of(self, state: "_StreamState", exchange: _Exchange, started: float) -> Completion:
        interruption = state.interruption
        return state.assembler.completion(
            ttft_ms=state.ttft_ms, latency_ms=(self._clock() - started) * 1000, request_id=exchange.request_id,
            partial=state.cancelled or interruption is not None or not state.assembler.complete,
            error=interruption.message if interruption else None, response_cache_hit=exchange.cache_hit)

    def _wire_events(self, content: bytes | JSONBody, headers: dict | None, assembler: ChunkAssembler,
                     exchange: _Exchange) -> Iterator[StreamEvent]:
        """One attempt: events straight off the wire. Transport failures raise OrqError."""
        response = self._send(content, headers, exchange, stream=True)
        try:
            decoder = SSEDecoder()
            try:
                for raw in response.iter_bytes():
                    for message in decoder.feed(raw):
                        yield from assembler.feed(message.data, message.event)
                        if assembler.saw_done or assembler.error:
                            return
                tail = decoder.close()
            except httpx.TimeoutException as exc:
                raise _timeout_error(exc, self.timeouts) from exc
            except httpx.TransportError as exc:
                raise _transport_error(exc, self.base_url) from exc
            for message in tail:
                yield from assembler.feed(message.data, message.event)
            yield from assembler.finish()
            if not assembler.complete and not assembler.error:
                raise StreamInterrupted("the stream ended before the answer finished",
                                        request_id=exchange.request_id)
        finally:
            response.close()

    # --- cache doctor ----------------------------------------------------------------------------
    # The doctor must never break a request: a failure there only costs the prediction.

    def _predict(self, payload: dict) -> Any:
        if self.doctor is None:
            return None
        try:
            check = self.doctor.predict(payload)
            self.doctor.begin(payload, check)
            return check
        except Exception as exc:
            log.warning("cache doctor could not predict: %s", type(exc).__name__)
            return None

    def _doctor_call(self, name: str, check: Any) -> None:
        if check is None:
            return
        try:
            getattr(self.doctor, name)(check)
        except Exception as exc:
            log.warning("cache doctor %s failed: %s", name, type(exc).__name__)

    def _settle(self, payload: dict, check: Any, completion: Completion) -> Completion:
        if check is None:
            return completion
        usage = completion.usage
        try:
            settled = self.doctor.settle(
                payload, check, read=usage.cache_read_tokens, write=usage.cache_write_tokens,
                answered_by=completion.model, response_cache_hit=completion.response_cache_hit,
                has_usage=usage.raw is not None or usage.total_tokens > 0)
        except Exception as exc:
            log.warning("cache doctor could not compare: %s", type(exc).__name__)
            return completion
        return replace(completion, cache=settled)

    # --- run log ------------------------------------------------------------------------------------

    def _log_failure(self, page: str, payload: dict, exc: OrqError, exchange: _Exchange, started: float) -> None:
        if self._run_log is None:
            return
        latency_ms = (self._clock() - started) * 1000
        self._write_record(RunRecord(
            page=page, model=payload.get("model") or "", status="error", latency_ms=latency_ms,
            http_status=exc.status or exchange.http_status, error=describe(exc),
            request_id=exc.request_id or exchange.request_id, ts=time.time()))

    def _log(self, page: str, payload: dict, status: str, completion: Completion, exchange: _Exchange) -> None:
        if self._run_log is None:
            return
        requested = payload.get("model") or ""
        # A response-cache hit is served by Orq without reaching the model: nothing is billed.
        usage = Usage() if completion.response_cache_hit else completion.usage
        self._write_record(RunRecord(
            page=page, model=requested, status=status, usage=usage,
            cost_usd=_cost_usd(usage, payload, completion.model, requested),
            ttft_ms=completion.ttft_ms, latency_ms=completion.latency_ms, answered_by=completion.model,
            http_status=exchange.http_status, error=completion.error, request_id=completion.request_id,
            ts=time.time()))

    def _write_record(self, record: RunRecord) -> None:
        try:
            self._run_log.log_run(record)
        except Exception as exc:  # a broken run log must never break the request it records
            log.warning("could not write the run log: %s", type(exc).__name__)


def _cost_usd(usage: Usage, payload: dict, *slugs: str) -> float:
    """Cost from the catalog's prices; 0 for a model the catalog does not know."""
    if not usage.total_tokens:
        return 0.0
    try:
        write_ttl = cache_write_ttl(payload)
    except (ValueError, TypeError, AttributeError, KeyError):
        write_ttl = "5m"
    for slug in slugs:
        if slug:
            try:
                return float(cost_of(usage, slug, write_ttl).total)
            except UnknownModelError:
                continue
    return 0.0
