"""The API key appears nowhere: not in a page, a download, the run log, a log line, stderr or a code
snippet. The key is really used: the app and the CLI talk to a local router that accepts ONLY this
key (``EmulatorSettings.api_key``), through the "Orq" connection (ORQ_API_KEY + ORQ_BASE_URL)."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
from fpdf import FPDF
from PIL import Image
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from orq_core.__main__ import main
from orq_core.emulator import EmulatorSettings, start_local_router

from page_support import APP, RUN_TIMEOUT_S

FAKE_KEY = "sk-orq-HYGIENE-5f0c7a93e1d24b68-SECRET-k9Qz"
WRONG_KEY = "sk-orq-WRONGKEY-0a1b2c3d4e5f6789-SECRET-zz42"
SONNET = "anthropic/claude-sonnet-4-5-20250929"


def needles(key: str) -> list[bytes]:
    """The whole key, and its middle: a hint may show the last 4 characters, never more."""
    return [key.encode(), key[7:-5].encode()]


def hits(haystack: dict[str, bytes | str], key: str = FAKE_KEY) -> list[str]:
    found = []
    for where, data in haystack.items():
        raw = data.encode("utf-8", "replace") if isinstance(data, str) else data
        found += [f"{where}: {needle.decode()!r}" for needle in needles(key) if needle in raw]
    return found


@pytest.fixture
def keyed_router(capfd):
    """A router that takes only FAKE_KEY. Started inside the test's stderr capture (uvicorn binds its
    log handlers to the stderr of the moment) and stopped before that capture closes."""
    router = start_local_router(EmulatorSettings(time_scale=0, api_key=FAKE_KEY))
    yield router
    router.stop()


@pytest.fixture
def served_files(monkeypatch):
    """Every file the app hands the browser (downloads, images), as bytes, by name."""
    files: dict[str, bytes] = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def recording(self, path_or_data, mimetype, kind, filename=None):
        data = path_or_data if isinstance(path_or_data, bytes) else Path(path_or_data).read_bytes()
        files[f"served {filename or mimetype} #{len(files)}"] = data
        return original(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", recording)
    return files


@pytest.fixture
def keyed_env(monkeypatch, tmp_path, keyed_router):
    monkeypatch.setenv("ORQ_API_KEY", FAKE_KEY)
    monkeypatch.setenv("ORQ_BASE_URL", keyed_router.base_url)
    monkeypatch.setenv("ORQ_LOCAL_ROUTER_TIME_SCALE", "0")
    monkeypatch.delenv("ORQ_SPEND_BUDGET_USD", raising=False)
    db = tmp_path / "hygiene.db"
    monkeypatch.setenv("ORQ_PLAYGROUND_DB", str(db))
    return db


def run_log_files(db: Path) -> dict[str, bytes]:
    files = {f"run log {p.name}": p.read_bytes() for p in db.parent.glob(db.name + "*")}
    assert files, "nothing was written to the run log"
    return files


def element_texts(at: AppTest) -> dict[str, str]:
    """Every element of the rendered tree with all its fields (values, code, labels, help, urls)."""
    out: dict[str, str] = {}

    def walk(node, path: str) -> None:
        proto = getattr(node, "proto", None)
        out[path] = f"{node!r}\n{proto!r}" if proto is not None else repr(node)
        for name, child in (getattr(node, "children", None) or {}).items():
            walk(child, f"{path}/{name}")

    walk(at._tree, "tree")
    return out


def session_reprs(at: AppTest) -> dict[str, str]:
    return {f"session_state[{k!r}]": repr(value) for k, value in at.session_state.to_dict().items()}


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 40)).save(out, "PNG")
    return out.getvalue()


def pdf() -> bytes:
    doc = FPDF()
    doc.set_font("helvetica", size=11)
    doc.add_page()
    doc.multi_cell(0, 6, "Hygiene report. Keys stay secret. " * 20)
    return bytes(doc.output())


# --- the pages ------------------------------------------------------------------------------------

def drive_chat(at: AppTest) -> None:
    at.chat_input[0].set_value("Say something about secrets.").run()
    assert at.session_state["conversation"].turns[-1].role == "assistant"


def drive_vision(at: AppTest) -> None:
    at.file_uploader[0].set_value([("red.png", png(64, 48), "image/png"),
                                   ("report.pdf", pdf(), "application/pdf")]).run()
    at.text_area(key="vision_question").input("What is in these files?")
    at.button(key="vision_ask").click().run()
    assert at.session_state["vision_session"].turns


def drive_tools(at: AppTest) -> None:
    at.text_area(key="tool_prompt").set_value("What is 12 * 34?")
    at.run()
    next(b for b in at.button if b.label == "Run").click().run()
    assert at.session_state["tool_session"].steps


def drive_compare(at: AppTest) -> None:
    at.chat_input(key="cmp_prompt").set_value("Which is fastest?").run()
    assert at.session_state["compare"].turns == 1


def drive_caching_lab(at: AppTest) -> None:
    next(s for s in at.slider if s.label == "Book size (tokens)").set_value(2_000)
    next(n for n in at.number_input if n.label == "Requests per arm").set_value(2)
    next(b for b in at.button if b.label == "Run experiment").click().run()
    assert [r.status for r in at.session_state["lab_result"].records] == ["ok"] * 4


def drive_notebook(at: AppTest) -> None:
    at.button(key="nb_start_demo").click().run()
    at.button(key="nb_run_all").click().run()
    at.button(key="nb_prepare_exports").click().run()
    cells = at.session_state["nb"].cells
    assert [c.output.status for c in cells if c.runnable] == ["ok"] * 5
    assert [b.label for b in at.get("download_button")] == ["Download .ipynb", "Download HTML report"]


WITH_CODE_VIEW = ("app_pages/chat.py", "app_pages/vision.py", "app_pages/tools.py")
PAGES = {"app_pages/chat.py": drive_chat, "app_pages/vision.py": drive_vision, "app_pages/tools.py": drive_tools,
         "app_pages/caching_lab.py": drive_caching_lab, "app_pages/compare.py": drive_compare,
         "app_pages/notebook.py": drive_notebook}


@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_uses_the_key_and_shows_it_nowhere(page, keyed_env, served_files, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    at = AppTest.from_file(APP, default_timeout=RUN_TIMEOUT_S)
    at.run()
    assert not at.exception, at.exception
    sidebar = " ".join(str(e.value) for e in at.sidebar.success)
    assert "Orq AI Router: reachable" in sidebar  # the router accepts only FAKE_KEY: it was sent
    first_run = {f"first run {k}": v for k, v in element_texts(at).items()}
    assert any("configured (…k9Qz)" in text for text in first_run.values())  # the walk sees the hint
    if page != "app_pages/chat.py":
        at.switch_page(page)
        at.run()
    PAGES[page](at)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    codes = "\n".join(c.value for c in at.code)
    if page in WITH_CODE_VIEW:
        assert "$ORQ_API_KEY" in codes
    out, err = capfd.readouterr()
    assert served_files, "the page served no file (download, image) to search"
    haystack = {**first_run, **element_texts(at), **session_reprs(at), **served_files, **run_log_files(keyed_env),
                "code snippets": codes, "captured log": caplog.text, "stdout": out, "stderr": err}
    assert hits(haystack) == []


def test_a_refused_key_is_not_repeated_in_the_page_or_logs(monkeypatch, keyed_env, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("ORQ_API_KEY", WRONG_KEY)
    at = AppTest.from_file(APP, default_timeout=RUN_TIMEOUT_S)
    at.run()
    sidebar = " ".join(e.value for e in at.sidebar.error)
    assert "refused the API key (401)" in sidebar
    at.chat_input[0].set_value("Hello?").run()
    assert not at.exception, at.exception
    turns = at.session_state["conversation"].turns
    assert [t.role for t in turns] == ["user", "error"] and "(401)" in turns[1].text
    out, err = capfd.readouterr()
    haystack = {**element_texts(at), **session_reprs(at), **run_log_files(keyed_env),
                "captured log": caplog.text, "stdout": out, "stderr": err}
    assert hits(haystack, WRONG_KEY) == []


# --- the command line -----------------------------------------------------------------------------

CLI = {
    "chat --json": ["chat", "--model", SONNET, "--prompt", "Keep it secret.", "--stream", "--json"],
    "chat plain": ["chat", "--model", SONNET, "--prompt", "Keep it safe.", "--thinking-budget", "1024",
                   "--max-tokens", "2048"],
    "models": ["models", "--json"],
    "compare": ["compare", "--targets", f"{SONNET},aws/{SONNET}", "--prompt", "Hello", "--max-tokens", "64",
                "--json"],
    "lab": ["lab", "--requests", "2", "--context-tokens", "1000", "--max-tokens", "32", "--max-spend", "1"],
}


@pytest.mark.parametrize("command", list(CLI))
def test_every_cli_command_uses_the_key_and_prints_it_nowhere(command, keyed_env, tmp_path, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    args = list(CLI[command])
    if command == "lab":
        args += ["--out", str(tmp_path / "lab.json")]
    code = main(args)
    out, err = capfd.readouterr()
    assert code == 0, err
    haystack = {"stdout": out, "stderr": err, "captured log": caplog.text}
    if command != "models":
        haystack.update(run_log_files(keyed_env))
        assert "HTTP 401" not in err and "refused the API key" not in err
    if command == "lab":
        haystack["lab export"] = (tmp_path / "lab.json").read_bytes()
        assert json.loads(haystack["lab export"])["records"]
    assert hits(haystack) == []


def test_a_refused_key_on_the_cli_is_one_line_without_the_key(monkeypatch, keyed_env, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("ORQ_API_KEY", WRONG_KEY)
    assert main(["chat", "--prompt", "Hello?", "--json"]) == 2
    out, err = capfd.readouterr()
    assert err.strip() == "error: The router refused the API key (401). Check the key in the sidebar or ORQ_API_KEY."
    assert hits({"stdout": out, "stderr": err, "captured log": caplog.text, **run_log_files(keyed_env)},
                WRONG_KEY) == []
