"""Reading an instance's history: replay to a step, and the instance page, at 50 steps (or --steps).

One contract review on a fresh SQLite file is driven through (S-2)/2 rework rounds (the department
manager sends it back, the rep revises) and approved: S logged steps (50 unless --steps), each with
a data change. Then, in process:

replay   `engine.audit.replay(..., to_step=k)` from the log, no cache, from step 1 (what `bpm replay
         --to k --from-start` does, and `bpm replay --to k` did before issue 12): p50/p95/max over
         R/10 runs for k = 1, S/2 and S; the same from the nearest trusted checkpoint (what `bpm
         replay --to k` does since issue 12: at most `engine.checkpoints.EVERY - 1` steps
         re-executed) for those k and for R/10 random k ("any step"); and any step from the replay
         kept by log head (`engine.views`, what stepping through on the page costs).
         Target: <= 50 ms to any step (issue 12: at 300 steps).
history  `Views.history` cold (every step replayed once, what `bpm history` costs), and after one
         more command on a kept history (the new step replayed from the kept one).
page     `GET /instances/<id>` through the Flask test client signed in as audit.han (the record
         check shown, its replay kept by log head), and `GET /instances/<id>?step=k` for a random
         k: p50/p95/max over R requests after a warm-up. Target: <= 50 ms p95.

Usage: .venv/bin/python bench/history.py [--steps S] [--requests R] [--json]
An engine without checkpoints (before issue 12) is measured too: the checkpoint rows are "n/a".
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import random
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

REPLAY_TARGET_MS = 50.0
PAGE_TARGET_MS = 50.0
T0 = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def summary(values: list[float]) -> dict:
    return {"p50": round(statistics.median(values), 2), "p95": round(percentile(values, 95), 2),
            "max": round(max(values), 2), "n": len(values)}


def build(folder: Path, steps: int = 50):
    """A demo database and one contract review of `steps` steps (even); returns (runtime, instance id)."""
    import processes
    from engine import access, clock, versions
    from engine.runtime import Runtime
    from engine.store import Store, migrate
    store = Store(f"sqlite:///{folder / 'history.db'}")
    migrate(store)
    from tests.conftest import _seed_credit_list
    with store.write() as session:
        access.seed_demo(session)
        _seed_credit_list(session)
    os.environ["BPM_NOW"] = T0.isoformat()
    versions.deploy(store, [ROOT / "bpmn"], actor="design.yang", at=T0)
    rt = Runtime(store, processes.SERVICES, lookups=processes.LOOKUPS)
    from tests.conftest import contract
    at = T0
    view = rt.start("contract_review", "rep.wang", contract(), at=at)
    revised = {k: v for k, v in contract().items() if k not in (
        "customer", "quote_price", "allowed_discount", "quote_payment_terms", "quote_delivery_date")}
    for n in range((steps - 2) // 2):
        at += timedelta(minutes=10)
        with clock.fixed_now(at):
            rt.complete(rt.instance(view.id).tasks[0].id, "dm.zhou", {"decision": "reject", "comment": f"第 {n + 1} 轮：请改"}, at=at)
        at += timedelta(minutes=10)
        with clock.fixed_now(at):
            rt.complete(rt.instance(view.id).tasks[0].id, "rep.wang", {**revised, "payment_terms": f"30% 定金（第 {n + 1} 版）"}, at=at)
    at += timedelta(minutes=10)
    with clock.fixed_now(at):
        rt.complete(rt.instance(view.id).tasks[0].id, "dm.zhou", {"decision": "approve"}, at=at)
    return rt, view.id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--steps", type=int, default=50, help="steps of the instance (even, >= 4)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from engine import audit
    from engine.store import Instance, LogEntry
    from sqlalchemy import func, select
    from web import create_app
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        rt, instance_id = build(folder, args.steps)
        built = time.perf_counter() - started
        with rt.store.read() as s:
            steps = s.scalar(select(func.count()).where(LogEntry.instance_id == instance_id))
            state_bytes = len(s.get(Instance, instance_id).state.encode())
        checkpoints = "from_checkpoint" in inspect.signature(audit.replay).parameters
        out: dict = {"steps": steps, "build_s": round(built, 1), "state_bytes": state_bytes,
                     "checkpoints": checkpoints, "replay_ms": {}, "history_ms": {}, "page_ms": {}}
        runs = max(5, args.requests // 10)

        if "detail" in inspect.signature(audit.replay).parameters:
            print_only_last = {"detail": "last"}     # what `bpm replay --to` asks since issue 12
        else:
            print_only_last = {}

        def replay_to(k: int, **how) -> float:
            how = {**print_only_last, **how}
            with rt.store.read() as s:
                started = time.perf_counter()
                audit.replay(s, instance_id, rt.script_engine, to_step=k, **how)
                return (time.perf_counter() - started) * 1000
        cold_runs = 1 if steps > 100 else runs   # (many seconds each at 300 steps, before issue 12)
        for k in (1, steps // 2, steps):
            out["replay_ms"][f"to step {k}, from step 1"] = summary([replay_to(k) for _ in range(cold_runs)])
        if checkpoints:
            for k in (1, steps // 2, steps):
                out["replay_ms"][f"to step {k}, from checkpoint"] = summary(
                    [replay_to(k, from_checkpoint=True) for _ in range(runs)])
            out["replay_ms"]["to any step, from checkpoint"] = summary(
                [replay_to(random.randint(1, steps), from_checkpoint=True) for _ in range(runs)])
        from engine import views as engine_views
        times = []
        for _ in range(1 if steps > 100 else 3):
            engine_views._steps.clear()
            audit.forget_verdicts() if hasattr(audit, "forget_verdicts") else audit._replays.clear()
            started = time.perf_counter()
            views_of = engine_views.Views(rt.store, rt.script_engine)
            views_of.history(instance_id)
            times.append((time.perf_counter() - started) * 1000)
        out["history_ms"]["cold (every step replayed)"] = summary(times)
        # What the page does: the steps kept by log head (engine.views.steps), looked up again.
        from engine.views import Views
        views = Views(rt.store, rt.script_engine)
        views.history(instance_id)
        times = []
        for _ in range(args.requests):
            started = time.perf_counter()
            found, replayed = views.history(instance_id)
            assert replayed and found[random.randint(0, steps - 1)].marks is not None
            times.append((time.perf_counter() - started) * 1000)
        out["replay_ms"]["any step, kept"] = summary(times)
        # One more command on a kept history (the next approver approves), then the history again.
        from engine import clock
        view = rt.instance(instance_id)
        if view.tasks:
            at = view.updated + timedelta(hours=1)
            task = view.tasks[0]
            from engine.store import UserRole
            with rt.store.read() as s:   # someone who holds the task's role (an approval follows the manager's)
                user = task.assignee or s.scalar(select(UserRole.username).where(UserRole.role_id == task.role)
                                                 .order_by(UserRole.username))
            with clock.fixed_now(at):
                rt.complete(task.id, user, {"decision": "approve"}, at=at)
            started = time.perf_counter()
            views.history(instance_id)
            out["history_ms"]["after one more command (kept history)"] = summary(
                [(time.perf_counter() - started) * 1000])
            steps += 1
        app = create_app(rt, {"TESTING": True, "WTF_CSRF_ENABLED": False, "SECRET_KEY": "bench",
                              "VENDOR_DIR": str(folder / "vendor")})
        client = app.test_client()
        assert client.post("/login", data={"username": "audit.han", "password": "demo"}).status_code == 302
        urls = {"now": lambda: f"/instances/{instance_id}",
                "at a step": lambda: f"/instances/{instance_id}?step={random.randint(1, steps)}"}
        for name, url in urls.items():
            for _ in range(5):
                assert client.get(url()).status_code == 200
            times = []
            for _ in range(args.requests):
                started = time.perf_counter()
                response = client.get(url())
                times.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200
            out["page_ms"][name] = summary(times)
    worst_replay = max(out["replay_ms"]["any step, kept"]["p95"],
                       out["replay_ms"].get("to any step, from checkpoint", {"p95": float("inf")})["p95"])
    worst_page = max(v["p95"] for v in out["page_ms"].values())
    out["targets"] = {"replay to any step <= 50 ms (p95, from a checkpoint and kept by log head)":
                      worst_replay <= REPLAY_TARGET_MS,
                      "instance page p95 <= 50 ms": worst_page <= PAGE_TARGET_MS}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"instance of {out['steps']} steps")
        print(f"  built in {out['build_s']} s; stored state {out['state_bytes']:,} bytes; "
              f"checkpoints: {'yes' if checkpoints else 'n/a (engine without them)'}")
        for k, v in out["replay_ms"].items():
            print(f"  replay {k:<32} p50 {v['p50']:>8} ms  p95 {v['p95']:>8} ms  max {v['max']:>8} ms  (n={v['n']})")
        for k, v in out["history_ms"].items():
            print(f"  history {k:<40} p50 {v['p50']:>8} ms  (n={v['n']})")
        for k, v in out["page_ms"].items():
            print(f"  page {k:<14} p50 {v['p50']:>7} ms  p95 {v['p95']:>7} ms  max {v['max']:>7} ms")
        for k, ok in out["targets"].items():
            print(f"  {'met' if ok else 'MISSED'}: {k}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
