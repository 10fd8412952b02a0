"""Tools: built-in tools that really run, tool-definition checks, and the tool loop.

The loop knows neither Streamlit nor HTTP: it takes any client with ``create(payload, page=...)``
(or ``stream(...)``), so tests drive it with scripted completions.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from fractions import Fraction
from functools import lru_cache
from typing import Any, Callable, Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from .calculator import CalculatorError, calculate
from .catalog import UnknownModelError
from .cost import cost_of
from .errors import OrqError, describe
from .import_checks import too_deep
from .request import TOOL_NAME, cache_control, cache_write_ttl, tool_result_message, validate_payload
from .types import Completion, Done, ToolCall
from .usage import Usage


MAX_SCHEMA_DEPTH = 32
MAX_SCHEMA_PARTS = 20_000
EDITOR_DEPTH = 2 * MAX_SCHEMA_DEPTH  # the editor's text is refused before parsing past this; a schema past 32 gets its own sentence


class ToolError(Exception):
    """A tool refused its input; the message is sent to the model as the error result."""


def function_tool(name: str, description: str, parameters: dict) -> dict:
    """A tool definition in the OpenAI wire format."""
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


def _object_schema(properties: dict, required: Iterable[str]) -> dict:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


# --- built-in tools ----------------------------------------------------------------------------

def calculator(expression: str) -> str:
    try:
        return calculate(expression)
    except CalculatorError as exc:
        raise ToolError(str(exc)) from None


def current_time(timezone: str = "UTC", *, clock: Callable[[], float] = time.time) -> str:
    """The time now in an IANA time zone, as JSON text. ``clock`` returns epoch seconds."""
    zone = _zone(timezone)
    now = datetime.fromtimestamp(clock(), zone)
    offset = now.strftime("%z")
    return json.dumps({
        "timezone": zone.key, "iso": now.isoformat(timespec="seconds"), "date": now.date().isoformat(),
        "time": now.strftime("%H:%M:%S"), "weekday": now.strftime("%A"),
        "utc_offset": f"{offset[:3]}:{offset[3:]}", "abbreviation": now.tzname(),
    })


def _zone(name: str) -> ZoneInfo:
    name = (name or "UTC").strip()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        pass
    match = _zones_by_lower_name().get(name.lower())
    if match:
        return ZoneInfo(match)
    raise ToolError(f"unknown time zone {name!r}: use an IANA name such as 'Europe/Paris' or 'America/New_York'")


@lru_cache(maxsize=1)
def _zones_by_lower_name() -> dict[str, str]:
    return {zone.lower(): zone for zone in available_timezones()}


# Exact factors (Fractions) to one base unit per dimension, so 1 mi -> 1.609344 km exactly.
_F = Fraction
_LB = _F("0.45359237")
_US_GALLON = _F("3.785411784")
UNITS: dict[str, tuple[str, Fraction]] = {
    # length, base metre
    "m": ("length", _F(1)), "km": ("length", _F(1000)), "cm": ("length", _F(1, 100)),
    "mm": ("length", _F(1, 1000)), "mi": ("length", _F("1609.344")), "yd": ("length", _F("0.9144")),
    "ft": ("length", _F("0.3048")), "in": ("length", _F("0.0254")), "nmi": ("length", _F(1852)),
    # mass, base kilogram
    "kg": ("mass", _F(1)), "g": ("mass", _F(1, 1000)), "mg": ("mass", _F(1, 1_000_000)),
    "t": ("mass", _F(1000)), "lb": ("mass", _LB), "oz": ("mass", _LB / 16), "st": ("mass", _LB * 14),
    # volume, base litre (US customary units)
    "l": ("volume", _F(1)), "ml": ("volume", _F(1, 1000)), "m3": ("volume", _F(1000)),
    "gal": ("volume", _US_GALLON), "qt": ("volume", _US_GALLON / 4), "pt": ("volume", _US_GALLON / 8),
    "cup": ("volume", _US_GALLON / 16), "fl_oz": ("volume", _US_GALLON / 128),
    "imp_gal": ("volume", _F("4.54609")),
    # speed, base metre per second
    "m/s": ("speed", _F(1)), "km/h": ("speed", _F(1000, 3600)), "mph": ("speed", _F("1609.344") / 3600),
    "kn": ("speed", _F(1852, 3600)), "ft/s": ("speed", _F("0.3048")),
}
TEMPERATURE_UNITS = ("c", "f", "k")
_KELVIN_OFFSET = _F("273.15")
_UNIT_ALIASES = {
    "meter": "m", "meters": "m", "metre": "m", "metres": "m", "kilometer": "km", "kilometers": "km",
    "kilometre": "km", "kilometres": "km", "centimeter": "cm", "centimeters": "cm", "centimetre": "cm",
    "centimetres": "cm", "millimeter": "mm", "millimeters": "mm", "millimetre": "mm", "millimetres": "mm",
    "mile": "mi", "miles": "mi", "yard": "yd", "yards": "yd", "foot": "ft", "feet": "ft", "inch": "in",
    "inches": "in", "nautical mile": "nmi", "nautical miles": "nmi",
    "kilogram": "kg", "kilograms": "kg", "gram": "g", "grams": "g", "milligram": "mg", "milligrams": "mg",
    "tonne": "t", "tonnes": "t", "pound": "lb", "pounds": "lb", "lbs": "lb", "ounce": "oz", "ounces": "oz",
    "stone": "st",
    "liter": "l", "liters": "l", "litre": "l", "litres": "l", "milliliter": "ml", "milliliters": "ml",
    "millilitre": "ml", "millilitres": "ml", "cubic meter": "m3", "cubic meters": "m3", "m^3": "m3",
    "gallon": "gal", "gallons": "gal", "quart": "qt", "quarts": "qt", "pint": "pt", "pints": "pt",
    "cups": "cup", "fluid ounce": "fl_oz", "fluid ounces": "fl_oz", "fl oz": "fl_oz",
    "imperial gallon": "imp_gal", "imperial gallons": "imp_gal",
    "meters per second": "m/s", "metres per second": "m/s", "mps": "m/s", "kph": "km/h", "kmh": "km/h",
    "kilometers per hour": "km/h", "kilometres per hour": "km/h", "miles per hour": "mph", "knot": "kn",
    "knots": "kn", "kt": "kn", "feet per second": "ft/s", "fps": "ft/s",
    "celsius": "c", "fahrenheit": "f", "kelvin": "k", "°c": "c", "°f": "f",
}
UNIT_NAMES = (*UNITS, *TEMPERATURE_UNITS)


def unit_symbol(unit: str) -> str:
    """The canonical symbol for ``unit`` ('Miles' -> 'mi', 'degrees Celsius' -> 'c')."""
    text = " ".join(str(unit).strip().lower().split())
    text = text.removeprefix("degrees ").removeprefix("degree ")
    symbol = _UNIT_ALIASES.get(text, text)
    if symbol not in UNITS and symbol not in TEMPERATURE_UNITS:
        raise ToolError(f"unknown unit {unit!r}; known units: {', '.join(UNIT_NAMES)}")
    return symbol


def dimension_of(symbol: str) -> str:
    return "temperature" if symbol in TEMPERATURE_UNITS else UNITS[symbol][0]


def convert(value: float, from_unit: str, to_unit: str) -> float:
    """``value`` converted; exact arithmetic until the final float. Raises ToolError."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ToolError("value must be a number")
    try:
        amount = Fraction(str(value))  # str(): 0.1 means one tenth, not the nearest binary float
    except (ValueError, ZeroDivisionError):
        raise ToolError(f"value must be a number, not {value!r}") from None
    source, target = unit_symbol(from_unit), unit_symbol(to_unit)
    if dimension_of(source) != dimension_of(target):
        raise ToolError(f"cannot convert {dimension_of(source)} ({source}) to {dimension_of(target)} ({target})")
    if source in TEMPERATURE_UNITS:
        return float(_from_kelvin(_to_kelvin(amount, source), target))
    return float(amount * UNITS[source][1] / UNITS[target][1])


def _to_kelvin(amount: Fraction, unit: str) -> Fraction:
    kelvin = {"k": amount, "c": amount + _KELVIN_OFFSET, "f": (amount - 32) * _F(5, 9) + _KELVIN_OFFSET}[unit]
    if kelvin < 0:
        raise ToolError(f"{float(amount):g} °{unit.upper()} is below absolute zero")
    return kelvin


def _from_kelvin(kelvin: Fraction, unit: str) -> Fraction:
    return {"k": kelvin, "c": kelvin - _KELVIN_OFFSET, "f": (kelvin - _KELVIN_OFFSET) * _F(9, 5) + 32}[unit]


def convert_units(value: float, from_unit: str, to_unit: str) -> str:
    result = convert(value, from_unit, to_unit)
    source, target = unit_symbol(from_unit), unit_symbol(to_unit)
    return json.dumps({"value": value, "from_unit": source, "to_unit": target, "result": result,
                       "text": f"{value:g} {_label(source)} = {result:.10g} {_label(target)}"})


def _label(symbol: str) -> str:
    return f"°{symbol.upper()}" if symbol in TEMPERATURE_UNITS else symbol


FACTS_NOTE = "Populations are rounded estimates from the mid-2020s, for demonstration."
FACTS: dict[str, dict[str, Any]] = {
    "France": {"code": "FR", "capital": "Paris", "population": 68_000_000, "currency": "Euro (EUR)"},
    "Germany": {"code": "DE", "capital": "Berlin", "population": 84_000_000, "currency": "Euro (EUR)"},
    "United Kingdom": {"code": "GB", "capital": "London", "population": 69_000_000,
                       "currency": "Pound sterling (GBP)"},
    "Japan": {"code": "JP", "capital": "Tokyo", "population": 124_000_000, "currency": "Japanese yen (JPY)"},
    "India": {"code": "IN", "capital": "New Delhi", "population": 1_430_000_000,
              "currency": "Indian rupee (INR)"},
    "Brazil": {"code": "BR", "capital": "Brasília", "population": 212_000_000,
               "currency": "Brazilian real (BRL)"},
    "Canada": {"code": "CA", "capital": "Ottawa", "population": 41_000_000, "currency": "Canadian dollar (CAD)"},
    "Australia": {"code": "AU", "capital": "Canberra", "population": 27_000_000,
                  "currency": "Australian dollar (AUD)"},
    "Kenya": {"code": "KE", "capital": "Nairobi", "population": 56_000_000, "currency": "Kenyan shilling (KES)"},
    "Mexico": {"code": "MX", "capital": "Mexico City", "population": 130_000_000,
               "currency": "Mexican peso (MXN)"},
}


def lookup_table(key: str) -> str:
    """One country's row of FACTS by name or ISO code, any case, as JSON text."""
    wanted = str(key).strip().lower()
    for country, facts in FACTS.items():
        if wanted in (country.lower(), facts["code"].lower()):
            return json.dumps({"country": country, **facts, "note": FACTS_NOTE}, ensure_ascii=False)
    raise ToolError(f"no entry for {key!r}; the table holds: {', '.join(FACTS)}")


@dataclass(frozen=True)
class BuiltinTool:
    name: str
    definition: dict
    function: Callable[..., str]

    def handler(self, **bound: Any) -> Callable[[dict], str]:
        """A loop handler: arguments dict -> text (``bound`` adds e.g. an injected clock)."""
        return lambda arguments: self.function(**arguments, **bound)


BUILTIN_TOOLS: dict[str, BuiltinTool] = {tool.name: tool for tool in (
    BuiltinTool("calculator", function_tool(
        "calculator",
        "Evaluate an arithmetic expression exactly. Supports + - * / // % ** (or ^), parentheses, "
        "sqrt, sin, cos, tan, log, log10, exp, abs, round, min, max, floor, ceil and the constants pi and e.",
        _object_schema({"expression": {"type": "string", "maxLength": 500,
                                       "description": "For example: (2.5 + 4) * sqrt(16) / 3",
                                       "examples": ["(2.5 + 4) * sqrt(16) / 3", "2**10 - 1"]}},
                       ["expression"])), calculator),
    BuiltinTool("current_time", function_tool(
        "current_time", "The current date and time in a time zone.",
        _object_schema({"timezone": {"type": "string", "description": "IANA time zone name, e.g. Europe/Paris",
                                     "examples": ["Europe/Paris", "America/New_York", "Asia/Tokyo", "UTC"]}},
                       ["timezone"])), current_time),
    BuiltinTool("convert_units", function_tool(
        "convert_units", "Convert a value between units of length, mass, temperature (c, f, k), volume "
        "(US customary) or speed.",
        _object_schema({"value": {"type": "number"},
                        "from_unit": {"type": "string", "enum": list(UNIT_NAMES)},
                        "to_unit": {"type": "string", "enum": list(UNIT_NAMES)}},
                       ["value", "from_unit", "to_unit"])), convert_units),
    BuiltinTool("lookup_table", function_tool(
        "lookup_table", "Facts about a country from a small local table: capital, population, currency.",
        _object_schema({"key": {"type": "string", "enum": list(FACTS), "description": "Country name"}},
                       ["key"])), lookup_table),
)}


def builtin_handlers(clock: Callable[[], float] = time.time) -> dict[str, Callable[[dict], str]]:
    """Handlers for every built-in tool, ready for ToolLoop (``clock`` feeds current_time)."""
    handlers = {name: tool.handler() for name, tool in BUILTIN_TOOLS.items()}
    handlers["current_time"] = BUILTIN_TOOLS["current_time"].handler(clock=clock)
    return handlers


TEMPLATES: dict[str, dict] = {
    "get_weather": function_tool(
        "get_weather", "Current weather for a place. You type the result the model gets.",
        _object_schema({"location": {"type": "string", "description": "City and country, e.g. Paris, France"},
                        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, ["location"])),
    "web_search": function_tool(
        "web_search", "Search the web and return the top results as title, url and snippet.",
        _object_schema({"query": {"type": "string", "minLength": 1},
                        "max_results": {"type": "integer", "minimum": 1, "maximum": 10}}, ["query"])),
    "query_database": function_tool(
        "query_database", "Run a read-only SQL query against the sales database.",
        _object_schema({"sql": {"type": "string", "description": "A single SELECT statement"},
                        "limit": {"type": "integer", "minimum": 1, "maximum": 1000}}, ["sql"])),
    "send_email": function_tool(
        "send_email", "Send an email on the user's behalf.",
        _object_schema({"to": {"type": "array", "items": {"type": "string", "format": "email"}, "minItems": 1},
                        "subject": {"type": "string"}, "body": {"type": "string"}}, ["to", "subject", "body"])),
    "create_calendar_event": function_tool(
        "create_calendar_event", "Create an event in the user's calendar.",
        _object_schema({"title": {"type": "string"}, "start": {"type": "string", "format": "date-time"},
                        "duration_minutes": {"type": "integer", "minimum": 5, "maximum": 1440},
                        "attendees": {"type": "array", "items": {"type": "string"}}},
                       ["title", "start", "duration_minutes"])),
}


# --- definition and argument checks ----------------------------------------------------------

def _function_of(tool: dict) -> dict:
    """The ``function`` object of a wrapped definition, or the bare object itself."""
    return tool["function"] if isinstance(tool.get("function"), dict) else tool


def normalize_tool_definition(obj: dict) -> dict:
    """Wraps a bare ``{"name", "description", "parameters"}`` object in the wire form."""
    return obj if "function" in obj or "type" in obj else {"type": "function", "function": obj}


def validate_tool_definition(obj: Any) -> list[str]:
    """Problems with one definition (wire form or a bare function object); [] when fine."""
    if not isinstance(obj, dict):
        return [f"a tool definition must be a JSON object, not {_json_type(obj)}"]
    obj = normalize_tool_definition(obj)
    problems = [] if obj.get("type") == "function" else ['"type" must be "function"']
    function = obj.get("function")
    if not isinstance(function, dict):
        return problems + ['"function" must be an object with name, description and parameters']
    name = function.get("name")
    if not isinstance(name, str) or not TOOL_NAME.match(name):
        problems.append(f"name must be 1-64 letters, digits, _ or - (got {name!r})")
    if not isinstance(function.get("description"), str) or not function["description"].strip():
        problems.append("description must be a non-empty string (the model reads it to decide when to call)")
    return problems + _schema_problems(function.get("parameters"))


def _schema_problems(schema: Any) -> list[str]:
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import validator_for

    if not isinstance(schema, dict):
        return ['parameters must be a JSON Schema object like {"type": "object", "properties": {...}}']
    problems = [] if schema.get("type") == "object" else ['parameters must have "type": "object" at the top']
    shape = _schema_shape_problem(schema)
    if shape:  # checking, faking or validating arguments would recurse without end
        return problems + [shape]
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as error:
        where = "/".join(str(p) for p in error.absolute_path)
        problems.append(f"parameters{'/' + where if where else ''} is not valid JSON Schema: {error.message}")
    return problems


def _schema_shape_problem(schema: dict) -> str | None:
    """Depth and references of a parameters schema, walked flat (no recursion): at most
    MAX_SCHEMA_DEPTH levels counting each $ref followed, local references only, and none that
    leads back into a schema holding it."""
    stack: list[tuple[Any, int, str, frozenset]] = [(schema, 0, "parameters", frozenset())]
    visited = 0
    while stack:
        node, depth, where, followed = stack.pop()
        visited += 1
        if depth > MAX_SCHEMA_DEPTH:
            return f"parameters nest more than {MAX_SCHEMA_DEPTH} levels deep; flatten them to {MAX_SCHEMA_DEPTH} levels or fewer"
        if visited > MAX_SCHEMA_PARTS:
            return (f"parameters have more than {MAX_SCHEMA_PARTS:,} parts once references are followed; "
                    "make the schema smaller")
        if isinstance(node, list):
            stack += [(child, depth + 1, f"{where}/{i}", followed) for i, child in enumerate(node)
                      if isinstance(child, (dict, list))]
            continue
        if not isinstance(node, dict):
            continue
        ref = node.get("$ref")
        if isinstance(ref, str):
            if ref in followed:
                return (f"{where}: $ref {ref!r} leads back to a schema that holds it, a loop with no end; "
                        "spell out a fixed number of levels instead")
            target, problem = _local_ref(schema, ref)
            if problem:
                return f"{where}: $ref {ref!r} {problem}"
            stack.append((target, depth + 1, "parameters" + ref[1:], followed | {ref}))
        stack += [(child, depth + 1, f"{where}/{key}", followed) for key, child in node.items()
                  if key != "$ref" and isinstance(child, (dict, list))]
    return None


def _local_ref(root: dict, ref: str) -> tuple[Any, str | None]:
    """The part of ``root`` a "#/..." JSON pointer names, or why there is none."""
    if not ref.startswith("#"):
        return None, "is not in this schema; only local references like '#/$defs/name' are accepted (nothing is fetched)"
    node: Any = root
    for part in [p.replace("~1", "/").replace("~0", "~") for p in ref[1:].split("/")[1:]] if ref != "#" else []:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None, "points at nothing in this schema"
    if ref != "#" and not ref.startswith("#/"):
        return None, "points at nothing in this schema"
    return node, None


def parse_tool_definitions(json_text: str) -> tuple[list[dict], list[str]]:
    """Definitions (wire form) from editor text: a list, one object, or ``{"tools": [...]}``.

    Returns the valid definitions and every problem, each naming the tool it is about."""
    if not json_text or not json_text.strip():
        return [], []
    if too_deep(json_text, EDITOR_DEPTH):
        return [], [f"the definitions nest lists or objects more than {EDITOR_DEPTH} levels deep; flatten them"]
    try:
        parsed = json.loads(json_text)
    except json.JSONDecodeError as exc:
        return [], [json_syntax_message(exc)]
    if isinstance(parsed, dict) and isinstance(parsed.get("tools"), list):
        parsed = parsed["tools"]
    items = parsed if isinstance(parsed, list) else [parsed]
    definitions, problems, seen = [], [], set()
    for number, item in enumerate(items, start=1):
        label = _tool_label(number, item)
        item_problems = validate_tool_definition(item)
        problems += [f"{label}: {p}" for p in item_problems]
        if item_problems:
            continue
        definition = normalize_tool_definition(item)
        name = definition["function"]["name"]
        if name in seen:
            problems.append(f"{label}: the name {name!r} is used twice")
            continue
        seen.add(name)
        definitions.append(definition)
    return definitions, problems


def _tool_label(number: int, item: Any) -> str:
    name = _function_of(item).get("name") if isinstance(item, dict) else None
    return f"tool {number} ({name})" if isinstance(name, str) and name else f"tool {number}"


def json_syntax_message(exc: json.JSONDecodeError) -> str:
    return f"JSON syntax error at line {exc.lineno}, column {exc.colno}: {exc.msg}"


def validate_arguments(tool_def: dict, arguments_json: str) -> list[str]:
    """Problems with a call's arguments against the tool's schema; [] when fine. Never runs it."""
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import validator_for

    try:
        arguments = json.loads(arguments_json) if (arguments_json or "").strip() else {}
    except json.JSONDecodeError as exc:
        return [f"not valid JSON: {json_syntax_message(exc)}"]
    if not isinstance(arguments, dict):
        return [f"arguments must be a JSON object, not {_json_type(arguments)}"]
    schema = _function_of(tool_def).get("parameters")
    if not isinstance(schema, dict):
        return ["the tool has no parameters schema"]
    validator_class = validator_for(schema)
    try:
        validator_class.check_schema(schema)
    except SchemaError as error:
        return [f"the tool's parameters are not valid JSON Schema: {error.message}"]
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(arguments), key=lambda e: ([str(p) for p in e.absolute_path], e.message))
    return [f"{_json_path(e.absolute_path)}: {e.message}" for e in errors]


def _json_path(path: Iterable) -> str:
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
    return f"arguments{text}"


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


# --- the tool loop -------------------------------------------------------------------------------

@dataclass
class ExecutedCall:
    call: ToolCall
    valid: bool
    problems: list[str]
    result: str = ""
    is_error: bool = False
    ran: bool = False
    elapsed_ms: float = 0.0

    def to_dict(self) -> dict:
        return {"id": self.call.id, "name": self.call.name, "arguments": self.call.arguments, "valid": self.valid,
                "problems": list(self.problems), "result": self.result, "is_error": self.is_error,
                "ran": self.ran, "elapsed_ms": self.elapsed_ms}


@dataclass
class ToolStep:
    index: int
    request_summary: dict
    completion: Completion | None
    calls: list[ExecutedCall]
    cost_usd: float
    elapsed_ms: float
    error: str | None = None

    def to_dict(self) -> dict:
        return {"index": self.index, "request": self.request_summary,
                "completion": _completion_dict(self.completion) if self.completion else None,
                "calls": [c.to_dict() for c in self.calls], "cost_usd": self.cost_usd,
                "elapsed_ms": self.elapsed_ms, "error": self.error}


@dataclass
class LoopResult:
    stopped_by: str
    """'answer', 'step_limit', 'error' or 'needs_input' (a call to a tool with no handler)."""
    steps: list[ToolStep]
    messages: list[dict]
    """The conversation so far, the assistant turns and tool results included."""
    pending: list[ExecutedCall] = field(default_factory=list)
    """With 'needs_input': the calls a person has to answer (see ToolLoop.resume)."""

    @property
    def final_text(self) -> str:
        last = self.steps[-1].completion if self.steps else None
        return last.text if last and self.stopped_by == "answer" else ""

    @property
    def error(self) -> str | None:
        return self.steps[-1].error if self.steps and self.stopped_by == "error" else None

    @property
    def total_usage(self) -> Usage:
        return sum((s.completion.usage for s in self.steps if s.completion), Usage())

    @property
    def total_cost_usd(self) -> float:
        return sum(s.cost_usd for s in self.steps)

    def to_dict(self) -> dict:
        return {"stopped_by": self.stopped_by, "steps": [s.to_dict() for s in self.steps],
                "pending": [c.to_dict() for c in self.pending], "total_usage": self.total_usage.to_dict(),
                "total_cost_usd": self.total_cost_usd, "messages": self.messages}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False, default=str)


def _completion_dict(completion: Completion) -> dict:
    data = asdict(completion)
    data["usage"] = {**completion.usage.to_dict(), "raw": completion.usage.raw}
    return data


class ToolLoop:
    """Call the model, run the tools it asks for, send the results, repeat.

    ``handlers`` maps tool names to ``arguments dict -> text``; a tool without a handler is a
    user tool whose result a person types (automatic mode stops with 'needs_input').
    Forced tool_choice ('required' or one function) applies to the first step only, as the
    OpenAI Agents SDK does, otherwise the model could never answer and every run would hit the
    step limit."""

    def __init__(self, client: Any, base_payload: dict, tools: list[dict], handlers: dict[str, Callable[[dict], str]],
                 max_steps: int = 5, on_step: Callable[[ToolStep], None] | None = None, page: str = "tools", *,
                 cache_tools_ttl: str | None = None, reset_tool_choice: bool = True,
                 on_event: Callable[[Any], None] | None = None, clock: Callable[[], float] = time.perf_counter):
        self.client = client
        self.base_payload = {k: v for k, v in base_payload.items() if k != "messages"}
        self.tools = [normalize_tool_definition(t) for t in tools]
        self.handlers = dict(handlers)
        self.max_steps = max_steps
        self.on_step = on_step
        self.page = page
        self.cache_tools_ttl = cache_tools_ttl
        self.reset_tool_choice = reset_tool_choice
        self.on_event = on_event
        self._clock = clock
        self._steps_taken = 0
        self._definitions = {_function_of(t)["name"]: t for t in self.tools}

    # --- automatic mode ------------------------------------------------------------------------

    def run(self, messages: list[dict]) -> LoopResult:
        return self._continue(list(messages), [], self.max_steps)

    def resume(self, result: LoopResult, answers: dict[str, str], errors: Iterable[str] = ()) -> LoopResult:
        """Continue a 'needs_input' result once a person typed the pending results
        (``answers`` by call id; ids in ``errors`` are sent as error results)."""
        if result.stopped_by != "needs_input":
            raise ValueError("only a loop that stopped for input can be resumed")
        messages = result.messages + self.results_message(result.steps[-1].calls, answers, errors)
        return self._continue(messages, list(result.steps), self.max_steps - len(result.steps))

    def _continue(self, messages: list[dict], steps: list[ToolStep], budget: int) -> LoopResult:
        for _ in range(max(0, budget)):
            step = self._call_model(messages)
            steps.append(step)
            if step.error or step.completion is None:
                return self._finish("error", steps, messages, step)
            messages.append(step.completion.assistant_message())
            if not step.calls:
                return self._finish("answer", steps, messages, step)
            step.calls = [self.execute(c) for c in step.calls]
            pending = [c for c in step.calls if self._needs_input(c)]
            if pending:
                return self._finish("needs_input", steps, messages, step, pending)
            messages.extend(self.results_message(step.calls))
            self._report(step)
        return LoopResult("step_limit", steps, messages)

    def _finish(self, stopped_by: str, steps: list[ToolStep], messages: list[dict], step: ToolStep,
                pending: list[ExecutedCall] | None = None) -> LoopResult:
        self._report(step)
        return LoopResult(stopped_by, steps, messages, pending or [])

    def _report(self, step: ToolStep) -> None:
        if self.on_step:
            self.on_step(step)

    def _needs_input(self, call: ExecutedCall) -> bool:
        return call.valid and not call.ran and call.call.name not in self.handlers

    # --- manual mode -------------------------------------------------------------------------

    def step(self, messages: list[dict]) -> ToolStep:
        """One model call. The calls it proposes come back checked but not run; invalid ones
        already hold their error result."""
        step = self._call_model(list(messages))
        self._report(step)
        return step

    def execute(self, executed: ExecutedCall) -> ExecutedCall:
        """Runs one checked call with its handler. Invalid arguments never reach a handler;
        a raising handler becomes an error result. Calls without a handler come back as they are."""
        handler = self.handlers.get(executed.call.name)
        if not executed.valid or handler is None:
            return executed
        started = self._clock()
        try:
            output = handler(json.loads(executed.call.arguments or "{}"))
            result, is_error = (output if isinstance(output, str) else json.dumps(output, default=str)), False
        except (ToolError, CalculatorError) as exc:
            result, is_error = f"Error: {exc}", True
        except Exception as exc:  # a tool's bug must not end the loop: the model reads it as a failed call
            result, is_error = f"Error: {type(exc).__name__}: {exc}", True
        elapsed = (self._clock() - started) * 1000
        return ExecutedCall(executed.call, True, [], result, is_error, True, elapsed)

    def results_message(self, calls: list[ExecutedCall], edited: dict[str, str] | None = None,
                        errors: Iterable[str] = ()) -> list[dict]:
        """Tool result messages, one per call in order. ``edited`` (by call id) replaces a result,
        e.g. one a person typed; ids in ``errors`` mark an edited result as an error."""
        edited, errors = edited or {}, set(errors)
        messages = []
        for executed in calls:
            call_id = executed.call.id
            if call_id in edited:
                content, is_error = edited[call_id], call_id in errors
            elif executed.valid and not executed.ran:
                raise ValueError(f"the call {executed.call.name} ({call_id}) has no result yet")
            else:
                content, is_error = executed.result, executed.is_error
            messages.append(tool_result_message(call_id, content, is_error=is_error))
        return messages

    def next_messages(self, messages: list[dict], step: ToolStep, edited: dict[str, str] | None = None,
                      errors: Iterable[str] = ()) -> list[dict]:
        """Manual mode: the conversation after ``step`` (its assistant turn, then the results)."""
        if step.completion is None:
            raise ValueError("the step has no answer to continue from")
        return [*messages, step.completion.assistant_message(), *self.results_message(step.calls, edited, errors)]

    # --- one model call ----------------------------------------------------------------------

    def build_payload(self, messages: list[dict], step_index: int) -> dict:
        payload = copy.deepcopy(self.base_payload)
        payload["messages"] = list(messages)
        if self.tools:
            payload["tools"] = self._tools_for_request()
        else:
            payload.pop("tools", None)
            payload.pop("tool_choice", None)
        if step_index > 1 and self.reset_tool_choice and _is_forced(payload.get("tool_choice")):
            payload["tool_choice"] = "auto"
        if payload.get("stream") and not hasattr(self.client, "stream"):
            payload["stream"] = False
            payload.pop("stream_options", None)
        return payload

    def _tools_for_request(self) -> list[dict]:
        tools = copy.deepcopy(self.tools)
        if self.cache_tools_ttl:
            # A breakpoint on the last definition caches every definition (prefix order: tools first).
            tools[-1]["cache_control"] = cache_control(self.cache_tools_ttl)
        return tools

    def _call_model(self, messages: list[dict]) -> ToolStep:
        self._steps_taken += 1
        index = self._steps_taken
        payload = self.build_payload(messages, index)
        summary = _request_summary(payload, self.cache_tools_ttl)
        started = self._clock()
        completion, error = None, None
        try:
            validate_payload(payload)
            completion = self._complete(payload)
            error = completion.error if completion.partial else None
        except OrqError as exc:
            error = describe(exc)
        elapsed = (self._clock() - started) * 1000
        calls = [self._check(c) for c in completion.tool_calls] if completion and not error else []
        cost = _cost_usd(completion, payload) if completion else 0.0
        return ToolStep(index, summary, completion, calls, cost, elapsed, error)

    def _complete(self, payload: dict) -> Completion:
        if not payload.get("stream"):
            return self.client.create(payload, page=self.page)
        completion = None
        for event in self.client.stream(payload, page=self.page):
            if self.on_event:
                self.on_event(event)
            if isinstance(event, Done):
                completion = event.completion
        if completion is None:
            raise OrqError("the stream ended without a result")
        return completion

    def _check(self, call: ToolCall) -> ExecutedCall:
        definition = self._definitions.get(call.name)
        if definition is None:
            problem = f"no tool named {call.name!r} was offered"
            return ExecutedCall(call, False, [problem], f"Error: {problem}", True)
        problems = validate_arguments(definition, call.arguments)
        if problems:
            return ExecutedCall(call, False, problems, f"Error: invalid arguments: {'; '.join(problems)}", True)
        return ExecutedCall(call, True, [])


def _is_forced(tool_choice: Any) -> bool:
    return tool_choice == "required" or isinstance(tool_choice, dict)


def _request_summary(payload: dict, cache_tools_ttl: str | None) -> dict:
    return {"model": payload.get("model"), "messages": len(payload.get("messages", [])),
            "tools": [_function_of(t).get("name") for t in payload.get("tools", [])],
            "tool_choice": payload.get("tool_choice"), "stream": bool(payload.get("stream")),
            "cache_tools_ttl": cache_tools_ttl}


def _cost_usd(completion: Completion, payload: dict) -> float:
    ttl = cache_write_ttl(payload)
    for slug in (completion.model, payload.get("model")):
        if slug:
            try:
                return float(cost_of(completion.usage, slug, ttl).total)
            except UnknownModelError:
                continue
    return 0.0
