"""Benchmark: our stream decoding vs the openai SDK's, and OrqClient.create vs bare httpx.

    python benchmarks/bench_client.py [--chunks 2000] [--runs 7] [--requests 500]

1. Stream parsing, on one recorded byte stream of a realistic streamed answer (reasoning, then
   text tokens, finish, usage, [DONE]), fed as one network read per event (a server flushing
   each token) and as 4 KiB reads (events cut anywhere):
   - SSE only: ``orq_core.sse.SSEDecoder`` vs ``openai._streaming.SSEDecoder.iter_bytes``;
   - full: SSEDecoder + ChunkAssembler (typed events) vs ``openai.Stream[ChatCompletionChunk]``
     (SSE + JSON + the SDK's chunk models), both reading the bytes through a Response's iter_bytes.
   Events/sec, median of interleaved runs, and the ratio.
2. Per-request overhead against a loopback uvicorn/starlette server returning a fixed completion:
   ``OrqClient.create`` vs a pooled ``httpx.Client.post`` + ``json.loads`` (the fair baseline: both
   reuse the connection), requests interleaved, medians, and the ratio.
Prints a Markdown table with the machine noted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Iterable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from orq_core.client import OrqClient  # noqa: E402
from orq_core.sse import SSEDecoder  # noqa: E402
from orq_core.stream import ChunkAssembler  # noqa: E402

MODEL = "anthropic/claude-sonnet-4-5-20250929"
WORDS = ("the cache keeps a prefix of the prompt so the next request reads it for a tenth of the price "
         "— café naïve 日本語 🎉 and then some more words about latency tokens and cost").split()


# --- the recorded stream --------------------------------------------------------------------------

def recorded_stream(chunks: int) -> list[bytes]:
    """One byte string per event, as a server flushing each token sends them."""
    def event(delta: dict | None = None, finish: str | None = None, usage: dict | None = None) -> bytes:
        body = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1732450000,
                "model": MODEL, "system_fingerprint": None,
                "choices": [] if usage else [{"index": 0, "delta": delta or {}, "logprobs": None,
                                              "finish_reason": finish}]}
        if usage:
            body["usage"] = usage
        return b"data: " + json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"

    reasoning = chunks // 5
    pieces = [event({"role": "assistant", "content": ""})]
    for i in range(chunks - 4):
        word = ("" if i % 7 else "\n") + " " + WORDS[i % len(WORDS)]
        pieces.append(event({"reasoning": word} if i < reasoning else {"content": word}))
        if i == reasoning:
            pieces.append(event({"reasoning_signature": "EqQBCkYIARgCKkBz" * 8}))
        if i % 300 == 0:
            pieces.append(b": keep-alive\n\n")
    pieces.append(event({}, finish="stop"))
    pieces.append(event(usage={"prompt_tokens": 1200, "completion_tokens": chunks, "total_tokens": 1200 + chunks,
                               "prompt_tokens_details": {"cached_tokens": 1000, "cache_creation_tokens": 0}}))
    pieces.append(b"data: [DONE]\n\n")
    return pieces


# --- stream parsers ---------------------------------------------------------------------------------

def ours_sse(pieces: list[bytes]) -> int:
    decoder = SSEDecoder()
    count = 0
    for piece in pieces:
        count += len(decoder.feed(piece))
    return count + len(decoder.close())


def sdk_sse(pieces: list[bytes]) -> int:
    from openai._streaming import SSEDecoder as SDKDecoder

    return sum(1 for _ in SDKDecoder().iter_bytes(iter(pieces)))


def ours_full(pieces: list[bytes]) -> int:
    return ours_direct(httpx.Response(200, content=iter(pieces)).iter_bytes())


def ours_direct(pieces: Iterable[bytes]) -> int:
    """SSEDecoder + ChunkAssembler fed the reads as they are (no httpx Response around them)."""
    decoder, assembler = SSEDecoder(), ChunkAssembler(MODEL)
    count = 0
    for piece in pieces:
        for message in decoder.feed(piece):
            assembler.feed(message.data, message.event)
            count += 1
    for message in decoder.close():
        assembler.feed(message.data, message.event)
        count += 1
    assembler.completion()
    return count


def minimal_split_loads(pieces: list[bytes]) -> int:
    """The least any parser must do: cut events at blank lines and json.loads each data line."""
    buffer, count = b"", 0
    for piece in pieces:
        buffer += piece
        *events, buffer = buffer.split(b"\n\n")
        for event in events:
            if event.startswith(b"data: "):
                if event != b"data: [DONE]":
                    json.loads(event[6:])
                count += 1
    return count


def sdk_full(pieces: list[bytes], sdk_client) -> int:
    import httpx2
    from openai import Stream
    from openai.types.chat import ChatCompletionChunk

    response = httpx2.Response(200, content=iter(pieces),
                               request=httpx2.Request("POST", "http://127.0.0.1/chat/completions"))
    stream = Stream(cast_to=ChatCompletionChunk, response=response, client=sdk_client)
    return sum(1 for _ in stream) + 1  # + the [DONE] event it consumes without yielding


def events_per_second(parsers, pieces, runs: int) -> list[tuple[float, int]]:
    """Median events/s of each parser, their runs interleaved so machine noise hits all alike."""
    for parse in parsers:
        parse(pieces)  # warm-up
    rates: list[list[float]] = [[] for _ in parsers]
    counts = [0] * len(parsers)
    for _ in range(runs):
        for i, parse in enumerate(parsers):
            start = time.perf_counter()
            counts[i] = parse(pieces)
            rates[i].append(counts[i] / (time.perf_counter() - start))
    return [(statistics.median(r), n) for r, n in zip(rates, counts)]


# --- loopback server ----------------------------------------------------------------------------------

COMPLETION = {
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1732450000, "model": MODEL,
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "Prompt caching stores a prefix. " * 8}}],
    "usage": {"prompt_tokens": 1200, "completion_tokens": 64, "total_tokens": 1264,
              "prompt_tokens_details": {"cached_tokens": 1000, "cache_creation_tokens": 0}},
}


def start_server():
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    body = json.dumps(COMPLETION).encode()

    async def completions(request):
        await request.body()
        return Response(body, media_type="application/json", headers={"x-request-id": "req_bench"})

    app = Starlette(routes=[Route("/v2/router/chat/completions", completions, methods=["POST"])])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    return server, thread, f"http://127.0.0.1:{port}/v2/router"


class MemoryRunLog:
    def __init__(self):
        self.records = []

    def log_run(self, record):
        self.records.append(record)


def request_overhead(requests: int) -> dict[str, float]:
    server, thread, base_url = start_server()
    payload = {"model": MODEL, "max_tokens": 256, "messages": [{"role": "user", "content": "What is caching?"}]}
    url = base_url + "/chat/completions"
    headers = {"Authorization": "Bearer local-router", "Content-Type": "application/json"}
    bare = httpx.Client()
    client = OrqClient(base_url, "local-router")
    logged = OrqClient(base_url, "local-router", run_log=MemoryRunLog())

    def bare_call():
        return json.loads(bare.post(url, content=json.dumps({**payload, "stream": False}), headers=headers).content)

    calls = {"httpx.Client.post + json.loads": bare_call,
             "OrqClient.create": lambda: client.create(payload),
             "OrqClient.create + run log": lambda: logged.create(payload)}
    timings: dict[str, list[float]] = {name: [] for name in calls}
    try:
        for _ in range(50):  # warm-up: connections, imports, caches
            for call in calls.values():
                call()
        for _ in range(requests):
            for name, call in calls.items():
                start = time.perf_counter()
                call()
                timings[name].append(time.perf_counter() - start)
    finally:
        bare.close()
        client.close()
        logged.close()
        server.should_exit = True
        thread.join(5)
    return {name: statistics.median(values) * 1e6 for name, values in timings.items()}


# --- report ---------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="200 events, 3 runs, 50 requests (for the test suite)")
    args = parser.parse_args()
    if args.quick:
        args.chunks, args.runs, args.requests = 200, 3, 50

    import openai

    pieces = recorded_stream(args.chunks)
    sdk_client = openai.OpenAI(api_key="bench", base_url="http://127.0.0.1/v1")
    joined = b"".join(pieces)
    reads = {"one read per event": pieces,
             "4 KiB reads": [joined[i:i + 4096] for i in range(0, len(joined), 4096)]}
    rows = []
    for label, ours, sdk in (
        ("SSE + JSON + typed chunks", ours_full, lambda p: sdk_full(p, sdk_client)),
        ("SSE decode only", ours_sse, sdk_sse),
    ):
        for read_label, chunks in reads.items():
            (ours_rate, ours_events), (sdk_rate, sdk_events) = events_per_second((ours, sdk), chunks, args.runs)
            assert ours_events == sdk_events, (label, ours_events, sdk_events)
            rows.append((f"{label}, {read_label}", ours_rate, sdk_rate))
    router_reads = {"whole stream in one read": [joined],
                    "16 KiB reads": [joined[i:i + 16384] for i in range(0, len(joined), 16384)]}
    minimal_rows = []
    for read_label, chunks in router_reads.items():
        (ours_rate, ours_events), (base_rate, base_events) = events_per_second(
            (ours_direct, minimal_split_loads), chunks, args.runs)
        assert ours_events == base_events, (read_label, ours_events, base_events)
        minimal_rows.append((f"SSE + JSON + typed chunks, {read_label}", ours_rate, base_rate))
    overhead = request_overhead(args.requests)

    print(f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"openai {openai.__version__}, httpx {httpx.__version__}")
    print(f"Stream: {len(pieces)} events ({len(joined):,} bytes), median of {args.runs} runs\n")
    print("| stream parsing | orq_core (events/s) | openai SDK (events/s) | ratio (target >= 3x) |")
    print("| --- | ---: | ---: | ---: |")
    for label, ours_rate, sdk_rate in rows:
        print(f"| {label} | {ours_rate:,.0f} | {sdk_rate:,.0f} | {ours_rate / sdk_rate:.2f}x |")
    print("\nThe same stream read as the local router sends it, against the least any parser must do:\n")
    print("| stream parsing | orq_core (events/s) | split + json.loads (events/s) | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for label, ours_rate, base_rate in minimal_rows:
        print(f"| {label} | {ours_rate:,.0f} | {base_rate:,.0f} | {ours_rate / base_rate:.2f}x |")
    ratio = minimal_rows[0][1] / minimal_rows[0][2]
    print(f"\n{ratio:.2f}x: orq_core turns a stream into typed events at {ratio:.2f} of the speed of bare "
          f"split + json.loads ({1 / ratio:.1f}x its time); the difference is the SSE rules (comments, "
          "event names, multi-line data, CR/LF) and the typed events and answer it assembles.")
    base = overhead["httpx.Client.post + json.loads"]
    print(f"\n{args.requests} loopback requests each, interleaved, median per request\n")
    print("| request | median (µs) | vs bare httpx (target <= 1.2x) |")
    print("| --- | ---: | ---: |")
    for name, micros in overhead.items():
        print(f"| {name} | {micros:,.0f} | {micros / base:.3f}x |")


if __name__ == "__main__":
    main()
