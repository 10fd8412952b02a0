"""Start the real app with `streamlit run` and drive it in Debian's headless Chromium."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync"]
# Generous on purpose: a fresh 2-core CI machine under load takes seconds to load Streamlit's bundle or
# to start a server. A wait ends as soon as its condition holds, so a long limit costs nothing when it passes.
PAGE_TIMEOUT_MS = 90_000
SERVER_START_S = 180
# Streamlit marks its root element with the script's run state: "notRunning" once a run has ended
# ("initial" before the first one, "running"/"rerunRequested" during one).
APP_IDLE = "[data-testid='stApp'][data-test-script-state='notRunning'][data-test-connection-state='CONNECTED']"


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; scripts/test.sh installs Debian's package")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_app(tmp_path: Path, extra_env: dict | None = None):
    """`streamlit run app.py` on a free port, on the local router with no simulated waiting."""
    env = {k: v for k, v in os.environ.items() if k != "ORQ_API_KEY"}
    env.update({"ORQ_LOCAL_ROUTER_TIME_SCALE": "0", "ORQ_PLAYGROUND_DB": str(tmp_path / "browser.db"),
                "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"})
    env.update(extra_env or {})
    log_path = tmp_path / "streamlit.log"
    with open(log_path, "ab") as log:
        # The port is free when chosen but another process may take it before streamlit binds it
        # (seconds later on a loaded machine): then streamlit exits and we start again on another.
        for attempt in range(1, 4):
            port = free_port()
            log.flush()
            log_start = log_path.stat().st_size
            process = subprocess.Popen(
                [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
                 "--server.headless", "true", "--server.address", "127.0.0.1", "--server.fileWatcherType", "none"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            url = f"http://127.0.0.1:{port}"
            try:
                if wait_until_healthy(process, url, log_path, log_start):
                    break
            except BaseException:
                stop_process(process)
                raise
            if attempt == 3:
                raise RuntimeError(f"streamlit found no free port in 3 attempts:\n{log_path.read_text()}")
        try:
            yield url
        finally:
            stop_process(process)


def wait_until_healthy(process: subprocess.Popen, url: str, log_path: Path, log_start: int) -> bool:
    """True once this process answers its health check; False when it exited because its port was taken
    (its log from byte ``log_start`` says so)."""
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        healthy = False
        try:
            healthy = httpx.get(f"{url}/_stcore/health", timeout=10).status_code == 200
        except httpx.HTTPError:
            pass
        if process.poll() is not None:  # checked after the health check too: another server's answer is not ours
            log = log_path.read_bytes()[log_start:].decode("utf-8", "replace")
            if "is not available" in log:
                return False
            raise RuntimeError(f"streamlit exited with {process.returncode}:\n{log}")
        if healthy:
            return True
        time.sleep(0.2)
    raise RuntimeError(f"streamlit did not become healthy in {SERVER_START_S} s:\n{log_path.read_text()}")


def stop_process(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def browser_page(tmp_path: Path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def wait_until_idle(page) -> None:
    """Until the page's current script run has ended: read what a page shows at the end of its run,
    never at a fixed time after its first paint (a loaded machine paints the rest seconds later)."""
    page.locator(APP_IDLE).wait_for()


def artifacts_dir(tmp_path: Path) -> Path:
    """Screenshots go to ARTIFACTS_DIR when set (CI keeps them), else the test's tmp dir."""
    target = Path(os.environ.get("ARTIFACTS_DIR") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target
