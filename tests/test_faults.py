"""Faults, end to end: the client, the run log, the Chat page and the lab against the local router's
fault injection (``orq_core/emulator/faults.py``). No real waiting: the client's sleep is injected
(or Retry-After is 0), and only the read-timeout cases wait the read timeout they are about."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from orq_core.client import OrqClient, Timeouts
from orq_core.errors import ConnectionFailed, OverloadedError, RateLimitError, TimeoutFailed, describe
from orq_core.lab import ExperimentConfig, run_experiment
from orq_core.request import ChatParams, build_payload, user_message
from orq_core.store import Store
from orq_core.types import Done, ErrorEvent, TextDelta

from browser import free_port as closed_port  # a loopback port bound and released: nobody listens
from page_support import APP, RUN_TIMEOUT_S

SONNET = "anthropic/claude-sonnet-4-5-20250929"
SONNET_AWS = "aws/anthropic/claude-sonnet-4-5-20250929"
FAULT = "X-Emulator-Fault"


def payload(text: str = "Tell me about rivers.", *, stream: bool = True, **params) -> dict:
    return build_payload(ChatParams(model=SONNET, max_tokens=300, stream=stream, **params), [user_message(text)])


class Waits(list):
    """The client's sleep: records the seconds instead of waiting them."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path / "faults.db")


@pytest.fixture
def waits() -> Waits:
    return Waits()


@pytest.fixture
def client_for(store, waits):
    """client_for(router, **options) -> an OrqClient logging to ``store``; its sleep is ``waits``."""
    made = []

    def make(router, **options):
        client = OrqClient(router.base_url, router.api_key, run_log=store, page="faults", sleep=waits, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def finished(client: OrqClient, body: dict, **options):
    """Drain a stream; returns (events, completion)."""
    events = list(client.stream(body, **options))
    assert isinstance(events[-1], Done)
    return events, events[-1].completion


# --- 429 storms --------------------------------------------------------------------------------

def test_a_429_storm_is_waited_out_and_logged_once_per_request(local_router, client_for, store, waits):
    client = client_for(local_router, max_retries=3)
    texts = []
    for n in range(4):
        headers = {FAULT: f"429x2:retry_after=2#storm{n}"}  # each request: two 429s, then an answer
        if n % 2:
            texts.append(client.create(payload(f"Question {n}", stream=False), headers=headers).text)
        else:
            texts.append(finished(client, payload(f"Question {n}"), headers=headers)[1].text)
    assert all(texts)
    assert waits == [2.0] * 8  # exactly the server's Retry-After, twice per request
    rows = store.runs()
    assert len(rows) == 4
    assert [r.status for r in rows] == ["ok"] * 4 and {r.http_status for r in rows} == {200}
    assert len({r.request_id for r in rows}) == 4


def test_a_storm_longer_than_the_retries_is_one_error_row_with_a_sentence(local_router, client_for, store, waits):
    client = client_for(local_router, max_retries=3)
    with pytest.raises(RateLimitError) as caught:
        finished(client, payload(), headers={FAULT: "429x9:retry_after=1.5#long"})
    assert waits == [1.5, 1.5, 1.5]
    assert caught.value.retry_after == 1.5
    sentence = describe(caught.value)
    assert sentence.startswith("Rate limited (429):") and sentence.endswith("Wait 1.5 s and try again.")
    [row] = store.runs()
    assert (row.status, row.http_status) == ("error", 429)
    assert row.error == sentence


def test_a_429_storm_in_chat_retries_quietly_and_logs_one_row(chat_app, shared_router, tmp_path):
    shared_router.settings.faults.append("429x3:retry_after=0")
    send(chat_app, "Is anyone there?")
    turns = chat_app.session_state["conversation"].turns
    assert [t.role for t in turns] == ["user", "assistant"]
    assert turns[1].completion.finish_reason == "stop" and not turns[1].stopped
    assert not chat_app.error
    rows = Store(tmp_path / "chat.db").runs()
    assert [(r.status, r.http_status) for r in rows] == [("ok", 200)]


# --- 529 and fallbacks ---------------------------------------------------------------------------

@pytest.mark.parametrize("stream", [True, False])
def test_529_on_the_primary_falls_back_and_the_answer_names_who_answered(local_router, client_for, store, waits,
                                                                         stream):
    client = client_for(local_router)
    body = payload(stream=stream, fallbacks=(SONNET_AWS,))
    headers = {FAULT: f"529@{SONNET}"}
    completion = finished(client, body, headers=headers)[1] if stream else client.create(body, headers=headers)
    assert completion.model == SONNET_AWS
    assert completion.text and completion.usage.output_tokens > 0
    assert waits == []  # the router's fallback answered: the client never retried
    [row] = store.runs()
    assert (row.model, row.answered_by, row.status) == (SONNET, SONNET_AWS, "ok")
    assert row.cost_usd > 0


def test_529_without_a_fallback_is_retried_then_explained(local_router, client_for, store, waits):
    client = client_for(local_router, max_retries=2, backoff_base=0.5, backoff_cap=8.0)
    with pytest.raises(OverloadedError) as caught:
        client.create(payload(stream=False), headers={FAULT: "529x5#busy"})
    assert len(waits) == 2 and all(0 <= s <= 0.5 * 2 ** i for i, s in enumerate(waits))
    assert describe(caught.value) == ("The model is overloaded (529) and retries did not help. "
                                      "Try again shortly, or add a fallback model.")
    [row] = store.runs()
    assert (row.status, row.http_status) == ("error", 529)


def test_529_that_clears_after_one_attempt_needs_no_fallback(local_router, client_for, store):
    client = client_for(local_router)
    completion = client.create(payload(stream=False, fallbacks=(SONNET_AWS,)),
                               headers={FAULT: f"529x1@{SONNET}#once"})
    assert completion.model == SONNET_AWS  # Orq moves on to the fallback at once; the client saw no error
    completion = client.create(payload(stream=False, fallbacks=(SONNET_AWS,)),
                               headers={FAULT: f"529x1@{SONNET}#once"})
    assert completion.model == SONNET  # the counted fault is spent: the primary answers again
    assert [r.answered_by for r in reversed(store.runs())] == [SONNET_AWS, SONNET]


# --- a stream cut halfway ------------------------------------------------------------------------

def test_a_cut_before_anything_arrived_is_resent_silently(local_router, client_for, store, waits):
    client = client_for(local_router)
    local_router.settings.faults.append("cut:after=0")
    events, completion = finished(client, payload())
    assert not completion.partial and completion.finish_reason == "stop"
    assert not any(isinstance(e, ErrorEvent) for e in events)
    assert len(waits) == 1
    assert [r.status for r in store.runs()] == ["ok"]


def test_a_cut_after_tokens_keeps_the_partial_answer_and_logs_it_once(local_router, client_for, store, waits):
    client = client_for(local_router)
    local_router.settings.faults.append("cut:after=4")
    events, completion = finished(client, payload())
    delivered = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert isinstance(events[-2], ErrorEvent)
    assert completion.partial and completion.text == delivered and delivered
    assert "connection to the router broke" in completion.error
    assert waits == []  # never resent once tokens were shown
    events, again = finished(client, payload())
    assert not again.partial and again.finish_reason == "stop"
    assert [r.status for r in reversed(store.runs())] == ["partial", "ok"]


def test_a_cut_stream_in_chat_is_marked_and_the_next_message_works(chat_app, shared_router, tmp_path):
    shared_router.settings.faults.append("cut:after=4")
    send(chat_app, "Explain prompt caching in detail.")
    turns = chat_app.session_state["conversation"].turns
    assert [t.role for t in turns] == ["user", "assistant"]
    assert turns[1].stopped and turns[1].text and turns[1].completion.partial
    captions = " ".join(c.value for c in chat_app.caption)
    assert "Stopped: partial answer" in captions and "connection to the router broke" in captions
    send(chat_app, "Please go on.")
    turns = chat_app.session_state["conversation"].turns
    assert [t.role for t in turns] == ["user", "assistant", "user", "assistant"]
    assert not turns[3].stopped and turns[3].completion.finish_reason == "stop"
    assert not chat_app.error
    assert [r.status for r in reversed(Store(tmp_path / "chat.db").runs())] == ["partial", "ok"]


def test_a_cut_request_in_the_lab_is_a_failed_row_and_the_next_is_fine(local_router, client_for, store):
    client = client_for(local_router)
    local_router.settings.faults.append("cut:after=3")
    config = ExperimentConfig(context_tokens=2_000, requests=3, arms=("prompt-cache",), max_tokens=64)
    result = run_experiment(config, client, sleep=lambda s: None)
    first, *rest = result.records
    assert first.status == "failed" and "connection to the router broke" in first.error
    assert [r.status for r in rest] == ["ok", "ok"]
    assert rest[0].cache_write_tokens > 0 or rest[0].cache_read_tokens > 0
    runs = list(reversed(store.runs()))
    assert [r.status for r in runs] == ["partial", "ok", "ok"]  # one run-log row per request


def test_a_cut_request_on_the_lab_page_is_reported_and_the_run_goes_on(lab_app, shared_router):
    shared_router.settings.faults.append("cut:after=3")
    next(s for s in lab_app.slider if s.label == "Book size (tokens)").set_value(2_000)
    next(n for n in lab_app.number_input if n.label == "Requests per arm").set_value(2)
    next(b for b in lab_app.button if b.label == "Run experiment").click().run()
    assert not lab_app.exception, lab_app.exception
    records = lab_app.session_state["lab_result"].records
    assert [(r.arm, r.request, r.status) for r in records] == [
        ("no-cache", 1, "failed"), ("prompt-cache", 1, "ok"), ("no-cache", 2, "ok"), ("prompt-cache", 2, "ok")]
    warnings = " ".join(w.value for w in lab_app.warning)
    assert "1 request(s) did not complete" in warnings and "No caching #1" in warnings
    assert "connection to the router broke" in warnings


# --- a router that is down -----------------------------------------------------------------------

def test_a_closed_port_is_a_connection_failure_with_a_sentence(client_for, store, waits):
    class Down:
        base_url = f"http://127.0.0.1:{closed_port()}/v2/router"
        api_key = "sk-unused"

    client = client_for(Down, max_retries=2)
    with pytest.raises(ConnectionFailed) as caught:
        client.create(payload(stream=False))
    assert len(waits) == 2
    sentence = describe(caught.value)
    assert sentence.startswith(f"Could not reach the router: could not connect to {Down.base_url}")
    assert sentence.endswith("Check the base URL and your connection.")
    assert [(r.status, r.error) for r in store.runs()] == [("error", sentence)]



@pytest.fixture
def dead_router_app(monkeypatch, tmp_path):
    port = closed_port()
    monkeypatch.setenv("ORQ_API_KEY", "sk-orq-dead-router-test-0000")
    monkeypatch.setenv("ORQ_BASE_URL", f"http://127.0.0.1:{port}/v2/router")
    monkeypatch.setenv("ORQ_LOCAL_ROUTER_TIME_SCALE", "0")
    monkeypatch.setenv("ORQ_PLAYGROUND_DB", str(tmp_path / "chat.db"))
    at = AppTest.from_file(APP, default_timeout=RUN_TIMEOUT_S)
    at.run()
    assert not at.exception
    return at, port


def test_the_app_with_a_dead_router_explains_and_keeps_the_message(dead_router_app):
    at, port = dead_router_app
    sidebar_errors = " ".join(e.value for e in at.sidebar.error)
    assert f"Orq AI Router: Could not reach the router: could not connect to http://127.0.0.1:{port}" in sidebar_errors
    send(at, "Hello, anyone?")  # the client retries with its real backoff: about 2 s
    turns = at.session_state["conversation"].turns
    assert [t.role for t in turns] == ["user", "error"]
    assert turns[0].text == "Hello, anyone?"
    assert turns[1].text.startswith("Could not reach the router: could not connect to")
    assert any(e.value == turns[1].text for e in at.main.error)
    assert any(m.value == "Hello, anyone?" for m in at.main.markdown)


def test_after_a_dead_router_switching_to_the_local_router_answers(dead_router_app):
    at, _ = dead_router_app
    at.radio(key="connection_kind").set_value("Local router").run()  # before any send: no retry waits
    send(at, "And now?")
    turns = at.session_state["conversation"].turns
    assert [t.role for t in turns] == ["user", "assistant"], [t.text for t in turns]
    assert turns[1].completion.finish_reason == "stop"


# --- a slow first byte ---------------------------------------------------------------------------

def test_a_slow_first_byte_beyond_the_read_timeout_is_a_timeout_sentence(router_factory, client_for, store):
    router = router_factory(fault_time_scale=1)
    client = client_for(router, timeouts=Timeouts(read=0.5), max_retries=0)
    with pytest.raises(TimeoutFailed) as caught:
        finished(client, payload(), headers={FAULT: "slow_first_byte:2"})
    assert describe(caught.value) == ("No answer in time: the router sent nothing for 0.5 s (read timeout). "
                                      "Raise the read timeout or try again.")
    [row] = store.runs()
    assert row.status == "error" and "read timeout" in row.error


def test_one_slow_first_byte_is_retried_and_logged_once(router_factory, client_for, store, waits):
    router = router_factory(fault_time_scale=1)
    # The retry must answer within the read timeout: 2 s, not 0.5, so a loaded machine's pause is no timeout.
    client = client_for(router, timeouts=Timeouts(read=2.0), max_retries=1)
    completion = finished(client, payload(), headers={FAULT: "slow_first_bytex1:10#slow"})[1]
    assert completion.finish_reason == "stop" and not completion.partial
    assert len(waits) == 1
    assert [r.status for r in store.runs()] == ["ok"]


# --- the Chat page on the shared router ------------------------------------------------------------

@pytest.fixture
def shared_router(monkeypatch):
    """The app's own local router (a process-wide singleton): faults queued on its settings reach
    the page's next request. Every queued fault must be used up by the test that queued it."""
    monkeypatch.setenv("ORQ_LOCAL_ROUTER_TIME_SCALE", "0")
    from orq_core.emulator import get_local_router

    router = get_local_router()
    board = router.app.state.router.faults
    assert board.queued() == [] and router.settings.faults == []
    yield router
    leftover = board.queued()
    router.settings.faults.clear()
    assert leftover == [], f"faults queued but never used: {leftover}"


@pytest.fixture
def chat_app(monkeypatch, tmp_path, shared_router):
    monkeypatch.delenv("ORQ_API_KEY", raising=False)
    monkeypatch.setenv("ORQ_PLAYGROUND_DB", str(tmp_path / "chat.db"))
    at = AppTest.from_file(APP, default_timeout=RUN_TIMEOUT_S)
    at.run()
    assert not at.exception
    return at


@pytest.fixture
def lab_app(monkeypatch, tmp_path, shared_router):
    monkeypatch.delenv("ORQ_API_KEY", raising=False)
    monkeypatch.delenv("ORQ_SPEND_BUDGET_USD", raising=False)
    monkeypatch.setenv("ORQ_PLAYGROUND_DB", str(tmp_path / "lab.db"))
    at = AppTest.from_file(APP, default_timeout=RUN_TIMEOUT_S)
    at.run()
    at.switch_page("app_pages/caching_lab.py")
    at.run()
    assert not at.exception
    return at


def send(at, text: str) -> None:
    at.chat_input[0].set_value(text).run()
    assert not at.exception, at.exception
