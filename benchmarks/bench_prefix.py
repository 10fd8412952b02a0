"""Benchmark: a prompt-cache hit on a long prefix vs a short one, in the local router, on loopback.

    python benchmarks/bench_prefix.py [--runs 31] [--quick]

A system prompt of 10K and of 100K tokens (``lab_presets.filler_text``, a cache breakpoint on
it) is written once, then read back by ``--runs`` requests that differ only in their question.
The router runs in its own process (time_scale 0, so no modelled latency); this process sends
prebuilt requests over one raw keep-alive connection (``load_router.py``'s client) and checks
that each request read the whole prefix from the cache. Figures: median milliseconds per
request, and the 100K / 10K ratio (target at most 2x; the request's bytes grow 10x).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from load_router import PATH, KEY, ResponseProblem, Server, exchange  # noqa: E402
from orq_core.lab_presets import filler_text  # noqa: E402
from orq_core.request import text_part  # noqa: E402

SONNET = "anthropic/claude-sonnet-4-5-20250929"


def request(prefix: str, n: int, port: int) -> bytes:
    body = json.dumps({"model": SONNET, "max_tokens": 200,
                       "messages": [{"role": "system", "content": [text_part(prefix, cache_ttl="5m")]},
                                    {"role": "user", "content": f"Question {n}: what does chapter {n} say?"}]},
                      separators=(",", ":")).encode()
    return (f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


async def hit_times(port: int, prefixes: list[str], runs: int) -> list[list[float]]:
    """Milliseconds per request for each prefix, the prefixes' requests interleaved so that
    changes in the machine's load hit both alike; every request must read its whole prefix."""
    connections = [await asyncio.open_connection("127.0.0.1", port) for _ in prefixes]
    try:
        for (reader, writer), prefix in zip(connections, prefixes):
            await exchange(reader, writer, request(prefix, -1, port))  # writes the prefix
        requests = [[request(prefix, n, port) for n in range(runs)] for prefix in prefixes]
        times: list[list[float]] = [[] for _ in prefixes]
        for n in range(runs):
            for i, (reader, writer) in enumerate(connections):
                started = time.perf_counter()
                body = await exchange(reader, writer, requests[i][n])
                times[i].append((time.perf_counter() - started) * 1000)
                usage = json.loads(body)["usage"]
                if (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0) < usage["prompt_tokens"] - 100:
                    raise ResponseProblem(f"request {n} did not read the prefix from the cache: {usage}")
        return times
    finally:
        for _, writer in connections:
            writer.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=31)
    parser.add_argument("--quick", action="store_true", help="3 runs of 2K vs 20K tokens (for the test suite)")
    args = parser.parse_args()
    short, long_ = (2_000, 20_000) if args.quick else (10_000, 100_000)
    runs = 3 if args.quick else args.runs
    router = Server("router")
    try:
        asyncio.run(hit_times(router.port, [filler_text(short, seed=3)], 2))  # warm up: imports
        times = asyncio.run(hit_times(router.port, [filler_text(short, seed=5), filler_text(long_, seed=5)], runs))
        medians = {short: statistics.median(times[0]), long_: statistics.median(times[1])}
    except ResponseProblem as problem:
        print(f"FAILED: {problem}")
        return 1
    finally:
        router.stop()
    ratio = medians[long_] / medians[short]
    print(f"Prompt-cache hit, non-streamed, time_scale 0, router in its own process, median of {runs} requests each, interleaved\n")
    print("| measure | median ms per request | vs the short prefix |")
    print("| --- | ---: | ---: |")
    print(f"| cache hit on a {short // 1000}K-token prefix | {medians[short]:.2f} | 1.00x |")
    print(f"| cache hit on a {long_ // 1000}K-token prefix | {medians[long_]:.2f} | {ratio:.2f}x |")
    print(f"\n{ratio:.2f}x: a hit on a {long_ // 1000}K-token prefix takes {ratio:.2f} times as long as one on a "
          f"{short // 1000}K-token prefix (target: at most 2x; its request is 10x larger).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
