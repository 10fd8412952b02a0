"""Bad input, page by page and on the command line: each case gets a clear sentence (asserted word
for word where it matters), never a traceback, and nothing the person had is lost."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Callable

import pytest
from fpdf import FPDF
from PIL import Image
from page_support import by_label, open_app

from orq_core.__main__ import main
from orq_core.emulator import EmulatorSettings, start_local_router

SONNET = "anthropic/claude-sonnet-4-5-20250929"
FIRST = "Keep this first question"


@dataclass(frozen=True)
class Case:
    name: str
    act: Callable
    expected: str
    typed: str | None = None
    """What the person typed: it must still be on the page (in the conversation or as a draft)."""


def ids(cases):
    return [c.name for c in cases]


def page_text(at) -> str:
    """Messages and text of the app (or of one part of it, e.g. ``at.sidebar``)."""
    parts = []
    for kind in ("error", "warning", "info", "success", "caption", "markdown", "code"):
        parts += [str(e.value) for e in getattr(at, kind)]
    return "\n".join(parts)


def png(width: int = 40, height: int = 30) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 200)).save(out, "PNG")
    return out.getvalue()


def pdf(pages: int = 1, encrypt: bool = False) -> bytes:
    doc = FPDF()
    doc.set_font("helvetica", size=11)
    for page in range(pages):
        doc.add_page()
        doc.cell(0, 8, f"Page {page + 1}: figures and notes.")
    if encrypt:
        doc.set_encryption(owner_password="owner", user_password="user")
    return bytes(doc.output())


@pytest.fixture
def local_env(page_env, monkeypatch):
    monkeypatch.delenv("ORQ_BASE_URL", raising=False)


# --- Chat ------------------------------------------------------------------------------------------

def send(text):
    def act(at):
        at.chat_input[0].set_value(text).run()
    return act


def import_file(data: bytes, name: str = "conversation.json"):
    def act(at):
        at.file_uploader(key="import_conversation").set_value((name, data, "application/json")).run()
    return act


def thinking_over_max_tokens(at):
    by_label(at.toggle, "Extended thinking").set_value(True).run()
    by_label(at.number_input, "max_tokens").set_value(1500).run()
    at.chat_input[0].set_value("Think hard").run()


def blank_stop_sequence(at):
    by_label(at.text_input, "Stop sequences (comma-separated)").set_value("END, ,\t").run()
    at.chat_input[0].set_value("Count to three").run()


def exported(**settings) -> bytes:
    """A conversation export with ``settings`` changed."""
    return json.dumps({"format": "orq-playground.conversation/1", "title": "hostile",
                       "settings": {"model": SONNET, **settings},
                       "turns": [{"role": "user", "text": "hello"}]}).encode()


HUGE = "lorem ipsum dolor sit amet " * 40_000  # ~320K tokens: more than any context window


def sent(name: str, text: str, expected: str) -> Case:
    return Case(name, send(text), expected, typed=text)


CHAT_CASES = [
    sent("huge prompt", HUGE, "The router rejected the request (400): prompt is too long: 320182 tokens > 200000 "
                              "maximum. The message and the conversation before it are more than the model can read "
                              "at once: shorten the message, or start a new conversation."),
    sent("control characters and RTL", "a\x00b\x07c \u202edlrow 日本語 🎉 naïve", "finish: stop"),
    sent("emoji sequences, combining marks, zero-width", "👩\u200d👩\u200d👧 e\u0301 \u200b\ufeff?",
         "finish: stop"),
    sent("one 60,000-character word", "x" * 60_000, "finish: stop"),
    Case("blank prompt", send("   \n\t "), "Your message holds only spaces or line breaks, so there is nothing to "
                                            "send: type some text and send again."),
    Case("thinking budget over max_tokens", thinking_over_max_tokens,
         "The request was not sent: must be less than max_tokens (1,500): thinking counts against max_tokens "
         "(field `thinking.budget_tokens`).", typed="Think hard"),
    Case("blank stop sequence is dropped", blank_stop_sequence, "finish: stop", typed="Count to three"),
    Case("import broken JSON", import_file(b'{"format": "orq-playground.conversation/1", "turns": ['),
         "The file is not valid JSON (line 1, column 55: Expecting value)."),
    Case("import JSON of another shape", import_file(b'[{"role": "user", "content": "hi"}]'),
         'The file is JSON but not a conversation export (expected "format": "orq-playground.conversation/1").'),
    Case("import non-UTF-8 bytes", import_file("caf\u00e9".encode("latin-1") + b"\xff\xfe"),
         "The file is not UTF-8 text, so it is not a conversation export."),
    Case("import damaged conversation",
         import_file(json.dumps({"format": "orq-playground.conversation/1", "turns": "nope"}).encode()),
         "The conversation file is damaged: settings.model is missing; turns must be a list."),
    Case("import a PNG named .json", import_file(png(), "picture.json"),
         "The file is not UTF-8 text, so it is not a conversation export."),
    Case("import 100,000 nested lists", import_file(b'{"format": "orq-playground.conversation/1", "turns": '
                                                    + b"[" * 100_000 + b"]" * 100_000 + b"}"),
         "The file nests lists or objects more than 32 levels deep; a conversation export never does, so this is "
         "not one (or it was damaged)."),
    Case("import max_tokens as text", import_file(exported(max_tokens="lots")),
         "The conversation file is damaged: settings.max_tokens must be a whole number from 1 to 64,000 "
         "(got 'lots')."),
    Case("import a negative top_k and a 5m-or-1h TTL that is neither", import_file(exported(top_k=-1, cache_ttl="2d")),
         'The conversation file is damaged: settings.cache_ttl must be "5m" or "1h" (got \'2d\'); settings.top_k '
         "must be empty or a whole number of at least 1 (got -1)."),
    Case("import stop as one string", import_file(exported(stop="END")),
         'The conversation file is damaged: settings.stop must be a list of stop sequences like ["END"] '
         "(got a string)."),
]


@pytest.mark.parametrize("case", CHAT_CASES, ids=ids(CHAT_CASES))
def test_chat(case, local_env):
    at = open_app()
    at.chat_input[0].set_value(FIRST).run()
    case.act(at)
    assert not at.exception, at.exception
    assert case.expected in page_text(at)
    turns = at.session_state["conversation"].turns
    assert turns[0].text == FIRST and turns[1].role == "assistant"
    if case.typed is not None:
        kept = [t.text for t in turns if t.role == "user"] + [c.value for c in at.code]
        assert case.typed in kept


# --- the connection (sidebar) ---------------------------------------------------------------------

CLEAN_KEY = "sk-orq-clean-key-0123456789abcdef"


@pytest.fixture
def keyed_router():
    router = start_local_router(EmulatorSettings(time_scale=0, api_key=CLEAN_KEY))
    yield router
    router.stop()


KEY_CASES = [  # (ORQ_API_KEY, ORQ_BASE_URL or None for the keyed router, sidebar sentence, pages usable)
    pytest.param(f"  {CLEAN_KEY}\n", None, "Orq AI Router: reachable", True, id="key with spaces and a newline"),
    pytest.param("sk-orq-clean-key-0123\n456789abcdef ", None, "Orq AI Router: reachable", True,
                 id="key broken by inner whitespace"),
    pytest.param("sk-orq-not-the-right-one-000000", None, "The router refused the API key (401)", True,
                 id="wrong key"),
    pytest.param("sk-orq-ключ-0123456789", None, "paste it again", False, id="key with non-ASCII letters"),
    pytest.param(CLEAN_KEY, "not a url", "is not a valid http(s) URL", True, id="base URL that is not a URL"),
    pytest.param(CLEAN_KEY, "ftp://127.0.0.1/v2/router", "is not a valid http(s) URL", True,
                 id="base URL with another scheme"),
]


@pytest.mark.parametrize("key, base_url, expected, usable", KEY_CASES)
def test_connection(key, base_url, expected, usable, local_env, keyed_router, monkeypatch):
    monkeypatch.setenv("ORQ_API_KEY", key)
    monkeypatch.setenv("ORQ_BASE_URL", base_url or keyed_router.base_url)
    at = open_app()
    assert expected in page_text(at.sidebar)
    if usable:
        assert at.chat_input, "the Chat page must still be there"
    else:
        assert "No usable connection" in page_text(at)
    assert key.strip() not in page_text(at)


def test_a_pasted_key_is_sent_nowhere_until_test_connection(local_env, keyed_router, monkeypatch):
    from orq_core.client import OrqClient

    pings, real_ping = [], OrqClient.ping
    monkeypatch.setattr(OrqClient, "ping", lambda client: pings.append(client.base_url) or real_ping(client))
    monkeypatch.setenv("ORQ_BASE_URL", keyed_router.base_url)
    at = open_app()
    pings.clear()  # the local router's own ping (loopback, no key of the person's)
    by_label(at.sidebar.radio, "Connection").set_value("Orq").run()
    at.sidebar.text_input(key="typed_api_key").input(CLEAN_KEY).run()
    assert pings == [] and "Orq AI Router: reachable" not in page_text(at.sidebar)
    assert ("Not tested yet: check the base URL, then press Test connection. Nothing is sent with the key "
            "before that.") in page_text(at.sidebar)
    by_label(at.sidebar.button, "Test connection").click().run()
    assert pings == [keyed_router.base_url] and "Orq AI Router: reachable" in page_text(at.sidebar)
    at.run()
    assert len(pings) == 1 and "Orq AI Router: reachable" in page_text(at.sidebar)
    at.sidebar.text_input(key="base_url").input("http://127.0.0.1:9/v2/router").run()
    assert len(pings) == 1 and "Not tested yet" in page_text(at.sidebar)


# --- Vision / PDF ---------------------------------------------------------------------------------

def upload(*files):
    def act(at):
        at.file_uploader[0].set_value(list(files)).run()
    return act


def ask_without_question(at):
    at.text_area(key="vision_question").input("   ")
    at.button(key="vision_ask").click().run()


def broken_data_url(at):
    at.text_input(key="vision_url").input("data:image/png;base64,@@not-base64@@")
    by_label(at.button, "Add as image").click().run()


VISION_CASES = [
    Case("text renamed .png", upload(("notes.png", b"just some text, not an image", "image/png")),
         "“notes.png” is not a PNG, JPEG, GIF, WebP image or a PDF (its first bytes say so, whatever its name "
         "says)."),
    Case("empty file", upload(("empty.pdf", b"", "application/pdf")), "“empty.pdf” is empty."),
    Case("PDF over 100 pages", upload(("long.pdf", pdf(101), "application/pdf")),
         "The PDF has 101 pages; the limit is 100 pages"),
    Case("encrypted PDF", upload(("locked.pdf", pdf(1, encrypt=True), "application/pdf")),
         "This PDF is encrypted and needs a password; remove the password and try again"),
    Case("PDF renamed .png", upload(("scan.png", pdf(1), "image/png")),
         "“scan.png” is named .png but its bytes are a PDF (PDF)."),
    Case("ask without a question", ask_without_question, "Type a question first."),
    Case("broken data URL", broken_data_url, "The data URL's base64 is invalid"),
]


@pytest.mark.parametrize("case", VISION_CASES, ids=ids(VISION_CASES))
def test_vision(case, local_env):
    at = open_app("app_pages/vision.py")
    at.file_uploader[0].set_value([("kept.png", png(), "image/png")]).run()
    at.text_area(key="vision_question").input("What colour is it?").run()
    case.act(at)
    assert not at.exception, at.exception
    assert case.expected in page_text(at)
    items = at.session_state["vision_session"].items
    assert items[0].name == "kept.png" and items[0].ok
    if case.name != "ask without a question":
        assert at.text_area(key="vision_question").value == "What colour is it?"


# --- Tools ------------------------------------------------------------------------------------------

def tool(name="lookup_order", parameters=None):
    return {"name": name, "description": "Find an order",
            "parameters": parameters if parameters is not None else
            {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}}


def deep_schema(levels: int) -> dict:
    schema: dict = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"inner": schema}}
    return schema


TOOL_CASES = [  # (what is typed in the editor, the sentence expected)
    pytest.param("[{name: 'x'}]",
                 "JSON syntax error at line 1, column 3: Expecting property name enclosed in double quotes",
                 id="definitions that are not JSON"),
    pytest.param(json.dumps({"tools": 1}), "tool 1: name must be 1-64 letters, digits, _ or - (got None)",
                 id="an object that is not a tool"),
    pytest.param(json.dumps([tool("look up order")]),
                 "name must be 1-64 letters, digits, _ or - (got 'look up order')", id="a name with spaces"),
    pytest.param(json.dumps([tool(parameters={"type": "object", "properties": {"id": {"type": "strng"}}})]),
                 "parameters/properties/id/type is not valid JSON Schema: 'strng' is not valid",
                 id="a schema with an unknown type"),
    pytest.param(json.dumps([tool(parameters={"type": "string"})]),
                 'parameters must have "type": "object" at the top', id="parameters that are not an object schema"),
    pytest.param(json.dumps([tool("calculator")]),
                 "calculator: a built-in tool has this name; rename yours or untick the built-in",
                 id="a built-in's name"),
    pytest.param(json.dumps([tool(), tool()]), "tool 2 (lookup_order): the name 'lookup_order' is used twice",
                 id="two tools with one name"),
    pytest.param(json.dumps([tool(parameters=deep_schema(20))]),
                 "tool 1 (lookup_order): parameters nest more than 32 levels deep; flatten them to 32 levels or fewer",
                 id="a schema nested 40 levels"),
    pytest.param(json.dumps([tool(parameters=deep_schema(100))]),
                 "the definitions nest lists or objects more than 64 levels deep; flatten them",
                 id="a schema nested 200 levels"),
    pytest.param(json.dumps([tool(parameters={"type": "object", "properties": {"next": {"$ref": "#"}}})]),
                 "tool 1 (lookup_order): parameters/properties/next: $ref '#' leads back to a schema that holds it, "
                 "a loop with no end; spell out a fixed number of levels instead", id="a schema that refers to itself"),
    pytest.param(json.dumps([{"name": "big", "description": "word " * 300_000, "parameters": {"type": "object"}}]),
                 "The tool definitions are about 301,419 tokens, more than Claude Sonnet 4.5's 200,000-token context "
                 "window, so no request could carry them", id="definitions past the context window"),
]


@pytest.mark.parametrize("typed, expected", TOOL_CASES)
def test_tools(typed, expected, local_env):
    at = open_app("app_pages/tools.py")
    at.text_area(key="tool_editor").set_value(typed).run()
    assert not at.exception, at.exception
    errors = "\n".join(e.value for e in at.error)
    assert "These definitions are not sent until fixed" in errors and expected in errors
    assert by_label(at.button, "Run").disabled
    assert at.text_area(key="tool_editor").value == typed  # what was typed stays, to be fixed


# --- the command line -------------------------------------------------------------------------------

CLI_CASES = [
    ("unknown model", ["chat", "--model", "anthropic/claude-nope-1", "--prompt", "hi"],
     "(404): Unknown model 'claude-nope-1'"),
    ("max_tokens 0", ["chat", "--prompt", "hi", "--max-tokens", "0"],
     "error: The request was not sent: must be an integer >= 1 (field `max_tokens`). Change it and try again."),
    ("thinking budget over max_tokens", ["chat", "--prompt", "hi", "--thinking-budget", "4096", "--max-tokens", "1024"],
     "must be less than max_tokens (1,024): thinking counts against max_tokens (field `thinking.budget_tokens`)"),
    ("temperature 3", ["chat", "--prompt", "hi", "--temperature", "3"],
     "must be a number between 0 and 1 (field `temperature`)"),
    ("empty prompt", ["chat", "--prompt", ""],
     "error: Your message holds only spaces or line breaks, so there is nothing to send: give --prompt some text."),
    ("blank prompt", ["chat", "--prompt", " \n\t "],
     "error: Your message holds only spaces or line breaks, so there is nothing to send: give --prompt some text."),
    ("huge prompt", ["chat", "--prompt", HUGE], "prompt is too long"),
    ("lab with 0 requests", ["lab", "--requests", "0"], "Requests per arm must be a whole number from 1 to 200 (you gave 0)"),
    ("lab context too small", ["lab", "--context-tokens", "10"], "Context size must be 1,000 to 150,000 tokens"),
    ("lab unknown arm", ["lab", "--arms", "no-cache,turbo"],
     "error: Arms must be some of: no-cache, prompt-cache, response-cache"),
    ("lab missing context file", ["lab", "--preset", "custom", "--context-file", "/nonexistent/ctx.txt"],
     "error: Cannot use the file '/nonexistent/ctx.txt': No such file or directory. Check the path and try again."),
    ("compare five targets", ["compare", "--targets", ",".join([SONNET, f"aws/{SONNET}", f"google/{SONNET}",
                                                                "anthropic/claude-haiku-4-5-20251001",
                                                                "anthropic/claude-opus-4-5-20251101"]),
                              "--prompt", "hi"], "Compare takes 1 to 4 targets, got 5"),
    ("compare unknown target", ["compare", "--targets", f"{SONNET},nobody/claude-x", "--prompt", "hi"],
     "error: Unknown provider in 'nobody/claude-x'. Use one of: anthropic/, aws/anthropic/, google/anthropic/"),
]


@pytest.mark.parametrize("args, expected", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli(args, expected, local_env, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    assert code != 0
    lines = [line for line in err.splitlines() if not line.startswith("[answers come from")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], err
    assert "Traceback" not in err + out


def test_cli_non_ascii_key_and_binary_context_file(local_env, monkeypatch, tmp_path, capsys):
    binary = tmp_path / "context.bin"
    binary.write_bytes(b"\xff\xfe\x00binary" * 100)
    assert main(["lab", "--preset", "custom", "--context-file", str(binary), "--local"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    monkeypatch.setenv("ORQ_API_KEY", "sk-orq-ключ-0123456789")
    monkeypatch.setenv("ORQ_BASE_URL", "http://127.0.0.1:9/v2/router")
    assert main(["chat", "--prompt", "hi"]) == 2
    err = capsys.readouterr().err
    assert err == "error: The API key holds characters an HTTP header cannot carry; paste it again.\n"
    assert "ключ" not in err
