"""`bpm serve` and what operators read: the supervised timer worker process, --processes N
(gunicorn, PostgreSQL only), /healthz and /metrics, and PostgreSQL workers woken by NOTIFY."""
from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from engine import clock, timers, versions
from engine.runtime import Runtime
from engine.store import Store
from web import create_app

ROOT = Path(__file__).resolve().parent.parent
WAITING = ROOT / "tests" / "data" / "runtime" / "waiting.bpmn"  # a PT4H timer after the start


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m bpm serve ...` as a child process, its stderr read line by line."""

    def __init__(self, url: str, *args: str):
        self.port = _free_port()
        env = {**os.environ, "BPM_DATABASE_URL": url, "BPM_SECRET_KEY": "test-key", "PYTHONPATH": str(ROOT)}
        env.pop("BPM_NOW", None)
        self.process = subprocess.Popen([sys.executable, "-m", "bpm", "serve", "--port", str(self.port), *args],
                                        cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.put(line.rstrip("\n"))

    def expect(self, pattern: str, within: float = 60.0) -> re.Match:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            if found := re.search(pattern, line):
                return found
        raise AssertionError(f"no line matching {pattern!r}; saw {self.seen}")

    def get(self, path: str, within: float = 60.0) -> tuple[int, str]:
        deadline = time.monotonic() + within
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as answer:
                    return answer.status, answer.read().decode()
            except urllib.error.HTTPError as exc:
                return exc.code, exc.read().decode()
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                time.sleep(0.2)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not alive
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False


# --- the worker process -------------------------------------------------------------------------

def test_serve_runs_the_worker_as_a_process_restarts_it_and_stops_it(sqlite_store):
    server = Server(sqlite_store.url)
    try:
        first = int(server.expect(r"timer worker 1 started \(pid (\d+)\)").group(1))
        assert server.get("/healthz")[0] == 200
        assert first != server.process.pid and _alive(first)
        assert "bpm worker" in Path(f"/proc/{first}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        os.kill(first, signal.SIGKILL)
        server.expect(rf"timer worker 1 \(pid {first}\) exited with code -9; restarting it")
        second = int(server.expect(r"timer worker 1 started \(pid (\d+)\)").group(1))
        assert second != first and _alive(second)
        assert server.get("/healthz")[0] == 200  # the web went on serving meanwhile
    finally:
        code = server.stop()
    assert code == 0
    assert not _alive(second)  # stopped with the server


def test_several_processes_are_refused_on_sqlite(sqlite_store):
    server = Server(sqlite_store.url, "--processes", "2")
    assert server.process.wait(timeout=60) == 1
    server.expect(r"^bpm serve: --processes 2 needs PostgreSQL .*SQLite has one writer at a time")
    server.process.stderr.close()
    assert not any("serving on" in line or "timer worker" in line for line in server.seen + list(server.lines.queue))


def test_worker_count_and_processes_must_make_sense(sqlite_store):
    for args, sentence in ((("--processes", "0"), "--processes must be 1 or more, not 0"),
                           (("--workers", "-1"), "--workers must be 0 or more, not -1")):
        server = Server(sqlite_store.url, *args)
        assert server.process.wait(timeout=60) == 1
        assert server.expect(re.escape(sentence))


# --- /healthz and /metrics ------------------------------------------------------------------------

@pytest.fixture
def client(sqlite_store):
    app = create_app(Runtime(sqlite_store), {"SECRET_KEY": "k", "TESTING": True, "BPM_METRICS_TOKEN": "s3cret"})
    return app.test_client()


def test_healthz_says_ok_or_what_is_wrong(client, sqlite_store):
    answer = client.get("/healthz")
    assert answer.status_code == 200
    assert answer.get_json()["status"] == "ok" and answer.get_json()["database"] == "ok"
    with sqlite_store.transaction() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    answer = client.get("/healthz")
    assert answer.status_code == 503
    assert answer.get_json()["status"] == "failing"
    assert answer.get_json()["schema"].startswith("the database is at migration 0001, this code needs ")


def test_healthz_when_the_database_is_gone(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'missing' / 'no.db'}")  # a folder that does not exist
    app = create_app(Runtime(store), {"SECRET_KEY": "k", "TESTING": True})
    answer = app.test_client().get("/healthz")
    assert answer.status_code == 503
    assert answer.get_json()["database"].startswith("the database does not answer")


def test_metrics_count_requests_and_commands_and_read_the_queue(client, sqlite_store):
    versions.deploy(sqlite_store, [WAITING], actor="design.yang")
    runtime = Runtime(sqlite_store)
    runtime.start("waiting", "fin.chu", {"order_no": "SO-77"}, at=clock.now() - timedelta(hours=5))
    client.get("/healthz")
    body = client.get("/metrics").get_data(as_text=True)
    assert re.search(r'^bpm_http_requests_total\{endpoint="ops.healthz",method="GET",status="200"\} [1-9]', body, re.M)
    assert re.search(r'^bpm_command_seconds_count\{command="start",outcome="ok"\} [1-9]', body, re.M)
    assert re.search(r"^bpm_timers_due 1\.0$", body, re.M)  # due an hour ago, no worker ran
    lateness = float(re.search(r"^bpm_timer_lateness_seconds (\S+)$", body, re.M).group(1))
    assert lateness >= 3500
    assert re.search(r"^bpm_incidents_open 0\.0$", body, re.M)
    assert "fin.chu" not in body and "SO-77" not in body and '"waiting"' not in body  # counts, not data
    timers.run_once(runtime)
    body = client.get("/metrics").get_data(as_text=True)
    assert re.search(r"^bpm_timers_due 0\.0$", body, re.M)
    assert re.search(r'^bpm_command_seconds_count\{command="timer",outcome="ok"\} [1-9]', body, re.M)


def test_metrics_only_for_this_machine_or_the_token(client):
    assert client.get("/metrics").status_code == 200  # the test client comes from 127.0.0.1
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 404
    # a reverse proxy on this machine forwards from 127.0.0.1: what it forwards is not local
    assert client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 404
    assert client.get("/metrics", headers={"Forwarded": "for=203.0.113.9"}).status_code == 404
    far = {"REMOTE_ADDR": "10.1.2.3"}
    assert client.get("/metrics", environ_base=far, headers={"Authorization": "Bearer wrong"}).status_code == 404
    assert client.get("/metrics", environ_base=far, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    # anyone may ask whether the server is healthy: the answer holds no data
    assert client.get("/healthz", environ_base=far).status_code == 200


# --- PostgreSQL: LISTEN/NOTIFY and several processes ---------------------------------------------

@pytest.fixture
def pg_store(postgres_database):
    from tests.conftest import _empty, _seed_credit_list
    from engine import access

    store = Store(postgres_database)
    _empty(store)
    with store.write() as session:
        access.seed_demo(session)
        _seed_credit_list(session)
    yield store
    store.dispose()


def test_a_nearer_timer_wakes_the_postgresql_worker(pg_store):
    versions.deploy(pg_store, [WAITING], actor="design.yang")
    runtime = Runtime(pg_store)
    worker_runtime = Runtime(pg_store)
    stop = threading.Event()
    # with nothing due the worker would sleep 10 minutes: only a notification can wake it
    worker = threading.Thread(target=timers.run_forever, args=(worker_runtime,),
                              kwargs={"stop": stop, "horizon": 600.0}, daemon=True)
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while getattr(worker_runtime, "wakeups", None) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        listener = worker_runtime.wakeups
        time.sleep(1.0)  # its first pass is done: it sleeps now
        assert listener.woken == 0
        # the PT4H timer falls due a moment from now
        view = runtime.start("waiting", "fin.chu", {"order_no": "SO-1"},
                             at=clock.now() - timedelta(hours=4) + timedelta(seconds=1))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _due_rows(pg_store):
            time.sleep(0.1)
        assert listener.woken >= 1
        with pg_store.transaction() as conn:
            assert conn.execute(text("SELECT count(*) FROM due_timer")).scalar() == 0
            commands = conn.execute(text("SELECT command FROM log_entry WHERE instance_id = :i ORDER BY seq"),
                                    {"i": view.id}).scalars().all()
        assert commands == ["start", "timer"]
    finally:
        stop.set()
        worker.join(timeout=10)


def _due_rows(store: Store) -> int:
    with store.transaction() as conn:
        return conn.execute(text("SELECT count(*) FROM due_timer")).scalar()


def test_a_far_timer_sends_no_notification(pg_store):
    versions.deploy(pg_store, [WAITING], actor="design.yang")
    import psycopg
    url = pg_store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("LISTEN bpm_timers")
        Runtime(pg_store).start("waiting", "fin.chu", {"order_no": "SO-2"})  # due in 4 hours
        assert list(conn.notifies(timeout=1.0, stop_after=1)) == []
        Runtime(pg_store).start("waiting", "fin.chu", {"order_no": "SO-3"}, at=clock.now() - timedelta(hours=4))
        notes = list(conn.notifies(timeout=5.0, stop_after=1))
    assert len(notes) == 1 and notes[0].channel == "bpm_timers"


def test_gunicorn_serves_with_two_processes_on_postgresql(pg_store):
    server = Server(pg_store.url, "--processes", "2")
    try:
        server.expect(r"serving on http://127\.0\.0\.1:\d+ with 2 process\(es\), 1 timer worker process")
        worker = int(server.expect(r"timer worker 1 started \(pid (\d+)\)").group(1))
        statuses = [server.get("/healthz")[0] for _ in range(20)]
        assert statuses == [200] * 20
        assert server.get("/login")[0] == 200
        children = subprocess.run(["ps", "--ppid", str(server.process.pid), "-o", "pid="],
                                  capture_output=True, text=True).stdout.split()
        assert len([c for c in children if int(c) != worker]) == 2  # two server processes
        status, body = server.get("/metrics")
        assert status == 200
        # the two processes' counts are summed, whichever answers the scrape
        total = sum(float(v) for v in re.findall(r'^bpm_http_requests_total\{endpoint="ops.healthz".*\} (\S+)$',
                                                 body, re.M))
        assert total >= 20
        # gunicorn's master reaps any child that ends, the worker too: it is restarted all the same
        os.kill(worker, signal.SIGKILL)
        server.expect(rf"timer worker 1 \(pid {worker}\) exited(?: with code -9)?; restarting it")
        restarted = int(server.expect(r"timer worker 1 started \(pid (\d+)\)").group(1))
        assert restarted != worker and _alive(restarted)
    finally:
        code = server.stop()
    assert code == 0
    assert not _alive(restarted)


def test_a_listening_worker_sleeps_until_the_nearest_due_timer_or_its_horizon(sqlite_store, monkeypatch):
    versions.deploy(sqlite_store, [WAITING], actor="design.yang")
    runtime = Runtime(sqlite_store)
    assert timers._next_wait(runtime, 5.0) == 5.0  # nothing due: the horizon
    runtime.start("waiting", "fin.chu", {"order_no": "SO-5"}, at=clock.now() - timedelta(hours=4, seconds=-30))
    assert 20.0 < timers._next_wait(runtime, 600.0) <= 30.0
    assert timers._next_wait(runtime, 5.0) == 5.0
    # a due row a pass left behind (already due) does not make the worker spin
    monkeypatch.setenv("BPM_NOW", (clock.now() + timedelta(minutes=5)).isoformat())
    assert timers._next_wait(runtime, 5.0) == timers.MIN_SLEEP
