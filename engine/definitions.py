"""Reading BPMN and DMN files into deployable process definitions: parsing with SpiffWorkflow and
every deploy-time check, reported as FILE:LINE: ELEMENT_ID: message (pure; no database here).
"""
from __future__ import annotations

import ast
import difflib
import hashlib
import json
import io
import os
import re
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Iterable, Mapping, Sequence

from lxml import etree
from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnValidator
from SpiffWorkflow.bpmn.serializer.workflow import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.specs.bpmn_process_spec import BpmnProcessSpec
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.dmn.parser.BpmnDmnParser import SCHEMAS as DMN_SCHEMAS
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.spiff.parser.process import VALIDATOR as SPIFF_VALIDATOR
from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG

from . import foreign, schedules
from .forms import check_schema
from .scripts import check_code

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
SPIFF_NS = "http://spiffworkflow.org/bpmn/schema/1.0/core"
NS = {"bpmn": BPMN_NS, "spiffworkflow": SPIFF_NS}

MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_SCHEMA_ERRORS_PER_FILE = 20

# Every flow-node element of BPMN 2.0 (tFlowNode subclasses).  Those SpiffWorkflow's parser has no
# parser class for are refused; it would fail on them only if a token could reach them, or never.
FLOW_NODES = frozenset({
    "task", "userTask", "manualTask", "scriptTask", "serviceTask", "sendTask", "receiveTask",
    "businessRuleTask", "subProcess", "adHocSubProcess", "transaction", "callActivity",
    "exclusiveGateway", "inclusiveGateway", "parallelGateway", "complexGateway", "eventBasedGateway",
    "startEvent", "endEvent", "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent",
    "implicitThrowEvent", "callChoreography", "choreographyTask", "subChoreography",
})
SUPPORTED_TAGS = frozenset(SpiffBpmnParser.PARSER_CLASSES) | frozenset(SpiffBpmnParser.OVERRIDE_PARSER_CLASSES)

# The event definitions SpiffWorkflow 3.2's event parsers look for, per event element
# (bpmn/parser/event_parsers.py).  Any other one is dropped without a word, so the event would
# silently become a plain (none) event: refuse it instead.
EVENT_DEFINITIONS_READ = {
    "startEvent": {"message", "signal", "timer", "conditional"},
    "endEvent": {"message", "cancel", "error", "escalation", "terminate"},
    "intermediateCatchEvent": {"message", "signal", "timer", "conditional"},
    "intermediateThrowEvent": {"escalation", "message", "signal", "timer"},
    "boundaryEvent": {"cancel", "error", "escalation", "message", "signal", "timer", "conditional"},
    "sendTask": {"message"},
    "receiveTask": {"message"},
}

# DMNEngine implements UNIQUE and COLLECT, and returns the first match otherwise, which is right
# for FIRST and ANY only; it ignores a COLLECT aggregation.
DMN_HIT_POLICIES = frozenset({"UNIQUE", "FIRST", "ANY", "COLLECT"})

# SpiffWorkflow names its own task specs so; an element with such an id would collide with them.
RESERVED_IDS = frozenset({"Start", "End", "StartEventSplit", "StartEventJoin"})
RESERVED_SUFFIXES = (".EndJoin", ".BoundaryEventSplit", ".BoundaryEventJoin")

# Elements whose id names "where" a nested expression or definition is, for problems.
_OWNER_TAGS = FLOW_NODES | {"sequenceFlow", "process", "message", "signal", "error", "escalation",
                            "correlationProperty", "lane", "dataStore"}

_DECLARATION = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_ISO_SHAPE = re.compile(
    r"^(R\d*/)?(P(\d|T\d)[0-9A-Z.,]*|\d{4}-\d{2}-\d{2}([T ][0-9:.,]+)?(Z|[+-]\d{2}(:?\d{2})?)?)"
    r"(/[0-9A-Z:.,+\-]+)?$",
    re.IGNORECASE,
)
_DMN_QUESTION_MARK = re.compile(r"(\?)(?=(?:[^'\"]|['\"][^'\"]*['\"])*$)")  # as DMNEngine.evaluate
_ELEMENT_REPR = re.compile(r"<Element \{[^}]*\}(\w+) at 0x[0-9a-f]+>")


@dataclass(frozen=True)
class Problem:
    file: str            # the path as given by the user
    line: int | None
    element_id: str      # the BPMN/DMN element id, or "-" when there is none
    message: str         # one clear sentence

    def __str__(self) -> str:
        return f"{self.file}:{self.line or 0}: {self.element_id}: {self.message}"


class DefinitionError(Exception):
    """The files cannot be deployed; `problems` lists every reason found."""

    def __init__(self, problems: Iterable[Problem]):
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass
class ProcessDefinition:
    process_id: str
    name: str
    spec: BpmnProcessSpec
    subprocess_specs: dict[str, BpmnProcessSpec]
    files: dict[str, bytes]
    content_hash: str
    lane_roles: dict[str, str]
    forms: dict[str, dict] = field(default_factory=dict)   # form file name -> JSON Schema
    # Said at deploy, not refused: a user task without a form takes any JSON object as its data
    # (all but the engine's own fields), the exception to "a form is what a step may write".
    notices: list[str] = field(default_factory=list)


def content_hash(files: dict[str, bytes]) -> str:
    """sha256 over the files sorted by name; a length prefix keeps name/content boundaries exact."""
    digest = hashlib.sha256()
    for name, data in sorted(files.items()):
        encoded = name.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "big") + encoded)
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()


class _AlreadyRead(Exception):
    """A deployed file's bytes came with it: nothing to read from disk."""


def _declares_decision(data: bytes, decision: str) -> bool:
    """Whether DMN text declares decision `decision` (a quick look before the file is parsed)."""
    return re.search(rb"<(?:\w+:)?decision\b[^>]*\bid=[\"']" + re.escape(decision.encode()) + rb"[\"']", data) is not None


def load_definitions(paths: Sequence[str | Path], known_roles: Collection[str],
                     deployed: Mapping[str, bytes] | None = None) -> list[ProcessDefinition]:
    """Paths may be files (.bpmn, .dmn) or folders (searched recursively for *.bpmn and *.dmn).
    Returns the executable top-level processes, sorted by process_id. Raises DefinitionError with
    ALL problems found (not just the first) if anything is wrong; never any other exception."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    load = _Load(known_roles, deployed)
    try:
        definitions = load.run(paths)
    except DefinitionError:
        raise
    except Exception as exc:  # a bug of ours must still reach the user as a problem, not a traceback
        where = load.current.path if load.current is not None else (str(paths[0]) if paths else "-")
        load.problems.append(Problem(where, 1, "-", f"internal error while checking the definitions: "
                                                    f"{type(exc).__name__}: {_one_line(str(exc))}"))
    if load.problems:
        raise DefinitionError(load.sorted_problems())
    return definitions


def load_files(files: Mapping[str, bytes], known_roles: Collection[str],
               deployed: Mapping[str, bytes] | None = None) -> list[ProcessDefinition]:
    """load_definitions for files held in memory (a designer's drafts), keyed by name: .bpmn and
    .dmn files, and forms and label tables (`*.json`), which steps name by file name. Same result,
    same DefinitionError, the names as given standing for paths."""
    load = _Load(known_roles, deployed)
    try:
        for name, data in files.items():
            suffix = Path(name).suffix.lower()
            if suffix in (".bpmn", ".dmn"):
                load.add(name, None, bytes(data), Path(name).name)
            elif suffix == ".json":
                load.given_forms.setdefault(Path(name).name, bytes(data))
            else:
                load.report(name, 1, "-", "this is not a .bpmn, .dmn or form (.json) file")
        definitions = load.run([])
    except DefinitionError:
        raise
    except Exception as exc:  # as load_definitions: a bug of ours is a problem, not a traceback
        where = load.current.path if load.current is not None else next(iter(files), "-")
        load.problems.append(Problem(where, 1, "-", f"internal error while checking the definitions: "
                                                    f"{type(exc).__name__}: {_one_line(str(exc))}"))
    if load.problems:
        raise DefinitionError(load.sorted_problems())
    return definitions


def load_deployed(files: dict[str, str | bytes], process_id: str, known_roles: Collection[str]) -> ProcessDefinition:
    """A deployed version parsed again from its stored files (`Definition.files`: BPMN and DMN by
    name, forms as `forms/NAME`), as `bpm deploy` parsed them: for checking a version away from the
    database (engine.evidence). Raises DefinitionError if they do not make `process_id`."""
    import tempfile
    with tempfile.TemporaryDirectory(prefix="bpm-deployed-") as folder:
        diagrams = Path(folder) / "bpmn"
        for name, data in files.items():
            parts = Path(name).parts
            if not parts or any(part in ("", ".", "..") for part in parts) or Path(name).is_absolute() or (
                    len(parts) > 1 and parts[0] != "forms") or len(parts) > 2:
                raise DefinitionError([Problem(name, 1, "-", "not a file name of a deployed version")])
            path = Path(folder) / name if parts[0] == "forms" and len(parts) == 2 else diagrams / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        diagrams.mkdir(exist_ok=True)
        found = [d for d in load_definitions([diagrams], known_roles) if d.process_id == process_id]
    if not found:
        raise DefinitionError([Problem("-", 1, process_id, f"the files do not hold the process {process_id}")])
    return found[0]


# --- internals --------------------------------------------------------------------------------

@dataclass(eq=False)
class _Source:
    path: str                     # as the user gave it (a folder's files: folder joined with the relative path)
    name: str                     # basename: key of `files`, and the file name SpiffWorkflow records in specs
    index: int
    data: bytes = b""
    kind: str = ""                # "bpmn" or "dmn", from the root element
    tree: etree._ElementTree | None = None
    schema_valid: bool = False
    duplicate: bool = False       # declares a process or decision another file already declares
    in_spiff: bool = False        # handed to SpiffWorkflow's parser without error
    _ids: dict[str, etree._Element] | None = None
    _lines: dict[int, list[etree._Element]] | None = None
    _root: etree._Element | None = None

    @property
    def root(self) -> etree._Element | None:
        # Hold one proxy for the root as long as the source lives: SpiffWorkflow's parser keys
        # each document's lanes by `id(root)`, and lxml makes a new proxy (with a new id, or a
        # recycled one from another document) whenever nobody keeps the old one alive.
        if self._root is None and self.tree is not None:
            self._root = self.tree.getroot()
        return self._root

    def element(self, element_id: str | None) -> etree._Element | None:
        if self.tree is None or not element_id:
            return None
        if self._ids is None:
            self._ids = {}
            for el in self.tree.iter():
                if isinstance(el.tag, str) and el.get("id") is not None:
                    self._ids.setdefault(el.get("id"), el)
        return self._ids.get(element_id)

    def elements_at(self, line: int) -> list[etree._Element]:
        if self.tree is None:
            return []
        if self._lines is None:
            self._lines = {}
            for el in self.tree.iter():
                if isinstance(el.tag, str):
                    self._lines.setdefault(el.sourceline, []).append(el)
        return self._lines.get(line, [])


@dataclass
class _Process:
    source: _Source
    element: etree._Element
    calls: list[str] = field(default_factory=list)        # calledElement of its call activities
    decisions: list[str] = field(default_factory=list)    # calledDecisionId of its business rule tasks
    lane_roles: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.element.get("id")

    @property
    def executable(self) -> bool:
        # Stricter than SpiffWorkflow (which takes a missing attribute as "true"): only processes
        # the modeller explicitly marked executable are deployed.
        return self.element.get("isExecutable") == "true"


_schema_lock = threading.Lock()
_dmn_schemas: dict[str, etree.XMLSchema] = {}
_registry = None


def _spec_registry():
    global _registry
    if _registry is None:
        _registry = BpmnWorkflowSerializer.configure(SPIFF_CONFIG)
    return _registry


def _dmn_schema(namespace: str) -> etree.XMLSchema | None:
    path = DMN_SCHEMAS.get(namespace)
    if path is None:
        return None
    if namespace not in _dmn_schemas:
        _dmn_schemas[namespace] = BpmnValidator(path).validator
    return _dmn_schemas[namespace]


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname if isinstance(el.tag, str) else ""


def _is_bpmn(el: etree._Element, *names: str) -> bool:
    return isinstance(el.tag, str) and etree.QName(el).namespace == BPMN_NS and (
        not names or etree.QName(el).localname in names)


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _xml_message(message: str) -> str:
    """lxml names elements {namespace}local; write them as the prefixes people see in their files."""
    message = message.replace("{%s}" % BPMN_NS, "bpmn:").replace("{%s}" % SPIFF_NS, "spiffworkflow:")
    message = re.sub(r"\{[^}]*DMN[^}]*\}", "dmn:", message)
    return _one_line(message)


def _exception_message(exc: BaseException) -> str:
    if exc.args and isinstance(exc.args[0], str):
        text = exc.args[0]
    else:
        text = str(exc)
    notes = getattr(exc, "notes", None) or getattr(exc, "__notes__", None) or []
    if notes:
        text = text.rstrip(". ") + ". " + ". ".join(str(n) for n in notes)
    text = _ELEMENT_REPR.sub(lambda m: m.group(1), text)
    text = _one_line(text).rstrip().rstrip(".")
    if not isinstance(exc, SpiffWorkflowException):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text or type(exc).__name__


class _Load:
    def __init__(self, known_roles: Collection[str], deployed: Mapping[str, bytes] | None = None):
        self.known_roles = set(known_roles)
        # Messages name a few roles; keep the caller's order when it has one, so they read naturally.
        ordered = list(known_roles) if isinstance(known_roles, Sequence) else sorted(known_roles)
        self.role_examples = list(dict.fromkeys(ordered))
        self.problems: list[Problem] = []
        self.sources: list[_Source] = []
        self.by_name: dict[str, _Source] = {}
        self.unreadable = False       # some file could not be parsed at all: its ids are unknown
        self.processes: dict[str, _Process] = {}
        self.decisions: dict[str, _Source] = {}
        self.current: _Source | None = None
        self.fs_paths: dict[int, Path] = {}   # id(source) -> where to read it
        self.seen: set[str] = set()           # real paths collected
        self.given_dirs: list[Path] = []      # folders given: their forms count as the deployment's
        self.deployed = dict(deployed or {})  # DMN files of the deployed set, by name (resolve_decisions)
        self.broken_flows: set[str] = set()   # processes with a flow to or from nothing: not parsed further
        self.given_forms: dict[str, bytes] = {}  # forms and label tables given in memory (load_files), by name

    # -- reporting ---------------------------------------------------------------------------

    def report(self, source: _Source | str, line: int | None, element_id: str | None, message: str) -> None:
        path = source.path if isinstance(source, _Source) else source
        self.problems.append(Problem(path, line if line is not None else 1, element_id or "-", message))

    def report_at(self, source: _Source, el: etree._Element | None, message: str) -> None:
        if el is None:
            el = source.root
        if el is None:
            self.report(source, 1, "-", message)
            return
        self.report(source, el.sourceline, self._id_of(el), message)

    @staticmethod
    def _id_of(el: etree._Element) -> str:
        node = el
        while node is not None:
            if isinstance(node.tag, str) and node.get("id"):
                return node.get("id")
            node = node.getparent()
        return "-"

    @staticmethod
    def _owner(el: etree._Element) -> etree._Element:
        node = el
        while node is not None:
            if _is_bpmn(node) and _local(node) in _OWNER_TAGS and node.get("id"):
                return node
            node = node.getparent()
        node = el
        while node is not None and not (isinstance(node.tag, str) and node.get("id")):
            node = node.getparent()
        return node if node is not None else el

    def sorted_problems(self) -> list[Problem]:
        order = {s.path: s.index for s in self.sources}
        unique = list(dict.fromkeys(self.problems))
        return sorted(unique, key=lambda p: (order.get(p.file, -1), p.line or 0))

    def has_problem(self, source: _Source, element_id: str | None = None) -> bool:
        return any(p.file == source.path and (element_id is None or p.element_id == element_id)
                   for p in self.problems)

    # -- the whole load ----------------------------------------------------------------------

    def run(self, paths: Sequence[str | Path]) -> list[ProcessDefinition]:
        self.collect(paths)
        for source in self.sources:
            self.current = source
            self.read(source)
        self.current = None
        self.resolve_decisions()
        if not any(s.kind == "bpmn" for s in self.sources) and not self.problems:
            self.report(str(paths[0]) if paths else "-", 1, "-", "no .bpmn file was given, so there is no process to deploy")
        self.index()
        checked = self.checked_processes()
        for process in checked:
            self.current = process.source
            self.check_process(process)
        for source in self.sources:
            self.current = source
            if source.kind == "bpmn" and source.tree is not None:
                self.check_bpmn_file(source, any(p.source is source for p in checked))
            elif source.kind == "dmn" and source.tree is not None:
                self.check_dmn(source)
        self.current = None
        return self.build(checked)

    # -- files ---------------------------------------------------------------------------------

    def add(self, shown: str, real: Path | None, data: bytes | None = None,
            name: str | None = None) -> _Source | None:
        """A file of the deployment: read from `real`, or given as `data` (a deployed file, `name`)."""
        key = os.path.realpath(real) if real is not None else f"deployed:{shown}"
        if key in self.seen:
            return None
        self.seen.add(key)
        source = _Source(shown, real.name if real is not None else (name or Path(shown).name), len(self.sources))
        if data is not None:
            source.data = data
        self.sources.append(source)
        if real is not None:
            self.fs_paths[id(source)] = real
        other = self.by_name.get(source.name)
        if other is not None:
            self.report(source, 1, "-", f"another file named {source.name} is in this deployment "
                                        f"({other.path}); deployed files are stored by name, so names must differ")
            source.duplicate = True
        else:
            self.by_name[source.name] = source
        return source

    def collect(self, paths: Sequence[str | Path]) -> None:
        add = self.add
        for given in paths:
            shown, path = str(given), Path(given)
            if path.is_dir():
                self.given_dirs.append(path)
                # Hidden files and folders (.git, editor backups such as .#x.bpmn) are not deployed.
                found = sorted(p for p in path.rglob("*")
                               if p.suffix.lower() in (".bpmn", ".dmn") and p.is_file()
                               and not any(part.startswith(".") for part in p.relative_to(path).parts))
                for p in found:
                    add(str(path / p.relative_to(path)), p)
            elif path.is_file():
                if path.suffix.lower() not in (".bpmn", ".dmn"):
                    self.report(shown, 1, "-", "this is not a .bpmn or .dmn file")
                else:
                    add(shown, path)
            else:
                self.report(shown, 1, "-", "there is no such file or folder")

    def read(self, source: _Source) -> None:
        try:
            path = self.fs_paths.get(id(source))
            if path is None:  # a deployed file: its bytes came with it
                raise _AlreadyRead
            if path.stat().st_size > MAX_FILE_BYTES:
                self.report(source, 1, "-", f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB")
                self.unreadable = True
                return
            source.data = path.read_bytes()
        except _AlreadyRead:
            pass
        except OSError as exc:
            self.report(source, 1, "-", f"the file cannot be read: {exc.strerror or exc}")
            self.unreadable = True
            return
        # Before any XML parsing: external entities and entity expansion ("billion laughs") need a
        # DTD.  Also look with NUL bytes dropped, which catches UTF-16/32 encoded declarations.
        for data in (source.data, source.data.replace(b"\x00", b"")):
            found = _DECLARATION.search(data)
            if found:
                line = data.count(b"\n", 0, found.start()) + 1
                self.report(source, line, "-", "DOCTYPE and entity declarations are not allowed")
                self.unreadable = True
                return
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                                 dtd_validation=False, huge_tree=False)
        try:
            tree = etree.parse(io.BytesIO(source.data), parser)
        except etree.XMLSyntaxError as exc:
            self.report(source, exc.lineno or 1, "-", f"malformed XML: {_one_line(exc.msg or str(exc))}")
            self.unreadable = True
            return
        if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
            self.report(source, 1, "-", "DOCTYPE and entity declarations are not allowed")
            self.unreadable = True
            return
        root = tree.getroot()
        qname = etree.QName(root)
        if qname.localname == "definitions" and qname.namespace == BPMN_NS:
            source.kind = "bpmn"
        elif qname.localname == "definitions" and qname.namespace and "/DMN/" in qname.namespace.upper():
            source.kind = "dmn"
        else:
            self.report(source, root.sourceline, root.get("id") or "-",
                        f"the root element is {_xml_message(root.tag)}, not BPMN 2.0 or DMN definitions")
            self.unreadable = True
            return
        source.tree = tree
        if source.kind == "bpmn":
            # Other modellers' dialects (Camunda roles, FEEL, unquoted timers), rewritten in memory
            # only: the stored bytes stay as given, and every read of them rewrites them alike.
            for finding in foreign.translate(tree, self.known_roles):
                self.report_at(source, finding.element, finding.message)
        self.validate(source)

    def resolve_decisions(self) -> None:
        """Decisions the given processes call that no given file defines are looked for where a
        designer would keep them: a .dmn file beside the BPMN file that calls them, then the
        deployed set (the DMN file of that name the newest versions deployed). What is found joins
        the deployment, so the new version holds every file it runs on; what is not stays a
        problem, reported at the business rule task."""
        called: dict[str, _Source] = {}
        for source in self.sources:
            if source.kind == "bpmn" and source.tree is not None:
                for ref in source.tree.getroot().iterfind(".//spiffworkflow:calledDecisionId", NS):
                    if (ref.text or "").strip():
                        called.setdefault(ref.text.strip(), source)
        missing = set(called) - self._defined_decisions()
        for decision in sorted(missing):
            if decision in self._defined_decisions():
                continue
            folder = self.fs_paths.get(id(called[decision]))
            beside = sorted(folder.parent.glob("*.dmn")) if folder is not None else []
            for path in beside:
                if path.name not in self.by_name and _declares_decision(path.read_bytes(), decision):
                    self._read_added(self.add(str(path), path))
                    break
            else:
                for name, data in sorted(self.deployed.items()):
                    if name not in self.by_name and _declares_decision(data, decision):
                        self._read_added(self.add(f"{name} (deployed)", None, data, name))
                        break

    def _read_added(self, source: _Source | None) -> None:
        if source is not None:
            self.current = source
            self.read(source)
            self.current = None

    def _defined_decisions(self) -> set[str]:
        return {el.get("id") for source in self.sources if source.kind == "dmn" and source.tree is not None
                for el in source.tree.getroot() if etree.QName(el).localname == "decision"}

    def validate(self, source: _Source) -> None:
        """XSD validation with SpiffWorkflow's own schemas (BPMN 2.0 + spiffworkflow.xsd; DMN 1.1-1.3)
        done here rather than by the parser, which would report only the last error of a file."""
        root = source.root
        if source.kind == "bpmn":
            schema = SPIFF_VALIDATOR.validator
            SPIFF_VALIDATOR.preprocess(source.tree)
            label = "BPMN 2.0"
        else:
            schema = _dmn_schema(etree.QName(root).namespace)
            label = "DMN"
            if schema is None:  # a DMN version SpiffWorkflow has no schema for: its parser decides
                source.schema_valid = True
                return
        with _schema_lock:
            valid = schema.validate(source.tree)
            errors = [(e.line, e.message) for e in schema.error_log]
        if valid:
            source.schema_valid = True
            return
        for line, message in errors[:MAX_SCHEMA_ERRORS_PER_FILE]:
            at = source.elements_at(line)
            element_id = next((el.get("id") for el in at if el.get("id")), None)
            if element_id is None and at:
                element_id = self._id_of(at[0])
            self.report(source, line, element_id, f"not valid {label}: {_xml_message(message)}")
        if len(errors) > MAX_SCHEMA_ERRORS_PER_FILE:
            self.report(source, errors[MAX_SCHEMA_ERRORS_PER_FILE][0], "-",
                        f"{len(errors) - MAX_SCHEMA_ERRORS_PER_FILE} more schema errors are not listed")

    # -- what is declared where ----------------------------------------------------------------

    def index(self) -> None:
        for source in self.sources:
            if source.tree is None:
                continue
            self.current = source
            if source.kind == "bpmn":
                for el in source.root.iterfind(f"{{{BPMN_NS}}}process"):
                    pid = el.get("id")
                    if not pid:
                        self.report_at(source, el, "the process has no id")
                        continue
                    if pid in self.processes:
                        first = self.processes[pid].source
                        self.report_at(source, el, f"process id {pid} is already declared in {first.path}; "
                                                   f"process ids must be unique across the files deployed together")
                        source.duplicate = True
                        continue
                    process = _Process(source, el)
                    for call in el.iter(f"{{{BPMN_NS}}}callActivity"):
                        if call.get("calledElement"):
                            process.calls.append(call.get("calledElement"))
                    for task in el.iter(f"{{{BPMN_NS}}}businessRuleTask"):
                        ref = task.findtext("bpmn:extensionElements/spiffworkflow:calledDecisionId", None, NS)
                        if ref:
                            process.decisions.append(ref)
                    self.processes[pid] = process
                if not any(p.source is source and p.executable for p in self.processes.values()) \
                        and not source.duplicate:
                    first = source.root.find(f"{{{BPMN_NS}}}process")
                    target = first if first is not None else source.root
                    self.report_at(source, target, f"no executable process in {source.name}; mark the process "
                                                   f'to deploy with isExecutable="true"')
            else:
                dmn = {"dmn": etree.QName(source.root).namespace}
                decisions = source.root.xpath("./dmn:decision", namespaces=dmn)
                if not decisions:
                    self.report_at(source, source.root, "the DMN file declares no decision")
                for n, el in enumerate(decisions):
                    did = el.get("id")
                    if n > 0:
                        self.report_at(source, el, f"decision {did} is the second decision of this file, but "
                                                   f"SpiffWorkflow reads one decision per DMN file; move it to a file of its own")
                        continue
                    if not el.xpath("./dmn:decisionTable", namespaces=dmn):
                        self.report_at(source, el, f"decision {did} has no decision table; only decision tables are supported")
                    if did in self.decisions:
                        self.report_at(source, el, f"decision id {did} is already declared in "
                                                   f"{self.decisions[did].path}; decision ids must be unique")
                        source.duplicate = True
                    elif did:
                        self.decisions[did] = source

    def closure(self, pid: str) -> list[_Process]:
        """The process and every process it calls, directly or not (those found)."""
        found: dict[str, _Process] = {}
        todo = [pid]
        while todo:
            current = todo.pop()
            if current in found or current not in self.processes:
                continue
            found[current] = self.processes[current]
            todo.extend(found[current].calls)
        return list(found.values())

    def top_level(self) -> list[_Process]:
        return sorted((p for p in self.processes.values() if p.executable), key=lambda p: p.id)

    def checked_processes(self) -> list[_Process]:
        checked: dict[str, _Process] = {}
        for process in self.top_level():
            for p in self.closure(process.id):
                checked.setdefault(p.id, p)
        return list(checked.values())

    # -- checks on the XML of each process that will run ----------------------------------------

    def check_process(self, process: _Process) -> None:
        for check in (self.check_ids, self.check_flows, self.check_supported, self.check_expressions,
                      self.check_lanes, self.check_human_tasks, self.check_references):
            try:
                check(process)
            except Exception as exc:  # one broken check must not hide the others' findings
                self.report_at(process.source, process.element,
                               f"could not be checked ({check.__name__}): {_exception_message(exc)}")

    def check_ids(self, process: _Process) -> None:
        for el in process.element.iter():
            element_id = el.get("id") if isinstance(el.tag, str) else None
            if element_id and (element_id in RESERVED_IDS or element_id.endswith(RESERVED_SUFFIXES)):
                self.report(process.source, el.sourceline, element_id,
                            f"element id {element_id} is reserved by SpiffWorkflow, which gives that name to an "
                            f"internal task; rename the element")

    def check_flows(self, process: _Process) -> None:
        """Every sequence flow starts and ends at an element of its own (sub)process: SpiffWorkflow
        would otherwise answer with a message about something else ("we found two items, perhaps a
        form has the same ID?"), at another element."""
        for container in [process.element, *process.element.iter(*(f"{{{BPMN_NS}}}{t}" for t in
                                                                   ("subProcess", "adHocSubProcess", "transaction")))]:
            nodes = {el.get("id") for el in container if _is_bpmn(el) and el.get("id")
                     and _local(el) not in ("sequenceFlow", "laneSet", "textAnnotation", "association")}
            for flow in container.iterfind(f"{{{BPMN_NS}}}sequenceFlow"):
                for end, what in (("sourceRef", "starts at"), ("targetRef", "goes to")):
                    ref = flow.get(end)
                    if not ref:
                        self.report_at(process.source, flow, f"sequence flow {flow.get('id')} has no {end}")
                    elif ref not in nodes:
                        near = difflib.get_close_matches(ref, sorted(n for n in nodes if n), n=1)
                        hint = f" (did you mean '{near[0]}'?)" if near else ""
                        self.report_at(process.source, flow, f"sequence flow {flow.get('id')} {what} '{ref}', "
                                                             f"which is no element of this process{hint}")
                        self.broken_flows.add(process.id)

    def check_supported(self, process: _Process) -> None:
        source = process.source
        for el in process.element.iter():
            if not _is_bpmn(el):
                continue
            local = _local(el)
            if local in FLOW_NODES and el.tag not in SUPPORTED_TAGS:
                self.report_at(source, el, f"{local} is not supported")
                continue
            if local in FLOW_NODES and el.get("isForCompensation") == "true":
                self.report_at(source, el, "compensation activities (isForCompensation) are not supported")
            if local in EVENT_DEFINITIONS_READ:
                for child in el:
                    child_name = _local(child)
                    if _is_bpmn(child) and child_name == "eventDefinitionRef":
                        self.report_at(source, el, f"eventDefinitionRef is not supported; put the event "
                                                   f"definition inside the {local}")
                    elif _is_bpmn(child) and child_name.endswith("EventDefinition"):
                        kind = child_name[: -len("EventDefinition")]
                        if kind not in EVENT_DEFINITIONS_READ[local]:
                            self.report_at(source, el, f"{child_name} on a {local} is not supported")

    def check_expressions(self, process: _Process) -> None:
        for el in process.element.iter():
            self._check_expression_element(process.source, el)

    def _check_expression_element(self, source: _Source, el: etree._Element) -> None:
        if not isinstance(el.tag, str):
            return
        qname = etree.QName(el)
        local, text = qname.localname, el.text
        if qname.namespace == BPMN_NS:
            if local == "scriptTask":
                script_format = el.get("scriptFormat")
                scripts = el.findall("bpmn:script", NS)
                if script_format and "python" not in script_format.lower():
                    self.report_at(source, el, f"the script is written in {script_format}; only Python scripts run here")
                elif not scripts or not (scripts[0].text or "").strip():
                    self.report_at(source, el, f"script task {el.get('id')} has no script")
                else:
                    self._code(source, el, scripts[0].text, "exec", "script")
            elif el.get(foreign.UNTRANSLATED):
                pass  # reported by foreign.translate
            elif local == "conditionExpression":
                owner = self._owner(el)
                language = el.get("language")
                if language and "python" not in language.lower():
                    self.report_at(source, owner, f"the condition is written in {language}; only Python expressions run here")
                elif not (text or "").strip():
                    self.report_at(source, owner, "the condition is empty")
                else:
                    self._code(source, owner, text, "eval", f"condition {_short(text)!r}")
            elif local in ("timeDate", "timeDuration", "timeCycle"):
                self._timer(source, self._owner(el), local, text)
            elif local in ("loopCardinality", "completionCondition", "loopCondition", "condition") \
                    and (text or "").strip():
                self._code(source, self._owner(el), text, "eval", f"{local} {_short(text)!r}")
            elif local in ("formalExpression", "messagePath") and _is_bpmn(el.getparent(), "correlationPropertyRetrievalExpression") \
                    and (text or "").strip():
                self._code(source, self._owner(el), text, "eval", f"correlation expression {_short(text)!r}")
        elif qname.namespace == SPIFF_NS:
            if local in ("preScript", "postScript") and (text or "").strip():
                what = "pre-script" if local == "preScript" else "post-script"
                self._code(source, self._owner(el), text, "exec", what)
            elif local in ("messagePayload", "payloadExpression") and (text or "").strip():
                self._code(source, self._owner(el), text, "eval", f"{local} {_short(text)!r}")
            elif local == "expression" and _local(el.getparent()) == "processVariableCorrelation" \
                    and (text or "").strip():
                self._code(source, self._owner(el), text, "eval", f"correlation expression {_short(text)!r}")

    def _code(self, source: _Source, owner: etree._Element, code: str, mode: str, what: str) -> None:
        message = check_code(code, mode)
        if message is not None:
            self.report_at(source, owner, f"{what}: {message}")

    def _timer(self, source: _Source, owner: etree._Element, kind: str, text: str | None) -> None:
        expression = (text or "").strip()
        if not expression:
            self.report_at(source, owner, f"the timer's {kind} is empty")
            return
        literal = None
        try:
            body = ast.parse(expression, mode="eval").body
            if isinstance(body, ast.Constant) and isinstance(body.value, str):
                literal = body.value
        except SyntaxError:
            pass
        if literal is None and _ISO_SHAPE.match(expression):
            self.report_at(source, owner, f'timer expression {expression} is a Python expression; '
                                          f'quote it: "{expression}"')
            return
        message = check_code(text, "eval")
        if message is not None:
            self.report_at(source, owner, f"timer expression {_short(expression)}: {message}")
            return
        if literal is not None:
            problem = _iso_problem(kind, literal.strip())
            if problem:
                self.report_at(source, owner, f"timer expression {expression} {problem}")
                return
        if _local(owner) == "startEvent" and _is_bpmn(owner.getparent(), "process"):
            # The engine starts the process at the timer's instants (engine.schedules): it needs them
            # without any data to evaluate against.
            if literal is None:
                self.report_at(source, owner, f"timer expression {_short(expression)}: a timer start event's "
                                              f'timer is a quoted literal, such as "R/2026-12-01T09:00:00+08:00/P1M"')
                return
            problem = schedules.problem(kind, literal.strip())
            if problem:
                self.report_at(source, owner, problem)

    def check_lanes(self, process: _Process) -> None:
        source = process.source
        examples = ", ".join(self.role_examples[:2] + ["…"]) if self.role_examples else "none are known"
        # Compare lanes as elements, not by id(): lxml proxies die and their ids get reused.
        holding = list(self.lanes_by_node(source).values())
        for lane in process.element.iter(f"{{{BPMN_NS}}}lane"):
            if lane.find("bpmn:childLaneSet/bpmn:lane", NS) is not None and not any(
                    lane is held for held in holding):
                continue  # only groups other lanes: no task ever gets its name
            name = lane.get("name")
            roles = lane.xpath("./bpmn:extensionElements/spiffworkflow:properties/"
                               "spiffworkflow:property[@name='role']/@value", namespaces=NS)
            lane_id = lane.get("id") or "-"
            if not name:
                # SpiffWorkflow gives tasks their lane's name; tasks of a nameless lane have none.
                self.report_at(source, lane, f"lane {lane_id} has no name, so its tasks cannot be told apart "
                                             f"from tasks in no lane; name it after a role ({examples})")
                continue
            role = roles[0].strip() if roles else name.strip()
            if role not in self.known_roles:
                if roles:
                    message = (f"lane '{name}' has role property '{role}', which is not a known role "
                               f"({examples})")
                else:
                    message = (f"lane '{name}' maps to no known role; name it after a role ({examples}) "
                               f"or give it a spiffworkflow property 'role'")
                self.report_at(source, lane, message)
                continue
            previous = process.lane_roles.get(name)
            if previous is not None and previous != role:
                self.report_at(source, lane, f"lane '{name}' maps to role '{role}' but another lane of the same "
                                             f"name maps to '{previous}'; a lane name must mean one role")
                continue
            process.lane_roles[name] = role

    @staticmethod
    def lanes_by_node(source: _Source) -> dict[str, etree._Element]:
        """Flow node id -> its lane, as SpiffWorkflow indexes lanes: by flowNodeRef over the whole
        document, the last one winning (so a nested lane beats its parent)."""
        lane_of: dict[str, etree._Element] = {}
        for ref in source.root.iter(f"{{{BPMN_NS}}}flowNodeRef"):
            if ref.text:
                lane_of[ref.text] = ref.getparent()
        return lane_of

    def check_human_tasks(self, process: _Process) -> None:
        source = process.source
        lane_of = self.lanes_by_node(source)
        for task in process.element.iter(f"{{{BPMN_NS}}}userTask", f"{{{BPMN_NS}}}manualTask"):
            # SpiffWorkflow hands a subprocess's lane down to everything inside it; the outermost wins.
            chain = [task]
            node = task.getparent()
            while node is not None and node is not process.element:
                if _is_bpmn(node, "subProcess", "transaction", "adHocSubProcess"):
                    chain.append(node)
                node = node.getparent()
            lane = next((lane_of[n.get("id")] for n in reversed(chain) if n.get("id") in lane_of), None)
            if lane is None:
                kind = "user task" if _local(task) == "userTask" else "manual task"
                self.report_at(source, task, f"{kind} {task.get('id')} is in no lane, so no role could act on it")

    def check_references(self, process: _Process) -> None:
        source = process.source
        for call in process.element.iter(f"{{{BPMN_NS}}}callActivity"):
            called = call.get("calledElement")
            if not called:
                self.report_at(source, call, f"call activity {call.get('id')} names no process to call (calledElement)")
            elif called not in self.processes and not self.unreadable:
                self.report_at(source, call, f"call activity {call.get('id')} calls process '{called}', "
                                             f"which is in none of the files loaded")
        for task in process.element.iter(f"{{{BPMN_NS}}}businessRuleTask"):
            ref = task.findtext("bpmn:extensionElements/spiffworkflow:calledDecisionId", None, NS)
            if not ref:
                self.report_at(source, task, f"business rule task {task.get('id')} names no decision; "
                                             f"add spiffworkflow:calledDecisionId")
            elif ref not in self.decisions and not self.unreadable:
                self.report_at(source, task, f"business rule task {task.get('id')} calls decision '{ref}', "
                                             f"which is in none of the DMN files loaded")

    def check_bpmn_file(self, source: _Source, runs: bool) -> None:
        """Checks of what lies outside the processes; only for files with a process that runs."""
        if not runs:
            return
        try:
            root = source.root
            for store in root.iter(f"{{{BPMN_NS}}}dataStore"):
                if store.get("name") not in SpiffBpmnParser.DATA_STORE_CLASSES:
                    self.report_at(source, store, f"data store '{store.get('name') or store.get('id')}' is not "
                                                  f"supported; the engine has no data store implementations")
            for child in root:
                if _is_bpmn(child, "message", "signal", "error", "escalation", "correlationProperty"):
                    for el in child.iter():
                        self._check_expression_element(source, el)
                if _is_bpmn(child, "message"):
                    props = _properties(child)
                    if "sender_roles" in props:
                        self._check_roles(source, child, f"message {child.get('name') or child.get('id')}: "
                                                         f"property sender_roles", props["sender_roles"])
        except Exception as exc:
            self.report_at(source, source.root, f"could not be checked: {_exception_message(exc)}")

    def _check_roles(self, source: _Source, el: etree._Element, what: str, value: str) -> None:
        """A roles property (start_roles, sender_roles): known roles separated by commas, or '*'."""
        roles = [part.strip() for part in (value or "").split(",") if part.strip()]
        if not roles:
            self.report_at(source, el, f"{what} is empty; name roles separated by commas, or * for anyone signed in")
        for role in roles:
            if role != "*" and role not in self.known_roles:
                examples = ", ".join(self.role_examples[:2] + ["…"]) if self.role_examples else "none are known"
                self.report_at(source, el, f"{what} names '{role}', which is not a known role ({examples})")

    def check_dmn(self, source: _Source) -> None:
        """Decision tables are Python too: input expressions, input entries (as DMNEngine combines
        them with their input) and output entries are checked like scripts, and each cell against
        its column: FEEL literals (`false`, `true`, `null`) are refused, and where the column
        declares a typeRef (boolean, number, string) a literal of another type is refused, naming
        the rule (its number in the table), the column and the fix (`_dmn_cell_problem`)."""
        try:
            dmn = {"dmn": etree.QName(source.root).namespace}
            for table in source.root.xpath(".//dmn:decisionTable", namespaces=dmn):
                policy = (table.get("hitPolicy") or "UNIQUE").upper()
                if policy not in DMN_HIT_POLICIES or (policy == "COLLECT" and table.get("aggregation")):
                    shown = f"{policy} {table.get('aggregation')}" if table.get("aggregation") else policy
                    self.report_at(source, table, f"hit policy {shown} is not supported; use UNIQUE, FIRST, "
                                                  f"ANY or COLLECT without aggregation")
                inputs: list[str | None] = []
                input_columns: list[tuple[str, str | None]] = []  # (label, typeRef) of each input
                for column in table.xpath("./dmn:input", namespaces=dmn):
                    label = column.get("label") or column.get("id") or f"input {len(inputs) + 1}"
                    type_ref = column.xpath("./dmn:inputExpression/@typeRef", namespaces=dmn)
                    input_columns.append((label, type_ref[0] if type_ref else None))
                    expression = column.findtext("dmn:inputExpression/dmn:text", None, dmn)
                    if not (expression or "").strip():
                        self.report_at(source, column, f"input '{label}' has no input expression")
                        inputs.append(None)
                        continue
                    inputs.append(expression)
                    message = check_code(expression, "eval")
                    if message:
                        self.report_at(source, column, f"input expression {_short(expression)!r}: {message}")
                        inputs[-1] = None
                output_columns = [(column.get("label") or column.get("name") or column.get("id")
                                   or f"output {n + 1}", column.get("typeRef"))
                                  for n, column in enumerate(table.xpath("./dmn:output", namespaces=dmn))]
                for number, rule in enumerate(table.xpath("./dmn:rule", namespaces=dmn), start=1):
                    entries = rule.xpath("./dmn:inputEntry", namespaces=dmn)
                    for entry, expression, (label, type_ref) in zip(entries, inputs, input_columns):
                        text = entry.findtext("dmn:text", None, dmn)
                        if expression is None or not (text or "").strip() or text.strip() == "-":
                            continue
                        cell = f"rule {number}, column {label!r}: input entry {_short(text)!r}"
                        tested = _dmn_test(expression, text)
                        message = check_code(tested, "eval")
                        if message is None and tested == expression + text and re.match(r"\w", text.strip()) \
                                and re.search(r"\w$", expression):
                            # DMNEngine joins an operator form to the input without a space
                            message = (f"it runs as {_short(tested)!r}, which names no variable: write "
                                       f"? {text.strip()} (the ? stands for the input)")
                        if message is None:
                            message = _dmn_cell_problem(text, type_ref, "input")
                        if message:
                            self.report_at(source, entry, f"{cell}: {message}")
                    for entry, (label, type_ref) in zip(rule.xpath("./dmn:outputEntry", namespaces=dmn),
                                                         output_columns):
                        text = entry.findtext("dmn:text", None, dmn)
                        if (text or "").strip():
                            cell = f"rule {number}, column {label!r}: output entry {_short(text)!r}"
                            message = check_code(text, "eval") or _dmn_cell_problem(text, type_ref, "output")
                            if message:
                                self.report_at(source, entry, f"{cell}: {message}")
        except Exception as exc:
            self.report_at(source, source.root, f"could not be checked: {_exception_message(exc)}")

    # -- SpiffWorkflow: parse, serialise, instantiate -------------------------------------------

    def build(self, checked: list[_Process]) -> list[ProcessDefinition]:
        # validator=None: the same XSDs already ran in `validate`, which reports every error.
        parser = SpiffBpmnParser()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for source in self.sources:
                if source.tree is None or not source.schema_valid or source.duplicate:
                    continue
                self.current = source
                if source.kind == "dmn":
                    self._add_dmn(parser, source)
                else:
                    self._add_bpmn(parser, source)
            self.current = None
            definitions = []
            for process in self.top_level():
                definition = self._definition(parser, process)
                if definition is not None:
                    definitions.append(definition)
        return definitions

    def _add_dmn(self, parser: SpiffBpmnParser, source: _Source) -> None:
        try:
            parser.add_dmn_xml(source.root, filename=source.name)
            decision_id = source.root.xpath("./dmn:decision[1]/@id",
                                            namespaces={"dmn": etree.QName(source.root).namespace})[0]
            parser.dmn_parsers[decision_id].parse()  # SpiffWorkflow parses lazily; find errors now
            source.in_spiff = True
        except Exception as exc:
            self._spiff_problem(exc, source, source.root)

    def _add_bpmn(self, parser: SpiffBpmnParser, source: _Source) -> None:
        try:
            parser.add_bpmn_xml(source.tree, filename=source.name)
            source.in_spiff = True
        except Exception as exc:
            self._spiff_problem(exc, source, source.root)

    def _ready(self, process: _Process) -> bool:
        """All its parts reached SpiffWorkflow; if not, the reason has been reported already."""
        for p in self.closure(process.id):
            if not p.source.in_spiff or any(c not in self.processes for c in p.calls):
                return False
            if any(d not in self.decisions or not self.decisions[d].in_spiff for d in p.decisions):
                return False
        return True

    def _definition(self, parser: SpiffBpmnParser, process: _Process) -> ProcessDefinition | None:
        if not self._ready(process):
            return None
        source, element = process.source, process.element
        self.current = source
        if process.id in self.broken_flows:
            return None  # SpiffWorkflow's parser would only report the same flow as something else
        try:
            spec = parser.get_spec(process.id)
            subprocess_specs = parser.get_subprocess_specs(process.id)
        except Exception as exc:
            self._spiff_problem(exc, source, element)
            return None
        closure = self.closure(process.id)
        if any(self.has_problem(part.source) for part in closure):
            return None  # what follows would mostly report consequences of problems already listed
        name = process.id
        try:
            registry = _spec_registry()
            for name, each in [(process.id, spec), *subprocess_specs.items()]:
                registry.convert(each)
        except Exception as exc:
            self.report_at(source, element, f"SpiffWorkflow cannot serialise the spec of {name}: "
                                            f"{_exception_message(exc)}")
            return None
        try:
            BpmnWorkflow(spec, subprocess_specs)
        except Exception as exc:
            if isinstance(exc, RecursionError) and element.find("bpmn:endEvent", NS) is None:
                # SpiffWorkflow recurses for ever over a process whose flows never end
                self.report_at(source, element, f"process {process.id} has no end event, so SpiffWorkflow cannot "
                                                f"create a workflow from it; add an end event where its tokens finish")
            else:
                self.report_at(source, element, f"SpiffWorkflow cannot create a workflow from this process: "
                                                f"{_exception_message(exc)}")
            return None

        lane_roles: dict[str, str] = {}
        for part in closure:
            for lane, role in part.lane_roles.items():
                if lane_roles.setdefault(lane, role) != role:
                    self.report_at(part.source, part.element,
                                   f"lane '{lane}' maps to role '{role}' in process {part.id} but to "
                                   f"'{lane_roles[lane]}' elsewhere in process {process.id}; a lane name must "
                                   f"mean one role throughout a process and the processes it calls")
        files = {part.source.name: part.source.data for part in closure}
        for part in closure:
            for decision in part.decisions:
                dmn = self.decisions[decision]
                files[dmn.name] = dmn.data
        forms: dict[str, dict] = {}
        notices: list[str] = []
        for part in closure:
            self.check_task_properties(part, forms, files, notices)
            self.check_loops(part, notices)
        self.check_data_labels(process, forms, files)
        self.check_model_cases(process, closure, files)
        if any(self.has_problem(part.source) for part in closure):
            return None
        return ProcessDefinition(
            process_id=process.id,
            name=element.get("name") or process.id,
            spec=spec,
            subprocess_specs=subprocess_specs,
            files=files,
            content_hash=content_hash(files),
            lane_roles=lane_roles,
            forms=forms,
            notices=notices,
        )

    # Elements a token stops at (or may: a called process is not looked into): a loop through one
    # of them gives the command back. Any other loop must end by itself within one command.
    _WAITS = frozenset(("userTask", "manualTask", "receiveTask", "intermediateCatchEvent",
                        "eventBasedGateway", "callActivity", "subProcess", "transaction"))

    def check_loops(self, part: _Process, notices: list[str]) -> None:
        """A cycle of sequence flows through no wait state is noted in `notices`: it is allowed
        (a bounded loop over items), but run for ever it is stopped by the engine step budget."""
        nodes: dict[str, etree._Element] = {}
        for el in part.element:
            kind = etree.QName(el).localname if isinstance(el.tag, str) else ""
            if el.get("id") and kind not in self._WAITS and kind not in ("sequenceFlow", "laneSet"):
                nodes[el.get("id")] = el
        after: dict[str, set[str]] = {n: set() for n in nodes}
        for flow in part.element.iterfind("bpmn:sequenceFlow", NS):
            if flow.get("sourceRef") in nodes and flow.get("targetRef") in nodes:
                after[flow.get("sourceRef")].add(flow.get("targetRef"))

        reached = {n: reachable(after, n) for n in nodes}
        noted: set[str] = set()
        for n in nodes:  # document order: the loop is named by its first element
            if n in noted or n not in reached[n]:
                continue
            loop = [m for m in nodes if m in reached[n] and n in reached[m]]
            noted.update(loop)
            notices.append(str(Problem(part.source.path, nodes[n].sourceline, n,
                                       f"the loop through {', '.join(loop)} has no user task, receive task, "
                                       f"catch event or event-based gateway to wait at: it must end by itself, "
                                       f"or the engine stops it after BPM_MAX_ENGINE_STEPS steps")))

    def check_task_properties(self, part: _Process, forms: dict[str, dict], files: dict[str, bytes],
                              notices: list[str] | None = None) -> None:
        """`form` files exist and are JSON Schemas; `due`, `remind_before`, `assignee` are valid;
        a user or manual task without a form is noted in `notices`."""
        source = part.source
        real = self.fs_paths.get(id(source))
        folder = real.parent if real is not None else None
        for el in part.element.iter(f"{{{BPMN_NS}}}userTask", f"{{{BPMN_NS}}}manualTask",
                                    f"{{{BPMN_NS}}}startEvent"):
            props = {p.get("name"): p.get("value") for p in el.iterfind(
                "bpmn:extensionElements/spiffworkflow:properties/spiffworkflow:property", NS)}
            kind = etree.QName(el).localname
            label = {"userTask": "user task", "manualTask": "manual task", "startEvent": "start event"}[kind]
            what = f"{label} {el.get('id')}"
            for name in ("due", "remind_before"):
                value = props.get(name)
                if value is None or (name == "due" and value.strip().lower() == "none"):
                    continue
                try:
                    TimerEventDefinition.parse_iso_duration(value.strip())
                except Exception:
                    self.report_at(source, el, f"{what}: property {name} is {value!r}, not an ISO 8601 "
                                               f"duration such as PT4H or P14D" + (" (or none)" if name == "due" else ""))
            if props.get("assignee"):
                problem = check_code(props["assignee"], "eval")
                if problem:
                    self.report_at(source, el, f"{what}: assignee expression {props['assignee']!r}: {problem}")
            if props.get("four_eyes") not in (None, "true", "false"):
                self.report_at(source, el, f"{what}: property four_eyes must be true or false")
            if kind == "startEvent" and "start_roles" in props:
                self._check_roles(source, el, f"{what}: property start_roles", props["start_roles"])
            form = props.get("form")
            if not form:
                if kind != "startEvent" and notices is not None:
                    notices.append(f"{what} has no form: it takes any JSON object as its data "
                                   f"(except the engine's own fields, such as initiator)")
                continue
            if "/" in form or "\\" in form or form.startswith("."):
                self.report_at(source, el, f"{what}: form {form!r} must be a file name in forms/")
                continue
            candidates = [*((folder / form, folder.parent / "forms" / form) if folder is not None else ()),
                          *(d / form for d in self.given_dirs)]
            path = next((c for c in candidates if c.is_file()), None)
            if path is None and form not in self.given_forms:
                where = (f"in neither {folder} nor {folder.parent / 'forms'}" if folder is not None
                         else "not among the files given")
                self.report_at(source, el, f"{what} names form {form!r}, which is {where}")
                continue
            if form in forms:
                continue
            try:
                content = self.given_forms[form] if path is None else path.read_bytes()
                schema = json.loads(content)
            except (OSError, ValueError) as exc:
                self.report_at(source, el, f"{what}: form {form} is not JSON: {exc}")
                continue
            problem = check_schema(schema)
            if problem:
                self.report_at(source, el, f"{what}: form {form}: {problem}")
                continue
            forms[form] = schema
            files[f"forms/{form}"] = content

    def check_data_labels(self, process: _Process, forms: dict[str, dict], files: dict[str, bytes]) -> None:
        """The process's label table, `<process id>.data.json` beside its forms, if there is one: a
        JSON Schema whose properties title the data fields no form asks for (what scripts and
        services write), and mark with `"x-hidden": true` those kept for the engine and scripts
        only. It is deployed with the forms; pages label an instance's data from both."""
        name = f"{process.id}.data.json"
        folder = self.fs_paths.get(id(process.source))
        folder = folder.parent if folder is not None else None
        candidates = [c for c in ((folder / name, folder.parent / "forms" / name) if folder else ())
                      if c.is_file()] + [d / name for d in self.given_dirs if (d / name).is_file()]
        if not (candidates or name in self.given_forms) or name in forms:
            return
        try:
            content = candidates[0].read_bytes() if candidates else self.given_forms[name]
            schema = json.loads(content)
        except (OSError, ValueError) as exc:
            self.report_at(process.source, process.element, f"label table {name} is not JSON: {exc}")
            return
        problem = check_schema(schema)
        if problem:
            self.report_at(process.source, process.element, f"label table {name}: {problem}")
            return
        forms[name] = schema
        files[f"forms/{name}"] = content

    def check_model_cases(self, process: _Process, closure: list[_Process], files: dict[str, bytes]) -> None:
        """The process's model tests, `<process id>.cases.json` beside its forms (engine.modeltests,
        which owns the format): deployed with the version, so each version holds the cases written
        for it. A malformed file is refused, each problem naming the case and the field."""
        from .modeltests import CASES_SUFFIX, case_problems, cases_line  # (it imports this module)
        name = f"{process.id}{CASES_SUFFIX}"
        folder = self.fs_paths.get(id(process.source))
        folder = folder.parent if folder is not None else None
        candidates = [c for c in ((folder / name, folder.parent / "forms" / name) if folder else ())
                      if c.is_file()] + [d / name for d in self.given_dirs if (d / name).is_file()]
        if not candidates:
            return
        shown = str(candidates[0])
        try:
            content = candidates[0].read_bytes()
            document = json.loads(content)
        except (OSError, ValueError) as exc:
            self.report(shown, getattr(exc, "lineno", None) or 1, "-", f"the model tests are not JSON: {exc}")
            return
        tasks = {el.get("id") for part in closure for el in part.element.iter(
            f"{{{BPMN_NS}}}userTask", f"{{{BPMN_NS}}}manualTask") if el.get("id")}
        messages = {m.get("name") or m.get("id") for part in closure
                    for m in part.source.root.iterfind("bpmn:message", NS)}
        for case, sentence in case_problems(document, tasks, messages):
            self.report(shown, cases_line(content, case, document), "-",
                        f"{case}: {sentence}" if case != "-" else sentence)
        files[f"forms/{name}"] = content

    def _spiff_problem(self, exc: BaseException, source: _Source, fallback: etree._Element) -> None:
        """SpiffWorkflow's errors name an element id (seldom a line): find it in the files."""
        file_name = getattr(exc, "file_name", None)
        where = self.by_name.get(file_name, source) if file_name else source
        element_id = getattr(exc, "id", None) or getattr(getattr(exc, "task_spec", None), "bpmn_id", None)
        element = where.element(element_id)
        if element is None and element_id:
            for other in self.sources:
                element = other.element(element_id)
                if element is not None:
                    where = other
                    break
        message = _exception_message(exc)
        if element is None:
            for token in re.findall(r"['\"]([^'\"]+)['\"]", message):
                element = where.element(token)
                if element is not None:
                    break
        # SpiffWorkflow stops at its first error, which our own checks may already have reported:
        # skip it if it names an element we reported on, or names none in a file we reported on.
        if element is not None:
            element_id = self._id_of(element)
            if not self.has_problem(where, element_id):
                self.report(where, element.sourceline, element_id, message)
        elif not self.has_problem(where):
            self.report_at(source, fallback, message)


def reachable(edges: Mapping[str, Iterable[str]], start: str) -> set[str]:
    """The nodes reached from `start` by one edge or more (`start` itself only on a cycle); the
    loop check here and the lint's flow analysis (engine.lint) walk a diagram's flows with it."""
    seen: set[str] = set()
    todo = list(edges[start])
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo.extend(edges[n])
    return seen


def _properties(el: etree._Element) -> dict[str, str]:
    return {p.get("name"): p.get("value") for p in el.iterfind(
        "bpmn:extensionElements/spiffworkflow:properties/spiffworkflow:property", NS)}


@dataclass(frozen=True)
class MessageRule:
    """What a process says of a message it receives (properties of its `bpmn:message`): who may
    send it (`sender_roles`) and the keys a sender must name to find the instance (`correlation`)."""
    sender_roles: str | None = None
    correlation: tuple[str, ...] = ()


def message_rules(files: dict[str, str | bytes]) -> dict[str, MessageRule]:
    """Message name -> its rule, from the BPMN files of a deployed definition (checked at deploy)."""
    rules: dict[str, MessageRule] = {}
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    for name, text in sorted(files.items()):
        if not name.endswith(".bpmn"):
            continue
        data = text.encode("utf-8") if isinstance(text, str) else text
        root = etree.parse(io.BytesIO(data), parser).getroot()
        for message in root.iterfind("bpmn:message", NS):
            props = _properties(message)
            keys = tuple(k.strip() for k in (props.get("correlation") or "").split(",") if k.strip())
            rules.setdefault(message.get("name") or message.get("id"),
                             MessageRule(props.get("sender_roles"), keys))
    return rules


def _iso_problem(kind: str, value: str) -> str | None:
    """None if `value` parses as SpiffWorkflow's timer of this kind will parse it, else why not."""
    try:
        if kind == "timeDuration":
            if not value.upper().startswith("P"):
                raise ValueError(value)
            TimerEventDefinition.parse_iso_duration(value)
        elif kind == "timeDate":
            TimerEventDefinition.parse_time_or_duration(value)
        else:
            if not value.upper().startswith("R"):
                raise ValueError(value)
            TimerEventDefinition.parse_iso_recurring_interval(value)
    except Exception:
        return {
            "timeDuration": 'is not an ISO 8601 duration such as "PT4H" or "P2D"',
            "timeDate": 'is not an ISO 8601 date-time such as "2026-11-23T09:00:00+08:00"',
            "timeCycle": 'is not an ISO 8601 repeating interval such as "R3/PT1H"',
        }[kind]
    return None


def _dmn_test(input_expression: str, entry: str) -> str:
    """The expression DMNEngine evaluates for one input entry of one rule."""
    replaced = _DMN_QUESTION_MARK.sub("dmninputexpr", entry)
    if "dmninputexpr" in replaced:
        return replaced
    try:
        ast.parse(entry, mode="eval")
    except SyntaxError:
        return input_expression + entry  # an operator: "< 1000" becomes "amount< 1000"
    return f"({input_expression}) == ({entry})"


# FEEL (DMN's own expression language) literals that are not Python: here they are names, unknown
# at run time, so a cell holding one deploys and fails when a token reaches the table.
_FEEL_LITERALS = {"true": "True", "false": "False", "null": "None"}
_DMN_TYPES = {"boolean": "boolean", "bool": "boolean", "number": "number", "integer": "number",
              "int": "number", "long": "number", "double": "number", "float": "number", "decimal": "number",
              "string": "string", "str": "string"}


def _dmn_cell_problem(text: str, type_ref: str | None, kind: str) -> str | None:
    """What is wrong with one DMN cell that compiles, with the fix, or None.

    `kind` is "input" (an entry tested against its column's input: a value, an operator form such
    as `>= 1000`, a `?` form, or `in (...)`) or "output" (a value). The literal values in the
    cell must be of the column's typeRef (boolean: True/False; number: unquoted; string: quoted);
    other expressions (names of task data, calls) are not typed here."""
    entry = text.strip()
    tree = _parse_dmn_cell(entry, kind)
    if tree is None:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id.lower() in _FEEL_LITERALS:
            python = _FEEL_LITERALS[node.id.lower()]
            return f"{node.id} is not Python (the cells are Python expressions): write {python}"
    column_type = _DMN_TYPES.get((type_ref or "").rsplit(":", 1)[-1].strip().lower())
    if kind == "input" and isinstance(tree.body, (ast.Tuple, ast.List)) and "dmninputexpr" not in entry:
        listed = ", ".join(ast.get_source_segment(entry, e) or ast.unparse(e) for e in tree.body.elts)
        return f"a list of values matches nothing here: write ? in ({listed}) to match any of them"
    if column_type is None:
        return None
    values = _dmn_literals(tree.body)
    if column_type == "string" and isinstance(tree.body, ast.Name):
        return (f"the column is a string, and {tree.body.id} unquoted is the name of a variable: write "
                f'"{tree.body.id}" for the text (or str({tree.body.id}) for the variable\'s value)')
    for value in values:
        if value is None:
            continue
        if column_type == "boolean" and not isinstance(value, bool):
            return f"the column is boolean, and {value!r} is not: write True or False"
        if column_type == "number" and (isinstance(value, bool) or not isinstance(value, (int, float))):
            if isinstance(value, str) and _is_number(value):
                return f"the column is a number, and {value!r} is text: write {value.strip()} without quotes"
            return f"the column is a number, and {value!r} is not: write a number such as 1000"
        if column_type == "string" and not isinstance(value, str):
            return f'the column is a string, and {value!r} is not: write "{value}" in quotes'
    return None


def _parse_dmn_cell(entry: str, kind: str) -> ast.Expression | None:
    replaced = _DMN_QUESTION_MARK.sub("dmninputexpr", entry) if kind == "input" else entry
    for candidate in ((replaced,) if kind == "output" or "dmninputexpr" in replaced
                      else (entry, f"dmninputexpr {entry}")):
        try:
            return ast.parse(candidate, mode="eval")
        except SyntaxError:
            continue
    return None


def _dmn_literals(node: ast.AST) -> list:
    """The literal values a cell compares with or gives: the cell itself, a comparison's operands,
    the members of an `in (...)` list."""
    literal = _literal(node)
    if literal is not _NOT_LITERAL:
        return [literal]
    found = []
    if isinstance(node, ast.Compare):
        for operand in [node.left, *node.comparators]:
            members = operand.elts if isinstance(operand, (ast.Tuple, ast.List, ast.Set)) else [operand]
            found.extend(v for v in map(_literal, members) if v is not _NOT_LITERAL)
    elif isinstance(node, ast.BoolOp):
        for value in node.values:
            found.extend(_dmn_literals(value))
    return found


_NOT_LITERAL = object()


def _literal(node: ast.AST):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)) \
            and isinstance(node.operand, ast.Constant) and isinstance(node.operand.value, (int, float)) \
            and not isinstance(node.operand.value, bool):
        return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
    return _NOT_LITERAL


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
