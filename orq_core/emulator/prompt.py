"""The prompt as the local router sees it: a sequence of blocks in prefix order
(tools -> system -> messages), each with a token count and a content digest.

Prompt caching works on this sequence: a cached prefix is "every block up to and including
block i", identified by a hash chained over the block digests (see ``cache.py``).

Token counts use ``orq_core.tokens`` (the same rules the pages use for estimates) plus these
documented overheads, which are the emulator's own guesses, not Anthropic's tokenizer:

- ``MESSAGE_OVERHEAD_TOKENS`` (3) per message: role marker and turn delimiters.
- ``TOOL_OVERHEAD_TOKENS`` (5) per tool definition, on top of its JSON (name, description,
  parameters) counted as text.
- ``TOOL_USE_SYSTEM_PROMPT_TOKENS`` (346) once when tools are present: Anthropic's pricing page
  lists 346 extra input tokens of tool-use system prompt (tool_choice auto/none, Claude 4 models).
- ``TOOL_CALL_OVERHEAD_TOKENS`` (5) per replayed assistant tool call, plus its name and arguments.
- Images: Anthropic's width x height / 750 rule after scaling (``tokens.image_tokens``), with the
  real size read from the data URL. URL images are never fetched: they count as a 1092 x 1092
  image (Anthropic's largest 1:1 size that is not scaled, ~1,590 tokens).
- PDFs: each page is its text plus an image (``tokens.pdf_page_tokens``); a PDF given by URL is
  never fetched and counts as one page without text. An inline text/* file counts as its text.
- Replayed reasoning counts as its text (Anthropic strips thinking of earlier turns; the
  emulator keeps the rule simple and counts it), redacted reasoning as its data string.

What invalidates what (Anthropic, "Prompt caching", section "What invalidates the cache",
https://platform.claude.com/docs/en/build-with-claude/prompt-caching): a change to the tool
definitions invalidates tools, system and messages; a system change invalidates system and
messages (both follow from the chained prefix hash). Changing ``tool_choice`` (with
``parallel_tool_calls``, Anthropic's ``disable_parallel_tool_use``), the thinking settings (enabled
or not, budget), or adding or removing images anywhere in the prompt invalidates only the message
blocks: ``message_context`` is folded into the digest of the first non-system message, so tools
and system stay cached. (The table's web search and citations toggles have no form on this wire.)

``cache_control`` markers are left out of the digests: moving a breakpoint to a later block
(the usual multi-turn pattern) must not change the prefix that earlier requests cached.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from ..request import cache_breakpoints
from ..tokens import image_tokens, pdf_page_tokens, text_tokens

MESSAGE_OVERHEAD_TOKENS = 3
TOOL_OVERHEAD_TOKENS = 5
TOOL_USE_SYSTEM_PROMPT_TOKENS = 346
TOOL_CALL_OVERHEAD_TOKENS = 5
URL_IMAGE_TOKENS = image_tokens(1092, 1092)
URL_PDF_TOKENS = pdf_page_tokens("")


@dataclass(frozen=True)
class Block:
    """One cacheable unit of the prompt. ``cache_ttl`` is set when a breakpoint ends here."""

    path: str
    tokens: int
    digest: bytes
    cache_ttl: str | None = None


_canonical_json = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
"""json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False), without building
an encoder per call."""


def _digest(value: Any) -> bytes:
    return hashlib.sha256(_canonical_json(value).encode("utf-8")).digest()


def _no_digest(value: Any) -> bytes:
    """Counting tokens needs no digests: skipping them spares serialising inline files."""
    return b""


def _without_cache_control(value: dict) -> dict:
    return {k: v for k, v in value.items() if k != "cache_control"}


# --- media ---------------------------------------------------------------------------------

_MEDIA_TOKENS: OrderedDict[tuple[int, int], int] = OrderedDict()
_MEDIA_TOKENS_KEPT = 256


def _data_url_tokens(url: str) -> int:
    """Tokens of an inline file, remembered by the URL's length and hash (a str caches its hash,
    so this copies nothing), not by the URL itself: a cache holding the strings would keep
    every 40 MB PDF a session ever sent alive."""
    key = (len(url), hash(url))
    if key in _MEDIA_TOKENS:
        _MEDIA_TOKENS.move_to_end(key)
        return _MEDIA_TOKENS[key]
    tokens = _decode_and_count(url)
    _MEDIA_TOKENS[key] = tokens
    if len(_MEDIA_TOKENS) > _MEDIA_TOKENS_KEPT:
        _MEDIA_TOKENS.popitem(last=False)
    return tokens


def _decode_and_count(url: str) -> int:
    """Tokens of an inline image or PDF, decoded for real. Undecodable data (which the media
    check rejects before this is reached) falls back to the URL estimates."""
    from .. import media

    try:
        mime, data = media.parse_data_url(url)
        if (media.sniff(data) or mime) == media.PDF_MIME:
            return media.estimate_pdf_tokens(data)
        if mime.startswith("text/") and media.sniff(data) is None:
            return text_tokens(data.decode("utf-8", "replace"))
        return media.estimate_image_tokens(data)
    except (ValueError, OSError):
        return URL_PDF_TOKENS if "pdf" in url[:40] else URL_IMAGE_TOKENS


def _is_data_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("data:")


def part_tokens(part: dict) -> int:
    kind = part.get("type")
    if kind == "text":
        return text_tokens(part.get("text") or "")
    if kind == "image_url":
        url = (part.get("image_url") or {}).get("url")
        return _data_url_tokens(url) if _is_data_url(url) else URL_IMAGE_TOKENS
    if kind == "file":
        data = (part.get("file") or {}).get("file_data")
        return _data_url_tokens(data) if _is_data_url(data) else URL_PDF_TOKENS
    if kind == "document":
        url = (part.get("document") or {}).get("url")
        return _data_url_tokens(url) if _is_data_url(url) else URL_PDF_TOKENS
    if kind == "reasoning":
        return text_tokens(part.get("reasoning") or "")
    if kind == "redacted_reasoning":
        return text_tokens(part.get("data") or "")
    return text_tokens(json.dumps(part, ensure_ascii=False))


# --- token counts remembered by block digest ------------------------------------------------

_TOKENS_BY_DIGEST: OrderedDict[bytes, int] = OrderedDict()
_TOKENS_BY_DIGEST_KEPT = 4096
_TOKENS_LOCK = threading.Lock()


def _counted(digest: bytes, count: Callable[[], int]) -> int:
    """``count()``, remembered by the block's digest: a conversation resends the same long
    prefix on every turn, and hashing it is far cheaper than tokenizing it again. A block's
    digest covers everything its count reads (only cache_control is left out of both)."""
    if not digest:
        return count()
    with _TOKENS_LOCK:
        tokens = _TOKENS_BY_DIGEST.get(digest)
        if tokens is not None:
            _TOKENS_BY_DIGEST.move_to_end(digest)
            return tokens
    tokens = count()
    with _TOKENS_LOCK:
        _TOKENS_BY_DIGEST[digest] = tokens
        if len(_TOKENS_BY_DIGEST) > _TOKENS_BY_DIGEST_KEPT:
            _TOKENS_BY_DIGEST.popitem(last=False)
    return tokens


# --- segmentation --------------------------------------------------------------------------

def _tool_blocks(tools: list, digest: Callable[[Any], bytes]) -> Iterator[Block]:
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        function = _without_cache_control(function) if isinstance(function, dict) else {}
        block_digest = digest({"tool": function})
        tokens = _counted(block_digest, lambda: TOOL_OVERHEAD_TOKENS + text_tokens(
            json.dumps(function, sort_keys=True, ensure_ascii=False)))
        if i == 0:
            tokens += TOOL_USE_SYSTEM_PROMPT_TOKENS
        yield Block(f"tools[{i}]", tokens, block_digest)


def _message_header(message: dict) -> dict:
    header = {"role": message.get("role")}
    if message.get("tool_call_id"):
        header["tool_call_id"] = message["tool_call_id"]
    return header


def _message_blocks(i: int, message: dict, digest: Callable[[Any], bytes]) -> Iterator[Block]:
    """The message's blocks; the first carries the per-message overhead and the role."""
    header = _message_header(message)
    units: list[tuple[str, Callable[[], int], Any]] = []
    content = message.get("content")
    if isinstance(content, list):
        for j, part in enumerate(content):
            if isinstance(part, dict):
                units.append((f"messages[{i}].content[{j}]", _part_counter(part), _without_cache_control(part)))
    elif isinstance(content, str) and (content or not message.get("tool_calls")):
        # A string is one text block to Claude: same digest as [{"type": "text", "text": ...}].
        units.append((f"messages[{i}]", _text_counter(content), {"type": "text", "text": content}))
    for k, call in enumerate(message.get("tool_calls") or []):
        units.append((f"messages[{i}].tool_calls[{k}]", _call_counter(call), call))
    if not units:
        units.append((f"messages[{i}]", lambda: 0, None))
    for n, (path, count, value) in enumerate(units):
        if n == 0:
            block_digest = _unit_digest(digest, {"message": header}, value)
            yield Block(path, _counted(block_digest, count) + MESSAGE_OVERHEAD_TOKENS, block_digest)
        else:
            block_digest = _unit_digest(digest, {}, value)
            yield Block(path, _counted(block_digest, count), block_digest)


LONG_TEXT_CHARS = 2048
LONG_TEXTS_KEPT_CHARS = 8_000_000
"""The long texts remembered with their digests hold at most this many characters in all."""
_LONG_TEXTS: OrderedDict[tuple, tuple[str, bytes]] = OrderedDict()
_long_texts_chars = 0


def _unit_digest(digest: Callable[[Any], bytes], envelope: dict, value: Any) -> bytes:
    """``digest({**envelope, "unit": value})``. A long text part's result is remembered with the
    text itself, found again by the text's length and ends and confirmed by comparing the whole
    text (a memory compare, ~30x cheaper than hashing it and far cheaper than escaping it as JSON
    again): exact, so two different texts never share a digest. A conversation resends the same
    long prefix on every turn."""
    text = value.get("text") if isinstance(value, dict) and value.keys() == {"type", "text"} else None
    if digest is not _digest or not isinstance(text, str) or len(text) < LONG_TEXT_CHARS \
            or value.get("type") != "text":
        return digest({**envelope, "unit": value})
    key = (_digest(envelope), len(text), text[:64], text[-64:])
    with _TOKENS_LOCK:
        found = _LONG_TEXTS.get(key)
        if found is not None:
            _LONG_TEXTS.move_to_end(key)
    if found is not None and found[0] == text:
        return found[1]
    block_digest = digest({**envelope, "unit": value})
    _remember_long_text(key, text, block_digest)
    return block_digest


def _remember_long_text(key: tuple, text: str, block_digest: bytes) -> None:
    global _long_texts_chars
    if len(text) > LONG_TEXTS_KEPT_CHARS:
        return
    with _TOKENS_LOCK:
        replaced = _LONG_TEXTS.pop(key, None)
        _long_texts_chars += len(text) - (len(replaced[0]) if replaced else 0)
        _LONG_TEXTS[key] = (text, block_digest)
        while _long_texts_chars > LONG_TEXTS_KEPT_CHARS:
            _, (old, _) = _LONG_TEXTS.popitem(last=False)
            _long_texts_chars -= len(old)


def _part_counter(part: dict) -> Callable[[], int]:
    return lambda: part_tokens(part)


def _text_counter(text: str) -> Callable[[], int]:
    return lambda: text_tokens(text)


def _call_counter(call: Any) -> Callable[[], int]:
    function = (call.get("function") or {}) if isinstance(call, dict) else {}
    return lambda: (TOOL_CALL_OVERHEAD_TOKENS + text_tokens(str(function.get("name") or ""))
                    + text_tokens(str(function.get("arguments") or "")))


def _ordered_messages(messages: list) -> list[tuple[int, dict]]:
    """System messages first wherever they sit (Anthropic lifts them to the system prompt)."""
    pairs = [(i, m) for i, m in enumerate(messages) if isinstance(m, dict)]
    return [p for p in pairs if p[1].get("role") == "system"] + [p for p in pairs if p[1].get("role") != "system"]


def _mark_breakpoints(blocks: list[Block], payload: dict, points: list | None = None) -> list[Block]:
    """Set cache_ttl on the last block each breakpoint covers (request.cache_breakpoints is the
    one place that finds the markers; ``points``: what it found already, when validating)."""
    marked = list(blocks)
    for point in cache_breakpoints(payload) if points is None else points:
        path = point.path.removesuffix(".function")
        covered = [n for n, b in enumerate(marked)
                   if b.path == path or b.path.startswith(path + ".") or b.path.startswith(path + "[")]
        if covered:
            n = covered[-1]
            marked[n] = Block(marked[n].path, marked[n].tokens, marked[n].digest, point.ttl)
    return marked


def _image_count(messages: list) -> int:
    return sum(1 for m in messages if isinstance(m, dict) and isinstance(m.get("content"), list)
               for part in m["content"] if isinstance(part, dict) and part.get("type") == "image_url")


def message_context(payload: dict) -> dict:
    """The request settings whose change invalidates the cached message blocks (not tools or
    system): tool_choice, thinking and the number of images (see the module doc)."""
    messages = payload.get("messages") if isinstance(payload.get("messages"), list) else []
    tool_choice = payload.get("tool_choice")
    if tool_choice is None and payload.get("tools"):
        tool_choice = "auto"  # Anthropic's default when tools are given: the same request
    thinking = payload.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "disabled":
        thinking = None
    return {"tool_choice": tool_choice, "parallel_tool_calls": payload.get("parallel_tool_calls"),
            "thinking": thinking, "images": _image_count(messages)}


def _blocks(payload: dict, digest: Callable[[Any], bytes]) -> list[Block]:
    tools = payload.get("tools") if isinstance(payload.get("tools"), list) else []
    messages = payload.get("messages") if isinstance(payload.get("messages"), list) else []
    blocks = list(_tool_blocks(tools, digest))
    salted = False
    for i, message in _ordered_messages(messages):
        message_blocks = list(_message_blocks(i, message, digest))
        if not salted and message.get("role") != "system" and message_blocks and digest is not _no_digest:
            first = message_blocks[0]
            salt = digest({"context": message_context(payload)})
            message_blocks[0] = Block(first.path, first.tokens, hashlib.sha256(first.digest + salt).digest())
            salted = True
        blocks.extend(message_blocks)
    return blocks


def segment_prompt(payload: dict, breakpoints: list | None = None) -> list[Block]:
    """The prompt's blocks in prefix order, with breakpoints marked (``breakpoints``: what
    ``request.validated_breakpoints`` returned for this payload, if at hand)."""
    return _mark_breakpoints(_blocks(payload, _digest), payload, breakpoints)


def count_prompt_tokens(payload: dict) -> int:
    """All input tokens the local router will report for ``payload`` (cached or not)."""
    return sum(block.tokens for block in _blocks(payload, _no_digest))
