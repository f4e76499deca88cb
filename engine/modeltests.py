"""Model tests: the cases a designer attaches to a process, checked at deploy and run on demand.

Owns the cases file, its schema and its runner. A process's cases live in
`forms/<process_id>.cases.json` beside its forms and are deployed with its version (they are part of
its files and of its content hash), so each version carries the cases written for it:

```json
{"cases": [{
  "name": "major contract goes to the GM",
  "start_as": "rep.wang",
  "start": {"customer": "C-B01", "amount": 1200000, ...},
  "steps": [
    {"task": "dm_review", "as": "dm.zhou", "data": {"decision": "approve"}},
    {"task": "gm_approval", "as": "gm.zhao", "data": {"decision": "approve"}},
    {"wait": "PT5H"},
    {"message": "payment_received", "as": "bank.feed", "data": {"amount": 1000}},
    {"task": "go_approval", "as": "rep.wang", "data": {"decision": "approve"}, "refused": "may not"}
  ],
  "path": ["dm_review", "gm_approval", "go_approval"],
  "end": {"status": "running", "data": {"major_contract": true}, "tasks": ["go_approval"]}
}]}
```

- `start_as` starts the instance with the start form data `start`; a `description` says what the
  case is about.
- Each step, in order: `task` completes the open human task of that element id as user `as` with
  `data`; `wait` lets an ISO 8601 duration pass (timers, reminders and escalations due by then fire);
  `message` delivers a message as user `as` (the operator when left out), its `correlation` taken
  from the instance's data for the keys the process names, unless the step gives one. A step with
  `refused` must be refused (`true`, or a text the refusal says); the case then goes on. A `note`
  says why a step is there. Each command is ten minutes after the one before it (a `wait` moves
  the clock by its duration); the first case starts at `START` (a Monday, 09:00 in China). The first step that goes otherwise fails the case, and the steps after it are
  not run.
- `path`: the human tasks the instance met (opened), by element id, in the order they opened
  (tasks opened by one step in the order of their ids). It must be exactly this list, or with
  `"path_match": "in_order"` contain these tasks in this order, others between them allowed.
- `end`: the instance's `status` (running, completed, cancelled) after the last step, the `data`
  it must hold (a subset: objects are compared key by key, anything else must be equal) and the
  `tasks` it still waits at (element ids, any order).

A file may also give `records`: business records on file before the cases run (`kind`, `key`,
`customer`, `ref`, `data`, as engine.records keeps them), such as the shipped order a return names.

The cases of a run share one throwaway SQLite database (a file in /dev/shm, so in memory, where
there is one), seeded with the demo organisation, customer cards and credit list (as `bpm init
--demo`; seeded once per process and copied), on which only the files under test are deployed:
the real database is never touched. Cases run one after the other, each with its own instance, on
a fixed clock; each run gets a fresh database. The company's services run as they do live (the
notices they send go to processes.notices.OUTBOX, the stand-in mail gateway).
"""
from __future__ import annotations

import copy
import json
import os
import re
import tempfile
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from jsonschema import Draft202012Validator

from .runtime import EngineError, InvalidInput, NotFound

CASES_SUFFIX = ".cases.json"
START = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)  # a Monday, 09:00 in China
STEP_GAP = timedelta(minutes=10)
STATUSES = ("running", "completed", "cancelled")
_MAX_TIMER_ROUNDS = 50  # timer firings in one `wait` step (a cycle timer fires once per round)


def cases_file(process_id: str) -> str:
    """The name under which a deployed version holds its process's cases."""
    return f"forms/{process_id}{CASES_SUFFIX}"


# --- the file's schema ------------------------------------------------------------------------

_USER = {"type": "string", "minLength": 1, "maxLength": 64}
_DATA = {"type": "object"}
_REFUSED = {"type": ["boolean", "string"]}
_TASK_STEP = {"type": "object", "required": ["task", "as"], "additionalProperties": False,
              "properties": {"task": {"type": "string", "minLength": 1}, "as": _USER, "data": _DATA,
                             "refused": _REFUSED, "note": {"type": "string"}}}
_WAIT_STEP = {"type": "object", "required": ["wait"], "additionalProperties": False,
              "properties": {"wait": {"type": "string", "pattern": r"^P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?"
                                                                   r"(T(?=\d)(\d+H)?(\d+M)?(\d+S)?)?$"},
                             "note": {"type": "string"}}}
_MESSAGE_STEP = {"type": "object", "required": ["message"], "additionalProperties": False,
                 "properties": {"message": {"type": "string", "minLength": 1}, "as": _USER, "data": _DATA,
                                "correlation": {"type": "object", "additionalProperties": {"type": ["string", "number"]}},
                                "refused": _REFUSED, "note": {"type": "string"}}}
CASES_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Model tests of one process (engine.modeltests)",
    "type": "object",
    "required": ["cases"],
    "additionalProperties": False,
    "properties": {
        "$schema": {"type": "string"},
        "description": {"type": "string"},
        "records": {"type": "array", "items": {
            "type": "object", "required": ["kind", "key", "data"], "additionalProperties": False,
            "properties": {"kind": {"type": "string", "minLength": 1, "maxLength": 40},
                           "key": {"type": "string", "minLength": 1, "maxLength": 200},
                           "ref": {"type": ["string", "null"], "maxLength": 200},
                           "customer": {"type": ["string", "null"], "maxLength": 200},
                           "data": _DATA}}},
        "cases": {"type": "array", "items": {
            "type": "object",
            "required": ["name", "start_as"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 200},
                "description": {"type": "string"},
                "start_as": _USER,
                "start": _DATA,
                "steps": {"type": "array", "items": {
                    "type": "object",
                    "if": {"required": ["task"]}, "then": _TASK_STEP,
                    "else": {"if": {"required": ["wait"]}, "then": _WAIT_STEP,
                             "else": {"if": {"required": ["message"]}, "then": _MESSAGE_STEP,
                                      "else": {"required": ["task"]}}}}},
                "path": {"type": "array", "items": {"type": "string", "minLength": 1}},
                "path_match": {"enum": ["exact", "in_order"]},
                "end": {"type": "object", "additionalProperties": False, "properties": {
                    "status": {"enum": list(STATUSES)},
                    "data": _DATA,
                    "tasks": {"type": "array", "items": {"type": "string", "minLength": 1}}}},
            }}},
    },
}
_VALIDATOR = Draft202012Validator(CASES_SCHEMA)


def _field(path: Iterable) -> str:
    """A JSON path as people read it: steps[2].data."""
    text = ""
    for part in path:
        text += f"[{part + 1}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _sentence(error) -> str:
    """One jsonschema error as a sentence about its field."""
    where = _field(error.path)
    kind, value = error.validator, error.validator_value
    if kind == "required":
        missing = next((name for name in value if name not in (error.instance or {})), value[0])
        if missing == "task" and where.startswith("steps"):
            return f"{where} is neither a task, a wait nor a message step (give task, wait or message)"
        return f"{where + ': ' if where else ''}{missing} is missing"
    if kind == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return f"{where + ': ' if where else ''}{', '.join(extra)} is not a field here"
    if kind == "type":
        wanted = value if isinstance(value, str) else " or ".join(value)
        return f"{where} must be {'an' if wanted[0] in 'aeio' else 'a'} {wanted}, not {json.dumps(error.instance, ensure_ascii=False)[:60]}"
    if kind == "enum":
        return f"{where} must be one of {', '.join(map(str, value))}"
    if kind == "pattern" and where.endswith("wait"):
        return f"{where} {error.instance!r} is not an ISO 8601 duration such as PT5H or P2D"
    if kind == "minLength":
        return f"{where} is empty"
    return f"{where}: {error.message}"


def case_problems(document: Any, tasks: Iterable[str] | None = None,
                  messages: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """What is wrong with a cases document, as (case, sentence) pairs; [] if nothing. `case` names
    the case ("case 2 'major contract goes to the GM'", or "-" for the file); the sentence names
    the field. With `tasks` (the process's human task ids) and `messages` (its message names),
    steps and paths naming others are problems too."""
    found: list[tuple[str, str]] = []
    cases = document.get("cases") if isinstance(document, dict) else None

    def which(index: int) -> str:
        case = cases[index] if isinstance(cases, list) and index < len(cases) else None
        name = case.get("name") if isinstance(case, dict) else None
        return f"case {index + 1}" + (f" '{name}'" if isinstance(name, str) and name else "")

    for error in sorted(_VALIDATOR.iter_errors(document), key=lambda e: [str(p) for p in e.path]):
        path = list(error.path)
        if len(path) >= 2 and path[0] == "records" and isinstance(path[1], int):
            error.path.popleft()
            error.path.popleft()
            found.append((f"record {path[1] + 1}", _sentence(error)))
        elif len(path) >= 2 and path[0] == "cases" and isinstance(path[1], int):
            error.path.popleft()
            error.path.popleft()
            found.append((which(path[1]), _sentence(error)))
        else:
            found.append(("-", _sentence(error)))
    if found or not isinstance(cases, list):
        return found
    names = [case["name"] for case in cases]
    for index, name in enumerate(names):
        if names.index(name) != index:
            found.append((which(index), f"name: another case is named {name!r}; names must differ"))
    known = set(tasks) if tasks is not None else None
    heard = set(messages) if messages is not None else None
    for index, case in enumerate(cases):
        for n, step in enumerate(case.get("steps", [])):
            if known is not None and "task" in step and step["task"] not in known:
                found.append((which(index), f"steps[{n + 1}].task: the process has no user task {step['task']!r}"
                                            + _nearest(step["task"], known)))
            if heard is not None and "message" in step and step["message"] not in heard:
                found.append((which(index), f"steps[{n + 1}].message: the process receives no message "
                                            f"{step['message']!r}" + _nearest(step["message"], heard)))
        for key in ("path", "tasks"):
            listed = case.get(key) if key == "path" else case.get("end", {}).get(key)
            for n, element in enumerate(listed or []):
                if known is not None and element not in known:
                    where = f"path[{n + 1}]" if key == "path" else f"end.tasks[{n + 1}]"
                    found.append((which(index), f"{where}: the process has no user task {element!r}"
                                                + _nearest(element, known)))
    return found


def _nearest(name: str, among: set[str]) -> str:
    import difflib
    near = difflib.get_close_matches(name, sorted(among), n=1)
    return f" (did you mean {near[0]!r}?)" if near else ""


# --- results ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class CaseResult:
    name: str
    passed: bool
    problems: tuple[str, ...]   # one sentence each: "step 2: expected task 'vp_approval', found 'gm_approval'"
    path: tuple[str, ...]       # the human tasks actually met, by element id, in order

    def as_json(self) -> dict:
        return {"name": self.name, "passed": self.passed, "problems": list(self.problems),
                "path": list(self.path)}


class CasesFailed(EngineError):
    """Raised by a deploy that requires the model tests (`versions.deploy(require_tests=True)`)
    when a case fails: `failed` maps each process id to its failing results."""

    def __init__(self, failed: Mapping[str, list[CaseResult]]):
        self.failed = dict(failed)
        names = "; ".join(f"{pid}: " + ", ".join(repr(r.name) for r in results)
                          for pid, results in sorted(self.failed.items()))
        super().__init__("nothing was deployed: model tests failed (%(cases)s)", cases=names)


# --- running ----------------------------------------------------------------------------------

_template_lock = threading.Lock()
_template: bytes | None = None


def _company():
    """The company's services, form lookups and demo records (package `processes`): what the
    processes call, as the web and the command line plug them in."""
    import processes
    from processes.customers import DEMO_CARDS, DEMO_CREDIT_LIST
    return processes.SERVICES, processes.LOOKUPS, DEMO_CARDS, DEMO_CREDIT_LIST


def _folder() -> str:
    """Where throwaway databases live: /dev/shm (memory) where there is one, else the temp folder."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else tempfile.gettempdir()


def _new_path() -> Path:
    # A name of its own per database: the runtime caches loaded definitions by database URL.
    return Path(_folder()) / f"bpm-model-tests-{uuid.uuid4().hex}.sqlite3"


def _remove(path: Path) -> None:
    # the database, its WAL files and the writers' lock file (engine.store.lock_file_path): the
    # run's store is gone, nobody else knows this database
    for each in (path, *(path.with_name(path.name + suffix) for suffix in ("-wal", "-shm", "-writer.lock"))):
        try:
            each.unlink()
        except FileNotFoundError:
            pass


def _seeded() -> bytes:
    """The demo database, migrated and seeded once per process, as SQLite bytes to copy."""
    global _template
    with _template_lock:
        if _template is None:
            from . import access, clock, credit, customers
            from .store import Store, migrate
            _, _, cards, credit_list = _company()
            path = _new_path()
            store = Store(f"sqlite:///{path}")
            try:
                migrate(store)
                with clock.fixed_now(START), store.write() as session:
                    access.seed_demo(session)
                    customers.seed_cards(session, cards, START)
                    credit.seed(session, credit_list, START)
                with store.engine.connect() as connection:
                    connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                store.dispose()
                _template = path.read_bytes()
            finally:
                store.dispose()
                _remove(path)
        return _template


class _Throwaway:
    """A fresh copy of the seeded database in a file of its own (in memory under /dev/shm): real
    SQLite, several connections and all, so commands run as they do on the deployment's; removed
    after the run."""

    def __enter__(self):
        from .store import Store
        self.path = _new_path()
        self.path.write_bytes(_seeded())
        self.store = Store(f"sqlite:///{self.path}")
        return self.store

    def __exit__(self, *exc) -> None:
        from .runtime import forget_definitions
        forget_definitions(str(self.store.engine.url))
        self.store.dispose()
        _remove(self.path)


def _write_files(folder: Path, files: Mapping[str, bytes | str]) -> Path:
    """A deployed version's files laid out as `bpm deploy` reads them: diagrams in bpmn/, forms/."""
    diagrams = folder / "bpmn"
    diagrams.mkdir()
    (folder / "forms").mkdir()
    for name, data in files.items():
        parts = Path(name).parts
        if (not parts or any(p in ("", ".", "..") for p in parts) or Path(name).is_absolute()
                or len(parts) > 2 or (len(parts) == 2 and parts[0] != "forms")):
            from .definitions import DefinitionError, Problem
            raise DefinitionError([Problem(name, 1, "-", "not a file name of a deployed version")])
        target = folder / name if len(parts) == 2 else diagrams / name
        target.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return diagrams


def run_cases(files: Mapping[str, bytes], process_id: str, cases: list | None = None, *,
              services: Mapping[str, Callable] | None = None,
              lookups: Mapping[str, Callable] | None = None) -> list[CaseResult]:
    """Run the cases of `process_id` against `files` (a version's files by name: BPMN and DMN by
    name, forms as `forms/NAME`), on a throwaway database seeded with the demo organisation,
    where only these files are deployed (never the real one). `cases` (the list of a cases file's
    `cases`, e.g. as a designer edits them) replaces the cases the files hold; the file's `records`
    still apply. Without cases (none given, none in the files) it is []. Raises `definitions.DefinitionError` if the files
    do not deploy, `runtime.InvalidInput` naming the case and field if `cases` is malformed,
    `runtime.NotFound` if the files hold no process `process_id`."""
    from . import versions
    from .definitions import message_rules
    from .runtime import Runtime
    text = files.get(cases_file(process_id))
    if cases is None and text is None:
        return []
    default_services, default_lookups, _, _ = _company() if services is None or lookups is None else (None,) * 4
    with _Throwaway() as store:
        with tempfile.TemporaryDirectory(prefix="bpm-model-tests-") as folder:
            diagrams = _write_files(Path(folder), files)
            deployed = versions.deploy(store, [diagrams], at=START)  # refuses a malformed cases file
        if process_id not in {d.process_id for d in deployed}:
            raise NotFound("there is no deployed process %(process)r", process=process_id)
        given = json.loads(text) if text is not None else {}
        document = given if cases is None else {"cases": cases, **({"records": given["records"]} if "records" in given else {})}
        problems = case_problems(document, *_declared(files)) if cases is not None else case_problems(document)
        if problems:
            raise InvalidInput("the model tests are not right: %(problems)s",
                               {where: sentence for where, sentence in problems},
                               problems="; ".join(f"{where}: {sentence}" for where, sentence in problems))
        _put_records(store, document.get("records", []))
        runtime = Runtime(store, services if services is not None else default_services,
                          lookups=lookups if lookups is not None else default_lookups)
        rules = message_rules(dict(files))
        clock = _Clock(START)
        return [_Case(runtime, process_id, case, clock, rules).run() for case in document["cases"]]


def _declared(files: Mapping[str, bytes | str]) -> tuple[set[str], set[str]]:
    """The human task ids and the message names the BPMN files declare (given cases are checked
    against them, as a deployed cases file is at deploy)."""
    from lxml import etree
    from .definitions import BPMN_NS, message_rules
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    tasks: set[str] = set()
    for name, data in files.items():
        if name.endswith(".bpmn"):
            root = etree.fromstring(data.encode("utf-8") if isinstance(data, str) else data, parser)
            tasks |= {el.get("id") for el in root.iter(f"{{{BPMN_NS}}}userTask", f"{{{BPMN_NS}}}manualTask")
                      if el.get("id")}
    return tasks, set(message_rules(dict(files)))


def run_deployed(store, process_id: str, version: int | None = None, actor: str | None = None,
                 **company) -> list[CaseResult]:
    """The cases of a deployed version of `process_id` (the newest by default), run on a throwaway
    database (run_cases). `actor` must be a designer (access.may_deploy); None is the operator."""
    from sqlalchemy import select
    from . import access
    from .runtime import Forbidden, NotFound, person
    from .store import Definition
    with store.read() as session:
        if actor is not None:
            who = person(session, actor)
            if not access.may_deploy(who):
                raise Forbidden("%(user)s may not run model tests: only %(roles)s may", user=who.username,
                                roles=access.roles_text(access.DEPLOY_ROLES))
        query = select(Definition.version, Definition.files).where(Definition.process_id == process_id)
        if version is not None:
            query = query.where(Definition.version == version)
        row = session.execute(query.order_by(Definition.version.desc()).limit(1)).first()
    if row is None:
        if version is not None:
            raise NotFound("process %(process)r has no version %(version)s", process=process_id, version=version)
        raise NotFound("there is no deployed process %(process)r", process=process_id)
    return run_cases({name: text.encode("utf-8") for name, text in row.files.items()}, process_id, **company)


MODEL_TEST_INSTANCE = "00000000-0000-4000-8000-000000000000"  # who "published" a given record


def _put_records(store, given: list[dict]) -> None:
    """The business records a cases file gives (its `records`: an order on file that a return
    names, a contract an order refers to), as if the process owning each had published them."""
    if not given:
        return
    from .store import BusinessRecord
    with store.write() as session:
        for record in given:
            session.merge(BusinessRecord(kind=record["kind"], key=record["key"], ref=record.get("ref"),
                                         customer=record.get("customer"), data=record["data"],
                                         instance_id=MODEL_TEST_INSTANCE, process_id="model-test",
                                         revision=1, updated_at=START))


class _Clock:
    def __init__(self, start: datetime):
        self.now = start

    def step(self, gap: timedelta = STEP_GAP) -> datetime:
        self.now += gap
        return self.now


class _Stop(Exception):
    """The case has failed at a step: the steps after it are not run."""


class _Case:
    def __init__(self, runtime, process_id: str, case: dict, clock: _Clock, rules: Mapping):
        self.rt = runtime
        self.process_id = process_id
        self.case = case
        self.clock = clock
        self.rules = rules
        self.problems: list[str] = []
        self.met: list[str] = []
        self.seen: set[str] = set()
        self.view = None

    def run(self) -> CaseResult:
        try:
            self.start()
            for n, step in enumerate(self.case.get("steps", []), start=1):
                if "task" in step:
                    self.task(n, step)
                elif "wait" in step:
                    self.wait(n, step)
                else:
                    self.message(n, step)
            self.check_path()
            self.check_end()
        except _Stop:
            pass
        return CaseResult(self.case["name"], not self.problems, tuple(self.problems), tuple(self.met))

    def fail(self, sentence: str) -> None:
        self.problems.append(sentence)
        raise _Stop

    def seen_now(self, view) -> None:
        self.view = view
        fresh = sorted((t for t in view.tasks if t.id not in self.seen), key=lambda t: (t.created, t.element_id))
        for t in fresh:
            self.seen.add(t.id)
            self.met.append(t.element_id)

    def start(self) -> None:
        from .runtime import EngineError
        try:
            view = self.rt.start(self.process_id, self.case["start_as"], copy.deepcopy(self.case.get("start", {})),
                                 at=self.clock.step())
        except EngineError as exc:
            self.fail(f"start as {self.case['start_as']}: refused: {_said(exc)}")
        self.seen_now(view)

    def open(self) -> str:
        """The tasks open now, as a problem names them."""
        if not self.view.tasks:
            return f"none (the instance is {self.view.status})"
        return ", ".join(repr(e) for e in sorted(t.element_id for t in self.view.tasks))

    def task(self, n: int, step: dict) -> None:
        from .runtime import EngineError
        found = [t for t in self.view.tasks if t.element_id == step["task"]]
        if not found:
            self.fail(f"step {n}: expected task {step['task']!r}, found {self.open()}")
        try:
            view = self.rt.complete(found[0].id, step["as"], copy.deepcopy(step.get("data", {})),
                                    at=self.clock.step())
        except EngineError as exc:
            self.refused(n, f"{step['task']} as {step['as']}", step, exc)
            return
        self.not_refused(n, f"{step['as']} completed {step['task']}", step)
        self.seen_now(view)

    def refused(self, n: int, what: str, step: dict, exc) -> None:
        said = _said(exc)
        expected = step.get("refused")
        if expected is None or expected is False:
            self.fail(f"step {n} ({what}): refused: {said}")
        if isinstance(expected, str) and expected.lower() not in said.lower():
            self.fail(f"step {n} ({what}): refused, but not saying {expected!r}: {said}")

    def not_refused(self, n: int, done: str, step: dict) -> None:
        expected = step.get("refused")
        if expected is not None and expected is not False:
            self.fail(f"step {n}: expected a refusal, but {done}")

    def wait(self, n: int, step: dict) -> None:
        from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
        from .runtime import EngineError
        parsed = TimerEventDefinition.parse_iso_duration(step["wait"])
        delta = TimerEventDefinition.get_timedelta_from_start(parsed, self.clock.now)
        at = self.clock.step(delta)
        if self.view.status != "running":
            return
        try:
            for _ in range(_MAX_TIMER_ROUNDS):
                view = self.rt.fire_timer(self.view.id, at=at)
                if not view.changed or view.status != "running":
                    break
                self.seen_now(view)
        except EngineError as exc:
            self.fail(f"step {n} (wait {step['wait']}): {_said(exc)}")
        self.seen_now(self.rt.instance(self.view.id))

    def message(self, n: int, step: dict) -> None:
        from .runtime import EngineError
        name = step["message"]
        correlation = step.get("correlation")
        if correlation is None:
            rule = self.rules.get(name)
            keys = rule.correlation if rule is not None else ()
            missing = [k for k in keys if self.view.data.get(k) in (None, "")]
            if missing:
                self.fail(f"step {n} (message {name}): the instance has no {', '.join(missing)} to find it by")
            correlation = {k: self.view.data[k] for k in keys}
        correlation = {k: str(v) for k, v in correlation.items()}
        try:
            self.rt.message(name, copy.deepcopy(step.get("data", {})), correlation, actor=step.get("as"), at=self.clock.step())
        except EngineError as exc:
            self.refused(n, f"message {name}" + (f" as {step['as']}" if step.get("as") else ""), step, exc)
            return
        self.not_refused(n, f"message {name} was delivered", step)
        self.seen_now(self.rt.instance(self.view.id))

    def check_path(self) -> None:
        expected = self.case.get("path")
        if expected is None:
            return
        met = self.met
        if self.case.get("path_match", "exact") == "exact":
            if met != expected:
                at = next((i for i, (a, b) in enumerate(zip(met, expected)) if a != b), min(len(met), len(expected)))
                found = repr(met[at]) if at < len(met) else "no more tasks"
                wanted = repr(expected[at]) if at < len(expected) else "no more tasks"
                self.problems.append(f"path: task {at + 1} expected {wanted}, met {found} "
                                     f"(met {_arrows(met)}; expected {_arrows(expected)})")
            return
        i = 0
        for element in met:
            if i < len(expected) and element == expected[i]:
                i += 1
        if i < len(expected):
            self.problems.append(f"path: expected {expected[i]!r} after {_arrows(expected[:i]) or 'the start'} "
                                 f"in this order, but the tasks met were {_arrows(met)}")

    def check_end(self) -> None:
        end = self.case.get("end") or {}
        view = self.view
        if "status" in end and view.status != end["status"]:
            self.problems.append(f"end: status is {view.status!r}, expected {end['status']!r}"
                                 + (f" (waiting at {self.open()})" if view.tasks else ""))
        if "tasks" in end:
            waiting = sorted(t.element_id for t in view.tasks)
            if waiting != sorted(end["tasks"]):
                self.problems.append(f"end: waits at {self.open()}, expected "
                                     f"{', '.join(repr(e) for e in sorted(end['tasks'])) or 'none'}")
        for where, sentence in _subset(view.data, end.get("data", {}), "data"):
            self.problems.append(f"end: {where} {sentence}")


def _arrows(elements: Iterable[str]) -> str:
    return " → ".join(elements)


def _said(exc) -> str:
    text = str(exc)
    fields = getattr(exc, "fields", None) or {}
    extra = [f"{k}: {v}" for k, v in fields.items() if k not in text]
    return text + (f" ({'; '.join(extra)})" if extra else "")


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:79] + "…"


def _subset(actual: Any, expected: Any, where: str) -> list[tuple[str, str]]:
    """Where `actual` does not hold `expected`: objects key by key (extra keys allowed), all else
    equal (a boolean is not a number)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [(where, f"is {_shown(actual)}, expected an object")]
        found = []
        for key, value in expected.items():
            if key not in actual:
                found.append((f"{where}.{key}", f"is missing, expected {_shown(value)}"))
            else:
                found.extend(_subset(actual[key], value, f"{where}.{key}"))
        return found
    if actual != expected or isinstance(actual, bool) != isinstance(expected, bool):
        return [(where, f"is {_shown(actual)}, expected {_shown(expected)}")]
    return []


def cases_line(text: bytes, case: str, document: Any = None) -> int:
    """The line of a cases file where the case named in `case` ("case 2 'name'") is written, for a
    problem's FILE:LINE (with the `document` read from it, the right one of cases with one name);
    1 if it cannot be told."""
    found = re.match(r"case (\d+) '(.*)'$", case)
    if not found:
        return 1
    index, name = int(found.group(1)) - 1, found.group(2)
    cases = document.get("cases") if isinstance(document, dict) else None
    before = sum(1 for c in cases[:index] if isinstance(c, dict) and c.get("name") == name) \
        if isinstance(cases, list) else 0
    for needle in {json.dumps(name, ensure_ascii=False).encode("utf-8"), json.dumps(name).encode("utf-8")}:
        at = -1
        for _ in range(before + 1):
            at = text.find(needle, at + 1)
            if at < 0:
                break
        if at >= 0:
            return text.count(b"\n", 0, at) + 1
    return 1
