"""The timer worker: fires what is due — timer events, reminders, escalations — one instance per
unit of work — and starts the processes whose start event is a timer when a run is due
(Runtime.start_scheduled, engine/schedules.py).

The due rows are a projection of the state with an index on `due_at`, so a pass reads only what
is due, whatever the number of timers still waiting. Each unit of work picks its instance itself
(`Runtime.fire_next_due`): on PostgreSQL with `FOR UPDATE SKIP LOCKED`, so any number of workers
share the work, none fires a timer twice, and a worker killed mid-pass leaves its instance to the
next one (its transaction never committed).

`bpm serve` runs the worker as a process of its own (bpm/cli.py), not a thread among the request
threads; on PostgreSQL the worker sleeps until the nearest due row and a command writing a nearer
one wakes it (`LISTEN/NOTIFY`, engine.wakeup).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from . import clock, notifications, schedules, wakeup
from .runtime import CommandFailed, EngineError, Runtime

log = logging.getLogger(__name__)

PASS_LIMIT = 10_000  # instances per pass; the next pass continues
MIN_SLEEP = 0.05  # seconds between two passes on PostgreSQL at the least


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


def _pass(runtime: Runtime, last_error: str | None) -> str | None:
    """One pass of everything the worker does; the error line it logged, if any."""
    try:
        run_once(runtime)
        deliver_mail(runtime)
        runtime.forget_requests()  # request ids are kept for a bounded time
        return None
    except Exception as exc:  # a worker must outlive a bad pass (database restart, say)
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if error != last_error:  # one line per new problem, not one every interval
            log.error("timer pass failed: %s", error)
        return error


def run_forever(runtime: Runtime, interval: float = 0.5, stop: threading.Event | None = None,
                horizon: float = wakeup.HORIZON, listen: bool | None = None) -> None:
    """Pass after pass until `stop`. On SQLite (or `listen=False`) a pass every `interval`
    seconds. On PostgreSQL the worker LISTENs (engine.wakeup): after a pass it sleeps until the
    nearest due row, at most `horizon` seconds, and wakes early when a command writes a nearer one."""
    stop = stop or threading.Event()
    if listen is None:
        listen = not runtime.store.is_sqlite
    if not listen:
        last_error = None
        while not stop.is_set():
            last_error = _pass(runtime, last_error)
            stop.wait(interval)
        return
    listener = None
    last_error = None
    try:
        while not stop.is_set():
            if listener is None:
                try:
                    listener = wakeup.Listener(runtime.store)
                    runtime.wakeups = listener  # the tests read `woken` here
                except Exception as exc:  # database down: pass and poll until it is back
                    log.warning("cannot LISTEN for timers (%s); polling every %s s", exc, interval)
            last_error = _pass(runtime, last_error)
            if listener is None:
                stop.wait(interval)
                continue
            # waited on the monotonic clock: a fixed BPM_NOW must not make the wait endless
            deadline = time.monotonic() + _next_wait(runtime, horizon)
            while not stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    notified = listener.wait(min(remaining, 1.0))  # 1 s: `stop` is seen in time
                except Exception as exc:
                    log.warning("timer notifications lost (%s); listening again", exc)
                    listener.close()
                    listener = None
                    break
                if notified is not None:
                    due_in = max((notified - clock.now()).total_seconds(), 0.0)
                    deadline = min(deadline, time.monotonic() + due_in)
    finally:
        if listener is not None:
            listener.close()


def _next_wait(runtime: Runtime, horizon: float) -> float:
    """Seconds until the next pass: to the nearest due row or `horizon`, but not fewer than
    MIN_SLEEP (a due row the pass left, say an instance whose work changed nothing, must not spin)."""
    now = clock.now()
    wake = now + timedelta(seconds=horizon)
    try:
        nearest = wakeup.next_due(runtime.store)
        timer_processes = runtime._timer_processes()
    except Exception:  # the database is away: the next pass says so (once) and we try again soon
        return 1.0
    # the next run of a process whose start event is a timer (engine.schedules) counts too
    for process_id, timer, first in timer_processes:
        run = schedules.due_run(*timer, first, wake)
        if run is not None and run > now and (process_id, run) not in runtime._runs_started:
            nearest = run if nearest is None else min(nearest, run)
    if nearest is not None:
        wake = min(wake, max(nearest, now + timedelta(seconds=MIN_SLEEP)))
    return (wake - now).total_seconds()
