"""Benchmark: the Caching Lab's own overhead per request, against the local router at time_scale 0.

    python benchmarks/bench_lab.py [--requests 100] [--context-tokens 10000] [--runs 5]

Two measures, medians over runs, requests interleaved run by run:
1. Inside one lab run: wall time of ``run_experiment`` minus the time spent inside
   ``client.stream`` (a timing wrapper around the client), divided by the requests. This is
   what the lab adds: building and validating the payloads, pricing, records, callbacks.
2. Against a bare loop: the same prebuilt payloads sent with ``client.stream`` and nothing else;
   the difference of the two wall times per request.
The router answers at once (time_scale 0), so the client's time is loopback HTTP plus the
router's own work (segmenting and hashing the prompt). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orq_core.client import OrqClient  # noqa: E402
from orq_core.emulator import EmulatorSettings, start_local_router  # noqa: E402
from orq_core.lab import ExperimentConfig, build_requests, run_experiment  # noqa: E402
from orq_core.store import Store  # noqa: E402
from orq_core.types import Done  # noqa: E402


class TimedClient:
    """Forwards to the real client and adds up the time spent inside its streams."""

    def __init__(self, client: OrqClient):
        self.client = client
        self.inside = 0.0

    def stream(self, payload, **options):
        started = time.perf_counter()
        try:
            yield from self.client.stream(payload, **options)
        finally:
            self.inside += time.perf_counter() - started


def lab_run(client: OrqClient, config: ExperimentConfig) -> tuple[float, float]:
    timed = TimedClient(client)
    started = time.perf_counter()
    result = run_experiment(config, timed, sleep=lambda s: None)
    wall = time.perf_counter() - started
    failed = [r for r in result.records if r.status != "ok"]
    if failed:
        raise SystemExit(f"{len(failed)} requests failed, no figures: {failed[0].error}")
    return wall, timed.inside


def bare_run(client: OrqClient, payloads: list[dict]) -> float:
    started = time.perf_counter()
    for payload in payloads:
        for event in client.stream(payload, page="lab"):
            if isinstance(event, Done):
                pass
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--context-tokens", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    router = start_local_router(EmulatorSettings(time_scale=0))
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(os.path.join(tmp, "bench.db"))  # the run log is written, as in the app
        client = OrqClient(router.base_url, router.api_key, run_log=store, page="lab", max_retries=0)
        config = ExperimentConfig(preset="book", context_tokens=args.context_tokens, requests=args.requests,
                                  arms=("prompt-cache",), max_tokens=64, fresh_cache=True)
        lab_walls, lab_inside, bare_walls = [], [], []
        try:
            lab_run(client, ExperimentConfig(requests=3, arms=("prompt-cache",)))  # warm up
            for run in range(args.runs):
                fixed = replace(config, cache_salt=f"bare{run}", fresh_cache=False)  # cold, like the lab run
                payloads = build_requests(fixed, "prompt-cache", fixed.models[0])
                if run % 2:  # alternate which goes first, so neither always runs on a warmer process
                    bare_walls.append(bare_run(client, payloads))
                wall, inside = lab_run(client, config)
                lab_walls.append(wall)
                lab_inside.append(inside)
                if not run % 2:
                    bare_walls.append(bare_run(client, payloads))
        finally:
            client.close()
            router.stop()

    n = args.requests
    per = lambda seconds: seconds / n * 1000  # noqa: E731  ms per request
    overhead = [per(w - i) for w, i in zip(lab_walls, lab_inside)]
    versus_bare = [per(w - b) for w, b in zip(lab_walls, bare_walls)]
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}; {n} requests, book {args.context_tokens:,} tokens, "
          f"prompt-cache arm, time_scale 0, median of {args.runs} runs (lab and bare loop alternated)\n")
    print("| measure | ms per request |")
    print("| --- | ---: |")
    print(f"| lab run, wall | {per(statistics.median(lab_walls)):.2f} |")
    print(f"| inside client.stream (during the lab run) | {per(statistics.median(lab_inside)):.2f} |")
    print(f"| **lab overhead** (wall - inside client) | **{statistics.median(overhead):.2f}** |")
    print(f"| bare loop of client.stream, prebuilt payloads | {per(statistics.median(bare_walls)):.2f} |")
    print(f"| lab run - bare loop | {statistics.median(versus_bare):.2f} |")


if __name__ == "__main__":
    main()
