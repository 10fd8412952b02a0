"""Deterministic token estimates, shared by the local router (its usage figures) and the
pages (estimates before sending), so an estimate of a text prompt equals what the local router
then reports.

Text rule (documented, not Claude's tokenizer): split into words (runs of letters/digits) and
single non-space symbols; a word costs one token per started 4 characters, a symbol one token.
English prose comes out near Anthropic's "about 4 characters per token".

Images: Anthropic's published rule, tokens = width * height / 750, after scaling the image so
its long edge is at most 1568 px (and its area at most ~1.15 megapixels).
"""

from __future__ import annotations

import math
import re

TOKEN_UNITS = re.compile(r"\w{1,4}|[^\w\s]", re.UNICODE)
"""One match per token of the text rule: a word's every started 4 characters, each symbol.
Counting matches keeps the whole count inside the regex engine."""

MAX_IMAGE_LONG_EDGE = 1568
MAX_IMAGE_PIXELS = 1_150_000  # Anthropic: images above ~1.15 MP are scaled down first
PDF_PAGE_IMAGE_TOKENS = 1_600  # a US-letter page rendered for the model: ~1,200x1,000 px / 750


def text_tokens(text: str) -> int:
    if not text:
        return 0
    return len(TOKEN_UNITS.findall(text))


def scaled_image_size(width: int, height: int) -> tuple[int, int]:
    """The size Claude sees: long edge <= 1568 px and area <= 1.15 MP, aspect kept."""
    if width <= 0 or height <= 0:
        return 0, 0
    scale = min(1.0, MAX_IMAGE_LONG_EDGE / max(width, height), math.sqrt(MAX_IMAGE_PIXELS / (width * height)))
    return max(1, int(width * scale)), max(1, int(height * scale))


def image_tokens(width: int, height: int) -> int:
    w, h = scaled_image_size(width, height)
    return math.ceil(w * h / 750)


def pdf_page_tokens(page_text: str) -> int:
    """Each PDF page is billed as its extracted text plus an image of the page."""
    return text_tokens(page_text) + PDF_PAGE_IMAGE_TOKENS
