"""SQLite's writers take turns in arrival order (engine.store.WriterQueue): deterministic checks
with events, not timing — each waiter is started only once the one before it is seen queued."""
from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import text

from engine.store import NestedWrite, Store, WriterQueue, migrate


@pytest.fixture
def file_store(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'queue.sqlite3'}")
    migrate(store)
    yield store
    store.dispose()


def _until(condition, what: str, limit: float = 10.0) -> None:
    """Wait for `condition()` (another thread's progress), failing after `limit` seconds."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.001)


def test_writers_commit_in_the_order_they_asked(file_store):
    queue = file_store.writers
    assert queue is not None
    order: list[int] = []
    holding, release = threading.Event(), threading.Event()

    def holder():
        with file_store.transaction() as conn:
            conn.execute(text("INSERT INTO setting (key, value) VALUES ('holder', '0')"))
            holding.set()
            release.wait(10)

    def writer(n: int):
        with file_store.write() as session:  # the ORM path queues too
            order.append(n)
            session.execute(text("INSERT INTO setting (key, value) VALUES (:k, :v)"), {"k": f"w{n}", "v": str(n)})

    first = threading.Thread(target=holder)
    first.start()
    assert holding.wait(10)
    threads = []
    for n in range(8):  # each one asks after the one before it is in the queue
        t = threading.Thread(target=writer, args=(n,))
        t.start()
        threads.append(t)
        _until(lambda: queue.waiting() == n + 1, f"writer {n} is queued")
    release.set()
    for t in [first, *threads]:
        t.join(10)
    assert order == list(range(8))
    with file_store.read() as session:
        assert session.execute(text("SELECT count(*) FROM setting WHERE key LIKE 'w%'")).scalar() == 8
    assert queue.waiting() == 0 and queue._holder is None


def test_a_nested_write_on_the_same_thread_is_refused_not_left_waiting_for_itself(file_store):
    with file_store.write() as session:
        session.execute(text("INSERT INTO setting (key, value) VALUES ('outer', '1')"))
        with pytest.raises(NestedWrite, match="inside another one of the same thread"):
            with file_store.transaction():
                pass
        with pytest.raises(NestedWrite):
            with file_store.write():
                pass
    with file_store.read() as session:  # the outer transaction went on and committed
        assert session.execute(text("SELECT value FROM setting WHERE key = 'outer'")).scalar() == "1"
    with file_store.transaction() as conn:  # and the turn was given back
        conn.execute(text("UPDATE setting SET value = '2' WHERE key = 'outer'"))


def test_a_failed_transaction_gives_the_turn_to_the_next_writer(file_store):
    with pytest.raises(RuntimeError, match="boom"):
        with file_store.transaction() as conn:
            conn.execute(text("INSERT INTO setting (key, value) VALUES ('gone', '1')"))
            raise RuntimeError("boom")
    done = threading.Event()

    def other():
        with file_store.transaction() as conn:
            conn.execute(text("INSERT INTO setting (key, value) VALUES ('kept', '1')"))
        done.set()

    t = threading.Thread(target=other)
    t.start()
    t.join(10)
    assert done.is_set()
    with file_store.read() as session:
        assert session.execute(text("SELECT key FROM setting ORDER BY key")).scalars().all() == ["kept"]


def test_a_writer_that_waits_too_long_leaves_the_queue():
    queue = WriterQueue(timeout=0.05)
    holding, release = threading.Event(), threading.Event()

    def holder():
        with queue.turn():
            holding.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    assert holding.wait(10)
    with pytest.raises(TimeoutError, match="write lock"):
        with queue.turn():
            pass
    assert queue.waiting() == 0
    release.set()
    t.join(10)
    with queue.turn():  # free again
        assert queue._holder == threading.get_ident()
    assert queue._holder is None


def test_stores_on_one_file_share_a_queue_and_other_databases_have_none(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'one.sqlite3'}"
    a, b = Store(url), Store(url)
    assert a.writers is b.writers is not None
    assert Store(f"sqlite:///{tmp_path / 'two.sqlite3'}").writers is not a.writers
    assert Store("sqlite://").writers is None  # in memory: one database per connection
    assert Store("postgresql://nobody@127.0.0.1:1/none").writers is None  # (no connection is opened)
    monkeypatch.setenv("BPM_SQLITE_WRITER_QUEUE", "0")
    assert Store(url).writers is None
