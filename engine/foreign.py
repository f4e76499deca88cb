"""Reading other modellers' dialects of BPMN: what Camunda, Activiti, Zeebe and the MIWG test
files write that this engine would otherwise refuse, and the edits a modeller makes to such a file.

- `translate(tree, known_roles)`: a pass over a parsed BPMN file, in memory only, run by
  `engine.definitions` before its checks and before SpiffWorkflow parses the tree (the file's bytes
  are stored as uploaded; every later read of them runs the same pass, so a stored version parses
  to the same spec). It rewrites into the engine's own terms:
    * `candidateGroups` (camunda:, activiti:, flowable: attributes, zeebe:assignmentDefinition) on
      a lane → the lane's `role` property; on a user task → the task is put in a lane of that role
      (the engine's role of a task is its lane's); `candidateStarterGroups` → `start_roles`;
    * `assignee` / a single `candidateUsers` → the engine's `assignee` property (an expression);
    * a process's `role` property (a pool drawn without lanes) → the lane of its steps in no lane;
      a lane drawn without a name but given a role → named by its id;
    * unquoted ISO 8601 timers (`P7D`, `PT4H`, `2026-01-01T00:00:00Z`, `R3/PT1H`, Zeebe's
      `= "PT1H"`) → quoted;
    * simple FEEL and JUEL conditions (`${approved}`, `= approved`, `a > 1 and not(b)`, `x = "a"`,
      `!=`, true/false/null, string literals) → Python, which the sandbox evaluates;
    * an activity or event with several unconditional outgoing flows (BPMN's implicit parallel
      split) → the same through a parallel gateway; a data store nothing reads or writes (a
      drawing) → dropped; `zeebe:calledDecision` → `spiffworkflow:calledDecisionId`.
  What it cannot translate is a finding naming the element (reported with its line): FEEL beyond
  the subset, several candidate groups, work another engine's worker does, a send task with no
  message, a timer with no time.
- Textual edits that leave every other byte as it was: `mark_executable` (the modeller's
  "executable" checkbox), `map_lanes` (a lane's or pool's role field), and `keep_extensions`,
  which puts back the foreign extension elements and attributes a modeller's re-serialisation
  dropped or altered. `Marking` applies the first two for `bpm deploy --executable --lane-role`.
- `conformance(folder)`: the MIWG run of docs/conformance.md (`python -m engine.foreign --report`).
"""
from __future__ import annotations

import ast
import json
import keyword
import re
from dataclasses import dataclass, field
from typing import Collection, Iterator, Mapping

from lxml import etree

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
BPMNDI_NS = "http://www.omg.org/spec/BPMN/20100524/DI"
DC_NS = "http://www.omg.org/spec/DD/20100524/DC"
DI_NS = "http://www.omg.org/spec/DD/20100524/DI"
SPIFF_NS = "http://spiffworkflow.org/bpmn/schema/1.0/core"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
XML_NS = "http://www.w3.org/XML/1998/namespace"
OWN_NAMESPACES = frozenset({BPMN_NS, BPMNDI_NS, DC_NS, DI_NS, SPIFF_NS, XSI_NS, XML_NS})

CAMUNDA_NS = "http://camunda.org/schema/1.0/bpmn"
ACTIVITI_NS = "http://activiti.org/bpmn"
FLOWABLE_NS = "http://flowable.org/bpmn"
ZEEBE_NS = "http://camunda.org/schema/zeebe/1.0"
ASSIGNING_NAMESPACES = (CAMUNDA_NS, ACTIVITI_NS, FLOWABLE_NS)
# Set (in memory) on an expression this pass reported: the definitions' own check of it as Python
# would only repeat the finding in other words.
UNTRANSLATED = "{urn:bpm-engine:foreign}untranslated"

_B = f"{{{BPMN_NS}}}"
_S = f"{{{SPIFF_NS}}}"

ISO_SHAPE = re.compile(
    r"^(R\d*/)?(P(\d|T\d)[0-9A-Z.,]*|\d{4}-\d{2}-\d{2}([T ][0-9:.,]+)?(Z|[+-]\d{2}(:?\d{2})?)?)"
    r"(/[0-9A-Z:.,+\-]+)?$",
    re.IGNORECASE,
)

# Flow nodes that split by their own rule (a gateway) or whose several outgoing flows SpiffWorkflow
# reads itself; any other flow node with several unconditional outgoing flows splits in parallel.
_SPLITTING = frozenset({"exclusiveGateway", "inclusiveGateway", "parallelGateway", "complexGateway",
                        "eventBasedGateway"})
_FLOW_NODE_CONTAINERS = ("process", "subProcess", "adHocSubProcess", "transaction")


@dataclass(frozen=True)
class Finding:
    element: etree._Element   # where to report it (its line and the id of it or its owner)
    message: str


# --- FEEL and JUEL conditions ------------------------------------------------------------------

class NotSimple(ValueError):
    """The expression is beyond comparisons, and/or/not, names and literals."""


_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<op>==|!=|<=|>=|&&|\|\||[=<>!()+\-*/])
""", re.VERBOSE)

_WORDS = {"and": "and", "or": "or", "not": "not", "true": "True", "false": "False", "null": "None",
          # JUEL's word operators
          "eq": "==", "ne": "!=", "lt": "<", "gt": ">", "le": "<=", "ge": ">="}
_JUEL_ONLY = {"eq", "ne", "lt", "gt", "le", "ge"}
_OPS = {"=": "==", "==": "==", "!=": "!=", "<": "<", ">": ">", "<=": "<=", ">=": ">=", "&&": "and",
        "||": "or", "!": "not", "(": "(", ")": ")", "+": "+", "-": "-", "*": "*", "/": "/"}


def feel_to_python(text: str, dialect: str = "feel") -> str:
    """A simple FEEL (`dialect="feel"`) or JUEL (`"juel"`, the inside of `${...}`) expression as
    Python: comparisons (`=` is FEEL's equality, `==` JUEL's), `and`/`or`/`not` (`&&`, `||`, `!`
    in JUEL; `not(x)` in FEEL), names and dotted paths, numbers, strings, true/false/null, and
    `+ - * /`. Raises NotSimple naming what is beyond that."""
    out: list[str] = []
    position = 0
    previous = None  # kind of the previous significant token: "value", "op", None at the start
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise NotSimple(f"{text[position:position + 20]!r} is not understood")
        position = match.end()
        kind, value = match.lastgroup, match.group()
        if kind == "space":
            continue
        if kind == "string":
            body = value[1:-1]
            try:
                literal = ast.literal_eval(value if value[0] == '"' else "'" + body + "'")
            except (SyntaxError, ValueError):
                raise NotSimple(f"the string {value} is not understood") from None
            token, now = json.dumps(literal, ensure_ascii=False), "value"
        elif kind == "number":
            token, now = value, "value"
        elif kind == "name":
            word = value
            if word in _WORDS and (dialect == "juel" or word not in _JUEL_ONLY):
                token = _WORDS[word]
                now = "value" if token in ("True", "False", "None") else "op"
                if word == "not" and dialect == "feel":
                    rest = text[position:].lstrip()
                    if not rest.startswith("("):
                        raise NotSimple("FEEL writes not(...) with parentheses")
            else:
                if previous == "value":
                    raise NotSimple(f"{value!r} follows a value: names with spaces, and words such as "
                                    f"'in', 'some', 'every', 'satisfies', 'between', 'if' are not supported")
                parts = value.split(".")
                if any(p.startswith("_") for p in parts):
                    raise NotSimple(f"the name {value!r} starts with an underscore")
                if keyword.iskeyword(parts[0]) or parts[0] in ("True", "False", "None"):
                    raise NotSimple(f"{parts[0]!r} is not understood here")
                token = parts[0] + "".join(f"[{json.dumps(p)}]" for p in parts[1:])
                now = "value"
        else:
            if value == "!" and dialect != "juel":
                raise NotSimple("'!' alone is not FEEL; write not(...)")
            if value in ("==", "&&", "||") and dialect != "juel":
                raise NotSimple(f"{value!r} is not FEEL")
            if value == "(" and previous == "value":
                raise NotSimple(f"calling {out[-1]!r} is not supported")
            token = _OPS[value]
            now = "value" if value == ")" else "op"
        out.append(token)
        previous = now
    python = ""
    for token in out:  # spaced, but not inside parentheses: "not (a)" reads as written
        python += token if not python or python.endswith("(") or token == ")" else " " + token
    if not python:
        raise NotSimple("the expression is empty")
    try:
        ast.parse(python, mode="eval")
    except SyntaxError:
        raise NotSimple("it does not read as one expression") from None
    return python


def _is_python(text: str) -> bool:
    try:
        ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        return False
    return True


def condition_to_python(text: str, language: str | None, bare_feel: bool = True) -> str | None:
    """The Python to evaluate for a condition written `text` in `language` (a sequence flow's
    conditionExpression, a conditional event's condition), or None if it is Python already (or
    in a language this does not read: the definitions' own check refuses that). Text marked as
    FEEL (the language, Zeebe's leading `=`) or JUEL (`${...}`) is always translated; bare text
    that is not Python only if `bare_feel` (a file from another modeller: in the engine's own files
    `x = "a"` is a Python typo, refused as such). Raises NotSimple for FEEL or JUEL beyond the
    simple subset."""
    stripped = (text or "").strip()
    lang = (language or "").lower()
    juel = re.fullmatch(r"[$#]\{(.*)\}", stripped, re.DOTALL)
    if juel and (not lang or "juel" in lang or "java" in lang):
        return feel_to_python(juel.group(1), "juel")
    if stripped.startswith("=") and not stripped.startswith("=="):  # Zeebe writes FEEL as "= ..."
        return feel_to_python(stripped[1:], "feel")
    if "feel" in lang:
        return feel_to_python(stripped, "feel")
    if lang or not bare_feel or _is_python(stripped):
        return None
    return feel_to_python(stripped, "feel")


# --- the in-memory pass -----------------------------------------------------------------------

def translate(tree: etree._ElementTree, known_roles: Collection[str] = ()) -> list[Finding]:
    """Rewrite other modellers' dialects in `tree` (in place) into the engine's own; returns what
    could not be translated. Only findings inside executable processes (or outside any process)
    are returned: a process that is not deployed is not read further."""
    root = tree.getroot()
    findings: list[Finding] = []
    roles = set(known_roles)
    for el in list(root.iter(f"{_B}timeDate", f"{_B}timeDuration", f"{_B}timeCycle")):
        _quote_timer(el)
    # The engine's own files (and its modeller's) declare the spiffworkflow namespace at the root.
    ours = SPIFF_NS in root.nsmap.values()
    for el in list(root.iter(f"{_B}conditionExpression", f"{_B}condition")):
        _condition(el, findings, bare_feel=not ours)
    for timer in root.iter(f"{_B}timerEventDefinition"):
        if not any(isinstance(c.tag, str) and etree.QName(c).localname in ("timeDate", "timeDuration", "timeCycle")
                   for c in timer):
            findings.append(Finding(_owner(timer.getparent()), f"timer event {_owner(timer.getparent()).get('id')} "
                                                               f"says neither when nor after how long it fires (no "
                                                               f"timeDate, timeDuration or timeCycle)"))
    _drawn_data_stores(root)
    _implementations(root, findings)
    for process in list(root.iter(f"{_B}process")):
        _assignments(process, roles, findings)
        _process_role(process)
        for container in [process, *process.iter(*(f"{_B}{t}" for t in _FLOW_NODE_CONTAINERS[1:]))]:
            _implicit_splits(container)
    return [f for f in findings if _in_executable(f.element)]


_IMPLEMENTATION_ATTRIBUTES = ("class", "delegateExpression", "expression", "type", "topic")


def _implementations(root: etree._Element, findings: list[Finding]) -> None:
    """Tasks whose work another engine does: a Zeebe decision call is read as the engine's own;
    a Java class, an expression or an external/Zeebe job worker is a finding naming it (the task
    would otherwise run as nothing), as is a send task that names no message, and an input/output
    mapping, which this engine does not read."""
    for task in root.iter(f"{_B}businessRuleTask"):
        called = task.find(f"{_B}extensionElements/{{{ZEEBE_NS}}}calledDecision")
        if called is not None and called.get("decisionId") and task.find(
                f"{_B}extensionElements/{_S}calledDecisionId") is None:
            decision = etree.SubElement(called.getparent(), f"{_S}calledDecisionId")
            decision.text = called.get("decisionId")
            decision.sourceline = called.sourceline
    for task in root.iter(f"{_B}serviceTask", f"{_B}sendTask", f"{_B}businessRuleTask", f"{_B}scriptTask",
                          f"{_B}userTask", f"{_B}task"):
        kind = etree.QName(task).localname
        label = {"serviceTask": "service task", "sendTask": "send task", "businessRuleTask": "business rule task",
                 "scriptTask": "script task", "userTask": "user task", "task": "task"}[kind]
        for mapping in task.iterfind(f"{_B}extensionElements/*"):
            if mapping.tag in (f"{{{ZEEBE_NS}}}ioMapping", f"{{{CAMUNDA_NS}}}inputOutput"):
                findings.append(Finding(task, f"{label} {task.get('id')}: its {etree.QName(mapping).localname} "
                                              f"(input and output mappings of another engine) is not read here; "
                                              f"write them as the task's pre- and post-scripts"))
        if kind not in ("serviceTask", "sendTask", "businessRuleTask"):
            continue
        if task.find(f"{_B}extensionElements/{_S}serviceTaskOperator") is not None or (
                kind == "businessRuleTask" and task.find(f"{_B}extensionElements/{_S}calledDecisionId") is not None):
            continue
        worker = task.find(f"{_B}extensionElements/{{{ZEEBE_NS}}}taskDefinition")
        named = [f"zeebe:taskDefinition type '{worker.get('type')}'"] if worker is not None else []
        for ns in ASSIGNING_NAMESPACES:
            named += [f"{name} '{task.get(f'{{{ns}}}{name}')}'" for name in _IMPLEMENTATION_ATTRIBUTES
                      if task.get(f"{{{ns}}}{name}")]
        if kind == "sendTask" and not named and (task.get("messageRef") or task.find(
                f"{_B}messageEventDefinition") is not None):
            continue
        if named:
            findings.append(Finding(task, f"{label} {task.get('id')} is done by another engine's worker "
                                          f"({', '.join(named)}), which this engine does not have"))
        elif kind == "sendTask":
            findings.append(Finding(task, f"send task {task.get('id')} names no message, so it would send nothing"))


def _drawn_data_stores(root: etree._Element) -> None:
    """A data store no data association reads or writes is a drawing: removed (with its
    references) so that it is not taken for a store the engine would have to implement."""
    from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser
    references: dict[str, list[etree._Element]] = {}
    for ref in root.iter(f"{_B}dataStoreReference"):
        references.setdefault(ref.get("dataStoreRef") or "", []).append(ref)
    used = {(el.text or "").strip() for el in root.iter(f"{_B}sourceRef", f"{_B}targetRef")
            if el.getparent() is not None and etree.QName(el.getparent()).localname in (
                "dataInputAssociation", "dataOutputAssociation")}
    for store in root.findall(f"{_B}dataStore"):
        if store.get("name") in SpiffBpmnParser.DATA_STORE_CLASSES:
            continue
        refs = references.get(store.get("id") or "", [])
        if store.get("id") in used or any(r.get("id") in used for r in refs):
            continue
        for el in [store, *refs]:
            el.getparent().remove(el)


def _in_executable(el: etree._Element) -> bool:
    node = el
    while node is not None:
        if node.tag == f"{_B}process":
            return node.get("isExecutable") == "true"
        node = node.getparent()
    return True


def _owner(el: etree._Element) -> etree._Element:
    node = el
    while node is not None and not node.get("id"):
        node = node.getparent()
    if node is not None and node.tag in (f"{_B}conditionExpression", f"{_B}condition",
                                         f"{_B}timeDate", f"{_B}timeDuration", f"{_B}timeCycle"):
        parent = node.getparent()
        while parent is not None and not (parent.get("id") and etree.QName(parent).localname not in (
                "timerEventDefinition", "conditionalEventDefinition")):
            parent = parent.getparent()
        return parent if parent is not None else node
    return node if node is not None else el


def _quote_timer(el: etree._Element) -> None:
    text = (el.text or "").strip()
    if text.startswith("=") and not text.startswith("=="):  # Zeebe's FEEL: = "PT1H", or = PT1H
        rest = text[1:].strip()
        if ISO_SHAPE.match(rest.strip("\"'")) and (rest[:1] not in "\"'" or rest[:1] == rest[-1:]):
            el.text = text = rest.strip("\"'")
    if text and ISO_SHAPE.match(text) and not _is_python(text):
        el.text = json.dumps(text)
    elif text and ISO_SHAPE.match(text) and not text.startswith(("'", '"')):
        try:  # R3/PT1H parses as Python (a division) but means the interval
            body = ast.parse(text, mode="eval").body
        except SyntaxError:
            return
        if not isinstance(body, ast.Constant):
            el.text = json.dumps(text)


def _condition(el: etree._Element, findings: list[Finding], bare_feel: bool = True) -> None:
    language = el.get("language")
    if not (el.text or "").strip():
        return  # the definitions' check says "the condition is empty"
    try:
        python = condition_to_python(el.text or "", language, bare_feel)
    except NotSimple as exc:
        shown = " ".join((el.text or "").split())
        findings.append(Finding(_owner(el), f"FEEL beyond comparisons and and/or/not is not supported: "
                                            f"{shown!r} ({exc})"))
        el.set(UNTRANSLATED, "true")
        return
    if python is None:
        return
    for child in list(el):
        el.remove(child)
    el.text = python
    if language is not None:
        del el.attrib["language"]


def _assignment(el: etree._Element) -> dict[str, str]:
    """candidateGroups / candidateUsers / assignee as Camunda 7, Activiti, Flowable or Zeebe write them."""
    found: dict[str, str] = {}
    for ns in ASSIGNING_NAMESPACES:
        for name in ("candidateGroups", "candidateUsers", "assignee"):
            value = el.get(f"{{{ns}}}{name}")
            if value is not None and name not in found:
                found[name] = value
    for definition in el.iterfind(f"{_B}extensionElements/{{{ZEEBE_NS}}}assignmentDefinition"):
        for name in ("candidateGroups", "candidateUsers", "assignee"):
            if definition.get(name) is not None and name not in found:
                found[name] = definition.get(name)
    return found


def _is_expression(value: str) -> bool:
    value = value.strip()
    return value.startswith(("${", "#{", "="))


def _expression_python(value: str) -> str:
    """An assignee as a Python expression: a user name is quoted, an expression translated."""
    value = value.strip()
    juel = re.fullmatch(r"[$#]\{(.*)\}", value, re.DOTALL)
    if juel:
        return feel_to_python(juel.group(1), "juel")
    if value.startswith("="):
        return feel_to_python(value[1:], "feel")
    return json.dumps(value, ensure_ascii=False)


def _properties_of(el: etree._Element, create: bool) -> etree._Element | None:
    extensions = el.find(f"{_B}extensionElements")
    if extensions is None:
        if not create:
            return None
        extensions = etree.Element(f"{_B}extensionElements")
        extensions.sourceline = el.sourceline
        index = 0
        while index < len(el) and el[index].tag == f"{_B}documentation":
            index += 1
        el.insert(index, extensions)
    properties = extensions.find(f"{_S}properties")
    if properties is None and create:
        properties = etree.SubElement(extensions, f"{_S}properties")
        properties.sourceline = el.sourceline
    return properties


def _property(el: etree._Element, name: str) -> str | None:
    properties = _properties_of(el, create=False)
    if properties is None:
        return None
    for prop in properties.iterfind(f"{_S}property"):
        if prop.get("name") == name:
            return prop.get("value")
    return None


def _set_property(el: etree._Element, name: str, value: str) -> None:
    properties = _properties_of(el, create=True)
    prop = etree.SubElement(properties, f"{_S}property", name=name, value=value)
    prop.sourceline = el.sourceline


def _label(el: etree._Element) -> str:
    kind = {"userTask": "user task", "manualTask": "manual task", "lane": "lane"}.get(
        etree.QName(el).localname, etree.QName(el).localname)
    return f"{kind} {el.get('id')}"


def _assignments(process: etree._Element, roles: set[str], findings: list[Finding]) -> None:
    examples = ", ".join(sorted(roles)[:3]) or "none are known"
    starters = next((process.get(f"{{{ns}}}candidateStarterGroups") for ns in ASSIGNING_NAMESPACES
                     if process.get(f"{{{ns}}}candidateStarterGroups")), None)
    if starters is not None:  # who may start it: the engine's start_roles on its start events
        for start in process.findall(f"{_B}startEvent"):
            if _property(start, "start_roles") is None:
                _set_property(start, "start_roles", ",".join(g.strip() for g in starters.split(",") if g.strip()))
    for lane in process.iter(f"{_B}lane"):
        groups = _assignment(lane).get("candidateGroups")
        if groups is None or _property(lane, "role") is not None:
            continue
        group = _single(lane, "candidateGroups", groups, findings)
        if group is not None:
            _set_property(lane, "role", group)
    for lane in process.iter(f"{_B}lane"):
        if not (lane.get("name") or "").strip() and (_property(lane, "role") or "").strip() and lane.get("id"):
            # SpiffWorkflow tells lanes by name: a lane drawn without one, given a role, is named by its id
            lane.set("name", lane.get("id"))
    lane_of: dict[str, etree._Element] = {}
    for ref in process.iter(f"{_B}flowNodeRef"):
        if ref.text:
            lane_of[ref.text.strip()] = ref.getparent()
    synthetic: dict[str, etree._Element] = {}
    for task in list(process.iter(f"{_B}userTask", f"{_B}manualTask")):
        assignment = _assignment(task)
        if not assignment:
            continue
        groups = assignment.get("candidateGroups")
        if groups is not None:
            group = _single(task, "candidateGroups", groups, findings)
            if group is not None and group not in roles:
                findings.append(Finding(task, f"{_label(task)}: candidateGroups '{group}' is not a known role "
                                              f"({examples}); name a role, or put the task in a lane mapped to one"))
            elif group is not None:
                lane = lane_of.get(task.get("id"))
                lane_role = None if lane is None else (_property(lane, "role") or lane.get("name") or "").strip()
                if lane_role != group:
                    _put_in_lane(process, task, group, synthetic)
        users = assignment.get("assignee")
        what = "assignee"
        if users is None and assignment.get("candidateUsers") is not None:
            what = "candidateUsers"
            users = _single(task, "candidateUsers", assignment["candidateUsers"], findings)
        if not users or _property(task, "assignee") is not None:
            continue
        try:
            _set_property(task, "assignee", _expression_python(users))
        except NotSimple as exc:
            findings.append(Finding(task, f"{_label(task)}: {what} {users!r} is an expression beyond names and "
                                          f"literals ({exc})"))


def _single(el: etree._Element, what: str, value: str, findings: list[Finding]) -> str | None:
    """The one group or user `value` names, or None with a finding."""
    if _is_expression(value):
        findings.append(Finding(el, f"{_label(el)}: {what} {value.strip()!r} is an expression; who may act "
                                    f"on a step is fixed at deploy here: name one role (a lane mapped to it)"))
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    if len(names) != 1:
        findings.append(Finding(el, f"{_label(el)}: {what} '{value.strip()}' names {len(names)} "
                                    f"{'groups' if what == 'candidateGroups' else 'users'}; a step here is "
                                    f"for one role, or held by one user"))
        return None
    return names[0]


def _put_in_lane(process: etree._Element, task: etree._Element, role: str,
                 synthetic: dict[str, etree._Element]) -> None:
    """Put `task` in a lane of role `role`, added to the process in memory (SpiffWorkflow gives a
    task the lane of the last flowNodeRef naming it, so this lane wins over one drawn)."""
    lane = synthetic.get(role)
    if lane is None:
        lane_sets = process.findall(f"{_B}laneSet")
        if lane_sets:
            lane_set = lane_sets[-1]
        else:
            lane_set = etree.Element(f"{_B}laneSet", id=_fresh_id(process, f"{process.get('id')}_roles"))
            index = 0
            while index < len(process) and etree.QName(process[index]).localname in (
                    "documentation", "extensionElements", "supportedInterfaceRef", "ioSpecification",
                    "ioBinding", "auditing", "monitoring", "property"):
                index += 1
            process.insert(index, lane_set)
        lane = etree.SubElement(lane_set, f"{_B}lane", id=_fresh_id(process, f"{process.get('id')}_role_{len(synthetic) + 1}"),
                                name=role)
        lane.sourceline = task.sourceline
        _set_property(lane, "role", role)
        synthetic[role] = lane
    ref = etree.SubElement(lane, f"{_B}flowNodeRef")
    ref.text = task.get("id")


def _process_role(process: etree._Element) -> None:
    """A process (a pool) with a `role` property: its flow nodes in no lane are in a lane of that
    role (what `map_lanes` writes for a pool drawn without lanes)."""
    role = (_property(process, "role") or "").strip()
    if not role:
        return
    held = {ref.text.strip() for ref in process.iter(f"{_B}flowNodeRef") if ref.text}
    synthetic: dict[str, etree._Element] = {}
    for node in list(process):
        if (isinstance(node.tag, str) and node.get("id") and node.get("id") not in held
                and etree.QName(node).localname not in ("sequenceFlow", "laneSet", "textAnnotation", "association",
                                                        "group", "dataObject", "dataObjectReference",
                                                        "dataStoreReference", "documentation", "extensionElements")):
            _put_in_lane(process, node, role, synthetic)


def _fresh_id(anywhere: etree._Element, wanted: str) -> str:
    root = anywhere.getroottree().getroot()
    taken = {el.get("id") for el in root.iter() if isinstance(el.tag, str) and el.get("id")}
    candidate, n = wanted, 1
    while candidate in taken:
        n += 1
        candidate = f"{wanted}_{n}"
    return candidate


def _implicit_splits(container: etree._Element) -> None:
    flows = [f for f in container if f.tag == f"{_B}sequenceFlow"]
    by_source: dict[str, list[etree._Element]] = {}
    for flow in flows:
        by_source.setdefault(flow.get("sourceRef") or "", []).append(flow)
    nodes = {el.get("id"): el for el in container if isinstance(el.tag, str) and el.get("id")}
    for source, outgoing in by_source.items():
        node = nodes.get(source)
        if node is None or len(outgoing) < 2 or etree.QName(node).namespace != BPMN_NS:
            continue
        if etree.QName(node).localname in _SPLITTING or node.get("default") or any(
                f.find(f"{_B}conditionExpression") is not None for f in outgoing):
            continue  # conditional flows out of an activity are an inclusive split: not rewritten
        gateway = etree.Element(f"{_B}parallelGateway", id=_fresh_id(container, f"{source}_split"))
        gateway.sourceline = node.sourceline
        node.addnext(gateway)
        joined = etree.Element(f"{_B}sequenceFlow", id=_fresh_id(container, f"{source}_to_split"),
                               sourceRef=source, targetRef=gateway.get("id"))
        joined.sourceline = node.sourceline
        outgoing[0].addprevious(joined)
        for flow in outgoing:
            flow.set("sourceRef", gateway.get("id"))
        for child in node.findall(f"{_B}outgoing"):
            node.remove(child)
        etree.SubElement(gateway, f"{_B}incoming").text = joined.get("id")
        for flow in outgoing:
            etree.SubElement(gateway, f"{_B}outgoing").text = flow.get("id")
        out = etree.Element(f"{_B}outgoing")
        out.text = joined.get("id")
        incoming = node.findall(f"{_B}incoming")
        (incoming[-1].addnext if incoming else (lambda e: _insert_child(node, e)))(out)


def _insert_child(node: etree._Element, child: etree._Element) -> None:
    index = 0
    while index < len(node) and etree.QName(node[index]).localname in ("documentation", "extensionElements"):
        index += 1
    node.insert(index, child)


# --- the source text: minimal edits ------------------------------------------------------------

_MARKUP = re.compile(
    rb"<!--.*?-->|<!\[CDATA\[.*?\]\]>|<\?.*?\?>|<!DOCTYPE[^>]*>"
    rb"|</\s*(?P<close>[\w.:-]+)\s*>"
    rb"|<(?P<open>[\w.:-]+)(?P<attrs>(?:\s+[\w.:-]+\s*=\s*(?:\"[^\"]*\"|'[^']*'))*)\s*(?P<slash>/?)>",
    re.DOTALL)
_ATTR = re.compile(rb"([\w.:-]+)\s*=\s*(\"[^\"]*\"|'[^']*')")
_ENCODING = re.compile(rb"^\s*<\?xml[^>]*encoding\s*=\s*[\"']([\w.:-]+)[\"']")
_ENTITY = re.compile(r"&(#x[0-9a-fA-F]+|#\d+|amp|lt|gt|quot|apos);")
_NAMED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}


@dataclass(eq=False)
class _Attr:
    raw_name: bytes
    ns: str | None
    local: str
    value: str          # unescaped
    start: int          # the whole `name="value"` text
    end: int
    value_start: int    # the quoted value, quotes included
    value_end: int


@dataclass(eq=False)
class _Span:
    raw_name: bytes
    ns: str | None
    local: str
    start: int                  # '<' of the start tag
    head_end: int               # after its '>'
    self_closing: bool
    nsmap: dict[str | None, str]
    declared: dict[str | None, str]
    attrs: list[_Attr]
    parent: "_Span | None" = None
    children: list["_Span"] = field(default_factory=list)
    end: int = 0                # '<' of the end tag (= head_end when self-closing)
    tail_end: int = 0           # after the end tag

    def attr(self, local: str, ns: str | None = None) -> _Attr | None:
        return next((a for a in self.attrs if a.local == local and a.ns == ns), None)

    def get(self, local: str) -> str | None:
        found = self.attr(local)
        return found.value if found else None

    def child(self, ns: str, local: str) -> "_Span | None":
        return next((c for c in self.children if c.ns == ns and c.local == local), None)

    def prefix(self) -> bytes:
        return self.raw_name.split(b":")[0] + b":" if b":" in self.raw_name else b""

    def iter(self) -> Iterator["_Span"]:
        yield self
        for c in self.children:
            yield from c.iter()


def _unescape(text: str) -> str:
    def one(m: re.Match) -> str:
        ref = m.group(1)
        if ref.startswith("#x"):
            return chr(int(ref[2:], 16))
        if ref.startswith("#"):
            return chr(int(ref[1:]))
        return _NAMED[ref]
    return _ENTITY.sub(one, text)


def _escape(text: str) -> bytes:
    """Attribute text that reads the same in any ASCII-compatible encoding."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    return escaped.encode("ascii", "xmlcharrefreplace")


def _encoding(data: bytes) -> str:
    found = _ENCODING.match(data)
    return found.group(1).decode("ascii") if found else "utf-8"


def _scan(data: bytes) -> _Span:
    """The element structure of XML text with the byte offsets of every tag and attribute.
    `data` must be well-formed, in an ASCII-compatible encoding (UTF-8, ISO-8859-1, ...)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data[:200]:
        raise ValueError("the file is in UTF-16 or UTF-32; save it as UTF-8")
    encoding = _encoding(data)
    stack: list[_Span] = []
    root: _Span | None = None
    for m in _MARKUP.finditer(data):
        if m.group("close") is not None:
            span = stack.pop()
            span.end, span.tail_end = m.start(), m.end()
            continue
        if m.group("open") is None:
            continue
        raw_attrs = [(a.group(1), a.group(2), m.start("attrs") + a.start(), m.start("attrs") + a.end(),
                      m.start("attrs") + a.start(2), m.start("attrs") + a.end(2))
                     for a in _ATTR.finditer(m.group("attrs"))]
        parent = stack[-1] if stack else None
        nsmap = dict(parent.nsmap) if parent else {"xml": XML_NS}
        declared: dict[str | None, str] = {}
        for name, value, *_ in raw_attrs:
            if name == b"xmlns" or name.startswith(b"xmlns:"):
                prefix = name[6:].decode("ascii") if name != b"xmlns" else None
                declared[prefix] = _unescape(value[1:-1].decode(encoding))
        nsmap.update(declared)
        attrs = []
        for name, value, start, end, vstart, vend in raw_attrs:
            if name == b"xmlns" or name.startswith(b"xmlns:"):
                continue
            text = name.decode("ascii")
            prefix, _, local = text.rpartition(":")
            attrs.append(_Attr(name, nsmap.get(prefix) if prefix else None, local,
                               _unescape(value[1:-1].decode(encoding)), start, end, vstart, vend))
        tag = m.group("open").decode("ascii")
        prefix, _, local = tag.rpartition(":")
        span = _Span(m.group("open"), nsmap.get(prefix or None), local, m.start(), m.end(),
                     bool(m.group("slash")), nsmap, declared, attrs, parent)
        if parent is not None:
            parent.children.append(span)
        else:
            root = span
        if span.self_closing:
            span.end, span.tail_end = m.end(), m.end()
        else:
            stack.append(span)
    if root is None or stack:
        raise ValueError("the file is not well-formed XML")
    return root


def _apply(data: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    """Replace each [start, end) by its text; insertions (start == end) at one place keep their order."""
    out, position = [], 0
    for start, end, text in sorted(edits, key=lambda e: (e[0], e[1])):
        if start < position:
            raise ValueError("overlapping edits")
        out.append(data[position:start])
        out.append(text)
        position = end
    out.append(data[position:])
    return b"".join(out)


def _bpmn_root(data: bytes) -> _Span:
    root = _scan(data)
    if root.ns != BPMN_NS or root.local != "definitions":
        raise ValueError("the root element is not BPMN 2.0 definitions")
    return root


def mark_executable(data: bytes, process_id: str | None = None) -> bytes:
    """The file with isExecutable="true" on process `process_id` (None: every process), by the
    smallest textual edit: every other byte stays as it was. Raises ValueError if there is no such
    process."""
    root = _bpmn_root(data)
    edits = []
    found = False
    for span in root.iter():
        if span.ns != BPMN_NS or span.local != "process" or (process_id is not None and span.get("id") != process_id):
            continue
        found = True
        current = span.attr("isExecutable")
        if current is None:
            at = span.start + 1 + len(span.raw_name)
            edits.append((at, at, b' isExecutable="true"'))
        elif current.value.strip() != "true":
            quote = data[current.value_start:current.value_start + 1]
            edits.append((current.value_start, current.value_end, quote + b"true" + quote))
    if not found:
        raise ValueError(f"the file has no process {process_id}" if process_id else "the file has no process")
    return _apply(data, edits)


def _spiff_prefix(span: _Span) -> tuple[bytes, bytes]:
    """The prefix to write spiffworkflow elements with at `span`, and the declaration they need."""
    for prefix, uri in span.nsmap.items():
        if uri == SPIFF_NS and prefix:
            return prefix.encode("ascii"), b""
    prefix, n = "spiffworkflow", 1
    while prefix in span.nsmap:
        n += 1
        prefix = f"spiffworkflow{n}"
    return prefix.encode("ascii"), f' xmlns:{prefix}="{SPIFF_NS}"'.encode("ascii")


def _open_up(data: bytes, span: _Span, content: bytes) -> tuple[int, int, bytes]:
    """The edit turning self-closing `<x .../>` into `<x ...>content</x>`."""
    slash = data.rindex(b"/", span.start, span.head_end)
    return slash, span.head_end, b">" + content + b"</" + span.raw_name + b">"


def _after_documentation(span: _Span) -> int:
    docs = [c for c in span.children if c.ns == BPMN_NS and c.local == "documentation"]
    return docs[-1].tail_end if docs else span.head_end


def map_lanes(data: bytes, roles: Mapping[str, str]) -> bytes:
    """The file with each lane named by a key of `roles` (its id, or its name, also without the
    spaces around it) given the engine's `role` property with that value, by the smallest textual
    insertion (an existing role property has its value replaced). A key naming no lane may name a
    pool (participant) or a process: the process gets the role property, which makes it the role
    of its steps in no lane. Raises ValueError naming a key that is none of these, or an empty role."""
    root = _bpmn_root(data)
    lanes = [s for s in root.iter() if s.ns == BPMN_NS and s.local == "lane"]
    processes = {s.get("id"): s for s in root.iter() if s.ns == BPMN_NS and s.local == "process"}
    pools = [s for s in root.iter() if s.ns == BPMN_NS and s.local == "participant"]
    edits: list[tuple[int, int, bytes]] = []
    for key, role in roles.items():
        if not (role or "").strip():
            raise ValueError(f"lane {key}: the role is empty")

        def named(span: _Span) -> bool:
            return key in (span.get("id"), span.get("name"), (span.get("name") or "").strip())
        matched = [s for s in lanes if named(s)]
        if not matched:
            # a pool drawn without lanes: its process's role is the role of its steps in no lane
            matched = [processes[p.get("processRef")] for p in pools if named(p) and p.get("processRef") in processes]
            matched = matched or [p for p in processes.values() if named(p)]
        if not matched:
            raise ValueError(f"no lane, pool or process has the id or name {key!r}")
        for lane in matched:
            edits.append(_role_edit(data, lane, role.strip()))
    return _apply(data, edits)


def _role_edit(data: bytes, lane: _Span, role: str) -> tuple[int, int, bytes]:
    value = _escape(role)
    ext = lane.child(BPMN_NS, "extensionElements")
    props = ext.child(SPIFF_NS, "properties") if ext is not None else None
    if props is not None:
        for prop in props.children:
            if prop.ns == SPIFF_NS and prop.local == "property" and prop.get("name") == "role":
                attr = prop.attr("value")
                if attr is not None:
                    return attr.value_start, attr.value_end, b'"' + value + b'"'
                at = prop.start + 1 + len(prop.raw_name)
                return at, at, b' value="' + value + b'"'
        prefix = props.raw_name.split(b":")[0] + b":" if b":" in props.raw_name else b""
        element = b"<" + prefix + b'property name="role" value="' + value + b'"/>'
        if props.self_closing:
            return _open_up(data, props, element)
        return props.end, props.end, element
    prefix, declaration = _spiff_prefix(ext if ext is not None else lane)
    properties = (b"<" + prefix + b":properties" + declaration + b"><" + prefix + b':property name="role" value="'
                  + value + b'"/></' + prefix + b":properties>")
    if ext is not None:
        if ext.self_closing:
            return _open_up(data, ext, properties)
        return ext.end, ext.end, properties
    bpmn = lane.prefix()
    element = b"<" + bpmn + b"extensionElements>" + properties + b"</" + bpmn + b"extensionElements>"
    if lane.self_closing:
        return _open_up(data, lane, element)
    at = _after_documentation(lane)
    return at, at, element


def _foreign(ns: str | None) -> bool:
    return ns is not None and ns not in OWN_NAMESPACES


def _own_path(span: _Span) -> bool:
    node = span
    while node is not None:
        if _foreign(node.ns):
            return False
        node = node.parent
    return True


_USED_PREFIX = re.compile(rb"</?([\w.-]+):[\w.-]+|\s([\w.-]+):[\w.-]+\s*=")


def keep_extensions(before: bytes, after: bytes) -> bytes:
    """`after` (a modeller's re-serialisation of `before`) with the foreign extensions of `before`
    put back byte for byte: for each element (by id, and the root) in both, the children of its
    extensionElements and its attributes in a namespace other than BPMN, DI, DC and spiffworkflow
    that `after` dropped or altered get their source text from `before`; the namespace
    declarations they need are added to the root of `after` when it lacks them. Everything else
    stays as `after` has it."""
    old_root, new_root = _bpmn_root(before), _bpmn_root(after)
    old_ids = {s.get("id"): s for s in old_root.iter() if s.get("id") and _own_path(s)}
    new_ids = {s.get("id"): s for s in new_root.iter() if s.get("id") and _own_path(s)}
    pairs = [(old_root, new_root)] + [(old_ids[i], new_ids[i]) for i in old_ids
                                      if i in new_ids and old_ids[i] is not old_root and new_ids[i] is not new_root]
    edits: list[tuple[int, int, bytes]] = []
    needed: dict[str, str] = {}   # prefix -> uri the spliced text needs

    def need(text: bytes, old: _Span, new: _Span) -> None:
        for m in _USED_PREFIX.finditer(text):
            prefix = (m.group(1) or m.group(2)).decode("ascii")
            if prefix in ("xml", "xmlns") or prefix not in old.nsmap:
                continue
            if re.search(rb"xmlns:" + re.escape(prefix.encode()) + rb"\s*=", text):
                continue  # declared inside the fragment itself
            if new.nsmap.get(prefix) != old.nsmap[prefix]:
                needed[prefix] = old.nsmap[prefix]

    for old, new in pairs:
        # foreign attributes
        tail = new.head_end - (2 if new.self_closing else 1)
        for attr in old.attrs:
            if not _foreign(attr.ns):
                continue
            raw = before[attr.start:attr.end]
            same = next((a for a in new.attrs if a.ns == attr.ns and a.local == attr.local), None)
            if same is None:
                edits.append((tail, tail, b" " + raw))
            elif after[same.start:same.end] != raw:
                edits.append((same.start, same.end, raw))
            else:
                continue
            need(b" " + raw, old, new)
        # foreign extension elements
        old_ext = old.child(BPMN_NS, "extensionElements")
        fragments = [c for c in old_ext.children if _foreign(c.ns)] if old_ext is not None else []
        if not fragments:
            continue
        new_ext = new.child(BPMN_NS, "extensionElements")
        present = [c for c in new_ext.children if _foreign(c.ns)] if new_ext is not None else []
        unmatched = list(fragments)
        for child in present:
            text = after[child.start:child.tail_end]
            same = next((f for f in unmatched if before[f.start:f.tail_end] == text), None)
            if same is None:
                same = next((f for f in unmatched if (f.ns, f.local) == (child.ns, child.local)), None)
                if same is None:
                    continue  # the modeller's own addition
                edits.append((child.start, child.tail_end, before[same.start:same.tail_end]))
                need(before[same.start:same.tail_end], old, new)
            unmatched.remove(same)
        if not unmatched:
            continue
        missing = b""
        for fragment in unmatched:
            lead = before[:fragment.start]
            space = lead[len(lead.rstrip()):]
            missing += space + before[fragment.start:fragment.tail_end]
            need(before[fragment.start:fragment.tail_end], old, new)
        if new_ext is not None:
            if new_ext.self_closing:
                edits.append(_open_up(after, new_ext, missing))
            else:
                edits.append((new_ext.end, new_ext.end, missing))
            continue
        bpmn = new.prefix() if new.ns == BPMN_NS else next(
            (p.encode() + b":" for p, u in new.nsmap.items() if u == BPMN_NS and p), b"")
        element = b"<" + bpmn + b"extensionElements>" + missing + b"</" + bpmn + b"extensionElements>"
        if new.self_closing:
            edits.append(_open_up(after, new, element))
        else:
            at = _after_documentation(new)
            edits.append((at, at, element))
    declarations = b"".join(f' xmlns:{p}="'.encode("ascii") + _escape(u) + b'"'
                            for p, u in sorted(needed.items()) if p not in new_root.declared)
    if declarations:
        at = new_root.start + 1 + len(new_root.raw_name)
        edits.append((at, at, declarations))
    return _apply(after, edits)


# --- `bpm deploy --executable --lane-role` --------------------------------------------------------

class Marking:
    """BPMN files given to `bpm deploy` with the modeller's two edits made on the way (copies in
    a temporary folder beside which the originals' forms and DMN files are seen), so that what is
    deployed and stored is what the modeller would have saved. `paths` are the copies;
    `original(problem)` names a problem's file as the user gave it."""

    def __init__(self, paths, executable: bool, lane_roles: Mapping[str, str]):
        from pathlib import Path
        self.given = [Path(p) for p in paths]
        self.executable, self.lane_roles = executable, dict(lane_roles)
        self.paths: list = []
        self._names: dict[str, str] = {}
        self._folders: dict[str, str] = {}
        self._tmp = None

    def __enter__(self) -> "Marking":
        import tempfile
        from pathlib import Path
        folder = next((p for p in self.given if p.is_dir()), None)
        if folder is not None:
            raise ValueError(f"{folder}: --executable and --lane-role take .bpmn and .dmn files, not folders")
        self._tmp = tempfile.TemporaryDirectory(prefix="bpm-deploy-")
        root = Path(self._tmp.name)
        unused = set(self.lane_roles)
        for index, path in enumerate(self.given):
            place = root / str(index) / "bpmn"
            place.mkdir(parents=True)
            for beside in path.parent.iterdir():  # forms and decision tables beside the file
                if beside.suffix.lower() in (".json", ".dmn") and beside.name != path.name:
                    (place / beside.name).symlink_to(beside.resolve())
            if (path.parent.parent / "forms").is_dir():
                (place.parent / "forms").symlink_to((path.parent.parent / "forms").resolve())
            data = path.read_bytes()
            if path.suffix.lower() == ".bpmn":
                data, used = self._edit(path, data)
                unused -= used
            copy = place / path.name
            copy.write_bytes(data)
            self.paths.append(copy)
            self._names[str(copy)] = str(path)
            self._folders[str(place) + "/"] = str(path.parent) + "/"
        if unused:
            self.__exit__(None, None, None)
            raise ValueError(f"--lane-role {sorted(unused)[0]}: no lane, pool or process of the files given "
                             f"has that id or name")
        return self

    def _edit(self, path, data: bytes) -> tuple[bytes, set[str]]:
        try:
            if self.executable:
                data = mark_executable(data)
            used = set()
            for key, role in self.lane_roles.items():
                try:
                    data = map_lanes(data, {key: role})
                    used.add(key)
                except ValueError as exc:
                    if "no lane, pool or process" not in str(exc):
                        raise
            return data, used
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    def original(self, problem):
        shown = self._names.get(problem.file, problem.file)
        message = problem.message
        for copy, folder in self._folders.items():
            shown = shown.replace(copy, folder) if shown.startswith(copy) else shown
            message = message.replace(copy, folder)
        return problem.__class__(shown, problem.line, problem.element_id, message)

    def __exit__(self, *exc) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


# --- the MIWG conformance run (docs/conformance.md) ---------------------------------------------

CONFORMANCE_ROLE = "clerk"


@dataclass
class ConformanceRow:
    file: str
    opens: bool
    deployed: list[str] = field(default_factory=list)   # process ids
    problems: list = field(default_factory=list)         # definitions.Problem
    with_files: list[str] = field(default_factory=list)  # other files of the set deployed with it


def opens(data: bytes) -> str | None:
    """None if the modeller can open the file (well-formed XML, BPMN 2.0 definitions, a process),
    else why not."""
    try:
        root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False))
    except etree.XMLSyntaxError as exc:
        return f"malformed XML: {exc}"
    if root.tag != f"{_B}definitions":
        return "the root element is not BPMN 2.0 definitions"
    if root.find(f"{_B}process") is None:
        return "the file declares no process"
    return None


def prepare(data: bytes, role: str = CONFORMANCE_ROLE) -> tuple[bytes, set[str]]:
    """What a designer does in the modeller to a file from elsewhere: every process marked
    executable, every lane mapped to `role`, and every pool drawn without lanes too. Returns the
    edited file and the candidate groups it names (the roles an organisation adopting it creates)."""
    data = mark_executable(data)
    root = _bpmn_root(data)
    roles: dict[str, str] = {}
    for span in root.iter():
        if span.ns == BPMN_NS and span.local == "lane" and span.get("id"):
            roles[span.get("id")] = role
        if span.ns == BPMN_NS and span.local == "process" and span.get("id") and not any(
                s.ns == BPMN_NS and s.local == "lane" for s in span.iter()):
            roles[span.get("id")] = role
    groups = {g.strip() for g in re.findall(r'candidateGroups="([^"]*)"', data.decode("latin-1"))
              if g.strip() and not _is_expression(g) and "," not in g}
    return map_lanes(data, roles), groups


def conformance(folder) -> list[ConformanceRow]:
    """Each BPMN file of `folder` opened as the modeller does, then prepared (`prepare`) and
    deployed with `definitions.load_definitions`, together with the files of the set that declare
    the processes it calls."""
    import tempfile
    from pathlib import Path
    from .definitions import DefinitionError, load_definitions
    folder = Path(folder)
    files = sorted(folder.glob("*.bpmn"))
    declared: dict[str, Path] = {}
    own: dict[Path, set[str]] = {}
    for path in files:
        own[path] = {pid.decode() for pid in re.findall(rb'<(?:\w+:)?process\b[^>]*?\bid="([^"]+)"', path.read_bytes())}
        for pid in sorted(own[path]):
            declared.setdefault(pid, path)

    def companions(path: Path) -> list[str]:
        """The other files of the set declaring what `path` calls, directly or not."""
        found: list[Path] = []
        todo = [path]
        while todo:
            current = todo.pop()
            for called in re.findall(rb'calledElement="([^"]+)"', current.read_bytes()):
                other = declared.get(called.decode())
                if called.decode() not in own[current] and other is not None and other != path and other not in found:
                    found.append(other)
                    todo.append(other)
        return sorted(p.name for p in found)
    rows = []
    for path in files:
        data = path.read_bytes()
        row = ConformanceRow(path.name, opens(data) is None)
        rows.append(row)
        if not row.opens:
            continue
        row.with_files = companions(path)
        with tempfile.TemporaryDirectory(prefix="bpm-conformance-") as tmp:
            roles = {CONFORMANCE_ROLE}
            given = []
            for name in [path.name, *row.with_files]:
                prepared, groups = prepare((folder / name).read_bytes())
                roles |= groups
                (Path(tmp) / name).write_bytes(prepared)
                given.append(Path(tmp) / name)
            try:
                row.deployed = [d.process_id for d in load_definitions(given, sorted(roles))]
            except DefinitionError as exc:
                row.problems = [p.__class__(p.file.replace(tmp + "/", ""), p.line, p.element_id,
                                            p.message.replace(tmp + "/", "")) for p in exc.problems]
    return rows


def _main(argv: list[str] | None = None) -> int:
    import argparse
    from pathlib import Path
    parser = argparse.ArgumentParser(prog="python -m engine.foreign",
                                     description="Open and deploy other modellers' BPMN files (the MIWG set).")
    parser.add_argument("--report", action="store_true", help="print the conformance table (Markdown)")
    parser.add_argument("folder", nargs="?", default=str(Path(__file__).resolve().parent.parent / "tests" / "data" / "miwg"))
    args = parser.parse_args(argv)
    if not args.report:
        parser.print_help()
        return 0
    rows = conformance(args.folder)
    print("| File | Opens | Deployed | Reason (first findings) |")
    print("|---|---|---|---|")
    for row in rows:
        if row.deployed:
            extra = f" (with {', '.join(row.with_files)})" if row.with_files else ""
            reason = f"deploys {', '.join(row.deployed)}{extra}"
        else:
            first = row.problems[0]
            reason = f"{first.file}:{first.line}: {first.element_id}: {first.message}".replace("|", "\\|")
            if len(row.problems) > 1:
                reason += f" (and {len(row.problems) - 1} more findings)"
            if row.with_files:
                reason += f" (deployed with {', '.join(row.with_files)})"
        print(f"| {row.file} | {'yes' if row.opens else 'no'} | {'yes' if row.deployed else 'refused'} | "
              f"{' '.join(reason.split())} |")
    print(f"\n{sum(r.opens for r in rows)} of {len(rows)} open; {sum(bool(r.deployed) for r in rows)} of "
          f"{len(rows)} deploy.")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
