"""Lint: owns the lint rules — every check deploy makes (as findings), and what would only show
when a token gets there: variables read that no step before writes, form fields no step reads,
gateways whose conditions can all be false, unreachable elements, loops without a way out, DMN
cells of the wrong type. One function for the CLI (`bpm lint`), the API and the designer page.

Static analysis of the XML (lxml, so each finding has its line); sound rather than complete:
where the data a step writes cannot be known (a step without a form takes any data), nothing
after it is said to be unwritten.
"""
from __future__ import annotations

import ast
import difflib
import io
import json
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from . import access
from .definitions import (_ISO_SHAPE, BPMN_NS, FLOW_NODES, NS, SPIFF_NS, DefinitionError, Problem, reachable,
                          load_definitions, load_files)
from .forms import ENGINE_FIELDS, check_schema

__all__ = ["Finding", "RULES", "lint_files", "lint_paths", "lint"]

# rule -> what it finds (docs/conventions.md "Lint" lists them with an example each)
RULES = {
    "deploy": "anything deploy refuses",
    "dmn-cell": "a decision table cell whose literal is not of its column's type",
    "unwritten-variable": "a variable read by a condition or script that no form or earlier step writes",
    "unread-field": "a form field nothing reads: a near name is read instead (a misspelling), or a decision no gateway reads",
    "no-default": "a gateway whose conditions can all be false, without a default flow",
    "unreachable": "an element no token can reach from a start event",
    "no-way-out": "a loop no token can leave",
    "no-form": "a user or manual task without a form: it takes any data, so lint cannot follow what it writes",
    "internal": "a late rule could not check a process (a bug of lint's: the others still ran)",
}


@dataclass(frozen=True)
class Finding:
    rule: str            # a key of RULES
    severity: str        # "error" (deploy would refuse) | "warning" (deploys, but runs late)
    file: str            # the file as given (a name or a path)
    line: int | None
    element_id: str | None   # the BPMN/DMN element to mark on the diagram
    message: str         # one sentence
    fix: str | None = None   # where one is obvious

    def as_json(self) -> dict:
        return {"rule": self.rule, "severity": self.severity, "file": self.file, "line": self.line,
                "element_id": self.element_id, "message": self.message, "fix": self.fix}

    def __str__(self) -> str:
        return f"{self.file}:{self.line or 0}: {self.element_id or '-'}: {self.message}"


def lint_files(files: Mapping[str, bytes], known_roles: Collection[str],
               deployed: Mapping[str, bytes] | None = None) -> list[Finding]:
    """Findings for files held in memory, keyed by name (.bpmn, .dmn, forms and label tables
    `*.json`): deploy's problems, then the late rules."""
    files = {name: data.encode("utf-8") if isinstance(data, str) else bytes(data) for name, data in files.items()}
    findings = _deploy_findings(lambda: load_files(files, known_roles, deployed))
    return _sorted(findings + _late_findings(files, {Path(n).name: d for n, d in files.items()
                                                     if n.lower().endswith(".json")}, deployed))


def lint_paths(paths: Sequence[str | Path], known_roles: Collection[str],
               deployed: Mapping[str, bytes] | None = None) -> list[Finding]:
    """Findings for files and folders (searched recursively, as deploy does; forms are looked for
    where deploy looks: beside the diagram, in ../forms, in any folder given)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    diagrams = [p for p in paths if Path(p).suffix.lower() != ".json"]
    findings = _deploy_findings(lambda: load_definitions(diagrams, known_roles, deployed)) if diagrams else []
    files: dict[str, bytes] = {}
    forms: dict[str, bytes] = {}
    folders: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            folders.append(path)
            for found in sorted(path.rglob("*")):
                if found.is_file() and not any(part.startswith(".") for part in found.relative_to(path).parts):
                    _take(files, forms, str(path / found.relative_to(path)), found)
        elif path.is_file():
            _take(files, forms, str(given), path)
            folders.extend((path.parent, path.parent.parent / "forms"))
    for folder in folders:  # where deploy looks for forms
        for candidate in (folder, folder.parent / "forms"):
            if candidate.is_dir():
                for found in sorted(candidate.glob("*.json")):
                    forms.setdefault(found.name, _read(found))
    return _sorted(findings + _late_findings(files, forms, deployed))


def lint(store, paths_or_files: Sequence[str | Path] | Mapping[str, bytes], actor: str | None = None) -> list[Finding]:
    """lint_files or lint_paths with the roles and the deployed decision tables of `store`.
    `actor` must be a designer (access.may_deploy), else runtime.Forbidden; None: the operator."""
    from .versions import check_designer, deployed_decision_files
    with store.read() as session:
        check_designer(session, actor)
        roles = access.known_roles(session)
        deployed = deployed_decision_files(session)
    if isinstance(paths_or_files, Mapping):
        return lint_files(paths_or_files, roles, deployed)
    return lint_paths(paths_or_files, roles, deployed)


# --- deploy's problems -----------------------------------------------------------------------------

_DID_YOU_MEAN = re.compile(r"\(did you mean '([^']+)'\?\)")
_WRITE = re.compile(r": write (.+)$")
_QUOTE = re.compile(r"; quote it: (.+)$")


def _deploy_findings(load) -> list[Finding]:
    try:
        load()
    except DefinitionError as exc:
        return [_from_problem(p) for p in exc.problems]
    except Exception as exc:  # load_* promise DefinitionError only; a user still gets a sentence
        return [Finding("deploy", "error", "-", None, None, f"the files could not be checked: {type(exc).__name__}")]
    return []


def _from_problem(problem: Problem) -> Finding:
    message = problem.message
    rule = "dmn-cell" if re.search(r": (input|output) entry ", message) and ("the column is" in message
                                                                           or "is not Python" in message) else "deploy"
    fix = None
    for pattern, shown in ((_DID_YOU_MEAN, "did you mean '{}'?"), (_WRITE, "write {}"), (_QUOTE, "quote it: {}")):
        found = pattern.search(message)
        if found:
            fix = shown.format(found.group(1))
            break
    return Finding(rule, "error", problem.file, problem.line,
                   problem.element_id if problem.element_id != "-" else None, message, fix)


def _sorted(findings: Iterable[Finding]) -> list[Finding]:
    unique = list(dict.fromkeys(findings))
    return sorted(unique, key=lambda f: (f.file, f.line or 0, f.rule, f.element_id or ""))


def _take(files: dict[str, bytes], forms: dict[str, bytes], shown: str, path: Path) -> None:
    suffix = path.suffix.lower()
    if suffix in (".bpmn", ".dmn"):
        files[shown] = _read(path)
    elif suffix == ".json":
        forms.setdefault(path.name, _read(path))


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""  # deploy reports the file


# --- the late rules ------------------------------------------------------------------------------------

_PARSER_OPTIONS = dict(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
_DECLARATION = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_CONTAINERS = ("subProcess", "transaction", "adHocSubProcess")


def _parse(data: bytes) -> etree._Element | None:
    if _DECLARATION.search(data.replace(b"\x00", b"")):
        return None
    try:
        return etree.parse(io.BytesIO(data), etree.XMLParser(**_PARSER_OPTIONS)).getroot()
    except Exception:
        return None  # deploy reports it


def _local(el) -> str:
    return etree.QName(el).localname if isinstance(el.tag, str) else ""


def _is_bpmn(el, *names: str) -> bool:
    return isinstance(el.tag, str) and etree.QName(el).namespace == BPMN_NS and (not names or _local(el) in names)


def _kind(local: str) -> str:
    """userTask -> user task"""
    return re.sub(r"(?<!^)([A-Z])", lambda m: " " + m.group(1).lower(), local)


def _properties(el) -> dict[str, str]:
    return {p.get("name"): p.get("value") for p in el.iterfind(
        "bpmn:extensionElements/spiffworkflow:properties/spiffworkflow:property", NS)}


def _builtins() -> frozenset[str]:
    from .scripts import _make_builtins  # the names scripts get from the sandbox, not from task data
    return frozenset(_make_builtins())


def _late_findings(files: Mapping[str, bytes], forms: Mapping[str, bytes],
                   deployed: Mapping[str, bytes] | None) -> list[Finding]:
    model = _Model(forms)
    for name, data in [*files.items(), *(deployed or {}).items()]:  # the files given win
        if name.lower().endswith(".dmn"):
            model.add_dmn(name, data)
    for name, data in files.items():
        if name.lower().endswith(".bpmn"):
            model.add_bpmn(name, data)
    return model.findings()


@dataclass
class _Read:
    name: str
    line: int | None
    element_id: str
    what: str                  # "condition …", "script", … for the message


@dataclass
class _Node:
    id: str
    el: etree._Element
    kind: str
    # What a step reads and writes, in the order it runs: (reads, writes) per phase.
    phases: list[tuple[list[_Read], set[str]]] = field(default_factory=list)
    writes_any: bool = False       # a step without a form (or a call) may write anything
    form: str | None = None
    formless: bool = False         # a user or manual task that names no form
    # name -> the values it can have after this step, None if not known (the last phase wins)
    values: dict[str, set | None] = field(default_factory=dict)


class _Model:
    def __init__(self, forms: Mapping[str, bytes]):
        self.forms: dict[str, dict] = {}
        for name, data in forms.items():
            try:
                schema = json.loads(data)
            except (ValueError, UnicodeDecodeError):
                continue
            if check_schema(schema) is None:  # else deploy says what is wrong with it
                self.forms[name] = schema
        self.decisions: dict[str, etree._Element] = {}   # decision id -> its decisionTable
        self.processes: list[tuple[str, etree._Element]] = []
        self.out: list[Finding] = []
        self.builtins = _builtins()

    # -- files --------------------------------------------------------------------------------------

    def add_dmn(self, name: str, data: bytes) -> None:
        root = _parse(data)
        if root is None:
            return
        namespace = etree.QName(root).namespace or ""
        for decision in root.iter(f"{{{namespace}}}decision"):
            table = decision.find(f"{{{namespace}}}decisionTable")
            if decision.get("id") and table is not None:
                self.decisions.setdefault(decision.get("id"), table)

    def add_bpmn(self, name: str, data: bytes) -> None:
        root = _parse(data)
        if root is None or not _is_bpmn(root, "definitions"):
            return
        for process in root.iterfind("bpmn:process", NS):
            self.processes.append((name, process))

    def findings(self) -> list[Finding]:
        called = {el.get("calledElement") for _, p in self.processes
                  for el in p.iter(f"{{{BPMN_NS}}}callActivity")}
        by_id = {p.get("id"): (name, p) for name, p in self.processes}
        for name, process in self.processes:
            if process.get("isExecutable") != "true" and process.get("id") not in called:
                continue
            try:
                _ProcessLint(self, name, process, by_id).run()
            except Exception as exc:  # one broken rule must not hide the rest, nor reach the user
                self.out.append(Finding("internal", "warning", name, process.sourceline, process.get("id"),
                                        f"the late rules could not check process {process.get('id')}: "
                                        f"{type(exc).__name__}"))
        return self.out


def _names(code: str, mode: str, builtins: frozenset[str]) -> tuple[list[tuple[str, int]], set[str]]:
    """(names read before the code assigns them, with their line; names assigned) of Python code;
    ([], set()) if it does not parse (deploy says why)."""
    try:
        tree = ast.parse(code, mode=mode)
    except (SyntaxError, ValueError):
        return [], set()
    visitor = _Names(builtins)
    visitor.visit(tree)
    return visitor.reads, visitor.writes


class _Names(ast.NodeVisitor):
    """Walks code in the order it runs: the value of an assignment before its target."""

    def __init__(self, builtins: frozenset[str]):
        self.builtins = builtins
        self.bound: set[str] = set()
        self.reads: list[tuple[str, int]] = []
        self.writes: set[str] = set()

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            if node.id not in self.bound and node.id not in self.builtins:
                self.reads.append((node.id, node.lineno))
        else:
            self.bound.add(node.id)
            self.writes.add(node.id)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        for target in node.targets:
            self.visit(target)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
        self.visit(node.target)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.visit(node.value)
        if isinstance(node.target, ast.Name):
            self.visit(ast.copy_location(ast.Name(node.target.id, ast.Load()), node.target))
        self.visit(node.target)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        self.visit(node.target)

    def visit_For(self, node: ast.For) -> None:
        self.visit(node.iter)
        self.visit(node.target)
        for statement in node.body + node.orelse:
            self.visit(statement)

    def _comprehension(self, node, parts: list[ast.AST]) -> None:
        saved_bound, saved_writes = set(self.bound), set(self.writes)
        for generator in node.generators:
            self.visit(generator.iter)
            self.visit(generator.target)
            for condition in generator.ifs:
                self.visit(condition)
        for part in parts:
            self.visit(part)
        self.bound, self.writes = saved_bound, saved_writes  # its names stay inside it

    def visit_ListComp(self, node):
        self._comprehension(node, [node.elt])

    visit_SetComp = visit_GeneratorExp = visit_ListComp

    def visit_DictComp(self, node):
        self._comprehension(node, [node.key, node.value])

    def _function(self, args: ast.arguments, body: list[ast.AST]) -> None:
        for default in args.defaults + [d for d in args.kw_defaults if d is not None]:
            self.visit(default)
        saved_bound, saved_writes = set(self.bound), set(self.writes)
        self.bound |= {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs}
        self.bound |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
        for part in body:
            self.visit(part)
        self.bound, self.writes = saved_bound | (self.bound - saved_bound), saved_writes

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._function(node.args, [node.body])

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.bound.add(node.name)
        self.writes.add(node.name)
        self._function(node.args, node.body)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is not None:
            self.visit(node.type)
        if node.name:
            self.bound.add(node.name)
        for statement in node.body:
            self.visit(statement)


_COMPLEMENT = {ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE,
               ast.LtE: ast.Gt, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}
_SWAPPED = {ast.Lt: ast.Gt, ast.Gt: ast.Lt, ast.LtE: ast.GtE, ast.GtE: ast.LtE, ast.Eq: ast.Eq, ast.NotEq: ast.NotEq}


def _negations(node: ast.AST) -> set[str]:
    """ast.dump of expressions that are true exactly when `node` is false (the simple ones)."""
    found: set[str] = set()
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        found.add(ast.dump(node.operand))
    else:
        found.add(ast.dump(ast.UnaryOp(ast.Not(), node)))
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPLEMENT:
        op = _COMPLEMENT[type(node.ops[0])]
        found.add(ast.dump(ast.Compare(node.left, [op()], node.comparators)))
        if op in _SWAPPED:
            found.add(ast.dump(ast.Compare(node.comparators[0], [_SWAPPED[op]()], [node.left])))
    return found


def _tested_values(node: ast.AST) -> tuple[str, set, bool] | None:
    """(name, values, False) if `node` is true exactly when the variable `name` is one of
    `values` (`x == 'a'`, `'a' == x`, `x in ('a', 'b')`, `or` of those), (name, values, True)
    if exactly when it is none of them (`x != 'a'`, `x not in (...)`, `and` of those, `not` …)."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        inner = _tested_values(node.operand)
        return (inner[0], inner[1], not inner[2]) if inner else None
    if isinstance(node, ast.BoolOp):
        parts = [_tested_values(v) for v in node.values]
        negated = isinstance(node.op, ast.And)
        if all(parts) and len({p[0] for p in parts}) == 1 and all(p[2] == negated for p in parts):
            return parts[0][0], set().union(*(p[1] for p in parts)), negated
        return None
    if not (isinstance(node, ast.Compare) and len(node.ops) == 1):
        return None
    left, op, right = node.left, node.ops[0], node.comparators[0]
    if isinstance(op, (ast.Eq, ast.NotEq)):
        if isinstance(right, ast.Name) and isinstance(left, ast.Constant):
            left, right = right, left
        if isinstance(left, ast.Name) and isinstance(right, ast.Constant):
            return left.id, {right.value}, isinstance(op, ast.NotEq)
    if isinstance(op, (ast.In, ast.NotIn)) and isinstance(left, ast.Name) \
            and isinstance(right, (ast.Tuple, ast.List, ast.Set)) and all(isinstance(e, ast.Constant) for e in right.elts):
        return left.id, {e.value for e in right.elts}, isinstance(op, ast.NotIn)
    return None


def _decision_values(table: etree._Element) -> dict[str, set | None]:
    """output name -> the constants its cells give, for a table that gives one row's outputs
    (not COLLECT: a list); a table that matches no row gives no output at all."""
    namespace = etree.QName(table).namespace
    outputs = table.findall(f"{{{namespace}}}output")
    names = [o.get("name") for o in outputs]
    if (table.get("hitPolicy") or "UNIQUE").upper() == "COLLECT":
        return {}
    values: dict[str, set | None] = {n: set() for n in names if n and "." not in n}
    for rule in table.iterfind(f"{{{namespace}}}rule"):
        for name, entry in zip(names, rule.iterfind(f"{{{namespace}}}outputEntry")):
            if name not in values or values[name] is None:
                continue
            try:
                value = ast.literal_eval((entry.findtext(f"{{{namespace}}}text") or "").strip())
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                values[name] = None
                continue
            if isinstance(value, (str, int, float, bool)):
                values[name].add(value)
            else:
                values[name] = None
    return values


def _form_values(schema: dict, name: str, spec: dict) -> set | None:
    """The values a form lets a step write to a field it requires from a list (enum, const, boolean)."""
    if name not in (schema.get("required") or []):
        return None
    if isinstance(spec.get("enum"), list) and all(isinstance(v, (str, int, float, bool)) for v in spec["enum"]):
        return set(spec["enum"])
    if "const" in spec and isinstance(spec["const"], (str, int, float, bool)):
        return {spec["const"]}
    if spec.get("type") == "boolean":
        return {True, False}
    return None


def _script_values(code: str, writes: set[str]) -> dict[str, set | None]:
    """name -> the constants a script assigns it (`x = "a"`, in any branch), None where it
    assigns anything else; a name it deletes gets no value from it."""
    try:
        tree = ast.parse(code, mode="exec")
    except (SyntaxError, ValueError):
        return {name: None for name in writes}
    values: dict[str, set | None] = {name: set() for name in writes}
    constant_targets = {id(n.targets[0]) for n in ast.walk(tree) if isinstance(n, ast.Assign)
                        and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name)
                        and isinstance(n.value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id in values \
                and id(node) not in constant_targets:
            values[node.id] = None
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and id(node.targets[0]) in constant_targets:
            name = node.targets[0].id
            if values.get(name) is not None:
                values[name].add(node.value.value)
    return values


class _ProcessLint:
    def __init__(self, model: _Model, file: str, process: etree._Element,
                 by_id: dict[str, tuple[str, etree._Element]]):
        self.model, self.file, self.process, self.by_id = model, file, process, by_id
        self.nodes: dict[str, _Node] = {}
        self.flows = [f for f in process.iter(f"{{{BPMN_NS}}}sequenceFlow") if f.get("id")]
        self.conditions: dict[str, list[_Read]] = {}   # flow id -> what its condition reads

    def warn(self, rule: str, el: etree._Element, element_id: str | None, message: str, fix: str | None = None):
        self.model.out.append(Finding(rule, "warning", self.file, el.sourceline, element_id, message, fix))

    def run(self) -> None:
        for el in self.process.iter():
            if _is_bpmn(el) and _local(el) in FLOW_NODES and el.get("id"):
                self.nodes[el.get("id")] = self.describe(el)
        for flow in self.flows:
            condition = flow.find("bpmn:conditionExpression", NS)
            if condition is not None and (condition.text or "").strip():
                reads, _ = _names(condition.text, "eval", self.model.builtins)
                self.conditions[flow.get("id")] = [
                    _Read(n, flow.sourceline, flow.get("id"), f"the condition of flow {flow.get('id')}")
                    for n, _ in reads]
        for node in self.nodes.values():
            if node.formless:
                self.warn("no-form", node.el, node.id,
                          f"{_kind(node.kind)} {node.id} has no form: it takes any JSON object as its data, "
                          f"so what it writes cannot be checked, nor what comes after it",
                          f"add a form {self.process.get('id')}.{node.id}.json in forms/")
        self.preceding, self.before = self.data_predecessors()
        dangling = any(f.get("sourceRef") not in self.nodes or f.get("targetRef") not in self.nodes
                       for f in self.flows)
        if not dangling:  # deploy names the flow that leads nowhere; what follows would be its echo
            reachable = self.check_reachable()
            self.check_loops(reachable)
        self.check_gateways()
        self.check_data()
        self.check_fields()

    # -- what each step reads and writes --------------------------------------------------------------

    def code(self, el: etree._Element, text: str | None, mode: str, what: str,
             reads: list[_Read] | None = None) -> set[str]:
        if not (text or "").strip():
            return set()
        found, writes = _names(text, mode, self.model.builtins)
        base = el.sourceline or 0
        owner = el
        while owner is not None and not (_is_bpmn(owner) and _local(owner) in FLOW_NODES):
            owner = owner.getparent()
        element_id = (owner if owner is not None else el).get("id")
        if reads is not None:
            # A script's line N is the N-th line of the element's text.
            reads.extend(_Read(n, base + line - 1 if mode == "exec" else base, element_id, what) for n, line in found)
        return writes

    def describe(self, el: etree._Element) -> _Node:
        node = _Node(el.get("id"), el, _local(el))
        decision_values: dict[str, set | None] = {}
        pre: list[_Read] = []
        main: list[_Read] = []
        post: list[_Read] = []
        pre_writes: set[str] = set()
        main_writes: set[str] = set()
        post_writes: set[str] = set()
        for script in el.iterfind("bpmn:extensionElements/spiffworkflow:preScript", NS):
            pre_writes |= self.code(script, script.text, "exec", f"the pre-script of {node.id}", pre)
        for script in el.iterfind("bpmn:extensionElements/spiffworkflow:postScript", NS):
            post_writes |= self.code(script, script.text, "exec", f"the post-script of {node.id}", post)
        props = _properties(el)
        if props.get("assignee"):
            self.code(el, props["assignee"], "eval", f"the assignee of {node.id}", main)
        if node.kind in ("userTask", "manualTask") or (node.kind == "startEvent" and _is_bpmn(el.getparent(), "process")):
            form = props.get("form")
            if form and form in self.model.forms:
                node.form = form
                main_writes |= set(self.writable(self.model.forms[form]))
            elif el.find("bpmn:timerEventDefinition", NS) is None:
                node.writes_any = True  # no form (or one deploy refuses): any data but the engine's
                node.formless = not form and node.kind != "startEvent"
        if node.kind == "scriptTask":
            script = el.find("bpmn:script", NS)
            if script is not None:
                main_writes |= self.code(script, script.text, "exec", f"the script of {node.id}", main)
        if node.kind == "serviceTask":
            operator = el.find("bpmn:extensionElements/spiffworkflow:serviceTaskOperator", NS)
            if operator is not None:
                for parameter in operator.iterfind("spiffworkflow:parameters/spiffworkflow:parameter", NS):
                    self.code(parameter, parameter.get("value"), "eval",
                              f"parameter {parameter.get('id')} of {node.id}", main)
                if operator.get("resultVariable"):
                    main_writes.add(operator.get("resultVariable"))
        if node.kind == "businessRuleTask":
            decision = (el.findtext("bpmn:extensionElements/spiffworkflow:calledDecisionId", "", NS) or "").strip()
            table = self.model.decisions.get(decision)
            if table is not None:
                namespace = etree.QName(table).namespace
                for expression in table.iterfind(f"{{{namespace}}}input/{{{namespace}}}inputExpression/{{{namespace}}}text"):
                    found, _ = _names(expression.text or "", "eval", self.model.builtins)
                    main.extend(_Read(n, el.sourceline, node.id, f"decision {decision} (called by {node.id})")
                                for n, _ in found)
                for output in table.iterfind(f"{{{namespace}}}output"):
                    if output.get("name"):
                        main_writes.add(output.get("name").split(".")[0])
                decision_values = _decision_values(table)
            else:
                node.writes_any = True  # deploy reports the missing decision
        if node.kind == "callActivity":
            called = self.by_id.get(el.get("calledElement"))
            node.writes_any = True if called is None else node.writes_any
            if called is not None:
                main_writes |= _process_writes(self.model, called[1])
        for loop in el.iterfind("bpmn:multiInstanceLoopCharacteristics", NS):
            # each instance's item, and the collection of their outputs, are the engine's to write
            for item in loop.iterfind("bpmn:inputDataItem", NS):
                main_writes.add(item.get("name") or item.get("id") or "")
            for item in loop.iterfind("bpmn:outputDataItem", NS):
                main_writes.add(item.get("name") or item.get("id") or "")
            for ref in loop.iterfind("bpmn:loopDataOutputRef", NS):
                main_writes.add((ref.text or "").strip())
            main_writes.discard("")
        for message in el.iterfind(".//spiffworkflow:messageVariable", NS):
            if (message.text or "").strip():
                main_writes.add(message.text.strip())
        for definition in el:
            if _local(definition) == "messageEventDefinition" and _local(el) in (
                    "startEvent", "intermediateCatchEvent", "boundaryEvent", "receiveTask"):
                variable = definition.findtext("spiffworkflow:messageVariable", "", NS).strip()
                if variable:
                    main_writes.add(variable)
            for timer in definition:
                if _local(timer) in ("timeDate", "timeDuration", "timeCycle") \
                        and not _ISO_SHAPE.match((timer.text or "").strip()):  # unquoted: deploy says so
                    self.code(timer, timer.text, "eval", f"the timer of {node.id}", main)
            for payload in definition.iter(f"{{{SPIFF_NS}}}messagePayload"):
                self.code(payload, payload.text, "eval", f"the message payload of {node.id}", main)
        node.phases = [(pre, pre_writes), (main, main_writes), (post, post_writes)]
        node.values = {name: None for name in main_writes}
        node.values.update(decision_values)
        if node.form:
            for name, spec in self.writable(self.model.forms[node.form]).items():
                node.values[name] = _form_values(self.model.forms[node.form], name, spec)
        if node.kind == "scriptTask" and el.find("bpmn:script", NS) is not None:
            node.values.update(_script_values(el.find("bpmn:script", NS).text or "", main_writes))
        node.values.update({name: None for name in pre_writes if name not in node.values})
        for script in el.iterfind("bpmn:extensionElements/spiffworkflow:postScript", NS):
            node.values.update(_script_values(script.text or "", post_writes))
        return node

    @staticmethod
    def writable(schema: dict) -> dict[str, dict]:
        props = schema.get("properties")
        if not isinstance(props, dict):
            return {}
        return {k: v for k, v in props.items() if isinstance(v, dict) and not v.get("readOnly")
                and k not in ENGINE_FIELDS}

    # -- the flow graph ---------------------------------------------------------------------------

    def successors(self) -> dict[str, set[str]]:
        after: dict[str, set[str]] = {n: set() for n in self.nodes}
        for flow in self.flows:
            if flow.get("sourceRef") in self.nodes and flow.get("targetRef") in self.nodes:
                after[flow.get("sourceRef")].add(flow.get("targetRef"))
        for node in self.nodes.values():
            if node.kind == "boundaryEvent" and node.el.get("attachedToRef") in self.nodes:
                after[node.el.get("attachedToRef")].add(node.id)
        return after

    def roots(self, container: etree._Element, after: dict[str, set[str]]) -> list[str]:
        members = [c.get("id") for c in container if c.get("id") in self.nodes]
        if _is_bpmn(container, "adHocSubProcess"):
            return members
        entered = {t for m in members for t in after[m]}
        starts = [m for m in members if self.nodes[m].kind == "startEvent"]
        event_subprocesses = [m for m in members if self.nodes[m].kind in _CONTAINERS
                              and self.nodes[m].el.get("triggeredByEvent") == "true"]
        if not starts:
            starts = [m for m in members if m not in entered and self.nodes[m].kind != "boundaryEvent"]
        return starts + event_subprocesses

    def check_reachable(self) -> set[str]:
        after = self.successors()
        reached: set[str] = set()
        todo = [(self.process, self.roots(self.process, after))]
        while todo:
            container, roots = todo.pop()
            seen = set(roots)
            stack = list(roots)
            while stack:
                n = stack.pop()
                for m in after[n]:
                    if m not in seen:
                        seen.add(m)
                        stack.append(m)
            reached |= seen
            for n in seen:
                if self.nodes[n].kind in _CONTAINERS:
                    todo.append((self.nodes[n].el, self.roots(self.nodes[n].el, after)))
            for child in container:
                n = child.get("id")
                if n in self.nodes and n not in seen:
                    self.warn("unreachable", child, n,
                              f"{_kind(self.nodes[n].kind)} {n} cannot be reached: no sequence flow leads to it "
                              f"from a start event", "connect it with a sequence flow, or delete it")
        return reached

    def check_loops(self, reachable: set[str]) -> None:
        after = self.successors()
        containers = [self.process] + [n.el for n in self.nodes.values() if n.kind in _CONTAINERS]
        for container in containers:
            chain, interruptible = container, False
            while chain is not None:
                if any(c.get("triggeredByEvent") == "true" for c in chain if _is_bpmn(c, *_CONTAINERS)):
                    interruptible = True  # an event subprocess may end it
                chain = chain.getparent()
            if interruptible:
                continue
            members = [c.get("id") for c in container if c.get("id") in self.nodes]
            for component in _cycles(members, after):
                if not component & reachable:
                    continue
                if any(m not in component for n in component for m in after[n]):
                    continue
                first = next(m for m in members if m in component)
                loop = [m for m in members if m in component]
                self.warn("no-way-out", self.nodes[first].el, first,
                          f"the loop through {', '.join(loop)} has no flow out of it and no end: a token "
                          f"that enters it never leaves", "add a gateway with a flow out of the loop")

    def check_gateways(self) -> None:
        for node in self.nodes.values():
            if node.kind not in ("exclusiveGateway", "inclusiveGateway") or node.el.get("default"):
                continue
            outgoing = [f for f in self.flows if f.get("sourceRef") == node.id]
            if not outgoing:
                continue
            conditions = []
            for flow in outgoing:
                condition = flow.find("bpmn:conditionExpression", NS)
                if condition is None or not (condition.text or "").strip():
                    break
                try:
                    conditions.append(ast.parse(condition.text.strip(), mode="eval").body)
                except SyntaxError:
                    break
            else:
                if self.exhaustive(node, conditions):
                    continue
                kind = "exclusive" if node.kind == "exclusiveGateway" else "inclusive"
                self.warn("no-default", node.el, node.id,
                          f"{kind} gateway {node.id} has no default flow and its conditions can all be false, "
                          f"which stops the instance with an incident",
                          f"mark one flow as default: default=\"{outgoing[-1].get('id')}\" on the gateway")

    def exhaustive(self, node: _Node, conditions: list[ast.AST]) -> bool:
        dumps = [ast.dump(c) for c in conditions]
        if any(isinstance(c, ast.Constant) and c.value is True for c in conditions):
            return True
        for c in conditions:
            if _negations(c) & set(dumps):
                return True
        tested = [_tested_values(c) for c in conditions]
        if not all(tested) or len({t[0] for t in tested}) != 1:
            return False
        name = tested[0][0]
        positive = set().union(*(values for _, values, negated in tested if not negated))
        negatives = [values for _, values, negated in tested if negated]
        if any(values <= positive for values in negatives):
            return True  # `x == a`, `x == b`, `x not in (a, b)`
        allowed = self.reaching_values(node.id, name)
        return allowed is not None and all(
            v in positive or any(v not in values for values in negatives) for v in allowed)

    def reaching_values(self, node_id: str, name: str) -> set | None:
        """The values `name` can have when a token reaches `node_id`: from the steps that write it
        last on some path there (a form's required list, a script's or a decision's constants),
        narrowed by the conditions on `name` of the flows taken on the way; None if unknown."""
        values: set = set()
        seen: set[tuple[str, frozenset]] = set()
        stack: list[tuple[str, frozenset]] = [(node_id, frozenset())]
        found = False
        while stack:
            target, tests = stack.pop()
            for source, condition in self.incoming[target]:
                test = _tested_values(condition) if condition is not None else None
                narrowed = tests | {(frozenset(test[1]), test[2])} if test and test[0] == name else tests
                if (source, narrowed) in seen:
                    continue
                seen.add((source, narrowed))
                other = self.nodes[source]
                if name in other.values:
                    if other.values[name] is None:
                        return None
                    values |= {v for v in other.values[name]
                               if all((v in allowed) != negated for allowed, negated in narrowed)}
                    found = True
                elif other.writes_any:
                    return None
                else:
                    stack.append((source, narrowed))
        return values if found else None

    # -- data ---------------------------------------------------------------------------------------

    def check_data(self) -> None:
        before = self.before
        if any(call.get("calledElement") == self.process.get("id") for _, caller in self.by_id.values()
               for call in caller.iter(f"{{{BPMN_NS}}}callActivity")):
            return  # it starts with its caller's data, whatever that holds: not judged here
        everywhere = set(ENGINE_FIELDS)
        for data in self.process.iter(f"{{{BPMN_NS}}}dataObject", f"{{{BPMN_NS}}}dataObjectReference"):
            everywhere |= {data.get("id") or "", data.get("name") or "", data.get("dataObjectRef") or ""}
        for node in self.nodes.values():
            if self.in_event_subprocess(node.el):
                everywhere |= set().union(*(w for _, w in node.phases))
        all_writes = set(everywhere)
        for node in self.nodes.values():
            all_writes |= set().union(*(w for _, w in node.phases))
        reported: set[tuple[str, str]] = set()

        def check(reads: list[_Read], known: set[str], anything: bool) -> None:
            if anything:
                return
            for read in reads:
                if read.name in known or (read.element_id, read.name) in reported:
                    continue
                reported.add((read.element_id, read.name))
                near = difflib.get_close_matches(read.name, sorted(all_writes), n=1)
                fix = f"did you mean '{near[0]}'?" if near else "add it to a form of an earlier step, or set it in a script"
                self.model.out.append(Finding(
                    "unwritten-variable", "warning", self.file, read.line, read.element_id,
                    f"{read.what} reads {read.name}, which no form or step before it writes", fix))

        for node in self.nodes.values():
            earlier = before[node.id]
            known = set(everywhere)
            anything = False
            for n in earlier:
                anything |= self.nodes[n].writes_any
                for _, writes in self.nodes[n].phases:
                    known |= writes
            if self.in_event_subprocess(node.el):
                known |= all_writes
            for reads, writes in node.phases:
                check(reads, known, anything)
                known |= writes
            anything |= node.writes_any
            for flow in self.flows:
                if flow.get("sourceRef") == node.id:
                    check(self.conditions.get(flow.get("id"), []), known, anything)

    def in_event_subprocess(self, el: etree._Element) -> bool:
        parent = el.getparent()
        while parent is not None and parent is not self.process:
            if _is_bpmn(parent, *_CONTAINERS) and parent.get("triggeredByEvent") == "true":
                return True
            parent = parent.getparent()
        return False

    def data_predecessors(self) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
        """Node -> the nodes that can run before it (a subprocess's inside runs before what follows
        the subprocess; what is inside a subprocess comes after what comes before it)."""
        after = self.successors()
        for node in self.nodes.values():
            if node.kind in _CONTAINERS:
                inner = {c.get("id") for c in node.el if c.get("id") in self.nodes}
                leaving = after[node.id] - inner
                for n in inner:
                    after[node.id].add(n)          # entering the subprocess
                for n in inner:
                    if not after[n] & inner:       # where its tokens finish: then what follows it
                        after[n] |= leaving
        preceding: dict[str, set[str]] = {n: set() for n in self.nodes}
        for n, targets in after.items():
            for m in targets:
                preceding[m].add(n)
        result: dict[str, set[str]] = {}
        for n in self.nodes:
            result[n] = reachable(preceding, n)
        # the same edges, each with the condition of its flow (None: no condition, or no flow)
        self.incoming: dict[str, list[tuple[str, ast.AST | None]]] = {n: [] for n in self.nodes}
        conditional: dict[tuple[str, str], list[ast.AST | None]] = {}
        for flow in self.flows:
            key = (flow.get("sourceRef"), flow.get("targetRef"))
            text = flow.findtext("bpmn:conditionExpression", None, NS)
            try:
                parsed = ast.parse(text.strip(), mode="eval").body if (text or "").strip() else None
            except SyntaxError:
                parsed = None
            conditional.setdefault(key, []).append(parsed)
        for n, sources in preceding.items():
            for m in sources:
                for condition in conditional.get((m, n), [None]):
                    self.incoming[n].append((m, condition))
        return preceding, result

    def check_fields(self) -> None:
        read: set[str] = set(_ENGINE_READS)
        for node in self.nodes.values():
            for reads, _ in node.phases:
                read |= {r.name for r in reads}
        for reads in self.conditions.values():
            read |= {r.name for r in reads}
        for node in self.nodes.values():   # a later form that shows a field reads it
            if node.form:
                props = self.model.forms[node.form].get("properties") or {}
                read |= {k for k, v in props.items() if isinstance(v, dict) and v.get("readOnly")}
        for call in self.process.iter(f"{{{BPMN_NS}}}callActivity"):   # a called process reads this data
            called = self.by_id.get(call.get("calledElement"))
            if called is not None:
                read |= _process_reads(self.model, called[1])
        all_writes = set(ENGINE_FIELDS).union(*(w for node in self.nodes.values() for _, w in node.phases))
        unwritten = {r.name for node in self.nodes.values() for reads, _ in node.phases for r in reads}
        unwritten |= {r.name for reads in self.conditions.values() for r in reads}
        unwritten -= all_writes
        for node in self.nodes.values():
            if node.form is None:
                continue
            written = {k for k in self.writable(self.model.forms[node.form])}
            shown_later = set()
            for other in self.nodes.values():
                if other is not node and other.form:
                    shown_later |= set((self.model.forms[other.form].get("properties") or {}))
            # A field kept for the record (a date, a note) is read by people, in the instance's
            # history: only a field that looks meant for a step, and that no step reads, is said.
            for name in sorted(written - read):
                near = difflib.get_close_matches(name, sorted(unwritten), n=1)
                if near and name not in shown_later:
                    self.warn("unread-field", node.el, node.id,
                              f"form {node.form} asks for {name}, which nothing reads, while {near[0]} is read "
                              f"and written by no step", f"did you mean '{near[0]}'?")
                elif name == "decision":
                    self.warn("unread-field", node.el, node.id,
                              f"form {node.form} asks for a decision, which no gateway or script reads, so the "
                              f"answer changes nothing", "add an exclusive gateway on decision after the task")


# The engine reads these fields of an instance's data itself (runtime._business_fields).
_ENGINE_READS = frozenset({"business_key", "order_no", "contract_no", "request_no", "name", "customer", "amount"})


def _process_writes(model: _Model, process: etree._Element) -> set[str]:
    """Every name the steps of `process` write (what a call activity brings back from it)."""
    return {name for node in _process_nodes(model, process) for _, writes in node.phases for name in writes}


def _process_reads(model: _Model, process: etree._Element) -> set[str]:
    """Every name the steps of `process` read (what it needs of its caller's data)."""
    return {r.name for node in _process_nodes(model, process) for reads, _ in node.phases for r in reads}


def _process_nodes(model: _Model, process: etree._Element) -> list[_Node]:
    described = _ProcessLint(model, "-", process, {})  # described only: it reports nothing
    return [described.describe(el) for el in process.iter()
            if _is_bpmn(el) and _local(el) in FLOW_NODES and el.get("id") and _local(el) != "callActivity"]


def _cycles(members: list[str], after: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of `members` (edges among them) that hold a cycle."""
    inside = set(members)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    counter = 0
    for root in members:
        if root in index:
            continue
        work = [(root, iter(sorted(after[root] & inside)))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            n, children = work[-1]
            advanced = False
            for m in children:
                if m not in index:
                    index[m] = low[m] = counter
                    counter += 1
                    stack.append(m)
                    on_stack.add(m)
                    work.append((m, iter(sorted(after[m] & inside))))
                    advanced = True
                    break
                if m in on_stack:
                    low[n] = min(low[n], index[m])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[n])
            if low[n] == index[n]:
                component = set()
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    component.add(m)
                    if m == n:
                        break
                if len(component) > 1 or n in after[n]:
                    found.append(component)
    return found
