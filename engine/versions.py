"""Deployed versions: store parsed definitions as immutable numbered versions keyed by content hash."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from sqlalchemy import func, select

from . import access, clock
from .store import Definition, Store

if TYPE_CHECKING:  # parsing and serialising (SpiffWorkflow, lxml) are imported by deploy only, so
    from .definitions import ProcessDefinition  # listing versions (`bpm definitions`) stays cheap


@dataclass(frozen=True)
class Deployed:
    process_id: str
    version: int
    status: str  # "deployed" or "unchanged"
    notices: tuple[str, ...] = ()  # e.g. user tasks without a form (definitions.ProcessDefinition)
    # Deployed again with the content of this older version (a reverted file): it is current again.
    same_as: int | None = None

    def as_json(self) -> dict:
        """`same_as` appears only on a version deployed with an older version's content."""
        shown = {"process_id": self.process_id, "version": self.version, "status": self.status}
        if self.same_as is not None:
            shown["same_as"] = self.same_as
        return shown | {"notices": list(self.notices)}

    def sentence(self) -> str:
        """What happened, in one line: `approval 3 deployed (same content as version 1)`."""
        line = f"{self.process_id} {self.version} {self.status}"
        return line + (f" (same content as version {self.same_as})" if self.same_as is not None else "")


def deployed_decision_files(session) -> dict[str, bytes]:
    """The DMN files of the newest version of every deployed process, by name (the newest version
    holding a name wins): where a deploy finds a decision its files call but do not bring."""
    found: dict[str, tuple[int, bytes]] = {}
    for process_id, version, files in session.execute(select(Definition.process_id, Definition.version,
                                                             Definition.files)):
        for name, text in (files or {}).items():
            if name.endswith(".dmn") and (name not in found or found[name][0] < version):
                found[name] = (version, text.encode("utf-8"))
    return {name: data for name, (_, data) in found.items()}


def deploy(store: Store, paths: Sequence[str | Path], actor: str | None = None,
           at: datetime | None = None, require_tests: bool = False) -> list[Deployed]:
    """Validate every file, then deploy all processes in one transaction, or none.

    `actor` must hold the designer role (access.may_deploy); None is the operator on the server's
    shell (`bpm init`, `bpm deploy` without --as), recorded as access.OPERATOR.
    A process whose files are byte-for-byte those of its current (newest) version is `unchanged`.
    Files equal to an OLDER version (a reverted file) are deployed as a new version with that
    content, `same_as` naming the older one: history stays append-only, and new instances run
    the reverted content, since they start on the newest version.
    With `require_tests`, the model tests of each process (its `<process_id>.cases.json`,
    engine.modeltests) run on the files being deployed first: if any case fails, nothing is
    deployed (`modeltests.CasesFailed`, naming the failing cases).
    Raises `definitions.DefinitionError` listing every problem, `runtime.Forbidden` if refused.
    """
    from .definitions import load_definitions
    return _deploy(store, lambda roles, deployed: load_definitions(paths, roles, deployed), actor, at,
                   require_tests)


def deploy_files(store: Store, files: Mapping[str, bytes], actor: str | None = None,
                 at: datetime | None = None, require_tests: bool = False) -> list[Deployed]:
    """`deploy` for files held in memory, keyed by name (definitions.load_files): a designer's
    drafts, forms (`*.json`) among them."""
    from .definitions import load_files
    return _deploy(store, lambda roles, deployed: load_files(files, roles, deployed), actor, at,
                   require_tests)


def check_designer(session, actor: str | None) -> None:
    """`actor` may deploy (and lint): the designer role; None is the operator. Else runtime.Forbidden."""
    from .runtime import Forbidden, person  # runtime does not import this module
    if actor is not None:
        who = person(session, actor)
        if not access.may_deploy(who):
            raise Forbidden("%(user)s may not deploy: only %(roles)s may", user=who.username,
                            roles=access.roles_text(access.DEPLOY_ROLES))


def _deploy(store: Store, load: Callable[[set[str], dict[str, bytes]], list[ProcessDefinition]],
            actor: str | None, at: datetime | None, require_tests: bool = False) -> list[Deployed]:
    from . import state
    at = at or clock.now()
    with store.read() as session:
        check_designer(session, actor)
        roles = access.known_roles(session)
        deployed = deployed_decision_files(session)
    definitions = load(roles, deployed)
    if require_tests:
        from .modeltests import CasesFailed, run_cases  # (it deploys on a database of its own)
        failed = {}
        for definition in definitions:
            results = [r for r in run_cases(definition.files, definition.process_id) if not r.passed]
            if results:
                failed[definition.process_id] = results
        if failed:
            raise CasesFailed(failed)
    results: list[Deployed] = []
    with store.write() as session:
        for definition in definitions:
            current = session.execute(select(Definition.version, Definition.content_hash).where(
                Definition.process_id == definition.process_id)
                .order_by(Definition.version.desc()).limit(1)).first()
            if current is not None and current.content_hash == definition.content_hash:
                results.append(Deployed(definition.process_id, current.version, "unchanged",
                                        tuple(definition.notices)))
                continue
            same_as = session.scalar(select(func.max(Definition.version)).where(
                Definition.process_id == definition.process_id,
                Definition.content_hash == definition.content_hash))
            latest = current.version if current is not None else 0
            session.add(Definition(
                process_id=definition.process_id, version=latest + 1, name=definition.name,
                content_hash=definition.content_hash,
                files={name: data.decode("utf-8") for name, data in definition.files.items()},
                spec=state.dump_spec(definition.spec, definition.subprocess_specs),
                lane_roles=definition.lane_roles, forms=definition.forms,
                deployed_by=actor or access.OPERATOR,
                deployed_at=at))
            results.append(Deployed(definition.process_id, latest + 1, "deployed", tuple(definition.notices),
                                    same_as))
    return results


def listing(store: Store) -> list[dict]:
    with store.read() as session:
        rows = session.execute(select(Definition.process_id, Definition.version, Definition.name,
                                      Definition.content_hash, Definition.deployed_by,
                                      Definition.deployed_at)
                               .order_by(Definition.process_id, Definition.version)).all()
    return [{"process_id": r.process_id, "version": r.version, "name": r.name,
             "content_hash": r.content_hash, "deployed_by": r.deployed_by,
             "deployed_at": r.deployed_at.isoformat()} for r in rows]
