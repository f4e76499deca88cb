"""The read side: what pages, the API and the command line show of instances and tasks.

`engine.runtime` is the only code that changes an instance; this module only reads. Each page asks
once: `instance_page` and `task_page` read their rows in one session and restore the instance's
state once, and the step-by-step history (who did what, each step's change of the data, the
diagram as it was after each step) comes from `steps`, an exact replay of the log — the record
check's machinery (engine.audit) — kept per instance and log head hash, so a page view after the
first costs the hash-chain check, not a replay.
"""
from __future__ import annotations

import copy
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState

from . import access, audit, clock, customers, forms, pruning, state, tasks
from . import inputs as bounds
from .runtime import (_SELECT_OPEN_INCIDENTS, InstanceView, NotFound, _find_task, _incident_json,
                      _may_view, _known_task, _shown, instance_data, loaded_definition, open_task,
                      person, task_view)
from .store import (Comment, Definition, HumanTask, Instance, LogEntry, SlaBreach, Store, TaskDraft,
                    User)

# Keys the engine keeps in an instance's data for itself: never shown as the instance's data.
ENGINE_KEYS = frozenset(forms.ENGINE_FIELDS)


# --- the diagram of one moment -------------------------------------------------------------------

@dataclass(frozen=True)
class Marks:
    """The diagram at one moment: how many times each element was done (a loop or a rework round
    makes passes), what is waiting, and what is waiting past its due time."""
    done: dict[str, int] = field(default_factory=dict)
    active: tuple[str, ...] = ()
    overdue: tuple[str, ...] = ()

    def as_json(self) -> dict:
        return {"completed": sorted(set(self.done) - set(self.active)), "active": list(self.active),
                "overdue": list(self.overdue), "passes": {k: n for k, n in self.done.items() if n > 1}}


def marks(workflow: BpmnWorkflow, now: datetime | None = None) -> Marks:
    done: Counter[str] = Counter(pruning.passes(workflow))  # passes cut from the tree (engine.pruning)
    active, overdue = set(), set()
    for task in workflow.get_tasks():
        element = getattr(task.task_spec, "bpmn_id", None)
        if not element:
            continue
        if task.state == TaskState.COMPLETED:
            done[element] += 1
        elif task.state in (TaskState.READY, TaskState.WAITING, TaskState.STARTED):
            active.add(element)
            due = tasks.parse(task._get_internal_data("due_at"))
            if now is not None and due is not None and due < now:
                overdue.add(element)
    return Marks(dict(done), tuple(sorted(active)), tuple(sorted(overdue)))


# --- one step of the history ----------------------------------------------------------------------

@dataclass(frozen=True)
class Happening:
    """Something a step did besides its command: a reminder sent, a task escalated, a timer fired,
    a step reached. `kind` is one of reminder, escalation, timer, waiting."""
    kind: str
    element_id: str
    name: str
    holder: str | None = None
    to: str | None = None
    due: datetime | None = None


@dataclass(frozen=True)
class Step:
    """One command of the log, as a person reads it, with the instance as it was after it."""
    seq: int
    at: datetime
    actor: str
    command: str
    task_id: str | None
    element_id: str | None
    name: str | None                        # the step it acted on
    input: dict                             # what was logged (data, payload, reply…)
    before: dict                            # the instance data before and after
    after: dict
    marks: Marks = Marks()
    happened: tuple[Happening, ...] = ()
    completed: bool = False
    hash: str = ""

    @property
    def data(self) -> dict | None:
        return self.input.get("data") if isinstance(self.input.get("data"), dict) else None

    @property
    def changes(self) -> list[tuple[str, Any, Any]]:
        """(key, before, after) of every top-level field the step set, changed or removed."""
        keys = [k for k in self.after if k not in self.before or self.before[k] != self.after[k]]
        keys += [k for k in self.before if k not in self.after]
        return [(k, self.before.get(k), self.after.get(k)) for k in keys if k not in ENGINE_KEYS]

    def as_json(self) -> dict:
        return {"seq": self.seq, "at": self.at.isoformat(), "actor": self.actor, "command": self.command,
                "task_id": self.task_id, "element_id": self.element_id, "name": self.name,
                "data": self.data, "reply": self.input.get("reply"),
                "payload": self.input.get("payload"), "name_of_message": self.input.get("name"),
                "changes": [{"field": k, "before": b, "after": a} for k, b, a in self.changes],
                "happened": [{"kind": h.kind, "element_id": h.element_id, "name": h.name, "holder": h.holder,
                              "to": h.to, "due": h.due.isoformat() if h.due else None}
                             for h in self.happened],
                "diagram": self.marks.as_json(), "hash": self.hash}


def _task_name(task) -> str:
    return task.task_spec.bpmn_name or task.task_spec.name


def _open(workflow: BpmnWorkflow) -> dict[str, Any]:
    return {str(t.id): t for t in workflow.get_tasks(state=TaskState.READY, manual=True)}


class _Observer:
    """Collects, during a replay, what each step did besides its command (audit.replay's observe)."""

    def __init__(self):
        self.before: dict[str, dict] = {}   # open user task id -> what was known of it
        self.done: dict[str, int] = {}      # element id -> passes done, before this step

    def __call__(self, entry: LogEntry, workflow: BpmnWorkflow) -> tuple:
        acted = _find_task(workflow, entry.task_id) if entry.task_id else None
        spec = acted.task_spec if acted is not None else None
        on = ((spec.bpmn_id or spec.name), (spec.bpmn_name or spec.name)) if spec is not None else (None, None)
        if acted is None and entry.task_id in self.before:  # completed, and pruned from the tree since
            on = (self.before[entry.task_id]["element"], self.before[entry.task_id]["name"])
        now_open = _open(workflow)
        happened: list[Happening] = []
        escalate = (entry.input or {}).get("escalate") or {}
        for task_id, task in now_open.items():
            was = self.before.get(task_id)
            element, name = task.task_spec.bpmn_id or task.task_spec.name, _task_name(task)
            if task_id in escalate and entry.command == "timer":
                happened.append(Happening("escalation", element, name, escalate[task_id].get("from"),
                                          escalate[task_id].get("to"), (was or {}).get("due")))
            elif was is not None and task._get_internal_data("reminded") and not was["reminded"]:
                happened.append(Happening("reminder", element, name, tasks.holder(task),
                                          due=tasks.parse(task._get_internal_data("due_at"))))
            elif was is None:
                happened.append(Happening("waiting", element, name, tasks.holder(task),
                                          due=tasks.parse(task._get_internal_data("due_at"))))
        now_marks = marks(workflow)
        if entry.command in ("timer", "message"):
            # from the specs: a timer's pass may be pruned from the tree in the step that made it
            names = {ts.bpmn_id: ts.bpmn_name or ts.name
                     for spec in (workflow.spec, *workflow.subprocess_specs.values())
                     for ts in spec.task_specs.values()
                     if getattr(ts, "bpmn_id", None)
                     and isinstance(getattr(ts, "event_definition", None), TimerEventDefinition)}
            for element in sorted(names):
                if now_marks.done.get(element, 0) > self.done.get(element, 0):
                    happened.append(Happening("timer", element, names[element]))
        self.done = now_marks.done
        self.before = {task_id: {"reminded": bool(t._get_internal_data("reminded")),
                                 "due": tasks.parse(t._get_internal_data("due_at")),
                                 "element": t.task_spec.bpmn_id or t.task_spec.name, "name": _task_name(t)}
                       for task_id, t in now_open.items()}
        return now_marks, tuple(happened), on


_CACHE_SIZE = 256


@dataclass
class _Kept:
    """An instance's steps as last replayed, and what the replay needs to go on from its last step
    when the log grows: the state text after it and what the observer had seen."""
    found: list[Step]
    text: str
    observer: _Observer
    whole: bool                   # the replay found every step as the log says


_steps: OrderedDict[tuple[str, str], _Kept] = OrderedDict()
_steps_lock = threading.Lock()


def steps(session: Session, row: Instance, entries: list[LogEntry], script_engine) -> list[Step] | None:
    """Every step of the instance with the data and diagram after it, by exact replay of the log;
    None when the record does not replay (the record check says why). Kept per instance with the
    log head hash it ends at: the hash chain, checked on every call, pins every logged input, so a
    log that grew by some steps is replayed only from the kept last step on — each step is
    re-executed once per log head, and once in all while the process runs."""
    if not entries:
        return []
    if not audit.chain_whole(row.id, entries):
        return None
    key = (str(session.get_bind().url), row.id)
    with _steps_lock:
        kept = _steps.get(key)
        if kept is not None:
            _steps.move_to_end(key)
    n = len(entries)
    if kept is not None and len(kept.found) >= n and kept.found[n - 1].hash == entries[-1].hash:
        return kept.found if len(kept.found) == n else kept.found[:n]   # (a read of an older head)
    go_on = (kept is not None and kept.whole and len(kept.found) < n
             and kept.found[-1].hash == entries[len(kept.found) - 1].hash)
    observer = copy.deepcopy(kept.observer) if go_on else _Observer()
    start = (kept.found[-1].seq, kept.text) if go_on else None
    try:
        replayed = audit.replay(session, row.id, script_engine, _read=(row, entries), observe=observer,
                                _start=start)
    except audit.ReplayFailed:
        return None
    if go_on:
        replayed = replayed[1:]                   # (the kept last step, restored)
        found, before = list(kept.found), kept.found[-1].after
        problem = audit.first_problem(row.id, replayed, first_seq=len(found) + 1)
    else:
        found, before = [], {}
        problem = audit.first_problem(row.id, replayed)
    audit.keep_verdict(session, row.id, entries, problem)   # the record check needs no replay of its own
    for entry, r in zip(entries[len(found):], replayed):
        after = r.data
        m, happened, (element, name) = r.seen
        found.append(Step(entry.seq, entry.at, entry.actor, entry.command, entry.task_id, element, name,
                          dict(entry.input or {}), before, after, m, happened, r.completed, entry.hash))
        before = after
    with _steps_lock:
        _steps[key] = _Kept(found, replayed[-1].text, observer, problem is None)
        _steps.move_to_end(key)
        while len(_steps) > _CACHE_SIZE:
            _steps.popitem(last=False)
    return found


def _logged_steps(workflow: BpmnWorkflow | None, entries: list[LogEntry]) -> list[Step]:
    """The history without a replay (a record that does not replay): what each command was given."""
    out = []
    for e in entries:
        task = _find_task(workflow, e.task_id) if (workflow is not None and e.task_id) else None
        spec = task.task_spec if task is not None else None
        out.append(Step(e.seq, e.at, e.actor, e.command, e.task_id,
                        (spec.bpmn_id or spec.name) if spec else None,
                        (spec.bpmn_name or spec.name) if spec else None,
                        dict(e.input or {}), {}, {}, hash=e.hash))
    return out


# --- pages ---------------------------------------------------------------------------------------

@dataclass
class InstancePage:
    """Everything the instance page shows, read at once."""
    view: InstanceView
    steps: list[Step]
    replayed: bool                    # False: the log did not replay; steps carry only their input
    xml: str
    now: Marks
    comments: list[dict]
    breaches: list[dict]
    names: dict[str, str]             # element id -> name, of every step met
    verdict: audit.Verdict | None = None
    customer: str | None = None
    archive_reads: list[dict] | None = None   # reads of the customer's card, for who may see them
    people: dict[str, str] = field(default_factory=dict)  # user name -> display name, of all it names


@dataclass
class TaskPage:
    """Everything the task page shows, read at once."""
    detail: dict
    steps: list[Step]
    comments: list[dict]
    people: dict[str, str] = field(default_factory=dict)  # user name -> display name, of all it names


class Views:
    """Reads for pages, the API and the command line; `viewer` is checked by access rules."""

    def __init__(self, store: Store, script_engine):
        self.store = store
        self.script_engine = script_engine

    # --- whose is it ---

    def _instance_row(self, session: Session, instance_id: str, viewer: str | None) -> Instance:
        """The instance, if `viewer` may see it (access.may_view_instance); None: no check (the
        operator's command line and the engine's own callers). A refusal is the answer for an
        instance that does not exist: it reveals nothing."""
        if not bounds.fits_key(instance_id, Instance.__table__.c.id.type.length):
            raise NotFound("there is no instance %(instance)s", instance=_shown(instance_id))
        row = session.get(Instance, instance_id)
        if row is None:
            raise NotFound("there is no instance %(instance)s", instance=instance_id)
        if viewer is not None and not _may_view(session, row.id, person(session, viewer), row.initiator):
            raise NotFound("there is no instance %(instance)s", instance=row.id)
        return row

    @staticmethod
    def _entries(session: Session, instance_id: str) -> list[LogEntry]:
        return list(session.scalars(select(LogEntry).where(LogEntry.instance_id == instance_id)
                                    .order_by(LogEntry.seq)))

    @staticmethod
    def _comments(session: Session, instance_id: str) -> list[dict]:
        rows = session.scalars(select(Comment).where(Comment.instance_id == instance_id)
                               .order_by(Comment.at, Comment.id))
        return [{"id": c.id, "task_id": c.task_id, "author": c.author, "body": c.body, "at": c.at}
                for c in rows]

    @staticmethod
    def _open_tasks(session: Session, instance_id: str) -> list:
        return [task_view(t) for t in session.scalars(
            select(HumanTask).where(HumanTask.instance_id == instance_id).order_by(HumanTask.created_at))]

    def _view(self, session: Session, row: Instance, loaded, data: dict, open_tasks=None) -> InstanceView:
        incidents = [_incident_json(i) for i in session.execute(_SELECT_OPEN_INCIDENTS, {"instance_id": row.id})]
        return InstanceView(row.id, row.process_id, loaded.version, row.status, copy.deepcopy(data),
                            open_tasks if open_tasks is not None else self._open_tasks(session, row.id),
                            row.business_key, row.initiator, row.created_at, row.updated_at, incidents)

    def _steps(self, session, row, entries, workflow_of) -> tuple[list[Step], bool]:
        """The steps by replay, else (a record that does not replay) as logged; `workflow_of()`
        restores the state, asked only then."""
        found = steps(session, row, entries, self.script_engine)
        return (found, True) if found is not None else (_logged_steps(workflow_of(), entries), False)

    # --- an instance ---

    def instance(self, instance_id: str, *, viewer: str | None = None) -> InstanceView:
        """The instance's status, data and open tasks; `viewer` must be allowed to see it."""
        with self.store.read() as session:
            row = self._instance_row(session, instance_id, viewer)
            loaded = loaded_definition(session, row.definition_id)
            workflow, _ = state.load_state(row.state, loaded.spec, loaded.subprocess_specs)
            return self._view(session, row, loaded, instance_data(workflow))

    def instance_page(self, instance_id: str, *, viewer: str, now: datetime | None = None) -> InstancePage:
        """The instance page: status, data, open tasks, the diagram now, every step, comments, the
        SLA breaches, and for an auditor whether the record is whole — one read, one restore."""
        now = now or clock.now()
        with self.store.read() as session:
            row = self._instance_row(session, instance_id, viewer)
            who = person(session, viewer)
            loaded = loaded_definition(session, row.definition_id)
            entries = self._entries(session, instance_id)
            restored: list[BpmnWorkflow] = []

            def workflow_of() -> BpmnWorkflow:
                if not restored:
                    restored.append(state.load_state(row.state, loaded.spec, loaded.subprocess_specs)[0])
                return restored[0]
            found, replayed = self._steps(session, row, entries, workflow_of)
            if replayed and found and found[-1].hash == row.log_hash:
                # the state after the last step is the stored one (the record check says if not)
                data, last = found[-1].after, found[-1].marks
                open_tasks = self._open_tasks(session, row.id)
                overdue = {t.element_id for t in open_tasks if t.due is not None and t.due < now}
                current = Marks(last.done, last.active, tuple(sorted(overdue & set(last.active))))
            else:
                workflow = workflow_of()
                data, current, open_tasks = instance_data(workflow), marks(workflow, now), None
            view = self._view(session, row, loaded, data, open_tasks)
            definition = session.get(Definition, row.definition_id)
            verdict = audit.verify(session, instance_id, self.script_engine) if access.may_check_records(who) else None
            breaches = [{"element_id": b.element_id, "holder": b.holder, "escalated_to": b.escalated_to,
                         "due_at": b.due_at, "breached_at": b.breached_at}
                        for b in session.scalars(select(SlaBreach).where(SlaBreach.instance_id == instance_id)
                                                 .order_by(SlaBreach.breached_at, SlaBreach.id))]
            comments = self._comments(session, instance_id)
            archive_reads = customers.reads_beside(session, who, row.customer)
            people = _people(session, found, view.tasks, [row.initiator],
                             [b[k] for b in breaches for k in ("holder", "escalated_to")])
        return InstancePage(view, found, replayed, _source(definition, loaded), current, comments,
                            breaches, _names(loaded, found, view), verdict, row.customer, archive_reads, people)

    def history(self, instance_id: str, *, viewer: str | None = None) -> tuple[list[Step], bool]:
        """The instance's log, one step per command, each with what it changed; and whether the
        log replayed (False: the steps carry only what each command was given)."""
        with self.store.read() as session:
            row = self._instance_row(session, instance_id, viewer)
            loaded = loaded_definition(session, row.definition_id)
            return self._steps(session, row, self._entries(session, instance_id),
                               lambda: state.load_state(row.state, loaded.spec, loaded.subprocess_specs)[0])

    def comments(self, instance_id: str, *, viewer: str | None = None) -> list[dict]:
        with self.store.read() as session:
            if viewer is not None:
                self._instance_row(session, instance_id, viewer)
            return self._comments(session, instance_id)

    def diagram(self, instance_id: str, now: datetime | None = None, *, viewer: str | None = None) -> dict:
        """The instance's BPMN source with the element ids done, active now, and overdue."""
        with self.store.read() as session:
            row = self._instance_row(session, instance_id, viewer)
            definition = session.get(Definition, row.definition_id)
            loaded = loaded_definition(session, row.definition_id)
            workflow, _ = state.load_state(row.state, loaded.spec, loaded.subprocess_specs)
        return {"xml": _source(definition, loaded), **marks(workflow, now or clock.now()).as_json()}

    # --- a task ---

    def _detail(self, session: Session, task_id: str, actor: str):
        _known_task(task_id)
        who = person(session, actor)
        row = open_task(session, task_id, who, access.may_open_task, "%(user)s may not open task %(task)s")
        instance = session.get(Instance, row.instance_id)
        loaded = loaded_definition(session, instance.definition_id)
        workflow, _ = state.load_state(instance.state, loaded.spec, loaded.subprocess_specs)
        task = _find_task(workflow, task_id)
        form = loaded.form_of(task.task_spec)
        draft = session.get(TaskDraft, task_id)
        detail = {"task": task_view(row), "form": form[0] if form else None,
                  "schema": form[1] if form else None, "data": copy.deepcopy(task.data),
                  "draft": copy.deepcopy(draft.data) if draft else None,
                  "instance_id": row.instance_id, "process_id": row.process_id,
                  "may_act": access.may_act(who, row.role, row.assignee, row.office_scope),
                  # whose task it was before it was escalated to its present holder (hand back)
                  "escalated_from": task._get_internal_data("escalated_from"),
                  # the reply to the superior (复命): who may, the last one, whether it restarted the due
                  "may_reply": access.may_reply(who, row.role, row.assignee, row.office_scope),
                  "last_reply": copy.deepcopy(task._get_internal_data("last_reply")),
                  "reply_restarted": bool(task._get_internal_data("reply_restarted"))}
        return detail, instance, loaded, workflow

    def task_detail(self, task_id: str, actor: str) -> dict:
        """What a task page needs: the task, its form, the data it starts from, the saved draft."""
        with self.store.read() as session:
            return self._detail(session, task_id, actor)[0]

    def task_page(self, task_id: str, actor: str) -> TaskPage:
        """The task page: the task's detail, its instance's steps and comments — one read, one restore."""
        with self.store.read() as session:
            detail, instance, loaded, workflow = self._detail(session, task_id, actor)
            found, _ = self._steps(session, instance, self._entries(session, instance.id), lambda: workflow)
            return TaskPage(detail, found, self._comments(session, instance.id),
                            _people(session, found, [detail["task"]]))

    def draft(self, task_id: str, actor: str) -> dict | None:
        """The draft saved on an open task, for those who may open the task (access.may_open_task)."""
        _known_task(task_id)
        with self.store.read() as session:
            open_task(session, task_id, person(session, actor), access.may_open_task,
                      "%(user)s may not read the draft of task %(task)s")
            row = session.get(TaskDraft, task_id)
            return copy.deepcopy(row.data) if row is not None else None

    # --- what one may start ---

    def startable(self, actor: str) -> list[dict]:
        """The processes `actor` may start (access.may_start: the start lane's role or `start_roles`)."""
        with self.store.read() as session:
            who = person(session, actor)
            latest = (select(Definition.process_id, func.max(Definition.version).label("version"))
                      .group_by(Definition.process_id).subquery())
            rows = session.execute(select(Definition.id, Definition.process_id, Definition.version,
                                          Definition.name)
                                   .join(latest, (latest.c.process_id == Definition.process_id)
                                         & (latest.c.version == Definition.version))
                                   .order_by(Definition.process_id)).all()
            out = []
            for r in rows:
                loaded = loaded_definition(session, r.id)
                if not access.may_start(who, loaded.starters):
                    continue
                out.append({"process_id": r.process_id, "version": r.version, "name": r.name,
                            "form": loaded.start_form,
                            "schema": loaded.forms.get(loaded.start_form) if loaded.start_form else None})
            return out



def _people(session: Session, found: list[Step], open_tasks, *more) -> dict[str, str]:
    """Display names of everyone the steps, the open tasks and `more` name, in one query, for
    sentences about them (钱副总 Qian, not vp.qian); a name not found stays as it is."""
    wanted = {s.actor for s in found}
    wanted |= {name for s in found for h in s.happened for name in (h.holder, h.to)}
    wanted |= {s.input["to"] for s in found if isinstance(s.input.get("to"), str)}
    wanted |= {t.assignee for t in open_tasks}
    wanted |= {name for names in more for name in names}
    wanted = sorted(name for name in wanted if name)
    if not wanted:
        return {}
    return dict(session.execute(select(User.username, User.display_name).where(User.username.in_(wanted))).all())


def _names(loaded, found: list[Step], view: InstanceView) -> dict[str, str]:
    """Element id -> its name, for every element of the process: the diagram's steps listed in words."""
    names = {}
    for spec in [*loaded.spec.task_specs.values(),
                 *(ts for sub in loaded.subprocess_specs.values() for ts in sub.task_specs.values())]:
        if getattr(spec, "bpmn_id", None):
            names[spec.bpmn_id] = spec.bpmn_name or spec.bpmn_id
    names.update({s.element_id: s.name for s in found if s.element_id})
    names.update({t.element_id: t.name for t in view.tasks})
    return names


def _source(definition: Definition, loaded) -> str:
    spec_file = getattr(loaded.spec, "file", None)
    return definition.files.get(spec_file) or next(
        (text for name, text in definition.files.items() if name.endswith(".bpmn")), "")
