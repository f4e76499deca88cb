"""Benchmark: what one command costs the database on PostgreSQL — statements, pool checkouts,
pings, commits — and its time, with `pool_pre_ping` (as before) and without (engine.store's
checkout hook, which pings only a connection the server ended), side by side in one run.

Runs whole contract reviews in process (start, the department manager's review, the general
office's approval, filing: four commands) and counts through SQLAlchemy events: statements
(`before_cursor_execute`, which the engine's prepared statements fire too), checkouts (pool
`checkout`), commits and rollbacks, and pings (the dialect's `do_ping`, which no cursor event
sees). psycopg begins a transaction implicitly with its first statement. Rounds alternate the two
configurations; the median round's ms per command is reported.

Usage: .venv/bin/python bench/pg_statements.py --postgres URL [--instances 20] [--rounds 5]
       .venv/bin/python bench/pg_statements.py              (SQLite only, for the counts)

A throw-away database is made on the server and dropped at the end.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, event, text  # noqa: E402

import processes  # noqa: E402
from engine import access, credit, versions  # noqa: E402
from engine.runtime import Runtime  # noqa: E402
from engine.store import Store, migrate  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from sqlite_writers import STEPS, T0, CONTRACT  # noqa: E402

COMMANDS_PER_INSTANCE = 1 + len(STEPS)


def _instance(runtime: Runtime) -> None:
    view = runtime.start("contract_review", "rep.wang", CONTRACT, at=T0)
    for element, user, data in STEPS:
        task = next(t for t in view.tasks if t.element_id == element)
        view = runtime.complete(task.id, user, data, at=T0)
    assert view.status == "completed", view.status


def _counting(store: Store) -> Counter:
    counts: Counter = Counter()
    engine = store.engine
    event.listen(engine, "before_cursor_execute", lambda *a: counts.update(["statements"]))
    event.listen(engine, "commit", lambda conn: counts.update(["commits"]))
    event.listen(engine, "rollback", lambda conn: counts.update(["rollbacks"]))
    event.listen(engine.pool, "checkout", lambda *a: counts.update(["checkouts"]))
    real = engine.dialect.do_ping
    engine.dialect.do_ping = lambda c: counts.update(["pings"]) or real(c)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", metavar="URL")
    parser.add_argument("--instances", type=int, default=20, help="contract reviews per round and configuration")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    admin = name = None
    if args.postgres:
        name = f"bpm_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(args.postgres.replace("postgresql://", "postgresql+psycopg://", 1),
                              isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = args.postgres.rsplit("/", 1)[0] + f"/{name}"
    else:
        url = f"sqlite:///{tempfile.mkdtemp()}/statements.sqlite3"
    stores = []
    try:
        setup = Store(url)
        migrate(setup)
        with setup.write() as session:
            access.seed_demo(session)
            credit.seed(session, processes.customers.DEMO_CREDIT_LIST, T0)
        versions.deploy(setup, [ROOT / "bpmn"], at=T0)
        setup.dispose()
        configs = {}
        postgres = setup.engine.dialect.name == "postgresql"
        for label, pre_ping in ((("pool_pre_ping (before)", True), ("checkout hook (after)", False)) if postgres
                                else (("SQLite (no pool ping)", False),)):
            store = Store(url)
            stores.append(store)
            if pre_ping:  # as engine.store made PostgreSQL engines before: a ping on every checkout
                store.engine.pool._pre_ping = True
            runtime = Runtime(store, processes.SERVICES, lookups=processes.LOOKUPS)
            _instance(runtime)  # warm caches and the pool
            configs[label] = (runtime, _counting(store), [])
        for r in range(args.rounds):
            for label in (list(configs) if r % 2 == 0 else list(reversed(configs))):
                runtime, counts, ms = configs[label]
                began = time.perf_counter()
                for _ in range(args.instances):
                    _instance(runtime)
                ms.append((time.perf_counter() - began) * 1000 / (args.instances * COMMANDS_PER_INSTANCE))
        commands = args.rounds * args.instances * COMMANDS_PER_INSTANCE
        print(f"{setup.engine.dialect.name}: {commands} commands per configuration "
              f"({args.rounds} rounds of {args.instances} contract reviews, 4 commands each)")
        print(f"{'configuration':<24} {'statements':>10} {'checkouts':>10} {'pings':>6} {'commits':>8} "
              f"{'ms/command (median round; range)':>34}")
        for label, (runtime, counts, ms) in configs.items():
            per = {k: counts[k] / commands for k in ("statements", "checkouts", "pings", "commits")}
            print(f"{label:<24} {per['statements']:>10.2f} {per['checkouts']:>10.2f} {per['pings']:>6.2f} "
                  f"{per['commits']:>8.2f} {statistics.median(ms):>14.2f} ({min(ms):.2f}-{max(ms):.2f})")
    finally:
        for store in stores:
            store.dispose()
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
