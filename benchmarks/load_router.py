"""Bounded load check of the local router, on loopback only.

Starts a router with time_scale=0, sends N concurrent streamed requests (default 200) with
httpx.AsyncClient, checks every stream ended with [DONE] and reported usage that matches its own
content (prompt tokens = the shared count, completion tokens = the tokens of what arrived, half
the requests re-reading a cached system prompt), then prints requests/s and p50/p99 latency.
Stops by itself: a hard deadline cancels everything still running.

    .venv/bin/python benchmarks/load_router.py [--requests 200] [--deadline 120]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orq_core.emulator import EmulatorSettings, start_local_router  # noqa: E402
from orq_core.emulator.prompt import count_prompt_tokens  # noqa: E402
from orq_core.request import text_part  # noqa: E402
from orq_core.tokens import text_tokens  # noqa: E402

SONNET = "anthropic/claude-sonnet-4-5-20250929"
SYSTEM = "You answer questions about rivers. " * 300  # ~1,800 tokens: cacheable on Sonnet


def payload(n: int) -> dict:
    return {"model": SONNET, "max_tokens": 400, "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "system", "content": [text_part(SYSTEM, cache_ttl="5m")]},
                         {"role": "user", "content": f"Question {n % 100}: how long is river number {n % 100}?"}]}


async def one_request(client: httpx.AsyncClient, url: str, n: int) -> tuple[float, str | None]:
    """(seconds, problem or None) for one streamed request."""
    body = payload(n)
    started = time.perf_counter()
    lines: list[str] = []
    async with client.stream("POST", url, json=body, headers={"Authorization": "Bearer load"}) as response:
        if response.status_code != 200:
            return time.perf_counter() - started, f"HTTP {response.status_code}"
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                lines.append(line[6:])
    elapsed = time.perf_counter() - started
    if not lines or lines[-1] != "[DONE]":
        return elapsed, "no [DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]
    usage = chunks[-1].get("usage") or {}
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    output = text_tokens("".join(d.get("content") or "" for d in deltas)) \
        + text_tokens("".join(d.get("reasoning") or "" for d in deltas))
    if usage.get("prompt_tokens") != count_prompt_tokens(body):
        return elapsed, f"prompt_tokens {usage.get('prompt_tokens')} != {count_prompt_tokens(body)}"
    if usage.get("completion_tokens") != output:
        return elapsed, f"completion_tokens {usage.get('completion_tokens')} != {output}"
    return elapsed, None


async def run(requests: int, deadline: float) -> int:
    router = start_local_router(EmulatorSettings(time_scale=0))
    url = f"{router.base_url}/chat/completions"
    limits = httpx.Limits(max_connections=requests, max_keepalive_connections=requests)
    try:
        async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(60.0)) as client:
            await one_request(client, url, -1)  # warm up: imports, first cache write
            started = time.perf_counter()
            results = await asyncio.wait_for(
                asyncio.gather(*(one_request(client, url, n) for n in range(requests))), deadline)
            wall = time.perf_counter() - started
    except asyncio.TimeoutError:
        print(f"FAILED: not finished within the {deadline:g} s deadline")
        return 1
    finally:
        router.stop()
    latencies = sorted(seconds * 1000 for seconds, _ in results)
    problems = [problem for _, problem in results if problem]
    p99 = latencies[min(len(latencies) - 1, int(round(0.99 * len(latencies))) - 1)]
    print(f"{requests} concurrent streamed requests, time_scale=0, loopback")
    print(f"  wall {wall:.2f} s  ->  {requests / wall:.1f} requests/s")
    print(f"  latency p50 {statistics.median(latencies):.0f} ms  p99 {p99:.0f} ms  max {latencies[-1]:.0f} ms")
    print(f"  usage correct: {requests - len(problems)}/{requests}")
    for problem in problems[:5]:
        print(f"  problem: {problem}")
    return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds before giving up")
    args = parser.parse_args()
    return asyncio.run(run(args.requests, args.deadline))


if __name__ == "__main__":
    sys.exit(main())
