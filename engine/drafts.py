"""Process drafts: a designer's files of one process saved but not deployed, numbered per process,
and the overview the designer's pages read (versions, running instances per version, incidents).

A draft is never changed after it is saved: each save is a new number, so what was linted, tested
or deployed is always a number one can open again. Files are checked here as text of the right
kind (BPMN and DMN well-formed XML, forms JSON objects); what they say is checked by the lint and
at deploy.
"""
from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from typing import Mapping

from lxml import etree
from sqlalchemy import func, select

from . import access, clock
from .runtime import EngineError, Forbidden, InvalidInput, NotFound, person
from .store import Definition, Incident, Instance, ProcessDraft, Store

KINDS = (".bpmn", ".dmn", ".json")
MAX_FILE_BYTES = 512 * 1024   # one file of a draft
MAX_FILES = 50                # files in one draft
_NAME = re.compile(r"^(forms/)?[A-Za-z0-9_][A-Za-z0-9_.\-]{0,150}$")  # forms sit in forms/, as deployed
_PROCESS_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,199}$")
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


@dataclass(frozen=True)
class DraftSummary:
    process_id: str
    number: int
    based_on_version: int | None
    author: str
    created_at: datetime
    names: tuple[str, ...]

    def as_json(self) -> dict:
        return {"process_id": self.process_id, "number": self.number,
                "based_on_version": self.based_on_version, "author": self.author,
                "created_at": self.created_at.isoformat(), "files": list(self.names)}


@dataclass(frozen=True)
class VersionSummary:
    version: int
    name: str
    deployed_at: datetime
    deployed_by: str
    content_hash: str
    running: int          # instances of this version not yet completed
    names: tuple[str, ...]

    @property
    def short_hash(self) -> str:
        return self.content_hash[:10]


@dataclass
class ProcessSummary:
    process_id: str
    name: str
    versions: list[VersionSummary] = field(default_factory=list)
    drafts: list[DraftSummary] = field(default_factory=list)
    open_incidents: int = 0

    @property
    def latest(self) -> VersionSummary | None:
        return self.versions[-1] if self.versions else None


def check_designer(store: Store, actor: str) -> access.Person:
    """The acting person, if they may use the designer's pages; else runtime.Forbidden."""
    with store.read() as session:
        who = person(session, actor)
    if not access.may_design(who):
        raise Forbidden("%(user)s may not design processes: only %(roles)s may", user=who.username,
                        roles=access.roles_text(access.DEPLOY_ROLES))
    return who


def check_file(name: str, data: bytes) -> str:
    """The file's text if `name` and `data` are a file a draft may hold; else InvalidInput saying
    what is wrong with which file."""
    if not _NAME.match(name or "") or not name.endswith(KINDS):
        raise InvalidInput("%(name)s is not a .bpmn, .dmn or .json file name (letters, digits, _ . - only)",
                           name=(name or "")[:160])
    if len(data) > MAX_FILE_BYTES:
        raise InvalidInput("%(name)s is larger than %(size)s bytes", name=name, size=MAX_FILE_BYTES)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("%(name)s is not UTF-8 text", name=name) from None
    if "\x00" in text:
        raise InvalidInput("%(name)s contains a NUL character", name=name)
    if name.endswith(".json"):
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise InvalidInput("%(name)s is not JSON: %(problem)s", name=name, problem=str(exc)) from None
        if not isinstance(value, dict):
            raise InvalidInput("%(name)s is not a JSON object", name=name)
        return text
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise InvalidInput("%(name)s is not well-formed XML: %(problem)s", name=name, problem=str(exc)) from None
    if etree.QName(root).localname != "definitions":
        raise InvalidInput("%(name)s is not a BPMN or DMN file: its root element is %(root)s, not definitions",
                           name=name, root=etree.QName(root).localname)
    return text


def check_files(files: Mapping[str, bytes | str]) -> dict[str, str]:
    if not files:
        raise InvalidInput("a draft needs at least one file")
    if len(files) > MAX_FILES:
        raise InvalidInput("a draft holds at most %(count)s files", count=MAX_FILES)
    if not any(name.endswith(".bpmn") for name in files):
        raise InvalidInput("a draft needs a .bpmn file")
    return {name: check_file(name, data.encode("utf-8") if isinstance(data, str) else data)
            for name, data in files.items()}


def save_draft(store: Store, process_id: str, files: Mapping[str, bytes | str], actor: str,
               based_on: int | None = None, at: datetime | None = None) -> int:
    """Save `files` as the next draft of `process_id`; returns its number. Forbidden unless the
    actor may design; InvalidInput naming the file when one is not a file a draft may hold."""
    check_designer(store, actor)
    if not _PROCESS_ID.match(process_id or ""):
        raise InvalidInput("%(process)s is not a process id", process=(process_id or "")[:200])
    texts = check_files(files)
    with store.write() as session:
        if based_on is not None and session.scalar(select(Definition.id).where(
                Definition.process_id == process_id, Definition.version == based_on)) is None:
            raise NotFound("%(process)s has no version %(version)s", process=process_id, version=based_on)
        last = session.scalar(select(func.max(ProcessDraft.number)).where(ProcessDraft.process_id == process_id))
        number = (last or 0) + 1
        session.add(ProcessDraft(process_id=process_id, number=number, files=texts,
                                 based_on_version=based_on, author=actor,
                                 created_at=at or clock.now()))
    return number


def drafts(store: Store, process_id: str) -> list[DraftSummary]:
    """The drafts of a process, oldest first."""
    with store.read() as session:
        rows = session.scalars(select(ProcessDraft).where(ProcessDraft.process_id == process_id)
                               .order_by(ProcessDraft.number)).all()
    return [DraftSummary(r.process_id, r.number, r.based_on_version, r.author, r.created_at,
                         tuple(sorted(r.files))) for r in rows]


def draft_files(store: Store, process_id: str, number: int) -> dict[str, str]:
    with store.read() as session:
        files = session.scalar(select(ProcessDraft.files).where(
            ProcessDraft.process_id == process_id, ProcessDraft.number == number))
    if files is None:
        raise NotFound("%(process)s has no draft %(number)s", process=process_id, number=number)
    return dict(files)


def version_files(store: Store, process_id: str, version: int | None = None) -> tuple[int, dict[str, str]]:
    """A deployed version's files (the newest when `version` is None) and its number."""
    query = select(Definition.version, Definition.files).where(Definition.process_id == process_id)
    query = (query.where(Definition.version == version) if version is not None
             else query.order_by(Definition.version.desc()).limit(1))
    with store.read() as session:
        row = session.execute(query).first()
    if row is None:
        if version is None:
            raise NotFound("there is no process %(process)s", process=process_id)
        raise NotFound("%(process)s has no version %(version)s", process=process_id, version=version)
    return row.version, dict(row.files)


def zipped(files: Mapping[str, str]) -> bytes:
    """The files as one zip, names as they are, in name order (the same files give the same bytes)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files[name].encode("utf-8"))
    return out.getvalue()


class DraftRefused(EngineError):
    """A draft the lint finds errors in is not deployed; `findings` are all the lint found."""
    status = "failed"

    def __init__(self, process_id: str, number: int, findings: list):
        self.findings = findings
        errors = [f for f in findings if f.severity == "error"]
        super().__init__("draft %(number)s of %(process)s was not deployed: the lint found %(count)s errors",
                         number=number, process=process_id, count=len(errors))


def deploy_draft(store: Store, process_id: str, number: int, actor: str,
                 at: datetime | None = None) -> list:
    """Deploy a draft's files as the next version (versions.deploy_files). Refused, nothing is
    deployed and DraftRefused carries everything the lint (engine.lint) finds, its warnings too.
    The lint's errors are deploy's own problems, so a draft that deploys is read once, not linted
    first and read again. Returns versions.Deployed rows."""
    from . import lint, versions  # (they import runtime, which imports the store; not this module)
    from .definitions import DefinitionError
    check_designer(store, actor)
    files = {name: text.encode("utf-8") for name, text in draft_files(store, process_id, number).items()}
    try:
        return versions.deploy_files(store, files, actor=actor, at=at)
    except DefinitionError:
        findings = lint.lint(store, files, actor)
        if not any(f.severity == "error" for f in findings):
            raise  # (the lint reads what deploy reads: it cannot miss a problem deploy found)
        raise DraftRefused(process_id, number, findings) from None


def open_incidents(store: Store, process_id: str, limit: int = 50) -> list[Incident]:
    """The newest open incidents of a process (at most `limit`), for its designer to look into."""
    with store.read() as session:
        return list(session.scalars(select(Incident).where(Incident.process_id == process_id,
                                                           Incident.status == "open")
                                    .order_by(Incident.created_at.desc(), Incident.id.desc()).limit(limit)))


def overview(store: Store, process_id: str | None = None) -> list[ProcessSummary]:
    """Every deployed process (or one) with its versions, the running instances of each version,
    its open incidents, and its drafts; processes with drafts only are listed too."""
    with store.read() as session:
        query = select(Definition.id, Definition.process_id, Definition.version, Definition.name,
                       Definition.deployed_at, Definition.deployed_by, Definition.content_hash,
                       Definition.files).order_by(Definition.process_id, Definition.version)
        if process_id is not None:
            query = query.where(Definition.process_id == process_id)
        rows = session.execute(query).all()
        running = dict(session.execute(select(Instance.definition_id, func.count()).where(
            Instance.status == "running")
            .group_by(Instance.definition_id)).all())
        incidents = dict(session.execute(select(Incident.process_id, func.count()).where(
            Incident.status == "open").group_by(Incident.process_id)).all())
        draft_query = select(ProcessDraft.process_id).distinct()
        if process_id is not None:
            draft_query = draft_query.where(ProcessDraft.process_id == process_id)
        with_drafts = set(session.scalars(draft_query).all())
    found: dict[str, ProcessSummary] = {}
    for r in rows:
        summary = found.setdefault(r.process_id, ProcessSummary(r.process_id, r.name))
        summary.name = r.name
        summary.versions.append(VersionSummary(r.version, r.name, r.deployed_at, r.deployed_by,
                                               r.content_hash, running.get(r.id, 0), tuple(sorted(r.files))))
    for pid in with_drafts:
        found.setdefault(pid, ProcessSummary(pid, pid))
    for pid, summary in found.items():
        summary.open_incidents = incidents.get(pid, 0)
        summary.drafts = drafts(store, pid)
    return [found[pid] for pid in sorted(found)]
