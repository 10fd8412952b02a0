"""A Chat conversation: turns with their measurements, settings, export/import and storage.

Each assistant turn keeps the wire message that replays it (reasoning with its signature, byte
for byte), so thinking survives a save, an export and an import.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field, replace

from .request import ChatParams, build_payload, system_message, user_message
from .types import Completion
from .usage import Usage

EXPORT_FORMAT = "orq-playground.conversation/1"
MAX_IMPORT_BYTES = 20 * 1024 * 1024


class ConversationImportError(ValueError):
    """An imported file is not a conversation this playground wrote (or it was damaged)."""


@dataclass
class ChatSettings:
    model: str
    system: str = ""
    cache_system: bool = False
    cache_ttl: str = "5m"
    max_tokens: int = 1024
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple[str, ...] = ()
    thinking_budget: int | None = None

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
        return messages

    def payload_for_next_answer(self) -> dict:
        """The request that answers the last user turn. Raises RequestValidationError."""
        return build_payload(self.settings.params(), self.wire_messages())

    # --- editing -----------------------------------------------------------------------------

    def add_user(self, text: str) -> None:
        if not self.title:
            self.title = " ".join(text.split())[:60]
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
                   title=str(data.get("title", "")), created=float(data.get("created") or time.time()))

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
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as error:
            raise ConversationImportError(
                f"The file is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}).") from None
        if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
            raise ConversationImportError(
                f"The file is JSON but not a conversation export (expected \"format\": \"{EXPORT_FORMAT}\").")
        problems = _import_problems(data)
        if problems:
            raise ConversationImportError("The conversation file is damaged: " + "; ".join(problems[:3]) + ".")
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, ValueError) as error:
            raise ConversationImportError(f"The conversation file is damaged: {error}.") from None

    def save(self, store) -> None:
        store.save_doc("conversation", self.id, self.title or "Untitled", self.to_dict())

    @classmethod
    def load(cls, store, conversation_id: str) -> "Conversation | None":
        doc = store.load_doc("conversation", conversation_id)
        return cls.from_dict(doc.data) if doc else None


def _replay(turn: Turn) -> list[dict]:
    """A stopped answer has no (or half a) signature, so its reasoning cannot be replayed:
    the router would reject the unsigned block. Its visible text alone is sent."""
    if not turn.stopped:
        return [turn.completion.assistant_message()]
    return [{"role": "assistant", "content": turn.text}] if turn.text.strip() else []


def _import_problems(data: dict) -> list[str]:
    problems = []
    settings = data.get("settings")
    if not isinstance(settings, dict) or not isinstance(settings.get("model"), str):
        problems.append("settings.model is missing")
    elif set(settings) - set(ChatSettings.__dataclass_fields__):
        problems.append("settings has unknown keys: " + ", ".join(sorted(set(settings) - set(ChatSettings.__dataclass_fields__))))
    turns = data.get("turns")
    if not isinstance(turns, list):
        return problems + ["turns must be a list"]
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or turn.get("role") not in ("user", "assistant", "error"):
            problems.append(f"turns[{i}].role must be user, assistant or error")
        elif not isinstance(turn.get("text"), str):
            problems.append(f"turns[{i}].text must be text")
        elif turn.get("completion") is not None and not isinstance(turn["completion"], dict):
            problems.append(f"turns[{i}].completion must be an object")
    return problems
