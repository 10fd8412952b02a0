"""Benchmark: app cold start, from `streamlit run app.py` to /_stcore/health = 200 and to the first
rendered page (the Chat input visible in headless Chromium), on loopback with the local router.

    python benchmarks/bench_startup.py [--runs 5]

Each run spawns a fresh server process on a free port (a new Python process: imports, the local
router's start, the first script run); the browser is launched once beforehand and each run opens
a new browser context, so the browser's own start is not counted. The OS file cache and Python's
.pyc files are warm after the first run: these are "cold process, warm disk" figures.
Prints a Markdown table: median, min and max of the runs, with the machine noted.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from browser import CHROMIUM_ARGS, chromium_path, free_port, stop_process  # noqa: E402

POLL_S = 0.01
DEADLINE_S = 60.0


def server_env(db_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ORQ_API_KEY"}
    env.update({"ORQ_LOCAL_ROUTER_TIME_SCALE": "0", "ORQ_PLAYGROUND_DB": str(db_path),
                "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"})
    return env


def wait_healthy(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + DEADLINE_S
    with httpx.Client(timeout=1.0) as http:
        while time.monotonic() < deadline:
            try:
                if http.get(f"{url}/_stcore/health").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if process.poll() is not None:
                raise RuntimeError("streamlit exited during start")
            time.sleep(POLL_S)
    raise RuntimeError(f"streamlit did not become healthy in {DEADLINE_S:g} s")


def one_start(browser, workdir: Path, run: int) -> tuple[float, float]:
    """(seconds to healthy, seconds to the first rendered page) for one fresh server."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(workdir / f"streamlit-{run}.log", "wb")
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
         "--server.headless", "true", "--server.address", "127.0.0.1", "--server.fileWatcherType", "none"],
        cwd=ROOT, env=server_env(workdir / f"startup-{run}.db"), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_healthy(url, process)
        healthy = time.perf_counter() - started
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        try:
            page = context.new_page()
            page.set_default_timeout(DEADLINE_S * 1000)
            page.goto(url)
            page.locator("[data-testid='stChatInputTextArea']").wait_for(state="visible")
            page.get_by_text("local router", exact=False).first.wait_for()
            rendered = time.perf_counter() - started
        finally:
            context.close()
    finally:
        stop_process(process)
        log.close()
    return healthy, rendered


def measure(runs: int) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    results: dict[str, list[float]] = {"healthy": [], "rendered": []}
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            for run in range(runs):
                healthy, rendered = one_start(browser, Path(tmp), run)
                results["healthy"].append(healthy)
                results["rendered"].append(rendered)
        finally:
            browser.close()
    return results


def median_table(header: str, unit: str, labels: dict[str, str], results: dict[str, list[float]],
                 fmt: str = ".2f") -> str:
    """A Markdown table: one row per label, the median, min and max of its values."""
    lines = [f"| {header} | median ({unit}) | min ({unit}) | max ({unit}) |", "| --- | ---: | ---: | ---: |"]
    for key, label in labels.items():
        values = results[key]
        lines.append(f"| {label} | {statistics.median(values):{fmt}} | {min(values):{fmt}} | {max(values):{fmt}} |")
    return "\n".join(lines)


def machine() -> str:
    return f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    results = measure(args.runs)
    print(f"Machine: {machine()}; {args.runs} fresh `streamlit run app.py` processes, local router, loopback\n")
    print(median_table("app start", "s", {"healthy": "spawn -> /_stcore/health 200",
                                          "rendered": "spawn -> first page rendered (Chat input visible)"}, results))


if __name__ == "__main__":
    main()
