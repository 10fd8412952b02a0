"""OrqClient sends a payload holding a long string (an inline file) as a body produced in slices:
the same bytes as one json.dumps, a Content-Length, no whole copy of the file held while sending."""

from __future__ import annotations

import base64
import json
import os
import tracemalloc

import httpx

from orq_core.client import BODY_CHUNK_CHARS, OrqClient
from orq_core.types import Done

MODEL = "anthropic/claude-sonnet-4-5-20250929"
ANSWER = {"id": "c", "object": "chat.completion", "created": 1, "model": MODEL,
          "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}],
          "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}


class RecordingTransport(httpx.BaseTransport):
    """Reads the request body as it is sent, keeping its pieces (or only their sizes)."""

    def __init__(self, keep: bool = True, statuses: tuple[int, ...] = ()):
        self.keep = keep
        self.statuses = list(statuses)
        self.bodies: list[list[bytes]] = []
        self.sizes: list[list[int]] = []
        self.headers: list[httpx.Headers] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        pieces, sizes = [], []
        for piece in request.stream:
            sizes.append(len(piece))
            if self.keep:
                pieces.append(piece)
        self.bodies.append(pieces)
        self.sizes.append(sizes)
        self.headers.append(request.headers)
        status = self.statuses.pop(0) if self.statuses else 200
        body = ANSWER if status == 200 else {"error": {"message": "busy", "type": "overloaded_error"}}
        return httpx.Response(status, json=body)


def pdf_payload(size: int, text: str = "What is in it?") -> dict:
    data_url = "data:application/pdf;base64," + base64.b64encode(os.urandom(size)).decode("ascii")
    return {"model": MODEL, "max_tokens": 100, "messages": [{"role": "user", "content": [
        {"type": "file", "file": {"file_data": data_url, "filename": "a.pdf"}},
        {"type": "text", "text": text}]}]}


def sent_json(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode("ascii")


def test_a_long_string_goes_out_in_slices_with_the_bytes_of_one_json_dump():
    transport = RecordingTransport()
    payload = pdf_payload(300_000, "Et la page 3 ? 🙂 \"quoted\"\n" + "é" * (2 * BODY_CHUNK_CHARS))
    with OrqClient("http://router.test/v2/router", "k", transport=transport) as client:
        assert client.create(payload).text == "ok"
    expected = sent_json({**payload, "stream": False})
    assert b"".join(transport.bodies[0]) == expected
    assert transport.headers[0]["content-length"] == str(len(expected))
    assert "transfer-encoding" not in transport.headers[0]
    assert len(transport.bodies[0]) > 6
    assert max(transport.sizes[0]) <= 6 * BODY_CHUNK_CHARS  # an escaped slice, never the whole file


def test_a_retry_sends_the_same_body_again():
    transport = RecordingTransport(statuses=(529,))
    payload = pdf_payload(200_000)
    with OrqClient("http://router.test/v2/router", "k", transport=transport, sleep=lambda s: None) as client:
        assert client.create(payload).text == "ok"
    assert len(transport.bodies) == 2
    assert b"".join(transport.bodies[0]) == b"".join(transport.bodies[1]) == sent_json({**payload, "stream": False})


def small_pdf() -> bytes:
    from fpdf import FPDF

    doc = FPDF()
    doc.set_compression(False)
    doc.set_font("helvetica", size=8)
    for page in range(16):
        doc.add_page()
        doc.multi_cell(0, 4, f"Page {page + 1}. " + "Prompt caching keeps a prefix of the prompt. " * 60)
    return bytes(doc.output())


def test_a_streamed_request_with_a_file_reaches_the_local_router_whole(local_router):
    data = small_pdf()
    assert len(data) * 4 // 3 > BODY_CHUNK_CHARS
    payload = pdf_payload(0)
    payload["messages"][0]["content"][0]["file"]["file_data"] = (
        "data:application/pdf;base64," + base64.b64encode(data).decode("ascii"))
    with OrqClient(local_router.base_url, local_router.api_key) as client:
        done = list(client.stream({**payload, "stream_options": {"include_usage": True}}))[-1]
    assert isinstance(done, Done) and done.completion.error is None
    assert done.completion.usage.prompt_tokens > 16 * 1_600  # sixteen pages, each text plus an image


def test_a_small_payload_is_sent_as_one_piece():
    transport = RecordingTransport()
    payload = {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    with OrqClient("http://router.test/v2/router", "k", transport=transport) as client:
        client.create(payload)
    assert transport.bodies[0] == [sent_json({**payload, "stream": False})]


def test_sending_a_file_holds_no_second_copy_of_it():
    transport = RecordingTransport(keep=False)
    payload = pdf_payload(3_000_000)
    file_chars = len(payload["messages"][0]["content"][0]["file"]["file_data"])
    with OrqClient("http://router.test/v2/router", "k", transport=transport) as client:
        client.create(payload)  # warm up: imports and the connection
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            client.create(payload)
            peak = tracemalloc.get_traced_memory()[1] - before
        finally:
            tracemalloc.stop()
    assert sum(transport.sizes[1]) > file_chars
    assert peak < 0.25 * file_chars  # json.dumps + encode held two whole copies (2x)


def test_a_small_body_is_one_dumps_and_compiles_no_split_pattern(monkeypatch):
    """Every chat request goes through the body encoder: a body with no long string must not pay
    for the placeholder pattern (a fresh regex per request, compiled anew: ~40 µs each)."""
    import re

    from orq_core import client as client_module

    splits = []
    real_split = re.split
    monkeypatch.setattr(client_module.re, "split", lambda *a, **k: splits.append(a[0]) or real_split(*a, **k))
    payload = {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "Say hi é " * 20}]}
    body = client_module._encode(payload)
    assert body == json.dumps(payload, separators=(",", ":")).encode("ascii")
    assert splits == []
