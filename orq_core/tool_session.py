"""One run of the Tools page: settings, the tool set, and the state of a loop a person can steer.

``ToolLoop`` (tools.py) does the work: model calls, argument checks, running the built-in tools.
This module keeps what a page needs across reruns: the conversation, the trace, the calls waiting
for a person (user-defined tools, or every call in step-by-step mode), the person's edits, and
the export. Both run modes share one path for those waiting calls, so an edited argument or a
typed result is handled the same way whether the loop stopped for it or the person stepped.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Iterable

from .budget import estimate_input_tokens
from .request import TOOL_CHOICE_WORDS, ChatParams, build_payload, system_message, user_message
from .tools import (BUILTIN_TOOLS, TEMPLATES, ExecutedCall, LoopResult, ToolLoop, ToolStep, builtin_handlers,
                    json_syntax_message, parse_tool_definitions, validate_arguments)
from .types import ToolCall
from .usage import Usage

TRACE_KIND = "tool_trace"
EXPORT_FORMAT = "orq-playground.tool-trace/1"
READY, AWAITING, ANSWER, STEP_LIMIT, ERROR = "ready", "awaiting_results", "answer", "step_limit", "error"


class GuardedClient:
    """A client whose every model call passes ``guard(payload)`` first (the spend guard).

    The guard raises an OrqError, which the loop turns into a failed step: nothing is sent."""

    def __init__(self, client: Any, guard: Callable[[dict], Any] | None):
        self.client = client
        self.guard = guard
        if hasattr(client, "stream"):  # the loop streams only when the client can
            self.stream = self._stream

    def create(self, payload: dict, **kwargs: Any):
        self._check(payload)
        return self.client.create(payload, **kwargs)

    def _stream(self, payload: dict, **kwargs: Any):
        self._check(payload)
        return self.client.stream(payload, **kwargs)

    def _check(self, payload: dict) -> None:
        if self.guard is not None:
            self.guard(payload)


# --- the tools on offer ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ToolSet:
    """The definitions to send (built-ins first), the user-defined names, and every problem."""

    definitions: list[dict]
    user_names: tuple[str, ...]
    problems: list[str]
    tokens: int = 0
    """Input tokens of the definitions (0 when they were not counted)."""

    @property
    def names(self) -> list[str]:
        return [d["function"]["name"] for d in self.definitions]


def combine_tools(builtin_names: Iterable[str], user_json: str, *, context_window: int | None = None,
                  model_label: str = "the model") -> ToolSet:
    """Chosen built-ins plus the editor's definitions (checked as JSON Schema); a user tool that
    reuses a built-in's name is refused, as the model could not tell them apart. With
    ``context_window``, definitions too large for it are refused with their size."""
    builtins = [BUILTIN_TOOLS[name].definition for name in builtin_names if name in BUILTIN_TOOLS]
    user_defs, problems = parse_tool_definitions(user_json)
    taken = {d["function"]["name"] for d in builtins}
    kept = []
    for definition in user_defs:
        name = definition["function"]["name"]
        if name in taken:
            problems.append(f"{name}: a built-in tool has this name; rename yours or untick the built-in")
            continue
        kept.append(definition)
    definitions = builtins + kept
    tokens = tool_prefix_tokens(definitions) if context_window and not problems else 0
    if context_window and tokens > context_window:
        problems.append(f"The tool definitions are about {tokens:,} tokens, more than {model_label}'s "
                        f"{context_window:,}-token context window, so no request could carry them: shorten the "
                        "descriptions and schemas, or offer fewer tools.")
    return ToolSet(definitions, tuple(d["function"]["name"] for d in kept), problems, tokens)


def add_template(editor_text: str, name: str) -> tuple[str, str | None]:
    """The editor text with template ``name`` appended to its list, or the text unchanged and why."""
    text = (editor_text or "").strip()
    try:
        current = json.loads(text) if text else []
    except json.JSONDecodeError as exc:
        return editor_text, f"Fix the JSON first ({json_syntax_message(exc)})"
    items = current if isinstance(current, list) else [current]
    if any(isinstance(t, dict) and (t.get("function") or t).get("name") == name for t in items):
        return editor_text, f"{name} is already in your tools"
    return json.dumps(items + [TEMPLATES[name]], indent=2, ensure_ascii=False), None


def definitions_json(definitions: list[dict]) -> str:
    return json.dumps(definitions, indent=2, ensure_ascii=False)


def tool_prefix_tokens(definitions: list[dict]) -> int:
    """Input tokens of the tool definitions alone (the prefix "Cache the tool definitions" caches)."""
    return estimate_input_tokens({"tools": definitions, "messages": []}) if definitions else 0


def tool_choice_value(choice: str) -> str | dict:
    """The wire form of a choice: a word, or a function choice for a tool's name."""
    if choice in TOOL_CHOICE_WORDS:
        return choice
    return {"type": "function", "function": {"name": choice}}


def choice_label(value: Any) -> str:
    """A wire tool_choice as a person reads it: 'auto', 'required', 'get_weather'."""
    if isinstance(value, dict):
        return str((value.get("function") or {}).get("name") or value)
    return str(value) if value is not None else "not sent"


@dataclass
class ToolSettings:
    model: str
    mode: str = "auto"
    """"auto": the loop runs on its own; "step": the person sees and sends every step."""
    tool_choice: str = "auto"
    """"auto", "required", "none" or a tool's name."""
    parallel_calls: bool = True
    force_every_step: bool = False
    """Keep a forced tool_choice after the first step (the loop then ends at the step limit)."""
    max_steps: int = 5
    cache_tools: bool = False
    cache_ttl: str = "5m"
    max_tokens: int = 1024
    system: str = ""

    def first_messages(self, prompt: str) -> list[dict]:
        messages = [system_message(self.system)] if self.system.strip() else []
        return messages + [user_message(prompt)]

    def base_payload(self, tools: list[dict], messages: list[dict]) -> dict:
        """The first request, validated (raises RequestValidationError naming the field)."""
        params = ChatParams(model=self.model, max_tokens=self.max_tokens, tools=tools or None,
                            tool_choice=tool_choice_value(self.tool_choice) if tools else None)
        payload = build_payload(params, messages)
        if tools and not self.parallel_calls:
            payload["parallel_tool_calls"] = False  # OpenAI-compatible switch; absent means allowed
        return payload


# --- a run ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunningTotal:
    usage: Usage
    cost_usd: float


@dataclass
class ToolSession:
    """The state of one run; keep it in the page's session state between reruns."""

    settings: ToolSettings
    tools: list[dict]
    loop: ToolLoop
    messages: list[dict]
    prompt: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    steps: list[ToolStep] = field(default_factory=list)
    pending: list[ExecutedCall] = field(default_factory=list)
    """The last step's calls, waiting to be sent: checked, built-ins already run."""
    status: str = READY
    notes: dict[str, list[str]] = field(default_factory=dict)
    """What the person changed, by call id (shown in the trace and exported)."""
    original_arguments: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    @classmethod
    def start(cls, settings: ToolSettings, tools: list[dict], prompt: str,
              handlers: dict[str, Callable[[dict], Any]] | None = None,
              clock: Callable[[], float] = time.time) -> "ToolSession":
        """A new run; nothing is sent yet. ``handlers`` default to the chosen built-ins'."""
        messages = settings.first_messages(prompt)
        base = settings.base_payload(tools, messages)
        if handlers is None:
            offered = {t["function"]["name"] for t in tools}
            handlers = {name: h for name, h in builtin_handlers(clock).items() if name in offered}
        loop = ToolLoop(None, base, tools, handlers, max_steps=settings.max_steps, page="tools",
                        cache_tools_ttl=settings.cache_ttl if settings.cache_tools else None,
                        reset_tool_choice=not settings.force_every_step)
        return cls(settings, tools, loop, messages, prompt)

    # --- state ------------------------------------------------------------------------------

    @property
    def final_text(self) -> str:
        last = self.steps[-1].completion if self.steps else None
        return last.text if last is not None and self.status == ANSWER else ""

    @property
    def error(self) -> str | None:
        return self.steps[-1].error if self.steps and self.status == ERROR else None

    def needs_answer(self, executed: ExecutedCall) -> bool:
        """A valid call to a tool without a handler: a person types its result."""
        return executed.valid and not executed.ran

    def missing_answers(self, results: dict[str, str]) -> list[str]:
        """Names of waiting user-tool calls still without a typed result."""
        return [c.call.name for c in self.pending
                if self.needs_answer(c) and not (results.get(c.call.id) or "").strip()]

    def running_totals(self) -> list[RunningTotal]:
        totals, usage, cost = [], Usage(), 0.0
        for step in self.steps:
            if step.completion is not None:
                usage = usage + step.completion.usage
            cost += step.cost_usd
            totals.append(RunningTotal(usage, cost))
        return totals

    def definition(self, name: str) -> dict | None:
        return next((t for t in self.tools if t["function"]["name"] == name), None)

    # --- actions ------------------------------------------------------------------------------

    def advance(self, client: Any, guard: Callable[[dict], Any] | None = None,
                on_step: Callable[[ToolStep], None] | None = None) -> None:
        """Start the run: the whole loop in automatic mode, one model call in step mode."""
        if self.status != READY:
            raise ValueError(f"the run has already started (status {self.status})")
        self._attach(client, guard, on_step)
        if self.settings.mode == "auto":
            self._absorb(self.loop.run(self.messages))
        else:
            self._step()

    def edit_arguments(self, call_id: str, arguments: str) -> ExecutedCall:
        """Replaces a waiting call's arguments: checked against the schema again, and a built-in
        runs again only when they are valid. Invalid arguments never reach a tool: they become
        the error result sent back to the model."""
        index = self._pending_index(call_id)
        current = self.pending[index]
        if arguments == current.call.arguments:
            return current
        self.original_arguments.setdefault(call_id, current.call.arguments)
        call = ToolCall(call_id, current.call.name, arguments)
        problems = validate_arguments(self.definition(call.name) or {}, arguments)
        if problems:
            updated = ExecutedCall(call, False, problems, f"Error: invalid arguments: {'; '.join(problems)}", True)
        else:
            updated = self.loop.execute(ExecutedCall(call, True, []))
        self.pending[index] = updated
        return updated

    def send(self, results: dict[str, str], errors: Iterable[str], client: Any,
             guard: Callable[[dict], Any] | None = None,
             on_step: Callable[[ToolStep], None] | None = None) -> None:
        """Sends the waiting calls' results (``results`` by call id: typed or edited text; ids in
        ``errors`` go back as errors) and carries on: the rest of the loop in automatic mode, the
        next model call in step mode (unless the step limit is reached)."""
        if self.status != AWAITING:
            raise ValueError("no tool calls are waiting for results")
        missing = self.missing_answers(results)
        if missing:
            raise ValueError(f"type a result for {', '.join(missing)} first")
        answers, error_ids, final = self._final_calls(results, set(errors))
        step = self.steps[-1]
        step.calls = final
        self.messages[-1] = replace(step.completion, tool_calls=tuple(c.call for c in final)).assistant_message()
        self.pending = []
        self._attach(client, guard, on_step)
        if self.settings.mode == "auto":
            waiting = LoopResult("needs_input", list(self.steps), list(self.messages), final)
            self._absorb(self.loop.resume(waiting, answers, error_ids))
            return
        self.messages.extend(self.loop.results_message(final, answers, error_ids))
        if len(self.steps) >= self.settings.max_steps:
            self.status = STEP_LIMIT
        else:
            self._step()

    def first_request(self) -> dict:
        """The first request exactly as the loop sends it (tool cache marker included)."""
        return self.loop.build_payload(self.settings.first_messages(self.prompt), 1)

    # --- export -------------------------------------------------------------------------------

    def trace(self) -> LoopResult:
        stopped_by = {AWAITING: "needs_input"}.get(self.status, self.status)
        return LoopResult(stopped_by, self.steps, self.messages, self.pending)

    def to_dict(self) -> dict:
        return {"format": EXPORT_FORMAT, "id": self.id, "started": self.started, "prompt": self.prompt,
                "settings": asdict(self.settings), "tools": self.tools, "status": self.status,
                "edits": self.notes, **self.trace().to_dict()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False, default=str)

    def save(self, store) -> None:
        store.save_doc(TRACE_KIND, self.id, self.prompt.strip()[:60] or "tool run", self.to_dict())

    # --- internals ------------------------------------------------------------------------------

    def _attach(self, client: Any, guard, on_step) -> None:
        self.loop.client = GuardedClient(client, guard)
        self.loop.on_step = on_step

    def _step(self) -> None:
        step = self.loop.step(self.messages)
        self.steps.append(step)
        if step.error or step.completion is None:
            self.status = ERROR
            return
        self.messages.append(step.completion.assistant_message())
        if not step.calls:
            self.status = ANSWER
            return
        step.calls = [self.loop.execute(c) for c in step.calls]
        self._wait_for(step.calls)

    def _absorb(self, result: LoopResult) -> None:
        self.steps, self.messages = list(result.steps), list(result.messages)
        if result.stopped_by == "needs_input":
            self._wait_for(result.steps[-1].calls)
        else:
            self.status = result.stopped_by

    def _wait_for(self, calls: list[ExecutedCall]) -> None:
        self.pending = list(calls)
        self.status = AWAITING

    def _pending_index(self, call_id: str) -> int:
        for i, executed in enumerate(self.pending):
            if executed.call.id == call_id:
                return i
        raise KeyError(f"no waiting call with id {call_id!r}")

    def _final_calls(self, results: dict[str, str], errors: set[str]):
        """The calls as they will be sent, with the typed or edited results and the notes."""
        answers: dict[str, str] = {}
        error_ids: set[str] = set()
        final: list[ExecutedCall] = []
        for executed in self.pending:
            call_id = executed.call.id
            notes = self.notes.setdefault(call_id, [])
            if self.original_arguments.get(call_id, executed.call.arguments) != executed.call.arguments:
                notes.append(f"arguments edited by you; the model sent {self.original_arguments[call_id]}")
            if not executed.valid:  # invalid arguments: the error result goes back as it is
                final.append(executed)
                continue
            text = results.get(call_id, executed.result)
            marked = call_id in errors
            if executed.ran and text == executed.result and not marked:
                final.append(executed)
                continue
            notes.append("result typed by you" if not executed.ran else
                         "result edited by you" if text != executed.result else "sent as the tool returned it")
            if marked:
                notes.append("marked as an error by you")
                error_ids.add(call_id)
            answers[call_id] = text
            shown = text if not marked or text.startswith("Error: ") else f"Error: {text}"
            final.append(replace(executed, result=shown, is_error=marked))
        for call_id in [k for k, v in self.notes.items() if not v]:
            del self.notes[call_id]
        return answers, error_ids, final


def load_trace_json(store, trace_id: str) -> str | None:
    """A saved run's export text, or None when it is gone."""
    doc = store.load_doc(TRACE_KIND, trace_id)
    return json.dumps(doc.data, indent=2, ensure_ascii=False, default=str) if doc and doc.data else None
