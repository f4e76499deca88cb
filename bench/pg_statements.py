"""Benchmark: what one command costs on PostgreSQL and on SQLite — statements, commits, time per
command and time under the write lock — for the code before (another git revision, `f18e941` by
default) and after (this tree), side by side in one run.

Runs whole contract reviews in process (start, the department manager's review, the general
office's approval, filing: four commands) with one thread, and counts through SQLAlchemy events:
statements (`before_cursor_execute`, which the engine's prepared statements fire too; psycopg
begins a transaction implicitly with its first statement, so BEGIN is not counted on PostgreSQL)
and commits. "lock ms" is the time a command spends inside `Store.transaction()` — on SQLite the
writer's turn (BEGIN IMMEDIATE ... COMMIT), on PostgreSQL the transaction holding the instance's
row lock; "ms" is the whole command.

Each measurement is a fresh process on the code of its side (`git archive REF` unpacked in a
temporary folder for "before", this tree for "after") with a fresh database (a SQLite file, or a
throw-away database on the PostgreSQL server, dropped at the end): it migrates, seeds, deploys,
runs 5 contract reviews to warm up, then `--instances` timed ones. Rounds alternate the order of
the configurations; per configuration the median round is reported, with the range.

Usage: .venv/bin/python bench/pg_statements.py [--postgres URL] [--before f18e941]
                                               [--instances 20] [--rounds 3] [--json]
Without --postgres (or BPM_TEST_POSTGRES_URL) SQLite only.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
COMMANDS_PER_INSTANCE = 4
# (as bench/sqlite_writers.py)
T0 = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)
DELIVERY = (date(2026, 11, 23) + timedelta(days=60)).isoformat()
CONTRACT = {"customer": "C-B01", "amount": 260000, "quote_price": 520, "price": 520,
            "quote_payment_terms": "30% 定金，发货前付清", "payment_terms": "30% 定金，发货前付清",
            "quote_delivery_date": DELIVERY, "delivery_date": DELIVERY,
            "lines": [{"product": "芝麻灰花岗岩板", "spec": "600x600x20", "quantity": 500, "unit_price": 520}]}
STEPS = [("dm_review", "dm.zhou", {"decision": "approve"}), ("go_approval", "gmo.tang", {"decision": "approve"}),
         ("file_contract", "rep.wang", {"signed_on": "2026-11-24", "archive_location": "业务部办公室文件柜 A-3"})]


def worker(code: Path, url: str, instances: int) -> dict:
    """Run in a process of its own with `code` first on sys.path."""
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]  # (bench/processes.py)
    sys.path.insert(0, str(code))
    from sqlalchemy import event

    import processes
    from engine import access, credit, versions
    from engine.runtime import Runtime
    from engine.store import Store, migrate
    def one(runtime) -> None:
        view = runtime.start("contract_review", "rep.wang", CONTRACT, at=T0)
        for element, user, data in STEPS:
            task = next(t for t in view.tasks if t.element_id == element)
            view = runtime.complete(task.id, user, data, at=T0)
        assert view.status == "completed", view.status

    store = Store(url)
    migrate(store)
    with store.write() as session:
        access.seed_demo(session)
        credit.seed(session, processes.customers.DEMO_CREDIT_LIST, T0)
    versions.deploy(store, [code / "bpmn"], at=T0)
    runtime = Runtime(store, processes.SERVICES, lookups=processes.LOOKUPS)
    for _ in range(5):
        one(runtime)
    counts = {"statements": 0, "commits": 0}
    event.listen(store.engine, "before_cursor_execute", lambda *a: counts.__setitem__("statements",
                                                                                      counts["statements"] + 1))
    event.listen(store.engine, "commit", lambda conn: counts.__setitem__("commits", counts["commits"] + 1))
    held = [0.0]
    transaction = store.transaction

    def timed_transaction():
        began = time.perf_counter()
        with transaction() as conn:
            try:
                yield conn
            finally:
                pass
        held[0] += time.perf_counter() - began

    from contextlib import contextmanager
    store.transaction = contextmanager(timed_transaction)
    began = time.perf_counter()
    for _ in range(instances):
        one(runtime)
    took = time.perf_counter() - began
    store.dispose()
    commands = instances * COMMANDS_PER_INSTANCE
    return {"commands": commands, "ms": took * 1000 / commands, "lock_ms": held[0] * 1000 / commands,
            "statements": counts["statements"] / commands, "commits": counts["commits"] / commands}


def _tree(ref: str, into: Path) -> Path:
    data = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into)
    return into


def _database(kind: str, postgres: str | None, folder: Path, label: str):
    if kind == "sqlite":
        return f"sqlite:///{folder / (label + '.sqlite3')}", None
    from sqlalchemy import create_engine, text
    admin_url = postgres.replace("postgresql://", "postgresql+psycopg://", 1)
    name = f"bpm_bench_cmd_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop():
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}", drop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", default=os.environ.get("BPM_TEST_POSTGRES_URL"), metavar="URL")
    parser.add_argument("--before", default="f18e941", help="git revision measured as 'before'")
    parser.add_argument("--instances", type=int, default=20, help="timed contract reviews per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", nargs=3, metavar=("CODE", "URL", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        code, url, out = args.worker
        Path(out).write_text(json.dumps(worker(Path(code), url, args.instances)))
        return 0
    kinds = ["sqlite"] + (["postgresql"] if args.postgres else [])
    results: dict[str, list[dict]] = {}
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bpm_cmd_bench_") as tmp:
        folder = Path(tmp)
        trees = {"before": _tree(args.before, folder / "before"), "after": ROOT}
        configs = [(kind, side) for kind in kinds for side in ("before", "after")]
        for r in range(args.rounds):
            for kind, side in (configs if r % 2 == 0 else list(reversed(configs))):
                label = f"{kind}-{side}-{r}"
                url, drop = _database(kind, args.postgres, folder, label)
                out = folder / f"{label}.json"
                try:
                    subprocess.run([sys.executable, str(BENCH / "pg_statements.py"), "--instances",
                                    str(args.instances), "--worker", str(trees[side]), url, str(out)],
                                   check=True, cwd=folder)
                finally:
                    if drop is not None:
                        drop()
                results.setdefault(f"{kind}/{side}", []).append(json.loads(out.read_text()))
    if args.json:
        print(json.dumps({"before": args.before, "load": load, "results": results}, indent=2))
        return 0
    print(f"before = {args.before}, after = this tree; {args.rounds} rounds of {args.instances} contract reviews "
          f"(4 commands each) per configuration; load average at start {load[0]:.1f}")
    print(f"{'configuration':<22} {'statements':>10} {'commits':>8} {'ms/command (median; range)':>28} "
          f"{'lock ms/command':>16}")
    for key, runs in results.items():
        ms = [x["ms"] for x in runs]
        lock = statistics.median(x["lock_ms"] for x in runs)
        print(f"{key:<22} {runs[0]['statements']:>10.2f} {runs[0]['commits']:>8.2f} "
              f"{statistics.median(ms):>12.2f} ({min(ms):.2f}-{max(ms):.2f}) {lock:>16.2f}")
    for side in ("before", "after"):
        if f"postgresql/{side}" in results:
            pg = statistics.median(x["ms"] for x in results[f"postgresql/{side}"])
            lite = statistics.median(x["ms"] for x in results[f"sqlite/{side}"])
            print(f"{side}: PostgreSQL per command = {lite / pg:.2f} of SQLite's speed (target ≥ 0.7)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
