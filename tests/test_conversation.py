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
    assert restored.id != original.id  # a fresh id: an import never replaces a saved conversation
    assert {**restored.to_dict(), "id": original.id} == original.to_dict()
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


# --- hostile imports (issue 16, items 1-3 and 10) ---------------------------------------------------

def export_with(settings: dict | None = None, turns: list | None = None, **top) -> bytes:
    data = thinking_conversation().to_dict()
    data["settings"].update(settings or {})
    if turns is not None:
        data["turns"] = turns
    data.update(top)
    return json.dumps(data).encode()


def import_refusal(raw: bytes) -> str:
    with pytest.raises(ConversationImportError) as caught:
        Conversation.from_json(raw)
    return str(caught.value)


def test_import_refuses_deep_nesting_before_parsing_with_a_sentence():
    deep = b'{"format": "orq-playground.conversation/1", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert import_refusal(deep) == ("The file nests lists or objects more than 32 levels deep; a conversation "
                                    "export never does, so this is not one (or it was damaged).")


def test_brackets_inside_text_do_not_count_as_nesting():
    conversation = thinking_conversation()
    conversation.add_user("[" * 500 + "{" * 500)
    assert Conversation.from_json(conversation.to_json()).turns[-1].text == "[" * 500 + "{" * 500


@pytest.mark.parametrize("settings, sentence", [
    ({"max_tokens": "lots"}, "settings.max_tokens must be a whole number from 1 to 64,000 (got 'lots')"),
    ({"max_tokens": -5}, "settings.max_tokens must be a whole number from 1 to 64,000 (got -5)"),
    ({"max_tokens": 10**12}, "settings.max_tokens must be a whole number from 1 to 64,000 (got 1000000000000)"),
    ({"cache_ttl": "10m"}, "settings.cache_ttl must be \"5m\" or \"1h\" (got '10m')"),
    ({"thinking_budget": "big"}, "settings.thinking_budget must be empty or a whole number from 1,024 "
                                 "to less than max_tokens (got 'big')"),
    ({"thinking_budget": None, "top_k": -3}, "settings.top_k must be empty or a whole number of at least 1 "
                                             "(got -3)"),
    ({"thinking_budget": None, "temperature": 1.7}, "settings.temperature must be empty or a number from 0 to 1 "
                                                    "(got 1.7)"),
    ({"thinking_budget": None, "top_p": 0}, "settings.top_p must be empty or a number above 0 and at most 1 "
                                            "(got 0)"),
    ({"system": ["be", "brief"]}, "settings.system must be text (got a list)"),
    ({"stop": "END"}, "settings.stop must be a list of stop sequences like [\"END\"] (got a string)"),
    ({"stop": ["END", 3]}, "settings.stop[1] must be text with at least one visible character (got 3)"),
    ({"cache_system": "yes"}, "settings.cache_system must be true or false (got 'yes')"),
    ({"cache_conversation": 1}, "settings.cache_conversation must be true or false (got 1)"),
    ({"thinking_budget": 2048, "temperature": 0.5}, "settings.temperature must be empty with extended thinking "
                                                    "(Claude fixes it at 1)"),
])
def test_import_checks_settings_with_the_chat_forms_rules(settings, sentence):
    assert import_refusal(export_with(settings)) == f"The conversation file is damaged: {sentence}."


@pytest.mark.parametrize("turn, sentence", [
    ({"role": "user", "text": "hi", "stopped": "no"}, "turns[0].stopped must be true or false"),
    ({"role": "assistant", "text": "hi", "write_ttl": "2h"}, "turns[0].write_ttl must be \"5m\" or \"1h\""),
    ({"role": "assistant", "text": "hi", "completion": {"usage": {"input_tokens": "x"}}},
     "turns[0].completion.usage.input_tokens must be a whole number of at least 0"),
    ({"role": "assistant", "text": "hi", "completion": {"ttft_ms": "fast"}},
     "turns[0].completion.ttft_ms must be empty or a number of at least 0"),
    ({"role": "assistant", "text": "hi", "completion": {"tool_calls": [{"id": 1}]}},
     "turns[0].completion.tool_calls[0] must hold id, name and arguments as text"),
])
def test_import_checks_every_turn_field(turn, sentence):
    assert sentence in import_refusal(export_with(turns=[turn]))


def test_import_names_the_first_problems_only():
    message = import_refusal(export_with({"max_tokens": 0, "cache_ttl": 5, "top_k": "a", "stop": 1}))
    assert message.count(";") == 2 and message.endswith("(and 1 more problem).")


def test_import_gives_a_fresh_id_and_never_replaces_a_saved_conversation(tmp_path):
    from orq_core.store import Store

    store = Store(tmp_path / "db.sqlite")
    saved = thinking_conversation()
    saved.save(store)
    imported = Conversation.from_json(export_with(id=saved.id))
    assert imported.id != saved.id and len(imported.id) == 12 and imported.id.isalnum()
    imported.save(store)
    assert Conversation.load(store, saved.id).to_dict() == saved.to_dict()
    odd = Conversation.from_json(export_with(id="a&b/<script>" + "x" * 5000))
    assert len(odd.id) == 12 and odd.id.isalnum()


def test_import_refuses_more_turns_than_the_page_can_show():
    turns = [{"role": "user" if i % 2 == 0 else "assistant", "text": f"turn {i}"} for i in range(100_000)]
    assert import_refusal(export_with(turns=turns)) == (
        "The conversation has 100,000 turns; the playground opens at most 2,000. Export a shorter part of it "
        "and import that.")


def test_titles_lose_control_characters():
    conversation = Conversation(ChatSettings(model=SONNET))
    conversation.add_user("\x07Ring\x1b[31m red\x00 now\u200b!")
    assert conversation.title == "Ring[31m red now!"
    imported = Conversation.from_json(export_with(title="a\x00b\x07c\x1bd\u202ee"))
    assert imported.title == "abcde"
