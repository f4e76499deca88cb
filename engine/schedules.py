"""Timer start events: the schedule of a process that starts itself (a monthly review, say) and the
record of each run (table `timer_start`).

A deployed process whose start event carries a timer — a time cycle with its first instant
(`"R/2026-12-01T09:00:00+08:00/P1M"`: the 1st of every month at 09:00 China time) or one date —
is started by the timer worker (`Runtime.start_scheduled`, called by every pass of
engine.timers.run_once) at each scheduled instant, as the system actor `worker`. Each run is one
row keyed by (process, instant), written in the transaction of the start: a second worker, or a
second pass, finds the row (or hits its key) and starts nothing, so a run starts exactly once.

Only the latest instant due is started: a worker that was stopped for three months starts one
review, not three *(choice)*. Instants before the process was first deployed are not runs.
The timer is the engine's schedule, not a wait inside the instance: the start event of a new
instance fires at once (runtime.new_workflow), also when a person starts it by hand.
"""
from __future__ import annotations

import ast
from datetime import datetime, timedelta

from sqlalchemy import insert, update
from sqlalchemy.engine import Connection
from SpiffWorkflow.bpmn.specs.event_definitions.timer import (CycleTimerEventDefinition,
                                                             DurationTimerEventDefinition,
                                                             TimeDateEventDefinition,
                                                             TimerEventDefinition)

from .store import TimerStart

_R = TimerStart.__table__
_KINDS = ((CycleTimerEventDefinition, "timeCycle"), (TimeDateEventDefinition, "timeDate"),
          (DurationTimerEventDefinition, "timeDuration"))
MAX_STEPS = 100_000  # occurrences walked to find the latest due (a minute-cycle for ~70 days)


def timer_start(spec) -> tuple[str, str] | None:
    """(kind, ISO expression) of the timer on the process's start event, or None when it starts
    otherwise (or its timer is not a quoted literal: the deploy check refuses that)."""
    for task_spec in spec.task_specs.values():
        if type(task_spec).__name__ != "StartEvent":
            continue
        definition = getattr(task_spec, "event_definition", None)
        if not isinstance(definition, TimerEventDefinition):
            continue
        kind = next((name for cls, name in _KINDS if isinstance(definition, cls)), None)
        literal = literal_of(definition.expression)
        if kind is not None and literal is not None:
            return kind, literal
    return None


def literal_of(expression: str | None) -> str | None:
    """The string a timer expression is, if it is a quoted literal."""
    try:
        value = ast.literal_eval((expression or "").strip())
    except (ValueError, SyntaxError):
        return None
    return value.strip() if isinstance(value, str) else None


def problem(kind: str, literal: str) -> str | None:
    """Why a timer start event cannot be scheduled, or None: the engine starts runs at fixed
    instants, so a cycle names its first instant, and a start is not a duration after anything."""
    if kind == "timeDuration":
        return ('a timer start event needs a time cycle with its first instant, such as '
                '"R/2026-12-01T09:00:00+08:00/P1M", or a date; a duration has nothing to count from')
    if kind == "timeCycle":
        parts = literal.upper().replace("--", "/").split("/")
        if len(parts) != 3 or parts[1].startswith("P") or not parts[2].startswith("P"):
            return ('a timer start event\'s cycle names its first instant and then the interval, such as '
                    '"R/2026-12-01T09:00:00+08:00/P1M"')
        try:
            _first(parts[1])
            TimerEventDefinition.parse_iso_duration(parts[2])
        except Exception:
            return f"the cycle {literal} is not a repeating interval such as \"R/2026-12-01T09:00:00+08:00/P1M\""
        if _step(parts[2], _first(parts[1])) <= timedelta(0):
            return f"the cycle {literal} does not move forward"
    return None


def _first(text: str) -> datetime:
    instant = datetime.fromisoformat(text)
    if instant.tzinfo is None:
        raise ValueError("an instant with its offset, such as +08:00")
    return instant


def _step(duration: str, start: datetime) -> timedelta:
    """The interval after `start` (months counted in the first instant's own calendar)."""
    return TimerEventDefinition.get_timedelta_from_start(TimerEventDefinition.parse_iso_duration(duration), start)


def due_run(kind: str, literal: str, since: datetime, now: datetime) -> datetime | None:
    """The latest scheduled instant at or before `now` and not before `since`, or None."""
    if kind == "timeDate":
        try:
            instant = _first(literal)
        except ValueError:
            return None
        return instant if since <= instant <= now else None
    if kind != "timeCycle" or problem(kind, literal) is not None:
        return None
    parts = literal.upper().replace("--", "/").split("/")
    cycles = int(parts[0][1:]) if parts[0][1:] else -1
    instant, latest, count = _first(parts[1]), None, 0
    while instant <= now and cycles != 0 and count < MAX_STEPS:
        if instant >= since:
            latest = instant
        instant += _step(parts[2], instant)
        cycles -= 1
        count += 1
    return latest


def record_run(conn: Connection, process_id: str, scheduled: datetime, instance_id: str,
               at: datetime) -> None:
    """The run's row, in the start's transaction: taken over from a failed attempt (a retried
    incident), or inserted — a run another worker started meanwhile breaks the key, and this
    start rolls back."""
    taken = conn.execute(update(_R).where(_R.c.process_id == process_id, _R.c.scheduled_for == scheduled,
                                          _R.c.instance_id.is_(None))
                         .values(instance_id=instance_id, incident_id=None, started_at=at)).rowcount
    if not taken:
        conn.execute(insert(_R).values(process_id=process_id, scheduled_for=scheduled,
                                       instance_id=instance_id, started_at=at))


def record_failure(conn: Connection, process_id: str, scheduled: datetime, incident_id: int | None,
                   at: datetime) -> None:
    """A run whose start failed: kept with its incident, so the worker does not try it again at
    every pass (a person retries the incident)."""
    conn.execute(insert(_R).values(process_id=process_id, scheduled_for=scheduled, instance_id=None,
                                   incident_id=incident_id, started_at=at))
