"""`python -m orq_core notebook demo|run`: the demo notebook as .ipynb, or a notebook run headless.

Errors print one sentence to stderr and exit non-zero; the key never appears in output.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .budget import add_spend_limit_option
from .connection import add_local_option
from .notebook import RunContext, demo_notebook, describe_cell, first_error, run_all


def add_notebook_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="notebook_command", required=True)
    demo = sub.add_parser("demo", help="write the demo notebook \u201cWhat prompt caching saves\u201d without running it")
    demo.add_argument("--out", required=True, help="the .ipynb file to write")
    demo.set_defaults(func=cli_demo)
    run = sub.add_parser("run", help="run every cell of an exported notebook against the configured router")
    run.add_argument("notebook", help="an .ipynb exported by the playground")
    run.add_argument("--out", required=True, help="the run notebook (.ipynb) to write")
    run.add_argument("--html", help="also write the standalone HTML report here")
    add_local_option(run)
    add_spend_limit_option(run, "refuse any cell whose worst case would take the run past this many USD")
    run.set_defaults(func=cli_run)


def _write(path: str, text: str) -> None:
    Path(path).write_text(text, encoding="utf-8")


def cli_demo(args: argparse.Namespace) -> int:
    from .notebook_export import export_ipynb

    _write(args.out, export_ipynb(demo_notebook()))
    print(f"wrote {args.out}")
    return 0


def cli_run(args: argparse.Namespace, client=None) -> int:
    from .budget import CLI_BUDGET, SessionSpend, cli_spend_limit
    from .connection import make_client, resolve_connection
    from .store import Store
    from .notebook_export import export_ipynb, import_ipynb
    from .notebook_report import export_html

    data = Path(args.notebook).read_bytes()  # a missing file: main() says so in a sentence
    notebook = import_ipynb(data)
    connection = resolve_connection(force_local=args.local)
    if connection.local:
        print("[answers come from the local router: synthetic text, no key needed]", file=sys.stderr)
    limit = cli_spend_limit(args.max_spend, connection.local)
    spend = SessionSpend(Store.default())
    own_client = client is None
    client = client or make_client(connection, page="notebook", store=spend)
    run_ctx = RunContext(client, local=connection.local, spent_usd=lambda: spend.total_usd, budget_usd=limit,
                         budget_words=CLI_BUDGET)
    try:
        for progress in run_all(notebook, run_ctx):
            if progress.output is not None:
                state = "ok" if progress.output.ok else "error"
                print(f"[{progress.done}/{progress.total}] {progress.cell.label}: {state}", file=sys.stderr)
    finally:
        if own_client:
            client.close()
    _write(args.out, export_ipynb(notebook))
    if args.html:
        _write(args.html, export_html(notebook))
    totals = notebook.totals()
    print(f"wrote {args.out}" + (f" and {args.html}" if args.html else "")
          + f": {totals.requests} requests, cost ${totals.cost_usd:.6f}, saved by caching ${totals.saved_usd:.6f}")
    failed = first_error(notebook)
    if failed:
        number, cell = failed
        print(f"error: {describe_cell(number, cell)} failed: {cell.output.error}", file=sys.stderr)
        return 1
    return 0
