"""Moving running instances between deployed versions of one process: the dry run (which can move,
where their waiting tokens land, or why not) and the move itself, each instance in its own
transaction as one logged, replayable step (command `migrate`, input {"from": N, "to": M}).

What can move is SpiffWorkflow's judgement (`diff_workflow` aligns the tasks of the instance with
the new version's task specs, `migrate_workflow` puts them on it and predicts the road ahead again),
with the engine's conditions on top: every step the instance has taken or is waiting at must still
be in the new version (its record is restored against that version from now on), a waiting step may
not change its kind (a user task that became a service task), a step under way (a subprocess, the
parent of a boundary event) may not change at all, and after the move each waiting task must be
waiting again. A moved task keeps what the engine knows of it — holder, due and reminder times,
escalations, replies — so an open task keeps the due time it was given (the new version's `due`
applies to tasks that open after the move); its role, form and office scope are read again from
the new version, as every command's projection does.

Only a designer (access.may_migrate) or the operator on the server's shell (actor None) may move
instances. The replay of the log (engine.audit) switches to the target version at a `migrate`
step and applies `move_workflow` again, which lands on the same state.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection
from SpiffWorkflow.bpmn.util.diff import SpecDiff, WorkflowDiff, migrate_workflow
from SpiffWorkflow.util.task import TaskState

from . import access, checkpoints, clock, state
from . import inputs as bounds
from .determinism import CommandContext, command_context
from .runtime import (_CLEAR, _DEF, _H, _I, _M, _MK, _SELECT_INSTANCE, _SELECT_INSTANCE_LOCKED, _T, Conflict,
                      EngineError, Forbidden, InvalidInput, LoadedDefinition, NotFound, _append_log,
                      _Duties, _entry_hash, _shown, _status, loaded_definition, person, project)
from .statements import Prepared
from .store import Store

COMMAND = "migrate"
_LIVE = TaskState.READY | TaskState.WAITING      # tokens: what an instance waits at
_UNDER_WAY = TaskState.STARTED                    # a subprocess, a boundary event's parent
_PREDICTED = TaskState.PREDICTED_MASK             # the road ahead, predicted again after the move


@dataclass(frozen=True)
class Move:
    """One running instance and the version it would move (or moved) to."""
    instance_id: str
    from_version: int
    to_version: int
    can_move: bool
    reason: str | None          # one sentence why not; None when it can
    tokens_to: tuple[str, ...]  # element ids where its waiting tokens land in the target version
    moved: bool = False
    # `reason` as template and params (engine errors' convention), for a page to translate
    template: str | None = field(default=None, compare=False)
    params: dict = field(default_factory=dict, compare=False)

    def as_json(self) -> dict:
        return {"id": self.instance_id, "can_move": self.can_move, "reason": self.reason,
                "tokens_to": list(self.tokens_to), "from_version": self.from_version,
                "to_version": self.to_version, "moved": self.moved}


class CannotMove(Conflict):
    """Why an instance cannot move to the target version (one sentence)."""


# --- the move of one workflow: pure, deterministic, shared with the replay ----------------------

_REGISTRY = state._SPEC_REGISTRY


class SpecDiffs:
    """SpiffWorkflow's alignment of one version's specs with another's (the top process and each
    subprocess by name), computed once and used for every instance of a migration."""

    def __init__(self, source: LoadedDefinition, target: LoadedDefinition):
        self.source, self.target = source, target
        self.top = SpecDiff(_REGISTRY, source.spec, target.spec)
        self.subs = {name: SpecDiff(_REGISTRY, spec, target.subprocess_specs[name])
                     for name, spec in source.subprocess_specs.items() if name in target.subprocess_specs}


def _name(task) -> str:
    spec = task.task_spec
    return getattr(spec, "bpmn_id", None) or spec.name


def _kind(spec) -> str:
    """A task spec's kind as a person says it: UserTask -> user task."""
    name = type(spec).__name__
    words = "".join(" " + c.lower() if c.isupper() else c for c in name).strip()
    return words.replace("_", "").strip() or name


def move_workflow(workflow, diffs: SpecDiffs) -> tuple[str, ...]:
    """Put `workflow` (on `diffs.source`) on `diffs.target`, in place, inside the command context of
    the move (new predicted tasks take their ids from it); returns the element ids its waiting
    tokens are at afterwards. Raises CannotMove naming the first reason it cannot move (the
    workflow is then spoiled: throw it away)."""
    source, target = diffs.source, diffs.target
    version = target.version
    trees = [(workflow, WorkflowDiff(workflow, diffs.top), target.spec)]
    for sub in workflow.subprocesses.values():
        name = sub.spec.name
        if name not in diffs.subs:
            raise CannotMove("its subprocess '%(step)s' is not in version %(version)s", step=name, version=version)
        trees.append((sub, WorkflowDiff(sub, diffs.subs[name]), target.subprocess_specs[name]))

    for tree, diff, _ in trees:
        # A step it waits at, then a step done or under way, that the new version does not have.
        removed = [t for t in diff.removed if not t.has_state(_PREDICTED)]
        removed.sort(key=lambda t: (not t.has_state(_LIVE), _name(t)))
        if removed:
            task = removed[0]
            if task.has_state(_LIVE) and task.task_spec.manual:
                raise CannotMove("its open task '%(step)s' is not in version %(version)s", step=_name(task),
                                 version=version)
            if task.has_state(_LIVE):
                raise CannotMove("its waiting step '%(step)s' is not in version %(version)s", step=_name(task),
                                 version=version)
            raise CannotMove("its step '%(step)s', already taken, is not in version %(version)s (its record "
                             "needs it)", step=_name(task), version=version)
        for task in tree.get_tasks(state=_LIVE | _UNDER_WAY, skip_subprocesses=True):
            new = diff.alignment.get(task)
            if new is None:
                continue
            if type(new) is not type(task.task_spec):
                raise CannotMove("its waiting step '%(step)s' is a %(old)s in version %(from_version)s but a "
                                 "%(new)s in version %(version)s", step=_name(task), old=_kind(task.task_spec),
                                 new=_kind(new), from_version=source.version, version=version)
            if task.has_state(_UNDER_WAY) and task in diff.changed:
                raise CannotMove("its step '%(step)s' is under way and is changed in version %(version)s",
                                 step=_name(task), version=version)

    # What the engine keeps on each waiting task (holder, due, reminders, escalations, replies; a
    # timer's due time) and when it opened: SpiffWorkflow's reset forgets them, the move must not.
    kept = {task.id: (copy.deepcopy(task.internal_data), copy.deepcopy(task.data), task.last_state_change,
                      task.state, _name(task))
            for tree, _, _ in trees for task in tree.get_tasks(state=_LIVE, skip_subprocesses=True)}
    last = {id(tree): tree.last_task for tree, _, _ in trees}
    for tree, diff, spec in trees:
        migrate_workflow(diff, tree, spec)
        # SpiffWorkflow 3.2 looks the last task up among the task *ids* and so always forgets it;
        # it is what the instance's data is read from (runtime.instance_data): keep it if it stays.
        kept_last = last[id(tree)]
        if kept_last is not None and kept_last.id in tree.tasks:
            tree.last_task = kept_last
    workflow.subprocess_specs = target.subprocess_specs

    now = _all_tasks(workflow)
    for task_id, (internal, data, changed, was, step) in kept.items():
        task = now.get(task_id)
        if task is None or task.state != was:
            raise CannotMove("its waiting step '%(step)s' would not be waiting in version %(version)s",
                             step=step, version=version)
        task.internal_data, task.data, task.last_state_change = internal, data, changed

    specs = {id(s) for s in target.spec.task_specs.values()}
    specs |= {id(s) for sub in target.subprocess_specs.values() for s in sub.task_specs.values()}
    for tree in (workflow, *workflow.subprocesses.values()):
        for task in tree.tasks.values():
            if id(task.task_spec) not in specs:
                raise CannotMove("its step '%(step)s' has no place in version %(version)s", step=_name(task),
                                 version=version)
    return tuple(sorted({_name(t) for t in workflow.get_tasks(state=_LIVE) if getattr(t.task_spec, "bpmn_id", None)}))


def _all_tasks(workflow) -> dict:
    found = dict(workflow.tasks)
    for sub in workflow.subprocesses.values():
        found.update(sub.tasks)
    return found


def moved_state(instance_id: str, text: str, at: datetime, diffs: SpecDiffs, *,
                conn: Connection | None = None, actor: str | None = None, replaying: bool = False):
    """The instance state `text` (on the source version) moved to the target: (workflow, the new
    state text, tokens). Raises CannotMove."""
    workflow, counter = state.load_state(text, diffs.source.spec, diffs.source.subprocess_specs)
    ctx = CommandContext(instance_id, at, counter, conn=conn, actor=actor, replaying=replaying)
    with command_context(ctx):
        tokens = move_workflow(workflow, diffs)
    return workflow, state.dump_state(workflow, ctx.counter), tokens


# --- which versions, and who may ---------------------------------------------------------------

def _number(value: Any, what: str) -> int:
    """A version number given from outside (`what` is "from" or "to")."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    missing = value is None or value == ""
    if what == "from":
        if missing:
            raise InvalidInput("say which version to move from, as a whole number", {what: "required"})
        raise InvalidInput("the version to move from must be a whole number, not %(value)s",
                           {what: "a whole number"}, value=_shown(value))
    if missing:
        raise InvalidInput("say which version to move to, as a whole number", {what: "required"})
    raise InvalidInput("the version to move to must be a whole number, not %(value)s",
                       {what: "a whole number"}, value=_shown(value))


def _version_id(conn, process_id: str, version: int) -> int | None:
    return conn.execute(select(_DEF.c.id).where(_DEF.c.process_id == process_id,
                                               _DEF.c.version == version)).scalar()


def _pair(conn, process_id: Any, from_version: Any, to_version: Any, actor: str | None
          ) -> tuple[LoadedDefinition, LoadedDefinition, str]:
    """The two versions, checked, and who acts (access.OPERATOR for None)."""
    if actor is not None:
        who = person(conn, actor)
        if not access.may_migrate(who):
            raise Forbidden("%(user)s may not move instances between versions: only %(roles)s may",
                            user=who.username, roles=access.roles_text(access.DEPLOY_ROLES))
    if not bounds.fits_key(process_id, _DEF.c.process_id.type.length):
        raise NotFound("there is no deployed process %(process)r", process=_shown(process_id))
    source_version, target_version = _number(from_version, "from"), _number(to_version, "to")
    latest = conn.execute(select(_DEF.c.version).where(_DEF.c.process_id == process_id)
                          .order_by(_DEF.c.version.desc()).limit(1)).scalar()
    if latest is None:
        raise NotFound("there is no deployed process %(process)r", process=process_id)
    source_id = _version_id(conn, process_id, source_version)
    if source_id is None:
        raise NotFound("process %(process)r has no version %(version)s", process=process_id,
                       version=source_version)
    if source_version == target_version:
        raise InvalidInput("the instances are already on version %(version)s: name another version to move "
                           "them to", {"to": "another version"}, version=target_version)
    target_id = _version_id(conn, process_id, target_version)
    if target_id is None:
        raise InvalidInput("process %(process)r has no version %(version)s to move to (its newest is "
                           "version %(latest)s)", {"to": f"1 to {latest}"}, process=process_id,
                           version=target_version, latest=latest)
    return (loaded_definition(conn, source_id), loaded_definition(conn, target_id),
            actor if actor is not None else access.OPERATOR)


def _running(conn, definition_id: int):
    return conn.execute(select(_I.c.id, _I.c.state).where(_I.c.definition_id == definition_id,
                                                          _I.c.status == "running")
                        .order_by(_I.c.created_at, _I.c.id)).all()


def _move_of(instance_id: str, diffs: SpecDiffs, refusal: EngineError | None = None,
             tokens: tuple[str, ...] = (), moved: bool = False) -> Move:
    if refusal is not None:
        return Move(instance_id, diffs.source.version, diffs.target.version, False, str(refusal), (),
                    template=refusal.template, params=dict(refusal.params))
    return Move(instance_id, diffs.source.version, diffs.target.version, True, None, tokens, moved)


# --- the dry run and the move ------------------------------------------------------------------

def plan(store: Store, process_id: str, from_version: int, to_version: int,
         actor: str | None = None) -> list[Move]:
    """For each running instance of `process_id` on `from_version`: whether it can move to
    `to_version` and where its waiting tokens would land, or why not. Changes nothing."""
    at = clock.now().astimezone(timezone.utc)
    with store.read() as session:
        conn = session.connection()
        source, target, _ = _pair(conn, process_id, from_version, to_version, actor)
        diffs = SpecDiffs(source, target)
        moves = []
        for row in _running(conn, source.id):
            try:
                _, _, tokens = moved_state(row.id, row.state, at, diffs, replaying=True)
            except CannotMove as refusal:
                moves.append(_move_of(row.id, diffs, refusal))
                continue
            moves.append(_move_of(row.id, diffs, tokens=tokens))
    return moves


_UPDATE_MOVED = Prepared(update(_I)
                         .where(_I.c.id == bindparam("w_id"), _I.c.revision == bindparam("w_revision"))
                         .values(definition_id=bindparam("v_definition_id"), state=bindparam("v_state"),
                                 state_hash=bindparam("v_state_hash"), revision=bindparam("v_revision"),
                                 status=bindparam("v_status"), business_key=bindparam("v_business_key"),
                                 customer=bindparam("v_customer"), amount=bindparam("v_amount"),
                                 updated_at=bindparam("v_at"), log_hash=bindparam("v_log_hash")))


class _Race(Conflict):
    pass


def migrate(store: Store, process_id: str, from_version: int, to_version: int, actor: str | None = None,
            at: datetime | None = None) -> list[Move]:
    """Move every running instance of `process_id` on `from_version` that can move to `to_version`,
    each in its own transaction, under the lock a command takes, as one `migrate` log entry; the
    others are left where they are, with the reason. Returns one Move per instance (`moved`)."""
    at = (at or clock.now()).astimezone(timezone.utc)  # the log hashes the time as UTC text
    with store.read() as session:
        conn = session.connection()
        source, target, who = _pair(conn, process_id, from_version, to_version, actor)
        ids = [row.id for row in _running(conn, source.id)]
    diffs = SpecDiffs(source, target)
    return [_move_one(store, instance_id, diffs, who, at) for instance_id in ids]


def _move_one(store: Store, instance_id: str, diffs: SpecDiffs, actor: str, at: datetime) -> Move:
    source, target = diffs.source, diffs.target
    try:
        with store.transaction() as conn:
            # SQLite writers hold the database lock (BEGIN IMMEDIATE); PostgreSQL locks the row.
            row = (_SELECT_INSTANCE if store.is_sqlite else _SELECT_INSTANCE_LOCKED).first(
                conn, {"instance_id": instance_id})
            if row is None or row.status != "running" or row.definition_id != source.id:
                raise CannotMove("it is no longer running on version %(version)s", version=source.version)
            workflow, text, tokens = moved_state(instance_id, row.state, at, diffs, conn=conn, actor=actor)
            inputs = {"from": source.version, "to": target.version}
            state_hash = state.digest(text)
            seq = row.revision + 1
            log_hash = _entry_hash(instance_id, seq, at, actor, COMMAND, inputs, state_hash, row.log_hash)
            for table in (_H, _T, _M, _MK):  # the old version may have had timers or messages the new has not
                _CLEAR[table].execute(conn, {"instance_id": instance_id})
            projection = project(conn, instance_id, workflow, target, fresh=True,
                                 duties=_Duties(conn, target, row.initiator))
            done = _UPDATE_MOVED.execute(conn, {
                "w_id": instance_id, "w_revision": row.revision, "v_definition_id": target.id,
                "v_state": text, "v_state_hash": state_hash, "v_revision": seq, "v_status": _status(workflow),
                "v_business_key": projection.business_key, "v_customer": projection.customer,
                "v_amount": projection.amount, "v_at": at, "v_log_hash": log_hash})
            if done != 1:
                raise _Race("instance %(instance)s was changed by someone else at the same moment; run the "
                            "migration again", instance=instance_id)
            _append_log(conn, instance_id, seq, at, actor, COMMAND, None, inputs, state_hash, row.log_hash,
                        log_hash)
            checkpoints.keep(conn, instance_id, seq, text)
    except CannotMove as refusal:
        return _move_of(instance_id, diffs, refusal)
    except _Race as refusal:
        return _move_of(instance_id, diffs, refusal)
    return _move_of(instance_id, diffs, tokens=tokens, moved=True)

