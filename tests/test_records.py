"""Business records (engine.records): one instance publishes a fact, others read it; a key belongs
to the instance that first published it; reads are logged so a replay does not read today's table."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from engine import audit, records, versions
from engine.runtime import CommandFailed, Conflict, Runtime
from engine.store import BusinessRecord

from .conftest import DATA, snapshot

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def ledger(store):
    versions.deploy(store, [DATA / "runtime" / "ledger.bpmn"], actor="design.yang", at=T0)
    return Runtime(store)


def note(runtime, key, quantity, *, ref="SO-1", kind="note", customer="C-A01", at=T0):
    view = runtime.start("ledger", "ssg.shen", {}, at=at)
    (task,) = view.tasks
    return runtime.complete(task.id, "ssg.shen", {"kind": kind, "key": key, "ref": ref, "customer": customer,
                                                  "quantity": quantity}, at=at)


def rows(store):
    with store.read() as s:
        return [(r.kind, r.key, r.ref, r.customer, r.data, r.revision)
                for r in s.scalars(select(BusinessRecord).order_by(BusinessRecord.key))]


def test_a_published_record_is_read_by_another_instance_and_republished_by_its_owner(store, ledger):
    first = note(ledger, "RR-1", 3)
    assert [r["key"] for r in first.data["siblings"]] == ["RR-1"]
    second = note(ledger, "RR-2", 4, at=T0 + timedelta(minutes=1))
    assert [(r["key"], r["data"]["quantity"], r["instance_id"]) for r in second.data["siblings"]] == [
        ("RR-1", 3, first.id), ("RR-2", 4, second.id)]
    # The owner publishes again (a second lap): the record is replaced, its revision counts.
    (task,) = first.tasks
    again = ledger.complete(task.id, "ssg.shen", {"more": True}, at=T0 + timedelta(minutes=2))
    (task,) = again.tasks
    ledger.complete(task.id, "ssg.shen", {"kind": "note", "key": "RR-1", "ref": "SO-1", "customer": "C-A01",
                                          "quantity": 5}, at=T0 + timedelta(minutes=3))
    assert rows(store) == [("note", "RR-1", "SO-1", "C-A01", {"customer": "C-A01", "quantity": 5}, 2),
                           ("note", "RR-2", "SO-1", "C-A01", {"customer": "C-A01", "quantity": 4}, 1)]
    with store.read() as s:
        assert [r["key"] for r in records.listed(s.connection(), "note", ref="SO-1")] == ["RR-1", "RR-2"]
        # The replay plays back what the second instance read then, not what the table says now.
        assert audit.verify(s, second.id, ledger.script_engine).ok


def test_another_instance_cannot_take_over_a_key_and_nothing_changes(store, ledger):
    note(ledger, "RR-1", 3)
    view = ledger.start("ledger", "ssg.shen", {}, at=T0)
    before, table = snapshot(store, view.id), rows(store)
    (task,) = view.tasks
    with pytest.raises(Conflict, match="already kept by another instance"):
        ledger.complete(task.id, "ssg.shen", {"kind": "note", "key": "RR-1", "ref": "SO-9", "customer": "C-B01",
                                              "quantity": 99}, at=T0)
    assert snapshot(store, view.id) == before and rows(store) == table


@pytest.mark.parametrize("kind,key,problem", [
    ("Order!", "RR-1", "short lower-case name"),
    ("note", "", "1 to 200 characters"),
])
def test_a_malformed_record_is_refused_and_nothing_is_written(store, ledger, kind, key, problem):
    view = ledger.start("ledger", "ssg.shen", {}, at=T0)
    before = snapshot(store, view.id)
    (task,) = view.tasks
    with pytest.raises(CommandFailed, match=problem):
        ledger.complete(task.id, "ssg.shen", {"kind": kind, "key": key, "ref": "SO-1", "customer": "C-A01",
                                              "quantity": 1}, at=T0)
    assert snapshot(store, view.id) == before and rows(store) == []


def test_services_refuse_outside_a_command():
    with pytest.raises(RuntimeError, match="only as a step"):
        records.publish_record("note", "RR-1", {})
    with pytest.raises(RuntimeError, match="only as a step"):
        records.find("note", "RR-1")


def test_a_timer_step_refused_for_a_taken_key_parks_its_instance_and_the_worker_goes_on(store):
    """A refusal raised by a step the worker runs (here: a key another instance owns) has nobody to
    tell: it becomes an incident of that instance, and the pass goes on to the others."""
    from engine import timers
    from engine.store import Incident
    versions.deploy(store, [DATA / "runtime" / "ledger_timer.bpmn"], actor="design.yang", at=T0)
    runtime = Runtime(store)
    first = runtime.start("ledger_timer", "ssg.shen", {"key": "K-1"}, at=T0)
    taken = runtime.start("ledger_timer", "ssg.shen", {"key": "K-1"}, at=T0 + timedelta(minutes=1))
    other = runtime.start("ledger_timer", "ssg.shen", {"key": "K-2"}, at=T0 + timedelta(minutes=2))
    done = timers.run_once(runtime, T0 + timedelta(hours=2))
    assert sorted(done.fired) == sorted([first.id, other.id]) and list(done.failed) == [taken.id]
    assert "already kept by another instance" in done.failed[taken.id]
    with store.read() as s:
        assert [(i.instance_id, i.status) for i in s.scalars(select(Incident))] == [(taken.id, "open")]
    assert [t.element_id for t in runtime.instance(first.id).tasks] == ["check"]
    assert [t.element_id for t in runtime.instance(other.id).tasks] == ["check"]
    assert runtime.instance(taken.id).tasks == []  # still waiting on its timer, parked
    # The next pass does not stall on it either.
    assert timers.run_once(runtime, T0 + timedelta(hours=2, seconds=1)).failed == {}
