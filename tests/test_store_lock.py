"""Processes writing one SQLite file take turns through its lock file (engine.store.WriterQueue,
`<database>-writer.lock`): a waiting process sleeps in the kernel's flock and goes on when the
holder gives the lock up, a killed holder's lock is dropped, and the wait still ends at the
timeout. Ordering is checked with marker files and /proc/locks, never with timing."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from engine.store import Store, lock_file_path, migrate

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not Path("/proc/locks").exists(), reason="needs Linux's /proc/locks")

# A child process: one write transaction inserting `key`; `holding` is made inside it, and it
# commits once `release` exists (or never, when it is to be killed). `busy_timeout` 0: SQLite's
# busy handler, if it were reached, would fail at once instead of retrying.
CHILD = """
import sys, time
from pathlib import Path
from sqlalchemy import event, text
sys.path.insert(0, {root!r})
from engine.store import Store
url, key, holding, release, no_busy_wait = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] == "1"
store = Store(url)
if no_busy_wait:
    @event.listens_for(store.engine, "connect")
    def _no_busy_wait(dbapi_connection, _record):
        dbapi_connection.execute("PRAGMA busy_timeout=0")
with store.transaction() as conn:
    conn.execute(text("INSERT INTO setting (key, value) VALUES (:k, 'x')"), {{"k": key}})
    if holding != "-":
        Path(holding).touch()
        while not Path(release).exists():
            time.sleep(0.005)
print("committed", key, flush=True)
"""


@pytest.fixture
def db(tmp_path, monkeypatch):
    monkeypatch.delenv("BPM_SQLITE_WRITER_QUEUE", raising=False)
    url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    store = Store(url)
    migrate(store)
    yield url, store, tmp_path
    store.dispose()


def _child(url: str, key: str, holding: str = "-", release: str = "-", no_busy_wait: bool = False):
    return subprocess.Popen([sys.executable, "-c", CHILD.format(root=str(ROOT)), url, key, holding, release,
                             "1" if no_busy_wait else "0"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _until(condition, what: str, process: subprocess.Popen | None = None, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process exited before {what}: {process.communicate()[1]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.005)


def _blocked_on(path: str, pid: int) -> bool:
    """Whether process `pid` waits in the kernel for an flock on `path` (a `->` line of /proc/locks)."""
    if not os.path.exists(path):
        return False
    inode = os.stat(path).st_ino
    for line in Path("/proc/locks").read_text().splitlines():
        parts = line.split()
        if len(parts) > 6 and parts[1] == "->" and parts[2] == "FLOCK" and parts[5] == str(pid) \
                and parts[6].rsplit(":", 1)[-1] == str(inode):
            return True
    return False


def _keys(store: Store) -> list[str]:
    with store.reading() as conn:
        return list(conn.execute(text("SELECT key FROM setting ORDER BY rowid")).scalars())


def test_a_waiting_process_sleeps_on_the_lock_and_writes_as_soon_as_it_is_given_up(db):
    url, store, tmp = db
    holding, release = tmp / "holding", tmp / "release"
    first = _child(url, "first", str(holding), str(release))
    _until(holding.exists, "the first process holds the write lock", first)
    # the second never reaches SQLite's busy handler (it would fail at once): it waits on the lock file
    second = _child(url, "second", no_busy_wait=True)
    _until(lambda: _blocked_on(lock_file_path(str(tmp / "shared.sqlite3")), second.pid),
           "the second process waits in the kernel for the lock file", second)
    assert _keys(store) == []  # a reader takes no lock and is not kept waiting
    release.touch()
    assert first.wait(30) == 0, first.communicate()[1]
    assert second.wait(30) == 0, second.communicate()[1]
    assert _keys(store) == ["first", "second"]


def test_a_holder_killed_mid_transaction_gives_the_lock_up_and_the_next_writer_goes_on(db):
    url, store, tmp = db
    holding = tmp / "holding"
    killed = _child(url, "killed", str(holding), str(tmp / "never"))
    _until(holding.exists, "the process holds the write lock", killed)
    waiter = _child(url, "after")
    _until(lambda: _blocked_on(lock_file_path(str(tmp / "shared.sqlite3")), waiter.pid),
           "the other process waits for the lock file", waiter)
    killed.send_signal(signal.SIGKILL)
    killed.wait(30)
    assert waiter.wait(30) == 0, waiter.communicate()[1]
    assert _keys(store) == ["after"]  # the killed one's transaction was never committed
    with store.transaction() as conn:  # and this process's writers are not held up either
        conn.execute(text("INSERT INTO setting (key, value) VALUES ('last', 'x')"))
    assert _keys(store) == ["after", "last"]


def test_a_writer_that_waits_past_the_timeout_for_another_process_gets_the_timeout_error(db):
    url, store, tmp = db
    holding, release = tmp / "holding", tmp / "release"
    holder = _child(url, "held", str(holding), str(release))
    try:
        _until(holding.exists, "the other process holds the write lock", holder)
        queue = store.writers
        assert queue is not None
        queue.timeout = 0.2
        with pytest.raises(TimeoutError, match="write lock.*another process"):
            with store.transaction() as conn:
                conn.execute(text("INSERT INTO setting (key, value) VALUES ('late', 'x')"))
        assert queue.waiting() == 0 and queue._holder is None
    finally:
        release.touch()
    assert holder.wait(30) == 0, holder.communicate()[1]
    store.writers.timeout = 30.0
    with store.transaction() as conn:  # the lock is free again (the abandoned wait let it go)
        conn.execute(text("INSERT INTO setting (key, value) VALUES ('later', 'x')"))
    assert _keys(store) == ["held", "later"]


def test_the_lock_file_sits_beside_the_database_and_only_file_databases_have_one(db, monkeypatch):
    url, store, tmp = db
    assert store.writers.lock_path == str(tmp / "shared.sqlite3") + "-writer.lock"
    with store.transaction():
        pass
    assert (tmp / "shared.sqlite3-writer.lock").exists()
    assert Store("sqlite://").writers is None
    monkeypatch.setenv("BPM_SQLITE_WRITER_QUEUE", "0")  # off: neither the queue nor the lock file
    assert Store(f"sqlite:///{tmp / 'other.sqlite3'}").writers is None
