"""engine.foreign: other modellers' dialects read in memory, and the modeller's textual edits."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from lxml import etree

from engine import foreign
from engine.definitions import DefinitionError, load_definitions
from engine.foreign import NotSimple, condition_to_python, feel_to_python

MIWG = Path(__file__).parent / "data" / "miwg"
B = "{http://www.omg.org/spec/BPMN/20100524/MODEL}"


# --- FEEL and JUEL conditions -------------------------------------------------------------------

@pytest.mark.parametrize("text, language, python", [
    ("${approved}", None, "approved"),
    ("${!approved}", None, "not approved"),
    ("${clarified == 'yes'}", None, 'clarified == "yes"'),
    ("${a gt 3 && b ne null}", None, "a > 3 and b != None"),
    ("= approved", None, "approved"),
    ("= not(approved)", None, "not (approved)"),
    ("=fraud", None, "fraud"),
    ('amount > 1000 and not(rejected)', "https://www.omg.org/spec/DMN/20191111/FEEL/", "amount > 1000 and not (rejected)"),
    ('x = "a"', None, 'x == "a"'),
    ('x != "a" or y <= 2.5', "FEEL", 'x != "a" or y <= 2.5'),
    ("= flag = true or other = null", None, "flag == True or other == None"),
    ("= order.total >= 10", None, 'order["total"] >= 10'),
    ('= note = "a ( b )"', None, 'note == "a ( b )"'),
])
def test_simple_feel_and_juel_become_python(text, language, python):
    assert condition_to_python(text, language) == python


@pytest.mark.parametrize("text", [
    '= some risk in riskLevels satisfies risk = "red"',
    "= every r in rs satisfies r > 1",
    'Vacation Approval = "Approved"',
    "= count(items) > 1",
    "= x in [1, 2]",
    "= if a then b else c",
    "= __class__ = 1",
    "= lambda = 1",
])
def test_feel_beyond_the_subset_is_refused(text):
    with pytest.raises(NotSimple):
        condition_to_python(text, None)


def test_python_conditions_are_left_alone():
    assert condition_to_python('decision == "approve"', None) is None
    assert condition_to_python("amount > 1000 and not rejected", None) is None
    # in the engine's own files a single = is a typo of Python, not FEEL
    assert condition_to_python('decision = "reject"', None, bare_feel=False) is None


@pytest.mark.parametrize("written, read", [
    ("P7D", '"P7D"'), ("PT4H", '"PT4H"'), ("R3/PT1H", '"R3/PT1H"'), ("2026-01-01T00:00:00Z", '"2026-01-01T00:00:00Z"'),
    ('= "PT1H"', '"PT1H"'), ("=PT1H", '"PT1H"'), ('"PT4H"', '"PT4H"'), ("due_in", "due_in"), ("= x", "= x"),
])
def test_iso_timers_are_read_quoted(written, read):
    el = etree.Element(f"{B}timeDuration")
    el.text = written
    foreign._quote_timer(el)
    assert el.text == read


def test_feel_never_reaches_python_unchecked():
    # what the translation gives still goes through the sandbox's own check at deploy
    assert feel_to_python('x = "a\\"b"') == 'x == "a\\"b"'


# --- through load_definitions -------------------------------------------------------------------

CAMUNDA = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:camunda="http://camunda.org/schema/1.0/bpmn" xmlns:zeebe="http://camunda.org/schema/zeebe/1.0"
    id="d" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="invoice" isExecutable="true">
    <bpmn:startEvent id="start" />
    <bpmn:userTask id="approve" camunda:candidateGroups="accounting" camunda:assignee="${approver}" />
    <bpmn:exclusiveGateway id="ok" />
    <bpmn:userTask id="check">
      <bpmn:extensionElements><zeebe:assignmentDefinition candidateGroups="clerks" assignee="demo" /></bpmn:extensionElements>
    </bpmn:userTask>
    <bpmn:boundaryEvent id="late" attachedToRef="check" cancelActivity="false">
      <bpmn:timerEventDefinition><bpmn:timeDuration>P7D</bpmn:timeDuration></bpmn:timerEventDefinition>
    </bpmn:boundaryEvent>
    <bpmn:endEvent id="end" />
    <bpmn:endEvent id="late_end" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="approve" />
    <bpmn:sequenceFlow id="f2" sourceRef="approve" targetRef="ok" />
    <bpmn:sequenceFlow id="yes" sourceRef="ok" targetRef="end"><bpmn:conditionExpression>${approved}</bpmn:conditionExpression></bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="no" sourceRef="ok" targetRef="check"><bpmn:conditionExpression>= not(approved)</bpmn:conditionExpression></bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="f3" sourceRef="check" targetRef="end" />
    <bpmn:sequenceFlow id="f4" sourceRef="late" targetRef="late_end" />
  </bpmn:process>
</bpmn:definitions>
"""


def deploy(tmp_path: Path, text: str | bytes, roles=("accounting", "clerks"), name="camunda.bpmn"):
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return load_definitions([path], list(roles))


def test_camunda_roles_assignees_feel_and_timers_deploy(tmp_path):
    (definition,) = deploy(tmp_path, CAMUNDA)
    specs = definition.spec.task_specs
    assert specs["approve"].lane == "accounting" and specs["check"].lane == "clerks"
    assert definition.lane_roles == {"accounting": "accounting", "clerks": "clerks"}
    assert specs["approve"].extensions["properties"]["assignee"] == "approver"
    assert specs["check"].extensions["properties"]["assignee"] == '"demo"'
    assert sorted(c[0].args[0] for c in specs["ok"].cond_task_specs if c[0]) == ["approved", "not (approved)"]
    assert specs["late"].event_definition.expression == '"P7D"'
    # the stored file is the one given, byte for byte
    assert definition.files["camunda.bpmn"] == CAMUNDA.encode()


def test_a_candidate_group_that_is_no_role_is_refused_at_the_task(tmp_path):
    with pytest.raises(DefinitionError) as info:
        deploy(tmp_path, CAMUNDA, roles=("clerks",))
    (problem,) = [p for p in info.value.problems if "candidateGroups" in p.message]
    assert problem.element_id == "approve" and problem.line == 7
    assert "'accounting' is not a known role" in problem.message


def test_several_candidate_groups_or_an_expression_are_findings(tmp_path):
    text = CAMUNDA.replace('camunda:candidateGroups="accounting"', 'camunda:candidateGroups="accounting, sales"') \
        .replace('candidateGroups="clerks"', 'candidateGroups="${group}"')
    with pytest.raises(DefinitionError) as info:
        deploy(tmp_path, text)
    found = {p.element_id: p.message for p in info.value.problems if "candidateGroups" in p.message}
    assert "names 2 groups" in found["approve"] and "is an expression" in found["check"]


def test_feel_beyond_the_subset_names_the_flow_and_line(tmp_path):
    text = CAMUNDA.replace("= not(approved)", '= some r in risks satisfies r = "red"')
    with pytest.raises(DefinitionError) as info:
        deploy(tmp_path, text)
    (problem,) = info.value.problems
    line = text.splitlines().index(next(l for l in text.splitlines() if 'id="no"' in l)) + 1
    assert (problem.element_id, problem.line) == ("no", line)
    assert problem.message.startswith("FEEL beyond comparisons and and/or/not is not supported: "
                                      "'= some r in risks satisfies r = \"red\"'")


def test_a_pool_without_lanes_takes_its_role_from_map_lanes(tmp_path):
    text = CAMUNDA.replace(' camunda:candidateGroups="accounting"', "").replace(
        '<zeebe:assignmentDefinition candidateGroups="clerks" assignee="demo" />', "")
    with pytest.raises(DefinitionError) as info:
        deploy(tmp_path, text)
    assert {p.element_id for p in info.value.problems} == {"approve", "check"}  # in no lane
    (definition,) = deploy(tmp_path, foreign.map_lanes(text.encode(), {"invoice": "clerks"}))
    assert definition.spec.task_specs["approve"].lane == "clerks"
    assert definition.lane_roles == {"clerks": "clerks"}


def test_an_implicit_parallel_split_runs_both_ways(tmp_path):
    data = foreign.mark_executable((MIWG / "A.4.0.bpmn").read_bytes())
    data = foreign.map_lanes(data, {"Lane 1": "clerks", "Lane 2": "clerks"})
    definitions = deploy(tmp_path, data, name="A.4.0.bpmn")
    spec = next(d for d in definitions if d.process_id == "WFP-6-2").spec
    split = spec.task_specs["_6fed62c8-8241-4a1d-ae67-266fda7dcead_split"]
    assert type(split).__name__ == "ParallelGateway"
    assert {s.name for s in split.outputs} == {"_ee35fa2c-dfea-40cf-a469-845b765a7b50",
                                               "_f52b6ad0-4dcc-4053-b696-b924dda01db5"}


# --- textual edits ------------------------------------------------------------------------------

def changed_bytes(a: bytes, b: bytes) -> bytes:
    """What `b` has that `a` has not, when b is a with one insertion."""
    start = next(i for i in range(min(len(a), len(b))) if a[i] != b[i])
    return b[start:start + len(b) - len(a)]


def test_mark_executable_edits_only_the_attribute():
    original = (MIWG / "A.1.0.bpmn").read_bytes()
    marked = foreign.mark_executable(original)
    assert marked == original.replace(b'isExecutable="false"', b'isExecutable="true"')
    # a process without the attribute gets it right after its name
    original = (MIWG / "C.4.0.bpmn").read_bytes()
    first = re.search(rb'<semantic:process\b[^>]*?id="([^"]+)"', original).group(1).decode()
    marked = foreign.mark_executable(original, first)
    assert marked.replace(b' isExecutable="true"', b"", 1) == original
    assert marked.count(b'isExecutable="true"') == original.count(b'isExecutable="true"') + 1
    with pytest.raises(ValueError, match="no process nowhere"):
        foreign.mark_executable(original, "nowhere")


def test_map_lanes_inserts_the_role_property_and_nothing_else():
    original = (MIWG / "A.4.1.bpmn").read_bytes()
    mapped = foreign.map_lanes(original, {"Lane 2": "合同审核员"})  # the file's lane is named 'Lane 2 '
    inserted = changed_bytes(original, mapped)
    assert mapped.replace(inserted, b"", 1) == original
    root = etree.fromstring(mapped)
    lane = next(el for el in root.iter(f"{B}lane") if el.get("name") == "Lane 2 ")
    values = lane.xpath("./*[local-name()='extensionElements']/*[local-name()='properties']/*"
                        "[local-name()='property'][@name='role']/@value")
    assert values == ["合同审核员"]
    # mapping again replaces the value
    again = foreign.map_lanes(mapped, {"Lane 2": "clerk"})
    assert b'value="clerk"' in again and len(re.findall(rb'name="role"', again)) == 1
    with pytest.raises(ValueError, match="no lane, pool or process"):
        foreign.map_lanes(original, {"Lane 9": "clerk"})


# --- foreign extensions survive a modeller's save -----------------------------------------------

FOREIGN_FILES = ["A.2.1.bpmn", "A.4.1.bpmn", "C.1.0.bpmn", "C.8.1.bpmn", "C.9.0.bpmn", "C.9.2.bpmn"]


def foreign_fragments(data: bytes) -> list[bytes]:
    """The exact source text of every foreign child of an extensionElements, and of every foreign
    attribute, on elements with an id."""
    root = foreign._scan(data)
    found = []
    for span in root.iter():
        if not span.get("id") or not foreign._own_path(span):
            continue
        found += [data[a.start:a.end] for a in span.attrs if foreign._foreign(a.ns)]
        ext = span.child(foreign.BPMN_NS, "extensionElements")
        if ext is not None:
            found += [data[c.start:c.tail_end] for c in ext.children if foreign._foreign(c.ns)]
    return found


def modeller_save(data: bytes, *, drop: bool) -> tuple[bytes, str]:
    """A modeller's save: parse, rename the first task, serialise (which re-writes quoting and
    character references); with `drop`, it also loses every foreign extension element and attribute."""
    root = etree.fromstring(data)
    task = next(el for el in root.iter() if isinstance(el.tag, str) and el.tag.startswith(B)
                and el.tag.endswith(("task", "Task")) and el.get("id"))
    task.set("name", "Renamed by the modeller")
    if drop:
        for el in list(root.iter()):
            if not isinstance(el.tag, str):
                continue
            for name in list(el.attrib):
                if name.startswith("{") and etree.QName(name).namespace not in foreign.OWN_NAMESPACES:
                    del el.attrib[name]
            if el.tag == f"{B}extensionElements":
                for child in list(el):
                    if isinstance(child.tag, str) and etree.QName(child).namespace not in foreign.OWN_NAMESPACES:
                        el.remove(child)
        etree.cleanup_namespaces(root)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8"), task.get("id")


@pytest.mark.parametrize("name", FOREIGN_FILES)
@pytest.mark.parametrize("drop", [False, True])
def test_foreign_extensions_survive_a_save_byte_for_byte(name, drop):
    before = (MIWG / name).read_bytes()
    if b"ISO-8859-1" in before[:100]:
        pytest.skip("the modeller saves UTF-8; see the UTF-8 files")
    fragments = foreign_fragments(before)
    assert fragments, f"{name} has foreign extensions"
    after, task_id = modeller_save(before, drop=drop)
    if drop:
        assert any(f not in after for f in fragments)  # the save lost them (the test can fail)
    kept = foreign.keep_extensions(before, after)
    for fragment in fragments:
        assert fragment in kept, fragment[:120]
    root = etree.fromstring(kept)  # still XML, every prefix declared
    task = next(el for el in root.iter() if el.get("id") == task_id)
    assert task.get("name") == "Renamed by the modeller"
    # nothing but the extensions changed: the result has what the save wrote around them
    assert foreign.keep_extensions(before, kept) == kept


def test_keep_extensions_leaves_a_faithful_save_alone():
    before = (MIWG / "C.9.2.bpmn").read_bytes()
    assert foreign.keep_extensions(before, before) == before


def test_work_another_engine_does_is_named_not_skipped(tmp_path):
    text = CAMUNDA.replace('<bpmn:exclusiveGateway id="ok" />',
                           '<bpmn:exclusiveGateway id="ok" />\n'
                           '    <bpmn:serviceTask id="archive" camunda:class="org.example.Archive" />\n'
                           '    <bpmn:sendTask id="tell" />\n'
                           '    <bpmn:businessRuleTask id="rate"><bpmn:extensionElements>'
                           '<zeebe:calledDecision decisionId="risk_check" resultVariable="r" />'
                           '</bpmn:extensionElements></bpmn:businessRuleTask>')
    with pytest.raises(DefinitionError) as info:
        deploy(tmp_path, text)
    found = {p.element_id: p.message for p in info.value.problems}
    assert found["archive"] == ("service task archive is done by another engine's worker "
                                "(class 'org.example.Archive'), which this engine does not have")
    assert found["tell"] == "send task tell names no message, so it would send nothing"
    # the Zeebe decision call is read as the engine's own: what is missing is the table
    assert "calls decision 'risk_check', which is in none of the DMN files loaded" in found["rate"]


# --- a Camunda file runs as it says ---------------------------------------------------------------

def test_a_camunda_file_runs_with_its_roles_assignee_condition_and_timer(store, tmp_path):
    from datetime import datetime, timezone
    from engine import versions
    from engine.runtime import Forbidden, Runtime
    t0 = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
    text = CAMUNDA.replace('<bpmn:process id="invoice" isExecutable="true">',
                           '<bpmn:process id="invoice" isExecutable="true" camunda:candidateStarterGroups="sales_rep">') \
        .replace('camunda:candidateGroups="accounting"', 'camunda:candidateGroups="dept_manager"') \
        .replace('candidateGroups="clerks"', 'candidateGroups="finance"')
    path = tmp_path / "invoice.bpmn"
    path.write_text(text)
    assert [d.status for d in versions.deploy(store, [path], at=t0)] == ["deployed"]
    runtime = Runtime(store)
    with pytest.raises(Forbidden):
        runtime.start("invoice", "dm.zhou", {}, at=t0)  # candidateStarterGroups: sales_rep only
    view = runtime.start("invoice", "rep.wang", {"approver": "dm.zhou", "approved": False}, at=t0)
    (task,) = view.tasks
    assert (task.element_id, task.role, task.assignee) == ("approve", "dept_manager", "dm.zhou")
    view = runtime.complete(task.id, "dm.zhou", {}, at=t0)
    (task,) = view.tasks  # = not(approved): to the check, held by 'demo' of the finance role
    assert (task.element_id, task.role, task.assignee) == ("check", "finance", "demo")
    with store.read() as session:
        from sqlalchemy import select
        from engine.store import DueTimer
        dues = session.scalars(select(DueTimer.due_at).where(DueTimer.kind == "timer")).all()
    assert [d.astimezone(timezone.utc) for d in dues] == [datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)]


def test_extensions_survive_a_save_that_renames_prefixes():
    """bpmn-js writes BPMN with the prefix bpmn: and may drop declarations it does not use."""
    before = (MIWG / "C.9.2.bpmn").read_bytes()
    renamed = before.replace(b"bpmn2:", b"bpmn:").replace(b"xmlns:bpmn2=", b"xmlns:bpmn=")
    after, _ = modeller_save(renamed, drop=True)
    assert b"zeebe" not in after
    kept = foreign.keep_extensions(before, after)
    for fragment in foreign_fragments(before):
        assert fragment in kept, fragment[:120]
    root = etree.fromstring(kept)
    assert root.nsmap.get("zeebe") == foreign.ZEEBE_NS
    assert root.find(f".//{B}userTask[@id='UserTask_CheckForFraud']") is not None


def test_a_lane_drawn_without_a_name_is_mapped_by_its_id(tmp_path):
    text = CAMUNDA.replace(' camunda:candidateGroups="accounting"', "").replace(
        '<zeebe:assignmentDefinition candidateGroups="clerks" assignee="demo" />', "").replace(
        '<bpmn:process id="invoice" isExecutable="true">',
        '<bpmn:process id="invoice" isExecutable="true"><bpmn:laneSet id="lanes"><bpmn:lane id="Lane_1">'
        '<bpmn:flowNodeRef>approve</bpmn:flowNodeRef><bpmn:flowNodeRef>check</bpmn:flowNodeRef>'
        '<bpmn:flowNodeRef>start</bpmn:flowNodeRef></bpmn:lane></bpmn:laneSet>')
    with pytest.raises(DefinitionError) as info:
        deploy(tmp_path, text)
    assert "lane Lane_1 has no name" in info.value.problems[0].message
    (definition,) = deploy(tmp_path, foreign.map_lanes(text.encode(), {"Lane_1": "clerks"}))
    assert definition.spec.task_specs["approve"].lane == "Lane_1"
    assert definition.lane_roles == {"Lane_1": "clerks"}
