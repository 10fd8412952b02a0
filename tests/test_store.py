import json
import sqlite3
import threading

import pytest

from orq_core.errors import StoreConfigError, describe
from orq_core.store import Doc, Store, default_db_path, resolve_location, scrub
from orq_core.store.migrations import LATEST, MIGRATIONS
from orq_core.types import RunRecord
from orq_core.usage import Usage
from pg_support import BACKENDS, store_target


class FakeClock:
    def __init__(self, now: float = 1_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=BACKENDS)
def target(request, tmp_path) -> str:
    """Where a store lives: a fresh SQLite file, or a fresh schema on the throwaway PostgreSQL."""
    return store_target(request.param, request, tmp_path)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(target, clock):
    s = Store(target, clock=clock)
    yield s
    s.close()


@pytest.fixture
def sqlite_store(tmp_path):
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


def test_usage_is_stored_in_separate_integer_columns(sqlite_store, tmp_path):
    sqlite_store.log_run(record())
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


def test_runs_between_since_inclusive_and_until_exclusive(store):
    for i in range(5):
        store.log_run(record(ts=100.0 + i))
    assert [r.ts for r in store.runs(since=101.0, until=103.0)] == [102.0, 101.0]
    assert [r.ts for r in store.runs(since=103.5)] == [104.0]


def test_spend_since_sums_costs_from_ts(store):
    for ts, cost in [(10.0, 0.5), (20.0, 0.25), (30.0, 0.125)]:
        store.log_run(record(ts=ts, cost=cost))
    assert store.spend_since(20.0) == pytest.approx(0.375)
    assert store.spend_since(0) == pytest.approx(0.875)
    assert store.spend_since(31.0) == 0.0


def test_bearer_text_is_scrubbed_before_it_is_stored(store):
    store.log_run(record(error="401 for Authorization: Bearer sk-secret-123, retry"))
    store.save_doc("conversation", "c1", "Bearer abc", {"note": "header was Bearer sk-xyz"})
    assert store.runs()[0].error == "401 for Authorization: Bearer [redacted], retry"
    assert store.load_doc("conversation", "c1").data == {"note": "header was Bearer [redacted]"}
    assert store.load_doc("conversation", "c1").name == "Bearer [redacted]"


def test_bearer_text_never_reaches_the_sqlite_file(sqlite_store, tmp_path):
    sqlite_store.log_run(record(error="401 for Authorization: Bearer sk-secret-123, retry"))
    sqlite_store.save_doc("conversation", "c1", "Bearer abc", {"note": "header was Bearer sk-xyz"})
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
    assert {"runs", "docs", "doc_items", "schema_migrations"} <= tables


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


def test_docs_round_trip_rename_delete(store, clock):
    clock.now = 10.0
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


def test_documents_saved_in_the_same_instant_list_newest_saved_first(store):
    for doc_id in ("a", "b", "c"):
        store.save_doc("notebook", doc_id, doc_id, {})
    assert [d.id for d in store.list_docs("notebook")] == ["c", "b", "a"]


def test_data_survives_reopening(target):
    first = Store(target)
    first.log_run(record(ts=5.0))
    first.save_doc("tool_trace", "t1", "Trace", {"steps": 2})
    first.for_owner("ann@example.com").put_item("batch", "b1", "0001", {"row": 1})
    first.close()
    second = Store(target)
    assert second.runs()[0].ts == 5.0
    assert second.load_doc("tool_trace", "t1").data == {"steps": 2}
    assert second.for_owner("ann@example.com").items("batch", "b1") == [("0001", {"row": 1})]
    second.close()


def test_default_path_from_env(monkeypatch, tmp_path):
    target = tmp_path / "nested" / "dir" / "env.db"
    monkeypatch.setenv("ORQ_PLAYGROUND_DB", str(target))
    assert default_db_path() == target
    store = Store()
    assert store.path == target and target.parent.is_dir()
    assert store.backend == "sqlite"
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


def test_several_items_are_read_written_and_deleted_by_key_at_once(store):
    store.put_items("cache_ledger", "d", {f"k{n:03}": {"n": n} for n in range(400)})  # more than one statement
    store.put_item("cache_ledger", "other", "k001", {"n": "other"})
    store.put_items("cache_ledger", "d", {"k001": {"n": "replaced"}, "new": {"n": -1}})
    assert store.get_items("cache_ledger", "d", ["k001", "k399", "missing", "new"]) == {
        "k001": {"n": "replaced"}, "k399": {"n": 399}, "new": {"n": -1}}
    assert store.get_items("cache_ledger", "d", ["k002"], decode=str) == {"k002": '{"n": 2}'}
    assert len(store.get_items("cache_ledger", "d", [f"k{n:03}" for n in range(400)])) == 400
    assert store.delete_items("cache_ledger", "d", [f"k{n:03}" for n in range(1, 400)] + ["missing"]) == 399
    assert store.items("cache_ledger", "d") == [("k000", {"n": 0}), ("new", {"n": -1})]
    assert store.items("cache_ledger", "other") == [("k001", {"n": "other"})]
    store.put_items("cache_ledger", "d", {"bad": {"error": "Authorization: Bearer sk-secret-123"}})
    assert "sk-secret-123" not in json.dumps(store.get_items("cache_ledger", "d", ["bad"]))


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


# --- owners ----------------------------------------------------------------------------------


def test_each_owner_sees_only_their_own_runs_and_spend(store):
    ann, bob = store.for_owner("ann@example.com"), store.for_owner("bob@example.com")
    ann.log_run(record(ts=10.0, cost=0.5, page="chat"))
    ann.log_run(record(ts=11.0, cost=0.25, page="lab"))
    bob.log_run(record(ts=12.0, cost=2.0, page="chat"))
    assert [r.ts for r in ann.runs()] == [11.0, 10.0]
    assert [r.ts for r in bob.runs(page="chat")] == [12.0]
    assert ann.runs(page="chat", since=12.0) == []
    assert (ann.spend_since(0), bob.spend_since(0), store.spend_since(0)) == (0.75, 2.0, 0.0)


def test_another_owners_document_is_not_found_and_cannot_be_changed(store):
    ann, bob = store.for_owner("ann@example.com"), store.for_owner("bob@example.com")
    for kind in ("conversation", "experiment", "comparison", "tool_trace", "batch", "notebook", "cache_ledger"):
        ann.save_doc(kind, "d1", "Ann's", {"who": "ann"})
        assert bob.load_doc(kind, "d1") is None
        assert bob.list_docs(kind) == [] and store.list_docs(kind) == []
        assert bob.rename_doc(kind, "d1", "mine now") is False
        assert bob.delete_doc(kind, "d1") is False
        assert ann.load_doc(kind, "d1").name == "Ann's"


def test_the_same_id_saved_by_two_owners_is_two_documents(store):
    ann, bob = store.for_owner("ann@example.com"), store.for_owner("bob@example.com")
    ann.save_doc("conversation", "same", "Ann's", {"who": "ann"})
    bob.save_doc("conversation", "same", "Bob's", {"who": "bob"})
    assert ann.load_doc("conversation", "same").data == {"who": "ann"}
    assert bob.load_doc("conversation", "same").data == {"who": "bob"}
    assert bob.delete_doc("conversation", "same") is True
    assert ann.load_doc("conversation", "same").data == {"who": "ann"}


def test_items_belong_to_their_owner(store):
    ann, bob = store.for_owner("ann@example.com"), store.for_owner("bob@example.com")
    ann.put_item("batch", "b1", "0001", {"row": "ann"})
    bob.put_item("batch", "b1", "0001", {"row": "bob"})
    assert ann.items("batch", "b1") == [("0001", {"row": "ann"})]
    assert bob.get_item("batch", "b1", "0001") == {"row": "bob"}
    assert bob.delete_items("batch", "b1") == 1
    assert ann.get_item("batch", "b1", "0001") == {"row": "ann"}
    assert store.items("batch", "b1") == []


def test_a_view_shares_the_store_and_keeps_its_clock(store, clock):
    clock.now = 77.0
    ann = store.for_owner("ann@example.com")
    rec = record()
    ann.log_run(rec)
    assert rec.ts == 77.0
    assert ann.backend == store.backend and ann.owner == "ann@example.com" and store.owner == ""


# --- migrations and configuration ------------------------------------------------------------


def test_schema_is_versioned_and_migrating_twice_changes_nothing(target):
    from orq_core.store.migrations import migrate, schema_version

    store = Store(target)
    assert schema_version(store._backend) == LATEST == MIGRATIONS[-1].version
    assert migrate(store._backend, 0.0) == []
    store.close()


def test_a_database_from_before_owners_is_migrated_and_its_rows_become_the_single_users(tmp_path):
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, page TEXT NOT NULL, "
        "model TEXT NOT NULL, answered_by TEXT NOT NULL DEFAULT '', status TEXT NOT NULL, http_status INTEGER, "
        "input_tokens INTEGER NOT NULL DEFAULT 0, cache_read_tokens INTEGER NOT NULL DEFAULT 0, "
        "cache_write_tokens INTEGER NOT NULL DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0, "
        "reasoning_tokens INTEGER NOT NULL DEFAULT 0, usage_json TEXT, cost_usd REAL NOT NULL DEFAULT 0, "
        "ttft_ms REAL, latency_ms REAL, error TEXT, request_id TEXT);"
        "CREATE TABLE docs (kind TEXT NOT NULL, id TEXT NOT NULL, name TEXT NOT NULL, data TEXT NOT NULL, "
        "created REAL NOT NULL, updated REAL NOT NULL, PRIMARY KEY (kind, id));"
        "CREATE TABLE doc_items (kind TEXT NOT NULL, doc_id TEXT NOT NULL, key TEXT NOT NULL, data TEXT NOT NULL, "
        "updated REAL NOT NULL, PRIMARY KEY (kind, doc_id, key));"
        "INSERT INTO runs (ts, page, model, status, cost_usd) VALUES (5.0, 'chat', 'm', 'ok', 0.5);"
        "INSERT INTO docs VALUES ('conversation', 'c1', 'Old chat', '{\"messages\": []}', 1.0, 2.0);"
        "INSERT INTO doc_items VALUES ('batch', 'b1', '0001', '{\"row\": 1}', 3.0);")
    old.commit()
    old.close()
    store = Store(path)
    assert store.load_doc("conversation", "c1").name == "Old chat"
    assert store.items("batch", "b1") == [("0001", {"row": 1})]
    assert store.spend_since(0) == 0.5
    assert store.for_owner("ann@example.com").list_docs("conversation") == []
    store.close()


def test_a_database_from_a_newer_playground_is_refused_with_a_sentence(tmp_path):
    Store(tmp_path / "new.db").close()
    connection = sqlite3.connect(tmp_path / "new.db")
    connection.execute("INSERT INTO schema_migrations VALUES (99, 'future', 0)")
    connection.commit()
    with pytest.raises(StoreConfigError) as caught:
        Store(tmp_path / "new.db")
    assert describe(caught.value) == (
        f"The store at SQLite file {tmp_path / 'new.db'} was written by a newer playground (schema version 99; "
        f"this one knows up to {LATEST}). Upgrade this app, or point ORQ_PLAYGROUND_DB at another store.")


@pytest.mark.parametrize("value", ["mysql://u@h/db", "sqlite:///tmp/x.db", "postgresql:db", "postgresql+psycopg://h/db"])
def test_a_value_that_is_neither_a_path_nor_a_postgres_url_is_refused(value, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ORQ_PLAYGROUND_DB", value)
    with pytest.raises(StoreConfigError) as caught:
        Store.default()
    assert describe(caught.value) == (
        f"ORQ_PLAYGROUND_DB={value} is neither a file path nor a postgresql:// URL. Give a SQLite file path such "
        "as ~/.local/share/orq-playground/playground.db, or a URL such as "
        "postgresql://user:password@host:5432/playground.")
    assert list(tmp_path.iterdir()) == []  # no folder named "postgresql:" or "mysql:" appears


def test_a_refused_url_never_shows_its_password(monkeypatch):
    monkeypatch.setenv("ORQ_PLAYGROUND_DB", "mysql://ann:hunter2@db/x")
    with pytest.raises(StoreConfigError) as caught:
        resolve_location()
    assert "hunter2" not in describe(caught.value) and "ann:***@db" in describe(caught.value)


def test_a_folder_is_refused_with_the_file_to_name_instead(tmp_path):
    with pytest.raises(StoreConfigError) as caught:
        Store(tmp_path)
    assert describe(caught.value) == (f"ORQ_PLAYGROUND_DB={tmp_path} is a folder, not a file. Name the database "
                                      f"file inside it, for example {tmp_path / 'playground.db'}.")


def test_postgres_urls_are_recognised_and_kept_as_given():
    assert resolve_location("postgresql://u:p@h:5432/db") == "postgresql://u:p@h:5432/db"
    assert resolve_location("  postgres://h/db ") == "postgres://h/db"


def test_an_unreachable_postgres_server_is_a_sentence_without_the_password(postgres_server):
    from orq_core.errors import StoreUnavailable

    url = f"postgresql://ann:hunter2@127.0.0.1:{postgres_server.port}/no_such_database"
    with pytest.raises(StoreUnavailable) as caught:
        Store(url)
    text = describe(caught.value)
    assert text.startswith(f"Could not connect to PostgreSQL postgresql://ann:***@127.0.0.1:{postgres_server.port}"
                           "/no_such_database: ")
    assert "hunter2" not in text
    assert text.endswith("Check that the server runs and that the URL's host, port, database, user and password "
                         "are right.")


def test_two_instances_share_one_postgres_database(postgres_server):
    url = postgres_server.new_database_url()
    first, second = Store(url), Store(url)
    first.for_owner("ann@example.com").save_doc("conversation", "c1", "From instance 1", {})
    assert second.for_owner("ann@example.com").load_doc("conversation", "c1").name == "From instance 1"
    assert second.for_owner("bob@example.com").load_doc("conversation", "c1") is None
    first.close()
    second.close()


def test_instances_starting_at_once_apply_each_migration_once(target):
    barrier = threading.Barrier(4)
    stores, errors = [], []

    def start() -> None:
        barrier.wait(timeout=60)
        try:
            stores.append(Store(target))
        except Exception as error:  # noqa: BLE001 - the assertion below shows it
            errors.append(error)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = stores[0]._backend.query("SELECT version FROM schema_migrations ORDER BY version")
    assert [v for (v,) in rows] == [m.version for m in MIGRATIONS]
    for store in stores:
        store.close()


def test_a_sqlite_file_locked_by_another_instance_is_opened_once_the_lock_goes(tmp_path, monkeypatch):
    # Seen in CI: four instances opening one new file at once; the one switching to WAL while
    # another migrated got "database is locked" at once (SQLite calls no busy handler there).
    import orq_core.store.sqlite as sqlite_backend

    path = tmp_path / "store.db"
    other = sqlite3.connect(str(path), isolation_level=None)
    other.execute("CREATE TABLE held (x)")
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO held VALUES (1)")
    pauses = []

    def pause_then_release(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 2:
            other.execute("COMMIT")

    monkeypatch.setattr(sqlite_backend.time, "sleep", pause_then_release)
    store = Store(str(path))
    assert pauses == [0.005, 0.01]
    assert store._backend.query("PRAGMA journal_mode") == [("wal",)]
    assert store._backend.query("SELECT x FROM held") == [(1,)]
    store.close()
    other.close()


def test_on_postgres_one_sessions_open_transaction_does_not_hold_up_another(postgres_server):
    # Streamlit runs each browser session on its own thread: a slow History load or a migration
    # on one must not queue every other session's run-log write behind it.
    store = Store(postgres_server.new_database_url())
    inside, release = threading.Event(), threading.Event()

    def hold_a_transaction() -> None:
        with store._backend.transaction():
            store._backend.execute("INSERT INTO docs (owner, kind, id, name, data, created, updated) "
                                   "VALUES ('', 'note', 'held', 'Held', '{}', 0, 0)")
            inside.set()
            release.wait(timeout=60)

    holder = threading.Thread(target=hold_a_transaction)
    holder.start()
    assert inside.wait(timeout=60)
    answered = []
    reader = threading.Thread(target=lambda: answered.append(store.list_docs("note")))
    reader.start()
    reader.join(timeout=30)
    finished_while_held = not reader.is_alive()
    release.set()
    holder.join()
    reader.join()
    assert finished_while_held
    assert answered == [[]]  # the other transaction's row is not visible before it commits
    assert [d.id for d in store.list_docs("note")] == ["held"]
    store.close()


def test_on_postgres_connections_the_server_dropped_while_idle_are_replaced(postgres_server, monkeypatch):
    import time

    import psycopg

    import orq_core.store.postgres as postgres_backend

    url = postgres_server.new_database_url()
    store = Store(url)
    store.save_doc("note", "n1", "Before", {})
    with psycopg.connect(url, autocommit=True) as admin:  # what a server restart does to every client
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    later = time.monotonic() + postgres_backend.PostgresBackend._CHECK_AFTER_IDLE_S + 1
    monkeypatch.setattr(postgres_backend.time, "monotonic", lambda: later)
    assert store.load_doc("note", "n1").name == "Before"
    store.close()
