"""The process designer's modeller in a real browser (Chromium through Playwright, against the live
server of tests/browser_server.py): design.yang signs in and lands on the design page, opens
contract_review in the modeller, changes a user task's due time in the properties panel, saves a
draft, and the draft's XML carries the new due; a form file is previewed as the approver sees it;
every MIWG conformance diagram opens in the modeller without an import error.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from engine import drafts

from .test_browser import chromium, live, open_page, sign_in  # noqa: F401 (fixtures)

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


def test_the_decision_table_opens_in_dmn_js(open_page, live):
    page = open_page()
    sign_in(page, "design.yang")
    page.goto("/design/contract_review/edit?version=1&file=contract_approval_authority.dmn")
    opened(page)
    page.wait_for_selector(".tjs-table")  # dmn-js's decision table, editable
    assert page.locator(".tjs-table tbody tr").count() >= 2


def test_a_form_is_previewed_as_the_approver_sees_it(open_page, live):
    page = open_page()
    sign_in(page, "design.yang")
    page.goto("/design/contract_review/edit?version=1&file=forms/contract_review.dm_review.json")
    preview = page.locator("#form-preview form.schema-form")
    assert preview.count() == 1
    assert preview.locator(".field").count() >= 1


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
