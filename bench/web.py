"""Web benchmarks: full contract reviews over HTTP, and the inbox on a large database.

e2e    One real server (`bpm serve`: waitress, 8 threads, with its timer worker) in a subprocess on a
       free port, on a fresh SQLite file (`bpm init --demo`). One client (http.client, one kept-alive
       connection, bearer tokens fetched first) drives complete `contract_review` instances through
       the JSON API: start (rep.wang) -> dm_review approved (dm.zhou) [-> vp_approval (vp.qian)
       | gm_approval (gm.zhao)] -> go_approval (gmo.tang) -> file_contract (rep.wang). Reports full instances/s (median of
       the rounds) and the latency of every request (p50/p95/max), by request kind too.

inbox  A database holding N open human tasks (default 100,000, one per running instance) and M log
       entries (default 1,000,000, spread over those instances), bulk-inserted with SQLAlchemy Core
       executemany. Then, in-process, for each query (first page, default sort; and filtered):
       `engine.inbox.search` timed around its read session, `GET /api/v1/tasks` through the Flask
       test client with a bearer token, and the approvers' page `GET /` signed in (all as dm.zhou),
       each R times (default 200) after a warm-up. Reports p50/p95/max and the query plans.

Usage: .venv/bin/python bench/web.py e2e   [--seconds S] [--rounds R] [--path standard|deviation|major]
       .venv/bin/python bench/web.py inbox [--backend sqlite|postgresql|both] [--tasks N] [--log M]
                                           [--requests R] [--keep FILE] [--reuse FILE] [--analyze]
       .venv/bin/python bench/web.py all   (e2e, then inbox on SQLite)
       add --json for one JSON document on stdout (progress goes to stderr).
"""
from __future__ import annotations

import argparse
import gc
import hashlib
import http.client
import json
import math
import os
import platform
import random
import secrets
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
# Run as `python bench/web.py`, bench/ comes first on sys.path, and bench/processes.py would hide the
# project's `processes` package (whatever PYTHONPATH says).
sys.path[:] = [p for p in sys.path if Path(p or os.getcwd()).resolve() != ROOT / "bench"]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
# create_app() would otherwise write instance/secret_key in the working tree.
os.environ.setdefault("BPM_SECRET_KEY", secrets.token_hex(32))

E2E_TARGET = 50.0      # full contract_review instances per second over HTTP
INBOX_TARGET_MS = 30.0  # p95 of one inbox request, server side
POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def log(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary_ms(seconds: list[float]) -> dict:
    ms = [s * 1000 for s in seconds]
    return {"n": len(ms), "p50": round(pct(ms, 50), 3), "p95": round(pct(ms, 95), 3),
            "max": round(max(ms), 3), "mean": round(statistics.fmean(ms), 3)}


def machine() -> dict:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "-"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "engine", "web", "bpm", "processes"],
                           cwd=ROOT, capture_output=True, text=True).stdout.split("\n")
    return {"cpu": cpu, "cpus": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)),
            "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
            "sqlalchemy": version("SQLAlchemy"), "flask": version("Flask"),
            "waitress": version("waitress"), "psycopg": version("psycopg"),
            "commit": commit, "dirty": [d.strip() for d in dirty if d.strip()]}


# === 1. end to end over HTTP =====================================================================

def contract_data(path: str) -> dict:
    """Start data of contract_review; `path` picks the approval levels (tests/test_processes.py)."""
    delivery = (date.today() + timedelta(days=60)).isoformat()
    data = {"customer": "C-B01", "amount": 260000, "quote_price": 520, "price": 520,
            "quote_payment_terms": "30% 定金，发货前付清", "payment_terms": "30% 定金，发货前付清",
            "quote_delivery_date": delivery, "delivery_date": delivery,
            "lines": [{"product": "芝麻灰花岗岩板", "spec": "600x600x20", "quantity": 500, "unit_price": 520}]}
    if path == "deviation":   # price below the quote -> dept manager, VP, general office
        data.update(price=480, amount=240000, lines=[{**data["lines"][0], "unit_price": 480}])
    elif path == "major":     # >= 1,000,000 and below the quote -> dept manager, GM, general office
        data.update(amount=1_000_000, price=500, lines=[{**data["lines"][0], "quantity": 2000, "unit_price": 500}])
    return data


APPROVERS = {"dm_review": "dm.zhou", "vp_approval": "vp.qian", "gm_approval": "gm.zhao", "go_approval": "gmo.tang"}
STEPS = {"standard": ["dm_review", "go_approval"], "deviation": ["dm_review", "vp_approval", "go_approval"],
         "major": ["dm_review", "gm_approval", "go_approval"]}


class Client:
    """One HTTP/1.1 connection, kept alive; every request timed (send to last byte read)."""

    def __init__(self, port: int):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.tokens: dict[str, str] = {}
        self.timings: dict[str, list[float]] = {}
        self.record = False
        self.reconnects = -1
        self._connect()

    def _connect(self) -> None:
        self.conn.close()
        self.conn.connect()
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reconnects += 1

    def call(self, kind: str, method: str, path: str, body: Any = None, user: str | None = None,
             expect: int = 200) -> Any:
        headers = {"Accept": "application/json"}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if user is not None:
            headers["Authorization"] = f"Bearer {self.tokens[user]}"
        t0 = time.perf_counter()
        try:
            self.conn.request(method, path, payload, headers)
            reply = self.conn.getresponse()
            raw = reply.read()
        except (http.client.HTTPException, ConnectionError):
            self._connect()  # the server closed the kept-alive connection; count it and retry once
            self.conn.request(method, path, payload, headers)
            reply = self.conn.getresponse()
            raw = reply.read()
        elapsed = time.perf_counter() - t0
        if reply.status != expect:
            raise RuntimeError(f"{method} {path} as {user}: {reply.status} {raw[:500]!r}")
        if reply.getheader("Connection", "").lower() == "close":
            self._connect()
        if self.record:
            self.timings.setdefault(kind, []).append(elapsed)
        return json.loads(raw) if raw else None

    def login(self, username: str) -> None:
        self.tokens[username] = self.call("token", "POST", "/api/v1/tokens",
                                          {"username": username, "password": "demo"}, expect=201)["token"]


def one_instance(client: Client, path: str, check: bool = False) -> str:
    view = client.call("start", "POST", "/api/v1/processes/contract_review/instances",
                       {"data": contract_data(path)}, user="rep.wang", expect=201)
    seen = []
    for step in STEPS[path]:
        task = next((t for t in view["tasks"] if t["element_id"] == step), None)
        if task is None:
            raise RuntimeError(f"expected {step}; waiting: {[t['element_id'] for t in view['tasks']]}")
        seen.append(step)
        view = client.call(step, "POST", f"/api/v1/tasks/{task['id']}/complete",
                           {"data": {"decision": "approve"}}, user=APPROVERS[step])
    task = next((t for t in view["tasks"] if t["element_id"] == "file_contract"), None)
    if task is None or task["assignee"] != "rep.wang":
        raise RuntimeError(f"expected file_contract held by rep.wang; got {view['tasks']}")
    view = client.call("file_contract", "POST", f"/api/v1/tasks/{task['id']}/complete",
                       {"data": {"signed_on": date.today().isoformat(),
                                 "archive_location": "业务部办公室文件柜 A-3"}}, user="rep.wang")
    if view["status"] != "completed" or view["tasks"]:
        raise RuntimeError(f"instance not completed: {view['status']} {view['tasks']}")
    if check:
        history = client.call("check", "GET", f"/api/v1/instances/{view['id']}/history", user="dm.zhou")
        actors = [(h["actor"], h["command"]) for h in history]
        expected = ([("rep.wang", "start")] + [(APPROVERS[s], "complete") for s in seen]
                    + [("rep.wang", "complete")])
        if actors != expected:
            raise RuntimeError(f"history {actors} != {expected}")
    return view["id"]


class Load:
    """CPU used by other processes on the machine while a measurement ran (in CPUs, 0..ncpu)."""

    def __init__(self, pids: tuple[int, ...] = (), postgres: bool = False):
        self.pids, self.with_postgres, self.postgres = pids, postgres, 0.0

    @staticmethod
    def _postgres() -> float:
        """CPU of every `postgres` process (the server's backends: the database's share of the work)."""
        total = 0.0
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    if (proc / "comm").read_text().strip() == "postgres":
                        total += cpu_seconds(int(proc.name))
                except OSError:
                    pass
        return total

    @staticmethod
    def _busy() -> float:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")

    def _own(self) -> float:
        return time.process_time() + sum(cpu_seconds(p) for p in self.pids)

    def __enter__(self):
        self.t0, self.busy0, self.own0 = time.perf_counter(), self._busy(), self._own()
        self.pg0 = self._postgres() if self.with_postgres else 0.0
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self.t0
        self.own = (self._own() - self.own0) / wall
        if self.with_postgres:
            self.postgres = (self._postgres() - self.pg0) / wall
        self.other = max(0.0, (self._busy() - self.busy0) / wall - self.own - self.postgres)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def server(tmp: Path, root: Path = ROOT):
    """`bpm init --demo` then `bpm serve` on a free port, on a fresh SQLite file in `tmp`; `root`:
    the checkout whose code runs (another revision's, unpacked, for a before/after comparison)."""
    env = {**os.environ, "BPM_DATABASE_URL": f"sqlite:///{tmp / 'bpm.sqlite3'}"}
    env.pop("BPM_NOW", None)
    init = subprocess.run([sys.executable, "-m", "bpm", "init", "--demo"], cwd=root, env=env,
                          capture_output=True, text=True)
    if init.returncode:
        raise RuntimeError(f"bpm init failed: {init.stderr}")
    port = free_port()
    errors = open(tmp / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "bpm", "serve", "--host", "127.0.0.1",
                             "--port", str(port)], cwd=root, env=env, stdout=errors, stderr=errors)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"bpm serve exited: {(tmp / 'serve.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("bpm serve did not listen within 60 s")
                time.sleep(0.1)
        yield proc, port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        errors.close()


def bench_e2e(args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bpm_web_e2e_"))
    try:
        with server(tmp) as (proc, port):
            client = Client(port)
            for user in ("rep.wang", "dm.zhou", "vp.qian", "gm.zhao", "gmo.tang"):
                client.login(user)
            for path in STEPS:  # every path once, with its history checked
                one_instance(client, path, check=True)
            log(f"e2e: server pid {proc.pid} on port {port}; paths checked; warming up {args.warmup} s")
            end = time.perf_counter() + args.warmup
            while time.perf_counter() < end:
                one_instance(client, args.path)
            client.record = True
            rounds, per_round = [], args.seconds / args.rounds
            cpu_server0, cpu_client0 = cpu_seconds(proc.pid), time.process_time()
            total, wall0 = 0, time.perf_counter()
            load = Load((proc.pid,)).__enter__()
            for r in range(args.rounds):
                gc.collect()
                n, t0 = 0, time.perf_counter()
                while time.perf_counter() - t0 < per_round:
                    one_instance(client, args.path)
                    n += 1
                elapsed = time.perf_counter() - t0
                rounds.append(n / elapsed)
                total += n
                log(f"e2e round {r + 1}/{args.rounds}: {n} instances in {elapsed:.2f} s = {n / elapsed:.1f}/s")
            wall = time.perf_counter() - wall0
            load.__exit__()
            cpu_server = cpu_seconds(proc.pid) - cpu_server0
            cpu_client = time.process_time() - cpu_client0
            client.record = False
            one_instance(client, args.path, check=True)  # still right after the load
            db = tmp / "bpm.sqlite3"
            with sqlite3.connect(db) as conn:
                counts = {t: conn.execute(f"select count(*) from {t}").fetchone()[0]
                          for t in ("instance", "human_task", "log_entry")}
                completed = conn.execute("select count(*) from instance where status='completed'").fetchone()[0]
            errors = (tmp / "serve.log").read_text()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    requests = [t for kind, ts in client.timings.items() for t in ts]
    per_instance = 2 + len(STEPS[args.path])
    result = {
        "path": args.path, "requests_per_instance": per_instance, "instances": total,
        "rounds_per_s": [round(x, 2) for x in rounds], "instances_per_s": round(statistics.median(rounds), 2),
        "overall_instances_per_s": round(total / wall, 2),
        "requests_per_s": round(len(requests) / wall, 1),
        "request_ms": summary_ms(requests),
        "by_kind_ms": {k: summary_ms(v) for k, v in client.timings.items()},
        "server_cpu_ms_per_instance": round(cpu_server / total * 1000, 2),
        "client_cpu_ms_per_instance": round(cpu_client / total * 1000, 2),
        "reconnects": client.reconnects, "target": E2E_TARGET,
        "own_cpus": round(load.own, 2), "other_cpus": round(load.other, 2),
        "database_after": counts, "completed_instances": completed,
        "server_log_tail": errors.strip().splitlines()[-5:],
    }
    return result


class InProcessClient:
    """The same calls as `Client`, through the Flask test client (no socket, no waitress)."""

    def __init__(self, app):
        self.client = app.test_client()
        self.tokens: dict[str, str] = {}

    def call(self, kind, method, path, body=None, user=None, expect=200):
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        reply = self.client.open(path, method=method, json=body, headers=headers)
        if reply.status_code != expect:
            raise RuntimeError(f"{method} {path}: {reply.status_code} {reply.data[:300]!r}")
        return reply.get_json()

    def login(self, username: str) -> None:
        self.tokens[username] = self.call("token", "POST", "/api/v1/tokens",
                                          {"username": username, "password": "demo"}, expect=201)["token"]


class DirectClient:
    """The same instance driven through `engine.runtime.Runtime` itself: no Flask, no JSON."""

    def __init__(self, runtime):
        self.runtime = runtime

    def call(self, kind, method, path, body=None, user=None, expect=200):
        if path.endswith("/instances"):
            view = self.runtime.start("contract_review", user, body["data"])
        else:
            view = self.runtime.complete(path.split("/")[-2], user, body["data"])
        return {**view.as_json()}


def bench_layers(args) -> dict:
    """Where an HTTP instance's time goes: the engine alone, + Flask (test client), cProfile of Flask."""
    import cProfile
    import io
    import pstats

    from engine import access, clock, versions
    from engine.runtime import Runtime
    from engine.store import Store, migrate
    from processes import LOOKUPS, SERVICES
    from web import create_app

    tmp = Path(tempfile.mkdtemp(prefix="bpm_web_layers_"))
    out: dict[str, Any] = {}
    try:
        store = Store(f"sqlite:///{tmp / 'bpm.sqlite3'}")
        migrate(store)
        with store.write() as session:
            access.seed_demo(session)
            from engine import credit
            from processes.customers import DEMO_CREDIT_LIST
            credit.seed(session, DEMO_CREDIT_LIST, datetime.now(timezone.utc))  # the customer lookup reads it
        versions.deploy(store, [ROOT / "bpmn"])
        runtime = Runtime(store, SERVICES, lookups=LOOKUPS)
        flask_client = InProcessClient(create_app(runtime, {"TESTING": True}))
        for user in ("rep.wang", "dm.zhou", "vp.qian", "gm.zhao", "gmo.tang"):
            flask_client.login(user)
        clients = {"engine (Runtime, in process)": DirectClient(runtime),
                   "Flask test client (JSON API, in process)": flask_client}
        for c in clients.values():
            one_instance(c, args.path)
        per_round = args.seconds / args.rounds / 2
        rates: dict[str, list[float]] = {name: [] for name in clients}
        for _ in range(args.rounds):  # interleaved rounds
            for name, c in clients.items():
                gc.collect()
                n, t0 = 0, time.perf_counter()
                while time.perf_counter() - t0 < per_round:
                    one_instance(c, args.path)
                    n += 1
                rates[name].append(n / (time.perf_counter() - t0))
        token = flask_client.tokens["dm.zhou"]

        def resolve():
            with store.read() as session:
                access.person_for_token(session, token, clock.now())

        def bare():  # a Flask request through the test client that neither authenticates nor reads
            flask_client.client.get("/api/v1/no-such-resource")
        out["per_request_ms"] = {
            "bearer token -> person (access.person_for_token in a read session)":
                round(statistics.median(time_it(resolve, 2000, 100)) * 1000, 3),
            "Flask request without auth or database (test client, 404)":
                round(statistics.median(time_it(bare, 2000, 100)) * 1000, 3)}
        out["instances_per_s"] = {k: round(statistics.median(v), 2) for k, v in rates.items()}
        out["ms_per_instance"] = {k: round(1000 / statistics.median(v), 2) for k, v in rates.items()}
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(100):
            one_instance(flask_client, args.path)
        profile.disable()
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(r"(engine|web)/.*\.py", 25)
        out["profile_flask_100_instances"] = text.getvalue()
        store.dispose()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def print_e2e(r: dict) -> None:
    ok = "met" if r["instances_per_s"] >= r["target"] else "NOT met"
    print(f"\n== e2e over HTTP: contract_review, {r['path']} path ({r['requests_per_instance']} requests "
          f"per instance), one client, one `bpm serve` on SQLite")
    print(f"full instances/s: {r['instances_per_s']} (median of rounds {r['rounds_per_s']}; "
          f"{r['instances']} instances, overall {r['overall_instances_per_s']}/s) — target "
          f"{r['target']:.0f}/s {ok}")
    print(f"requests/s: {r['requests_per_s']}; server CPU {r['server_cpu_ms_per_instance']} ms and client "
          f"CPU {r['client_cpu_ms_per_instance']} ms per instance; reconnects {r['reconnects']}")
    print(f"{'request':<16}{'n':>7}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'mean ms':>9}")
    for kind, s in [("all", r["request_ms"]), *r["by_kind_ms"].items()]:
        print(f"{kind:<16}{s['n']:>7}{s['p50']:>9.2f}{s['p95']:>9.2f}{s['max']:>9.2f}{s['mean']:>9.2f}")
    print(f"database after the run: {r['database_after']}, completed {r['completed_instances']}")
    print(f"CPUs busy during the timed rounds: server+client {r['own_cpus']}, other processes {r['other_cpus']}")
    if r.get("layers"):
        print("same instances without HTTP (median of interleaved rounds):")
        for k, v in r["layers"]["instances_per_s"].items():
            print(f"  {k:<44} {v:>7.2f} instances/s  {r['layers']['ms_per_instance'][k]:>6.2f} ms per instance")
        for k, v in r["layers"]["per_request_ms"].items():
            print(f"  {k:<70} {v:>7.3f} ms (median of 2000)")
        if r["layers"].get("show_profile"):
            print(r["layers"]["profile_flask_100_instances"])


# === 2. the inbox on a large database ============================================================

# (process, element, role, weight): what is waiting in a busy company; forms are process.element.json
TASK_KINDS = [
    ("contract_review", "dm_review", "业务部经理审核 / Department manager review", "dept_manager", 14),
    ("contract_review", "vp_approval", "副总经理审批 / VP approval", "vp_sales", 6),
    ("contract_review", "gm_approval", "总经理审批 / General manager approval", "general_manager", 3),
    ("contract_review", "file_contract", "归档已签合同 / File the signed contract", "sales_rep", 8),
    ("contract_review", "revise", "修改合同并重新提交 / Revise and resubmit", "sales_rep", 2),
    ("order_to_settlement", "confirm_deposit", "确认收到定金 / Confirm deposit received", "finance", 12),
    ("order_to_settlement", "schedule_production", "安排生产 / Schedule production", "production", 8),
    ("order_to_settlement", "ship_goods", "发货（发货清单、承运） / Ship the goods", "warehouse", 8),
    ("order_to_settlement", "confirm_arrival", "确认货物到达 / Confirm goods arrived", "sales_secretary", 6),
    ("order_to_settlement", "reconcile", "财务核对到账金额 / Finance reconciles amounts received", "finance", 8),
    ("order_to_settlement", "chase_overdue", "催收逾期尾款 / Chase the overdue balance", "office_manager", 3),
    ("return_request", "om_sign", "办事处经理签发 / Office manager signs", "office_manager", 4),
    ("return_request", "plan_approval", "销售计划部审批滞销品 / Sales plan approves slow-moving goods", "sales_plan", 3),
    ("return_request", "inspect", "收货检验 / Receive and inspect", "warehouse", 5),
    ("return_request", "ship_replacement", "发出换货 / Ship the replacement", "warehouse", 2),
    ("return_request", "credit_note", "开具红字发票或退款 / Issue the credit note", "finance", 4),
    ("branch_establishment", "hq_review", "总部审查 / HQ review", "hq_admin", 1),
    ("branch_establishment", "board_approval", "董事会审批 / Board approval", "board", 1),
    ("branch_establishment", "rework", "申请人补正 / Applicant corrects the application", "regional_manager", 1),
    ("branch_establishment", "issue_certificate", "颁发设立允许证明并指定负责人 / Issue the certificate", "hq_admin", 1),
]
HOLDERS = {"dept_manager": ["dm.zhou"], "vp_sales": ["vp.qian"], "general_manager": ["gm.zhao"],
           "sales_rep": ["rep.wang", "rep.feng"], "finance": ["fin.chu"], "production": ["prod.jiang"],
           "warehouse": ["wh.wei"], "sales_secretary": ["ssg.shen"], "office_manager": ["om.wu"],
           "sales_plan": ["plan.chen"], "hq_admin": ["hq.li"], "board": ["board.sun"],
           "regional_manager": ["rm.zheng"]}
PREFIX = {"contract_review": "HT", "order_to_settlement": "DD", "return_request": "TH", "branch_establishment": "SL"}
CUSTOMERS = [f"C-{chr(c)}{n:02d}" for c in range(ord("A"), ord("Z") + 1) for n in range(1, 100)]


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _hex(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


def populate(store, n_tasks: int, n_log: int, now: datetime, seed: int = 20261123) -> dict:
    """Instances, one open human task each, and n_log log entries spread over them."""
    from sqlalchemy import func, insert, select

    from engine import access, versions
    from engine.store import Definition, HumanTask, Instance, LogEntry

    with store.write() as session:
        access.seed_demo(session)
    versions.deploy(store, [ROOT / "bpmn"], actor="design.yang")
    with store.read() as session:
        definitions = dict(session.execute(select(Definition.process_id, func.max(Definition.id))
                                           .group_by(Definition.process_id)).all())
    rng = random.Random(seed)
    kinds = TASK_KINDS
    weights = [k[4] for k in kinds]
    per_instance = [n_log // n_tasks + (1 if i < n_log % n_tasks else 0) for i in range(n_tasks)]
    t0 = time.perf_counter()
    chunk = 10_000
    stats = {"assigned_dm_zhou": 0, "dept_manager_open": 0, "due_null": 0, "overdue": 0}
    for start in range(0, n_tasks, chunk):
        instances, tasks, entries = [], [], []
        for i in range(start, min(n_tasks, start + chunk)):
            process, element, name, role, _w = rng.choices(kinds, weights)[0]
            instance_id = _uuid(rng)
            key = f"{PREFIX[process]}-2026-{i + 1:06d}"
            customer = None if process == "branch_establishment" else rng.choice(CUSTOMERS)
            amount = None if process == "branch_establishment" else round(
                min(5_000_000, max(2_000, rng.lognormvariate(math.log(180_000), 1.0))), -2)
            initiator = rng.choice(["rep.wang", "rep.feng"]) if process != "branch_establishment" else "rm.zheng"
            due = None if rng.random() < 0.05 else now + timedelta(seconds=rng.uniform(-7, 7) * 86400)
            created = (due - timedelta(seconds=rng.uniform(4 * 3600, 3 * 86400)) if due
                       else now - timedelta(seconds=rng.uniform(0, 14 * 86400)))
            began = created - timedelta(seconds=rng.uniform(0, 10 * 86400))
            if role == "sales_rep":
                assignee = initiator
            elif role == "office_manager" and element == "chase_overdue" and rng.random() < 0.3:
                assignee = "dm.zhou"  # dunning escalated to the department manager
            else:
                assignee = rng.choice(HOLDERS[role]) if rng.random() < 0.1 else None
            stats["assigned_dm_zhou"] += assignee == "dm.zhou"
            stats["dept_manager_open"] += role == "dept_manager" and assignee is None
            stats["due_null"] += due is None
            stats["overdue"] += due is not None and due < now
            seqs = per_instance[i]
            prev = "0" * 64
            for seq in range(1, seqs + 1):
                at = began + (created - began) * (seq / max(1, seqs))
                h = _hex(rng)
                entries.append({"instance_id": instance_id, "seq": seq, "at": at,
                                "actor": initiator if seq == 1 else rng.choice(["dm.zhou", "vp.qian", "fin.chu", "wh.wei"]),
                                "command": "start" if seq == 1 else "complete",
                                "task_id": None if seq == 1 else _uuid(rng),
                                "input": ({"customer": customer, "amount": amount} if seq == 1
                                          else {"decision": "approve"}),
                                "state_hash": _hex(rng), "prev_hash": prev, "hash": h})
                prev = h
            instances.append({"id": instance_id, "definition_id": definitions[process], "process_id": process,
                              "status": "running", "business_key": key, "customer": customer, "amount": amount,
                              "initiator": initiator, "state": '{"bench": "no state: the inbox never reads it"}',
                              "state_hash": _hex(rng), "revision": seqs, "log_hash": prev,
                              "created_at": began, "updated_at": created, "completed_at": None})
            tasks.append({"id": _uuid(rng), "instance_id": instance_id, "process_id": process,
                          "element_id": element, "name": name, "role": role, "assignee": assignee,
                          "form": f"{process}.{element}.json", "business_key": key, "customer": customer,
                          "amount": amount, "created_at": created, "due_at": due})
        with store.engine.begin() as conn:
            conn.execute(insert(Instance), instances)
            conn.execute(insert(HumanTask), tasks)
            if entries:
                conn.execute(insert(LogEntry), entries)
        done = min(n_tasks, start + chunk)
        if done % 20_000 == 0 or done == n_tasks:
            log(f"  {done:>7} instances/tasks, {sum(per_instance[:done]):>8} log entries "
                f"({time.perf_counter() - t0:.0f} s)")
    stats["seconds"] = round(time.perf_counter() - t0, 1)
    return stats


QUERIES = [
    ("first page, default sort (due)", {}),
    ("customer=C-B07", {"customer": "C-B07"}),
    ("overdue=1", {"overdue": "1"}),
    ("amount 100000..500000", {"amount_min": "100000", "amount_max": "500000"}),
    ("sort=amount desc", {"sort": "amount", "desc": "1"}),
    ("scope=mine", {"scope": "mine"}),
    ("page=100", {"page": "100"}),
    # page 100 as the Next link of page 99 asks for it: by position (keyset), not by OFFSET
    ("page=100 by Next (after=)", "next_of_page_99"),
]


def _next_of_page_99(store, who) -> dict | None:
    from engine import clock, inbox
    from engine.inbox import InboxQuery
    with store.read() as session:
        page = inbox.search(session, who, InboxQuery(page=99), clock.now())
    return {"page": "100", "after": page.next_after} if page.next_after else None  # fewer pages


def capture_sql(store):
    """Record (statement, parameters) of what runs on the store's engine while active."""
    from sqlalchemy import event
    seen: list[tuple[str, Any]] = []

    def before(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, parameters))
    event.listen(store.engine, "before_cursor_execute", before)

    def stop():
        event.remove(store.engine, "before_cursor_execute", before)
        return seen
    return stop


def explain(store, statements: list[tuple[str, Any]]) -> list[dict]:
    out = []
    raw = store.engine.raw_connection()
    try:
        cur = raw.cursor()
        for sql, params in statements:
            if not sql.lstrip().upper().startswith("SELECT"):
                continue
            if store.is_sqlite:
                cur.execute("EXPLAIN QUERY PLAN " + sql, params)
                plan = [f"{r[0]}|{r[1]}|{r[3]}" for r in cur.fetchall()]
            else:
                cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
                plan = [r[0] for r in cur.fetchall()]
            out.append({"sql": " ".join(sql.split()), "params": [str(p) for p in (
                params.values() if isinstance(params, dict) else params)], "plan": plan})
    finally:
        raw.rollback() if not store.is_sqlite else None
        raw.close()
    return out


def time_it(fn: Callable[[], Any], n: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    gc.collect()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def measure_inbox(store, n: int, warmup: int, username: str = "dm.zhou") -> dict:
    from engine import access, clock, inbox
    from engine.inbox import InboxQuery
    from engine.runtime import Runtime
    from processes import LOOKUPS, SERVICES
    from web import create_app

    runtime = Runtime(store, SERVICES, lookups=LOOKUPS)
    app = create_app(runtime, {"TESTING": True})
    api = app.test_client()
    reply = api.post("/api/v1/tokens", json={"username": username, "password": "demo"})
    assert reply.status_code == 201, reply.json
    bearer = {"Authorization": f"Bearer {reply.json['token']}"}
    page = app.test_client()
    with page.session_transaction() as s:  # what a sign-in leaves in the session (Flask-Login)
        s["_user_id"], s["_fresh"] = username, True
    probe = page.get("/")
    page_works = probe.status_code == 200 and b"<table" in probe.data
    page_error = None if page_works else f"GET / -> {probe.status_code}: {probe.data[:300]!r}"
    with store.read() as session:
        who = access.person(session, username)

    results = []
    for label, args in QUERIES:
        if args == "next_of_page_99":
            args = _next_of_page_99(store, who)
            if args is None:
                continue
        query = InboxQuery.from_args(args)
        qs = ("?" + urlencode(args)) if args else ""

        def engine_call():
            with store.read() as session:
                return inbox.search(session, who, query, clock.now())

        def api_call():
            r = api.get("/api/v1/tasks" + qs, headers=bearer)
            if r.status_code != 200:
                raise RuntimeError(f"GET /api/v1/tasks{qs}: {r.status_code} {r.data[:300]!r}")
            return r

        def page_call():
            r = page.get("/" + qs)
            if r.status_code != 200:
                raise RuntimeError(f"GET /{qs}: {r.status_code} {r.data[:300]!r}")
            return r

        first = engine_call()
        stop = capture_sql(store)
        engine_call()
        plans = explain(store, stop())
        body = api_call().json
        assert body["total"] == first.total and len(body["tasks"]) == len(first.tasks), (body["total"], first.total)
        statements = {}
        for kind, call in (("engine", engine_call), ("api", api_call), ("page", page_call)):
            if kind == "page" and not page_works:
                continue
            stop = capture_sql(store)
            call()
            statements[kind] = len(stop())
        with Load(postgres=not store.is_sqlite) as load:
            row = {"query": label, "args": args, "total": first.total, "rows": len(first.tasks),
                   "engine_ms": summary_ms(time_it(engine_call, n, warmup)),
                   "api_ms": summary_ms(time_it(api_call, n, warmup)),
                   "page_ms": summary_ms(time_it(page_call, n, warmup)) if page_works else None,
                   "statements": statements, "plans": plans}
        row["other_cpus"] = round(load.other, 2)
        if not store.is_sqlite:
            row["postgres_cpus"] = round(load.postgres, 2)
        results.append(row)
        log(f"  {label:<32} total {first.total:>6}  engine p95 {row['engine_ms']['p95']:7.2f}  "
            f"api p95 {row['api_ms']['p95']:7.2f}  page p95 "
            f"{row['page_ms']['p95'] if row['page_ms'] else '-':>7} ms; SQL statements {statements}; "
            f"other processes {row['other_cpus']} CPUs"
            + (f" (PostgreSQL server {row['postgres_cpus']})" if "postgres_cpus" in row else ""))
    return {"user": username, "roles": sorted(who.roles), "page_works": page_works,
            "page_error": page_error, "queries": results}


CANDIDATE_INDEXES = [  # what would serve search(); created only on a copy / the throw-away database
    "CREATE INDEX bench_ht_visible_cover ON human_task (assignee, role, due_at, amount, customer)",
    "CREATE INDEX bench_ht_open_role_order ON human_task (role, (due_at IS NULL), due_at, created_at, id) "
    "WHERE assignee IS NULL",
    "CREATE INDEX bench_ht_assignee_order ON human_task (assignee, (due_at IS NULL), due_at, created_at, id)",
    "CREATE INDEX bench_ht_customer ON human_task (customer)",
]


def try_indexes(store, now: datetime, username: str = "dm.zhou", role: str = "dept_manager") -> dict:
    """Time search()'s statements as the engine writes them and rewritten, before and after the
    candidate indexes: evidence for which index (and which query shape) would fix a slow inbox."""
    cols = ("id, instance_id, process_id, element_id, name, role, assignee, form, business_key, "
            "customer, amount, created_at, due_at")
    visible = f"(assignee = '{username}' OR assignee IS NULL AND role IN ('{role}'))"
    order = "due_at IS NULL, due_at, created_at, id"
    stamp = now.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")

    def union(offset: int, extra: str = "") -> str:
        # the two branches of `visible` are disjoint (assignee = me / assignee IS NULL)
        return (f"SELECT * FROM (SELECT * FROM (SELECT {cols} FROM human_task WHERE assignee = '{username}'{extra} "
                f"ORDER BY {order} LIMIT {offset + 50}) a UNION ALL SELECT * FROM (SELECT {cols} FROM human_task "
                f"WHERE assignee IS NULL AND role = '{role}'{extra} ORDER BY {order} LIMIT {offset + 50}) b) u "
                f"ORDER BY {order} LIMIT 50 OFFSET {offset}")

    def count2(extra: str = "") -> str:
        return (f"SELECT (SELECT count(*) FROM human_task WHERE assignee = '{username}'{extra}) + "
                f"(SELECT count(*) FROM human_task WHERE assignee IS NULL AND role = '{role}'{extra})")
    filters = {"": "", "customer=C-B07": " AND customer = 'C-B07'", "overdue=1": f" AND due_at < '{stamp}'",
               "amount 100000..500000": " AND amount >= 100000 AND amount <= 500000"}
    statements = []
    for label, extra in filters.items():
        name = label or "no filter"
        statements.append((f"count, {name}", f"SELECT count(*) FROM human_task WHERE {visible}{extra}", count2(extra)))
        statements.append((f"first page, {name}", f"SELECT {cols} FROM human_task WHERE {visible}{extra} "
                           f"ORDER BY {order} LIMIT 50 OFFSET 0", union(0, extra)))
    statements.append(("page=100, no filter", f"SELECT {cols} FROM human_task WHERE {visible} ORDER BY {order} "
                       "LIMIT 50 OFFSET 4950", union(4950)))

    def timed(conn, sql: str) -> tuple[float, list]:
        for _ in range(3):
            rows = conn.exec_driver_sql(sql).fetchall()
        runs = []
        for _ in range(15):
            t0 = time.perf_counter()
            conn.exec_driver_sql(sql).fetchall()
            runs.append((time.perf_counter() - t0) * 1000)
        return round(statistics.median(runs), 2), rows

    def plan(conn, sql: str) -> list[str]:
        if store.is_sqlite:
            return [r[3] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)]
        return [r[0].strip() for r in conn.exec_driver_sql("EXPLAIN " + sql)
                if any(w in r[0] for w in ("Scan", "Sort", "Append"))]

    out = []
    with store.engine.connect() as conn:
        for label, as_engine, rewritten in statements:
            ms, rows = timed(conn, as_engine)
            ms_rw, rows_rw = timed(conn, rewritten)
            if [tuple(r) for r in rows] != [tuple(r) for r in rows_rw]:
                raise RuntimeError(f"the rewritten statement for {label} returns other rows")
            out.append({"statement": label, "as_engine_ms": ms, "rewritten_ms": ms_rw})
        conn.rollback()
    with store.engine.begin() as conn:
        for ddl in CANDIDATE_INDEXES:
            conn.exec_driver_sql(ddl)
        conn.exec_driver_sql("ANALYZE human_task" if not store.is_sqlite else "ANALYZE")
    with store.engine.connect() as conn:
        for row, (label, as_engine, rewritten) in zip(out, statements):
            row["as_engine_indexed_ms"], _ = timed(conn, as_engine)
            row["rewritten_indexed_ms"], _ = timed(conn, rewritten)
            row["plan_as_engine_indexed"] = plan(conn, as_engine)
            row["plan_rewritten_indexed"] = plan(conn, rewritten)
        conn.rollback()
    return {"indexes": CANDIDATE_INDEXES, "statements": out}


def print_try_indexes(r: dict, backend: str) -> None:
    print(f"\n-- {backend}: search()'s statements (median of 15, ms), as the engine writes them and rewritten as "
          "the union / sum of the two disjoint branches (held by me; open to my roles), before and after:")
    for ddl in r["indexes"]:
        print(f"   {ddl}")
    print(f"   {'statement':<34}{'engine SQL':>12}{'rewritten':>12}{'engine SQL+ix':>15}{'rewritten+ix':>14}")
    for s in r["statements"]:
        print(f"   {s['statement']:<34}{s['as_engine_ms']:>12.2f}{s['rewritten_ms']:>12.2f}"
              f"{s['as_engine_indexed_ms']:>15.2f}{s['rewritten_indexed_ms']:>14.2f}")


def table_counts(store) -> dict:
    from sqlalchemy import text
    with store.engine.connect() as conn:
        return {t: conn.execute(text(f"select count(*) from {t}")).scalar()
                for t in ("instance", "human_task", "log_entry")}


def bench_inbox_sqlite(args) -> dict:
    from engine.store import Store, migrate
    tmp = None
    if args.reuse:
        path = Path(args.reuse)
        log(f"inbox/sqlite: reusing {path}")
        build = None
    else:
        tmp = Path(tempfile.mkdtemp(prefix="bpm_web_inbox_"))
        path = Path(args.keep) if args.keep else tmp / "bpm.sqlite3"
        if path.exists():
            path.unlink()
    store = Store(f"sqlite:///{path}")
    try:
        if not args.reuse:
            migrate(store)
            log(f"inbox/sqlite: populating {path} with {args.tasks} tasks and {args.log} log entries")
            build = populate(store, args.tasks, args.log, datetime.now(timezone.utc))
            raw = store.engine.raw_connection()  # as a long-running database would be: WAL folded in
            try:
                raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                raw.close()
        if args.analyze:
            with store.engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE")
        counts = table_counts(store)
        size = path.stat().st_size
        log(f"inbox/sqlite: {counts}, {size / 2**20:.0f} MiB; timing {args.requests} requests per query")
        result = measure_inbox(store, args.requests, args.warmup_requests)
        if args.try_indexes:
            store.dispose()
            scratch = Path(tempfile.mkdtemp(prefix="bpm_web_ix_"))
            try:
                shutil.copy(path, scratch / "copy.sqlite3")
                copy = Store(f"sqlite:///{scratch / 'copy.sqlite3'}")
                log("inbox/sqlite: trying the candidate indexes on a copy")
                result["try_indexes"] = try_indexes(copy, datetime.now(timezone.utc))
                copy.dispose()
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
    finally:
        store.dispose()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return {"backend": "sqlite", "analyzed": args.analyze, "build": build, "counts": counts,
            "file_mib": round(size / 2**20), **result}


def bench_inbox_postgres(args) -> dict:
    from sqlalchemy import create_engine, text

    from engine.store import Store, migrate
    admin_url = args.postgres_url.replace("postgresql://", "postgresql+psycopg://", 1)
    name = f"bpm_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
        server_version = conn.execute(text("show server_version")).scalar()
    store = Store(admin_url.rsplit("/", 1)[0] + f"/{name}")
    try:
        migrate(store)
        log(f"inbox/postgresql: populating database {name} with {args.tasks} tasks and {args.log} log entries")
        build = populate(store, args.tasks, args.log, datetime.now(timezone.utc))
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")  # what autovacuum would have done by then
        counts = table_counts(store)
        log(f"inbox/postgresql: {counts}; timing {args.requests} requests per query")
        result = measure_inbox(store, args.requests, args.warmup_requests)
        if args.try_indexes:
            log("inbox/postgresql: trying the candidate indexes")
            result["try_indexes"] = try_indexes(store, datetime.now(timezone.utc))
    finally:
        store.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return {"backend": "postgresql", "server": server_version, "analyzed": True, "build": build,
            "counts": counts, **result}


def print_inbox(r: dict) -> None:
    _print_inbox(r)
    if r.get("try_indexes"):
        print_try_indexes(r["try_indexes"], r["backend"])


def _print_inbox(r: dict) -> None:
    print(f"\n== inbox at scale on {r['backend']}{' ' + r.get('server', '') if r.get('server') else ''}: "
          f"{r['counts']}, as {r['user']} {r['roles']}"
          + (f" (ANALYZE run)" if r["analyzed"] else " (no ANALYZE)"))
    if r.get("build"):
        b = r["build"]
        print(f"populated in {b['seconds']} s: open dept_manager tasks {b['dept_manager_open']}, held by dm.zhou "
              f"{b['assigned_dm_zhou']}, overdue {b['overdue']}, no due time {b['due_null']}")
    if not r["page_works"]:
        print(f"approvers' page not measured: {r['page_error']}")
    print(f"{'query':<34}{'total':>7}  {'search() p50/p95/max ms':>25}  {'GET /api/v1/tasks':>22}  "
          f"{'GET /':>22}  {'SQL e/a/p':>10}  {'other CPUs':>10}")
    slow, slow_sql = [], []
    for q in r["queries"]:
        def cell(s):
            return f"{s['p50']:.1f} / {s['p95']:.1f} / {s['max']:.1f}" if s else "-"
        print(f"{q['query']:<34}{q['total']:>7}  {cell(q['engine_ms']):>25}  {cell(q['api_ms']):>22}  "
              f"{cell(q['page_ms']):>22}  {'/'.join(str(v) for v in q['statements'].values()):>10}  "
              f"{str(q['other_cpus']) + (' (pg ' + str(q['postgres_cpus']) + ')' if 'postgres_cpus' in q else ''):>10}")
        worst = max(s["p95"] for s in (q["engine_ms"], q["api_ms"], q["page_ms"]) if s)
        if worst > INBOX_TARGET_MS:
            slow.append(q)
        if q["engine_ms"]["p95"] > INBOX_TARGET_MS / 2:
            slow_sql.append(q)
    met = not slow
    print(f"target p95 <= {INBOX_TARGET_MS:.0f} ms: {'met' if met else 'NOT met'} "
          f"({len(slow)} of {len(r['queries'])} queries over it: {[q['query'] for q in slow]}); "
          f"plans below for the queries whose search() p95 > {INBOX_TARGET_MS / 2:.0f} ms")
    for q in (r["queries"] if getattr(print_inbox, "all_plans", False) else slow_sql):
        print(f"\n-- plans for {q['query']}:")
        for p in q["plans"]:
            print(f"   {p['sql']}")
            print(f"   params {p['params']}")
            for line in p["plan"]:
                print(f"     {line}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["e2e", "inbox", "all"], nargs="?", default="all")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--seconds", type=float, default=15, help="e2e: timed seconds, split over the rounds")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=float, default=3, help="e2e: warm-up seconds")
    parser.add_argument("--path", choices=list(STEPS), default="standard")
    parser.add_argument("--breakdown", action="store_true",
                        help="e2e: also run the instances in process, on the engine alone and through Flask")
    parser.add_argument("--profile", action="store_true", help="e2e --breakdown: print a cProfile of the Flask path")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument("--postgres-url", default=POSTGRES_ADMIN,
                        help="an existing database to connect to for CREATE/DROP DATABASE bpm_bench_*")
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--log", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup-requests", type=int, default=10)
    parser.add_argument("--keep", help="inbox/sqlite: build the database at this path and keep it")
    parser.add_argument("--reuse", help="inbox/sqlite: measure an already built database")
    parser.add_argument("--analyze", action="store_true", help="inbox/sqlite: run ANALYZE before timing")
    parser.add_argument("--try-indexes", action="store_true",
                        help="inbox: afterwards, time search()'s statements with candidate indexes and rewritten "
                             "(SQLite: on a copy; PostgreSQL: in the throw-away database)")
    parser.add_argument("--plans", action="store_true", help="print every query plan, not only the slow ones")
    args = parser.parse_args(argv)
    print_inbox.all_plans = args.plans

    out: dict[str, Any] = {"machine": machine(), "started": datetime.now(timezone.utc).isoformat()}
    if args.what in ("e2e", "all"):
        out["e2e"] = bench_e2e(args)
        if args.breakdown:
            out["e2e"]["layers"] = bench_layers(args)
            out["e2e"]["layers"]["show_profile"] = args.profile
        if not args.json:
            print_e2e(out["e2e"])
    if args.what in ("inbox", "all"):
        out["inbox"] = []
        if args.backend in ("sqlite", "both"):
            out["inbox"].append(bench_inbox_sqlite(args))
            if not args.json:
                print_inbox(out["inbox"][-1])
        if args.backend in ("postgresql", "both"):
            out["inbox"].append(bench_inbox_postgres(args))
            if not args.json:
                print_inbox(out["inbox"][-1])
    if args.json:
        print(json.dumps(out, indent=1, ensure_ascii=False, default=str))
    else:
        m = out["machine"]
        print(f"\n{m['cpu']}, {m['usable_cpus']} CPUs; Python {m['python']}, SQLite {m['sqlite']}, "
              f"SQLAlchemy {m['sqlalchemy']}, Flask {m['flask']}, waitress {m['waitress']}; commit {m['commit']}"
              + (f" (uncommitted changes: {', '.join(m['dirty'])})" if m["dirty"] else ""))


if __name__ == "__main__":
    main()
