"""The local router's speed work, held by behaviour (never by wall-clock time): cache eviction
by a heap, token counts memoized by block digest."""

from __future__ import annotations

from orq_core.emulator.cache import PromptCache, _ExpiringStore
from orq_core.emulator.prompt import segment_prompt
from orq_core.request import text_part

SONNET = "anthropic/claude-sonnet-4-5-20250929"
LONG = "word " * 1200


class _Entry:
    """An entry that counts how often its expiry is looked at."""

    reads = 0

    def __init__(self, expires_at: float):
        self._expires_at = expires_at

    @property
    def expires_at(self) -> float:
        _Entry.reads += 1
        return self._expires_at

    @expires_at.setter
    def expires_at(self, value: float) -> None:
        self._expires_at = value


def _store(expiries: list[float], cap: int) -> _ExpiringStore:
    store = _ExpiringStore(cap)
    for n, expires_at in enumerate(expiries):
        store.put(f"k{n}".encode(), _Entry(expires_at), now=0.0)
    return store


# --- eviction ------------------------------------------------------------------------------------

def test_at_the_cap_the_soonest_to_expire_goes_and_the_count_stays_at_the_cap():
    store = _store([10.0, 5.0, 20.0], cap=3)
    store.put(b"k3", _Entry(15.0), now=0.0)
    assert sorted(store.entries) == [b"k0", b"k2", b"k3"]
    store.put(b"k4", _Entry(30.0), now=0.0)
    assert sorted(store.entries) == [b"k2", b"k3", b"k4"]
    assert len(store.entries) == 3


def test_a_refreshed_entry_is_judged_by_its_new_expiry():
    store = _store([10.0, 15.0, 20.0], cap=3)
    store.refresh(b"k0", store.entries[b"k0"], 100.0)
    store.put(b"k3", _Entry(50.0), now=0.0)
    assert sorted(store.entries) == [b"k0", b"k2", b"k3"]


def test_the_expired_go_first_even_when_later_ones_expire_sooner_than_the_newcomer():
    store = _store([10.0, 11.0, 300.0, 400.0], cap=4)
    store.put(b"k4", _Entry(200.0), now=12.0)
    assert sorted(store.entries) == [b"k2", b"k3", b"k4"]


def test_an_insert_at_the_cap_looks_at_a_few_entries_not_all_of_them():
    store = _store([float(n % 977) + n / 10_000 for n in range(5000)], cap=5000)
    _Entry.reads = 0
    for n in range(100):
        store.put(f"new{n}".encode(), _Entry(2000.0 + n), now=0.0)
    assert len(store.entries) == 5000
    assert _Entry.reads < 100 * 10  # a scan would read 5,000 expiries per insert


def test_a_store_whose_entries_all_refresh_keeps_its_heap_bounded():
    store = _store([float(n) for n in range(100)], cap=100)
    for round_ in range(50):
        for key, entry in list(store.entries.items()):
            store.refresh(key, entry, 1000.0 + round_)
    assert len(store._heap) <= 2 * len(store.entries) + 64
    store.put(b"new", _Entry(5000.0), now=0.0)
    assert len(store.entries) == 100 and b"new" in store.entries


def test_a_prompt_cache_read_refreshes_so_the_unread_entry_is_evicted_first():
    clock = [0.0]
    cache = PromptCache(clock=lambda: clock[0], max_entries=2)

    def send(text: str):
        payload = {"model": SONNET, "max_tokens": 64, "messages": [
            {"role": "system", "content": [text_part(text + LONG, cache_ttl="5m")]},
            {"role": "user", "content": "q"}]}
        return cache.process(api_key="k", model_slug=SONNET, blocks=segment_prompt(payload), min_cacheable=1024)

    send("a ")
    clock[0] = 100.0
    send("b ")
    clock[0] = 200.0
    assert send("a ").read_tokens > 0  # a now expires at 500, b at 400
    clock[0] = 250.0
    send("c ")
    assert len(cache) == 2
    assert send("a ").read_tokens > 0
    assert send("b ").read_tokens == 0


# --- token counts memoized by block digest ---------------------------------------------------------

def _long_chat(question: str, tools: list | None = None) -> dict:
    payload = {"model": SONNET, "max_tokens": 64, "messages": [
        {"role": "system", "content": [text_part("prefix " + LONG * 10, cache_ttl="5m")]},
        {"role": "user", "content": question}]}
    if tools:
        payload["tools"] = tools
    return payload


def _counting_text_tokens(monkeypatch) -> list[int]:
    """Records the length of every text counted afresh, from an empty memo (an earlier test in the same
    process may have counted the same prefix)."""
    from collections import OrderedDict

    from orq_core.emulator import prompt

    lengths: list[int] = []
    real = prompt.text_tokens
    monkeypatch.setattr(prompt, "_TOKENS_BY_DIGEST", OrderedDict())

    def counting(text: str) -> int:
        lengths.append(len(text))
        return real(text)

    monkeypatch.setattr(prompt, "text_tokens", counting)
    return lengths


def test_a_resent_long_prefix_is_not_tokenized_again(monkeypatch):
    lengths = _counting_text_tokens(monkeypatch)
    first = segment_prompt(_long_chat("first question"))
    second = segment_prompt(_long_chat("second question"))
    long_counts = [n for n in lengths if n > 10_000]
    assert long_counts == [len("prefix " + LONG * 10)]  # counted once, for the first request only
    assert first[0] == second[0]
    assert first[1].tokens != second[1].tokens or first[1].digest != second[1].digest


def test_remembered_counts_equal_fresh_counts_for_every_block_kind():
    from orq_core.emulator import prompt

    tool = {"type": "function", "function": {"name": "look_up", "description": "Look a word up.",
                                             "parameters": {"type": "object", "properties": {}}}}
    payload = _long_chat("q", tools=[tool, {**tool, "function": {**tool["function"], "name": "other"}}])
    payload["messages"] += [
        {"role": "assistant", "content": "calling", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "look_up", "arguments": '{"w": "x"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "a result"}]
    prompt._TOKENS_BY_DIGEST.clear()
    fresh = segment_prompt(payload)
    remembered = segment_prompt(payload)
    assert remembered == fresh
    assert sum(b.tokens for b in fresh) == prompt.count_prompt_tokens(payload)


def test_the_first_tool_keeps_the_tool_use_overhead_when_its_twin_was_counted_elsewhere():
    from orq_core.emulator.prompt import TOOL_USE_SYSTEM_PROMPT_TOKENS

    a = {"type": "function", "function": {"name": "a", "parameters": {"type": "object", "properties": {}}}}
    b = {"type": "function", "function": {"name": "b", "parameters": {"type": "object", "properties": {}}}}
    ab = segment_prompt(_long_chat("q", tools=[a, b]))
    ba = segment_prompt(_long_chat("q", tools=[b, a]))
    assert ab[0].tokens == ba[1].tokens + TOOL_USE_SYSTEM_PROMPT_TOKENS
    assert ab[1].tokens + TOOL_USE_SYSTEM_PROMPT_TOKENS == ba[0].tokens


# --- the router's request path ------------------------------------------------------------------

import re  # noqa: E402
import socket  # noqa: E402

import httpx  # noqa: E402

from orq_core.emulator import app as router_app  # noqa: E402
from orq_core.tokens import text_tokens  # noqa: E402

_OLD_PIECES = re.compile(r"\w+|[^\w\s]")
SAMPLE = ("The cache keeps a prefix — café naïve 日本語 🎉 x_y 3.14 tab\there\nnew line ,,, «quoted» "
          "antidisestablishmentarianism  \u00a0nbsp \u2028 sep ٣٤٥ (arabic digits) Ⅻ ½ e\u0301 \x1c ok.")


def _piece_rule(text: str) -> int:
    """The documented rule, piece by piece: a word one token per started 4 characters, a symbol one."""
    return sum(-(-len(p) // 4) if p[0].isalnum() or p[0] == "_" else 1 for p in _OLD_PIECES.findall(text))


def _bisect_truncate(text: str, budget: int) -> str:
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if text_tokens(text[:middle]) <= budget:
            low = middle
        else:
            high = middle - 1
    return text[:low]


def test_text_tokens_counts_by_the_documented_piece_rule():
    for start in range(len(SAMPLE)):
        for end in (start + 1, start + 7, start + 40, len(SAMPLE)):
            assert text_tokens(SAMPLE[start:end]) == _piece_rule(SAMPLE[start:end]), SAMPLE[start:end]
    assert text_tokens("abcdefghi") == 3 and text_tokens("a, b") == 3 and text_tokens(" \n ") == 0


def test_truncation_keeps_the_longest_prefix_within_the_budget():
    for text in (SAMPLE, "antidisestablishmentarianism", "a,b,c", "", "   "):
        for budget in range(0, text_tokens(text) + 2):
            assert router_app.truncate_to_tokens(text, budget) == _bisect_truncate(text, budget), (text, budget)
    assert router_app.truncate_to_tokens("abcdefghij klm", 2) == "abcdefgh"


def test_stream_pieces_cover_the_text_and_their_counts_add_up():
    for size in (1, 3, 4, 9):
        chunks = router_app.split_for_stream(SAMPLE, size)
        assert "".join(piece for piece, _ in chunks) == SAMPLE
        assert [n for _, n in chunks] == [text_tokens(piece) for piece, _ in chunks]
        assert all(n >= size for _, n in chunks[:-1])


def test_chunk_events_are_the_bytes_of_the_whole_chunk_encoded():
    base = {"id": "chatcmpl-1", "created": 5, "model": SONNET, "object": "chat.completion.chunk"}
    for extra in ({}, {"orq": {"cache_hit": True}}):
        events = router_app.ChunkEvents(base, extra)
        for delta, finish in (({"role": "assistant", "content": "café \"q\" 🎉\n"}, None), ({}, "stop"),
                              ({"content": "\x00 tab\t \u2028 é"}, None), ({"reasoning": ""}, None),
                              ({"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\": 1}"}}]}, None)):
            whole = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
            assert events.delta(delta, finish) == router_app.sse(whole)


def _hops(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = router_app.run_in_threadpool

    async def counting(func, *args, **kwargs):
        calls.append(func.__name__)
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(router_app, "run_in_threadpool", counting)
    return calls


def _post(router, payload: dict) -> httpx.Response:
    return httpx.post(f"{router.base_url}/chat/completions", json=payload,
                      headers={"Authorization": "Bearer k"}, timeout=30)


def test_a_small_request_is_answered_without_a_worker_thread(local_router, monkeypatch):
    hops = _hops(monkeypatch)
    for stream in (False, True):
        response = _post(local_router, {"model": SONNET, "max_tokens": 64, "stream": stream,
                                        "messages": [{"role": "user", "content": "Hello there"}]})
        assert response.status_code == 200
    assert hops == []


def test_a_body_past_a_megabyte_is_checked_in_a_worker_thread(local_router, monkeypatch):
    hops = _hops(monkeypatch)
    big = "river " * 200_000  # 1.2 MB of prompt: 400K tokens, refused as too long
    response = _post(local_router, {"model": SONNET, "max_tokens": 64,
                                    "messages": [{"role": "user", "content": big}]})
    assert response.status_code == 400 and "too long" in response.json()["error"]["message"]
    assert hops == ["check_payload"]


def test_a_request_with_an_inline_file_is_decoded_in_a_worker_thread(local_router, monkeypatch):
    import base64
    import io

    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(png, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(png.getvalue()).decode("ascii")
    hops = _hops(monkeypatch)
    response = _post(local_router, {"model": SONNET, "max_tokens": 64, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "What is it?"}]}]})
    assert response.status_code == 200
    assert hops == ["check_payload", "generate"]


def test_a_long_text_prompt_under_a_megabyte_is_answered_on_the_event_loop(local_router, monkeypatch):
    hops = _hops(monkeypatch)
    response = _post(local_router, {"model": SONNET, "max_tokens": 64,
                                    "messages": [{"role": "user", "content": "river " * 60_000}]})
    assert response.status_code == 200
    assert hops == []


def test_served_connections_do_not_wait_for_nagle(local_router):
    """TCP_NODELAY on the router's connections: without it every keep-alive request after the
    first waits for the client's delayed ACK."""
    with httpx.Client(headers={"Authorization": "Bearer k"}) as client:
        for _ in range(2):
            assert client.get(f"{local_router.base_url}/models").status_code == 200
        connections = local_router._server.server_state.connections
        sockets = [c.transport.get_extra_info("socket") for c in connections]
        assert sockets and all(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in sockets)


def _counting_dumps(monkeypatch) -> list[int]:
    """Lengths of what the prompt module serialises as JSON."""
    import json as real_json
    import types

    from orq_core.emulator import prompt

    lengths: list[int] = []

    def dumps(value, **options):
        text = real_json.dumps(value, **options)
        lengths.append(len(text))
        return text

    real_canonical = prompt._canonical_json

    def canonical(value):
        text = real_canonical(value)
        lengths.append(len(text))
        return text

    monkeypatch.setattr(prompt, "json", types.SimpleNamespace(dumps=dumps))
    monkeypatch.setattr(prompt, "_canonical_json", canonical)
    return lengths


def test_a_resent_long_text_is_digested_from_its_hash_not_serialised_again(monkeypatch):
    from orq_core.emulator import prompt

    payload = _long_chat("first question")
    first = segment_prompt(payload)
    lengths = _counting_dumps(monkeypatch)
    again = segment_prompt(_long_chat("second question"))
    assert again[0] == first[0]
    assert max(lengths) < 1_000  # the long system text was not escaped as JSON a second time
    direct = prompt._digest({"message": {"role": "system"},
                             "unit": {"type": "text", "text": "prefix " + LONG * 10}})
    assert first[0].digest == direct


def test_the_same_long_text_in_another_role_gets_its_own_digest():
    text = "prefix " + LONG * 10
    as_system = segment_prompt({"model": SONNET, "max_tokens": 8, "messages": [
        {"role": "system", "content": text}, {"role": "user", "content": "q"}]})
    as_user = segment_prompt({"model": SONNET, "max_tokens": 8, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "q"}, {"type": "text", "text": text}]}]})
    assert as_system[0].digest != as_user[1].digest
    assert as_system[0].tokens == as_user[1].tokens + 3  # the per-message overhead sits on the first unit


# --- memos on the request path (speed2) -------------------------------------------------------------

def _stream_body(response: httpx.Response) -> list[dict]:
    import json

    return [json.loads(line[6:]) for line in response.text.split("\n")
            if line.startswith("data: {")]


def _without_ids(events: list[dict]) -> list[dict]:
    return [{k: v for k, v in event.items() if k not in ("id", "created")} for event in events]


TOOL_PAYLOAD = {"model": SONNET, "max_tokens": 300, "tool_choice": "auto",
                "tools": [{"type": "function", "function": {
                    "name": "get_weather", "description": "Weather for a city",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                   "required": ["city"]}}}],
                "messages": [{"role": "user", "content": "What is the weather in Paris?"}]}


def test_a_resent_body_is_checked_and_segmented_once_with_the_same_answer(local_router, monkeypatch):
    router = local_router.app.state.router
    checks: list[int] = []
    real = router.check_payload
    monkeypatch.setattr(router, "check_payload", lambda payload: checks.append(1) or real(payload))
    first, second = (_post(local_router, TOOL_PAYLOAD) for _ in range(2))
    assert first.status_code == second.status_code == 200
    assert len(checks) == 1 and router.checked.hits == 1
    assert first.json()["choices"] == second.json()["choices"]
    assert first.json()["usage"]["prompt_tokens"] == second.json()["usage"]["prompt_tokens"]


def test_a_refused_body_is_not_remembered_and_is_refused_again(local_router):
    router = local_router.app.state.router
    bad = {"model": SONNET, "max_tokens": 64, "messages": [{"role": "user", "content": ""}]}
    responses = [_post(local_router, bad) for _ in range(2)]
    assert [r.status_code for r in responses] == [400, 400]
    assert responses[0].json() == responses[1].json()
    assert len(router.checked) == 0


def test_a_remembered_answer_is_the_answer_composed_afresh(local_router, monkeypatch):
    router = local_router.app.state.router
    composed: list[int] = []
    real = router_app.compose_answer
    monkeypatch.setattr(router_app, "compose_answer", lambda *a, **k: composed.append(1) or real(*a, **k))
    thinking = {"model": SONNET, "max_tokens": 2000, "thinking": {"type": "enabled", "budget_tokens": 1024},
                "messages": [{"role": "user", "content": "Why is the sky blue?"}]}
    for payload in (TOOL_PAYLOAD, thinking):
        remembered = [_post(local_router, payload).json() for _ in range(2)]
        router.generations = router_app.Memo(router_app.MEMO_KEPT)  # forget: the next one is composed afresh
        fresh = _post(local_router, payload).json()
        assert remembered[0]["choices"] == remembered[1]["choices"] == fresh["choices"]
        assert remembered[0]["usage"] == remembered[1]["usage"] == fresh["usage"]
    assert len(composed) == 4  # two per payload: the first and the one after forgetting


def test_a_different_max_tokens_or_stop_is_not_served_the_remembered_answer(local_router):
    base = {"model": SONNET, "max_tokens": 400, "messages": [{"role": "user", "content": "Tell me about rivers"}]}
    full = _post(local_router, base).json()["choices"][0]
    short = _post(local_router, {**base, "max_tokens": 5}).json()["choices"][0]
    assert full["finish_reason"] == "stop" and short["finish_reason"] == "length"
    assert full["message"]["content"].startswith(short["message"]["content"])
    stop_word = full["message"]["content"].split()[3]
    stopped = _post(local_router, {**base, "stop": [stop_word]}).json()["choices"][0]
    assert stopped["message"]["content"] == full["message"]["content"][:full["message"]["content"].find(stop_word)]


def test_a_remembered_answer_streams_the_same_chunks(local_router):
    payload = {**TOOL_PAYLOAD, "stream": True, "stream_options": {"include_usage": True}}
    router = local_router.app.state.router
    first, second = (_stream_body(_post(local_router, payload)) for _ in range(2))
    router.generations = router_app.Memo(router_app.MEMO_KEPT)
    fresh = _stream_body(_post(local_router, payload))
    assert _without_ids(first) == _without_ids(second) == _without_ids(fresh)
    assert len(first) > 3


def test_the_encoded_plan_is_the_delta_plan_encoded_and_is_remembered(monkeypatch):
    gen = router_app.Generation("Hello there, rivers run to the sea. " * 5, "Think first.", "sig", ("r",),
                                ({"id": "call_1", "name": "f", "arguments": "{\"a\": 1}"},), "tool_calls")
    plan = router_app.delta_plan(gen, 4)
    assert gen.encoded_plan(4) == tuple((router_app._to_json(d), n) for d, n in plan)
    monkeypatch.setattr(router_app, "encoded_delta_plan", lambda *a: (_ for _ in ()).throw(AssertionError("planned again")))
    assert gen.encoded_plan(4) == tuple((router_app._to_json(d), n) for d, n in plan)


def test_the_memo_keeps_the_most_recently_used():
    memo = router_app.Memo(2)
    memo.put("a", 1)
    memo.put("b", 2)
    assert memo.get("a") == 1
    memo.put("c", 3)
    assert (memo.get("a"), memo.get("b"), memo.get("c"), len(memo)) == (1, None, 3, 2)


def test_a_text_that_mentions_a_data_url_stays_on_the_event_loop(local_router, monkeypatch):
    hops = _hops(monkeypatch)
    response = _post(local_router, {"model": SONNET, "max_tokens": 64, "messages": [
        {"role": "user", "content": 'Explain "data:image/png;base64,AAAA" URLs'}]})
    assert response.status_code == 200
    assert hops == []


def test_odd_message_shapes_are_refused_as_before_not_crashed_on(local_router):
    for messages in (5, "hi", [5], [{"role": "user", "content": [{"type": "image_url", "image_url": 3}]}]):
        response = _post(local_router, {"model": SONNET, "max_tokens": 64, "messages": messages})
        assert response.status_code == 400, (messages, response.text)


def test_a_body_past_the_memo_size_is_checked_every_time_and_not_remembered(local_router, monkeypatch):
    router = local_router.app.state.router
    checks: list[int] = []
    real = router.check_payload
    monkeypatch.setattr(router, "check_payload", lambda payload: checks.append(1) or real(payload))
    long_text = "river " * (router_app.MEMO_BODY_BYTES // 5)
    payload = {"model": SONNET, "max_tokens": 64, "messages": [{"role": "user", "content": long_text}]}
    assert [_post(local_router, payload).status_code for _ in range(2)] == [200, 200]
    assert len(checks) == 2 and len(router.checked) == 0
