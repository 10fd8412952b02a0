"""Two people on one server, in a real browser: two Chromium contexts carrying different identity
headers (as an authenticating proxy would set them), on SQLite and on PostgreSQL.

B sees none of A's saved work on any page or list, A's deep link shows B "not found", and A's
work survives a restart of the app.
"""

from __future__ import annotations

import contextlib

import pytest

from browser import CHROMIUM_ARGS, PAGE_TIMEOUT_MS, chromium_path, running_app, wait_until_idle
from orq_core.store import Store
from pg_support import BACKENDS, store_target

HEADER = "X-Forwarded-Email"
ANN, BOB = "ann@example.com", "bob@example.com"
ANN_PROMPT = "Ann's plan for the quarterly launch"
SEEDED = {"experiment": "Ann's TTL experiment", "comparison": "Ann's model shoot-out",
          "tool_trace": "Ann's calculator trace", "batch": "Ann's support-ticket batch",
          "notebook": "Ann's launch notebook"}
NOT_FOUND = "Conversation not found: this link points to no conversation of yours."


@contextlib.contextmanager
def two_people():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            pages = []
            for person in (ANN, BOB):
                context = browser.new_context(viewport={"width": 1400, "height": 1000},
                                              extra_http_headers={HEADER: person})
                page = context.new_page()
                page.set_default_timeout(PAGE_TIMEOUT_MS)
                pages.append(page)
            yield pages
        finally:
            browser.close()


def visit(page, url: str, ready: str) -> str:
    page.goto(url)
    page.get_by_text(ready, exact=False).first.wait_for()
    wait_until_idle(page)  # read the page once its run has ended, not at a fixed time after the first paint
    assert page.locator("[data-testid='stException']").count() == 0
    return page.inner_text("body")


@pytest.fixture(params=BACKENDS)
def database(request, tmp_path) -> str:
    return store_target(request.param, request, tmp_path)


def test_two_people_see_only_their_own_work_and_it_survives_a_restart(database, tmp_path):
    seeding = Store(database)
    for kind, name in SEEDED.items():  # work Ann saved in earlier sessions, one of every kind
        seeding.for_owner(ANN).save_doc(kind, f"{kind}-1", name, {})
    seeding.close()
    env = {"ORQ_PLAYGROUND_DB": database, "ORQ_PLAYGROUND_USER_HEADER": HEADER, "ORQ_LOCAL_ROUTER_TIME_SCALE": "0"}

    with running_app(tmp_path, env) as url, two_people() as (ann, bob):
        body = visit(ann, url + "/", f"Signed in as {ANN}")
        box = ann.locator("[data-testid='stChatInputTextArea']")
        box.fill(ANN_PROMPT)
        box.press("Enter")
        ann.get_by_text("answered by", exact=False).first.wait_for()
        ann.wait_for_function("() => new URLSearchParams(location.search).get('c')")
        conversation_id = ann.evaluate("() => new URLSearchParams(location.search).get('c')")
        visit(ann, url + "/compare", "Open a saved comparison")  # Ann's own lists show her work
        visit(ann, url + "/batch", "Open a saved batch")
        visit(ann, url + "/notebook", "Open a saved notebook")
        body = visit(ann, url + "/history", "Requests")
        assert ANN_PROMPT not in body and "No requests match" not in body

        body = visit(bob, f"{url}/?c={conversation_id}", NOT_FOUND)
        assert ANN_PROMPT not in body and f"Signed in as {BOB}" in body
        pages = {"/": "Conversations", "/tools": "Tools", "/caching_lab": "Every run is saved here.",
                 "/compare": "Comparisons", "/batch": "Batches", "/notebook": "Notebooks",
                 "/history": "No requests match"}
        for path, ready in pages.items():
            body = visit(bob, url + path, ready)
            leaked = [name for name in [ANN_PROMPT, ANN, *SEEDED.values()] if name in body]
            assert not leaked, f"{path} shows Bob Ann's work: {leaked}"
        assert "choose a saved conversation" not in visit(bob, url + "/", "Conversations")
        assert "Open a saved comparison" not in visit(bob, url + "/compare", "Comparisons")
        assert "Saved tool traces" not in visit(bob, url + "/tools", "Tools")
        assert "Open a saved batch" not in visit(bob, url + "/batch", "Batches")
        assert "Open a saved notebook" not in visit(bob, url + "/notebook", "Notebooks")
        body = visit(bob, f"{url}/notebook?nb=notebook-1", "That notebook link opens nothing here")
        assert SEEDED["notebook"] not in body

    with running_app(tmp_path, env) as url, two_people() as (ann, bob):  # the app restarted
        body = visit(ann, f"{url}/?c={conversation_id}", ANN_PROMPT)
        assert NOT_FOUND not in body
        body = visit(bob, f"{url}/?c={conversation_id}", NOT_FOUND)
        assert ANN_PROMPT not in body

    after = Store(database)
    assert [d.id for d in after.for_owner(ANN).list_docs("conversation")] == [conversation_id]
    assert after.for_owner(BOB).list_docs("conversation") == [] and after.list_docs("conversation") == []
    assert len(after.for_owner(ANN).runs()) == 1 and after.for_owner(BOB).runs() == []
    after.close()


def test_without_the_proxy_header_the_app_refuses_with_a_sentence(tmp_path):
    env = {"ORQ_PLAYGROUND_USER_HEADER": HEADER, "ORQ_LOCAL_ROUTER_TIME_SCALE": "0"}
    from browser import browser_page

    with running_app(tmp_path, env) as url, browser_page(tmp_path) as page:
        body = visit(page, url + "/", "this request came without it")
        assert "Open the playground through the proxy's address" in body
        assert "Conversations" not in body
