"""The timer worker: fires what is due — timer events, reminders, escalations — one instance per
unit of work — and starts the processes whose start event is a timer when a run is due
(Runtime.start_scheduled, engine/schedules.py).

The due rows are a projection of the state with an index on `due_at`, so a pass reads only what
is due, whatever the number of timers still waiting. Each unit of work picks its instance itself
(`Runtime.fire_next_due`): on PostgreSQL with `FOR UPDATE SKIP LOCKED`, so any number of workers
share the work, none fires a timer twice, and a worker killed mid-pass leaves its instance to the
next one (its transaction never committed).
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime

from . import clock, notifications
from .runtime import CommandFailed, EngineError, Runtime

log = logging.getLogger(__name__)

PASS_LIMIT = 10_000  # instances per pass; the next pass continues


@dataclass
class Pass:
    fired: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)  # instances of timer start events (engine.schedules)

    def as_json(self) -> dict:
        return {"fired": self.fired, "failed": self.failed, "started": self.started}


def run_once(runtime: Runtime, now: datetime | None = None, limit: int = PASS_LIMIT) -> Pass:
    """Fire everything due before `now` (default: the clock), each instance at most once."""
    now = now or clock.now()
    result = Pass()
    # Processes whose start event is a timer: the run due now, once (engine.schedules).
    result.started, failed = runtime.start_scheduled(now)
    for process_id, failure in failed.items():
        result.failed[process_id] = failure
        log.warning("scheduled start of %s failed: %s", process_id, failure)
    # Timers that failed before, whose back-off has passed: each tried once, a bounded number
    # of times in all (Runtime.retry_due_timers); their instances are not picked again below.
    for instance_id, failure in runtime.retry_due_timers(now):
        if failure is None:
            result.fired.append(instance_id)
        else:
            result.failed[instance_id] = failure
            log.warning("retried timer of instance %s failed: %s", instance_id, failure)
    seen: set[str] = set()
    while len(seen) + len(result.fired) < limit:
        try:
            picked = runtime.fire_next_due(now, exclude=seen)
        except CommandFailed as exc:
            instance_id = exc.instance_id
            result.failed[instance_id] = str(exc)
            log.warning("due work of instance %s failed: %s", instance_id, exc)
        except EngineError as exc:  # e.g. a conflict with a person acting at the same moment
            log.info("due work stopped for this pass: %s", exc)
            break
        else:
            if picked is None:
                break
            instance_id, changed = picked
            if changed:
                # Its due rows are gone or moved on; excluding it would only lengthen the query.
                result.fired.append(instance_id)
                continue
        seen.add(instance_id)
    return result


def deliver_mail(runtime: Runtime, now: datetime | None = None) -> int:
    """Send the notification outbox when BPM_SMTP_URL is set (off by default)."""
    url = os.environ.get("BPM_SMTP_URL")
    if not url:
        return 0
    with runtime.store.write() as session:
        return notifications.deliver_outbox(session, url, os.environ.get("BPM_MAIL_DOMAIN", "localhost"),
                                            now or clock.now())


def run_forever(runtime: Runtime, interval: float = 0.5, stop: threading.Event | None = None) -> None:
    stop = stop or threading.Event()
    last_error = None
    while not stop.is_set():
        try:
            run_once(runtime)
            deliver_mail(runtime)
            runtime.forget_requests()  # request ids are kept for a bounded time
            last_error = None
        except Exception as exc:  # a worker must outlive a bad pass (database restart, say)
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            if error != last_error:  # one line per new problem, not one every interval
                log.error("timer pass failed: %s", error)
            last_error = error
        stop.wait(interval)
