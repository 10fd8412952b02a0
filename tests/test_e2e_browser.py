"""Every page end to end in a real browser: one `streamlit run app.py` and one headless Chromium
for the whole module, the local router behind it. Each test drives one page the way a person
would, asserts on visible text and saves a screenshot to artifacts_dir()."""

from __future__ import annotations

from pathlib import Path

import pytest
from fpdf import FPDF
from PIL import Image

from browser import artifacts_dir, browser_page, running_app, wait_until_idle

# Slow enough that an answer arrives in several paints (streaming is visible), fast enough that
# the whole module stays well under its time budget.
TIME_SCALE = "0.1"
ANSWER = "synthetic answer"
USAGE = "answered by"
EXCEPTION = "[data-testid='stException']"
CURSOR = "▌"
QUESTION = "Why is the sea salty? Think it through, then answer in 800 words."

# Records every text the page paints that holds the streaming cursor, so a test can tell that an
# answer arrived in pieces (not in one final paint).
WATCH_STREAMING = """() => {
  window.__painted = [];
  new MutationObserver(() => {
    for (const m of document.querySelectorAll("[data-testid='stChatMessage']")) {
      const text = m.innerText;
      if (text.includes("▌") && !window.__painted.includes(text)) window.__painted.push(text);
    }
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


SCROLL_HEIGHT = """() => Math.max(0, ...["stMain", "stAppScrollToBottomContainer", "stAppViewContainer"]
    .map((id) => document.querySelector(`[data-testid='${id}']`)?.scrollHeight || 0))"""


class Browser:
    def __init__(self, url: str, page, shots: Path, first_visit: str):
        self.url, self.page, self.shots, self.first_visit = url, page, shots, first_visit

    def open(self, path: str) -> None:
        self.page.goto(self.url + path)
        self.page.get_by_text("local router", exact=False).first.wait_for()
        wait_until_idle(self.page)  # widgets are used once the first run has drawn them all

    def text(self, text: str, count: int = 1):
        """Wait until ``text`` is visible ``count`` times; returns the locator."""
        found = self.page.get_by_text(text, exact=False)
        if count == 1:
            found.first.wait_for()
        else:
            self.page.wait_for_function("([t, n]) => document.body.innerText.split(t).length - 1 >= n",
                                        arg=[text, count])
        return found

    def body(self) -> str:
        return self.page.inner_text("body")

    def shot(self, name: str) -> Path:
        """The whole page: Streamlit scrolls inside its main block, so the viewport is made tall enough."""
        path = self.shots / f"{name}.png"
        size = self.page.viewport_size
        height = self.page.evaluate(SCROLL_HEIGHT)
        self.page.set_viewport_size({"width": size["width"], "height": min(max(height, size["height"]), 6000)})
        try:
            self.page.screenshot(path=str(path), full_page=True)
        finally:
            self.page.set_viewport_size(size)
        assert path.stat().st_size > 10_000
        return path

    def no_exception(self) -> None:
        assert self.page.locator(EXCEPTION).count() == 0, self.page.locator(EXCEPTION).first.inner_text()


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    with running_app(tmp, {"ORQ_LOCAL_ROUTER_TIME_SCALE": TIME_SCALE}) as url, browser_page(tmp) as page:
        # The very first visit after the server starts is a deep link: see the test below.
        page.goto(url + "/vision")
        page.get_by_text("Vision", exact=False).first.wait_for()
        wait_until_idle(page)  # what the first run painted, read when it has ended
        first_visit = page.inner_text("body")
        yield Browser(url, page, artifacts_dir(tmp), first_visit)


def png_file(folder: Path) -> Path:
    path = folder / "chart.png"
    Image.new("RGB", (640, 480), (30, 60, 220)).save(path, "PNG")
    return path


def pdf_file(folder: Path) -> Path:
    doc = FPDF()
    doc.set_title("Quarterly report")
    doc.set_font("helvetica", size=11)
    for n in range(2):
        doc.add_page()
        doc.multi_cell(0, 6, f"Section {n + 1}. Revenue grew in every region. " * 20)
    path = folder / "report.pdf"
    path.write_bytes(bytes(doc.output()))
    return path


def test_a_deep_link_opened_first_after_start_shows_the_page(ui):
    """The pages live in app_pages/, not pages/: Streamlit would run a pages/ file without app.py."""
    assert "No usable connection" not in ui.first_visit
    assert "local router" in ui.first_visit


def test_chat_streams_an_answer_with_thinking(ui):
    ui.open("/")
    page = ui.page
    page.get_by_text("Extended thinking", exact=True).click()
    ui.text("Thinking budget (tokens)")
    max_tokens = page.get_by_label("max_tokens")
    max_tokens.fill("4096")
    max_tokens.press("Enter")
    page.wait_for_function("() => document.querySelector(\"input[aria-label='max_tokens']\").value === '4096'")
    page.evaluate(WATCH_STREAMING)
    box = page.locator("[data-testid='stChatInputTextArea']")
    # A long answer (about 1,000 tokens, over a second at this time scale) so that it is painted many times
    # even when the app's script thread is starved for a while and then reads what arrived in one go.
    box.fill(QUESTION)
    box.press("Enter")
    ui.text(USAGE)
    wait_until_idle(page)  # the run that redraws the conversation has ended: nothing is replaced under the click
    answer = page.locator("[data-testid='stChatMessage']").filter(has_text=ANSWER).last
    thinking = answer.locator("[data-testid='stExpander']").filter(has_text="Thinking")
    thinking.first.click()  # open it for the screenshot
    painted = page.evaluate("() => window.__painted")
    ui.shot("chat")
    ui.no_exception()
    body = ui.body()
    assert QUESTION in body
    assert "(reasoning " in body and "finish: stop" in body
    assert len(painted) >= 2, "the answer should arrive in several paints, with the streaming cursor"
    assert CURSOR not in answer.inner_text()  # the finished answer has no cursor


def test_vision_reads_an_uploaded_image_and_pdf(ui, tmp_path):
    ui.open("/vision")
    page = ui.page
    page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(
        [str(png_file(tmp_path)), str(pdf_file(tmp_path))])
    ui.text("640 × 480 px")
    ui.text("Title: Quarterly report")
    page.get_by_label("Your question about these files").fill("What do these files show?")
    ui.text("Estimate before sending")
    page.get_by_role("button", name="Ask").click()
    ui.text(USAGE)
    ui.shot("vision")
    ui.no_exception()
    body = ui.body()
    assert "What do these files show?" in body
    assert "640×480" in body and "2 pages" in body  # the router read the real pixels and pages


def test_tools_runs_the_calculator_loop(ui):
    ui.open("/tools")
    page = ui.page
    prompt = page.get_by_label("Your message")
    prompt.fill("What is 1234 * 5678?")
    prompt.press("Tab")
    page.get_by_role("button", name="Run", exact=True).click()
    ui.text("Final answer")
    ui.shot("tools")
    ui.no_exception()
    body = ui.body()
    assert "calculator" in body and "7006652" in body
    assert "Step 2" in body and "Total:" in body


def test_caching_lab_runs_a_small_experiment_with_its_charts(ui):
    ui.open("/caching_lab")
    page = ui.page
    requests = page.get_by_label("Requests per arm")
    requests.fill("3")
    requests.press("Tab")
    page.get_by_role("button", name="Run experiment").click()
    page.get_by_role("button", name="Delete this run").wait_for()  # the finished result is shown
    ui.text("Saved · Prompt caching")
    charts = page.locator("[data-testid='stPlotlyChart']")
    page.wait_for_function("() => document.querySelectorAll(\"[data-testid='stPlotlyChart'] .main-svg\").length >= 3")
    assert charts.count() >= 3 and all(charts.nth(i).is_visible() for i in range(3))
    ui.shot("caching_lab")
    ui.no_exception()
    body = ui.body()
    assert "Hit rate · Prompt caching" in body and "67%" in body  # requests 2 and 3 of 3 read the cache
    assert "· 6 requests" in body and "did not complete" not in body


def test_compare_two_columns_side_by_side(ui):
    ui.open("/compare")
    page = ui.page
    two = page.get_by_role("radiogroup", name="Columns").get_by_role("radio", name="2", exact=True)
    two.click()
    page.wait_for_function("() => document.body.innerText.includes('Column 2') && "
                           "!document.body.innerText.includes('Column 3')")
    box = page.locator("[data-testid='stChatInputTextArea']")
    box.fill("Explain prompt caching in one paragraph.")
    box.press("Enter")
    ui.text(USAGE, count=2)
    ui.text("Latest turn, side by side")
    page.locator("[data-testid='stDataFrame']").first.wait_for()
    ui.shot("compare")
    ui.no_exception()
    body = ui.body()
    assert body.count("Explain prompt caching in one paragraph.") >= 2
    assert "anthropic/claude-sonnet-4-5-20250929" in body and "aws/anthropic/claude-sonnet-4-5-20250929" in body


def test_compare_columns_can_be_told_apart_at_1024x768(ui):
    page = ui.page
    page.set_viewport_size({"width": 1024, "height": 768})
    try:
        ui.open("/compare")
        three = page.get_by_role("radiogroup", name="Columns").get_by_role("radio", name="3", exact=True)
        three.click()
        page.wait_for_function("() => document.body.innerText.includes('Column 3')")
        wait_until_idle(page)  # the run that draws the third column has ended
        shown = [page.get_by_role("combobox", name=f"Column {i}").input_value() for i in (1, 2, 3)]
        ui.shot("compare_1024x768")
        assert [text.split(" · ")[0] for text in shown] == ["Anthropic", "Bedrock", "Vertex"]
        body = ui.body()
        for full in ("Anthropic (direct) · Claude Sonnet 4.5", "AWS Bedrock · Claude Sonnet 4.5",
                     "Google Vertex AI · Claude Sonnet 4.5"):
            assert full in " ".join(body.split())
    finally:
        page.set_viewport_size({"width": 1400, "height": 1000})
