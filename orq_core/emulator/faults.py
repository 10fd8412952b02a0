"""Fault injection for demos and tests: the local router fails on purpose.

Faults come from the request header ``X-Emulator-Fault`` or from ``settings.faults`` (a list of
specs queued for the next requests; append to it at run time for a demo).

Grammar (several faults may be joined with commas):

    fault := KIND ["x" N] [":" ARG (";" ARG)*] ["@" MODEL] ["#" TAG]
    KIND  := an HTTP error status 400-599 | cut | slow_first_byte | error_midstream
    ARG   := name=value | value          (a bare value is the kind's main argument)

    429, 429:retry_after=2   429 with a Retry-After header (default 1 s); main arg: retry_after
    500, 502, 503, 529, ...  that status with a provider-like error body
    cut:after=N              the stream stops after N chunks: the connection closes without the
                             end of the body and without [DONE]; a non-streamed request gets 500
    error_midstream:after=N  after N chunks a ``data: {"error": {...}}`` line (status=529 by
                             default, ``status=500`` to change), then the stream ends, no [DONE];
                             a non-streamed request gets that status
    slow_first_byte:S        wait S seconds before the response starts. Scaled by
                             ``settings.fault_time_scale`` only (not time_scale), so read
                             timeouts can be tested against a router that otherwise never waits
    @MODEL                   only attempts on that slug (or, for a bare id, that model through
                             any provider) fail: ``529@anthropic/claude-sonnet-4-5-20250929``
                             with an aws fallback shows a fallback answering
    xN                       N matching attempts fail, then the fault is spent: ``429x3``.
                             In the header, the count is kept per API key and exact header text,
                             across requests (a client's retries resend the same header); add a
                             ``#TAG`` to start a fresh count. Without xN a header fault hits every
                             attempt of its request, and a settings fault hits one attempt.

Status faults hit each attempt (an Orq retry or a fallback is a new attempt); the other kinds
act on the response that is finally delivered.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Callable

STATUS = "status"
CUT = "cut"
SLOW_FIRST_BYTE = "slow_first_byte"
ERROR_MIDSTREAM = "error_midstream"
TRANSPORT_KINDS = (CUT, SLOW_FIRST_BYTE, ERROR_MIDSTREAM)
HEADER = "x-emulator-fault"

_HEAD = re.compile(r"^(?P<kind>[1-5]\d\d|cut|slow_first_byte|error_midstream)(?:x(?P<times>\d+))?$")
_MAIN_ARG = {STATUS: "retry_after", CUT: "after", ERROR_MIDSTREAM: "after", SLOW_FIRST_BYTE: "seconds"}
_ALLOWED_ARGS = {STATUS: {"retry_after"}, CUT: {"after"}, ERROR_MIDSTREAM: {"after", "status"},
                 SLOW_FIRST_BYTE: {"seconds"}}


@dataclass(frozen=True)
class Fault:
    spec: str
    kind: str
    status: int | None = None
    retry_after: float | None = None
    after: int = 3
    seconds: float = 2.0
    times: int | None = None
    model: str | None = None

    def applies_to(self, slug: str) -> bool:
        if self.model is None:
            return True
        if "/" in self.model:
            return slug == self.model
        return slug == self.model or slug.endswith("/" + self.model)


def _number(name: str, value: str, spec: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"fault {spec!r}: {name} must be a number, not {value!r}") from None
    if number < 0:
        raise ValueError(f"fault {spec!r}: {name} must not be negative")
    return number


def _args(kind: str, text: str, spec: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for arg in filter(None, (a.strip() for a in text.split(";"))):
        name, _, value = arg.partition("=") if "=" in arg else (_MAIN_ARG[kind], "=", arg)
        name = name.strip()
        if name not in _ALLOWED_ARGS[kind]:
            raise ValueError(f"fault {spec!r}: unknown argument {name!r} "
                             f"(allowed: {', '.join(sorted(_ALLOWED_ARGS[kind]))})")
        values[name] = _number(name, value.strip(), spec)
    return values


def parse_fault(spec: str) -> Fault:
    """One fault spec; ValueError with a clear message when it does not fit the grammar."""
    spec = spec.strip()
    body = spec.split("#", 1)[0]
    body, _, model = body.partition("@")
    head, _, arg_text = body.partition(":")
    match = _HEAD.match(head.strip())
    if not match:
        raise ValueError(f"fault {spec!r}: expected an HTTP status 400-599, cut, slow_first_byte or "
                         "error_midstream, optionally followed by xN")
    name = match["kind"]
    kind = STATUS if name[0].isdigit() else name
    status = int(name) if kind == STATUS else None
    if status is not None and status < 400:
        raise ValueError(f"fault {spec!r}: the status must be 400-599")
    args = _args(kind, arg_text, spec)
    if kind == ERROR_MIDSTREAM:
        status = int(args.get("status", 529))
    retry_after = args.get("retry_after", 1.0 if status == 429 and kind == STATUS else None)
    return Fault(spec=spec, kind=kind, status=status, retry_after=retry_after,
                 after=int(args.get("after", 3)), seconds=args.get("seconds", 2.0),
                 times=int(match["times"]) if match["times"] else None, model=model.strip() or None)


def parse_faults(text: str | None) -> list[Fault]:
    return [parse_fault(spec) for spec in (text or "").split(",") if spec.strip()]


class FaultBoard:
    """Decides which faults hit an attempt. Thread-safe.

    ``pending`` returns the live ``settings.faults`` list: specs are taken off it into an
    internal queue as they are seen, so appending to it at run time queues a fault."""

    def __init__(self, pending: Callable[[], list[str]]):
        self._pending = pending
        self._queue: list[list] = []  # [Fault, attempts left]
        self._header_hits: dict[tuple[bytes, str], int] = {}
        self._lock = threading.Lock()

    def _drain(self) -> None:
        pending = self._pending()
        while pending:
            for fault in parse_faults(pending.pop(0)):
                self._queue.append([fault, fault.times or 1])

    def _header_fires(self, fault: Fault, scope: bytes) -> bool:
        if fault.times is None:
            return True
        key = (scope, fault.spec)
        self._header_hits[key] = self._header_hits.get(key, 0) + 1
        return self._header_hits[key] <= fault.times

    def _take_queued(self, slug: str, kinds: tuple[str, ...]) -> Fault | None:
        for item in self._queue:
            fault = item[0]
            if fault.kind in kinds and fault.applies_to(slug):
                item[1] -= 1
                if item[1] <= 0:
                    self._queue.remove(item)
                return fault
        return None

    def status_fault(self, header: list[Fault], scope: bytes, slug: str) -> Fault | None:
        """The status fault (if any) that fails this attempt on ``slug``."""
        with self._lock:
            self._drain()
            for fault in header:
                if fault.kind == STATUS and fault.applies_to(slug) and self._header_fires(fault, scope):
                    return fault
            return self._take_queued(slug, (STATUS,))

    def transport_faults(self, header: list[Fault], scope: bytes, slug: str) -> dict[str, Fault]:
        """The cut / slow_first_byte / error_midstream faults for the delivered response, by kind."""
        chosen: dict[str, Fault] = {}
        with self._lock:
            self._drain()
            for fault in header:
                if fault.kind in TRANSPORT_KINDS and fault.kind not in chosen and fault.applies_to(slug) \
                        and self._header_fires(fault, scope):
                    chosen[fault.kind] = fault
            for kind in TRANSPORT_KINDS:
                if kind not in chosen:
                    queued = self._take_queued(slug, (kind,))
                    if queued is not None:
                        chosen[kind] = queued
        return chosen

    def queued(self) -> list[str]:
        with self._lock:
            self._drain()
            return [item[0].spec for item in self._queue]
