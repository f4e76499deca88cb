"""The process designer's modeller in a real browser (Chromium through Playwright, against the live
server of tests/browser_server.py): design.yang signs in and lands on the design page, opens
contract_review in the modeller, changes a user task's due time in the properties panel, saves a
draft, and the draft's XML carries the new due; a form file is previewed as the approver sees it;
every MIWG conformance diagram opens in the modeller without an import error; and the whole of
issue 11's scenario: the threshold changed in the DMN, a due time changed, a broken condition seen
on the diagram and fixed, the model tests run, version 2 deployed, the migration dry run and the
move, and an approver's running instance going on on version 2.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from sqlalchemy import select

from engine import definitions, drafts
from engine.store import Definition, HumanTask, Instance

from .conftest import contract

from .test_browser import chromium, live, open_page, shot, sign_in  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[1]
NS = {"bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
      "spiffworkflow": "http://spiffworkflow.org/bpmn/schema/1.0/core"}
MIWG = next((p for p in (ROOT / "tests" / "data" / "miwg", Path("/work/shared/conformance/miwg"))
             if p.is_dir() and list(p.glob("*.bpmn"))), None)


def properties(xml: str, element_id: str) -> dict[str, str]:
    root = etree.fromstring(xml.encode("utf-8"))
    element = root.find(f".//*[@id='{element_id}']")
    return {p.get("name"): p.get("value") for p in element.iterfind(
        "bpmn:extensionElements/spiffworkflow:properties/spiffworkflow:property", NS)}


def opened(page) -> None:
    """Waits until the modeller has imported its file, and fails on an import error."""
    page.wait_for_selector("#modeler[data-imported], #modeler[data-import-error]")
    assert page.get_attribute("#modeler", "data-import-error") is None, page.get_attribute(
        "#modeler", "data-import-error")


def test_designer_changes_a_due_time_and_saves_a_draft(open_page, live):
    page = open_page()
    sign_in(page, "design.yang")
    page.wait_for_url("**/design")  # a designer lands on the design page, not an empty inbox
    assert page.locator("#process-contract_review").count() == 1
    page.goto("/design/contract_review/edit?version=1")
    opened(page)
    assert page.locator('g[data-element-id="dm_review"]').count() == 1  # the diagram is drawn
    page.locator('g.djs-shape[data-element-id="dm_review"]').click()
    assert page.input_value("#prop-form") == "contract_review.dm_review.json"
    assert page.input_value("#prop-due") == ""
    page.fill("#prop-due", "P3D")
    page.press("#prop-due", "Tab")  # `change` writes it into the diagram
    page.click("#save-draft")
    page.wait_for_selector("#modeler[data-saved-draft]")
    number = int(page.get_attribute("#modeler", "data-saved-draft"))
    files = drafts.draft_files(live.store, "contract_review", number)
    assert properties(files["contract_review.bpmn"], "dm_review") == {
        "form": "contract_review.dm_review.json", "due": "P3D"}
    # the other files of version 1 are in the draft, and the other properties are kept
    assert "contract_approval_authority.dmn" in files and "forms/contract_review.start.json" in files
    assert properties(files["contract_review.bpmn"], "lane_dm") == {"role": "dept_manager"}
    assert "<spiffworkflow:calledDecisionId>contract_approval_authority</spiffworkflow:calledDecisionId>" \
        in files["contract_review.bpmn"]
    # a second save is the next draft, on top of the first (dm_review is still selected: a
    # click on a selected element would unselect it)
    assert page.input_value("#prop-id") == "dm_review"
    assert page.input_value("#prop-due") == "P3D"
    page.fill("#prop-due", "")
    page.press("#prop-due", "Tab")
    page.click("#save-draft")
    page.wait_for_selector(f"#modeler[data-saved-draft='{number + 1}']")
    files = drafts.draft_files(live.store, "contract_review", number + 1)
    assert properties(files["contract_review.bpmn"], "dm_review") == {"form": "contract_review.dm_review.json"}


def choose(page, element_id: str | None) -> None:
    """Selects an element of the diagram as a click would (None: nothing, the process itself)."""
    page.evaluate("""id => { const m = window.bpmModeler;
        m.get('selection').select(id ? m.get('elementRegistry').get(id) : []); }""", element_id)


def change(page, field: str, value: str) -> None:
    page.fill(f"#prop-{field}", value)
    page.press(f"#prop-{field}", "Tab")


def test_the_panel_writes_each_property_where_the_engine_reads_it(open_page, live):
    page = open_page()
    sign_in(page, "design.yang")
    page.goto("/design/order_to_settlement/edit?version=1")
    opened(page)
    choose(page, "lane_fin")
    assert page.input_value("#prop-role") == "finance"
    change(page, "role", "sales_plan")
    choose(page, "approve_order_dm")
    assert not page.is_checked("#prop-four_eyes")
    page.check("#prop-four_eyes")
    change(page, "remind_before", "PT4H")
    choose(page, "order_received")
    change(page, "start_roles", "sales_rep, sales_secretary")
    choose(page, "init_order")
    script = page.input_value("#prop-script")
    change(page, "script", script + "\nchecked = True")
    choose(page, "payment_terms")
    assert page.input_value("#prop-decision") == "credit_payment_terms"
    change(page, "decision", "credit_terms_2")
    choose(page, "await_payment_term")
    assert page.input_value("#prop-message") == "payment_received"
    assert page.input_value("#prop-message_variable") == "payment"
    change(page, "correlation", "order_no, customer")
    change(page, "sender_roles", "finance")
    choose(page, None)
    assert page.is_checked("#prop-executable")
    page.uncheck("#prop-executable")
    page.click("#save-draft")
    page.wait_for_selector("#modeler[data-saved-draft]")
    number = int(page.get_attribute("#modeler", "data-saved-draft"))
    xml = drafts.draft_files(live.store, "order_to_settlement", number)["order_to_settlement.bpmn"]
    assert properties(xml, "lane_fin") == {"role": "sales_plan"}
    assert properties(xml, "approve_order_dm")["four_eyes"] == "true"
    assert properties(xml, "approve_order_dm")["remind_before"] == "PT4H"
    assert properties(xml, "order_received")["start_roles"] == "sales_rep, sales_secretary"
    root = etree.fromstring(xml.encode("utf-8"))
    assert root.find(".//*[@id='init_order']/bpmn:script", NS).text == script + "\nchecked = True"
    assert root.findtext(".//*[@id='payment_terms']/bpmn:extensionElements/spiffworkflow:calledDecisionId",
                         namespaces=NS) == "credit_terms_2"
    assert root.find("bpmn:process", NS).get("isExecutable") == "false"
    rules = definitions.message_rules({"order_to_settlement.bpmn": xml})  # as the engine reads them
    assert rules["payment_received"].correlation == ("order_no", "customer")
    assert rules["payment_received"].sender_roles == "finance"
    # what was not touched is as it was: the other processes' properties, the service tasks' operators
    before = drafts.version_files(live.store, "order_to_settlement", 1)[1]["order_to_settlement.bpmn"]
    for tag in ("spiffworkflow:serviceTaskOperator", "spiffworkflow:parameter ", "spiffworkflow:postScript",
                "spiffworkflow:messageVariable", "bpmn:conditionExpression"):
        assert xml.count("<" + tag) == before.count("<" + tag), tag


def test_the_decision_table_opens_in_dmn_js(open_page, live):
    page = open_page()
    sign_in(page, "design.yang")
    page.goto("/design/contract_review/edit?version=1&file=contract_approval_authority.dmn")
    opened(page)
    page.wait_for_selector(".tjs-table")  # dmn-js's decision table, editable
    assert page.locator(".tjs-table tbody tr").count() >= 2
    page.click("#lint")  # the table's findings are listed (the whole version's files are linted)
    page.wait_for_selector("#lint-findings:not([hidden])")
    assert page.locator("#modeler-status").inner_text()


def test_a_form_is_previewed_as_the_approver_sees_it(open_page, live):
    page = open_page()
    sign_in(page, "design.yang")
    page.goto("/design/contract_review/edit?version=1&file=forms/contract_review.dm_review.json")
    preview = page.locator("#form-preview form.schema-form")
    assert preview.count() == 1
    assert preview.locator(".field").count() >= 1


def test_the_designers_whole_change_of_contract_review(open_page, live):
    rt = live.runtime
    running = rt.start("contract_review", "rep.wang", contract())  # waits for the department manager
    page = open_page()
    sign_in(page, "design.yang")
    page.wait_for_url("**/design")
    page.click("#process-contract_review a")
    page.click("#version-1 a:has-text('建模器')")
    opened(page)

    # 1. the major-contract threshold, in the decision table (dmn-js)
    page.click(".file-tabs a:has-text('contract_approval_authority.dmn')")
    opened(page)
    for rule in (1, 2):
        page.locator(f'[data-element-id="contract_approval_authority_rule_{rule}_in_1"] [contenteditable]').click()
        page.keyboard.press("Control+A")
        page.keyboard.type(">= 800000")
    page.locator("h1").click()
    page.click("#save-draft")
    page.wait_for_selector("#modeler[data-saved-draft]")
    first = int(page.get_attribute("#modeler", "data-saved-draft"))

    # 2. a task's due time, and a broken condition the lint marks on the diagram
    page.click(".file-tabs a:has-text('contract_review.bpmn')")
    assert f"draft={first}" in page.url
    opened(page)
    page.locator('g.djs-shape[data-element-id="dm_review"]').click()
    page.fill("#prop-due", "P3D")
    page.press("#prop-due", "Tab")
    choose(page, "flow_is_major_report_major")
    assert page.input_value("#prop-condition") == "major_contract == True"
    page.fill("#prop-condition", "major_contract = = True")
    page.press("#prop-condition", "Tab")
    page.click("#lint")
    flow = page.locator('g[data-element-id="flow_is_major_report_major"]').first
    page.wait_for_selector('g.lint-error[data-element-id="flow_is_major_report_major"]', state="attached")
    finding = page.locator('#findings-list a[data-element="flow_is_major_report_major"]')
    assert "contract_review.bpmn:" in finding.inner_text()
    shot(page, "modeller")
    page.locator("h1").click()
    finding.click()  # selects the flow: its condition is in the panel
    assert page.input_value("#prop-id") == "flow_is_major_report_major"
    page.fill("#prop-condition", "major_contract == True")
    page.press("#prop-condition", "Tab")
    page.click("#lint")
    page.wait_for_selector('g.lint-error[data-element-id="flow_is_major_report_major"]', state="detached")
    assert "lint-error" not in (flow.get_attribute("class") or "")
    assert page.locator("#findings-list .finding-error").count() == 0
    page.click("#save-draft")
    page.wait_for_selector(f"#modeler[data-saved-draft='{first + 1}']")
    second = first + 1
    saved = drafts.draft_files(live.store, "contract_review", second)
    assert properties(saved["contract_review.bpmn"], "dm_review")["due"] == "P3D"
    assert "&gt;= 800000" in saved["contract_approval_authority.dmn"]

    # 3. the model tests of the draft, then deploy it as version 2
    page.goto("/design/contract_review")
    page.locator(f"#draft-{second} button", has_text="模型测试").click()
    assert page.locator("table.cases tr.case-passed").count() >= 1
    assert page.locator("table.cases tr.case-failed").count() == 0
    page.locator(f"#draft-{second} button", has_text="部署").click()
    assert "版本 2 已部署" in page.locator("ul.flashes").inner_text()
    assert page.locator("#version-2").count() == 1

    # 4. the migration dry run, then the move of those that can
    page.click("#migration button:has-text('试运行')")
    row = page.locator("table.moves tr.can-move", has_text=running.id[:8])
    assert row.count() == 1
    page.click("#migration button:has-text('迁移可迁移的实例')")
    assert "已从版本 1 迁移到版本 2" in page.locator("ul.flashes").inner_text()
    with live.store.read() as session:
        v2 = session.scalar(select(Definition.id).where(Definition.process_id == "contract_review",
                                                        Definition.version == 2))
        assert session.get(Instance, running.id).definition_id == v2
        task = session.scalars(select(HumanTask).where(HumanTask.instance_id == running.id)).one()

    # 5. the department manager goes on with the instance, now on version 2
    dm = open_page()
    sign_in(dm, "dm.zhou")
    dm.goto(f"/tasks/{task.id}")
    dm.locator("button", has_text="认领").first.click()
    dm.goto(f"/tasks/{task.id}")
    dm.check("#field-decision input[value=approve]")
    dm.locator("button[name=action][value=complete]").click()
    dm.wait_for_url("**/")
    with live.store.read() as session:
        after = session.get(Instance, running.id)
        steps = [t.element_id for t in session.scalars(select(HumanTask).where(HumanTask.instance_id == running.id))]
    assert after.definition_id == v2 and after.status == "running"
    assert steps == ["go_approval"], steps


@pytest.mark.skipif(MIWG is None, reason="the MIWG conformance files are not here")
def test_every_miwg_diagram_opens_in_the_modeller(open_page, live):
    files = sorted(MIWG.glob("*.bpmn"))
    assert len(files) >= 21
    for index, path in enumerate(files):
        drafts.save_draft(live.store, f"miwg_{index}", {path.name: path.read_bytes()}, "design.yang")
    page = open_page()
    sign_in(page, "design.yang")
    warnings = {}
    for index, path in enumerate(files):
        page.goto(f"/design/miwg_{index}/edit?draft=1")
        page.wait_for_selector("#modeler[data-imported], #modeler[data-import-error]")
        assert page.get_attribute("#modeler", "data-import-error") is None, (path.name, page.get_attribute(
            "#modeler", "data-import-error"))
        count = int(page.get_attribute("#modeler", "data-import-warnings"))
        texts = [t for t in (page.get_attribute("#modeler", "data-import-warning-text") or "").split("\n") if t]
        assert len(texts) == count
        warnings[path.name] = texts
    # What bpmn-js warns of is in the files themselves: a declared Latin-1 encoding (the files are
    # ASCII), an edge of C.7.0 drawn for no element, C.8.1's reference to an undeclared prefix.
    expected = {"C.7.0.bpmn": "no bpmnElement referenced", "C.8.1.bpmn": "unresolved reference <triso:"}
    for name, texts in warnings.items():
        for text in texts:
            assert text.startswith("unsupported document encoding <ISO-8859-1>") or \
                text.startswith(expected.get(name, "\0")), (name, text)
    assert sum(len(t) for t in warnings.values()) <= 12, warnings
