"""Lint (engine.lint): a catalogue of broken models, each with the finding it must give at its
line; the company's processes lint clean; the CLI (`bpm lint`) and the API (POST /api/v1/lint)
say the same; no file, however broken, makes lint raise."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import access, versions
from engine.definitions import DefinitionError, load_files
from engine.lint import RULES, Finding, lint, lint_files, lint_paths
from engine.runtime import Forbidden

from .conftest import DATA

ROOT = DATA.parent.parent
BROKEN = DATA / "broken"
ROLES = sorted(access.ROLES)

# file, rule, severity, element_id, line, a piece of the fix (or None), file the finding is in
CATALOGUE = [
    ("bad_target.bpmn", "deploy", "error", "to_review", 14, "did you mean 'review'?", None),
    ("unknown_role.bpmn", "deploy", "error", "lane_rep", 7, None, None),
    ("bad_timer.bpmn", "deploy", "error", "review_due", 17, None, None),
    ("condition_syntax.bpmn", "deploy", "error", "large", 16, None, None),
    ("missing_form.bpmn", "deploy", "error", "review", 15, None, None),
    ("truncated.bpmn", "deploy", "error", None, 14, None, None),
    ("garbage.bpmn", "deploy", "error", None, 1, None, None),
    ("loop_without_end.bpmn", "deploy", "error", "loop_without_end", 5, None, None),
    ("bad_cell.bpmn", "dmn-cell", "error", "rule_big_amount", 13, "write 1000 without quotes", "bad_cell.dmn"),
    ("bad_cell.dmn", "dmn-cell", "error", "rule_big_amount", 13, "write 1000 without quotes", None),
    ("unwritten_variable.bpmn", "unwritten-variable", "warning", "price", 23, None, None),
    ("unread_field.bpmn", "unread-field", "warning", "review", 22, "did you mean 'decision'?", None),
    ("unread_field.bpmn", "unwritten-variable", "warning", "approved", 31, "did you mean 'desicion'?", None),
    ("unread_decision.bpmn", "unread-field", "warning", "review", 21, None, None),
    ("no_default.bpmn", "no-default", "warning", "route", 21, "mark one flow as default", None),
    ("unreachable.bpmn", "unreachable", "warning", "forgotten", 30, None, None),
    ("no_way_out.bpmn", "no-way-out", "warning", "draft", 28, None, None),
    ("no_form.bpmn", "no-form", "warning", "review", 21, "add a form no_form.review.json", None),
]
LATE = {"unwritten_variable.bpmn", "unread_field.bpmn", "unread_decision.bpmn", "no_default.bpmn",
        "unreachable.bpmn", "no_way_out.bpmn", "no_form.bpmn"}


def _memory(name: str) -> dict[str, bytes]:
    """The catalogue file `name` with the files beside it it needs (forms, a decision table), by name."""
    stem = name.split(".")[0]
    return {p.name: p.read_bytes() for p in BROKEN.iterdir() if p.name.split(".")[0] == stem}


def _has(findings: list[Finding], rule, severity, element_id, line, fix, file) -> Finding:
    match = [f for f in findings if (f.rule, f.severity, f.element_id, f.line) == (rule, severity, element_id, line)
             and Path(f.file).name == file]
    assert match, "\n".join(f"{f} [{f.rule}]" for f in findings)
    if fix is not None:
        assert fix in (match[0].fix or ""), match[0]
    return match[0]


def test_every_rule_has_a_broken_model_in_the_catalogue():
    assert {rule for _, rule, *_ in CATALOGUE} == set(RULES) - {"internal"}


@pytest.mark.parametrize("name, rule, severity, element_id, line, fix, where", CATALOGUE,
                         ids=[f"{c[0]}-{c[1]}" for c in CATALOGUE])
def test_each_broken_model_gives_its_finding_at_its_line(name, rule, severity, element_id, line, fix, where):
    where = where or name
    from_paths = lint_paths([BROKEN / name], ROLES)
    _has(from_paths, rule, severity, element_id, line, fix, where)
    from_memory = lint_files(_memory(name), ROLES)
    found = _has(from_memory, rule, severity, element_id, line, fix, where)
    assert found.file == where  # in memory, the file is named as given
    assert str(found).startswith(f"{where}:{line}: {element_id or '-'}: ")
    assert json.loads(json.dumps(found.as_json())) == {
        "rule": rule, "severity": severity, "file": where, "line": line, "element_id": element_id,
        "message": found.message, "fix": found.fix}
    if name in LATE:  # deploys, and fails only when a token gets there
        assert not [f for f in from_memory if f.severity == "error"], from_memory
        load_files(_memory(name), ROLES)


def test_a_process_without_an_end_event_is_refused_in_a_sentence_not_a_recursion_error():
    [finding] = [f for f in lint_files(_memory("loop_without_end.bpmn"), ROLES) if f.rule == "deploy"]
    assert finding.message == ("process loop_without_end has no end event, so SpiffWorkflow cannot create a "
                               "workflow from it; add an end event where its tokens finish")


def test_the_company_processes_lint_clean():
    """No finding on the shipped processes. (order_to_settlement's `gate` once had two conditional
    flows on what the price_order service answers; a phone or fax order is now its default flow, so
    an order is approved unless it is under a contract, whatever the service says.)"""
    findings = lint_paths([ROOT / "bpmn", ROOT / "forms"], ROLES)
    assert [str(f) for f in findings] == []


def _no_default(conditions: list[str], default: str | None = None, enum=("goods", "service", "refund")) -> list[str]:
    files = _memory("no_default.bpmn")
    text = files["no_default.bpmn"].decode()
    for old, new in zip(('kind == "goods"', 'kind == "service"'), conditions):
        text = text.replace(old, new.replace("<", "&lt;").replace(">", "&gt;"))
    if default:
        text = text.replace('<bpmn:exclusiveGateway id="route" />', f'<bpmn:exclusiveGateway id="route" default="{default}" />')
    files["no_default.bpmn"] = text.encode()
    schema = json.loads(files["no_default.start.json"])
    schema["properties"]["kind"]["enum"] = list(enum)
    schema["properties"]["rate"] = {"type": "number"}
    files["no_default.start.json"] = json.dumps(schema).encode()
    return [str(f) for f in lint_files(files, ROLES) if f.rule == "no-default"]


@pytest.mark.parametrize("conditions", [
    ["rate > 5", "rate <= 5"], ["rate < 5", "5 <= rate"], ["rate == 0", "rate != 0"], ["bool(rate)", "not bool(rate)"],
    ['kind == "goods"', 'kind != "goods"'], ['kind == "goods"', 'kind in ("service", "refund")'],
    ['kind == "goods"', 'kind not in ("goods",)'], ["True", 'kind == "goods"'],
])
def test_conditions_that_cannot_all_be_false_need_no_default(conditions):
    assert _no_default(conditions) == []


def test_a_gateway_exhaustive_over_the_values_its_form_allows_needs_no_default():
    assert _no_default(['kind == "goods"', 'kind == "service"'], enum=("goods", "service")) == []
    assert _no_default(['kind == "goods"', 'kind == "service"'], default="goods") == []
    assert _no_default(['kind == "goods"', 'kind == "service"']) != []  # "refund" takes neither
    assert _no_default(["rate > 5", "rate < 5"]) != []  # 5 takes neither


def test_a_variable_written_on_some_path_before_or_by_a_formless_step_is_not_said_unwritten():
    files = _memory("unwritten_variable.bpmn")
    text = files["unwritten_variable.bpmn"].decode()
    in_the_start_form = json.loads(files["unwritten_variable.start.json"])
    in_the_start_form["properties"]["discount"] = {"type": "number"}
    assert [f for f in lint_files({**files, "unwritten_variable.start.json": json.dumps(in_the_start_form).encode()},
                                  ROLES) if f.rule == "unwritten-variable"] == []
    earlier = text.replace("<bpmn:script>price = 100", "<bpmn:script>discount = 0.1\nprice = 100")
    assert [f for f in lint_files({**files, "unwritten_variable.bpmn": earlier.encode()}, ROLES)
            if f.rule == "unwritten-variable"] == []
    later = text.replace("total = price * (1 - discount)", "total = price * (1 - discount)\ndiscount = 0")
    assert [f.line for f in lint_files({**files, "unwritten_variable.bpmn": later.encode()}, ROLES)
            if f.rule == "unwritten-variable"] == [23]  # written after it is read: still unwritten
    formless = {n: d for n, d in files.items() if not n.endswith(".json")}
    formless["unwritten_variable.bpmn"] = text.replace('value="unwritten_variable.start.json"', 'value=""').encode()
    assert [f for f in lint_files(formless, ROLES) if f.rule == "unwritten-variable"] == []
    after_a_formless_task = _memory("no_form.bpmn")
    after_a_formless_task["no_form.bpmn"] = after_a_formless_task["no_form.bpmn"].replace(
        b'<bpmn:sequenceFlow id="to_end" sourceRef="review" targetRef="end" />',
        b'<bpmn:sequenceFlow id="to_end" sourceRef="review" targetRef="end">'
        b"<bpmn:conditionExpression>anything</bpmn:conditionExpression></bpmn:sequenceFlow>")
    assert [f.rule for f in lint_files(after_a_formless_task, ROLES)] == ["no-form"]  # not `anything`


def test_a_misspelt_variable_gets_the_close_name_as_its_fix():
    files = _memory("unwritten_variable.bpmn")
    text = files["unwritten_variable.bpmn"].decode().replace("(1 - discount)", "(1 - customr)")
    found = [f for f in lint_files({**files, "unwritten_variable.bpmn": text.encode()}, ROLES)
             if f.rule == "unwritten-variable"]
    assert [(f.element_id, f.line, f.fix) for f in found] == [("price", 23, "did you mean 'customer'?")]


def test_a_boundary_event_and_an_event_subprocess_are_reachable():
    text = (DATA / "definitions" / "approval.bpmn").read_bytes()
    assert not [f for f in lint_files({"approval.bpmn": text}, ROLES) if f.rule in ("unreachable", "no-way-out")]


def test_garbage_and_truncated_files_give_findings_never_an_exception():
    """Every catalogue file cut short at a dozen places, and bytes that are no text at all."""
    for path in sorted(BROKEN.iterdir()):
        data = path.read_bytes()
        for cut in sorted({1, 40, 200, len(data) // 3, len(data) // 2, len(data) - 30, len(data) - 1}):
            for name in (path.name, path.stem + ".bpmn", path.stem + ".dmn"):
                findings = lint_files({name: data[:max(cut, 0)], "other.json": b"{not json"}, ROLES)
                assert all(isinstance(f, Finding) for f in findings)
    for junk in (b"", b"\x00\xff\xfe", b"<", "<bpmn:definitions>中文".encode("utf-16"),
                 b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>'):
        findings = lint_files({"junk.bpmn": junk, "junk.dmn": junk, "junk.json": junk}, ROLES)
        assert findings and all(f.severity == "error" for f in findings if f.rule == "deploy")


# --- deploying from memory ------------------------------------------------------------------------

def test_load_files_reads_forms_given_in_memory_and_says_when_one_is_missing():
    files = _memory("no_default.bpmn")
    [definition] = load_files(files, ROLES)
    assert definition.process_id == "no_default" and "no_default.start.json" in definition.forms
    with pytest.raises(DefinitionError) as refused:
        load_files({"no_default.bpmn": files["no_default.bpmn"]}, ROLES)
    assert [str(p) for p in refused.value.problems] == [
        "no_default.bpmn:13: start: start event start names form 'no_default.start.json', which is not "
        "among the files given"]


def test_deploy_files_deploys_drafts_from_memory_for_designers_only(sqlite_store):
    files = _memory("no_default.bpmn")
    with pytest.raises(Forbidden):
        versions.deploy_files(sqlite_store, files, actor="rep.wang")
    [deployed] = versions.deploy_files(sqlite_store, files, actor="design.yang")
    assert (deployed.process_id, deployed.version, deployed.status) == ("no_default", 1, "deployed")
    assert versions.deploy_files(sqlite_store, files, actor="design.yang")[0].status == "unchanged"
    with pytest.raises(DefinitionError):
        versions.deploy_files(sqlite_store, _memory("bad_target.bpmn"), actor="design.yang")


def test_lint_takes_roles_from_the_store_and_refuses_who_may_not_deploy(sqlite_store):
    assert [f.rule for f in lint(sqlite_store, _memory("no_default.bpmn"), actor="design.yang")] == ["no-default"]
    assert [f.rule for f in lint(sqlite_store, [BROKEN / "no_default.bpmn"])] == ["no-default"]
    with pytest.raises(Forbidden):
        lint(sqlite_store, _memory("no_default.bpmn"), actor="rep.wang")


# --- the CLI -------------------------------------------------------------------------------------------

@pytest.fixture
def bpm(tmp_path, monkeypatch, capsys):
    from bpm.cli import main
    monkeypatch.setenv("BPM_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite3'}")

    def run(*args: str):
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    assert run("init", "--demo")[0] == 0
    return run


def test_bpm_lint_prints_each_finding_at_its_line_and_exits_1_on_an_error(bpm):
    code, out, _ = bpm("lint", str(BROKEN / "bad_target.bpmn"))
    assert code == 1
    assert f"{BROKEN / 'bad_target.bpmn'}:14: to_review: [deploy] sequence flow to_review goes to 'reviw'" in out
    assert "which is no element of this process (did you mean 'review'?) (fix: did you mean 'review'?)\n" in out
    code, out, _ = bpm("lint", str(BROKEN / "no_default.bpmn"), str(BROKEN / "unreachable.bpmn"))
    assert code == 0  # warnings only: it deploys
    assert [line.split(": [")[1].split("]")[0] for line in out.splitlines()] == ["no-default", "unreachable"]
    assert f"{BROKEN / 'unreachable.bpmn'}:30: forgotten: [unreachable]" in out
    code, out, _ = bpm("lint", "--json", str(BROKEN / "no_default.bpmn"))
    assert code == 0 and [(f["rule"], f["line"], f["element_id"]) for f in json.loads(out)] == [
        ("no-default", 21, "route")]
    code, out, err = bpm("lint", str(BROKEN / "nowhere.bpmn"))
    assert code == 1 and "no such file or folder" in err
    code, out, err = bpm("lint", "--as", "rep.wang", str(BROKEN / "no_default.bpmn"))
    assert code == 1 and "may not deploy" in err and out == ""


def test_bpm_lint_on_the_company_processes_exits_0(bpm):
    code, out, _ = bpm("lint", str(ROOT / "bpmn"), str(ROOT / "forms"))
    assert (code, out) == (0, "")


# --- the API ---------------------------------------------------------------------------------------------

@pytest.fixture
def client(sqlite_store):
    from processes import LOOKUPS, SERVICES
    from engine.runtime import Runtime
    from web import create_app
    app = create_app(Runtime(sqlite_store, SERVICES, lookups=LOOKUPS), {"TESTING": True})
    return app.test_client()


def _token(client, username: str) -> dict:
    reply = client.post("/api/v1/tokens", json={"username": username, "password": "demo"})
    assert reply.status_code == 201, reply.json
    return {"Authorization": f"Bearer {reply.json['token']}"}


def test_api_lint_for_designers(client):
    designer = _token(client, "design.yang")
    files = {name: data.decode() for name, data in _memory("unread_field.bpmn").items()}
    reply = client.post("/api/v1/lint", json={"files": files}, headers=designer)
    assert reply.status_code == 200
    assert [(f["rule"], f["element_id"], f["line"]) for f in reply.json["findings"]] == [
        ("unread-field", "review", 22), ("unwritten-variable", "approved", 31)]
    import io
    multipart = {"files": [(io.BytesIO(data), name) for name, data in _memory("bad_target.bpmn").items()]}
    reply = client.post("/api/v1/lint", data=multipart, headers=designer, content_type="multipart/form-data")
    assert reply.status_code == 200
    assert [(f["rule"], f["severity"], f["file"], f["line"]) for f in reply.json["findings"]] == [
        ("deploy", "error", "bad_target.bpmn", 14), ("no-form", "warning", "bad_target.bpmn", 15)]
    truncated = client.post("/api/v1/lint", json={"files": {"t.bpmn": files["unread_field.bpmn"][:500]}},
                            headers=designer)
    assert truncated.status_code == 200 and truncated.json["findings"][0]["rule"] == "deploy"


@pytest.mark.parametrize("body, sentence", [
    ({"files": {}}, "no files were sent"),
    ({}, "send the files to lint"),
    ({"files": {"a.bpmn": 3}}, "send the files to lint"),
    ({"files": {"picture.png": "x"}}, "picture.png is not a .bpmn, .dmn or form (.json) file"),
    ({"files": {"a.bpmn": "just some text"}}, "a.bpmn is not XML"),
])
def test_api_lint_bad_input_is_a_400_with_one_sentence(client, body, sentence):
    reply = client.post("/api/v1/lint", json=body, headers=_token(client, "design.yang"))
    assert reply.status_code == 400 and sentence in reply.json["error"]


def test_api_lint_refuses_who_may_not_deploy(client):
    files = {name: data.decode() for name, data in _memory("no_default.bpmn").items()}
    reply = client.post("/api/v1/lint", json={"files": files}, headers=_token(client, "rep.wang"))
    assert reply.status_code == 403 and "may not deploy" in reply.json["error"]
    assert client.post("/api/v1/lint", json={"files": files}).status_code == 401
    refused_first = client.post("/api/v1/lint", json={}, headers=_token(client, "rep.wang"))
    assert refused_first.status_code == 403  # before anything is said of the files


SUBPROCESS = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
                  xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d" targetNamespace="x">
  <bpmn:process id="outer" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:extensionElements><spiffworkflow:properties>
      <spiffworkflow:property name="form" value="outer.start.json" />
    </spiffworkflow:properties></bpmn:extensionElements></bpmn:startEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="before" />
    <bpmn:scriptTask id="before" scriptFormat="python"><bpmn:script>a = 1</bpmn:script></bpmn:scriptTask>
    <bpmn:sequenceFlow id="f2" sourceRef="before" targetRef="inner" />
    <bpmn:subProcess id="inner">
      <bpmn:startEvent id="inner_start" />
      <bpmn:sequenceFlow id="g1" sourceRef="inner_start" targetRef="inside" />
      <bpmn:scriptTask id="inside" scriptFormat="python"><bpmn:script>b = a + 1
c = nothing_writes_this</bpmn:script></bpmn:scriptTask>
      <bpmn:sequenceFlow id="g2" sourceRef="inside" targetRef="inner_end" />
      <bpmn:endEvent id="inner_end" />
    </bpmn:subProcess>
    <bpmn:sequenceFlow id="f3" sourceRef="inner" targetRef="call" />
    <bpmn:callActivity id="call" calledElement="called" />
    <bpmn:sequenceFlow id="f4" sourceRef="call" targetRef="after" />
    <bpmn:scriptTask id="after" scriptFormat="python"><bpmn:script>d = b + c + from_the_call</bpmn:script></bpmn:scriptTask>
    <bpmn:sequenceFlow id="f5" sourceRef="after" targetRef="end" />
    <bpmn:endEvent id="end" />
  </bpmn:process>
  <bpmn:process id="called" isExecutable="false">
    <bpmn:startEvent id="called_start" />
    <bpmn:sequenceFlow id="h1" sourceRef="called_start" targetRef="called_script" />
    <bpmn:scriptTask id="called_script" scriptFormat="python"><bpmn:script>from_the_call = a * 2</bpmn:script></bpmn:scriptTask>
    <bpmn:sequenceFlow id="h2" sourceRef="called_script" targetRef="called_end" />
    <bpmn:endEvent id="called_end" />
  </bpmn:process>
</bpmn:definitions>
"""


def test_data_flows_into_and_out_of_a_subprocess_and_back_from_a_called_process():
    start_form = json.dumps({"type": "object", "properties": {"customer": {"type": "string"}}}).encode()
    findings = lint_files({"outer.bpmn": SUBPROCESS.encode(), "outer.start.json": start_form}, ROLES)
    assert [(f.rule, f.element_id, f.line, f.message) for f in findings if f.rule != "deploy"] == [
        ("unwritten-variable", "inside", 15, "the script of inside reads nothing_writes_this, which no form or "
                                             "step before it writes")]
    assert not [f for f in findings if f.rule in ("unreachable", "no-way-out", "internal")]
