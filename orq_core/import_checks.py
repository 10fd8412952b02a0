"""Checks shared by every file a person imports (a conversation, a trace, a dataset).

Python's json parser recurses once per nested list or object, so a file of 100,000 ``[`` ends in
RecursionError deep inside it. ``too_deep`` finds that with a flat scan first.
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Any

MAX_JSON_DEPTH = 32
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)  # unrolled: one C loop per run of plain characters
_BRACKET = re.compile(r"[\[\]{}]")


def too_deep(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when ``text`` nests lists or objects more than ``limit`` levels (brackets inside
    JSON strings do not count). A flat scan: no recursion, whatever the file holds."""
    depth = 0
    for match in _BRACKET.finditer(_STRING.sub("", text)):  # lazily: a hostile file stops at level 33
        depth += 1 if match.group() in "[{" else -1
        if depth > limit:
            return True
    return False


def shown(value: Any, limit: int = 40) -> str:
    """A value as a person would recognise it in a sentence: 'lots', -5, a list, an object, null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value if len(value) <= limit else value[:limit] + "…")
    if isinstance(value, (int, float)):
        return repr(value)
    return {list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def printable(text: str) -> str:
    """``text`` on one line, without control or invisible format characters (BEL, ESC, NUL,
    zero-width, direction overrides): what a title or a label may show."""
    return "".join(ch for ch in " ".join(text.split()) if unicodedata.category(ch) not in ("Cc", "Cf"))


def damaged(problems: list[str], shown_at_most: int = 3) -> str:
    """One sentence listing the first problems of a file, with how many more there are."""
    more = len(problems) - shown_at_most
    tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else ""
    return "; ".join(problems[:shown_at_most]) + tail
