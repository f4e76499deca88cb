"""A step's cost at any history length (issue 12, item 1): contract reviews rejected and revised
again and again, with the task tree pruned after each command (engine.pruning) and without.

For each mode (`whole`: BPM_PRUNE=0, every task SpiffWorkflow ever made is kept, as before;
`pruned`: the default) a fresh SQLite file gets the demo organisation and the company's processes;
K contract reviews are started and driven round by round, interleaved (the department manager
rejects, the rep revises), to the last round asked. Around each checkpoint round r (r-2 … r+2,
both commands, all K instances) the time of `Runtime.complete` is taken — the process's CPU time
(`time.process_time`: SQLite runs in the process, and on a machine shared with other work it is
what a command costs) and the wall time — and the medians are reported; the state size is the instance row's `state` after the manager's command of round r
(median over the instances). At the end the manager approves and `audit.verify` checks one
instance (its time is reported). A mode that fails (the whole tree goes too deep for SpiffWorkflow
and the command becomes an incident) reports the round it failed at.

Usage: .venv/bin/python bench/rework.py [--rounds 1,50,150,200] [--instances K] [--json]
       [--modes whole,pruned]
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or os.getcwd()).resolve() != ROOT / "bench"]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("BPM_SECRET_KEY", secrets.token_hex(32))

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)
WINDOW = 2  # rounds either side of a checkpoint whose commands are timed


def run(mode: str, checkpoints: list[int], instances: int, folder: Path) -> dict:
    import processes
    from engine import access, audit, clock, versions
    from engine.runtime import CommandFailed, Runtime
    from engine.store import Instance, Store, migrate
    from tests.conftest import _seed_credit_list, contract
    os.environ["BPM_PRUNE"] = "0" if mode == "whole" else "1"
    store = Store(f"sqlite:///{folder / f'{mode}.db'}")
    migrate(store)
    with store.write() as session:
        access.seed_demo(session)
        _seed_credit_list(session)
    os.environ["BPM_NOW"] = T0.isoformat()
    versions.deploy(store, [ROOT / "bpmn"], actor="design.yang", at=T0)
    rt = Runtime(store, processes.SERVICES, lookups=processes.LOOKUPS)
    revised = {k: v for k, v in contract().items() if k not in (
        "customer", "quote_price", "allowed_discount", "quote_payment_terms", "quote_delivery_date")}
    at = T0
    views = [rt.start("contract_review", "rep.wang", contract(), at=at) for _ in range(instances)]
    last = max(checkpoints)
    timed: dict[int, list[float]] = {r: [] for r in checkpoints}
    sizes: dict[int, list[int]] = {r: [] for r in checkpoints}
    failed = None
    for n in range(1, last + 1):
        near = [r for r in checkpoints if abs(n - r) <= WINDOW]
        for i, view in enumerate(views):
            for who, data in (("dm.zhou", {"decision": "reject", "comment": f"第 {n} 轮：请改"}),
                              ("rep.wang", {**revised, "payment_terms": f"30% 定金（第 {n} 版）"})):
                at += timedelta(seconds=30)
                try:
                    with clock.fixed_now(at):
                        started, cpu = time.perf_counter(), time.process_time()
                        view = rt.complete(view.tasks[0].id, who, data, at=at)
                        took = ((time.process_time() - cpu) * 1000, (time.perf_counter() - started) * 1000)
                except CommandFailed as exc:
                    failed = {"round": n, "error": str(exc)}
                    break
                for r in near:
                    timed[r].append(took)
                if who == "dm.zhou" and n in sizes:
                    with store.read() as s:
                        sizes[n].append(len(s.get(Instance, view.id).state.encode("utf-8")))
            if failed:
                break
            views[i] = view
        if failed:
            break
        print(f"{mode}: round {n}", end="\r", file=sys.stderr, flush=True)
    out: dict = {"mode": mode, "failed": failed, "rounds": {}}
    for r in checkpoints:
        if sizes[r] and len(timed[r]) >= instances * 2:
            out["rounds"][r] = {"command_ms": round(statistics.median(t[0] for t in timed[r]), 2),
                                "wall_ms": round(statistics.median(t[1] for t in timed[r]), 2),
                                "commands": len(timed[r]), "state_bytes": int(statistics.median(sizes[r]))}
    if failed is None:
        at += timedelta(seconds=30)
        with clock.fixed_now(at):
            view = rt.complete(views[0].tasks[0].id, "dm.zhou", {"decision": "approve"}, at=at)
        with store.read() as s:
            started = time.perf_counter()
            verdict = audit.verify(s, view.id, rt.script_engine)
            out["verify_s"] = round(time.perf_counter() - started, 2)
        out["verify_ok"] = verdict.ok
        out["after_approval"] = f"{view.status} at {', '.join(t.element_id for t in view.tasks) or 'the end'}"
    store.dispose()
    print(file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", default="1,50,150,200")
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--modes", default="whole,pruned")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    checkpoints = sorted({int(r) for r in args.rounds.split(",")})
    with tempfile.TemporaryDirectory() as tmp:
        results = [run(mode, checkpoints, args.instances, Path(tmp)) for mode in args.modes.split(",")]
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
        return 0
    print(f"contract_review, rejected and revised; {args.instances} instances interleaved; median CPU ms "
          f"(wall ms) of Runtime.complete over rounds r-{WINDOW}..r+{WINDOW}; state bytes after round r")
    head = "| round | " + " | ".join(f"{m['mode']} CPU ms (wall) | {m['mode']} state bytes" for m in results) + " |"
    print(head)
    print("|" + "---|" * (1 + 2 * len(results)))
    for r in checkpoints:
        cells = []
        for m in results:
            got = m["rounds"].get(r)
            cells += [f"{got['command_ms']} ({got['wall_ms']})", f"{got['state_bytes']:,}"] if got else ["—", "—"]
        print(f"| {r} | " + " | ".join(cells) + " |")
    for m in results:
        first = m["rounds"].get(checkpoints[0])
        end = m["rounds"].get(checkpoints[-1])
        ratio = (f"round {checkpoints[-1]} / round {checkpoints[0]}: command {end['command_ms'] / first['command_ms']:.2f}×, "
                 f"state {end['state_bytes'] / first['state_bytes']:.2f}×") if first and end else "no ratio"
        print(f"- {m['mode']}: {ratio}; " + (f"failed at round {m['failed']['round']}: {m['failed']['error']}"
                                              if m["failed"] else
                                              f"manager approves: {m.get('after_approval')}, verify "
                                              f"{'clean' if m.get('verify_ok') else 'NOT clean'} in {m.get('verify_s')} s"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
