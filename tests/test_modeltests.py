"""Model tests (issue 11, part 6): the cases a designer attaches to a process, deployed with its
version, checked at deploy, run on a throwaway database from the engine, the command line and
the API; the company's processes ship with theirs, and every one of them passes."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

import processes
from engine import access, modeltests, runtime as runtime_module, versions
from engine.definitions import DefinitionError, load_definitions
from engine.modeltests import CaseResult, CasesFailed, run_cases, run_deployed
from engine.runtime import Forbidden, InvalidInput, NotFound, Runtime
from engine.store import Definition, Instance

from .test_cli import bpm  # noqa: F401  (the `bpm` fixture: the command line on a fresh database)

ROOT = Path(__file__).resolve().parents[1]
BPMN, FORMS = ROOT / "bpmn", ROOT / "forms"
SHIPPED = ["archive_access", "branch_change", "branch_closure", "branch_establishment", "contract_review",
           "credit_review", "expense_claim", "monthly_target", "order_to_settlement", "regional_expense",
           "return_request"]
MAJOR = "major contract goes to the GM"


@pytest.fixture(scope="module")
def company() -> dict:
    """The company's deployable definitions, by process id (parsed once)."""
    return {d.process_id: d for d in load_definitions([BPMN], access.ROLES)}


def copy_of_the_company(tmp_path: Path) -> tuple[Path, Path]:
    """bpmn/ and forms/ copied, to change a file of the model without touching the repository's."""
    diagrams, forms = tmp_path / "bpmn", tmp_path / "forms"
    shutil.copytree(BPMN, diagrams)
    shutil.copytree(FORMS, forms)
    return diagrams, forms


def raised_threshold(files: dict[str, bytes]) -> dict[str, bytes]:
    """contract_review's files with the decision table's major-contract threshold at 2,000,000."""
    changed = dict(files)
    dmn = changed["contract_approval_authority.dmn"]
    assert dmn.count(b"&gt;= 1000000") == 2
    changed["contract_approval_authority.dmn"] = dmn.replace(b"&gt;= 1000000", b"&gt;= 2000000")
    return changed


# --- the company's cases -----------------------------------------------------------------------

@pytest.mark.parametrize("process_id", SHIPPED)
def test_the_company_processes_ship_cases_and_every_case_passes(company, process_id):
    definition = company[process_id]
    assert f"forms/{process_id}.cases.json" in definition.files  # deployed with the version
    began = time.perf_counter()
    results = run_cases(definition.files, process_id)
    seconds = time.perf_counter() - began
    assert len(results) >= 3
    assert [r.problems for r in results if not r.passed] == []
    assert all(r.path for r in results)
    assert seconds < 5, f"{process_id}: {seconds:.2f} s"  # about 0.1-0.3 s here; a designer waits for it


def test_contract_review_covers_the_dm_the_gm_threshold_rejection_and_revision(company):
    results = {r.name: r for r in run_cases(company["contract_review"].files, "contract_review")}
    assert results[MAJOR].path == ("dm_review", "gm_approval", "go_approval", "file_contract")
    assert any(r.path[:3] == ("dm_review", "revise", "dm_review") for r in results.values())
    assert any(r.path == ("dm_review", "go_approval", "file_contract") for r in results.values())


def test_a_changed_threshold_fails_the_major_contract_case_naming_the_step(company):
    results = run_cases(raised_threshold(company["contract_review"].files), "contract_review")
    failed = [r for r in results if not r.passed]
    assert [r.name for r in failed] == [MAJOR]
    assert failed[0].problems == ("step 2: expected task 'gm_approval', found 'vp_approval'",)
    assert failed[0].path == ("dm_review", "vp_approval")  # what it met before it stopped
    assert failed[0].as_json() == {"name": MAJOR, "passed": False, "problems": list(failed[0].problems),
                                   "path": ["dm_review", "vp_approval"]}


# --- what a case checks ----------------------------------------------------------------------

START = {"customer": "C-B01", "amount": 260000, "quote_price": 520, "price": 520, "allowed_discount": 3,
         "discount": 0, "quote_payment_terms": "30% 定金", "payment_terms": "30% 定金",
         "quote_delivery_date": "2027-01-15", "delivery_date": "2027-01-15",
         "lines": [{"product": "芝麻灰花岗岩板", "spec": "600x600x20", "quantity": 500, "unit_price": 520}]}
APPROVE = {"decision": "approve"}


def case(**changes) -> dict:
    return {"name": "standard", "start_as": "rep.wang", "start": START,
            "steps": [{"task": "dm_review", "as": "dm.zhou", "data": APPROVE}], **changes}


def test_path_end_status_data_and_tasks_are_checked_each_with_a_sentence(company):
    files = company["contract_review"].files
    [good] = run_cases(files, "contract_review", [case(path=["dm_review", "go_approval"], end={
        "status": "running", "tasks": ["go_approval"], "data": {"major_contract": False, "deviations": []}})])
    assert good == CaseResult("standard", True, (), ("dm_review", "go_approval"))
    [bad] = run_cases(files, "contract_review", [case(path=["dm_review", "vp_approval"], end={
        "status": "completed", "tasks": [], "data": {"major_contract": 0, "deviations": ["price"], "nope": 1}})])
    assert not bad.passed
    assert bad.problems == (
        "path: task 2 expected 'vp_approval', met 'go_approval' (met dm_review → go_approval; "
        "expected dm_review → vp_approval)",
        "end: status is 'running', expected 'completed' (waiting at 'go_approval')",
        "end: waits at 'go_approval', expected none",
        "end: data.major_contract is false, expected 0",  # a boolean is not a number
        'end: data.deviations is [], expected ["price"]',
        "end: data.nope is missing, expected 1")
    [in_order] = run_cases(files, "contract_review", [case(path=["go_approval"], path_match="in_order")])
    assert in_order.passed
    [out_of_order] = run_cases(files, "contract_review", [case(path=["go_approval", "dm_review"],
                                                               path_match="in_order")])
    assert out_of_order.problems == ("path: expected 'dm_review' after go_approval in this order, but the tasks "
                                     "met were dm_review → go_approval",)


def test_refusals_expected_and_unexpected(company):
    files = company["contract_review"].files
    steps = [{"task": "dm_review", "as": "rep.feng", "data": APPROVE, "refused": True},
             {"task": "dm_review", "as": "rep.wang", "data": APPROVE, "refused": "may not complete"},
             {"task": "dm_review", "as": "dm.zhou", "data": {"decision": "reject"}, "refused": "comment"},
             {"task": "dm_review", "as": "dm.zhou", "data": APPROVE}]
    [passed] = run_cases(files, "contract_review", [case(steps=steps, path=["dm_review", "go_approval"])])
    assert passed.passed, passed.problems
    [refused] = run_cases(files, "contract_review", [case(steps=[{"task": "dm_review", "as": "rep.wang",
                                                                  "data": APPROVE}])])
    assert refused.problems[0].startswith("step 1 (dm_review as rep.wang): refused: rep.wang may not complete")
    [done] = run_cases(files, "contract_review", [case(steps=[{"task": "dm_review", "as": "dm.zhou",
                                                               "data": APPROVE, "refused": True}])])
    assert done.problems == ("step 1: expected a refusal, but dm.zhou completed dm_review",)
    [other] = run_cases(files, "contract_review", [case(steps=[
        {"task": "dm_review", "as": "dm.zhou", "data": {"decision": "reject"}, "refused": "held by"}])])
    assert other.problems[0].startswith("step 1 (dm_review as dm.zhou): refused, but not saying 'held by': ")
    [start] = run_cases(files, "contract_review", [case(start_as="dm.zhou")])
    assert start.problems[0].startswith("start as dm.zhou: refused: ") and start.path == ()


def test_a_failed_step_stops_the_case_and_names_what_is_open(company):
    files = company["contract_review"].files
    steps = [{"task": "dm_review", "as": "dm.zhou", "data": {"decision": "reject", "comment": "价格"}},
             {"task": "go_approval", "as": "gmo.tang", "data": APPROVE},
             {"task": "revise", "as": "rep.wang", "data": {}}]
    [result] = run_cases(files, "contract_review", [case(steps=steps, end={"status": "completed"})])
    assert result.problems == ("step 2: expected task 'go_approval', found 'revise'",)  # no end problem after it
    steps = [{"task": "dm_review", "as": "dm.zhou", "data": APPROVE},
             {"task": "go_approval", "as": "gmo.tang", "data": APPROVE},
             {"task": "file_contract", "as": "rep.wang", "data": {"signed_on": "2026-11-25"}},
             {"task": "file_contract", "as": "rep.wang", "data": {"signed_on": "2026-11-25"}}]
    [result] = run_cases(files, "contract_review", [case(steps=steps)])
    assert result.problems == ("step 4: expected task 'file_contract', found none (the instance is completed)",)


def test_wait_fires_the_timers_due_and_message_finds_the_instance_by_its_keys(company):
    files = company["order_to_settlement"].files
    [chased] = [r for r in run_cases(files, "order_to_settlement") if "chased" in r.name]
    assert chased.passed and chased.path[-1] == "chase_overdue"
    document = json.loads(files["forms/order_to_settlement.cases.json"])
    cases = [c for c in document["cases"] if "chased" in c["name"]]
    waits = [s for s in cases[0]["steps"] if "wait" in s]
    assert waits == [{"wait": "P2D"}, {"wait": "P1D"}]
    cases[0]["steps"].remove(waits[1])  # a day too early: not chased yet
    [early] = run_cases(files, "order_to_settlement", cases)
    assert "chase_overdue" not in early.path and not early.passed
    wrong = [dict(c, steps=[s if "message" not in s or "refused" in s else {**s, "correlation": {"order_no": "SO-X"}}
                            for s in c["steps"]]) for c in cases]
    [lost] = run_cases(files, "order_to_settlement", wrong)
    assert any("refused: no instance is waiting for message 'payment_received'" in p for p in lost.problems), lost.problems


def test_given_cases_replace_the_files_and_are_checked_naming_case_and_field(company):
    files = company["contract_review"].files
    with pytest.raises(InvalidInput) as refused:
        run_cases(files, "contract_review", [case(), {"name": "second", "start_as": "rep.wang",
                                                      "steps": [{"task": "dm_review", "data": {}}, {"wait": "5h"}]}])
    assert str(refused.value) == ("the model tests are not right: case 2 'second': steps[1]: as is missing; "
                                  "case 2 'second': steps[2].wait '5h' is not an ISO 8601 duration such as PT5H or P2D")
    assert run_cases(files, "contract_review", []) == []
    assert run_cases({k: v for k, v in files.items() if not k.endswith(".cases.json")}, "contract_review") == []
    with pytest.raises(NotFound):
        run_cases(files, "no_such_process", [case()])


# --- deployed with the version, refused at deploy when malformed ----------------------------------

def test_the_cases_are_part_of_the_version_and_its_content_hash(store, tmp_path):
    diagrams, forms = copy_of_the_company(tmp_path)
    first = {d.process_id: d for d in versions.deploy(store, [diagrams])}
    with store.read() as s:
        files = s.scalars(select(Definition.files).where(Definition.process_id == "contract_review")).one()
    assert json.loads(files["forms/contract_review.cases.json"])["cases"]
    cases = forms / "contract_review.cases.json"
    document = json.loads(cases.read_text(encoding="utf-8"))
    document["cases"] = document["cases"][:1]
    cases.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    again = {d.process_id: d for d in versions.deploy(store, [diagrams])}
    assert (again["contract_review"].status, again["contract_review"].version) == ("deployed", 2)
    assert again["return_request"].status == "unchanged" and first["contract_review"].version == 1


@pytest.mark.parametrize("document, problem", [
    ({"cases": [{"name": "one", "start_as": "rep.wang", "steps": [{"task": "dm_review", "data": {}}]}]},
     "case 1 'one': steps[1]: as is missing"),
    ({"cases": [{"name": "one", "start_as": "rep.wang", "steps": [{"task": "dm_reveiw", "as": "dm.zhou"}]}]},
     "case 1 'one': steps[1].task: the process has no user task 'dm_reveiw' (did you mean 'dm_review'?)"),
    ({"cases": [{"name": "one", "start_as": "rep.wang", "path": ["dm_review", "gm_aproval"]}]},
     "case 1 'one': path[2]: the process has no user task 'gm_aproval' (did you mean 'gm_approval'?)"),
    ({"cases": [{"name": "one", "start_as": "rep.wang", "steps": [{"message": "paid"}]}]},
     "case 1 'one': steps[1].message: the process receives no message 'paid'"),
    ({"cases": [{"name": "one", "start_as": "rep.wang", "end": {"status": "done"}}]},
     "case 1 'one': end.status must be one of running, completed, cancelled"),
    ({"cases": [{"name": "one", "start_as": "rep.wang", "steps": [{"sleep": "PT1H"}]}]},
     "case 1 'one': steps[1] is neither a task, a wait nor a message step (give task, wait or message)"),
    ({"cases": [{"name": "one", "start_as": "rep.wang"}, {"name": "one", "start_as": "rep.feng"}]},
     "case 2 'one': name: another case is named 'one'; names must differ"),
    ({"cases": [{"start_as": "rep.wang", "start": []}]}, "case 1: name is missing"),
    ({"tests": []}, "cases is missing"),
])
def test_a_malformed_cases_file_is_refused_at_deploy_naming_the_case_and_field(store, tmp_path, document, problem):
    diagrams, forms = copy_of_the_company(tmp_path)
    cases = forms / "contract_review.cases.json"
    cases.write_text(json.dumps(document, indent=2), encoding="utf-8")
    with pytest.raises(DefinitionError) as refused:
        versions.deploy(store, [diagrams])
    assert [p.message for p in refused.value.problems][0] == problem
    first = refused.value.problems[0]
    assert first.file == str(cases)
    lines = json.dumps(document, indent=2).splitlines()
    named = [n for n, text in enumerate(lines, start=1) if text.strip().startswith('"name": "one"')]
    if problem.startswith("case 2 'one'"):
        assert first.line == named[1]  # the second case of that name, not the first
    elif "'one'" in problem:
        assert first.line == named[0]
    else:
        assert first.line == 1
    with store.read() as s:
        assert s.scalar(select(func.count()).select_from(Definition)) == 0  # nothing deployed


def test_cases_that_are_not_json_are_refused_at_their_line(store, tmp_path):
    diagrams, forms = copy_of_the_company(tmp_path)
    (forms / "contract_review.cases.json").write_text('{"cases": [\n  {"name": "x",}\n]}', encoding="utf-8")
    with pytest.raises(DefinitionError) as refused:
        versions.deploy(store, [diagrams])
    [problem] = refused.value.problems
    assert problem.line == 2 and problem.message.startswith("the model tests are not JSON: ")


# --- deploy --require-tests ----------------------------------------------------------------------

def test_a_deploy_that_requires_the_tests_deploys_nothing_when_a_case_fails(store, tmp_path):
    diagrams, _ = copy_of_the_company(tmp_path)
    dmn = diagrams / "contract_approval_authority.dmn"
    dmn.write_bytes(raised_threshold({dmn.name: dmn.read_bytes()})[dmn.name])
    with pytest.raises(CasesFailed) as refused:
        versions.deploy(store, [diagrams], require_tests=True)
    assert str(refused.value) == f"nothing was deployed: model tests failed (contract_review: '{MAJOR}')"
    with store.read() as s:
        assert s.scalar(select(func.count()).select_from(Definition)) == 0
    deployed = versions.deploy(store, [diagrams])  # without the requirement it deploys
    assert len(deployed) == len(SHIPPED)
    shutil.copy(BPMN / dmn.name, dmn)
    assert {d.status for d in versions.deploy(store, [diagrams], require_tests=True)} == {"deployed", "unchanged"}


# --- run_deployed: who may, which version, and never the real database -----------------------------

def test_run_deployed_is_for_designers_and_the_operator_and_leaves_the_database_alone(store):
    versions.deploy(store, [BPMN])
    rt = Runtime(store, processes.SERVICES, lookups=processes.LOOKUPS)
    for user in ("design.yang", None):
        results = run_deployed(store, "contract_review", actor=user)
        assert len(results) >= 3 and all(r.passed for r in results)
    for user in ("dm.zhou", "gmo.tang", "rep.wang"):
        with pytest.raises(Forbidden, match=f"{user} may not run model tests"):
            run_deployed(store, "contract_review", actor=user)
    with pytest.raises(NotFound, match="there is no deployed process 'nope'"):
        run_deployed(store, "nope", actor="design.yang")
    with pytest.raises(NotFound, match="process 'contract_review' has no version 7"):
        run_deployed(store, "contract_review", 7, actor="design.yang")
    with store.read() as s:
        assert s.scalar(select(func.count()).select_from(Instance)) == 0
    assert rt.store is store
    # the runtime's cache of loaded definitions keeps nothing of the throwaway databases
    assert all("bpm-model-tests-" not in url for url, _ in runtime_module._definitions)


def test_run_deployed_runs_the_cases_of_the_version_asked_for(store, tmp_path):
    diagrams, _ = copy_of_the_company(tmp_path)
    versions.deploy(store, [diagrams])
    dmn = diagrams / "contract_approval_authority.dmn"
    dmn.write_bytes(raised_threshold({dmn.name: dmn.read_bytes()})[dmn.name])
    versions.deploy(store, [diagrams])
    assert [r.name for r in run_deployed(store, "contract_review") if not r.passed] == [MAJOR]
    assert all(r.passed for r in run_deployed(store, "contract_review", 1))


def test_the_throwaway_database_is_removed(company):
    before = set(Path(modeltests._folder()).glob("bpm-model-tests-*"))
    run_cases(company["branch_establishment"].files, "branch_establishment")
    assert set(Path(modeltests._folder()).glob("bpm-model-tests-*")) == before


# --- the command line ---------------------------------------------------------------------------

def test_bpm_test_model_prints_a_line_per_case_and_exits_1_when_one_fails(bpm, tmp_path):
    code, out, err = bpm("test-model", "contract_review")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert f"PASS  {MAJOR}" in lines and lines[-1].startswith("contract_review: 5 of 5 case(s) passed in ")
    code, out, _ = bpm("test-model", "contract_review", "--json")
    shown = json.loads(out)
    assert code == 0 and shown["passed"] is True and {r["name"] for r in shown["results"]} >= {MAJOR}

    diagrams, _ = copy_of_the_company(tmp_path)
    dmn = diagrams / "contract_approval_authority.dmn"
    dmn.write_bytes(raised_threshold({dmn.name: dmn.read_bytes()})[dmn.name])
    code, _, err = bpm("deploy", str(diagrams), "--require-tests")
    assert code == 1
    assert err.splitlines() == [
        f"bpm deploy: contract_review: FAIL {MAJOR}: step 2: expected task 'gm_approval', found 'vp_approval'",
        f"bpm deploy: nothing was deployed: model tests failed (contract_review: '{MAJOR}')"]
    code, out, _ = bpm("definitions", "--json")
    assert max(d["version"] for d in json.loads(out) if d["process_id"] == "contract_review") == 1

    assert bpm("deploy", str(diagrams))[0] == 0
    code, out, err = bpm("test-model", "contract_review")
    assert code == 1
    assert f"FAIL  {MAJOR}\n      step 2: expected task 'gm_approval', found 'vp_approval'\n" in out
    assert err == f"bpm test-model: 1 of 5 case(s) failed: '{MAJOR}'\n"
    code, out, _ = bpm("test-model", "contract_review", "--json")
    assert code == 1 and json.loads(out)["passed"] is False
    assert bpm("test-model", "contract_review", "--version", "1")[0] == 0


@pytest.mark.parametrize("args, message", [
    (("test-model", "nope"), "bpm test-model: there is no deployed process 'nope'\n"),
    (("test-model", "contract_review", "--version", "9"), "bpm test-model: process 'contract_review' has no version 9\n"),
    (("test-model", "contract_review", "--as", "dm.zhou"),
     "bpm test-model: dm.zhou may not run model tests: only designer may\n"),
])
def test_bpm_test_model_refusals_are_one_sentence(bpm, args, message):
    code, out, err = bpm(*args)
    assert (code, out, err) == (1, "", message)


def test_a_process_without_cases_says_so_and_passes(bpm):
    assert bpm("deploy", str(ROOT / "tests" / "data" / "runtime" / "approval.bpmn"))[0] == 0
    code, out, _ = bpm("test-model", "approval")
    assert code == 0 and out == "approval has no model tests (write them in forms/approval.cases.json)\n"


# --- the API ------------------------------------------------------------------------------------

@pytest.fixture
def client(store):
    from web import create_app
    versions.deploy(store, [BPMN])
    app = create_app(Runtime(store, processes.SERVICES, lookups=processes.LOOKUPS), {"TESTING": True})
    return app.test_client()


def token(client, username: str) -> dict:
    reply = client.post("/api/v1/tokens", json={"username": username, "password": "demo"})
    return {"Authorization": f"Bearer {reply.json['token']}"}


def test_the_api_runs_the_cases_for_designers_only(client):
    url = "/api/v1/processes/contract_review/model-tests"
    reply = client.post(url, headers=token(client, "design.yang"))
    assert reply.status_code == 200 and reply.json["passed"] is True
    assert {r["name"] for r in reply.json["results"]} >= {MAJOR}
    assert set(reply.json["results"][0]) == {"name", "passed", "problems", "path"}
    assert client.post(url, headers=token(client, "design.yang"), json={"version": 1}).status_code == 200
    refused = client.post(url, headers=token(client, "dm.zhou"))
    assert refused.status_code == 403 and refused.json["error"] == (
        "dm.zhou may not run model tests: only designer may")
    designer = token(client, "design.yang")
    assert client.post("/api/v1/processes/nope/model-tests", headers=designer).status_code == 404
    assert client.post(url, headers=designer, json={"version": 4}).status_code == 404
    bad = client.post(url, headers=designer, json={"version": "one"})
    assert bad.status_code == 400 and bad.json["fields"] == {"version": "not a whole number from 1"}
    assert client.post(url).status_code == 401
    paths = client.get("/api/openapi.json").json["paths"]
    assert "post" in paths["/v1/processes/{process_id}/model-tests"]


def test_given_cases_are_checked_against_the_process_and_left_as_they_were(company):
    files = company["contract_review"].files
    with pytest.raises(InvalidInput) as refused:
        run_cases(files, "contract_review", [case(path=["dm_review", "gm_aproval"])])
    assert refused.value.fields == {
        "case 1 'standard'": "path[2]: the process has no user task 'gm_aproval' (did you mean 'gm_approval'?)"}
    given = [case(steps=[{"task": "dm_review", "as": "dm.zhou", "data": {"decision": "approve"}}])]
    before = json.dumps(given, sort_keys=True)
    assert run_cases(files, "contract_review", given)[0].passed
    assert json.dumps(given, sort_keys=True) == before  # the engine's data is its own, not the caller's
