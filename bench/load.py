"""A bounded load test (issue 12, item 9, in part): U simulated users for T minutes against
`bpm serve --processes 2 --workers 1` on PostgreSQL, then `bpm verify --all` on what they did.

Covered: `contract_review` only, its three approval paths (standard 60 %, price deviation 25 %,
major amount 15 %; bench/web.py `one_instance`, 5–6 requests each), and between instances a
read of the department manager's inbox (`GET /api/v1/tasks`) and a think time of 0.2–1 s. Not
covered yet: the other three processes of the issue's "four processes" (order_to_settlement,
return_request, credit_review need drivers of their own).

Users are threads, `--users / --procs` per client process (default 50 users in 10 processes),
each with its own kept-alive connection. Reported: requests/s, p50/p95/p99/max of every request,
errors (any unexpected status or exception), instances completed, and `bpm verify --all`'s exit
code and last line.

Usage: .venv/bin/python bench/load.py [--users 50] [--procs 10] [--minutes 5] [--json]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("bench_serve", ROOT / "bench" / "serve.py")
bench_serve = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_serve)
bench_web = bench_serve.bench_web
log = bench_serve.log
PATHS = [("standard", 0.60), ("deviation", 0.25), ("major", 0.15)]


def _user(port: int, tokens: dict, end: float, seed: int, sink: list) -> None:
    rng = random.Random(seed)
    client = bench_web.Client(port)
    client.tokens = dict(tokens)
    client.record = True
    done = errors = 0
    while time.time() < end:
        path = rng.choices([p for p, _ in PATHS], [w for _, w in PATHS])[0]
        try:
            bench_web.one_instance(client, path)
            client.call("inbox", "GET", "/api/v1/tasks", user="dm.zhou")
            done += 1
        except Exception as exc:
            errors += 1
            if errors <= 2:
                log(f"user {seed}: {exc}")
        time.sleep(rng.uniform(0.2, 1.0))
    sink.append((done, errors, [t for ts in client.timings.values() for t in ts]))


def _process(port: int, tokens: dict, end: float, users: list[int], out) -> None:
    sink: list = []
    threads = [threading.Thread(target=_user, args=(port, tokens, end, seed, sink)) for seed in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(sink)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--procs", type=int, default=10)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    seconds = args.minutes * 60
    with bench_serve.database("postgresql") as url:
        with bench_serve.server(url, "load") as (_proc, port):
            bench_web.one_instance(bench_serve._warm(port), "standard")
            tokens = bench_serve.tokens(port)
            warm = bench_web.Client(port)
            for user in ("vp.qian", "gm.zhao"):
                warm.login(user)
            tokens.update(warm.tokens)
            ctx = multiprocessing.get_context("fork")
            out = ctx.Queue()
            start = time.time()
            end = start + seconds
            groups = [list(range(i, args.users, args.procs)) for i in range(args.procs)]
            procs = [ctx.Process(target=_process, args=(port, tokens, end, g, out)) for g in groups if g]
            for p in procs:
                p.start()
            sinks = [out.get(timeout=seconds + 300) for _ in procs]
            for p in procs:
                p.join()
            wall = time.time() - start
        env = {**os.environ, "BPM_DATABASE_URL": url}
        env.pop("BPM_NOW", None)
        verify = subprocess.run([sys.executable, "-m", "bpm", "verify", "--all"], cwd=ROOT, env=env,
                                capture_output=True, text=True)
    results = [r for sink in sinks for r in sink]
    latencies = sorted(t * 1000 for r in results for t in r[2])
    result = {
        "users": args.users, "minutes": args.minutes, "instances": sum(r[0] for r in results),
        "errors": sum(r[1] for r in results), "requests": len(latencies),
        "requests_per_s": round(len(latencies) / wall, 1),
        "ms": {q: round(bench_web.pct(latencies, q), 1) for q in (50, 95, 99)} | {"max": round(latencies[-1], 1)}
        if latencies else {},
        "verify_exit": verify.returncode,
        "verify_ok_lines": sum(1 for line in verify.stdout.splitlines() if line.startswith("ok")),
        "verify_other_lines": [line for line in (verify.stdout + verify.stderr).splitlines()
                               if line.strip() and not line.startswith("ok")][:5],
        "machine": bench_web.machine(),
    }
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        print(f"{args.users} users, {args.minutes} min: {result['instances']} instances, {result['requests']} "
              f"requests = {result['requests_per_s']}/s, ms p50/p95/p99/max {result['ms']}, errors "
              f"{result['errors']}; bpm verify --all exit {verify.returncode}, {result['verify_ok_lines']} instances ok, "
              f"other lines {result['verify_other_lines']}")


if __name__ == "__main__":
    main()
