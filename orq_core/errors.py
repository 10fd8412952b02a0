"""One exception hierarchy for everything the router (or the way to it) can say no with.

Modelled on the Anthropic and OpenAI SDKs: a class per status, each carrying the status, the
request id and the server's message. ``describe()`` turns one into a sentence for a person.
No exception text ever holds the API key: messages come from the server body or from us.
"""

from __future__ import annotations

import json
from typing import Any


class OrqError(Exception):
    """Base of every error this package raises about a request."""

    status: int | None = None

    def __init__(self, message: str, *, status: int | None = None, request_id: str | None = None,
                 body: Any = None, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.request_id = request_id
        self.body = body
        self.retry_after = retry_after

    def __str__(self) -> str:
        parts = [self.message]
        if self.status:
            parts.append(f"(HTTP {self.status}")
            parts[-1] += f", request {self.request_id})" if self.request_id else ")"
        return " ".join(parts)


class RequestValidationError(OrqError, ValueError):
    """Refused before sending: the request breaks a documented rule. ``field`` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


class ConnectionFailed(OrqError):
    """The router could not be reached at all."""


class TimeoutFailed(OrqError):
    """Connecting, or waiting for the first (or next) byte, took longer than the timeout."""


class StreamInterrupted(OrqError):
    """The stream ended early: the connection broke, or an error arrived mid-stream."""

    def __init__(self, message: str, *, partial: Any = None, **kwargs):
        super().__init__(message, **kwargs)
        self.partial = partial


class StoreConfigError(OrqError):
    """ORQ_PLAYGROUND_DB names neither a usable file path nor a postgresql:// URL."""


class StoreUnavailable(OrqError):
    """The store (a PostgreSQL server, a database file) could not be opened or reached."""


class APIStatusError(OrqError):
    """The router answered with an error status."""


class BadRequestError(APIStatusError):
    status = 400


class AuthenticationError(APIStatusError):
    status = 401


class PermissionDeniedError(APIStatusError):
    status = 403


class NotFoundError(APIStatusError):
    status = 404


class RequestTimeoutError(APIStatusError):
    status = 408


class ConflictError(APIStatusError):
    status = 409


class PayloadTooLargeError(APIStatusError):
    status = 413


class UnprocessableEntityError(APIStatusError):
    status = 422


class RateLimitError(APIStatusError):
    status = 429


class InternalServerError(APIStatusError):
    status = 500


class OverloadedError(InternalServerError):
    status = 529


_BY_STATUS = {
    400: BadRequestError, 401: AuthenticationError, 403: PermissionDeniedError,
    404: NotFoundError, 408: RequestTimeoutError, 409: ConflictError, 413: PayloadTooLargeError,
    422: UnprocessableEntityError, 429: RateLimitError, 529: OverloadedError,
}

RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})


def is_retryable(status: int | None) -> bool:
    return status is not None and (status in RETRYABLE_STATUSES or 500 <= status < 600)


def must_change_request(error: BaseException) -> bool:
    """True when resending the same request cannot help (it was refused for what it is), as
    opposed to when or by whom it was sent (429, 5xx, key, network)."""
    return isinstance(error, (RequestValidationError, BadRequestError, NotFoundError, PayloadTooLargeError,
                              UnprocessableEntityError))


def error_message_from_body(body: Any, fallback: str) -> str:
    """The server's message wherever it sits: {"error": {"message"}}, {"error": "..."},
    {"message": ...}, {"detail": ...}; else the raw text."""
    if isinstance(body, (bytes, str)):
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        try:
            body = json.loads(text)
        except ValueError:
            return text.strip()[:500] or fallback
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, str):
            return error
        if isinstance(error, dict):
            for key in ("message", "detail", "error"):
                value = error.get(key)
                if isinstance(value, str) and value:
                    return value
        for key in ("message", "detail"):
            if isinstance(body.get(key), str):
                return body[key]
    return fallback


def error_for_status(status: int, body: Any, *, request_id: str | None = None,
                     retry_after: float | None = None) -> APIStatusError:
    cls = _BY_STATUS.get(status) or (InternalServerError if status >= 500 else APIStatusError)
    message = error_message_from_body(body, f"HTTP {status}")
    parsed = body
    if isinstance(body, (bytes, str)):
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return cls(message, status=status, request_id=request_id, body=parsed, retry_after=retry_after)


def describe(error: BaseException) -> str:
    """A sentence for a person: what happened and what to do."""
    if isinstance(error, RequestValidationError):
        return f"The request was not sent: {error.reason} (field `{error.field}`). Change it and try again."
    if isinstance(error, AuthenticationError):
        return "The router refused the API key (401). Check the key in the sidebar or ORQ_API_KEY."
    if isinstance(error, PermissionDeniedError):
        return f"This key may not use that (403): {error.message}"
    if isinstance(error, NotFoundError):
        return f"The router does not know that model or route (404): {error.message}. Pick another model."
    if isinstance(error, PayloadTooLargeError):
        return f"The request is too large for the router (413): {error.message}. Send less or smaller files."
    if isinstance(error, RateLimitError):
        wait = f" Wait {error.retry_after:g} s and try again." if error.retry_after else " Wait a moment and try again."
        return f"Rate limited (429): {error.message}.{wait}"
    if isinstance(error, OverloadedError):
        return "The model is overloaded (529) and retries did not help. Try again shortly, or add a fallback model."
    if isinstance(error, InternalServerError):
        return f"The router failed ({error.status}): {error.message}. Try again; it was retried already."
    if isinstance(error, BadRequestError) and error.message.startswith("prompt is too long"):
        return (f"The router rejected the request (400): {error.message}. The message and the conversation before "
                "it are more than the model can read at once: shorten the message, or start a new conversation.")
    if isinstance(error, BadRequestError):
        return f"The router rejected the request (400): {error.message}"
    if isinstance(error, APIStatusError):
        return f"The router answered HTTP {error.status}: {error.message}"
    if isinstance(error, TimeoutFailed):
        return f"No answer in time: {error.message}. Raise the read timeout or try again."
    if isinstance(error, ConnectionFailed):
        return f"Could not reach the router: {error.message}. Check the base URL and your connection."
    if isinstance(error, StreamInterrupted):
        return f"The answer stopped halfway: {error.message}. What arrived is kept; send again to retry."
    if isinstance(error, OrqError):
        return error.message
    return f"Unexpected error: {type(error).__name__}: {error}"
