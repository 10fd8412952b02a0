"""``python -m orq_core batch``: a Batch run from the shell (see ``orq_core.batch``).

Bad input (unreadable or empty file, unknown column or target, concurrency out of range) exits
with one sentence on stderr before anything is sent. Exit status 1 when some row failed. Records are
saved to the store and written to ``--out`` as they complete (completion order), never all held in
memory.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Callable

from .batch import (MAX_CONCURRENCY, RECORD_COLUMNS, Batch, BatchInputError, BatchSpec, check_batch_budget,
                    check_expected, check_spec, choose_rows, load_dataset, pool_size)
from .budget import CLI_BUDGET, add_spend_limit_option, cli_spend_limit
from .catalog import DEFAULT_MODEL
from .connection import add_local_option
from .cost import format_usd

JSON_FIELDS = ("ok", "failed", "cost_usd", "cost_per_1000_rows_usd", "cache_read_tokens", "cache_write_tokens",
               "cache_hit_rate", "ttft_ms_p50", "latency_ms_p50", "latency_ms_p95")


def add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="CSV (header row) or JSONL file")
    parser.add_argument("--template", required=True, help="user message with {{column}} placeholders")
    system = parser.add_mutually_exclusive_group()
    system.add_argument("--system", default="", help="system prompt (shared context)")
    system.add_argument("--system-file", help="read the system prompt from this text file")
    parser.add_argument("--cache-system", action="store_true", help="put a cache breakpoint on the system prompt")
    parser.add_argument("--ttl", choices=["5m", "1h"], default="5m")
    parser.add_argument("--targets", default=DEFAULT_MODEL, help="comma-separated slugs, 1 to 4")
    parser.add_argument("--concurrency", type=int, default=4, help=f"requests in flight per target, 1-{MAX_CONCURRENCY}")
    parser.add_argument("--warm-first", action=argparse.BooleanOptionalAction, default=None,
                        help="send row 1 alone per target and fan out once it answers (default: on with --cache-system)")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--limit", type=int, help="take only the first N rows")
    parser.add_argument("--out", help="write one CSV line per row x target")
    parser.add_argument("--json", action="store_true", help="print one JSON object with the summary per target")
    add_spend_limit_option(parser)
    add_local_option(parser)


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise BatchInputError(f"Cannot read the {what} {path!r}: {error.strerror or error}.") from None


def _open_out(path: str):
    try:
        return open(path, "w", encoding="utf-8", newline="")
    except OSError as error:
        raise BatchInputError(f"Cannot write the output file {path!r}: {error.strerror or error}.") from None


def spec_from_args(args: argparse.Namespace) -> BatchSpec:
    system = args.system
    if args.system_file:
        system = _read(args.system_file, "system file").decode("utf-8", "replace")
    targets = tuple(s.strip() for s in args.targets.split(",") if s.strip())
    return BatchSpec(template=args.template, targets=targets, system=system, cache_system=args.cache_system,
                     cache_ttl=args.ttl, max_tokens=args.max_tokens, concurrency=args.concurrency,
                     warm_first=args.warm_first)


def summary_json(batch: Batch) -> dict:
    return {"rows": len(batch.rows),
            "targets": {s.target: {k: v for k, v in s.to_dict().items() if k in JSON_FIELDS} for s in batch.summary()}}


def cli_batch(args: argparse.Namespace, print_fn: Callable[[str], None] = print, client=None, store=None) -> int:
    """``client``/``store`` are for tests (the caller keeps ownership)."""
    from .connection import make_client, resolve_connection
    from .store import Store

    data = _read(args.input, "input file")
    dataset = load_dataset(data, args.input)
    if args.limit is not None and args.limit < 1:
        raise BatchInputError(f"--limit must be at least 1 (got {args.limit}).")
    rows = choose_rows(dataset, limit=args.limit)
    spec = spec_from_args(args)
    check_spec(spec, dataset.columns)
    check_expected(spec, rows)
    batch = Batch.new(spec, rows)
    out = _open_out(args.out) if args.out else None
    store = store if store is not None else Store.default()
    own_client = client is None
    if own_client:
        connection = resolve_connection(force_local=args.local)
        budget = cli_spend_limit(args.max_spend, connection.local)
        check_batch_budget(batch, 0.0, budget, CLI_BUDGET)
        client = make_client(connection, page="batch", store=store, max_connections=max(20, pool_size(spec)))
    elif args.max_spend is not None:
        check_batch_budget(batch, 0.0, args.max_spend, CLI_BUDGET)
    try:
        writer = csv.DictWriter(out, fieldnames=RECORD_COLUMNS, lineterminator="\n") if out else None
        if writer:
            writer.writeheader()
        run_batch_quietly(client, batch, store, writer)
    finally:
        if out:
            out.close()
        if own_client:
            client.close()
    if args.json:
        print_fn(json.dumps(summary_json(batch), indent=2))
    else:
        for s in batch.summary():
            hit = f"{s.cache_hit_rate:.0%}" if s.cache_hit_rate is not None else "-"
            p50 = f"{s.latency_ms_p50:,.0f} ms" if s.latency_ms_p50 is not None else "-"
            print_fn(f"{s.target:<48} ok {s.ok:>5} failed {s.failed:>4}  {format_usd(s.cost_usd):>12}  "
                     f"hit {hit:>4}  p50 {p50}")
        print_fn(f"saved as batch {batch.id}")
    return 1 if any(s.failed for s in batch.summary()) else 0


def run_batch_quietly(client, batch: Batch, store, writer=None) -> None:
    """Progress every 10% on stderr; each record to the CSV as it completes (completion order), none kept
    in memory: the summary comes from the run's tallies."""
    from .batch import run_batch

    last = [-1]

    def report(record, progress) -> None:
        if writer is not None:
            writer.writerow(record.flat())
        step = int(progress.fraction * 10)
        if step != last[0]:
            last[0] = step
            print(f"{progress.done:,}/{progress.total:,} done, {progress.failed:,} failed, "
                  f"{format_usd(progress.cost_usd)}", file=sys.stderr)

    run_batch(client, batch, store=store, on_record=report, keep_records=False)
