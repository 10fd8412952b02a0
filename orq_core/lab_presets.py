"""Deterministic material for the Caching Lab presets: book-sized filler text, many-shot examples,
a scripted conversation and a large tool catalogue.

Everything here is pure and seeded, so the same experiment sends byte-identical prompts every
time (a cache only hits on identical prefixes). Sizes are measured with ``orq_core.tokens``,
the counter the local router bills with.
"""

from __future__ import annotations

import random
from functools import lru_cache

from .tokens import text_tokens

PRESETS = ("book", "many-shot", "multi-turn", "tools", "custom")

BREAKPOINTS = {
    # preset -> placements that make sense for it; the first is the default.
    "book": ("context", "system"),
    "many-shot": ("context", "system"),
    "multi-turn": ("last-turn", "system"),
    "tools": ("tools", "system"),
    "custom": ("context", "system"),
}

DEFAULT_QUESTIONS = {
    "book": (
        "Summarise the first chapter in two sentences.",
        "Who keeps the lighthouse, and what does she want most?",
        "List three places the story visits, in order.",
        "What changes between the first and the last chapter?",
        "Which sentence best describes the harbour? Quote it.",
    ),
    "many-shot": (
        "The kettle whistled all night and the handle burnt my hand.",
        "Delivery came early and the lamp is even brighter than the photos.",
        "It works, mostly, but the lid does not close without a push.",
        "Best train journey I have had in years: quiet, warm and on time.",
        "The manual was missing and support never answered my emails.",
    ),
    "multi-turn": (
        "I am planning a week of walking along the coast. Where should I start?",
        "What should I pack for rain that lasts all day?",
        "Which of those towns has a good bakery?",
        "Can you make the third day shorter?",
        "Summarise the plan as a list of days.",
        "What if the ferry is cancelled?",
        "Add one museum to the plan.",
        "Which day is the hardest walk?",
    ),
    "tools": (
        "What is the status of order 4471, and when will it arrive?",
        "Convert 42 miles to kilometres and book a taxi for that distance.",
        "Find the cheapest flight from Lisbon to Oslo next Friday.",
        "Refund the last payment of customer C-1042.",
        "What's the weather in Porto tomorrow morning?",
    ),
    "custom": (
        "Summarise the text above in three sentences.",
        "What are the three most important facts in the text?",
        "Which question does the text leave unanswered?",
    ),
}

_NAMES = ("Maren", "Tobias", "Ilse", "the harbour master", "old Pieter", "the ferryman", "Agnes", "the clerk")
_ADJECTIVES = ("grey", "quiet", "salt-stained", "narrow", "crooked", "patient", "bright", "cold", "weathered",
               "distant", "hidden", "wooden", "silver", "restless", "heavy", "gentle")
_NOUNS = ("lighthouse", "harbour", "lantern", "ledger", "tide", "boat", "letter", "bell", "rope", "window",
          "storm", "map", "gull", "pier", "kitchen", "garden", "compass", "net")
_PLACES = ("the north quay", "the chapel on the hill", "the fish market", "the dunes", "the customs house",
           "the island ferry", "the lower town", "the salt marsh", "the old mill", "the station")
_VERBS = ("carried", "found", "mended", "watched", "counted", "hid", "opened", "painted", "followed",
          "remembered", "weighed", "forgot")
_ADVERBS = ("slowly", "at dawn", "without a word", "before the rain", "by lamplight", "at noon", "in secret",
            "with great care")
_TEMPLATES = (
    "{name} {verb} the {adj} {noun} near {place} {adv}.",
    "Near {place}, the {noun} was {adj}, and {name} {verb} it {adv}.",
    "Nobody in the town knew why {name} {verb} the {noun}, but everyone agreed it was {adj}.",
    "The {adj} {noun} had stood by {place} for years, and {name} {verb} it once more {adv}.",
    "{name} said the {noun} at {place} was {adj}; the {noun2} said nothing at all.",
    "When the {noun} came back from {place}, {name} {verb} the {adj} {noun2} {adv}.",
)
_CHAPTER_TITLES = ("The Harbour", "A Letter at Dawn", "Lanterns", "The Long Tide", "Salt and Rope",
                   "The Ferry", "Winter Ledger", "The Chapel Bell", "Maps", "Homecoming")
_PAD_WORDS = ("and", "so", "the", "sea", "was", "calm", "then", "we", "all", "went", "home")


def _sentence(rng: random.Random) -> str:
    text = rng.choice(_TEMPLATES).format(
        name=rng.choice(_NAMES), verb=rng.choice(_VERBS), adj=rng.choice(_ADJECTIVES),
        noun=rng.choice(_NOUNS), noun2=rng.choice(_NOUNS), place=rng.choice(_PLACES), adv=rng.choice(_ADVERBS))
    return text[0].upper() + text[1:]


def _padding(tokens: int) -> str:
    """A closing sentence of exactly ``tokens`` tokens (short words cost one token each)."""
    if tokens <= 0:
        return ""
    words = [_PAD_WORDS[i % len(_PAD_WORDS)] for i in range(tokens - 1)]
    text = " ".join(words) + "."
    return text[0].upper() + text[1:]


@lru_cache(maxsize=8)
def filler_text(target_tokens: int, seed: int = 0) -> str:
    """Readable, deterministic prose of exactly ``target_tokens`` tokens (by ``text_tokens``),
    laid out as chapters and paragraphs. Pieces are joined by whitespace, so token counts add up."""
    rng = random.Random(seed)
    blocks: list[str] = []
    total = 0
    chapter = 0
    while True:
        chapter += 1
        heading = f"Chapter {chapter}. {_CHAPTER_TITLES[(chapter - 1) % len(_CHAPTER_TITLES)]}"
        if total + text_tokens(heading) + 20 > target_tokens:
            break
        blocks.append(("\n\n" if blocks else "") + heading)
        total += text_tokens(heading)
        full = _fill_chapter(rng, blocks, target_tokens - total)
        total += full
        if full == 0:
            break
    blocks.append((" " if blocks else "") + _padding(target_tokens - total))
    return "".join(blocks)


def _fill_chapter(rng: random.Random, blocks: list[str], budget: int) -> int:
    """Appends up to 8 paragraphs of 3-7 sentences; returns the tokens used (never over budget)."""
    used = 0
    for _ in range(8):
        paragraph: list[str] = []
        for _ in range(rng.randint(3, 7)):
            sentence = _sentence(rng)
            cost = text_tokens(sentence)
            if used + cost > budget:
                if paragraph:
                    blocks.append("\n\n" + " ".join(paragraph))
                return used
            paragraph.append(sentence)
            used += cost
        blocks.append("\n\n" + " ".join(paragraph))
    return used


# --- many-shot --------------------------------------------------------------------------------

_REVIEW_PARTS = {
    "positive": ("arrived on time and works perfectly", "is the best purchase I made this year",
                 "feels solid and the battery lasts for days", "made my mornings so much easier",
                 "was a lovely surprise, the colour is perfect"),
    "negative": ("broke after two days", "smells of burnt plastic", "was missing half of the screws",
                 "is much smaller than the photos suggest", "stopped charging within a week"),
    "neutral": ("does what it says, nothing more", "is fine for the price",
                "arrived in a plain box and works as described", "is average: not bad, not great",
                "looks the same as my old one"),
}
_PRODUCTS = ("The kettle", "This lamp", "The backpack", "My new blender", "The umbrella", "The desk chair",
             "This phone case", "The bicycle bell", "The coffee grinder", "The rain jacket")


def many_shot_examples(shots: int, seed: int = 0) -> str:
    """``shots`` labelled sentiment examples, one block of text."""
    rng = random.Random(seed)
    labels = tuple(_REVIEW_PARTS)
    lines = []
    for i in range(1, shots + 1):
        label = labels[i % len(labels)]
        review = f"{rng.choice(_PRODUCTS)} {rng.choice(_REVIEW_PARTS[label])}."
        lines.append(f"Example {i}\nReview: {review}\nSentiment: {label}")
    return "\n\n".join(lines)


MANY_SHOT_INSTRUCTIONS = ("Classify the sentiment of a product review as positive, negative or neutral. "
                          "Answer with one word, exactly as in the examples.")


# --- multi-turn -------------------------------------------------------------------------------

def scripted_reply(turn: int) -> str:
    """The assistant's side of the scripted conversation. Scripted rather than the live answer so
    every arm sends the same prompts and build_requests stays pure."""
    rng = random.Random(1000 + turn)
    return " ".join(_sentence(rng) for _ in range(3))


MULTI_TURN_INSTRUCTIONS = ("You are a patient travel guide for the coast described in the guidebook below. "
                           "Answer in a few sentences and stay consistent with the guidebook.")


# --- tools ------------------------------------------------------------------------------------

_TOOL_AREAS = ("order", "invoice", "customer", "flight", "hotel", "taxi", "weather", "payment", "refund",
               "shipment", "calendar", "inventory", "ticket", "currency", "distance")
_TOOL_ACTIONS = ("get", "list", "create", "update", "cancel", "search", "estimate", "convert")
_PARAM_KINDS = (("id", "string", "The identifier, as shown to the customer, for example 'A-1042'."),
                ("date", "string", "Date in ISO 8601 form (YYYY-MM-DD), in the customer's time zone."),
                ("amount", "number", "Amount in the account currency; two decimals at most."),
                ("limit", "integer", "Largest number of results to return, between 1 and 50."),
                ("city", "string", "City name in English, for example 'Porto' or 'Oslo'."),
                ("reason", "string", "Short free-text reason, stored on the record and shown to staff."),
                ("include_history", "boolean", "Whether to include the history of earlier changes."))


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def tool_catalogue(count: int, seed: int = 0) -> list[dict]:
    """``count`` plausible function tools (wire form), deterministic."""
    rng = random.Random(seed)
    tools = []
    for i in range(count):
        area = _TOOL_AREAS[i % len(_TOOL_AREAS)]
        action = _TOOL_ACTIONS[(i // len(_TOOL_AREAS)) % len(_TOOL_ACTIONS)]
        params = rng.sample(_PARAM_KINDS, rng.randint(2, 5))
        properties = {f"{area}_{name}" if name == "id" else name: {"type": kind, "description": text}
                      for name, kind, text in params}
        description = (f"{action.capitalize()} {area} records in the back office. "
                       + " ".join(_sentence(rng) for _ in range(2))
                       + f" Use it only when the user asks about {_article(area)} {area}; never guess an identifier.")
        tools.append({"type": "function", "function": {
            "name": f"{action}_{area}_{i + 1}",
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": [next(iter(properties))]},
        }})
    return tools


TOOLS_INSTRUCTIONS = "You are a back-office assistant. Use a tool when one fits; otherwise answer briefly."
BOOK_INSTRUCTIONS = ("You answer questions about the book the user provides. Quote the text where you can, "
                     "and say so when the book does not tell.")
CUSTOM_INSTRUCTIONS = "You answer questions about the text the user provides."
