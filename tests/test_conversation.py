import json

import pytest

from orq_core.conversation import ChatSettings, Conversation, ConversationImportError
from orq_core.errors import RequestValidationError
from orq_core.types import Completion
from orq_core.usage import Usage

SONNET = "anthropic/claude-sonnet-4-5-20250929"


def thinking_conversation() -> Conversation:
    conversation = Conversation(ChatSettings(model=SONNET, system="Be brief.", cache_system=True, cache_ttl="1h",
                                             max_tokens=4000, thinking_budget=2048))
    conversation.add_user("Why is the sky blue?")
    answer = Completion(text="Rayleigh scattering.", reasoning="Short wavelengths scatter more.",
                        reasoning_signature="c2lnbmF0dXJl+/=", model=SONNET,
                        usage=Usage(10, 2000, 0, 50, 20, raw={"prompt_tokens": 2010}), ttft_ms=120.5,
                        latency_ms=900.0, finish_reason="stop")
    conversation.add_answer(answer, "1h")
    conversation.add_user("And at sunset?")
    return conversation


def test_wire_messages_replay_reasoning_with_signature_unmodified():
    messages = thinking_conversation().wire_messages()
    assert messages[0] == {"role": "system", "content": [
        {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}
    assistant = messages[2]
    assert assistant["role"] == "assistant"
    assert assistant["content"][0] == {"type": "reasoning", "reasoning": "Short wavelengths scatter more.",
                                       "signature": "c2lnbmF0dXJl+/="}
    assert assistant["content"][1] == {"type": "text", "text": "Rayleigh scattering."}
    assert messages[3] == {"role": "user", "content": "And at sunset?"}


def test_stopped_answer_replays_text_only():
    conversation = Conversation(ChatSettings(model=SONNET))
    conversation.add_user("Count to ten")
    conversation.add_answer(Completion(text="one two", reasoning="half a thought", partial=True, model=SONNET), "5m")
    conversation.add_user("go on")
    assert conversation.wire_messages()[1] == {"role": "assistant", "content": "one two"}
    assert conversation.turns[1].stopped


def test_export_then_import_gives_the_same_conversation():
    original = thinking_conversation()
    restored = Conversation.from_json(original.to_json().encode())
    assert restored.to_dict() == original.to_dict()
    assert restored.wire_messages() == original.wire_messages()
    assert restored.turns[1].completion.usage == Usage(10, 2000, 0, 50, 20)
    assert restored.turns[1].completion.usage.raw == {"prompt_tokens": 2010}


@pytest.mark.parametrize("raw, message", [
    (b"{not json", "not valid JSON (line 1, column 2"),
    (b"\xff\xfe\x00", "not UTF-8"),
    (b'{"hello": 1}', "not a conversation export"),
    (b'[1, 2]', "not a conversation export"),
    (json.dumps({"format": "orq-playground.conversation/1", "settings": {"model": SONNET},
                 "turns": [{"role": "wizard", "text": "x"}]}).encode(), "turns[0].role must be"),
    (json.dumps({"format": "orq-playground.conversation/1", "settings": {"model": SONNET, "evil": 1},
                 "turns": []}).encode(), "unknown keys: evil"),
    (json.dumps({"format": "orq-playground.conversation/1", "settings": {},
                 "turns": []}).encode(), "settings.model is missing"),
])
def test_import_refuses_bad_files_with_a_sentence(raw, message):
    with pytest.raises(ConversationImportError, match=message.replace("(", r"\(").replace("[", r"\[")):
        Conversation.from_json(raw)


def test_regenerate_and_edit_keep_history_before_last_user_turn():
    conversation = thinking_conversation()
    conversation.add_answer(Completion(text="Red light.", model=SONNET), "5m")
    conversation.replace_last_user("And at noon?")
    assert [t.role for t in conversation.turns] == ["user", "assistant", "user"]
    assert conversation.last_user_text() == "And at noon?"


def test_bad_parameters_raise_before_sending_and_keep_the_conversation():
    conversation = thinking_conversation()
    conversation.settings.max_tokens = 1500  # budget 2048 is not below max_tokens
    before = conversation.to_dict()
    with pytest.raises(RequestValidationError) as caught:
        conversation.payload_for_next_answer()
    assert "budget_tokens" in caught.value.field
    assert conversation.to_dict() == before


def test_title_is_taken_from_the_first_message():
    conversation = Conversation(ChatSettings(model=SONNET))
    conversation.add_user("  What   is\nprompt caching? " + "x" * 100)
    assert conversation.title.startswith("What is prompt caching? x")
    assert len(conversation.title) == 60
