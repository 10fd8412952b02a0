"""Reading a request body as JSON: ``json.loads``'s result, faster on long prompts.

orjson reads a long string several times faster than the standard library (a 100K-token prefix
is 400 KB of one string: ~0.3 ms with ``json.loads``, ~0.1 ms with orjson), and parsing it is
most of what a cached long prefix costs the router. orjson accepts a subset of what ``json.loads``
accepts and reads it to the same values, with one exception: an integer past 64 bits becomes a
float. So the standard library decides, with its own result or error, whenever orjson refuses
the body (NaN and Infinity, a lone surrogate, a byte-order mark, UTF-16, nesting past 1,024
levels, any invalid JSON) or returns a float of 2**63 or more (which such an integer became).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_HUGE = float(2 ** 63)


def parse_body(body: bytes) -> Any:
    """``json.loads(body)``: the same value, or the same exception; except that a string holding
    an unpaired UTF-16 surrogate (``"\\ud800"``) is refused, as Anthropic's parser refuses it
    (400 "The request body is not valid JSON: no low surrogate in string: ...", seen in many public
    reports): such a string is no Unicode text, and nothing downstream can encode it."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:  # orjson refuses unpaired surrogates too: only this path can hold one
        value = json.loads(body)
        _refuse_unpaired_surrogates(value)
        return value
    return json.loads(body) if _holds_a_huge_float(value) else value


class UnpairedSurrogate(ValueError):
    pass


def _refuse_unpaired_surrogates(value: Any) -> None:
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is dict:
            pending.extend(item.keys())
            pending.extend(item.values())
        elif kind is list:
            pending.extend(item)
        elif kind is str:
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as error:
                raise UnpairedSurrogate(f"no low surrogate in string (an unpaired \\u{ord(item[error.start]):04x} "
                                        f"escape at character {error.start} of a string)") from None


def _holds_a_huge_float(value: Any) -> bool:
    # Its own walk, not a shared generator of scalars: this one runs on every request, and
    # skipping keys and the generator keeps it at 13 rather than 33 µs for a 30-message body.
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is dict:
            pending.extend(item.values())
        elif kind is list:
            pending.extend(item)
        elif kind is float and not -_HUGE < item < _HUGE:
            return True
    return False
