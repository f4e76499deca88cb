"""Deploy correctness (issue 9, item 9): DMN cells checked at deploy, with their line, rule and
column; a reverted file made current again, as a new version with the older version's content."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from engine import versions
from engine.definitions import DefinitionError, load_definitions
from engine.runtime import Runtime

from .test_cli import bpm  # noqa: F401  (the `bpm` fixture: the command line on a fresh database)
from .test_definitions import ROLES, chain, line_of, problems_of, rule_task, write

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
                                              "same_as": None, "notices": ["user task look has no form: it takes "
                                              "any JSON object as its data (except the engine's own fields, "
                                              "such as initiator)"]}]
    assert _started(store) == (1, "one")
    (second,) = versions.deploy(store, [_variant(tmp_path, "two")], at=T0)
    assert (second.version, second.status, second.same_as) == (2, "deployed", None)
    assert _started(store) == (2, "two")
    # the file is reverted to version 1's content: deployed as version 3, which new instances run
    (third,) = versions.deploy(store, [_variant(tmp_path, "one")], at=T0)
    assert (third.version, third.status, third.same_as) == (3, "deployed", 1)
    assert third.sentence() == "reverted 3 deployed (same content as version 1)"
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
    assert code == 0 and [(d["version"], d["status"], d["same_as"]) for d in json.loads(out)] == [
        (3, "unchanged", None)]
    code, out, _ = bpm("start", "reverted", "--as", "dm.zhou", "--json")
    assert code == 0 and json.loads(out)["version"] == 3
    code, out, _ = bpm("instance", json.loads(out)["id"], "--json")
    assert code == 0 and json.loads(out)["data"]["variant"] == "one"
