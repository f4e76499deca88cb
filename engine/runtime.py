"""The only code that changes an instance: start, claim, unclaim, complete, message, timer, retry.

Every command goes through `Runtime._unit_of_work`: read the instance and restore its state (before
the write lock), lock the instance and check it is still at the revision restored (else read and
restore again, locked), apply the command inside the deterministic context, run engine steps,
write what changed in the projections, append the hash-chained log entry, and save it all in one
transaction — or roll everything back and record an incident a person can see and retry.
"""
from __future__ import annotations

import copy
import json
import os
import threading
import time
import uuid
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Iterator, Mapping

from sqlalchemy import bindparam, delete, exists, false, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from SpiffWorkflow.bpmn import BpmnEvent
from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.util.task import TaskState

from . import (access, calendar, checkpoints, clock, determinism, forms, notifications, pruning, records,
               schedules, state, tasks)
from . import observe, wakeup  # command latency for web.ops; NOTIFY of near timers (PostgreSQL)
from .definitions import message_rules
from . import inputs as bounds  # (`inputs` is the name of a command's logged input here)
from .determinism import CommandContext, command_context
from .errors import CommandFailed, Conflict, EngineError, Forbidden, FormRejected, InvalidInput, NotFound
from .results import InstanceView, TaskView, task_view  # noqa: F401 (task_view: re-exported)
from .statements import Prepared
from .store import (Comment, Definition, DueTimer, HumanTask, IdempotencyKey, Incident, Instance, LogEntry,
                    MessageKey, MessageWait, Notification, Outbox, SlaBreach, Store, TaskDraft, TimerStart, User,
                    UserRole)

GENESIS_HASH = "0" * 64
SYSTEM_ACTOR = "worker"  # who starts an instance at the time of its timer start event
SCHEDULES_KEPT = 10.0  # seconds a worker keeps the list of processes with a timer start event
BUSINESS_KEY_FIELDS = ("business_key", "order_no", "contract_no", "request_no", "name")


class _NothingToDo(Exception):
    """Leaves a unit of work without writing anything."""

    def __init__(self, view):
        super().__init__("nothing to do")
        self.view = view


class _Race(Conflict):
    """Two commands wrote one instance at the same moment: the later one is told to retry (the
    worker leaves the instance to the next pass rather than park it)."""


class _ExecutionFailed(Exception):
    """Raised around an exception from the workflow itself (script, service, expression)."""

    def __init__(self, original: BaseException):
        super().__init__(str(original))
        self.original = original


# --- loaded definitions -----------------------------------------------------------------------

@dataclass(frozen=True)
class LoadedDefinition:
    id: int
    process_id: str
    version: int
    spec: Any
    subprocess_specs: dict
    lane_roles: dict[str, str]
    has_timers: bool = True    # lets a command skip clearing projections that cannot exist
    has_messages: bool = True
    forms: dict[str, dict] = field(default_factory=dict)
    start_form: str | None = None
    approval_tasks: frozenset[str] = frozenset()  # task spec names where four-eyes applies
    starters: frozenset[str] = frozenset()  # who may start it (access.starters)
    messages: dict = field(default_factory=dict)  # message name -> definitions.MessageRule
    submitter_lane: str | None = None  # the start event's lane: the submitter's own (rework) tasks
    timer_start: tuple[str, str] | None = None  # (kind, ISO text) of a timer start event (engine.schedules)

    def role_of(self, lane: str | None) -> str | None:
        """The role the lane `lane` resolves to (deploy checked every lane names one); None for a
        step in no lane."""
        return self.lane_roles.get(lane) if lane else None

    def form_of(self, task_spec) -> tuple[str, dict] | None:
        name = tasks.properties(task_spec).get("form")
        return (name, self.forms[name]) if name in self.forms else None


_definitions: dict[tuple[str, int], LoadedDefinition] = {}
_definitions_lock = threading.Lock()
_retrying: ContextVar[int | None] = ContextVar("bpm_retrying_incident", default=None)
# SLA breaches found by the current command, written in its transaction if it commits.
_pending_breaches: ContextVar[list] = ContextVar("bpm_pending_breaches", default=[])


def _event_kinds(specs: Iterable) -> set[type]:
    kinds: set[type] = set()
    for spec in specs:
        for task_spec in spec.task_specs.values():
            definition = getattr(task_spec, "event_definition", None)
            inner = getattr(definition, "event_definitions", None) or [definition]
            kinds.update(type(d) for d in inner if d is not None)
    return kinds


def _url_of(executor) -> str:
    bind = executor.get_bind() if isinstance(executor, Session) else executor.engine
    return str(bind.url)


def loaded_definition(executor: Session | Connection, definition_id: int) -> LoadedDefinition:
    """Deployed versions are immutable, so each is restored once per process and shared."""
    key = (_url_of(executor), definition_id)
    found = _definitions.get(key)
    if found is not None:
        return found
    row = executor.execute(select(_DEF.c.id, _DEF.c.process_id, _DEF.c.version, _DEF.c.spec,
                                  _DEF.c.lane_roles, _DEF.c.forms, _DEF.c.files)
                           .where(_DEF.c.id == definition_id)).first()
    if row is None:
        raise NotFound("there is no deployed definition %(definition)s", definition=definition_id)
    spec, subs = state.load_spec(row.spec)
    found = loaded_from(row.id, row.process_id, row.version, spec, subs, row.lane_roles, row.forms, row.files)
    with _definitions_lock:
        _definitions[key] = found
    return found


def forget_definitions(url: str) -> None:
    """Drop what `loaded_definition` keeps for the database at `url`: a throwaway database's
    (engine.modeltests), once it is gone."""
    with _definitions_lock:
        for key in [k for k in _definitions if k[0] == url]:
            del _definitions[key]


def loaded_from(definition_id: int, process_id: str, version: int, spec, subs: dict, lane_roles: dict,
                forms_: dict | None, files: dict | None) -> LoadedDefinition:
    """A deployed version made ready to run, from its parts: the stored row's (loaded_definition),
    or an evidence bundle's files parsed again (engine.evidence), so both run the same definition."""
    all_specs = [spec, *subs.values()]
    kinds = _event_kinds(all_specs)
    form_schemas = dict(forms_ or {})
    manual = [ts for each in all_specs for ts in each.task_specs.values() if getattr(ts, "manual", False)]
    approvals = set()
    for task_spec in manual:
        props = tasks.properties(task_spec)
        flag = props.get("four_eyes")
        if flag == "true" or (flag != "false" and forms.needs_decision(form_schemas.get(props.get("form")))):
            approvals.add(task_spec.name)
    start_form = next((tasks.properties(ts).get("form") for ts in spec.task_specs.values()
                       if type(ts).__name__ == "StartEvent" and tasks.properties(ts).get("form")), None)
    start = next((ts for ts in spec.task_specs.values() if type(ts).__name__ == "StartEvent"), None)
    starters = access.starters(lane_roles.get(start.lane) if start is not None and start.lane else None,
                               tasks.properties(start).get("start_roles") if start is not None else None)
    submitter_lane = next((ts.lane for ts in spec.task_specs.values()
                           if type(ts).__name__ == "StartEvent" and ts.lane), None)
    return LoadedDefinition(definition_id, process_id, version, spec, subs, dict(lane_roles),
                            has_timers=bool(manual) or any(issubclass(k, TimerEventDefinition) for k in kinds),
                            has_messages=any(issubclass(k, MessageEventDefinition) for k in kinds),
                            forms=form_schemas, start_form=start_form,
                            approval_tasks=frozenset(approvals), starters=starters,
                            messages=message_rules(files or {}), submitter_lane=submitter_lane,
                            timer_start=schedules.timer_start(spec))


# --- the statements of the hot path, built once ----------------------------------------------
# Those run by the unit of work are `Prepared`: compiled once per dialect and executed on the DBAPI
# cursor of the transaction's connection, with SQLAlchemy's own type processing (statements.py).

_I, _H, _T, _M = Instance.__table__, HumanTask.__table__, DueTimer.__table__, MessageWait.__table__
_MK = MessageKey.__table__
_L, _X, _DEF = LogEntry.__table__, Incident.__table__, Definition.__table__
_U, _UR = User.__table__, UserRole.__table__
_TD_TABLE = TaskDraft.__table__

_SELECT_TASK = Prepared(select(_H.c.id, _H.c.instance_id, _H.c.role, _H.c.assignee, _H.c.office_scope).where(
    _H.c.id == bindparam("task_id")))
_SELECT_INSTANCE = select(_I.c.id, _I.c.definition_id, _I.c.process_id, _I.c.status, _I.c.state,
                          _I.c.state_hash, _I.c.revision, _I.c.log_hash, _I.c.initiator, _I.c.created_at).where(
    _I.c.id == bindparam("instance_id"))
_SELECT_INSTANCE_LOCKED = _SELECT_INSTANCE.with_for_update()
_TASK_COLUMNS = (_H.c.id.label("task_id"), _H.c.role, _H.c.assignee, _H.c.office_scope)
_SELECT_TASK_INSTANCE = (select(*_TASK_COLUMNS, *_SELECT_INSTANCE.selected_columns)
                         .join(_I, _I.c.id == _H.c.instance_id)
                         .where(_H.c.id == bindparam("task_id")))
_SELECT_TASK_INSTANCE_LOCKED = _SELECT_TASK_INSTANCE.with_for_update(of=_I)
_SELECT_INSTANCE, _SELECT_INSTANCE_LOCKED, _SELECT_TASK_INSTANCE, _SELECT_TASK_INSTANCE_LOCKED = map(
    Prepared, (_SELECT_INSTANCE, _SELECT_INSTANCE_LOCKED, _SELECT_TASK_INSTANCE,
               _SELECT_TASK_INSTANCE_LOCKED))
# Under the write lock, when the instance was read and restored before it (`Runtime._before_lock`):
# is it still at that revision (then what was read holds), and has the task a draft to delete?
_SELECT_REVISION = select(_I.c.revision, _I.c.status,
                          exists().where(_TD_TABLE.c.task_id == bindparam("task_id")).label("has_draft")).where(
    _I.c.id == bindparam("instance_id"))
_SELECT_REVISION, _SELECT_REVISION_LOCKED = Prepared(_SELECT_REVISION), Prepared(_SELECT_REVISION.with_for_update(of=_I))
_UPDATE_INSTANCE = Prepared(update(_I)
                            .where(_I.c.id == bindparam("w_id"), _I.c.revision == bindparam("w_revision"))
                            .values(state=bindparam("v_state"), state_hash=bindparam("v_state_hash"),
                                    revision=bindparam("v_revision"), status=bindparam("v_status"),
                                    business_key=bindparam("v_business_key"),
                                    customer=bindparam("v_customer"), amount=bindparam("v_amount"),
                                    updated_at=bindparam("v_at"),
                                    completed_at=bindparam("v_completed_at"),
                                    log_hash=bindparam("v_log_hash")))
_CLEAR = {table: Prepared(delete(table).where(table.c.instance_id == bindparam("instance_id")))
          for table in (_H, _T, _M, _MK)}
_INSERT = {table: Prepared(insert(table)) for table in (_H, _T, _M, _MK, _L, _I)}
# The projection written as a diff (`project`): rows by primary key.
_DELETE_BY_ID = {table: Prepared(delete(table).where(table.c.id == bindparam("w_id"),
                                                     table.c.instance_id == bindparam("instance_id")))
                 for table in (_H, _T)}
_UPDATE_BY_ID = {table: Prepared(update(table).where(table.c.id == bindparam("w_id"),
                                                     table.c.instance_id == bindparam("w_instance_id")).values(
    {c.name: bindparam(f"v_{c.name}") for c in table.columns if c.name != "id"})) for table in (_H, _T)}
_SELECT_OPEN_INCIDENTS = select(_X.c.id, _X.c.command, _X.c.element_id, _X.c.message,
                                _X.c.created_at).where(_X.c.instance_id == bindparam("instance_id"),
                                                       _X.c.status == "open")
_SELECT_LATEST_DEFINITION = Prepared(select(_DEF.c.id, _DEF.c.version)
                                     .where(_DEF.c.process_id == bindparam("process_id"))
                                     .order_by(_DEF.c.version.desc()).limit(1))
_SELECT_DEFINITION_VERSION = Prepared(select(_DEF.c.id, _DEF.c.version).where(
    _DEF.c.process_id == bindparam("process_id"), _DEF.c.version == bindparam("version")))
_SELECT_COMPLETION = Prepared(select(_L.c.actor, _L.c.at, _L.c.instance_id).where(
    _L.c.task_id == bindparam("task_id"), _L.c.command == "complete").limit(1))


_TD, _B, _N, _O = TaskDraft.__table__, SlaBreach.__table__, Notification.__table__, Outbox.__table__
_INSERT_BREACH = Prepared(insert(_B))
_INSERT_NOTIFICATION = Prepared(insert(_N))
_DELETE_DRAFT = Prepared(delete(_TD).where(_TD.c.task_id == bindparam("task_id")))
_DELETE_INSTANCE_DRAFTS = Prepared(delete(_TD).where(_TD.c.instance_id == bindparam("instance_id")))
_OPEN_TIMER_INCIDENTS = select(_X.c.instance_id).where(
    _X.c.status == "open", _X.c.command == "timer", _X.c.instance_id.is_not(None))


def _pick_due(conn: Connection, sqlite: bool, now: datetime, exclude: frozenset[str]):
    """The instance with the earliest due work before `now`, locked for this transaction."""
    query = (select(*_SELECT_INSTANCE.statement.selected_columns)
             .select_from(_T.join(_I, _I.c.id == _T.c.instance_id))
             # No filter on instance.status: due rows exist only for running instances (the
             # projection is emptied when one ends), and such a filter lets SQLite's planner
             # walk instances by status instead of due rows by due time.
             .where(_T.c.due_at < now, _T.c.instance_id.not_in(_OPEN_TIMER_INCIDENTS))
             .order_by(_T.c.due_at).limit(1))
    if exclude:
        query = query.where(_T.c.instance_id.not_in(sorted(exclude)))
    if not sqlite:
        # Lock the due row too: one fired by another worker meanwhile is then deleted, not re-fired.
        query = query.with_for_update(of=(_T, _I), skip_locked=True)
    return conn.execute(query).first()


def _holding(query, role: str, office_scope: str):
    """`query` (over users joined to their roles) narrowed to the active holders of `role` within
    `office_scope` ("" = anywhere)."""
    query = query.where(_UR.c.role_id == role, _U.c.active.is_(True))
    return query.where(_U.c.office_id == office_scope) if office_scope else query


def _members(conn: Connection, role: str, office_scope: str = "", *, limit: int | None = None,
             among: Iterable[str] | None = None, besides: Iterable[str] = ()) -> list[str]:
    """Active users holding `role` within `office_scope` ("" = anywhere), by name."""
    query = _holding(select(_UR.c.username).join(_U, _U.c.username == _UR.c.username), role,
                     office_scope).order_by(_UR.c.username)
    if among is not None:
        query = query.where(_UR.c.username.in_(sorted(among)))
    if besides:
        query = query.where(_UR.c.username.not_in(sorted(besides)))
    return list(conn.execute(query.limit(limit)).scalars())


def _sole_member(conn: Connection, role: str | None, office_scope: str = "") -> str | None:
    """The one active user holding `role` (in the office scope), if exactly one does (an open task
    then has a holder)."""
    if role is None:
        return None
    names = _members(conn, role, office_scope, limit=2)
    return names[0] if len(names) == 1 else None


def _superior(conn: Connection, username: str) -> str | None:
    return conn.execute(select(_U.c.superior).where(_U.c.username == username)).scalar()


def _common_superior(conn: Connection, role: str | None, office_scope: str = "") -> str | None:
    """For a task open to several people: the superior most of them share (ties: by name)."""
    if role is None:
        return None
    query = _holding(select(_U.c.superior, func.count()).join(_UR, _UR.c.username == _U.c.username),
                     role, office_scope).where(_U.c.superior.is_not(None)).group_by(_U.c.superior)
    rows = conn.execute(query).all()
    return min(rows, key=lambda r: (-r[1], r[0]))[0] if rows else None


def _role_of(loaded: "LoadedDefinition", task) -> str:
    return loaded.role_of(task.task_spec.lane) or "approver"


def _may_view(executor: Session | Connection, instance_id: str, who: access.Person,
              initiator: str | None = None) -> bool:
    """access.may_view_instance, with what it needs read from the database; the open tasks and the
    log are read only if the rule gets that far (not for the initiator or an auditor)."""
    if initiator is None:
        initiator = executor.execute(select(_I.c.initiator).where(_I.c.id == instance_id)).scalar()
    open_tasks = _lazily(executor, select(_H.c.role, _H.c.assignee, _H.c.office_scope)
                         .where(_H.c.instance_id == instance_id))
    acted = _lazily(executor, select(_L.c.actor).where(_L.c.instance_id == instance_id,
                                                       _L.c.actor == who.username).limit(1), scalars=True)
    return access.may_view_instance(who, initiator, open_tasks, acted)


def _lazily(executor: Session | Connection, query, *, scalars: bool = False) -> Iterator:
    """The rows of `query`, read when first asked for (a generator's body runs on first next())."""
    result = executor.execute(query)
    yield from (result.scalars() if scalars else result)


def _told(executor: Session | Connection, refusal: EngineError, task_id: str, instance_id: str,
          who: access.Person, initiator: str | None = None) -> EngineError:
    """`refusal` for one who may see the task's instance; anyone else gets the answer for a task that
    never existed, so a refusal reveals nothing (who holds it, its role, who completed it)."""
    if _may_view(executor, instance_id, who, initiator):
        return refusal
    return NotFound("there is no open task %(task)s", task=task_id)


def _missing_task(conn, task_id: str, who: access.Person | None = None) -> EngineError:
    """No open task `task_id`: say who completed it, to one who may see its instance."""
    done = _SELECT_COMPLETION.first(conn, {"task_id": task_id})
    if done is not None:
        conflict = Conflict("task %(task)s is already done (completed by %(user)s at %(at)s)",
                            task=task_id, user=done.actor, at=done.at.isoformat())
        return conflict if who is None else _told(conn, conflict, task_id, done.instance_id, who)
    return NotFound("there is no open task %(task)s", task=task_id)


def open_task(session: Session, task_id: str, who: access.Person, may: Callable[..., bool],
              refusal: str) -> HumanTask:
    """The open task `task_id`, if `may` (an access rule over the task's role, holder and office
    scope) lets `who` at it; else the refusal `refusal` (with %(user)s and %(task)s) — told only to
    one who may see the instance, as `_told` says."""
    row = session.get(HumanTask, task_id)
    if row is None:
        raise _missing_task(session.connection(), task_id, who)
    if not may(who, row.role, row.assignee, row.office_scope):
        raise _told(session, Forbidden(refusal, user=who.username, task=task_id), task_id,
                    row.instance_id, who)
    return row


def _check_starter(who: access.Person, loaded: "LoadedDefinition") -> None:
    if access.may_start(who, loaded.starters):
        return
    if not loaded.starters:
        raise Forbidden("process %(process)s is not started directly by anyone", process=loaded.process_id)
    raise Forbidden("%(user)s may not start process %(process)s: only %(roles)s may", user=who.username,
                    process=loaded.process_id, roles=access.roles_text(loaded.starters))


def person(executor: Session | Connection, username: str) -> access.Person:
    """The acting user and their roles, in one query."""
    if not bounds.fits_key(username, _U.c.username.type.length):
        raise NotFound("there is no user %(user)s", user=_shown(username))
    try:
        return access.person(executor, username)
    except access.UnknownUser:
        raise NotFound("there is no user %(user)r", user=username) from None


# --- separation of duties: whom a level of a request may go to ---------------------------------

class _Duties:
    """Who may take which approval level of one request, while a command runs (RULES.md "Offices
    and separation of duties"): nobody approves what they submitted, one person approves at most
    one level of a round, and escalation or routing skips whoever already acted on another level
    or would receive a later one. The rules are access.level_refusal's; this finds the people."""

    def __init__(self, conn: Connection, loaded: LoadedDefinition, initiator: str | None):
        self.conn, self.loaded, self.initiator = conn, loaded, initiator
        self._where: access.RequestOffice | None = None
        self._later: dict[str, set[str]] = {}

    def scope(self, role: str | None) -> str:
        if role not in access.TASK_REACH or self.initiator is None:
            return access.COMPANY
        if self._where is None:
            self._where = access.request_office(self.conn, self.initiator)
        return access.task_scope(role, self._where)

    def role(self, spec) -> str | None:
        return self.loaded.role_of(getattr(spec, "lane", None))

    def levels(self, workflow: BpmnWorkflow, task) -> dict[str, set[str]]:
        return tasks.levels(workflow, task, self.loaded.approval_tasks, self.loaded.submitter_lane)

    def barred(self, workflow: BpmnWorkflow, task) -> set[str]:
        levels = self.levels(workflow, task)
        return {u for u in {*levels, self.initiator} if u is not None
                and access.level_refusal(u, task.task_spec.name, self.initiator, levels)}

    def _writes(self, spec) -> set[str] | None:
        form = self.loaded.form_of(spec)
        if form is None:
            return None
        return {k for k, v in (form[1].get("properties") or {}).items() if not (v or {}).get("readOnly")}

    def later_roles(self, task) -> set[str]:
        """The roles of the levels `task`'s request may still reach after it, in this round."""
        key = str(task.id)
        if key not in self._later:
            names = tasks.later_levels(task, self.loaded.approval_tasks, self.loaded.submitter_lane,
                                       self._writes, lambda text: task.workflow.script_engine.evaluate(task, text))
            specs = {**self.loaded.spec.task_specs}
            for sub in self.loaded.subprocess_specs.values():
                specs.update(sub.task_specs)
            self._later[key] = {r for r in (self.role(specs[n]) for n in names if n in specs) if r}
        return self._later[key]

    def twice(self, candidate: str, task, barred: set[str]) -> bool:
        """Whether `candidate` taking `task` would make them act on two levels of the request:
        they acted on (or hold) another, or a later one would come to them as its role's only
        holder."""
        if candidate in barred:
            return True
        return any(_sole_member(self.conn, role, self.scope(role)) == candidate
                   for role in self.later_roles(task))

    def climb(self, start: str, task, barred: set[str]) -> str | None:
        """The first superior above `start` who may take `task` without acting twice, or None."""
        candidate, steps = _superior(self.conn, start), 0
        while candidate is not None and steps < 32 and self.twice(candidate, task, barred):
            candidate, steps = _superior(self.conn, candidate), steps + 1
        return candidate if steps < 32 else None

    def route(self, workflow: BpmnWorkflow, before: set[str]) -> dict[str, str]:
        """Holders for the approval tasks that became ready in this command and would otherwise
        wait for someone who may not take them: the submitter's own approval, or a level whose
        only holder already acted on another. Another holder of the role takes it if there is
        exactly one; with none, the superior (skipping whoever would act twice)."""
        routes: dict[str, str] = {}
        if not self.loaded.approval_tasks:
            return routes
        for task in workflow.get_tasks(state=TaskState.READY, manual=True):
            if str(task.id) in before or task.task_spec.name not in self.loaded.approval_tasks \
                    or task._get_internal_data("routed"):
                continue
            barred = self.barred(workflow, task)
            holder = tasks.holder(task)
            role = self.role(task.task_spec)
            scope = self.scope(role)
            if holder is not None:
                if holder not in barred:
                    continue
                stuck = holder
            else:
                stuck_members = _members(self.conn, role, scope, among=barred) if role and barred else []
                if not stuck_members:
                    continue
                stuck = self.initiator if self.initiator in stuck_members else stuck_members[0]
            others = _members(self.conn, role, scope, limit=2, besides=barred) if role else []
            if len(others) > 1 and holder is None:
                continue  # open to the others; the barred are refused at claim and complete
            if len(others) == 1 and not self.twice(others[0], task, barred):
                routes[str(task.id)] = others[0]
                continue
            to = self.climb(stuck, task, barred)
            if to is not None:
                routes[str(task.id)] = to
        return routes


def _shown(value: Any) -> str:
    """An identifier from outside as it may be quoted back: printable, short."""
    return repr(value)[:60]


def _fit(data: Any, what: str) -> None:
    """Refuse data the engine cannot keep (engine/inputs.py: NaN, NUL, too long, too deep...)."""
    found = bounds.problems(data)
    if found:
        raise InvalidInput("the %(what)s was not accepted: %(problems)s", found, what=what,
                           problems=bounds.listed(found))


def _known_task(task_id: Any) -> None:
    """A task id that cannot name a task (not text, NUL, too long) is unknown, not a crash."""
    if not bounds.fits_key(task_id, _H.c.id.type.length):
        raise NotFound("there is no open task %(task)s", task=_shown(task_id))


def _reply_input(kind: Any, expected_by: Any, reason: Any, at: datetime) -> dict:
    """A reply's input, checked: its kind, the expected-by time (in progress), the reason (cannot
    finish); anything wrong is refused with one sentence before anything is read or written."""
    if kind not in tasks.REPLY_KINDS:
        raise InvalidInput("a reply is in_progress (with the time it is expected to be done by) or "
                           "cannot_finish (with the reason), not %(kind)s",
                           {"kind": "in_progress or cannot_finish"}, kind=_shown(kind))
    if reason is not None and not isinstance(reason, str):
        raise InvalidInput("the reason must be text", {"reason": "must be text"})
    reason = (reason or "").strip()
    if reason and (problem := bounds.text_problem(reason)):
        raise InvalidInput("the reason %(problem)s", {"reason": problem}, problem=problem)
    if kind == "cannot_finish":
        if not reason:
            raise InvalidInput("a reply that the task cannot be finished needs the reason",
                               {"reason": "this field is required"})
        if expected_by not in (None, ""):
            raise InvalidInput("a cannot_finish reply takes a reason, not an expected-by time",
                               {"expected_by": "only for in_progress"})
        return {"kind": kind, "expected_by": None, "reason": reason}
    if expected_by in (None, ""):
        raise InvalidInput("a reply that the task is in progress needs the time it is expected to be done by",
                           {"expected_by": "this field is required"})
    if isinstance(expected_by, datetime):
        if expected_by.tzinfo is None:
            raise InvalidInput("the expected-by time %(value)s has no UTC offset",
                               {"expected_by": "needs a UTC offset"}, value=expected_by.isoformat())
        when = expected_by.astimezone(timezone.utc)
    else:
        try:
            when = clock.parse_instant(expected_by if isinstance(expected_by, str) else "", "expected_by")
        except clock.ClockError:
            raise InvalidInput("the expected-by time %(value)s is not a date-time with a UTC offset such as "
                               "2026-11-27T17:00:00+08:00", {"expected_by": "not a date-time with a UTC offset"},
                               value=_shown(expected_by)) from None
    if when <= at:
        raise InvalidInput("the expected-by time %(value)s is not after the reply (%(at)s): say when it "
                           "will be done", {"expected_by": "must be later than now"},
                           value=when.isoformat(), at=at.astimezone(timezone.utc).isoformat())
    return {"kind": kind, "expected_by": when.isoformat(), "reason": reason or None}


# --- commands: pure functions of (workflow, input), replayed as they are ---------------------

# --- loops without a wait state ---------------------------------------------------------------
# Each script is limited (engine/sandbox.py), a loop of them is not: a cycle with no user task,
# timer or message to stop at would run inside one command for ever, holding the write lock. A
# live command may complete at most BPM_MAX_ENGINE_STEPS engine tasks. SpiffWorkflow 3.2 also
# stops seeing tasks _SPIFF_DEPTH deep (TaskIterator max_depth): such a loop would stall there
# and look finished. Replay (engine/audit.py) is not budgeted: it redoes what was once allowed.
# Deeper trees also hit Python's recursion limit inside SpiffWorkflow (Task.is_descendant_of), so
# a command refuses to run a task _DEEPEST deep. Each engine step costs more as the tree grows
# (SpiffWorkflow walks it for every pass): 1,000 steps of a forking loop took 12-17 s here.
_step_budget: ContextVar[int | None] = ContextVar("bpm_engine_step_budget", default=None)
_SPIFF_DEPTH = 1000
_DEEPEST = 800


class EngineLoop(Exception):
    """Too many engine steps, or too deep a task tree, in one command; `task` is where it stopped."""

    def __init__(self, message: str, task):
        super().__init__(message)
        self.task = task


def max_engine_steps() -> int:
    """BPM_MAX_ENGINE_STEPS (default 1000): engine tasks (scripts, gateways, events) one command may run."""
    try:
        steps = int(os.environ.get("BPM_MAX_ENGINE_STEPS") or 1000)
    except ValueError:
        steps = 0
    if steps < 1:
        raise ValueError("BPM_MAX_ENGINE_STEPS must be a positive whole number")
    return steps


@contextmanager
def _budgeted(steps: int):
    token = _step_budget.set(steps)
    try:
        yield
    finally:
        _step_budget.reset(token)


def _run_engine(workflow: BpmnWorkflow) -> None:
    """do_engine_steps, within the live command's step budget and SpiffWorkflow's depth."""
    budget = _step_budget.get()
    if budget is None:
        workflow.do_engine_steps()
        return
    steps = 0

    def counted(task) -> None:
        nonlocal steps
        steps += 1
        if steps > budget:
            raise EngineLoop(f"ran more than {budget:,} engine steps in one command: "
                             "a loop without a wait state?", task)
        if task.depth >= _DEEPEST:
            raise EngineLoop(f"went {_DEEPEST:,} tasks deep, near the {_SPIFF_DEPTH:,} SpiffWorkflow can follow: "
                             "a loop without a wait state?", task)

    workflow.do_engine_steps(will_complete_task=counted)
    stalled = _too_deep(workflow)
    if stalled is not None:
        raise EngineLoop(f"went {_SPIFF_DEPTH:,} tasks deep in one path, past which the engine loses "
                         "track of the instance: a loop without a wait state?", stalled)


def prune_tree(workflow: BpmnWorkflow, loaded: LoadedDefinition) -> None:
    """After a command (live or replayed), before its state is serialised: engine.pruning."""
    pruning.prune(workflow, loaded.approval_tasks, loaded.submitter_lane)


class LostTrack(Exception):
    """SpiffWorkflow's view of the instance misses a task with work left (engine.pruning.lost_work):
    committing would report the instance completed, or without its open task."""

    def __init__(self, task, completed: bool):
        spec = task.task_spec
        what = "says it is completed" if completed else "no longer sees it"
        super().__init__(f"'{spec.bpmn_name or spec.name}' is still {TaskState.get_name(task.state).lower()} "
                         f"but SpiffWorkflow {what}: the instance's task tree and its view disagree")
        self.task = task


def _check_track(workflow: BpmnWorkflow) -> None:
    lost = pruning.lost_work(workflow)
    if lost is not None:
        raise LostTrack(lost, workflow.is_completed())


def pruning_on() -> bool:
    """BPM_PRUNE (default on): new instances keep only the task tree they still need
    (engine.pruning); `0` starts them with the whole tree, as before (for comparison)."""
    return (os.environ.get("BPM_PRUNE") or "1").strip().lower() not in ("0", "false", "no", "off")


def _too_deep(workflow: BpmnWorkflow):
    """An unfinished task the engine can no longer see, or None (cheap: a tree of fewer tasks
    than the depth limit cannot reach it)."""
    for tree in (workflow, *workflow.subprocesses.values()):
        if len(tree.tasks) < _SPIFF_DEPTH - 1:
            continue
        depth: dict = {}
        for task in tree.tasks.values():
            parent = task.parent
            depth[task.id] = 0 if parent is None else (
                depth[parent.id] + 1 if parent.id in depth else task.depth)
            if depth[task.id] >= _SPIFF_DEPTH - 1 and not task.has_state(TaskState.FINISHED_MASK):
                return task
    return None


def _find_task(workflow: BpmnWorkflow, task_id: str):
    try:
        return workflow.get_task_from_id(uuid.UUID(task_id))
    except Exception:
        return None


def _apply_complete(workflow: BpmnWorkflow, inputs: dict, actor: str) -> None:
    task = _find_task(workflow, inputs["task_id"])
    if task is None or not task.task_spec.manual:
        raise NotFound("the instance has no user task %(task)s", task=inputs["task_id"])
    if task.state != TaskState.READY:
        raise Conflict("task %(task)s (%(name)s) is %(state)s, not waiting for input", task=inputs["task_id"],
                       name=task.task_spec.bpmn_name or task.task_spec.name,
                       state=TaskState.get_name(task.state).lower())
    # Fresh copies: nested task data is shared between SpiffWorkflow tasks.
    task.set_data(**copy.deepcopy(inputs.get("data") or {}))
    task._set_internal_data(completed_by=actor)
    task.run()
    _run_engine(workflow)


def _apply_reply(workflow: BpmnWorkflow, inputs: dict, actor: str) -> None:
    task = _find_task(workflow, inputs["task_id"])
    if task is None or not task.task_spec.manual or task.state != TaskState.READY:
        raise Conflict("task %(task)s is not waiting for anyone, so there is nothing to reply on",
                       task=inputs["task_id"])
    answer = inputs["reply"]
    tasks.reply(task, actor, answer["kind"], clock.now(), expected_by=tasks.parse(answer.get("expected_by")),
                reason=answer.get("reason"), to=answer.get("to"))


def _apply_hand_back(workflow: BpmnWorkflow, inputs: dict, actor: str) -> None:
    tasks.hand_back(_find_task(workflow, inputs["task_id"]), clock.now())


def _apply_delegate(workflow: BpmnWorkflow, inputs: dict, actor: str) -> None:
    tasks.delegate(_find_task(workflow, inputs["task_id"]), inputs["to"])


def _apply_claim(workflow: BpmnWorkflow, inputs: dict, actor: str) -> None:
    task = _find_task(workflow, inputs["task_id"])
    task._set_internal_data(assignee=actor)


def _apply_unclaim(workflow: BpmnWorkflow, inputs: dict, actor: str) -> None:
    task = _find_task(workflow, inputs["task_id"])
    task.internal_data.pop("assignee", None)


def _apply_message(workflow: BpmnWorkflow, inputs: dict, actor: str) -> None:
    name = inputs["name"]
    waiting = [t for t in workflow.get_tasks(state=TaskState.WAITING)
               if isinstance(getattr(t.task_spec, "event_definition", None), MessageEventDefinition)
               and t.task_spec.event_definition.name == name]
    if not waiting:
        raise Conflict("the instance is not waiting for message %(message)r", message=name)
    event = BpmnEvent(waiting[0].task_spec.event_definition, payload=copy.deepcopy(inputs.get("payload") or {}))
    workflow.send_event(event)
    _run_engine(workflow)


def _apply_timer(workflow: BpmnWorkflow, inputs: dict, actor: str) -> None:
    """What is due: reminders (from the state), escalations (targets logged as input), timers."""
    now = clock.now()
    escalate = inputs.get("escalate") or {}
    for task in workflow.get_tasks(state=TaskState.READY, manual=True):
        if str(task.id) in escalate:
            target = escalate[str(task.id)]
            tasks.escalate(task, target["to"], target["from"], now)
            continue
        remind_at = tasks.parse(task._get_internal_data("remind_at"))
        if remind_at is not None and remind_at < now and not task._get_internal_data("reminded"):
            tasks.remind(task)
    # do_engine_steps does not run fired timers by itself: refresh them first.
    workflow.refresh_timers()
    _run_engine(workflow)


COMMANDS: dict[str, Callable[[BpmnWorkflow, dict, str], None]] = {
    "complete": _apply_complete,
    "claim": _apply_claim,
    "unclaim": _apply_unclaim,
    "message": _apply_message,
    "timer": _apply_timer,
    "hand_back": _apply_hand_back,
    "reply": _apply_reply,
    "delegate": _apply_delegate,
}


def apply_command(command: str, workflow: BpmnWorkflow, inputs: dict, actor: str, script_engine) -> None:
    """Run one logged command on a restored workflow; new user tasks get their holder and due time."""
    COMMANDS[command](workflow, inputs, actor)
    tasks.stamp_new_tasks(workflow, script_engine)
    tasks.route(workflow, inputs.get("route"))  # replay: the holders the command chose, as logged


def new_workflow(loaded: LoadedDefinition, data: dict, script_engine, *, pruned: bool = False) -> BpmnWorkflow:
    """A new instance's workflow, run to its first wait; `pruned`: its tree is pruned after each
    command (engine.pruning; the start logs it, so its replay does the same)."""
    workflow = BpmnWorkflow(loaded.spec, loaded.subprocess_specs, script_engine=script_engine)
    workflow.task_tree.data = copy.deepcopy(data)
    if pruned:
        pruning.start(workflow)
    # A timer start event is the engine's schedule (engine.schedules), not a wait inside the
    # instance: the worker starts the instance when it is due, a person who may start it starts it
    # at once, and either way the instance begins.
    for task in workflow.get_tasks():
        if type(task.task_spec).__name__ == "StartEvent" and \
                isinstance(getattr(task.task_spec, "event_definition", None), TimerEventDefinition):
            task._set_internal_data(event_fired=True)
            if not task.children:  # a cycle timer predicts no path (its cycles would add them)
                task._sync_children(task.task_spec.outputs, TaskState.FUTURE)
                for child in task.children:
                    child.task_spec._predict(child, mask=TaskState.NOT_FINISHED_MASK)
    _run_engine(workflow)
    tasks.stamp_new_tasks(workflow, script_engine)
    return workflow


# --- projections -----------------------------------------------------------------------------

def instance_data(workflow: BpmnWorkflow) -> dict:
    """What the instance knows now: the data of the last completed task, or the start data."""
    task = workflow.last_task or workflow.task_tree
    return task.data


def _business_fields(data: dict) -> tuple[str | None, str | None, float | None]:
    key = next((str(data[f]) for f in BUSINESS_KEY_FIELDS if isinstance(data.get(f), (str, int))), None)
    customer = data.get("customer")
    customer = str(customer) if isinstance(customer, (str, int)) else None
    amount = data.get("amount")
    amount = float(amount) if isinstance(amount, (int, float)) and not isinstance(amount, bool) \
        and bounds.number_problem(amount) is None else None
    # Input is checked at the door (inputs.COLUMN_FIELDS); a script's result is cut to the column.
    return (key[:_H.c.business_key.type.length] if key else key,
            customer[:_H.c.customer.type.length] if customer else customer, amount)


def _timer_due(task) -> datetime | None:
    value = task._get_internal_data("event_value")
    if isinstance(value, dict):  # cycle timer
        value = value.get("next") if value.get("cycles") != 0 else None
    if not isinstance(value, str):
        return None
    try:
        return TimerEventDefinition.get_datetime(value).astimezone(timezone.utc)
    except ValueError:
        return None


@dataclass
class Projection:
    business_key: str | None
    customer: str | None
    amount: float | None
    tasks: list[dict]


@dataclass
class _Rows:
    """An instance's projection rows as its state gives them (`_rows`), keyed by primary key."""
    business_key: str | None
    customer: str | None
    amount: float | None
    human: dict[str, dict]
    timers: dict[str, dict]
    waits: dict[str, dict]
    keys: dict[str, list[dict]]  # wait id -> its message_key rows


# Columns of a human_task row that are not a function of the task and the instance's data: the
# office scope and the four-eyes bar depend on the task's role and the initiator only, so a task
# that is open before and after a command has the same ones (`_rows` leaves them out for "before").
_SCOPED = ("office_scope", "barred")


def _rows(instance_id: str, workflow: BpmnWorkflow, loaded: LoadedDefinition,
          duties: "_Duties | None") -> _Rows:
    """The projection rows of `workflow`, in memory. Without `duties` (the state before a command,
    diffed against), office_scope and barred are left out (`_SCOPED`): no office is read."""
    data = instance_data(workflow)
    key, customer, amount = _business_fields(data)
    human, timers, waits, keys = {}, {}, {}, {}
    for task in workflow.get_tasks(state=TaskState.READY | TaskState.WAITING):
        spec = task.task_spec
        element = spec.bpmn_id or spec.name
        if task.state == TaskState.READY and spec.manual:
            props = tasks.properties(spec)
            task_id = str(task.id)
            due_at = tasks.parse(task._get_internal_data("due_at"))
            role = loaded.role_of(spec.lane)
            human[task_id] = {
                "id": task_id, "instance_id": instance_id, "process_id": loaded.process_id,
                "element_id": element, "name": spec.bpmn_name or element,
                "role": role, "office_scope": duties.scope(role) if duties is not None else None,
                # four-eyes: an open approval is not in its submitter's inbox
                "barred": ((duties.initiator or "") if spec.name in loaded.approval_tasks else "")
                if duties is not None else None,
                "assignee": task._get_internal_data("assignee"),
                "form": props.get("formJsonSchemaFilename") or props.get("form"),
                "business_key": key, "customer": customer, "amount": amount,
                "created_at": datetime.fromtimestamp(task.last_state_change, timezone.utc),
                "due_at": due_at, "escalated_from": task._get_internal_data("escalated_from"),
            }
            remind_at = tasks.parse(task._get_internal_data("remind_at"))
            if remind_at is not None and not task._get_internal_data("reminded"):
                timers[f"{task_id}:reminder"] = {
                    "id": f"{task_id}:reminder", "instance_id": instance_id, "element_id": element,
                    "due_at": remind_at, "kind": "reminder", "task_id": task_id}
            if due_at is not None:
                timers[f"{task_id}:escalation"] = {
                    "id": f"{task_id}:escalation", "instance_id": instance_id, "element_id": element,
                    "due_at": due_at, "kind": "escalation", "task_id": task_id}
        elif task.state == TaskState.WAITING:
            definition = getattr(spec, "event_definition", None)
            if isinstance(definition, TimerEventDefinition):
                due = _timer_due(task)
                if due is not None:
                    timers[str(task.id)] = {"id": str(task.id), "instance_id": instance_id, "element_id": element,
                                            "due_at": due, "kind": "timer", "task_id": None}
            elif isinstance(definition, MessageEventDefinition):
                waits[str(task.id)] = {"id": str(task.id), "instance_id": instance_id,
                                       "message": definition.name, "element_id": element, "keyed": True}
                keys[str(task.id)] = message_keys(str(task.id), instance_id, definition.name, loaded.messages, data)
    return _Rows(key, customer, amount, human, timers, waits, keys)


def _changed(before: dict[str, dict], after: dict[str, dict], ignore: tuple[str, ...] = ()
             ) -> tuple[list[dict], list[dict], list[dict]]:
    """(rows gone, rows new, rows changed) from `before` to `after`, both keyed by primary key."""
    gone = [row for k, row in before.items() if k not in after]
    new = [row for k, row in after.items() if k not in before]
    changed = [row for k, row in after.items() if k in before
               and any(row[c] != before[k][c] for c in row if c not in ignore)]
    return gone, new, changed


def project(conn: Connection, instance_id: str, workflow: BpmnWorkflow, loaded: LoadedDefinition,
            fresh: bool, duties: "_Duties", before: _Rows | None = None) -> Projection:
    """Write the instance's projection rows from its state, in the caller's transaction; an
    office's or region's task is scoped to the initiator's office or region (`duties.scope`, whose
    office the command's routing may already have read).

    `fresh`: the instance has no rows yet (only INSERTs). Otherwise with `before` (`_rows` of the
    state the command started from, which the rows in the database are, as the revision the
    command checked vouches) only what changed is written: rows gone are deleted, new ones
    inserted, changed ones updated — a command that leaves a table's rows as they were sends it
    nothing. Without `before`, every row of the instance is deleted and written again."""
    rows = _rows(instance_id, workflow, loaded, duties)
    notify = []
    if fresh:
        human, timers = list(rows.human.values()), list(rows.timers.values())
        for table, written in ((_H, human), (_T, timers), (_M, list(rows.waits.values())),
                               (_MK, [k for ks in rows.keys.values() for k in ks])):
            if written:
                _INSERT[table].executemany(conn, written)
        notify = [t["due_at"] for t in timers]
    elif before is None:
        _CLEAR[_H].execute(conn, {"instance_id": instance_id})
        if loaded.has_timers:
            _CLEAR[_T].execute(conn, {"instance_id": instance_id})
        if loaded.has_messages:
            _CLEAR[_M].execute(conn, {"instance_id": instance_id})
            _CLEAR[_MK].execute(conn, {"instance_id": instance_id})
        return project(conn, instance_id, workflow, loaded, True, duties)
    else:
        for table, old, now, ignore in ((_H, before.human, rows.human, _SCOPED), (_T, before.timers, rows.timers, ())):
            gone, new, changed = _changed(old, now, ignore)
            if gone:
                _DELETE_BY_ID[table].executemany(conn, [{"w_id": r["id"], "instance_id": instance_id} for r in gone])
            if changed:
                _UPDATE_BY_ID[table].executemany(conn, [{"w_id": r["id"], "w_instance_id": instance_id,
                                                               **{f"v_{c}": v for c, v in r.items() if c != "id"}}
                                                              for r in changed])
            if new:
                _INSERT[table].executemany(conn, new)
            if table is _T:
                notify = [t["due_at"] for t in (*new, *changed)]
        # Waits are few: when they or their keys differ, the instance's are deleted by instance
        # and written again (not by the ids `before` names: a wait from before migration 0017 has
        # no keys yet, and rewriting it keys it).
        if before.waits != rows.waits or before.keys != rows.keys:
            _CLEAR[_M].execute(conn, {"instance_id": instance_id})
            _CLEAR[_MK].execute(conn, {"instance_id": instance_id})
            for table, written in ((_M, list(rows.waits.values())),
                                   (_MK, [k for ks in rows.keys.values() for k in ks])):
                if written:
                    _INSERT[table].executemany(conn, written)
    wakeup.notify(conn, notify)  # PostgreSQL: a sleeping worker wakes for a new or moved due row
    return Projection(rows.business_key, rows.customer, rows.amount, list(rows.human.values()))


def key_value(value: Any) -> str:
    """A correlation value as message_key stores and looks it up: its text (as `str` gives it), or
    when longer than the column the digest of that text."""
    text = str(value)
    if len(text) <= _MK.c.value.type.length:
        return text
    return "sha256:" + state.digest(text)


def message_keys(wait_id: str, instance_id: str, name: str, rules: Mapping, data: dict) -> list[dict]:
    """The message_key rows of one wait for message `name`: a row per key the message's
    `correlation` property declares (`rules`: definitions.message_rules) that the instance's data
    holds; a key the data lacks has no row (no sender can name it)."""
    rule = rules.get(name)
    return [{"wait_id": wait_id, "key": k, "instance_id": instance_id, "message": name,
             "value": key_value(data[k])}
            for k in (rule.correlation if rule is not None else ()) if data.get(k) is not None]


def _unkeyed(name: str):
    """The instances with a wait for `name` whose keys are not written yet (from before 0017)."""
    return select(_M.c.instance_id).where(_M.c.message == name, _M.c.keyed == false())


def _waiting_for(session: Session, name: str, correlation: dict, rules: dict, only_these: bool) -> list:
    """The instances waiting for message `name` that `correlation` names, found by index: those
    whose business key is every correlation value (instance.business_key), and those whose
    message_key rows hold each correlation key their process declares for `name` — the first key
    it declares drives the lookup (message, key, value), the others are probed by primary key. A
    correlation key their process does not declare is compared with their data (those candidates
    only are restored). `rules`: definition id -> its MessageRule for `name`; `only_these`: only
    instances of those definitions (a sender's). Without a correlation, all waiting for `name`."""
    waiting = (select(_M.c.instance_id, _I.c.definition_id)
               .join(_I, _I.c.id == _M.c.instance_id).where(_M.c.message == name))
    if only_these:
        waiting = waiting.where(_I.c.definition_id.in_(sorted(rules)))
    if not correlation:
        return session.execute(waiting.distinct()).all()
    found: dict[str, Any] = {}
    values = set(correlation.values())
    if len(values) == 1 and bounds.fits_key(next(iter(values)), _I.c.business_key.type.length):
        # From the instances with that business key (its index), not from every wait for `name`;
        # the versions are filtered here, not in SQL: SQLite (no statistics) would take the
        # definition_id index, every instance of the version, instead.
        by_key = (select(_I.c.id.label("instance_id"), _I.c.definition_id)
                  .where(_I.c.business_key == next(iter(values)),
                         exists().where(_M.c.instance_id == _I.c.id, _M.c.message == name)))
        for row in session.execute(by_key):
            if not only_these or row.definition_id in rules:
                found[row.instance_id] = row
    groups: dict[tuple[str, ...], list[int]] = {}  # the keys of `correlation` a version declares
    for definition_id, rule in rules.items():
        own = tuple(k for k in rule.correlation if k in correlation)
        if own:
            groups.setdefault(own, []).append(definition_id)
    for own, definition_ids in groups.items():
        first, *rest = own
        lookup = (select(_MK.c.instance_id, _I.c.definition_id).join(_I, _I.c.id == _MK.c.instance_id)
                  .where(_MK.c.message == name, _MK.c.key == first,
                         _MK.c.value == key_value(correlation[first])))
        for key in rest:
            other = _MK.alias()
            lookup = lookup.where(exists().where(other.c.wait_id == _MK.c.wait_id, other.c.key == key,
                                                 other.c.value == key_value(correlation[key])))
        others = {k: v for k, v in correlation.items() if k not in own}
        for row in session.execute(lookup.distinct()):
            if row.instance_id in found or row.definition_id not in definition_ids:
                continue
            if others:  # not declared by its process: compared with its data, as before the index
                stored = session.execute(select(_I.c.state).where(_I.c.id == row.instance_id)).scalar_one()
                loaded = loaded_definition(session, row.definition_id)
                workflow, _ = state.load_state(stored, loaded.spec, loaded.subprocess_specs)
                data = instance_data(workflow)
                if not all(str(data.get(k)) == v for k, v in others.items()):
                    continue
            found[row.instance_id] = row
    return list(found.values())


def _status(workflow: BpmnWorkflow) -> str:
    if workflow.is_completed():
        return "completed" if workflow.success else "cancelled"
    return "running"


def _entry_hash(instance_id: str, seq: int, at: datetime, actor: str, command: str, inputs: dict,
                state_hash: str, prev_hash: str) -> str:
    return state.digest(state.canonical({
        # in UTC, as the log stores it: a command given its time in +08:00 still verifies
        "instance": instance_id, "seq": seq, "at": at.astimezone(timezone.utc).isoformat(), "actor": actor,
        "command": command, "input": inputs, "state": state_hash, "prev": prev_hash}))


def _failure_sentence(exc: BaseException, command: str) -> tuple[str, str | None]:
    """One sentence naming what failed and where, and the BPMN element id if known."""
    task = getattr(exc, "task", None)
    element = None
    where = f"the {command} command"
    if task is not None:
        spec = task.task_spec
        element = spec.bpmn_id or spec.name
        label = f" ({spec.bpmn_name})" if spec.bpmn_name else ""
        where = f"{type(spec).__name__.replace('Task', ' task').lower().strip()} '{element}'{label}"
    detail = exc.error_line if getattr(exc, "error_line", None) else None
    base = str(exc).strip().rstrip(".") or type(exc).__name__
    if isinstance(exc, SpiffWorkflowException):
        base = exc.args[0] if exc.args else base
        inner = getattr(exc, "exception", None)
        if inner is not None and str(inner) and str(inner) not in base:
            base = f"{base} ({inner})"
    line = f" at line {exc.line_number}" if getattr(exc, "line_number", None) else ""
    message = f"{where} failed{line}: {base}"
    if detail:
        message += f" [{detail.strip()}]"
    return message, element


# --- failed timers: retried by the worker, with back-off, a bounded number of times ------------

def timer_retry_policy() -> tuple[int, float]:
    """(retries after the first failure, first delay in seconds): BPM_TIMER_RETRIES (default 3)
    and BPM_TIMER_RETRY_SECONDS (default 60); each delay is four times the one before."""
    try:
        return (int(os.environ.get("BPM_TIMER_RETRIES") or 3),
                float(os.environ.get("BPM_TIMER_RETRY_SECONDS") or 60))
    except ValueError:
        raise ValueError("BPM_TIMER_RETRIES and BPM_TIMER_RETRY_SECONDS must be numbers") from None


def retry_delay(attempts: int, base: float) -> timedelta:
    return timedelta(seconds=base * 4 ** (attempts - 1))


# --- the runtime -----------------------------------------------------------------------------

# --- exactly once: a start or complete sent with a request id -----------------------------------
# The id (API `Idempotency-Key`, CLI `--request-id`, the pages' hidden `request_id`) is taken in
# the command's own transaction and its result written there too: a request sent again after a
# lost reply gets the first result and changes nothing. Two at once: SQLite writers are serial;
# on PostgreSQL the second waits on the first's row and, on its unique violation, answers with
# what the first committed.

REQUEST_ID_KEPT = timedelta(hours=24)  # how long an id answers with its first result
REQUEST_ID_MAX = 200
_K = IdempotencyKey.__table__


@dataclass(frozen=True)
class _Request:
    username: str
    key: str
    command: str
    fingerprint: str  # what was asked: the same id with other content is refused


def _request(request_id: Any, actor: str, command: str, asked: dict) -> _Request | None:
    if request_id is None:
        return None
    if (not isinstance(request_id, str) or not 0 < len(request_id) <= REQUEST_ID_MAX
            or not request_id.isprintable() or request_id != request_id.strip()):
        raise InvalidInput("a request id must be 1 to %(max)d printable characters, without spaces "
                           "around them", {"request_id": f"1 to {REQUEST_ID_MAX} printable characters"},
                           max=REQUEST_ID_MAX)
    # ASCII JSON: the fingerprint of any data, lone surrogates included, without encoding errors.
    asked_text = json.dumps({"command": command, **asked}, sort_keys=True, separators=(",", ":"), default=str)
    return _Request(actor, request_id, command, state.digest(asked_text))


_SELECT_REQUEST = Prepared(select(_K.c.command, _K.c.fingerprint, _K.c.result, _K.c.created_at).where(
    _K.c.username == bindparam("username"), _K.c.key == bindparam("key")))
_FORGET_REQUEST = Prepared(delete(_K).where(_K.c.username == bindparam("username"),
                                            _K.c.key == bindparam("key")))
_INSERT_REQUEST = Prepared(insert(_K))
_KEEP_RESULT = Prepared(update(_K).where(_K.c.username == bindparam("w_username"), _K.c.key == bindparam("w_key"))
                        .values(result=bindparam("v_result"), instance_id=bindparam("v_instance_id")))


def _request_row(executor, request: _Request):
    return _SELECT_REQUEST.first(executor, {"username": request.username, "key": request.key})


TaskCheck = Callable[[Any, access.Person], None]


def _acting_user() -> str | None:
    """Engine service for BPMN: the user whose command runs this step — after a user task, the one
    who completed it (e.g. the contract's approver, 总经办)."""
    ctx = determinism.current()
    if ctx is None:
        raise RuntimeError("acting_user runs only as a step of a process instance")
    return ctx.actor


class Runtime:
    """Runs commands against instances stored in `store`."""

    def __init__(self, store: Store, services: Mapping[str, Callable[..., Any]] | None = None,
                 script_engine=None, lookups: Mapping[str, forms.Lookup] | None = None):
        determinism.install()
        calendar.configured()  # a bad BPM_WORKING_CALENDAR stops here, not at the first command
        self.store = store
        from .customers import grant_service  # (engine.customers imports this module)
        from .credit import apply_service, proposal_service
        self.services = {"superior_of": self._superior_of, "acting_user": _acting_user,
                         "grant_archive_access": grant_service,
                         "credit_proposal": proposal_service, "apply_credit_changes": apply_service,
                         **records.SERVICES, **(services or {})}
        self.lookups = dict(lookups or {})
        self._schedules: tuple[float, list] | None = None  # (read again after, timer processes)
        self._runs_started: set[tuple[str, datetime]] = set()  # runs of timer starts known to be started
        if script_engine is None:
            from .scripts import SandboxedScriptEngine
            script_engine = SandboxedScriptEngine(self.services)
        self.script_engine = script_engine

    # --- starting ---

    def start(self, process_id: str, actor: str, data: Any = None, *, at: datetime | None = None,
              version: int | None = None, request_id: str | None = None) -> InstanceView:
        """Start an instance; with `request_id`, once: sent again, the first result (exactly once)."""
        return self._start(process_id, actor, data, at=at, version=version, request_id=request_id)

    @observe.named("start")  # its latency for the metrics (web.ops)
    def _start(self, process_id: str, actor: str, data: Any = None, *, at: datetime | None = None,
               version: int | None = None, request_id: str | None = None,
               scheduled: datetime | None = None) -> InstanceView:
        """`start`, or with `scheduled` the run of a timer start event due then: started by the
        worker (`SYSTEM_ACTOR`, no person, no start right), its run row written in the same
        transaction (engine.schedules: a run starts once, whatever the number of workers)."""
        data = {} if data is None else data
        if not isinstance(data, dict):
            raise InvalidInput("start data must be a JSON object")
        if not bounds.fits_key(process_id, _DEF.c.process_id.type.length):
            raise NotFound("there is no deployed process %(process)r", process=_shown(process_id))
        _fit(data, "start data")
        request = _request(request_id, actor, "start", {"process_id": process_id, "version": version, "data": data})
        at = (at or clock.now()).astimezone(timezone.utc)  # the log hashes the time as UTC text
        budget = max_engine_steps()
        working = calendar.configured()
        instance_id = str(uuid.uuid4())
        inputs: dict = {"process_id": process_id, "version": version, "data": data}
        if scheduled is not None:
            inputs["scheduled_for"] = scheduled.isoformat()
        if pruning_on():
            inputs["pruned"] = True
        try:
            with self.store.transaction() as conn:
                who = person(conn, actor) if scheduled is None else access.Person(
                    SYSTEM_ACTOR, SYSTEM_ACTOR, frozenset(), None, None)
                if request is not None and (first := self._claim(conn, request, at)) is not None:
                    return first
                found = (_SELECT_LATEST_DEFINITION if version is None else _SELECT_DEFINITION_VERSION
                         ).first(conn, {"process_id": process_id, "version": version})
                if found is None:
                    if version:
                        raise NotFound("process %(process)r has no version %(version)s",
                                       process=process_id, version=version)
                    raise NotFound("there is no deployed process %(process)r", process=process_id)
                inputs["version"] = found.version
                loaded = loaded_definition(conn, found.id)
                if scheduled is not None:  # the engine's own data, which nobody typed
                    schedules.record_run(conn, process_id, scheduled, instance_id, at)
                else:
                    _check_starter(who, loaded)
                    if loaded.start_form:
                        # In a command of its own, so a lookup may read business records; it changes nothing.
                        with command_context(CommandContext(instance_id, at, conn=conn)):
                            data = self._checked(loaded.start_form, loaded.forms[loaded.start_form], data)
                    else:
                        self._declared_only(None, None, data)  # no form: anything but the engine's fields
                data = {**data, "initiator": who.username}
                inputs["data"] = data
                ctx = CommandContext(instance_id, at, conn=conn, calendar=working, actor=who.username)
                with command_context(ctx), _budgeted(budget):
                    try:
                        workflow = new_workflow(loaded, data, self.script_engine,
                                                pruned=bool(inputs.get("pruned")))
                    except EngineError:
                        raise
                    except Exception as exc:
                        raise _ExecutionFailed(exc) from exc
                    duties = _Duties(conn, loaded, who.username)
                    routes = duties.route(workflow, set())
                    if routes:
                        tasks.route(workflow, routes)
                        inputs["route"] = routes
                    try:
                        prune_tree(workflow, loaded)
                        _check_track(workflow)
                    except Exception as exc:
                        raise _ExecutionFailed(exc) from exc
                if ctx.service_results:
                    inputs["service_results"] = ctx.service_results
                if ctx.deadlines:
                    inputs["deadlines"] = ctx.deadlines
                text = state.dump_state(workflow, ctx.counter)
                state_hash = state.digest(text)
                status = _status(workflow)
                log_hash = _entry_hash(instance_id, 1, at, who.username, "start", inputs, state_hash,
                                       GENESIS_HASH)
                key, customer, amount = _business_fields(instance_data(workflow))
                _INSERT[_I].execute(conn, {
                    "id": instance_id, "definition_id": loaded.id, "process_id": process_id,
                    "business_key": key, "customer": customer, "amount": amount,
                    "status": status, "initiator": who.username, "state": text,
                    "state_hash": state_hash, "revision": 1, "log_hash": log_hash,
                    "created_at": at, "updated_at": at,
                    "completed_at": at if status != "running" else None})
                projection = project(conn, instance_id, workflow, loaded, fresh=True, duties=duties)
                _append_log(conn, instance_id, 1, at, who.username, "start", None, inputs,
                                 state_hash, GENESIS_HASH, log_hash)
                self._notify(conn, ctx.events, instance_id, at, loaded)
                if ctx.archive_grants:
                    _record_archive_grants(conn, ctx, who.username, who.username, instance_id, at)
                if ctx.records:
                    records.write(conn, ctx.records, instance_id=instance_id, process_id=process_id, at=at)
                if ctx.credit_changes:
                    _record_credit_changes(conn, ctx, who.username, instance_id, at)
                view = InstanceView(instance_id, process_id, loaded.version, status,
                                    instance_data(workflow), [_task_view(t) for t in projection.tasks],
                                    projection.business_key, who.username, at, at)
                return self._keep(conn, request, view) if request is not None else view
        except _ExecutionFailed as failure:
            raise self._incident(failure.original, None, process_id, "start", inputs, actor, at) from None
        except IntegrityError:
            if (first := self._replayed(request)) is None:
                raise
            return first

    def start_scheduled(self, now: datetime | None = None) -> tuple[list[str], dict[str, str]]:
        """Start the run due by `now` of every current process whose start event is a timer
        (engine.schedules), each run once: (ids started, {process id: failure sentence})."""
        now = now or clock.now()
        due: list[tuple[str, datetime]] = []
        for process_id, timer, first in self._timer_processes():
            instant = schedules.due_run(*timer, first, now)
            if instant is None or (process_id, instant) in self._runs_started:
                continue
            with self.store.read() as session:
                if session.get(TimerStart, (process_id, instant)) is not None:
                    self._runs_started.add((process_id, instant))
                    continue
            due.append((process_id, instant))
        started, failed = [], {}
        for process_id, instant in due:
            try:
                view = self._start(process_id, SYSTEM_ACTOR, {"scheduled_for": instant.isoformat()},
                                   at=now, scheduled=instant)
            except IntegrityError:
                continue  # another worker started this run meanwhile
            except (CommandFailed, InvalidInput, Conflict) as exc:
                # Failed (an incident to retry), or refused by the process (a month's targets
                # started by hand already): kept, so the run is not tried at every pass.
                failed[process_id] = str(exc)
                try:
                    with self.store.transaction() as conn:
                        schedules.record_failure(conn, process_id, instant, getattr(exc, "incident_id", None), now)
                except IntegrityError:
                    pass
                continue
            self._runs_started.add((process_id, instant))
            started.append(view.id)
        return started, failed

    def _timer_processes(self) -> list[tuple[str, tuple[str, str], datetime]]:
        """(process id, timer, first deployment) of the current versions with a timer start event;
        read again every SCHEDULES_KEPT seconds, so a worker pass with nothing due costs no query."""
        kept = self._schedules
        if kept is not None and time.monotonic() < kept[0]:
            return kept[1]
        with self.store.read() as session:
            latest: dict[str, Any] = {}
            first: dict[str, datetime] = {}
            for row in session.execute(select(_DEF.c.id, _DEF.c.process_id, _DEF.c.version, _DEF.c.deployed_at)):
                if row.process_id not in latest or row.version > latest[row.process_id].version:
                    latest[row.process_id] = row
                if row.process_id not in first or row.deployed_at < first[row.process_id]:
                    first[row.process_id] = row.deployed_at
            found = []
            for process_id, row in sorted(latest.items()):
                timer = loaded_definition(session, row.id).timer_start
                if timer is not None:
                    found.append((process_id, timer, first[process_id]))
        self._schedules = (time.monotonic() + SCHEDULES_KEPT, found)
        return found

    # --- acting on tasks ---

    def claim(self, task_id: str, actor: str, *, at: datetime | None = None) -> TaskView:
        def check(task_row, who: access.Person) -> None:
            if task_row.assignee == who.username:
                return
            if task_row.assignee is not None:
                raise Conflict("task %(task)s is already held by %(user)s", task=task_row.id, user=task_row.assignee)
            if task_row.role not in who.roles:
                raise Forbidden("%(user)s may not claim task %(task)s: it is for role %(role)s",
                                user=who.username, task=task_row.id, role=task_row.role)
            if not access.in_reach(who, task_row.office_scope):
                raise Forbidden("%(user)s may not claim task %(task)s: it is for the %(role)s of %(office)s",
                                user=who.username, task=task_row.id, role=task_row.role,
                                office=task_row.office_scope)

        def inspect(conn, workflow, row, loaded, who, inputs) -> None:
            self._check_level(workflow, row, loaded, who, task_id)
        view = self._unit_of_work("claim", actor, {"task_id": task_id}, at, task_id=task_id, check=check,
                                  inspect=inspect)
        return next(t for t in view.tasks if t.id == task_id)

    def unclaim(self, task_id: str, actor: str, *, at: datetime | None = None) -> TaskView:
        def check(task_row, who: access.Person) -> None:
            if task_row.assignee != who.username:
                raise Forbidden("%(user)s does not hold task %(task)s, so cannot give it back",
                                user=who.username, task=task_row.id)

        def inspect(conn, workflow, row, loaded, who, inputs) -> None:
            task = _find_task(workflow, task_id)
            # separation of duties gave it to someone outside its role (a superior): back to the
            # role it would be with no one who may take it
            if task is not None and task._get_internal_data("routed") and _role_of(loaded, task) not in who.roles:
                raise Forbidden("task %(task)s was given to %(user)s because no one else may take it, "
                                "so it cannot go back to its role", task=task_id, user=who.username)
        view = self._unit_of_work("unclaim", actor, {"task_id": task_id}, at, task_id=task_id, check=check,
                                  inspect=inspect)
        return next(t for t in view.tasks if t.id == task_id)

    def complete(self, task_id: str, actor: str, data: Any = None, *,
                 at: datetime | None = None, request_id: str | None = None) -> InstanceView:
        """Submit a task's form; with `request_id`, once: sent again, the first result."""
        data = {} if data is None else data
        if not isinstance(data, dict):
            raise InvalidInput("task data must be a JSON object")
        _fit(data, "task data")
        request = _request(request_id, actor, "complete", {"task_id": task_id, "data": data})

        def check(task_row, who: access.Person) -> None:
            if not access.may_act(who, task_row.role, task_row.assignee, task_row.office_scope):
                if task_row.assignee:
                    raise Forbidden("%(user)s may not complete task %(task)s: it is held by %(holder)s",
                                    user=who.username, task=task_row.id, holder=task_row.assignee)
                if task_row.role in who.roles:
                    raise Forbidden("%(user)s may not complete task %(task)s: it is for the %(role)s of %(office)s",
                                    user=who.username, task=task_row.id, role=task_row.role,
                                    office=task_row.office_scope)
                raise Forbidden("%(user)s may not complete task %(task)s: it is for role %(role)s",
                                user=who.username, task=task_row.id, role=task_row.role)

        def inspect(conn, workflow, row, loaded, who, inputs) -> None:
            task = _find_task(workflow, task_id)
            if task is None or task.state != TaskState.READY:
                return  # the command itself says what is wrong
            form = loaded.form_of(task.task_spec)
            if form is not None:
                inputs["data"] = self._checked(form[0], form[1], inputs["data"], shown=task.data)
            else:
                self._declared_only(None, None, inputs["data"])  # no form: anything but the engine's fields
            if task.task_spec.name in loaded.approval_tasks:
                seen = tasks.editors(workflow, row.initiator, loaded.approval_tasks)
                if who.username == seen.initiator:
                    raise Forbidden("four-eyes: %(user)s submitted this request and may not approve it; "
                                    "another %(role)s must", user=who.username, role=_role_of(loaded, task))
                if who.username == seen.last_editor:
                    raise Forbidden("four-eyes: %(user)s last edited this request and may not approve it; "
                                    "another %(role)s must", user=who.username, role=_role_of(loaded, task))
                self._check_level(workflow, row, loaded, who, task_id)
        return self._unit_of_work("complete", actor, {"task_id": task_id, "data": data}, at,
                                  task_id=task_id, check=check, inspect=inspect, request=request)

    def _check_level(self, workflow, row, loaded, who: access.Person, task_id: str) -> None:
        """`who` may take task `task_id` only if it is not a second level of the request for
        them, nor their own request's approval (access.level_refusal)."""
        task = _find_task(workflow, task_id)
        if task is None or task.task_spec.name not in loaded.approval_tasks:
            return
        levels = tasks.levels(workflow, task, loaded.approval_tasks, loaded.submitter_lane)
        refusal = access.level_refusal(who.username, task.task_spec.name, row.initiator, levels)
        if refusal == "submitted":
            raise Forbidden("four-eyes: %(user)s submitted this request and may not approve it; "
                            "another %(role)s must", user=who.username, role=_role_of(loaded, task))
        if refusal == "other_level":
            raise Forbidden("%(user)s already acted on another level of this request; one person approves "
                            "at most one level, so another %(role)s must take task %(task)s",
                            user=who.username, role=_role_of(loaded, task), task=task_id)

    def hand_back(self, task_id: str, actor: str, *, at: datetime | None = None) -> TaskView:
        """The superior an overdue task was escalated to returns it to its previous holder."""
        def check(task_row, who: access.Person) -> None:
            if task_row.assignee != who.username:
                raise Forbidden("%(user)s does not hold task %(task)s, so cannot hand it back",
                                user=who.username, task=task_row.id)

        def inspect(conn, workflow, row, loaded, who, inputs) -> None:
            task = _find_task(workflow, task_id)
            if not task._get_internal_data("escalated_from"):
                raise Forbidden("task %(task)s was not escalated to %(user)s; there is no one to hand it back to",
                                task=task_id, user=who.username)
        view = self._unit_of_work("hand_back", actor, {"task_id": task_id}, at, task_id=task_id,
                                  check=check, inspect=inspect)
        return next(t for t in view.tasks if t.id == task_id)

    def reply(self, task_id: str, actor: str, kind: Any, *, expected_by: Any = None, reason: Any = None,
              at: datetime | None = None) -> TaskView:
        """The reply to the superior on a task (复命, seed 000: within 4 hours, done or not): "in_progress"
        with the time it is expected to be done by, or "cannot_finish" with the reason. Whoever may act
        on the task replies (access.may_reply); it is logged, the replier's superior is notified, and
        the first reply gives the task a fresh due window (tasks.reply). The task's data is untouched."""
        _known_task(task_id)
        at = (at or clock.now()).astimezone(timezone.utc)
        answer = _reply_input(kind, expected_by, reason, at)

        def check(task_row, who: access.Person) -> None:
            if access.may_reply(who, task_row.role, task_row.assignee, task_row.office_scope):
                return
            if task_row.assignee:
                raise Forbidden("%(user)s may not reply on task %(task)s: it is held by %(holder)s",
                                user=who.username, task=task_row.id, holder=task_row.assignee)
            if task_row.role in who.roles:
                raise Forbidden("%(user)s may not reply on task %(task)s: it is for the %(role)s of %(office)s",
                                user=who.username, task=task_row.id, role=task_row.role,
                                office=task_row.office_scope)
            raise Forbidden("%(user)s may not reply on task %(task)s: it is for role %(role)s",
                            user=who.username, task=task_row.id, role=task_row.role)

        def inspect(conn, workflow, row, loaded, who, inputs) -> None:
            inputs["reply"]["to"] = who.superior  # whom the reply goes to (直接上级), as logged
        view = self._unit_of_work("reply", actor, {"task_id": task_id, "reply": answer}, at,
                                  task_id=task_id, check=check, inspect=inspect)
        return next(t for t in view.tasks if t.id == task_id)

    # --- drafts: form data kept with the task, not yet submitted (not a change of the instance) ---

    def save_draft(self, task_id: str, actor: str, data: Any, *, at: datetime | None = None) -> None:
        if not isinstance(data, dict):
            raise InvalidInput("draft data must be a JSON object")
        _known_task(task_id)
        _fit(data, "draft data")
        at = at or clock.now()
        with self.store.write() as session:
            who = person(session, actor)
            row = open_task(session, task_id, who, access.may_act, "%(user)s may not edit task %(task)s")
            # A draft is half a form, not yet checked, but it too holds only what the form declares.
            loaded = loaded_definition(session, session.get(Instance, row.instance_id).definition_id)
            self._declared_only(row.form, loaded.forms.get(row.form) if row.form else None, data)
            draft = session.get(TaskDraft, task_id)
            if draft is None:
                session.add(TaskDraft(task_id=task_id, instance_id=row.instance_id, username=who.username,
                                      data=copy.deepcopy(data), saved_at=at))
            else:
                draft.username, draft.data, draft.saved_at = who.username, copy.deepcopy(data), at

    def _declared_only(self, name: str | None, schema: dict | None = None, data: Any = None) -> None:
        """Refuse data that writes a field the step's form does not let it write (forms.undeclared)."""
        refused = forms.undeclared(schema, data)
        if refused:
            raise FormRejected(str(forms.FormError(name or "(none: any JSON object)", refused)), refused)

    def _checked(self, name: str, schema: dict, data: dict, shown: dict | None = None) -> dict:
        try:
            return forms.validate(name, schema, data, self.lookups, shown)
        except forms.FormError as exc:
            raise FormRejected(str(exc), exc.fields) from None

    def _claim(self, conn: Connection, request: _Request, at: datetime) -> InstanceView | None:
        """The first result when `request`'s id was used within REQUEST_ID_KEPT, else None with
        the id taken for this command, in its transaction (an expired use of it let go first;
        the worker lets go of the others, `forget_requests`)."""
        row = _request_row(conn, request)
        if row is not None:
            if row.created_at >= at - REQUEST_ID_KEPT:
                return self._first_result(request, row)
            _FORGET_REQUEST.execute(conn, {"username": request.username, "key": request.key})
        _INSERT_REQUEST.execute(conn, {"username": request.username, "key": request.key,
                                       "command": request.command, "fingerprint": request.fingerprint,
                                       "instance_id": None, "result": None, "created_at": at})
        return None

    @staticmethod
    def _first_result(request: _Request, row) -> InstanceView:
        if row.command != request.command or row.fingerprint != request.fingerprint:
            raise Conflict("request id %(key)r was already used for a different request; nothing was "
                           "changed (send a new id with a new request)", key=request.key)
        return InstanceView.from_json(row.result)

    @staticmethod
    def _keep(conn: Connection, request: _Request, view: InstanceView) -> InstanceView:
        _KEEP_RESULT.execute(conn, {"w_username": request.username, "w_key": request.key,
                                    "v_result": view.as_json(), "v_instance_id": view.id})
        return view

    def forget_requests(self, now: datetime | None = None) -> int:
        """Let go of request ids older than REQUEST_ID_KEPT (the worker calls this; at most one
        pass a minute, so idle servers do not take the write lock every interval)."""
        now = now or clock.now()
        if now < getattr(self, "_next_forget", now):
            return 0
        self._next_forget = now + timedelta(minutes=1)
        with self.store.transaction() as conn:
            return conn.execute(delete(_K).where(_K.c.created_at < now - REQUEST_ID_KEPT)).rowcount

    def answered(self, actor: str, request_id: Any, command: str, at: datetime | None = None) -> InstanceView | None:
        """The kept result of `actor`'s `command` sent with `request_id`, if there is one: a page
        sent again after its task is gone shows what its first sending did."""
        if not isinstance(request_id, str) or not request_id:
            return None
        with self.store.read() as session:
            row = _request_row(session, _Request(actor, request_id, command, ""))
        if row is None or row.command != command or row.result is None or \
                row.created_at < (at or clock.now()) - REQUEST_ID_KEPT:
            return None
        return InstanceView.from_json(row.result)

    def _replayed(self, request: _Request | None) -> InstanceView | None:
        """After a unique violation: the result the same request committed meanwhile, if it did."""
        if request is None:
            return None
        with self.store.read() as session:
            row = _request_row(session, request)
        return self._first_result(request, row) if row is not None and row.result is not None else None

    def _superior_of(self, username: str) -> str | None:
        """Engine service for BPMN: the direct superior (直接上级) of a user."""
        with self.store.read() as session:
            return _superior(session.connection(), username)

    # --- messages and timers ---

    def message(self, name: str, payload: Any = None, correlation: Mapping[str, str] | None = None,
                *, actor: str | None = None, at: datetime | None = None,
                request_id: str | None = None) -> list[str]:
        """Deliver message `name` to the one waiting instance that matches `correlation`.

        `actor` must hold a role the receiving process lets send it (its message's `sender_roles`);
        None is the operator on the server's shell (CLI.md), logged as such. The keys the process
        names in the message's `correlation` property are required; the instance is looked up by
        them in message_key (written with the wait, engine.store.MessageKey) or by its business
        key, restoring no other instance; a message that matches no waiting instance is refused
        and changes nothing. With `request_id`, once: sent again (a
        double click on the receipts page, a retried API call), the first delivery's result, even
        when the instance no longer waits for it."""
        payload = {} if payload is None else payload
        if not isinstance(payload, dict):
            raise InvalidInput("message data must be a JSON object")
        if not bounds.fits_key(name, _M.c.message.type.length):
            raise NotFound("no instance is waiting for %(what)s", what=f"message {_shown(name)}")
        _fit(payload, "message data")
        _fit(dict(correlation or {}), "correlation")
        correlation = {str(k): str(v) for k, v in (correlation or {}).items()}
        request = _request(request_id, actor if actor is not None else access.OPERATOR, "message",
                           {"name": name, "payload": payload, "correlation": correlation})
        if (first := self._replayed(request)) is not None:
            return [first.id]
        at = at or clock.now()
        with self.store.read() as session:
            who = person(session, actor) if actor is not None else None
            # Which deployed versions receive `name`, and may this sender send it to them?
            rules, senders = {}, set()
            for definition_id in session.scalars(select(_DEF.c.id)):
                rule = loaded_definition(session, definition_id).messages.get(name)
                if rule is None:
                    continue
                roles = access.roles_property(rule.sender_roles) or frozenset()
                senders |= roles
                if who is None or access.may_send(who, roles):
                    rules[definition_id] = rule
            if who is not None and not rules:
                if not senders:
                    raise Forbidden("%(user)s may not send message %(message)s: no role may",
                                    user=who.username, message=name)
                raise Forbidden("%(user)s may not send message %(message)s: only %(roles)s may",
                                user=who.username, message=name, roles=access.roles_text(senders))
            keys = sorted({k for rule in rules.values() for k in rule.correlation})
            missing = [k for k in keys if not correlation.get(k)]
            if missing:
                raise InvalidInput("message %(message)s needs correlation %(keys)s (KEY=VALUE) to find "
                                   "its instance", {"correlation": "required: " + ", ".join(missing)},
                                   message=name, keys=", ".join(missing))
            for key, value in correlation.items():
                if key in payload and str(payload[key]) != value:
                    raise InvalidInput("the message says %(key)s %(payload)s but its correlation says "
                                       "%(value)s", {key: "differs from the correlation"},
                                       key=key, payload=payload[key], value=value)
            unkeyed = session.execute(_unkeyed(name).limit(1)).first() is not None
            if not unkeyed:
                matches = _waiting_for(session, name, correlation, rules, only_these=who is not None)
        if unkeyed:  # waits from before migration 0017: keyed, then looked up in a read begun after
            self._key_waits(name)
            with self.store.read() as session:
                matches = _waiting_for(session, name, correlation, rules, only_these=who is not None)
        described = f"message {name!r}" + (
            " with " + ", ".join(f"{k}={v}" for k, v in correlation.items()) if correlation else "")
        if not matches:
            if (first := self._replayed(request)) is not None:  # the same request, delivered meanwhile
                return [first.id]
            raise self._not_waiting(name, correlation, described)
        if len(matches) > 1:
            raise Conflict("%(count)d instances are waiting for %(what)s; name one with --correlation",
                           count=len(matches), what=described)
        instance_id = matches[0].instance_id
        inputs = {"name": name, "payload": payload, "correlation": correlation}
        view = self._unit_of_work("message", who.username if who else access.OPERATOR, inputs, at,
                                  instance_id=instance_id, request=request)
        return [view.id if view is not None else instance_id]

    def _not_waiting(self, name: str, correlation: dict, described: str) -> EngineError:
        """Why no instance takes the message, in words (NotFound all the same): nothing has the
        business key the correlation names, or the instance that has it has ended (a payment for
        an order already settled) or is not at a step that waits for it now."""
        values = {v for v in correlation.values() if bounds.fits_key(v, _I.c.business_key.type.length)}
        if len(values) == 1:
            (key,) = values
            with self.store.read() as session:
                rows = session.execute(select(_I.c.id, _I.c.status, _I.c.process_id)
                                       .where(_I.c.business_key == key).limit(2)).all()
            if not rows:
                return NotFound("no instance is waiting for %(what)s: nothing is known as %(key)s",
                                what=described, key=key)
            if len(rows) == 1:
                row = rows[0]
                if row.status != "running":
                    return NotFound("no instance is waiting for %(what)s: %(key)s (%(process)s) is already "
                                    "%(status)s", what=described, key=key, process=row.process_id,
                                    status=row.status)
                return NotFound("no instance is waiting for %(what)s: %(key)s (%(process)s) is not at a step "
                                "that takes it now", what=described, key=key, process=row.process_id)
        return NotFound("no instance is waiting for %(what)s", what=described)

    def _key_waits(self, name: str) -> None:
        """Write the correlation keys of the waits for `name` that have none yet (waiting since
        before migration 0017): each instance restored once, locked as a command locks it, its
        rows and `keyed` in one transaction."""
        with self.store.read() as session:
            instance_ids = session.scalars(_unkeyed(name).distinct()).all()
        for instance_id in instance_ids:
            try:
                with self.store.transaction() as conn:
                    row = (_SELECT_INSTANCE if self.store.is_sqlite else _SELECT_INSTANCE_LOCKED).first(
                        conn, {"instance_id": instance_id})
                    waits = conn.execute(select(_M.c.id, _M.c.message).where(
                        _M.c.instance_id == instance_id, _M.c.keyed == false())).all()
                    if row is None or not waits:
                        continue  # a command re-projected it meanwhile
                    loaded = loaded_definition(conn, row.definition_id)
                    workflow, _ = state.load_state(row.state, loaded.spec, loaded.subprocess_specs)
                    data = instance_data(workflow)
                    ids = [w.id for w in waits]
                    conn.execute(delete(_MK).where(_MK.c.wait_id.in_(ids)))
                    rows = [k for w in waits for k in message_keys(w.id, instance_id, w.message,
                                                                   loaded.messages, data)]
                    if rows:
                        conn.execute(insert(_MK), rows)
                    conn.execute(update(_M).where(_M.c.id.in_(ids)).values(keyed=True))
            except IntegrityError:
                continue  # another delivery wrote them at the same moment

    # --- incidents ---

    def retry(self, incident_id: int, actor: str, *, at: datetime | None = None) -> Any:
        with self.store.read() as session:
            person(session, actor)
            incident = session.get(Incident, incident_id)
            if incident is None:
                raise NotFound("there is no incident %(incident)s", incident=incident_id)
            if incident.status != "open":
                raise Conflict("incident %(incident)s is already %(status)s", incident=incident_id,
                               status=incident.status)
            command, inputs, original = incident.command, dict(incident.input), incident.actor
        at = at or clock.now()
        token = _retrying.set(incident_id)
        try:
            if command == "start" and inputs.get("scheduled_for"):  # a timer start event's run,
                # on the version current now (the one that failed may have been replaced since)
                result = self._start(inputs["process_id"], original, inputs.get("data"), at=at,
                                     scheduled=datetime.fromisoformat(inputs["scheduled_for"]))
            elif command == "start":
                result = self.start(inputs["process_id"], original, inputs.get("data"), at=at,
                                    version=inputs.get("version"))
            elif command == "complete":
                result = self.complete(inputs["task_id"], original, inputs.get("data"), at=at)
            elif command == "message":
                sender = None if original in (access.OPERATOR, "system") else original
                result = self.message(inputs["name"], inputs.get("payload"), inputs.get("correlation"),
                                      actor=sender, at=at)
            elif command == "timer":
                result = self.fire_timer(incident.instance_id, at, original)
            else:
                raise InvalidInput("incident %(incident)s records command %(command)r, which cannot be retried",
                                   incident=incident_id, command=command)
        finally:
            _retrying.reset(token)
        with self.store.write() as session:
            row = session.get(Incident, incident_id)
            row.status, row.resolved_at = "resolved", at
        return result

    def retry_due_timers(self, now: datetime) -> list[tuple[str, str | None]]:
        """Retry, without a person, the failed timers whose back-off has passed: (instance id,
        None if it went through or the failure's sentence). A timer incident counts its attempts
        in its `input` (`attempts`); after BPM_TIMER_RETRIES retries it stays open for a person."""
        with self.store.read() as session:
            rows = session.execute(select(_X.c.id, _X.c.instance_id, _X.c.input, _X.c.created_at)
                                   .where(_X.c.status == "open", _X.c.command == "timer")
                                   .order_by(_X.c.created_at)).all()
        most, base = timer_retry_policy()
        outcomes = []
        for row in rows:
            attempts = int((row.input or {}).get("attempts") or 1)
            if attempts > most or row.created_at + retry_delay(attempts, base) > now:
                continue
            token = _retrying.set(row.id)
            try:
                self.fire_timer(row.instance_id, now, "worker")
            except CommandFailed as exc:  # failed again: _incident counted the attempt
                outcomes.append((row.instance_id, str(exc)))
                continue
            except Exception as exc:  # refused (the instance ended), or broke: counted all the same
                if not isinstance(exc, EngineError):
                    exc = self._incident(exc, row.instance_id, "?", "timer", {}, "worker", now)
                    outcomes.append((row.instance_id, str(exc)))
                    continue
                with self.store.write() as session:
                    incident = session.get(Incident, row.id)
                    incident.input = {**(incident.input or {}), "attempts": attempts + 1}
                    incident.created_at = now
                outcomes.append((row.instance_id, str(exc)))
                continue
            finally:
                _retrying.reset(token)
            with self.store.write() as session:
                incident = session.get(Incident, row.id)
                incident.status, incident.resolved_at = "resolved", now
            outcomes.append((row.instance_id, None))
        return outcomes

    def _incident(self, exc: BaseException, instance_id: str | None, process_id: str, command: str,
                  inputs: dict, actor: str, at: datetime) -> CommandFailed:
        message, element = _failure_sentence(exc, command)
        with self.store.write() as session:
            retrying = _retrying.get()
            if retrying is not None:
                row = session.get(Incident, retrying)
                if row.command == "timer":
                    attempts = int((row.input or {}).get("attempts") or 1) + 1
                    row.input = {**(row.input or {}), "attempts": attempts}
                    if attempts > timer_retry_policy()[0]:
                        message += f" — tried {attempts} times; a person must retry it"
                row.message, row.element_id, row.created_at = message, element, at
            else:
                if command == "timer":  # the worker retries it later, with back-off (retry_due_timers)
                    inputs = {**inputs, "attempts": 1}
                row = Incident(instance_id=instance_id, process_id=process_id, command=command,
                               input=inputs, actor=actor, element_id=element, message=message,
                               status="open", created_at=at)
                session.add(row)
            session.flush()
            incident_id = row.id
        return CommandFailed("%(error)s — nothing was changed; incident %(incident)s records it",
                             incident_id, instance_id, error=message, incident=incident_id)

    # --- the unit of work ---

    def fire_next_due(self, now: datetime, exclude: Iterable[str] = ()) -> tuple[str, bool] | None:
        """Take one instance with something due before `now` and fire it: (its id, whether anything
        changed), or None when nothing is due.

        The pick and the work share one transaction: on PostgreSQL the instance row is taken with
        `FOR UPDATE SKIP LOCKED`, so concurrent workers never take the same instance.
        """
        view = self._unit_of_work("timer", "worker", {}, now, pick_due=(now, frozenset(exclude)),
                                  inspect=self._escalations)
        return (view.id, view.changed) if view is not None else None

    def fire_timer(self, instance_id: str, at: datetime, actor: str = "worker") -> InstanceView:
        return self._unit_of_work("timer", actor, {}, at, instance_id=instance_id, inspect=self._escalations)

    def _escalations(self, conn, workflow, row, loaded, who, inputs) -> None:
        """Decide, outside the workflow, whom each overdue task goes to; the log keeps the answer."""
        now = clock.now()
        escalate, breaches = {}, []
        duties = _Duties(conn, loaded, row.initiator)
        for task in workflow.get_tasks(state=TaskState.READY, manual=True):
            due_at = tasks.parse(task._get_internal_data("due_at"))
            if due_at is None or not due_at < now:
                continue
            role = loaded.role_of(task.task_spec.lane)
            scope = duties.scope(role)
            holder = tasks.holder(task) or _sole_member(conn, role, scope)
            if holder is not None and holder == row.initiator and task.task_spec.lane == loaded.submitter_lane:
                target = None  # the submitter's own rework stays with them (a fresh due time)
            else:
                target = _superior(conn, holder) if holder else _common_superior(conn, role, scope)
                if target is not None and task.task_spec.name in loaded.approval_tasks:
                    barred = duties.barred(workflow, task)
                    if duties.twice(target, task, barred):  # skip whoever would act on two levels
                        target = duties.climb(target, task, barred)
            escalate[str(task.id)] = {"to": target, "from": holder}
            breaches.append({"instance_id": row.id, "task_id": str(task.id),
                             "element_id": task.task_spec.bpmn_id or task.task_spec.name,
                             "holder": holder, "escalated_to": target, "due_at": due_at, "breached_at": now})
        if escalate:
            inputs["escalate"] = escalate
        _pending_breaches.set(breaches)

    @observe.timed  # command latency for the metrics (web.ops)
    def _unit_of_work(self, command: str, actor: str, inputs: dict, at: datetime | None, *,
                      task_id: str | None = None, instance_id: str | None = None,
                      check: TaskCheck | None = None, inspect: Callable | None = None,
                      pick_due: tuple[datetime, frozenset[str]] | None = None,
                      request: _Request | None = None) -> InstanceView | None:
        """Read and restore, lock (revision unchanged, or restore again), act, run, project, log,
        commit: one transaction, or nothing at all. The worker's pick (`pick_due`) reads under the
        lock, as it picks."""
        if task_id is not None:
            _known_task(task_id)
        at = (at or clock.now()).astimezone(timezone.utc)  # the log hashes the time as UTC text
        budget = max_engine_steps()
        working = calendar.configured()  # read once, before the transaction: a bad setting changes nothing
        process_id = "?"
        sqlite = self.store.is_sqlite
        token = _pending_breaches.set([])
        try:
            # Read and restore before the write lock (SQLite's writer queue, PostgreSQL's row lock):
            # a command holds the lock only to run, project and write. Refusals are given here,
            # without the lock. With a request id, a refusal waits for the transaction: the
            # request may have been answered already (then its first result is the answer).
            early = None
            if pick_due is None and self.store.shared:
                try:
                    early = self._before_lock(actor, at, task_id, instance_id, check, working, budget)
                except EngineError:
                    if request is None:
                        raise
            with self.store.transaction() as conn:
                if request is not None and (first := self._claim(conn, request, at)) is not None:
                    raise _NothingToDo(first)  # before the task is looked up: it may be done by now
                has_draft = True  # (not known: the DELETE finds out)
                if early is not None:
                    # The instance's revision under the lock: unchanged, what was read before the
                    # lock is what the lock protects (the task's row and the instance's status
                    # change only with a new revision); else read and restore again, locked.
                    now = (_SELECT_REVISION if sqlite else _SELECT_REVISION_LOCKED).first(
                        conn, {"instance_id": early.row.id, "task_id": task_id or ""})
                    if now is None or now.revision != early.row.revision or now.status != early.row.status:
                        early = None
                    else:
                        has_draft = bool(now.has_draft)
                if early is not None:
                    who, row, task_row, loaded = early.who, early.row, early.task_row, early.loaded
                    instance_id, process_id = row.id, row.process_id
                else:
                    who = person(conn, actor) if check is not None else None
                    if pick_due is not None:
                        row = _pick_due(conn, sqlite, *pick_due)
                        if row is None:
                            return None
                        instance_id, task_row = row.id, None
                    else:
                        row, task_row = _locate(conn, not sqlite, task_id, instance_id, who)
                        instance_id = row.id
                    process_id = row.process_id
                    _admit(conn, row, task_row, task_id, who, check)
                    loaded = loaded_definition(conn, row.definition_id)
                ctx = CommandContext(instance_id, at, conn=conn, calendar=working, actor=actor)
                with command_context(ctx), _budgeted(budget):
                    if early is not None:
                        workflow, ctx.counter = early.workflow, early.counter
                    else:
                        workflow, ctx.counter = state.load_state(row.state, loaded.spec, loaded.subprocess_specs)
                    workflow.script_engine = self.script_engine  # lost on every deserialisation
                    prior = _rows(instance_id, workflow, loaded, None)  # what the projection rows hold now
                    if inspect is not None:
                        inspect(conn, workflow, row, loaded, who, inputs)
                    before = ({str(t.id) for t in workflow.get_tasks(state=TaskState.READY, manual=True)}
                              if loaded.approval_tasks else set())
                    duties = _Duties(conn, loaded, row.initiator)
                    try:
                        apply_command(command, workflow, inputs, actor, self.script_engine)
                        routes = duties.route(workflow, before)
                    except EngineError:
                        raise
                    except Exception as exc:
                        raise _ExecutionFailed(exc) from exc
                    if routes:
                        tasks.route(workflow, routes)
                        inputs["route"] = routes
                    try:
                        prune_tree(workflow, loaded)
                        _check_track(workflow)
                    except Exception as exc:
                        raise _ExecutionFailed(exc) from exc
                logged = dict(inputs)
                if ctx.service_results:
                    logged["service_results"] = ctx.service_results
                if ctx.deadlines:
                    logged["deadlines"] = ctx.deadlines
                text = state.dump_state(workflow, ctx.counter)
                state_hash = state.digest(text)
                if command == "timer" and state_hash == row.state_hash:
                    # Nothing was due after all (fired by someone else): roll back, log nothing.
                    raise _NothingToDo(InstanceView(instance_id, row.process_id, loaded.version,
                                                    row.status, instance_data(workflow), [], None,
                                                    row.initiator, row.created_at, at, changed=False))
                seq = row.revision + 1
                status = _status(workflow)
                log_hash = _entry_hash(instance_id, seq, at, actor, command, logged, state_hash, row.log_hash)
                projection = project(conn, instance_id, workflow, loaded, fresh=False, duties=duties,
                                     before=prior)
                done = _UPDATE_INSTANCE.execute(conn, {
                    "w_id": instance_id, "w_revision": row.revision, "v_state": text,
                    "v_state_hash": state_hash, "v_revision": seq, "v_status": status,
                    "v_business_key": projection.business_key, "v_customer": projection.customer,
                    "v_amount": projection.amount, "v_at": at,
                    "v_completed_at": at if status != "running" else None, "v_log_hash": log_hash,
                })
                if done != 1:
                    raise _Race("instance %(instance)s was changed by someone else at the same moment; "
                                "look again and retry", instance=instance_id)
                _append_log(conn, instance_id, seq, at, actor, command, inputs.get("task_id"),
                            logged, state_hash, row.log_hash, log_hash)
                checkpoints.keep(conn, instance_id, seq, text)
                breaches = _pending_breaches.get()
                if breaches:
                    _INSERT_BREACH.executemany(conn, breaches)
                self._notify(conn, ctx.events, instance_id, at, loaded)
                if ctx.archive_grants:
                    _record_archive_grants(conn, ctx, row.initiator, actor, instance_id, at)
                if ctx.records:
                    records.write(conn, ctx.records, instance_id=instance_id, process_id=row.process_id, at=at)
                if ctx.credit_changes:
                    _record_credit_changes(conn, ctx, actor, instance_id, at)
                if status != "running":
                    _DELETE_INSTANCE_DRAFTS.execute(conn, {"instance_id": instance_id})
                elif command == "complete" and has_draft:
                    _DELETE_DRAFT.execute(conn, {"task_id": task_id})
                # The workflow is discarded now, so its data need not be copied.
                view = InstanceView(instance_id, row.process_id, loaded.version, status,
                                    instance_data(workflow), [_task_view(t) for t in projection.tasks],
                                    projection.business_key, row.initiator, row.created_at, at)
                return self._keep(conn, request, view) if request is not None else view
        except _NothingToDo as nothing:
            return nothing.view
        except IntegrityError:
            if (first := self._replayed(request)) is None:
                raise
            return first
        except _ExecutionFailed as failure:
            raise self._incident(failure.original, instance_id, process_id, command, inputs, actor,
                                 at) from None
        except EngineError as refusal:
            if pick_due is None or instance_id is None or isinstance(refusal, _Race):
                raise
            # A refusal of a step the worker ran (a record key another instance owns, a grant by
            # no one who may grant) has nobody to tell: it is the instance's incident, as a failure.
            raise self._incident(refusal, instance_id, process_id, command, inputs, actor, at) from None
        except Exception as exc:
            if pick_due is None or instance_id is None:
                raise
            # A worker must not stall on one instance: park it as an incident and go on.
            raise self._incident(exc, instance_id, process_id, command, inputs, actor, at) from None
        finally:
            _pending_breaches.reset(token)

    def _before_lock(self, actor: str, at: datetime, task_id: str | None, instance_id: str | None,
                     check: TaskCheck | None, working, budget: int) -> "_Early":
        """What a command reads and restores before it takes the write lock, on a read connection
        of its own: the person, the task and instance rows (the access check done on them), the
        definition and the restored workflow."""
        with self.store.reading() as conn:
            who = person(conn, actor) if check is not None else None
            row, task_row = _locate(conn, False, task_id, instance_id, who)
            _admit(conn, row, task_row, task_id, who, check)
            loaded = loaded_definition(conn, row.definition_id)
        # Restored in the command's deterministic context, as under the lock (no connection: a
        # restore reads nothing).
        with command_context(CommandContext(row.id, at, calendar=working, actor=actor)), _budgeted(budget):
            workflow, counter = state.load_state(row.state, loaded.spec, loaded.subprocess_specs)
        return _Early(who, row, task_row, loaded, workflow, counter)

    def _notify(self, conn: Connection, events: list[dict], instance_id: str, at: datetime,
                loaded: LoadedDefinition) -> None:
        if not events:
            return

        def recipients(event: dict) -> list[str]:
            if event.get("username"):
                return [event["username"]]
            role = loaded.role_of(event.get("lane"))
            return list(conn.execute(select(_UR.c.username).where(_UR.c.role_id == role)).scalars()) if role else []

        rows = notifications.rows_for(events, instance_id, at, recipients)
        if rows:
            _INSERT_NOTIFICATION.executemany(conn, rows)
            if notifications.smtp_enabled():
                conn.execute(insert(_O), [{"recipient": r["username"], "subject": r["message"][:300],
                                           "body": r["message"], "status": "pending", "created_at": at}
                                          for r in rows])

    # --- delegation and comments ---

    def delegate(self, task_id: str, actor: str, to: str, note: str = "", *,
                 at: datetime | None = None) -> TaskView:
        """Hand a task to a colleague of the same role, with a note kept as a comment."""
        _known_task(task_id)
        note_problem = bounds.text_problem(note) if isinstance(note, str) else "must be text"
        if note_problem:
            raise InvalidInput("the note %(problem)s", {"note": note_problem}, problem=note_problem)
        at = at or clock.now()
        with self.store.read() as session:
            colleague = person(session, to)

        def check(task_row, who: access.Person) -> None:
            if not access.may_act(who, task_row.role, task_row.assignee, task_row.office_scope):
                raise Forbidden("%(user)s may not delegate task %(task)s", user=who.username, task=task_row.id)
            if task_row.role not in colleague.roles:
                raise InvalidInput("%(user)s does not have role %(role)s, so cannot take task %(task)s",
                                   {"to": f"not a {task_row.role}"}, user=to, role=task_row.role, task=task_row.id)
            if not access.in_reach(colleague, task_row.office_scope):
                raise InvalidInput("%(user)s is not of %(office)s, so cannot take task %(task)s",
                                   {"to": f"not of {task_row.office_scope}"}, user=to,
                                   office=task_row.office_scope, task=task_row.id)
            if to == who.username:
                raise InvalidInput("a task cannot be delegated to oneself", {"to": "choose a colleague"})

        def inspect(conn, workflow, row, loaded, who, inputs) -> None:
            task = _find_task(workflow, task_id)
            if task is not None and task.task_spec.lane == loaded.submitter_lane \
                    and tasks.holder(task) == row.initiator:
                raise Forbidden("task %(task)s is the submitter's own rework and stays with %(user)s",
                                task=task_id, user=row.initiator)
            self._check_level(workflow, row, loaded, colleague, task_id)
            # The note is written in the delegation's transaction: both are kept, or neither.
            if note.strip():
                conn.execute(insert(Comment.__table__).values(
                    instance_id=row.id, task_id=task_id, author=who.username, body=note.strip(), at=at))
        view = self._unit_of_work("delegate", actor, {"task_id": task_id, "to": to, "note": note}, at,
                                  task_id=task_id, check=check, inspect=inspect)
        return next(t for t in view.tasks if t.id == task_id)

    def comment(self, task_id: str | None, actor: str, body: str, *, at: datetime | None = None,
                instance_id: str | None = None) -> dict:
        body = (body or "").strip()
        if not body:
            raise InvalidInput("a comment cannot be empty", {"body": "this field is required"})
        problem = bounds.text_problem(body)
        if problem:
            raise InvalidInput("the comment %(problem)s", {"body": problem}, problem=problem)
        if task_id is not None:
            _known_task(task_id)
        at = at or clock.now()
        with self.store.write() as session:
            who = person(session, actor)
            if instance_id is None:
                row = open_task(session, task_id, who, access.may_act,  # those who may work on it
                                "%(user)s may not comment on task %(task)s")
                instance_id = row.instance_id
            comment = Comment(instance_id=instance_id, task_id=task_id, author=who.username, body=body, at=at)
            session.add(comment)
            session.flush()
            return {"id": comment.id, "task_id": task_id, "author": who.username, "body": body, "at": at}

    def instance(self, instance_id: str, *, viewer: str | None = None) -> InstanceView:
        """The instance's status, data and open tasks, as engine.views reads it (the read side)."""
        from .views import Views
        return Views(self.store, self.script_engine).instance(instance_id, viewer=viewer)

    def draft(self, task_id: str, actor: str) -> dict | None:
        """The draft saved on an open task (engine.views)."""
        from .views import Views
        return Views(self.store, self.script_engine).draft(task_id, actor)


def _record_archive_grants(conn: Connection, ctx: CommandContext, grantee: str, actor: str,
                           instance_id: str, at: datetime) -> None:
    """Archive access granted by this command's steps, for the instance's initiator; refused (and
    the whole command with it) unless the person who acted may grant (engine.customers)."""
    from .customers import record_grants
    record_grants(conn, ctx.archive_grants, grantee=grantee, actor=actor, instance_id=instance_id, at=at)


def _record_credit_changes(conn: Connection, ctx: CommandContext, actor: str, instance_id: str,
                           at: datetime) -> None:
    """Changes of the credit list approved by this command's steps; refused (and the whole command
    with it) unless the person who acted is a department manager (engine.credit)."""
    from .credit import record_changes
    record_changes(conn, ctx.credit_changes, actor=actor, instance_id=instance_id, at=at)


def _append_log(conn: Connection, instance_id: str, seq: int, at: datetime, actor: str,
                command: str, task_id: str | None, inputs: dict, state_hash: str, prev: str,
                entry_hash: str) -> None:
    _INSERT[_L].execute(conn, {
        "instance_id": instance_id, "seq": seq, "at": at, "actor": actor, "command": command,
        "task_id": task_id, "input": inputs, "state_hash": state_hash, "prev_hash": prev,
        "hash": entry_hash})


@dataclass
class _Early:
    """What `Runtime._before_lock` read and restored."""
    who: access.Person | None
    row: Any
    task_row: Any
    loaded: LoadedDefinition
    workflow: BpmnWorkflow
    counter: int


def _locate(conn: Connection, locked: bool, task_id: str | None, instance_id: str | None,
            who: access.Person | None) -> tuple[Any, Any]:
    """(instance row, task row or None) of a command on task `task_id` or instance `instance_id`.
    `locked` (PostgreSQL, in the write transaction): the instance row is locked, and the task is
    read again once the lock is ours (the joined read may predate the holder's commit)."""
    if task_id is not None:
        row = (_SELECT_TASK_INSTANCE_LOCKED if locked else _SELECT_TASK_INSTANCE).first(conn, {"task_id": task_id})
        if row is None:
            raise _missing_task(conn, task_id, who)
        task_row = row
        if locked:
            task_row = _SELECT_TASK.first(conn, {"task_id": task_id})
            if task_row is None:
                raise _missing_task(conn, task_id, who)
        return row, task_row
    row = (_SELECT_INSTANCE_LOCKED if locked else _SELECT_INSTANCE).first(conn, {"instance_id": instance_id})
    if row is None:
        raise NotFound("there is no instance %(instance)s", instance=instance_id)
    return row, None


def _admit(conn: Connection, row, task_row, task_id: str | None, who: access.Person | None,
           check: TaskCheck | None) -> None:
    """The command's access check on the task (a refusal told as `_told` says), and the instance
    must be running."""
    if check is not None:
        try:
            check(_TaskRef(task_id, task_row.role, task_row.assignee, task_row.office_scope), who)
        except EngineError as refusal:
            raise _told(conn, refusal, task_id, row.id, who, row.initiator) from None
    if row.status != "running":
        raise Conflict("instance %(instance)s is %(status)s", instance=row.id, status=row.status)


@dataclass(frozen=True)
class _TaskRef:
    """What an access check needs to know of a task."""
    id: str
    role: str | None
    assignee: str | None
    office_scope: str = ""


def _incident_json(row) -> dict:
    return {"id": row.id, "command": row.command, "element_id": row.element_id,
            "message": row.message, "at": row.created_at.isoformat()}


def _task_view(row: dict) -> TaskView:
    return TaskView(row["id"], row["instance_id"], row["process_id"], row["name"], row["element_id"],
                    row["role"], row["assignee"], row["due_at"], row["created_at"], row["form"],
                    row["business_key"], row["customer"], row["amount"], row["office_scope"],
                    row.get("escalated_from"))
