"""The Notebook in headless Chromium: the standalone report opens with no network request and shows
its cost and charts; a saved notebook opened by its link runs all its cells in the real app."""

from __future__ import annotations

import re

from browser import artifacts_dir, browser_page, running_app, wait_until_idle

from orq_core.client import OrqClient
from orq_core.notebook import RunContext, demo_notebook, run_all
from orq_core.notebook_report import export_html

EXCEPTION = "[data-testid='stException']"


def test_the_report_opens_offline_with_its_cost_and_charts(local_router, tmp_path):
    nb = demo_notebook()
    with OrqClient(local_router.base_url, local_router.api_key) as client:
        list(run_all(nb, RunContext(client, local=True)))
    report = tmp_path / "report.html"
    report.write_text(export_html(nb), encoding="utf-8")
    cost = dict(nb.totals().rows())["Cost"]
    with browser_page(tmp_path) as page:
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        page.route(re.compile(r"^https?://"), lambda route: route.abort())  # counted above, never sent
        page.goto(report.as_uri())
        page.wait_for_load_state("load")
        page.locator(".plotly-graph-div .main-svg").first.wait_for()
        body = page.inner_text("body")
        charts = page.locator(".plotly-graph-div").count()
        page.screenshot(path=str(artifacts_dir(tmp_path) / "notebook_report.png"), full_page=True)
    assert [url for url in requests if not url.startswith(("file:", "data:", "blob:", "about:"))] == []
    assert "local router" in body and "synthetic" in body
    assert "Saved by caching" in body and cost in body
    assert charts == 6


def test_a_saved_notebook_opened_by_its_link_runs_all(tmp_path):
    with running_app(tmp_path) as url, browser_page(tmp_path) as page:
        page.goto(f"{url}/notebook")
        page.get_by_text("Start from the demo", exact=False).first.wait_for()
        wait_until_idle(page)  # a click during the first run may land on a button that run replaces
        page.get_by_text("Start from the demo", exact=False).first.click()
        page.get_by_text("What prompt caching saves", exact=False).first.wait_for()
        page.wait_for_function("() => location.search.includes('nb=')")
        link = page.url
        notebook_id = link.split("nb=")[1].split("&")[0]

        page.goto("about:blank")
        page.goto(link)  # a fresh browser session: the notebook comes from the store
        page.get_by_text("not run", exact=False).first.wait_for()
        wait_until_idle(page)
        assert notebook_id in page.url
        page.get_by_role("button", name=re.compile("Run all")).click()
        # Wait for Run all's end state (every badge up to date, no cell running), not for the first finished
        # cell: the cells finish one after another, seconds apart on a loaded machine.
        page.wait_for_function("() => { const text = document.body.innerText.replaceAll('Not run yet', '');"
                               " return (text.match(/up to date/g) || []).length >= 4"
                               " && !text.includes('not run') && !text.includes('Running'); }", timeout=120_000)
        page.get_by_text("cache read", exact=False).first.wait_for()
        wait_until_idle(page)  # the totals below the cells are painted by the end of Run all's run
        body = page.inner_text("body")
        page.screenshot(path=str(artifacts_dir(tmp_path) / "notebook.png"), full_page=True)
        assert page.locator(EXCEPTION).count() == 0
    assert body.count("up to date") >= 4
    assert "not run" not in body.replace("Not run yet", "")
    requests, cost = re.search(r"Requests\s+(\d+)", body), re.search(r"Cost\s+\$(\d+\.\d+)", body)
    assert requests and int(requests.group(1)) >= 12, body[:600]
    assert cost and float(cost.group(1)) > 0, body[:600]
