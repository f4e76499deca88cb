"""`bpm serve`: the web app in one process (waitress, threads) or N (gunicorn, PostgreSQL only),
and the timer worker as processes of their own (`bpm worker`), started, restarted when they die,
and stopped with the server.

The worker is not a thread of the request process: there it shares the interpreter lock with the
request threads, and under load timers fired 7–15 s late (issue 12). A separate process fires them
on time; on PostgreSQL it also wakes when a command writes a nearer timer (engine.wakeup).

SQLite serves one process only: the database is one file with one writer at a time, so several
processes add no write throughput. The worker process writes too, but briefly and rarely, and
takes its turn with the server's writers through the database's lock file (engine.store.WriterQueue).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

RESTART_PAUSE_MAX = 30.0  # seconds between restarts of a worker that keeps dying at once
STOP_GRACE = 10.0  # seconds a worker has to finish its unit of work when the server stops

SQLITE_REFUSAL = ("--processes {n} needs PostgreSQL (BPM_DATABASE_URL=postgresql://...): SQLite has one "
                  "writer at a time for the whole file, so several server processes would only queue "
                  "on its lock; serve SQLite with one process")


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass
class Supervisor:
    """Keeps `count` timer worker processes (`python -m bpm worker`) running until `stop()`."""
    count: int = 1
    command: list[str] = field(default_factory=lambda: [sys.executable, "-m", "bpm", "worker"])
    processes: list[subprocess.Popen | None] = field(default_factory=list)
    restarts: int = 0

    def __post_init__(self) -> None:
        self._stopping = threading.Event()
        self._pause = [1.0] * self.count
        self._started_at = [0.0] * self.count
        self._thread = threading.Thread(target=self._watch, name="worker-supervisor", daemon=True)

    def start(self) -> None:
        self.processes = [self._spawn(i) for i in range(self.count)]
        self._thread.start()

    def _spawn(self, index: int) -> subprocess.Popen:
        # its own process group: a Ctrl-C of the terminal reaches the server, which stops the worker
        process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, start_new_session=True)
        self._started_at[index] = time.monotonic()
        _say(f"timer worker {index + 1} started (pid {process.pid})")
        return process

    def _watch(self) -> None:
        while not self._stopping.wait(0.5):
            for index, process in enumerate(self.processes):
                if process is None or process.poll() is None:
                    continue
                # (under gunicorn its master may reap the worker first: the code then reads 0)
                how = f" with code {process.returncode}" if process.returncode else ""
                _say(f"timer worker {index + 1} (pid {process.pid}) exited{how}; restarting it")
                # one that dies at once (bad settings, database down) is restarted ever more slowly
                quick = time.monotonic() - self._started_at[index] < 10.0
                self._pause[index] = min(self._pause[index] * 2, RESTART_PAUSE_MAX) if quick else 1.0
                if quick and self._stopping.wait(self._pause[index]):
                    return
                self.processes[index] = self._spawn(index)
                self.restarts += 1

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for process in self.processes:
            if process is not None and process.poll() is None:
                process.terminate()  # SIGTERM: `bpm worker` rolls back what it was doing and ends
        deadline = time.monotonic() + STOP_GRACE
        for process in self.processes:
            if process is None:
                continue
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def serve(host: str, port: int, processes: int, workers: int, *, is_sqlite: bool, threads: int = 8) -> None:
    """Serve until interrupted; the caller has checked the settings and migrated the database."""
    if processes > 1 and is_sqlite:
        raise ValueError(SQLITE_REFUSAL.format(n=processes))
    supervisor = Supervisor(workers) if workers > 0 else None
    if supervisor is not None:
        supervisor.start()
    try:
        if processes > 1:
            _gunicorn(host, port, processes, threads)
        else:
            _waitress(host, port, threads)
    except KeyboardInterrupt:
        pass
    finally:
        if supervisor is not None:
            supervisor.stop()


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def _waitress(host: str, port: int, threads: int) -> None:
    from waitress import serve as waitress_serve

    from web import create_app

    from .cli import _runtime, _store

    # SIGTERM stops the server as Ctrl-C does, so the worker is stopped with it
    signal.signal(signal.SIGTERM, _interrupt)
    waitress_serve(create_app(_runtime(_store())), host=host, port=port, threads=threads)


def _gunicorn(host: str, port: int, processes: int, threads: int) -> None:
    """gunicorn's pre-fork server: `processes` server processes of `threads` threads each; each
    builds its own app and connection pool after the fork (no preload: no connection is shared)."""
    from gunicorn.app.base import BaseApplication

    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    made_dir = None
    if not metrics_dir:
        metrics_dir = made_dir = tempfile.mkdtemp(prefix="bpm-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # before any process imports prometheus_client
    else:
        for name in os.listdir(metrics_dir):  # counts of an earlier run are not this run's
            if name.endswith(".db"):
                os.unlink(os.path.join(metrics_dir, name))

    import web  # the secret key file is made once here, not raced by the server processes
    web._secret_key()

    def child_exit(_server, worker) -> None:
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(worker.pid)

    class Application(BaseApplication):
        def load_config(self) -> None:
            for key, value in {"bind": f"{host}:{port}", "workers": processes, "worker_class": "gthread",
                               "threads": threads, "timeout": 60, "graceful_timeout": int(STOP_GRACE),
                               "child_exit": child_exit, "proc_name": "bpm-serve",
                               "accesslog": None, "errorlog": "-", "loglevel": "warning"}.items():
                self.cfg.set(key, value)

        def load(self):
            from web import create_app

            from .cli import _runtime, _store
            return create_app(_runtime(_store()))

    try:
        Application().run()
    finally:
        if made_dir:
            shutil.rmtree(made_dir, ignore_errors=True)
