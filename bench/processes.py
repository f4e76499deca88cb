"""Benchmark: a whole company process through the engine, and the timer worker at scale.

Measured in one run:

1. `order_to_settlement`, straight path of a credit level A customer (C-A01), a phone order: start
   (three service tasks, the credit DMN, a script) -> approve_order_dm (dm.zhou) -> confirm_deposit
   (fin.chu) -> schedule_production (prod.jiang; then the reserve_stock service) -> ship_goods
   (wh.wei; the record_shipment service) -> the `payment_received` message for the balance as
   the receipts page sends it (order_no, amount, voucher, received_on; in (b) by fin.chu with a
   request id), correlated by order_no -> reconcile (fin.chu) and reconcile_rep (rep.wang) -> end: 8 commands.
   The services that publish the "order" business record write to a dict in (a) (`MemoryRecords`)
   and to the business_record table, in the command's transaction, in (b).
   (a) raw SpiffWorkflow in memory, stock `BpmnWorkflowSerializer` (SPIFF_CONFIG, spec and DMN
       embedded): deserialize -> act -> do_engine_steps -> serialize per step; the stock
       `PythonScriptEngine` with a `TaskDataEnvironment` whose `call_service` calls
       `processes.SERVICES` (and `now`/`timedelta` as globals for the scripts);
   (b) the engine on SQLite: `Runtime(store, SERVICES, lookups=LOOKUPS)`, `start`, `complete`,
       `message` with `at=` times a day or weeks apart, as tests/test_processes.py drives it.
   Interleaved rounds, median round, as bench/run.py does (its `Measurement` is reused).

2. The timer worker (`engine.timers`) on a database holding 100,000 waiting timers
   (bench/bpmn/timer_wait.bpmn: a PT4H timer, then a message wait). A few real instances are
   started through the engine; the rest are copies made with SQL (INSERT ... SELECT) of one real
   instance row and its due_timer row, each with a new instance id, new task ids, its own due
   time and order number written into the state (see `TimerDatabase` for why the task ids must
   change), and its state hash recomputed.
   (i)   one `timers.run_once(runtime, now)` pass firing the 1,000 due timers among 100,000;
         then where the time goes per fired timer (wrapped functions, SQL statements);
   (ii)  an empty pass (nothing due) with 10 waiting timers, with 100,000 and with 99,000;
   (iii) lateness: `timers.run_forever` (polling every 0.5 s, real clock) in a worker process
         while 1,000 timers come due at random instants over the next 10 s among 99,000 far in
         the future; per fired timer, (commit time - due time).
   On SQLite each of them twice: on the database as the engine leaves it (the engine never runs
   ANALYZE, so there are no statistics) and after one ANALYZE. With --postgres, also on
   PostgreSQL (ANALYZE after the bulk load), and (iii) with 1 and with 2 worker processes.
   The SQLite run without statistics takes most of the ~25 minutes of a full run.

Usage: .venv/bin/python bench/processes.py [--json] [--seconds S] [--rounds R]
           [--waiting N] [--due N] [--window S] [--interval S]
           [--postgres postgresql://postgres@127.0.0.1:5432/test] [--workers 1,2]
           [--sqlite-variants both|as-deployed|analyze|none] [--lateness-timeout S]
           [--skip-throughput] [--skip-timers]
       .venv/bin/python bench/run.py --all     (bench/run.py, then this script)
Results and how to read them: docs/benchmarks.md, "Processes and the timer worker".
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import importlib.util
import json
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
# Run as `python bench/processes.py`, this file's folder comes first on sys.path and would hide the
# project's `processes` package behind this very file.
sys.path[:] = [p for p in sys.path if Path(p or os.getcwd()).resolve() != BENCH]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _load_base():
    """bench/run.py, which must be imported before anything creates an engine Runtime."""
    if "bench_run" in sys.modules:
        return sys.modules["bench_run"]
    spec = importlib.util.spec_from_file_location("bench_run", BENCH / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = module
    spec.loader.exec_module(module)
    return module


base = _load_base()

from SpiffWorkflow.bpmn import BpmnEvent  # noqa: E402
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine, TaskDataEnvironment  # noqa: E402
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer  # noqa: E402
from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition  # noqa: E402
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow  # noqa: E402
from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser  # noqa: E402
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG  # noqa: E402
from SpiffWorkflow.util.task import TaskState  # noqa: E402
from sqlalchemy import (Column, DateTime, Integer, MetaData, String, Table, Text, bindparam,  # noqa: E402
                        create_engine, event, func, insert, select, text)

from engine import state  # noqa: E402
from processes import LOOKUPS, SERVICES, customers  # noqa: E402

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)  # a Monday, 09:00 in China
ORDER_BPMN = ROOT / "bpmn" / "order_to_settlement.bpmn"
TIMER_BPMN = BENCH / "bpmn" / "timer_wait.bpmn"   # = tests/data/runtime/waiting.bpmn
TARGET_LATENESS_S = 1.0


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def ms(seconds: float, digits: int = 3) -> float:
    return round(seconds * 1000, digits)


# === 1. order_to_settlement =====================================================================

CUSTOMER = "C-A01"
AMOUNT = 120000


def payment(data: dict) -> dict:
    """The balance, as finance records it on the receipts page (web/receipts.py)."""
    return {"order_no": data["order_no"], "amount": data["balance"], "voucher": "BK-1209-88",
            "received_on": "2026-11-25"}  # a day past in (a) and (b): not after today


def order_start_data() -> dict:
    c = customers.CUSTOMERS[CUSTOMER]
    return {"customer": CUSTOMER, "contact": c["contact"], "order_source": "phone",
            "lines": [{"product": "芝麻灰花岗岩板", "spec": "600x600x20", "quantity": 200,
                       "unit_price": AMOUNT / 200}],
            "delivery_address": c["address"], "delivery_date": "2026-12-20"}


# user task -> (who completes it, its data from the instance's data, days after the start)
ORDER_STEPS: dict[str, tuple[str, Callable[[dict], dict], timedelta]] = {
    "approve_order_dm": ("dm.zhou", lambda d: {"decision": "approve"}, timedelta(minutes=30)),
    "confirm_deposit": ("fin.chu", lambda d: {"deposit_received": d["deposit_required"],
                                              "received_on": "2026-11-24", "voucher_no": "BK-1124-07"},
                        timedelta(days=1)),
    "schedule_production": ("prod.jiang", lambda d: {"work_order_no": "WO-2611-31", "planned_start": "2026-11-25",
                                                     "planned_finish": "2026-12-08"},
                            timedelta(days=1, minutes=10)),
    "ship_goods": ("wh.wei", lambda d: {"shipping_list": [{"line": 1, "quantity": 200}],
                                        "carrier": "德邦物流", "tracking_no": "DB88230017",
                                        "shipped_on": "2026-12-09"},
                   timedelta(days=16)),
    "reconcile": ("fin.chu", lambda d: {"confirmed_total": d["paid"], "reconciled_on": "2026-12-09"},
                  timedelta(days=16, hours=4)),
    "reconcile_rep": ("rep.wang", lambda d: {"rep_confirmed_total": d["paid"], "rep_reconciled_on": "2026-12-09"},
                      timedelta(days=16, hours=5)),
}
PAYMENT_AFTER = timedelta(days=16, hours=3)
ORDER_COMMANDS = 8  # start, 4 completes, 1 message, 2 completes
ORDER_EXPECT = {"credit_level": "A", "balance_at": "dispatch", "deposit_required": 36000.0,
                "paid": 120000.0, "balance": 0.0, "dunning_stage": "before_reminder", "confirmed_total": 120000.0,
                "rep_confirmed_total": 120000.0}


def check_order(data: dict, where: str) -> None:
    wrong = {k: data.get(k) for k, v in ORDER_EXPECT.items() if data.get(k) != v}
    if wrong or [p["amount"] for p in data.get("payments", [])] != [36000.0, 84000.0] \
            or not data.get("reservation", {}).get("reserved"):
        raise SystemExit(f"{where}: order_to_settlement ended with unexpected data {wrong or data}")


class ServiceEnvironment(TaskDataEnvironment):
    """SpiffWorkflow's stock environment (plain exec/eval on the task data), plus service calls.

    `PythonScriptEngine.call_service(task, **kwargs)` hands over to `environment.call_service(
    task.data, operation_name=..., operation_params={name: {"value": evaluated, "type": ...}})`;
    the spiff ServiceTask json-loads what comes back into its result variable.
    """

    def __init__(self, services: dict[str, Callable[..., Any]]):
        super().__init__({"now": lambda: datetime.now(timezone.utc), "datetime": datetime,
                          "timedelta": timedelta})
        self.services = services

    def call_service(self, context, operation_name=None, operation_params=None, **kwargs):
        params = {name: p["value"] for name, p in (operation_params or {}).items()}
        with MemoryRecords.installed():
            return json.dumps(self.services[operation_name](**params))


class MemoryRecords:
    """The business records the order chain's services read and publish, kept in a dict: raw
    SpiffWorkflow has no command (engine.records works only inside one)."""
    kept: dict[tuple[str, str], dict] = {}

    @staticmethod
    def publish_record(kind, key, data, ref=None):
        MemoryRecords.kept[(kind, key)] = {"kind": kind, "key": key, "ref": ref, "data": copy.deepcopy(data)}
        return {"kind": kind, "key": key, "ref": ref}

    @staticmethod
    def find(kind, key):
        return copy.deepcopy(MemoryRecords.kept.get((kind, key)))

    @staticmethod
    def referring(kind, ref):
        return [copy.deepcopy(r) for (k, _), r in sorted(MemoryRecords.kept.items()) if k == kind and r["ref"] == ref]

    @staticmethod
    @contextlib.contextmanager
    def installed():
        from processes import order_chain
        engine_records, order_chain.records = order_chain.records, MemoryRecords
        try:
            yield
        finally:
            order_chain.records = engine_records


class RawOrder:
    """(a) the stock loop on the same BPMN (and its DMN files)."""

    def __init__(self):
        parser = SpiffBpmnParser()
        parser.add_bpmn_file(str(ORDER_BPMN))
        parser.add_dmn_files([str(p) for p in sorted((ROOT / "bpmn").glob("*.dmn"))])
        self.spec = parser.get_spec("order_to_settlement")
        self.subprocess_specs = parser.get_subprocess_specs("order_to_settlement")
        self.serializer = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(SPIFF_CONFIG))
        # No database here: the credit level comes from the demo list itself (the engine reads it
        # from the credit list in the command's transaction).
        self.script_engine = PythonScriptEngine(environment=ServiceEnvironment({
            **SERVICES, "credit_level": lambda customer: customers.CUSTOMERS[customer]["credit"] or "unknown"}))
        self.start_data = dict(order_start_data(), initiator="rep.wang")
        self.largest = 0

    def step(self, text: str) -> BpmnWorkflow:
        workflow = self.serializer.deserialize_json(text)
        workflow.script_engine = self.script_engine
        ready = workflow.get_tasks(state=TaskState.READY, manual=True)
        if ready:
            task = ready[0]
            task.set_data(**copy.deepcopy(ORDER_STEPS[task.task_spec.bpmn_id][1](task.data)))
            task.run()
        else:
            waiting = [t for t in workflow.get_tasks(state=TaskState.WAITING)
                       if isinstance(getattr(t.task_spec, "event_definition", None), MessageEventDefinition)
                       and t.task_spec.event_definition.name == "payment_received"]
            if not waiting:
                raise SystemExit("raw SpiffWorkflow: order_to_settlement waits for nothing known")
            workflow.send_event(BpmnEvent(waiting[0].task_spec.event_definition, payload=payment(waiting[0].data)))
        workflow.do_engine_steps()
        return workflow

    def run_instance(self) -> dict:
        workflow = BpmnWorkflow(self.spec, self.subprocess_specs, script_engine=self.script_engine)
        workflow.task_tree.data = copy.deepcopy(self.start_data)
        workflow.do_engine_steps()
        text = self.serializer.serialize_json(workflow)
        commands = 1
        while True:
            workflow = self.step(text)
            text = self.serializer.serialize_json(workflow)
            commands += 1
            self.largest = max(self.largest, len(text.encode()))
            if workflow.is_completed():
                if commands != ORDER_COMMANDS:
                    raise SystemExit(f"raw SpiffWorkflow: {commands} steps, expected {ORDER_COMMANDS}")
                return workflow.last_task.data


class EngineOrder:
    """(b) the engine on a fresh SQLite file: migrated, demo organisation, bpmn/ deployed."""

    def __init__(self, folder: Path):
        from engine import access, versions
        from engine.runtime import Runtime
        from engine.store import HumanTask, Store, migrate

        self.store = Store(f"sqlite:///{folder / 'orders.sqlite3'}")
        migrate(self.store)
        with self.store.write() as session:
            access.seed_demo(session)
            from engine import credit
            credit.seed(session, customers.DEMO_CREDIT_LIST, T0)  # the credit level and lookup read it
        self.deployed = [d.as_json() for d in versions.deploy(self.store, [ROOT / "bpmn"],
                                                               actor="design.yang", at=T0)]
        self.runtime = Runtime(self.store, SERVICES, lookups=LOOKUPS)
        self.start_data = order_start_data()
        ht = HumanTask.__table__
        self._open_task = select(ht.c.id, ht.c.element_id).where(ht.c.instance_id == bindparam("instance_id"))

    def run_instance(self) -> dict:
        rt, at = self.runtime, T0
        view = rt.start("order_to_settlement", "rep.wang", self.start_data, at=at)
        while True:
            if view.tasks:
                task = view.tasks[0]
                user, data, after = ORDER_STEPS[task.element_id]
                view = rt.complete(task.id, user, data(view.data), at=at + after)
                if view.status != "running":
                    return view.data
                continue
            order_no = view.data["order_no"]
            rt.message("payment_received", payment(view.data), {"order_no": order_no}, at=at + PAYMENT_AFTER,
                       actor="fin.chu", request_id=str(uuid.uuid4()))
            # A message returns the instance id only; the next tasks are read as an inbox would.
            with self.store.engine.connect() as conn:
                open_tasks = conn.execute(self._open_task, {"instance_id": view.id}).all()
            paid = dict(view.data, paid=view.data["paid"] + view.data["balance"])
            for task_id, element_id in sorted(open_tasks, key=lambda t: t[1]):
                user, data, after = ORDER_STEPS[element_id]
                view = rt.complete(task_id, user, data(paid), at=at + after)
            if view.status != "completed":
                raise SystemExit(f"engine: order_to_settlement ended {view.status}")
            return view.data

    def state_bytes(self) -> dict:
        with self.store.engine.connect() as conn:
            row = conn.execute(text("SELECT length(CAST(state AS BLOB)), revision FROM instance "
                                    "WHERE process_id = 'order_to_settlement' LIMIT 1")).first()
        return {"completed_state_bytes": row[0], "log_entries": row[1]}

    def close(self) -> None:
        self.store.dispose()


def throughput(args: argparse.Namespace, folder: Path, say) -> dict:
    raw = RawOrder()
    with base.stock_spiffworkflow():
        check_order(raw.run_instance(), "raw SpiffWorkflow")
    engine = EngineOrder(folder)
    try:
        check_order(engine.run_instance(), "engine")
        with base.stock_spiffworkflow():
            check_order(raw.run_instance(), "raw SpiffWorkflow")
        a = base.Measurement(raw.run_instance, stock=True)
        b = base.Measurement(engine.run_instance)
        say("order_to_settlement: warming up ...")
        a.warm_up(args.warmup)
        b.warm_up(args.warmup)
        n_a, n_b = base.instances_per_round(a, args), base.instances_per_round(b, args)
        for r in range(args.rounds):
            say(f"order_to_settlement: round {r + 1}/{args.rounds}: (a) {n_a} raw, (b) {n_b} engine")
            a.round(n_a)
            b.round(n_b)
        fa, fb = a.figures(), b.figures()
        return {"process": "order_to_settlement", "customer": CUSTOMER, "amount": AMOUNT,
                "commands_per_instance": ORDER_COMMANDS, "raw": fa, "engine": fb,
                "ratio_engine_over_raw": round(fb["per_second"] / fa["per_second"], 3),
                "ms_per_command": {"raw": round(fa["ms_per_instance"] / ORDER_COMMANDS, 3),
                                   "engine": round(fb["ms_per_instance"] / ORDER_COMMANDS, 3)},
                "stock_largest_serialization_bytes": raw.largest, **engine.state_bytes(),
                "deployed": engine.deployed}
    finally:
        engine.close()


# === 2. the timer worker ========================================================================

def _copy_table(metadata: MetaData) -> Table:
    return Table("bench_copy", metadata,
                 Column("n", Integer, primary_key=True), Column("instance_id", String(36)),
                 Column("suffix", String(12)), Column("due_at", DateTime(timezone=True)),
                 Column("due_text", String(40)), Column("order_no", String(40)))


def _utc_for(dialect: str, value: datetime) -> datetime:
    return value.replace(tzinfo=None) if dialect == "sqlite" else value  # as engine.store.UTCDateTime


def _count(url: str, sql: str, **params) -> int:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()
    finally:
        engine.dispose()


@dataclass
class TimerDatabase:
    """A database of waiting timers: `real` instances started through the engine, the rest copies.

    Why the copies get new task ids: the projections are keyed by task id (due_timer.id,
    message_wait.id, human_task.id are primary keys), and a copy keeps its state's task tree. The
    timer's successor, the `payment` message catch, is already in the state (FUTURE) with an id
    from the original instance, so two verbatim copies would both insert that id into
    message_wait when fired, and the second would fail. New task ids are the original's first 24
    characters and the copy's 12 hex digits; ids of tasks created later come from the id counter
    (uuid5 of the new instance id), as for any instance. The copies have no log entries (their
    log_hash is the original's head), so they fire and run like real instances but would not pass
    an audit of their chain.
    """
    url: str
    waiting: int
    due: int
    now: datetime                     # the simulated "now" that (i) and (ii) use
    real: int = 10
    seed: int = 1
    due_times: dict[str, datetime] = field(default_factory=dict)   # instance id -> due (due ones)
    build: dict = field(default_factory=dict)

    def create(self, say) -> None:
        from engine import access, versions
        from engine.runtime import Runtime
        from engine.store import Store, migrate

        began = time.perf_counter()
        rng = random.Random(self.seed)
        store = Store(self.url)
        try:
            migrate(store)
            with store.write() as session:
                access.seed_demo(session)
            versions.deploy(store, [TIMER_BPMN], actor="design.yang", at=self.now - timedelta(days=1))
            runtime = Runtime(store, SERVICES)
            # Due times: `due` of them within the 4 hours before `now`, the rest 1 to 30 days after.
            future = [self.now + timedelta(seconds=rng.uniform(86400, 30 * 86400))
                      for _ in range(self.waiting - self.due)]
            due = [self.now - timedelta(seconds=rng.uniform(1, 4 * 3600)) for _ in range(self.due)]
            # Real instances take future slots: (ii) at 10 waiting is all real, and the due ones
            # are copies, whose due times the bench writes (and moves for (iii)).
            real_ids = []
            for i, due_at in enumerate(future[:self.real]):
                view = runtime.start("waiting", "fin.chu", {"order_no": f"SO-BENCH-R{i:04d}"},
                                     at=due_at - timedelta(hours=4))
                real_ids.append(view.id)
            started = time.perf_counter() - began
            copies = [(d, True) for d in due] + [(d, False) for d in future[self.real:]]
            if copies:
                self._copy(store, real_ids[0], copies)
            copied = time.perf_counter() - began - started
            analyzed = store.engine.dialect.name == "postgresql"
            if analyzed:  # what autovacuum does within a minute of such a bulk load
                with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.execute(text("ANALYZE"))
            with store.engine.connect() as conn:
                counts = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar()
                          for t in ("instance", "due_timer", "message_wait", "log_entry")}
                counts["due_before_now"] = conn.execute(
                    text("SELECT count(*) FROM due_timer WHERE due_at < :now"),
                    {"now": _utc_for(store.engine.dialect.name, self.now)}).scalar()
            if counts["due_timer"] != self.waiting or counts["due_before_now"] != self.due:
                raise SystemExit(f"timer database: expected {self.waiting} waiting, {self.due} due; got {counts}")
            self.build = {"seconds": round(time.perf_counter() - began, 2), "real_instances": self.real,
                          "real_start_seconds": round(started, 2), "sql_copy_seconds": round(copied, 2),
                          "copies": len(copies), "counts": counts, "analyzed_after_load": analyzed}
            say(f"  built {self.waiting} waiting ({self.due} due) in {self.build['seconds']} s "
                f"({self.real} started, {len(copies)} copied with SQL in {self.build['sql_copy_seconds']} s)")
        finally:
            store.dispose()

    def _copy(self, store, template_id: str, copies: list[tuple[datetime, bool]]) -> None:
        dialect = store.engine.dialect.name
        with store.engine.connect() as conn:
            row = conn.execute(text("SELECT state FROM instance WHERE id = :id"), {"id": template_id}).one()
        dct = json.loads(row.state)
        tasks = dct["workflow"]["tasks"]
        timer_task = next(t for t in tasks.values() if t["task_spec"] == "cool_off")
        event_value = timer_task["internal_data"]["event_value"]
        order_no = tasks[dct["workflow"]["root"]]["data"]["order_no"]
        for needle in [f'"event_value":"{event_value}"', f'"order_no":"{order_no}"']:
            if row.state.count(needle) != 1:
                raise SystemExit(f"template state: {needle} found {row.state.count(needle)} times")
        metadata = MetaData()
        copy_table = _copy_table(metadata)
        rows = []
        for n, (due_at, is_due) in enumerate(copies, start=1):
            suffix = f"{n:012x}"
            instance_id = f"b0000000-0000-4000-8000-{suffix}"
            rows.append({"n": n, "instance_id": instance_id, "suffix": suffix,
                         "due_at": _utc_for(dialect, due_at), "due_text": due_at.isoformat(),
                         "order_no": f"SO-BENCH-{suffix}"})
            if is_due:
                self.due_times[instance_id] = due_at
        # The state with every task id, the timer's due time and the order number replaced.
        expr, params = "t.state", {"template": template_id}
        for i, task_id in enumerate(tasks):
            params[f"old{i}"], params[f"pre{i}"] = task_id, task_id[:24]
            expr = f"replace({expr}, :old{i}, :pre{i} || c.suffix)"
        params["ev"] = f'"event_value":"{event_value}"'
        params["on"] = f'"order_no":"{order_no}"'
        expr = (f"replace(replace({expr}, :ev, '\"event_value\":\"' || c.due_text || '\"'), "
                f":on, '\"order_no\":\"' || c.order_no || '\"')")
        sha = ("encode(sha256(convert_to(s.state, 'UTF8')), 'hex')" if dialect == "postgresql"
               else "bench_sha256(s.state)")
        params["timer_pre"] = timer_task["id"][:24]
        columns = ["definition_id", "process_id", "status", "initiator", "revision", "log_hash",
                   "created_at", "updated_at", "completed_at", "customer", "amount"]
        with store.engine.begin() as conn:
            if dialect == "sqlite":
                conn.connection.dbapi_connection.create_function(
                    "bench_sha256", 1, lambda s: state.digest(s), deterministic=True)
            metadata.create_all(conn)
            conn.execute(insert(copy_table), rows)
            conn.execute(text(
                f"INSERT INTO instance (id, business_key, state, state_hash, {', '.join(columns)}) "
                f"SELECT s.id, s.order_no, s.state, {sha}, {', '.join(columns)} FROM ("
                f"  SELECT c.instance_id AS id, c.order_no, {expr} AS state, "
                f"{', '.join('t.' + c for c in columns)}"
                f"  FROM bench_copy c CROSS JOIN instance t WHERE t.id = :template) s"), params)
            conn.execute(text(
                "INSERT INTO due_timer (id, instance_id, element_id, due_at, kind, task_id) "
                "SELECT :timer_pre || c.suffix, c.instance_id, 'cool_off', c.due_at, 'timer', NULL "
                "FROM bench_copy c"), params)
            copy_table.drop(conn)


def arm(url: str, current: dict[str, datetime], start: datetime, window: float,
        rng: random.Random) -> dict[str, datetime]:
    """Move the timers of `current` (instance id -> its due time in the database) to random
    instants in [start, start + window), in the state and in due_timer; returns the new times."""
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    dialect = engine.dialect.name
    moved, updates = {}, []
    for instance_id, old in current.items():
        new = start + timedelta(seconds=rng.uniform(0, window))
        moved[instance_id] = new
        updates.append({"id": instance_id, "old": f'"event_value":"{old.isoformat()}"',
                        "new": f'"event_value":"{new.isoformat()}"', "due_at": _utc_for(dialect, new)})
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE instance SET state = replace(state, :old, :new) WHERE id = :id"), updates)
            conn.execute(text("UPDATE due_timer SET due_at = :due_at WHERE instance_id = :id"), updates)
            hashes = [{"id": r.id, "h": state.digest(r.state)} for r in conn.execute(
                text("SELECT id, state FROM instance WHERE id IN :ids").bindparams(
                    bindparam("ids", expanding=True)), {"ids": list(moved)})]
            conn.execute(text("UPDATE instance SET state_hash = :h WHERE id = :id"), hashes)
    finally:
        engine.dispose()
    return moved


# --- clones of a built database ------------------------------------------------------------------

class SqliteFiles:
    """Databases are files: a built one is copied for each measurement that changes it."""
    backend = "sqlite"

    def __init__(self, folder: str):
        self.folder, self.n = folder, 0

    def new(self) -> str:
        self.n += 1
        return f"sqlite:///{self.folder}/timers{self.n}.sqlite3"

    def clone(self, url: str, analyze: bool = False) -> str:
        source = url.split("sqlite:///", 1)[1]
        engine = create_engine(url)
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        engine.dispose()
        target = self.new()
        shutil.copyfile(source, target.split("sqlite:///", 1)[1])
        if analyze:
            engine = create_engine(target)
            with engine.connect() as conn:
                conn.exec_driver_sql("ANALYZE")
                conn.commit()
            engine.dispose()
        return target

    def drop(self, url: str) -> None:
        path = url.split("sqlite:///", 1)[1]
        for suffix in ("", "-wal", "-shm"):
            Path(path + suffix).unlink(missing_ok=True)

    def server(self) -> str:
        import sqlite3
        return sqlite3.sqlite_version


class PostgresDatabases:
    """Databases bpm_bench_<random> of our own on the server; clones via CREATE DATABASE ... TEMPLATE."""
    backend = "postgresql"

    def __init__(self, url: str):
        self.admin_url = url.replace("postgresql://", "postgresql+psycopg://", 1)
        self.admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        self.created: list[str] = []

    def _create(self, template: str | None = None) -> str:
        name = f"bpm_bench_{uuid.uuid4().hex[:10]}"
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
        self.created.append(name)
        return self.admin_url.rsplit("/", 1)[0] + f"/{name}"

    def new(self) -> str:
        return self._create()

    def clone(self, url: str, analyze: bool = False) -> str:
        return self._create(template=url.rsplit("/", 1)[1])  # statistics are copied with it

    def drop(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if name in self.created:
            self.created.remove(name)

    def drop_all(self) -> None:
        with self.admin.connect() as conn:
            for name in self.created:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.created.clear()
        self.admin.dispose()

    def server(self) -> str:
        with self.admin.connect() as conn:
            return conn.execute(text("SHOW server_version")).scalar()


# --- measuring passes ------------------------------------------------------------------------

def _runtime(url: str):
    from engine.runtime import Runtime
    from engine.store import Store
    store = Store(url)
    return store, Runtime(store, SERVICES, lookups=LOOKUPS)


def _pick_plan(store, runtime, now: datetime) -> list[str]:
    """The query plan of the worker's pick (its SQL captured from one pass)."""
    from engine import timers
    captured = []

    def grab(conn, cursor, statement, parameters, context, executemany):
        if "due_timer" in statement and "ORDER BY" in statement and not captured:
            captured.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", grab)
    try:
        timers.run_once(runtime, now)
    finally:
        event.remove(store.engine, "before_cursor_execute", grab)
    if not captured:
        return []
    statement, parameters = captured[0]
    raw = store.engine.raw_connection()
    try:
        cursor = raw.cursor()
        if store.is_sqlite:
            cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters)
            lines = [r[-1] for r in cursor.fetchall()]
        else:
            cursor.execute("EXPLAIN (COSTS OFF) " + statement, parameters)
            lines = [r[0].strip() for r in cursor.fetchall()]
        raw.rollback()
        return lines
    finally:
        raw.close()


def empty_pass(url: str, now: datetime, seconds: float) -> dict:
    """Median, p95 and max ms of `timers.run_once` when nothing is due before `now`."""
    from engine import timers
    store, runtime = _runtime(url)
    try:
        for _ in range(5):
            if timers.run_once(runtime, now).fired:
                raise SystemExit("empty pass: something was due")
        samples = []
        gc.collect()
        began = time.perf_counter()
        while len(samples) < 20 or time.perf_counter() - began < seconds:
            t0 = time.perf_counter()
            timers.run_once(runtime, now)
            samples.append(time.perf_counter() - t0)
        with store.engine.connect() as conn:
            waiting = conn.execute(text("SELECT count(*) FROM due_timer")).scalar()
        return {"waiting_timers": waiting, "passes": len(samples),
                "median_ms": ms(statistics.median(samples)), "p95_ms": ms(percentile(samples, 95)),
                "min_ms": ms(min(samples)), "max_ms": ms(max(samples)),
                "pick_plan": _pick_plan(store, runtime, now)}
    finally:
        store.dispose()


_PHASES = [
    ("runtime", "_pick_due", "pick the next due instance (_pick_due)"),
    ("state", "load_state", "restore state (state.load_state)"),
    ("Runtime", "_escalations", "escalation check (Runtime._escalations)"),
    ("runtime", "apply_command", "fire: refresh_timers + engine steps (apply_command)"),
    ("state", "dump_state", "serialise state (state.dump_state)"),
    ("runtime", "project", "projection rows (project: delete + insert)"),
    ("runtime", "_append_log", "log entry (_append_log)"),
]


def fire_pass(url: str, now: datetime, expect: int, breakdown: bool) -> dict:
    """One `timers.run_once(runtime, now)` pass; with `breakdown`, the engine's steps are timed
    (functions wrapped with timers, SQL statements counted: a few µs more per fired timer)."""
    from engine import runtime as runtime_module
    from engine import timers
    from engine.runtime import Runtime

    store, runtime = _runtime(url)
    owners = {"runtime": runtime_module, "state": state, "Runtime": Runtime}
    spent: dict[str, float] = {}
    saved = []
    sql = {"seconds": 0.0, "statements": 0}

    picks: list[float] = []  # each pick's seconds, in pass order (its exclude list grows)

    def wrapped(fn, label):
        def inner(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - t0
                if fn.__name__ == "_pick_due":
                    picks.append(time.perf_counter() - t0)
        return inner

    def before(conn, cursor, statement, parameters, context, executemany):
        conn.info["bench_t0"] = time.perf_counter()

    def after(conn, cursor, statement, parameters, context, executemany):
        sql["seconds"] += time.perf_counter() - conn.info.pop("bench_t0")
        sql["statements"] += 1

    try:
        if breakdown:
            for owner_name, name, label in _PHASES:
                owner = owners[owner_name]
                original = owner.__dict__[name]
                setattr(owner, name, wrapped(original, label))
                saved.append((owner, name, original))
            event.listen(store.engine, "before_cursor_execute", before)
            event.listen(store.engine, "after_cursor_execute", after)
        gc.collect()
        t0 = time.perf_counter()
        result = timers.run_once(runtime, now)
        total = time.perf_counter() - t0
        if breakdown:
            event.remove(store.engine, "before_cursor_execute", before)
            event.remove(store.engine, "after_cursor_execute", after)
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)
    fired = len(result.fired)
    if fired != expect or result.failed:
        raise SystemExit(f"pass fired {fired} (expected {expect}), failed: {list(result.failed.items())[:3]}")
    with store.engine.connect() as conn:
        counts = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar()
                  for t in ("due_timer", "message_wait", "log_entry")}
    out = {"fired": fired, "seconds": round(total, 3), "ms_per_fired": round(total * 1000 / fired, 3),
           "fired_per_second": round(fired / total, 1), "after": counts, "breakdown": breakdown}
    if breakdown:
        steps = [{"step": label, "ms_per_fired": round(spent.get(label, 0.0) * 1000 / fired, 3),
                  "share": round(spent.get(label, 0.0) / total, 3)} for _, _, label in _PHASES]
        rest = total - sum(spent.values())
        steps.append({"step": "rest: transaction begin/commit, instance UPDATE, hashes, run_once",
                      "ms_per_fired": round(rest * 1000 / fired, 3), "share": round(rest / total, 3)})
        out["steps"] = steps
        tenth = max(1, len(picks) // 10)
        out["pick_ms_first_tenth"] = ms(statistics.median(picks[:tenth]))
        out["pick_ms_last_tenth"] = ms(statistics.median(picks[-tenth:]))
        out["sql_statements_per_fired"] = round(sql["statements"] / fired, 2)
        out["sql_dbapi_ms_per_fired"] = round(sql["seconds"] * 1000 / fired, 3)
    store.dispose()
    return out


def verify_copy(url: str, now: datetime, instance_id: str) -> dict:
    """A fired copy goes on like a real instance: the payment message, then the reconcile task."""
    from engine.store import HumanTask
    store, runtime = _runtime(url)
    try:
        view = runtime.instance(instance_id)
        order_no = view.data["order_no"]
        runtime.message("payment_received", {"order_no": order_no, "amount": 10}, {"order_no": order_no},
                        at=now + timedelta(minutes=1))
        with store.read() as session:
            task_id = session.scalar(select(HumanTask.id).where(HumanTask.instance_id == instance_id))
        done = runtime.complete(task_id, "fin.chu", {}, at=now + timedelta(minutes=2))
        if done.status != "completed":
            raise SystemExit(f"copy {instance_id} ended {done.status}")
        return {"instance": instance_id, "order_no": order_no, "status": done.status}
    finally:
        store.dispose()


# --- (iii) lateness: worker processes on the real clock ------------------------------------------

def _worker(url: str, interval: float, stop, ready, out_path: str) -> None:
    """A worker process: `timers.run_forever`; records when each fire committed."""
    from engine import timers
    store, runtime = _runtime(url)
    timers.run_once(runtime)  # connected, definitions cached: as a worker that has been running
    records = []
    original = runtime.fire_next_due

    def recording(now, exclude=()):
        picked = original(now, exclude)
        if picked is not None and picked[1]:
            records.append((picked[0], time.time(), now.timestamp()))
        return picked

    runtime.fire_next_due = recording
    ready.put(os.getpid())
    try:
        timers.run_forever(runtime, interval, stop)
    finally:
        store.dispose()
        Path(out_path).write_text(json.dumps({"pid": os.getpid(), "fired": records}))


def lateness(url: str, due_times: dict[str, datetime], workers: int, interval: float, window: float,
             timeout: float, say) -> dict:
    context = multiprocessing.get_context("spawn")
    stop, ready = context.Event(), context.Queue()
    folder = tempfile.mkdtemp(prefix="bpm-bench-workers-")
    procs = []
    # Out of the workers' way until they run: the due timers go 12 hours ahead first.
    parked = arm(url, due_times, datetime.now(timezone.utc) + timedelta(hours=12), 60.0, random.Random(5))
    dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
    try:
        for w in range(workers):
            p = context.Process(target=_worker, args=(url, interval, stop, ready, f"{folder}/w{w}.json"))
            p.start()
            procs.append(p)
        for _ in procs:
            ready.get(timeout=120)
        time.sleep(1.0)
        start = datetime.now(timezone.utc) + timedelta(seconds=1.0)
        due = arm(url, parked, start, window, random.Random(7))
        say(f"  {len(due)} timers armed over {window} s from {start.time()}; {workers} worker(s) "
            f"polling every {interval} s")
        deadline = time.time() + window + timeout
        far = _utc_for(dialect, start + timedelta(hours=1))
        left = None
        while time.time() < deadline:
            time.sleep(1.0)
            left = _count(url, "SELECT count(*) FROM due_timer WHERE due_at < :far", far=far)
            if left == 0:
                break
        time.sleep(1.0)
        waiting = _count(url, "SELECT count(*) FROM due_timer")
        stop.set()
        for p in procs:
            p.join(120)
        fired: dict[str, tuple[float, float, int]] = {}
        per_worker = []
        for w in range(workers):
            data = json.loads(Path(f"{folder}/w{w}.json").read_text())
            per_worker.append(len([r for r in data["fired"] if r[0] in due]))
            for instance_id, at, now in data["fired"]:
                if instance_id in fired:
                    raise SystemExit(f"instance {instance_id} fired twice")
                fired[instance_id] = (at, now, w)
    finally:
        stop.set()
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.terminate()
        shutil.rmtree(folder, ignore_errors=True)
    missing = [i for i in due if i not in fired]
    late = [fired[i][0] - due[i].timestamp() for i in due if i in fired]
    noticed = [fired[i][1] - due[i].timestamp() for i in due if i in fired]
    out = {"workers": workers, "interval_s": interval, "window_s": window, "due": len(due),
           "fired": len(late), "missing": len(missing), "waiting_after": waiting,
           "fired_per_worker": per_worker, "target_met": bool(late) and not missing
           and max(late) <= TARGET_LATENESS_S}
    if not late:
        return out
    passes: dict[tuple[int, float], list[float]] = {}
    for at, now, w in fired.values():
        passes.setdefault((w, now), []).append(at)
    durations = [max(v) - k[1] for k, v in passes.items()]
    sizes = [len(v) for v in passes.values()]
    last = max(a for a, _, _ in fired.values())
    out.update({
        "lateness_s": {"p50": round(percentile(late, 50), 3), "p95": round(percentile(late, 95), 3),
                       "max": round(max(late), 3), "min": round(min(late), 3),
                       "within_target": sum(1 for x in late if x <= TARGET_LATENESS_S)},
        "noticed_s": {"p50": round(percentile(noticed, 50), 3), "p95": round(percentile(noticed, 95), 3),
                      "max": round(max(noticed), 3)},
        "passes_with_fires": len(passes), "fires_per_pass_median": statistics.median(sizes),
        "fires_per_pass_max": max(sizes),
        "pass_duration_s": {"median": round(statistics.median(durations), 3), "max": round(max(durations), 3)},
        "last_fire_after_window_start_s": round(last - start.timestamp(), 3),
    })
    return out


# --- the timer benchmark on one backend ---------------------------------------------------------

def timer_suite(dbs, variants: list[tuple[str, bool]], args: argparse.Namespace, say,
                worker_counts: list[int]) -> dict:
    """Build once (10 waiting, and args.waiting with args.due due), then measure on clones.

    `variants`: (label, analyze) — on SQLite, as the engine leaves the database (no statistics)
    and after one `ANALYZE`; on PostgreSQL, ANALYZE runs after the bulk load in every case.
    """
    backend = dbs.backend
    now = datetime.now(timezone.utc).replace(microsecond=0)
    early = now - timedelta(hours=5)   # before every due time: an empty pass with all waiting
    out: dict[str, Any] = {"backend": backend, "server": dbs.server(), "simulated_now": now.isoformat(),
                           "variants": []}
    say(f"[{backend}] building 10 waiting timers ...")
    small = TimerDatabase(dbs.new(), waiting=10, due=0, now=now, real=10)
    small.create(say)
    say(f"[{backend}] building {args.waiting} waiting timers, {args.due} due ...")
    big = TimerDatabase(dbs.new(), waiting=args.waiting, due=args.due, now=now, real=10)
    big.create(say)
    out["build"] = big.build
    for label, analyze in variants:
        v: dict[str, Any] = {"variant": label, "analyze": analyze}
        say(f"[{backend}, {label}] (ii) empty pass with 10 waiting timers ...")
        url = dbs.clone(small.url, analyze)
        v["empty_pass_10"] = empty_pass(url, now, args.pass_seconds)
        dbs.drop(url)
        url = dbs.clone(big.url, analyze)
        say(f"[{backend}, {label}] (ii) empty pass with {args.waiting} waiting timers ...")
        v["empty_pass_all"] = empty_pass(url, early, args.pass_seconds)
        say(f"  median {v['empty_pass_all']['median_ms']} ms; plan: {' | '.join(v['empty_pass_all']['pick_plan'])}")
        slow = v["empty_pass_all"]["median_ms"] > 20
        say(f"[{backend}, {label}] (i) one pass firing {args.due} due timers"
            + (" (steps timed in the same pass: it is slow)" if slow else "") + " ...")
        v["fire_pass"] = fire_pass(url, now, args.due, breakdown=slow)
        say(f"  {v['fire_pass']['seconds']} s, {v['fire_pass']['ms_per_fired']} ms per fired timer")
        say(f"[{backend}, {label}] (ii) empty pass with {args.waiting - args.due} waiting timers ...")
        v["empty_pass_after"] = empty_pass(url, now, args.pass_seconds)
        v["copy_goes_on"] = verify_copy(url, now, next(iter(big.due_times)))
        dbs.drop(url)
        if slow:
            v["fire_pass_breakdown"] = v["fire_pass"]
        else:
            say(f"[{backend}, {label}] (i) the same pass again, with the engine's steps timed ...")
            url = dbs.clone(big.url, analyze)
            v["fire_pass_breakdown"] = fire_pass(url, now, args.due, breakdown=True)
            dbs.drop(url)
        v["lateness"] = []
        for workers in worker_counts:
            say(f"[{backend}, {label}] (iii) lateness, {workers} worker(s) ...")
            url = dbs.clone(big.url, analyze)
            result = lateness(url, big.due_times, workers, args.interval, args.window,
                              args.lateness_timeout, say)
            dbs.drop(url)
            if "lateness_s" in result:
                say(f"  p50 {result['lateness_s']['p50']} s, p95 {result['lateness_s']['p95']} s, "
                    f"max {result['lateness_s']['max']} s; {result['fired']}/{result['due']} fired")
            else:
                say(f"  nothing fired: {result}")
            v["lateness"].append(result)
        out["variants"].append(v)
    dbs.drop(small.url)
    dbs.drop(big.url)
    return out


# === the run =====================================================================================

def run(args: argparse.Namespace, say) -> dict:
    machine = base.machine()
    # An export of a commit (no .git) says which one in BPM_BENCH_COMMIT.
    machine["commit"] = machine["commit"] or os.environ.get("BPM_BENCH_COMMIT")
    import engine
    machine["engine_path"] = str(Path(engine.__file__).parent)
    result: dict[str, Any] = {"machine": machine, "settings": {
        k: getattr(args, k) for k in ("seconds", "rounds", "warmup", "waiting", "due", "window",
                                      "interval", "pass_seconds", "workers", "sqlite_variants")}}
    m = result["machine"]
    say(f"machine: {m['cpu']} ({m['cpus_usable']} usable CPUs), Python {m['python']}, "
        f"SQLite {m['sqlite']}, SpiffWorkflow {m['spiffworkflow']}, commit {m['commit']}")
    with tempfile.TemporaryDirectory(prefix="bpm-bench-") as folder:
        if not args.skip_throughput:
            result["order_to_settlement"] = throughput(args, Path(folder), say)
        if not args.skip_timers:
            variants = [("as deployed (no ANALYZE)", False), ("after ANALYZE", True)]
            if args.sqlite_variants != "both":
                variants = [v for v in variants if v[1] == (args.sqlite_variants == "analyze")]
            result["timers"] = []
            if variants:
                result["timers"].append(timer_suite(SqliteFiles(folder), variants, args, say, [1]))
            if args.postgres:
                pg = PostgresDatabases(args.postgres)
                try:
                    result["timers"].append(timer_suite(pg, [("ANALYZE after the bulk load", False)],
                                                        args, say, args.workers))
                finally:
                    pg.drop_all()
    return result


def report(result: dict) -> str:
    m = result["machine"]
    out = [f"Machine: {m['cpu']}; {m['cpu_count']} CPUs ({m['cpus_usable']} usable); {m['platform']}",
           f"Python {m['python']}, SQLite {m['sqlite']}, SpiffWorkflow {m['spiffworkflow']}, "
           f"SQLAlchemy {m['sqlalchemy']}, commit {m['commit']}"]
    o = result.get("order_to_settlement")
    if o:
        a, b = o["raw"], o["engine"]
        out += ["", f"order_to_settlement ({o['customer']}, {o['commands_per_instance']} commands): full instances "
                    f"per second, median of {result['settings']['rounds']} interleaved rounds (min-max)",
                f"  (a) raw SpiffWorkflow  {a['per_second']:7.1f} ({a['per_second_min']:.1f}-{a['per_second_max']:.1f})"
                f"  n={a['instances']}  {o['ms_per_command']['raw']:.2f} ms/command",
                f"  (b) engine on SQLite   {b['per_second']:7.1f} ({b['per_second_min']:.1f}-{b['per_second_max']:.1f})"
                f"  n={b['instances']}  {o['ms_per_command']['engine']:.2f} ms/command",
                f"  b/a = {o['ratio_engine_over_raw']:.2f}; largest stock serialization "
                f"{o['stock_largest_serialization_bytes']} B, engine state of a completed instance "
                f"{o['completed_state_bytes']} B"]
    for t in result.get("timers", []):
        out += ["", f"Timer worker on {t['backend']} {t['server']} (build: {t['build']['seconds']} s; "
                    f"{t['build']['counts']['instance']} instances, {t['build']['counts']['due_timer']} waiting timers)"]
        for v in t["variants"]:
            out.append(f" {v['variant']}:")
            for key in ("empty_pass_10", "empty_pass_all", "empty_pass_after"):
                e = v[key]
                out.append(f"  (ii) empty pass, {e['waiting_timers']:>6} waiting: median {e['median_ms']:.3f} ms, "
                           f"p95 {e['p95_ms']:.3f}, max {e['max_ms']:.3f} ({e['passes']} passes)")
            out.append("       pick plan: " + " | ".join(v["empty_pass_all"].get("pick_plan", [])))
            f = v["fire_pass"]
            out.append(f"  (i) one pass firing {f['fired']}: {f['seconds']:.3f} s = {f['ms_per_fired']:.3f} ms per "
                       f"fired timer ({f['fired_per_second']}/s)" + (" [steps timed]" if f["breakdown"] else ""))
            fb = v["fire_pass_breakdown"]
            out.append(f"      with steps timed: {fb['ms_per_fired']:.3f} ms per fired timer, "
                       f"{fb['sql_statements_per_fired']} SQL statements, {fb['sql_dbapi_ms_per_fired']:.3f} ms in the driver")
            for s_ in fb["steps"]:
                out.append(f"      {s_['ms_per_fired']:8.3f} ms {100 * s_['share']:5.1f}%  {s_['step']}")
            out.append(f"      one pick, median: {fb['pick_ms_first_tenth']:.3f} ms in the first tenth of the pass, "
                       f"{fb['pick_ms_last_tenth']:.3f} ms in the last (its NOT IN list of instances already seen grows)")
            for lt in v["lateness"]:
                head = (f"  (iii) {lt['workers']} worker(s), poll {lt['interval_s']} s, {lt['due']} due over "
                        f"{lt['window_s']} s among {lt['waiting_after'] + lt['fired']} waiting: fired {lt['fired']}")
                if "lateness_s" not in lt:
                    out.append(head + " -> NOT met")
                    continue
                la = lt["lateness_s"]
                out.append(head + f"; lateness p50 {la['p50']:.3f} s, p95 {la['p95']:.3f} s, max {la['max']:.3f} s; "
                           f"{la['within_target']}/{lt['due']} within {TARGET_LATENESS_S} s -> "
                           f"{'met' if lt['target_met'] else 'NOT met'}; per worker {lt['fired_per_worker']}; "
                           f"pass median {lt['pass_duration_s']['median']} s, max {lt['pass_duration_s']['max']} s")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON document with all figures")
    parser.add_argument("--instances", type=int, default=None, metavar="N",
                        help="order_to_settlement instances per measurement (default: fit --seconds)")
    parser.add_argument("--seconds", type=float, default=7.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--waiting", type=int, default=100_000, help="waiting timers (default 100000)")
    parser.add_argument("--due", type=int, default=1_000, help="of which due (default 1000)")
    parser.add_argument("--window", type=float, default=10.0, help="(iii): due times spread over S seconds")
    parser.add_argument("--interval", type=float, default=0.5, help="(iii): the worker's polling interval")
    parser.add_argument("--pass-seconds", type=float, default=2.0, help="(ii): seconds of empty passes")
    parser.add_argument("--postgres", default=None, metavar="URL",
                        help="also on PostgreSQL: creates and drops its own databases bpm_bench_<random>")
    parser.add_argument("--workers", default="1,2", help="(iii) on PostgreSQL: worker processes, e.g. 1,2")
    parser.add_argument("--lateness-timeout", type=float, default=900.0,
                        help="(iii): seconds after the window to wait for the last fire (default 900)")
    parser.add_argument("--sqlite-variants", choices=("both", "as-deployed", "analyze", "none"),
                        default="both", help="timer runs on SQLite as the engine leaves the database, "
                        "after ANALYZE, or both (default)")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-timers", action="store_true")
    args = parser.parse_args(argv)
    args.workers = [int(w) for w in str(args.workers).split(",") if w]
    if args.due > args.waiting - 10:
        parser.error("--due must leave at least 10 timers waiting (the real instances)")

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    result = run(args, say)
    print(json.dumps(result, indent=2, ensure_ascii=False) if args.json else report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
