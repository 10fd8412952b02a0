"""Benchmark: the cache doctor's cost per request, and how often it was right, against the local router
at time_scale 0.

    python benchmarks/bench_doctor.py [--turns 40] [--system-tokens 10000] [--runs 5]

A multi-turn conversation on a cached 10K-token system prompt, with a breakpoint on the newest
message (the Chat advisor's pattern), sent turn by turn through an OrqClient with a doctor whose
calls (predict, begin, first_byte, settle: segmentation, the ledger's SQLite reads and writes, the
comparison) are timed. Medians over runs, each on a fresh ledger file. Prints a Markdown table.

Two clocks: wall time (what the request waits for), and the calling thread's CPU time, which
leaves out waiting for the CPU and for the GIL (the router answers from a thread of this
process): on a loaded machine the wall figure mostly measures the wait.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orq_core.cache_doctor import doctor_for  # noqa: E402
from orq_core.client import OrqClient  # noqa: E402
from orq_core.emulator import EmulatorSettings, start_local_router  # noqa: E402
from orq_core.lab_presets import filler_text  # noqa: E402
from orq_core.request import system_message, text_part, user_message  # noqa: E402
from orq_core.store import Store  # noqa: E402

MODEL = "anthropic/claude-sonnet-4-5-20250929"


class TimedDoctor:
    """Forwards to the real doctor and adds up the time spent in it."""

    def __init__(self, doctor):
        self.doctor = doctor
        self.seconds = 0.0
        self.cpu_seconds = 0.0

    def __getattr__(self, name):
        method = getattr(self.doctor, name)

        def timed(*args, **kwargs):
            started, cpu_started = time.perf_counter(), time.thread_time()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started
                self.cpu_seconds += time.thread_time() - cpu_started
        return timed


def one_run(router, turns: int, system: str, folder: str, run: int) -> tuple[float, int, int, float]:
    """(doctor ms per request, requests predicted exactly, requests, doctor CPU ms per request)."""
    store = Store(Path(folder) / f"ledger-{run}.db")
    doctor = TimedDoctor(doctor_for(router.base_url, f"bench-{run}", store))
    exact = 0
    with OrqClient(router.base_url, f"bench-{run}", doctor=doctor) as client:
        history: list[dict] = []
        for turn in range(turns):
            history.append(user_message(f"Question {turn}: what does chapter {turn % 9 + 1} say about the tide?"))
            messages = [system_message(system, "5m")] + history[:-1] + \
                [user_message([text_part(history[-1]["content"], "5m")])]
            completion = client.create({"model": MODEL, "max_tokens": 64, "messages": messages})
            exact += completion.cache is not None and completion.cache.matched
            history.append({"role": "assistant", "content": completion.text})
    store.close()
    return doctor.seconds * 1000 / turns, exact, turns, doctor.cpu_seconds * 1000 / turns


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=40)
    parser.add_argument("--system-tokens", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    system = filler_text(args.system_tokens, seed=3)
    router = start_local_router(EmulatorSettings(time_scale=0))
    try:
        with tempfile.TemporaryDirectory() as folder:
            results = [one_run(router, args.turns, system, folder, run) for run in range(args.runs)]
    finally:
        router.stop()
    overhead = statistics.median(r[0] for r in results)
    exact, total = sum(r[1] for r in results), sum(r[2] for r in results)
    print("| measure | value |\n|---|---:|")
    print(f"| cache doctor per request ({args.system_tokens:,}-token system prompt, {args.turns}-turn conversation) "
          f"| {overhead:.2f} ms |")
    print(f"| cache doctor per request, CPU time of the calling thread | "
          f"{statistics.median(r[3] for r in results):.2f} ms |")
    print(f"| requests predicted exactly | {exact}/{total} |")
    return 0 if exact == total else 1


if __name__ == "__main__":
    sys.exit(main())
