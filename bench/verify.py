"""Benchmark: `bpm verify --all` over many finished instances, on one core.

Builds (or reuses, with --db) an SQLite database of N finished instances of one process, then runs
the real command line,
`bpm verify --all`, in a fresh interpreter pinned to one CPU (`taskset -c 0`, the sandbox processes
that replay the scripts included), so no verdict comes from an in-process cache. Reports instances
per second (wall time of the whole command, start-up included) against the issue's target, 200/s.

With --profile, the same verification runs in this process under cProfile (one core, cold caches)
and the functions that take the time are listed: the hash chain against the replay.

With --against REV the same database is verified, side by side, by the tree of that git revision
(`git archive`, into a temporary folder) and by this checkout, each on one CPU (`taskset -c 0`)
and on all of them (this checkout: `--jobs` left to its default, the number of CPUs), `--runs`
times each, interleaved; the figures are medians, with the CPU time of the command and its
children (steadier than the wall time on a shared machine). Both sides must print the same
verdicts. With --phases, one verification of the instances in this process, on one CPU, is
split into the parts that take its time (reading the log, SpiffWorkflow re-running the steps,
the sandbox round trips, serialising the state to hash it).

Usage: .venv/bin/python bench/verify.py [--process contract_review|order_to_settlement] [--instances N]
                                        [--db PATH] [--json] [--profile] [--phases]
                                        [--against REV [--runs N]]
"""
from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from io import StringIO
from pathlib import Path

# The tree whose engine is measured: this checkout, or (--against, for --phases) the exported one.
ROOT = Path(os.environ.get("BENCH_VERIFY_TREE") or Path(__file__).resolve().parent.parent)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGET = 200.0  # instances per second (issues 10 and 12)
T0 = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)
APPROVE = {"decision": "approve"}
CONTRACT = {  # the standard path: every term as quoted (tests/conftest.contract)
    "customer": "C-B01", "amount": 260000, "quote_price": 520, "price": 520, "allowed_discount": 3, "discount": 0,
    "quote_payment_terms": "30% 定金，发货前付清", "payment_terms": "30% 定金，发货前付清",
    "quote_delivery_date": "2099-01-15", "delivery_date": "2099-01-15",
    "lines": [{"product": "芝麻灰花岗岩板", "spec": "600x600x20", "quantity": 500, "unit_price": 520}],
}
FILED = {"signed_on": "2026-11-25", "archive_location": "业务部办公室文件柜 A-3"}
ORDER = {"customer": "C-A01", "order_source": "phone",  # (+ the contact and address on file)
         "lines": [{"product": "芝麻灰花岗岩板", "spec": "600x600x20", "quantity": 200, "unit_price": 600}],
         "delivery_date": "2099-12-20"}
# user task -> (who completes it, its data from the instance's data, time after the start)
ORDER_STEPS = {
    "approve_order_dm": ("dm.zhou", lambda d: APPROVE, timedelta(minutes=30)),
    "confirm_deposit": ("fin.chu", lambda d: {"deposit_received": d["deposit_required"], "received_on": "2026-11-24",
                                              "voucher_no": "BK-1124-07"}, timedelta(days=1)),
    "schedule_production": ("prod.jiang", lambda d: {"work_order_no": "WO-2611-31", "planned_start": "2026-11-25",
                                                     "planned_finish": "2026-12-08"}, timedelta(days=1, minutes=10)),
    "ship_goods": ("wh.wei", lambda d: {"shipping_list": [{"line": 1, "quantity": 200}], "carrier": "德邦物流",
                                        "tracking_no": "DB88230017", "shipped_on": "2026-12-09"}, timedelta(days=16)),
    "reconcile": ("fin.chu", lambda d: {"confirmed_total": d["paid"], "reconciled_on": "2026-12-09"},
                  timedelta(days=16, hours=4)),
    "reconcile_rep": ("rep.wang", lambda d: {"rep_confirmed_total": d["paid"], "rep_reconciled_on": "2026-12-09"},
                      timedelta(days=16, hours=5)),
}
STEPS = {"contract_review": 4, "order_to_settlement": 8}


def contract_review(rt, at: datetime):
    view = rt.start("contract_review", "rep.wang", CONTRACT, at=at)
    for element, user, data in (("dm_review", "dm.zhou", APPROVE), ("go_approval", "gmo.tang", APPROVE),
                                ("file_contract", "rep.wang", FILED)):
        task = next(t for t in view.tasks if t.element_id == element)
        view = rt.complete(task.id, user, data, at=at + timedelta(minutes=10))
    return view


def order_to_settlement(rt, at: datetime):
    """The straight path of an A customer's phone order (as bench/processes.py drives it)."""
    from processes.customers import CUSTOMERS
    known = CUSTOMERS[ORDER["customer"]]
    view = rt.start("order_to_settlement", "rep.wang", {**ORDER, "contact": known["contact"],
                                                        "delivery_address": known["address"]}, at=at)
    paid = False
    while view.status == "running":
        if not view.tasks:
            if paid:
                raise SystemExit(f"order {view.id} waits for nothing known")
            data = view.data
            rt.message("payment_received", {"order_no": data["order_no"], "amount": data["balance"],
                                            "voucher": "BK-1209-88", "received_on": "2026-11-25"},
                       {"order_no": data["order_no"]}, at=at + timedelta(days=16, hours=3), actor="fin.chu")
            view, paid = rt.instance(view.id), True
            continue
        task = sorted(view.tasks, key=lambda t: t.element_id)[0]
        user, data, after = ORDER_STEPS[task.element_id]
        view = rt.complete(task.id, user, data(view.data), at=at + after)
    return view


PROCESSES = {"contract_review": contract_review, "order_to_settlement": order_to_settlement}


def build(path: Path, instances: int, say, process: str = "contract_review") -> None:
    """A database with `instances` finished instances of `process`: made, or topped up if it has
    fewer. Contract and order numbers are the day and six random hex digits (processes/contracts.py,
    processes/orders.py), so the starts are spread over days (20 a day) and a rare clash of numbers
    (the record refuses it) is skipped."""
    from engine import access, credit, versions
    from engine.runtime import Conflict, Runtime
    from engine.store import Store, migrate
    from processes import LOOKUPS, SERVICES
    from processes.customers import DEMO_CREDIT_LIST

    fresh = not path.exists()
    store = Store(f"sqlite:///{path}")
    if fresh:
        migrate(store)
        with store.write() as session:
            access.seed_demo(session)
            credit.seed(session, DEMO_CREDIT_LIST, T0 - timedelta(days=30))
        versions.deploy(store, [ROOT / "bpmn"], at=T0 - timedelta(days=1))
    rt = Runtime(store, SERVICES, lookups=LOOKUPS)
    done = finished(path)
    n, started, made = done, time.perf_counter(), 0
    while done < instances:
        at = T0 + timedelta(days=1 + n // 20, seconds=n % 20)
        n += 1
        try:
            view = PROCESSES[process](rt, at)
        except Conflict as exc:
            say(f"  skipped one: {exc}")
            continue
        if view.status != "completed":
            raise SystemExit(f"instance {view.id} ended {view.status}")
        done, made = done + 1, made + 1
        if done % 1000 == 0:
            say(f"  {done} finished instances ({made / (time.perf_counter() - started):.0f}/s)")
    store.dispose()


def finished(path: Path) -> int:
    return counts(path)[1] if path.exists() else 0


def counts(path: Path) -> tuple[int, int]:
    """(instances, finished instances) in the database."""
    import sqlite3
    with sqlite3.connect(path) as db:
        return db.execute("select count(*), count(*) filter (where status = 'completed') from instance").fetchone()


def run_cli(path: Path) -> tuple[float, int, str]:
    """`bpm verify --all` in a fresh interpreter on one CPU: (seconds, exit code, last stderr line)."""
    env = {**os.environ, "BPM_DATABASE_URL": f"sqlite:///{path}"}
    command = [sys.executable, "-m", "bpm", "verify", "--all"]
    if shutil.which("taskset"):
        command = ["taskset", "-c", "0", *command]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return time.perf_counter() - started, done.returncode, (done.stderr.strip().splitlines() or [""])[-1]


def _export(rev: str, into: Path) -> Path:
    """The tree of `rev` unpacked under `into`."""
    archive = subprocess.run(["git", "archive", "--format=tar", rev], cwd=ROOT, check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def _children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def verify_once(root: Path, path: Path, one_cpu: bool, jobs: int | None = None) -> tuple[float, float, str]:
    """`bpm verify --all` of the tree at `root` in a fresh interpreter: (wall s, CPU s of it and
    its children, its output). Exits if the command fails."""
    env = {**os.environ, "BPM_DATABASE_URL": f"sqlite:///{path}"}
    command = [sys.executable, "-m", "bpm", "verify", "--all", *(["--jobs", str(jobs)] if jobs else [])]
    if one_cpu and shutil.which("taskset"):
        command = ["taskset", "-c", "0", *command]
    cpu, started = _children_cpu(), time.perf_counter()
    done = subprocess.run(command, env=env, cwd=root, capture_output=True, text=True)
    took, cpu = time.perf_counter() - started, _children_cpu() - cpu
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} (in {root}) failed (exit {done.returncode}): "
                         f"{(done.stderr.strip().splitlines() or [''])[-1]}")
    return took, cpu, done.stdout


def against(path: Path, rev: str, runs: int, say) -> list[dict]:
    """Before (the tree at `rev`) and after (this checkout), side by side, on one CPU and on all."""
    total = counts(path)[0]
    work = Path(tempfile.mkdtemp(prefix="bpm-bench-verify-before-"))
    try:
        sides = {f"at {rev}": _export(rev, work), "this checkout": ROOT}
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        setups = [(side, root, one) for one in (True, False) for side, root in sides.items()]
        outputs = {}
        for side, root, one in setups:  # one untimed run each: bytecode compiled, files cached
            outputs[side] = verify_once(root, path, one)[2]
        if len(set(outputs.values())) != 1:
            raise SystemExit("the two trees' verdicts differ")
        timed: dict[tuple[str, bool], list[tuple[float, float]]] = {(s, o): [] for s, _, o in setups}
        for n in range(runs):
            for side, root, one in setups:
                took, cpu, _ = verify_once(root, path, one)
                timed[side, one].append((took, cpu))
                say(f"  run {n + 1}: {side}, {'one CPU' if one else f'{cpus} CPUs'}: {took:.2f} s, "
                    f"{total / took:.1f}/s (CPU {cpu:.2f} s)")
        rows = []
        for (side, one), values in timed.items():
            wall = statistics.median(v[0] for v in values)
            cpu = statistics.median(v[1] for v in values)
            rows.append({"side": side, "cpus": 1 if one else cpus, "instances": total,
                         "median_s": round(wall, 2), "instances_per_second": round(total / wall, 1),
                         "runs_per_second": [round(total / v[0], 1) for v in values],
                         "cpu_ms_per_instance": round(cpu / total * 1000, 2)})
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


def phases_of(tree: Path | None, path: Path, rev: str) -> dict:
    """`phases` of the engine in `tree` (None: an export of `rev`), in a fresh interpreter."""
    work = None
    if tree is None:
        work = Path(tempfile.mkdtemp(prefix="bpm-bench-verify-phases-"))
        tree = _export(rev, work)
    try:
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--phases-only", "--db", str(path)],
                              env={**os.environ, "BENCH_VERIFY_TREE": str(tree)}, cwd=tree, check=True,
                              capture_output=True, text=True)
        return json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)


def phases(path: Path, sample: int) -> dict:
    """One cold verification of `sample` instances in this process on one CPU, split by where the
    time goes (wall ms per instance): reading the log and the instance (ORM), serialising the
    state after each step (state.dump_state), the sandbox round trips (sandbox.run: the child
    runs the script meanwhile, on the same CPU), and the rest: SpiffWorkflow re-running the
    steps, with the engine's own bookkeeping around them."""
    from sqlalchemy import select

    from engine import audit, sandbox, state
    from engine.runtime import Runtime
    from engine.store import Instance, Store
    from processes import LOOKUPS, SERVICES

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    spent: dict[str, float] = {}
    used: dict[str, float] = {}

    def timed(owner, name: str, label: str):
        inner = getattr(owner, name)

        def wrapper(*args, **kwargs):
            began, cpu = time.perf_counter(), time.process_time()
            try:
                return inner(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - began
                used[label] = used.get(label, 0.0) + time.process_time() - cpu
        setattr(owner, name, wrapper)
        return inner

    store = Store(f"sqlite:///{path}")
    rt = Runtime(store, SERVICES, lookups=LOOKUPS)
    kept = [(state, "dump_state", timed(state, "dump_state", "serialise each step's state")),
            (sandbox, "run", timed(sandbox, "run", "sandbox round trips (scripts)")),
            (audit, "_entries", timed(audit, "_entries", "read the log and the instance"))]
    try:
        with store.read() as session:
            ids = list(session.scalars(select(Instance.id).order_by(Instance.id).limit(sample + 1)))
            audit.verify(session, ids[0], rt.script_engine)  # definitions restored, sandbox started
            audit.forget_verdicts()
            spent.clear()
            used.clear()
            children = _sandbox_cpu()
            began, cpu = time.perf_counter(), time.process_time()
            for instance_id in ids[1:]:
                assert audit.verify(session, instance_id, rt.script_engine).ok
            whole, cpu = time.perf_counter() - began, time.process_time() - cpu
            children = _sandbox_cpu() - children
    finally:
        for owner, name, inner in kept:
            setattr(owner, name, inner)
        store.dispose()
    n = len(ids) - 1
    split = {label: round(seconds / n * 1000, 2) for label, seconds in spent.items()}
    split["SpiffWorkflow re-running the steps, and the rest"] = round((whole - sum(spent.values())) / n * 1000, 2)
    own = {label: round(seconds / n * 1000, 2) for label, seconds in used.items()}
    own["SpiffWorkflow re-running the steps, and the rest"] = round((cpu - sum(used.values())) / n * 1000, 2)
    own["the sandbox processes (running the scripts)"] = round(children / n * 1000, 2)
    return {"engine": str(Path(audit.__file__).resolve().parent.parent), "sample": n,
            "ms_per_instance": round(whole / n * 1000, 2),
            "instances_per_second": round(n / whole, 1), "phases_ms": split,
            "cpu_ms_per_instance": round((cpu + children) / n * 1000, 2), "phases_cpu_ms": own}


def _sandbox_cpu() -> float:
    """CPU seconds the script sandbox's child processes of this process have used so far."""
    from engine import sandbox
    total = 0.0
    for child in list(getattr(sandbox._pool, "_idle", [])):
        try:
            fields = Path(f"/proc/{child.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return total


def parts(path: Path, sample: int) -> dict:
    """In this process, on one CPU, for the first `sample` instances: reading the log and
    recomputing the hash chain alone, against the whole audit.verify (chain, replay, row)."""
    from sqlalchemy import select

    from engine import audit
    from engine.runtime import Runtime
    from engine.store import Instance, Store
    from processes import LOOKUPS, SERVICES

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    store = Store(f"sqlite:///{path}")
    rt = Runtime(store, SERVICES, lookups=LOOKUPS)
    with store.read() as session:
        ids = list(session.scalars(select(Instance.id).order_by(Instance.id).limit(sample)))
        started = time.perf_counter()
        for instance_id in ids:
            _, entries = audit._entries(session, instance_id)
            assert audit.chain_whole(instance_id, entries)
        chain = time.perf_counter() - started
        started = time.perf_counter()
        for instance_id in ids:
            assert audit.verify(session, instance_id, rt.script_engine).ok
        whole = time.perf_counter() - started
    store.dispose()
    return {"sample": len(ids), "chain_per_second": round(len(ids) / chain, 1),
            "verify_per_second": round(len(ids) / whole, 1),
            "replay_share": round((whole - chain) / whole, 3)}


def profile(path: Path, top: int, sample: int) -> str:
    """The verification of `sample` instances under cProfile, in this process (cold caches)."""
    from sqlalchemy import select

    from engine import audit
    from engine.runtime import Runtime
    from engine.store import Instance, Store
    from processes import LOOKUPS, SERVICES

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    store = Store(f"sqlite:///{path}")
    rt = Runtime(store, SERVICES, lookups=LOOKUPS)
    profiler = cProfile.Profile()
    getattr(audit, "forget_verdicts", audit._replays.clear)()  # (parts() verified these in this process)
    with store.read() as session:
        ids = list(session.scalars(select(Instance.id).order_by(Instance.id.desc()).limit(sample)))
        profiler.enable()
        for instance_id in ids:
            audit.verify(session, instance_id, rt.script_engine)
        profiler.disable()
    out = StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--process", choices=sorted(PROCESSES), default="contract_review")
    parser.add_argument("--instances", type=int, default=10_000, metavar="N")
    parser.add_argument("--db", type=Path, help="keep the database here and reuse it when it already holds "
                                                "N finished instances")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--profile", action="store_true", help="also profile the verification in-process")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--phases", action="store_true", help="also split one in-process verification by phase")
    parser.add_argument("--against", metavar="REV", help="also verify with the tree of this git revision, "
                                                        "side by side (one CPU and all CPUs)")
    parser.add_argument("--runs", type=int, default=3, help="with --against: timed runs of each setup")
    parser.add_argument("--phases-only", action="store_true", help=argparse.SUPPRESS)  # (--against's --phases)
    args = parser.parse_args(argv)
    if args.phases_only:
        print(json.dumps(phases(args.db, min(counts(args.db)[0] - 1, 200)), ensure_ascii=False))
        return 0

    def say(line: str) -> None:
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)

    folder = None
    path = args.db
    if path is None:
        folder = tempfile.mkdtemp(prefix="bpm-bench-verify-")
        path = Path(folder) / "verify.sqlite3"
    try:
        if not path.exists() or finished(path) < args.instances:
            say(f"building {args.instances} finished {args.process} instances in {path} ...")
            build(path, args.instances, say, args.process)
        total, completed = counts(path)
        if args.against:
            rows = against(path, args.against, args.runs, say)
            result = {"instances": total, "process": args.process, "target": TARGET, "rows": rows}
            if args.phases:
                result["phases"] = {}
                for side, tree in ((f"at {args.against}", None), ("this checkout", ROOT)):
                    result["phases"][side] = phases_of(tree, path, args.against)
            if args.json:
                print(json.dumps(result, indent=2))
            else:
                say(f"bpm verify --all, {total} {args.process} instances, median of {args.runs} runs:")
                for r in rows:
                    say(f"  {r['side']:<22} {r['cpus']} CPU(s): {r['instances_per_second']:7.1f}/s "
                        f"({r['median_s']:.2f} s; runs {r['runs_per_second']}), "
                        f"{r['cpu_ms_per_instance']:.2f} CPU ms per instance")
                if args.phases:
                    say(json.dumps(result["phases"], indent=2, ensure_ascii=False))
            return 0
        seconds, code, last = run_cli(path)
        if code != 0:
            raise SystemExit(f"bpm verify --all failed (exit {code}): {last}")
        result = {"instances": total, "finished": completed, "process": args.process,
                  "steps_per_finished_instance": STEPS[args.process],
                  "seconds": round(seconds, 2), "instances_per_second": round(total / seconds, 1), "target": TARGET,
                  "met": total / seconds >= TARGET, "one_cpu": bool(shutil.which("taskset")),
                  "python": platform.python_version(), "machine": platform.machine()}
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            say(f"bpm verify --all: {total} instances ({completed} finished) in {seconds:.2f} s = "
                f"{result['instances_per_second']:.1f} instances/s on one CPU (target {TARGET:.0f}/s: "
                f"{'met' if result['met'] else 'NOT met'})")
        if args.phases:
            result["phases"] = phases(path, min(total - 1, 200))
            say(json.dumps(result["phases"], indent=2, ensure_ascii=False))
        if args.profile:
            split = parts(path, min(args.instances, 1000))
            result["parts"] = split
            say(f"in-process, first {split['sample']} instances: reading + hash chain alone "
                f"{split['chain_per_second']:.0f}/s; whole verify {split['verify_per_second']:.1f}/s "
                f"(replay and row check {split['replay_share']:.0%} of the time)")
            say(profile(path, args.top, min(args.instances, 500)))
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
