"""Rules of human tasks that live in the instance state: who holds a task, when it is due and
reminded, escalation to the holder's superior and hand-back, and the four-eyes check.

Everything here runs inside a command (see `engine.determinism`): "now" is the command's logged
time, so replaying the log stamps the same due times and the same holders.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState

from . import clock, determinism

DEFAULT_DUE = "PT4H"  # 4小时复命: reply to the superior within four hours
DEFAULT_REMIND_BEFORE = "PT1H"


def properties(task_spec) -> dict:
    extensions = getattr(task_spec, "extensions", None) or {}
    return extensions.get("properties") or {}


def duration(text: str, start: datetime) -> timedelta:
    return TimerEventDefinition.get_timedelta_from_start(TimerEventDefinition.parse_iso_duration(text), start)


def _iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat()


def parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def stamp_new_tasks(workflow: BpmnWorkflow, script_engine) -> None:
    """Give each newly READY user task its holder (`assignee` expression) and due/reminder times."""
    now = clock.now()
    for task in workflow.get_tasks(state=TaskState.READY, manual=True):
        if task._get_internal_data("stamped"):
            continue
        props = properties(task.task_spec)
        stamp: dict = {"stamped": True}
        expression = props.get("assignee")
        if expression:
            holder = script_engine.evaluate(task, expression)
            if holder:
                stamp["assignee"] = str(holder)
        stamp.update(_deadline(props, now))
        task._set_internal_data(**stamp)
        if stamp.get("assignee"):
            determinism.notify("assigned", stamp["assignee"], task)


def _deadline(props: dict, start: datetime) -> dict:
    due = (props.get("due") or DEFAULT_DUE).strip()
    if due.lower() == "none":
        return {"due_at": None, "remind_at": None}
    due_at = start + duration(due, start)
    remind_at = due_at - duration(props.get("remind_before") or DEFAULT_REMIND_BEFORE, start)
    return {"due_at": _iso(due_at), "remind_at": _iso(remind_at) if remind_at > start else None,
            "reminded": False}


def holder(task) -> str | None:
    return task._get_internal_data("assignee")


def remind(task) -> None:
    task._set_internal_data(reminded=True)
    determinism.notify("reminder", holder(task), task, due_at=task._get_internal_data("due_at"))


def escalate(task, to: str | None, previous: str | None, at: datetime) -> None:
    """Hand the task to `to` (the holder's superior) with a fresh due time; remember who had it.

    With no one above (`to` is None) the holder keeps it, with a fresh due time."""
    props = properties(task.task_spec)
    to = to or previous
    stamp = {"assignee": to, "escalated_from": previous if to != previous else None, "escalations":
             (task._get_internal_data("escalations") or 0) + 1}
    stamp.update(_deadline(props, at))
    task._set_internal_data(**stamp)
    if to and to != previous:
        determinism.notify("escalated", to, task, holder=previous)


def hand_back(task, at: datetime) -> None:
    """The superior returns an escalated task to the one who had it, with a fresh due time."""
    previous = task._get_internal_data("escalated_from")
    stamp = {"assignee": previous, "escalated_from": None}
    stamp.update(_deadline(properties(task.task_spec), at))
    task._set_internal_data(**stamp)
    determinism.notify("returned", previous, task)


def delegate(task, to: str) -> None:
    task._set_internal_data(assignee=to)
    determinism.notify("assigned", to, task)


@dataclass(frozen=True)
class Editors:
    initiator: str | None
    last_editor: str | None


def editors(workflow: BpmnWorkflow, initiator: str | None, approval_tasks: set[str]) -> Editors:
    """Who submitted the request and who last changed it (the latest non-approval task completed)."""
    last = None
    latest = -1.0
    for task in workflow.get_tasks(state=TaskState.COMPLETED, manual=True):
        if task.task_spec.name in approval_tasks:
            continue
        by = task._get_internal_data("completed_by")
        if by and task.last_state_change >= latest:
            latest, last = task.last_state_change, by
    return Editors(initiator, last)
