"""Benchmark: time from pressing Enter in Chat to the first token painted in a real browser, against
the local router with no simulated latency (time_scale 0), so what is measured is the app itself:
Streamlit's round trip, the script run, the request over loopback and the repaint.

    python benchmarks/bench_browser.py [--sends 7]

Measured inside the page with performance.now(): a capture-phase keydown listener stamps the
Enter, a MutationObserver stamps the first moment the new answer's text (the router's synthetic
answer starts with "synthetic answer") is in the DOM. Also the time to the finished turn (its
usage line painted) and, as a cross-check, the wall time around press + wait seen from Python.
Median of N sends in one conversation, after one warm-up send. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from bench_startup import machine, median_table  # noqa: E402
from browser import browser_page, running_app  # noqa: E402

INPUT = "[data-testid='stChatInputTextArea']"
ANSWER_MARK = "synthetic answer"
DONE_MARK = "answered by"

# Stamps Enter and the first paint of answer number `answers + 1`, and its usage line.
ARM = """([answerMark, doneMark]) => {
  const count = (mark) => [...document.querySelectorAll("[data-testid='stChatMessage']")]
      .filter((m) => m.textContent.includes(mark)).length;
  const before = {answer: count(answerMark), done: count(doneMark)};
  const t = window.__bench = {enter: null, first: null, done: null};
  document.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && t.enter === null) t.enter = performance.now();
  }, {capture: true, once: true});
  const observer = new MutationObserver(() => {
    if (t.enter === null) return;
    const now = performance.now();
    if (t.first === null && count(answerMark) > before.answer) t.first = now;
    if (t.done === null && count(doneMark) > before.done) { t.done = now; observer.disconnect(); }
  });
  observer.observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def one_send(page, text: str) -> tuple[float, float, float]:
    """(ms to first token painted, ms to the finished turn, wall ms from Python) for one send."""
    page.evaluate(ARM, [ANSWER_MARK, DONE_MARK])
    box = page.locator(INPUT)
    box.fill(text)
    started = time.perf_counter()
    box.press("Enter")
    page.wait_for_function("() => window.__bench.first !== null")
    wall = (time.perf_counter() - started) * 1000
    page.wait_for_function("() => window.__bench.done !== null")
    stamps = page.evaluate("() => window.__bench")
    return stamps["first"] - stamps["enter"], stamps["done"] - stamps["enter"], wall


def measure(sends: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"first": [], "done": [], "wall": []}
    with tempfile.TemporaryDirectory() as tmp, running_app(Path(tmp)) as url, browser_page(Path(tmp)) as page:
        page.goto(url)
        page.locator(INPUT).wait_for(state="visible")
        page.get_by_text("local router", exact=False).first.wait_for()
        one_send(page, "Warm-up: what is prompt caching?")
        for n in range(sends):
            first, done, wall = one_send(page, f"Question {n + 1}: how does the cache TTL work?")
            results["first"].append(first)
            results["done"].append(done)
            results["wall"].append(wall)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sends", type=int, default=7)
    args = parser.parse_args()
    results = measure(args.sends)
    print(f"Machine: {machine()}; headless Chromium, local router at time_scale 0, median of {args.sends} sends "
          "after a warm-up\n")
    print(median_table("Chat, in the browser", "ms", {
        "first": "Enter -> first token painted (performance.now)",
        "done": "Enter -> turn finished, usage line painted",
        "wall": "press + wait for first token, seen from Python"}, results, fmt=",.0f"))


if __name__ == "__main__":
    main()
