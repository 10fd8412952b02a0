"""Paint a streamed answer as it arrives: reasoning in a collapsed box, text below it."""

from __future__ import annotations

import threading
import time

import streamlit as st

from orq_core.types import Completion, Done, ErrorEvent, ReasoningDelta, TextDelta

REPAINT_EVERY_S = 0.05  # repainting on every token floods the browser with deltas on fast streams
CURSOR = " ▌"


class LiveAnswer:
    """Streams one request into the current container. If the script is stopped midway (the chat
    input's stop button), ``interrupted`` is True and ``partial_completion()`` keeps what arrived."""

    def __init__(self, client, payload: dict, *, page: str, headers: dict | None = None):
        self.client = client
        self.payload = payload
        self.page = page
        self.headers = headers
        self.text = ""
        self.reasoning = ""
        self.finished = False
        self.failed = False
        self._cancel = threading.Event()

    @property
    def interrupted(self) -> bool:
        return not self.finished and not self.failed

    def run(self) -> Completion:
        thinking_box = st.expander("Thinking…", icon=":material/psychology:") if self.payload.get("thinking") else None
        reasoning_slot = thinking_box.empty() if thinking_box else None
        text_slot = st.empty()
        text_slot.caption("Waiting for the first token…")
        stream = self.client.stream(self.payload, page=self.page, headers=self.headers, cancel=self._cancel)
        last_paint = 0.0
        try:
            for event in stream:
                if isinstance(event, TextDelta):
                    self.text += event.text
                elif isinstance(event, ReasoningDelta):
                    self.reasoning += event.text
                elif isinstance(event, ErrorEvent):
                    st.warning(f"The stream broke: {event.message}")
                elif isinstance(event, Done):
                    self.finished = True
                    self._paint(text_slot, reasoning_slot, final=True)
                    return event.completion
                now = time.monotonic()
                if now - last_paint >= REPAINT_EVERY_S:
                    self._paint(text_slot, reasoning_slot)
                    last_paint = now
        except Exception:
            self.failed = True
            raise
        finally:
            if not self.finished:
                self._cancel.set()
                stream.close()
        self.failed = True
        raise RuntimeError("The stream ended without a result")

    def _paint(self, text_slot, reasoning_slot, final: bool = False) -> None:
        if reasoning_slot is not None and self.reasoning:
            reasoning_slot.markdown(self.reasoning)
        if self.text:
            text_slot.markdown(self.text + ("" if final else CURSOR))

    def partial_completion(self) -> Completion:
        return Completion(text=self.text, reasoning=self.reasoning, model=self.payload.get("model", ""),
                          partial=True, error="stopped by you")
