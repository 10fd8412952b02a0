"""What the local router says: synthetic, plainly labelled answers that refer to what was asked,
extended thinking with verifiable signatures, tool calls whose arguments fit the schema, and
descriptions of images and PDFs read from their real bytes.

Every answer is deterministic for a payload (the random choices are seeded from its hash), so
repeating a request repeats the answer, as a cache test or a demo expects.
Nothing here claims to be a model: each answer starts with a marker saying it is synthetic.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import math
import re
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from .. import media
from ..tokens import image_tokens, text_tokens
from .schema_fake import Hints, fake_arguments, name_words

# Anthropic's documented test string: a request holding it gets a redacted_thinking block.
MAGIC_REDACTED_TRIGGER = "ANTHROPIC_MAGIC_STRING_TRIGGER_REDACTED_THINKING"

_STOPWORDS = frozenset("""
a about above after again against all also am an and any are aren't as at be because been before
being below between both but by can can't cannot could couldn't did didn't do does doesn't doing
don't down during each few for from further had hadn't has hasn't have haven't having he her here
hers herself him himself his how i i'd i'll i'm i've if in into is isn't it it's its itself just
let let's me more most mustn't my myself no nor not now of off on once only or other ought our ours
ourselves out over own please same shan't she should shouldn't so some such tell than that that's
the their theirs them themselves then there there's these they this those through to too under
until up very was wasn't we were weren't what what's whats when where which while who whom why
will with won't would wouldn't you you'd you'll you're you've your yours yourself yourselves give
explain describe write show like know want need get make use using really thing things something
kind way much many well also okay hi hello hey thanks thank could would might must shall
summarise summarize summary list compare read look see find tell say help answer question image
picture photo file document pdf attached attachment
""".split())

# Words that say little about which tool fits ("get_weather": only "weather" counts).
_GENERIC_TOOL_WORDS = _STOPWORDS | frozenset(
    "get set fetch tool tools function call return returns current given value values data information "
    "info result results string number input output specified provided based the for".split())

# Words that mean the same job, so "temperature" finds a tool named get_weather.
_CONCEPTS = (
    frozenset("weather temperature temperatures forecast rain raining sunny snow wind humidity humid hot "
              "cold warm cool freezing umbrella degrees".split()),
    frozenset("time clock date today now hour hours timezone day".split()),
    frozenset("calculate calculator calc compute math arithmetic sum add plus minus multiply times divide "
              "divided expression evaluate sqrt percent product".split()),
    frozenset("convert conversion converter unit units km kilometers kilometres miles meters metres feet "
              "kg kilograms pounds lbs grams liters litres gallons inches".split()),
    frozenset("search find look lookup web google internet news latest".split()),
    frozenset("email mail send inbox recipient".split()),
    frozenset("stock stocks price prices share shares ticker market quote".split()),
    frozenset("translate translation language languages".split()),
)
_MIN_TOOL_SCORE = 2

_LENGTH_WORDS = re.compile(r"(\d{2,5})\s*(?:-\s*)?words?\b", re.I)
_LONG = re.compile(r"\b(long|longer|detailed|in detail|in depth|in-depth|essay|elaborate|comprehensive|"
                   r"thorough|exhaustive)\b", re.I)
_SHORT = re.compile(r"\b(short|shorter|brief|briefly|one sentence|one line|tl;?dr|concise|in a word|"
                    r"one word)\b", re.I)
_LIST_WANTED = re.compile(r"\b(list|steps|options|ways|pros|cons|ideas|tips|examples|bullet)\b", re.I)
_PAGE = re.compile(r"\bpage\s+(\d{1,3})\b", re.I)
_WORDS = re.compile(r"[A-Za-z][A-Za-z'-]*[A-Za-z]|[A-Za-z]")

_BODY = (
    "A good place to start is what {a} means in your situation, because that decides which details matter.",
    "{A} and {b} are closely linked here: a change in one usually shows up in the other.",
    "In practice, people tend to look at {a} first and then check how {b} fits around it.",
    "The main trade-off with {a} is usually between doing it quickly and doing it thoroughly.",
    "A small worked example of {a} often explains more than a definition would.",
    "One common pitfall is to treat {b} as fixed when it can change along with {a}.",
    "If you can say more about {b}, the answer can be more specific.",
    "It helps to write down the assumptions behind {a} before comparing options.",
    "The short version: {a} matters most here, with {b} a close second.",
    "Whatever you decide about {a}, it is worth checking the result against {b}.",
    "Seen from the side of {b}, the question about {a} becomes a question of priorities.",
    "There is rarely one right answer about {a}; the context around {b} usually settles it.",
)
_BULLETS = (
    "**{A}**: what it is and why it matters here",
    "**{A}**: how it relates to {b}",
    "**{A}**: what to check first",
    "**{A}**: the usual pitfalls",
    "**{A}**: where it makes the biggest difference",
)
_CLOSINGS = (
    "This reply was generated on your machine: no model was called and nothing left it.",
    "The local router mirrors the shape of a Claude reply (streaming, usage, caching, latency), "
    "not its content; set an Orq API key for real answers.",
    "Token counts, prompt caching and timing still follow the documented rules, so those numbers are worth a look.",
)
_THINKING = (
    "Does {a} depend on {b}? Partly; that is worth one sentence.",
    "Is the question after a definition of {a}, or practical steps? Probably steps, with a short definition first.",
    "Keep it short: no need to over-explain {a}.",
    "An example involving {b} would make the point about {a} concrete.",
    "Check for a hidden assumption about {b} before answering.",
    "Order: restate the question, cover {a}, then {b}, then a closing line.",
    "Avoid claiming certainty about {a}; the answer depends on context.",
)


@dataclass
class Answer:
    text: str
    reasoning: str | None = None
    signature: str | None = None
    redacted: list[str] = field(default_factory=list)
    tool_calls: list[dict] = field(default_factory=list)
    """Each {"id": "call_...", "name": ..., "arguments": JSON text}."""
    finish_reason: str = "stop"
    text_tokens: int | None = None
    """text_tokens(text), when the text was built from counted pieces (None: count it)."""
    text_marks: tuple[tuple[int, int], ...] = ()
    """(tokens before, offset) where each paragraph of the text starts: max_tokens truncation
    walks only the paragraph where the budget runs out."""
    reasoning_tokens: int | None = None
    """text_tokens(reasoning), when counted as it was built."""


@dataclass(frozen=True)
class _ToolResult:
    name: str
    arguments: str
    content: str


@dataclass(frozen=True)
class _Tool:
    name: str
    description: str
    parameters: dict


@dataclass(frozen=True)
class _Conversation:
    system: str
    question: str
    user_turns: int
    earlier_question: str
    media_parts: tuple[dict, ...]
    tool_results: tuple[_ToolResult, ...]


# --- entry points --------------------------------------------------------------------------------

def compose_answer(payload: dict, *, model_label: str, secret: bytes,
                   block_digests: Iterable[bytes] | None = None, digest: bytes | None = None) -> Answer:
    """``digest``: ``answer_digest(payload, block_digests)`` when the caller has it already."""
    convo = _read_conversation(payload)
    seed = int.from_bytes(digest[:8], "big") if digest else _seed(payload, block_digests)
    rng = Draws(seed)
    marker = f"[Local router · synthetic answer from {model_label} emulation, no model was called]"
    media_notes = [_describe_media(part, convo.question) for part in convo.media_parts]
    # After tool results Claude answers, unless tool_choice forces a call: then it must call again.
    answering = convo.tool_results and not _forced_choice(payload)
    calls = [] if answering else _plan_tool_calls(payload, convo, seed)
    if calls:
        text = "" if _forced_choice(payload) else _tool_preface(marker, convo, calls)
        answer = Answer(text=text, tool_calls=calls, finish_reason="tool_calls")
    elif convo.tool_results:
        answer = Answer(text=_answer_from_tool_results(marker, convo))
    else:
        text, tokens, marks = _joined(_answer_paragraphs(marker, convo, media_notes, rng))
        answer = Answer(text=text, text_tokens=tokens, text_marks=marks)
    budget = _thinking_budget(payload)
    if budget:
        answer.reasoning, answer.reasoning_tokens = _reasoning(convo, media_notes, calls, budget, rng)
        answer.signature = sign_reasoning(answer.reasoning, secret)
        if MAGIC_REDACTED_TRIGGER in convo.question:
            answer.redacted = [_redacted_block(seed)]
    return answer


def sign_reasoning(reasoning: str, secret: bytes) -> str:
    return base64.b64encode(hmac.new(secret, reasoning.encode("utf-8"), hashlib.sha256).digest()).decode("ascii")


def check_replayed_signatures(payload: dict, secret: bytes) -> None:
    """Every replayed reasoning block must carry the signature it was given, unmodified."""
    for n, message in enumerate(payload.get("messages") or []):
        if not isinstance(message, dict) or message.get("role") != "assistant":
            continue
        content = message.get("content")
        for m, part in enumerate(content if isinstance(content, list) else []):
            if not isinstance(part, dict) or part.get("type") not in ("reasoning", "thinking"):
                continue
            reasoning = part.get("reasoning", part.get("thinking"))
            signature = part.get("signature")
            if not isinstance(signature, str) or not signature:
                raise ValueError(f"messages.{n}.content.{m}.signature: Field required")
            if not isinstance(reasoning, str) or not hmac.compare_digest(
                    signature.encode("utf-8", "replace"), sign_reasoning(reasoning, secret).encode("ascii")):
                raise ValueError(f"Invalid signature in thinking block: messages.{n}.content.{m}")


def has_inline_media(payload: dict) -> bool:
    """Whether any message part carries an image or PDF as a data: URL (what inspect_media_parts
    decodes). Called before validation, so any shape is possible."""
    if not isinstance(payload.get("messages"), list):
        return False
    return any(kind is not None and url.startswith("data:")
               for kind, url in (_media_source(part) for _, _, part in _content_parts(payload)))


def inspect_media_parts(payload: dict) -> None:
    """Decode every inline image and PDF; MediaError (400/413) for what the API would refuse.
    URL sources are not fetched, so they are not checked."""
    pdf_pages = 0
    for n, m, part in _content_parts(payload):
        kind, url = _media_source(part)
        if kind is None or not url.startswith("data:"):
            continue
        try:
            mime, data = media.parse_data_url(url)
            if kind == "image":
                media.check_image_side(media.check_image(data, declared_mime=mime))
            elif not (mime.startswith("text/") and media.sniff(data) is None):
                pdf_pages += media.check_pdf(data, text_pages=0).pages
        except media.MediaError as error:
            raise media.MediaError(f"messages.{n}.content.{m}: {error.message}", status=error.status) from None
    if pdf_pages > media.MAX_PDF_PAGES:
        raise media.MediaError(f"The PDFs in this request have {pdf_pages} pages in all; the limit is "
                               f"{media.MAX_PDF_PAGES} pages per request")


# --- reading the payload -------------------------------------------------------------------------

def answer_digest(payload: dict, block_digests: Iterable[bytes] | None = None) -> bytes:
    """Same conversation and settings -> same digest, hence the same answer (it seeds it);
    transport options do not count. Given the prompt's block digests (the router has them), they
    stand for the tools and messages, so a long prompt is not serialised and hashed a second time."""
    skipped = _TRANSPORT_KEYS + (("messages", "tools") if block_digests is not None else ())
    relevant = {k: v for k, v in payload.items() if k not in skipped}
    digest = hashlib.sha256(_sorted_json(relevant).encode("utf-8"))
    for block_digest in block_digests or ():
        digest.update(block_digest)
    return digest.digest()


_sorted_json = json.JSONEncoder(sort_keys=True, default=str).encode  # json.dumps(..., sort_keys=True, default=str)


def _seed(payload: dict, block_digests: Iterable[bytes] | None = None) -> int:
    return int.from_bytes(answer_digest(payload, block_digests)[:8], "big")


_TRANSPORT_KEYS = ("stream", "stream_options", "orq", "fallbacks", "retry", "cache", "load_balancer", "timeout")


def _content_parts(payload: dict) -> Iterator[tuple[int, int, dict]]:
    for n, message in enumerate(payload.get("messages") or []):
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            for m, part in enumerate(content):
                if isinstance(part, dict):
                    yield n, m, part


def _media_source(part: dict) -> tuple[str | None, str]:
    """("image" | "pdf", url) for a media part, (None, "") otherwise."""
    kind = part.get("type")
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        return "image", url if isinstance(url, str) else ""
    if kind == "file" and isinstance(part.get("file"), dict):
        url = part["file"].get("file_data") or part["file"].get("uri")
        return "pdf", url if isinstance(url, str) else ""
    if kind == "document" and isinstance(part.get("document"), dict):
        url = part["document"].get("url") or part["document"].get("data")
        return "pdf", url if isinstance(url, str) else ""
    return None, ""


def message_text(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p["text"] for p in content
                         if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str))
    return ""


def _read_conversation(payload: dict) -> _Conversation:
    messages = [m for m in payload.get("messages") or [] if isinstance(m, dict)]
    system = "\n".join(message_text(m) for m in messages if m.get("role") in ("system", "developer"))
    users = [m for m in messages if m.get("role") == "user"]
    last_user = users[-1] if users else {}
    content = last_user.get("content")
    media_parts = tuple(p for p in content if isinstance(p, dict) and _media_source(p)[0]) \
        if isinstance(content, list) else ()
    return _Conversation(
        system=system.strip(),
        question=message_text(last_user).strip(),
        user_turns=len(users),
        earlier_question=message_text(users[-2]).strip() if len(users) > 1 else "",
        media_parts=media_parts,
        tool_results=_trailing_tool_results(messages),
    )


def _trailing_tool_results(messages: list[dict]) -> tuple[_ToolResult, ...]:
    tail: list[dict] = []
    for message in reversed(messages):
        if message.get("role") != "tool":
            break
        tail.insert(0, message)
    if not tail:
        return ()
    calls: dict[str, tuple[str, str]] = {}
    for message in messages:
        for call in message.get("tool_calls") or []:
            if isinstance(call, dict) and isinstance(call.get("function"), dict):
                calls[call.get("id", "")] = (str(call["function"].get("name", "tool")),
                                             str(call["function"].get("arguments", "")))
    return tuple(_ToolResult(*calls.get(m.get("tool_call_id", ""), ("tool", "")), message_text(m).strip())
                 for m in tail)


def _thinking_budget(payload: dict) -> int:
    thinking = payload.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        return budget if isinstance(budget, int) and budget > 0 else 1024
    return 0


def keywords(text: str, limit: int = 6) -> list[str]:
    """The most telling content words of ``text`` (long words and names first), kept in the
    order they appear, without repeats."""
    found: dict[str, str] = {}
    for word in _WORDS.findall(text.replace(MAGIC_REDACTED_TRIGGER, " ")):
        key = word.lower().strip("'")
        if len(key) >= 3 and key not in _STOPWORDS and key not in found:
            found[key] = word
    words = list(found.values())
    best = sorted(range(len(words)), key=lambda i: (-(len(words[i]) + 4 * words[i][0].isupper()), i))[:limit]
    return [words[i] for i in sorted(best)]


def _quote(text: str, limit: int = 160) -> str:
    text = " ".join(text.replace(MAGIC_REDACTED_TRIGGER, "").split())
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def _first_sentence(text: str, limit: int = 120) -> str:
    sentence = re.split(r"(?<=[.!?])\s|\n", text.strip(), maxsplit=1)[0]
    return _quote(sentence, limit)


# --- plain answers -------------------------------------------------------------------------------

def _answer_paragraphs(marker: str, convo: _Conversation, media_notes: list[str],
                       rng: "Draws") -> list[tuple[str, int]]:
    """The plain answer's paragraphs, each with its token count (counted as it is built)."""
    words = keywords(convo.question, 4)
    opening = [_restate(convo, words)]
    if convo.system:
        opening.append(f"Following the system prompt (\"{_first_sentence(convo.system)}\"), I keep to its instructions.")
    if convo.earlier_question:
        earlier = keywords(convo.earlier_question, 3)
        if earlier:
            opening.append(f"This is turn {convo.user_turns} of our conversation; earlier you asked about "
                           f"{_join(earlier)}.")
    paragraphs = [(marker, _marker_tokens(marker)), _counted(" ".join(opening))]
    if media_notes:
        paragraphs.append(_counted(" ".join(media_notes)))
    target_tokens, target_words = _target_length(convo.question, rng)
    used_tokens = sum(tokens for _, tokens in paragraphs[1:])
    used_words = sum(len(text.split()) for text, _ in paragraphs[1:])
    body = _body_paragraphs(words, rng, target_tokens, target_words, used_tokens, used_words)
    # a list when asked for one, now and then otherwise, but never unasked in a brief answer
    if words and (_LIST_WANTED.search(convo.question) or (rng.chance(0.35) and not _SHORT.search(convo.question))):
        body.insert(min(1, len(body)), _counted(_bullet_list(words, rng)))
    paragraphs += body
    paragraphs.append(rng.choice(_COUNTED_CLOSINGS))
    return paragraphs


def _counted(text: str) -> tuple[str, int]:
    return text, text_tokens(text)


_marker_tokens = functools.lru_cache(maxsize=64)(text_tokens)


def _joined(paragraphs: list[tuple[str, int]]) -> tuple[str, int, tuple[tuple[int, int], ...]]:
    """(the paragraphs joined by blank lines, its tokens, (tokens before, offset) of each paragraph).
    Whitespace separates the paragraphs, so their counts add up to the whole text's."""
    marks = []
    tokens = offset = 0
    for text, count in paragraphs:
        marks.append((tokens, offset))
        tokens += count
        offset += len(text) + 2
    return "\n\n".join(text for text, _ in paragraphs), tokens, tuple(marks)


def _restate(convo: _Conversation, words: list[str]) -> str:
    if not convo.question:
        return "Your message had no text for me to answer." if not convo.media_parts else \
            "You sent media without a question, so here is what the local router can read from it."
    if len(convo.question) <= 160:
        return f"You asked: \"{_quote(convo.question)}\""
    return f"You asked about {_join(words[:3]) or 'a long question'} (\"{_quote(convo.question, 120)}\")."


def _target_length(question: str, rng: "Draws") -> tuple[int, int | None]:
    """(tokens, words or None) to aim at: about 60-200 tokens, more when asked for length."""
    asked = _LENGTH_WORDS.search(question)
    if asked:
        words = max(20, min(3000, int(asked.group(1))))
        return 0, words
    if _LONG.search(question):
        return rng.between(380, 480), None
    if _SHORT.search(question):
        return rng.between(25, 45), None
    base = 60 + int(1.2 * text_tokens(question))
    return min(200, int(base * rng.uniform(0.9, 1.15))), None


@dataclass(frozen=True)
class _Template:
    """A sentence template with the tokens and words of its fixed text, so a filled sentence is
    counted by arithmetic. Its placeholders sit between spaces or punctuation, never inside a
    word, so a keyword's tokens add to the template's (a test checks every template)."""

    text: str
    tokens: int
    words: int
    lower_a: int
    upper_a: int
    b: int
    positional: str
    """``text`` with {0}, {1}, {2} for a, A, b: format() with positions costs less than with names."""

    @classmethod
    def of(cls, text: str) -> "_Template":
        return cls(text, text_tokens(text.format(a="", A="", b="")), len(text.format(a="x", A="x", b="x").split()),
                   text.count("{a}"), text.count("{A}"), text.count("{b}"),
                   text.replace("{a}", "{0}").replace("{A}", "{1}").replace("{b}", "{2}"))


_BODY_TEMPLATES = tuple(_Template.of(text) for text in _BODY)
_COUNTED_CLOSINGS = tuple(_counted(text) for text in _CLOSINGS)


def _body_paragraphs(words: list[str], rng: "Draws", target_tokens: int, target_words: int | None,
                     used_tokens: int, used_words: int) -> list[tuple[str, int]]:
    """Paragraphs of 2-4 template sentences until the target length; each with its tokens."""
    templates = rng.shuffled(_BODY_TEMPLATES)
    pairs = _keyword_pairs(words)
    counts = {word: (text_tokens(word), len(word.split()) - 1) for pair in pairs for word in pair}
    # sentence n is sentence n + period again: each distinct one is filled once, on first use
    period = math.lcm(len(templates), len(pairs))
    texts: list[str] = []
    tokens: list[int] = []
    words_of: list[int] = []
    # the restated question counts half: the body still says something about it
    tokens_so_far, words_so_far = used_tokens // 2, used_words
    n = 0
    while n <= 2000:
        if target_words is not None:
            if words_so_far >= target_words:
                break
        elif tokens_so_far >= target_tokens and n >= 2:
            break
        if n < period:
            t, (a, b) = templates[n % len(templates)], pairs[n % len(pairs)]
            (a_tokens, a_words), (b_tokens, b_words) = counts[a], counts[b]
            uses_a = t.lower_a + t.upper_a
            texts.append(t.positional.format(a, a[:1].upper() + a[1:], b))
            tokens.append(t.tokens + uses_a * a_tokens + t.b * b_tokens)
            words_of.append(t.words + uses_a * a_words + t.b * b_words)
        tokens_so_far += tokens[n % period]
        words_so_far += words_of[n % period]
        n += 1
    whole, part = divmod(n, period)
    texts, tokens = texts * whole + texts[:part], tokens * whole + tokens[:part]
    paragraphs = []
    start = 0
    while start < n:
        end = start + 2 + rng.below(3)
        paragraphs.append((" ".join(texts[start:end]), sum(tokens[start:end])))
        start = end
    return paragraphs


def _keyword_pairs(words: list[str]) -> list[tuple[str, str]]:
    if not words:
        return [("your question", "the context around it")]
    if len(words) == 1:
        return [(words[0], "your goal")]
    return [(words[i], words[(i + 1) % len(words)]) for i in range(len(words))]


def _bullet_list(words: list[str], rng: "Draws") -> str:
    pairs = _keyword_pairs(words)[:4]
    templates = rng.shuffled(_BULLETS)
    return "\n".join("- " + templates[i].format(A=a[:1].upper() + a[1:], b=b) for i, (a, b) in enumerate(pairs))


class Draws:
    """The answer's random choices, read from bytes derived from its seed: the same request makes
    the same choices, and this costs less than seeding a random.Random for every request."""

    _SIZE = 256

    def __init__(self, seed: int):
        self._bytes = hashlib.shake_256(seed.to_bytes(8, "big")).digest(self._SIZE)
        self._at = 0

    def _next(self) -> int:
        """0..65535 (the bytes are reused in turn past the first 128 draws: a 3,000-word answer's
        paragraph lengths repeat, nothing else draws that often)."""
        at = self._at
        self._at = (at + 2) % self._SIZE
        return self._bytes[at] << 8 | self._bytes[at + 1]

    def below(self, n: int) -> int:
        return self._next() % n

    def between(self, low: int, high: int) -> int:
        """low..high inclusive."""
        return low + self.below(high - low + 1)

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self._next() / 65535

    def chance(self, p: float) -> bool:
        return self._next() < p * 65536

    def choice(self, items):
        return items[self.below(len(items))]

    def shuffled(self, items) -> list:
        keys = [self._next() for _ in items]
        return [item for _, _, item in sorted(zip(keys, range(len(items)), items))]


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


# --- media descriptions --------------------------------------------------------------------------

def _describe_media(part: dict, question: str) -> str:
    kind, url = _media_source(part)
    if not url.startswith("data:"):
        noun = "an image" if kind == "image" else "a PDF"
        return f"I was given {noun} at {url}; the local router does not fetch URLs, so I cannot see its content."
    try:
        mime, data = media.parse_data_url(url)
        if kind == "image":
            return describe_image(data)
        if mime.startswith("text/") and media.sniff(data) is None:
            return f"I was given a text document of {len(data):,} bytes."
        name = part.get("file", {}).get("filename") if isinstance(part.get("file"), dict) else None
        return describe_pdf(data, name, question)
    except media.MediaError as error:
        return f"I could not read the {'image' if kind == 'image' else 'PDF'}: {error.message}."


def describe_image(data: bytes) -> str:
    """Facts from the pixels: format, size, frames and main colours."""
    info = media.image_info(data)
    kind = media.kind_name(info.mime).replace(" image", "")
    sentences = [f"The image is a {info.width}×{info.height} {kind} ({_size(info.bytes)})."]
    if info.frames > 1:
        sentences.append(f"It is animated, with {info.frames} frames.")
    colours = media.dominant_colours(data, 3)
    if colours:
        sentences.append("Its main colours are " + _join([f"{name} ({hex_}, {share:.0%})"
                                                          for name, hex_, share in colours]) + ".")
    seen = media.target_size(info.width, info.height)
    if seen != (info.width, info.height):
        sentences.append(f"Claude would see it scaled to {seen[0]}×{seen[1]}.")
    sentences.append(f"That is about {image_tokens(info.width, info.height):,} input tokens; the local router "
                     "reads sizes and colours only, it does not recognise what the picture shows.")
    return " ".join(sentences)


def describe_pdf(data: bytes, filename: str | None, question: str) -> str:
    """Facts from the document: pages, title, and the first lines (or those of a page asked about)."""
    asked = _PAGE.search(question)
    page_asked = int(asked.group(1)) if asked else None
    info = media.pdf_info(data, text_pages=max(2, page_asked or 0))
    name = f" \"{filename}\"" if filename else ""
    title = f", titled \"{info.title}\"," if info.title else ""
    pages = f"{info.pages} page{'s' if info.pages != 1 else ''}"
    sentences = [f"The PDF{name}{title} has {pages} ({_size(info.bytes)})."]
    if page_asked and 1 <= page_asked <= info.pages:
        lines = _lines(info.page_texts[page_asked - 1])
        sentences.append(f"Page {page_asked} begins: {lines}" if lines else f"Page {page_asked} has no extractable text.")
    else:
        lines = " / ".join(f"\"{_quote(line, 100)}\"" for line in info.first_lines(3))
        sentences.append(f"Its first lines read: {lines}." if lines else "It has no extractable text on its first pages.")
        if page_asked:
            sentences.append(f"There is no page {page_asked}.")
    return " ".join(sentences)


def _lines(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()][:3]
    return (" / ".join(f"\"{_quote(line, 100)}\"" for line in lines) + ".") if lines else ""


def _size(n: int) -> str:
    return f"{n / 1024:.1f} KB" if n < 1024 * 1024 else media.megabytes(n)


# --- tools ---------------------------------------------------------------------------------------

def _tools(payload: dict) -> list[_Tool]:
    tools = []
    for tool in payload.get("tools") or []:
        if not isinstance(tool, dict):
            continue
        spec = tool.get("function") if isinstance(tool.get("function"), dict) else tool
        name = spec.get("name")
        if isinstance(name, str) and name:
            params = spec.get("parameters", spec.get("input_schema"))
            tools.append(_Tool(name, str(spec.get("description") or ""), params if isinstance(params, dict) else {}))
    return tools


def _choice(payload: dict) -> tuple[str, str | None]:
    """("auto" | "none" | "required" | "named", tool name)."""
    choice = payload.get("tool_choice")
    if isinstance(choice, str):
        return {"any": "required"}.get(choice, choice), None
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") if isinstance(choice.get("function"), dict) \
            else choice.get("name")
        if name:
            return "named", name
        return {"any": "required", "tool": "required"}.get(choice.get("type", "auto"), choice.get("type", "auto")), None
    return "auto", None


def _forced_choice(payload: dict) -> bool:
    return _choice(payload)[0] in ("required", "named")


def tool_score(tool_name: str, description: str, question: str) -> int:
    """How well a tool fits the question: shared words (the name's count double) plus shared concepts."""
    asked = _stems(_WORDS.findall(question.lower()))
    name = _stems(name_words(tool_name)) - _GENERIC_TOOL_WORDS
    described = _stems(_WORDS.findall(description.lower())) - _GENERIC_TOOL_WORDS
    score = 2 * len(asked & name) + len(asked & (described - name))
    tool_words = name | described
    score += 2 * sum(1 for concept in _CONCEPTS if asked & concept and tool_words & concept)
    hints = Hints.from_text(question)
    if hints.expression and tool_words & _CONCEPTS[2]:
        score += 2
    return score


def _stems(words: list[str]) -> set[str]:
    stems = set()
    for word in words:
        stems.add(word)
        if len(word) > 4 and word.endswith("s") and not word.endswith("ss"):
            stems.add(word[:-1])
    return stems


def _plan_tool_calls(payload: dict, convo: _Conversation, seed: int) -> list[dict]:
    tools = _tools(payload)
    mode, named = _choice(payload)
    if not tools or mode == "none":
        return []
    if mode == "named":
        chosen = [t for t in tools if t.name == named][:1]
    else:
        ranked = sorted(((tool_score(t.name, t.description, convo.question), i, t) for i, t in enumerate(tools)),
                        key=lambda item: (-item[0], item[1]))
        chosen = [t for score, _, t in ranked if score >= _MIN_TOOL_SCORE]
        if not chosen and mode == "required":
            chosen = [ranked[0][2]]
    parallel = payload.get("parallel_tool_calls") is not False
    if not parallel:
        chosen = chosen[:1]
    hints = Hints.from_text(convo.question)
    calls: list[dict] = []
    for tool in chosen:
        for call_hints in _fan_out(tool, hints, parallel):
            arguments = fake_arguments(tool.parameters, call_hints)
            calls.append({"id": _call_id(seed, len(calls), tool.name), "name": tool.name,
                          "arguments": json.dumps(arguments, ensure_ascii=False)})
    return calls if parallel else calls[:1]


def _fan_out(tool: _Tool, hints: Hints, parallel: bool) -> list[Hints]:
    """One call per place when a tool takes one place and the user named several
    ("weather in Paris and Tokyo" -> two get_weather calls), as Claude does."""
    props = tool.parameters.get("properties") if isinstance(tool.parameters.get("properties"), dict) else {}
    takes_place = any(isinstance(s, dict) and s.get("type", "string") == "string"
                      and set(name_words(p)) & {"location", "city", "place", "town", "country"}
                      for p, s in props.items())
    if parallel and takes_place and len(hints.places) > 1:
        return [hints.with_place(place) for place in hints.places[:4]]
    return [hints]


def _call_id(seed: int, index: int, name: str) -> str:
    return "call_" + hashlib.sha256(f"{seed}:{index}:{name}".encode()).hexdigest()[:24]


def _tool_preface(marker: str, convo: _Conversation, calls: list[dict]) -> str:
    names = list(dict.fromkeys(c["name"] for c in calls))
    what = _join([f"`{n}`" for n in names])
    times = f" ({len(calls)} calls)" if len(calls) > len(names) else ""
    topic = f" \"{_quote(convo.question, 100)}\"" if convo.question else " this"
    return f"{marker}\n\nTo answer{topic}, I'll call {what}{times}."


def _answer_from_tool_results(marker: str, convo: _Conversation) -> str:
    lines = [marker, f"You asked: \"{_quote(convo.question)}\"" if convo.question else "Here is what the tools returned."]
    facts: list[str] = []
    for result in convo.tool_results:
        called = f"`{result.name}`" + (f" with {result.arguments}" if result.arguments else "")
        if result.content.startswith("Error"):
            lines.append(f"The call to {called} failed: \"{_quote(result.content, 300)}\".")
            continue
        lines.append(f"The tool {called} returned: \"{_quote(result.content, 300)}\".")
        facts.append(_result_fact(result))
    if facts:
        lines.append("So, based on " + ("that result" if len(facts) == 1 else "these results") + ": "
                     + "; ".join(facts) + ".")
    else:
        lines.append("Without a working result I cannot answer from the tools; you may want to retry the call.")
    return "\n\n".join(lines)


def _result_fact(result: _ToolResult) -> str:
    try:
        value = json.loads(result.content)
    except ValueError:
        value = result.content
    if isinstance(value, dict) and value:
        pairs = [f"{k} is {json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v}"
                 for k, v in list(value.items())[:4]]
        return f"from `{result.name}`, " + ", ".join(pairs)
    if isinstance(value, list):
        return f"`{result.name}` gave {len(value)} item{'s' if len(value) != 1 else ''}"
    return f"the answer from `{result.name}` is {_quote(str(value), 120)}"


# --- thinking ------------------------------------------------------------------------------------

def _reasoning(convo: _Conversation, media_notes: list[str], calls: list[dict], budget: int,
               rng: Draws) -> tuple[str, int]:
    """The reasoning text and its tokens."""
    words = keywords(convo.question)
    steps = [f"The user asks: \"{_quote(convo.question, 200)}\"." if convo.question else "There is no question text."]
    if words:
        steps.append(f"Key terms: {', '.join(words)}.")
    if convo.system:
        steps.append(f"The system prompt says \"{_first_sentence(convo.system)}\"; follow it.")
    if media_notes:
        steps.append("Attached media: " + " ".join(media_notes))
    if calls:
        steps.append("A tool fits better than guessing: " + "; ".join(
            f"call `{c['name']}` with {c['arguments']}" for c in calls) + ".")
    elif convo.tool_results:
        steps.append("The tool results are in: " + "; ".join(
            f"`{r.name}` returned \"{_quote(r.content, 120)}\"" for r in convo.tool_results) + ". Summarise them.")
    else:
        steps.append("Plan: restate the question, answer in short paragraphs, maybe a short list.")
    target = max(40, min(600, int(budget * rng.uniform(0.08, 0.2))))
    pairs = _keyword_pairs(words)
    templates = rng.shuffled(_THINKING)
    tokens = sum(text_tokens(step) for step in steps)  # steps are whitespace-separated: counts add up
    i = 0
    while tokens < target and i < 200:
        a, b = pairs[i % len(pairs)]
        steps.append(templates[i % len(templates)].format(a=a, b=b))
        tokens += text_tokens(steps[-1])
        i += 1
    # each "n. " adds two tokens: the number (at most 4 digits) and the full stop
    return "\n".join(f"{n}. {step}" for n, step in enumerate(steps, 1)), tokens + 2 * len(steps)


def _redacted_block(seed: int) -> str:
    """Opaque bytes, as Anthropic's encrypted redacted_thinking data looks to a client."""
    stream = b"".join(hashlib.sha256(f"redacted:{seed}:{i}".encode()).digest() for i in range(4))
    return base64.b64encode(stream).decode("ascii")
