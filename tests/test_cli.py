"""The `bpm` command line: JSON shapes, exit codes, one-line errors, BPM_NOW, and the MIWG corpus."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bpm.cli import main

from .conftest import DATA

ROOT = Path(__file__).resolve().parent.parent
MIWG = DATA / "miwg"  # copy of ../shared/conformance/miwg (CC BY 3.0, see its LICENSE.txt)
APPROVAL = str(DATA / "runtime" / "approval.bpmn")
WAITING = str(DATA / "runtime" / "waiting.bpmn")
PROBLEM_LINE = re.compile(r"^.+:\d+: [^\s:]+: \S.*$")


@pytest.fixture
def bpm(tmp_path, monkeypatch, capsys):
    """Run `bpm ARGS` in-process against a fresh SQLite database; returns (code, stdout, stderr)."""
    monkeypatch.setenv("BPM_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    monkeypatch.delenv("BPM_NOW", raising=False)

    def run(*args: str, now: str | None = None):
        if now:
            monkeypatch.setenv("BPM_NOW", now)
        else:
            monkeypatch.delenv("BPM_NOW", raising=False)
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse usage errors
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err

    code, _, err = run("init", "--demo")
    assert code == 0, err
    return run


def test_init_is_safe_to_run_twice_and_deploys_the_four_processes(bpm):
    code, out, _ = bpm("init", "--demo", "--json")
    result = json.loads(out)
    assert code == 0 and result["demo_users_added"] == 0
    assert sorted((d["process_id"], d["status"]) for d in result["deployed"]) == [
        ("archive_access", "unchanged"), ("branch_change", "unchanged"), ("branch_closure", "unchanged"),
        ("branch_establishment", "unchanged"), ("contract_review", "unchanged"), ("credit_review", "unchanged"),
        ("expense_claim", "unchanged"), ("monthly_target", "unchanged"), ("order_to_settlement", "unchanged"),
        ("regional_expense", "unchanged"),
        ("return_request", "unchanged")]


def test_deploy_json_and_unchanged(bpm):
    code, out, _ = bpm("deploy", APPROVAL, "--json")
    notices = [f"user task {t} has no form: it takes any JSON object as its data (except the engine's "
               f"own fields, such as initiator)" for t in ("submit", "review", "confirm")]
    assert code == 0 and json.loads(out) == [{"process_id": "approval", "version": 1, "status": "deployed",
                                              "notices": notices}]
    code, out, err = bpm("deploy", APPROVAL)
    assert code == 0 and out.strip().splitlines() == ["approval 1 unchanged"]
    assert err.strip().splitlines() == [f"bpm deploy: approval: notice: {n}" for n in notices]
    code, out, _ = bpm("definitions", "--json")
    assert [(d["process_id"], d["version"]) for d in json.loads(out) if d["process_id"] == "approval"] == [
        ("approval", 1)]


@pytest.mark.parametrize("content, expected", [
    ("<bpmn:definitions><bpmn:process id='p'>", r":1: -: "),
    ('<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">]>\n<definitions/>', r"DOCTYPE"),
    ("not xml at all", r":1: -: "),
])
def test_deploy_refuses_bad_files_with_file_line_element(bpm, tmp_path, content, expected):
    bad = tmp_path / "bad.bpmn"
    bad.write_text(content)
    code, out, err = bpm("deploy", APPROVAL, str(bad))
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert lines and all(PROBLEM_LINE.match(line) for line in lines), err
    assert str(bad) in err and re.search(expected, err)
    assert "Traceback" not in err
    code, out, _ = bpm("definitions", "--json")
    assert "approval" not in {d["process_id"] for d in json.loads(out)}  # not even the good file


def test_deploy_of_a_missing_path(bpm):
    code, _, err = bpm("deploy", "no/such.bpmn")
    assert code == 1 and err.strip() == "bpm deploy: no/such.bpmn: no such file or folder"


def test_start_tasks_complete_instance_shapes(bpm):
    bpm("deploy", APPROVAL)
    code, out, err = bpm("start", "approval", "--as", "rep.wang", "--data", '{"amount": 3}', "--json")
    assert code == 0, err
    started = json.loads(out)
    assert {"id", "process_id", "version", "status"} <= started.keys()
    assert (started["process_id"], started["version"], started["status"]) == ("approval", 1, "running")

    code, out, _ = bpm("tasks", "--as", "rep.wang", "--json")
    tasks = json.loads(out)
    assert len(tasks) == 1
    assert {"id", "instance_id", "process_id", "name", "role", "assignee", "due"} <= tasks[0].keys()
    assert (tasks[0]["instance_id"], tasks[0]["assignee"], tasks[0]["role"]) == (started["id"], None, "sales_rep")

    task_id = tasks[0]["id"]
    code, _, err = bpm("complete", task_id, "--as", "dm.zhou")
    assert code == 1 and "there is no open task" in err and len(err.strip().splitlines()) == 1

    code, out, _ = bpm("claim", task_id, "--as", "rep.wang", "--json")
    assert code == 0 and json.loads(out)["assignee"] == "rep.wang"
    code, _, err = bpm("complete", task_id, "--as", "rep.wang", "--data", "{}")
    assert code == 0, err
    code, _, err = bpm("complete", task_id, "--as", "rep.wang")
    assert code == 1 and "already done" in err

    code, out, _ = bpm("instance", started["id"], "--json")
    view = json.loads(out)
    assert {"id", "process_id", "version", "status", "data", "tasks"} <= view.keys()
    assert view["status"] == "running" and view["tasks"][0]["role"] == "dept_manager"


@pytest.mark.parametrize("args, message", [
    (("start", "nope", "--as", "rep.wang"), "there is no deployed process 'nope'"),
    (("start", "approval", "--as", "rep.wang", "--data", "{amount: 3}"), "--data is not JSON"),
    (("start", "approval", "--as", "rep.wang", "--data", "@/no/such/file.json"), "cannot read data file"),
    (("start", "approval", "--as", "ghost"), "there is no user 'ghost'"),
    (("message", "payment_received", "--data", "{}", "--correlation", "order_no=X"),
     "no instance is waiting for message 'payment_received'"),
    (("message", "payment_received", "--correlation", "order_no"), "is not KEY=VALUE"),
    (("instance", "123"), "there is no instance 123"),
    (("worker", "--once", "--now", "tomorrow"), "not an ISO 8601"),
    (("worker", "--once", "--now", "2026-11-23T09:00:00"), "no UTC offset"),
    (("retry", "99", "--as", "gm.zhao"), "there is no incident 99"),
])
def test_refusals_are_one_sentence_and_exit_1(bpm, args, message):
    bpm("deploy", APPROVAL)
    code, out, err = bpm(*args)
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err, err


def test_bad_usage_exits_2(bpm):
    code, _, err = bpm("start")
    assert code == 2 and "usage" in err


def test_bpm_now_and_worker_now_drive_timers(bpm):
    bpm("deploy", WAITING)
    code, out, _ = bpm("start", "waiting", "--as", "fin.chu", "--data", '{"order_no": "SO-7"}', "--json",
                       now="2026-11-23T09:00:00+08:00")
    instance_id = json.loads(out)["id"]
    code, out, _ = bpm("worker", "--once", "--now", "2026-11-23T12:59:00+08:00", "--json")
    assert code == 0 and json.loads(out)["fired"] == []
    code, out, _ = bpm("worker", "--once", "--now", "2026-11-23T13:00:01+08:00", "--json")
    assert code == 0 and json.loads(out)["fired"] == [instance_id]
    code, out, err = bpm("message", "payment_received", "--data", '{"amount": 10}',
                         "--correlation", "order_no=SO-7", "--json")
    assert code == 0, err
    code, out, _ = bpm("instance", instance_id, "--json")
    assert json.loads(out)["tasks"][0]["element_id"] == "reconcile"


def test_console_script_and_module_entry_points(tmp_path):
    env = {**os.environ, "BPM_DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}"}
    bin_bpm = Path(sys.executable).parent / "bpm"
    for command in ([str(bin_bpm)], [sys.executable, "-m", "bpm"]):
        done = subprocess.run(command + ["start", "x", "--as", "y"], env=env, capture_output=True, text=True)
        assert done.returncode == 1 and "Traceback" not in done.stderr
        assert done.stderr.strip().startswith("bpm start: "), done.stderr


@pytest.mark.parametrize("path", sorted(MIWG.glob("*.bpmn")), ids=lambda p: p.name)
def test_miwg_files_deploy_or_are_refused_with_located_problems(bpm, path):
    code, out, err = bpm("deploy", str(path))
    assert code in (0, 1)
    assert "Traceback" not in err and "unexpected" not in err
    if code == 1:
        lines = err.strip().splitlines()
        assert lines and all(PROBLEM_LINE.match(line) for line in lines), err
        assert all(line.startswith(str(path)) for line in lines)
    else:
        assert out.strip()


def test_the_scripted_walk_of_a_silent_approver(tmp_path):
    """Issue 3's walk, from a shell: a price below quote goes to dm.zhou; five hours of silence
    later one worker pass hands it up — past his superior vp.qian, whose is the VP level of this
    contract (one person approves one level), to gm.zhao."""
    env = {**os.environ, "BPM_DATABASE_URL": f"sqlite:///{tmp_path / 'walk.sqlite3'}",
           "BPM_NOW": "2026-11-23T09:00:00+08:00"}
    bin_bpm = str(Path(sys.executable).parent / "bpm")

    def bpm(*args, **extra):
        done = subprocess.run([bin_bpm, *args], env={**env, **extra}, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    bpm("init", "--demo")
    data = json.dumps({"customer": "C-A01", "amount": 200000, "quote_price": 100, "price": 92,
                       "payment_terms": "30% deposit, balance on delivery", "delivery_date": "2026-12-20",
                       "quote_payment_terms": "30% deposit, balance on delivery", "quote_delivery_date": "2026-12-20"})
    instance = json.loads(bpm("start", "contract_review", "--as", "rep.wang", "--data", data, "--json"))["id"]
    tasks = json.loads(bpm("tasks", "--as", "dm.zhou", "--json"))
    assert [(t["instance_id"], t["role"]) for t in tasks] == [(instance, "dept_manager")]
    assert json.loads(bpm("tasks", "--as", "vp.qian", "--json")) == []
    fired = json.loads(bpm("worker", "--once", "--now", "2026-11-23T14:00:00+08:00", "--json"))
    assert instance in fired["fired"]
    tasks = json.loads(bpm("tasks", "--as", "gm.zhao", "--json"))
    assert [(t["instance_id"], t["assignee"]) for t in tasks] == [(instance, "gm.zhao")]
    assert json.loads(bpm("tasks", "--as", "vp.qian", "--json")) == []
    assert json.loads(bpm("tasks", "--as", "dm.zhou", "--json")) == []


def _walked_instance(bpm) -> str:
    """An approval started, claimed and completed: a log of three steps."""
    bpm("deploy", APPROVAL)
    _, out, _ = bpm("start", "approval", "--as", "rep.wang", "--data", '{"amount": 3}', "--json")
    instance_id = json.loads(out)["id"]
    _, out, _ = bpm("tasks", "--as", "rep.wang", "--json")
    task_id = json.loads(out)[0]["id"]
    assert bpm("claim", task_id, "--as", "rep.wang")[0] == 0
    assert bpm("complete", task_id, "--as", "rep.wang", "--data", '{"note": "ok"}')[0] == 0
    return instance_id


def test_history_replay_and_verify_of_a_whole_record(bpm):
    instance_id = _walked_instance(bpm)
    code, out, err = bpm("history", instance_id, "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["command"] for r in rows] == ["start", "claim", "complete"]
    assert [r["actor"] for r in rows] == ["rep.wang"] * 3
    assert rows[0]["change"]["amount"] == 3 and rows[1]["change"] == {} and rows[2]["change"]["note"] == "ok"
    code, out, _ = bpm("history", instance_id, "--csv")
    lines = out.strip().splitlines()
    assert lines[0] == "step,time,actor,command,task,data_change,hash" and len(lines) == 4
    assert lines[3].startswith("3,") and rows[2]["hash"] in lines[3]

    code, out, err = bpm("replay", instance_id, "--to", "1", "--json")
    assert code == 0, err
    at_start = json.loads(out)
    assert (at_start["step"], at_start["every_hash_matched"], at_start["data"]["amount"]) == (1, True, 3)
    assert "note" not in at_start["data"] and at_start["waiting"]
    code, out, _ = bpm("replay", instance_id)
    assert code == 0 and "every state hash matched (3 steps)" in out
    assert bpm("replay", instance_id, "--to", "9")[2].strip().endswith("its log ends at step 3")

    code, out, err = bpm("verify", instance_id)
    assert code == 0 and out.strip() == f"ok   {instance_id} (3 steps)", err
    code, out, err = bpm("verify", "--all", "--json")
    assert code == 0 and [v["ok"] for v in json.loads(out)] == [True]
    assert bpm("verify")[0] == 1 and bpm("verify", "nope")[2].strip() == "bpm verify: there is no instance nope"


@pytest.mark.parametrize("tamper, problem", [
    # an approver's input changed after the fact: the entry no longer hashes to its chain link
    ("UPDATE log_entry SET input = json_set(input, '$.data.note', 'changed') WHERE seq = 3",
     "step 3 (complete): the hash chain is broken"),
    # a step removed from the middle of the log
    ("DELETE FROM log_entry WHERE seq = 2", "step 2 is missing from the log"),
    # the stored state edited, the log left alone
    ("UPDATE instance SET state = replace(state, '\"note\":\"ok\"', '\"note\":\"ko\"') "
     "WHERE state LIKE '%\"note\":\"ok\"%'",
     "the instance's stored state is not the state after step 3"),
])
def test_verify_names_the_first_bad_step_and_exits_1(bpm, tmp_path, tamper, problem):
    instance_id = _walked_instance(bpm)
    import sqlite3
    with sqlite3.connect(tmp_path / "cli.sqlite3") as db:
        assert db.execute(tamper).rowcount == 1
    code, out, err = bpm("verify", instance_id)
    assert code == 1
    assert f"BAD  {instance_id}: {problem}" in out, out
    assert err.startswith("bpm verify: 1 of 1 instance(s) failed verification; first:") and problem in err


def test_verify_catches_a_rewritten_log_whose_chain_was_recomputed(bpm, tmp_path):
    """Someone changes an approver's input and recomputes the entry's hash (and the instance's last
    hash): the chain is whole again, but replaying the changed input does not give the logged state."""
    from engine.runtime import _entry_hash
    from engine.store import Instance, LogEntry, Store
    instance_id = _walked_instance(bpm)
    store = Store(f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    with store.write() as s:
        entry = s.query(LogEntry).filter_by(instance_id=instance_id, seq=3).one()
        entry.input = {**entry.input, "data": {**entry.input["data"], "note": "changed"}}
        entry.hash = _entry_hash(instance_id, 3, entry.at, entry.actor, entry.command, entry.input,
                                 entry.state_hash, entry.prev_hash)
        s.get(Instance, instance_id).log_hash = entry.hash
    store.dispose()
    code, out, _ = bpm("verify", instance_id)
    assert code == 1 and "step 3 (complete): replaying it gives state" in out, out


def test_bench_runs_the_suite_of_a_source_checkout(bpm, monkeypatch, tmp_path):
    import subprocess

    import bpm.cli as cli
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda command, cwd: calls.append(command) or subprocess.CompletedProcess(command, 0))
    assert bpm("bench", "--json", "--postgres", "postgresql://x/y", "--web")[0] == 0
    assert [c[1:] for c in calls] == [[str(cli.PROJECT_ROOT / "bench" / "run.py"), "--all", "--json", "--postgres", "postgresql://x/y"],
                                      [str(cli.PROJECT_ROOT / "bench" / "web.py"), "all", "--json"]]
    monkeypatch.setattr(subprocess, "run", lambda command, cwd: subprocess.CompletedProcess(command, 3))
    assert bpm("bench")[2].strip() == "bpm bench: run.py failed (exit 3)"
    monkeypatch.setattr(cli, "PROJECT_ROOT", tmp_path)
    code, _, err = bpm("bench")
    assert code == 1 and "run bpm bench from a source checkout" in err


def test_credit_list_shows_levels_and_refuses_those_who_do_not_work_with_it(bpm):
    code, out, _ = bpm("credit-list", "--as", "ssg.shen", "--json")
    assert code == 0
    assert {c["id"]: c["level"] for c in json.loads(out)["customers"]} == {
        "C-A01": "A", "C-B01": "B", "C-C01": "C", "C-N01": None}
    code, out, _ = bpm("credit-list", "--as", "dm.zhou", "--customer", "C-B01")
    assert code == 0 and out.startswith("C-B01  B  since ")
    code, _, err = bpm("credit-list", "--as", "rep.wang")
    assert code == 1 and "rep.wang may not see the credit list" in err
    code, _, err = bpm("credit-list", "--as", "ssg.shen", "--customer", "C-ZZ9")
    assert code == 1 and "C-ZZ9 is not a customer on the credit list" in err
    # a sales secretary starts a review by hand; the worker starts the monthly one when due
    code, out, err = bpm("start", "credit_review", "--as", "ssg.shen", "--json")
    assert code == 0 and json.loads(out)["status"] == "running", err
    code, out, err = bpm("worker", "--once", "--now", "2027-01-01T09:30:00+08:00", "--json")
    assert code == 0, err
    # January's review, once (monthly_target's run of 20 December may start in the same pass)
    processes_started = [json.loads(bpm("instance", i, "--json")[1])["process_id"] for i in json.loads(out)["started"]]
    assert processes_started.count("credit_review") == 1, processes_started


# --- times in the deployment's zone, as the pages write them --------------------------------------

def test_times_are_printed_in_the_deployments_zone_as_the_pages_write_them(bpm, monkeypatch):
    """Started at 09:00 China time (01:00 UTC), due four hours later: 13:00 in Shanghai, as the
    web's `when` filter writes it; BPM_TIMEZONE moves both; --json keeps the instant in UTC."""
    from web.inbox import when
    from web import create_app

    now = "2026-11-23T09:00:00+08:00"
    code, out, err = bpm("start", "contract_review", "--as", "rep.wang", "--data", json.dumps({
        "customer": "C-A01", "amount": 200000, "quote_price": 100, "price": 100,
        "quote_payment_terms": "30% deposit", "payment_terms": "30% deposit",
        "quote_delivery_date": "2026-12-20", "delivery_date": "2026-12-20",
        "lines": [{"product": "x", "quantity": 2000, "unit_price": 100}]}), now=now)
    assert code == 0, err
    code, out, _ = bpm("tasks", "--as", "dm.zhou", now=now)
    assert code == 0 and out.rstrip().endswith("due 2026-11-23 13:00"), out
    code, out, _ = bpm("tasks", "--as", "dm.zhou", "--json", now=now)
    assert json.loads(out)[0]["due"].startswith("2026-11-23T05:00:00")
    monkeypatch.setenv("BPM_TIMEZONE", "Europe/Berlin")
    code, out, _ = bpm("tasks", "--as", "dm.zhou", now=now)
    assert out.rstrip().endswith("due 2026-11-23 06:00"), out
    app = create_app(config={"SECRET_KEY": "x"})
    with app.test_request_context():
        assert when("2026-11-23T05:00:00+00:00") == "2026-11-23 06:00"  # the same engine function
    monkeypatch.setenv("BPM_TIMEZONE", "Mars/Olympus")
    code, out, err = bpm("tasks", "--as", "dm.zhou", now=now)
    assert code == 1 and out == "" and err.strip().splitlines() == [
        "bpm tasks: BPM_TIMEZONE 'Mars/Olympus' is not a time zone such as Asia/Shanghai"]
    code, out, err = bpm("serve", "--port", "1")  # refused before it migrates or serves anything
    assert code == 1 and err.strip().splitlines() == [
        "bpm serve: BPM_TIMEZONE 'Mars/Olympus' is not a time zone such as Asia/Shanghai"]


# --- a newcomer's first minute ------------------------------------------------------------------

def test_init_demo_prints_the_demo_users_their_roles_offices_and_the_password(bpm):
    from engine.access import DEMO_USERS
    code, out, _ = bpm("init", "--demo")  # again: already seeded, still says whom to sign in as
    assert code == 0
    assert "demo sign-in: every demo user's password is 'demo'" in out
    assert re.search(r"^  dm\.zhou +周经理 Zhou +业务部经理 Business department manager +总部 Headquarters$",
                     out, re.M), out
    for username, *_ in DEMO_USERS:
        assert re.search(rf"^  {re.escape(username)} ", out, re.M), username
    code, out, _ = bpm("init", "--demo", "--json")
    users = json.loads(out)["demo_users"]
    assert {"username": "rep.wang", "name": "王 Wang", "role": "sales_rep", "office": "guangzhou"} in users
    assert len(users) == len(DEMO_USERS)


def test_init_without_demo_lists_no_demo_users(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BPM_DATABASE_URL", f"sqlite:///{tmp_path / 'plain.sqlite3'}")
    assert main(["init"]) == 0
    out = capsys.readouterr().out
    assert "demo organisation" not in out and "demo sign-in" not in out and "dm.zhou" not in out
    assert main(["init", "--json"]) == 0
    assert "demo_users" not in json.loads(capsys.readouterr().out)


def test_make_run_takes_a_port():
    made = subprocess.run(["make", "-n", "run", "PORT=5001"], cwd=ROOT, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    assert re.search(r"bpm serve --host 127\.0\.0\.1 --port 5001$", made.stdout, re.M), made.stdout
    assert "--port 5000" in subprocess.run(["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True).stdout
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make run PORT=5001" in readme and "../shared/" not in readme.split("## Deploy")[0]
    from engine.access import demo_users
    for u in demo_users():  # the README's table is the demo organisation the code seeds
        assert f"| `{u['username']}` | {u['name']} | {u['role_zh']} {u['role_en']}" in readme, u["username"]
    assert "password is `demo`" in readme


def test_deploy_marks_a_foreign_file_executable_and_maps_its_lanes(bpm):
    a41 = str(MIWG / "A.4.1.bpmn")
    code, _, err = bpm("deploy", a41)
    assert code == 1 and "no executable process in A.4.1.bpmn" in err
    code, _, err = bpm("deploy", a41, "--executable", "--lane-role", "Lane 1=sales_rep")
    assert code == 1 and err.startswith(f"{a41}:") and "lane 'Lane 2 ' maps to no known role" in err
    code, _, err = bpm("deploy", a41, "--executable", "--lane-role", "Lane 9=sales_rep")
    assert (code, err.strip()) == (1, "bpm deploy: --lane-role Lane 9: no lane, pool or process of the files "
                                      "given has that id or name")
    code, out, err = bpm("deploy", a41, "--executable", "--json", *[
        arg for lane in ("Lane 1", "Lane 2", "Lane 3") for arg in ("--lane-role", f"{lane}=sales_rep")])
    assert code == 0, err
    assert sorted(d["status"] for d in json.loads(out)) == ["deployed", "deployed"]
    # what is stored is what the modeller would have saved: executable, lanes mapped, nothing else
    from sqlalchemy import select
    from engine.store import Definition, Store
    with Store().read() as session:
        stored = session.scalars(select(Definition.files).where(
            Definition.process_id == "sid-34746A54-1D7D-46CA-B219-0C4CEAE51170")).one()["A.4.1.bpmn"]
    original = (MIWG / "A.4.1.bpmn").read_text()
    assert stored.count('isExecutable="true"') == 2 and stored.count('name="role" value="sales_rep"') == 3
    assert re.sub(r'<spiffworkflow:properties [^>]*><spiffworkflow:property name="role" value="sales_rep"/>'
                  r"</spiffworkflow:properties>", "", stored).replace('isExecutable="true"', 'isExecutable="false"') == original


def test_verify_all_in_two_processes_finds_a_rewritten_log_and_says_what_one_process_says(
        bpm, tmp_path, monkeypatch):
    """`bpm verify --all --jobs 2` verifies slices in two processes: the instance whose approver's
    input was changed (its chain recomputed, so only the replay finds it) is named, and the output
    and exit code are those of `--jobs 1`, instance by instance in the same order."""
    from engine import audit
    from engine.runtime import _entry_hash
    from engine.store import Instance, LogEntry, Store
    bpm("deploy", APPROVAL)
    ids = []
    for amount in range(1, 6):
        ids.append(json.loads(bpm("start", "approval", "--as", "rep.wang", "--data",
                                  json.dumps({"amount": amount}), "--json")[1])["id"])
        task_id = next(t["id"] for t in json.loads(bpm("tasks", "--as", "rep.wang", "--json")[1])
                       if t["instance_id"] == ids[-1])
        assert bpm("claim", task_id, "--as", "rep.wang")[0] == 0
        assert bpm("complete", task_id, "--as", "rep.wang", "--data", '{"note": "ok"}')[0] == 0
    tampered = ids[3]
    store = Store(f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    with store.write() as s:
        entry = s.query(LogEntry).filter_by(instance_id=tampered, seq=3).one()
        entry.input = {**entry.input, "data": {**entry.input["data"], "note": "changed"}}
        entry.hash = _entry_hash(tampered, 3, entry.at, entry.actor, entry.command, entry.input,
                                 entry.state_hash, entry.prev_hash)
        s.get(Instance, tampered).log_hash = entry.hash
    store.dispose()

    used = []
    many = audit.verify_many
    monkeypatch.setattr(audit, "verify_many", lambda *a, **k: used.append(a[3]) or many(*a, **k))
    results = {}
    for jobs in ("1", "2"):
        for form in ((), ("--json",)):
            audit.forget_verdicts()
            results[jobs, form] = bpm("verify", "--all", "--jobs", jobs, *form)
    assert used == [2, 2]  # --jobs 2 went to the processes; --jobs 1 did not
    assert results["1", ()] == results["2", ()]
    assert results["1", ("--json",)] == results["2", ("--json",)]
    code, out, err = results["2", ("--json",)]
    order = [v["instance_id"] for v in json.loads(out)]  # (by start time, then id)
    assert sorted(order) == sorted(ids)
    assert code == 1 and [(v["instance_id"], v["ok"]) for v in json.loads(out)] == [
        (i, i != tampered) for i in order]
    assert "step 3 (complete): replaying it gives state" in json.loads(out)[order.index(tampered)]["problem"]
    assert err.startswith(f"bpm verify: 1 of 5 instance(s) failed verification; first: {tampered}: step 3")
    assert bpm("verify", "--all", "--jobs", "0")[2].strip() == "bpm verify: --jobs must be 1 or more, not 0"

    def broken(*args):
        from concurrent.futures.process import BrokenProcessPool
        raise BrokenProcessPool("a child process terminated abruptly")
    monkeypatch.setattr(audit, "verify_many", broken)
    code, out, err = bpm("verify", "--all", "--jobs", "2")
    assert code == 1 and out == "" and err.strip() == (
        "bpm verify: a verifying process ended before its instances were verified (out of memory?); "
        "try a smaller --jobs than 2")
