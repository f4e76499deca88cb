"""The command path (issue 12, items 6 and 7): a command reads and restores its instance before the
write lock and, under it, checks the instance is still at the revision it restored; the projection
is written as a diff of the rows the command started from. What a command leaves in the projection
tables is what a full rewrite from its state would leave, and a command that lands between another's
read and its lock is seen by it."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import event, select

from engine import state
from engine.runtime import Conflict, Runtime, _Duties, _rows, loaded_definition
from engine.store import DueTimer, HumanTask, Instance, LogEntry, MessageKey, MessageWait

from .test_once import rt, to_shipping  # noqa: F401 (the fixture)
from .test_processes import Clock, the_task
from .test_runtime import deploy, only_task, T0


def _stored(store, instance_id: str) -> dict:
    with store.read() as s:
        def rows(model, key):
            table = model.__table__
            return sorted((dict(r._mapping) for r in s.execute(select(table).where(table.c.instance_id == instance_id))),
                          key=lambda r: tuple(str(r[k]) for k in key))
        return {"human": rows(HumanTask, ("id",)), "timers": rows(DueTimer, ("id",)),
                "waits": rows(MessageWait, ("id",)), "keys": rows(MessageKey, ("wait_id", "key"))}


def _rewritten(store, instance_id: str) -> dict:
    """The rows a full rewrite from the instance's stored state gives."""
    with store.read() as s:
        row = s.get(Instance, instance_id)
        loaded = loaded_definition(s, row.definition_id)
        workflow, _ = state.load_state(row.state, loaded.spec, loaded.subprocess_specs)
        found = _rows(instance_id, workflow, loaded, _Duties(s.connection(), loaded, row.initiator))
    return {"human": sorted(found.human.values(), key=lambda r: r["id"]),
            "timers": sorted(found.timers.values(), key=lambda r: r["id"]),
            "waits": sorted(found.waits.values(), key=lambda r: r["id"]),
            "keys": sorted((k for ks in found.keys.values() for k in ks), key=lambda r: (r["wait_id"], r["key"]))}


def test_the_projection_a_command_writes_is_what_a_full_rewrite_gives(rt, store):  # noqa: F811
    clock = Clock()
    view = to_shipping(rt, clock)
    checked = [view.id]
    assert _stored(store, view.id) == _rewritten(store, view.id)
    ship = the_task(view, "ship_goods")
    rt.claim(ship.id, "wh.wei", at=clock())
    assert _stored(store, view.id) == _rewritten(store, view.id)
    rt.unclaim(ship.id, "wh.wei", at=clock())
    assert _stored(store, view.id) == _rewritten(store, view.id)
    # overdue: the worker escalates it (a human_task row changed, its due rows moved)
    later = clock(days=10)
    while (fired := rt.fire_next_due(later)) is not None and fired[1]:
        checked.append(fired[0])
    for instance_id in checked:
        assert _stored(store, instance_id) == _rewritten(store, instance_id)
    view = rt.instance(view.id)
    ship = the_task(view, "ship_goods")
    view = rt.complete(ship.id, ship.assignee, {
        "shipping_list": [{"line": 1, "quantity": 200}], "carrier": "德邦物流", "tracking_no": "DB88230017",
        "shipped_on": "2026-12-09"}, at=clock())
    assert _stored(store, view.id) == _rewritten(store, view.id)
    assert _stored(store, view.id)["waits"] or _stored(store, view.id)["human"]  # something is open


def test_a_claim_updates_its_task_row_and_writes_nothing_else_of_the_projection(rt, store):  # noqa: F811
    clock = Clock()
    view = to_shipping(rt, clock)
    ship = the_task(view, "ship_goods")
    written = []

    def seen(conn, cursor, statement, *args):
        if statement.split()[0] in ("INSERT", "UPDATE", "DELETE"):
            written.append(" ".join(statement.split()[:3]))
    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        rt.claim(ship.id, "wh.wei", at=clock())
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
    assert sorted(written) == ["INSERT INTO log_entry", "UPDATE human_task SET", "UPDATE instance SET"], written


def test_a_command_that_lands_between_anothers_read_and_its_lock_is_seen(store):
    deploy(store, "approval.bpmn")
    runtime = Runtime(store)
    task = only_task(runtime.start("approval", "rep.wang", {"amount": 1}, at=T0))
    real = Runtime._before_lock
    restored = []

    def read_then_someone_else_completes(self, *args, **kwargs):
        early = real(self, *args, **kwargs)
        restored.append(early.row.revision)
        if len(restored) == 1:  # rep.wang has read and restored; rep.feng completes meanwhile
            runtime.complete(task.id, "rep.feng", {"by": "rep.feng"}, at=T0 + timedelta(seconds=1))
        return early

    runtime._before_lock = read_then_someone_else_completes.__get__(runtime)
    try:
        runtime.complete(task.id, "rep.wang", {"by": "rep.wang"}, at=T0 + timedelta(seconds=2))
        raise AssertionError("rep.wang completed a task rep.feng had completed")
    except Conflict as refusal:  # looked again under the lock: not "changed by someone else"
        assert "already done" in str(refusal) and "rep.feng" in str(refusal), refusal
    with store.read() as s:
        completes = s.scalars(select(LogEntry.actor).where(LogEntry.command == "complete")).all()
    assert completes == ["rep.feng"]
