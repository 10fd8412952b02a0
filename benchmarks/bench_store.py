"""Benchmark: the store on SQLite (a file) and on PostgreSQL (a throwaway local cluster), side by side.

    python benchmarks/bench_store.py [--rows 10000] [--runs 5]

Per operation, the median over runs of the time per call, each owner-scoped as the app uses it:
``log_run`` (one request's row), ``put_item`` (one batch row), ``load_doc``, ``list_docs`` (50
documents), and the History page's load (``runs`` of the whole log + totals) over ``--rows`` rows.
PostgreSQL runs on loopback with fsync off (as the tests run it), so its figures are a floor for a
real server. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from orq_core.history import HistoryFilter, load_history, totals  # noqa: E402
from orq_core.store import Store  # noqa: E402
from orq_core.types import RunRecord  # noqa: E402
from orq_core.usage import Usage  # noqa: E402
from pg_support import PostgresCluster, server_bin_dir  # noqa: E402

CALLS = 300


def run_record(i: int) -> RunRecord:
    return RunRecord("chat", "anthropic/claude-sonnet-4-5-20250929", "ok", Usage(1000, 3000, 0, 200), 0.0069,
                     120.0, 900.0, ts=1_800_000_000.0 + i, request_id=f"req_{i}")


def per_call_us(action, calls: int) -> float:
    started = time.perf_counter()
    for i in range(calls):
        action(i)
    return (time.perf_counter() - started) / calls * 1e6


def measure(store: Store, rows: int, runs: int) -> dict[str, float]:
    ann = store.for_owner("ann@example.com")
    for i in range(50):
        ann.save_doc("conversation", f"c{i}", f"Conversation {i}", {"turns": [{"prompt": "x" * 200}] * 5})
    ann.for_owner("bob@example.com").save_doc("conversation", "other", "Bob's", {})
    figures: dict[str, list[float]] = {k: [] for k in ("log_run", "put_item", "load_doc", "list_docs", "history")}
    for run in range(runs):
        figures["log_run"].append(per_call_us(lambda i: ann.log_run(run_record(i)), CALLS))
        figures["put_item"].append(per_call_us(
            lambda i: ann.put_item("batch", f"b{run}", f"{i:08d}", {"row": i, "text": "y" * 300}), CALLS))
        figures["load_doc"].append(per_call_us(lambda i: ann.load_doc("conversation", f"c{i % 50}"), CALLS))
        figures["list_docs"].append(per_call_us(lambda i: ann.list_docs("conversation"), CALLS // 3))
    logged = runs * CALLS
    for i in range(logged, rows):
        ann.log_run(run_record(i))
    for _ in range(runs):
        started = time.perf_counter()
        summary = totals(load_history(ann, HistoryFilter()).runs)
        figures["history"].append((time.perf_counter() - started) * 1e3)
        assert summary.requests == max(rows, logged)
    return {k: statistics.median(v) for k, v in figures.items()}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = Store(Path(tmp) / "bench.db")
        results["SQLite"] = measure(sqlite, args.rows, args.runs)
        sqlite.close()
    bin_dir = server_bin_dir()
    if bin_dir is not None:
        cluster = PostgresCluster(bin_dir)
        try:
            cluster.start()
            postgres = Store(cluster.new_database_url())
            results["PostgreSQL"] = measure(postgres, args.rows, args.runs)
            postgres.close()
        finally:
            cluster.stop()
    names = list(results)
    print(f"| store operation (owner-scoped, median of {args.runs} runs) | " + " | ".join(names) + " |")
    print("| --- |" + " ---: |" * len(names))
    rows = (("log_run, µs per row", "log_run", "{:.0f}"), ("put_item, µs per item", "put_item", "{:.0f}"),
            ("load_doc, µs", "load_doc", "{:.0f}"), ("list_docs (50 documents), µs", "list_docs", "{:.0f}"),
            (f"History load + totals, {args.rows:,} rows, ms", "history", "{:.1f}"))
    for label, key, fmt in rows:
        print(f"| {label} | " + " | ".join(fmt.format(results[n][key]) for n in names) + " |")
    if "PostgreSQL" not in results:
        print("\nPostgreSQL's server binaries are not installed: only SQLite was measured.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
