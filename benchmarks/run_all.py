"""Run every benchmark and print one Markdown report: a headline table, then each benchmark's own
tables. Loopback only; each benchmark runs in its own process with a time limit.

    python benchmarks/run_all.py [--out benchmarks/results.md] [--skip-browser]

Benchmarks: bench_client.py (SSE decoding vs the openai SDK and vs bare split + json.loads,
create overhead vs bare httpx), bench_browser.py (Enter to first token painted in Chromium),
bench_startup.py (app cold start), bench_lab.py (Caching Lab overhead per request),
bench_batch.py (Batch rows/s, its own overhead per request, peak memory by rows),
bench_notebook.py (the demo notebook run headless, exported and imported),
bench_store.py (store operations on SQLite and PostgreSQL),
load_router.py (local-router throughput vs the stack's ceiling, from a separate process),
bench_prefix.py (a cache hit on a 100K-token prefix vs a 10K one), bench_doctor.py (the cache
doctor's cost per request and its hit rate on predictions), mem_pdf.py (memory of sending
a 30 MB PDF). Every figure is a ratio or a median of several runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@dataclass
class Run:
    name: str
    outputs: list[str] = field(default_factory=list)
    seconds: float = 0.0
    problem: str | None = None


def run_script(script: str, args: list[str], timeout: float) -> tuple[str, str | None]:
    """(stdout, problem or None) of one benchmark process."""
    try:
        done = subprocess.run([sys.executable, str(HERE / script), *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "", f"did not finish within {timeout:g} s"
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return done.stdout, f"exit {done.returncode}: {tail[0]}"
    return done.stdout, None


def run(name: str, script: str, args: list[str], timeout: float, repeat: int = 1) -> Run:
    result = Run(name)
    started = time.perf_counter()
    for _ in range(repeat):
        out, problem = run_script(script, args, timeout)
        result.outputs.append(out)
        if problem:
            result.problem = problem
            break
    result.seconds = time.perf_counter() - started
    return result


def table_rows(text: str) -> dict[str, list[str]]:
    """Markdown table rows of a benchmark's output, by their first cell (bold marks removed)."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("| ---"):
            cells = [c.replace("**", "").strip() for c in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def cell(run_: Run, row: str, column: int) -> str:
    """One figure of a benchmark's table: the row whose first cell is ``row`` (or starts with it)."""
    if run_.problem:
        return f"failed ({run_.problem})"
    rows = table_rows(run_.outputs[0])
    values = rows.get(row) or next((v for k, v in rows.items() if k.startswith(row)), None)
    return values[column] if values and len(values) > column else "not reported"


def router_rows(run_: Run, prompts: str) -> list[tuple[str, str, str]]:
    """One headline row per kind at concurrency 64, the others in the detail; ``prompts`` says
    whether requests repeat (the router's memos hit) or are all new."""
    if run_.problem:
        return [("Local router vs the stack's ceiling", f"failed ({run_.problem})", "")]
    rows = []
    for kind in ("JSON", "streamed"):
        lines = [line for line in run_.outputs[0].splitlines() if line.startswith(f"| {kind} |")]
        cells = {int(c[1]): c for c in ([x.strip() for x in line.strip("|").split("|")] for line in lines)}
        if 64 not in cells:
            rows.append((f"Local router / ceiling, {kind}, concurrency 64, {prompts}", "not reported", ""))
            continue
        others = ", ".join(f"{n}: {c[4]}" for n, c in sorted(cells.items()) if n != 64)
        rows.append((f"Local router / ceiling, {kind}, concurrency 64, {prompts} (target >= 0.5)", cells[64][4],
                     f"router {cells[64][2]} vs ceiling {cells[64][3]} req/s; by server CPU per request "
                     f"{cells[64][7]} ({cells[64][5]} vs {cells[64][6]} ms); other concurrencies {others}"))
    return rows


def pdf_rows(run_: Run) -> list[tuple[str, str, str]]:
    if run_.problem:
        return [("Sending a 30 MB PDF: peak memory", f"failed ({run_.problem})", "")]
    out = run_.outputs[0]
    send = re.search(r"\| send \+ stream \(What is in it\?\) \| ([\d.,]+) MB \(([\d.]+)×\)", out)
    overall = re.search(r"overall tracemalloc peak above baseline: ([\d.,]+) MB = ([\d.]+)×", out)
    return [("Sending a 30 MB PDF: peak memory while sending, in file sizes (target <= 2.5x)",
             f"{send.group(2)}x" if send else "not reported",
             (f"{send.group(1)} MB, the held data URL (1.33x) included; whole Vision flow peak "
              f"{overall.group(2)}x (inspect and first token count)") if send and overall else "")]


def headline(runs: dict[str, Run]) -> list[tuple[str, str, str]]:
    client, browser, startup, lab, router, prefix, pdf = (
        runs.get(k) for k in ("client", "browser", "startup", "lab", "router", "prefix", "pdf"))
    batch = runs.get("batch")
    rows = []
    if client:
        for label in ("SSE + JSON + typed chunks, one read per event", "SSE decode only, one read per event"):
            rows.append((f"Stream parsing vs openai SDK: {label}", cell(client, label, 2),
                         f"orq_core {cell(client, label, 0)} vs SDK {cell(client, label, 1)} events/s, median"))
        for label in ("SSE + JSON + typed chunks, whole stream in one read", "SSE + JSON + typed chunks, 16 KiB reads"):
            rows.append((f"Stream parsing vs bare split + json.loads: {label.split(', ', 1)[1]}",
                         cell(client, label, 2),
                         f"orq_core {cell(client, label, 0)} vs split + json.loads {cell(client, label, 1)} events/s; "
                         "below 1x = slower than the least any parser must do"))
        rows.append(("OrqClient.create vs bare httpx post + json.loads (loopback)",
                     cell(client, "OrqClient.create", 1),
                     f"median {cell(client, 'OrqClient.create', 0)} µs vs "
                     f"{cell(client, 'httpx.Client.post + json.loads', 0)} µs per request"))
        rows.append(("OrqClient.create with an in-memory run log vs bare httpx",
                     cell(client, "OrqClient.create + run log", 1),
                     f"median {cell(client, 'OrqClient.create + run log', 0)} µs per request"))
    if browser:
        rows.append(("Chat: Enter -> first token painted in Chromium (time_scale 0)",
                     f"{cell(browser, 'Enter -> first token painted (performance.now)', 0)} ms",
                     "median of 7 sends; turn finished: "
                     f"{cell(browser, 'Enter -> turn finished, usage line painted', 0)} ms"))
    if startup:
        rows.append(("App start: spawn -> /_stcore/health 200", f"{cell(startup, 'spawn -> /_stcore/health 200', 0)} s",
                     "median of 5 fresh processes"))
        rows.append(("App start: spawn -> first page rendered",
                     f"{cell(startup, 'spawn -> first page rendered (Chat input visible)', 0)} s",
                     "median of 5, headless Chromium already running"))
    if lab:
        rows.append(("Caching Lab overhead per request (wall - time inside client.stream)",
                     f"{cell(lab, 'lab overhead', 0)} ms", f"lab wall {cell(lab, 'lab run, wall', 0)} ms per request"))
    if batch:
        rows.append(("Batch: 1,000 rows x 2 targets, concurrency 16, time_scale 0", f"{cell(batch, 'batch rows/s', 0)} rows/s",
                     f"bare client loop {cell(batch, 'bare client loop rows/s', 0)} rows/s"))
        rows.append(("Batch overhead per request (instant client, SQLite store)",
                     cell(batch, "batch overhead per request, SQLite store", 0),
                     f"without the store {cell(batch, 'batch overhead per request, no store', 0)}"))
        rows.append(("Batch peak memory above idle, 10,000 rows x 2 targets, records streamed (CLI)",
                     cell(batch, "10,000", 1), f"2,500 rows: {cell(batch, '2,500', 1)}; 5,000 rows: "
                     f"{cell(batch, '5,000', 1)}; records kept (page) at 10,000: {cell(batch, '10,000', 0)}"))
    notebook = runs.get("notebook")
    if notebook:
        rows.append(("Notebook: the demo's Run all (15 requests, time_scale 0)",
                     cell(notebook, "demo Run all,", 0),
                     f".ipynb export {cell(notebook, 'export .ipynb', 0)}; HTML report {cell(notebook, 'export HTML', 0)}"))
    store = runs.get("store")
    if store:
        rows.append(("Store: log_run per row, SQLite | PostgreSQL (local, fsync off)",
                     f"{cell(store, 'log_run', 0)} | {cell(store, 'log_run', 1)} µs",
                     f"History load + totals, 10,000 rows: {cell(store, 'History load', 0)} | "
                     f"{cell(store, 'History load', 1)} ms"))
    if router:
        rows += router_rows(router, "100 prompts in turn")
    router_unique = runs.get("router_unique")
    if router_unique:
        rows += router_rows(router_unique, "every prompt new")
    if prefix:
        rows.append(("Cache hit on a 100K-token prefix vs a 10K one (target <= 2x)",
                     cell(prefix, "cache hit on a 100K-token prefix", 1),
                     f"median {cell(prefix, 'cache hit on a 100K-token prefix', 0)} ms vs "
                     f"{cell(prefix, 'cache hit on a 10K-token prefix', 0)} ms per request; the stack alone "
                     f"(body read + json.loads) {cell(prefix, 'baseline (body read + json.loads), 100K', 1)}"))
    if pdf:
        rows += pdf_rows(pdf)
    doctor = runs.get("doctor")
    if doctor:
        rows.append(("Cache doctor per request (predict, ledger, compare; 10K-token prefix, 40 turns)",
                     cell(doctor, "cache doctor per request", 0),
                     f"CPU time of the calling thread {cell(doctor, 'cache doctor per request, CPU', 0)}; "
                     f"requests predicted exactly: {cell(doctor, 'requests predicted exactly', 0)}"))
    return rows


def machine() -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    version = ""
    if chromium:
        try:
            version = subprocess.run([chromium, "--version"], capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            version = chromium
    cpu = platform.processor() or platform.machine()
    return (f"{platform.platform()}, {cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
            + (f", {version}" if version else ""))


def report(runs: dict[str, Run], titles: dict[str, str], total_s: float) -> str:
    lines = ["# Benchmarks", "", f"Machine: {machine()}", "",
             f"Command: `python benchmarks/run_all.py` ({total_s:.0f} s in all, loopback only)", "",
             "| measure | figure | detail |", "| --- | ---: | --- |"]
    lines += [f"| {m} | {f} | {d} |" for m, f, d in headline(runs)]
    for key, run_ in runs.items():
        lines += ["", f"## {titles[key]} ({run_.seconds:.0f} s)", ""]
        if run_.problem:
            lines.append(f"**Failed:** {run_.problem}")
        lines += [out.rstrip() for out in run_.outputs if out.strip()]
    return "\n".join(lines) + "\n"


PLAN = {  # key: (title, script, args, timeout s, repeats)
    "client": ("Stream decoding and request overhead (bench_client.py)", "bench_client.py", [], 300, 1),
    "browser": ("Enter to first token in Chromium (bench_browser.py)", "bench_browser.py", ["--sends", "7"], 300, 1),
    "startup": ("App cold start (bench_startup.py)", "bench_startup.py", ["--runs", "5"], 300, 1),
    "lab": ("Caching Lab overhead (bench_lab.py)", "bench_lab.py", [], 300, 1),
    "batch": ("Batch throughput, overhead and memory (bench_batch.py)", "bench_batch.py", [], 900, 1),
    "notebook": ("The demo notebook run, exported and imported (bench_notebook.py)", "bench_notebook.py", [], 300, 1),
    "store": ("Store on SQLite and PostgreSQL (bench_store.py)", "bench_store.py", [], 600, 1),
    "router": ("Local router vs the stack's ceiling (load_router.py)", "load_router.py", [], 400, 1),
    "router_unique": ("Local router vs the stack's ceiling, every prompt new (load_router.py --unique)",
                      "load_router.py", ["--unique", "--concurrency", "1,64"], 400, 1),
    "prefix": ("Cache hits on long prefixes (bench_prefix.py)", "bench_prefix.py", [], 120, 1),
    "doctor": ("The cache doctor's cost per request (bench_doctor.py)", "bench_doctor.py", [], 300, 1),
    "pdf": ("Memory of sending a 30 MB PDF (mem_pdf.py)", "mem_pdf.py", [], 300, 1),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="also write the report to this file")
    parser.add_argument("--skip-browser", action="store_true", help="leave out the two Chromium benchmarks")
    parser.add_argument("--only", help="comma-separated keys of the benchmarks to run: " + ", ".join(PLAN))
    args = parser.parse_args()
    started = time.perf_counter()
    runs: dict[str, Run] = {}
    for key, (title, script, script_args, timeout, repeat) in PLAN.items():
        if args.skip_browser and key in ("browser", "startup"):
            continue
        if args.only and key not in args.only.split(","):
            continue
        if not (HERE / script).exists():
            continue
        print(f"running {script} ...", file=sys.stderr, flush=True)
        runs[key] = run(key, script, script_args, timeout, repeat)
    text = report(runs, {k: v[0] for k, v in PLAN.items()}, time.perf_counter() - started)
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    return 1 if any(r.problem for r in runs.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
