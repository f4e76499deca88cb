"""The process designer's pages through Flask's test client (web/designer.py, engine/drafts.py):
who may use them, drafts saved and numbered, uploads refused with one sentence, downloads, deploy
from a draft (refused with the lint's findings when it finds errors), the migration dry run and
the model tests on the page, and no 500 on garbage.
"""
from __future__ import annotations

import io
import json
import zipfile

import pytest
from lxml import etree
from sqlalchemy import func, select

from engine import drafts
from engine.runtime import Forbidden, InvalidInput
from engine import clock
from engine.store import Definition, Incident, ProcessDraft

from .conftest import contract
from .test_web import app, as_user, catalogs, rt, text  # noqa: F401 (fixtures)

NS = {"bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
      "spiffworkflow": "http://spiffworkflow.org/bpmn/schema/1.0/core"}


@pytest.fixture
def designer(app):
    return as_user(app, "design.yang")


def draft_count(store) -> int:
    with store.read() as session:
        return session.scalar(select(func.count()).select_from(ProcessDraft))


def versions_of(store, process_id: str) -> list[int]:
    with store.read() as session:
        return list(session.scalars(select(Definition.version).where(Definition.process_id == process_id)
                                    .order_by(Definition.version)))


def v1_files(store) -> dict[str, str]:
    return drafts.version_files(store, "contract_review", 1)[1]


def with_due(xml: str, element_id: str, due: str) -> str:
    """The diagram with `due` set on a user task, as the modeller writes it."""
    root = etree.fromstring(xml.encode("utf-8"))
    task = root.find(f".//*[@id='{element_id}']")
    props = task.find("bpmn:extensionElements/spiffworkflow:properties", NS)
    etree.SubElement(props, f"{{{NS['spiffworkflow']}}}property", name="due", value=due)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8").decode("utf-8")


def save(client, text_: str, base: dict, name: str = "contract_review.bpmn"):
    return client.post("/design/contract_review/save", json={"file": name, "text": text_, "base": base})


# --- who may ------------------------------------------------------------------------------------

@pytest.mark.parametrize("username", ["dm.zhou", "audit.han", "rep.wang"])
def test_only_designers_use_the_design_pages(app, rt, username):
    client = as_user(app, username)
    xml = v1_files(rt.store)["contract_review.bpmn"]
    for response in [client.get("/design"), client.get("/design/contract_review"),
                     client.get("/design/contract_review/edit?version=1"),
                     client.get("/design/contract_review/download?version=1"),
                     client.post("/design/upload", data={"process_id": "contract_review",
                                                         "files": (io.BytesIO(b"<x/>"), "a.bpmn")}),
                     save(client, xml, {"version": 1}),
                     client.post("/design/contract_review/deploy", data={"draft": "1"}),
                     client.post("/design/contract_review/migration", data={"from": "1", "to": "1"})]:
        assert response.status_code == 403, response.request.path
        assert "for the role designer" in text(response)
    assert draft_count(rt.store) == 0
    assert "/design" not in text(client.get("/"))  # no Design in the navigation either
    with pytest.raises(Forbidden):
        drafts.save_draft(rt.store, "contract_review", {"contract_review.bpmn": xml}, username)


def test_the_refusal_is_in_the_users_language(app, rt):
    client = as_user(app, "dm.zhou", lang="zh_CN")
    response = client.get("/design")
    assert response.status_code == 403
    assert "for the role designer" not in text(response)
    assert "流程设计" in text(response)


def test_a_designer_lands_on_the_design_page(app, rt):
    client = app.test_client()
    response = client.post("/login", data={"username": "design.yang", "password": "demo"})
    assert response.headers["Location"] == "/design"
    page = text(client.get("/design"))
    assert 'href="/design"' in page  # Design in the navigation
    assert "contract_review" in page
    approver = app.test_client()
    assert approver.post("/login", data={"username": "dm.zhou", "password": "demo"}).headers["Location"] == "/"


# --- the overview -------------------------------------------------------------------------------

def test_the_overview_counts_running_instances_per_version_and_incidents(app, rt, designer):
    rt.start("contract_review", "rep.wang", contract())
    rt.start("contract_review", "rep.wang", contract())
    row = text(designer.get("/design")).split('id="process-contract_review"')[1].split("</tr>")[0]
    assert "v1: 2" in row
    found = drafts.overview(rt.store, "contract_review")[0]
    assert [(v.version, v.running) for v in found.versions] == [(1, 2)]
    assert found.open_incidents == 0
    page = text(designer.get("/design/contract_review"))
    assert 'id="version-1"' in page and found.versions[0].short_hash in page


def test_open_incidents_are_counted_and_listed(app, rt, designer):
    view = rt.start("contract_review", "rep.wang", contract())
    with rt.store.write() as session:
        for status in ("open", "open", "resolved"):
            session.add(Incident(instance_id=view.id, process_id="contract_review", command="complete", input={},
                                 actor="dm.zhou", element_id="dm_review", message=f"a script failed ({status})",
                                 status=status, created_at=clock.now()))
    assert drafts.overview(rt.store, "contract_review")[0].open_incidents == 2
    assert drafts.overview(rt.store, "credit_review")[0].open_incidents == 0
    page = text(designer.get("/design/contract_review"))
    assert page.count("a script failed (open)") == 2 and "a script failed (resolved)" not in page
    assert view.id[:8] in page.split('id="incidents"')[1]


# --- drafts ---------------------------------------------------------------------------------------

def test_drafts_are_numbered_per_process_and_keep_the_other_files(app, rt, designer):
    files = v1_files(rt.store)
    changed = with_due(files["contract_review.bpmn"], "dm_review", "P3D")
    first = save(designer, changed, {"version": 1})
    assert first.status_code == 200 and first.get_json()["number"] == 1
    second = save(designer, files["contract_review.bpmn"], {"draft": 1})
    assert second.get_json()["number"] == 2
    saved = drafts.draft_files(rt.store, "contract_review", 1)
    assert saved["contract_review.bpmn"] == changed
    assert set(saved) == set(files)  # the DMN, the forms and the cases came along
    assert drafts.draft_files(rt.store, "contract_review", 2)["contract_review.bpmn"] == files["contract_review.bpmn"]
    assert [(d.number, d.based_on_version, d.author) for d in drafts.drafts(rt.store, "contract_review")] == [
        (1, 1, "design.yang"), (2, 1, "design.yang")]
    # another process numbers its own drafts from 1
    assert drafts.save_draft(rt.store, "credit_review", drafts.version_files(rt.store, "credit_review")[1],
                             "design.yang") == 1


@pytest.mark.parametrize("body", [None, [], {"file": "contract_review.bpmn"}, {"file": 1, "text": "x", "base": {}},
                                  {"file": "nope.bpmn", "text": "<a/>", "base": {"version": 1}},
                                  {"file": "contract_review.bpmn", "text": "not xml", "base": {"version": 1}},
                                  {"file": "contract_review.bpmn", "text": "<a/>", "base": {"version": "x"}},
                                  {"file": "contract_review.bpmn", "text": "<a/>", "base": {"draft": 7}}])
def test_a_bad_save_is_a_sentence_not_a_500(app, rt, designer, body):
    response = designer.post("/design/contract_review/save", json=body) if body is not None else \
        designer.post("/design/contract_review/save", data="{", content_type="application/json")
    assert 400 <= response.status_code < 500
    assert response.get_json()["error"]
    assert draft_count(rt.store) == 0


# --- upload and download --------------------------------------------------------------------------

def upload(client, *files, process_id="contract_review", **form):
    data = {"process_id": process_id, "files": [(io.BytesIO(content), name) for name, content in files], **form}
    return client.post("/design/upload", data=data, content_type="multipart/form-data", follow_redirects=True)


def test_uploaded_files_become_a_draft(app, rt, designer):
    files = v1_files(rt.store)
    changed = with_due(files["contract_review.bpmn"], "revise", "P5D")
    response = upload(designer, ("contract_review.bpmn", changed.encode()),
                      ("contract_review.start.json", files["forms/contract_review.start.json"].encode()),
                      version="1")
    assert "Saved as draft 1." in text(response)
    saved = drafts.draft_files(rt.store, "contract_review", 1)
    assert saved["contract_review.bpmn"] == changed and set(saved) == set(files)
    # a new process from its files alone
    response = upload(designer, ("p.bpmn", files["contract_review.bpmn"].encode()), process_id="new_process")
    assert "Saved as draft 1." in text(response)
    assert set(drafts.draft_files(rt.store, "new_process", 1)) == {"p.bpmn"}


@pytest.mark.parametrize("name, content, said", [
    ("notes.txt", b"hello", "is not a .bpmn, .dmn or .json file name"),
    ("a.bpmn", b"this is not XML", "is not well-formed XML"),
    ("a.bpmn", b"<html><body/></html>", "root element is html"),
    ("a.dmn", b"\xff\xfe<x/>", "is not UTF-8 text"),
    ("a.json", b"[1, 2]", "is not a JSON object"),
    ("a.json", b"{nope", "is not JSON"),
    ("a.bpmn", b"<definitions>" + b" " * drafts.MAX_FILE_BYTES + b"</definitions>", "is larger than"),
    ("../../etc/passwd.bpmn", b"<x/>", None),
])
def test_a_bad_upload_is_refused_with_one_sentence(app, rt, designer, name, content, said):
    for process_id in ("p1", "contract_review"):  # a new process (the design page) or a known one
        response = upload(designer, (name, content), process_id=process_id)
        assert response.status_code == 400
        sentence = text(response).split('id="upload-files-error">')[1].split("</p>")[0]
        # the folder part of a name is dropped; the file is then judged on its content
        assert (said or "root element is x") in sentence and sentence.endswith("Nothing was saved.")
    assert draft_count(rt.store) == 0


def test_an_upload_needs_a_process_and_a_file(app, rt, designer):
    response = upload(designer, ("a.bpmn", b"<x/>"), process_id="")
    assert response.status_code == 400
    assert "Name the process" in text(response).split('id="upload-process-error">')[1].split("</p>")[0]
    response = upload(designer, process_id="p1")
    assert "Choose one or more" in text(response).split('id="upload-files-error">')[1].split("</p>")[0]
    response = upload(designer, ("a.bpmn", b"<definitions/>"), process_id="a b")
    assert "is not a process id" in text(response).split('id="upload-process-error">')[1]
    assert draft_count(rt.store) == 0


def test_a_version_and_a_draft_download_as_zips(app, rt, designer):
    response = designer.get("/design/contract_review/download?version=1")
    assert response.status_code == 200 and response.mimetype == "application/zip"
    assert 'filename="contract_review-v1.zip"' in response.headers["Content-Disposition"]
    archive = zipfile.ZipFile(io.BytesIO(response.data))
    files = v1_files(rt.store)
    assert sorted(archive.namelist()) == sorted(files)
    assert archive.read("contract_review.bpmn").decode() == files["contract_review.bpmn"]
    save(designer, with_due(files["contract_review.bpmn"], "dm_review", "P3D"), {"version": 1})
    archive = zipfile.ZipFile(io.BytesIO(designer.get("/design/contract_review/download?draft=1").data))
    assert 'name="due" value="P3D"' in archive.read("contract_review.bpmn").decode()
    one = designer.get("/design/contract_review/file?version=1&file=contract_approval_authority.dmn")
    assert one.data.decode() == files["contract_approval_authority.dmn"]


@pytest.mark.parametrize("url, status", [
    ("/design/contract_review/download?version=9", 404), ("/design/contract_review/download?draft=1", 404),
    ("/design/contract_review/download?version=abc", 400), ("/design/contract_review/edit?version=-1", 400),
    ("/design/contract_review/edit?version=1&file=../../x", 400), ("/design/nope", 404),
    ("/design/nope/edit", 404), ("/design/contract_review/file?version=1&file=x", 400),
    ("/design/contract_review/edit?draft=99999999999999", 400),
])
def test_garbage_in_the_query_is_a_4xx(app, rt, designer, url, status):
    assert designer.get(url).status_code == status


# --- the modeller page and the form preview -------------------------------------------------------

def test_the_modeller_page_carries_the_file_and_what_the_panel_offers(app, rt, designer):
    page = designer.get("/design/contract_review/edit?version=1").get_data(as_text=True)
    data = json.loads(page.split('id="modeler-data">')[1].split("</script>")[0])
    assert data["file"] == "contract_review.bpmn" and data["base"] == {"version": 1}
    assert data["xml"] == v1_files(rt.store)["contract_review.bpmn"]
    assert "dept_manager" in data["roles"] and "contract_approval_authority" in data["decisions"]
    assert "contract_review.dm_review.json" in data["forms"]
    assert "bpmn-modeler.production.min.js" in page and "js/modeler.js" in page
    dmn = designer.get("/design/contract_review/edit?version=1&file=contract_approval_authority.dmn")
    assert "dmn-modeler.production.min.js" in dmn.get_data(as_text=True)


def test_a_form_is_previewed_as_the_task_page_draws_it(app, rt, designer):
    page = text(designer.get("/design/contract_review/edit?version=1&file=forms/contract_review.dm_review.json"))
    preview = page.split('id="form-preview"')[1]
    assert 'class="schema-form"' in preview and 'name="decision"' in preview
    # the text typed is previewed before it is saved; a broken one is said, not a 500
    response = designer.post("/design/contract_review/edit?version=1&file=forms/contract_review.dm_review.json",
                             data={"text": '{"type": "object", "properties": {"memo": {"type": "string", '
                                           '"title": "Memo"}}}'})
    assert 'name="memo"' in text(response).split('id="form-preview"')[1]
    response = designer.post("/design/contract_review/edit?version=1&file=forms/contract_review.dm_review.json",
                             data={"text": "{broken"})
    assert response.status_code == 200 and "The form is not JSON" in text(response)


def test_a_form_saved_from_the_editor_is_a_draft(app, rt, designer):
    name = "forms/contract_review.dm_review.json"
    response = designer.post("/design/contract_review/save-form", data={"version": "1", "file": name, "text": "[1]"},
                             follow_redirects=True)
    assert "is not a JSON object" in text(response) and draft_count(rt.store) == 0
    body = json.dumps({"type": "object", "properties": {}})
    designer.post("/design/contract_review/save-form", data={"version": "1", "file": name, "text": body})
    assert drafts.draft_files(rt.store, "contract_review", 1)[name] == body


# --- lint and deploy ------------------------------------------------------------------------------

def broken(xml: str) -> str:
    return xml.replace("major_contract == True</bpmn", "major_contract = = True</bpmn")


def test_the_lint_names_the_element_of_a_broken_condition(app, rt, designer):
    xml = v1_files(rt.store)["contract_review.bpmn"]
    response = designer.post("/design/contract_review/lint", json={"file": "contract_review.bpmn",
                                                                   "text": broken(xml), "base": {"version": 1}})
    findings = response.get_json()["findings"]
    errors = [f for f in findings if f["severity"] == "error"]
    assert [f["element_id"] for f in errors] == ["flow_is_major_report_major"]
    assert errors[0]["file"] == "contract_review.bpmn" and errors[0]["line"]
    assert draft_count(rt.store) == 0  # linting saves nothing


def test_a_draft_deploys_as_the_next_version(app, rt, designer):
    xml = v1_files(rt.store)["contract_review.bpmn"]
    save(designer, with_due(xml, "dm_review", "P3D"), {"version": 1})
    response = designer.post("/design/contract_review/deploy", data={"draft": "1"}, follow_redirects=True)
    assert "contract_review version 2 deployed." in text(response)
    assert versions_of(rt.store, "contract_review") == [1, 2]
    row = text(designer.get("/design")).split('id="process-contract_review"')[1].split("</tr>")[0]
    assert "v2 · " in row and "v1 · " in row and row.count("design.yang") == 2
    assert 'name="due" value="P3D"' in drafts.version_files(rt.store, "contract_review", 2)[1]["contract_review.bpmn"]
    # deployed again: unchanged
    response = designer.post("/design/contract_review/deploy", data={"draft": "1"}, follow_redirects=True)
    assert "is unchanged" in text(response) and versions_of(rt.store, "contract_review") == [1, 2]


def test_a_draft_the_lint_refuses_is_not_deployed(app, rt, designer):
    save(designer, broken(v1_files(rt.store)["contract_review.bpmn"]), {"version": 1})
    response = designer.post("/design/contract_review/deploy", data={"draft": "1"})
    assert response.status_code == 422
    page = text(response)
    assert "Draft 1 was not deployed" in page and "flow_is_major_report_major" in page
    assert versions_of(rt.store, "contract_review") == [1]


def test_deploy_needs_a_draft_that_exists(app, rt, designer):
    assert designer.post("/design/contract_review/deploy", data={}).status_code == 400
    assert designer.post("/design/contract_review/deploy", data={"draft": "3"}).status_code == 404
    assert designer.post("/design/contract_review/deploy", data={"draft": "x"}).status_code == 400


# --- migration and model tests on the page ----------------------------------------------------------

def test_the_migration_dry_run_and_the_move_from_the_page(app, rt, designer):
    view = rt.start("contract_review", "rep.wang", contract())
    save(designer, with_due(v1_files(rt.store)["contract_review.bpmn"], "dm_review", "P3D"), {"version": 1})
    designer.post("/design/contract_review/deploy", data={"draft": "1"})
    page = text(designer.post("/design/contract_review/migration", data={"from": "1", "to": "2"}))
    assert view.id[:8] in page and 'class="can-move"' in page and "Migrate those that can" in page
    assert [v.running for v in drafts.overview(rt.store, "contract_review")[0].versions] == [1, 0]  # a dry run
    page = text(designer.post("/design/contract_review/migration", data={"from": "1", "to": "2", "apply": "1"}))
    assert "1 instances moved from version 1 to 2." in page
    assert [v.running for v in drafts.overview(rt.store, "contract_review")[0].versions] == [0, 1]
    assert designer.post("/design/contract_review/migration", data={"from": "x", "to": "2"}).status_code == 400


def test_the_model_tests_run_from_the_page(app, rt, designer):
    page = text(designer.post("/design/contract_review/tests", data={"version": "1"}))
    assert 'class="case-passed"' in page and 'class="case-failed"' not in page
    save(designer, v1_files(rt.store)["contract_review.bpmn"], {"version": 1})
    page = text(designer.post("/design/contract_review/tests", data={"draft": "1"}))
    assert "Model tests of draft 1" in page and 'class="case-passed"' in page


def test_model_tests_of_files_that_do_not_deploy_are_said(app, rt, designer):
    save(designer, broken(v1_files(rt.store)["contract_review.bpmn"]), {"version": 1})
    response = designer.post("/design/contract_review/tests", data={"draft": "1"})
    assert response.status_code == 422 and "The model tests could not run" in text(response)
    assert designer.post("/design/contract_review/tests", data={"version": "7"}).status_code == 404


# --- the engine's own checks ------------------------------------------------------------------------

def test_save_draft_checks_its_files(rt):
    with pytest.raises(InvalidInput, match="needs a .bpmn file"):
        drafts.save_draft(rt.store, "p", {"a.dmn": "<definitions/>"}, "design.yang")
    with pytest.raises(InvalidInput, match="not a process id"):
        drafts.save_draft(rt.store, "a b", {"a.bpmn": "<definitions/>"}, "design.yang")
    with pytest.raises(InvalidInput, match="at least one file"):
        drafts.save_draft(rt.store, "p", {}, "design.yang")
    assert draft_count(rt.store) == 0


FOREIGN = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="t">
  <bpmn:process id="foreign" isExecutable="true">
    <bpmn:userTask id="check" name="Check">
      <bpmn:extensionElements>
        <camunda:taskListener event="create" class="org.example.Listener" />
      </bpmn:extensionElements>
    </bpmn:userTask>
  </bpmn:process>
</bpmn:definitions>
"""


def test_a_save_from_the_modeller_keeps_the_foreign_extensions_it_dropped(app, rt, designer):
    upload(designer, ("foreign.bpmn", FOREIGN.encode()), process_id="foreign")
    dropped = FOREIGN.replace('        <camunda:taskListener event="create" class="org.example.Listener" />\n', "")
    answer = designer.post("/design/foreign/save", json={"file": "foreign.bpmn", "text": dropped.replace(
        'name="Check"', 'name="Check it"'), "base": {"draft": 1}}).get_json()
    saved = drafts.draft_files(rt.store, "foreign", answer["number"])["foreign.bpmn"]
    assert '<camunda:taskListener event="create" class="org.example.Listener" />' in saved
    assert 'name="Check it"' in saved


# --- the same through the JSON API ------------------------------------------------------------------

def bearer(app, username: str) -> dict:
    reply = app.test_client().post("/api/v1/tokens", json={"username": username, "password": "demo"})
    assert reply.status_code == 201, reply.json
    return {"Authorization": f"Bearer {reply.json['token']}"}


def test_drafts_through_the_api(app, rt):
    api, designer_token = app.test_client(), bearer(app, "design.yang")
    files = v1_files(rt.store)
    changed = dict(files, **{"contract_review.bpmn": with_due(files["contract_review.bpmn"], "dm_review", "P3D")})
    reply = api.post("/api/v1/processes/contract_review/drafts", headers=designer_token,
                     json={"files": changed, "based_on_version": 1})
    assert reply.status_code == 201 and reply.json == {"process_id": "contract_review", "number": 1}
    broken_files = dict(files, **{"contract_review.bpmn": broken(files["contract_review.bpmn"])})
    assert api.post("/api/v1/processes/contract_review/drafts", headers=designer_token,
                    json={"files": broken_files}).json["number"] == 2
    listed = api.get("/api/v1/processes/contract_review/drafts", headers=designer_token).json
    assert [(d["number"], d["based_on_version"]) for d in listed] == [(1, 1), (2, None)]
    assert api.get("/api/v1/processes/contract_review/drafts/1", headers=designer_token).json["files"] == changed
    refused = api.post("/api/v1/processes/contract_review/drafts/2/deploy", headers=designer_token)
    assert refused.status_code == 422
    assert [f["element_id"] for f in refused.json["findings"] if f["severity"] == "error"] == [
        "flow_is_major_report_major"]
    assert versions_of(rt.store, "contract_review") == [1]
    deployed = api.post("/api/v1/processes/contract_review/drafts/1/deploy", headers=designer_token)
    assert deployed.status_code == 200 and deployed.json[0]["version"] == 2
    # refusals: bad bodies, unknown drafts, other roles
    for body in [{"files": "x"}, {"files": {"a.bpmn": 1}}, {"files": {"a.bpmn": "<definitions/>"}, "based_on_version": "1"},
                 {"files": {"a.txt": "x"}}, {"files": {"a.bpmn": "not xml"}}]:
        reply = api.post("/api/v1/processes/contract_review/drafts", headers=designer_token, json=body)
        assert reply.status_code == 400 and reply.json["error"], body
    assert api.get("/api/v1/processes/contract_review/drafts/9", headers=designer_token).status_code == 404
    assert api.get("/api/v1/processes/contract_review/drafts/x", headers=designer_token).status_code == 400
    approver = bearer(app, "dm.zhou")
    assert api.get("/api/v1/processes/contract_review/drafts", headers=approver).status_code == 403
    assert api.get("/api/v1/processes/contract_review/drafts/1", headers=approver).status_code == 403
    assert api.post("/api/v1/processes/contract_review/drafts", headers=approver,
                    json={"files": changed}).status_code == 403
    assert api.post("/api/v1/processes/contract_review/drafts/1/deploy", headers=approver).status_code == 403
    assert versions_of(rt.store, "contract_review") == [1, 2] and draft_count(rt.store) == 2
