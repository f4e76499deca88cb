"""The MIWG reference models (tests/data/miwg, CC BY 3.0): every file opens in the modeller; once
marked executable with its lanes mapped (engine.foreign.prepare) it deploys, or is refused with
findings that each name an element and a line. docs/conformance.md lists the outcome per file
(`python -m engine.foreign --report`)."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine import foreign

MIWG = Path(__file__).parent / "data" / "miwg"
FILES = sorted(p.name for p in MIWG.glob("*.bpmn"))
# What docs/conformance.md reports; a change here is a change of that page.
DEPLOYED = {"A.1.0.bpmn", "A.4.0.bpmn", "A.4.1.bpmn"}


@pytest.fixture(scope="module")
def rows() -> dict[str, foreign.ConformanceRow]:
    return {row.file: row for row in foreign.conformance(MIWG)}


def test_the_set_is_here_with_its_licence():
    assert len(FILES) == 21
    assert "Creative Commons Attribution 3.0" in (MIWG / "LICENSE.txt").read_text()


@pytest.mark.parametrize("name", FILES)
def test_every_file_opens_in_the_modeller(name):
    assert foreign.opens((MIWG / name).read_bytes()) is None


def test_the_deploy_count(rows):
    deployed = {name for name, row in rows.items() if row.deployed}
    assert deployed == DEPLOYED


@pytest.mark.parametrize("name", FILES)
def test_each_file_deploys_or_each_refusal_names_an_element(rows, name):
    row = rows[name]
    assert row.opens
    if row.deployed:
        assert not row.problems
        return
    assert row.problems
    for problem in row.problems:
        assert problem.element_id != "-" and problem.line and problem.line > 1, str(problem)
        assert problem.file in [name, *row.with_files]
        assert "internal error" not in problem.message and "Traceback" not in problem.message


def test_preparing_a_file_changes_nothing_but_the_flags_and_roles():
    original = (MIWG / "A.4.1.bpmn").read_bytes()
    prepared, groups = foreign.prepare(original)
    assert groups == set()
    stripped = prepared.replace(b'isExecutable="true"', b'isExecutable="false"')
    import re
    role = (rb'<spiffworkflow:properties xmlns:spiffworkflow="[^"]*"><spiffworkflow:property '
            rb'name="role" value="clerk"/></spiffworkflow:properties>')
    stripped = re.sub(rb"<extensionElements>" + role + rb"</extensionElements>", b"", stripped)
    assert len(re.findall(role, stripped)) == 3  # inside the lanes' own extensionElements
    stripped = re.sub(role, b"", stripped)
    assert stripped == original
