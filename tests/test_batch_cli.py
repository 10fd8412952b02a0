"""`python -m orq_core batch`: JSON summary, CSV out, and one-sentence refusals of bad input."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from orq_core.__main__ import build_parser
from orq_core.batch_cli import cli_batch
from orq_core.client import OrqClient
from orq_core.cost import cost_of
from orq_core.store import Store
from orq_core.usage import Usage

ROOT = Path(__file__).resolve().parent.parent
SONNET = "anthropic/claude-sonnet-4-5-20250929"
HAIKU = "anthropic/claude-haiku-4-5-20251001"


@pytest.fixture
def data_csv(tmp_path) -> Path:
    path = tmp_path / "rows.csv"
    path.write_text("question,answer\n" + "".join(f"What is {n}?,{n}\n" for n in range(1, 7)), encoding="utf-8")
    return path


def run(args: list[str], router, tmp_path) -> tuple[int, list[str]]:
    printed: list[str] = []
    parsed = build_parser().parse_args(["batch", *args])
    with OrqClient(router.base_url, router.api_key, max_connections=40) as client:
        code = cli_batch(parsed, printed.append, client=client, store=Store(tmp_path / "cli.db"))
    return code, printed


def test_json_summary_and_csv_out(local_router, data_csv, tmp_path):
    out = tmp_path / "out.csv"
    system = "word " * 1197  # a 1,200-token cached prefix: above Sonnet's 1,024 minimum
    code, printed = run(["--input", str(data_csv), "--template", "Q: {{question}}", "--system", system,
                         "--cache-system", "--targets", f"{SONNET},{HAIKU}", "--concurrency", "2", "--limit", "5",
                         "--out", str(out), "--json"], local_router, tmp_path)
    assert code == 0
    summary = json.loads(printed[0])
    assert summary["rows"] == 5
    assert list(summary["targets"]) == [SONNET, HAIKU]
    assert set(summary["targets"][SONNET]) == {"ok", "failed", "cost_usd", "cost_per_1000_rows_usd",
                                               "cache_read_tokens", "cache_write_tokens", "cache_hit_rate",
                                               "ttft_ms_p50", "latency_ms_p50", "latency_ms_p95"}
    sonnet = summary["targets"][SONNET]
    assert (sonnet["ok"], sonnet["failed"], sonnet["cache_write_tokens"], sonnet["cache_read_tokens"]) == (5, 0, 1200,
                                                                                                           4800)
    assert summary["targets"][HAIKU]["cache_write_tokens"] == 0  # under Haiku 4.5's 4,096 minimum
    with out.open(encoding="utf-8") as handle:
        lines = list(csv.DictReader(handle))
    assert len(lines) == 10
    assert {"row", "target", "status", "output", "input_tokens", "cache_read_tokens", "cache_write_tokens",
            "output_tokens", "cost_usd", "ttft_ms", "latency_ms", "error"} <= set(lines[0])
    total = Decimal(0)
    for line in (x for x in lines if x["target"] == SONNET):
        usage = Usage(int(line["input_tokens"]), int(line["cache_read_tokens"]), int(line["cache_write_tokens"]),
                      int(line["output_tokens"]))
        assert Decimal(line["cost_usd"]) == cost_of(usage, SONNET).total
        total += Decimal(line["cost_usd"])
    assert sonnet["cost_usd"] == float(total)


def cli(*args: str) -> subprocess.CompletedProcess:
    import os
    env = {k: v for k, v in os.environ.items() if k != "ORQ_API_KEY"}
    env["ORQ_LOCAL_ROUTER_TIME_SCALE"] = "0"
    return subprocess.run([sys.executable, "-m", "orq_core", "batch", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("extra,message", [
    (["--template", "{{nope}}"], "error: The template uses {{nope}} but the data has no column 'nope'; its columns "
                                 "are: question, answer."),
    (["--template", "x", "--concurrency", "33"], "error: Concurrency must be 1 to 32 (got 33)."),
    (["--template", "x", "--targets", "anthropic/claude-nope"],
     "error: Unknown target 'anthropic/claude-nope': use a slug from `python -m orq_core models`, e.g. "
     "anthropic/claude-haiku-4-5-20251001."),
])
def test_bad_input_exits_non_zero_with_one_sentence(data_csv, extra, message):
    result = cli("--input", str(data_csv), *extra)
    assert (result.returncode, result.stderr.strip(), result.stdout) == (2, message, "")


def test_the_spend_limit_refusal_names_the_cli_option_not_the_sidebar(data_csv, tmp_path):
    from orq_core.batch import Batch, batch_ceiling, choose_rows, load_dataset
    from orq_core.batch_cli import spec_from_args
    from orq_core.cost import format_usd

    args = ["--input", str(data_csv), "--template", "Q: {{question}}", "--max-tokens", "2000"]
    spec = spec_from_args(build_parser().parse_args(["batch", *args]))
    ceiling = batch_ceiling(Batch.new(spec, choose_rows(load_dataset(data_csv.read_bytes(), str(data_csv)))))
    result = cli(*args, "--max-spend", "0.001")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"error: Not sent: 6 rows x 1 targets = 6 requests could cost up to {format_usd(ceiling)} together (input "
        "estimate, output at max_tokens 2,000) and this run has spent $0 of its $0.001 budget. Take fewer rows or "
        "targets, lower max_tokens, or raise --max-spend.\n")


def test_unreadable_and_empty_files(tmp_path):
    missing = cli("--input", str(tmp_path / "none.csv"), "--template", "x")
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"error: Cannot read the input file '{tmp_path / 'none.csv'}': No such file or " \
                                     "directory."
    (tmp_path / "empty.csv").write_text("")
    empty = cli("--input", str(tmp_path / "empty.csv"), "--template", "x")
    assert (empty.returncode, empty.stderr.strip()) == (
        2, "error: The file is empty: upload a CSV with a header row and at least one data row.")


def test_importing_the_batch_core_loads_no_ui_chart_or_router_code():
    code = ("import sys, orq_core.batch, orq_core.batch_cli;"
            "print(sorted(m for m in ('streamlit', 'pandas', 'plotly', 'starlette') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_an_unwritable_out_file_is_refused_before_sending(data_csv, tmp_path):
    result = cli("--input", str(data_csv), "--template", "{{question}}", "--out", str(tmp_path / "no" / "out.csv"))
    assert (result.returncode, result.stderr.strip()) == (
        2, f"error: Cannot write the output file '{tmp_path / 'no' / 'out.csv'}': No such file or directory.")
