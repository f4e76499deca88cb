"""A bounded load test (issue 12, item 9): U simulated users over the four company processes for T
seconds against `bpm serve --processes N --workers 0` and one separate `bpm worker`, on a
PostgreSQL database of its own; then `bpm verify --all` on everything they did.

The users work through the JSON API with bearer tokens (as bench/web.py), one kept-alive
connection per user, and think between any two requests (default 0.2–1.0 s, uniform). Each
user, again and again, walks one of these paths with the demo organisation, each step done by
the person docs/processes.md gives it to (tests/test_processes.py walks the same paths):

  contract_review (30 %)     rep submits (standard 55 %, price deviation 25 %, major 20 %) ->
                             dm.zhou [-> vp.qian | gm.zhao] -> gmo.tang -> the rep files it; one in
                             six is first rejected by dm.zhou and revised by the rep (a new round).
                             Half the approved contracts are then ordered from (an order under the
                             contract: its product at its price, 200 of its quantity).
  order_to_settlement (55 %) rep raises a phone order for C-A01, C-B01 or C-C01 (credit A, B, C)
                             -> dm.zhou (or gmo.tang when the rep chose the general office)
                             approves (one in twenty rejected: the order ends) -> fin.chu confirms
                             the deposit (one in four in two instalments) -> prod.jiang schedules
                             -> wh.wei ships (one in three in two shipments) -> for B and C
                             ssg.shen confirms arrival -> the balance arrives as the message
                             `payment_received`, sent as finance sends it (fin.chu finds the order
                             with GET /api/v1/orders, then posts amount, voucher and date received)
                             or as the bank feed does (bank.feed: amount and reference), in one or
                             two payments, each with an Idempotency-Key -> fin.chu and the rep
                             reconcile. Two in five shipped orders get a return request first:
  return_request             the rep files it against the shipped order (quality, slow-moving,
                             wrong shipment or transport damage; a return or an exchange) ->
                             the office manager of the rep's office signs (one in ten rejects) ->
                             plan.chen for slow-moving goods -> wh.wei inspects (transport damage:
                             first "disagrees", back to the office manager) -> fin.chu credits the
                             returned value, or wh.wei ships the replacement.
  branch_establishment (15 %) rm.zheng applies (office, branch company or subsidiary) -> hq.li
                             (one in five sent back for rework, one in ten rejected) -> board.sun
                             for a company -> hq.li issues the certificate, confirms registration
                             and filing.

Before a task, one time in four the actor first reads their inbox (GET /api/v1/tasks). Any
answer other than the one the step expects (a 5xx, or a 4xx the path does not expect) is an
error: it is printed at once and counted, and that user starts a new path. When the time is up a
user stops between two requests (instances left half way are still running, and verified).

Reported: requests/s, p50/p95/p99/max per request kind and overall, errors, instances completed
per process, the load average of the machine sampled every 5 s during the run, the CPU the
server processes and the worker used, and `bpm verify --all`'s exit code and counts.

Bounded: the whole run (setup, load, verify) has a hard wall-clock limit (`--hard-limit`,
default seconds + 900); the server, the worker and the client processes are killed and the
database is dropped at the end, on an error and on Ctrl-C too.

Usage: .venv/bin/python bench/load.py [--seconds 300] [--users 50] [--procs 10] [--processes 2]
                                      [--think 0.2 1.0] [--json]
Needs BPM_BENCH_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test), whose server
may create databases; a database bpm_load_<random> is made and dropped.
"""
from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import multiprocessing
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("bench_serve", ROOT / "bench" / "serve.py")
bench_serve = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_serve)  # puts ROOT first on sys.path, sets BPM_SECRET_KEY
bench_web = bench_serve.bench_web
log = bench_serve.log

from processes import customers as demo_customers  # noqa: E402  (after the path is set)

PG_ADMIN = bench_serve.PG_ADMIN
USERS = ("rep.wang", "rep.feng", "rep.liu", "dm.zhou", "vp.qian", "gm.zhao", "gmo.tang", "rm.zheng",
         "hq.li", "board.sun", "om.wu", "om.lin", "plan.chen", "fin.chu", "wh.wei", "prod.jiang",
         "ssg.shen", "bank.feed")
REPS = {"rep.wang": "om.wu", "rep.feng": "om.wu", "rep.liu": "om.lin"}  # rep -> their office manager
PROCESSES = ("branch_establishment", "contract_review", "return_request", "order_to_settlement")


class Stop(Exception):
    """The time is up: the user stops between two requests."""


class Unexpected(Exception):
    """An answer the path did not expect (an error of the run)."""


class User:
    """One simulated user: a kept-alive connection, bearer tokens, think time before every request,
    every request timed by kind (send to last byte read, think time excluded)."""

    def __init__(self, port: int, tokens: dict, end: float, seed: int, think: tuple[float, float]):
        self.port, self.tokens, self.end, self.think = port, tokens, end, think
        self.rng = random.Random(seed)
        self.seed = seed
        self.timings: dict[str, list[float]] = {}
        self.statuses: dict[int, int] = {}
        self.conn: http.client.HTTPConnection | None = None
        self.reconnects = 0
        self._connect()

    def _connect(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.reconnects += 1
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        self.conn.connect()
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def call(self, kind: str, method: str, path: str, user: str, body=None, expect: int = 200):
        pause = self.rng.uniform(*self.think)
        if time.time() + pause >= self.end:
            raise Stop
        time.sleep(pause)
        headers = {"Accept": "application/json", "Authorization": f"Bearer {self.tokens[user]}"}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if method == "POST":  # a retried request acts once (engine.runtime, "exactly once")
            headers["Idempotency-Key"] = uuid.uuid4().hex
        t0 = time.perf_counter()
        try:
            self.conn.request(method, path, payload, headers)
            reply = self.conn.getresponse()
            raw = reply.read()
        except (http.client.HTTPException, ConnectionError):
            self._connect()  # the server closed the kept-alive connection: once more, same key
            self.conn.request(method, path, payload, headers)
            reply = self.conn.getresponse()
            raw = reply.read()
        elapsed = time.perf_counter() - t0
        self.timings.setdefault(kind, []).append(elapsed)
        self.statuses[reply.status] = self.statuses.get(reply.status, 0) + 1
        if reply.getheader("Connection", "").lower() == "close":
            self._connect()
        if reply.status != expect:
            raise Unexpected(f"{kind}: {method} {path} as {user}: {reply.status} "
                             f"{raw[:400].decode('utf-8', 'replace')}")
        return json.loads(raw) if raw else None

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    # --- the steps every path is made of ------------------------------------------------------

    def start(self, process: str, user: str, data: dict) -> dict:
        return self.call(f"{process}.start", "POST", f"/api/v1/processes/{process}/instances", user,
                         {"data": data}, expect=201)

    def do(self, view: dict, element_id: str, user: str, data: dict | None = None) -> dict:
        found = [t for t in view["tasks"] if t["element_id"] == element_id]
        if len(found) != 1:
            raise Unexpected(f"{view['process_id']} {view['id']}: expected one {element_id}; waiting: "
                             f"{[t['element_id'] for t in view['tasks']]} (status {view['status']})")
        if self.chance(0.25):
            self.call("inbox", "GET", "/api/v1/tasks", user)
        return self.call(f"{view['process_id']}.{element_id}", "POST", f"/api/v1/tasks/{found[0]['id']}/complete",
                         user, {"data": data or {}})

    def instance(self, instance_id: str, user: str) -> dict:
        return self.call("instance", "GET", f"/api/v1/instances/{instance_id}", user)


def today() -> str:
    return date.today().isoformat()


def later(days: int) -> str:
    return (date.today() + timedelta(days=days)).isoformat()


def ended(view: dict, done: dict) -> dict:
    if view["status"] != "completed" or view["tasks"]:
        raise Unexpected(f"{view['process_id']} {view['id']} not completed: {view['status']} "
                         f"{[t['element_id'] for t in view['tasks']]}")
    done[view["process_id"]] = done.get(view["process_id"], 0) + 1
    return view


# --- contract_review ------------------------------------------------------------------------------

def contract(u: User, done: dict) -> dict:
    rep = u.rng.choice(list(REPS))
    path = u.rng.choices(["standard", "deviation", "major"], [0.55, 0.25, 0.20])[0]
    data = bench_web.contract_data(path)
    view = u.start("contract_review", rep, data)
    if u.chance(1 / 6):  # rejected by the department manager, revised on standard terms, a new round
        view = u.do(view, "dm_review", "dm.zhou", {"decision": "reject", "comment": "请按原报价重新谈判"})
        standard = bench_web.contract_data("standard")
        view = u.do(view, "revise", rep, {k: v for k, v in standard.items() if not k.startswith("quote_")
                                          and k != "customer"})
        path = "standard"
    for step in bench_web.STEPS[path]:
        view = u.do(view, step, bench_web.APPROVERS[step], {"decision": "approve"})
    view = u.do(view, "file_contract", rep, {"signed_on": today(), "archive_location": "业务部办公室文件柜 A-3"})
    ended(view, done)
    if u.chance(0.5):  # an order under the approved contract: its product, at its price
        line = dict(view["data"]["lines"][0])
        order(u, done, rep=rep, customer=view["data"]["customer"], contract_no=view["data"]["contract_no"],
              line={"product": line["product"], "spec": line["spec"], "quantity": 200,
                    "unit_price": line["unit_price"]})
    return view


# --- order_to_settlement (and return_request on its shipped goods) -------------------------------

GOODS = [("芝麻灰花岗岩板", "600x600x20", 300), ("爵士白大理石板", "800x800x18", 800), ("中国黑花岗岩板", "600x300x30", 450)]


def order(u: User, done: dict, rep: str | None = None, customer: str | None = None,
          contract_no: str | None = None, line: dict | None = None) -> dict:
    rep = rep or u.rng.choice(list(REPS))
    customer = customer or u.rng.choice(["C-A01", "C-B01", "C-C01"])
    card = demo_customers.CUSTOMERS[customer]
    if line is None:
        product, spec, price = u.rng.choice(GOODS)
        line = {"product": product, "spec": spec, "quantity": u.rng.choice([100, 200, 300]), "unit_price": price}
    data = {"customer": customer, "contact": card["contact"], "lines": [line],
            "delivery_address": card["address"], "delivery_date": later(30)}
    approver = None
    if contract_no:
        data["contract_no"] = contract_no
    else:
        data["order_source"] = u.rng.choice(["phone", "fax"])
        if u.chance(0.25):
            data["approver"] = "general_office"
        approver = "gmo.tang" if data.get("approver") == "general_office" else "dm.zhou"
    view = u.start("order_to_settlement", rep, data)
    if approver:
        step = "approve_order_go" if approver == "gmo.tang" else "approve_order_dm"
        if u.chance(0.05):
            return ended(u.do(view, step, approver, {"decision": "reject", "comment": "客户信用待核实"}), done)
        view = u.do(view, step, approver, {"decision": "approve"})
    deposit = view["data"]["deposit_required"]
    parts = [round(deposit * 0.4, 2), round(deposit - round(deposit * 0.4, 2), 2)] if u.chance(0.25) else [deposit]
    for part in parts:
        view = u.do(view, "confirm_deposit", "fin.chu", {"deposit_received": part, "received_on": today(),
                                                          "voucher_no": f"BK-{uuid.uuid4().hex[:10]}"})
    view = u.do(view, "schedule_production", "prod.jiang", {
        "work_order_no": f"WO-{uuid.uuid4().hex[:8]}", "planned_start": today(), "planned_finish": later(14)})
    quantity = line["quantity"]
    shipments = [quantity // 2, quantity - quantity // 2] if u.chance(1 / 3) else [quantity]
    for n, qty in enumerate(shipments):
        view = u.do(view, "ship_goods", "wh.wei", {
            "shipping_list": [{"line": 1, "quantity": qty}], "carrier": "德邦物流",
            "tracking_no": f"DB{uuid.uuid4().hex[:10]}", "shipped_on": today()})
    if u.chance(0.4):
        return_request(u, done, rep, view["data"]["order_no"], customer, line)
    if customer != "C-A01":  # B and C: the balance falls due on arrival
        view = u.do(view, "confirm_arrival", "ssg.shen", {"arrived_on": today(), "received_by": card["contact"]})
    balance = view["data"]["balance"]
    payments = [round(balance / 2, 2), round(balance - round(balance / 2, 2), 2)] if u.chance(0.4) else [balance]
    for amount in payments:
        pay(u, view, amount)
    view = u.instance(view["id"], rep)
    paid = view["data"]["paid"]
    view = u.do(view, "reconcile", "fin.chu", {"confirmed_total": paid, "reconciled_on": today()})
    view = u.do(view, "reconcile_rep", rep, {"rep_confirmed_total": paid, "rep_reconciled_on": today()})
    return ended(view, done)


def pay(u: User, view: dict, amount: float) -> None:
    """One payment as finance records it (find the order, then the message with a voucher) or as
    the bank feed sends it (the message with the bank's reference)."""
    order_no = view["data"]["order_no"]
    if u.chance(0.5):
        found = u.call("orders.search", "GET", f"/api/v1/orders?order_no={order_no}", "fin.chu")
        if [o["order_no"] for o in found] != [order_no] or found[0]["status"] != "awaiting_payment":
            raise Unexpected(f"orders.search {order_no}: {[(o['order_no'], o.get('status')) for o in found]}")
        body = {"data": {"order_no": order_no, "amount": amount, "voucher": f"PZ-{uuid.uuid4().hex[:10]}",
                         "received_on": today()}, "correlation": {"order_no": order_no}}
        sender, kind = "fin.chu", "payment.finance"
    else:
        body = {"data": {"order_no": order_no, "amount": amount, "reference": f"BANK-{uuid.uuid4().hex}"},
                "correlation": {"order_no": order_no}}
        sender, kind = "bank.feed", "payment.bank_feed"
    reply = u.call(kind, "POST", "/api/v1/messages/payment_received", sender, body)
    if reply.get("delivered_to") != [view["id"]]:
        raise Unexpected(f"{kind} {order_no}: delivered to {reply}")


REASONS = [("quality", "return"), ("slow_moving", "exchange"), ("wrong_shipment", "exchange"),
           ("transport_damage", "return")]


def return_request(u: User, done: dict, rep: str, order_no: str, customer: str, line: dict) -> dict:
    reason, kind = u.rng.choice(REASONS)
    quantity = u.rng.choice([5, 10, 20])
    view = u.start("return_request", rep, {
        "customer": customer, "order_no": order_no, "reason": reason, "kind": kind,
        "lines": [{"product": line["product"], "spec": line["spec"], "quantity": quantity}],
        "description": "表面有裂纹，客户拒收", "attachments": ["photo-1.jpg"]})
    manager = REPS[rep]
    if u.chance(0.1):
        return ended(u.do(view, "om_sign", manager, {"decision": "reject", "comment": "已超过退货期限"}), done)
    view = u.do(view, "om_sign", manager, {"decision": "approve"})
    if reason == "slow_moving":
        view = u.do(view, "plan_approval", "plan.chen", {"decision": "approve"})
    if reason == "transport_damage":  # the inspection disagrees first: back to the office manager
        view = u.do(view, "inspect", "wh.wei", {"received_on": today(), "inspection_result": "disagrees",
                                                "inspection_note": "实收数量与申请不符"})
        view = u.do(view, "om_sign", manager, {"decision": "approve", "comment": "按实收数量处理"})
    view = u.do(view, "inspect", "wh.wei", {"received_on": today(), "inspection_result": "confirmed"})
    if kind == "return":
        view = u.do(view, "credit_note", "fin.chu", {
            "credit_note_no": f"HZ-{uuid.uuid4().hex[:8]}", "credit_amount": view["data"]["returned_value"],
            "issued_on": today()})
    else:
        view = u.do(view, "ship_replacement", "wh.wei", {
            "shipping_list": [{"product": line["product"], "spec": line["spec"], "quantity": quantity}],
            "carrier": "顺丰快运", "shipped_on": today()})
    return ended(view, done)


# --- branch_establishment -------------------------------------------------------------------------

BRANCH = {"location": "广西南宁市青秀区民族大道 136 号", "business_scope": "石材产品销售与售后服务",
          "org_structure": "主任 1 名，业务员 4 名，内勤 1 名", "head_count": 6, "budget": 800000,
          "reason": "广西市场销售额连续两年增长，需就近服务客户"}


def branch(u: User, done: dict) -> dict:
    kind = u.rng.choice(["office", "office", "branch_company", "subsidiary"])
    data = dict(BRANCH, name=f"南宁{'办事处' if kind == 'office' else '分公司'}-{uuid.uuid4().hex[:6]}",
                branch_type=kind)
    view = u.start("branch_establishment", "rm.zheng", data)
    if u.chance(0.1):
        return ended(u.do(view, "hq_review", "hq.li", {"decision": "reject", "comment": "不符合公司区域战略"}), done)
    if u.chance(0.2):
        view = u.do(view, "hq_review", "hq.li", {"decision": "rework", "comment": "请补充组织架构"})
        view = u.do(view, "rework", "rm.zheng", dict(data, org_structure="主任 1 名，业务员 5 名，内勤 1 名"))
    view = u.do(view, "hq_review", "hq.li", {"decision": "approve"})
    if kind != "office":
        view = u.do(view, "board_approval", "board.sun", {"decision": "approve", "comment": "同意设立"})
    view = u.do(view, "issue_certificate", "hq.li", {
        "certificate_no": f"SZ-{uuid.uuid4().hex[:8]}", "issued_on": today(), "branch_head": "吴主任"})
    view = u.do(view, "confirm_registration", "hq.li", {
        "registration_no": uuid.uuid4().hex[:18].upper(), "registration_authority": "南宁市市场监督管理局",
        "registered_on": today()})
    view = u.do(view, "confirm_filing", "hq.li", {"filed_with": "南宁市商务局", "filing_no": f"BA-{uuid.uuid4().hex[:6]}",
                                                  "filed_on": today()})
    return ended(view, done)


PATHS = [(contract, 0.30), (order, 0.55), (branch, 0.15)]


# --- users, client processes ----------------------------------------------------------------------

def _user(port: int, tokens: dict, end: float, seed: int, think, sink: list) -> None:
    done: dict[str, int] = {}
    errors: list[str] = []
    try:
        u = User(port, tokens, end, seed, think)
    except Exception as exc:
        sink.append({"done": done, "errors": [f"user {seed} could not connect: {exc}"], "timings": {},
                     "statuses": {}, "reconnects": 0})
        return
    while time.time() < end:
        walk = u.rng.choices([p for p, _ in PATHS], [w for _, w in PATHS])[0]
        try:
            walk(u, done)
        except Stop:
            break
        except Exception as exc:  # counted, printed, never hidden; the user starts a new path
            text = f"user {seed} ({walk.__name__}): {exc if isinstance(exc, Unexpected) else traceback.format_exc()}"
            errors.append(text)
            log(f"ERROR {text}")
    sink.append({"done": done, "errors": errors, "timings": u.timings, "statuses": u.statuses,
                 "reconnects": u.reconnects})


def _process(port: int, tokens: dict, end: float, seeds: list[int], think, out) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us; Ctrl-C is its to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # and its terminate() ends us at once
    sink: list = []
    threads = [threading.Thread(target=_user, args=(port, tokens, end, seed, think, sink)) for seed in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(sink)


# --- the database, the server and the worker ------------------------------------------------------

@contextmanager
def database():
    """A fresh PostgreSQL database bpm_load_<random> after `bpm init --demo`: its URL; dropped after."""
    import psycopg
    name = f"bpm_load_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    try:
        init = subprocess.run([sys.executable, "-m", "bpm", "init", "--demo"], cwd=ROOT, env=_env(url),
                              capture_output=True, text=True, timeout=300)
        if init.returncode:
            raise RuntimeError(f"bpm init failed: {init.stderr}")
        yield url
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        log(f"database {name} dropped")


def _env(url: str) -> dict:
    env = {**os.environ, "BPM_DATABASE_URL": url}
    env.pop("BPM_NOW", None)
    return env


def _stop(proc: subprocess.Popen, what: str) -> None:
    """Stop a process we started and its process group (it was started in a session of its own)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            log(f"{what} did not stop in 20 s: killed")
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of its group (gunicorn's workers)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


@contextmanager
def server_and_worker(url: str, processes: int, logs: Path):
    """`bpm serve --processes N --workers 0` and one `bpm worker`, each in a session of its own:
    (server, worker, port)."""
    port = bench_web.free_port()
    started = []
    try:
        server = subprocess.Popen(
            [sys.executable, "-m", "bpm", "serve", "--port", str(port), "--processes", str(processes),
             "--workers", "0"], cwd=ROOT, env=_env(url), stdin=subprocess.DEVNULL,
            stdout=open(logs / "server.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
        started.append((server, "bpm serve"))
        worker = subprocess.Popen(
            [sys.executable, "-m", "bpm", "worker"], cwd=ROOT, env=_env(url), stdin=subprocess.DEVNULL,
            stdout=open(logs / "worker.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
        started.append((worker, "bpm worker"))
        deadline = time.monotonic() + 120
        import urllib.request
        while True:
            for proc, what in started:
                if proc.poll() is not None:
                    raise RuntimeError(f"{what} exited: {(logs / ('server.log' if proc is server else 'worker.log')).read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the server did not answer /healthz within 120 s")
                time.sleep(0.3)
        yield server, worker, port
    finally:
        for proc, what in reversed(started):
            _stop(proc, what)


def tokens(port: int) -> dict[str, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    found = {}
    for user in USERS:
        conn.request("POST", "/api/v1/tokens", json.dumps({"username": user, "password": "demo"}),
                     {"Content-Type": "application/json", "Accept": "application/json"})
        reply = conn.getresponse()
        raw = reply.read()
        if reply.status != 201:
            raise RuntimeError(f"token for {user}: {reply.status} {raw[:300]!r}")
        found[user] = json.loads(raw)["token"]
    conn.close()
    return found


class LoadAverage(threading.Thread):
    """/proc/loadavg's 1-minute figure every 5 s."""

    def __init__(self):
        super().__init__(daemon=True)
        self.samples: list[float] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(5.0):
            self.samples.append(float(Path("/proc/loadavg").read_text().split()[0]))


def ms(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {"n": len(values), **{f"p{q}": round(bench_web.pct(values, q) * 1000, 1) for q in (50, 95, 99)},
            "max": round(max(values) * 1000, 1)}


def _interrupted(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _timeout(signum, frame):
    raise TimeoutError("the hard wall-clock limit of the load test is reached")


def run(args) -> dict:
    seconds = args.seconds
    logs = Path(tempfile.mkdtemp(prefix="bpm_load_"))
    ctx = multiprocessing.get_context("fork")
    procs: list = []
    load = LoadAverage()
    try:
        with database() as url:
            with server_and_worker(url, args.processes, logs) as (server, worker, port):
                tok = tokens(port)
                warm = User(port, tok, time.time() + 600, -1, (0.0, 0.0))  # every path loaded once
                warm_done: dict = {}
                order(warm, warm_done, customer="C-B01")
                branch(warm, warm_done)
                contract(warm, warm_done)
                cpu0 = bench_serve.tree_cpu(server.pid), bench_serve.tree_cpu(worker.pid)
                out = ctx.Queue()
                start = time.time()
                end = start + seconds
                groups = [list(range(i, args.users, args.procs)) for i in range(args.procs)]
                procs = [ctx.Process(target=_process, args=(port, tok, end, g, tuple(args.think), out))
                         for g in groups if g]
                load.start()
                for p in procs:
                    p.start()
                sinks = []
                for _ in procs:
                    sinks.append(out.get(timeout=max(1.0, end - time.time()) + 180))
                wall = time.time() - start
                load.stopped.set()
                for p in procs:
                    p.join(10)
                cpu = (round((bench_serve.tree_cpu(server.pid) - cpu0[0]) / wall, 2),
                       round((bench_serve.tree_cpu(worker.pid) - cpu0[1]) / wall, 2))
                server_log = (logs / "server.log").read_text(errors="replace")
            t0 = time.time()
            verify = subprocess.run([sys.executable, "-m", "bpm", "verify", "--all"], cwd=ROOT, env=_env(url),
                                    capture_output=True, text=True, timeout=900)
            verify_s = time.time() - t0
    finally:
        load.stopped.set()
        shutil.rmtree(logs, ignore_errors=True)
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(5)
                if p.is_alive():
                    p.kill()
    users = [r for sink in sinks for r in sink]
    kinds: dict[str, list[float]] = {}
    for r in users:
        for kind, values in r["timings"].items():
            kinds.setdefault(kind, []).extend(values)
    everything = [v for values in kinds.values() for v in values]
    done: dict[str, int] = {}
    statuses: dict[str, int] = {}
    for r in users:
        for k, n in r["done"].items():
            done[k] = done.get(k, 0) + n
        for k, n in r["statuses"].items():
            statuses[str(k)] = statuses.get(str(k), 0) + n
    errors = [e for r in users for e in r["errors"]]
    lines = verify.stdout.splitlines()
    # the server's own account of a failure (a traceback, a 500), printed beside the clients' errors
    tracebacks = [line for line in server_log.splitlines() if "Traceback" in line or " 500 " in line]
    return {
        "users": args.users, "client_processes": args.procs, "server_processes": args.processes,
        "seconds": seconds, "wall_s": round(wall, 1), "think_s": list(args.think),
        "requests": len(everything), "requests_per_s": round(len(everything) / wall, 1),
        "overall_ms": ms(everything), "by_kind_ms": {k: ms(v) for k, v in sorted(kinds.items())},
        "statuses": statuses, "reconnects": sum(r["reconnects"] for r in users),
        "completed": {p: done.get(p, 0) for p in PROCESSES},
        "errors": len(errors), "error_texts": errors[:50],
        "server_log_tracebacks": tracebacks[:20],
        "load_average_1min": {"min": min(load.samples, default=None), "max": max(load.samples, default=None),
                              "mean": round(sum(load.samples) / len(load.samples), 2) if load.samples else None,
                              "samples": load.samples},
        "server_cpus": cpu[0], "worker_cpus": cpu[1],
        "verify": {"exit": verify.returncode, "instances_ok": sum(1 for l in lines if l.startswith("ok")),
                   "bad": [l for l in lines if l.startswith("BAD")][:10], "stderr": verify.stderr.strip()[-500:],
                   "seconds": round(verify_s, 1)},
        "machine": bench_web.machine(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="how long the users work (default 300)")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--procs", type=int, default=10, help="client processes the users are spread over")
    parser.add_argument("--processes", type=int, default=2, help="server processes (bpm serve --processes)")
    parser.add_argument("--think", type=float, nargs=2, default=[0.2, 1.0], metavar=("MIN", "MAX"),
                        help="think time before every request, seconds, uniform (default 0.2 1.0)")
    parser.add_argument("--hard-limit", type=float, default=None,
                        help="wall-clock limit of the whole run, seconds (default seconds + 900)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGALRM, _timeout)
    # Ctrl-C and a plain kill both unwind through the clean-up (even when started in the background,
    # where a shell has SIGINT ignored): client processes, server, worker and the database go.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupted)
    signal.alarm(int(args.hard_limit or args.seconds + 900))
    try:
        result = run(args)
    finally:
        signal.alarm(0)
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        la = result["load_average_1min"]
        print(f"{result['users']} users, {result['seconds']:.0f} s, {result['server_processes']} server process(es) "
              f"+ 1 worker: {result['requests']} requests = {result['requests_per_s']}/s; "
              f"overall ms {result['overall_ms']}")
        for kind, figures in result["by_kind_ms"].items():
            print(f"  {kind:42} {figures}")
        print(f"completed: {result['completed']}; errors {result['errors']}; statuses {result['statuses']}; "
              f"load average (1 min) min/mean/max {la['min']}/{la['mean']}/{la['max']}; server CPUs {result['server_cpus']}, "
              f"worker {result['worker_cpus']}")
        print(f"bpm verify --all: exit {result['verify']['exit']}, {result['verify']['instances_ok']} ok, "
              f"bad {result['verify']['bad']} in {result['verify']['seconds']} s")
    sys.exit(1 if result["errors"] or result["verify"]["exit"] else 0)


if __name__ == "__main__":
    main()
