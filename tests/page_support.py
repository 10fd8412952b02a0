"""Helpers for page tests: the real entry point under AppTest, on the local router."""

from __future__ import annotations

from pathlib import Path

import streamlit.testing.v1.app_test as app_test_module
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "app.py")  # AppTest resolves relative paths from the caller
RUN_TIMEOUT_S = 120  # per script run: generous, a loaded 2-core machine runs a page several times slower


def open_app(page: str | None = None, *, timeout: float = RUN_TIMEOUT_S) -> AppTest:
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


class _KeptMediaFiles(MediaFileManager):
    """AppTest makes a media file manager per run and drops it after; this one stays reachable."""

    last: "_KeptMediaFiles | None" = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _KeptMediaFiles.last = self


def keep_media_files(monkeypatch) -> None:
    monkeypatch.setattr(app_test_module, "MediaFileManager", _KeptMediaFiles)


def downloaded(button) -> bytes:
    """What a click on a download button hands the browser (after ``keep_media_files``): the file
    stored with the page, or the one its callable builds on the click."""
    kept = _KeptMediaFiles.last
    deferred_id = button.proto.deferred_file_id
    url = kept.execute_deferred(deferred_id) if deferred_id else button.proto.url
    return kept._storage.get_file(url.rsplit("/", 1)[-1].split(".")[0]).content


def deferred_download(button) -> bytes:
    """``downloaded``, for a button whose data must be built on the click, not held by the page."""
    assert button.proto.deferred_file_id, f"{button.label!r} holds its data, it is not built on click"
    return downloaded(button)
