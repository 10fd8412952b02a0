"""The speed benchmarks run end to end in their quick mode and print their tables (loopback only).
No figure is asserted: only that each runs, checks its own answers and reports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True,
                          timeout=240, cwd=BENCHMARKS.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_load_router_quick_reports_router_and_ceiling_for_both_kinds():
    out = run("load_router.py", "--quick")
    rows = [line for line in out.splitlines() if line.startswith(("| JSON |", "| streamed |"))]
    assert [r.split("|")[1:3] for r in rows] == [[" JSON ", " 1 "], [" JSON ", " 4 "],
                                                 [" streamed ", " 1 "], [" streamed ", " 4 "]]
    assert "router / ceiling: the share of the bare stack's throughput" in out


def test_bench_prefix_quick_reports_the_ratio():
    out = run("bench_prefix.py", "--quick")
    assert "| cache hit on a 2K-token prefix |" in out and "| cache hit on a 20K-token prefix |" in out
    assert "times as long as one on a 2K-token prefix" in out
    assert "| baseline (body read + json.loads), 20K-token body |" in out
    assert "the stack alone (uvicorn + Starlette reading the same bodies and json.loads" in out


def test_bench_client_quick_reports_the_minimal_baseline():
    out = run("bench_client.py", "--quick")
    assert "| SSE + JSON + typed chunks, whole stream in one read |" in out
    assert "| SSE + JSON + typed chunks, 16 KiB reads |" in out
    assert "of the speed of bare split + json.loads" in out


@pytest.mark.parametrize("key", ["router", "prefix", "pdf", "client"])
def test_run_all_knows_each_speed_benchmark(key):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import run_all
    finally:
        sys.path.remove(str(BENCHMARKS))
    assert (BENCHMARKS / run_all.PLAN[key][1]).exists()
