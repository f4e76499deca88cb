"""The instance search at scale: p95 of typical searches over 100,000 instances, SQLite and PostgreSQL.

A migrated database with the demo organisation and bpmn/ deployed is filled by direct inserts
(SQLAlchemy Core executemany, 10,000 instances a transaction): N instances (default 100,000) over
four processes — 60 % running with one open human task (due now ± 7 days), 35 % completed, 5 %
cancelled — started over the last 365 days by 60 initiators (rep.wang, rep.feng, rep.liu and 57
more), each with 2-8 log entries by the initiator and approvers (dm.zhou on about 40 % of them),
an SLA breach on 3 %, an open incident on 0.5 %. The instance rows carry a 1,500-character
placeholder state (the search never reads it; it makes the table as wide as a real one's first
page). SQLite is checkpointed and not analysed (as `bpm init` leaves it); PostgreSQL gets
`VACUUM ANALYZE` (what autovacuum would have done).

Then each query of QUERIES runs through `engine.instances.search` inside its read session, W warm-up
and R timed runs (default 10 and 200); p50 / p95 / max in ms, and the plans of the slow ones.

Usage: .venv/bin/python bench/instances.py [--backend sqlite|postgresql|both] [--instances N]
                                           [--requests R] [--postgres-url URL] [--json] [--plans]
                                           [--keep FILE] [--pg-keep NAME] [--reuse]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or os.getcwd()).resolve() != ROOT / "bench"]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("BPM_SECRET_KEY", secrets.token_hex(32))

TARGET_MS = 30.0
POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
PROCESSES = {"contract_review": ("HT", 0.45), "order_to_settlement": ("DD", 0.35),
             "return_request": ("TH", 0.15), "branch_establishment": ("FZ", 0.05)}
APPROVERS = ["dm.zhou", "vp.qian", "gmo.tang", "fin.chu", "wh.wei", "om.wu", "plan.chen"]
CUSTOMERS = [f"C-{a}{n:02d}" for a in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" for n in range(1, 100)]
STEPS = [("dm_review", "业务部经理审核 / Department manager review", "dept_manager"),
         ("go_approval", "总经办审批 / General office approval", "general_office"),
         ("deposit", "财务确认定金 / Finance: deposit", "finance"),
         ("ship", "仓库发运 / Warehouse: ship", "warehouse")]


def log(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def populate(store, n: int, now: datetime, seed: int = 20261204) -> dict:
    from sqlalchemy import func, insert, select

    from engine import access, versions
    from engine.store import Definition, HumanTask, Incident, Instance, LogEntry, SlaBreach

    with store.write() as session:
        access.seed_demo(session)
    versions.deploy(store, [ROOT / "bpmn"], actor="design.yang")
    with store.read() as session:
        definitions = dict(session.execute(select(Definition.process_id, func.max(Definition.id))
                                           .group_by(Definition.process_id)).all())
    rng = random.Random(seed)
    initiators = ["rep.wang", "rep.feng", "rep.liu"] + [f"rep.x{i:02d}" for i in range(57)]
    names, weights = list(PROCESSES), [w for _p, w in PROCESSES.values()]
    state = "x" * 1500
    stats = {"running": 0, "completed": 0, "cancelled": 0, "log": 0, "breach": 0, "incident": 0,
             "dm.zhou": 0, "rep.wang": 0}
    t0 = time.perf_counter()
    for start in range(0, n, 10_000):
        rows, tasks, entries, breaches, incidents = [], [], [], [], []
        for i in range(start, min(n, start + 10_000)):
            process = rng.choices(names, weights)[0]
            instance_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            began = now - timedelta(seconds=rng.uniform(0, 365 * 86400))
            roll = rng.random()
            status = "running" if roll < 0.60 else "completed" if roll < 0.95 else "cancelled"
            initiator = rng.choice(initiators)
            steps = rng.randint(2, 8)
            changed = began + timedelta(seconds=rng.uniform(600, 20 * 86400))
            changed = min(changed, now)
            customer = None if process == "branch_establishment" else rng.choice(CUSTOMERS)
            actors = [initiator] + [rng.choice(APPROVERS) for _ in range(steps - 1)]
            if rng.random() < 0.4 and "dm.zhou" not in actors:
                actors[1] = "dm.zhou"
            stats["dm.zhou"] += "dm.zhou" in actors
            stats["rep.wang"] += initiator == "rep.wang"
            stats[status] += 1
            prev = "0" * 64
            for seq, actor in enumerate(actors, 1):
                h = f"{rng.getrandbits(256):064x}"
                entries.append({"instance_id": instance_id, "seq": seq,
                                "at": began + (changed - began) * (seq - 1) / max(1, steps - 1),
                                "actor": actor, "command": "start" if seq == 1 else "complete",
                                "task_id": None, "input": {}, "state_hash": h, "prev_hash": prev, "hash": h})
                prev = h
            key = f"{PROCESSES[process][0]}-{began:%Y%m%d}-{i:06d}"
            rows.append({"id": instance_id, "definition_id": definitions[process], "process_id": process,
                         "status": status, "business_key": key if rng.random() > 0.02 else None,
                         "customer": customer,
                         "amount": None if customer is None else round(rng.lognormvariate(math.log(180_000), 1), -2),
                         "initiator": initiator, "state": state, "state_hash": prev, "revision": steps,
                         "log_hash": prev, "created_at": began, "updated_at": changed,
                         "completed_at": changed if status != "running" else None})
            if status == "running":
                element, name, role = rng.choice(STEPS)
                tasks.append({"id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "instance_id": instance_id,
                              "process_id": process, "element_id": element, "name": name, "role": role,
                              "assignee": rng.choice(APPROVERS) if rng.random() < 0.3 else None,
                              "form": None, "business_key": key, "customer": customer, "amount": None,
                              "created_at": changed,
                              "due_at": now + timedelta(seconds=rng.uniform(-7, 7) * 86400)})
            if rng.random() < 0.03:
                breaches.append({"instance_id": instance_id, "task_id": instance_id, "element_id": "dm_review",
                                 "holder": "dm.zhou", "escalated_to": "vp.qian", "due_at": changed,
                                 "breached_at": changed})
            if rng.random() < 0.005:
                incidents.append({"instance_id": instance_id, "process_id": process, "command": "complete",
                                  "input": {}, "actor": initiator, "element_id": "x", "message": "bench",
                                  "status": "open", "created_at": changed})
        stats["log"] += len(entries)
        stats["breach"] += len(breaches)
        stats["incident"] += len(incidents)
        with store.engine.begin() as conn:
            conn.execute(insert(Instance), rows)
            conn.execute(insert(LogEntry), entries)
            if tasks:
                conn.execute(insert(HumanTask), tasks)
            if breaches:
                conn.execute(insert(SlaBreach), breaches)
            if incidents:
                conn.execute(insert(Incident), incidents)
        log(f"  {min(n, start + 10_000):>7} instances ({time.perf_counter() - t0:.0f} s)")
    stats["seconds"] = round(time.perf_counter() - t0, 1)
    return stats


def queries(now: datetime) -> list[tuple[str, str, dict]]:
    week_ago = (now - timedelta(days=30)).date()
    return [
        ("audit.han", "all, first page (started, newest first)", {}),
        ("audit.han", "all, status=running", {"status": "running"}),
        ("audit.han", "all, customer=C-B07", {"customer": "C-B07"}),
        ("audit.han", "all, process=order_to_settlement, sort=changed", {"process": "order_to_settlement", "sort": "changed"}),
        ("audit.han", "all, started in the last 30 days", {"started_from": week_ago.isoformat()}),
        ("audit.han", "all, overdue", {"overdue": "1"}),
        ("audit.han", "all, SLA breach", {"breach": "1"}),
        ("audit.han", "all, open incident", {"incident": "1"}),
        ("audit.han", "all, sort=business_key asc", {"sort": "business_key", "desc": "0"}),
        ("audit.han", "all, actor=dm.zhou", {"actor": "dm.zhou"}),
        ("audit.han", "all, page 100 by Next (after=)", "next_of_99"),
        ("rep.wang", "rep.wang, took part (default)", {}),
        ("rep.wang", "rep.wang, started", {"scope": "started"}),
        ("rep.wang", "rep.wang, took part, status=running", {"status": "running"}),
        ("dm.zhou", "dm.zhou, took part (default)", {}),
        ("dm.zhou", "dm.zhou, took part, customer=C-B07", {"customer": "C-B07"}),
        ("dm.zhou", "dm.zhou, took part, overdue", {"overdue": "1"}),
        ("audit.han", "all, q=C-B07 (free text)", {"q": "C-B07"}),
        ("audit.han", "all, q=HT-2026 (free text, many)", {"q": "HT-2026"}),
        ("audit.han", "all, q=nothing-like-this (free text, none)", {"q": "nothing-like-this"}),
        ("rep.wang", "rep.wang, q=C-B07 (free text)", {"q": "C-B07"}),
    ]


def measure(store, n: int, warmup: int, plans: bool) -> list[dict]:
    from engine import access, instances
    from engine.instances import InstanceQuery

    now = datetime.now(timezone.utc)
    with store.read() as session:
        people = {u: access.person(session, u) for u in ("audit.han", "rep.wang", "dm.zhou")}
    results = []
    for username, label, args in queries(now):
        who = people[username]
        if args == "next_of_99":
            with store.read() as session:
                page = instances.search(session, who, InstanceQuery(page=99), now)
            args = {"page": "100", "after": page.next_after}
        query = InstanceQuery.from_args(args)

        def once():
            with store.read() as session:
                return instances.search(session, who, query, now)
        for _ in range(warmup):
            page = once()
        times = []
        for _ in range(n):
            t = time.perf_counter()
            page = once()
            times.append((time.perf_counter() - t) * 1000)
        row = {"who": username, "query": label, "total": page.total, "rows": len(page.rows),
               "p50": round(statistics.median(times), 1), "p95": round(pct(times, 0.95), 1),
               "max": round(max(times), 1)}
        if plans or row["p95"] > TARGET_MS:
            row["plan"] = explain(store, who, query, now)
        results.append(row)
        log(f"  {label:<55} total {page.total:>6}  p50 {row['p50']:>6.1f}  p95 {row['p95']:>6.1f}  max {row['max']:>6.1f}")
    return results


INBOX_QUERIES = [("inbox, dm.zhou, first page", {}), ("inbox, dm.zhou, customer=C-B07", {"customer": "C-B07"}),
                 ("inbox, dm.zhou, q=C-B07 (free text)", {"q": "C-B07"}),
                 ("inbox, dm.zhou, q=审核 (free text, many)", {"q": "审核"}),
                 ("inbox, dm.zhou, q=nothing-like-this (free text, none)", {"q": "nothing-like-this"})]


def measure_inbox(store, n: int, warmup: int) -> list[dict]:
    """The inbox's free text on the same database (its tasks: one per running instance)."""
    from engine import access, inbox
    from engine.inbox import InboxQuery

    now = datetime.now(timezone.utc)
    with store.read() as session:
        who = access.person(session, "dm.zhou")
    results = []
    for label, args in INBOX_QUERIES:
        query = InboxQuery.from_args(args)

        def once():
            with store.read() as session:
                return inbox.search(session, who, query, now)
        for _ in range(warmup):
            page = once()
        times = []
        for _ in range(n):
            t = time.perf_counter()
            page = once()
            times.append((time.perf_counter() - t) * 1000)
        row = {"who": "dm.zhou", "query": label, "total": page.total, "rows": len(page.tasks),
               "p50": round(statistics.median(times), 1), "p95": round(pct(times, 0.95), 1),
               "max": round(max(times), 1)}
        results.append(row)
        log(f"  {label:<55} total {page.total:>6}  p50 {row['p50']:>6.1f}  p95 {row['p95']:>6.1f}  max {row['max']:>6.1f}")
    return results


def explain(store, who, query, now) -> list[str]:
    from sqlalchemy import func, select

    from engine import instances
    with store.read() as session:
        ids = instances.membership_ids(session, who, query, now)
    _scope, where = instances.conditions(who, query, now, ids=ids, sqlite=store.is_sqlite)
    statement = (select(instances._I.c.id).where(*where)
                 .order_by(*instances._order(query.sort, not query.desc)).limit(query.per_page))
    count = select(func.count()).select_from(instances._I).where(*where)
    out = []
    with store.engine.connect() as conn:
        for s in (count, statement):
            compiled = s.compile(conn, compile_kwargs={"render_postcompile": True})
            prefix = "EXPLAIN QUERY PLAN " if store.is_sqlite else "EXPLAIN (ANALYZE, BUFFERS) "
            rows = conn.exec_driver_sql(prefix + str(compiled), compiled.params if not store.is_sqlite
                                        else tuple(compiled.params[k] for k in compiled.positiontup))
            out += [" ".join(str(c) for c in r) for r in rows]
            out.append("--")
    return out


def bench_sqlite(args) -> dict:
    from engine.store import Store, migrate
    tmp = Path(tempfile.mkdtemp(prefix="bpm_instances_"))
    path = Path(args.keep) if args.keep else tmp / "bpm.sqlite3"
    reuse = args.keep and path.exists() and args.reuse
    store = Store(f"sqlite:///{path}")
    try:
        build = None
        if not reuse:
            if path.exists():
                path.unlink()
            migrate(store)
            log(f"sqlite: populating {path} with {args.instances} instances")
            build = populate(store, args.instances, datetime.now(timezone.utc))
            raw = store.engine.raw_connection()
            try:
                raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                raw.close()
        else:
            migrate(store)
        log(f"sqlite: {path.stat().st_size / 2**20:.0f} MiB; {args.requests} runs per query")
        return {"backend": "sqlite", "build": build, "mib": round(path.stat().st_size / 2**20),
                "load": os.getloadavg(), "results": measure(store, args.requests, args.warmup, args.plans)
                + measure_inbox(store, args.requests, args.warmup), "load_after": os.getloadavg()}
    finally:
        store.dispose()
        shutil.rmtree(tmp, ignore_errors=True)


def bench_postgres(args) -> dict:
    from sqlalchemy import create_engine, text

    from engine.store import Store, migrate
    admin_url = args.postgres_url.replace("postgresql://", "postgresql+psycopg://", 1)
    name = args.pg_keep or f"bpm_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
        reuse = bool(exists and args.reuse)
        if exists and not reuse:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        if not reuse:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        version = conn.execute(text("show server_version")).scalar()
    store = Store(admin_url.rsplit("/", 1)[0] + f"/{name}")
    try:
        migrate(store)
        build = None
        if not reuse:
            log(f"postgresql {version}: populating {name} with {args.instances} instances")
            build = populate(store, args.instances, datetime.now(timezone.utc))
            with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")
        return {"backend": "postgresql", "server": version, "build": build, "load": os.getloadavg(),
                "results": measure(store, args.requests, args.warmup, args.plans)
                + measure_inbox(store, args.requests, args.warmup), "load_after": os.getloadavg()}
    finally:
        store.dispose()
        if not args.pg_keep:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def print_table(r: dict) -> None:
    print(f"\n{r['backend']}{' ' + r['server'] if r.get('server') else ''}: {r.get('build')}; "
          f"load average before {r['load'][0]:.1f}, after {r['load_after'][0]:.1f} (2 CPUs)")
    print("| who | query | total | p50 | p95 | max |\n|---|---|---|---|---|---|")
    for row in r["results"]:
        mark = "**" if row["p95"] <= TARGET_MS else ""
        print(f"| {row['who']} | {row['query']} | {row['total']:,} | {row['p50']} | {mark}{row['p95']}{mark} | {row['max']} |")
    for row in r["results"]:
        if "plan" in row:
            print(f"\nplan: {row['query']}\n  " + "\n  ".join(row["plan"]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--postgres-url", default=POSTGRES_ADMIN)
    parser.add_argument("--keep", metavar="FILE", help="SQLite: build the database in FILE and keep it")
    parser.add_argument("--pg-keep", metavar="NAME", help="PostgreSQL: build the database NAME and keep it")
    parser.add_argument("--reuse", action="store_true", help="measure the --keep FILE / --pg-keep NAME again, not rebuilt")
    parser.add_argument("--plans", action="store_true", help="the plan of every query, not only the slow ones'")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = []
    if args.backend in ("sqlite", "both"):
        results.append(bench_sqlite(args))
    if args.backend in ("postgresql", "both"):
        results.append(bench_postgres(args))
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    else:
        for r in results:
            print_table(r)


if __name__ == "__main__":
    main()
