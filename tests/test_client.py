"""OrqClient against httpx.MockTransport: errors, retries and their waits, streaming, timing, run log."""

import json
import random
import threading
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from orq_core import errors
from orq_core.client import OrqClient, Timeouts, retry_after_seconds
from orq_core.cost import cost_of
from orq_core.errors import describe
from orq_core.types import Done, ErrorEvent, FinishEvent, TextDelta, ToolCallDone, UsageEvent

FIXTURES = Path(__file__).parent / "fixtures"
KEY = "sk-orq-SECRET-9f8e7d6c5b4a"
BASE = "https://router.test/v2/router"
MODEL = "anthropic/claude-sonnet-4-5-20250929"
USAGE = {"prompt_tokens": 1200, "completion_tokens": 9, "total_tokens": 1209,
         "prompt_tokens_details": {"cached_tokens": 1000, "cache_creation_tokens": 0}}


@pytest.fixture(autouse=True)
def _tmp_db(tmp_path, monkeypatch):
    monkeypatch.setenv("ORQ_PLAYGROUND_DB", str(tmp_path / "runs.db"))


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class FakeRunLog:
    def __init__(self):
        self.records = []

    def log_run(self, record):
        self.records.append(record)
        return len(self.records)


class TimedStream(httpx.SyncByteStream):
    """Body pieces, each arriving ``step`` seconds after the last; optionally breaking at the end."""

    def __init__(self, pieces, clock, step=0.1, error=None):
        self.pieces, self.clock, self.step, self.error = pieces, clock, step, error

    def __iter__(self):
        for piece in self.pieces:
            self.clock.now += self.step
            yield piece
        if self.error:
            raise self.error


def events_of(data: bytes) -> list[bytes]:
    """Split a recorded stream into its events, as a server would flush them."""
    return [part + b"\n\n" for part in data.split(b"\n\n") if part]


def completion_body(**extra):
    body = {"id": "chatcmpl-1", "object": "chat.completion", "model": MODEL,
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hi!"}}],
            "usage": USAGE}
    body.update(extra)
    return body


class Router:
    """A scripted router: each request takes the next response maker; requests are recorded."""

    def __init__(self, *responses, clock=None, latency=0.25):
        self.responses = list(responses)
        self.requests = []
        self.clock = clock
        self.latency = latency

    def __call__(self, request):
        self.requests.append(request)
        if self.clock:
            self.clock.now += self.latency
        make = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        return make(request) if callable(make) else make


def make_client(router, **options):
    options.setdefault("sleep", options.pop("sleeps").append if "sleeps" in options else (lambda s: None))
    return OrqClient(BASE, KEY, transport=httpx.MockTransport(router), **options)


def error_response(status, message="nope", headers=None):
    return httpx.Response(status, json={"error": {"message": message, "type": "x"}}, headers=headers or {})


def payload(**extra):
    return {"model": MODEL, "max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}], **extra}


# --- create ----------------------------------------------------------------------------------------

def test_create_sends_bearer_and_forces_no_stream_and_times_it():
    clock, run_log = FakeClock(), FakeRunLog()
    router = Router(httpx.Response(200, json=completion_body(), headers={"x-request-id": "req_42"}), clock=clock)
    client = make_client(router, clock=clock, run_log=run_log, page="chat")
    completion = client.create(payload(stream=True, stream_options={"include_usage": True}))
    [request] = router.requests
    assert request.url == BASE + "/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"] == "application/json"
    sent = json.loads(request.content)
    assert sent["stream"] is False and "stream_options" not in sent
    assert completion.text == "Hi!"
    assert completion.ttft_ms == completion.latency_ms == pytest.approx(250.0)
    assert completion.request_id == "req_42"
    assert completion.response_cache_hit is False
    [record] = run_log.records
    assert (record.page, record.model, record.status, record.http_status) == ("chat", MODEL, "ok", 200)
    assert record.request_id == "req_42" and record.answered_by == MODEL
    assert record.cost_usd == float(cost_of(completion.usage, MODEL).total)
    # 200 uncached * $3 + 1000 read * $0.30 + 9 out * $15, per million
    assert Decimal(str(record.cost_usd)) == Decimal("0.000600") + Decimal("0.000300") + Decimal("0.000135")


@pytest.mark.parametrize("header, body", [({"x-orq-cache": "HIT"}, {}), ({}, {"orq": {"cache_hit": True}})])
def test_response_cache_hit_from_header_or_body(header, body):
    run_log = FakeRunLog()
    client = make_client(Router(httpx.Response(200, json=completion_body(**body), headers=header)), run_log=run_log)
    completion = client.create(payload())
    assert completion.response_cache_hit is True
    assert completion.usage.cache_read_tokens == 1000  # as the router reported it
    assert run_log.records[0].cost_usd == 0.0  # but a response-cache hit bills nothing


def test_unknown_model_costs_zero_and_does_not_crash():
    run_log = FakeRunLog()
    body = completion_body(model="someone/else-1")
    client = make_client(Router(httpx.Response(200, json=body)), run_log=run_log)
    completion = client.create(payload(model="mystery/model-x"))
    assert completion.model == "someone/else-1"
    assert run_log.records[0].cost_usd == 0.0


def test_one_hour_cache_breakpoint_prices_writes_at_the_1h_rate():
    run_log = FakeRunLog()
    usage = {"prompt_tokens": 2000, "completion_tokens": 0,
             "prompt_tokens_details": {"cached_tokens": 0, "cache_creation_tokens": 2000}}
    client = make_client(Router(httpx.Response(200, json=completion_body(usage=usage))), run_log=run_log)
    messages = [{"role": "system", "content": [{"type": "text", "text": "long",
                                                "cache_control": {"type": "ephemeral", "ttl": "1h"}}]},
                {"role": "user", "content": "Hi"}]
    client.create({"model": MODEL, "max_tokens": 10, "messages": messages})
    assert run_log.records[0].cost_usd == pytest.approx(2000 * 6.0 / 1e6)  # 2x the $3 input price


# --- errors ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("status, cls", [
    (400, errors.BadRequestError), (401, errors.AuthenticationError), (403, errors.PermissionDeniedError),
    (404, errors.NotFoundError), (408, errors.RequestTimeoutError), (409, errors.ConflictError),
    (413, errors.PayloadTooLargeError), (422, errors.UnprocessableEntityError), (429, errors.RateLimitError),
    (500, errors.InternalServerError), (502, errors.InternalServerError), (503, errors.InternalServerError),
    (504, errors.InternalServerError), (529, errors.OverloadedError),
])
@pytest.mark.parametrize("id_header", ["x-request-id", "request-id", "x-orq-request-id"])
def test_every_error_status_maps_to_its_class(status, cls, id_header):
    run_log = FakeRunLog()
    router = Router(error_response(status, f"server says {status}", {id_header: "req_err"}))
    client = make_client(router, max_retries=0, run_log=run_log)
    with pytest.raises(cls) as caught:
        client.create(payload())
    exc = caught.value
    assert type(exc) is cls
    assert (exc.status, exc.request_id, exc.message) == (status, "req_err", f"server says {status}")
    assert str(exc) == f"server says {status} (HTTP {status}, request req_err)"
    assert KEY not in str(exc) and KEY not in repr(exc) and KEY not in describe(exc)
    [record] = run_log.records
    assert (record.status, record.http_status, record.request_id) == ("error", status, "req_err")
    assert record.error == describe(exc)


def test_non_json_error_body_keeps_the_text():
    client = make_client(Router(httpx.Response(502, text="Bad gateway from nginx")), max_retries=0)
    with pytest.raises(errors.InternalServerError) as caught:
        client.create(payload())
    assert caught.value.message == "Bad gateway from nginx"


def test_client_errors_are_not_retried():
    sleeps = []
    router = Router(error_response(400))
    with pytest.raises(errors.BadRequestError):
        make_client(router, sleeps=sleeps).create(payload())
    assert len(router.requests) == 1 and sleeps == []


def test_error_inside_a_200_body_raises():
    body = {"error": {"message": "overloaded", "type": "overloaded_error"}}
    with pytest.raises(errors.OverloadedError):
        make_client(Router(httpx.Response(200, json=body)), max_retries=0).create(payload())


# --- retries ---------------------------------------------------------------------------------------

def test_retry_after_seconds_is_the_exact_wait():
    sleeps = []
    router = Router(error_response(429, headers={"retry-after": "2"}), error_response(529),
                    httpx.Response(200, json=completion_body()))
    client = make_client(router, sleeps=sleeps, rng=random.Random(1))
    assert client.create(payload()).text == "Hi!"
    jitter = random.Random(1).random()
    assert sleeps == [2.0, pytest.approx(0.5 * 2 * jitter)]
    assert len(router.requests) == 3


def test_retry_after_http_date_and_ms_and_cap():
    date = "Sun, 24 Nov 2024 12:00:00 GMT"
    assert retry_after_seconds(httpx.Headers({"retry-after": "Sun, 24 Nov 2024 12:00:07 GMT", "date": date})) == 7.0
    assert retry_after_seconds(httpx.Headers({"retry-after-ms": "1500", "retry-after": "9"})) == 1.5
    assert retry_after_seconds(httpx.Headers({"retry-after": "soon"})) is None
    assert retry_after_seconds(httpx.Headers({})) is None
    sleeps = []
    router = Router(error_response(503, headers={"retry-after": "Sun, 24 Nov 2024 12:00:03 GMT", "date": date}),
                    error_response(429, headers={"retry-after": "3600"}), httpx.Response(200, json=completion_body()))
    make_client(router, sleeps=sleeps).create(payload())
    assert sleeps == [3.0, 60.0]


def test_backoff_grows_exponentially_with_full_jitter_up_to_the_cap():
    sleeps = []
    router = Router(error_response(503))
    client = make_client(router, sleeps=sleeps, max_retries=6, backoff_base=1.0, backoff_cap=5.0,
                         rng=random.Random(42))
    with pytest.raises(errors.InternalServerError) as caught:
        client.create(payload())
    assert caught.value.status == 503
    rng = random.Random(42)
    assert sleeps == [pytest.approx(ceiling * rng.random()) for ceiling in (1, 2, 4, 5, 5, 5)]
    assert len(router.requests) == 7


def test_connection_error_is_retried_then_mapped():
    sleeps = []

    def refuse(request):
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    router = Router(refuse)
    with pytest.raises(errors.ConnectionFailed) as caught:
        make_client(router, sleeps=sleeps, max_retries=2).create(payload())
    assert "could not connect to https://router.test/v2/router" in str(caught.value)
    assert "Connection refused" in str(caught.value)
    assert len(router.requests) == 3 and len(sleeps) == 2
    assert KEY not in str(caught.value) and KEY not in repr(caught.value)


def test_read_timeout_says_which_timeout_and_how_long():
    def slow(request):
        raise httpx.ReadTimeout("timed out", request=request)

    client = make_client(Router(slow), max_retries=0, timeouts=Timeouts(connect=2.0, read=7.5))
    with pytest.raises(errors.TimeoutFailed) as caught:
        client.create(payload())
    assert caught.value.message == "the router sent nothing for 7.5 s (read timeout)"

    def no_connect(request):
        raise httpx.ConnectTimeout("timed out", request=request)

    with pytest.raises(errors.TimeoutFailed) as caught:
        make_client(Router(no_connect), max_retries=0, timeouts=Timeouts(connect=2.0)).create(payload())
    assert caught.value.message == "connecting took longer than the connect timeout (2 s)"


def test_bad_base_url_is_not_retried():
    sleeps = []
    client = OrqClient("router.test/v2", KEY, sleep=sleeps.append)
    with pytest.raises(errors.ConnectionFailed) as caught:
        client.create(payload())
    assert "not a valid http(s) URL" in str(caught.value)
    assert sleeps == []


def test_payload_that_is_not_json_is_refused_before_sending():
    router = Router(httpx.Response(200, json=completion_body()))
    with pytest.raises(errors.RequestValidationError) as caught:
        make_client(router).create(payload(temperature=float("nan")))
    assert caught.value.field == "payload" and router.requests == []


def test_pool_and_timeouts_reach_httpx():
    client = OrqClient(BASE, KEY, timeouts=Timeouts(connect=1.0, read=2.0, write=3.0, pool=4.0))
    assert client._http.timeout == httpx.Timeout(connect=1.0, read=2.0, write=3.0, pool=4.0)


# --- streaming -------------------------------------------------------------------------------------

def stream_response(name, clock, **kwargs):
    pieces = events_of((FIXTURES / name).read_bytes())
    return lambda request: httpx.Response(200, stream=TimedStream(pieces, clock, **kwargs),
                                          headers={"content-type": "text/event-stream", "x-request-id": "req_s"})


def test_stream_yields_typed_events_then_done_with_ttft_and_latency():
    clock, run_log = FakeClock(), FakeRunLog()
    router = Router(stream_response("text_stream.sse", clock), clock=clock, latency=0.3)
    client = make_client(router, clock=clock, run_log=run_log, page="chat")
    events = list(client.stream(payload(stream_options={"include_usage": True})))
    assert json.loads(router.requests[0].content)["stream"] is True
    assert router.requests[0].headers["accept"] == "text/event-stream"
    assert isinstance(events[-1], Done)
    assert [type(e) for e in events[-3:]] == [FinishEvent, UsageEvent, Done]
    completion = events[-1].completion
    assert completion.text == "Héllo, wörld — 日本語 🎉!"
    # headers after 0.3 s; pieces every 0.1 s: role chunk, keep-alive, then the first token
    assert completion.ttft_ms == pytest.approx(600.0)
    assert completion.latency_ms == pytest.approx(300.0 + 100.0 * 12)  # 12 pieces until [DONE]
    assert completion.partial is False and completion.request_id == "req_s"
    [record] = run_log.records
    assert (record.status, record.ttft_ms, record.page) == ("ok", completion.ttft_ms, "chat")
    assert record.usage.cache_read_tokens == 1000 and record.cost_usd > 0


def test_stream_tool_calls_come_whole():
    clock = FakeClock()
    client = make_client(Router(stream_response("tool_calls_parallel.sse", clock)))
    events = list(client.stream(payload()))
    assert [e.call.name for e in events if isinstance(e, ToolCallDone)] == ["get_weather", "get_time"]
    assert len(events[-1].completion.tool_calls) == 2


def test_no_retry_after_tokens_were_streamed():
    clock, run_log, sleeps = FakeClock(), FakeRunLog(), []
    pieces = events_of((FIXTURES / "text_stream.sse").read_bytes())[:4]  # role, keep-alive, 2 tokens
    broken = httpx.ReadError("connection reset by peer")
    router = Router(lambda request: httpx.Response(200, stream=TimedStream(pieces, clock, error=broken)))
    client = make_client(router, clock=clock, run_log=run_log, sleeps=sleeps)
    events = list(client.stream(payload()))
    assert [type(e) for e in events] == [TextDelta, TextDelta, ErrorEvent, Done]
    assert events[2].message == "the connection to the router broke: connection reset by peer"
    completion = events[-1].completion
    assert completion.partial is True and completion.text == "Héllo, wörld"
    assert completion.error == events[2].message
    assert len(router.requests) == 1 and sleeps == []
    assert run_log.records[0].status == "partial"
    assert run_log.records[0].error == events[2].message


def test_midstream_error_after_tokens_is_an_error_event():
    clock = FakeClock()
    client = make_client(Router(stream_response("midstream_error.sse", clock)))
    events = list(client.stream(payload()))
    assert [type(e) for e in events] == [TextDelta, TextDelta, ErrorEvent, Done]
    assert (events[2].message, events[2].status) == ("Overloaded", 529)
    assert events[-1].completion.partial is True and events[-1].completion.error == "Overloaded"


def test_stream_cut_without_finish_is_partial():
    clock = FakeClock()
    pieces = events_of((FIXTURES / "text_stream.sse").read_bytes())[:5]
    client = make_client(Router(lambda r: httpx.Response(200, stream=TimedStream(pieces, clock))))
    events = list(client.stream(payload()))
    assert isinstance(events[-2], ErrorEvent)
    assert events[-2].message == "the stream ended before the answer finished"
    assert events[-1].completion.partial is True


def test_missing_done_after_finish_and_usage_is_complete():
    clock = FakeClock()
    client = make_client(Router(stream_response("text_missing_done.sse", clock)))
    events = list(client.stream(payload()))
    assert not any(isinstance(e, ErrorEvent) for e in events)
    assert events[-1].completion.partial is False
    assert events[-1].completion.usage.output_tokens == 9


def test_errors_before_any_token_are_retried_then_raised():
    clock, sleeps = FakeClock(), []
    in_band = b'data: {"error": {"message": "Overloaded", "type": "overloaded_error"}}\n\n'
    router = Router(error_response(503), lambda r: httpx.Response(200, content=in_band),
                    stream_response("text_stream.sse", clock))
    client = make_client(router, sleeps=sleeps, rng=random.Random(3))
    events = list(client.stream(payload()))
    assert events[-1].completion.text == "Héllo, wörld — 日本語 🎉!"
    assert len(router.requests) == 3 and len(sleeps) == 2

    run_log = FakeRunLog()
    client = make_client(Router(error_response(401, "bad key", {"x-request-id": "r1"})), run_log=run_log)
    with pytest.raises(errors.AuthenticationError) as caught:
        list(client.stream(payload()))
    assert caught.value.request_id == "r1"
    assert run_log.records[0].status == "error" and run_log.records[0].http_status == 401


def test_read_timeout_before_first_token_raises_timeout():
    clock = FakeClock()
    router = Router(lambda r: httpx.Response(200, stream=TimedStream([b": hi\n\n"], clock,
                                                                     error=httpx.ReadTimeout("slow"))))
    with pytest.raises(errors.TimeoutFailed) as caught:
        list(make_client(router, max_retries=1).stream(payload()))
    assert "read timeout" in caught.value.message
    assert len(router.requests) == 2


def test_cancel_stops_with_what_arrived():
    clock, run_log = FakeClock(), FakeRunLog()
    cancel = threading.Event()
    client = make_client(Router(stream_response("text_stream.sse", clock)), run_log=run_log)
    events = []
    for event in client.stream(payload(), cancel=cancel):
        events.append(event)
        if isinstance(event, TextDelta) and event.text == ", wörld":
            cancel.set()
    assert [type(e) for e in events] == [TextDelta, TextDelta, Done]
    assert events[-1].completion.partial is True and events[-1].completion.text == "Héllo, wörld"
    assert run_log.records[0].status == "cancelled"


def test_cancel_before_sending_sends_nothing():
    cancel = threading.Event()
    cancel.set()
    router = Router(httpx.Response(500))
    events = list(make_client(router).stream(payload(), cancel=cancel))
    assert [type(e) for e in events] == [Done] and events[0].completion.partial is True
    assert router.requests == []


def test_abandoned_stream_is_logged_as_cancelled():
    clock, run_log = FakeClock(), FakeRunLog()
    stream = make_client(Router(stream_response("text_stream.sse", clock)), run_log=run_log).stream(payload())
    assert isinstance(next(stream), TextDelta)
    stream.close()
    assert run_log.records[0].status == "cancelled"
    assert run_log.records[0].ttft_ms is not None


# --- the key stays hidden ----------------------------------------------------------------------------

def test_key_never_shows():
    run_log = FakeRunLog()
    client = make_client(Router(error_response(401, "invalid key")), run_log=run_log)
    assert KEY not in repr(client) and KEY not in str(client)
    assert KEY not in repr(client._http.headers)
    with pytest.raises(errors.AuthenticationError) as caught:
        client.create(payload())
    exc = caught.value
    for text in (str(exc), repr(exc), describe(exc), repr(exc.body), repr(run_log.records)):
        assert KEY not in text
    with pytest.raises(ValueError) as caught:
        OrqClient(BASE, "sk-\u2026broken")
    assert "\u2026" not in str(caught.value)


def test_a_failing_run_log_does_not_break_the_call():
    class Broken:
        def log_run(self, record):
            raise OSError("disk full")

    client = make_client(Router(httpx.Response(200, json=completion_body())), run_log=Broken())
    assert client.create(payload()).text == "Hi!"


# --- ping and models -------------------------------------------------------------------------------------

def test_ping_and_list_models():
    clock = FakeClock()
    models = {"object": "list", "data": [{"id": MODEL}]}
    router = Router(httpx.Response(200, json=models), clock=clock, latency=0.042)
    client = make_client(router, clock=clock)
    assert client.ping() == pytest.approx(42.0)
    assert router.requests[0].method == "GET" and router.requests[0].url == BASE + "/models"
    assert client.list_models() == [{"id": MODEL}]
    with pytest.raises(errors.AuthenticationError):
        make_client(Router(error_response(401))).ping()
