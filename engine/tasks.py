"""Rules of human tasks that live in the instance state: who holds a task, when it is due and
reminded (on the working calendar when one is on, engine.calendar), the reply to the superior
(复命), escalation to the holder's superior and hand-back, the four-eyes check, and the levels of a
request (who approved which, which levels may still come).

Everything here runs inside a command (see `engine.determinism`): "now" is the command's logged
time, so replaying the log stamps the same due times and the same holders.
"""
from __future__ import annotations

import ast
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState

from . import calendar, clock, determinism

DEFAULT_DUE = "PT4H"  # 4小时复命: reply to the superior within four hours
DEFAULT_REMIND_BEFORE = "PT1H"


def properties(task_spec) -> dict:
    extensions = getattr(task_spec, "extensions", None) or {}
    return extensions.get("properties") or {}


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


def _deadline(props: dict, start: datetime, *, by: datetime | None = None) -> dict:
    """The due and reminder times of a task given (or given again) at `start`: its `due` duration
    (default PT4H) on the working calendar, or `by` if that is earlier; the reminder
    `remind_before` (PT1H) ahead of it."""
    due = (props.get("due") or DEFAULT_DUE).strip()
    if due.lower() == "none":
        return {"due_at": None, "remind_at": None}
    due_at = calendar.due_after(start, due)
    if by is not None and by < due_at:
        due_at = by
    remind_at = calendar.due_before(due_at, props.get("remind_before") or DEFAULT_REMIND_BEFORE)
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
        if previous:  # the one it was taken from hears where it went
            determinism.notify("escalated_away", previous, task, to=to)


REPLY_KINDS = ("in_progress", "cannot_finish")


def reply(task, by: str, kind: str, at: datetime, *, expected_by: datetime | None = None,
          reason: str | None = None, to: str | None = None) -> None:
    """The holder's reply to the superior (复命, seed 000 岗位基本原则): in progress and expected by
    a time, or cannot be finished and why. Kept as the task's last reply; the superior `to` hears of
    it. The first reply on a task gives it a fresh due window from `at` — its due duration again,
    or the expected-by time if that is earlier *(choice)*; later replies move nothing, so silence
    after them still escalates. The task's data is not touched."""
    stamp: dict = {"last_reply": {"by": by, "kind": kind, "at": _iso(at),
                                  "expected_by": _iso(expected_by) if expected_by else None,
                                  "reason": reason or None},
                   "replies": (task._get_internal_data("replies") or 0) + 1}
    if not task._get_internal_data("reply_restarted"):
        stamp["reply_restarted"] = True
        stamp.update(_deadline(properties(task.task_spec), at,
                               by=expected_by if kind == "in_progress" else None))
    task._set_internal_data(**stamp)
    if to:
        determinism.notify(f"reply_{kind}", to, task, by=by, reason=reason or "",
                           expected_by=_iso(expected_by) if expected_by else "")


def hand_back(task, at: datetime) -> None:
    """The superior returns an escalated task to the one who had it, with a fresh due time."""
    previous = task._get_internal_data("escalated_from")
    stamp = {"assignee": previous, "escalated_from": None}
    stamp.update(_deadline(properties(task.task_spec), at))
    task._set_internal_data(**stamp)
    determinism.notify("returned", previous, task)


def route(workflow: BpmnWorkflow, routes: dict | None) -> None:
    """Give new tasks the holders the runtime chose for them (separation of duties), as logged."""
    for task_id, to in (routes or {}).items():
        task = workflow.get_task_from_id(uuid.UUID(task_id))
        task._set_internal_data(assignee=to, routed=True)
        determinism.notify("assigned", to, task)


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


# --- levels of a request (separation of duties) -------------------------------------------------
# A round of a request runs from its submission (or the submitter's latest rework) to the next
# one; its approval tasks are its levels. Read from the state, so replay answers the same.

def round_of(task, submitter_lane: str | None):
    """The submitter's task (a rework) that began `task`'s round, or None in the first round."""
    parent = task.parent
    while parent is not None:
        spec = parent.task_spec
        if getattr(spec, "manual", False) and spec.lane == submitter_lane and parent.state == TaskState.COMPLETED:
            return parent.id
        parent = parent.parent
    return None


def levels(workflow: BpmnWorkflow, task, approval_tasks: frozenset[str] | set[str],
           submitter_lane: str | None) -> dict[str, set[str]]:
    """Who approved or holds which level in `task`'s round: username -> approval task names."""
    here = round_of(task, submitter_lane)
    out: dict[str, set[str]] = {}
    for other in workflow.get_tasks(state=TaskState.COMPLETED | TaskState.READY, manual=True):
        if other is task or other.task_spec.name not in approval_tasks:
            continue
        who = other._get_internal_data("completed_by") if other.state == TaskState.COMPLETED else holder(other)
        if who and round_of(other, submitter_lane) == here:
            out.setdefault(who, set()).add(other.task_spec.name)
    return out


_OPAQUE_STEPS = ("ScriptTask", "BusinessRuleTask", "ServiceTask", "CallActivity", "SubWorkflowTask",
                 "SubprocessTask", "TransactionSubprocess")


def _names(expression: str) -> set[str] | None:
    try:
        return {n.id for n in ast.walk(ast.parse(expression, mode="eval")) if isinstance(n, ast.Name)}
    except SyntaxError:
        return None


def later_levels(task, approval_tasks: frozenset[str] | set[str], submitter_lane: str | None,
                 writes: Callable[[object], set[str] | None], evaluate: Callable[[str], object]) -> set[str]:
    """The approval levels `task`'s request may still reach in this round after `task`.

    Walks the diagram from the task. A gateway condition on data that a user task on the way
    may write (`writes(spec)`: its form's writable fields, None: anything), or that follows a
    script, rule or service step, may go either way; any other is evaluated on the data as it
    is now (`evaluate`; an error counts as either way). The walk stops at the submitter's lane,
    where a new round would begin."""
    found: set[str] = set()
    start = writes(task.task_spec)
    stack = [(spec, frozenset(start) if start is not None else None) for spec in task.task_spec.outputs]
    seen: set[tuple[str, bool]] = set()
    while stack:
        spec, unknown = stack.pop()
        key = (spec.name, unknown is None)
        if key in seen:
            continue
        seen.add(key)
        manual = getattr(spec, "manual", False)
        if manual and spec.lane == submitter_lane:
            continue
        if spec.name in approval_tasks and spec.name != task.task_spec.name:
            found.add(spec.name)
        if manual and unknown is not None:
            more = writes(spec)
            unknown = None if more is None else unknown | more
        elif any(kind in type(spec).__name__ for kind in _OPAQUE_STEPS):
            unknown = None
        outputs = {o.name: o for o in spec.outputs}
        conditions = getattr(spec, "cond_task_specs", None) or []
        if not conditions:
            stack.extend((o, unknown) for o in outputs.values())
            continue
        certain = False
        for condition, name in conditions:
            verdict = _may_hold(condition, unknown, evaluate)
            certain = certain or verdict is True
            if verdict is not False and name in outputs:
                stack.append((outputs[name], unknown))
        default = getattr(spec, "default_task_spec", None)
        if default in outputs and not certain:
            stack.append((outputs[default], unknown))
    return found


def _may_hold(condition, unknown: frozenset[str] | None, evaluate) -> bool | None:
    """True or False when the data decides the condition now; None when it may go either way."""
    expression = condition.args[0] if getattr(condition, "args", None) else None
    if not isinstance(expression, str) or unknown is None:
        return None
    names = _names(expression)
    if names is None or names & unknown:
        return None
    try:
        return bool(evaluate(expression))
    except Exception:
        return None
