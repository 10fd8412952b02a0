"""Benchmark: a prompt-cache hit on a long prefix vs a short one, in the local router, on loopback.

    python benchmarks/bench_prefix.py [--runs 15] [--quick]

A system prompt of 10K and of 100K tokens (``lab_presets.filler_text``, a cache breakpoint on
it) is written once, then read back by ``--runs`` requests that differ only in their question.
Each figure is the median wall time of one non-streamed request (time_scale 0, so no modelled
latency) from a plain httpx client to a router in this process, on loopback. The request's
bytes grow 10x with the prefix; the ratio says how much more than that proportion... no: it says
how many times longer a 100K hit takes than a 10K hit (the target is at most 2x).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orq_core.emulator import EmulatorSettings, start_local_router  # noqa: E402
from orq_core.lab_presets import filler_text  # noqa: E402
from orq_core.request import text_part  # noqa: E402

SONNET = "anthropic/claude-sonnet-4-5-20250929"


def payload(prefix: str, n: int) -> dict:
    return {"model": SONNET, "max_tokens": 200,
            "messages": [{"role": "system", "content": [text_part(prefix, cache_ttl="5m")]},
                         {"role": "user", "content": f"Question {n}: what does chapter {n} say?"}]}


def hit_times(client: httpx.Client, url: str, prefix: str, runs: int) -> list[float]:
    """Milliseconds per request; every request after the first must read the whole prefix."""
    first = client.post(url, json=payload(prefix, -1)).json()["usage"]
    written = first["prompt_tokens_details"]["cache_creation_tokens"] if "prompt_tokens_details" in first else None
    times = []
    for n in range(runs):
        body = payload(prefix, n)
        started = time.perf_counter()
        response = client.post(url, json=body)
        times.append((time.perf_counter() - started) * 1000)
        usage = response.json()["usage"]
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
        if not cached:
            raise SystemExit(f"request {n} did not read the cache: {usage} (written {written})")
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="3 runs of 2K vs 20K tokens (for the test suite)")
    args = parser.parse_args()
    short, long_ = (2_000, 20_000) if args.quick else (10_000, 100_000)
    runs = 3 if args.quick else args.runs
    router = start_local_router(EmulatorSettings(time_scale=0))
    url = f"{router.base_url}/chat/completions"
    try:
        with httpx.Client(headers={"Authorization": "Bearer bench"}, timeout=60) as client:
            hit_times(client, url, filler_text(short, seed=3), 2)  # warm up: imports
            medians = {}
            for tokens in (short, long_):
                medians[tokens] = statistics.median(hit_times(client, url, filler_text(tokens, seed=5), runs))
    finally:
        router.stop()
    ratio = medians[long_] / medians[short]
    print(f"Prompt-cache hit, non-streamed, time_scale 0, median of {runs} requests each\n")
    print("| measure | median ms per request | ratio |")
    print("| --- | ---: | ---: |")
    print(f"| cache hit on a {short // 1000}K-token prefix | {medians[short]:.2f} | 1.00x |")
    print(f"| cache hit on a {long_ // 1000}K-token prefix | {medians[long_]:.2f} | {ratio:.2f}x |")
    print(f"\n{ratio:.2f}x: a hit on a {long_ // 1000}K-token prefix takes {ratio:.2f} times as long as one on a "
          f"{short // 1000}K-token prefix (target: at most 2x; the request itself is 10x larger).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
