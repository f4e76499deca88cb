"""Benchmark: raw SpiffWorkflow against the engine's unit of work, and the cost of the spec in the state.

Measured in one run, for two processes (the 3-user-task approval and a ~30-node contract process):

(a) raw SpiffWorkflow, in memory: start = new workflow -> do_engine_steps -> serialize; then for each
    user task: deserialize -> complete the ready user task -> do_engine_steps -> serialize, with the
    stock `BpmnWorkflowSerializer` configured with SPIFF_CONFIG (the spec is embedded in every
    serialization) and the stock `PythonScriptEngine`.
(b) the engine on SQLite (fresh file in a temp dir, migrated, demo organisation seeded, processes
    deployed with `engine.versions.deploy`): `Runtime.start`, then `Runtime.complete` for each task
    as a user holding the task's role - lock, restore, act, project, log, commit.
(c) one instance's serialized state with the spec embedded (stock serializer) and without it
    (`engine.state.dump_state`), with the time to serialise and deserialise each.

Throughput is measured in rounds, (a) and (b) interleaved, and the median round is reported;
the raw rounds run on SpiffWorkflow's own uuid4/time (the engine's Runtime redirects them for the
whole process, see engine/determinism.py).

Usage: .venv/bin/python bench/run.py [--json] [--instances N] [--seconds S] [--rounds R]
                                     [--breakdown] [--profile] [--all [--postgres URL]]
       make bench

--all then runs bench/processes.py (order_to_settlement end to end, the timer worker at scale) in
a fresh interpreter, with --postgres passed on; with --json the two documents are printed as one,
{"engine": ..., "processes": ...}.
"""
from __future__ import annotations

import argparse
import copy
import cProfile
import gc
import json
import os
import platform
import pstats
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/run.py` from anywhere, even without the editable install
    sys.path.insert(0, str(ROOT))

from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine  # noqa: E402
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer  # noqa: E402
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow  # noqa: E402
from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser  # noqa: E402
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG  # noqa: E402
from SpiffWorkflow.util.task import TaskState  # noqa: E402

from engine import state  # noqa: E402

import SpiffWorkflow.task as _spiff_task  # noqa: E402
from SpiffWorkflow.bpmn.specs.event_definitions import timer as _spiff_timer  # noqa: E402

# The names engine.determinism.install() redirects (Runtime() calls it, for the whole process).
# Captured here, before any Runtime exists, so the raw loop can run on stock SpiffWorkflow even
# when its rounds are interleaved with the engine's.
_STOCK_NAMES = {(_spiff_task, "uuid4"): _spiff_task.uuid4, (_spiff_task, "time"): _spiff_task.time,
                (_spiff_timer, "datetime"): _spiff_timer.datetime}
if _spiff_task.uuid4 is not uuid.uuid4 or _spiff_task.time is not time:
    raise SystemExit("bench/run.py must be imported before anything creates an engine Runtime")

BENCH = Path(__file__).resolve().parent
TARGET_RATIO = 0.5  # (b)/(a) for the approval, from the issue

# Who acts for a role (the demo organisation of engine.access.seed_demo).
USERS = {"sales_rep": "rep.wang", "dept_manager": "dm.zhou", "finance": "fin.chu",
         "vp_sales": "vp.qian", "general_manager": "gm.zhao"}


# --- the processes ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    bpmn: Path
    process_id: str
    starter: str
    start_data: dict
    steps: dict[str, dict]          # user task element id -> data it is completed with
    expect: dict                    # what the completed instance's data must hold
    notes: str = ""

    @property
    def commands(self) -> int:
        return 1 + len(self.steps)


SCENARIOS = [
    Scenario(
        key="approval",
        title="3-user-task approval",
        bpmn=BENCH / "bpmn" / "approval.bpmn",
        process_id="approval",
        starter="rep.wang",
        start_data={"amount": 50, "customer": "C-A01"},
        steps={"submit": {"note": "please"}, "review": {"decision": "approve"},
               "confirm": {"paid": True}},
        expect={"total": 100, "note": "please", "decision": "approve", "paid": True},
        notes="start, 3 user tasks, 1 script task, end",
    ),
    Scenario(
        key="contract",
        title="~30-node contract approval",
        bpmn=BENCH / "bpmn" / "contract.bpmn",
        process_id="bench_contract",
        starter="rep.wang",
        start_data={"customer": "C-B07", "credit_limit": 2000000},
        steps={
            "draft_contract": {
                "contract_no": "HT-2026-0001", "discount": 8,
                "items": [{"sku": "PUMP-200", "qty": 120, "price": 3500.0},
                          {"sku": "VALVE-40", "qty": 400, "price": 380.0},
                          {"sku": "SEAL-KIT", "qty": 60, "price": 95.5}]},
            "dm_review": {"dm_decision": "approve", "dm_comment": "margin acceptable"},
            "vp_review": {"vp_decision": "approve"},
            "finance_confirm": {"payment_terms": "30 days net"},
        },
        expect={"net": 531511.6, "allocation": "backorder", "backorder_qty": 80, "credit_ok": True,
                "price_band": "special", "commission": 5315.12, "status": "approved", "archived": True},
        notes="31 flow nodes: 4 user tasks, 10 script tasks, 6 exclusive and 4 parallel gateways, "
              "an embedded subprocess (7 nodes); the measured path runs 4 user tasks, 8 scripts",
    ),
]


def check_data(scenario: Scenario, data: dict, where: str) -> None:
    wrong = {k: data.get(k) for k, v in scenario.expect.items() if data.get(k) != v}
    if wrong:
        raise SystemExit(f"{where}: {scenario.key} finished with unexpected data {wrong} "
                         f"(expected {{{', '.join(f'{k}: {scenario.expect[k]!r}' for k in wrong)}}})")


# --- (a) raw SpiffWorkflow ---------------------------------------------------------------------

class RawSpiff:
    """The stock loop: the spec travels inside every serialization, as stock users store it."""

    def __init__(self, scenario: Scenario):
        self.scenario = scenario
        parser = SpiffBpmnParser()
        parser.add_bpmn_file(str(scenario.bpmn))
        self.spec = parser.get_spec(scenario.process_id)
        self.subprocess_specs = parser.get_subprocess_specs(scenario.process_id)
        self.serializer = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(SPIFF_CONFIG))
        self.script_engine = PythonScriptEngine()

    def start(self) -> str:
        workflow = BpmnWorkflow(self.spec, self.subprocess_specs, script_engine=self.script_engine)
        workflow.task_tree.data = copy.deepcopy(self.scenario.start_data)
        workflow.do_engine_steps()
        return self.serializer.serialize_json(workflow)

    def step(self, text: str) -> tuple[str, BpmnWorkflow]:
        workflow = self.serializer.deserialize_json(text)
        workflow.script_engine = self.script_engine
        task = workflow.get_tasks(state=TaskState.READY, manual=True)[0]
        task.set_data(**copy.deepcopy(self.scenario.steps[task.task_spec.bpmn_id]))
        task.run()
        workflow.do_engine_steps()
        return self.serializer.serialize_json(workflow), workflow

    def run_instance(self) -> BpmnWorkflow:
        text = self.start()
        while True:
            text, workflow = self.step(text)
            if workflow.is_completed():
                return workflow

    def verify(self) -> None:
        workflow = self.run_instance()
        check_data(self.scenario, workflow.last_task.data, "raw SpiffWorkflow")

    def states(self) -> tuple[BpmnWorkflow, BpmnWorkflow]:
        """(the instance waiting for its last user task, the completed instance)."""
        text = self.start()
        waiting = self.serializer.deserialize_json(text)
        while True:
            text, workflow = self.step(text)
            if workflow.is_completed():
                return waiting, workflow
            waiting = self.serializer.deserialize_json(text)


# --- (b) the engine ---------------------------------------------------------------------------

class EnginePath:
    """A fresh SQLite database: migrated, demo organisation seeded, the processes deployed."""

    def __init__(self, folder: Path, scenarios: list[Scenario]):
        from engine import access, versions
        from engine.runtime import Runtime
        from engine.store import Store, migrate

        self.path = folder / "bench.sqlite3"
        self.store = Store(f"sqlite:///{self.path}")
        migrate(self.store)
        with self.store.write() as session:
            access.seed_demo(session)
        self.deployed = [d.as_json() for d in
                         versions.deploy(self.store, [s.bpmn for s in scenarios], actor="design.yang")]
        self.runtime = Runtime(self.store)

    def run_instance(self, scenario: Scenario):
        runtime = self.runtime
        view = runtime.start(scenario.process_id, scenario.starter, scenario.start_data)
        while view.status == "running":
            task = view.tasks[0]
            view = runtime.complete(task.id, USERS[task.role], scenario.steps[task.element_id])
        return view

    def verify(self, scenario: Scenario) -> None:
        view = self.run_instance(scenario)
        if view.status != "completed":
            raise SystemExit(f"engine: {scenario.key} ended {view.status}")
        check_data(scenario, view.data, "engine")

    def close(self) -> None:
        self.store.dispose()


# --- timing ---------------------------------------------------------------------------------

@contextmanager
def stock_spiffworkflow():
    """Run a block on SpiffWorkflow's own uuid4/time/datetime, whatever the engine installed."""
    saved = {key: getattr(*key) for key in _STOCK_NAMES}
    for (module, name), value in _STOCK_NAMES.items():
        setattr(module, name, value)
    try:
        yield
    finally:
        for (module, name), value in saved.items():
            setattr(module, name, value)


@dataclass
class Measurement:
    """Throughput of one path for one process, measured in rounds interleaved with the other path."""
    run_one: Callable[[], Any]
    stock: bool = False
    per_instance_s: float = 0.0
    warmup_instances: int = 0
    rounds: list[tuple[int, float]] = field(default_factory=list)  # (instances, seconds)

    def _call(self, n: int) -> float:
        with stock_spiffworkflow() if self.stock else nullcontext():
            began = time.perf_counter()
            for _ in range(n):
                self.run_one()
            return time.perf_counter() - began

    def warm_up(self, seconds: float) -> None:
        """At least 5 instances and `seconds`; also estimates the time of one instance."""
        with stock_spiffworkflow() if self.stock else nullcontext():
            began, done = time.perf_counter(), 0
            while done < 5 or time.perf_counter() - began < seconds:
                self.run_one()
                done += 1
        self.per_instance_s = (time.perf_counter() - began) / done
        self.warmup_instances = done

    def round(self, n: int) -> None:
        gc.collect()
        self.rounds.append((n, self._call(n)))

    def figures(self) -> dict:
        rates = [n / t for n, t in self.rounds]
        total_n = sum(n for n, _ in self.rounds)
        total_t = sum(t for _, t in self.rounds)
        median = statistics.median(rates)
        return {"per_second": round(median, 1), "ms_per_instance": round(1000 / median, 3),
                "per_second_pooled": round(total_n / total_t, 1),
                "per_second_min": round(min(rates), 1), "per_second_max": round(max(rates), 1),
                "instances": total_n, "seconds": round(total_t, 3), "rounds": len(self.rounds),
                "warmup_instances": self.warmup_instances}


def instances_per_round(m: Measurement, args: argparse.Namespace) -> int:
    if args.instances is not None:
        return max(1, -(-args.instances // args.rounds))
    return max(2, round(args.seconds / args.rounds / m.per_instance_s))


def per_call(fns: dict[str, Callable[[], Any]], budget: float) -> dict[str, float]:
    """Median seconds per call of each function, over batches of ~0.05 s run round-robin (so drift
    of the machine hits all alike), spending about `budget` seconds on each function."""
    batches: dict[str, int] = {}
    for name, fn in fns.items():
        for _ in range(3):
            fn()
        began, calls = time.perf_counter(), 0
        while time.perf_counter() - began < 0.02:
            fn()
            calls += 1
        batches[name] = max(1, round(calls * 0.05 / (time.perf_counter() - began)))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    gc.collect()
    started = time.perf_counter()
    while min(len(v) for v in samples.values()) < 7 or time.perf_counter() - started < budget * len(fns):
        for name, fn in fns.items():
            n = batches[name]
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            samples[name].append((time.perf_counter() - t0) / n)
    return {name: statistics.median(v) for name, v in samples.items()}


# --- (c) serialized state -------------------------------------------------------------------

def state_figures(raw: RawSpiff, workflow: BpmnWorkflow, budget: float) -> dict:
    serializer = raw.serializer
    stock_text = serializer.serialize_json(workflow)
    stock_dct = json.loads(stock_text)
    spec_part = {k: stock_dct[k] for k in ("spec", "subprocess_specs")}
    rest = {k: v for k, v in stock_dct.items() if k not in spec_part}
    engine_text = state.dump_state(workflow, 0)

    # Both must restore to the same instance.
    restored_stock = serializer.deserialize_json(stock_text)
    restored_engine, _ = state.load_state(engine_text, raw.spec, raw.subprocess_specs)
    if state.dump_state(restored_stock, 0) != engine_text or state.dump_state(restored_engine, 0) != engine_text:
        raise SystemExit("state round trip differs between the stock serializer and engine.state")

    def size(text: str) -> int:
        return len(text.encode("utf-8"))

    timings = per_call({
        "stock_serialize_ms": lambda: serializer.serialize_json(workflow),
        "engine_serialize_ms": lambda: state.dump_state(workflow, 0),
        "stock_deserialize_ms": lambda: serializer.deserialize_json(stock_text),
        "engine_deserialize_ms": lambda: state.load_state(engine_text, raw.spec, raw.subprocess_specs),
    }, budget)
    timings = {k: round(v * 1000, 4) for k, v in timings.items()}
    figures = {
        "tasks": len(workflow.tasks) + sum(len(s.tasks) for s in workflow.subprocesses.values()),
        "stock_bytes": size(stock_text),
        "stock_spec_bytes": size(json.dumps(spec_part)),
        "stock_without_spec_bytes": size(json.dumps(rest)),
        "engine_bytes": size(engine_text),
        **timings,
    }
    figures["size_ratio_engine_over_stock"] = round(figures["engine_bytes"] / figures["stock_bytes"], 3)
    figures["serialize_ratio_engine_over_stock"] = round(
        timings["engine_serialize_ms"] / timings["stock_serialize_ms"], 3)
    figures["deserialize_ratio_engine_over_stock"] = round(
        timings["engine_deserialize_ms"] / timings["stock_deserialize_ms"], 3)
    return figures


# --- the machine ----------------------------------------------------------------------------

def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "cpu": cpu, "cpu_count": os.cpu_count(), "cpus_usable": usable,
        "platform": platform.platform(),
        "python": platform.python_version(), "python_implementation": platform.python_implementation(),
        "sqlite": sqlite3.sqlite_version,
        "spiffworkflow": metadata.version("SpiffWorkflow"), "sqlalchemy": metadata.version("SQLAlchemy"),
        "commit": commit,
    }


# --- where the engine's time goes -------------------------------------------------------------

def _phase_targets() -> list[tuple[Any, str, str]]:
    """(owner, attribute, label): disjoint steps of Runtime.start/complete, wrapped by `breakdown`."""
    from engine import runtime
    return [
        (runtime, "person", "user lookup (runtime.person, one query)"),
        (state, "load_state", "restore state (engine.state.load_state)"),
        (runtime, "new_workflow", "new workflow + engine steps (start)"),
        (runtime.COMMANDS, "complete", "complete task + engine steps"),
        (state, "dump_state", "serialise state (engine.state.dump_state)"),
        (runtime, "project", "projection rows (project)"),
        (runtime, "_append_log", "log entry (_append_log)"),
    ]


def breakdown(engine: EnginePath, scenario: Scenario, instances: int) -> dict:
    """Wall time per step of the engine path, by wrapping its functions for the duration."""
    from sqlalchemy import event

    spent: dict[str, float] = {}
    calls: dict[str, int] = {}
    saved = []

    def wrapped(fn, label):
        def inner(*a, **kw):
            began = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - began
                calls[label] = calls.get(label, 0) + 1
        return inner

    for owner, name, label in _phase_targets():
        if isinstance(owner, dict):
            original = owner[name]
            owner[name] = wrapped(original, label)
        else:
            original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
            setattr(owner, name, wrapped(getattr(owner, name), label))
        saved.append((owner, name, original))
    sql = {"seconds": 0.0, "statements": 0}

    def before(conn, cursor, statement, parameters, context, executemany):
        conn.info["bench_t0"] = time.perf_counter()

    def after(conn, cursor, statement, parameters, context, executemany):
        sql["seconds"] += time.perf_counter() - conn.info.pop("bench_t0")
        sql["statements"] += 1

    event.listen(engine.store.engine, "before_cursor_execute", before)
    event.listen(engine.store.engine, "after_cursor_execute", after)
    try:
        gc.collect()
        began = time.perf_counter()
        for _ in range(instances):
            engine.run_instance(scenario)
        total = time.perf_counter() - began
    finally:
        event.remove(engine.store.engine, "before_cursor_execute", before)
        event.remove(engine.store.engine, "after_cursor_execute", after)
        for owner, name, original in saved:
            if isinstance(owner, dict):
                owner[name] = original
            else:
                setattr(owner, name, original)
    per = 1000 / instances
    steps = [{"step": label, "ms_per_instance": round(spent.get(label, 0.0) * per, 3),
              "calls_per_instance": round(calls.get(label, 0) / instances, 2),
              "share": round(spent.get(label, 0.0) / total, 3)}
             for _, _, label in _phase_targets()]
    rest = total - sum(spent.values())
    steps.append({"step": "rest: transactions, instance row lock/read/update, task re-read (SQLAlchemy)",
                  "ms_per_instance": round(rest * per, 3), "calls_per_instance": None,
                  "share": round(rest / total, 3)})
    return {"process": scenario.key, "instances": instances, "ms_per_instance": round(total * per, 3),
            "steps": steps,
            "sql_statements_per_instance": round(sql["statements"] / instances, 1),
            "sql_dbapi_ms_per_instance": round(sql["seconds"] * per, 3)}


def profile_engine(engine: EnginePath, scenario: Scenario, instances: int, top: int) -> dict:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(instances):
        engine.run_instance(scenario)
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = stats.total_tt
    rows = []
    for (filename, line, name), (cc, nc, tt, ct, _callers) in stats.stats.items():
        rows.append({"function": f"{_short_path(filename)}:{line}({name})", "calls": nc,
                     "tottime_s": round(tt, 4), "cumtime_s": round(ct, 4),
                     "cum_share": round(ct / total, 3) if total else None})
    by_cum = sorted(rows, key=lambda r: r["cumtime_s"], reverse=True)[:top]
    by_self = sorted(rows, key=lambda r: r["tottime_s"], reverse=True)[:top]
    return {"process": scenario.key, "instances": instances, "total_s": round(total, 3),
            "by_cumulative": by_cum, "by_self": by_self}


def _short_path(filename: str) -> str:
    for marker in ("site-packages/", str(ROOT) + "/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


# --- the run ------------------------------------------------------------------------------

def run(args: argparse.Namespace, say: Callable[[str], None]) -> dict:
    result: dict[str, Any] = {"machine": machine(), "settings": {
        "instances": args.instances, "rounds": args.rounds, "seconds_per_measurement": args.seconds,
        "warmup_seconds": args.warmup, "state_seconds": args.state_seconds,
        "target_ratio_approval": TARGET_RATIO}}
    m = result["machine"]
    say(f"machine: {m['cpu']} ({m['cpus_usable']} usable CPUs), Python {m['python']}, "
        f"SQLite {m['sqlite']}, SpiffWorkflow {m['spiffworkflow']}, commit {m['commit']}")
    processes: dict[str, dict] = {s.key: {"title": s.title, "process_id": s.process_id,
                                          "commands_per_instance": s.commands, "notes": s.notes}
                                  for s in SCENARIOS}
    raws = {s.key: RawSpiff(s) for s in SCENARIOS}

    # (c) the state with and without the spec, before anything else runs.
    for s in SCENARIOS:
        say(f"(c) serialized state, {s.key} ...")
        raws[s.key].verify()
        waiting, completed = raws[s.key].states()
        processes[s.key]["state"] = {
            "waiting_for_last_task": state_figures(raws[s.key], waiting, args.state_seconds),
            "completed": state_figures(raws[s.key], completed, args.state_seconds),
        }

    with tempfile.TemporaryDirectory(prefix="bpm-bench-") as folder:
        engine = EnginePath(Path(folder), SCENARIOS)
        try:
            result["database"] = {"kind": "SQLite file in a temporary directory (WAL, synchronous=NORMAL "
                                          "as engine.store sets it)", "deployed": engine.deployed}
            for s in SCENARIOS:
                engine.verify(s)
                with stock_spiffworkflow():
                    raws[s.key].verify()
                raw = Measurement(raws[s.key].run_instance, stock=True)
                eng = Measurement(lambda s=s: engine.run_instance(s))
                say(f"{s.key}: warming up ...")
                raw.warm_up(args.warmup)
                eng.warm_up(args.warmup)
                n_raw, n_eng = instances_per_round(raw, args), instances_per_round(eng, args)
                for r in range(args.rounds):
                    say(f"{s.key}: round {r + 1}/{args.rounds}: (a) {n_raw} instances raw, "
                        f"(b) {n_eng} instances through the engine")
                    raw.round(n_raw)
                    eng.round(n_eng)
                processes[s.key]["raw"] = raw.figures()
                processes[s.key]["engine"] = eng.figures()
            if args.breakdown:
                result["breakdown"] = []
                for s in SCENARIOS:
                    say(f"breakdown of the engine path, {s.key} ...")
                    result["breakdown"].append(breakdown(engine, s, args.breakdown_instances))
            if args.profile:
                result["profile"] = []
                for s in SCENARIOS:
                    say(f"profiling the engine path with cProfile, {s.key} ...")
                    result["profile"].append(profile_engine(engine, s, args.profile_instances, args.top))
        finally:
            engine.close()

    for s in SCENARIOS:
        p = processes[s.key]
        a, b = p["raw"]["per_second"], p["engine"]["per_second"]
        p["ratio_engine_over_raw"] = round(b / a, 3)
        p["ms_per_command"] = {
            "raw": round(p["raw"]["ms_per_instance"] / s.commands, 3),
            "engine": round(p["engine"]["ms_per_instance"] / s.commands, 3),
        }
    result["processes"] = processes
    result["approval_target_met"] = processes["approval"]["ratio_engine_over_raw"] >= TARGET_RATIO
    return result


def report(result: dict) -> str:
    m = result["machine"]
    out = [f"Machine: {m['cpu']}; {m['cpu_count']} CPUs ({m['cpus_usable']} usable); {m['platform']}",
           f"Python {m['python']} ({m['python_implementation']}), SQLite {m['sqlite']}, "
           f"SpiffWorkflow {m['spiffworkflow']}, SQLAlchemy {m['sqlalchemy']}, commit {m['commit']}",
           "",
           f"Throughput: full instances per second, one thread; median of {result['settings']['rounds']} "
           f"interleaved rounds (min-max)",
           f"{'process':<10} {'cmds':>4} {'(a) raw SpiffWorkflow':>22} {'(b) engine on SQLite':>21} "
           f"{'b/a':>5} {'ms/cmd a':>9} {'ms/cmd b':>9}"]
    for key, p in result["processes"].items():
        a, b = p["raw"], p["engine"]
        out.append(f"{key:<10} {p['commands_per_instance']:>4} "
                   f"{a['per_second']:>7.1f} ({a['per_second_min']:.0f}-{a['per_second_max']:.0f}) n={a['instances']:<5}"
                   f"{b['per_second']:>6.1f} ({b['per_second_min']:.0f}-{b['per_second_max']:.0f}) n={b['instances']:<5}"
                   f"{p['ratio_engine_over_raw']:>5.2f} {p['ms_per_command']['raw']:>9.2f} "
                   f"{p['ms_per_command']['engine']:>9.2f}")
    ratio = result["processes"]["approval"]["ratio_engine_over_raw"]
    out.append(f"approval b/a = {ratio:.2f}: target >= {TARGET_RATIO} "
               f"{'met' if result['approval_target_met'] else 'NOT met'}")
    out += ["", "(c) Serialized state of one instance: bytes (UTF-8); median ms per call",
            f"{'process':<10} {'state':<22} {'tasks':>5} {'stock':>7} {'of it spec':>10} {'engine':>7} "
            f"{'e/s':>5} {'ser stock':>9} {'ser eng':>8} {'e/s':>5} {'de stock':>9} {'de eng':>8} {'e/s':>5}"]
    for key, p in result["processes"].items():
        for which, f in p["state"].items():
            out.append(f"{key:<10} {which:<22} {f['tasks']:>5} {f['stock_bytes']:>7} {f['stock_spec_bytes']:>10} "
                       f"{f['engine_bytes']:>7} {f['size_ratio_engine_over_stock']:>5.2f} "
                       f"{f['stock_serialize_ms']:>9.3f} {f['engine_serialize_ms']:>8.3f} "
                       f"{f['serialize_ratio_engine_over_stock']:>5.2f} "
                       f"{f['stock_deserialize_ms']:>9.3f} {f['engine_deserialize_ms']:>8.3f} "
                       f"{f['deserialize_ratio_engine_over_stock']:>5.2f}")
    for bd in result.get("breakdown", []):
        out += ["", f"Engine path, {bd['process']}: {bd['ms_per_instance']:.2f} ms per instance "
                    f"({bd['instances']} instances, functions wrapped with timers); "
                    f"{bd['sql_statements_per_instance']} SQL statements per instance, "
                    f"{bd['sql_dbapi_ms_per_instance']:.2f} ms of it inside sqlite3"]
        for step in bd["steps"]:
            calls = f"{step['calls_per_instance']:>5}x" if step["calls_per_instance"] is not None else "      "
            out.append(f"  {step['ms_per_instance']:>7.2f} ms {100 * step['share']:>5.1f}% {calls}  {step['step']}")
    for prof in result.get("profile", []):
        out += ["", f"cProfile of the engine path, {prof['process']} ({prof['instances']} instances, "
                    f"{prof['total_s']} s under the profiler), by cumulative time:"]
        for row in prof["by_cumulative"]:
            out.append(f"  {row['cumtime_s']:>8.3f} s {100 * (row['cum_share'] or 0):>5.1f}%  "
                       f"{row['calls']:>8}  {row['function']}")
        out += ["  by own time:"]
        for row in prof["by_self"]:
            out.append(f"  {row['tottime_s']:>8.3f} s {row['calls']:>8}  {row['function']}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON document with all figures")
    parser.add_argument("--instances", type=int, default=None, metavar="N",
                        help="instances per throughput measurement, split over the rounds "
                             "(default: as many as fit in --seconds)")
    parser.add_argument("--seconds", type=float, default=7.0,
                        help="target duration of each throughput measurement without --instances (default 7)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds per measurement, raw and engine interleaved; the median is reported")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up before each measurement")
    parser.add_argument("--state-seconds", type=float, default=1.0,
                        help="seconds spent timing each (de)serialisation figure")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time the steps of the engine path (wrapped functions, SQL statements)")
    parser.add_argument("--breakdown-instances", type=int, default=200)
    parser.add_argument("--profile", action="store_true",
                        help="also profile the engine path with cProfile and list the top functions")
    parser.add_argument("--profile-instances", type=int, default=100)
    parser.add_argument("--top", type=int, default=30, help="functions listed per profile ordering")
    parser.add_argument("--all", action="store_true",
                        help="then run bench/processes.py too (order_to_settlement, the timer worker)")
    parser.add_argument("--postgres", default=None, metavar="URL",
                        help="with --all: bench/processes.py also measures the timer worker on PostgreSQL")
    args = parser.parse_args(argv)
    if args.instances is not None and args.instances < 1:
        parser.error("--instances must be at least 1")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    result = run(args, say)
    if not args.all:
        print(json.dumps(result, indent=2, ensure_ascii=False) if args.json else report(result))
        return 0
    if not args.json:
        print(report(result), flush=True)
        print(flush=True)
    command = [sys.executable, str(BENCH / "processes.py")] + (["--json"] if args.json else []) + (
        ["--postgres", args.postgres] if args.postgres else [])
    say("running " + " ".join(command[1:]) + " ...")
    done = subprocess.run(command, stdout=subprocess.PIPE if args.json else None, text=True)
    if done.returncode != 0:
        return done.returncode
    if args.json:
        print(json.dumps({"engine": result, "processes": json.loads(done.stdout)}, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
