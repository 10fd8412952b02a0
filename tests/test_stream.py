"""ChunkAssembler: typed events and the final Completion from recorded chunk streams."""

import json
from pathlib import Path

from orq_core.sse import decode_all
from orq_core.stream import ChunkAssembler, completion_from_response, error_status
from orq_core.types import (ErrorEvent, FinishEvent, ReasoningDelta, RedactedReasoning, SignatureDelta, TextDelta,
                            ToolCall, ToolCallDelta, ToolCallDone, UsageEvent)
from orq_core.usage import Usage

FIXTURES = Path(__file__).parent / "fixtures"


def assemble(name: str, model: str = "asked/model"):
    assembler = ChunkAssembler(model)
    events = []
    for message in decode_all((FIXTURES / name).read_bytes()):
        events += assembler.feed(message.data, message.event)
    events += assembler.finish()
    return assembler, events


def test_text_stream_events_and_completion():
    assembler, events = assemble("text_stream.sse")
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Héllo", ", wörld", " — ", "日本語", " 🎉", "!"]
    assert [type(e) for e in events[-2:]] == [FinishEvent, UsageEvent]
    completion = assembler.completion(ttft_ms=12.5, latency_ms=80.0, request_id="req_1")
    assert completion.text == "Héllo, wörld — 日本語 🎉!"
    assert completion.finish_reason == "stop"
    assert completion.model == "anthropic/claude-sonnet-4-5-20250929"
    assert completion.id == "chatcmpl-fx1"
    assert completion.usage == Usage(input_tokens=200, cache_read_tokens=1000, output_tokens=9)
    assert (completion.ttft_ms, completion.latency_ms, completion.request_id) == (12.5, 80.0, "req_1")
    assert completion.partial is False and completion.error is None
    assert assembler.saw_done


def test_two_parallel_tool_calls_interleaved_are_joined():
    assembler, events = assemble("tool_calls_parallel.sse")
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert [(d.index, d.id, d.name) for d in deltas[:2]] == [(0, "call_a", "get_weather"), (1, "call_b", "get_time")]
    assert [d.arguments for d in deltas[2:]] == ['{"city": ', '{"tz": "Europe/', '"Zürich"}', 'Paris"}']
    done = [e.call for e in events if isinstance(e, ToolCallDone)]
    assert done == [ToolCall("call_a", "get_weather", '{"city": "Zürich"}'),
                    ToolCall("call_b", "get_time", '{"tz": "Europe/Paris"}')]
    # the calls are done when finish_reason arrives, before the FinishEvent
    kinds = [type(e).__name__ for e in events if not isinstance(e, (ToolCallDelta, TextDelta))]
    assert kinds == ["ToolCallDone", "ToolCallDone", "FinishEvent", "UsageEvent"]
    completion = assembler.completion()
    assert completion.text == "Checking both."
    assert completion.tool_calls == tuple(done)
    assert completion.finish_reason == "tool_calls"
    assert completion.tool_calls[0].parsed_arguments() == {"city": "Zürich"}
    assert completion.usage.output_tokens == 40


def test_reasoning_with_signature_and_redacted_in_their_own_chunks():
    assembler, events = assemble("reasoning_signature.sse")
    assert [e.text for e in events if isinstance(e, ReasoningDelta)] == ["Let me think", " about 2+2.", "\nIt is 4."]
    assert [e for e in events if isinstance(e, SignatureDelta)] == [SignatureDelta("sig-EqQBCkYIARgCKkBz/abc==")]
    assert [e for e in events if isinstance(e, RedactedReasoning)] == [RedactedReasoning("RUVEQUNURUQ=")]
    completion = assembler.completion()
    assert completion.reasoning == "Let me think about 2+2.\nIt is 4."
    assert completion.reasoning_signature == "sig-EqQBCkYIARgCKkBz/abc=="
    assert completion.redacted_reasoning == ("RUVEQUNURUQ=",)
    assert completion.text == "2 + 2 = 4."
    assert completion.usage.reasoning_tokens == 22
    assert completion.assistant_message()["content"] == [
        {"type": "reasoning", "reasoning": "Let me think about 2+2.\nIt is 4.",
         "signature": "sig-EqQBCkYIARgCKkBz/abc=="},
        {"type": "redacted_reasoning", "data": "RUVEQUNURUQ="},
        {"type": "text", "text": "2 + 2 = 4."},
    ]


def test_missing_done_after_finish_and_usage_is_complete():
    assembler, _ = assemble("text_missing_done.sse")
    assert not assembler.saw_done
    completion = assembler.completion()
    assert completion.partial is False
    assert completion.usage.output_tokens == 9


def test_stream_ending_without_finish_reason_is_partial_and_open_calls_are_not_done():
    assembler = ChunkAssembler("m")
    assembler.feed(json.dumps({"choices": [{"delta": {"content": "Hal"}}]}))
    events = assembler.feed(json.dumps({"choices": [{"delta": {"tool_calls": [
        {"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{\"a\""}}]}}]}))
    assert events == [ToolCallDelta(0, "c1", "f", '{"a"')]
    assert assembler.finish() == []
    completion = assembler.completion()
    assert completion.partial is True
    assert completion.text == "Hal"
    assert completion.tool_calls == ()
    assert completion.model == "m"


def test_done_without_finish_reason_joins_open_calls():
    assembler = ChunkAssembler()
    assembler.feed(json.dumps({"choices": [{"delta": {"tool_calls": [
        {"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{}"}}]}}]}))
    assert assembler.feed("[DONE]") == [ToolCallDone(ToolCall("c1", "f", "{}"))]
    assert assembler.completion().partial is False


def test_fragments_without_index_follow_ids():
    assembler = ChunkAssembler()
    for fragment in ({"id": "a", "function": {"name": "f", "arguments": "{\"x\":"}},
                     {"function": {"arguments": "1}"}},
                     {"id": "b", "function": {"name": "g", "arguments": "{}"}}):
        assembler.feed_chunk({"choices": [{"delta": {"tool_calls": [fragment]}}]})
    assembler.feed_chunk({"choices": [{"delta": {}, "finish_reason": "tool_calls"}]})
    assert assembler.completion().tool_calls == (ToolCall("a", "f", '{"x":1}'), ToolCall("b", "g", "{}"))


def test_midstream_error_after_two_tokens():
    assembler, events = assemble("midstream_error.sse")
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["One", " two"]
    assert events[-1] == ErrorEvent("Overloaded", 529, {"message": "Overloaded", "type": "overloaded_error",
                                                         "code": 529})
    completion = assembler.completion()
    assert completion.partial is True
    assert completion.error == "Overloaded"
    assert completion.text == "One two"


def test_error_event_type_and_junk_chunks():
    assembler = ChunkAssembler()
    [event] = assembler.feed('{"type": "rate_limit_error", "message": "slow down"}', "error")
    assert (event.message, event.status) == ("slow down", 429)
    [event] = ChunkAssembler().feed("not json")
    assert event.message.startswith("The router sent a stream chunk that is not JSON")
    assert event.status is None


def test_error_status_reads_code_status_or_type():
    assert error_status({"code": "503"}) == 503
    assert error_status({"status": 429}) == 429
    assert error_status({"code": 12, "type": "overloaded_error"}) == 529
    assert error_status({"message": "?"}) is None
    assert error_status("boom") is None


def test_cache_hit_flag_in_a_chunk_body():
    assembler = ChunkAssembler()
    assembler.feed_chunk({"choices": [], "orq": {"cache_hit": True}})
    assert assembler.completion().response_cache_hit is True


def test_role_only_and_null_fields_make_no_events():
    assembler = ChunkAssembler()
    assert assembler.feed_chunk({"choices": [{"delta": {"role": "assistant", "content": "", "tool_calls": None,
                                                        "reasoning": None}, "finish_reason": None}],
                                 "usage": None}) == []


def test_completion_from_a_non_streamed_body():
    body = {
        "id": "chatcmpl-9", "model": "aws/anthropic/claude-sonnet-4-5-20250929",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Let me look.", "reasoning": "Need weather.",
            "reasoning_signature": "sig==", "redacted_reasoning": "abc",
            "tool_calls": [{"id": "t1", "type": "function",
                            "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        "orq": {"cache_hit": True},
    }
    completion = completion_from_response(body, model="asked", latency_ms=42.0, ttft_ms=42.0, request_id="r")
    assert completion.text == "Let me look."
    assert completion.reasoning == "Need weather."
    assert completion.reasoning_signature == "sig=="
    assert completion.redacted_reasoning == ("abc",)
    assert completion.tool_calls == (ToolCall("t1", "get_weather", '{"city":"Oslo"}'),)
    assert completion.model == "aws/anthropic/claude-sonnet-4-5-20250929"
    assert completion.usage == Usage(input_tokens=10, output_tokens=5)
    assert completion.response_cache_hit is True
    assert (completion.ttft_ms, completion.latency_ms) == (42.0, 42.0)


def test_completion_from_content_parts():
    body = {"choices": [{"finish_reason": "stop", "message": {"content": [
        {"type": "reasoning", "reasoning": "hmm", "signature": "s1"},
        {"type": "redacted_reasoning", "data": "r1"},
        {"type": "text", "text": "A"}, {"type": "text", "text": "B"}]}}]}
    completion = completion_from_response(body, model="asked")
    assert (completion.text, completion.reasoning, completion.reasoning_signature) == ("AB", "hmm", "s1")
    assert completion.redacted_reasoning == ("r1",)
    assert completion.model == "asked"
    assert completion.usage == Usage()
