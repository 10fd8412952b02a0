"""The Batch page in a real browser: upload a CSV, run a small batch, see the results."""

from __future__ import annotations

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from browser import artifacts_dir, browser_page, running_app, wait_until_idle

EXCEPTION = "[data-testid='stException']"


@pytest.fixture(scope="module")
def page_url(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e_batch")
    with running_app(tmp) as url, browser_page(tmp) as page:
        yield page, url, artifacts_dir(tmp)


def upload(page, path, expected: str, attempts: int = 3) -> None:
    """Give the uploader the file until the page shows ``expected``. A file handed over while the page's
    first run is still going can be lost when that run replaces the widget (seen once in a CI run, on a
    fresh server), so the file is handed over once the page's run has ended, and again if it was still
    lost (a person's retry), at most ``attempts`` times."""
    for attempt in range(1, attempts + 1):
        wait_until_idle(page)  # the status widget shows only after a delay: it is no sign the run ended
        page.locator("[data-testid='stFileUploaderDropzoneInput']").first.set_input_files(str(path))
        try:
            page.get_by_text(expected).wait_for(timeout=30_000)
            return
        except PlaywrightTimeoutError:
            if attempt == attempts:
                raise


def test_a_small_batch_runs_on_the_page(page_url, tmp_path):
    page, url, shots = page_url
    data = tmp_path / "questions.csv"
    data.write_text("question,answer\n" + "".join(f"What is item {n}?,item {n}\n" for n in range(1, 5)),
                    encoding="utf-8")
    page.goto(url + "/batch")
    page.get_by_text("local router", exact=False).first.wait_for()
    upload(page, data, "4 rows · columns: question, answer")
    template = page.get_by_role("textbox", name="User message template")
    template.fill("Answer briefly: {{question}}")
    template.press("Tab")
    page.get_by_text("Before sending").wait_for()
    page.get_by_role("button", name="Run batch").click()
    page.get_by_text("Summary per target").wait_for()
    page.get_by_text("at 1,000 rows a day, 30 days cost", exact=False).first.wait_for()
    page.wait_for_function("() => document.querySelectorAll(\"[data-testid='stPlotlyChart'] .main-svg\").length >= 1")
    page.screenshot(path=str(shots / "batch.png"), full_page=True)
    assert page.locator(EXCEPTION).count() == 0
    body = page.inner_text("body")
    assert "anthropic/claude-sonnet-4-5-20250929: at 1,000 rows a day, 30 days cost $" in body
    assert "results are missing" not in body
    assert page.get_by_role("button", name="Export CSV").is_visible()
