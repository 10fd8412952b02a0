"""Smoke test in a real browser: type in Chat, watch the streamed answer arrive, save a screenshot."""

from browser import artifacts_dir, browser_page, running_app, wait_until_idle


def test_chat_in_headless_chromium(tmp_path):
    with running_app(tmp_path) as url, browser_page(tmp_path) as page:
        page.goto(url)
        page.get_by_text("local router", exact=False).first.wait_for()
        wait_until_idle(page)
        box = page.locator("[data-testid='stChatInputTextArea']")
        box.fill("What does prompt caching save?")
        box.press("Enter")
        answer = page.locator("[data-testid='stChatMessage']").filter(has_text="synthetic")
        answer.first.wait_for()
        page.get_by_text("answered by", exact=False).first.wait_for()
        shot = artifacts_dir(tmp_path) / "chat.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        body = page.inner_text("body")
        assert "What does prompt caching save?" in body
        assert "TTFT" in body
