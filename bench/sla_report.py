"""Benchmark: the SLA breach report (engine/reports.py) at 10,000 breaches.

A fresh database (SQLite in a temp dir; PostgreSQL with --postgres URL, in a throw-away database)
is migrated, seeded with the demo organisation and the processes of bpmn/, then filled with
synthetic rows written straight to the tables, as the engine writes them: N/2 contract_review
instances with two breaches each (N breaches), held by the demo approvers, due over twelve months;
80 % of the breached tasks completed by a log entry, 10 % still open (a human_task row), 10 %
withdrawn; and 20 other log entries per instance, so the completion lookup searches a log of
realistic size. Then each grouping of the report (`sla_groups`, all filters off, and once with a
date range and an office) and the drill-down of the largest person group (`sla_breaches`, at most
1,000 rows) is run R times; the median and p95 are printed in milliseconds.

Usage: .venv/bin/python bench/sla_report.py [--breaches N] [--rounds R] [--postgres URL] [--json]
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, insert, select, text  # noqa: E402

from engine import access, reports, versions  # noqa: E402
from engine.store import (Definition, HumanTask, Instance, LogEntry, SlaBreach, Store,  # noqa: E402
                          migrate)

T0 = datetime(2026, 1, 1, 1, 0, tzinfo=timezone.utc)
HOLDERS = ["dm.zhou", "vp.qian", "gmo.tang", "om.wu", "om.lin", "rm.zheng", "fin.chu", None]
STEPS = ["dm_review", "vp_approval", "gm_approval", "go_approval", "file_contract", "revise"]


def fill(store: Store, breaches: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    with store.read() as s:
        definition_id = s.scalar(select(Definition.id).where(Definition.process_id == "contract_review"))
    instances, logs, rows, tasks = [], [], [], []
    for n in range(breaches // 2):
        instance_id = str(uuid.UUID(int=rng.getrandbits(128)))
        started = T0 + timedelta(minutes=rng.randrange(0, 365 * 24 * 60))
        instances.append({"id": instance_id, "definition_id": definition_id, "process_id": "contract_review",
                          "status": "running", "business_key": f"HT-{n:06d}", "customer": f"C-{n % 300:03d}",
                          "amount": 100000.0, "initiator": "rep.wang", "state": "", "state_hash": "",
                          "revision": 22, "log_hash": "", "created_at": started, "updated_at": started,
                          "completed_at": None})
        seq = 0
        for k in range(2):
            task_id = str(uuid.UUID(int=rng.getrandbits(128)))
            due = started + timedelta(hours=4 + 10 * k)
            rows.append({"instance_id": instance_id, "task_id": task_id, "element_id": STEPS[(n + k) % len(STEPS)],
                         "holder": rng.choice(HOLDERS), "escalated_to": "gm.zhao", "due_at": due,
                         "breached_at": due + timedelta(minutes=1)})
            fate = rng.random()
            if fate < 0.8:
                seq += 1
                logs.append({"instance_id": instance_id, "seq": seq, "at": due + timedelta(minutes=rng.randrange(5, 2000)),
                             "actor": "gm.zhao", "command": "complete", "task_id": task_id, "input": {},
                             "state_hash": "", "prev_hash": "", "hash": ""})
            elif fate < 0.9:
                tasks.append({"id": task_id, "instance_id": instance_id, "process_id": "contract_review",
                              "element_id": "dm_review", "name": "业务部经理审核 / Department manager review",
                              "role": "dept_manager", "assignee": "gm.zhao", "office_scope": "", "barred": "",
                              "created_at": started, "due_at": due})
        for _ in range(20):
            seq += 1
            logs.append({"instance_id": instance_id, "seq": seq, "at": started, "actor": "rep.wang",
                         "command": rng.choice(["claim", "reply", "complete"]),
                         "task_id": str(uuid.UUID(int=rng.getrandbits(128))), "input": {},
                         "state_hash": "", "prev_hash": "", "hash": ""})
    with store.engine.begin() as conn:
        conn.execute(insert(Instance.__table__), instances)
        conn.execute(insert(SlaBreach.__table__), rows)
        conn.execute(insert(HumanTask.__table__), tasks)
        for start in range(0, len(logs), 20000):
            conn.execute(insert(LogEntry.__table__), logs[start:start + 20000])
        if store.engine.dialect.name == "postgresql":
            conn.execute(text("ANALYZE"))


def timed(call, rounds: int) -> dict:
    call()  # warm: the definitions' names are cached after the first call
    spent = []
    for _ in range(rounds):
        began = time.perf_counter()
        call()
        spent.append((time.perf_counter() - began) * 1000)
    spent.sort()
    return {"median_ms": round(statistics.median(spent), 2),
            "p95_ms": round(spent[min(len(spent) - 1, int(0.95 * len(spent)))], 2)}


def measure(store: Store, breaches: int, rounds: int) -> dict:
    with store.write() as s:
        access.seed_demo(s)
    versions.deploy(store, [ROOT / "bpmn"], actor="design.yang", at=T0 - timedelta(days=1))
    began = time.perf_counter()
    fill(store, breaches)
    filled = time.perf_counter() - began
    now = T0 + timedelta(days=400)
    results = {}
    with store.read() as session:
        for by in reports.GROUPINGS:
            query = reports.SlaQuery(by=by)
            groups = reports.sla_groups(session, query, now=now)
            assert sum(g["count"] for g in groups) == breaches
            results[f"groups by {by}"] = {**timed(lambda: reports.sla_groups(session, query, now=now), rounds),
                                          "groups": len(groups)}
        narrow = reports.SlaQuery(by="person", office="HQ", since=date(2026, 3, 1), until=date(2026, 5, 31))
        results["groups by person, HQ, three months"] = timed(lambda: reports.sla_groups(session, narrow, now=now),
                                                              rounds)
        top = reports.sla_groups(session, reports.SlaQuery(by="person"), now=now)[0]
        drill = reports.parse_query(top["filters"])
        results[f"breaches of {top['key'][0]} ({top['count']}, 1,000 shown)"] = timed(
            lambda: reports.sla_breaches(session, drill, now=now), rounds)
    return {"backend": store.engine.dialect.name, "breaches": breaches, "fill_s": round(filled, 1),
            "rounds": rounds, "results": results}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--breaches", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--postgres", metavar="URL", help="also on PostgreSQL (a throw-away database is made)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        store = Store(f"sqlite:///{folder}/bench.sqlite3")
        migrate(store)
        runs.append(measure(store, args.breaches, args.rounds))
        store.dispose()
    if args.postgres:
        admin_url = args.postgres.replace("postgresql://", "postgresql+psycopg://", 1)
        name = f"bpm_bench_sla_{uuid.uuid4().hex[:8]}"
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            store = Store(admin_url.rsplit("/", 1)[0] + f"/{name}")
            migrate(store)
            runs.append(measure(store, args.breaches, args.rounds))
            store.dispose()
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    if args.json:
        print(json.dumps(runs, indent=2, ensure_ascii=False))
    else:
        for run in runs:
            print(f"{run['backend']}: {run['breaches']} breaches (filled in {run['fill_s']} s), "
                  f"{run['rounds']} rounds, median / p95 ms")
            for what, r in run["results"].items():
                print(f"  {what:<48} {r['median_ms']:>8.2f} {r['p95_ms']:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
