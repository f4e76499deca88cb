"""Timer lateness while 16 HTTP clients keep the server busy (issue 12, item 4): the timer worker
as a thread of the request process (as `bpm serve` ran it before) against the worker process
`bpm serve` now starts (on PostgreSQL woken by LISTEN/NOTIFY), on SQLite and PostgreSQL.

For each backend, one fresh database (`bpm init --demo`, plus tests/data/runtime/waiting.bpmn: a
PT4H timer after the start). For each server kind, in turn:
  - the server starts (bench/serve.py `server`: `in-process-worker` or `separate-worker`);
  - N client processes drive contract_review instances over HTTP for S seconds (bench/serve.py);
  - meanwhile this process starts one `waiting` instance a second through the engine, dated so
    its timer falls due 1–2 s later, and polls the due_timer table every 0.1 s: a timer's
    lateness is when its row was seen gone minus its due time (resolution ~0.1 s, so a figure
    below 0.1 s reads as "on time");
  - after the load, up to 30 s for the last timers; one still waiting then counts as unfired.

With `--against REV` the server (and its worker) of git revision REV, unpacked with `git
archive`, is measured against this tree's, each on a fresh database, in rounds alternating which
goes first (`--rounds`), for the server kinds `--kinds` (default: separate-worker only). The
timers' feeder is this tree's engine in both. The feeder reads the due_timer table in a read
transaction; before 2026-12-05 it polled inside a write transaction, one more writing process
every 0.1 s besides the server and its worker: `--poll-in-write` measures that way again.

Usage: .venv/bin/python bench/timers_load.py [--backend sqlite|postgresql|both] [--clients 16]
                                             [--seconds 30] [--json]
       .venv/bin/python bench/timers_load.py --backend sqlite --against REV [--rounds 2]
                                             [--kinds separate-worker,in-process-worker]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import os
import random
import statistics
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("bench_serve", ROOT / "bench" / "serve.py")
bench_serve = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_serve)  # also puts the project root first on sys.path

from sqlalchemy import bindparam, text  # noqa: E402

from engine import versions  # noqa: E402
from engine.runtime import Runtime  # noqa: E402
from engine.store import Store  # noqa: E402

WAITING = ROOT / "tests" / "data" / "runtime" / "waiting.bpmn"
log = bench_serve.log


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


POLL_IN_WRITE = False  # --poll-in-write: read due_timer inside a write transaction, as before 2026-12-05


def feed_and_watch(store: Store, stop: threading.Event, results: list[float], pending: dict) -> None:
    """One timer a second, due 1–2 s after it is written; lateness of each as it goes."""
    runtime = Runtime(store)
    rng = random.Random(12)
    next_start = time.monotonic()
    while True:
        now_m = time.monotonic()
        if not stop.is_set() and now_m >= next_start:
            lead = 1.0 + rng.random()
            at = datetime.now(timezone.utc) - timedelta(hours=4) + timedelta(seconds=lead)
            try:
                view = runtime.start("waiting", "fin.chu", {"order_no": f"T-{rng.random()}"}, at=at)
                pending[view.id] = at + timedelta(hours=4)
            except Exception as exc:
                log(f"feeder: {exc}")
            next_start = now_m + 1.0
        if pending:
            with (store.transaction() if POLL_IN_WRITE else store.reading()) as conn:
                still = set(conn.execute(text("SELECT instance_id FROM due_timer WHERE instance_id IN :ids")
                                         .bindparams(bindparam("ids", expanding=True)),
                                         {"ids": list(pending)}).scalars())
            seen_at = datetime.now(timezone.utc)
            for instance_id in [i for i in pending if i not in still]:
                results.append(max((seen_at - pending.pop(instance_id)).total_seconds(), 0.0))
        if stop.is_set() and (not pending or time.monotonic() > stop.deadline):
            return
        time.sleep(0.1)


def one(url: str, kind: str, clients: int, seconds: float, root: Path = ROOT) -> dict:
    store = Store(url)
    with bench_serve.server(url, kind, root) as (_proc, port):
        bench_serve.bench_web.one_instance(bench_serve._warm(port), "standard")
        tok = bench_serve.tokens(port)
        ctx = multiprocessing.get_context("fork")
        out = ctx.Queue()
        start_at = time.time() + 1.0
        procs = [ctx.Process(target=bench_serve._client, args=(port, tok, start_at, seconds, out))
                 for _ in range(clients)]
        for p in procs:
            p.start()
        while time.time() < start_at:
            time.sleep(0.01)
        stop, lateness, pending = threading.Event(), [], {}
        watcher = threading.Thread(target=feed_and_watch, args=(store, stop, lateness, pending))
        watcher.start()
        loads = [out.get(timeout=seconds + 120) for _ in procs]
        for p in procs:
            p.join()
        stop.deadline = time.monotonic() + 30
        stop.set()
        watcher.join()
    store.dispose()
    done = sum(r[0] for r in loads)
    return {"kind": kind, "timers": len(lateness), "unfired": len(pending),
            "lateness_s": {"p50": round(statistics.median(lateness), 2), "p95": round(_pct(lateness, 95), 2),
                           "max": round(max(lateness), 2)} if lateness else {},
            "within_1s": sum(1 for x in lateness if x <= 1.0),
            "http_instances_per_s": round(done / seconds, 1), "http_errors": sum(r[1] for r in loads)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--against", metavar="REV", help="compare the server of git revision REV with this tree's")
    parser.add_argument("--rounds", type=int, default=2, help="(--against) rounds, alternating which goes first")
    parser.add_argument("--kinds", default="separate-worker", help="(--against) server kinds, comma-separated")
    parser.add_argument("--poll-in-write", action="store_true",
                        help="the feeder polls in a write transaction (a third writing process, as before)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    global POLL_IN_WRITE
    POLL_IN_WRITE = args.poll_in_write
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    results = []
    if args.against:
        before = _tree(args.against)
        sides = [(f"before ({args.against})", before), ("after", ROOT)]
        for round_no in range(args.rounds):
            for backend in backends:
                for kind in args.kinds.split(","):
                    for label, root in (sides if round_no % 2 == 0 else sides[::-1]):
                        with bench_serve.database(backend) as url:
                            store = Store(url)
                            versions.deploy(store, [WAITING], actor="design.yang")
                            store.dispose()
                            r = {"backend": backend, "code": label, "round": round_no + 1,
                                 **one(url, kind, args.clients, args.seconds, root)}
                        log(f"{backend} {kind} {label} round {round_no + 1}: {r}")
                        results.append(r)
        _report(args, results)
        return
    for backend in backends:
        with bench_serve.database(backend) as url:
            store = Store(url)
            versions.deploy(store, [WAITING], actor="design.yang")
            store.dispose()
            for kind in ("in-process-worker", "separate-worker"):
                r = {"backend": backend, **one(url, kind, args.clients, args.seconds)}
                log(f"{backend} {kind}: {r}")
                results.append(r)
    _report(args, results)


def _tree(ref: str) -> Path:
    """The files of git revision `ref`, unpacked in a temporary folder."""
    import subprocess
    import tarfile
    import tempfile
    from io import BytesIO
    into = Path(tempfile.mkdtemp(prefix="bpm_timers_tree_"))
    data = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into)
    return into


def _report(args, results: list[dict]) -> None:
    if args.json:
        print(json.dumps({"clients": args.clients, "seconds": args.seconds, "results": results,
                          "machine": bench_serve.bench_web.machine()}, indent=2))
        return
    for r in results:
        print(f"{r['backend']:10} {r['kind']:17} {r.get('code', '')} timers {r['timers']:3} (unfired {r['unfired']}), within 1 s "
              f"{r['within_1s']}, lateness p50/p95/max {r['lateness_s']} s; HTTP {r['http_instances_per_s']} "
              f"instances/s, errors {r['http_errors']}")


if __name__ == "__main__":
    main()
