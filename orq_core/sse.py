"""A server-sent-events decoder fed raw bytes, per the WHATWG event-stream rules.

Robust to chunks split anywhere: line ends (CRLF, LF, CR) are ASCII bytes that never occur
inside a multi-byte UTF-8 sequence, so the decoder splits on bytes and decodes each event's
data once; a line cut mid-character waits, as bytes, for its end. One deviation from the
spec, on purpose: ``close()`` dispatches a last event that lacks its blank line (some servers
end the stream right after the final ``data:`` line).
"""

from __future__ import annotations

from typing import NamedTuple

_BOM = b"\xef\xbb\xbf"


class SSEMessage(NamedTuple):
    event: str
    """The event type; ``"message"`` when the stream named none (WHATWG default)."""
    data: str
    id: str
    """The last event id seen so far (it persists across events, per the spec)."""
    retry: int | None = None


_new_message = tuple.__new__  # skips NamedTuple's Python-level __new__ on the hot path


class SSEDecoder:
    """Feed bytes, get whole messages: ``SSEDecoder().feed(chunk) -> list[SSEMessage]``."""

    __slots__ = ("_pending", "_skip_lf", "_head", "_data", "_event", "_last_id", "_retry", "_clean")

    def __init__(self) -> None:
        self._pending: list[bytes] = []
        """Bytes of the line not yet ended."""
        self._skip_lf = False
        """The previous chunk ended with CR: a LF opening the next chunk belongs to it."""
        self._head: bytes | None = b""
        """The first bytes of the stream, held until we know whether they are a BOM; None once known."""
        self._data: list[bytes] = []
        self._event: bytes | None = None
        self._last_id = ""
        self._retry: int | None = None
        self._clean = False
        """Nothing is buffered between events: a chunk holding one whole event can take the fast path."""

    def feed(self, chunk: bytes) -> list[SSEMessage]:
        if (self._clean and chunk.startswith(b"data: ") and chunk.find(b"\n") == len(chunk) - 2
                and chunk[-1] == 10 and chunk.find(b"\r") < 0):
            # The common case, one read = one single-line event: skip the line machinery.
            # (bytes.find, not `in`: it is the faster scan for a one-byte needle.)
            return [_new_message(SSEMessage, ("message", chunk[6:-2].decode("utf-8", "replace"),
                                              self._last_id, self._retry))]
        return self._feed(chunk)

    def _feed(self, chunk: bytes) -> list[SSEMessage]:
        if self._head is not None:
            chunk = self._strip_bom(chunk)
        if not chunk:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[0] == 10:
                chunk = chunk[1:]
                if not chunk:
                    return []
        if chunk.find(b"\r") >= 0:
            self._skip_lf = chunk[-1] == 13
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = chunk.split(b"\n")
        rest = lines.pop()
        pending = self._pending
        if pending:
            if not lines:
                pending.append(rest)
                return []
            pending.append(lines[0])
            lines[0] = b"".join(pending)
            pending.clear()
        if rest:
            pending.append(rest)
        messages = self._lines(lines)
        self._clean = not pending and not self._data and self._event is None and not self._skip_lf
        return messages

    def close(self) -> list[SSEMessage]:
        """End of stream: the unfinished line and event are dispatched, not dropped."""
        lines = [b"".join(self._pending)] if self._pending else []
        self._pending.clear()
        self._clean = False
        if self._head:  # a stream shorter than a BOM
            lines = [self._head]
            self._head = None
        lines.append(b"")
        return self._lines(lines)

    def _strip_bom(self, chunk: bytes) -> bytes:
        head = self._head + chunk
        if len(head) < 3 and _BOM.startswith(head):
            self._head = head
            return b""
        self._head = None
        return head[3:] if head.startswith(_BOM) else head

    def _lines(self, lines: list[bytes]) -> list[SSEMessage]:
        messages: list[SSEMessage] = []
        data = self._data
        for line in lines:
            if line:
                if line.startswith(b"data: "):
                    data.append(line[6:])
                elif line[0] != 58:  # ':' opens a comment (keep-alives)
                    self._field(line)
            elif data:
                text = data[0] if len(data) == 1 else b"\n".join(data)
                event = self._event
                messages.append(_new_message(SSEMessage, (
                    "message" if not event else event.decode("utf-8", "replace"),
                    text.decode("utf-8", "replace"), self._last_id, self._retry)))
                data.clear()
                self._event = None
            else:
                self._event = None  # an event with no data is not dispatched
        return messages

    def _field(self, line: bytes) -> None:
        name, colon, value = line.partition(b":")
        if colon and value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value
        elif name == b"id":
            if b"\0" not in value:
                self._last_id = value.decode("utf-8", "replace")
        elif name == b"retry":
            if value.isdigit():
                self._retry = int(value)
        # any other field is ignored, per the spec


def decode_all(data: bytes) -> list[SSEMessage]:
    """Every message of a whole byte stream (tests, fixtures, non-streamed bodies)."""
    decoder = SSEDecoder()
    return decoder.feed(data) + decoder.close()
