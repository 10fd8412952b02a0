import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from orq_core.__main__ import main
from orq_core.cost import cost_of
from orq_core.usage import Usage

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args, env_extra=None, monkeypatch=None):
    import os
    env = {k: v for k, v in os.environ.items() if k != "ORQ_API_KEY"}
    env.update({"ORQ_LOCAL_ROUTER_TIME_SCALE": "0", **(env_extra or {})})
    return subprocess.run([sys.executable, "-m", "orq_core", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_import_does_not_load_streamlit_pandas_or_plotly():
    code = ("import sys, orq_core, orq_core.client, orq_core.request, orq_core.lab, orq_core.compare;"
            "print(sorted(m for m in ('streamlit', 'pandas', 'plotly') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_models_json_lists_catalog_with_prices(capsys):
    assert main(["models", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    sonnet = next(m for m in data["models"] if m["id"] == "claude-sonnet-4-5-20250929")
    assert sonnet["prices_usd_per_mtok"] == {"input": 3.0, "output": 15.0, "cache_write_5m": 3.75,
                                             "cache_write_1h": 6.0, "cache_read": 0.3}
    assert "aws/anthropic/claude-sonnet-4-5-20250929" in sonnet["slugs"]
    assert data["prices_read_on"]


def test_chat_json_on_local_router_has_documented_keys(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("ORQ_API_KEY", raising=False)
    monkeypatch.setenv("ORQ_LOCAL_ROUTER_TIME_SCALE", "0")
    system = "You answer questions about a long manual. " * 200
    args = ["chat", "--model", "anthropic/claude-sonnet-4-5-20250929", "--prompt", "How do I reset it?",
            "--system", system, "--cache-system", "--stream", "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert set(first) == {"text", "reasoning", "tool_calls", "finish_reason", "model", "usage", "cost_usd",
                          "ttft_ms", "latency_ms", "raw_usage", "cache"}
    assert set(first["usage"]) == {"input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens",
                                   "reasoning_tokens"}
    assert first["usage"]["cache_write_tokens"] > 1024 and first["usage"]["cache_read_tokens"] == 0
    assert main(args) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["usage"]["cache_read_tokens"] == first["usage"]["cache_write_tokens"]
    usage = Usage(**second["usage"])
    assert Decimal(str(second["cost_usd"]["total"])) == cost_of(usage, second["model"]).total
    assert second["raw_usage"]["prompt_tokens_details"]["cached_tokens"] == usage.cache_read_tokens
    assert set(second["cache"]) == {"expected_read_tokens", "expected_write_tokens", "why"}


def test_two_cli_runs_against_one_router_process_predict_the_read(tmp_path):
    """The prefix ledger lives in the store: the second process predicts what the first wrote."""
    import os
    import socket
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "ORQ_API_KEY"}
    router = subprocess.Popen([sys.executable, "-m", "orq_core", "emulator", "--port", str(port), "--time-scale", "0"],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "Local router" in router.stdout.readline()
        base = f"http://127.0.0.1:{port}/v2/router"
        extra = {"ORQ_API_KEY": "sk-two-runs-0000", "ORQ_BASE_URL": base,
                 "ORQ_PLAYGROUND_DB": str(tmp_path / "cli.db")}
        system = "You answer questions about a long manual. " * 200
        args = ("chat", "--prompt", "How do I reset it?", "--system", system, "--cache-system", "--json")
        deadline = time.monotonic() + 120  # the server prints its line before it listens (seconds, under load)
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert router.poll() is None and time.monotonic() < deadline, "the local router did not start listening"
            time.sleep(0.05)
        first = json.loads(run_cli(*args, env_extra=extra).stdout)
        second = json.loads(run_cli(*args, env_extra=extra).stdout)
    finally:
        router.terminate()
        router.wait(10)
    written = first["usage"]["cache_write_tokens"]
    assert first["cache"] == {"expected_read_tokens": 0, "expected_write_tokens": written,
                              "why": f"writes {written:,}: first request with this prefix · as predicted"}
    assert second["cache"]["expected_read_tokens"] == written == second["usage"]["cache_read_tokens"]
    assert second["cache"]["why"].startswith(f"reads {written:,} tokens written ")
    assert second["cache"]["why"].endswith(" · as predicted")


def test_chat_thinking_json_reports_reasoning(monkeypatch, capsys):
    monkeypatch.delenv("ORQ_API_KEY", raising=False)
    monkeypatch.setenv("ORQ_LOCAL_ROUTER_TIME_SCALE", "0")
    assert main(["chat", "--prompt", "Plan a picnic", "--max-tokens", "4000", "--thinking-budget", "2000",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["reasoning"] and out["usage"]["reasoning_tokens"] > 0


def test_cli_errors_are_one_line_and_non_zero():
    bad_budget = run_cli("chat", "--prompt", "hi", "--max-tokens", "1000", "--thinking-budget", "1000")
    assert bad_budget.returncode == 2
    assert "budget_tokens" in bad_budget.stderr and "Traceback" not in bad_budget.stderr
    assert len(bad_budget.stderr.strip().splitlines()) == 1
    unknown = run_cli("chat", "--model", "anthropic/claude-nope", "--prompt", "hi")
    assert unknown.returncode != 0 and "Traceback" not in unknown.stderr
    assert "404" in unknown.stderr or "Unknown model" in unknown.stderr


def test_lab_cache_breakers_json_predicts_every_request(tmp_path):
    out = run_cli("lab", "--preset", "cache-breakers", "--json", "--local",
                  env_extra={"ORQ_PLAYGROUND_DB": str(tmp_path / "lab.db")})
    assert out.returncode == 0, out.stderr
    requests = json.loads(out.stdout)["requests"]
    assert [r["step"] for r in requests] == list(range(1, 12))
    for r in requests:
        assert set(r) == {"step", "expected_read_tokens", "expected_write_tokens", "cache_read_tokens",
                          "cache_write_tokens", "why"}
        assert (r["expected_read_tokens"], r["expected_write_tokens"]) == (r["cache_read_tokens"], r["cache_write_tokens"])
        assert r["why"].endswith(" · as predicted"), r["why"]
    why = [r["why"] for r in requests]
    assert why[0].startswith("writes ") and why[1].startswith("reads ")
    assert why[2].startswith("rewrites everything: the tool definitions changed since the last request")
    assert "the system prompt changed since the last request" in why[3]
    assert "the number of images changed since the last request" in why[4]
    assert "the thinking settings changed since the last request" in why[5] and why[6]
    assert why[7].startswith("no caching: the prefix is 12 tokens, below Claude Sonnet 4.5's minimum of 1,024")
    assert why[8].startswith("miss: the entry expired 1 min ago (5m TTL, last used 6 min ago)")
    assert "beyond the 20-block lookback; add a breakpoint nearer the end" in why[10]
