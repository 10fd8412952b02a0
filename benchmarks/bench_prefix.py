"""Benchmark: a prompt-cache hit on a long prefix vs a short one, in the local router, on loopback.

    python benchmarks/bench_prefix.py [--runs 31] [--quick]

A system prompt of 10K and of 100K tokens (``lab_presets.filler_text``, a cache breakpoint on
it) is written once, then read back by ``--runs`` requests that differ only in their question.
The router runs in its own process (time_scale 0, so no modelled latency); this process sends
prebuilt requests over one raw keep-alive connection per prefix (``load_router.py``'s client)
and checks that each request read the whole prefix from the cache.

Beside it, the simplest baseline: the same two bodies sent to a trivial Starlette app on the
same uvicorn settings (its own process) that reads the body, ``json.loads`` it and answers with
the router's recorded bytes (``keep_freed_memory`` says why its process keeps freed memory).
Its 100K / 10K ratio is what the stack alone pays for a body 10x larger (receiving it, parsing
it); the difference between the two servers is the router's own work on a hit.

Figures: median milliseconds per request (the servers take turns in blocks, each server's two
prefixes interleaved), and each server's 100K / 10K ratio (target for the router: at most 2x).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from load_router import PATH, KEY, ResponseProblem, Server, exchange, serve_app  # noqa: E402
from orq_core.lab_presets import filler_text  # noqa: E402
from orq_core.request import text_part  # noqa: E402

SONNET = "anthropic/claude-sonnet-4-5-20250929"
BLOCK = 8


def request(prefix: str, n: int, port: int) -> bytes:
    body = json.dumps({"model": SONNET, "max_tokens": 200,
                       "messages": [{"role": "system", "content": [text_part(prefix, cache_ttl="5m")]},
                                    {"role": "user", "content": f"Question {n}: what does chapter {n} say?"}]},
                      separators=(",", ":")).encode()
    return (f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def keep_freed_memory() -> None:
    """glibc: serve blocks up to 4 MiB from the heap and keep up to 16 MiB of it free (mallopt
    M_MMAP_THRESHOLD, M_TRIM_THRESHOLD). A process as small as the baseline otherwise hands its
    400 KB request buffers back to the OS after every request and faults them in again on the
    next (~450 page faults per 100K request here), a cost the router's larger, long-lived heap
    does not pay (about 1 per request); without this the baseline would overstate the stack."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(-3, 4 * 1024 * 1024)  # M_MMAP_THRESHOLD
    mallopt(-1, 16 * 1024 * 1024)  # M_TRIM_THRESHOLD


def baseline_app(answer: bytes):
    """The trivial app: read the body, json.loads it, answer with the router's recorded bytes."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def completions(request):
        json.loads(await request.body())
        return Response(answer, media_type="application/json")

    return Starlette(routes=[Route(PATH, completions, methods=["POST"])])


def cpu_ms(pid: int) -> float:
    """CPU time of all a process's threads in ms (Linux schedstat, nanoseconds); nan elsewhere."""
    try:
        return sum(int((task / "schedstat").read_text().split()[0])
                   for task in Path(f"/proc/{pid}/task").iterdir()) / 1e6
    except (OSError, ValueError, IndexError):
        return float("nan")


async def hit_times(targets: list[tuple[int, int, str]], runs: int) -> tuple[list[list[float]], list[list[float]]]:
    """Wall milliseconds per request and the server's CPU milliseconds per request for each
    (port, server pid, prefix). A server's prefixes are interleaved request by request; servers
    take turns in blocks of BLOCK rounds (a server's first request after its turn waits for the
    scheduler to run it again, which is not its cost), so changes in the machine's load hit all
    alike. Every request must read its whole prefix."""
    connections = [await asyncio.open_connection("127.0.0.1", port) for port, _, _ in targets]
    try:
        for (reader, writer), (port, _, prefix) in zip(connections, targets):
            await exchange(reader, writer, request(prefix, -1, port))  # writes the prefix
        requests = [[request(prefix, n, port) for n in range(runs)] for port, _, prefix in targets]
        times: list[list[float]] = [[] for _ in targets]
        cpu: list[list[float]] = [[] for _ in targets]
        turns = [[i for i, target in enumerate(targets) if target[0] == port]
                 for port in dict.fromkeys(port for port, _, _ in targets)]
        for first in range(0, runs, BLOCK):
            for turn in turns:
                port, _, prefix = targets[turn[0]]
                await exchange(*connections[turn[0]], request(prefix, runs + first, port))  # wakes the server
                for n, i in itertools.product(range(first, min(first + BLOCK, runs)), turn):
                    reader, writer = connections[i]
                    cpu_before = cpu_ms(targets[i][1])
                    started = time.perf_counter()
                    body = await exchange(reader, writer, requests[i][n])
                    times[i].append((time.perf_counter() - started) * 1000)
                    cpu[i].append(cpu_ms(targets[i][1]) - cpu_before)
                    usage = json.loads(body)["usage"]
                    if (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0) < usage["prompt_tokens"] - 100:
                        raise ResponseProblem(f"request {n} did not read the prefix from the cache: {usage}")
        return times, cpu
    finally:
        for _, writer in connections:
            writer.close()


async def recorded_answer(port: int, prefix: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await exchange(reader, writer, request(prefix, -2, port))
        return await exchange(reader, writer, request(prefix, -3, port))  # a cache hit
    finally:
        writer.close()


def measure(short: int, long_: int, runs: int) -> tuple[dict[tuple[str, int], float], dict[tuple[str, int], float]]:
    """Median wall ms and median server CPU ms per request, by (server, prefix tokens)."""
    prefixes = {short: filler_text(short, seed=5), long_: filler_text(long_, seed=5)}
    router = Server("router")
    try:
        asyncio.run(hit_times([(router.port, router.process.pid, filler_text(short, seed=3))], 2))  # warm up
        with tempfile.TemporaryDirectory() as tmp:
            recorded = Path(tmp) / "answer.json"
            recorded.write_bytes(asyncio.run(recorded_answer(router.port, filler_text(long_, seed=3))))
            baseline = Server("baseline", recorded, script=__file__)
        try:
            kinds = [(server, tokens) for server in (router, baseline) for tokens in (short, long_)]
            times, cpu = asyncio.run(hit_times([(server.port, server.process.pid, prefixes[tokens])
                                                for server, tokens in kinds], runs))
        finally:
            baseline.stop()
    finally:
        router.stop()
    keys = [(server.kind, tokens) for server, tokens in kinds]
    return ({key: statistics.median(t) for key, t in zip(keys, times)},
            {key: statistics.median(c) for key, c in zip(keys, cpu)})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=31)
    parser.add_argument("--quick", action="store_true", help="3 runs of 2K vs 20K tokens (for the test suite)")
    parser.add_argument("--serve", choices=("baseline",), help=argparse.SUPPRESS)
    parser.add_argument("--recorded", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        keep_freed_memory()
        serve_app(baseline_app(Path(args.recorded).read_bytes()))
        return 0
    short, long_ = (2_000, 20_000) if args.quick else (10_000, 100_000)
    runs = 3 if args.quick else args.runs
    try:
        wall, cpu = measure(short, long_, runs)
    except ResponseProblem as problem:
        print(f"FAILED: {problem}")
        return 1
    s, l = f"{short // 1000}K", f"{long_ // 1000}K"
    print(f"Prompt-cache hit, non-streamed, time_scale 0, router and baseline each in its own process, "
          f"median of {runs} requests each, the servers in turns of {BLOCK} rounds\n")
    print("| measure | median ms per request | vs the short prefix | server CPU ms per request | vs the short prefix |")
    print("| --- | ---: | ---: | ---: | ---: |")
    rows = [(f"cache hit on a {s}-token prefix", ("router", short)), (f"cache hit on a {l}-token prefix", ("router", long_)),
            (f"baseline (body read + json.loads), {s}-token body", ("baseline", short)),
            (f"baseline (body read + json.loads), {l}-token body", ("baseline", long_))]
    for label, (server, tokens) in rows:
        print(f"| {label} | {wall[server, tokens]:.2f} | {wall[server, tokens] / wall[server, short]:.2f}x | "
              f"{cpu[server, tokens]:.2f} | {cpu[server, tokens] / cpu[server, short]:.2f}x |")
    ratio = wall["router", long_] / wall["router", short]
    stack = wall["baseline", long_] / wall["baseline", short]
    print(f"\n{ratio:.2f}x: a hit on a {l}-token prefix takes {ratio:.2f} times as long as one on a "
          f"{s}-token prefix (target: at most 2x; its request is 10x larger); by the router process's CPU "
          f"time, {cpu['router', long_] / cpu['router', short]:.2f}x (steadier on a busy machine).")
    print(f"{stack:.2f}x: the stack alone (uvicorn + Starlette reading the same bodies and json.loads, "
          f"no router work) takes {stack:.2f} times as long for the {l} body as for the {s} one. "
          f"Router minus baseline: {wall['router', long_] - wall['baseline', long_]:+.2f} ms on the {l} request, "
          f"{wall['router', short] - wall['baseline', short]:+.2f} ms on the {s} one (by CPU: "
          f"{cpu['router', long_] - cpu['baseline', long_]:+.2f} and {cpu['router', short] - cpu['baseline', short]:+.2f}"
          f" ms); the router reads bodies with orjson (emulator/body.py), about 3x faster than json.loads on "
          f"a long text, which offsets part of its own work on the {l} request.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
