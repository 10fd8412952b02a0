"""Tool-call arguments made up by the local router: values that validate against the tool's
JSON Schema, filled from the user's words where a property's name says what it wants
(a city for "location", the arithmetic for "expression", numbers for numeric parameters).

Supported: type (and type lists), enum, const, properties/required, nested objects, arrays
(items, prefixItems, minItems, maxItems, uniqueItems), minimum/maximum (exclusive too),
multipleOf, minLength/maxLength, simple patterns, format date/date-time/time/email/uri/uuid,
anyOf/oneOf (first branch that works), allOf (merged), local $ref, default, examples.
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?|(?<![\w.)])-\d+(?:\.\d+)?")
_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_URL = re.compile(r"https?://[^\s<>\"')\]]+")
_TIMEZONE = re.compile(r"\b(?:[A-Z][a-z]+/[A-Z][A-Za-z_]+|UTC|GMT)\b")
_FUNCS = r"(?:sqrt|sin|cos|tan|log|ln|exp|abs|round)"
_ATOM = rf"(?:{_FUNCS}?\(\s*)*-?\d+(?:\.\d+)?(?:\s*\))*"
_EXPRESSION = re.compile(rf"{_ATOM}(?:\s*(?:\*\*|[-+*/^%×÷])\s*{_ATOM})+|{_FUNCS}\(\s*[^()]+\)")
_CAPITALISED = re.compile(r"\b[A-Z][a-zà-ÿ]+(?:[ -][A-Z][a-zà-ÿ]+)*")
_AFTER_PREPOSITION = re.compile(r"\b(?:in|at|for|near|from|to)\s+([a-z][a-z]{2,})\b")
_CONVERSION = re.compile(r"(-?\d+(?:\.\d+)?)\s*(°?[A-Za-z]+)\s+(?:to|into|in|as)\s+(°?[A-Za-z]+)")
_WORD = re.compile(r"[a-z0-9]+")
_SEARCH_LEAD = re.compile(r"^(?:please\s+)?(?:(?:can|could|would)\s+you\s+)?(?:please\s+)?"
                          r"(?:search(?:\s+the\s+web)?(?:\s+for)?|look\s+up|find|google)\s+", re.I)

# Capitalised words that are not places or names.
_NOT_PLACES = frozenset("""
a an the i i'm i'd what what's whats how is are was were can could would should will do does did
please tell give find show get convert calculate compute compare use call check make create send
write list search look who where when why which and or but if then also hi hello hey thanks thank
today tomorrow yesterday now monday tuesday wednesday thursday friday saturday sunday january
february march april may june july august september october november december celsius fahrenheit
kelvin ok okay yes no my our your their this that these those let let's it it's in on at for to
""".split())
_NOT_LOWER_PLACES = frozenset("the a an my our your this that celsius fahrenheit kelvin order total "
                              "general detail details short long words".split())

_UNIT_ALIASES = {
    "km": "kilometers", "kms": "kilometers", "kilometre": "kilometers", "kilometres": "kilometers",
    "kilometer": "kilometers", "mi": "miles", "mile": "miles", "m": "meters", "metre": "meters",
    "metres": "meters", "meter": "meters", "ft": "feet", "foot": "feet", "kg": "kilograms",
    "kilogram": "kilograms", "lb": "pounds", "lbs": "pounds", "pound": "pounds", "g": "grams",
    "gram": "grams", "c": "celsius", "°c": "celsius", "f": "fahrenheit", "°f": "fahrenheit",
    "l": "liters", "litre": "liters", "litres": "liters", "liter": "liters", "gal": "gallons",
    "gallon": "gallons", "in": "inches", "inch": "inches", "cm": "centimeters",
}

_PLACE_NAMES = {"location", "city", "place", "town", "country", "destination", "origin", "address",
                "region", "where", "locations", "cities", "places"}
_EXPRESSION_NAMES = {"expression", "expr", "formula", "equation", "calculation", "math"}
_QUERY_NAMES = {"query", "q", "search", "prompt", "question", "text", "input", "message", "content",
                "keywords", "term", "terms"}
_FROM_UNIT = {"from", "from_unit", "source_unit", "unit_from", "input_unit", "fromunit"}
_TO_UNIT = {"to", "to_unit", "target_unit", "unit_to", "output_unit", "tounit"}
_COUNT_NAMES = {"count", "limit", "n", "num", "max_results", "top_k", "k", "size", "page_size",
                "num_results", "results"}
_DEFAULT_DATE = "2025-06-02"


@dataclass(frozen=True)
class Hints:
    """What the user's message offers for filling arguments."""

    text: str = ""
    numbers: tuple[float, ...] = ()
    places: tuple[str, ...] = ()
    expression: str | None = None
    emails: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()
    dates: tuple[str, ...] = ()
    timezones: tuple[str, ...] = ()
    conversion: tuple[float, str, str] | None = None
    words: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_text(cls, text: str) -> "Hints":
        text = text or ""
        dates = tuple(_DATE.findall(text))
        urls = tuple(u.rstrip(".,;:!?") for u in _URL.findall(text))
        plain = _URL.sub(" ", _DATE.sub(" ", text))
        emails = tuple(_EMAIL.findall(plain))
        plain = _EMAIL.sub(" ", plain)
        timezones = tuple(_TIMEZONE.findall(plain))
        plain = _TIMEZONE.sub(" ", plain)
        expression = _find_expression(plain)
        conversion = _CONVERSION.search(plain)
        return cls(
            text=text.strip(),
            numbers=tuple(float(n) for n in _NUMBER.findall(plain)),
            places=_find_places(plain),
            expression=expression,
            emails=emails, urls=urls, dates=dates,
            timezones=timezones,
            conversion=(float(conversion.group(1)), conversion.group(2), conversion.group(3)) if conversion else None,
            words=frozenset(_WORD.findall(text.lower())),
        )

    def with_place(self, place: str) -> "Hints":
        return replace(self, places=(place,))


def _find_expression(text: str) -> str | None:
    match = _EXPRESSION.search(text)
    if not match:
        return None
    expression = _balance(match.group(0).strip())
    return expression.replace("×", "*").replace("÷", "/").replace("^", "**")


def _balance(expression: str) -> str:
    while expression.count("(") > expression.count(")") and expression.startswith("("):
        expression = expression[1:].lstrip()
    while expression.count(")") > expression.count("(") and expression.endswith(")"):
        expression = expression[:-1].rstrip()
    return expression


def _find_places(text: str) -> tuple[str, ...]:
    found: list[str] = []
    for match in _CAPITALISED.finditer(text):
        words = match.group(0).split()
        while words and words[0].lower() in _NOT_PLACES:
            words.pop(0)
        candidate = " ".join(words)
        if candidate and candidate.lower() not in _NOT_PLACES and candidate not in found:
            found.append(candidate)
    if not found:
        found = [w.capitalize() for w in _AFTER_PREPOSITION.findall(text) if w not in _NOT_LOWER_PLACES][:1]
    return tuple(found)


def name_words(name: str) -> list[str]:
    """'getWeather' / 'get_weather' / 'get-weather' -> ['get', 'weather']."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name or "")
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


# --- generation --------------------------------------------------------------------------------

def fake_arguments(schema: dict | None, hints: Hints) -> dict:
    """A JSON object that validates against ``schema`` (best effort for exotic schemas)."""
    if not isinstance(schema, dict) or not schema:
        return {}
    value = _Generator(schema, hints).value(schema, "")
    if not isinstance(value, dict):
        value = {}
    if _valid(value, schema):
        return value
    plain = _Generator(schema, Hints()).value(schema, "")
    return plain if isinstance(plain, dict) and _valid(plain, schema) else value


def _valid(value: Any, schema: dict) -> bool:
    try:
        from jsonschema import FormatChecker
        from jsonschema.exceptions import SchemaError
        from jsonschema.validators import validator_for
    except ImportError:  # validation is a safety net only
        return True
    try:
        validator = validator_for(schema)(schema, format_checker=FormatChecker())
        return validator.is_valid(value)
    except (SchemaError, Exception):  # an odd schema: trust the generator
        return True


class _Generator:
    def __init__(self, root: dict, hints: Hints):
        self.root = root
        self.hints = hints
        self._next_number = 0
        self._depth = 0

    # dispatch

    def value(self, schema: Any, name: str) -> Any:
        if not isinstance(schema, dict):
            return self._string({}, name) if schema is not False else None
        self._depth += 1
        try:
            return self._value(self._resolve(schema), name)
        finally:
            self._depth -= 1

    def _value(self, schema: dict, name: str) -> Any:
        if self._depth > 24:
            return None
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self._enum(schema["enum"], name)
        if isinstance(schema.get("allOf"), list):
            return self._value(self._merge_all_of(schema), name)
        for key in ("oneOf", "anyOf"):
            if isinstance(schema.get(key), list) and schema[key]:
                return self._branch(schema, key, name)
        kind = _schema_type(schema)
        hinted = self._hinted(schema, kind, name)
        if hinted is not None:
            return hinted
        if "default" in schema and _valid(schema["default"], {**schema, **self._defs()}):
            return schema["default"]
        examples = schema.get("examples")
        if isinstance(examples, list) and examples and _valid(examples[0], {**schema, **self._defs()}):
            return examples[0]
        return getattr(self, f"_{kind}", self._string)(schema, name)

    def _defs(self) -> dict:
        return {k: self.root[k] for k in ("$defs", "definitions") if k in self.root}

    def _resolve(self, schema: dict) -> dict:
        seen = 0
        while isinstance(schema.get("$ref"), str) and schema["$ref"].startswith("#") and seen < 16:
            target = self._pointer(schema["$ref"])
            extra = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **extra} if isinstance(target, dict) else extra
            seen += 1
        return schema

    def _pointer(self, ref: str) -> Any:
        node: Any = self.root
        for part in ref.lstrip("#").split("/"):
            if not part:
                continue
            part = part.replace("~1", "/").replace("~0", "~")
            node = node.get(part) if isinstance(node, dict) else None
        return node

    def _merge_all_of(self, schema: dict) -> dict:
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        for sub in schema["allOf"]:
            sub = self._resolve(sub) if isinstance(sub, dict) else {}
            for key, val in sub.items():
                if key == "properties":
                    merged["properties"] = {**merged.get("properties", {}), **val}
                elif key == "required":
                    merged["required"] = list(dict.fromkeys([*merged.get("required", []), *val]))
                else:
                    merged.setdefault(key, val)
        return merged

    def _branch(self, schema: dict, key: str, name: str) -> Any:
        rest = {k: v for k, v in schema.items() if k not in ("oneOf", "anyOf")}
        branches = [{**rest, **self._resolve(b)} if isinstance(b, dict) else b for b in schema[key]]
        first = None
        for branch in branches:
            if isinstance(branch, dict) and branch.get("type") == "null" and len(branches) > 1:
                continue  # prefer a real value over null
            value = self.value(branch, name)
            first = value if first is None else first
            for candidate in (value, *_variants(value)):
                matches = sum(_valid(candidate, {**b, **self._defs()}) if isinstance(b, dict) else bool(b)
                              for b in branches)
                if (matches == 1 if key == "oneOf" else matches >= 1):
                    return candidate
        return first

    # values from the user's words

    def _hinted(self, schema: dict, kind: str, name: str) -> Any:
        words = set(name_words(name))
        key = name.lower()
        h = self.hints
        if kind == "string":
            return self._hinted_string(schema, key, words)
        if kind in ("number", "integer") and (h.numbers or h.conversion):
            if h.conversion and (words & {"value", "amount", "quantity"}):
                return self._number(schema, name, h.conversion[0])
            if self._next_number < len(h.numbers):
                value = h.numbers[self._next_number]
                self._next_number += 1
                return self._number(schema, name, value)
        if kind == "boolean" and words - {"is", "include", "use", "enable", "with", "show"} & h.words:
            return True
        if kind == "array":
            return self._hinted_array(schema, key, words)
        return None

    def _hinted_string(self, schema: dict, key: str, words: set[str]) -> str | None:
        h = self.hints
        fmt = schema.get("format")
        candidates: list[str] = []
        if fmt == "email" or words & {"email", "mail", "recipient"}:
            candidates += list(h.emails)
        if fmt in ("uri", "url", "iri") or words & {"url", "uri", "link", "website", "href"}:
            candidates += list(h.urls)
        if fmt == "date" or words & {"date", "day"}:
            candidates += list(h.dates)
        if key in _EXPRESSION_NAMES or words & _EXPRESSION_NAMES:
            candidates += [h.expression] if h.expression else []
        if key in _PLACE_NAMES or words & _PLACE_NAMES:
            candidates += list(h.places)
        if words & {"timezone", "tz", "zone"}:
            candidates += list(h.timezones)
        if h.conversion and (key in _FROM_UNIT or key in _TO_UNIT):
            candidates.append(_unit_name(h.conversion[1] if key in _FROM_UNIT else h.conversion[2]))
        if key in _QUERY_NAMES or (words & _QUERY_NAMES and not candidates):
            candidates.append(_query_text(h.text))
        if key == "id" or key.endswith("_id") or key.endswith("id") and words & {"id"}:
            candidates += [_number_text(n) for n in h.numbers]
        for candidate in candidates:
            fitted = _fit_string(candidate, schema)
            if fitted is not None:
                return fitted
        return None

    def _hinted_array(self, schema: dict, key: str, words: set[str]) -> list | None:
        items = self._resolve(schema.get("items")) if isinstance(schema.get("items"), dict) else None
        if items is None:
            return None
        item_kind = _schema_type(items)
        values: list = []
        if item_kind == "string" and (key in _PLACE_NAMES or words & _PLACE_NAMES):
            values = [v for v in (_fit_string(p, items) for p in self.hints.places) if v is not None]
        elif item_kind in ("number", "integer") and len(self.hints.numbers) > 1:
            values = [self._number(items, key, n) for n in self.hints.numbers]
        if not values:
            return None
        low, high = schema.get("minItems", 0), schema.get("maxItems", len(values))
        values = values[:high]
        if len(values) < low:
            return None
        if schema.get("uniqueItems") and len({repr(v) for v in values}) != len(values):
            return None
        return values

    # plain values from the schema

    def _enum(self, options: list, name: str) -> Any:
        if self.hints.conversion and name.lower() in (_FROM_UNIT | _TO_UNIT):
            wanted = _unit_name(self.hints.conversion[1 if name.lower() in _FROM_UNIT else 2])
            for option in options:
                if isinstance(option, str) and _unit_name(option) == wanted:
                    return option
        text = self.hints.text.lower()
        for option in options:
            if isinstance(option, str) and option and re.search(rf"\b{re.escape(option.lower())}\b", text):
                return option
        return options[0]

    def _object(self, schema: dict, name: str) -> dict:
        props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        required = [r for r in schema.get("required", []) if isinstance(r, str)]
        out: dict = {}
        for prop, sub in props.items():
            if prop in required:
                out[prop] = self.value(sub, prop)
            else:
                hinted = self._optional(sub, prop)
                if hinted is not None:
                    out[prop] = hinted
        for prop in required:
            if prop not in out:
                out[prop] = self.value(schema.get("additionalProperties", {}) if isinstance(
                    schema.get("additionalProperties"), dict) else {}, prop)
        for prop, sub in props.items():
            if len(out) >= schema.get("minProperties", 0):
                break
            out.setdefault(prop, self.value(sub, prop))
        return out

    def _optional(self, schema: Any, name: str) -> Any:
        """An optional property is filled only when the user's words give its value."""
        if not isinstance(schema, dict):
            return None
        schema = self._resolve(schema)
        if isinstance(schema.get("enum"), list):
            text = self.hints.text.lower()
            hit = [o for o in schema["enum"] if isinstance(o, str) and o
                   and re.search(rf"\b{re.escape(o.lower())}\b", text)]
            return hit[0] if hit else None
        kind = _schema_type(schema)
        if kind in ("number", "integer"):
            return None  # numbers in the text belong to the required parameters first
        return self._hinted(schema, kind, name)

    def _array(self, schema: dict, name: str) -> list:
        prefix = schema.get("prefixItems") or (schema["items"] if isinstance(schema.get("items"), list) else None)
        if prefix:
            return [self.value(sub, name) for sub in prefix]
        items = schema.get("items", {}) if isinstance(schema.get("items"), dict) else {}
        count = max(int(schema.get("minItems", 0) or 0), 1)
        if isinstance(schema.get("maxItems"), int):
            count = min(count, schema["maxItems"])
        values: list = []
        for index in range(count):
            value = self.value(items, name)
            if schema.get("uniqueItems"):
                value = _distinct(value, values, self._resolve(items) if isinstance(items, dict) else {}, index)
            values.append(value)
        return values

    def _string(self, schema: dict, name: str) -> str:
        base = _format_value(schema.get("format"), name) or self._default_text(name)
        fitted = _fit_string(base, schema)
        if fitted is not None:
            return fitted
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            generated = string_from_pattern(pattern, schema.get("minLength", 0), schema.get("maxLength"))
            if generated is not None:
                return generated
        return _pad(base, schema)

    def _default_text(self, name: str) -> str:
        words = set(name_words(name))
        if words & _PLACE_NAMES:
            return "San Francisco, CA"
        if words & {"timezone", "tz"}:
            return "UTC"
        if words & {"language", "lang", "locale"}:
            return "en"
        if words & {"unit", "units"}:
            return "metric"
        if words & _EXPRESSION_NAMES:
            return "1 + 1"
        if self.hints.text and words & _QUERY_NAMES:
            return _query_text(self.hints.text)
        keywords = [w for w in _WORD.findall(self.hints.text.lower()) if len(w) > 3 and not w.isdigit()]
        return " ".join(keywords[:3]) or "example"

    def _number(self, schema: dict, name: str, preferred: float | None = None) -> float | int:
        integer = _schema_type(schema) == "integer"
        if preferred is None:
            preferred = 3 if name.lower() in _COUNT_NAMES else 1
        return _bounded_number(schema, preferred, integer)

    def _integer(self, schema: dict, name: str) -> int:
        return self._number(schema, name)

    def _boolean(self, schema: dict, name: str) -> bool:
        return False

    def _null(self, schema: dict, name: str) -> None:
        return None


def _variants(value: Any) -> list:
    """Nearby values to try when a oneOf needs one that fits exactly one branch."""
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, (int, float)):
        return [value + 0.5, -value - 1, value * 10 + 0.5]
    if isinstance(value, str):
        return [value + "x", value[:1]]
    return []


def _schema_type(schema: dict) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
    if isinstance(kind, str):
        return kind
    if "properties" in schema or "required" in schema or "additionalProperties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema or "minItems" in schema:
        return "array"
    if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")):
        return "number"
    return "string"


def _bounded_number(schema: dict, value: float, integer: bool) -> float | int:
    low, high = schema.get("minimum"), schema.get("maximum")
    ex_low, ex_high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    step = 1 if integer else 0.5
    if ex_low is True and low is not None:  # draft 4 form: a flag beside minimum
        ex_low, low = low, None
    if ex_high is True and high is not None:
        ex_high, high = high, None
    if isinstance(ex_low, (int, float)) and not isinstance(ex_low, bool) and value <= ex_low:
        value = math.floor(ex_low) + 1 if integer else ex_low + min(step, _gap(ex_low, ex_high, high))
    if isinstance(low, (int, float)) and value < low:
        value = low
    if isinstance(ex_high, (int, float)) and not isinstance(ex_high, bool) and value >= ex_high:
        value = math.ceil(ex_high) - 1 if integer else ex_high - min(step, _gap(ex_low, ex_high, low))
    if isinstance(high, (int, float)) and value > high:
        value = high
    if integer:
        value = int(math.ceil(value)) if isinstance(low, (int, float)) and math.ceil(value) <= (
            high if isinstance(high, (int, float)) else math.inf) else int(round(value))
    multiple = schema.get("multipleOf")
    if isinstance(multiple, (int, float)) and multiple > 0:
        value = _multiple_near(value, multiple, schema, integer)
    if not integer and isinstance(value, float) and value.is_integer():
        value = int(value)  # 3 rather than 3.0: still a valid "number"
    return value


def _gap(ex_low: Any, ex_high: Any, other: Any) -> float:
    bounds = [b for b in (ex_low, ex_high, other) if isinstance(b, (int, float)) and not isinstance(b, bool)]
    if len(bounds) >= 2:
        return abs(bounds[1] - bounds[0]) / 2 or 0.5
    return 0.5


def _multiple_near(value: float, multiple: float, schema: dict, integer: bool) -> float | int:
    start = math.ceil(value / multiple)
    for k in [start + i for i in range(0, 50)] + [start - i for i in range(1, 50)]:
        candidate = k * multiple
        if isinstance(multiple, float):
            candidate = round(candidate, 12)
            if not (candidate / multiple).is_integer():
                continue
        if integer and not float(candidate).is_integer():
            continue
        if _within(candidate, schema):
            return int(candidate) if integer else candidate
    return value


def _within(value: float, schema: dict) -> bool:
    low, high = schema.get("minimum"), schema.get("maximum")
    ex_low, ex_high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if ex_low is True:
        ex_low, low = low, None
    if ex_high is True:
        ex_high, high = high, None
    checks = [(low, lambda b: value >= b), (high, lambda b: value <= b),
              (ex_low, lambda b: value > b), (ex_high, lambda b: value < b)]
    return all(ok(b) for b, ok in checks if isinstance(b, (int, float)) and not isinstance(b, bool))


def _format_value(fmt: Any, name: str) -> str | None:
    return {
        "date": _DEFAULT_DATE, "date-time": f"{_DEFAULT_DATE}T12:00:00Z", "time": "12:00:00Z",
        "email": "someone@example.com", "idn-email": "someone@example.com",
        "uri": "https://example.com/", "url": "https://example.com/", "iri": "https://example.com/",
        "uri-reference": "https://example.com/", "hostname": "example.com",
        "ipv4": "192.0.2.1", "ipv6": "2001:db8::1",
        "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, name or "value")),
    }.get(fmt) if isinstance(fmt, str) else None


def _fit_string(value: str, schema: dict) -> str | None:
    """``value`` if it meets the schema's length and pattern (after trimming), else None."""
    if not isinstance(value, str):
        return None
    max_length = schema.get("maxLength")
    if isinstance(max_length, int) and len(value) > max_length:
        value = value[:max_length].rstrip() or value[:max_length]
    if len(value) < (schema.get("minLength") or 0):
        return None
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        try:
            if not re.search(pattern, value):
                return None
        except re.error:
            return None
    fmt = schema.get("format")
    if fmt == "date" and not _DATE.fullmatch(value):
        return None
    if fmt == "email" and not _EMAIL.fullmatch(value):
        return None
    if fmt in ("uri", "url") and not _URL.fullmatch(value):
        return None
    return value


def _pad(value: str, schema: dict) -> str:
    min_length = schema.get("minLength") or 0
    if len(value) < min_length:
        value = (value + " " + "x" * min_length)[:max(min_length, len(value))] if value else "x" * min_length
    max_length = schema.get("maxLength")
    if isinstance(max_length, int):
        value = value[:max_length]
    return value


def _distinct(value: Any, previous: list, items: dict, index: int) -> Any:
    if value not in previous:
        return value
    options = items.get("enum")
    if isinstance(options, list):
        return next((o for o in options if o not in previous), value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        step = items.get("multipleOf", 1)
        candidate = value + step * index
        return candidate if _within(candidate, items) else value - step * index
    if isinstance(value, str):
        suffix = f"-{index + 1}"
        max_length = items.get("maxLength")
        if isinstance(max_length, int) and len(value) + len(suffix) > max_length:
            return (value[:max(0, max_length - len(suffix))] + suffix)[-max_length:]
        return value + suffix
    return value


def _query_text(text: str) -> str:
    query = _SEARCH_LEAD.sub("", text.strip()).strip().rstrip("?.!").strip()
    return query[:200] or text[:200]


def _unit_name(unit: str) -> str:
    unit = unit.lower().strip()
    return _UNIT_ALIASES.get(unit, unit if unit.endswith("s") or unit in ("celsius", "fahrenheit", "kelvin")
                             else unit + "s")


def _number_text(n: float) -> str:
    return str(int(n)) if float(n).is_integer() else str(n)


# --- strings from a regular expression ----------------------------------------------------------

def string_from_pattern(pattern: str, min_length: int = 0, max_length: int | None = None) -> str | None:
    """A string that ``re.search(pattern)`` accepts, for the simple patterns tool schemas use
    (literals, classes, \\d \\w, groups, alternation, quantifiers). None when it cannot."""
    try:
        import re._parser as sre_parse  # the stdlib's own regex parser: no new dependency
        parsed = sre_parse.parse(pattern)
    except Exception:
        return None
    for extra in (0, 1, 2, 4, 8, 16, 32, 64):
        try:
            candidate = _emit(list(parsed), extra)
        except _Unsupported:
            return None
        if len(candidate) >= min_length and (max_length is None or len(candidate) <= max_length) \
                and re.search(pattern, candidate):
            return candidate
    return None


class _Unsupported(Exception):
    pass


def _emit(items: list, extra: int) -> str:
    from re import _constants as c

    out: list[str] = []
    for op, arg in items:
        if op is c.LITERAL:
            out.append(chr(arg))
        elif op is c.NOT_LITERAL:
            out.append("a" if chr(arg) != "a" else "b")
        elif op is c.ANY:
            out.append("a")
        elif op is c.IN:
            out.append(_from_class(arg))
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", None)):
            low, high, sub = arg
            high = 10**6 if high is c.MAXREPEAT else high
            times = min(high, low + extra) if high >= 1 else 0
            out.append("".join(_emit(list(sub), extra) for _ in range(times)))
        elif op is c.SUBPATTERN:
            out.append(_emit(list(arg[-1]), extra))
        elif op is getattr(c, "ATOMIC_GROUP", None):
            out.append(_emit(list(arg), extra))
        elif op is c.BRANCH:
            out.append(_emit(list(arg[1][0]), extra))
        elif op is c.CATEGORY:
            out.append(_from_category(arg))
        elif op in (c.AT, c.ASSERT, c.ASSERT_NOT):
            continue
        else:
            raise _Unsupported(str(op))
    return "".join(out)


def _from_class(members: list) -> str:
    from re import _constants as c

    negate = any(op is c.NEGATE for op, _ in members)
    allowed = [m for m in members if m[0] is not c.NEGATE]
    if negate:
        for char in "aA0x_-. ":
            if not any(_class_member_matches(m, char) for m in allowed):
                return char
        raise _Unsupported("negated class")
    op, arg = allowed[0]
    if op is c.LITERAL:
        return chr(arg)
    if op is c.RANGE:
        return chr(arg[0])
    if op is c.CATEGORY:
        return _from_category(arg)
    raise _Unsupported(str(op))


def _class_member_matches(member: tuple, char: str) -> bool:
    from re import _constants as c

    op, arg = member
    if op is c.LITERAL:
        return ord(char) == arg
    if op is c.RANGE:
        return arg[0] <= ord(char) <= arg[1]
    if op is c.CATEGORY:
        return re.fullmatch(_category_regex(arg), char) is not None
    return False


def _category_regex(category: Any) -> str:
    from re import _constants as c

    return {c.CATEGORY_DIGIT: r"\d", c.CATEGORY_NOT_DIGIT: r"\D", c.CATEGORY_WORD: r"\w",
            c.CATEGORY_NOT_WORD: r"\W", c.CATEGORY_SPACE: r"\s", c.CATEGORY_NOT_SPACE: r"\S"}.get(category, r"\w")


def _from_category(category: Any) -> str:
    from re import _constants as c

    return {c.CATEGORY_DIGIT: "1", c.CATEGORY_NOT_DIGIT: "a", c.CATEGORY_WORD: "a",
            c.CATEGORY_NOT_WORD: "-", c.CATEGORY_SPACE: " ", c.CATEGORY_NOT_SPACE: "a"}.get(category, "a")
