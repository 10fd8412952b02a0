"""The Chat page driven through the real entry point against the local router."""

import json

import pytest
from page_support import by_label, open_app

FAKE_KEY = "sk-orq-FAKE-0123456789-SECRET-abcdef"


@pytest.fixture
def app(page_env):
    return open_app()


def captions(at) -> str:
    return "\n".join(c.value for c in at.caption)


def send(at, text):
    at.chat_input[0].set_value(text).run()
    assert not at.exception, at.exception


def conversation(at):
    return at.session_state["conversation"]


def test_send_shows_streamed_answer_and_usage_line(app):
    send(app, "What is prompt caching?")
    turns = conversation(app).turns
    assert [t.role for t in turns] == ["user", "assistant"]
    answer = turns[1].completion
    assert "prompt caching" in answer.text.lower()
    assert answer.usage.output_tokens > 0 and answer.finish_reason == "stop"
    texts = [m.value for m in app.markdown]
    assert any(answer.text.strip()[:40] in t for t in texts)
    line = captions(app)
    assert f"output {answer.usage.output_tokens:,}" in line
    assert "TTFT" in line and "answered by `anthropic/claude-sonnet-4-5-20250929`" in line
    assert any("local router" in i.value for i in app.info)


def test_thinking_two_turns_replays_signature(app):
    by_label(app.toggle, "Extended thinking").set_value(True).run()
    by_label(app.number_input, "max_tokens").set_value(4096).run()
    send(app, "Think about why the sea is salty.")
    send(app, "And why is it blue?")
    turns = conversation(app).turns
    assert [t.role for t in turns] == ["user", "assistant", "user", "assistant"], [t.text for t in turns]
    for turn in (turns[1], turns[3]):
        assert turn.completion.reasoning and turn.completion.reasoning_signature
        assert turn.completion.usage.reasoning_tokens > 0
    assert not app.error


def test_cached_system_prompt_writes_then_reads(app):
    system = "You are a meticulous librarian. " + " ".join(f"Rule {i}: cite the shelf number." for i in range(300))
    by_label(app.text_area, "System prompt").set_value(system).run()
    by_label(app.toggle, "Cache the system prompt").set_value(True).run()
    send(app, "Where are the atlases?")
    send(app, "And the dictionaries?")
    first, second = conversation(app).turns[1].completion.usage, conversation(app).turns[3].completion.usage
    assert first.cache_write_tokens > 1024 and first.cache_read_tokens == 0
    assert second.cache_read_tokens == first.cache_write_tokens
    assert f"{second.cache_read_tokens:,} cache read" in captions(app)


def test_bad_parameters_show_error_and_keep_conversation(app):
    send(app, "First question")
    assert len(conversation(app).turns) == 2
    by_label(app.toggle, "Extended thinking").set_value(True).run()
    by_label(app.number_input, "max_tokens").set_value(1024).run()  # budget 2048 >= max_tokens
    send(app, "Second question")
    assert [t.role for t in conversation(app).turns] == ["user", "assistant"]
    errors = " ".join(e.value for e in app.error)
    assert "budget_tokens" in errors and "not sent" in errors
    assert "Second question" in " ".join(c.value for c in app.code)


def test_export_then_import_gives_the_same_conversation(app, tmp_path):
    send(app, "Remember the number 42.")
    exported = conversation(app).to_json()
    original = conversation(app).to_dict()
    from orq_core.conversation import Conversation
    restored = Conversation.from_json(exported.encode())
    assert {**restored.to_dict(), "id": original["id"]} == original and restored.id != original["id"]


def test_an_import_opens_under_a_fresh_id_and_the_saved_one_stays(app):
    send(app, "Keep me.")
    saved = conversation(app)
    hostile = {**saved.to_dict(), "title": "Impostor", "turns": [{"role": "user", "text": "Replaced!"}]}
    app.file_uploader(key="import_conversation").set_value(
        ("c.json", json.dumps(hostile).encode(), "application/json")).run()
    assert not app.exception and not app.error
    opened = conversation(app)
    assert opened.title == "Impostor" and opened.id != saved.id and app.query_params["c"] == opened.id
    from orq_core.store import Store
    kept = Store.default().load_doc("conversation", saved.id)
    assert kept.data["turns"][0]["text"] == "Keep me."


def test_a_long_conversation_shows_its_latest_turns_and_earlier_ones_on_request(app):
    from orq_core.conversation import Conversation, ChatSettings
    from orq_core.types import Completion
    from orq_core.store import Store
    long = Conversation(ChatSettings(model="anthropic/claude-haiku-4-5-20251001"))
    for i in range(60):
        long.add_user(f"question {i}")
        long.add_answer(Completion(text=f"answer {i}"), "5m")
    long.save(Store.default())
    app.query_params["c"] = long.id
    app.run()
    shown = [m.markdown[0].value for m in app.chat_message]
    assert shown[0] == "question 40" and shown[-1] == "answer 59" and len(shown) == 40
    by_label(app.button, "Show earlier turns (80 hidden)").click().run()
    shown = [m.markdown[0].value for m in app.chat_message]
    assert shown[0] == "question 20" and len(shown) == 80


def test_key_in_environment_appears_nowhere(monkeypatch, tmp_path):
    monkeypatch.setenv("ORQ_API_KEY", FAKE_KEY)
    monkeypatch.setenv("ORQ_BASE_URL", "http://127.0.0.1:9/v2/router")  # closed loopback port: never the internet
    monkeypatch.setenv("ORQ_LOCAL_ROUTER_TIME_SCALE", "0")
    monkeypatch.setenv("ORQ_PLAYGROUND_DB", str(tmp_path / "pages.db"))
    at = open_app()
    assert any("…cdef" in c.value for c in at.sidebar.caption)  # "configured (…last 4)"
    by_label(at.radio, "Connection").set_value("Local router").run()
    send(at, "Hello there")
    expander_code = "\n".join(c.value for c in at.code)
    assert "$ORQ_API_KEY" in expander_code
    rendered = json.dumps([str(node) for node in at.main]) + json.dumps([str(n) for n in at.sidebar])
    assert FAKE_KEY not in rendered
    assert FAKE_KEY not in conversation(at).to_json()
    assert FAKE_KEY not in expander_code
    assert (tmp_path / "pages.db").exists()
    assert FAKE_KEY.encode() not in (tmp_path / "pages.db").read_bytes()
    password = by_label(at.text_input, "API key") if [t for t in at.text_input if t.label == "API key"] else None
    assert password is None or password.value == ""


def test_spend_guard_refuses_before_sending_and_keeps_the_message(app):
    by_label(app.sidebar.number_input, "Spend guard (USD, 0 = off)").set_value(0.001).run()
    by_label(app.number_input, "max_tokens").set_value(8000).run()  # 8,000 x $15/MTok = $0.12 > $0.001
    send(app, "An expensive question")
    assert conversation(app).turns == []
    errors = " ".join(e.value for e in app.error)
    assert "Not sent: this request could cost up to $0.12" in errors
    assert errors.endswith("and this session has spent $0 of its $0.001 budget. Lower max_tokens, shorten the "
                           "prompt, or raise the budget in the sidebar.")
    assert "An expensive question" in " ".join(c.value for c in app.code)
    assert app.session_state["_spend"].requests == 0


def test_refused_request_leaves_history_so_the_next_message_works(app):
    send(app, "First question")
    huge = "lorem ipsum dolor sit amet " * 40_000  # more than the 200K context window
    send(app, huge)
    assert [t.role for t in conversation(app).turns] == ["user", "assistant"]
    assert "prompt is too long" in " ".join(e.value for e in app.error)
    assert app.session_state["draft"] == huge
    send(app, "A normal follow-up")
    assert [t.role for t in conversation(app).turns] == ["user", "assistant", "user", "assistant"]
    assert conversation(app).turns[-1].completion.finish_reason == "stop"


def test_cache_doctor_explains_a_system_edit_and_the_advice_makes_the_next_turn_read(app):
    import uuid

    rules = " ".join(f"Rule {i}: cite the shelf number." for i in range(300))
    system = f"You are a meticulous librarian ({uuid.uuid4().hex}). {rules}"  # fresh on the shared router
    by_label(app.text_area, "System prompt").set_value(system).run()
    by_label(app.toggle, "Cache the system prompt").set_value(True).run()
    send(app, "Where are the atlases?")
    first = conversation(app).turns[1].completion.cache
    assert first.why == f"writes {first.expected_write_tokens:,}: first request with this prefix"
    by_label(app.text_area, "System prompt").set_value(system + " Answer in one line.").run()
    send(app, "And the dictionaries?")
    edited = conversation(app).turns[3].completion
    assert edited.cache.why == (f"rewrites {edited.usage.cache_write_tokens:,}: the system prompt changed since "
                                f"the last request")
    assert edited.cache.verdict == "as predicted"
    assert f"Cache doctor: {edited.cache.why} · as predicted" in captions(app)
    advice = " ".join(m.value for m in app.markdown)
    # The newest-message breakpoint alone: its 20-block lookback still finds the system prompt's entry.
    assert "Put breakpoints on the newest message (moved each turn): the next 5 turns' input costs about" in advice
    by_label(app.button, "Apply the suggestion").click().run()
    assert conversation(app).settings.cache_conversation and not conversation(app).settings.cache_system
    send(app, "Which shelf holds the maps?")
    after = conversation(app).turns[5].completion
    assert after.usage.cache_read_tokens == after.cache.expected_read_tokens > 1024
    assert after.cache.why.startswith(f"reads {after.usage.cache_read_tokens:,} tokens written ")
    assert after.cache.matched
    send(app, "And the globes?")
    last = conversation(app).turns[7].completion
    assert last.usage.cache_read_tokens > after.usage.cache_read_tokens  # the whole conversation so far
    assert last.cache.matched


def test_a_damaged_saved_conversation_opens_with_a_sentence_not_a_crash(app):
    from orq_core.store import Store
    damaged = {"format": "orq-playground.conversation/1", "id": "bad000000001", "title": "saved before the fix",
               "settings": {"model": "anthropic/claude-sonnet-4-5-20250929", "max_tokens": "lots"},
               "turns": [{"role": "user", "text": "hello"}]}
    Store.default().save_doc("conversation", "bad000000001", "saved before the fix", damaged)
    app.query_params["c"] = "bad000000001"
    app.run()
    assert not app.exception, app.exception
    assert ("The saved conversation “saved before the fix” cannot be opened: settings.max_tokens must be a whole "
            "number from 1 to 64,000 (got 'lots'). A new conversation was started instead.") in [e.value for e in app.error]
    assert conversation(app).id != "bad000000001" and conversation(app).turns == []
    send(app, "A fresh start")
    assert [t.text for t in conversation(app).turns][0] == "A fresh start"
    by_label(app.button, "Delete the conversation that cannot be opened").click().run()
    assert Store.default().load_doc("conversation", "bad000000001") is None and not app.error
