"""The unit of work on SQLite and PostgreSQL: versions, tasks, access, races, rollback, timers, replay."""
from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from engine import access, audit, inbox, timers, versions
from engine.runtime import CommandFailed, Conflict, Forbidden, InvalidInput, NotFound, Runtime
from engine.store import DueTimer, HumanTask, Incident, Instance, LogEntry, MessageWait

from .conftest import DATA, snapshot

RUNTIME = DATA / "runtime"
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)


def deploy(store, *names):
    return versions.deploy(store, [RUNTIME / n for n in names], actor="design.yang", at=T0)




def only_task(view):
    assert len(view.tasks) == 1, view.tasks
    return view.tasks[0]


def inbox_of(store, username):
    with store.read() as s:
        return inbox.tasks_for(s, access.person(s, username))


# --- versions ---------------------------------------------------------------------------------

def test_deploy_versions_and_running_instances_keep_theirs(store, tmp_path):
    assert [d.as_json() for d in deploy(store, "approval.bpmn")] == [
        {"process_id": "approval", "version": 1, "status": "deployed",
         "notices": [f"user task {t} has no form: it takes any JSON object as its data (except the "
                     f"engine's own fields, such as initiator)" for t in ("submit", "review", "confirm")]}]
    assert [d.status for d in deploy(store, "approval.bpmn")] == ["unchanged"]

    runtime = Runtime(store)
    old = runtime.start("approval", "rep.wang", {"amount": 10}, at=T0)
    assert old.version == 1

    changed = tmp_path / "approval.bpmn"
    changed.write_text((RUNTIME / "approval.bpmn").read_text().replace(
        "total = amount * 2", "total = amount * 3"))
    assert [(d.version, d.status) for d in versions.deploy(store, [changed], at=T0)] == [(2, "deployed")]
    assert [(d.version, d.status) for d in versions.deploy(store, [changed], at=T0)] == [(2, "unchanged")]

    new = runtime.start("approval", "rep.wang", {"amount": 10}, at=T0)
    assert new.version == 2
    for view, expected in ((old, 20), (new, 30)):
        view = runtime.complete(only_task(view).id, "rep.wang", {}, at=T0)
        view = runtime.complete(only_task(view).id, "dm.zhou", {"decision": "approve"}, at=T0)
        assert view.version == (1 if expected == 20 else 2)
        assert view.data["total"] == expected


# --- the happy path and the inbox -------------------------------------------------------------

def test_three_step_approval_through_roles_and_mapped_lane(store):
    deploy(store, "approval.bpmn")
    runtime = Runtime(store)
    view = runtime.start("approval", "rep.wang", {"amount": 50, "customer": "C-A01"}, at=T0)
    task = only_task(view)
    assert (task.element_id, task.role, task.assignee) == ("submit", "sales_rep", None)
    assert [t.id for t in inbox_of(store, "rep.feng")] == [task.id]
    assert inbox_of(store, "dm.zhou") == []

    view = runtime.complete(task.id, "rep.wang", {"note": "please"}, at=T0 + timedelta(minutes=1))
    task = only_task(view)
    assert (task.element_id, task.role, task.customer, task.amount) == ("review", "dept_manager", "C-A01", 50)
    view = runtime.complete(task.id, "dm.zhou", {"decision": "approve"}, at=T0 + timedelta(minutes=2))
    task = only_task(view)
    assert (task.element_id, task.role) == ("confirm", "finance")  # lane "Finance desk" mapped by property
    view = runtime.complete(task.id, "fin.chu", {}, at=T0 + timedelta(minutes=3))
    assert view.status == "completed" and view.tasks == []
    assert view.data["total"] == 100 and view.data["note"] == "please"
    with store.read() as s:
        assert s.scalar(select(func.count()).select_from(HumanTask)) == 0
        entries = s.scalars(select(LogEntry).order_by(LogEntry.seq)).all()
    assert [e.command for e in entries] == ["start", "complete", "complete", "complete"]
    assert [e.actor for e in entries] == ["rep.wang", "rep.wang", "dm.zhou", "fin.chu"]
    assert all(b.prev_hash == a.hash for a, b in zip(entries, entries[1:]))


def test_claim_makes_the_task_the_holders_alone(store):
    deploy(store, "approval.bpmn")
    runtime = Runtime(store)
    task = only_task(runtime.start("approval", "rep.wang", {"amount": 1}, at=T0))
    held = runtime.claim(task.id, "rep.feng", at=T0)
    assert held.assignee == "rep.feng"
    assert [t.id for t in inbox_of(store, "rep.wang")] == []
    with pytest.raises(Conflict, match="already held by rep.feng"):
        runtime.claim(task.id, "rep.wang", at=T0)
    with pytest.raises(Forbidden, match="held by rep.feng"):
        runtime.complete(task.id, "rep.wang", {}, at=T0)
    with pytest.raises(Forbidden, match="does not hold"):
        runtime.unclaim(task.id, "rep.wang", at=T0)
    assert runtime.unclaim(task.id, "rep.feng", at=T0).assignee is None
    assert [t.id for t in inbox_of(store, "rep.wang")] == [task.id]


# --- bad input changes nothing ----------------------------------------------------------------

def test_refusals_name_the_problem_and_change_nothing(store):
    deploy(store, "approval.bpmn")
    runtime = Runtime(store)
    view = runtime.start("approval", "rep.wang", {"amount": 1}, at=T0)
    task = only_task(view)
    before = snapshot(store, view.id)

    with pytest.raises(NotFound, match="no deployed process 'nope'"):
        runtime.start("nope", "rep.wang", {}, at=T0)
    with pytest.raises(InvalidInput, match="JSON object"):
        runtime.start("approval", "rep.wang", [1, 2], at=T0)
    with pytest.raises(NotFound, match="no user 'nobody'"):
        runtime.complete(task.id, "nobody", {}, at=T0)
    with pytest.raises(NotFound, match=f"^there is no open task {task.id}$"):  # may not see it: told nothing
        runtime.complete(task.id, "dm.zhou", {}, at=T0)
    with pytest.raises(Forbidden, match="audit.han may not complete .* for role sales_rep"):
        runtime.complete(task.id, "audit.han", {}, at=T0)
    with pytest.raises(Forbidden):
        runtime.complete(task.id, "audit.han", {}, at=T0)
    with pytest.raises(InvalidInput, match="JSON object"):
        runtime.complete(task.id, "rep.wang", "approve", at=T0)
    with pytest.raises(NotFound, match="no open task"):
        runtime.complete("00000000-0000-0000-0000-000000000000", "rep.wang", {}, at=T0)
    assert snapshot(store, view.id) == before
    with store.read() as s:
        assert s.scalar(select(func.count()).select_from(Instance)) == 1

    runtime.complete(task.id, "rep.wang", {}, at=T0)
    with pytest.raises(Conflict, match="already done .*rep.wang"):
        runtime.complete(task.id, "rep.wang", {}, at=T0)


def test_a_task_that_is_not_ready_is_refused_by_the_command_itself(store):
    """The projection is not trusted alone: the command checks the task's state in the workflow."""
    deploy(store, "approval.bpmn")
    runtime = Runtime(store)
    view = runtime.start("approval", "rep.wang", {"amount": 1}, at=T0)
    from engine.runtime import _apply_complete, loaded_definition
    from engine import state
    with store.read() as s:
        row = s.get(Instance, view.id)
        loaded = loaded_definition(s, row.definition_id)
    workflow, _ = state.load_state(row.state, loaded.spec, loaded.subprocess_specs)
    future = next(t for t in workflow.get_tasks() if t.task_spec.name == "review")
    with pytest.raises(Conflict, match="not waiting for input"):
        _apply_complete(workflow, {"task_id": str(future.id), "data": {}}, "dm.zhou")


# --- the race ---------------------------------------------------------------------------------

def test_two_approvers_completing_one_task_at_once_one_wins(store):
    deploy(store, "approval.bpmn")
    runtime = Runtime(store)
    task = only_task(runtime.start("approval", "rep.wang", {"amount": 1}, at=T0))
    barrier = threading.Barrier(2)
    outcomes: list = []

    def approve(user):
        barrier.wait()
        try:
            outcomes.append(("ok", runtime.complete(task.id, user, {"by": user}, at=T0)))
        except Exception as exc:  # noqa: BLE001 - the test inspects what came back
            outcomes.append(("error", exc))

    threads = [threading.Thread(target=approve, args=(u,)) for u in ("rep.wang", "rep.feng")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    kinds = sorted(kind for kind, _ in outcomes)
    assert kinds == ["error", "ok"], outcomes
    error = next(value for kind, value in outcomes if kind == "error")
    with store.read() as s:
        completes = s.scalars(select(LogEntry).where(LogEntry.command == "complete")).all()
    assert len(completes) == 1
    if completes[0].actor == "rep.feng":  # the loser started the instance: told who won
        assert isinstance(error, Conflict) and "already done" in str(error)
    else:  # rep.feng may no longer see rep.wang's instance: told nothing of it
        assert isinstance(error, NotFound) and "there is no open task" in str(error)


# --- a failing script rolls everything back ---------------------------------------------------

def test_failing_script_rolls_back_and_records_an_incident(store):
    deploy(store, "failing.bpmn")
    runtime = Runtime(store)
    view = runtime.start("failing", "rep.wang", {}, at=T0)
    task = only_task(view)
    before = snapshot(store, view.id)
    with pytest.raises(CommandFailed) as failure:
        runtime.complete(task.id, "rep.wang", {"amount": 0}, at=T0)
    message = str(failure.value)
    assert "'share'" in message and "ZeroDivisionError" in message and "nothing was changed" in message
    assert snapshot(store, view.id) == before
    with store.read() as s:
        incident = s.scalars(select(Incident)).one()
    assert (incident.instance_id, incident.element_id, incident.status) == (view.id, "share", "open")
    assert runtime.instance(view.id).incidents[0]["id"] == incident.id
    # The person fixes the input and submits again: the task is still there and works.
    view = runtime.complete(task.id, "rep.wang", {"amount": 4}, at=T0)
    assert view.data["share"] == 25 and only_task(view).element_id == "check"


def test_retry_runs_the_failed_command_again_and_replay_uses_recorded_service_results(store):
    deploy(store, "credit.bpmn")
    bank = {"up": False, "calls": 0}

    def credit_level(customer):
        bank["calls"] += 1
        if not bank["up"]:
            raise ConnectionError("credit bureau unreachable")
        return {"customer": customer, "level": "A"}

    runtime = Runtime(store, {"credit_level": credit_level})
    view = runtime.start("credit", "ssg.shen", {}, at=T0)
    task = only_task(view)
    before = snapshot(store, view.id)
    with pytest.raises(CommandFailed, match="credit bureau unreachable") as failure:
        runtime.complete(task.id, "ssg.shen", {"customer": "C-A01"}, at=T0)
    assert snapshot(store, view.id) == before
    incident_id = failure.value.incident_id

    with pytest.raises(CommandFailed):  # still down: the same incident stays open, no new one
        runtime.retry(incident_id, "gm.zhao", at=T0)
    with store.read() as s:
        assert [(i.id, i.status) for i in s.scalars(select(Incident))] == [(incident_id, "open")]

    bank["up"] = True
    view = runtime.retry(incident_id, "gm.zhao", at=T0 + timedelta(minutes=5))
    assert view.data["credit"] == {"customer": "C-A01", "level": "A"}
    assert only_task(view).element_id == "review"
    with store.read() as s:
        assert s.get(Incident, incident_id).status == "resolved"
        entry = s.scalars(select(LogEntry).where(LogEntry.seq == 2)).one()
        assert (entry.actor, entry.command) == ("ssg.shen", "complete")
        assert entry.input["service_results"] == [
            {"service": "credit_level", "result": {"customer": "C-A01", "level": "A"}}]
        # Replay plays the recorded result back: the bureau is not called again.
        bank["up"], calls = False, bank["calls"]
        steps = audit.replay(s, view.id, runtime.script_engine)
    assert all(step.ok for step in steps) and bank["calls"] == calls


# --- timers and messages ----------------------------------------------------------------------

def test_timer_fires_only_when_due_then_message_is_delivered(store):
    deploy(store, "waiting.bpmn")
    runtime = Runtime(store)
    view = runtime.start("waiting", "fin.chu", {"order_no": "SO-1"}, at=T0)
    with store.read() as s:
        timer = s.scalars(select(DueTimer)).one()
    assert timer.due_at == T0 + timedelta(hours=4)

    assert timers.run_once(runtime, T0 + timedelta(hours=3)).fired == []
    assert snapshot(store, view.id)["log"] == 1
    with pytest.raises(NotFound, match="no instance is waiting for message 'payment_received'"):
        runtime.message("payment_received", {"amount": 5}, {"order_no": "SO-1"}, at=T0)

    assert timers.run_once(runtime, T0 + timedelta(hours=5)).fired == [view.id]
    with store.read() as s:
        assert s.scalar(select(func.count()).select_from(DueTimer)) == 0
        assert s.scalars(select(MessageWait.message)).all() == ["payment_received"]

    before = snapshot(store, view.id)
    with pytest.raises(NotFound, match="order_no=SO-404"):
        runtime.message("payment_received", {"amount": 5}, {"order_no": "SO-404"}, at=T0)
    assert snapshot(store, view.id) == before

    delivered = runtime.message("payment_received", {"amount": 5}, {"order_no": "SO-1"},
                                at=T0 + timedelta(hours=6))
    assert delivered == [view.id]
    view = runtime.instance(view.id)
    assert only_task(view).element_id == "reconcile"
    assert view.data["payment"] == {"amount": 5}


# --- determinism ------------------------------------------------------------------------------

def test_replaying_the_logged_inputs_gives_the_same_state_hash_at_every_step(store):
    deploy(store, "approval.bpmn", "waiting.bpmn")
    runtime = Runtime(store)
    a = runtime.start("approval", "rep.wang", {"amount": 7}, at=T0)
    a = runtime.claim(only_task(a).id, "rep.wang", at=T0 + timedelta(seconds=5))
    view = runtime.complete(a.id, "rep.wang", {"lines": [{"q": 1}]}, at=T0 + timedelta(minutes=1))
    view = runtime.complete(only_task(view).id, "dm.zhou", {"decision": "approve"}, at=T0 + timedelta(minutes=9))
    w = runtime.start("waiting", "fin.chu", {"order_no": "SO-9"}, at=T0)
    timers.run_once(runtime, T0 + timedelta(hours=4, seconds=1))
    runtime.message("payment_received", {"amount": 1.5}, {"order_no": "SO-9"}, at=T0 + timedelta(hours=5))

    with store.read() as s:
        # the approval also got a reminder (its task is due at 4 h), fired by the same worker pass
        for instance_id, length in ((view.id, 5), (w.id, 3)):
            steps = audit.replay(s, instance_id, runtime.script_engine)
            assert len(steps) == length
            assert all(step.ok for step in steps), steps
            assert steps[-1].replayed_hash == s.get(Instance, instance_id).state_hash


def test_replay_detects_a_tampered_input(store):
    deploy(store, "approval.bpmn")
    runtime = Runtime(store)
    view = runtime.start("approval", "rep.wang", {"amount": 7}, at=T0)
    runtime.complete(only_task(view).id, "rep.wang", {"x": 1}, at=T0)
    with store.write() as s:
        entry = s.scalars(select(LogEntry).where(LogEntry.seq == 2)).one()
        entry.input = {**entry.input, "data": {"x": 2}}
    with store.read() as s:
        steps = audit.replay(s, view.id, runtime.script_engine)
    assert steps[0].ok and not steps[1].ok
    assert steps[1].recorded_hash != steps[1].replayed_hash and not steps[1].chain_ok


def test_task_ids_come_from_the_instance_not_from_chance(store):
    deploy(store, "approval.bpmn")
    runtime = Runtime(store)
    view = runtime.start("approval", "rep.wang", {"amount": 7}, at=T0)
    with store.read() as s:
        state = json.loads(s.get(Instance, view.id).state)
    import uuid
    from engine.determinism import _NAMESPACE
    expected = {str(uuid.uuid5(_NAMESPACE, f"{view.id}/{n}")) for n in range(1, state["counter"] + 1)}
    assert set(state["workflow"]["tasks"]) <= expected
    assert "spec" not in state["workflow"] and "subprocess_specs" not in state["workflow"]


# --- the sandbox, through the engine ----------------------------------------------------------

ESCAPE_BPMN = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="esc_defs" targetNamespace="http://bpm.example/test">
  <bpmn:process id="escape" isExecutable="true">
    <bpmn:laneSet id="lanes"><bpmn:lane id="lane" name="sales_rep">
      <bpmn:flowNodeRef>start</bpmn:flowNodeRef><bpmn:flowNodeRef>enter</bpmn:flowNodeRef>
      <bpmn:flowNodeRef>probe</bpmn:flowNodeRef><bpmn:flowNodeRef>end</bpmn:flowNodeRef>
    </bpmn:lane></bpmn:laneSet>
    <bpmn:startEvent id="start" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="enter" />
    <bpmn:userTask id="enter" />
    <bpmn:sequenceFlow id="f2" sourceRef="enter" targetRef="probe" />
    <bpmn:scriptTask id="probe"><bpmn:script>SCRIPT</bpmn:script></bpmn:scriptTask>
    <bpmn:sequenceFlow id="f3" sourceRef="probe" targetRef="end" />
    <bpmn:endEvent id="end" />
  </bpmn:process>
</bpmn:definitions>
"""


@pytest.mark.parametrize("script, named", [
    ("x = ().__class__.__base__.__subclasses__()", "__class__"),
    ("x = __import__('os').getcwd()", "__import__"),
    ("x = open('/etc/passwd').read()", "open"),
    ("x = getattr(1, '__class__')", "__class__"),
    ("x = '{0.__class__}'.format(1)", "format"),
])
def test_escapes_seen_statically_are_deploy_errors(store, tmp_path, script, named):
    from engine.definitions import DefinitionError
    path = tmp_path / "escape.bpmn"
    path.write_text(ESCAPE_BPMN.replace("SCRIPT", script.replace("'", "&apos;")))
    with pytest.raises(DefinitionError) as refused:
        versions.deploy(store, [path])
    problem = refused.value.problems[0]
    assert problem.element_id == "probe" and named in problem.message and problem.line == 12


@pytest.mark.parametrize("script, named", [
    ("x = getattr(1, '_' + '_class__')", "__class__"),
    ("x = getattr('{0.' + '_' * 2 + 'class__}', 'for' + 'mat')(1)", "format"),
    ("x = getattr((y for y in [1]), 'gi_' + 'frame')", "gi_frame"),
])
def test_escapes_built_at_run_time_fail_cleanly_and_change_nothing(store, tmp_path, script, named):
    path = tmp_path / "escape.bpmn"
    path.write_text(ESCAPE_BPMN.replace("SCRIPT", script.replace("'", "&apos;")))
    versions.deploy(store, [path])
    runtime = Runtime(store)
    view = runtime.start("escape", "rep.wang", {}, at=T0)
    before = snapshot(store, view.id)
    with pytest.raises(CommandFailed) as failure:
        runtime.complete(only_task(view).id, "rep.wang", {}, at=T0)
    assert named in str(failure.value) and "'probe'" in str(failure.value)
    assert snapshot(store, view.id) == before


def test_a_failing_timer_becomes_one_incident_retried_with_back_off_then_parked(store, monkeypatch):
    monkeypatch.delenv("BPM_TIMER_RETRIES", raising=False)
    monkeypatch.delenv("BPM_TIMER_RETRY_SECONDS", raising=False)
    deploy(store, "late_failing.bpmn")
    runtime = Runtime(store)
    view = runtime.start("late_failing", "rep.wang", {"amount": 0}, at=T0)
    before = snapshot(store, view.id)
    at = T0 + timedelta(hours=2)
    first = timers.run_once(runtime, at)
    assert first.fired == [] and "ZeroDivisionError" in first.failed[view.id]
    assert snapshot(store, view.id) == before  # rolled back: the timer is still waiting
    # Retried by the worker after 1, 4 and 16 minutes (each counted from the last failure), and
    # not before; then parked until a person retries.
    for delay in (60, 240, 960):
        assert timers.run_once(runtime, at + timedelta(seconds=delay - 1)).failed == {}
        at += timedelta(seconds=delay)
        again = timers.run_once(runtime, at)
        assert again.fired == [] and "ZeroDivisionError" in again.failed[view.id]
    assert timers.run_once(runtime, at + timedelta(days=30)).failed == {}
    assert snapshot(store, view.id) == before
    with store.read() as s:
        incident = s.scalars(select(Incident)).one()
    assert (incident.command, incident.element_id, incident.instance_id) == ("timer", "share", view.id)
    assert incident.status == "open" and incident.input["attempts"] == 4
    assert incident.message.endswith("tried 4 times; a person must retry it")
