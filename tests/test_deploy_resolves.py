"""A deploy finds what a process's files call but do not bring (issue 11, part 3): the decision
table beside the BPMN file, else the one deployed; forms in a folder given on the command line."""
from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from engine import versions
from engine.definitions import DefinitionError
from engine.store import Definition

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)


def files_of(store, process_id: str) -> set[str]:
    with store.read() as s:
        return set(s.scalars(select(Definition.files).where(Definition.process_id == process_id)
                             .order_by(Definition.version.desc()).limit(1)).one())


def test_one_bpmn_file_deploys_with_the_decision_table_beside_it(store):
    deployed = versions.deploy(store, [ROOT / "bpmn" / "contract_review.bpmn"], at=T0)
    assert [(d.process_id, d.version) for d in deployed] == [("contract_review", 1)]
    assert "contract_approval_authority.dmn" in files_of(store, "contract_review")


def test_a_file_alone_takes_the_deployed_decision_table_and_forms_from_a_given_folder(store, tmp_path):
    versions.deploy(store, [ROOT / "bpmn"], at=T0)
    alone = tmp_path / "work"
    alone.mkdir()
    text = (ROOT / "bpmn" / "contract_review.bpmn").read_text(encoding="utf-8")
    (alone / "contract_review.bpmn").write_text(text.replace("业务部经理审核 / Department manager review",
                                                             "业务部经理审核（新）/ Department manager review (new)"),
                                                encoding="utf-8")
    with pytest.raises(DefinitionError, match="names form 'contract_review.start.json'"):
        versions.deploy(store, [alone / "contract_review.bpmn"], at=T0)   # no forms beside it
    deployed = versions.deploy(store, [alone / "contract_review.bpmn", ROOT / "forms"], at=T0)
    assert [(d.process_id, d.version) for d in deployed] == [("contract_review", 2)]
    assert {"contract_approval_authority.dmn", "forms/contract_review.start.json"} <= files_of(store, "contract_review")


def test_a_decision_found_nowhere_is_still_one_sentence_at_the_task(store, tmp_path):
    alone = tmp_path / "work"
    alone.mkdir()
    shutil.copy(ROOT / "bpmn" / "contract_review.bpmn", alone)
    with pytest.raises(DefinitionError) as refused:
        versions.deploy(store, [alone / "contract_review.bpmn", ROOT / "forms"], at=T0)
    assert "calls decision 'contract_approval_authority', which is in none of the DMN files loaded" in str(refused.value)


def test_a_flow_to_an_element_that_is_not_there_is_named_at_its_line(store, tmp_path):
    """Not SpiffWorkflow's "we found two items, perhaps a form has the same ID?" at another element."""
    broken = tmp_path / "contract_review.bpmn"
    text = (ROOT / "bpmn" / "contract_review.bpmn").read_text(encoding="utf-8")
    broken.write_text(text.replace('targetRef="dm_review"', 'targetRef="dm_reviw"', 1), encoding="utf-8")
    line = next(n for n, row in enumerate(broken.read_text(encoding="utf-8").splitlines(), 1) if 'targetRef="dm_reviw"' in row)
    with pytest.raises(DefinitionError) as refused:
        versions.deploy(store, [broken, ROOT / "bpmn" / "contract_approval_authority.dmn", ROOT / "forms"], at=T0)
    said = str(refused.value)
    assert f"contract_review.bpmn:{line}:" in said
    assert "goes to 'dm_reviw', which is no element of this process (did you mean 'dm_review'?)" in said
    assert "perhaps a form" not in said
