"""The Caching Lab preset "What breaks the cache" (``--preset cache-breakers``): a scripted
sequence on one model that changes one thing at a time, each request with the cache doctor's
prediction, the router's figures and the reason.

The changes follow Anthropic's table of what invalidates the cache (cited in
``emulator/prompt.py``): tool definitions (everything), the system prompt (system and messages),
an image and the thinking budget (messages only), plus a prefix below the model's minimum, a wait
past the TTL (on the local router's clock, moved, not waited) and a conversation that grows past
the 20-block lookback.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import asdict, dataclass, field
from typing import Callable

from .catalog import DEFAULT_MODEL
from .errors import OrqError, describe
from .lab_presets import filler_text
from .request import system_message, text_part, user_message
from .types import Done

PRESET = "cache-breakers"
TTL_WAIT_S = 360.0


def _png() -> bytes:
    """A small red PNG, so the image step needs no file (Anthropic bills it by its pixels)."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 40, 40)).save(out, "PNG")
    return out.getvalue()


@dataclass
class BreakerStep:
    step: int
    change: str
    expected_read_tokens: int = 0
    expected_write_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    uncached_tokens: int = 0
    why: str = ""
    outcome: str = ""
    """'read', 'wrote', 'missed' (wrote after a miss), 'none', 'failed' or 'skipped'."""
    matched: bool = False

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in ("step", "expected_read_tokens", "expected_write_tokens",
                                              "cache_read_tokens", "cache_write_tokens", "why")}


@dataclass
class BreakersRun:
    model: str
    steps: list[BreakerStep] = field(default_factory=list)

    @property
    def all_matched(self) -> bool:
        return all(s.matched for s in self.steps if s.outcome not in ("skipped", "failed"))

    def to_dict(self) -> dict:
        return {"preset": PRESET, "model": self.model, "steps": [asdict(s) for s in self.steps]}


def _tools(variant: str) -> list[dict]:
    tools = [{"type": "function", "function": {
        "name": name, "description": f"{description} {variant}".strip(),
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}}
        for name, description in (("search_catalogue", "Search the library catalogue."),
                                  ("reserve_book", "Reserve a book for a reader."))]
    tools[-1]["cache_control"] = {"type": "ephemeral", "ttl": "5m"}
    return tools


def _image_part() -> dict:
    return {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(_png()).decode()}}


def script(model: str, salt: str) -> list[tuple[str, float, dict]]:
    """(change, seconds to wait before it, payload) for every step."""
    system = f"[run {salt}] You are the reference librarian of a harbour town.\n\n" + filler_text(2_000, seed=7)
    question = user_message([text_part("Which books mention the lighthouse?", "5m")])

    def request(messages, *, tools="v1", system_text=system, **extra) -> dict:
        body = {"model": model, "max_tokens": 2048, "stream_options": {"include_usage": True},
                "messages": [system_message(system_text, "5m")] + messages, **extra}
        if tools:
            body["tools"] = _tools("" if tools == "v1" else "(updated)")
        return body

    with_image = user_message([_image_part(), text_part("Which books mention the lighthouse?", "5m")])
    thinking = {"type": "enabled", "budget_tokens": 1024}
    history = []
    for i in range(12):
        history += [user_message(f"Question {i}: where is shelf {i}?"),
                    {"role": "assistant", "content": f"Shelf {i} is upstairs."}]
    return [
        ("first request: tools, system prompt and question, each with a breakpoint", 0, request([question])),
        ("the same request again", 0, request([question])),
        ("tool definitions changed", 0, request([question], tools="v2")),
        ("system prompt changed", 0, request([question], tools="v2", system_text=system + "\nBe brief.")),
        ("an image added", 0, request([with_image], tools="v2", system_text=system + "\nBe brief.")),
        ("thinking turned on (budget 1,024)", 0,
         request([with_image], tools="v2", system_text=system + "\nBe brief.", thinking=thinking)),
        ("thinking budget changed to 1,500", 0,
         request([with_image], tools="v2", system_text=system + "\nBe brief.",
                 thinking={"type": "enabled", "budget_tokens": 1500})),
        ("a prefix below the minimum: a short prompt on its own", 0,
         {"model": model, "max_tokens": 256, "stream_options": {"include_usage": True},
          "messages": [system_message(f"[run {salt}] Be brief.", "5m"), user_message("Hello")]}),
        (f"a wait past the TTL ({TTL_WAIT_S / 60:.0f} min on the router's clock)", TTL_WAIT_S,
         request([with_image], tools="v2", system_text=system + "\nBe brief.",
                 thinking={"type": "enabled", "budget_tokens": 1500})),
        ("a conversation, with a breakpoint on its last message", 0,
         request([user_message([text_part("Let us talk about shelves.", "5m")])], tools="v2",
                 system_text=system + "\nBe brief.")),
        ("the conversation grows by 24 blocks, breakpoint only at the new end", 0,
         request([user_message("Let us talk about shelves.")] + history
                 + [user_message([text_part("And shelf 12?", "5m")])], tools="v2", system_text=system + "\nBe brief.")),
    ]


def _outcome(read: int, write: int, why: str) -> str:
    if read:
        return "read"
    if why.startswith(("miss:", "rewrites")):
        return "missed"
    return "wrote" if write else "none"


def _completion(client, payload: dict):
    completion = None
    for event in client.stream(payload, page="lab"):
        if isinstance(event, Done):
            completion = event.completion
    return completion


def run_cache_breakers(client, model: str = DEFAULT_MODEL, *, advance: Callable[[float], None] | None = None,
                       on_step: Callable[[BreakerStep], None] | None = None, salt: str | None = None) -> BreakersRun:
    """Runs the script through ``client`` (which must carry a cache doctor). ``advance(seconds)``
    moves the router's clock; without it the wait step is skipped (a real router's clock cannot
    be moved, and five minutes is too long to wait for a demo)."""
    run = BreakersRun(model)
    for number, (change, wait_s, payload) in enumerate(script(model, salt or uuid.uuid4().hex[:8]), start=1):
        step = BreakerStep(number, change)
        if wait_s:
            if advance is None:
                step.outcome, step.why = "skipped", "skipped: this router's clock cannot be moved from here"
                run.steps.append(step)
                if on_step:
                    on_step(step)
                continue
            advance(wait_s)
        try:
            completion = _completion(client, payload)
        except OrqError as error:
            step.outcome, step.why = "failed", describe(error)
        else:
            check, usage = completion.cache, completion.usage
            step.cache_read_tokens, step.cache_write_tokens = usage.cache_read_tokens, usage.cache_write_tokens
            step.uncached_tokens = usage.input_tokens
            if check is not None:
                step.expected_read_tokens = check.expected_read_tokens
                step.expected_write_tokens = check.expected_write_tokens
                step.why, step.matched = check.sentence(), check.matched
            step.outcome = _outcome(usage.cache_read_tokens, usage.cache_write_tokens, step.why)
        run.steps.append(step)
        if on_step:
            on_step(step)
    return run


def cli_cache_breakers(args) -> int:
    """`python -m orq_core lab --preset cache-breakers [--json]`."""
    import json

    from .connection import make_client, resolve_connection
    from .lab_clock import local_fast_forward

    connection = resolve_connection(force_local=getattr(args, "local", False))
    model = (args.models or [DEFAULT_MODEL])[0]
    forward = local_fast_forward(connection.base_url, connection.api_key) if connection.local else None
    client = make_client(connection, page="lab")
    try:
        run = run_cache_breakers(client, model, advance=forward.sleep if forward else None)
    finally:
        client.close()
    print(json.dumps({"preset": PRESET, "model": model, "local_router": connection.local,
                      "requests": [s.to_json() for s in run.steps]}, indent=2))
    return 0 if run.all_matched and not any(s.outcome == "failed" for s in run.steps) else 1
