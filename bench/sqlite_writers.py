"""Benchmark: command latency on SQLite with several writer threads, with and without the writer
queue (engine.store.WriterQueue), side by side in one run.

Each of N threads runs whole contract reviews through the engine in process (start, the
department manager's review, the general office's approval, filing: four commands, each one write
transaction), timing every command. Reported per configuration: commands, commands/s, and the
p50/p95/p99/max latency in ms. "queue off" is the same code with BPM_SQLITE_WRITER_QUEUE=0: the
threads meet in SQLite's busy handler inside BEGIN IMMEDIATE, as before the queue.

Usage: .venv/bin/python bench/sqlite_writers.py [--threads 4,16] [--instances 8] [--http] [--json]
         [--rate R] [--before REF]

With --http the threads are HTTP clients of one `bpm serve` (see `run_http`). `--rate R`: each
client sends at most R command requests a second (think time between them; latency is still the
request's alone), so the offered load is fixed (clients × R) instead of closed-loop. `--before
REF` (with --http): compare the server of git revision REF (unpacked with `git archive`) with this
tree's, queue on for both, instead of queue off/on.

Each configuration gets a fresh SQLite file (WAL) in a temp folder; the order of the
configurations alternates (off/on, then on/off) so neither always runs on a warmer machine.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import tarfile
import statistics
import sys
import tempfile
import threading
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import processes  # noqa: E402
from engine import access, credit, versions  # noqa: E402
from engine.runtime import Runtime  # noqa: E402
from engine.store import Store, migrate  # noqa: E402

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)
DELIVERY = (date(2026, 11, 23) + timedelta(days=60)).isoformat()
CONTRACT = {"customer": "C-B01", "amount": 260000, "quote_price": 520, "price": 520,
            "quote_payment_terms": "30% 定金，发货前付清", "payment_terms": "30% 定金，发货前付清",
            "quote_delivery_date": DELIVERY, "delivery_date": DELIVERY,
            "lines": [{"product": "芝麻灰花岗岩板", "spec": "600x600x20", "quantity": 500, "unit_price": 520}]}
STEPS = [("dm_review", "dm.zhou", {"decision": "approve"}), ("go_approval", "gmo.tang", {"decision": "approve"}),
         ("file_contract", "rep.wang", {"signed_on": "2026-11-24", "archive_location": "业务部办公室文件柜 A-3"})]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def _setup(url: str) -> Runtime:
    store = Store(url)
    migrate(store)
    with store.write() as session:
        access.seed_demo(session)
        credit.seed(session, processes.customers.DEMO_CREDIT_LIST, T0)
    versions.deploy(store, [ROOT / "bpmn"], at=T0)
    runtime = Runtime(store, processes.SERVICES, lookups=processes.LOOKUPS)
    _instance(runtime, [])  # warm the definition caches
    return runtime


def _instance(runtime: Runtime, latencies: list[float]) -> None:
    began = time.perf_counter()
    view = runtime.start("contract_review", "rep.wang", CONTRACT, at=T0)
    latencies.append(time.perf_counter() - began)
    for element, user, data in STEPS:
        task = next(t for t in view.tasks if t.element_id == element)
        began = time.perf_counter()
        view = runtime.complete(task.id, user, data, at=T0)
        latencies.append(time.perf_counter() - began)
    if view.status != "completed":
        raise RuntimeError(f"instance {view.id} ended {view.status}")


def run(threads: int, instances: int, queue: bool) -> dict:
    os.environ["BPM_SQLITE_WRITER_QUEUE"] = "1" if queue else "0"
    runtime = _setup(f"sqlite:///{tempfile.mkdtemp(prefix='bpm_writers_')}/writers.sqlite3")
    assert (runtime.store.writers is not None) == queue
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors: list[str] = []
    go = threading.Barrier(threads + 1)

    def worker(n: int) -> None:
        go.wait()
        try:
            for _ in range(instances):
                _instance(runtime, latencies[n])
        except Exception as exc:  # counted, not hidden
            errors.append(f"{type(exc).__name__}: {exc}")

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    go.wait()
    began = time.perf_counter()
    for t in pool:
        t.join()
    took = time.perf_counter() - began
    runtime.store.dispose()
    every = [x * 1000 for per in latencies for x in per]
    return {"threads": threads, "queue": "on" if queue else "off", "commands": len(every),
            "errors": len(errors), "first_error": errors[0] if errors else None,
            "commands_per_s": round(len(every) / took, 1), "p50_ms": round(statistics.median(every), 1),
            "p95_ms": round(pct(every, 95), 1), "p99_ms": round(pct(every, 99), 1), "max_ms": round(max(every), 1)}


def _tree(ref: str) -> Path:
    """The files of git revision `ref`, unpacked in a temporary folder."""
    from io import BytesIO
    into = Path(tempfile.mkdtemp(prefix="bpm_writers_tree_"))
    data = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into)
    return into


def run_http(clients: int, instances: int, queue: bool, rate: float | None = None, code: Path = ROOT,
             label: str | None = None) -> dict:
    """The same over HTTP: one `bpm serve` (waitress, 8 threads, its timer worker) on a fresh SQLite
    file, `clients` threads each with its own kept-alive connection and bearer tokens, each driving
    `instances` contract reviews through the JSON API (bench/web.py's client). Latency is each
    command request's, send to last byte."""
    sys.path.insert(0, str(ROOT / "bench"))
    import web
    os.environ["BPM_SQLITE_WRITER_QUEUE"] = "1" if queue else "0"
    tmp = Path(tempfile.mkdtemp(prefix="bpm_writers_http_"))
    errors: list[str] = []
    class Paced(web.Client):
        """A client that sends a command request at most every 1/rate s (think time, not timed)."""
        next_at: float | None = None

        def call(self, kind, *args, **kwargs):
            if rate and self.record and kind != "token":
                now = time.perf_counter()
                if self.next_at is None:  # the clients' first requests spread over one gap
                    self.next_at = now + random.uniform(0, 1 / rate)
                if self.next_at > now:
                    time.sleep(self.next_at - now)
                try:
                    return super().call(kind, *args, **kwargs)
                finally:
                    self.next_at = max(self.next_at + 1 / rate, time.perf_counter())
            return super().call(kind, *args, **kwargs)

    with web.server(tmp, code) as (_proc, port):
        pool = [Paced(port) for _ in range(clients)]
        for c in pool:
            for user in ("rep.wang", "dm.zhou", "gmo.tang"):
                c.login(user)
            c.record = True
        go = threading.Barrier(clients + 1)

        def worker(c) -> None:
            go.wait()
            try:
                for _ in range(instances):
                    web.one_instance(c, "standard")
            except Exception as exc:  # counted, not hidden
                errors.append(f"{type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=worker, args=(c,)) for c in pool]
        for t in threads:
            t.start()
        go.wait()
        began = time.perf_counter()
        for t in threads:
            t.join()
        took = time.perf_counter() - began
    every = [x * 1000 for c in pool for kind, xs in c.timings.items() if kind != "token" for x in xs]
    return {"threads": clients, "queue": label or ("on" if queue else "off"), "over": "http",
            "rate": rate, "commands": len(every),
            "errors": len(errors), "first_error": errors[0] if errors else None,
            "commands_per_s": round(len(every) / took, 1), "p50_ms": round(statistics.median(every), 1),
            "p95_ms": round(pct(every, 95), 1), "p99_ms": round(pct(every, 99), 1), "max_ms": round(max(every), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="4,16", help="comma-separated thread counts")
    parser.add_argument("--instances", type=int, default=8, help="contract reviews per thread (4 commands each)")
    parser.add_argument("--http", action="store_true", help="HTTP clients against `bpm serve` instead of "
                                                            "threads in process")
    parser.add_argument("--rate", type=float, help="(--http) command requests per second per client at most")
    parser.add_argument("--before", metavar="REF", help="(--http) compare the server of git revision REF "
                                                        "with this tree's (queue on for both)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if (args.rate or args.before) and not args.http:
        parser.error("--rate and --before go with --http")
    rows = []
    before = _tree(args.before) if args.before else None
    for i, threads in enumerate(int(n) for n in args.threads.split(",")):
        for queue in ((False, True) if i % 2 == 0 else (True, False)):
            if before is not None:  # False: the code before, True: this tree (both with the queue)
                rows.append(run_http(threads, args.instances, True, args.rate, ROOT if queue else before,
                                     label="after" if queue else f"before ({args.before})"))
            elif args.http:
                rows.append(run_http(threads, args.instances, queue, args.rate))
            else:
                rows.append(run(threads, args.instances, queue))
            if not args.json:
                r = rows[-1]
                print(f"{r['threads']:>3} {'HTTP clients' if args.http else 'threads'}"
                      + (f" at ≤ {args.rate:g}/s each" if args.rate else "")
                      + (f", {r['queue']}" if before is not None else f", queue {r['queue']:<3}") + ": "
                      f"{r['commands']:>4} commands, "
                      f"{r['commands_per_s']:>6.1f}/s, p50 {r['p50_ms']:>7.1f} ms, p95 {r['p95_ms']:>7.1f}, "
                      f"p99 {r['p99_ms']:>7.1f}, max {r['max_ms']:>7.1f}, errors {r['errors']}"
                      + (f" ({r['first_error']})" if r["errors"] else ""), flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
