"""Fault injection, Orq fallbacks and retries, and the exact-match response cache."""

from __future__ import annotations

import json

import httpx
import pytest

from orq_core.emulator.faults import CUT, ERROR_MIDSTREAM, SLOW_FIRST_BYTE, STATUS, parse_fault, parse_faults

SONNET = "anthropic/claude-sonnet-4-5-20250929"
AWS_SONNET = "aws/anthropic/claude-sonnet-4-5-20250929"
GOOGLE_SONNET = "google/anthropic/claude-sonnet-4-5-20250929"


def chat(stream: bool = False, **extra) -> dict:
    payload = {"model": SONNET, "max_tokens": 200, "messages": [{"role": "user", "content": "Tell me about rivers."}],
               **extra}
    if stream:
        payload.update(stream=True, stream_options={"include_usage": True})
    return payload


def post(router, payload: dict, fault: str | None = None, key: str = "key-a") -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    if fault:
        headers["X-Emulator-Fault"] = fault
    return httpx.post(f"{router.base_url}/chat/completions", json=payload, headers=headers, timeout=30)


def stream_lines(router, payload: dict, fault: str | None = None) -> tuple[list[str], Exception | None]:
    """The data: lines received, and the transport error that ended the stream (if any)."""
    headers = {"Authorization": "Bearer key-a", **({"X-Emulator-Fault": fault} if fault else {})}
    lines: list[str] = []
    try:
        with httpx.stream("POST", f"{router.base_url}/chat/completions", json=payload, headers=headers,
                          timeout=30) as response:
            assert response.status_code == 200
            lines.extend(line[6:] for line in response.iter_lines() if line.startswith("data: "))
    except httpx.TransportError as error:
        return lines, error
    return lines, None


# --- grammar ------------------------------------------------------------------------------------

def test_grammar_reads_every_documented_form():
    assert parse_fault("429") == parse_fault("429").__class__(spec="429", kind=STATUS, status=429, retry_after=1.0)
    assert parse_fault("429:retry_after=2").retry_after == 2.0
    assert parse_fault("429:2").retry_after == 2.0
    assert parse_fault("529").status == 529 and parse_fault("529").retry_after is None
    assert parse_fault("429x3").times == 3
    assert (parse_fault("cut:after=5").kind, parse_fault("cut:after=5").after) == (CUT, 5)
    assert parse_fault("slow_first_byte:3").seconds == 3.0 and parse_fault("slow_first_byte:3").kind == SLOW_FIRST_BYTE
    midstream = parse_fault("error_midstream:after=4;status=500")
    assert (midstream.kind, midstream.after, midstream.status) == (ERROR_MIDSTREAM, 4, 500)
    limited = parse_fault(f"529x2@{SONNET}#demo")
    assert (limited.times, limited.model, limited.status) == (2, SONNET, 529)
    assert [f.kind for f in parse_faults("slow_first_byte:1, cut:after=2")] == [SLOW_FIRST_BYTE, CUT]


@pytest.mark.parametrize("spec", ["200", "teapot", "cut:before=2", "429:retry_after=soon", "slow_first_byte:-1"])
def test_grammar_refuses_what_it_does_not_know(spec):
    with pytest.raises(ValueError):
        parse_fault(spec)


def test_a_model_limited_fault_matches_only_that_route():
    fault = parse_fault(f"529@{SONNET}")
    assert fault.applies_to(SONNET) and not fault.applies_to(AWS_SONNET)
    bare = parse_fault("529@claude-sonnet-4-5-20250929")
    assert bare.applies_to(SONNET) and bare.applies_to(AWS_SONNET)


def test_a_malformed_fault_header_is_a_400(local_router):
    response = post(local_router, chat(), fault="418x")
    assert response.status_code == 400 and "X-Emulator-Fault" in response.json()["error"]["message"]


# --- status faults ------------------------------------------------------------------------------------

def test_429_carries_retry_after_and_the_documented_error_shape(local_router):
    response = post(local_router, chat(), fault="429:retry_after=2")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    assert response.headers["x-request-id"].startswith("req_")
    error = response.json()["error"]
    assert error["type"] == "rate_limit_error" and error["code"] == 429
    assert "429:retry_after=2" in error["message"]


@pytest.mark.parametrize("status,error_type", [(500, "api_error"), (503, "api_error"), (529, "overloaded_error")])
def test_server_side_statuses(local_router, status, error_type):
    response = post(local_router, chat(), fault=str(status))
    assert response.status_code == status
    assert response.json()["error"]["type"] == error_type


def test_settings_faults_hit_the_next_requests_then_stop(router_factory):
    router = router_factory(faults=["429x3"])
    assert [post(router, chat()).status_code for _ in range(4)] == [429, 429, 429, 200]


def test_settings_faults_can_be_queued_at_run_time(local_router):
    local_router.settings.faults.append("503")
    assert post(local_router, chat()).status_code == 503
    assert post(local_router, chat()).status_code == 200


def test_a_counted_header_fault_spans_the_clients_retries(local_router):
    statuses = [post(local_router, chat(), fault="429x2#t1").status_code for _ in range(3)]
    assert statuses == [429, 429, 200]
    assert post(local_router, chat(), fault="429x2#t2").status_code == 429  # a new tag, a new count
    assert post(local_router, chat(), fault="429x2#t1", key="key-b").status_code == 429  # counted per key


# --- transport faults ------------------------------------------------------------------------------------

def test_cut_stops_the_stream_after_n_chunks_without_done(local_router):
    lines, error = stream_lines(local_router, chat(stream=True), fault="cut:after=3")
    assert len(lines) == 3 and "[DONE]" not in lines
    assert isinstance(error, httpx.RemoteProtocolError)


def test_cut_on_a_plain_request_is_a_500(local_router):
    response = post(local_router, chat(), fault="cut:after=3")
    assert response.status_code == 500


def test_error_midstream_sends_an_error_line_then_ends(local_router):
    lines, error = stream_lines(local_router, chat(stream=True), fault="error_midstream:after=2")
    assert error is None
    assert len(lines) == 3 and "[DONE]" not in lines
    last = json.loads(lines[-1])
    assert last["error"]["type"] == "overloaded_error" and last["error"]["code"] == 529


def test_slow_first_byte_waits_its_own_scale_not_time_scale(router_factory, wait_recorder):
    router = router_factory(time_scale=0, fault_time_scale=0.5, sleep=wait_recorder)
    assert post(router, chat(), fault="slow_first_byte:3").status_code == 200
    assert wait_recorder.waits == [1.5]


def test_slow_first_byte_trips_a_client_read_timeout(router_factory):
    router = router_factory(time_scale=0)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{router.base_url}/chat/completions", json=chat(),
                   headers={"Authorization": "Bearer k", "X-Emulator-Fault": "slow_first_byte:2"},
                   timeout=httpx.Timeout(5.0, read=0.2))


# --- fallbacks and retries ---------------------------------------------------------------------------------

def test_a_fallback_answers_when_the_primary_is_overloaded(local_router):
    payload = chat(orq={"fallbacks": [{"model": AWS_SONNET}]})
    response = post(local_router, payload, fault=f"529@{SONNET}")
    assert response.status_code == 200
    assert response.json()["model"] == AWS_SONNET


def test_top_level_fallbacks_are_accepted_too(local_router):
    response = post(local_router, chat(fallbacks=[{"model": AWS_SONNET}]), fault=f"503@{SONNET}")
    assert response.json()["model"] == AWS_SONNET


def test_an_unknown_primary_falls_back(local_router):
    payload = chat(orq={"fallbacks": [{"model": GOOGLE_SONNET}]})
    payload["model"] = "anthropic/claude-nonexistent-1"
    response = post(local_router, payload)
    assert response.status_code == 200 and response.json()["model"] == GOOGLE_SONNET


def test_when_every_model_fails_the_last_error_is_returned(local_router):
    payload = chat(orq={"fallbacks": [{"model": AWS_SONNET}]})
    response = post(local_router, payload, fault=f"529@{SONNET},503@{AWS_SONNET}")
    assert response.status_code == 503


def test_a_400_does_not_fall_back(local_router):
    payload = chat(orq={"fallbacks": [{"model": AWS_SONNET}]})
    assert post(local_router, payload, fault=f"400@{SONNET}").status_code == 400


def test_a_streamed_fallback_names_the_answering_model_in_every_chunk(local_router):
    payload = chat(stream=True, orq={"fallbacks": [{"model": AWS_SONNET}]})
    lines, _ = stream_lines(local_router, payload, fault=f"529@{SONNET}")
    assert {json.loads(line)["model"] for line in lines[:-1]} == {AWS_SONNET}


def test_orq_retry_absorbs_the_injected_faults(router_factory, wait_recorder):
    router = router_factory(time_scale=1, faults=["429x2"], sleep=wait_recorder)
    response = post(router, chat(orq={"retry": {"count": 3, "on_codes": [429]}}))
    assert response.status_code == 200
    assert wait_recorder.waits[:2] == [1.0, 2.0]  # Orq's backoff: 1 s, then 2 s


def test_orq_retry_gives_up_after_count_and_leaves_the_rest_queued(router_factory):
    router = router_factory(faults=["429x5"])
    assert post(router, chat(retry={"count": 2})).status_code == 429
    assert router.app.state.router.faults.queued() == ["429x5"]
    assert [post(router, chat()).status_code for _ in range(3)] == [429, 429, 200]


def test_orq_retry_only_on_its_codes(router_factory):
    router = router_factory(faults=["529"])
    assert post(router, chat(orq={"retry": {"count": 2}})).status_code == 529  # on_codes defaults to [429]


# --- exact-match response cache -----------------------------------------------------------------------------

def test_a_repeated_request_is_served_from_the_response_cache(local_router):
    payload = chat(orq={"cache": {"type": "exact_match", "ttl": 60}})
    first, second = post(local_router, payload), post(local_router, payload)
    assert first.headers["x-orq-cache"] == "miss" and second.headers["x-orq-cache"] == "hit"
    assert second.json()["orq"] == {"cache_hit": True} and "orq" not in first.json()
    assert second.json()["choices"] == first.json()["choices"]
    assert second.json()["usage"] == first.json()["usage"]


def test_a_streamed_request_hits_the_entry_of_a_plain_one(local_router):
    post(local_router, chat(cache={"type": "exact_match"}))
    lines, _ = stream_lines(local_router, chat(stream=True, cache={"type": "exact_match"}))
    assert lines[-1] == "[DONE]"
    assert all(json.loads(line)["orq"] == {"cache_hit": True} for line in lines[:-1])


def test_response_cache_entries_expire_and_belong_to_one_key(router_factory, fake_clock):
    router = router_factory(clock=fake_clock)
    payload = chat(orq={"cache": {"type": "exact_match", "ttl": 60}})
    post(router, payload)
    assert post(router, payload, key="key-b").headers["x-orq-cache"] == "miss"
    fake_clock.advance(59)
    assert post(router, payload).headers["x-orq-cache"] == "hit"
    fake_clock.advance(2)
    assert post(router, payload).headers["x-orq-cache"] == "miss"


def test_a_response_cache_hit_skips_faults_and_waiting(router_factory, wait_recorder):
    router = router_factory(time_scale=1, sleep=wait_recorder)
    payload = chat(orq={"cache": {"type": "exact_match"}})
    post(router, payload)
    waits_before = len(wait_recorder.waits)
    assert post(router, payload, fault="529").status_code == 200
    assert len(wait_recorder.waits) == waits_before
