"""Deploy correctness (issue 9, item 9): DMN cells checked at deploy, with their line, rule and
column; a reverted file made current again, as a new version with the older version's content."""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from engine import versions
from engine.definitions import DefinitionError, load_definitions
from engine.runtime import Runtime

from .test_cli import bpm  # noqa: F401  (the `bpm` fixture: the command line on a fresh database)
from .test_definitions import ROLES, chain, line_of, only, problems_of, write

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)


# --- a redeployed older version becomes current again ------------------------------------------

def _variant(tmp_path: Path, variant: str) -> Path:
    """Process `reverted` (lane dept_manager) whose script says which file ran; nothing else differs."""
    text = chain(f'<bpmn:scriptTask id="mark"><bpmn:script>variant = "{variant}"</bpmn:script></bpmn:scriptTask>',
                 '<bpmn:userTask id="look" />', pid="reverted")
    return write(tmp_path, "reverted.bpmn", text)


def _started(store, version: int | None = None) -> tuple[int, str]:
    view = Runtime(store).start("reverted", "dm.zhou", {}, at=T0, version=version)
    return view.version, view.data["variant"]


def test_redeploying_a_reverted_file_makes_its_content_current_again(store, tmp_path):
    first = versions.deploy(store, [_variant(tmp_path, "one")], at=T0)
    assert [d.as_json() for d in first] == [{"process_id": "reverted", "version": 1, "status": "deployed",
                                              "notices": ["user task look has no form: it takes any JSON "
                                              "object as its data (except the engine's own fields, such as "
                                              "initiator)"]}]
    assert _started(store) == (1, "one")
    (second,) = versions.deploy(store, [_variant(tmp_path, "two")], at=T0)
    assert (second.version, second.status, second.same_as) == (2, "deployed", None)
    assert _started(store) == (2, "two")
    # the file is reverted to version 1's content: deployed as version 3, which new instances run
    (third,) = versions.deploy(store, [_variant(tmp_path, "one")], at=T0)
    assert (third.version, third.status, third.same_as) == (3, "deployed", 1)
    assert third.sentence() == "reverted 3 deployed (same content as version 1)"
    assert third.as_json() == {"process_id": "reverted", "version": 3, "status": "deployed", "same_as": 1,
                               "notices": third.as_json()["notices"]}
    assert _started(store) == (3, "one")
    assert _started(store, version=2) == (2, "two")  # older versions stay as they were
    # the same file once more: now it is the current version's content, so nothing is deployed
    (again,) = versions.deploy(store, [_variant(tmp_path, "one")], at=T0)
    assert (again.version, again.status, again.same_as) == (3, "unchanged", None)
    assert [v["version"] for v in versions.listing(store) if v["process_id"] == "reverted"] == [1, 2, 3]
    assert _started(store) == (3, "one")


def test_bpm_deploy_says_which_older_version_a_reverted_file_repeats(bpm, tmp_path):  # noqa: F811
    one = tmp_path / "one"
    two = tmp_path / "two"
    one.mkdir(), two.mkdir()
    v1, v2 = str(_variant(one, "one")), str(_variant(two, "two"))
    assert bpm("deploy", v1)[1].splitlines() == ["reverted 1 deployed"]
    assert bpm("deploy", v2)[1].splitlines() == ["reverted 2 deployed"]
    code, out, err = bpm("deploy", v1)
    assert code == 0 and out.splitlines() == ["reverted 3 deployed (same content as version 1)"]
    code, out, _ = bpm("deploy", v1, "--json")
    assert code == 0 and [(d["version"], d["status"], d.get("same_as")) for d in json.loads(out)] == [
        (3, "unchanged", None)]
    code, out, _ = bpm("start", "reverted", "--as", "dm.zhou", "--json")
    assert code == 0 and json.loads(out)["version"] == 3
    code, out, _ = bpm("instance", json.loads(out)["id"], "--json")
    assert code == 0 and json.loads(out)["data"]["variant"] == "one"


# --- DMN cells checked at deploy ---------------------------------------------------------------

DEPLOY_DATA = Path(__file__).parent / "data" / "deploy"
TABLE = (DEPLOY_DATA / "typed_cells.dmn").read_text(encoding="utf-8")


def _table_with(tmp_path: Path, **cells: str) -> tuple[Path, Path, str]:
    """typed_cells.dmn with the text of the named entries replaced, beside its process."""
    text = TABLE
    for element_id, value in cells.items():
        text, found = re.subn(rf'(id="{element_id}"><text>)(.*?)(</text>)',
                              lambda m: m.group(1) + escape(value) + m.group(3), text)
        assert found == 1, element_id
    dmn = write(tmp_path, "typed_cells.dmn", text)
    bpmn = write(tmp_path, "typed_cells.bpmn", (DEPLOY_DATA / "typed_cells.bpmn").read_bytes())
    return bpmn, dmn, text


@pytest.mark.parametrize("data, decided", [
    ({"amount": 2000000, "urgent": False, "region": "north"}, (3, True, "general_manager")),
    ({"amount": 5000, "urgent": True, "region": "south"}, (2, False, "vp_sales")),
    ({"amount": 5000, "urgent": True, "region": "north"}, (1, False, "dept_manager")),
    ({"amount": 5000, "urgent": False, "region": "west"}, (1, False, "dept_manager")),
])
def test_a_table_whose_cells_fit_their_columns_deploys_and_decides(store, data, decided):
    versions.deploy(store, [DEPLOY_DATA], at=T0)
    view = Runtime(store).start("typed_cells_process", "dm.zhou", data, at=T0)
    assert (view.data["level"], view.data["needs_board"], view.data["who"]) == decided


def test_a_cell_written_false_is_refused_at_deploy_with_its_line_rule_column_and_fix(tmp_path):
    bpmn, dmn, text = _table_with(tmp_path, rule_urgent_board="false")
    problem = only(problems_of(bpmn, dmn))
    assert (problem.file, problem.line, problem.element_id) == (
        str(dmn), line_of(text, 'id="rule_urgent_board"'), "rule_urgent_board")
    assert problem.message == ("rule 2, column 'Needs the board': output entry 'false': false is not Python "
                               "(the cells are Python expressions): write False")


@pytest.mark.parametrize("element_id, cell, message", [
    ("rule_urgent_urgent", "true",
     "rule 2, column 'Urgent': input entry 'true': true is not Python (the cells are Python expressions): "
     "write True"),
    ("rule_big_who", "null",
     "rule 1, column 'Who': output entry 'null': null is not Python (the cells are Python expressions): "
     "write None"),
    ("rule_big_board", '"yes"',
     "rule 1, column 'Needs the board': output entry '\"yes\"': the column is boolean, and 'yes' is not: "
     "write True or False"),
    ("rule_big_level", '"3"',
     "rule 1, column 'Level': output entry '\"3\"': the column is a number, and '3' is text: "
     "write 3 without quotes"),
    ("rule_big_amount", '>= "1000000"',
     "rule 1, column 'Amount': input entry '>= \"1000000\"': the column is a number, and '1000000' is text: "
     "write 1000000 without quotes"),
    ("rule_other_level", '"one"',
     "rule 3, column 'Level': output entry '\"one\"': the column is a number, and 'one' is not: "
     "write a number such as 1000"),
    ("rule_big_who", "1",
     "rule 1, column 'Who': output entry '1': the column is a string, and 1 is not: write \"1\" in quotes"),
    ("rule_other_who", "dept_manager",
     "rule 3, column 'Who': output entry 'dept_manager': the column is a string, and dept_manager unquoted "
     "is the name of a variable: write \"dept_manager\" for the text (or str(dept_manager) for the "
     "variable's value)"),
    ("rule_urgent_region", '"south", "west"',
     "rule 2, column 'Region': input entry '\"south\", \"west\"': a list of values matches nothing here: "
     "write ? in (\"south\", \"west\") to match any of them"),
    ("rule_urgent_region", '? in ("south", 7)',
     "rule 2, column 'Region': input entry '? in (\"south\", 7)': the column is a string, and 7 is not: "
     "write \"7\" in quotes"),
    ("rule_urgent_region", 'in ("south", "west")',
     "rule 2, column 'Region': input entry 'in (\"south\", \"west\")': it runs as "
     "'regionin (\"south\", \"west\")', which names no variable: write ? in (\"south\", \"west\") "
     "(the ? stands for the input)"),
    ("rule_other_amount", "0 <= ? < 1000000)",
     "rule 3, column 'Amount': input entry '0 <= ? < 1000000)': syntax error on line 1: unmatched ')'"),
])
def test_each_cell_that_would_fail_at_run_time_is_named_with_its_fix(tmp_path, element_id, cell, message):
    bpmn, dmn, text = _table_with(tmp_path, **{element_id: cell})
    problem = only(problems_of(bpmn, dmn))
    assert (problem.line, problem.element_id, problem.message) == (
        line_of(text, f'id="{element_id}"'), element_id, message)


@pytest.mark.parametrize("element_id, fixed", [
    ("rule_urgent_board", "False"), ("rule_urgent_urgent", "True"), ("rule_big_who", "None"),
    ("rule_big_level", "3"), ("rule_big_amount", ">= 1000000"), ("rule_big_who", '"1"'),
    ("rule_other_who", '"dept_manager"'), ("rule_urgent_region", '? in ("south", "west")'),
])
def test_the_fix_each_message_gives_deploys(tmp_path, element_id, fixed):
    bpmn, dmn, _ = _table_with(tmp_path, **{element_id: fixed})
    assert [d.process_id for d in load_definitions([bpmn, dmn], ROLES)] == ["typed_cells_process"]


def test_every_bad_cell_of_a_table_is_listed_in_file_order(tmp_path):
    bpmn, dmn, text = _table_with(tmp_path, rule_other_board="false", rule_big_level='"3"')
    assert [(p.line, p.element_id) for p in problems_of(bpmn, dmn)] == [
        (line_of(text, 'id="rule_big_level"'), "rule_big_level"),
        (line_of(text, 'id="rule_other_board"'), "rule_other_board")]


def test_a_refused_table_deploys_nothing_and_bpm_deploy_says_why(store, bpm, tmp_path):  # noqa: F811
    bpmn, dmn, text = _table_with(tmp_path, rule_urgent_board="false")
    with pytest.raises(DefinitionError):
        versions.deploy(store, [bpmn, dmn], at=T0)
    assert versions.listing(store) == []
    code, out, err = bpm("deploy", str(bpmn), str(dmn))
    line = line_of(text, 'id="rule_urgent_board"')
    assert (code, out) == (1, "")
    assert f"{dmn}:{line}: rule_urgent_board: rule 2, column 'Needs the board': output entry 'false': " \
           f"false is not Python (the cells are Python expressions): write False" in err
    assert "typed_cells_process" not in {d["process_id"] for d in json.loads(bpm("definitions", "--json")[1])}


def test_the_company_tables_pass_the_cell_checks():
    roles = ROLES + ["general_office", "bank_feed"]
    assert "credit_payment_terms" in {f.split(".")[0] for d in load_definitions(
        [Path(__file__).resolve().parents[1] / "bpmn"], roles) for f in d.files}
