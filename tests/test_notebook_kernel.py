"""The exported .ipynb runs top to bottom in a real Jupyter kernel (nbclient + ipykernel) against the
local router run as its own process, with a planted key that really crosses the wire (the router
accepts only that key). The key is then in no export: not the run notebook, the report, nor the
notebook the kernel executed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import nbformat
import pytest
from browser import free_port, stop_process

ROOT = Path(__file__).resolve().parent.parent
FAKE_KEY = "sk-orq-NOTEBOOK-7d41c0e9b2a35f86-SECRET-q8Wm"


def needles(key: str) -> list[str]:
    return [key, key[7:-5]]


@pytest.fixture
def keyed_router_process(tmp_path):
    """`python -m orq_core emulator` on a free port, accepting only FAKE_KEY."""
    port = free_port()
    log = open(tmp_path / "router.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "orq_core", "emulator", "--port", str(port), "--time-scale", "0",
                                "--api-key", FAKE_KEY], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v2/router"
    try:
        deadline = time.monotonic() + 120  # a fresh interpreter under load takes seconds to listen
        while True:
            try:
                if httpx.get(f"{base_url}/models", headers={"Authorization": f"Bearer {FAKE_KEY}"},
                             timeout=30).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, (tmp_path / "router.log").read_text()
            assert time.monotonic() < deadline, "the local router did not start"
            time.sleep(0.1)
        assert httpx.get(f"{base_url}/models", headers={"Authorization": "Bearer another-key"},
                         timeout=30).status_code == 401
        yield base_url
    finally:
        stop_process(process)
        log.close()


@pytest.fixture
def keyed_env(keyed_router_process, tmp_path):
    """The environment of the CLI and of the kernel: the planted key, the router, Jupyter's and
    IPython's own directories inside the test's tmp dir (nothing written to the home directory)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "IPYTHON"))}
    env.update({"ORQ_API_KEY": FAKE_KEY, "ORQ_BASE_URL": keyed_router_process, "PYTHONPATH": str(ROOT),
                "ORQ_PLAYGROUND_DB": str(tmp_path / "cli.db")})
    for name in ("JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR", "JUPYTER_CONFIG_DIR", "IPYTHONDIR"):
        env[name] = str(tmp_path / name.lower())
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    return env


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orq_core", "notebook", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_exported_notebook_runs_in_a_kernel_and_holds_no_key(keyed_env, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    demo, ran, report = tmp_path / "demo.ipynb", tmp_path / "ran.ipynb", tmp_path / "report.html"
    assert cli(keyed_env, "demo", "--out", str(demo)).returncode == 0
    done = cli(keyed_env, "run", str(demo), "--out", str(ran), "--html", str(report))
    assert done.returncode == 0, done.stderr
    assert "[answers come from the local router" not in done.stderr  # the keyed router, through "Orq"
    recorded = nbformat.read(ran, as_version=4)
    nbformat.validate(recorded)
    assert "Orq's AI Router" in recorded.cells[0].source
    requests = int(done.stdout.split(": ")[1].split(" requests")[0])
    assert requests == 15

    for name, value in keyed_env.items():
        monkeypatch.setenv(name, value)
    executed = nbformat.read(ran, as_version=4)
    NotebookClient(executed, timeout=120, kernel_name="python3", allow_errors=False,
                   resources={"metadata": {"path": str(ROOT)}}).execute()
    code = [c for c in executed.cells if c.cell_type == "code"]
    assert all(o.output_type != "error" for c in code for o in c.outputs)
    assert all(c.outputs for c in code)
    prompt = next(c for c in code if c.source.startswith("# Prompt cell"))
    printed = "".join(o.get("text", "") for o in prompt.outputs if o.output_type == "stream")
    assert printed.startswith("[Local router · synthetic answer from Claude Sonnet 4.5 emulation")
    tables = [o.data["text/markdown"] for o in prompt.outputs if o.output_type == "display_data"]
    assert len(tables) == 1 and tables[0].startswith("| tokens | count |")

    executed_text = nbformat.writes(executed)
    for where, text in {"run notebook": ran.read_text(), "report": report.read_text(), "demo": demo.read_text(),
                        "executed notebook": executed_text, "cli stdout": done.stdout, "cli stderr": done.stderr}.items():
        for needle in needles(FAKE_KEY):
            assert needle not in text, f"the key is in the {where}"
