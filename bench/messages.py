"""Benchmark: one `payment_received` delivery with 17, 1,007 and 10,007 order_to_settlement
instances waiting for it, before (another git revision, `main` by default) and after (this tree),
on SQLite and on PostgreSQL, in one run (issue 12, item 3; target ≤ 5 ms with 10,000 waiting).

Each (code, database) pair runs in its own interpreter with that code first on sys.path: the
"before" code is `git archive REF` unpacked in a temporary folder. Per pair:

- a fresh database (SQLite file; PostgreSQL: a throw-away database, ANALYZE after the bulk load),
  migrated by that code, demo organisation and credit list seeded, bpmn/ deployed;
- 17 real orders (one the template of the copies, never paid; credit A customer, phone order)
  driven to the payment wait: start, approve_order_dm, confirm_deposit, schedule_production,
  ship_goods (5 commands each);
- for 1,007 and 10,007: copies made with SQL of one real waiting instance — its instance row
  (own id, own order number as business key), its message_wait row and, where the schema has
  them, its message_key rows (the order number changed). A copy is never the one the message
  is for; the code before restores every copy to compare its data, the code after looks it up;
- K deliveries per size (default 7), each to the oldest real waiting order, as the receipts page
  sends it (fin.chu, balance amount, order_no correlation, a request id). Only `Runtime.message`
  is timed; after each delivery one more real order is driven to the wait (not timed), so the
  count of waiting instances is the size at every delivery. Restores per delivery are counted
  through `engine.state.load_state`; "finding" is the delivery minus its command
  (`Runtime._unit_of_work`); after only, the lookup alone (`_waiting_for`, median of 200).

Reports median, fastest and slowest ms per delivery and restores per delivery. The machine is
shared: take the median, and compare before and after from the same run.

Usage: .venv/bin/python bench/messages.py [--before main] [--deliveries 7] [--sizes 17,1007,10007]
           [--postgres postgresql://postgres@127.0.0.1:5432/test] [--json]
Results: docs/benchmarks.md, "Messages by index (issue 12, item 3)".
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from io import BytesIO
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
# Run as a script, this folder comes first on sys.path and its processes.py would hide the
# project's `processes` package; the code measured comes from PYTHONPATH (see main).
sys.path[:] = [p for p in sys.path if Path(p or os.getcwd()).resolve() != BENCH]
T0 = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)
CUSTOMER, AMOUNT = "C-A01", 120000
TARGET_MS = 5.0
# user task before the payment wait -> (who completes it, its data from the instance's data)
STEPS = {
    "approve_order_dm": ("dm.zhou", lambda d: {"decision": "approve"}),
    "confirm_deposit": ("fin.chu", lambda d: {"deposit_received": d["deposit_required"],
                                              "received_on": "2026-11-24", "voucher_no": "BK-1124-07"}),
    "schedule_production": ("prod.jiang", lambda d: {"work_order_no": "WO-2611-31", "planned_start": "2026-11-25",
                                                     "planned_finish": "2026-12-08"}),
    "ship_goods": ("wh.wei", lambda d: {"shipping_list": [{"line": 1, "quantity": 200}],
                                        "carrier": "德邦物流", "tracking_no": "DB88230017",
                                        "shipped_on": "2026-12-09"}),
}


# === one (code, database) pair, in its own interpreter ==========================================

def worker(code: Path, url: str, sizes: list[int], deliveries: int) -> dict:
    from sqlalchemy import func, inspect, select

    import engine
    from engine import access, credit, state, versions
    if Path(engine.__file__).resolve().parent != (code / "engine").resolve():
        raise SystemExit(f"measuring {engine.__file__}, not the code in {code}")
    from engine.runtime import Runtime
    from engine.store import Instance, MessageWait, Store, migrate
    from processes import LOOKUPS, SERVICES, customers

    store = Store(url)
    migrate(store)
    with store.write() as session:
        access.seed_demo(session)
        credit.seed(session, customers.DEMO_CREDIT_LIST, T0)
    versions.deploy(store, [code / "bpmn"], actor="design.yang", at=T0)
    rt = Runtime(store, SERVICES, lookups=LOOKUPS)
    c = customers.CUSTOMERS[CUSTOMER]
    start_data = {"customer": CUSTOMER, "contact": c["contact"], "order_source": "phone",
                  "lines": [{"product": "芝麻灰花岗岩板", "spec": "600x600x20", "quantity": 200,
                             "unit_price": AMOUNT / 200}],
                  "delivery_address": c["address"], "delivery_date": "2026-12-20"}
    clock = {"at": T0}

    def tick(minutes: int = 1) -> datetime:
        clock["at"] += timedelta(minutes=minutes)
        return clock["at"]

    def waiting_order() -> dict:
        """A real order driven to the payment wait; its id and data."""
        view = rt.start("order_to_settlement", "rep.wang", start_data, at=tick())
        while view.tasks:
            task = view.tasks[0]
            user, data = STEPS[task.element_id]
            view = rt.complete(task.id, user, data(view.data), at=tick(60))
        if not any(w.message == "payment_received" for w in _waits(store, MessageWait, view.id)):
            raise SystemExit(f"order {view.id} does not wait for its payment")
        return {"id": view.id, "data": view.data}

    # The copies are made of `template`, which no payment is sent to: in the code before, a copy's
    # data (the template's) would match the template's order number too.
    template = waiting_order()
    real = [waiting_order() for _ in range(min(sizes) - 1)]
    tables = set(inspect(store.engine).get_table_names())
    copies = {"n": 0}

    def waiting_count() -> int:
        with store.read() as s:
            return s.scalar(select(func.count(func.distinct(MessageWait.instance_id)))
                            .where(MessageWait.message == "payment_received"))

    def top_up(size: int) -> None:
        missing = size - waiting_count()
        if missing > 0:
            _copy(store, template["id"], missing, copies, "message_key" in tables, Instance, MessageWait)
            if not store.is_sqlite:
                with store.engine.begin() as conn:
                    conn.exec_driver_sql("ANALYZE")

    restores = {"n": 0}
    load_state = state.load_state

    def counted(*args, **kwargs):
        restores["n"] += 1
        return load_state(*args, **kwargs)
    state.load_state = counted

    # The command itself (restore the instance, run its steps, write state, log and projection) is
    # `_unit_of_work`; what `message` spends outside it is finding the instance.
    command_s = {"s": 0.0}
    unit_of_work = rt._unit_of_work

    def timed_unit_of_work(*args, **kwargs):
        began = time.perf_counter()
        try:
            return unit_of_work(*args, **kwargs)
        finally:
            command_s["s"] += time.perf_counter() - began
    rt._unit_of_work = timed_unit_of_work

    def deliver(order: dict) -> list[str]:
        payload = {"order_no": order["data"]["order_no"], "amount": order["data"]["balance"],
                   "voucher": "BK-1209-88", "received_on": "2026-11-25"}
        return rt.message("payment_received", payload, {"order_no": payload["order_no"]},
                          actor="fin.chu", at=tick(), request_id=str(uuid.uuid4()))

    # Warm-up, not timed: the first message of a process reads every deployed definition once
    # (engine.runtime.loaded_definition's cache) and compiles its statements.
    state.load_state = load_state
    deliver(real.pop(0))
    real.append(waiting_order())
    state.load_state = counted

    results = []
    for size in sizes:
        top_up(size)
        times, finding, counts = [], [], []
        for _ in range(deliveries):
            if waiting_count() != size:
                raise SystemExit(f"{waiting_count()} waiting, expected {size}")
            order = real.pop(0)
            restores["n"], command_s["s"] = 0, 0.0
            profile = None
            if os.environ.get("BENCH_MESSAGES_PROFILE"):
                import cProfile
                profile = cProfile.Profile()
                profile.enable()
            began = time.perf_counter()
            delivered = deliver(order)
            times.append((time.perf_counter() - began) * 1000)
            finding.append(times[-1] - command_s["s"] * 1000)
            if profile is not None:
                import pstats
                profile.disable()
                pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(30)
            counts.append(restores["n"])
            if delivered != [order["id"]]:
                raise SystemExit(f"the payment for {order['id']} reached {delivered}")
            state.load_state = load_state
            real.append(waiting_order())
            state.load_state = counted
        lookup = _lookup_ms(store, real[0])
        results.append({"lookup_ms": lookup, "waiting": size, "deliveries": deliveries,
                        "median_ms": round(statistics.median(times), 2),
                        "min_ms": round(min(times), 2), "max_ms": round(max(times), 2),
                        "find_median_ms": round(statistics.median(finding), 2),
                        "find_min_ms": round(min(finding), 2), "find_max_ms": round(max(finding), 2),
                        "restores": statistics.median(counts)})
    store.dispose()
    return {"results": results, "schema_has_message_key": "message_key" in tables}


def _lookup_ms(store, order: dict, repeat: int = 200) -> float | None:
    """Median ms of the lookup alone (engine.runtime._waiting_for, in one open read), `repeat`
    times for one real waiting order; None for code without it (before)."""
    from sqlalchemy import select
    from engine import runtime
    if not hasattr(runtime, "_waiting_for"):
        return None
    correlation = {"order_no": order["data"]["order_no"]}
    times = []
    with store.read() as session:
        rules = {d: rule for d in session.scalars(select(runtime._DEF.c.id))
                 if (rule := runtime.loaded_definition(session, d).messages.get("payment_received"))}
        for _ in range(repeat):
            began = time.perf_counter()
            found = runtime._waiting_for(session, "payment_received", correlation, rules, only_these=True)
            times.append((time.perf_counter() - began) * 1000)
        if [f.instance_id for f in found] != [order["id"]]:
            raise SystemExit(f"the lookup found {found}, not {order['id']}")
    return round(statistics.median(times), 3)


def _waits(store, MessageWait, instance_id):
    from sqlalchemy import select
    with store.read() as s:
        return list(s.scalars(select(MessageWait).where(MessageWait.instance_id == instance_id)))


def _copy(store, template_id: str, count: int, copies: dict, keyed: bool, Instance, MessageWait) -> None:
    """`count` copies of a waiting instance, each with its own ids and order number (business key
    and, after, its message_key rows); the state stays the template's."""
    from sqlalchemy import MetaData, Table, select
    i_, m_ = Instance.__table__, MessageWait.__table__
    with store.engine.begin() as conn:
        k_ = Table("message_key", MetaData(), autoload_with=conn) if keyed else None
        row = dict(conn.execute(select(i_).where(i_.c.id == template_id)).mappings().one())
        waits = [dict(w) for w in conn.execute(select(m_).where(m_.c.instance_id == template_id)).mappings()]
        keys = ([dict(k) for k in conn.execute(select(k_).where(k_.c.instance_id == template_id)).mappings()]
                if keyed else [])
        for chunk in range(0, count, 2000):
            instances, wait_rows, key_rows = [], [], []
            for _ in range(chunk, min(count, chunk + 2000)):
                copies["n"] += 1
                instance_id, order_no = str(uuid.uuid4()), f"SO-COPY-{copies['n']:06d}"
                instances.append({**row, "id": instance_id, "business_key": order_no})
                ids = {w["id"]: str(uuid.uuid4()) for w in waits}
                wait_rows += [{**w, "id": ids[w["id"]], "instance_id": instance_id} for w in waits]
                key_rows += [{**k, "wait_id": ids[k["wait_id"]], "instance_id": instance_id,
                              "value": order_no if k["key"] == "order_no" else k["value"]} for k in keys]
            conn.execute(i_.insert(), instances)
            conn.execute(m_.insert(), wait_rows)
            if key_rows:
                conn.execute(k_.insert(), key_rows)


# === the driver ================================================================================

def _tree(ref: str, into: Path) -> Path:
    """The files of git revision `ref` (bench/, engine/, processes/, bpmn/...), unpacked."""
    data = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into)
    return into


def _database(kind: str, postgres: str | None, folder: Path, label: str):
    if kind == "sqlite":
        return f"sqlite:///{folder / (label + '.sqlite3')}", None
    from sqlalchemy import create_engine, text
    admin_url = postgres.replace("postgresql://", "postgresql+psycopg://", 1)
    name = f"bpm_bench_msg_{uuid.uuid4().hex[:8]}"
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
    parser.add_argument("--before", default="main", help="git revision measured as 'before' (default main)")
    parser.add_argument("--deliveries", type=int, default=7, help="timed deliveries per size")
    parser.add_argument("--sizes", default="17,1007,10007")
    parser.add_argument("--postgres", default=os.environ.get("BPM_TEST_POSTGRES_URL"),
                        help="PostgreSQL server URL (a throw-away database is made there)")
    parser.add_argument("--only-after", action="store_true",
                        help="measure this tree only (a quick check; the comparison needs both)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", nargs=3, metavar=("CODE", "URL", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.worker:
        code, url, out = args.worker
        Path(out).write_text(json.dumps(worker(Path(code), url, sizes, args.deliveries)))
        return 0

    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    before = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.before], capture_output=True,
                            text=True, check=True).stdout.strip()
    kinds = ["sqlite"] + (["postgresql"] if args.postgres else [])
    report = {"before": f"{args.before} ({before})", "after": f"this tree (HEAD {head}, with its changes)",
              "sizes": sizes, "deliveries": args.deliveries, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
              "load_before": os.getloadavg(), "runs": {}}
    with tempfile.TemporaryDirectory(prefix="bench-messages-") as tmp:
        folder = Path(tmp)
        trees = {"after": ROOT} if args.only_after else {"before": _tree(args.before, folder / "before"),
                                                          "after": ROOT}
        for kind in kinds:
            for label, tree in trees.items():
                url, drop = _database(kind, args.postgres, folder, label)
                out = folder / f"{kind}-{label}.json"
                env = dict(os.environ, PYTHONPATH=str(tree))
                began = time.perf_counter()
                try:
                    subprocess.run([sys.executable, str(BENCH / "messages.py"), "--sizes", args.sizes,
                                    "--deliveries", str(args.deliveries),
                                    "--worker", str(tree), url, str(out)], check=True, env=env, cwd=tree)
                finally:
                    if drop:
                        drop()
                result = json.loads(out.read_text())
                result["seconds"] = round(time.perf_counter() - began, 1)
                report["runs"][f"{kind}/{label}"] = result
                if not args.json:
                    print(f"{kind:10} {label:6} done in {result['seconds']} s", file=sys.stderr)
    report["load_after"] = os.getloadavg()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"before = {report['before']}; after = {report['after']}; {args.deliveries} deliveries per size; "
          f"ms per Runtime.message, median (fastest–slowest): whole delivery, and finding the instance "
          f"(the delivery without the command it runs); restores per delivery; after: lookup alone "
          f"(engine.runtime._waiting_for, median of 200 in one read, ms)")
    print(f"{'database':10} {'waiting':>7} | {'before: delivery':>22} {'finding':>22} {'restores':>8} | "
          f"{'after: delivery':>22} {'finding':>20} {'restores':>8} {'lookup':>7}")

    def cell(r, what):
        if r is None:
            return "-"
        return f"{r[what + 'median_ms']:.1f} ({r[what + 'min_ms']:.1f}–{r[what + 'max_ms']:.1f})"
    for kind in kinds:
        a = report["runs"][f"{kind}/after"]["results"]
        b = report["runs"][f"{kind}/before"]["results"] if not args.only_after else [None] * len(a)
        for rb, ra in zip(b, a):
            print(f"{kind:10} {ra['waiting']:>7,} | {cell(rb, ''):>22} {cell(rb, 'find_'):>22} "
                  f"{rb['restores'] if rb else '-':>8} | "
                  f"{cell(ra, ''):>22} {cell(ra, 'find_'):>20} {ra['restores']:>8} {ra['lookup_ms']:>7}")
    print(f"target: ≤ {TARGET_MS} ms with 10,000 waiting; load average {report['load_before'][0]:.1f} before, "
          f"{report['load_after'][0]:.1f} after ({os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
