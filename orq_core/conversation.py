"""A Chat conversation: turns with their measurements, settings, export/import and storage.

Each assistant turn keeps the wire message that replays it (reasoning with its signature, byte
for byte), so thinking survives a save, an export and an import.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from .catalog import UnknownModelError, catalog
from .import_checks import MAX_JSON_DEPTH, damaged, is_number, is_whole, printable, shown, too_deep
from .request import (CACHE_TTLS, MIN_THINKING_BUDGET, ChatParams, build_payload, system_message, text_part,
                      user_message)
from .types import Completion
from .usage import Usage

EXPORT_FORMAT = "orq-playground.conversation/1"
MAX_IMPORT_BYTES = 20 * 1024 * 1024
MAX_TURNS = 2_000
"""More turns than this freeze the page while it draws them (and a model's context holds fewer)."""
TITLE_CHARS = 60


class ConversationImportError(ValueError):
    """An imported file is not a conversation this playground wrote (or it was damaged)."""


@dataclass
class ChatSettings:
    model: str
    system: str = ""
    cache_system: bool = False
    cache_ttl: str = "5m"
    cache_conversation: bool = False
    """A breakpoint on the newest user message, moved each turn: the next turn reads the whole
    conversation so far (the cache doctor's advisor suggests it)."""
    max_tokens: int = 1024
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple[str, ...] = ()
    thinking_budget: int | None = None

    def problems(self) -> list[str]:
        """What the Chat form would not accept; [] when fine (see ``settings_problems``)."""
        return settings_problems({**asdict(self), "stop": list(self.stop)})

    def params(self) -> ChatParams:
        return ChatParams(model=self.model, max_tokens=self.max_tokens, temperature=self.temperature,
                          top_p=self.top_p, top_k=self.top_k, stop=tuple(self.stop),
                          thinking_budget=self.thinking_budget, stream=True)


@dataclass
class Turn:
    role: str  # "user" | "assistant" | "error"
    text: str
    reasoning: str = ""
    completion: Completion | None = None
    write_ttl: str = "5m"
    """The cache TTL the request that produced this answer used (prices its writes)."""
    stopped: bool = False
    """An answer cut short (stopped by the person or by a broken stream)."""


@dataclass
class Conversation:
    settings: ChatSettings
    turns: list[Turn] = field(default_factory=list)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    title: str = ""
    created: float = field(default_factory=time.time)

    # --- building requests -------------------------------------------------------------------

    def wire_messages(self, upto: int | None = None) -> list[dict]:
        """System prompt plus every user turn and every answer, in order; error notes are not sent."""
        s = self.settings
        messages = [system_message(s.system, cache_ttl=s.cache_ttl if s.cache_system else None)] if s.system else []
        for turn in self.turns[:upto]:
            if turn.role == "user":
                messages.append(user_message(turn.text))
            elif turn.role == "assistant" and turn.completion is not None:
                messages.extend(_replay(turn))
        if s.cache_conversation:
            newest = next((i for i in range(len(messages) - 1, -1, -1) if messages[i]["role"] == "user"), None)
            if newest is not None:
                messages[newest] = user_message([text_part(messages[newest]["content"], s.cache_ttl)])
        return messages

    def payload_for_next_answer(self) -> dict:
        """The request that answers the last user turn. Raises RequestValidationError."""
        return build_payload(self.settings.params(), self.wire_messages())

    # --- editing -----------------------------------------------------------------------------

    def add_user(self, text: str) -> None:
        if not self.title:
            self.title = printable(text)[:TITLE_CHARS]
        self.turns.append(Turn("user", text))

    def add_answer(self, completion: Completion, write_ttl: str) -> None:
        self.turns.append(Turn("assistant", completion.text, completion.reasoning, completion, write_ttl,
                               stopped=completion.partial))

    def add_error(self, message: str) -> None:
        self.turns.append(Turn("error", message))

    def drop_trailing_answers(self) -> None:
        """Remove answers and error notes after the last user turn (regenerate, edit)."""
        while self.turns and self.turns[-1].role != "user":
            self.turns.pop()

    def last_user_text(self) -> str | None:
        return next((t.text for t in reversed(self.turns) if t.role == "user"), None)

    def replace_last_user(self, text: str) -> None:
        self.drop_trailing_answers()
        if self.turns:
            self.turns[-1] = replace(self.turns[-1], text=text)

    def clear(self) -> None:
        self.turns.clear()

    def total_usage(self) -> Usage:
        total = Usage()
        for turn in self.turns:
            if turn.completion:
                total = total + turn.completion.usage
        return total

    # --- export / import / storage -----------------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "format": EXPORT_FORMAT, "id": self.id, "title": self.title, "created": self.created,
            "settings": {**asdict(self.settings), "stop": list(self.settings.stop)},
            "turns": [{"role": t.role, "text": t.text, "reasoning": t.reasoning, "write_ttl": t.write_ttl,
                       "stopped": t.stopped,
                       "completion": t.completion.to_dict() if t.completion else None}
                      for t in self.turns],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict) -> "Conversation":
        settings = dict(data["settings"])
        settings["stop"] = tuple(settings.get("stop") or ())
        turns = [Turn(role=t["role"], text=t["text"], reasoning=t.get("reasoning", ""),
                      completion=Completion.from_dict(t["completion"]) if t.get("completion") else None,
                      write_ttl=t.get("write_ttl", "5m"), stopped=bool(t.get("stopped")))
                 for t in data.get("turns", [])]
        return cls(ChatSettings(**settings), turns, id=str(data.get("id") or uuid.uuid4().hex[:12]),
                   title=printable(str(data.get("title", ""))), created=float(data.get("created") or time.time()))

    @classmethod
    def from_json(cls, raw: bytes | str) -> "Conversation":
        """Import an export. Refuses anything else with a sentence saying what is wrong."""
        if isinstance(raw, bytes):
            if len(raw) > MAX_IMPORT_BYTES:
                raise ConversationImportError(f"The file is {len(raw) / 1e6:.1f} MB; conversations are at most 20 MB.")
            try:
                raw = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise ConversationImportError("The file is not UTF-8 text, so it is not a conversation export.") from None
        if too_deep(raw):
            raise ConversationImportError(
                f"The file nests lists or objects more than {MAX_JSON_DEPTH} levels deep; a conversation export "
                "never does, so this is not one (or it was damaged).")
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as error:
            raise ConversationImportError(
                f"The file is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}).") from None
        if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
            raise ConversationImportError(
                f"The file is JSON but not a conversation export (expected \"format\": \"{EXPORT_FORMAT}\").")
        turns = data.get("turns")
        if isinstance(turns, list) and len(turns) > MAX_TURNS:
            raise ConversationImportError(
                f"The conversation has {len(turns):,} turns; the playground opens at most {MAX_TURNS:,}. "
                "Export a shorter part of it and import that.")
        problems = _import_problems(data)
        if problems:
            raise ConversationImportError(f"The conversation file is damaged: {damaged(problems)}.")
        try:
            conversation = cls.from_dict(data)
        except (KeyError, TypeError, ValueError) as error:
            raise ConversationImportError(f"The conversation file is damaged: {error}.") from None
        # A fresh id: the file's own could replace a saved conversation, and it goes into the URL.
        conversation.id = uuid.uuid4().hex[:12]
        conversation.title = conversation.title[:200]
        return conversation

    def save(self, store) -> None:
        store.save_doc("conversation", self.id, self.title or "Untitled", self.to_dict())

    @classmethod
    def load(cls, store, conversation_id: str) -> "Conversation | None":
        """A saved conversation, checked like an import: one saved before the checks existed may
        hold what the page cannot show. Raises ConversationImportError with a sentence."""
        doc = store.load_doc("conversation", conversation_id)
        if doc is None:
            return None
        problems = _import_problems(doc.data) if isinstance(doc.data, dict) else ["it is not an object"]
        if problems:
            raise ConversationImportError(f"The saved conversation “{printable(doc.name)[:TITLE_CHARS]}” cannot be "
                                          f"opened: {damaged(problems)}.")
        return cls.from_dict(doc.data)


def _replay(turn: Turn) -> list[dict]:
    """A stopped answer has no (or half a) signature, so its reasoning cannot be replayed:
    the router would reject the unsigned block. Its visible text alone is sent."""
    if not turn.stopped:
        return [turn.completion.assistant_message()]
    return [{"role": "assistant", "content": turn.text}] if turn.text.strip() else []


def blank_message_problem(text: str) -> str | None:
    """A sentence when a message has nothing to send (the router would refuse it)."""
    if text.strip():
        return None
    return "Your message holds only spaces or line breaks, so there is nothing to send: type some text and send again."


def max_tokens_limit(slug: str) -> int:
    """The most max_tokens the Chat form offers for ``slug`` (the catalog's largest for an unknown one)."""
    try:
        return catalog().resolve(slug).model.max_output
    except UnknownModelError:
        return max(model.max_output for model in catalog().models)


def settings_problems(settings: Any) -> list[str]:
    """Chat settings against the Chat form's rules, one sentence per field that breaks them.

    The one check of ChatSettings: the form shows its result and an import refuses on it, so a
    file can hold nothing the form could not have produced."""
    if not isinstance(settings, dict) or not isinstance(settings.get("model"), str) or not settings["model"].strip():
        return ["settings.model is missing"]
    unknown = set(settings) - {f.name for f in fields(ChatSettings)}
    if unknown:
        return ["settings has unknown keys: " + ", ".join(sorted(unknown))]
    get = settings.get
    checks = [_type_problem("system", get("system", ""), str, "text"),
              _type_problem("cache_system", get("cache_system", False), bool, "true or false"),
              _type_problem("cache_conversation", get("cache_conversation", False), bool, "true or false"),
              _choice_problem("cache_ttl", get("cache_ttl", "5m")),
              *_limit_problems(settings),
              _stop_problem(get("stop", []))]
    return [problem for problem in checks if problem]


def _type_problem(name: str, value: Any, kind: type, words: str) -> str | None:
    return None if isinstance(value, kind) else f"settings.{name} must be {words} (got {shown(value)})"


def _choice_problem(name: str, value: Any) -> str | None:
    return None if value in CACHE_TTLS else f'settings.{name} must be "5m" or "1h" (got {shown(value)})'


def _limit_problems(settings: dict) -> list[str | None]:
    get = settings.get
    limit = max_tokens_limit(settings["model"])
    max_tokens, budget = get("max_tokens", 1024), get("thinking_budget")
    temperature, top_p, top_k = get("temperature"), get("top_p"), get("top_k")
    ranges = {
        "max_tokens": (is_whole(max_tokens) and 1 <= max_tokens <= limit,
                       f"a whole number from 1 to {limit:,}"),
        "thinking_budget": (budget is None or (is_whole(budget) and budget >= MIN_THINKING_BUDGET),
                            f"empty or a whole number from {MIN_THINKING_BUDGET:,} to less than max_tokens"),
        "temperature": (temperature is None or (is_number(temperature) and 0 <= temperature <= 1),
                        "empty or a number from 0 to 1"),
        "top_p": (top_p is None or (is_number(top_p) and 0 < top_p <= 1), "empty or a number above 0 and at most 1"),
        "top_k": (top_k is None or (is_whole(top_k) and top_k >= 1), "empty or a whole number of at least 1"),
    }
    problems = [f"settings.{name} must be {words} (got {shown(get(name))})"
                for name, (fine, words) in ranges.items() if not fine]
    if problems:
        return problems
    if budget is not None and budget >= max_tokens:
        problems.append(f"settings.thinking_budget must be less than max_tokens ({max_tokens:,}): thinking "
                        f"counts against max_tokens (got {budget:,})")
    if budget is not None:
        problems += [f"settings.{name} must be empty with extended thinking ({why})" for name, value, why in (
            ("temperature", temperature, "Claude fixes it at 1"), ("top_p", top_p, "the form turns it off"),
            ("top_k", top_k, "Claude takes no top_k then")) if value is not None]
    elif temperature is not None and top_p is not None:
        problems.append("settings.top_p must be empty when temperature is set (newer Claude models take one)")
    return problems


def _stop_problem(stop: Any) -> str | None:
    if isinstance(stop, str):
        return 'settings.stop must be a list of stop sequences like ["END"] (got a string)'
    if not isinstance(stop, list):
        return f'settings.stop must be a list of stop sequences like ["END"] (got {shown(stop)})'
    for i, sequence in enumerate(stop):
        if not isinstance(sequence, str) or not sequence.strip():
            return f"settings.stop[{i}] must be text with at least one visible character (got {shown(sequence)})"
    return None


_TURN_KEYS = {"role", "text", "reasoning", "write_ttl", "stopped", "completion"}
_COMPLETION_TEXT = ("text", "reasoning", "model", "id")
_COMPLETION_OPTIONAL_TEXT = ("reasoning_signature", "finish_reason", "request_id", "error")
_COMPLETION_FLAGS = ("partial", "response_cache_hit")
_COMPLETION_TIMES = ("ttft_ms", "latency_ms")


def _import_problems(data: dict) -> list[str]:
    problems = settings_problems(data.get("settings"))
    if not isinstance(data.get("title", ""), str):
        problems.append(f"title must be text (got {shown(data['title'])})")
    if not is_number(data.get("created", 0)):
        problems.append(f"created must be a time in seconds (got {shown(data['created'])})")
    turns = data.get("turns")
    if not isinstance(turns, list):
        return problems + ["turns must be a list"]
    for i, turn in enumerate(turns):
        problems += _turn_problems(turn, f"turns[{i}]")
        if len(problems) > 3:
            break
    return problems


def _turn_problems(turn: Any, path: str) -> list[str]:
    if not isinstance(turn, dict) or turn.get("role") not in ("user", "assistant", "error"):
        return [f"{path}.role must be user, assistant or error"]
    if not isinstance(turn.get("text"), str):
        return [f"{path}.text must be text"]
    problems = [f"{path} has unknown keys: " + ", ".join(sorted(set(turn) - _TURN_KEYS))] if set(turn) - _TURN_KEYS else []
    if not isinstance(turn.get("reasoning", ""), str):
        problems.append(f"{path}.reasoning must be text (got {shown(turn['reasoning'])})")
    if turn.get("write_ttl", "5m") not in CACHE_TTLS:
        problems.append(f'{path}.write_ttl must be "5m" or "1h" (got {shown(turn["write_ttl"])})')
    if not isinstance(turn.get("stopped", False), bool):
        problems.append(f"{path}.stopped must be true or false (got {shown(turn['stopped'])})")
    completion = turn.get("completion")
    if completion is not None:
        problems += _completion_problems(completion, f"{path}.completion")
    return problems


def _completion_problems(completion: Any, path: str) -> list[str]:
    if not isinstance(completion, dict):
        return [f"{path} must be an object"]
    unknown = set(completion) - {f.name for f in fields(Completion)}
    if unknown:
        return [f"{path} has unknown keys: " + ", ".join(sorted(unknown))]
    get = completion.get
    problems = [f"{path}.{name} must be text (got {shown(get(name))})"
                for name in _COMPLETION_TEXT if not isinstance(get(name, ""), str)]
    problems += [f"{path}.{name} must be empty or text (got {shown(get(name))})"
                 for name in _COMPLETION_OPTIONAL_TEXT if get(name) is not None and not isinstance(get(name), str)]
    problems += [f"{path}.{name} must be true or false (got {shown(get(name))})"
                 for name in _COMPLETION_FLAGS if not isinstance(get(name, False), bool)]
    problems += [f"{path}.{name} must be empty or a number of at least 0 (got {shown(get(name))})"
                 for name in _COMPLETION_TIMES if get(name) is not None and not (is_number(get(name)) and get(name) >= 0)]
    redacted = get("redacted_reasoning") or []
    if not isinstance(redacted, list) or not all(isinstance(item, str) for item in redacted):
        problems.append(f"{path}.redacted_reasoning must be a list of texts")
    calls = get("tool_calls") or []
    for k, call in enumerate(calls if isinstance(calls, list) else [None]):
        if not (isinstance(call, dict) and set(call) == {"id", "name", "arguments"}
                and all(isinstance(v, str) for v in call.values())):
            problems.append(f"{path}.tool_calls[{k}] must hold id, name and arguments as text")
            break
    return problems + _usage_problems(get("usage") or {}, f"{path}.usage")


def _usage_problems(usage: Any, path: str) -> list[str]:
    if not isinstance(usage, dict):
        return [f"{path} must be an object"]
    counters = set(Usage().to_dict())
    unknown = set(usage) - counters - {"raw"}
    if unknown:
        return [f"{path} has unknown keys: " + ", ".join(sorted(unknown))]
    problems = [f"{path}.{name} must be a whole number of at least 0 (got {shown(value)})"
                for name, value in usage.items() if name in counters and not (is_whole(value) and value >= 0)]
    if usage.get("raw") is not None and not isinstance(usage["raw"], dict):
        problems.append(f"{path}.raw must be an object")
    return problems
