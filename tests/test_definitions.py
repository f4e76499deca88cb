"""engine.definitions: BPMN + DMN files in, process definitions or FILE:LINE: ELEMENT_ID problems out."""
from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest
from SpiffWorkflow.bpmn.serializer.workflow import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.specs.bpmn_process_spec import BpmnProcessSpec
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG

from engine.definitions import DefinitionError, Problem, ProcessDefinition, load_definitions

DATA = Path(__file__).parent / "data" / "definitions"
MIWG = Path(__file__).parent / "data" / "miwg"  # copy of ../shared/conformance/miwg (CC BY 3.0)
MIWG_FILES = ["A.1.0", "A.2.0", "A.2.1", "A.3.0", "A.4.0", "A.4.1", "B.1.0", "B.2.0", "C.1.0", "C.1.1",
              "C.2.0", "C.3.0", "C.4.0", "C.5.0", "C.6.0", "C.7.0", "C.8.0", "C.8.1", "C.9.0", "C.9.1",
              "C.9.2"]

# The role ids of shared/domain/RULES.md, in its order.
ROLES = ["sales_rep", "office_manager", "regional_manager", "dept_manager", "vp_sales", "general_manager",
         "board", "hq_admin", "sales_plan", "finance", "warehouse", "production", "sales_secretary",
         "auditor", "designer"]

HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
                  xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core"
                  id="definitions" targetNamespace="http://example.com/bpmn">
"""


def chain(*nodes: str, loose: tuple[str, ...] = (), lanes: dict[str, list[str]] | None = None,
          pid: str = "p", start: str = "start", extra: str = "") -> str:
    """A process start -> nodes... -> end, every node in lane dept_manager unless `lanes` says otherwise.
    Each node is the XML of one flow node; `loose` nodes are not chained; `extra` goes in as it is."""
    ids = [start] + [_id(node) for node in nodes] + ["end"]
    if lanes is None:
        lanes = {"dept_manager": ids + [_id(node) for node in loose]}
    lane_xml = "".join(
        f'      <bpmn:lane id="lane_{n}" name="{name}">\n'
        + "".join(f"        <bpmn:flowNodeRef>{ref}</bpmn:flowNodeRef>\n" for ref in refs)
        + "      </bpmn:lane>\n"
        for n, (name, refs) in enumerate(lanes.items()))
    flows = "".join(f'    <bpmn:sequenceFlow id="flow_{n}" sourceRef="{a}" targetRef="{b}" />\n'
                    for n, (a, b) in enumerate(zip(ids, ids[1:])))
    return (HEAD
            + f'  <bpmn:process id="{pid}" isExecutable="true">\n'
            + (f'    <bpmn:laneSet id="lanes">\n{lane_xml}    </bpmn:laneSet>\n' if lanes else "")
            + f'    <bpmn:startEvent id="{start}" />\n'
            + "".join(f"    {node}\n" for node in nodes + loose)
            + '    <bpmn:endEvent id="end" />\n'
            + flows + extra
            + "  </bpmn:process>\n"
            + "</bpmn:definitions>\n")


def _id(node: str) -> str:
    return re.search(r'id="([^"]+)"', node).group(1)


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def problems_of(*paths: Path | str) -> list[Problem]:
    with pytest.raises(DefinitionError) as info:
        load_definitions(list(paths), ROLES)
    assert str(info.value) == "\n".join(str(p) for p in info.value.problems)
    return info.value.problems


def line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, "\n".join(map(str, problems))
    return problems[0]


# --- valid definitions --------------------------------------------------------------------------

def test_valid_process_with_lanes_dmn_and_call_activity():
    definitions = load_definitions([DATA], ROLES)
    assert [d.process_id for d in definitions] == ["expense_approval", "notify_customer"]
    approval, notify = definitions
    assert isinstance(approval, ProcessDefinition)
    assert approval.name == "Expense approval"
    assert isinstance(approval.spec, BpmnProcessSpec) and approval.spec.name == "expense_approval"
    assert list(approval.subprocess_specs) == ["notify_customer"]
    # two lanes named by role ids, one mapped by the spiffworkflow property 'role'
    assert approval.lane_roles == {"sales_rep": "sales_rep", "dept_manager": "dept_manager",
                                   "Finance department": "finance"}
    assert approval.spec.task_specs["pay"].lane == "Finance department"
    assert approval.files == {name: (DATA / name).read_bytes()
                              for name in ("approval.bpmn", "notify.bpmn", "approval_level.dmn")}
    assert re.fullmatch(r"[0-9a-f]{64}", approval.content_hash)
    assert notify.files == {"notify.bpmn": (DATA / "notify.bpmn").read_bytes()}
    assert notify.lane_roles == {} and notify.subprocess_specs == {}


def test_files_and_folders_give_the_same_definitions():
    by_folder = load_definitions([DATA], ROLES)
    by_file = load_definitions(sorted(DATA.iterdir(), reverse=True), ROLES)
    assert [(d.process_id, d.content_hash) for d in by_folder] == [(d.process_id, d.content_hash) for d in by_file]


def test_specs_serialise_restore_and_run():
    approval = load_definitions([DATA], ROLES)[0]
    serializer = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(SPIFF_CONFIG))
    spec = serializer.from_dict(serializer.to_dict(approval.spec))
    subs = {name: serializer.from_dict(serializer.to_dict(s)) for name, s in approval.subprocess_specs.items()}
    workflow = BpmnWorkflow(spec, subs)
    workflow.do_engine_steps()
    assert [t.task_spec.name for t in workflow.get_tasks() if t.task_spec.name == "submit"] == ["submit"]


def test_content_hash_stable_and_changed_by_one_byte(tmp_path):
    for each in DATA.iterdir():
        shutil.copy(each, tmp_path / each.name)
    first = {d.process_id: d.content_hash for d in load_definitions([tmp_path], ROLES)}
    again = {d.process_id: d.content_hash for d in load_definitions([tmp_path], ROLES)}
    assert first == again

    dmn = tmp_path / "approval_level.dmn"
    dmn.write_bytes(dmn.read_bytes().replace(b"1000000</text>", b"1000001</text>", 1))
    edited = {d.process_id: d.content_hash for d in load_definitions([tmp_path], ROLES)}
    assert edited["expense_approval"] != first["expense_approval"]
    assert edited["notify_customer"] == first["notify_customer"]  # it uses neither file


# --- XML, schema, safety ------------------------------------------------------------------------

def test_malformed_xml_reports_the_line(tmp_path):
    text = chain('<bpmn:userTask id="approve" name="Approve">').replace('<bpmn:endEvent id="end" />', "", 1)
    path = write(tmp_path, "broken.bpmn", text)
    problem = only(problems_of(path))
    assert problem.file == str(path) and problem.element_id == "-"
    assert problem.message.startswith("malformed XML:")
    assert problem.line == line_of(text, "</bpmn:process>")  # where the unclosed userTask is noticed


def test_doctype_and_entity_bomb_refused_quickly(tmp_path):
    bomb = ('<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
            + "".join(f' <!ENTITY lol{n} "{("&lol%s;" % (n - 1 if n > 1 else "")) * 10}">\n' for n in range(1, 10))
            + ']>\n<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL">&lol9;'
              '</bpmn:definitions>\n')
    external = ('<?xml version="1.0"?>\n<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
                '<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL">&x;</bpmn:definitions>\n')
    utf16 = external.replace('<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-16"?>').encode("utf-16")
    paths = [write(tmp_path, "bomb.bpmn", bomb), write(tmp_path, "xxe.bpmn", external),
             write(tmp_path, "xxe16.bpmn", utf16)]
    started = time.monotonic()
    found = problems_of(*paths)
    assert time.monotonic() - started < 1
    assert [(p.file, p.line, p.element_id, p.message) for p in found] == [
        (str(path), 2, "-", "DOCTYPE and entity declarations are not allowed") for path in paths]


def test_schema_error_has_line_and_element_id(tmp_path):
    text = chain('<bpmn:userTask id="approve" name="Approve" bogus="1" />')
    path = write(tmp_path, "schema.bpmn", text)
    problem = only(problems_of(path))
    assert (problem.line, problem.element_id) == (line_of(text, 'id="approve"'), "approve")
    assert problem.message.startswith("not valid BPMN 2.0:") and "bogus" in problem.message


def test_missing_and_foreign_paths(tmp_path):
    foreign = write(tmp_path, "notes.txt", "hello")
    found = problems_of(tmp_path / "nowhere.bpmn", foreign)
    assert [(p.file, p.message) for p in found] == [
        (str(tmp_path / "nowhere.bpmn"), "there is no such file or folder"),
        (str(foreign), "this is not a .bpmn or .dmn file"),
    ]


def test_no_executable_process(tmp_path):
    text = chain('<bpmn:userTask id="approve" />').replace('isExecutable="true"', 'isExecutable="false"')
    path = write(tmp_path, "sketch.bpmn", text)
    problem = only(problems_of(path))
    assert (problem.line, problem.element_id) == (line_of(text, "<bpmn:process"), "p")
    assert "no executable process" in problem.message


def test_duplicate_process_ids_across_files(tmp_path):
    first = write(tmp_path, "a.bpmn", chain('<bpmn:userTask id="approve" />', pid="twice"))
    second = write(tmp_path, "b.bpmn", chain('<bpmn:userTask id="approve" />', pid="twice"))
    problem = only(problems_of(first, second))
    assert (problem.file, problem.element_id) == (str(second), "twice")
    assert "already declared in" in problem.message and str(first) in problem.message


# --- code in the diagram ------------------------------------------------------------------------

def test_script_syntax_error_names_the_script_task(tmp_path):
    text = chain('<bpmn:userTask id="approve" />',
                 '<bpmn:scriptTask id="compute" scriptFormat="python">'
                 "<bpmn:script>total = amount *</bpmn:script></bpmn:scriptTask>")
    path = write(tmp_path, "script.bpmn", text)
    problem = only(problems_of(path))
    assert (problem.file, problem.line, problem.element_id) == (str(path), line_of(text, 'id="compute"'), "compute")
    assert problem.message.startswith("script: syntax error")


def test_sandbox_rules_apply_to_scripts_and_prescripts(tmp_path):
    text = chain('<bpmn:userTask id="approve"><bpmn:extensionElements>'
                 "<spiffworkflow:preScript>x = ().__class__</spiffworkflow:preScript>"
                 "</bpmn:extensionElements></bpmn:userTask>",
                 '<bpmn:scriptTask id="compute"><bpmn:script>import os</bpmn:script></bpmn:scriptTask>')
    found = problems_of(write(tmp_path, "sandbox.bpmn", text))
    assert [(p.element_id, p.message.split(":")[0]) for p in found] == [("approve", "pre-script"), ("compute", "script")]
    assert "__class__" in found[0].message and "import" in found[1].message


def boundary_timer(expression: str, kind: str = "timeDuration") -> str:
    return ('<bpmn:boundaryEvent id="approve_due" attachedToRef="approve" cancelActivity="false">'
            f"<bpmn:timerEventDefinition><bpmn:{kind}>{expression}</bpmn:{kind}>"
            "</bpmn:timerEventDefinition></bpmn:boundaryEvent>")


def timer_process(expression: str, kind: str = "timeDuration") -> str:
    return chain('<bpmn:userTask id="approve" />', loose=(boundary_timer(expression, kind), '<bpmn:endEvent id="reminded" />'),
                 extra='    <bpmn:sequenceFlow id="to_reminded" sourceRef="approve_due" targetRef="reminded" />\n')


@pytest.mark.parametrize("expression, kind", [("PT4H", "timeDuration"), ("R3/PT1H", "timeCycle"),
                                              ("2026-01-01T00:00:00Z", "timeDate")])
def test_unquoted_iso_timer_is_read_as_quoted(tmp_path, expression, kind):
    """Other modellers write ISO 8601 timers unquoted (issue 11): read as the literal, the file kept
    as written."""
    text = timer_process(expression, kind)
    (definition,) = load_definitions([write(tmp_path, "timer.bpmn", text)], ROLES)
    spec = definition.spec.task_specs["approve_due"].event_definition
    assert spec.expression == f'"{expression}"'
    assert f">{expression}<".encode() in definition.files["timer.bpmn"]


@pytest.mark.parametrize("expression, kind, expected", [
    ('"PT4HH"', "timeDuration", "not an ISO 8601 duration"),
    ('"4 hours"', "timeDuration", "not an ISO 8601 duration"),
    ('"2026-13-01T09:00:00+08:00"', "timeDate", "not an ISO 8601 date-time"),
    ('"PT1H"', "timeCycle", "not an ISO 8601 repeating interval"),
])
def test_timer_expressions_must_be_iso_8601(tmp_path, expression, kind, expected):
    problem = only(problems_of(write(tmp_path, "timer.bpmn", timer_process(expression, kind))))
    assert problem.element_id == "approve_due" and expected in problem.message


@pytest.mark.parametrize("expression, kind", [
    ('"PT4H"', "timeDuration"), ('"P2DT4H"', "timeDuration"), ("due_in", "timeDuration"),
    ('"2026-11-23T09:00:00+08:00"', "timeDate"), ('"R3/PT1H"', "timeCycle"),
])
def test_good_timer_expressions_pass(tmp_path, expression, kind):
    assert load_definitions([write(tmp_path, "timer.bpmn", timer_process(expression, kind))], ROLES)


def gateway_process(first: str, second: str) -> str:
    """approve -> decided -(first)-> end, decided -(second)-> rejected."""
    text = chain('<bpmn:userTask id="approve" />', '<bpmn:exclusiveGateway id="decided" />',
                 loose=('<bpmn:endEvent id="rejected" />',),
                 extra=('    <bpmn:sequenceFlow id="to_rejected" sourceRef="decided" targetRef="rejected">'
                        f"<bpmn:conditionExpression>{second}</bpmn:conditionExpression></bpmn:sequenceFlow>\n"))
    return text.replace('sourceRef="decided" targetRef="end" />',
                        f'sourceRef="decided" targetRef="end"><bpmn:conditionExpression>{first}'
                        "</bpmn:conditionExpression></bpmn:sequenceFlow>")


def test_condition_with_a_typo(tmp_path):
    text = gateway_process('decision == "approve"', 'decision = "reject"')
    problem = only(problems_of(write(tmp_path, "gateway.bpmn", text)))
    assert (problem.line, problem.element_id) == (line_of(text, 'id="to_rejected"'), "to_rejected")
    assert problem.message.startswith("condition 'decision = \"reject\"': syntax error")


def test_spiffworkflow_errors_are_placed_on_their_element(tmp_path):
    # no condition on a non-default flow: only SpiffWorkflow's parser notices
    text = gateway_process('decision == "approve"', "").replace(
        "<bpmn:conditionExpression></bpmn:conditionExpression>", "")
    problem = only(problems_of(write(tmp_path, "gateway.bpmn", text)))
    assert problem.element_id in ("flow_3", "to_rejected")
    assert problem.line == line_of(text, f'id="{problem.element_id}"')
    assert "without condition" in problem.message


# --- names SpiffWorkflow or the engine rely on ---------------------------------------------------

def test_reserved_start_id(tmp_path):
    text = chain('<bpmn:userTask id="approve" />', start="Start")
    problem = only(problems_of(write(tmp_path, "reserved.bpmn", text)))
    assert (problem.line, problem.element_id) == (line_of(text, '<bpmn:startEvent id="Start"'), "Start")
    assert "reserved" in problem.message


def test_lane_with_unknown_name(tmp_path):
    text = chain('<bpmn:userTask id="approve" />', lanes={"Approvers": ["start", "approve", "end"]})
    problem = only(problems_of(write(tmp_path, "lanes.bpmn", text)))
    assert (problem.line, problem.element_id) == (line_of(text, '<bpmn:lane id="lane_0"'), "lane_0")
    assert problem.message == ("lane 'Approvers' maps to no known role; name it after a role "
                               "(sales_rep, office_manager, …) or give it a spiffworkflow property 'role'")


def test_lane_role_property_must_name_a_known_role(tmp_path):
    text = chain('<bpmn:userTask id="approve" />', lanes={"Approvers": ["start", "approve", "end"]}).replace(
        '<bpmn:lane id="lane_0" name="Approvers">',
        '<bpmn:lane id="lane_0" name="Approvers"><bpmn:extensionElements><spiffworkflow:properties>'
        '<spiffworkflow:property name="role" value="approver" /></spiffworkflow:properties>'
        "</bpmn:extensionElements>")
    problem = only(problems_of(write(tmp_path, "lanes.bpmn", text)))
    assert problem.element_id == "lane_0" and "role property 'approver', which is not a known role" in problem.message


def test_a_lane_that_only_groups_other_lanes_needs_no_role(tmp_path):
    text = chain('<bpmn:userTask id="approve" />', lanes={"Sales department": ["start", "approve", "end"]})
    text = text.replace("      </bpmn:lane>\n", '        <bpmn:childLaneSet id="sales_lanes">\n'
                        '          <bpmn:lane id="lane_reps" name="sales_rep">'
                        "<bpmn:flowNodeRef>start</bpmn:flowNodeRef><bpmn:flowNodeRef>approve</bpmn:flowNodeRef>"
                        "<bpmn:flowNodeRef>end</bpmn:flowNodeRef></bpmn:lane>\n"
                        "        </bpmn:childLaneSet>\n      </bpmn:lane>\n")
    (definition,) = load_definitions([write(tmp_path, "nested.bpmn", text)], ROLES)
    assert definition.lane_roles == {"sales_rep": "sales_rep"}
    assert definition.spec.task_specs["approve"].lane == "sales_rep"


def test_user_task_in_no_lane(tmp_path):
    text = chain('<bpmn:userTask id="approve" />', '<bpmn:manualTask id="sign" />',
                 lanes={"dept_manager": ["start", "approve", "end"]})
    problem = only(problems_of(write(tmp_path, "nolane.bpmn", text)))
    assert (problem.line, problem.element_id) == (line_of(text, 'id="sign"'), "sign")
    assert problem.message == "manual task sign is in no lane, so no role could act on it"


def test_tasks_inside_a_subprocess_take_its_lane(tmp_path):
    subprocess = ('<bpmn:subProcess id="review"><bpmn:startEvent id="review_start" />'
                  '<bpmn:userTask id="check" /><bpmn:endEvent id="review_end" />'
                  '<bpmn:sequenceFlow id="r1" sourceRef="review_start" targetRef="check" />'
                  '<bpmn:sequenceFlow id="r2" sourceRef="check" targetRef="review_end" /></bpmn:subProcess>')
    definitions = load_definitions([write(tmp_path, "sub.bpmn", chain(subprocess))], ROLES)
    assert definitions[0].subprocess_specs["review"].task_specs["check"].lane == "dept_manager"


# --- DMN and call activities ----------------------------------------------------------------------

def rule_task(decision: str | None) -> str:
    ref = (f"<bpmn:extensionElements><spiffworkflow:calledDecisionId>{decision}"
           "</spiffworkflow:calledDecisionId></bpmn:extensionElements>") if decision else ""
    return f'<bpmn:businessRuleTask id="level">{ref}</bpmn:businessRuleTask>'


def test_business_rule_task_with_its_dmn(tmp_path):
    dmn = shutil.copy(DATA / "approval_level.dmn", tmp_path / "approval_level.dmn")
    bpmn = write(tmp_path, "rules.bpmn", chain(rule_task("approval_level"), '<bpmn:userTask id="approve" />'))
    (definition,) = load_definitions([bpmn, dmn], ROLES)
    assert sorted(definition.files) == ["approval_level.dmn", "rules.bpmn"]


def test_missing_decision(tmp_path):
    dmn = shutil.copy(DATA / "approval_level.dmn", tmp_path / "approval_level.dmn")
    text = chain(rule_task("credit_level"), '<bpmn:userTask id="approve" />')
    problem = only(problems_of(write(tmp_path, "rules.bpmn", text), dmn))
    assert (problem.line, problem.element_id) == (line_of(text, 'id="level"'), "level")
    assert problem.message == ("business rule task level calls decision 'credit_level', "
                               "which is in none of the DMN files loaded")


def test_dmn_expressions_are_checked(tmp_path):
    text = (DATA / "approval_level.dmn").read_text().replace("&gt;= 1000000", "&gt;= 1000000)").replace(
        '"dept_manager"', "__import__('os')")
    dmn = write(tmp_path, "approval_level.dmn", text)
    bpmn = write(tmp_path, "rules.bpmn", chain(rule_task("approval_level"), '<bpmn:userTask id="approve" />'))
    found = problems_of(bpmn, dmn)
    assert [(p.file, p.element_id) for p in found] == [(str(dmn), "rule_large_amount"), (str(dmn), "rule_small_level")]
    assert found[0].line == line_of(text, 'id="rule_large_amount"')


def test_call_activity_to_an_unknown_process(tmp_path):
    text = chain('<bpmn:userTask id="approve" />', '<bpmn:callActivity id="notify" calledElement="nowhere" />')
    problem = only(problems_of(write(tmp_path, "call.bpmn", text)))
    assert problem.element_id == "notify" and "calls process 'nowhere'" in problem.message


# --- unsupported BPMN -----------------------------------------------------------------------------

def test_unsupported_elements(tmp_path):
    text = chain('<bpmn:userTask id="approve" />', '<bpmn:complexGateway id="complex" />',
                 '<bpmn:intermediateThrowEvent id="jump"><bpmn:linkEventDefinition name="a" />'
                 "</bpmn:intermediateThrowEvent>",
                 extra=('    <bpmn:subProcess id="on_error" triggeredByEvent="true">'
                        '<bpmn:startEvent id="error_start"><bpmn:errorEventDefinition /></bpmn:startEvent>'
                        '<bpmn:endEvent id="error_end" />'
                        '<bpmn:sequenceFlow id="e1" sourceRef="error_start" targetRef="error_end" />'
                        "</bpmn:subProcess>\n"))
    found = problems_of(write(tmp_path, "unsupported.bpmn", text))
    assert [(p.element_id, p.message) for p in found] == [
        ("complex", "complexGateway is not supported"),
        ("jump", "linkEventDefinition on a intermediateThrowEvent is not supported"),
        ("error_start", "errorEventDefinition on a startEvent is not supported"),
    ]


# --- everything at once ----------------------------------------------------------------------------

def test_several_problems_in_one_file_are_all_reported(tmp_path):
    text = chain('<bpmn:userTask id="approve" />',
                 '<bpmn:scriptTask id="compute"><bpmn:script>total = (</bpmn:script></bpmn:scriptTask>',
                 '<bpmn:userTask id="pay" />',
                 loose=(boundary_timer('"PT4HH"'),), start="Start",
                 lanes={"Approvers": ["Start", "approve", "compute", "approve_due", "end"]})
    path = write(tmp_path, "many.bpmn", text)
    found = problems_of(path)
    assert [(p.file, p.line, p.element_id) for p in found] == [
        (str(path), line_of(text, f'id="{element_id}"'), element_id)
        for element_id in ("lane_0", "Start", "compute", "pay", "approve_due")]
    assert [p.message.split(" ")[0] for p in found] == ["lane", "element", "script:", "user", "timer"]


def test_problem_format():
    assert str(Problem("bpmn/x.bpmn", 12, "approve", "it is wrong")) == "bpmn/x.bpmn:12: approve: it is wrong"
    assert str(Problem("bpmn/x.bpmn", None, "-", "it is wrong")) == "bpmn/x.bpmn:0: -: it is wrong"
    error = DefinitionError([Problem("a", 1, "-", "one"), Problem("b", 2, "x", "two")])
    assert str(error) == "a:1: -: one\nb:2: x: two" and len(error.problems) == 2


# --- conformance: reference models drawn by many tools ------------------------------------------------

@pytest.mark.parametrize("name", MIWG_FILES)
def test_miwg_reference_models(name):
    path = MIWG / f"{name}.bpmn"
    try:
        definitions = load_definitions([str(path)], ROLES)
    except DefinitionError as error:
        assert error.problems
        for problem in error.problems:
            assert problem.file == str(path)
            assert problem.element_id and problem.element_id.strip() == problem.element_id
            assert isinstance(problem.line, int) and problem.line >= 1
            assert problem.message and "\n" not in problem.message
    else:
        assert definitions and all(isinstance(d.spec, BpmnProcessSpec) for d in definitions)


# --- task properties and forms ------------------------------------------------------------------

def _task(props: dict[str, str], tag: str = "userTask") -> str:
    inner = "".join(f'<spiffworkflow:property name="{k}" value="{v}" />' for k, v in props.items())
    return (f'<bpmn:{tag} id="approve"><bpmn:extensionElements><spiffworkflow:properties>{inner}'
            f'</spiffworkflow:properties></bpmn:extensionElements></bpmn:{tag}>')


def test_a_task_form_is_found_in_the_sibling_forms_folder_and_pinned_by_the_hash(tmp_path):
    (tmp_path / "bpmn").mkdir()
    (tmp_path / "forms").mkdir()
    form = tmp_path / "forms" / "p.approve.json"
    form.write_text('{"type": "object", "properties": {"decision": {"enum": ["approve", "reject"]}}}')
    bpmn = write(tmp_path / "bpmn", "p.bpmn", chain(_task({"form": "p.approve.json", "due": "PT8H"})))
    (first,) = load_definitions([bpmn], ROLES)
    assert first.forms == {"p.approve.json": json.loads(form.read_text())}
    assert "forms/p.approve.json" in first.files
    form.write_text('{"type": "object", "properties": {"decision": {"enum": ["approve"]}}}')
    (second,) = load_definitions([bpmn], ROLES)
    assert second.content_hash != first.content_hash  # a changed form is a new version


@pytest.mark.parametrize("props, expected", [
    ({"form": "missing.json"}, "names form 'missing.json', which is in neither"),
    ({"form": "../etc/passwd"}, "must be a file name in forms/"),
    ({"form": "broken.json"}, "form broken.json is not JSON"),
    ({"form": "bad_schema.json"}, "form bad_schema.json: invalid JSON Schema at type"),
    ({"due": "4 hours"}, "property due is '4 hours', not an ISO 8601 duration"),
    ({"remind_before": "PT1HH"}, "property remind_before is 'PT1HH'"),
    ({"assignee": "__import__('os')"}, "assignee expression"),
    ({"four_eyes": "maybe"}, "four_eyes must be true or false"),
])
def test_task_property_problems_name_the_task_and_line(tmp_path, props, expected):
    write(tmp_path, "broken.json", "{not json")
    write(tmp_path, "bad_schema.json", '{"type": "nonsense"}')
    text = chain(_task(props))
    problem = only(problems_of(write(tmp_path, "p.bpmn", text)))
    assert problem.element_id == "approve" and problem.line == line_of(text, 'id="approve"')
    assert expected in problem.message and problem.message.startswith("user task approve")


def test_due_none_is_allowed(tmp_path):
    (definition,) = load_definitions([write(tmp_path, "p.bpmn", chain(_task({"due": "none"})))], ROLES)
    assert definition.forms == {}


# --- loops without a wait state -------------------------------------------------------------------

BACK = ('    <bpmn:sequenceFlow id="back" sourceRef="again" targetRef="work">'
        '<bpmn:conditionExpression>n &lt; 3</bpmn:conditionExpression></bpmn:sequenceFlow>\n')


def test_a_loop_without_a_wait_state_is_noted_with_file_line_and_element(tmp_path):
    text = chain('<bpmn:scriptTask id="work"><bpmn:script>n = n + 1</bpmn:script></bpmn:scriptTask>',
                 '<bpmn:exclusiveGateway id="again" default="flow_2" />', extra=BACK)
    path = write(tmp_path, "spin.bpmn", text)
    [definition] = load_definitions([path], ROLES)
    line = line_of(text, 'id="work"')
    assert [n for n in definition.notices if "loop" in n] == [
        f"{path}:{line}: work: the loop through work, again has no user task, "
        f"receive task, catch event or event-based gateway to wait at: it must end by itself, or the "
        f"engine stops it after BPM_MAX_ENGINE_STEPS steps"]


def test_a_loop_through_a_user_task_or_a_catch_event_is_not_noted(tmp_path):
    for waiting in ('<bpmn:userTask id="work" />',
                    '<bpmn:intermediateCatchEvent id="work"><bpmn:timerEventDefinition><bpmn:timeDuration>'
                    '"PT1H"</bpmn:timeDuration></bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>'):
        text = chain(waiting, '<bpmn:exclusiveGateway id="again" default="flow_2" />', extra=BACK)
        [definition] = load_definitions([write(tmp_path, "rework.bpmn", text)], ROLES)
        assert not [n for n in definition.notices if "loop" in n], definition.notices
