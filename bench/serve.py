"""Throughput of `bpm serve` with 1 and 2 server processes on PostgreSQL (issue 12, item 5), and
the helpers bench/timers_load.py shares: a fresh database, a server in a subprocess, and HTTP
clients in processes of their own (so the load generator does not share the GIL with itself).

Each client holds one kept-alive connection and drives full `contract_review` instances through
the JSON API (bench/web.py `one_instance`: start, dm_review, go_approval, file_contract; 4
requests). Servers measured, in rounds interleaved server by server on one database:

  waitress-1   `bpm serve --workers 0` (one process, waitress, 8 threads)
  gunicorn-1   gunicorn with 1 process of 8 threads (bpm.serve._gunicorn), for a like-for-like ratio
  gunicorn-2   `bpm serve --processes 2 --workers 0` (2 processes of 8 threads)

No timer worker runs (nothing in contract_review waits on a timer). Reported: completed
instances/s per round, the median of the rounds, request p50/p95/max of the last round, the
CPUs the server's processes used (their CPU seconds over the wall time) and how busy the whole
machine was (all processes, from /proc/stat).

Usage: .venv/bin/python bench/serve.py [--clients 16] [--seconds 20] [--rounds 3] [--json]
Needs BPM_BENCH_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test), whose server
may create databases; a database bpm_bench_<random> is made and dropped.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or os.getcwd()).resolve() != ROOT / "bench"]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("BPM_SECRET_KEY", secrets.token_hex(32))

_spec = importlib.util.spec_from_file_location("bench_web", ROOT / "bench" / "web.py")
bench_web = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_web)

PG_ADMIN = os.environ.get("BPM_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
USERS = ("rep.wang", "dm.zhou", "gmo.tang")


def log(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


@contextmanager
def database(backend: str):
    """A fresh database after `bpm init --demo`: its URL."""
    tmp = Path(tempfile.mkdtemp(prefix="bpm_bench_serve_"))
    name = None
    if backend == "sqlite":
        url = f"sqlite:///{tmp / 'bpm.sqlite3'}"
    else:
        import psycopg
        name = f"bpm_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    env = {**os.environ, "BPM_DATABASE_URL": url}
    env.pop("BPM_NOW", None)
    init = subprocess.run([sys.executable, "-m", "bpm", "init", "--demo"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if init.returncode:
        raise RuntimeError(f"bpm init failed: {init.stderr}")
    try:
        yield url
    finally:
        if name:
            import psycopg
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)


GUNICORN_1 = ("import sys; sys.path.insert(0, {root!r}); from bpm.serve import _gunicorn; "
              "_gunicorn('127.0.0.1', {port}, 1, 8)")
# The server as it was before issue 12: the timer worker a thread beside 8 request threads.
IN_PROCESS = ("import sys, threading; sys.path.insert(0, {root!r})\n"
              "from bpm.cli import _runtime, _store\nfrom engine import timers\n"
              "from waitress import serve\nfrom web import create_app\n"
              "runtime = _runtime(_store())\n"
              "threading.Thread(target=timers.run_forever, args=(runtime, 0.5, threading.Event()),\n"
              "                 kwargs={{'listen': False}}, daemon=True).start()\n"
              "serve(create_app(runtime), host='127.0.0.1', port={port}, threads=8)\n")


@contextmanager
def server(url: str, kind: str, root: Path = ROOT):
    """A server of `kind` on a free port, run from the checkout at `root`: (its process, the port)."""
    port = bench_web.free_port()
    commands = {
        "waitress-1": ["-m", "bpm", "serve", "--port", str(port), "--workers", "0"],
        "gunicorn-1": ["-c", GUNICORN_1.format(root=str(root), port=port)],
        "gunicorn-2": ["-m", "bpm", "serve", "--port", str(port), "--processes", "2", "--workers", "0"],
        "separate-worker": ["-m", "bpm", "serve", "--port", str(port)],  # the default: 1 worker process
        "in-process-worker": ["-c", IN_PROCESS.format(root=str(root), port=port)],
    }
    env = {**os.environ, "BPM_DATABASE_URL": url}
    env.pop("BPM_NOW", None)
    errors = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen([sys.executable, *commands[kind]], cwd=root, env=env, stdout=errors, stderr=errors)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                errors.seek(0)
                raise RuntimeError(f"{kind} exited: {errors.read()}")
            try:
                import urllib.request
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{kind} did not answer within 60 s")
                time.sleep(0.2)
        yield proc, port
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        errors.close()


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its children (gunicorn's server processes)."""
    total = 0.0
    try:
        total += bench_web.cpu_seconds(pid)
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += tree_cpu(int(child))
    except (OSError, ValueError):
        pass
    return total


def tokens(port: int) -> dict[str, str]:
    client = bench_web.Client(port)
    for user in USERS:
        client.login(user)
    return client.tokens


def _client(port: int, tokens_: dict, start_at: float, seconds: float, out) -> None:
    client = bench_web.Client(port)
    client.tokens = dict(tokens_)
    while time.time() < start_at:
        time.sleep(0.01)
    client.record = True
    done, errors, end = 0, 0, start_at + seconds
    while time.time() < end:
        try:
            bench_web.one_instance(client, "standard")
            done += 1
        except Exception as exc:  # counted and reported, never hidden
            errors += 1
            if errors == 1:
                log(f"client error: {exc}")
    out.put((done, errors, [t for ts in client.timings.values() for t in ts]))


def drive(port: int, clients: int, seconds: float) -> dict:
    """`clients` processes, each one connection, for `seconds`: instances/s and request latency."""
    tok = tokens(port)
    out = multiprocessing.get_context("fork").Queue()
    start_at = time.time() + 1.0
    procs = [multiprocessing.get_context("fork").Process(target=_client, args=(port, tok, start_at, seconds, out))
             for _ in range(clients)]
    for p in procs:
        p.start()
    results = [out.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    done = sum(r[0] for r in results)
    latencies = sorted(t for r in results for t in r[2])
    return {"instances": done, "errors": sum(r[1] for r in results), "per_s": round(done / seconds, 1),
            "requests_ms": bench_web.summary_ms(latencies) if latencies else {}}


def bench_throughput(args) -> dict:
    kinds = ["waitress-1", "gunicorn-1", "gunicorn-2"]
    rounds: dict[str, list[dict]] = {k: [] for k in kinds}
    with database("postgresql") as url:
        for r in range(args.rounds):
            for kind in kinds:
                with server(url, kind) as (proc, port):
                    bench_web.one_instance(_warm(port), "standard")  # warm: every path loaded
                    cpu0, busy0, t0 = tree_cpu(proc.pid), bench_web.Load._busy(), time.perf_counter()
                    result = drive(port, args.clients, args.seconds)
                    wall = time.perf_counter() - t0
                    result["server_cpus"] = round((tree_cpu(proc.pid) - cpu0) / wall, 2)
                    result["machine_busy_cpus"] = round((bench_web.Load._busy() - busy0) / wall, 2)
                rounds[kind].append(result)
                log(f"round {r + 1} {kind}: {result['per_s']}/s, errors {result['errors']}, "
                    f"server {result['server_cpus']} CPUs, machine {result['machine_busy_cpus']} of {os.cpu_count()}, "
                    f"p50 {result['requests_ms'].get('p50')} ms, p95 {result['requests_ms'].get('p95')} ms")
    summary = {k: {"per_s_rounds": [x["per_s"] for x in v], "median_per_s": statistics.median(x["per_s"] for x in v),
                   "errors": sum(x["errors"] for x in v), "last_round_ms": v[-1]["requests_ms"],
                   "server_cpus_rounds": [x["server_cpus"] for x in v],
                   "machine_busy_cpus_rounds": [x["machine_busy_cpus"] for x in v]}
               for k, v in rounds.items()}
    summary["ratio_gunicorn2_to_waitress1"] = round(summary["gunicorn-2"]["median_per_s"]
                                                    / summary["waitress-1"]["median_per_s"], 2)
    summary["ratio_gunicorn2_to_gunicorn1"] = round(summary["gunicorn-2"]["median_per_s"]
                                                    / summary["gunicorn-1"]["median_per_s"], 2)
    summary["clients"], summary["seconds"], summary["rounds"] = args.clients, args.seconds, args.rounds
    summary["machine"] = bench_web.machine()
    return summary


def _warm(port: int):
    client = bench_web.Client(port)
    client.tokens = tokens(port)
    return client


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = bench_throughput(args)
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return
    for kind in ("waitress-1", "gunicorn-1", "gunicorn-2"):
        r = result[kind]
        print(f"{kind:11} median {r['median_per_s']:6.1f} instances/s  rounds {r['per_s_rounds']}  "
              f"errors {r['errors']}  server CPUs {r['server_cpus_rounds']}  machine busy CPUs "
              f"{r['machine_busy_cpus_rounds']}  last round p50/p95/max {r['last_round_ms']}")
    print(f"2 processes / 1: {result['ratio_gunicorn2_to_waitress1']}x against waitress, "
          f"{result['ratio_gunicorn2_to_gunicorn1']}x against gunicorn with 1 process")


if __name__ == "__main__":
    main()
