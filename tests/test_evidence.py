"""Evidence bundles (engine.evidence): exported from the database, checked without it; one changed
byte anywhere is rejected naming the member (and in a log, the step); the CLI, the pages and the
API give them to auditors only."""
from __future__ import annotations

import hashlib
import json
import tarfile
from datetime import timedelta
from io import BytesIO

import pytest

from engine import evidence, state, timers
from engine.evidence import BundleRejected
from engine.runtime import NotFound

from .conftest import contract
from .test_processes import APPROVE, T0, the_task
from .test_web import as_user, catalogs, make_app  # noqa: F401  (catalogs: a fixture the app needs)
from .test_contracts import rt  # noqa: F401  (the contract tests' runtime, BPM_NOW at T0)
from .test_cli import bpm  # noqa: F401  (the CLI on a fresh database)


def escalated_contract(rt) -> str:
    """A contract whose silent department manager was escalated to vp.qian, then approved to the end."""
    view = rt.start("contract_review", "rep.wang", contract(), at=T0)
    timers.run_once(rt, T0 + timedelta(hours=5))
    task = the_task(rt.instance(view.id), "dm_review")
    assert task.assignee == "vp.qian"
    at = T0 + timedelta(hours=6)
    view = rt.complete(task.id, "vp.qian", APPROVE, at=at)
    view = rt.complete(the_task(view, "go_approval").id, "gmo.tang", APPROVE, at=at + timedelta(hours=1))
    return view.id


@pytest.fixture
def exported(rt, store):
    """(runtime, bundle bytes, the escalated contract's id, a second running contract's id)."""
    first = escalated_contract(rt)
    second = rt.start("contract_review", "rep.feng", contract(customer="C-A01"), at=T0).id
    with store.read() as session:
        data = evidence.export(session, [first, second], rt.script_engine, by="audit.han")
    return rt, data, first, second


def problem(data: bytes, script_engine) -> str | None:
    """The first sentence saying what is wrong with the bundle, or None if it is whole."""
    try:
        verdicts = evidence.verify_bundle(data, script_engine)
    except BundleRejected as exc:
        return str(exc)
    bad = [v for v in verdicts if not v.ok]
    return bad[0].problem if bad else None


def members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def offset_of(data: bytes, member: str) -> int:
    """Where the member's content begins in the file."""
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        return tar.getmember(member).offset_data


def flipped(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


def repacked(data: bytes, changes: dict[str, bytes | None]) -> bytes:
    """The bundle re-forged: members changed (None: removed) and the manifest's hashes made to agree,
    as one who knows the format would do it."""
    found = members(data)
    manifest = json.loads(found.pop(evidence.MANIFEST))
    manifest.pop("manifest_sha256")
    for name, content in changes.items():
        if content is None:
            found.pop(name)
        else:
            found[name] = content
    manifest["members"] = [{"name": n, "size": len(c), "sha256": hashlib.sha256(c).hexdigest()}
                           for n, c in found.items()]
    manifest["manifest_sha256"] = hashlib.sha256(evidence._json(manifest)).hexdigest()
    return evidence._pack([(evidence.MANIFEST, evidence._json(manifest)), *found.items()])


# --- export, then verify offline ------------------------------------------------------------------

def test_a_bundle_verifies_offline_and_holds_what_an_auditor_needs(exported, store):
    rt, data, first, second = exported
    verdicts = evidence.verify_bundle(data, rt.script_engine)
    assert [(v.instance_id, v.ok) for v in verdicts] == [(first, True), (second, True)]
    found = members(data)  # an ordinary tar: `tar xf` opens it
    manifest = json.loads(found["manifest.json"])
    with store.read() as session:
        from engine.store import Instance
        row = session.get(Instance, first)
        assert manifest["instances"][0]["root"] == row.log_hash  # to compare with the live system
        assert found[f"instances/{first}/state.json"].decode() == row.state
    log = [json.loads(line) for line in found[f"instances/{first}/log.jsonl"].splitlines()]
    assert [e["command"] for e in log][:3] == ["start", "timer", "complete"]
    assert log[-1]["hash"] == row.log_hash and all(e["state_hash"] for e in log)
    record = json.loads(found[f"instances/{first}/instance.json"])
    assert record["verified_at_export"]["whole"] is True and record["business_key"].startswith("HT-")
    definition = json.loads(found[f"definitions/{record['definition_id']}/definition.json"])
    assert {"contract_review.bpmn", "contract_approval_authority.dmn",
            "forms/contract_review.dm_review.json"} <= set(definition["files"])
    for name in definition["files"]:
        assert f"definitions/{record['definition_id']}/files/{name}" in found
    for m in manifest["members"]:
        assert hashlib.sha256(found[m["name"]]).hexdigest() == m["sha256"]


def test_an_unknown_instance_is_not_exported(exported, store):
    rt, *_ = exported
    with store.read() as session, pytest.raises(NotFound, match="there is no instance nope"):
        evidence.export(session, ["nope"], rt.script_engine)


# --- one changed byte ------------------------------------------------------------------------------

def test_every_changed_byte_is_rejected_naming_where(exported):
    rt, data, first, _ = exported
    positions = list(range(0, len(data), max(1, len(data) // 400)))  # about 400 places, headers included
    positions += [len(data) - 1, len(data) - 600, 0, 100, 124, 148, 257, 511, 512]
    for at in positions:
        sentence = problem(flipped(data, at), rt.script_engine)
        assert sentence is not None, f"a changed byte at {at} was not noticed"
        assert any(where in sentence for where in ("instances/", "definitions/", "manifest.json", "tar header",
                                                   "padding", "end of the archive", "of definition")), (at, sentence)


def test_a_changed_byte_in_a_log_entry_names_the_step(exported):
    rt, data, first, _ = exported
    name = f"instances/{first}/log.jsonl"
    log = members(data)[name]
    start = offset_of(data, name)
    lines = log.split(b"\n")
    line_start = sum(len(line) + 1 for line in lines[:2])  # step 3, the vice-president's approval
    third = lines[2]
    for inside in (third.index(b'"actor"') + 10, third.index(b'"input"') + 12, third.index(b'"at"') + 8,
                   third.index(b'"state_hash"') + 20, third.index(b'"hash"') + 9, len(third) - 1):
        sentence = problem(flipped(data, start + line_start + inside), rt.script_engine)
        assert sentence is not None and sentence.startswith(f"{name}: step 3"), (inside, sentence)
    sentence = problem(flipped(data, start + line_start + third.index(b'"actor"') + 10), rt.script_engine)
    assert sentence == f"{name}: step 3 (complete) was changed: its hash is not the one the chain records"


def test_each_byte_of_a_log_and_of_the_tar_structure_changed_in_turn(rt, store):
    """Exhaustively, on a one-instance bundle: every byte of its log names that byte's step; every
    byte of the first headers and of the end of the archive is named as such."""
    instance_id = escalated_contract(rt)
    with store.read() as session:
        data = evidence.export(session, [instance_id], rt.script_engine)
    name = f"instances/{instance_id}/log.jsonl"
    start, log = offset_of(data, name), members(data)[name]
    step = 1
    for i in range(len(log)):
        sentence = problem(flipped(data, start + i), rt.script_engine)
        assert sentence is not None and sentence.startswith(f"{name}: step {step}"), (i, sentence)
        step += log[i:i + 1] == b"\n"
    for at in [*range(0, 1024), *range(len(data) - 1024, len(data))]:  # two headers, the end
        sentence = problem(flipped(data, at), rt.script_engine)
        assert sentence is not None and ("tar header" in sentence or "end of the archive" in sentence
                                         or "manifest.json" in sentence), (at, sentence)


def test_a_changed_byte_in_a_definition_file_or_the_manifest_names_it(exported):
    rt, data, first, _ = exported
    definition_id = json.loads(members(data)[f"instances/{first}/instance.json"])["definition_id"]
    bpmn = f"definitions/{definition_id}/files/contract_review.bpmn"
    assert problem(flipped(data, offset_of(data, bpmn) + 300), rt.script_engine) == (
        f"{bpmn} was changed: its SHA-256 is not the one the manifest records")
    assert problem(flipped(data, offset_of(data, "manifest.json") + 40), rt.script_engine).startswith(
        "manifest.json was changed")
    assert problem(flipped(data, offset_of(data, bpmn) - 512 + 130), rt.script_engine) == (
        f"byte {offset_of(data, bpmn) - 512}: the tar header of member {bpmn} was changed")


# --- forged with the manifest made to agree ---------------------------------------------------------

def test_a_removed_entry_is_named_even_when_the_manifest_agrees(exported):
    rt, data, first, _ = exported
    name = f"instances/{first}/log.jsonl"
    lines = members(data)[name].split(b"\n")
    forged = repacked(data, {name: b"\n".join(lines[:1] + lines[2:])})
    assert problem(forged, rt.script_engine) == f"{name}: step 2 is missing (the next entry is step 3)"
    assert problem(flipped(data, offset_of(data, name) + len(lines[0]) + 5), rt.script_engine)  # plain change
    with_manifest_only = repacked(data, {})  # the same content: re-forging nothing changes nothing
    assert problem(with_manifest_only, rt.script_engine) is None


def test_a_member_removed_from_the_tar_is_named(exported):
    rt, data, first, _ = exported
    found = members(data)
    name = f"instances/{first}/state.json"
    del found[name]
    forged = evidence._pack(list(found.items()))
    assert problem(forged, rt.script_engine) == f"member {name}, listed in the manifest, is not in the bundle"


def test_a_swapped_definition_file_is_caught(exported, store):
    rt, data, first, _ = exported
    definition_id = json.loads(members(data)[f"instances/{first}/instance.json"])["definition_id"]
    form = f"definitions/{definition_id}/files/forms/contract_review.dm_review.json"
    other = members(data)[f"definitions/{definition_id}/files/forms/contract_review.go_approval.json"]
    assert problem(evidence._pack(list({**members(data), form: other}.items())), rt.script_engine) == (
        f"{form} was changed: its SHA-256 is not the one the manifest records")
    assert problem(repacked(data, {form: other}), rt.script_engine).startswith(
        f"the files of definition {definition_id} (contract_review version 1) are not the ones deployed")


def test_a_state_forged_with_its_hash_is_caught_by_replay(exported):
    """A forger who rewrites the final state and its hash (and the manifest) still fails: the
    replayed state is not it, nor is it the last step's state hash the chain pins."""
    rt, data, first, _ = exported
    found = members(data)
    record = json.loads(found[f"instances/{first}/instance.json"])
    forged_state = found[f"instances/{first}/state.json"].replace(b"approve", b"reject_")
    record["state_hash"] = state.digest(forged_state.decode())
    forged = repacked(data, {f"instances/{first}/state.json": forged_state,
                             f"instances/{first}/instance.json": evidence._json(record)})
    assert problem(forged, rt.script_engine) == (
        f"the instance's stored state is not the state after step {len(found[f'instances/{first}/log.jsonl'].splitlines())}")


def test_not_a_bundle(exported):
    rt, *_ = exported
    for data in (b"", b"hello", b"\0" * 2048):
        assert "not an evidence bundle" in problem(data, rt.script_engine)


# --- the CLI ----------------------------------------------------------------------------------------

def test_cli_bundle_then_verify_offline_with_exit_codes(bpm, tmp_path, monkeypatch):
    code, out, err = bpm("start", "contract_review", "--as", "rep.wang", "--data", json.dumps(contract()),
                         now=T0.isoformat())
    assert code == 0, err
    instance_id = out.strip()
    assert bpm("worker", "--once", now=(T0 + timedelta(hours=5)).isoformat())[0] == 0
    path = tmp_path / "evidence.tar"
    code, out, err = bpm("bundle", instance_id, "--out", str(path))
    assert code == 0, err
    root = out.split(f"root {instance_id} ")[1].split()[0]
    # offline: the database is gone
    monkeypatch.setenv("BPM_DATABASE_URL", f"sqlite:///{tmp_path / 'nowhere' / 'none.sqlite3'}")
    code, out, err = bpm("verify", "--bundle", str(path))
    assert code == 0, err
    assert f"ok   {instance_id} (2 steps) root {root}" in out
    data = path.read_bytes()
    log = f"instances/{instance_id}/log.jsonl"
    bad = tmp_path / "bad.tar"
    bad.write_bytes(flipped(data, offset_of(data, log) + 20))
    code, out, err = bpm("verify", "--bundle", str(bad))
    assert code == 1 and f"BAD  {instance_id}: {log}: step 1 (start) was changed" in out
    assert err.startswith(f"bpm verify: 1 of 1 instance(s) in the bundle failed verification; first: {instance_id}: "
                          f"{log}: step 1 (start) was changed")
    code, _, err = bpm("verify", "--bundle", str(tmp_path / "missing.tar"))
    assert code == 1 and err.startswith("bpm verify: cannot read")
    code, _, err = bpm("verify", instance_id, "--bundle", str(path))
    assert code == 1 and "--bundle checks the instances in the file" in err


def test_cli_bundle_of_an_unknown_instance(bpm, tmp_path):
    code, _, err = bpm("bundle", "nope", "--out", str(tmp_path / "x.tar"))
    assert code == 1 and err == "bpm bundle: there is no instance nope\n"
    assert not (tmp_path / "x.tar").exists()


# --- the pages and the API: auditors only ------------------------------------------------------------

@pytest.fixture
def app(rt, catalogs, tmp_path):  # noqa: F811
    return make_app(rt, catalogs, tmp_path)


def test_the_auditor_downloads_the_bundle_and_the_history_csv(app, rt, store):
    instance_id = escalated_contract(rt)
    auditor = as_user(app, "audit.han")
    reply = auditor.get(f"/instances/{instance_id}/bundle")
    assert reply.status_code == 200 and reply.mimetype == evidence.CONTENT_TYPE
    disposition = reply.headers["Content-Disposition"]
    assert "attachment" in disposition and f"-{instance_id}.tar" in disposition and "HT-" in disposition
    assert [v.ok for v in evidence.verify_bundle(reply.data, rt.script_engine)] == [True]
    csv_reply = auditor.get(f"/instances/{instance_id}/history.csv")
    assert csv_reply.status_code == 200 and csv_reply.mimetype == "text/csv"
    rows = csv_reply.get_data(as_text=True).splitlines()
    assert rows[0] == "step,time,actor,command,task,data_change,hash"
    assert rows[1].startswith("1,") and ",rep.wang,start," in rows[1] and len(rows) == 5


def test_others_get_the_same_404_as_for_a_missing_instance(app, rt):
    instance_id = escalated_contract(rt)
    for user in ("rep.wang", "vp.qian", "gm.zhao"):  # the initiator, an approver, the general manager
        client = as_user(app, user)
        for url in (f"/instances/{instance_id}/bundle", f"/instances/{instance_id}/history.csv"):
            refused, missing = client.get(url), client.get(url.replace(instance_id, "nope"))
            assert refused.status_code == missing.status_code == 404, (user, url)
    assert as_user(app, "audit.han").get("/instances/nope/bundle").status_code == 404


def test_the_api_gives_the_bundle_to_auditors_only(app, rt):
    instance_id = escalated_contract(rt)
    client = app.test_client()

    def token(user):
        reply = client.post("/api/v1/tokens", json={"username": user, "password": "demo"})
        return {"Authorization": f"Bearer {reply.json['token']}"}
    reply = client.get(f"/api/v1/instances/{instance_id}/bundle", headers=token("audit.han"))
    assert reply.status_code == 200 and reply.mimetype == evidence.CONTENT_TYPE
    assert [v.ok for v in evidence.verify_bundle(reply.data, rt.script_engine)] == [True]
    refused = client.get(f"/api/v1/instances/{instance_id}/bundle", headers=token("rep.wang"))
    assert refused.status_code == 404 and refused.json == {"error": f"there is no instance {instance_id}",
                                                           "fields": {}}
    assert client.get(f"/api/v1/instances/{instance_id}/bundle").status_code == 401
    paths = client.get("/api/openapi.json").json["paths"]
    assert "/v1/instances/{instance_id}/bundle" in paths


def test_the_auditor_bundles_a_search_result_in_one_file(app, rt, store):
    """/instances/bundle takes the instances page's filters: the instances listed, one file."""
    ours = [rt.start("contract_review", "rep.wang", contract(), at=T0).id for _ in range(2)]
    rt.start("contract_review", "rep.wang", contract(customer="C-A01"), at=T0)
    auditor = as_user(app, "audit.han")
    listed = auditor.get("/instances?customer=C-B01")
    assert "/instances/bundle?customer=C-B01" in listed.get_data(as_text=True)
    reply = auditor.get("/instances/bundle?customer=C-B01")
    assert reply.status_code == 200 and reply.mimetype == "application/x-tar"
    verdicts = evidence.verify_bundle(reply.data, rt.script_engine)
    assert sorted(v.instance_id for v in verdicts) == sorted(ours) and all(v.ok for v in verdicts)
    assert auditor.get("/instances/bundle?customer=C-ZZ9").status_code == 400     # nothing listed
    assert auditor.get("/instances/bundle?status=lost").status_code == 400        # a bad filter
    rep = as_user(app, "rep.wang")
    assert rep.get("/instances/bundle?customer=C-B01").status_code == 404
    assert "/instances/bundle" not in rep.get("/instances?customer=C-B01").get_data(as_text=True)
