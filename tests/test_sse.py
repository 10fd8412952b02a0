"""SSEDecoder on byte fixtures, split at every position and at the awkward places."""

import json
import random
from pathlib import Path

import pytest

from orq_core.sse import SSEDecoder, SSEMessage, decode_all

FIXTURES = Path(__file__).parent / "fixtures"
TEXT = ["", "Héllo", ", wörld", " — ", "日本語", " 🎉", "!"]


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def feed_pieces(pieces) -> list[SSEMessage]:
    decoder = SSEDecoder()
    messages = []
    for piece in pieces:
        messages += decoder.feed(piece)
    return messages + decoder.close()


def contents(messages) -> list[str]:
    out = []
    for m in messages:
        if m.data == "[DONE]":
            out.append("[DONE]")
            continue
        chunk = json.loads(m.data)
        out.append(chunk["choices"][0]["delta"].get("content", "") if chunk["choices"] else "usage")
    return out


EXPECTED_TEXT = TEXT + ["", "usage", "[DONE]"]  # the finish chunk has an empty delta


@pytest.mark.parametrize("name", ["text_stream.sse", "text_stream_crlf.sse", "text_stream_cr.sse"])
def test_line_ends_lf_crlf_cr_and_bom_decode_the_same(name):
    messages = decode_all(fixture(name))
    assert contents(messages) == EXPECTED_TEXT
    assert all(m.event == "message" and m.id == "" for m in messages)


@pytest.mark.parametrize("name", ["text_stream.sse", "text_stream_crlf.sse", "text_stream_cr.sse",
                                  "tool_calls_parallel.sse", "reasoning_signature.sse", "field_rules.sse",
                                  "midstream_error.sse", "text_missing_done.sse"])
def test_split_at_every_position_gives_the_same_messages(name):
    data = fixture(name)
    whole = decode_all(data)
    assert whole
    for cut in range(len(data) + 1):
        assert feed_pieces([data[:cut], data[cut:]]) == whole, f"cut at byte {cut}"


@pytest.mark.parametrize("name", ["text_stream_crlf.sse", "text_stream_cr.sse", "reasoning_signature.sse"])
def test_byte_by_byte_and_random_splits(name):
    data = fixture(name)
    whole = decode_all(data)
    assert feed_pieces([data[i:i + 1] for i in range(len(data))]) == whole
    rng = random.Random(7)
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(data)), 12))
        pieces = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
        assert feed_pieces(pieces) == whole


def test_split_inside_a_multibyte_character():
    data = fixture("text_stream.sse")
    for char in ("é", "日", "🎉"):
        encoded = char.encode()
        at = data.index(encoded)
        for inner in range(1, len(encoded)):
            messages = feed_pieces([data[:at + inner], data[at + inner:]])
            assert contents(messages) == EXPECTED_TEXT
            assert "\ufffd" not in "".join(m.data for m in messages)


def test_split_between_cr_and_lf_does_not_make_an_extra_line():
    data = fixture("text_stream_crlf.sse")
    at = data.index(b"\r\n\r\n") + 1  # between the first CR and its LF
    messages = feed_pieces([data[:at], data[at:at + 1], data[at + 1:]])
    assert contents(messages) == EXPECTED_TEXT
    # a lone CR at the end of one chunk, then a blank line (CR LF) in the next: two line ends
    assert feed_pieces([b"data: x\r", b"\r\ndata: y\n\n"]) == [SSEMessage("message", "x", ""),
                                                               SSEMessage("message", "y", "")]


def test_split_inside_the_field_name():
    data = b"data: one\n\nevent: ping\ndata: two\n\n"
    for cut in (2, 3, 4, 5, 13, 15, 17):
        assert feed_pieces([data[:cut], data[cut:]]) == [SSEMessage("message", "one", ""),
                                                         SSEMessage("ping", "two", "")]


def test_field_rules():
    assert decode_all(fixture("field_rules.sse")) == [
        SSEMessage("greeting", "line one\nline two\n", "7", 1500),
        SSEMessage("message", '{"a": 1}', "7", 1500),
        # 'event: lonely' had no data: not dispatched; an id holding NUL is ignored
        SSEMessage("message", "after", "7", 1500),
        SSEMessage("message", " two spaces", "7", 1500),
    ]


def test_comments_and_keep_alives_yield_nothing():
    assert decode_all(b": ping\n\n:\n\n: keep-alive\r\n\r\n") == []
    decoder = SSEDecoder()
    assert decoder.feed(b": keep-alive\n\n") == []
    assert decoder.feed(b"data: 1\n\n") == [SSEMessage("message", "1", "")]


def test_multi_line_data_is_joined_with_newlines():
    assert decode_all(b"data: {\ndata:   \"a\": 1\ndata: }\n\n") == [SSEMessage("message", '{\n  "a": 1\n}', "")]


def test_missing_done_and_final_blank_line_is_flushed_by_close():
    data = fixture("text_missing_done.sse")
    decoder = SSEDecoder()
    assert contents(decoder.feed(data)) == TEXT + [""]  # the usage chunk waits for its blank line
    assert contents(decoder.close()) == ["usage"]
    assert decoder.close() == []


def test_bom_only_at_the_start_and_split():
    bom = "\ufeff".encode()
    assert feed_pieces([bom[:1], bom[1:2], bom[2:] + b"data: a\n\n"]) == [SSEMessage("message", "a", "")]
    # a BOM later in the stream is data, not stripped
    assert decode_all(b"data: a\n\n" + bom + b"data: b\n\n") == [SSEMessage("message", "a", "")]


def test_midstream_error_is_an_ordinary_message():
    messages = decode_all(fixture("midstream_error.sse"))
    assert json.loads(messages[-1].data)["error"]["message"] == "Overloaded"


def test_invalid_utf8_is_replaced_not_raised():
    assert decode_all(b"data: a\xffb\n\n") == [SSEMessage("message", "a\ufffdb", "")]


def test_empty_feeds_and_empty_stream():
    decoder = SSEDecoder()
    assert decoder.feed(b"") == []
    assert decoder.close() == []


def test_one_event_per_read_keeps_the_state_between_reads():
    """Reads holding exactly one event take a fast path; buffered state must still apply."""
    assert feed_pieces([b"data: a\n\n", b"event: ping\n", b"data: b\n\n", b"data: c\n\n"]) == [
        SSEMessage("message", "a", ""), SSEMessage("ping", "b", ""), SSEMessage("message", "c", "")]
    assert feed_pieces([b"data: a\n", b"data: b\n\n", b"id: 3\n\n", b"data: c\n\n"]) == [
        SSEMessage("message", "a\nb", ""), SSEMessage("message", "c", "3")]
    assert feed_pieces([b"data: a\n\n", b"data: x\ry\n\n", b"data: a\r", b"data: b\n\n"]) == [
        SSEMessage("message", "a", ""), SSEMessage("message", "x", ""), SSEMessage("message", "a\nb", "")]
