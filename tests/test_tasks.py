"""Human-task rules through the engine: forms, holders, the 4-hour rule, drafts, four-eyes, workers."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from engine import access, audit, inbox, timers, versions
from engine.runtime import Forbidden, InvalidInput, NotFound, Runtime
from engine.store import DueTimer, Incident, Instance, LogEntry, SlaBreach, TaskDraft

from .conftest import DATA, snapshot
from .test_runtime import only_task

RUNTIME = DATA / "runtime"
T0 = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)  # 09:00 in Guangzhou
CUSTOMERS = {"C-A01", "C-B01", "C-C01"}
GOOD = {"customer": "C-A01", "amount": 120000, "delivery_date": "2026-12-20"}


@pytest.fixture
def runtime(store):
    versions.deploy(store, [RUNTIME / "review.bpmn"], at=T0)
    return Runtime(store, lookups={"customer": lambda v: v in CUSTOMERS})


def test_start_data_is_checked_against_the_start_form_field_by_field(runtime, store):
    with pytest.raises(InvalidInput) as refused:
        runtime.start("review", "rep.wang", {"customer": "C-X99", "amount": -5,
                                             "delivery_date": "2026-11-01"}, at=T0)
    assert refused.value.fields == {
        "amount": "must be greater than 0",
        "customer": "'C-X99' is not a known customer",
        "delivery_date": "2026-11-01 is in the past; the earliest allowed date is 2026-11-23",
    }
    with store.read() as s:
        assert s.scalar(select(func.count()).select_from(Instance)) == 0
    view = runtime.start("review", "rep.wang", GOOD, at=T0)
    assert view.data["initiator"] == "rep.wang" and view.data["customer"] == "C-A01"


def test_a_submission_that_breaks_the_form_changes_nothing(runtime, store):
    view = runtime.start("review", "rep.wang", GOOD, at=T0)
    task = only_task(view)
    before = snapshot(store, view.id)
    with pytest.raises(InvalidInput) as refused:
        runtime.complete(task.id, "dm.zhou", {"decision": "reject"}, at=T0)
    assert refused.value.fields == {"comment": "this field is required"}
    with pytest.raises(InvalidInput) as refused:
        runtime.complete(task.id, "dm.zhou", {"decision": "maybe"}, at=T0)
    assert refused.value.fields == {"decision": "must be one of approve, reject"}
    assert snapshot(store, view.id) == before


def test_rework_goes_back_to_the_initiator_alone_with_the_data_kept(runtime, store):
    view = runtime.start("review", "rep.wang", GOOD, at=T0)
    view = runtime.complete(only_task(view).id, "dm.zhou", {"decision": "reject", "comment": "price"}, at=T0)
    revise = only_task(view)
    assert (revise.element_id, revise.assignee) == ("revise", "rep.wang")
    with pytest.raises(NotFound):  # rep.feng may not even see the instance: told nothing of it
        runtime.complete(revise.id, "rep.feng", GOOD, at=T0)
    with pytest.raises(Forbidden):  # dm.zhou acted on it, so he is told why
        runtime.complete(revise.id, "dm.zhou", GOOD, at=T0)
    assert view.data["amount"] == 120000  # what was entered is still there
    view = runtime.complete(revise.id, "rep.wang", {**GOOD, "amount": 110000}, at=T0)
    again = only_task(view)
    assert again.element_id == "dm_review" and view.data["amount"] == 110000


def test_four_eyes_the_submitter_may_not_approve_even_with_the_role(runtime, store):
    with store.write() as s:
        access.add_user(s, "rep.li", "pw", ["sales_rep", "dept_manager"], superior="om.wu")
    view = runtime.start("review", "rep.li", GOOD, at=T0)
    task = only_task(view)
    assert task.assignee == "dm.zhou"  # the submitter's own approval went at once to the other holder
    with pytest.raises(Forbidden, match="held by dm.zhou"):
        runtime.complete(task.id, "rep.li", {"decision": "approve"}, at=T0)
    runtime.complete(task.id, "dm.zhou", {"decision": "approve"}, at=T0)


def test_the_four_hour_rule_reminds_then_escalates_to_the_superior_keeping_the_draft(runtime, store):
    view = runtime.start("review", "rep.wang", GOOD, at=T0)
    task = only_task(view)
    assert task.due == T0 + timedelta(hours=4)
    runtime.save_draft(task.id, "dm.zhou", {"comment": "half written"}, at=T0 + timedelta(hours=1))

    assert timers.run_once(runtime, T0 + timedelta(hours=2)).fired == []
    assert timers.run_once(runtime, T0 + timedelta(hours=3, minutes=5)).fired == [view.id]  # reminder
    with store.read() as s:
        kinds = sorted(s.scalars(select(DueTimer.kind)))
        assert kinds == ["escalation"]
        assert s.scalar(select(func.count()).select_from(SlaBreach)) == 0

    fired = timers.run_once(runtime, T0 + timedelta(hours=5))
    assert fired.fired == [view.id]
    task = only_task(runtime.instance(view.id))
    assert task.assignee == "vp.qian" and task.due == T0 + timedelta(hours=9)
    with store.read() as s:
        breach = s.scalars(select(SlaBreach)).one()
        assert [t.id for t in inbox.tasks_for(s, access.person(s, "vp.qian"))] == [task.id]
        assert inbox.tasks_for(s, access.person(s, "dm.zhou")) == []
    assert (breach.holder, breach.escalated_to, breach.due_at) == ("dm.zhou", "vp.qian", T0 + timedelta(hours=4))
    assert runtime.draft(task.id, "vp.qian") == {"comment": "half written"}
    with pytest.raises(NotFound):  # no longer his, nor an instance he acted on: told nothing
        runtime.complete(task.id, "dm.zhou", {"decision": "approve"}, at=T0 + timedelta(hours=5))

    # The superior may hand it back: the holder gets it again with a fresh four hours.
    back = runtime.hand_back(task.id, "vp.qian", at=T0 + timedelta(hours=6))
    assert (back.assignee, back.due) == ("dm.zhou", T0 + timedelta(hours=10))
    with pytest.raises(Forbidden):
        runtime.hand_back(task.id, "vp.qian", at=T0 + timedelta(hours=6))
    view = runtime.complete(task.id, "dm.zhou", {"decision": "approve"}, at=T0 + timedelta(hours=7))
    assert view.status == "completed"
    with store.read() as s:
        assert s.get(TaskDraft, task.id) is None
    with store.read() as s:
        assert all(step.ok for step in audit.replay(s, view.id, runtime.script_engine))


def test_an_unanswered_escalation_climbs_again(runtime, store):
    view = runtime.start("review", "rep.wang", GOOD, at=T0)
    timers.run_once(runtime, T0 + timedelta(hours=5))
    timers.run_once(runtime, T0 + timedelta(hours=10))
    assert only_task(runtime.instance(view.id)).assignee == "gm.zhao"
    with store.read() as s:
        assert [b.escalated_to for b in s.scalars(select(SlaBreach).order_by(SlaBreach.id))] == ["vp.qian", "gm.zhao"]


def test_two_workers_fire_each_of_many_due_timers_exactly_once(store):
    versions.deploy(store, [RUNTIME / "waiting.bpmn"], at=T0)
    runtime = Runtime(store)
    count = 1000 if not store.is_sqlite else 200
    ids = {runtime.start("waiting", "fin.chu", {"order_no": f"SO-{n}"}, at=T0).id for n in range(count)}
    later = T0 + timedelta(hours=5)
    passes: list[timers.Pass] = []
    barrier = threading.Barrier(2)

    def work():
        barrier.wait()
        passes.append(timers.run_once(Runtime(store), later))

    workers = [threading.Thread(target=work) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(300)
    fired = [i for p in passes for i in p.fired]
    assert sorted(fired) == sorted(ids) and not any(p.failed for p in passes)
    with store.read() as s:
        timer_entries = s.execute(select(LogEntry.instance_id, func.count()).where(LogEntry.command == "timer")
                                  .group_by(LogEntry.instance_id)).all()
        assert len(timer_entries) == count and all(n == 1 for _, n in timer_entries)
        assert s.scalar(select(func.count()).select_from(DueTimer)) == 0
    if not store.is_sqlite:
        assert all(p.fired for p in passes)  # both workers took a share


def test_an_unexpected_error_on_one_instance_does_not_stall_the_worker(store, monkeypatch):
    import engine.runtime as rt
    versions.deploy(store, [RUNTIME / "waiting.bpmn"], at=T0)
    runtime = Runtime(store)
    bad = runtime.start("waiting", "fin.chu", {"order_no": "SO-BAD"}, at=T0).id
    good = runtime.start("waiting", "fin.chu", {"order_no": "SO-OK"}, at=T0 + timedelta(minutes=1)).id
    real = rt.project

    def broken(conn, instance_id, *args, **kwargs):
        if instance_id == bad:
            raise RuntimeError("disk said no")
        return real(conn, instance_id, *args, **kwargs)

    monkeypatch.setattr(rt, "project", broken)
    first = timers.run_once(runtime, T0 + timedelta(hours=5))
    assert first.fired == [good] and "disk said no" in first.failed[bad]
    # Parked as an incident: not picked as due work again, only retried (with back-off, counted).
    second = timers.run_once(runtime, T0 + timedelta(hours=6))
    assert second.fired == [] and list(second.failed) == [bad] and "disk said no" in second.failed[bad]
    with store.read() as s:
        incident = s.scalars(select(Incident)).one()
    assert (incident.instance_id, incident.status, incident.input["attempts"]) == (bad, "open", 2)
