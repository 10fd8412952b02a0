"""Local-router throughput under load, against the stack's ceiling, on loopback only.

    python benchmarks/load_router.py [--concurrency 1,16,64,200] [--requests 600] [--rounds 3] [--quick] [--unique]

The server runs in its own process (uvicorn with the router's own settings: h11, no access log);
this process is only the client: raw asyncio keep-alive connections, one per concurrent user,
each sending prebuilt request bytes in one write and reading the response with a minimal HTTP/1.1
parser (Content-Length or chunked), so the client is not what is measured. Two servers:

- router: the local router (``orq_core.emulator``), time_scale 0, every request a prompt-cache
  read of a ~1,800-token system prompt plus one of 100 questions, asked in turn (so from the
  101st request on, a body the router has seen: its memos of checks and answers are hit); with
  ``--unique`` every request asks a question of its own (no memo of a whole body or answer hits);
- ceiling: a trivial Starlette app on the same uvicorn settings that reads the request body and
  answers with the router's own recorded bytes (one JSON body, one SSE stream sent in one write,
  as the router sends it at time_scale 0). Nothing the router does can be faster than this.

For each concurrency and kind (JSON, streamed): requests/s of each server (median of ``--rounds``
interleaved rounds, each a fixed number of requests) and router / ceiling. The client's CPU
share (client CPU seconds / wall) shows whether the client was near saturation. Every response
is checked (status 200, a JSON object / a stream ending in [DONE]); the first router response of
each kind also has its usage checked against the shared token count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SONNET = "anthropic/claude-sonnet-4-5-20250929"
SYSTEM = "You answer questions about rivers. " * 300  # ~1,800 tokens: cacheable on Sonnet
PATH = "/v2/router/chat/completions"
KEY = "load-bench"
QUESTIONS = 100
DEADLINE_S = 60.0  # per measurement: a stuck server fails the run instead of hanging it


def payload(n: int, stream: bool) -> dict:
    from orq_core.request import text_part

    body = {"model": SONNET, "max_tokens": 400,
            "messages": [{"role": "system", "content": [text_part(SYSTEM, cache_ttl="5m")]},
                         {"role": "user", "content": f"Question {n}: how long is river number {n}?"}]}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    return body


def request_bytes(body: dict, port: int) -> bytes:
    data = json.dumps(body, separators=(",", ":")).encode()
    head = (f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n")
    return head.encode() + data


# --- servers (child processes) ----------------------------------------------------------------------

def serve(kind: str, recorded: str | None) -> None:
    """Run in the child: bind a free loopback port, print it, serve until killed."""
    if kind == "router":
        from orq_core.emulator import EmulatorSettings
        from orq_core.emulator.app import create_app

        app = create_app(EmulatorSettings(time_scale=0))
    else:
        app = ceiling_app(json.loads(Path(recorded).read_text()))
    serve_app(app)


def serve_app(app) -> None:
    """Serve ``app`` on a free loopback port with the router's uvicorn settings; print the port first."""
    import uvicorn

    from orq_core.emulator.server import _config

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)  # connections wait in the backlog until uvicorn accepts them
    print(sock.getsockname()[1], flush=True)
    uvicorn.Server(_config(app, "127.0.0.1", sock.getsockname()[1])).run(sockets=[sock])


def ceiling_app(recorded: dict):
    """The trivial app: read the body, answer with the router's recorded bytes."""
    from starlette.applications import Starlette
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route

    json_body = recorded["json"].encode()
    stream_body = recorded["stream"].encode()

    async def one_write():
        yield stream_body

    async def completions(request):
        body = await request.body()
        if b'"stream":true' in body:
            return StreamingResponse(one_write(), media_type="text/event-stream", headers={"cache-control": "no-cache"})
        return Response(json_body, media_type="application/json")

    return Starlette(routes=[Route(PATH, completions, methods=["POST"])])


class Server:
    def __init__(self, kind: str, recorded: Path | None = None, script: str = __file__):
        """``script --serve kind [--recorded path]`` in a child process (this script's servers by default)."""
        args = [sys.executable, script, "--serve", kind] + (["--recorded", str(recorded)] if recorded else [])
        self.process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.process.stdout.readline()
        if not line.strip().isdigit():
            self.stop()
            raise SystemExit(f"the {kind} server did not start")
        self.port = int(line)
        self.kind = kind

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


# --- the client --------------------------------------------------------------------------------------

class ResponseProblem(Exception):
    pass


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bytes:
    """Send one request in one write; the response body (chunked or Content-Length)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    if head[9:12] != b"200":
        raise ResponseProblem(f"HTTP {head[9:12].decode()}")
    lower = head.lower()
    at = lower.find(b"content-length:")
    if at >= 0:
        return await reader.readexactly(int(lower[at + 15:lower.index(b"\r\n", at)]))
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(parts)
        parts.append((await reader.readexactly(size + 2))[:-2])


def check(body: bytes, stream: bool) -> None:
    if stream and not body.endswith(b"data: [DONE]\n\n"):
        raise ResponseProblem("a stream did not end with [DONE]")
    if not stream and not body.startswith(b"{"):
        raise ResponseProblem("a JSON answer is not an object")


@dataclass
class Measure:
    rate: float
    p50_ms: float
    client_cpu: float
    server_cpu_ms: float
    """The server process's CPU time per request (user + system), or nan where /proc is missing."""


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc), nan elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(port: int, requests: list[bytes], concurrency: int, total: int, stream: bool,
               server_pid: int = 0) -> Measure:
    """``total`` requests over ``concurrency`` keep-alive connections, each one request at a time."""
    connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(concurrency)]
    for reader, writer in connections:  # warm each connection (and the server) once
        check(await exchange(reader, writer, requests[0]), stream)
    issued = 0
    latencies: list[float] = []

    async def user(reader, writer) -> None:
        nonlocal issued
        while issued < total:
            request = requests[issued % len(requests)]
            issued += 1
            started = time.perf_counter()
            body = await exchange(reader, writer, request)
            latencies.append(time.perf_counter() - started)
            check(body, stream)

    cpu, started, server_cpu = time.process_time(), time.perf_counter(), process_cpu_seconds(server_pid)
    try:
        await asyncio.wait_for(asyncio.gather(*(user(r, w) for r, w in connections)), DEADLINE_S)
    finally:
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        server_cpu = process_cpu_seconds(server_pid) - server_cpu
        for _, writer in connections:
            writer.close()
    return Measure(total / wall, statistics.median(latencies) * 1000, cpu / wall, server_cpu / total * 1000)


async def one_response(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        return await exchange(reader, writer, request)
    finally:
        writer.close()


def check_usage(body: bytes, stream: bool, sent: dict) -> None:
    from orq_core.emulator.prompt import count_prompt_tokens

    if stream:
        events = [line[6:] for line in body.decode().split("\n") if line.startswith("data: {")]
        usage = json.loads(events[-1])["usage"]
    else:
        usage = json.loads(body)["usage"]
    if usage["prompt_tokens"] != count_prompt_tokens(sent):
        raise ResponseProblem(f"prompt_tokens {usage['prompt_tokens']} != {count_prompt_tokens(sent)}")
    if not (usage.get("prompt_tokens_details") or {}).get("cached_tokens"):
        raise ResponseProblem(f"the system prompt was not read from the cache: {usage}")


def record(router: Server, path: Path) -> None:
    """The router's own bytes for the ceiling app to serve, and a usage check of each kind."""
    recorded = {}
    for stream in (False, True):
        for n in (-2, -1):  # the first writes the cache, the second reads it
            sent = payload(n, stream)
            body = asyncio.run(one_response(router.port, request_bytes(sent, router.port)))
        check(body, stream)
        check_usage(body, stream, sent)
        recorded["stream" if stream else "json"] = body.decode()
    path.write_text(json.dumps(recorded))


# --- the report ---------------------------------------------------------------------------------------

def run(levels: list[int], total: int, rounds: int, questions: int = QUESTIONS) -> list[tuple[str, int, list[Measure], list[Measure]]]:
    with tempfile.TemporaryDirectory() as tmp:
        router = Server("router")
        try:
            record(router, Path(tmp) / "recorded.json")
            ceiling = Server("ceiling", Path(tmp) / "recorded.json")
            try:
                return measure_all(router, ceiling, levels, total, rounds, questions)
            finally:
                ceiling.stop()
        finally:
            router.stop()


def measure_all(router: Server, ceiling: Server, levels: list[int], total: int, rounds: int,
                questions: int = QUESTIONS):
    rows = []
    for stream in (False, True):
        for concurrency in levels:
            count = max(total, 2 * concurrency)
            results: dict[str, list[Measure]] = {"router": [], "ceiling": []}
            for round_ in range(rounds):  # interleaved, so drift in the machine's load hits both alike
                # unique: each round's questions unseen before (+ concurrency for the warm-up requests)
                first = round_ * (count + concurrency) if questions > QUESTIONS else 0
                built = {server.kind: [request_bytes(payload(first + n, stream), server.port)
                                       for n in range(min(questions, count + concurrency))]
                         for server in (router, ceiling)}
                for server in (ceiling, router):
                    results[server.kind].append(asyncio.run(
                        load(server.port, built[server.kind], concurrency, count, stream, server.process.pid)))
            rows.append(("streamed" if stream else "JSON", concurrency, results["router"], results["ceiling"]))
    return rows


def median(values) -> float:
    return statistics.median(values)


def table(rows, total: int, rounds: int) -> str:
    lines = ["| kind | concurrency | router req/s | ceiling req/s | router / ceiling | router CPU ms/req | "
             "ceiling CPU ms/req | ceiling / router CPU | router p50 ms | ceiling p50 ms | client CPU share |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for kind, concurrency, router, ceiling in rows:
        r, c = median(m.rate for m in router), median(m.rate for m in ceiling)
        r_cpu, c_cpu = median(m.server_cpu_ms for m in router), median(m.server_cpu_ms for m in ceiling)
        lines.append(f"| {kind} | {concurrency} | {r:,.0f} | {c:,.0f} | {r / c:.2f} | {r_cpu:.2f} | {c_cpu:.2f} | "
                     f"{c_cpu / r_cpu:.2f} | {median(m.p50_ms for m in router):.1f} | "
                     f"{median(m.p50_ms for m in ceiling):.1f} | "
                     f"{median(m.client_cpu for m in router):.2f}, {median(m.client_cpu for m in ceiling):.2f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="1,16,64,200")
    parser.add_argument("--requests", type=int, default=600, help="requests per measurement (at least 2x concurrency)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="concurrency 1 and 4, 40 requests, 1 round (for tests)")
    parser.add_argument("--unique", action="store_true",
                        help="every request a question of its own (no body or answer is seen twice)")
    parser.add_argument("--serve", choices=("router", "ceiling"), help=argparse.SUPPRESS)
    parser.add_argument("--recorded", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.recorded)
        return 0
    levels = [1, 4] if args.quick else [int(c) for c in args.concurrency.split(",")]
    total, rounds = (40, 1) if args.quick else (args.requests, args.rounds)
    try:
        rows = run(levels, total, rounds, 10 ** 9 if args.unique else QUESTIONS)
    except (ResponseProblem, asyncio.TimeoutError, OSError) as problem:
        print(f"FAILED: {type(problem).__name__}: {problem}")
        return 1
    print(f"Local router vs the stack's ceiling (trivial Starlette app, same uvicorn settings, the router's "
          f"recorded bytes); time_scale 0, loopback, server and client in separate processes; "
          f"{total} requests per measurement, median of {rounds} interleaved rounds; "
          f"{'every request a question of its own' if args.unique else f'{QUESTIONS} questions asked in turn'}; "
          f"Python {platform.python_version()}, {os.cpu_count()} CPUs\n")
    print(table(rows, total, rounds))
    print("\nrouter / ceiling: the share of the bare stack's throughput (requests/s, wall clock) the router keeps "
          "at that concurrency (1.00 = its own work costs nothing; 0.50 = it halves the requests served per second). "
          "ceiling / router CPU: the same share judged by the server process's CPU time per request, which a "
          "machine shared with other work disturbs far less than the wall clock; a server that is CPU-bound "
          "reaches that share of the ceiling's throughput. client CPU share: the client's CPU seconds per "
          "second of wall time (near 1.00 = the client, not the server, was the limit).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
