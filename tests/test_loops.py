"""A loop without a wait state: stopped by the per-command engine step budget and the task-tree
depth guard, rolled back and recorded as an incident; loops that wait for a person keep working."""
from __future__ import annotations

import signal
from contextlib import contextmanager
from datetime import timedelta

import pytest

from engine import audit
from engine.runtime import CommandFailed, Runtime
from engine.store import Incident, Instance

from .conftest import snapshot
from .test_runtime import T0, deploy


class Hung(BaseException):
    """Not an Exception: nothing in the engine may catch it and call the hang an incident."""


@contextmanager
def at_most(seconds: int):
    """Fail, instead of hanging the suite, when the command runs for ever (the bug guarded here)."""
    def stop(*_):
        raise Hung(f"the command still ran after {seconds} s")
    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def spin(limit: int, *, wide: bool = False, wait: bool = False, straight: bool = False) -> dict:
    return {"limit": limit, "laps": 0, "wide": wide, "wait": wait, "straight": straight}


def incidents(store) -> list[Incident]:
    with store.read() as s:
        return s.query(Incident).order_by(Incident.id).all()


def test_a_bounded_loop_runs_to_its_end(store):
    deploy(store, "spin.bpmn")
    runtime = Runtime(store)
    for straight in (True, False):
        view = runtime.start("spin", "rep.wang", spin(20, straight=straight), at=T0)
        assert (view.status, view.data["laps"]) == ("completed", 20)


def test_a_start_that_loops_for_ever_becomes_an_incident_not_a_hang(sqlite_store):
    store = sqlite_store  # the default budget takes a while (each step walks a growing tree): once
    deploy(store, "spin.bpmn")
    runtime = Runtime(store)
    with at_most(60), pytest.raises(CommandFailed) as failed:
        runtime.start("spin", "rep.wang", spin(0, wide=True), at=T0)
    assert "ran more than 1,000 engine steps in one command: a loop without a wait state?" in str(failed.value)
    [incident] = incidents(store)
    assert (incident.command, incident.status, incident.process_id) == ("start", "open", "spin")
    assert incident.element_id in {"merge", "count", "again", "fork", "second", "drop"}
    with store.read() as s:
        assert s.query(Instance).count() == 0  # rolled back


def test_a_straight_endless_loop_does_not_look_finished(store, monkeypatch):
    # SpiffWorkflow 3.2 stops seeing tasks 1,000 deep: the loop stalled there and the instance
    # was recorded as completed, half way round its loop.
    deploy(store, "spin.bpmn")
    runtime = Runtime(store)
    monkeypatch.setenv("BPM_MAX_ENGINE_STEPS", "100000")  # the depth, not the budget, stops it
    with at_most(60), pytest.raises(CommandFailed) as failed:
        runtime.start("spin", "rep.wang", spin(0, straight=True), at=T0)
    assert "went 800 tasks deep, near the 1,000 SpiffWorkflow can follow: a loop without a wait state?" \
        in str(failed.value)
    with store.read() as s:
        assert s.query(Instance).count() == 0


def test_the_budget_is_a_setting_and_names_the_element(store, monkeypatch):
    deploy(store, "spin.bpmn")
    runtime = Runtime(store)
    monkeypatch.setenv("BPM_MAX_ENGINE_STEPS", "50")
    assert runtime.start("spin", "rep.wang", spin(5, straight=True), at=T0).status == "completed"
    with pytest.raises(CommandFailed) as failed:
        runtime.start("spin", "rep.wang", spin(30, straight=True), at=T0)
    assert "ran more than 50 engine steps in one command: a loop without a wait state?" in str(failed.value)
    [incident] = incidents(store)
    assert incident.element_id in str(failed.value)
    monkeypatch.setenv("BPM_MAX_ENGINE_STEPS", "many")
    with pytest.raises(ValueError, match="BPM_MAX_ENGINE_STEPS"):
        runtime.start("spin", "rep.wang", spin(5), at=T0)


def test_a_timer_that_loops_for_ever_is_parked_and_retried_like_other_failing_timers(store, monkeypatch):
    deploy(store, "spin.bpmn")
    runtime = Runtime(store)
    monkeypatch.setenv("BPM_MAX_ENGINE_STEPS", "200")
    view = runtime.start("spin", "rep.wang", spin(0, wait=True, straight=True), at=T0)
    assert view.status == "running"
    before = snapshot(store, view.id)
    with pytest.raises(CommandFailed, match="ran more than 200 engine steps"):
        runtime.fire_timer(view.id, T0 + timedelta(hours=2))
    assert snapshot(store, view.id) == before  # rolled back: still waiting at its timer
    [incident] = incidents(store)
    assert (incident.command, incident.input.get("attempts")) == ("timer", 1)
    later = T0 + timedelta(hours=3)
    assert [(i, "ran more than 200 engine steps" in (why or "")) for i, why in runtime.retry_due_timers(later)] \
        == [(view.id, True)]
    [incident] = incidents(store)
    assert incident.input["attempts"] == 2


def test_replay_and_verify_are_not_budgeted(store, monkeypatch):
    deploy(store, "spin.bpmn")
    runtime = Runtime(store)
    view = runtime.start("spin", "rep.wang", spin(30), at=T0)
    monkeypatch.setenv("BPM_MAX_ENGINE_STEPS", "10")  # lowered later: the record stays whole
    with store.read() as s:
        assert audit.verify(s, view.id, runtime.script_engine).ok
