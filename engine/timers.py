"""The timer worker: fires waiting timers whose due time has come, one unit of work per instance.

The due-time rows are a projection of the state, so a pass reads only what is due (an index on
`due_at`), whatever the number of timers still waiting.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select

from . import clock
from .runtime import EngineError, Runtime
from .store import DueTimer, Incident

log = logging.getLogger(__name__)


@dataclass
class Pass:
    fired: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict:
        return {"fired": self.fired, "failed": self.failed}


def due_instances(runtime: Runtime, now: datetime, limit: int = 500) -> list[str]:
    blocked = select(Incident.instance_id).where(Incident.status == "open", Incident.command == "timer",
                                                 Incident.instance_id.is_not(None))
    query = (select(DueTimer.instance_id, DueTimer.due_at)
             .where(DueTimer.due_at <= now, DueTimer.instance_id.not_in(blocked))
             .order_by(DueTimer.due_at).limit(limit))
    with runtime.store.read() as session:
        seen: dict[str, None] = {}
        for row in session.execute(query):
            seen.setdefault(row.instance_id)
    return list(seen)


def run_once(runtime: Runtime, now: datetime | None = None, limit: int = 500) -> Pass:
    """Fire everything due at `now` (default: the clock)."""
    now = now or clock.now()
    result = Pass()
    for instance_id in due_instances(runtime, now, limit):
        try:
            runtime.fire_timer(instance_id, now)
            result.fired.append(instance_id)
        except EngineError as exc:
            result.failed[instance_id] = str(exc)
            log.warning("timer of instance %s: %s", instance_id, exc)
    return result


def run_forever(runtime: Runtime, interval: float = 0.5, stop: threading.Event | None = None) -> None:
    stop = stop or threading.Event()
    last_error = None
    while not stop.is_set():
        try:
            run_once(runtime)
            last_error = None
        except Exception as exc:  # a worker must outlive a bad pass (database restart, say)
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            if error != last_error:  # one line per new problem, not one every interval
                log.error("timer pass failed: %s", error)
            last_error = error
        stop.wait(interval)
