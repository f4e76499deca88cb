"""The task tree kept flat (engine.pruning): a rework loop of 1,000 rounds completes with the right
data and status, its stored state stays the size of its first round, its record verifies; a pruned
instance behaves as one with its whole tree (data, open tasks, approval levels, the diagram); and an
instance is never reported completed while work remains (the guard)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.util.task import TaskIterator

import processes
from engine import audit, pruning, state, tasks, versions
from engine.runtime import CommandFailed, Runtime, loaded_definition
from engine.store import Incident, Instance, LogEntry

from .conftest import contract, snapshot, views_of
from .test_processes import BPMN
from .test_runtime import T0, deploy


def rework(runtime):
    return runtime.start("rework", "rep.wang", {"rounds": 0}, at=T0)


def stored(store, instance_id: str) -> str:
    with store.read() as s:
        return s.get(Instance, instance_id).state


def restored(store, instance_id: str):
    with store.read() as s:
        row = s.get(Instance, instance_id)
        loaded = loaded_definition(s, row.definition_id)
        return state.load_state(row.state, loaded.spec, loaded.subprocess_specs)[0], loaded


def verified(store, runtime, instance_id: str) -> audit.Verdict:
    with store.read() as s:
        return audit.verify(s, instance_id, runtime.script_engine)


class Loop:
    """Drives rework.bpmn: the rep revises (version n), the manager reviews; a nudge fires the
    review's two-hour timer first."""

    def __init__(self, runtime, view):
        self.rt, self.view, self.at = runtime, view, T0

    def revise(self, n: int):
        self.at += timedelta(minutes=10)
        self.view = self.rt.complete(self.view.tasks[0].id, "rep.wang", {"version": n}, at=self.at)
        return self.view

    def nudge(self):
        self.at += timedelta(hours=3)
        self.rt.fire_timer(self.view.id, self.at)
        self.view = self.rt.instance(self.view.id)

    def review(self, decision: str):
        self.at += timedelta(minutes=10)
        self.view = self.rt.complete(self.view.tasks[0].id, "dm.zhou", {"decision": decision}, at=self.at)
        return self.view


# --- 1,000 rounds ---------------------------------------------------------------------------------

NUDGED = (3, 500, 998)


def test_a_thousand_round_rework_loop_completes_with_its_data_and_a_flat_state(sqlite_store):
    store = sqlite_store
    deploy(store, "rework.bpmn")
    runtime = Runtime(store)
    loop = Loop(runtime, rework(runtime))
    assert [t.element_id for t in loop.view.tasks] == ["revise"]
    sizes = {}
    for n in range(1, 1001):
        loop.revise(n)
        sizes[n] = len(stored(store, loop.view.id))
        assert [t.element_id for t in loop.view.tasks] == ["review"], n
        if n in NUDGED:
            loop.nudge()
        if n == 700:  # the holder's commands are pruned alike
            runtime.claim(loop.view.tasks[0].id, "dm.zhou", at=loop.at)
        view = loop.review("approve" if n == 1000 else "reject")
        if n < 1000:
            assert view.status == "running" and [t.element_id for t in view.tasks] == ["revise"], n
    assert view.status == "completed" and view.tasks == []
    assert {k: view.data.get(k) for k in ("rounds", "version", "decision", "nudged_at")} == {
        "rounds": 1000, "version": 1000, "decision": "approve", "nudged_at": 998}  # an ended branch's data too
    # a size, not a time: the state at round 1,000 is that of round 1 (the nudges' ended branches
    # are kept for the End join, a few hundred bytes each)
    assert sizes[1000] <= 1.5 * sizes[1], (sizes[1], sizes[1000])
    assert max(sizes.values()) <= 1.5 * sizes[1]
    workflow, _ = restored(store, view.id)
    assert len(workflow.tasks) < 60
    passes = views_of(runtime).diagram(view.id)["passes"]
    assert (passes["review"], passes["revise"], passes["count"], passes["note_nudge"]) == (1000, 1000, 1000, 3)
    assert verified(store, runtime, view.id).ok


def test_contract_review_rejected_and_revised_a_thousand_times(sqlite_store, monkeypatch):
    store = sqlite_store
    monkeypatch.setenv("BPM_NOW", T0.isoformat())
    versions.deploy(store, [BPMN], actor="design.yang", at=T0)
    runtime = Runtime(store, processes.SERVICES, lookups=processes.LOOKUPS)
    view = runtime.start("contract_review", "rep.wang", contract(), at=T0)
    number = view.data["contract_no"]
    revised = {k: v for k, v in contract().items() if k not in (
        "customer", "quote_price", "allowed_discount", "quote_payment_terms", "quote_delivery_date")}
    at, sizes = T0, {}
    for n in range(1, 1001):
        at += timedelta(minutes=1)
        view = runtime.complete(view.tasks[0].id, "dm.zhou", {"decision": "reject", "comment": f"第 {n} 轮"}, at=at)
        assert [t.element_id for t in view.tasks] == ["revise"], n
        sizes[n] = len(stored(store, view.id))
        at += timedelta(minutes=1)
        view = runtime.complete(view.tasks[0].id, "rep.wang", {**revised, "payment_terms": f"30% 定金（第 {n} 版）"},
                                at=at)
        assert [t.element_id for t in view.tasks] == ["dm_review"] and view.status == "running", n
    assert sizes[1000] <= 1.5 * sizes[1], (sizes[1], sizes[1000])
    for element, user, data in (("dm_review", "dm.zhou", {"decision": "approve"}),
                                ("gm_approval", "gm.zhao", {"decision": "approve"}),  # the terms deviate
                                ("go_approval", "gmo.tang", {"decision": "approve"}),
                                ("file_contract", "rep.wang", {"signed_on": "2026-11-25", "archive_location": "A-3"})):
        at += timedelta(minutes=1)
        assert [t.element_id for t in view.tasks] == [element]
        view = runtime.complete(view.tasks[0].id, user, data, at=at)
    assert view.status == "completed"
    assert (view.data["contract_no"], view.data["review_round"], view.data["payment_terms"],
            view.data["approved_by"]) == (number, 1001, "30% 定金（第 1000 版）", "gmo.tang")
    assert verified(store, runtime, view.id).ok


# --- pruned and whole agree -----------------------------------------------------------------------

def _seen(store, runtime, view) -> dict:
    workflow, loaded = restored(store, view.id)
    data = {k: v for k, v in view.data.items() if k != "contract_no"}  # one number per instance
    out = {"status": view.status, "data": data, "open": sorted(t.element_id for t in view.tasks),
           "diagram": {k: v for k, v in views_of(runtime).diagram(view.id).items() if k != "xml"}}
    if loaded.approval_tasks:
        out["editors"] = tasks.editors(workflow, "rep.wang", loaded.approval_tasks)
        out["levels"] = {t.task_spec.name: tasks.levels(workflow, t, loaded.approval_tasks, loaded.submitter_lane)
                         for t in workflow.get_tasks(state=16, manual=True)}
    return out


def test_a_pruned_rework_loop_behaves_as_its_whole_tree(store, monkeypatch):
    deploy(store, "rework.bpmn")
    runtime = Runtime(store)
    monkeypatch.setenv("BPM_PRUNE", "0")
    whole = Loop(runtime, rework(runtime))
    monkeypatch.delenv("BPM_PRUNE")
    pruned = Loop(runtime, rework(runtime))
    for n in range(1, 16):
        for loop in (whole, pruned):
            loop.revise(n)
            if n % 4 == 0:
                loop.nudge()
        assert _seen(store, runtime, whole.view) == _seen(store, runtime, pruned.view), n
        for loop in (whole, pruned):
            loop.review("approve" if n == 15 else "reject")
        assert _seen(store, runtime, whole.view) == _seen(store, runtime, pruned.view), n
    assert pruned.view.status == "completed" and pruned.view.data["nudged_at"] == 12
    assert len(stored(store, pruned.view.id)) * 3 < len(stored(store, whole.view.id))
    with store.read() as s:
        starts = {e.instance_id: e.input for e in s.query(LogEntry).filter(LogEntry.seq == 1)}
    assert starts[pruned.view.id].get("pruned") is True and "pruned" not in starts[whole.view.id]
    for loop in (whole, pruned):
        assert verified(store, runtime, loop.view.id).ok
        steps, replayed = views_of(runtime).history(loop.view.id)
        assert replayed
    # the history names the step each command acted on, also once it is pruned from the tree
    assert [s.element_id for s in views_of(runtime).history(pruned.view.id)[0]] == \
        [s.element_id for s in views_of(runtime).history(whole.view.id)[0]]


def test_approval_levels_and_four_eyes_hold_on_a_pruned_contract_review(store, monkeypatch):
    """A deviating contract goes to the manager then the VP, round after round: who approved which
    level of the current round, and who last edited it, are read the same from the pruned tree."""
    monkeypatch.setenv("BPM_NOW", T0.isoformat())
    versions.deploy(store, [BPMN], actor="design.yang", at=T0)
    runtime = Runtime(store, processes.SERVICES, lookups=processes.LOOKUPS)
    deviating = contract(price=450, amount=225000)
    monkeypatch.setenv("BPM_PRUNE", "0")
    views = [runtime.start("contract_review", "rep.wang", deviating, at=T0)]
    monkeypatch.delenv("BPM_PRUNE")
    views.append(runtime.start("contract_review", "rep.wang", deviating, at=T0))
    at = T0
    revised = {"price": 450, "amount": 225000, "lines": deviating["lines"], "discount": 0,
               "payment_terms": "30% 定金，发货前付清", "delivery_date": "2027-01-15"}
    for n in range(1, 5):
        for element, user, data in (("dm_review", "dm.zhou", {"decision": "approve"}),
                                    ("vp_approval", "vp.qian", {"decision": "reject", "comment": f"第 {n} 轮"}),
                                    ("revise", "rep.wang", revised)):
            at += timedelta(minutes=5)
            for i, view in enumerate(views):
                assert [t.element_id for t in view.tasks] == [element]
                views[i] = runtime.complete(view.tasks[0].id, user, data, at=at)
            whole, pruned = (_seen(store, runtime, v) for v in views)
            assert whole == pruned, (n, element)
            if element == "dm_review":  # the manager's level of this round is still known
                assert pruned["levels"]["vp_approval"] == {"dm.zhou": {"dm_review"}}
    assert len(stored(store, views[1].id)) * 2 < len(stored(store, views[0].id))


def test_an_instance_started_without_pruning_keeps_its_whole_tree(store, monkeypatch):
    deploy(store, "rework.bpmn")
    runtime = Runtime(store)
    monkeypatch.setenv("BPM_PRUNE", "0")
    loop = Loop(runtime, rework(runtime))
    monkeypatch.delenv("BPM_PRUNE")  # pruning on again: the instance's start said no
    for n in range(1, 6):
        loop.revise(n)
        loop.review("reject")
    workflow, _ = restored(store, loop.view.id)
    assert not pruning.is_pruned(workflow) and workflow.task_tree.task_spec.name == "Start"
    assert verified(store, runtime, loop.view.id).ok


# --- the guard: never completed while work remains ------------------------------------------------

def incidents(store) -> list[Incident]:
    with store.read() as s:
        return s.query(Incident).order_by(Incident.id).all()


def test_an_instance_spiff_calls_completed_while_a_task_is_open_becomes_an_incident(store, monkeypatch):
    deploy(store, "rework.bpmn")
    runtime = Runtime(store)
    loop = Loop(runtime, rework(runtime))
    loop.revise(1)
    before = snapshot(store, loop.view.id)
    monkeypatch.setattr(BpmnWorkflow, "is_completed", lambda self: True)  # SpiffWorkflow's view, wrong
    with pytest.raises(CommandFailed, match="'Revise' is still ready but SpiffWorkflow says it is completed"):
        loop.review("reject")
    assert snapshot(store, loop.view.id) == before  # still running, still at the review
    [incident] = incidents(store)
    assert (incident.status, incident.command, incident.element_id) == ("open", "complete", "revise")
    monkeypatch.undo()
    assert runtime.retry(incident.id, "dm.zhou").status == "running"
    assert [t.element_id for t in runtime.instance(loop.view.id).tasks] == ["revise"]


def _shallow(monkeypatch, depth: int) -> None:
    """SpiffWorkflow's task iterator stops `depth` deep (1,000 in SpiffWorkflow 3.2)."""
    real = TaskIterator.__init__

    def init(self, *args, **kwargs):
        real(self, *args, **kwargs)
        self.max_depth = min(self.max_depth, depth)
    monkeypatch.setattr(TaskIterator, "__init__", init)


def test_a_whole_tree_deeper_than_spiff_can_see_becomes_an_incident_not_completed(store, monkeypatch):
    deploy(store, "rework.bpmn")
    runtime = Runtime(store)
    monkeypatch.setenv("BPM_PRUNE", "0")
    loop = Loop(runtime, rework(runtime))
    _shallow(monkeypatch, 40)
    with pytest.raises(CommandFailed, match="the instance's task tree and its view disagree"):
        for n in range(1, 30):
            loop.revise(n)
            loop.review("reject")
    assert n > 2  # it went some rounds before the tree outgrew the iterator
    assert loop.view.status == "running"
    assert runtime.instance(loop.view.id).status == "running" and runtime.instance(loop.view.id).tasks
    [incident] = incidents(store)
    assert incident.status == "open"


def test_a_pruned_tree_stays_within_what_spiff_can_see(store, monkeypatch):
    deploy(store, "rework.bpmn")
    runtime = Runtime(store)
    loop = Loop(runtime, rework(runtime))
    _shallow(monkeypatch, 40)
    for n in range(1, 30):
        loop.revise(n)
        loop.review("approve" if n == 29 else "reject")
    assert loop.view.status == "completed" and loop.view.data["rounds"] == 29
    assert incidents(store) == []


def test_a_rework_loop_through_a_subprocess_keeps_one_subprocess(store, monkeypatch):
    deploy(store, "rework_sub.bpmn")
    runtime = Runtime(store)
    monkeypatch.setenv("BPM_PRUNE", "0")
    whole = Loop(runtime, runtime.start("rework_sub", "rep.wang", {}, at=T0))
    monkeypatch.delenv("BPM_PRUNE")
    pruned = Loop(runtime, runtime.start("rework_sub", "rep.wang", {}, at=T0))
    sizes = []
    for n in range(1, 31):
        for loop in (whole, pruned):
            loop.revise(n)
            assert [t.element_id for t in loop.view.tasks] == ["review"]
        seen_whole, seen_pruned = _seen(store, runtime, whole.view), _seen(store, runtime, pruned.view)
        # tasks.round_of does not look past a subprocess: on the whole tree every past round's
        # review looks like this round's; pruned, only this round's is left (the right answer)
        assert seen_whole.pop("levels")["review"] == ({"dm.zhou": {"review"}} if n > 1 else {})
        assert seen_pruned.pop("levels")["review"] == {}
        assert seen_whole == seen_pruned, n
        workflow, _ = restored(store, pruned.view.id)
        assert len(workflow.subprocesses) == 1  # the review under way; those of past rounds went with their task
        sizes.append(len(stored(store, pruned.view.id)))
        for loop in (whole, pruned):
            loop.review("approve" if n == 30 else "reject")
        assert _seen(store, runtime, whole.view) == _seen(store, runtime, pruned.view), n
    assert pruned.view.status == "completed" and pruned.view.data["stamped"] == 30
    assert sizes[-1] <= 1.5 * sizes[0]
    workflow, _ = restored(store, whole.view.id)
    assert len(workflow.subprocesses) == 30  # SpiffWorkflow keeps every one
    for loop in (whole, pruned):
        assert verified(store, runtime, loop.view.id).ok
