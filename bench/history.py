"""Reading an instance's history: replay to a step, and the instance page, at 50 steps.

One contract review on a fresh SQLite file is driven through 24 rework rounds (the department
manager sends it back, the rep revises) and approved: 50 logged steps, each with a data change.
Then, in process:

replay   `engine.audit.replay(..., to_step=k)` from the log, no cache (what `bpm replay --to k`
         does, and what the instance page's steps cost the first time after a new log head):
         p50/p95/max over R/10 runs for k = 1, 25 and 50; and any step from the replay kept by log
         head (`engine.views`, what stepping through on the page costs). Target: <= 50 ms to any
         step.
page     `GET /instances/<id>` through the Flask test client signed in as audit.han (the record
         check shown, its replay kept by log head), and `GET /instances/<id>?step=k` for a random
         k: p50/p95/max over R requests after a warm-up. Target: <= 50 ms p95.

Usage: .venv/bin/python bench/history.py [--requests R] [--json]
"""
from __future__ import annotations

import argparse
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


def build(folder: Path):
    """A demo database and one contract review of 50 steps; returns (runtime, instance id)."""
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
    for n in range(24):
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
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from engine import audit
    from engine.store import LogEntry
    from sqlalchemy import func, select
    from web import create_app
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rt, instance_id = build(folder)
        with rt.store.read() as s:
            steps = s.scalar(select(func.count()).where(LogEntry.instance_id == instance_id))
        out: dict = {"steps": steps, "replay_ms": {}, "page_ms": {}}
        for k in (1, 25, steps):
            times = []
            for _ in range(max(5, args.requests // 10)):
                with rt.store.read() as s:
                    started = time.perf_counter()
                    audit.replay(s, instance_id, rt.script_engine, to_step=k)
                    times.append((time.perf_counter() - started) * 1000)
            out["replay_ms"][f"to step {k}"] = summary(times)
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
    worst_replay = out["replay_ms"]["any step, kept"]["p95"]
    worst_page = max(v["p95"] for v in out["page_ms"].values())
    out["targets"] = {"replay to any step <= 50 ms (p95, kept by log head)": worst_replay <= REPLAY_TARGET_MS,
                      "instance page p95 <= 50 ms": worst_page <= PAGE_TARGET_MS}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"instance of {out['steps']} steps")
        for k, v in out["replay_ms"].items():
            print(f"  replay {k:<15} p50 {v['p50']:>7} ms  p95 {v['p95']:>7} ms  max {v['max']:>7} ms")
        for k, v in out["page_ms"].items():
            print(f"  page {k:<14} p50 {v['p50']:>7} ms  p95 {v['p95']:>7} ms  max {v['max']:>7} ms")
        for k, ok in out["targets"].items():
            print(f"  {'met' if ok else 'MISSED'}: {k}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
