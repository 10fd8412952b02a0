"""The Vision / PDF page's logic: a document session holding the images and PDFs a person added,
their checks and token estimates, the message parts built from them, and the Q/A turns.

The conversation's first user message holds every media part (media first, then the first
question: Claude reads images and documents best before the text that asks about them); follow-up
questions are plain user turns after the answers, so the document stays in context. With caching
on, the last media part carries ``cache_control``: the cached prefix is "all the media", which is
byte-identical in every follow-up, so the second question reads it from the cache.

Once a question has been answered the media are fixed (they are part of the conversation's
history); ``new_conversation()`` keeps the files and clears the turns.

Limits are ``orq_core.media``'s (5 MB per image, 32 MB / 100 pages per PDF) plus two of the API's
image rules that media does not cover: at most 8000 px on either edge, and at most
``PAGE_MAX_IMAGES`` images per request on this page (see its comment).
"""

from __future__ import annotations

import math
import mimetypes
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import urlparse

from . import media, tokens
from .catalog import Model
from .cost import CostBreakdown, cost_of
from .request import (ChatParams, build_payload, cache_control, image_part, image_part_from_bytes, pdf_part_from_bytes,
                      pdf_part_from_url, text_part, user_message)
from .types import Completion
from .usage import Usage

# The API takes up to 100 images per request, but above 20 every image must be at most
# 2000 x 2000 px (instead of 8000 x 8000) and the request body (32 MB on Anthropic's API) fills
# fast with base64. The page keeps to 20 so only the simple 8000 px rule applies.
PAGE_MAX_IMAGES = 20
API_MAX_IMAGES = 100
MAX_IMAGE_EDGE = 8000
MAX_REQUEST_BYTES = 32 * 1024 * 1024  # Anthropic's request-size limit; other platforms differ
UPLOAD_TYPES = ("png", "jpg", "jpeg", "gif", "webp", "pdf")
RECOMMENDED_LONG_EDGE = tokens.MAX_IMAGE_LONG_EDGE

IMAGE, PDF = "image", "pdf"
KIND_LABELS = {IMAGE: "an image", PDF: "a PDF"}


def _kind_of_mime(mime: str | None) -> str | None:
    if mime == media.PDF_MIME:
        return PDF
    if mime in media.IMAGE_MIMES:
        return IMAGE
    return None


def kind_from_name(name: str) -> str | None:
    """What a file name (or an address's path) claims to be: "image", "pdf" or None."""
    guessed, _ = mimetypes.guess_type(name.lower())
    return _kind_of_mime(media.normalise_mime(guessed))


def _extension(name: str) -> str:
    dot = name.rfind(".")
    return name[dot:].lower() if dot > 0 else ""


def file_size(n: int) -> str:
    """'5.2 KB', '1.3 MB' (as the local router writes sizes)."""
    return f"{n / 1024:.1f} KB" if n < 1024 * 1024 else media.megabytes(n)


# --------------------------------------------------------------------------------------------
# One image or PDF
# --------------------------------------------------------------------------------------------

@dataclass
class MediaItem:
    """One image or PDF: its bytes (or its address), the facts read from the bytes, its token
    estimate, and ``problem`` (a sentence) when it cannot be sent as it is."""

    name: str
    source: str  # "upload" | "camera" | "url"
    kind: str | None  # what it will be sent as: "image" | "pdf" | None (unusable)
    data: bytes | None = None
    """The file's bytes; None for an address, and for a checked PDF once its part is built (the
    base64 data URL is all a request needs, so the session does not hold the file twice)."""
    url: str | None = None
    size: int = 0
    """The file's size in bytes (0 for an address)."""
    mime: str | None = None
    """From the bytes (magic numbers), never from the name."""
    width: int = 0
    height: int = 0
    frames: int = 1
    pages: int = 0
    title: str | None = None
    first_lines: tuple[str, ...] = ()
    tokens: int = 0
    problem: str | None = None
    fix: str | None = None
    """What can repair ``problem`` in place: "downscale" or "as_detected"."""
    original: tuple[int, int, int] | None = None
    """(width, height, bytes) before a downscale."""
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    _part: dict | None = field(default=None, repr=False, compare=False)
    _downscaled: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.problem is None and self.kind is not None

    @property
    def by_address(self) -> bool:
        return self.url is not None

    @property
    def encoded_size(self) -> int:
        """Bytes this item adds to the request body (base64 is 4/3 of the file)."""
        return len(self.url or "") if self.by_address else 4 * math.ceil(self.size / 3)

    def facts(self) -> str:
        """'PNG image · 1.2 MB · 800 × 600 px · ≈ 640 tokens' (one line for the preview)."""
        if self.by_address:
            what = "PDF by address" if self.kind == PDF else "image by address"
            return f"{what} · size unknown until the router fetches it · ≈ {self.tokens:,} tokens (assumed)"
        parts = [media.kind_name(self.mime), file_size(self.size)]
        if self.kind == IMAGE and self.width:
            parts.append(f"{self.width} × {self.height} px" + (f" ({self.frames} frames)" if self.frames > 1 else ""))
        if self.kind == PDF and self.pages:
            parts.append(f"{self.pages} page{'s' if self.pages != 1 else ''}")
        if self.ok:
            parts.append(f"≈ {self.tokens:,} tokens")
        return " · ".join(parts)

    def part(self) -> dict:
        """The wire content part, built once: the base64 data URL of a 30 MB PDF is 40 MB of text,
        and rebuilding it for every question (and every estimate) would copy it each time."""
        if self._part is None:
            if self.by_address:
                self._part = image_part(self.url) if self.kind == IMAGE else pdf_part_from_url(self.url)
            elif self.kind == IMAGE:
                self._part = image_part_from_bytes(self.data, self.mime)
            else:
                self._part = pdf_part_from_bytes(self.data, self.name)
        return self._part


def _inspect_image(item: MediaItem) -> None:
    try:
        info = media.check_image(item.data)
    except media.MediaError as error:
        item.problem = error.message
        if error.status == 413:  # too many bytes: maybe fixable by resizing, if it decodes at all
            _read_size_if_possible(item)
        return
    item.width, item.height, item.frames = info.width, info.height, info.frames
    item.tokens = tokens.image_tokens(info.width, info.height)
    if max(info.width, info.height) > MAX_IMAGE_EDGE:
        item.problem = (f"The image is {info.width} × {info.height} px; the API refuses images over "
                        f"{MAX_IMAGE_EDGE:,} px on either edge.")
        item.fix = "downscale"


def _read_size_if_possible(item: MediaItem) -> None:
    try:
        info = media.image_info(item.data)
    except media.MediaError:
        return
    item.width, item.height, item.frames = info.width, info.height, info.frames
    if media.target_size(info.width, info.height) != (info.width, info.height):
        item.fix = "downscale"
        item.problem += " — downscaling it to the size Claude reads may bring it under the limit."


def _inspect_pdf(item: MediaItem) -> None:
    try:
        info = media.check_pdf(item.data)
    except media.MediaError as error:
        item.problem = error.message
        return
    item.pages, item.title = info.pages, info.title
    item.first_lines = tuple(info.first_lines(6))
    item.tokens = sum(tokens.pdf_page_tokens(text) for text in info.page_texts)


def _inspect(item: MediaItem) -> MediaItem:
    if item.data is None:  # an address, or a PDF already checked and sealed
        return item
    item.size = len(item.data)
    item.problem = item.fix = None
    item.width = item.height = item.pages = item.tokens = 0
    item.frames, item.title, item.first_lines = 1, None, ()
    item._part = item._downscaled = None
    if item.kind == IMAGE:
        _inspect_image(item)
    elif item.kind == PDF:
        _inspect_pdf(item)
    return item


def inspect_file(name: str, data: bytes, source: str = "upload") -> MediaItem:
    """A MediaItem for a file: type from its bytes, checked against the name and the limits."""
    mime = media.sniff(data)
    detected = _kind_of_mime(mime)
    claimed = kind_from_name(name)
    item = MediaItem(name=name, source=source, kind=detected, data=data, mime=mime, size=len(data))
    if detected is None:
        item.problem = (f"“{name}” is not a PNG, JPEG, GIF, WebP image or a PDF (its first bytes say so, "
                        "whatever its name says)." if data else f"“{name}” is empty.")
        return item
    _inspect(item)
    if claimed is not None and claimed != detected:
        item.problem = (f"“{name}” is named {_extension(name)} but its bytes are {KIND_LABELS[detected]} "
                        f"({media.kind_name(mime)}). The type is read from the bytes, not the name: "
                        f"rename the file, or send it as {KIND_LABELS[detected]}.")
        item.fix = "as_detected"
    return _seal(item)


def _seal(item: MediaItem) -> MediaItem:
    """A checked PDF keeps only its data URL: build it now, once, and let go of the raw bytes."""
    if item.ok and item.kind == PDF and item.data is not None:
        item.part()
        item.data = None
    return item


def inspect_url(url: str, kind: str) -> MediaItem:
    """A MediaItem for an image or PDF given by address (a base64 data URL is decoded and checked
    like an upload). Addresses are not fetched here: the router fetches them."""
    url = url.strip()
    if url.startswith("data:"):
        try:
            mime, data = media.parse_data_url(url)
        except media.MediaError as error:
            return MediaItem(name="pasted data URL", source="url", kind=None, problem=error.message)
        extension = mimetypes.guess_extension(mime or "") or ""
        return inspect_file(f"pasted{extension}", data, source="url")
    parsed = urlparse(url)
    name = parsed.path.rsplit("/", 1)[-1] or parsed.netloc or url
    item = MediaItem(name=name, source="url", kind=kind, url=url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        item.problem = "An address must start with http:// or https:// (or be a base64 data: URL)."
        return item
    from .emulator.prompt import part_tokens  # the same assumption the local router makes

    item.tokens = part_tokens(item.part())
    claimed = kind_from_name(parsed.path)
    if claimed is not None and claimed != kind:
        item.problem = (f"The address ends in {_extension(parsed.path)} but was added as {KIND_LABELS[kind]}.")
        item.fix = "as_detected"
    return item


# --------------------------------------------------------------------------------------------
# Downscale offer
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DownscaleOffer:
    """What resizing an image to Claude's working size changes.

    Claude scales any image over 1568 px (or ~1.15 MP) down itself before reading it, so the
    tokens it bills are ``tokens_after`` either way; ``full_size_tokens`` is the width x height / 750
    of the original pixels, which is what the image would cost if it were read at full size.
    Downscaling here saves the upload bytes and the router's resize time (time to first token),
    and fixes images over the 5 MB or 8000 px limits."""

    width: int
    height: int
    new_width: int
    new_height: int
    full_size_tokens: int
    tokens_after: int
    bytes_before: int
    bytes_after: int

    @property
    def token_saving(self) -> int:
        return self.full_size_tokens - self.tokens_after

    @property
    def bytes_saving(self) -> int:
        return self.bytes_before - self.bytes_after


def downscale_offer(item: MediaItem, long_edge: int = RECOMMENDED_LONG_EDGE) -> DownscaleOffer | None:
    """An offer for an image larger than Claude's working size, else None. Computes the resized
    bytes once (kept on the item, so accepting the offer costs nothing more)."""
    if item.kind != IMAGE or item.data is None or not item.width:
        return None
    new_w, new_h = media.target_size(item.width, item.height, long_edge)
    if (new_w, new_h) == (item.width, item.height):
        return None
    if item._downscaled is None:
        try:
            item._downscaled = media.downscale(item.data, long_edge)
        except media.MediaError:
            return None
    return DownscaleOffer(item.width, item.height, new_w, new_h,
                          full_size_tokens=math.ceil(item.width * item.height / 750),
                          tokens_after=tokens.image_tokens(new_w, new_h),
                          bytes_before=item.size, bytes_after=len(item._downscaled))


def apply_downscale(item: MediaItem, long_edge: int = RECOMMENDED_LONG_EDGE) -> None:
    offer = downscale_offer(item, long_edge)
    if offer is None:
        return
    original, smaller = (item.width, item.height, item.size), item._downscaled
    item.data = smaller
    _inspect(item)
    item.original = original


def accept_detected_type(item: MediaItem) -> None:
    """Send a renamed file as what its bytes are (or a URL as what its address says)."""
    if not item.by_address:
        _seal(_inspect(item))
    else:
        item.kind = kind_from_name(urlparse(item.url or "").path) or item.kind
        refreshed = inspect_url(item.url or "", item.kind)
        item.problem, item.fix, item.tokens, item._part = refreshed.problem, refreshed.fix, refreshed.tokens, None


# --------------------------------------------------------------------------------------------
# Estimates
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Estimate:
    """Input tokens before sending, split the way the router will bill them, with their cost.

    ``cache`` is "off", "too_short" (below the model's minimum: silently not cached), "write"
    (first request with caching) or "read" (a follow-up within the cache's TTL)."""

    media_tokens: int
    text_tokens: int
    """Questions, earlier answers and per-message overheads, counted as the local router counts them."""
    prefix_tokens: int
    """The would-be cached prefix: every media part and its message's overhead."""
    cache: str
    usage: Usage
    input_cost: CostBreakdown
    ceiling: Decimal
    """Input cost plus max_tokens of output: the most this request can cost."""

    @property
    def input_tokens(self) -> int:
        return self.media_tokens + self.text_tokens


# --------------------------------------------------------------------------------------------
# The session
# --------------------------------------------------------------------------------------------

@dataclass
class QA:
    question: str
    completion: Completion
    write_ttl: str = "5m"


@dataclass
class DocumentSession:
    items: list[MediaItem] = field(default_factory=list)
    turns: list[QA] = field(default_factory=list)
    cache_document: bool = False
    cache_ttl: str = "5m"
    max_tokens: int = 1024

    # --- media ---

    @property
    def locked(self) -> bool:
        """The media are part of the conversation once a question was answered."""
        return bool(self.turns)

    def add_file(self, name: str, data: bytes, source: str = "upload") -> MediaItem:
        return self._add(inspect_file(name, data, source))

    def add_url(self, url: str, kind: str) -> MediaItem:
        return self._add(inspect_url(url, kind))

    def _add(self, item: MediaItem) -> MediaItem:
        if self.locked:
            raise ValueError("The files are fixed once a question was answered; start a new conversation first")
        self.items.append(item)
        return item

    def item(self, item_id: str) -> MediaItem | None:
        return next((i for i in self.items if i.id == item_id), None)

    def remove(self, item_id: str) -> None:
        if not self.locked:
            self.items = [i for i in self.items if i.id != item_id]

    def new_conversation(self) -> None:
        """Clear the questions and answers; keep the files."""
        self.turns.clear()

    @property
    def images(self) -> list[MediaItem]:
        return [i for i in self.items if i.kind == IMAGE]

    @property
    def pdfs(self) -> list[MediaItem]:
        return [i for i in self.items if i.kind == PDF]

    # --- checks ---

    def problems(self, model: Model) -> list[str]:
        """Why the request cannot be sent as it stands (empty when it can)."""
        found = []
        if not self.items:
            found.append("Add an image or a PDF first.")
        broken = [i for i in self.items if not i.ok]
        if broken:
            names = ", ".join(f"“{i.name}”" for i in broken)
            found.append(f"{len(broken)} file{'s have' if len(broken) > 1 else ' has'} a problem ({names}): "
                         "fix or remove {0} first.".format("them" if len(broken) > 1 else "it"))
        if len(self.images) > PAGE_MAX_IMAGES:
            found.append(f"{len(self.images)} images: this page sends at most {PAGE_MAX_IMAGES} per request "
                         f"(the API takes up to {API_MAX_IMAGES}, but above 20 each must be at most 2000 px). "
                         "Remove some.")
        if self.images and not model.vision:
            found.append(f"{model.label} does not read images; choose a model with vision in the sidebar.")
        if self.pdfs and not model.pdf:
            found.append(f"{model.label} does not read PDFs; choose a model with PDF support in the sidebar.")
        return found

    def warnings(self, model: Model) -> list[str]:
        """Things worth knowing that do not stop the request."""
        notes = []
        encoded = sum(i.encoded_size for i in self.items)
        if encoded > MAX_REQUEST_BYTES:
            notes.append(f"With base64 the request body is about {media.megabytes(encoded)}; Anthropic's API "
                         f"caps a request at {MAX_REQUEST_BYTES // (1024 * 1024)} MB, so the router may refuse it "
                         "(413). Downscale images or send fewer or smaller PDFs.")
        if self.cache_document and self.media_tokens() + _message_overhead() < model.min_cacheable:
            notes.append(f"The document is about {self.media_tokens() + _message_overhead():,} tokens, under "
                         f"{model.label}'s caching minimum of {model.min_cacheable:,}: it will not be cached "
                         "(no error, both cache counters stay 0).")
        if any(i.by_address for i in self.items):
            notes.append("Files given by address are fetched by the router; their size and tokens are "
                         "assumed until then (the local router never fetches them).")
        return notes

    # --- messages ---

    def media_tokens(self) -> int:
        return sum(i.tokens for i in self.items if i.ok)

    def first_message(self, question: str, *, media: bool = True) -> dict:
        """Every media part, then the question; the last media part marks the cached prefix.
        ``media=False`` leaves the media out (for counting the text alone)."""
        parts = [item.part() for item in self.items if item.ok] if media else []
        if self.cache_document and parts:
            parts[-1] = {**parts[-1], "cache_control": cache_control(self.cache_ttl)}
        return user_message(parts + [text_part(question)])

    def messages(self, question: str, *, media: bool = True) -> list[dict]:
        """The conversation for the next request: the first message with the media, earlier
        answers and follow-ups, then ``question``."""
        if not self.turns:
            return [self.first_message(question, media=media)]
        messages = [self.first_message(self.turns[0].question, media=media),
                    self.turns[0].completion.assistant_message()]
        for turn in self.turns[1:]:
            messages += [user_message(turn.question), turn.completion.assistant_message()]
        return messages + [user_message(question)]

    def params(self, model_slug: str) -> ChatParams:
        return ChatParams(model=model_slug, max_tokens=self.max_tokens, stream=True)

    def payload(self, model_slug: str, question: str) -> dict:
        """The validated request body (raises RequestValidationError). Media parts are shared,
        not copied: build_payload's deepcopy keeps the same data URL strings."""
        question = question.strip()
        if not question:
            raise ValueError("Type a question first.")
        return build_payload(self.params(model_slug), self.messages(question))

    def record(self, question: str, completion: Completion, write_ttl: str) -> None:
        self.turns.append(QA(question.strip(), completion, write_ttl))

    # --- estimate ---

    def estimate(self, model: Model, question: str) -> Estimate:
        """Tokens and cost of the next request, before sending. Media from their facts (images by
        width x height / 750 after Claude's resize; PDF pages by text plus page image); the text
        the way the local router counts it, so the local router's usage matches exactly."""
        from .emulator.prompt import count_prompt_tokens

        media_tokens = self.media_tokens()
        text = count_prompt_tokens({"messages": self.messages(question.strip(), media=False)})
        prefix = media_tokens + _message_overhead()
        cache = self._cache_state(model, prefix)
        total = media_tokens + text
        cached = prefix if cache in ("write", "read") else 0
        usage = Usage(input_tokens=total - cached,
                      cache_write_tokens=cached if cache == "write" else 0,
                      cache_read_tokens=cached if cache == "read" else 0)
        input_cost = cost_of(usage, model, self.cache_ttl)
        worst = cost_of(Usage(usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens,
                              output_tokens=self.max_tokens), model, self.cache_ttl)
        return Estimate(media_tokens, text, prefix, cache, usage, input_cost, worst.total)

    def _cache_state(self, model: Model, prefix: int) -> str:
        if not self.cache_document or not self.items:
            return "off"
        if prefix < model.min_cacheable:
            return "too_short"
        last = self.turns[-1].completion.usage if self.turns else None
        warm = last is not None and (last.cache_read_tokens or last.cache_write_tokens)
        return "read" if warm else "write"


def _message_overhead() -> int:
    from .emulator.prompt import MESSAGE_OVERHEAD_TOKENS

    return MESSAGE_OVERHEAD_TOKENS

