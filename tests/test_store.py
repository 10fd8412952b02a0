import json
import sqlite3
import threading

import pytest

from orq_core.store import Doc, Store, default_db_path, scrub
from orq_core.types import RunRecord
from orq_core.usage import Usage


class FakeClock:
    def __init__(self, now: float = 1_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "runs.db", clock=FakeClock())
    yield s
    s.close()


def record(page="chat", cost=0.01, ts=0.0, **extra) -> RunRecord:
    usage = Usage(100, 2000, 50, 300, 40, raw={"prompt_tokens": 2150, "completion_tokens": 300})
    return RunRecord(page=page, model="anthropic/claude-sonnet-4-5-20250929", status="ok", usage=usage,
                     cost_usd=cost, ttft_ms=120.5, latency_ms=900.25, answered_by="aws/anthropic/x",
                     http_status=200, request_id="req_1", ts=ts, **extra)


def test_run_round_trip_keeps_every_field(store):
    run_id = store.log_run(record(ts=1234.5))
    (back,) = store.runs()
    assert back.id == run_id == 1
    assert (back.page, back.model, back.status, back.answered_by) == (
        "chat", "anthropic/claude-sonnet-4-5-20250929", "ok", "aws/anthropic/x")
    assert back.usage == Usage(100, 2000, 50, 300, 40)
    assert back.usage.raw == {"prompt_tokens": 2150, "completion_tokens": 300}
    assert (back.cost_usd, back.ttft_ms, back.latency_ms, back.http_status, back.request_id, back.ts) == (
        0.01, 120.5, 900.25, 200, "req_1", 1234.5)


def test_usage_is_stored_in_separate_integer_columns(store, tmp_path):
    store.log_run(record())
    row = sqlite3.connect(tmp_path / "runs.db").execute(
        "SELECT input_tokens, cache_read_tokens, cache_write_tokens, output_tokens, reasoning_tokens, "
        "typeof(input_tokens), usage_json FROM runs").fetchone()
    assert row[:6] == (100, 2000, 50, 300, 40, "integer")
    assert json.loads(row[6])["prompt_tokens"] == 2150


def test_log_run_fills_ts_from_clock_and_id(store):
    rec = record()
    store.log_run(rec)
    assert rec.ts == 1000.0 and rec.id == 1


def test_runs_newest_first_with_limit_and_page_filter(store):
    for i, page in enumerate(["chat", "lab", "chat", "tools"]):
        store.log_run(record(page=page, ts=100.0 + i))
    assert [r.ts for r in store.runs()] == [103.0, 102.0, 101.0, 100.0]
    assert [r.ts for r in store.runs(limit=2)] == [103.0, 102.0]
    assert [r.ts for r in store.runs(page="chat")] == [102.0, 100.0]


def test_spend_since_sums_costs_from_ts(store):
    for ts, cost in [(10.0, 0.5), (20.0, 0.25), (30.0, 0.125)]:
        store.log_run(record(ts=ts, cost=cost))
    assert store.spend_since(20.0) == pytest.approx(0.375)
    assert store.spend_since(0) == pytest.approx(0.875)
    assert store.spend_since(31.0) == 0.0


def test_bearer_text_is_scrubbed_before_it_reaches_disk(store, tmp_path):
    store.log_run(record(error="401 for Authorization: Bearer sk-secret-123, retry"))
    store.save_doc("conversation", "c1", "Bearer abc", {"note": "header was Bearer sk-xyz"})
    assert store.runs()[0].error == "401 for Authorization: Bearer [redacted], retry"
    assert store.load_doc("conversation", "c1").data == {"note": "header was Bearer [redacted]"}
    raw = (tmp_path / "runs.db").read_bytes() + (tmp_path / "runs.db-wal").read_bytes()
    assert b"sk-secret-123" not in raw and b"sk-xyz" not in raw


def test_scrub_leaves_other_text_alone():
    assert scrub("no key here") == "no key here"
    assert scrub(None) is None


def test_wal_mode_and_schema_created_on_open(tmp_path):
    Store(tmp_path / "a.db").close()
    connection = sqlite3.connect(tmp_path / "a.db")
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "docs"} <= tables


def test_eight_threads_fifty_writes_each(store):
    def writer(n: int) -> None:
        for i in range(50):
            store.log_run(record(page=f"t{n}", ts=float(i + 1), cost=0.001))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    runs = store.runs(limit=1000)
    assert len(runs) == 400
    assert len({r.id for r in runs}) == 400
    assert store.spend_since(0) == pytest.approx(0.4)
    assert len(store.runs(limit=1000, page="t3")) == 50


def test_docs_round_trip_rename_delete(tmp_path):
    clock = FakeClock(10.0)
    store = Store(tmp_path / "d.db", clock=clock)
    store.save_doc("experiment", "e1", "First", {"rows": [1, 2, 3], "model": "x"})
    clock.now = 20.0
    store.save_doc("experiment", "e2", "Second", {"rows": []})
    store.save_doc("conversation", "c1", "Chat", {"messages": []})
    assert store.load_doc("experiment", "e1") == Doc("experiment", "e1", "First", {"rows": [1, 2, 3], "model": "x"},
                                                     10.0, 10.0)
    assert [d.id for d in store.list_docs("experiment")] == ["e2", "e1"]
    assert all(d.data is None for d in store.list_docs("experiment"))
    assert store.list_docs("experiment", with_data=True)[1].data["rows"] == [1, 2, 3]

    clock.now = 30.0
    store.save_doc("experiment", "e1", "First v2", {"rows": [4]})
    updated = store.load_doc("experiment", "e1")
    assert (updated.name, updated.data, updated.created, updated.updated) == ("First v2", {"rows": [4]}, 10.0, 30.0)
    assert [d.id for d in store.list_docs("experiment")] == ["e1", "e2"]

    clock.now = 40.0
    assert store.rename_doc("experiment", "e2", "Renamed") is True
    assert store.load_doc("experiment", "e2").name == "Renamed"
    assert store.delete_doc("experiment", "e2") is True
    assert store.delete_doc("experiment", "e2") is False
    assert store.load_doc("experiment", "e2") is None
    assert store.rename_doc("experiment", "missing", "x") is False
    assert [d.id for d in store.list_docs("conversation")] == ["c1"]
    store.close()


def test_data_survives_reopening(tmp_path):
    first = Store(tmp_path / "p.db")
    first.log_run(record(ts=5.0))
    first.save_doc("tool_trace", "t1", "Trace", {"steps": 2})
    first.close()
    second = Store(tmp_path / "p.db")
    assert second.runs()[0].ts == 5.0
    assert second.load_doc("tool_trace", "t1").data == {"steps": 2}
    second.close()


def test_default_path_from_env(monkeypatch, tmp_path):
    target = tmp_path / "nested" / "dir" / "env.db"
    monkeypatch.setenv("ORQ_PLAYGROUND_DB", str(target))
    assert default_db_path() == target
    store = Store()
    assert store.path == target and target.parent.is_dir()
    store.close()


def test_default_path_without_env_is_under_home(monkeypatch, tmp_path):
    monkeypatch.delenv("ORQ_PLAYGROUND_DB", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_db_path() == tmp_path / ".local/share/orq-playground/playground.db"


def test_default_instance_is_shared_per_path(monkeypatch, tmp_path):
    monkeypatch.setenv("ORQ_PLAYGROUND_DB", str(tmp_path / "one.db"))
    assert Store.default() is Store.default()
    one = Store.default()
    monkeypatch.setenv("ORQ_PLAYGROUND_DB", str(tmp_path / "two.db"))
    assert Store.default() is not one
    assert Store.default().path == tmp_path / "two.db"


def test_items_are_saved_one_at_a_time_replaced_by_key_and_ordered_by_key(store):
    store.save_doc("batch", "b1", "a batch", {"settings": 1})
    store.put_item("batch", "b1", "00000002:0", {"row": 2, "status": "ok"})
    store.put_item("batch", "b1", "00000001:0", {"row": 1, "status": "error"})
    store.put_item("batch", "b1", "00000001:0", {"row": 1, "status": "ok"})
    store.put_item("batch", "other", "00000001:0", {"row": 99})
    assert store.items("batch", "b1") == [("00000001:0", {"row": 1, "status": "ok"}),
                                          ("00000002:0", {"row": 2, "status": "ok"})]
    assert store.get_item("batch", "b1", "00000002:0") == {"row": 2, "status": "ok"}
    assert store.get_item("batch", "b1", "missing") is None


def test_deleting_a_document_deletes_its_items_only(store):
    store.save_doc("batch", "b1", "a batch", {})
    store.put_item("batch", "b1", "k", {"v": 1})
    store.put_item("batch", "b2", "k", {"v": 2})
    assert store.delete_doc("batch", "b1") is True
    assert store.items("batch", "b1") == []
    assert store.items("batch", "b2") == [("k", {"v": 2})]


def test_items_scrub_bearer_tokens(store):
    store.put_item("experiment", "e1", "0", {"error": "sent Authorization: Bearer sk-secret-123"})
    assert "sk-secret-123" not in json.dumps(store.items("experiment", "e1"))
