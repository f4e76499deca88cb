"""Versions and migration (engine.migration): a new version serves new instances; the dry run says, for
each running instance of an older version, whether it can move and where its waiting tokens land, or
why not; the move is one logged step per instance that verify, replay and the history take in their
stride, and the instance goes on on the new version. On SQLite and PostgreSQL; the CLI and the API.
"""
from __future__ import annotations

import json
import shutil
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from lxml import etree
from sqlalchemy import select

import processes
from engine import audit, migration, versions
from engine.runtime import Forbidden, InvalidInput, NotFound, Runtime
from engine.store import Definition, HumanTask, Instance, LogEntry

from .conftest import contract, history_json, snapshot
from .test_cli import bpm  # noqa: F401  (a fixture)
from .test_web import catalogs  # noqa: F401  (a fixture)
from .test_processes import APPROVE, BPMN, FORMS, T0, Clock, reject, the_task, waiting

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
SPIFF_NS = "http://spiffworkflow.org/bpmn/schema/1.0/core"
DEVIATING = {"payment_terms": "货到后180天付款，无定金"}  # the GM approves it (contract_approval_authority)
REVISED = {"price": 520, "amount": 260000, "lines": contract()["lines"], "discount": 0,
           "payment_terms": "30% 定金，发货前付清", "delivery_date": "2027-01-15"}


# --- versions of contract_review to move to -------------------------------------------------------

def _copy(folder: Path, bpmn: str, dmn: str | None = None) -> Path:
    """contract_review as `bpmn` (and its decision table as `dmn`), with its forms, in `folder`."""
    folder.mkdir()
    (folder / "contract_review.bpmn").write_text(bpmn, encoding="utf-8")
    (folder / "contract_approval_authority.dmn").write_text(
        dmn or (BPMN / "contract_approval_authority.dmn").read_text(encoding="utf-8"), encoding="utf-8")
    for form in FORMS.glob("contract_review.*"):
        shutil.copy(form, folder / form.name)
    return folder


def _source() -> str:
    return (BPMN / "contract_review.bpmn").read_text(encoding="utf-8")


def _property(name: str, value: str) -> str:
    return f'<spiffworkflow:property name="{name}" value="{value}" />'


def tightened(tmp_path: Path) -> Path:
    """Version 2: a contract is major from 200,000 CNY (not 1,000,000), the manager's review is due
    in 2 hours (not the default 4) and filing in 3 days (not 7)."""
    bpmn = _source().replace(_property("form", "contract_review.dm_review.json"),
                             _property("form", "contract_review.dm_review.json") + _property("due", "PT2H"))
    bpmn = bpmn.replace(_property("due", "P7D"), _property("due", "P3D"))
    dmn = (BPMN / "contract_approval_authority.dmn").read_text(encoding="utf-8").replace(
        "&gt;= 1000000", "&gt;= 200000")
    assert bpmn.count("PT2H") == 1 and "P3D" in bpmn and dmn.count("&gt;= 200000") == 2
    return _copy(tmp_path / "tightened", bpmn, dmn)


def without_gm(tmp_path: Path) -> Path:
    """Version 2 without the GM's approval of a deviation: every deviation goes to the VP."""
    tree = etree.fromstring(_source().encode("utf-8"))
    gone = {"gm_approval", "gm_decision", "flow_deviation_route_gm_approval", "flow_gm_approval_gm_decision",
            "flow_gm_decision_go_merge", "flow_gm_decision_rejected_merge"}
    for element in list(tree.iter()):
        if element.get("id") in gone or element.get("bpmnElement") in gone or (
                element.text or "").strip() in gone and element.tag != f"{{{BPMN_NS}}}conditionExpression":
            element.getparent().remove(element)
    for flow in tree.iter(f"{{{BPMN_NS}}}sequenceFlow"):
        if flow.get("id") == "flow_deviation_route_vp_approval":
            flow.find(f"{{{BPMN_NS}}}conditionExpression").text = 'deviation_approver != "none"'
        if flow.get("id") == "flow_deviation_route_go_merge":
            flow.find(f"{{{BPMN_NS}}}conditionExpression").text = 'deviation_approver == "none"'
    folder = _copy(tmp_path / "without_gm", etree.tostring(tree, encoding="unicode"))
    # its model tests name the GM's step, which this version has not (deploy checks the cases' steps)
    (folder / "contract_review.cases.json").unlink(missing_ok=True)
    return folder


def retyped(tmp_path: Path) -> Path:
    """Version 2 where the manager's review is a manual task, no longer a user task with a form."""
    bpmn = _source().replace('<bpmn:userTask id="dm_review"', '<bpmn:manualTask id="dm_review"')
    start = bpmn.index('<bpmn:manualTask id="dm_review"')
    end = bpmn.index("</bpmn:userTask>", start)
    bpmn = bpmn[:end] + "</bpmn:manualTask>" + bpmn[end + len("</bpmn:userTask>"):]
    return _copy(tmp_path / "retyped", bpmn)


@pytest.fixture
def rt(store, monkeypatch):
    monkeypatch.setenv("BPM_NOW", T0.isoformat())
    versions.deploy(store, [BPMN], actor="design.yang", at=T0)
    return Runtime(store, processes.SERVICES, lookups=processes.LOOKUPS)


def deploy(store, folder: Path, clock: Clock) -> int:
    (done,) = [d for d in versions.deploy(store, [folder], actor="design.yang", at=clock()) if
               d.process_id == "contract_review"]
    assert done.status == "deployed"
    return done.version


def log(store, instance_id: str) -> list[LogEntry]:
    with store.read() as s:
        return list(s.scalars(select(LogEntry).where(LogEntry.instance_id == instance_id).order_by(LogEntry.seq)))


def version_of(store, instance_id: str) -> int:
    with store.read() as s:
        return s.scalar(select(Definition.version).join(Instance, Instance.definition_id == Definition.id)
                        .where(Instance.id == instance_id))


def verified(rt, instance_id: str) -> audit.Verdict:
    with rt.store.read() as s:
        audit._replays.clear()  # a replay, not the kept verdict
        return audit.verify(s, instance_id, rt.script_engine)


def at_dm_review(rt, clock: Clock, **changes):
    view = rt.start("contract_review", "rep.wang", contract(**changes), at=clock(), version=1)
    assert waiting(view) == ["dm_review"]
    return view


def at_gm_approval(rt, clock: Clock):
    view = rt.complete(the_task(at_dm_review(rt, clock, **DEVIATING), "dm_review").id, "dm.zhou", APPROVE,
                       at=clock())
    assert waiting(view) == ["gm_approval"]
    return view


# --- the dry run ------------------------------------------------------------------------------------

def test_a_new_version_serves_new_instances_and_the_dry_run_says_where_each_would_land(rt, store, tmp_path):
    clock = Clock()
    at_review = at_dm_review(rt, clock)
    at_gm = at_gm_approval(rt, clock)
    done = at_dm_review(rt, clock)
    done = rt.complete(the_task(done, "dm_review").id, "dm.zhou", APPROVE, at=clock())
    done = rt.complete(the_task(done, "go_approval").id, "gmo.tang", APPROVE, at=clock())
    done = rt.complete(the_task(done, "file_contract").id, "rep.wang", {
        "signed_on": "2026-11-25", "archive_location": "A-3"}, at=clock())
    assert done.status == "completed"
    assert deploy(store, tightened(tmp_path), clock) == 2

    fresh = rt.start("contract_review", "rep.wang", contract(), at=clock())
    assert fresh.version == 2 and fresh.data["major_contract"] is True  # 260,000 is major from version 2 on
    assert at_review.data["major_contract"] is False

    before = {i: snapshot(store, i) for i in (at_review.id, at_gm.id)}
    moves = migration.plan(store, "contract_review", 1, 2, actor="design.yang")
    assert [m.as_json() for m in moves] == [  # running on version 1 only, oldest first
        {"id": at_review.id, "can_move": True, "reason": None, "tokens_to": ["dm_review"], "from_version": 1,
         "to_version": 2, "moved": False},
        {"id": at_gm.id, "can_move": True, "reason": None, "tokens_to": ["gm_approval"], "from_version": 1,
         "to_version": 2, "moved": False}]
    assert {i: snapshot(store, i) for i in before} == before  # a dry run changes nothing
    assert version_of(store, at_review.id) == 1 and migration.plan(store, "contract_review", 2, 1) == [
        migration.Move(fresh.id, 2, 1, True, None, ("dm_review",))]  # and back, for the operator


# --- the move -------------------------------------------------------------------------------------------

def test_migrate_moves_each_as_one_logged_step_and_the_instance_goes_on_with_the_new_version(rt, store, tmp_path):
    clock = Clock()
    view = at_dm_review(rt, clock)
    opened = the_task(view, "dm_review")
    gm = at_gm_approval(rt, clock)
    deploy(store, tightened(tmp_path), clock)

    when = clock()
    moves = migration.migrate(store, "contract_review", 1, 2, actor="design.yang", at=when)
    assert [(m.instance_id, m.can_move, m.moved, m.tokens_to) for m in moves] == [
        (view.id, True, True, ("dm_review",)), (gm.id, True, True, ("gm_approval",))]
    last = log(store, view.id)[-1]
    assert (last.seq, last.command, last.actor, last.input, last.at, last.task_id) == (
        2, "migrate", "design.yang", {"from": 1, "to": 2}, when, None)
    assert version_of(store, view.id) == 2 and rt.instance(view.id).version == 2
    # The open task is the same task, with the due time it was given (version 2's PT2H is for tasks
    # opened after the move), and its inbox row is read again from the new version.
    moved = the_task(rt.instance(view.id), "dm_review")
    assert (moved.id, moved.due, moved.created, moved.role) == (opened.id, opened.due, opened.created, "dept_manager")
    assert opened.due == opened.created + timedelta(hours=4)
    for instance_id in (view.id, gm.id):
        assert verified(rt, instance_id).ok, verified(rt, instance_id).problem
    steps = history_json(rt, view.id)
    assert [(s["command"], s["actor"]) for s in steps] == [("start", "rep.wang"), ("migrate", "design.yang")]
    assert steps[1]["changes"] == [] and steps[1]["diagram"]["active"] == ["dm_review"]
    assert migration.plan(store, "contract_review", 1, 2) == []  # nothing left on version 1

    # Round 2 runs version 2's decision table: 260,000 is now a major contract, reported above;
    # the manager's new review is due in version 2's 2 hours.
    view = rt.complete(moved.id, "dm.zhou", reject("按原报价重新谈判"), at=clock())
    view = rt.complete(the_task(view, "revise").id, "rep.wang", REVISED, at=clock())
    assert (view.version, view.data["review_round"], view.data["major_contract"]) == (2, 2, True)
    again = the_task(view, "dm_review")
    assert again.due == again.created + timedelta(hours=2)
    assert verified(rt, view.id).ok

    # The one at the GM's approval goes on too, to filing due in version 2's 3 days.
    gm = rt.complete(the_task(rt.instance(gm.id), "gm_approval").id, "gm.zhao", APPROVE, at=clock())
    gm = rt.complete(the_task(gm, "go_approval").id, "gmo.tang", APPROVE, at=clock())
    filing = the_task(gm, "file_contract")
    assert filing.due == filing.created + timedelta(days=3)
    assert verified(rt, gm.id).ok
    with store.read() as s:
        replayed = audit.replay(s, gm.id, rt.script_engine)
    assert [r.command for r in replayed] == ["start", "complete", "migrate", "complete", "complete"]
    assert all(r.ok for r in replayed)


def test_a_changed_migration_step_is_caught_by_verify(rt, store, tmp_path):
    clock = Clock()
    view = at_dm_review(rt, clock)
    deploy(store, tightened(tmp_path), clock)
    migration.migrate(store, "contract_review", 1, 2, at=clock())
    assert verified(rt, view.id).ok
    with store.write() as s:  # the log says it stayed on version 1 ...
        entry = s.scalar(select(LogEntry).where(LogEntry.instance_id == view.id, LogEntry.command == "migrate"))
        entry.input = {"from": 1, "to": 1}
    found = verified(rt, view.id)
    assert not found.ok and found.problem.startswith("step 2 (migrate)")


# --- what cannot move -------------------------------------------------------------------------------------

def test_an_instance_whose_open_task_is_gone_cannot_move_and_is_left_as_it_was(rt, store, tmp_path):
    clock = Clock()
    review = at_dm_review(rt, clock)
    gm = at_gm_approval(rt, clock)
    past_gm = at_gm_approval(rt, clock)
    past_gm = rt.complete(the_task(past_gm, "gm_approval").id, "gm.zhao", APPROVE, at=clock())
    assert waiting(past_gm) == ["go_approval"]
    deploy(store, without_gm(tmp_path), clock)

    planned = {m.instance_id: m for m in migration.plan(store, "contract_review", 1, 2, actor="design.yang")}
    assert planned[review.id].can_move and planned[review.id].tokens_to == ("dm_review",)
    assert (planned[gm.id].can_move, planned[gm.id].reason, planned[gm.id].tokens_to) == (
        False, "its open task 'gm_approval' is not in version 2", ())
    assert planned[gm.id].template == "its open task '%(step)s' is not in version %(version)s"
    assert planned[gm.id].params == {"step": "gm_approval", "version": 2}
    assert planned[past_gm.id].reason == ("its step 'gm_approval', already taken, is not in version 2 "
                                          "(its record needs it)")

    left = {i: snapshot(store, i) for i in (gm.id, past_gm.id)}
    moves = {m.instance_id: m for m in migration.migrate(store, "contract_review", 1, 2, at=clock())}
    assert (moves[review.id].moved, moves[gm.id].moved, moves[past_gm.id].moved) == (True, False, False)
    assert moves[gm.id].as_json()["reason"] == "its open task 'gm_approval' is not in version 2"
    assert {i: snapshot(store, i) for i in left} == left
    assert (version_of(store, gm.id), version_of(store, review.id)) == (1, 2)
    # It goes on on version 1, as it was.
    gm = rt.complete(the_task(rt.instance(gm.id), "gm_approval").id, "gm.zhao", APPROVE, at=clock())
    assert gm.version == 1 and waiting(gm) == ["go_approval"]
    # The moved one takes version 2's road: a deviation goes to the VP, the GM's level is gone.
    review = rt.complete(the_task(rt.instance(review.id), "dm_review").id, "dm.zhou", reject("付款条件"),
                         at=clock())
    review = rt.complete(the_task(review, "revise").id, "rep.wang", {**REVISED, **DEVIATING}, at=clock())
    review = rt.complete(the_task(review, "dm_review").id, "dm.zhou", APPROVE, at=clock())
    assert waiting(review) == ["vp_approval"]
    assert verified(rt, review.id).ok and verified(rt, gm.id).ok


def test_a_waiting_step_that_changed_its_kind_cannot_move(rt, store, tmp_path):
    clock = Clock()
    view = at_dm_review(rt, clock)
    deploy(store, retyped(tmp_path), clock)
    (move,) = migration.plan(store, "contract_review", 1, 2)
    assert (move.instance_id, move.can_move, move.reason) == (
        view.id, False, "its waiting step 'dm_review' is a user task in version 1 but a manual task in version 2")
    before = snapshot(store, view.id)
    assert [m.moved for m in migration.migrate(store, "contract_review", 1, 2)] == [False]
    assert snapshot(store, view.id) == before


# --- who may, and what is asked ------------------------------------------------------------------------------

@pytest.mark.parametrize("actor, allowed", [("design.yang", True), (None, True), ("dm.zhou", False),
                                            ("audit.han", False), ("rep.wang", False)],
                         ids=["designer", "operator", "approver", "auditor", "sales_rep"])
@pytest.mark.parametrize("action", ["plan", "migrate"])
def test_only_a_designer_or_the_operator_may_move_instances(rt, store, tmp_path, actor, allowed, action):
    clock = Clock()
    view = at_dm_review(rt, clock)
    deploy(store, tightened(tmp_path), clock)
    before = snapshot(store, view.id)
    act = getattr(migration, action)
    if allowed:
        (move,) = act(store, "contract_review", 1, 2, actor=actor)
        assert move.can_move and move.moved == (action == "migrate")
        if action == "migrate":
            assert log(store, view.id)[-1].actor == (actor or "operator")
        return
    with pytest.raises(Forbidden, match=rf"^{actor} may not move instances between versions: only designer may$"):
        act(store, "contract_review", 1, 2, actor=actor)
    assert snapshot(store, view.id) == before


@pytest.mark.parametrize("process, source, target, error, sentence", [
    ("nope", 1, 2, NotFound, "there is no deployed process 'nope'"),
    ("contract_review", 7, 2, NotFound, "process 'contract_review' has no version 7"),
    ("contract_review", 1, 1, InvalidInput, "the instances are already on version 1: name another version to "
                                            "move them to"),
    ("contract_review", 1, 9, InvalidInput, "process 'contract_review' has no version 9 to move to (its newest "
                                            "is version 2)"),
    ("contract_review", "one", 2, InvalidInput, "the version to move from must be a whole number, not 'one'"),
    ("contract_review", 1, None, InvalidInput, "say which version to move to, as a whole number"),
])
@pytest.mark.parametrize("action", ["plan", "migrate"])
def test_a_bad_request_is_one_sentence_and_changes_nothing(rt, store, tmp_path, process, source, target, error,
                                                           sentence, action):
    clock = Clock()
    view = at_dm_review(rt, clock)
    deploy(store, tightened(tmp_path), clock)
    before = snapshot(store, view.id)
    with pytest.raises(error) as refused:
        getattr(migration, action)(store, process, source, target, actor="design.yang")
    assert str(refused.value) == sentence
    assert snapshot(store, view.id) == before


# --- races ------------------------------------------------------------------------------------------------------

def _together(*calls):
    barrier = threading.Barrier(len(calls))
    outcomes: list = [None] * len(calls)

    def run(i, call):
        barrier.wait()
        try:
            outcomes[i] = ("ok", call())
        except Exception as exc:  # noqa: BLE001 - the test inspects what came back
            outcomes[i] = ("error", exc)
    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return outcomes


def _whole(rt, store, instance_id: str) -> None:
    """The instance's log is one unbroken chain that replays to its row, and its inbox rows are the
    open tasks of its state."""
    entries = log(store, instance_id)
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    assert verified(rt, instance_id).ok, verified(rt, instance_id).problem
    with store.read() as s:
        rows = sorted(t.element_id for t in s.scalars(select(HumanTask).where(HumanTask.instance_id == instance_id)))
    assert rows == sorted(t.element_id for t in rt.instance(instance_id).tasks) == waiting(rt.instance(instance_id))
    with store.read() as s:
        replayed = audit.replay(s, instance_id, rt.script_engine)
    assert sorted(replayed[-1].waiting) == sorted(
        t.name for t in rt.instance(instance_id).tasks)


def test_a_command_racing_a_migration_leaves_a_whole_instance(rt, store, tmp_path):
    clock = Clock()
    deploy(store, tightened(tmp_path), clock)
    for _ in range(3):
        view = at_dm_review(rt, clock)  # (on version 1, as asked)
        when = clock()
        outcomes = _together(
            lambda: rt.complete(the_task(view, "dm_review").id, "dm.zhou", APPROVE, at=when),
            lambda: migration.migrate(store, "contract_review", 1, 2, actor="design.yang", at=when))
        assert [kind for kind, _ in outcomes] == ["ok", "ok"], outcomes
        assert [m.moved for m in outcomes[1][1]] == [True]
        assert sorted(e.command for e in log(store, view.id)) == ["complete", "migrate", "start"]
        assert version_of(store, view.id) == 2 and waiting(rt.instance(view.id)) == ["go_approval"]
        _whole(rt, store, view.id)


def test_two_migrations_at_once_move_each_instance_once(rt, store, tmp_path):
    clock = Clock()
    views = [at_dm_review(rt, clock) for _ in range(3)]
    deploy(store, tightened(tmp_path), clock)
    when = clock()
    outcomes = _together(*[lambda: migration.migrate(store, "contract_review", 1, 2, at=when)] * 2)
    assert [kind for kind, _ in outcomes] == ["ok", "ok"], outcomes
    moved = [m.instance_id for _, moves in outcomes for m in moves if m.moved]
    assert sorted(moved) == sorted(v.id for v in views)
    skipped = [m for _, moves in outcomes for m in moves if not m.moved]
    assert all(m.reason == "it is no longer running on version 1" for m in skipped)
    for view in views:
        assert [e.command for e in log(store, view.id)] == ["start", "migrate"]
        _whole(rt, store, view.id)


# --- the doors: command line, JSON API, the instance page -------------------------------------------------

def test_the_command_line_dry_run_move_and_the_record_after(bpm, tmp_path):
    code, out, err = bpm("start", "contract_review", "--as", "rep.wang", "--data", json.dumps(contract()), "--json")
    assert code == 0, err
    instance_id = json.loads(out)["id"]
    code, _, err = bpm("deploy", str(tightened(tmp_path)), "--as", "design.yang")
    assert code == 0, err

    code, out, err = bpm("migrate", "contract_review", "--from", "1", "--to", "2", "--dry-run", "--json")
    assert (code, err) == (0, "")
    assert json.loads(out) == [{"id": instance_id, "can_move": True, "reason": None, "tokens_to": ["dm_review"],
                                "from_version": 1, "to_version": 2, "moved": False}]
    code, out, err = bpm("migrate", "contract_review", "--from", "1", "--to", "2", "--dry-run", "--as", "design.yang")
    assert code == 0 and out.splitlines() == [
        "instance  can move  tokens to  reason", f"{instance_id}  yes  dm_review  -",
        "1 of 1 running instance(s) of contract_review v1 could move to v2"]
    for (source, target, *more), sentence in (
            (("1", "2", "--as", "dm.zhou"), "dm.zhou may not move instances between versions: only designer may"),
            (("1", "1"), "the instances are already on version 1: name another version to move them to"),
            (("1", "5"), "process 'contract_review' has no version 5 to move to (its newest is version 2)"),
            (("4", "2"), "process 'contract_review' has no version 4")):
        code, out, err = bpm("migrate", "contract_review", "--from", source, "--to", target, *more)
        assert (code, out, err) == (1, "", f"bpm migrate: {sentence}\n")
    assert bpm("migrate", "nope", "--from", "1", "--to", "2")[2] == "bpm migrate: there is no deployed process 'nope'\n"

    code, out, err = bpm("migrate", "contract_review", "--from", "1", "--to", "2", "--as", "design.yang")
    assert code == 0, err
    assert out.splitlines()[1:] == [f"{instance_id}  moved  dm_review  -",
                                    "1 of 1 running instance(s) of contract_review v1 moved to v2"]
    assert bpm("verify", instance_id)[1].strip() == f"ok   {instance_id} (2 steps)"
    code, out, _ = bpm("replay", instance_id)
    assert code == 0 and "every state hash matched (2 steps)" in out
    code, out, _ = bpm("history", instance_id, "--json")
    assert [(r["command"], r["actor"]) for r in json.loads(out)] == [("start", "rep.wang"), ("migrate", "design.yang")]
    code, out, _ = bpm("instance", instance_id, "--json")
    assert json.loads(out)["version"] == 2


def test_the_api_dry_run_and_move_with_errors_as_json(rt, store, tmp_path):
    from web import create_app
    clock = Clock()
    view = at_dm_review(rt, clock)
    deploy(store, tightened(tmp_path), clock)
    client = create_app(rt, {"TESTING": True}).test_client()

    def token(username: str) -> dict:
        reply = client.post("/api/v1/tokens", json={"username": username, "password": "demo"})
        return {"Authorization": f"Bearer {reply.json['token']}"}
    designer, approver = token("design.yang"), token("dm.zhou")
    path = "/api/v1/processes/contract_review/migration"
    planned = client.get(f"{path}?from=1&to=2", headers=designer)
    assert planned.status_code == 200 and planned.json == [
        {"id": view.id, "can_move": True, "reason": None, "tokens_to": ["dm_review"], "from_version": 1,
         "to_version": 2, "moved": False}]
    before = snapshot(store, view.id)
    for reply, status, error in (
            (client.get(f"{path}?from=1&to=2", headers=approver), 403,
             "dm.zhou may not move instances between versions: only designer may"),
            (client.post(path, json={"from": 1, "to": 2}, headers=approver), 403,
             "dm.zhou may not move instances between versions: only designer may"),
            (client.get("/api/v1/processes/nope/migration?from=1&to=2", headers=designer), 404,
             "there is no deployed process 'nope'"),
            (client.get(f"{path}?from=3&to=2", headers=designer), 404, "process 'contract_review' has no version 3"),
            (client.get(f"{path}?from=1&to=1", headers=designer), 400,
             "the instances are already on version 1: name another version to move them to"),
            (client.get(f"{path}?from=1", headers=designer), 400, "say which version to move to, as a whole number"),
            (client.post(path, json={"from": "x", "to": 2}, headers=designer), 400,
             "the version to move from must be a whole number, not 'x'"),
            (client.post(path, json=[1, 2], headers=designer), 400, "the request body must be a JSON object"),
            (client.get(f"{path}?from=1&to=2"), 401, "sign in or send a bearer token (POST /api/v1/tokens)")):
        assert (reply.status_code, reply.json["error"]) == (status, error)
    assert snapshot(store, view.id) == before

    moved = client.post(path, json={"from": 1, "to": 2}, headers=designer)
    assert moved.status_code == 200 and [(m["id"], m["moved"]) for m in moved.json] == [(view.id, True)]
    history = client.get(f"/api/v1/instances/{view.id}/history", headers=token("audit.han")).json
    assert [h["command"] for h in history] == ["start", "migrate"]
    assert "/v1/processes/{process_id}/migration" in client.get("/api/openapi.json").json["paths"]


def test_the_instance_page_says_who_moved_it_to_which_version(rt, store, tmp_path, catalogs):
    from .test_web import as_user, make_app, text
    clock = Clock()
    view = at_dm_review(rt, clock)
    deploy(store, tightened(tmp_path), clock)
    migration.migrate(store, "contract_review", 1, 2, actor="design.yang", at=clock())
    app = make_app(rt, catalogs, tmp_path)
    en = text(as_user(app, "audit.han").get(f"/instances/{view.id}"))
    zh = text(as_user(app, "audit.han", "zh_CN").get(f"/instances/{view.id}"))
    assert "Yang moved it from version 1 to version 2" in en
    assert "Yang 将其从版本 1 迁移到版本 2" in zh


def test_an_evidence_bundle_of_a_moved_instance_holds_both_versions_and_verifies_offline(rt, store, tmp_path):
    from engine import evidence
    clock = Clock()
    view = at_dm_review(rt, clock)
    deploy(store, tightened(tmp_path), clock)
    migration.migrate(store, "contract_review", 1, 2, actor="design.yang", at=clock())
    rt.complete(the_task(rt.instance(view.id), "dm_review").id, "dm.zhou", APPROVE, at=clock())
    with store.read() as s:
        data = evidence.export(s, [view.id], rt.script_engine)
    bundle, members = evidence.read_bundle(data)
    versions_in = sorted(json.loads(members[name])["version"] for name in members
                         if name.startswith("definitions/") and name.endswith("/definition.json"))
    assert versions_in == [1, 2]
    assert [(v.instance_id, v.ok, v.steps) for v in evidence.verify_bundle(data, rt.script_engine)] == [
        (view.id, True, 3)]


def test_a_waiting_timer_keeps_its_due_time_and_a_message_wait_moves_with_its_instance(store, tmp_path):
    from engine import timers
    from engine.store import DueTimer, MessageWait
    from .test_runtime import RUNTIME
    versions.deploy(store, [RUNTIME / "waiting.bpmn"], actor="design.yang", at=T0)
    runtime = Runtime(store)
    timer = runtime.start("waiting", "fin.chu", {"order_no": "SO-1"}, at=T0)
    message = runtime.start("waiting", "fin.chu", {"order_no": "SO-2"}, at=T0)
    runtime.fire_timer(message.id, T0 + timedelta(hours=5))
    folder = tmp_path / "waiting2"
    folder.mkdir()
    (folder / "waiting.bpmn").write_text((RUNTIME / "waiting.bpmn").read_text().replace(
        '"PT4H"', '"PT1H"').replace('name="Reconcile payment"', 'name="Reconcile the payment"'))
    versions.deploy(store, [folder], actor="design.yang", at=T0)

    moves = migration.migrate(store, "waiting", 1, 2, at=T0 + timedelta(hours=6))
    assert sorted((m.instance_id, m.moved, m.tokens_to) for m in moves) == sorted(
        [(timer.id, True, ("cool_off",)), (message.id, True, ("payment",))])
    with store.read() as s:
        assert [(t.instance_id, t.due_at) for t in s.scalars(select(DueTimer))] == [
            (timer.id, T0 + timedelta(hours=4))]  # as given, not version 2's hour
        assert [(w.instance_id, w.message) for w in s.scalars(select(MessageWait))] == [
            (message.id, "payment_received")]

    assert runtime.message("payment_received", {"amount": 5}, {"order_no": "SO-2"},
                           at=T0 + timedelta(hours=7)) == [message.id]
    assert [t.name for t in runtime.instance(message.id).tasks] == ["Reconcile the payment"]
    assert timers.run_once(runtime, T0 + timedelta(hours=7)).fired == [timer.id]
    assert waiting(runtime.instance(timer.id)) == []  # waits for its payment now
    with store.read() as s:
        assert s.scalars(select(MessageWait.instance_id)).all() == [timer.id]
    for instance_id in (timer.id, message.id):
        assert verified(runtime, instance_id).ok
