"""The deterministic context every command runs in, so a logged instance can be replayed exactly.

SpiffWorkflow draws on three sources of non-determinism through module-level names: `uuid4`
(task ids) and `time.time()` (`last_state_change`) in `SpiffWorkflow.task`, and
`datetime.now()` in the timer event definitions. `install()` redirects them once, for the whole
process, to a per-command context held in a `ContextVar` (threads do not interfere); outside a
command they behave as before. Inside a command:

* task ids are `uuid5(instance id, counter)` where the counter is kept in the instance state;
* `time.time()` and timer `now` are the command's logged time;
* service-task results are recorded (first run) or played back (replay).
"""
from __future__ import annotations

import time as _time
import uuid
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from . import clock

_NAMESPACE = uuid.UUID("6f1c0c52-6a43-4c1e-9d55-2f0b8a3b9e10")


@dataclass
class CommandContext:
    instance_id: str
    at: datetime
    counter: int = 0
    service_results: list[Any] = field(default_factory=list)
    replaying: bool = False
    _replay_cursor: int = 0
    # Things people should hear about (assigned, reminder, escalated, returned): written as
    # notifications by the command's transaction; not part of the state, not replayed.
    events: list[dict] = field(default_factory=list)
    # Access to customer archives granted by this command (engine.customers.grant_service): written
    # by the command's transaction, after the grantor's authority is checked; not replayed.
    archive_grants: list[dict] = field(default_factory=list)
    # Business records published by this command's steps (engine.records): written by the command's
    # transaction; `conn` is that transaction, for services that read records. Neither is replayed.
    records: list[dict] = field(default_factory=list)
    conn: Any = None
    # The working calendar in force for this command (engine.calendar; None: clock hours), and the
    # due times it gave, in the order asked: logged as the command's `deadlines`, played back on
    # replay, which never reads the calendar.
    calendar: Any = None
    deadlines: list[str] = field(default_factory=list)
    _deadline_cursor: int = 0
    # Who runs the command (engine service `acting_user`: e.g. who approved the step that led to a
    # service task). Not replayed: the service's result is in the log.
    actor: str | None = None
    # Changes of the credit list approved by this command (engine.credit.apply_service): written by
    # the command's transaction, after the approver's authority is checked; not replayed.
    credit_changes: list[dict] = field(default_factory=list)

    def next_task_id(self) -> uuid.UUID:
        self.counter += 1
        return uuid.uuid5(_NAMESPACE, f"{self.instance_id}/{self.counter}")

    def next_deadline(self) -> str | None:
        """Replay: the next due time the logged command computed on its calendar, or None when it
        computed none (clock hours)."""
        if self._deadline_cursor >= len(self.deadlines):
            return None
        self._deadline_cursor += 1
        return self.deadlines[self._deadline_cursor - 1]

    @property
    def epoch(self) -> float:
        return self.at.timestamp()


_current: ContextVar[CommandContext | None] = ContextVar("bpm_command", default=None)


def current() -> CommandContext | None:
    return _current.get()


def connection() -> Any:
    """The running command's database connection (its transaction: the same snapshot), for what a
    step reads besides its instance — the credit list, business records, the holders of a role;
    None outside a command. A replay has none: services play back what they returned."""
    ctx = _current.get()
    return ctx.conn if ctx is not None else None


class command_context:
    """Run a block as one command of one instance, at one instant."""

    def __init__(self, ctx: CommandContext):
        self.ctx = ctx
        self._tokens: tuple = ()

    def __enter__(self) -> CommandContext:
        self._tokens = (_current.set(self.ctx), clock.fixed_now(self.ctx.at))
        self._tokens[1].__enter__()
        return self.ctx

    def __exit__(self, *exc) -> None:
        self._tokens[1].__exit__(*exc)
        _current.reset(self._tokens[0])


def notify(kind: str, username: str | None, task, **extra: Any) -> None:
    """Record that `username` (None: the task's role) should hear of `kind` about `task`."""
    ctx = _current.get()
    if ctx is None or ctx.replaying:
        return
    spec = task.task_spec
    ctx.events.append({"kind": kind, "username": username, "task_id": str(task.id),
                       "element_id": spec.bpmn_id or spec.name, "name": spec.bpmn_name or spec.name,
                       "lane": spec.lane, **extra})


def call_service(name: str, call: Callable[[], Any]) -> Any:
    """Run a service call, or play back its recorded result when replaying.

    The result is recorded in the command's context so the log can keep it as an input.
    """
    ctx = _current.get()
    if ctx is None:
        return call()
    if ctx.replaying:
        if ctx._replay_cursor >= len(ctx.service_results):
            raise RuntimeError(f"replay asked for service {name!r} but the log recorded no result for it")
        recorded = ctx.service_results[ctx._replay_cursor]
        ctx._replay_cursor += 1
        if recorded.get("service") != name:
            raise RuntimeError(
                f"replay called service {name!r} where the log recorded {recorded.get('service')!r}")
        return recorded["result"]
    result = call()
    ctx.service_results.append({"service": name, "result": result})
    return result


# --- redirection of SpiffWorkflow's module-level names -------------------------------------

def _uuid4() -> uuid.UUID:
    ctx = _current.get()
    return ctx.next_task_id() if ctx is not None else uuid.uuid4()


class _Time:
    """Stands in for the `time` module inside `SpiffWorkflow.task`."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_time, name)

    @staticmethod
    def time() -> float:
        ctx = _current.get()
        return ctx.epoch if ctx is not None else _time.time()


class _DateTime(datetime):
    """`datetime` whose `now()` is the command's time (used by timer event definitions)."""

    @classmethod
    def now(cls, tz=None):  # type: ignore[override]
        instant = clock.now()
        return instant.astimezone(tz) if tz is not None else instant.astimezone().replace(tzinfo=None)


_installed = False


def install() -> None:
    """Redirect SpiffWorkflow's sources of non-determinism; idempotent."""
    global _installed
    if _installed:
        return
    import SpiffWorkflow.task as spiff_task
    from SpiffWorkflow.bpmn.specs.event_definitions import timer as spiff_timer

    spiff_task.uuid4 = _uuid4
    spiff_task.time = _Time()
    spiff_timer.datetime = _DateTime
    _installed = True


def utc(dt: datetime) -> datetime:
    return dt.astimezone(timezone.utc)
