"""Benchmark: a Batch run against the local router at time scale 0 (no simulated waiting).

    python benchmarks/bench_batch.py [--rows 1000] [--concurrency 16] [--runs 3] [--memory-rows 10000]

1. Throughput and the batch's own overhead: ``--rows`` rows x 2 targets (Sonnet 4.5 and Haiku 4.5,
   a 1,200-token cached system prompt), ``--concurrency`` requests in flight per target, records
   saved to a SQLite store as they complete. The baseline is a bare loop of ``OrqClient.stream``
   calls on the same payloads, built beforehand, with the same number of threads (concurrency x
   targets) and the same client. Runs are interleaved; medians. Overhead per request = (batch wall
   - bare wall) / requests: templating, payload building, scheduling, cost, records, the store.
2. The batch's own work, with no network: an instant client that returns a prebuilt completion,
   through ``run_batch`` (with and without the store) vs the same client from a bare thread pool.
3. Memory: in a fresh process per size and mode, a batch of N rows x 2 targets (store on disk);
   the resident high-water mark (ru_maxrss) above the same process idle (imports done, client
   open, the dataset's rows built). Two modes: records kept in memory (what the page shows) and ``keep_records=False`` (the
   CLI: records go to the store and the summary is a running tally).

The local router runs in its own process (``python -m orq_core emulator``), so its work is not
counted in this process's memory and does not compete for this process's GIL.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from orq_core.batch import Batch, BatchSpec, Row, payload_for, pool_size, run_batch  # noqa: E402
from orq_core.client import OrqClient  # noqa: E402
from orq_core.types import Done  # noqa: E402

TARGETS = ("anthropic/claude-sonnet-4-5-20250929", "anthropic/claude-haiku-4-5-20251001")
SYSTEM = "word " * 1197  # 1,200 tokens with the message overhead: cached on Sonnet (min 1,024)
KEY = "local-router"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_router() -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "orq_core", "emulator", "--port", str(port), "--time-scale", "0"],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v2/router"
    for _ in range(300):
        try:
            if httpx.get(base + "/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    process.kill()
    raise SystemExit("the local router did not start")


def spec(concurrency: int) -> BatchSpec:
    return BatchSpec(template="Question {{n}}: what is {{item}}?", targets=TARGETS, system=SYSTEM, cache_system=True,
                     concurrency=concurrency, max_tokens=64)


def rows(count: int) -> list[Row]:
    return [Row(n, {"n": str(n), "item": f"item number {n}"}) for n in range(1, count + 1)]


def run_once(client: OrqClient, count: int, concurrency: int, store, keep_records: bool = True,
             batch: Batch | None = None) -> float:
    batch = batch or Batch.new(spec(concurrency), rows(count))
    started = time.perf_counter()
    run_batch(client, batch, store=store, keep_records=keep_records)
    wall = time.perf_counter() - started
    summary = batch.summary()
    if sum(s.failed for s in summary) or sum(s.ok for s in summary) != count * len(TARGETS):
        raise SystemExit(f"batch run incomplete: {[(s.ok, s.failed) for s in summary]}")
    return wall


def bare_once(client: OrqClient, count: int, concurrency: int) -> float:
    s = spec(concurrency)
    payloads = [payload_for(s, slug, row)[0] for row in rows(count) for slug in TARGETS]

    def send(payload: dict) -> None:
        for event in client.stream(payload, page="bench"):
            if isinstance(event, Done):
                assert not event.completion.partial

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=pool_size(s)) as pool:
        list(pool.map(send, payloads))
    return time.perf_counter() - started


class InstantClient:
    """Answers at once with one prebuilt completion: what is left is the caller's own work."""

    def __init__(self):
        from orq_core.types import Completion, TextDelta
        from orq_core.usage import Usage

        self.events = [TextDelta("ok"), Done(Completion(text="ok", model=TARGETS[0], ttft_ms=1.0, latency_ms=2.0,
                                                         usage=Usage(100, 1200, 0, 20, raw={"prompt_tokens": 1300})))]

    def stream(self, payload, *, page=None, headers=None, cancel=None):
        return iter(self.events)


def machinery(args) -> list[str]:
    """The batch's own cost per request with a client that costs nothing, vs the same client called
    bare from a thread pool of the same size (the baseline builds its payloads before timing)."""
    from orq_core.store import Store

    client = InstantClient()
    batch_walls, bare_walls, store_walls = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "machinery.db")
        for _ in range(args.runs):
            bare_walls.append(bare_once(client, args.rows, args.concurrency))
            batch_walls.append(run_once(client, args.rows, args.concurrency, None))
            store_walls.append(run_once(client, args.rows, args.concurrency, store))
    requests = args.rows * len(TARGETS)
    per = {name: statistics.median(walls) / requests * 1000
           for name, walls in (("bare", bare_walls), ("batch", batch_walls), ("store", store_walls))}
    return [
        "",
        f"The batch's own work per request: an instant client (no network), {args.rows:,} rows x {len(TARGETS)} "
        f"targets, median of {args.runs}",
        "",
        "| measure | figure | detail |",
        "| --- | ---: | --- |",
        f"| batch overhead per request, no store | {per['batch'] - per['bare']:.3f} ms | batch {per['batch']:.3f} ms "
        f"- bare thread pool {per['bare']:.3f} ms per request |",
        f"| batch overhead per request, SQLite store | {per['store'] - per['bare']:.3f} ms | batch + put_item per record "
        f"{per['store']:.3f} ms - bare {per['bare']:.3f} ms per request |",
    ]


def throughput(args) -> list[str]:
    from orq_core.store import Store

    process, base = start_router()
    try:
        with tempfile.TemporaryDirectory() as tmp, \
                OrqClient(base, KEY, max_connections=pool_size(spec(args.concurrency))) as client:
            store = Store(Path(tmp) / "bench.db")
            run_once(client, 50, args.concurrency, store)  # warm up connections and caches
            bare_once(client, 50, args.concurrency)
            batch_walls, bare_walls = [], []
            for _ in range(args.runs):
                bare_walls.append(bare_once(client, args.rows, args.concurrency))
                batch_walls.append(run_once(client, args.rows, args.concurrency, store))
    finally:
        process.terminate()
        process.wait(timeout=10)
    requests = args.rows * len(TARGETS)
    batch_wall, bare_wall = statistics.median(batch_walls), statistics.median(bare_walls)
    overhead_ms = (batch_wall - bare_wall) / requests * 1000
    return [
        f"{args.rows:,} rows x {len(TARGETS)} targets, concurrency {args.concurrency} per target, time scale 0, "
        f"median of {args.runs} interleaved runs",
        "",
        "| measure | figure | detail |",
        "| --- | ---: | --- |",
        f"| batch rows/s | {args.rows / batch_wall:,.0f} | {requests / batch_wall:,.0f} requests/s; wall "
        f"{batch_wall:.2f} s (runs: {', '.join(f'{w:.2f}' for w in batch_walls)}) |",
        f"| bare client loop rows/s | {args.rows / bare_wall:,.0f} | same payloads and threads; wall {bare_wall:.2f} s "
        f"(runs: {', '.join(f'{w:.2f}' for w in bare_walls)}) |",
        f"| batch overhead per request | {overhead_ms:.3f} ms | (batch wall - bare wall) / {requests:,} requests; "
        "includes payload building, records, cost and the SQLite store |",
    ]


def memory_child(count: int, concurrency: int, base: str, keep_records: bool) -> dict:
    from orq_core.store import Store

    with tempfile.TemporaryDirectory() as tmp, \
            OrqClient(base, KEY, max_connections=pool_size(spec(concurrency))) as client:
        store = Store(Path(tmp) / "mem.db")
        run_once(client, 20, concurrency, store)  # imports, connections, threads: part of idle
        batch = Batch.new(spec(concurrency), rows(count))  # the parsed dataset: input, part of idle
        idle = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        run_once(client, count, concurrency, store, keep_records, batch)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"rows": count, "idle_mb": idle / 1024, "peak_mb": peak / 1024}


def memory(args) -> list[str]:
    process, base = start_router()
    lines = ["", f"Peak resident memory above idle (ru_maxrss), {len(TARGETS)} targets, concurrency "
                 f"{args.concurrency}, one fresh process per size", "",
             "| rows | records kept (the page) | records streamed to the store (CLI, keep_records=False) | idle |",
             "| ---: | ---: | ---: | ---: |"]
    try:
        for count in sorted({args.memory_rows // 4, args.memory_rows // 2, args.memory_rows}):
            figures = {}
            for mode in ("keep", "stream"):
                out = subprocess.run([sys.executable, __file__, "--memory-child", str(count), "--mode", mode,
                                      "--concurrency", str(args.concurrency), "--base", base], cwd=ROOT,
                                     capture_output=True, text=True, timeout=900, check=True).stdout
                figures[mode] = json.loads(out.strip().splitlines()[-1])
            above = {mode: f"{f['peak_mb'] - f['idle_mb']:.1f} MB" for mode, f in figures.items()}
            lines.append(f"| {count:,} | {above['keep']} | {above['stream']} | {figures['keep']['idle_mb']:.1f} MB |")
    finally:
        process.terminate()
        process.wait(timeout=10)
    lines += ["", "Idle includes the dataset's rows (the parsed input), so the figures are the run's own growth."]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--memory-rows", type=int, default=10_000)
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=["keep", "stream"], default="keep", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child, args.concurrency, args.base, args.mode == "keep")))
        return 0
    print(f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}\n")
    lines = throughput(args) + machinery(args)
    if args.memory_rows:
        lines += memory(args)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
