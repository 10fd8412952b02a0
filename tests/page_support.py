"""Helpers for page tests: the real entry point under AppTest, on the local router."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "app.py")  # AppTest resolves relative paths from the caller


def open_app(page: str | None = None, *, timeout: float = 60) -> AppTest:
    """Run app.py (sidebar, navigation) and, when given, switch to ``app_pages/<page>``."""
    at = AppTest.from_file(APP, default_timeout=timeout)
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    assert not at.exception, at.exception
    return at


def by_label(elements, label):
    matches = [e for e in elements if e.label == label]
    assert matches, f"no widget labelled {label!r}: {[e.label for e in elements]}"
    return matches[0]
