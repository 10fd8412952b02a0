"""Building and checking chat/completions requests before they leave the machine.

``validate_payload`` refuses a request that breaks a documented Anthropic or Orq rule, naming
the exact field (``messages[2].content[0].cache_control.ttl``) so the page can point at it.
It never rejects a model it does not know (the router answers 404 for those); it only uses
catalog facts (max output, thinking support) when the model is in the catalog.

Rules taken from Anthropic's documentation (extended thinking, prompt caching, tool use):
- thinking: ``budget_tokens`` >= 1024 and < ``max_tokens``; not compatible with a temperature
  other than 1 or with ``top_k``; ``top_p`` only within [0.95, 1]; no forced tool use.
- prompt caching: at most 4 breakpoints; TTL "5m" (default) or "1h"; when TTLs are mixed, the
  1-hour entries must come before the 5-minute ones in prefix order tools -> system -> messages;
  thinking blocks cannot carry cache_control.
"""

from __future__ import annotations

import base64
import copy
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from .catalog import Model, UnknownModelError, catalog
from .errors import RequestValidationError

ROLES = ("system", "user", "assistant", "tool")
PARTS_BY_ROLE = {
    "system": {"text"},
    "user": {"text", "image_url", "file", "document"},
    "assistant": {"text", "reasoning", "redacted_reasoning"},
    "tool": {"text"},
}
CACHE_TTLS = ("5m", "1h")
MAX_CACHE_BREAKPOINTS = 4
MIN_THINKING_BUDGET = 1024
THINKING_TOP_P_MIN = 0.95
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
TOOL_CHOICE_WORDS = ("auto", "none", "required")
ORQ_CACHE_TTL_MAX = 259_200  # seconds (3 days), Orq's documented maximum
ORQ_RETRY_MAX = 5  # Orq documents count as 1-5
ORQ_RETRY_ON_CODES = (429, 500, 502, 503, 504)  # Orq's "balanced" set; its default is [429] only
IMAGE_DATA_URL = re.compile(r"^data:image/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/=\s]+$")
ANY_DATA_URL = re.compile(r"^data:[\w.+-]+/[\w.+-]+;base64,[A-Za-z0-9+/=\s]+$")
DATA_URL_PREFIX = re.compile(r"^(data:[^;,]*;base64,)(.*)$", re.S)


def _fail(field: str, message: str) -> None:
    raise RequestValidationError(field, message)


# --------------------------------------------------------------------------------------------
# Small type checks
# --------------------------------------------------------------------------------------------

def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _is_http_url(value: Any) -> bool:
    return isinstance(value, str) and re.match(r"^https?://[^\s/]+", value) is not None


def _model_facts(payload: dict) -> Model | None:
    slug = payload.get("model")
    if not isinstance(slug, str):
        return None
    try:
        return catalog().resolve(slug).model
    except UnknownModelError:
        return None


def _thinking_enabled(payload: dict) -> bool:
    thinking = payload.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") == "enabled"


# --------------------------------------------------------------------------------------------
# Rules: each takes the whole payload and raises on the first problem it finds
# --------------------------------------------------------------------------------------------

def _check_model(payload: dict) -> None:
    model = payload.get("model")
    if model is None:
        _fail("model", "required: name the model slug, e.g. anthropic/claude-sonnet-4-5-20250929")
    if not isinstance(model, str) or not model.strip():
        _fail("model", "must be a non-empty string")


def _check_max_tokens(payload: dict) -> None:
    value = payload.get("max_tokens")
    if value is None:
        _fail("max_tokens", "required for Claude models")
    if not _is_int(value) or value < 1:
        _fail("max_tokens", "must be an integer >= 1")
    model = _model_facts(payload)
    if model is not None and value > model.max_output:
        _fail("max_tokens", f"{model.label} writes at most {model.max_output:,} output tokens")


def _check_sampling(payload: dict) -> None:
    temperature, top_p, top_k = (payload.get(k) for k in ("temperature", "top_p", "top_k"))
    if temperature is not None and (not _is_number(temperature) or not 0 <= temperature <= 1):
        _fail("temperature", "must be a number between 0 and 1")
    if top_p is not None and (not _is_number(top_p) or not 0 < top_p <= 1):
        _fail("top_p", "must be a number greater than 0 and at most 1")
    if top_k is not None and (not _is_int(top_k) or top_k < 1):
        _fail("top_k", "must be an integer >= 1")
    if temperature is not None and top_p is not None:
        _fail("top_p", "send one of temperature and top_p: newer Claude models reject both")


def _check_stop(payload: dict) -> None:
    stop = payload.get("stop")
    if stop is None:
        return
    sequences = [stop] if isinstance(stop, str) else stop
    if not isinstance(sequences, list):
        _fail("stop", "must be a list of strings")
    for i, sequence in enumerate(sequences):
        if not isinstance(sequence, str) or not sequence.strip():
            _fail(f"stop[{i}]" if stop is sequences else "stop",
                  "a stop sequence must be a string with at least one non-whitespace character")


def _check_stream(payload: dict) -> None:
    if "stream" in payload and not isinstance(payload["stream"], bool):
        _fail("stream", "must be true or false")
    options = payload.get("stream_options")
    if options is None:
        return
    if not isinstance(options, dict):
        _fail("stream_options", "must be an object like {\"include_usage\": true}")
    if "include_usage" in options and not isinstance(options["include_usage"], bool):
        _fail("stream_options.include_usage", "must be true or false")


def _check_thinking_shape(payload: dict) -> None:
    thinking = payload.get("thinking")
    if thinking is None:
        return
    if not isinstance(thinking, dict):
        _fail("thinking", "must be an object like {\"type\": \"enabled\", \"budget_tokens\": 2048}")
    if thinking.get("type") == "disabled":
        return
    if thinking.get("type") != "enabled":
        _fail("thinking.type", "must be \"enabled\" (or \"disabled\")")
    budget = thinking.get("budget_tokens")
    if not _is_int(budget):
        _fail("thinking.budget_tokens", "required: an integer number of tokens")
    if budget < MIN_THINKING_BUDGET:
        _fail("thinking.budget_tokens", f"must be at least {MIN_THINKING_BUDGET:,}")
    max_tokens = payload.get("max_tokens")
    if _is_int(max_tokens) and budget >= max_tokens:
        _fail("thinking.budget_tokens",
              f"must be less than max_tokens ({max_tokens:,}): thinking counts against max_tokens")


def _check_thinking_model(payload: dict) -> None:
    model = _model_facts(payload)
    if _thinking_enabled(payload) and model is not None and not model.thinking:
        _fail("thinking", f"{model.label} does not support extended thinking")


def _check_thinking_sampling(payload: dict) -> None:
    if not _thinking_enabled(payload):
        return
    temperature, top_p = payload.get("temperature"), payload.get("top_p")
    if temperature is not None and temperature != 1:
        _fail("temperature", "extended thinking only works with temperature 1 (or unset)")
    if payload.get("top_k") is not None:
        _fail("top_k", "extended thinking does not allow top_k")
    if top_p is not None and top_p < THINKING_TOP_P_MIN:
        _fail("top_p", f"with extended thinking top_p must be between {THINKING_TOP_P_MIN} and 1")


def _check_thinking_tool_choice(payload: dict) -> None:
    choice = payload.get("tool_choice")
    forced = choice == "required" or isinstance(choice, dict)
    if _thinking_enabled(payload) and forced:
        _fail("tool_choice", "extended thinking only allows tool_choice \"auto\" or \"none\" "
                             "(forcing a tool call is rejected)")


# --------------------------------------------------------------------------------------------
# Messages and content parts
# --------------------------------------------------------------------------------------------

def _check_messages(payload: dict) -> None:
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        _fail("messages", "must be a non-empty list of messages")
    for i, message in enumerate(messages):
        _check_message(message, f"messages[{i}]")
    _check_tool_results_follow_calls(messages)


def _check_message(message: Any, path: str) -> None:
    if not isinstance(message, dict):
        _fail(path, "must be an object with role and content")
    role = message.get("role")
    if role not in ROLES:
        _fail(f"{path}.role", f"must be one of {', '.join(ROLES)}")
    if role == "tool" and (not isinstance(message.get("tool_call_id"), str) or not message["tool_call_id"]):
        _fail(f"{path}.tool_call_id", "a tool message needs the id of the call it answers")
    if "cache_control" in message and role != "tool":
        _fail(f"{path}.cache_control", "only tool messages take cache_control on the whole message; "
                                       "put it on a content part instead")
    if role == "assistant" and message.get("tool_calls") is not None:
        _check_tool_calls(message["tool_calls"], f"{path}.tool_calls")
    _check_content(message, role, path)


def _check_content(message: dict, role: str, path: str) -> None:
    content = message.get("content")
    if content is None and role == "assistant" and message.get("tool_calls"):
        return
    if isinstance(content, str):
        if (not content or content.isspace()) and role != "assistant":  # strip() would copy a long text
            _fail(f"{path}.content", "must not be empty")
        return
    if not isinstance(content, list):
        _fail(f"{path}.content", "must be a string or a list of content parts")
    if not content:
        _fail(f"{path}.content", "must not be empty")
    for j, part in enumerate(content):
        _check_part(part, role, f"{path}.content[{j}]")


def _check_part(part: Any, role: str, path: str) -> None:
    if not isinstance(part, dict):
        _fail(path, "must be an object with a type")
    kind = part.get("type")
    if not isinstance(kind, str) or kind not in _PART_CHECKS:
        _fail(f"{path}.type", f"unknown part type {kind!r}; use one of {', '.join(_PART_CHECKS)}")
    if kind not in PARTS_BY_ROLE[role]:
        _fail(f"{path}.type", f"a {role} message cannot hold a {kind} part "
                              f"(allowed: {', '.join(sorted(PARTS_BY_ROLE[role]))})")
    _PART_CHECKS[kind](part, path)
    if "cache_control" in part and kind in ("reasoning", "redacted_reasoning"):
        _fail(f"{path}.cache_control", "thinking blocks cannot carry cache_control")


def _check_text_part(part: dict, path: str) -> None:
    text = part.get("text")
    if not isinstance(text, str):
        _fail(f"{path}.text", "must be a string")
    if not text:
        _fail(f"{path}.text", "text parts must not be empty")


def _check_image_part(part: dict, path: str) -> None:
    image = part.get("image_url")
    if not isinstance(image, dict):
        _fail(f"{path}.image_url", "must be an object like {\"url\": \"https://...\"}")
    url = image.get("url")
    if not (_is_http_url(url) or (isinstance(url, str) and IMAGE_DATA_URL.match(url))):
        _fail(f"{path}.image_url.url", "must be an http(s) URL or a data:image/(png|jpeg|gif|webp);base64 URL")


def _check_file_part(part: dict, path: str) -> None:
    file = part.get("file")
    if not isinstance(file, dict):
        _fail(f"{path}.file", "must be an object with file_data (a data URL) or uri")
    if "file_data" in file:
        if not isinstance(file["file_data"], str) or not ANY_DATA_URL.match(file["file_data"]):
            _fail(f"{path}.file.file_data", "must be a data URL like data:application/pdf;base64,...")
        if "filename" in file and not isinstance(file["filename"], str):
            _fail(f"{path}.file.filename", "must be a string")
    elif "uri" in file:
        if not _is_http_url(file["uri"]):
            _fail(f"{path}.file.uri", "must be an http(s) URL")
    else:
        _fail(f"{path}.file", "needs file_data (a data URL) or uri")


def _check_document_part(part: dict, path: str) -> None:
    document = part.get("document")
    if not isinstance(document, dict):
        _fail(f"{path}.document", "must be an object like {\"type\": \"pdf\", \"url\": \"https://...\"}")
    url = document.get("url")
    if not (_is_http_url(url) or (isinstance(url, str) and ANY_DATA_URL.match(url))):
        _fail(f"{path}.document.url", "must be an http(s) URL or a base64 data URL")


def _check_reasoning_part(part: dict, path: str) -> None:
    if not isinstance(part.get("reasoning"), str):
        _fail(f"{path}.reasoning", "must be a string")
    if "signature" in part and not isinstance(part["signature"], str):
        _fail(f"{path}.signature", "must be the signature string returned with the reasoning, unmodified")


def _check_redacted_reasoning_part(part: dict, path: str) -> None:
    if not isinstance(part.get("data"), str) or not part["data"]:
        _fail(f"{path}.data", "must be the redacted data string returned by the model, unmodified")


_PART_CHECKS: dict[str, Callable[[dict, str], None]] = {
    "text": _check_text_part,
    "image_url": _check_image_part,
    "file": _check_file_part,
    "document": _check_document_part,
    "reasoning": _check_reasoning_part,
    "redacted_reasoning": _check_redacted_reasoning_part,
}


def _check_tool_calls(calls: Any, path: str) -> None:
    if not isinstance(calls, list):
        _fail(path, "must be a list of tool calls")
    for k, call in enumerate(calls):
        here = f"{path}[{k}]"
        if not isinstance(call, dict) or not isinstance(call.get("id"), str) or not call["id"]:
            _fail(f"{here}.id", "each tool call needs an id")
        function = call.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            _fail(f"{here}.function.name", "must be a string")
        if not isinstance(function.get("arguments", ""), str):
            _fail(f"{here}.function.arguments", "must be a JSON string")


def _check_tool_results_follow_calls(messages: list) -> None:
    """Anthropic needs every tool result right after the assistant turn that asked for it,
    and every call answered before the conversation moves on."""
    pending: set[str] = set()
    for i, message in enumerate(messages):
        role = message.get("role")
        if role == "tool":
            if message["tool_call_id"] not in pending:
                _fail(f"messages[{i}].tool_call_id",
                      f"{message['tool_call_id']!r} answers no tool call of the assistant message before it")
            pending.discard(message["tool_call_id"])
            continue
        if pending and role in ("user", "assistant"):
            _fail(f"messages[{i}]", f"tool call(s) {', '.join(sorted(pending))} have no tool result before this message")
        if role == "assistant":
            pending = {c["id"] for c in message.get("tool_calls") or []}


def _check_media_support(payload: dict) -> None:
    model = _model_facts(payload)
    if model is None:
        return
    for path, part in _parts(payload):
        kind = part.get("type")
        if kind == "image_url" and not model.vision:
            _fail(path, f"{model.label} does not read images")
        if kind in ("file", "document") and not model.pdf:
            _fail(path, f"{model.label} does not read PDFs")


def _parts(payload: dict) -> Iterator[tuple[str, dict]]:
    for i, message in enumerate(payload.get("messages") or []):
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            for j, part in enumerate(content):
                if isinstance(part, dict):
                    yield f"messages[{i}].content[{j}]", part


# --------------------------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------------------------

def _check_tools(payload: dict) -> None:
    tools = payload.get("tools")
    if tools is None:
        return
    if not isinstance(tools, list):
        _fail("tools", "must be a list of tool definitions")
    seen: dict[str, int] = {}
    for i, tool in enumerate(tools):
        name = _check_tool(tool, f"tools[{i}]")
        if name in seen:
            _fail(f"tools[{i}].function.name", f"{name!r} is already used by tools[{seen[name]}]")
        seen[name] = i


def _check_tool(tool: Any, path: str) -> str:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        _fail(f"{path}.type", "must be \"function\"")
    function = tool.get("function")
    if not isinstance(function, dict):
        _fail(f"{path}.function", "must be an object with name, description and parameters")
    name = function.get("name")
    if not isinstance(name, str) or not TOOL_NAME.match(name):
        _fail(f"{path}.function.name", "must be 1-64 characters of letters, digits, _ or -")
    if "description" in function and not isinstance(function["description"], str):
        _fail(f"{path}.function.description", "must be a string")
    _check_tool_schema(function.get("parameters"), f"{path}.function.parameters")
    return name


def _check_tool_schema(schema: Any, path: str) -> None:
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import validator_for

    if not isinstance(schema, dict):
        _fail(path, "must be a JSON Schema object like {\"type\": \"object\", \"properties\": {...}}")
    if schema.get("type") != "object":
        _fail(f"{path}.type", "the top level of a tool's parameters must be {\"type\": \"object\"}")
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as error:
        where = ".".join(str(p) for p in error.absolute_path)
        _fail(f"{path}.{where}" if where else path, f"not a valid JSON Schema: {error.message}")


def _check_tool_choice(payload: dict) -> None:
    choice = payload.get("tool_choice")
    if choice is None:
        return
    tools = payload.get("tools")
    if not tools:
        _fail("tool_choice", "set only together with tools")
    if isinstance(choice, str):
        if choice not in TOOL_CHOICE_WORDS:
            _fail("tool_choice", f"must be one of {', '.join(TOOL_CHOICE_WORDS)} or a function choice")
        return
    if not isinstance(choice, dict) or choice.get("type") != "function":
        _fail("tool_choice", "must be \"auto\", \"none\", \"required\" or "
                             "{\"type\": \"function\", \"function\": {\"name\": ...}}")
    name = (choice.get("function") or {}).get("name") if isinstance(choice.get("function"), dict) else None
    names = [t["function"]["name"] for t in tools]
    if name not in names:
        _fail("tool_choice.function.name", f"{name!r} is not one of the tools ({', '.join(names)})")


# --------------------------------------------------------------------------------------------
# Prompt caching
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Breakpoint:
    """A cache_control marker: everything up to and including ``path`` is a cached prefix."""

    path: str
    ttl: str


def _cache_sites(payload: dict) -> list[tuple[str, Any]]:
    """(path, cache_control value) for every marker, in prefix order: tools, system, messages.

    System messages come before the others wherever they sit, as Anthropic lifts them to the
    top-level system prompt."""
    sites: list[tuple[str, Any]] = []
    for i, tool in enumerate(_as_list(payload.get("tools"))):
        if isinstance(tool, dict):
            sites += _marker(tool, f"tools[{i}]")
            if isinstance(tool.get("function"), dict):
                sites += _marker(tool["function"], f"tools[{i}].function")
    messages = list(enumerate(_as_list(payload.get("messages"))))
    is_system = [isinstance(m, dict) and m.get("role") == "system" for _, m in messages]
    ordered = [pair for pair, s in zip(messages, is_system) if s] + \
              [pair for pair, s in zip(messages, is_system) if not s]
    for i, message in ordered:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        for j, part in enumerate(content if isinstance(content, list) else []):
            if isinstance(part, dict):
                sites += _marker(part, f"messages[{i}].content[{j}]")
        sites += _marker(message, f"messages[{i}]")
    return sites


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _marker(holder: dict, path: str) -> list[tuple[str, Any]]:
    return [(f"{path}.cache_control", holder["cache_control"])] if "cache_control" in holder else []


def _check_cache_control(payload: dict) -> list["Breakpoint"]:
    """The rule; returns the breakpoints it found, so segmentation need not find them again."""
    sites = _cache_sites(payload)
    for path, value in sites:
        _check_cache_value(value, path)
    if len(sites) > MAX_CACHE_BREAKPOINTS:
        _fail(sites[MAX_CACHE_BREAKPOINTS][0],
              f"at most {MAX_CACHE_BREAKPOINTS} cache breakpoints per request; this is number {MAX_CACHE_BREAKPOINTS + 1}")
    points = _breakpoints(sites)
    seen_5m = False
    for point in points:
        if point.ttl == "1h" and seen_5m:
            _fail(f"{point.path}.cache_control.ttl", "1h cache entries must come before 5m ones "
                                                     "(prefix order: tools, system, messages)")
        seen_5m = seen_5m or point.ttl == "5m"
    return points


def _check_cache_value(value: Any, path: str) -> None:
    if not isinstance(value, dict) or value.get("type") != "ephemeral":
        _fail(path, "must be {\"type\": \"ephemeral\"} with an optional ttl")
    if "ttl" in value and value["ttl"] not in CACHE_TTLS:
        _fail(f"{path}.ttl", "must be \"5m\" or \"1h\"")
    extra = set(value) - {"type", "ttl"}
    if extra:
        _fail(path, f"unknown key(s) {', '.join(sorted(extra))}; only type and ttl")


def cache_breakpoints(payload: dict) -> list[Breakpoint]:
    """Every cache_control marker as a Breakpoint, in prefix order (tools, system, messages).

    ``path`` points at the block holding the marker (``messages[1].content[0]``, ``tools[0]``,
    ``messages[3]`` for a whole tool message). A missing ttl is the default "5m". Tolerates a
    payload that has not been validated: markers that are not objects are skipped."""
    return _breakpoints(_cache_sites(payload))


def _breakpoints(sites: list[tuple[str, Any]]) -> list[Breakpoint]:
    return [Breakpoint(path.removesuffix(".cache_control"), str(value.get("ttl", "5m")))
            for path, value in sites if isinstance(value, dict)]


def cache_write_ttl(payload: dict) -> str:
    """The TTL to price cache writes at: "1h" if any breakpoint is 1h, else "5m".

    An upper bound: the wire usage does not split writes by TTL, so a request mixing both is
    priced as if every written token went to the 1-hour cache."""
    return "1h" if any(p.ttl == "1h" for p in cache_breakpoints(payload)) else "5m"


# --------------------------------------------------------------------------------------------
# Orq router options
# --------------------------------------------------------------------------------------------

def _orq_options(payload: dict) -> Iterator[tuple[str, str, Any]]:
    """(path prefix, key, value) for fallbacks/retry/cache in the ``orq`` object or at top level
    (the current generated SDKs send them at top level)."""
    orq = payload.get("orq")
    if orq is not None and not isinstance(orq, dict):
        _fail("orq", "must be an object")
    for key in ("fallbacks", "retry", "cache"):
        if isinstance(orq, dict) and key in orq:
            yield f"orq.{key}", key, orq[key]
        if key in payload:
            yield key, key, payload[key]


def _check_orq(payload: dict) -> None:
    checks = {"fallbacks": _check_fallbacks, "retry": _check_retry, "cache": _check_response_cache}
    for path, key, value in _orq_options(payload):
        checks[key](value, path)


def _check_fallbacks(fallbacks: Any, path: str) -> None:
    if not isinstance(fallbacks, list):
        _fail(path, "must be a list like [{\"model\": \"aws/anthropic/...\"}]")
    for i, fallback in enumerate(fallbacks):
        model = fallback.get("model") if isinstance(fallback, dict) else None
        if not isinstance(model, str) or not model.strip():
            _fail(f"{path}[{i}].model", "must be a model slug")


def _check_retry(retry: Any, path: str) -> None:
    if not isinstance(retry, dict):
        _fail(path, "must be an object like {\"count\": 3, \"on_codes\": [429, 500]}")
    count = retry.get("count")
    if not _is_int(count) or not 1 <= count <= ORQ_RETRY_MAX:
        _fail(f"{path}.count", f"required: an integer from 1 to {ORQ_RETRY_MAX} (leave retry out for none)")
    codes = retry.get("on_codes")
    if codes is None:
        return
    if not isinstance(codes, list):
        _fail(f"{path}.on_codes", "must be a list of HTTP status codes")
    for i, code in enumerate(codes):
        if not _is_int(code) or not 400 <= code <= 599:
            _fail(f"{path}.on_codes[{i}]", "must be an HTTP error status code (400-599)")


def _check_response_cache(cache: Any, path: str) -> None:
    if not isinstance(cache, dict) or cache.get("type") != "exact_match":
        _fail(f"{path}.type", "must be \"exact_match\"")
    ttl = cache.get("ttl")
    if ttl is not None and (not _is_int(ttl) or not 1 <= ttl <= ORQ_CACHE_TTL_MAX):
        _fail(f"{path}.ttl", f"must be a whole number of seconds from 1 to {ORQ_CACHE_TTL_MAX:,}")


# --------------------------------------------------------------------------------------------
# The one entry point
# --------------------------------------------------------------------------------------------

_RULES: tuple[Callable[[dict], None], ...] = (
    _check_model,
    _check_messages,
    _check_max_tokens,
    _check_sampling,
    _check_stop,
    _check_stream,
    _check_thinking_shape,
    _check_thinking_model,
    _check_thinking_sampling,
    _check_tools,
    _check_tool_choice,
    _check_thinking_tool_choice,
    _check_media_support,
    _check_cache_control,
    _check_orq,
)


def validate_payload(payload: dict) -> None:
    """Raise RequestValidationError(field, message) for the first documented rule ``payload`` breaks."""
    validated_breakpoints(payload)


def validated_breakpoints(payload: dict) -> list[Breakpoint]:
    """validate_payload, returning the cache breakpoints the rules found on the way (the local
    router marks them on its prompt blocks without walking the payload for them again)."""
    if not isinstance(payload, dict):
        _fail("payload", "must be a JSON object")
    points: list[Breakpoint] = []
    for rule in _RULES:
        found = rule(payload)
        if rule is _check_cache_control:
            points = found
    return points


# --------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------

def cache_control(ttl: str) -> dict:
    if ttl not in CACHE_TTLS:
        raise ValueError(f"cache TTL must be '5m' or '1h', not {ttl!r}")
    return {"type": "ephemeral", "ttl": ttl}


def text_part(text: str, cache_ttl: str | None = None) -> dict:
    part: dict = {"type": "text", "text": text}
    if cache_ttl:
        part["cache_control"] = cache_control(cache_ttl)
    return part


def image_part(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


def data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def image_part_from_bytes(data: bytes, mime: str) -> dict:
    if not mime.startswith("image/"):
        raise ValueError(f"not an image type: {mime}")
    return image_part(data_url(data, mime))


def pdf_part_from_bytes(data: bytes, filename: str) -> dict:
    return {"type": "file", "file": {"file_data": data_url(data, "application/pdf"), "filename": filename}}


def pdf_part_from_url(url: str) -> dict:
    return {"type": "file", "file": {"uri": url}}


def system_message(text: str, cache_ttl: str | None = None) -> dict:
    """A string system prompt, or (to cache it) a list holding one cached text part."""
    if cache_ttl:
        return {"role": "system", "content": [text_part(text, cache_ttl)]}
    return {"role": "system", "content": text}


def user_message(parts_or_text: str | Iterable[dict]) -> dict:
    if isinstance(parts_or_text, str):
        return {"role": "user", "content": parts_or_text}
    return {"role": "user", "content": list(parts_or_text)}


def tool_result_message(tool_call_id: str, content: Any, cache_ttl: str | None = None,
                        is_error: bool = False) -> dict:
    """A tool result. Non-string content is sent as JSON text.

    The OpenAI-compatible tool message has no is_error field (Anthropic's tool_result does), so
    a failure is said in the text itself: the content starts with "Error: ". The model reads it
    as a failed call. ``cache_ttl`` marks the whole message, the documented place for tools."""
    text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    if is_error and not text.startswith("Error: "):
        text = f"Error: {text}"
    message: dict = {"role": "tool", "tool_call_id": tool_call_id, "content": text}
    if cache_ttl:
        message["cache_control"] = cache_control(cache_ttl)
    return message


def with_cache_on_last_part(message: dict, ttl: str | None) -> dict:
    """A copy of ``message`` with a cache breakpoint on its last block (``ttl=None`` removes it).

    String content becomes one text part; a tool message is marked as a whole."""
    message = copy.deepcopy(message)
    if message.get("role") == "tool":
        _set_cache(message, ttl)
        return message
    content = message.get("content")
    if isinstance(content, str):
        message["content"] = [text_part(content)]
    if not message.get("content"):
        raise ValueError("the message has no content to mark for caching")
    _set_cache(message["content"][-1], ttl)
    return message


def _set_cache(holder: dict, ttl: str | None) -> None:
    if ttl:
        holder["cache_control"] = cache_control(ttl)
    else:
        holder.pop("cache_control", None)


@dataclass
class ChatParams:
    model: str
    max_tokens: int = 1024
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple[str, ...] = ()
    thinking_budget: int | None = None
    tools: list[dict] | None = None
    tool_choice: str | dict | None = None
    fallbacks: tuple[str, ...] = ()
    retry_count: int | None = None
    response_cache_ttl: int | None = None
    stream: bool = True


def _orq_object(params: ChatParams) -> dict:
    orq: dict = {}
    if params.fallbacks:
        orq["fallbacks"] = [{"model": slug} for slug in params.fallbacks]
    if params.retry_count:  # 0 or None: no retry object (Orq's count is 1-5)
        orq["retry"] = {"count": params.retry_count, "on_codes": list(ORQ_RETRY_ON_CODES)}
    if params.response_cache_ttl is not None:
        orq["cache"] = {"type": "exact_match", "ttl": params.response_cache_ttl}
    return orq


def build_payload(params: ChatParams, messages: list[dict]) -> dict:
    """The request body for ``params`` and ``messages``, validated; unset options are left out."""
    payload: dict = {"model": params.model, "messages": copy.deepcopy(list(messages)),
                     "max_tokens": params.max_tokens}
    optional = {"temperature": params.temperature, "top_p": params.top_p, "top_k": params.top_k}
    payload.update({key: value for key, value in optional.items() if value is not None})
    if params.stop:
        payload["stop"] = list(params.stop)
    if params.thinking_budget is not None:
        payload["thinking"] = {"type": "enabled", "budget_tokens": params.thinking_budget}
    if params.tools:
        payload["tools"] = copy.deepcopy(params.tools)
    if params.tool_choice is not None:
        payload["tool_choice"] = copy.deepcopy(params.tool_choice)
    payload["stream"] = params.stream
    if params.stream:
        payload["stream_options"] = {"include_usage": True}
    orq = _orq_object(params)
    if orq:
        payload["orq"] = orq
    validate_payload(payload)
    return payload


# --------------------------------------------------------------------------------------------
# Display
# --------------------------------------------------------------------------------------------

def abbreviate_payload(payload: Any, keep: int = 48) -> Any:
    """A deep copy with every base64 data URL cut to its first ``keep`` characters plus its
    decoded size, e.g. ``data:image/png;base64,iVBORw0K…(1,234,567 bytes)``. For display only."""
    if isinstance(payload, dict):
        return {key: abbreviate_payload(value, keep) for key, value in payload.items()}
    if isinstance(payload, list):
        return [abbreviate_payload(value, keep) for value in payload]
    if isinstance(payload, str):
        return _abbreviate_data_url(payload, keep)
    return copy.deepcopy(payload)


def _abbreviate_data_url(text: str, keep: int) -> str:
    match = DATA_URL_PREFIX.match(text) if text.startswith("data:") else None
    if not match or len(match.group(2)) <= keep:
        return text
    head, body = match.groups()
    return f"{head}{body[:keep]}…({_decoded_size(body):,} bytes)"


def _decoded_size(b64: str) -> int:
    b64 = "".join(b64.split())
    return len(b64) * 3 // 4 - (len(b64) - len(b64.rstrip("=")))
