"""Only declared fields change, exactly once, and a delegation with its note in one transaction.

Issue 8, "What to build" 2 and 7: a task's or start event's form is the whole list of what that
step may write (the engine refuses anything else, naming the field), a start or complete carrying
a request id (API `Idempotency-Key`, CLI `--request-id`, the pages' hidden `request_id`) acts once
however often it is sent, and a delegation's note is written with the delegation or not at all.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

import processes
from engine import versions
from engine.runtime import Conflict, FormRejected, InvalidInput, Runtime
from engine.store import Comment, HumanTask, LogEntry, TaskDraft

from .conftest import contract, instances, snapshot, views_of
from .orders_on_file import put_order
from .test_processes import APPROVE, T0, Clock, do, order, the_task

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = {"shipping_list": [{"line": 1, "quantity": 200}],
           "carrier": "德邦物流", "tracking_no": "DB88230017", "shipped_on": "2026-12-09"}
REJECTED = {"decision": "reject", "comment": "折扣超出授权，请按原报价重新谈判"}


@pytest.fixture
def rt(store):
    versions.deploy(store, [ROOT / "bpmn"], actor="design.yang", at=T0)
    return Runtime(store, processes.SERVICES, lookups=processes.LOOKUPS)


def to_shipping(rt, clock: Clock):
    """An A-customer order waiting for the warehouse to ship it (balance due on dispatch)."""
    view = rt.start("order_to_settlement", "rep.wang", order("C-A01", 120000), at=clock.now)
    view = do(rt, view, "approve_order_dm", "dm.zhou", APPROVE, at=clock())
    view = do(rt, view, "confirm_deposit", "fin.chu", {
        "deposit_received": view.data["deposit_required"], "received_on": "2026-11-24"}, at=clock(days=1))
    view = do(rt, view, "schedule_production", "prod.jiang", {
        "planned_start": "2026-11-25", "planned_finish": "2026-12-08"}, at=clock())
    return view


# --- 2. only declared fields change ------------------------------------------------------------

def test_the_warehouse_cannot_write_what_was_paid_when_shipping(rt, store):
    clock = Clock()
    view = to_shipping(rt, clock)
    ship = the_task(view, "ship_goods")
    before = snapshot(store, view.id)
    with pytest.raises(FormRejected) as refused:
        rt.complete(ship.id, "wh.wei", {**SHIPPED, "paid": 80000, "balance": 0}, at=clock())
    assert set(refused.value.fields) == {"paid", "balance"}
    assert "paid" in str(refused.value) and "balance" in str(refused.value)
    assert snapshot(store, view.id) == before
    view = rt.complete(ship.id, "wh.wei", SHIPPED, at=clock())  # what the form declares goes through
    assert view.data["paid"] == 36000 and view.data["balance"] == 84000


def test_a_manager_cannot_send_the_revision_to_someone_else(rt, store):
    clock = Clock()
    view = rt.start("contract_review", "rep.wang", contract(price=450, amount=225000), at=clock.now)
    review = the_task(view, "dm_review")
    before = snapshot(store, view.id)
    with pytest.raises(FormRejected) as refused:
        rt.complete(review.id, "dm.zhou", {**REJECTED, "initiator": "rep.feng"}, at=clock())
    assert list(refused.value.fields) == ["initiator"]
    assert snapshot(store, view.id) == before
    view = rt.complete(review.id, "dm.zhou", REJECTED, at=clock())
    assert the_task(view, "revise").assignee == "rep.wang"


def test_read_only_fields_and_the_initiator_stay_the_engines(rt, store):
    clock = Clock()
    view = rt.start("contract_review", "rep.wang", contract(price=450, amount=225000), at=clock.now)
    review = the_task(view, "dm_review")
    with pytest.raises(FormRejected) as refused:  # shown on the form, not writable there
        rt.complete(review.id, "dm.zhou", {**REJECTED, "price": 520}, at=clock())
    assert list(refused.value.fields) == ["price"] and "read-only" in refused.value.fields["price"]
    with pytest.raises(FormRejected) as refused:  # nested rows are closed too
        rt.start("contract_review", "rep.wang",
                 contract(lines=[{**contract()["lines"][0], "discount": 0.5}]), at=clock.now)
    assert list(refused.value.fields) == ["lines/0/discount"]
    with pytest.raises(FormRejected) as refused:
        rt.start("contract_review", "rep.feng", contract(initiator="rep.wang"), at=clock.now)
    assert list(refused.value.fields) == ["initiator"]
    assert instances(store) == 1


def test_a_draft_keeps_only_declared_fields(rt, store):
    clock = Clock()
    view = to_shipping(rt, clock)
    ship = the_task(view, "ship_goods")
    with pytest.raises(FormRejected) as refused:
        rt.save_draft(ship.id, "wh.wei", {"carrier": "德邦物流", "paid": 80000}, at=clock())
    assert list(refused.value.fields) == ["paid"]
    assert rt.draft(ship.id, "wh.wei") is None
    rt.save_draft(ship.id, "wh.wei", {"carrier": "德邦物流"}, at=clock())  # half a form is a draft
    assert rt.draft(ship.id, "wh.wei") == {"carrier": "德邦物流"}


def test_formless_tasks_take_any_object_but_not_the_engines_fields_and_deploy_says_so(store):
    deployed = versions.deploy(store, [ROOT / "tests" / "data" / "runtime" / "approval.bpmn"])
    notices = deployed[0].as_json()["notices"]
    assert [n.split(":")[0] for n in notices] == [
        "user task submit has no form", "user task review has no form", "user task confirm has no form"]
    assert all("takes any JSON object" in n for n in notices)
    rt = Runtime(store)
    view = rt.start("approval", "rep.wang", {"amount": 5})
    with pytest.raises(FormRejected) as refused:
        rt.complete(view.tasks[0].id, "rep.wang", {"amount": 7, "initiator": "rep.feng"})
    assert list(refused.value.fields) == ["initiator"]
    view = rt.complete(view.tasks[0].id, "rep.wang", {"amount": 7, "anything": [1, 2]})
    assert view.data["anything"] == [1, 2] and view.data["initiator"] == "rep.wang"
    # the company's processes declare a form on every step, so deploying them says nothing
    assert all(d.as_json()["notices"] == [] for d in versions.deploy(store, [ROOT / "bpmn"]))


# --- 7. exactly once ---------------------------------------------------------------------------

def test_a_start_replayed_with_its_request_id_returns_the_first_instance(rt, store):
    first = rt.start("contract_review", "rep.wang", contract(), at=T0, request_id="r-1")
    again = rt.start("contract_review", "rep.wang", contract(), at=T0, request_id="r-1")
    assert again.id == first.id and again.as_json() == first.as_json()
    assert instances(store) == 1
    # the key is the user's own: another user's same key is another request
    other = rt.start("contract_review", "rep.feng", contract(), at=T0, request_id="r-1")
    assert other.id != first.id and instances(store) == 2
    with pytest.raises(Conflict) as refused:  # same key, other content: a mistake, said so
        rt.start("contract_review", "rep.wang", contract(amount=300000), at=T0, request_id="r-1")
    assert "r-1" in str(refused.value) and "different" in str(refused.value)
    assert instances(store) == 2
    with pytest.raises(InvalidInput) as refused:
        rt.start("contract_review", "rep.wang", contract(), at=T0, request_id="x" * 201)
    assert list(refused.value.fields) == ["request_id"]


def test_a_complete_replayed_with_its_request_id_acts_once(rt, store):
    clock = Clock()
    view = rt.start("contract_review", "rep.wang", contract(), at=clock.now)
    review = the_task(view, "dm_review")
    first = rt.complete(review.id, "dm.zhou", {"decision": "approve"}, at=clock(), request_id="c-1")
    before = snapshot(store, view.id)
    again = rt.complete(review.id, "dm.zhou", {"decision": "approve"}, at=clock(), request_id="c-1")
    assert again.as_json() == first.as_json()
    assert snapshot(store, view.id) == before
    with pytest.raises(Conflict):  # without the key, the task is simply done
        rt.complete(review.id, "dm.zhou", {"decision": "approve"}, at=clock())


def test_a_refused_request_keeps_no_key(rt, store):
    with pytest.raises(FormRejected):
        rt.start("contract_review", "rep.wang", contract(amount=-5), at=T0, request_id="r-2")
    view = rt.start("contract_review", "rep.wang", contract(amount=5000), at=T0,
                    request_id="r-2")  # nothing happened the first time, so the key is free
    assert instances(store) == 1 and view.status == "running"


def test_keys_are_kept_for_a_bounded_time(rt, store):
    from datetime import timedelta
    from engine import runtime as engine_runtime
    from engine.store import IdempotencyKey
    first = rt.start("contract_review", "rep.wang", contract(), at=T0, request_id="r-3")
    later = T0 + engine_runtime.REQUEST_ID_KEPT + timedelta(minutes=1)
    again = rt.start("contract_review", "rep.wang", contract(delivery_date="2027-02-01"), at=later,
                     request_id="r-3")
    assert again.id != first.id
    with store.read() as s:
        assert s.scalar(select(func.count()).select_from(IdempotencyKey)) == 1  # the old use let go
    rt.start("contract_review", "rep.feng", contract(), at=later, request_id="r-4")
    rt.start("contract_review", "rep.wang", contract(), at=T0, request_id="r-5")
    much_later = later + engine_runtime.REQUEST_ID_KEPT + timedelta(minutes=1)
    assert rt.forget_requests(much_later) == 3  # the worker lets go of everyone's old ids
    assert rt.forget_requests(much_later) == 0
    with store.read() as s:
        assert s.scalar(select(func.count()).select_from(IdempotencyKey)) == 0


def at_once(count: int, command) -> tuple[list, list]:
    """Run `command` from `count` threads released together: (results, exceptions)."""
    barrier = threading.Barrier(count)
    results, errors = [], []

    def send():
        barrier.wait()
        try:
            results.append(command())
        except Exception as exc:  # noqa: BLE001 - collected and asserted by the caller
            errors.append(exc)
    threads = [threading.Thread(target=send) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


def test_concurrent_identical_starts_make_exactly_one_instance(rt, store):
    results, errors = at_once(6, lambda: rt.start("contract_review", "rep.wang", contract(), at=T0,
                                                  request_id="same"))
    assert errors == [] and len(results) == 6
    assert len({r.id for r in results}) == 1 and instances(store) == 1


def test_concurrent_identical_completes_act_once(rt, store):
    view = rt.start("contract_review", "rep.wang", contract(), at=T0)
    review = the_task(view, "dm_review")
    results, errors = at_once(4, lambda: rt.complete(review.id, "dm.zhou", {"decision": "approve"},
                                                     request_id="c"))
    assert errors == [] and len(results) == 4 and len({json.dumps(r.as_json(), sort_keys=True) for r in results}) == 1
    with store.read() as s:
        assert s.scalar(select(func.count()).select_from(LogEntry).where(
            LogEntry.instance_id == view.id, LogEntry.command == "complete")) == 1


# --- a delegation and its note: one transaction -------------------------------------------------

def test_a_delegation_whose_note_fails_is_undone(sqlite_store):
    store = sqlite_store
    versions.deploy(store, [ROOT / "bpmn"], actor="design.yang", at=T0)
    rt = Runtime(store, processes.SERVICES, lookups=processes.LOOKUPS)
    view = rt.start("order_to_settlement", "rep.wang", order("C-A01", 120000), at=T0)
    view = do(rt, view, "approve_order_dm", "dm.zhou", APPROVE, at=T0)
    deposit = the_task(view, "confirm_deposit")
    rt.claim(deposit.id, "fin.chu", at=T0)
    before = snapshot(store, view.id)
    with store.engine.begin() as conn:  # the database refuses the note
        conn.execute(text("CREATE TRIGGER no_notes BEFORE INSERT ON comment "
                          "BEGIN SELECT RAISE(ABORT, 'notes are refused'); END"))
    with pytest.raises(Exception, match="notes are refused"):
        rt.delegate(deposit.id, "fin.chu", "acct.xu", "请代为确认定金", at=T0)
    assert snapshot(store, view.id) == before
    with store.read() as s:
        assert s.get(HumanTask, deposit.id).assignee == "fin.chu"
        assert s.scalar(select(func.count()).select_from(Comment)) == 0
    with store.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER no_notes"))
    task = rt.delegate(deposit.id, "fin.chu", "acct.xu", "请代为确认定金", at=T0)
    assert task.assignee == "acct.xu"
    assert [c["body"] for c in views_of(rt).comments(view.id)] == ["请代为确认定金"]


# --- through the API -----------------------------------------------------------------------------

@pytest.fixture
def client(rt):
    from web import create_app
    return create_app(rt, {"TESTING": True}).test_client()


def token(client, username: str) -> dict:
    reply = client.post("/api/v1/tokens", json={"username": username, "password": "demo"})
    assert reply.status_code == 201, reply.json
    return {"Authorization": f"Bearer {reply.json['token']}"}


def test_api_refuses_undeclared_fields_naming_them(client, rt, store):
    clock = Clock()
    view = to_shipping(rt, clock)
    ship = the_task(view, "ship_goods")
    reply = client.post(f"/api/v1/tasks/{ship.id}/complete", headers=token(client, "wh.wei"),
                        json={"data": {**SHIPPED, "paid": 80000, "balance": 0}})
    assert reply.status_code == 422 and set(reply.json["fields"]) == {"paid", "balance"}
    assert rt.instance(view.id).data["paid"] == 36000

    contract_view = rt.start("contract_review", "rep.wang", contract(price=450, amount=225000), at=clock())
    review = the_task(contract_view, "dm_review")
    reply = client.post(f"/api/v1/tasks/{review.id}/complete", headers=token(client, "dm.zhou"),
                        json={"data": {**REJECTED, "initiator": "rep.feng"}})
    assert reply.status_code == 422 and list(reply.json["fields"]) == ["initiator"]
    assert "initiator" in reply.json["error"]
    reply = client.put(f"/api/v1/tasks/{ship.id}/draft", headers=token(client, "wh.wei"),
                       json={"data": {"balance": 0}})
    assert reply.status_code == 422 and list(reply.json["fields"]) == ["balance"]


def test_api_idempotency_key_on_start_and_complete(client, store):
    rep, dm = token(client, "rep.wang"), token(client, "dm.zhou")
    url = "/api/v1/processes/contract_review/instances"
    body = {"data": contract(delivery_date="2099-12-20")}
    first = client.post(url, headers={**rep, "Idempotency-Key": "k-1"}, json=body)
    again = client.post(url, headers={**rep, "Idempotency-Key": "k-1"}, json=body)
    assert first.status_code == again.status_code == 201 and again.json == first.json
    assert instances(store) == 1
    other = client.post(url, headers={**rep, "Idempotency-Key": "k-1"},
                        json={"data": {**body["data"], "amount": 1}})
    assert other.status_code == 409 and "k-1" in other.json["error"]
    task_id = first.json["tasks"][0]["id"]
    done = client.post(f"/api/v1/tasks/{task_id}/complete", headers={**dm, "Idempotency-Key": "k-2"},
                       json={"data": {"decision": "approve"}})
    replay = client.post(f"/api/v1/tasks/{task_id}/complete", headers={**dm, "Idempotency-Key": "k-2"},
                         json={"data": {"decision": "approve"}})
    assert done.status_code == replay.status_code == 200 and replay.json == done.json
    assert client.post(url, headers={**rep, "Idempotency-Key": "x" * 201}, json=body).status_code == 400
    spec = client.get("/api/openapi.json").json
    for path, method in ((url.replace("contract_review", "{process_id}").replace("/api", ""), "post"),
                         ("/v1/tasks/{task_id}/complete", "post")):
        params = spec["paths"][path][method].get("parameters", [])
        assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in params), path


# --- through the command line --------------------------------------------------------------------

def test_cli_request_id_starts_once_and_undeclared_fields_are_refused(tmp_path, monkeypatch, capsys):
    from bpm.cli import main
    monkeypatch.setenv("BPM_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    monkeypatch.setenv("BPM_NOW", T0.isoformat())
    assert main(["init", "--demo"]) == 0
    capsys.readouterr()
    data = json.dumps(contract())
    assert main(["start", "contract_review", "--as", "rep.wang", "--data", data, "--request-id", "q1"]) == 0
    first = capsys.readouterr().out.strip()
    assert main(["start", "contract_review", "--as", "rep.wang", "--data", data, "--request-id", "q1"]) == 0
    assert capsys.readouterr().out.strip() == first
    assert main(["tasks", "--as", "dm.zhou", "--json"]) == 0
    tasks = json.loads(capsys.readouterr().out)
    assert len(tasks) == 1
    bad = json.dumps({**REJECTED, "initiator": "rep.feng"})
    assert main(["complete", tasks[0]["id"], "--as", "dm.zhou", "--data", bad]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bpm complete: ") and "initiator" in err and err.count("\n") == 1
    assert main(["complete", tasks[0]["id"], "--as", "dm.zhou", "--data", '{"decision": "approve"}',
                 "--request-id", "q2"]) == 0
    out = capsys.readouterr().out
    assert main(["complete", tasks[0]["id"], "--as", "dm.zhou", "--data", '{"decision": "approve"}',
                 "--request-id", "q2"]) == 0
    assert capsys.readouterr().out == out


# --- through the pages ---------------------------------------------------------------------------

@pytest.fixture
def pages(rt, tmp_path, monkeypatch):
    from web import create_app

    from .browser_server import compile_catalogs
    monkeypatch.setenv("BPM_NOW", T0.isoformat())
    app = create_app(rt, {"TESTING": True, "SECRET_KEY": "test", "WTF_CSRF_ENABLED": False,
                          "BABEL_TRANSLATION_DIRECTORIES": str(compile_catalogs(tmp_path / "tr")),
                          "VENDOR_DIR": str(tmp_path / "vendor")})

    def as_user(username: str):
        client = app.test_client()
        assert client.post("/login", data={"username": username, "password": "demo"}).status_code == 302
        return client
    return as_user


def _request_id(html: str) -> str:
    import re
    found = re.search(r'name="request_id" value="([^"]+)"', html)
    assert found, "the form carries no request id"
    return found.group(1)


def test_a_resubmitted_start_page_starts_once(pages, store):
    put_order(store, "SO-20261101-000001", lines=[{"product": "芝麻灰花岗岩板", "spec": "600x600x20",
                                                   "quantity": 200, "unit_price": 260, "shipped": 200}])
    rep = pages("rep.wang")
    page = rep.get("/start/return_request")
    assert page.status_code == 200
    request_id = _request_id(page.get_data(as_text=True))
    form = {"customer": "C-A01", "order_no": "SO-20261101-000001", "reason": "quality", "kind": "return",
            "description": "边角崩裂", "lines-0-product": "芝麻灰花岗岩板", "lines-0-spec": "600x600x20",
            "lines-0-quantity": "5", "request_id": request_id, "csrf_token": "x", "paid": "80000"}
    first = rep.post("/start/return_request", data=form)
    assert first.status_code == 302, first.get_data(as_text=True)[-3000:]
    second = rep.post("/start/return_request", data=form)  # a double click, or the page sent again
    assert second.status_code == 302 and second.headers["Location"] == first.headers["Location"]
    assert instances(store) == 1
    with store.read() as s:
        data = s.scalars(select(LogEntry.input)).one()["data"]
    assert "request_id" not in data and "csrf_token" not in data and "paid" not in data


def test_a_task_page_submitted_twice_completes_once(pages, rt, store):
    view = rt.start("contract_review", "rep.wang", contract(delivery_date="2027-01-15"), at=T0)
    review = the_task(view, "dm_review")
    dm = pages("dm.zhou")
    request_id = _request_id(dm.get(f"/tasks/{review.id}").get_data(as_text=True))
    form = {"decision": "approve", "action": "complete", "request_id": request_id}
    assert dm.post(f"/tasks/{review.id}", data=form).status_code == 302
    again = dm.post(f"/tasks/{review.id}", data=form)
    assert again.status_code == 302, again.get_data(as_text=True)[-2000:]
    with store.read() as s:
        assert s.scalar(select(func.count()).select_from(LogEntry).where(
            LogEntry.command == "complete")) == 1
        assert s.scalar(select(func.count()).select_from(TaskDraft)) == 0


# --- the company's forms: no step may write what the engine computes ----------------------------

def test_no_form_lets_a_step_write_what_a_script_a_service_or_a_rule_computes():
    """The values scripts, service tasks and DMN decisions compute (balance, paid, approval_level,
    ...) are shown read-only where a form shows them, never writable: a step that could write
    one could skip what it decides (issue 8: the warehouse writing `paid`)."""
    import ast

    from lxml import etree
    ns = {"bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
          "spiffworkflow": "http://spiffworkflow.org/bpmn/schema/1.0/core"}
    decided = {el.get("name") for dmn in (ROOT / "bpmn").glob("*.dmn")
               for el in etree.parse(str(dmn)).iter("{*}output")}
    assert {"deviation_approver", "deposit_ratio", "balance_at"} <= decided
    for bpmn in (ROOT / "bpmn").glob("*.bpmn"):
        tree = etree.parse(str(bpmn))
        computed = set(decided) | {"initiator"}
        scripts = [*tree.iterfind(".//bpmn:script", ns), *tree.iterfind(".//spiffworkflow:postScript", ns)]
        for script in scripts:
            for node in ast.walk(ast.parse(script.text or "")):
                # `x = None` (or another literal: "", False, []) computes nothing: it defaults an
                # optional field of a later form (`try: reason / except NameError: reason = None`)
                # or clears an earlier answer before the step is asked again; a name counts once
                # any script gives it a computed value
                if isinstance(node, ast.Assign) and (isinstance(node.value, ast.Constant) or (
                        isinstance(node.value, (ast.List, ast.Dict)) and not list(ast.iter_child_nodes(node.value)))):
                    continue
                targets = node.targets if isinstance(node, ast.Assign) else \
                    [node.target] if isinstance(node, ast.AugAssign) else []
                computed |= {t.id for t in targets if isinstance(t, ast.Name)}
        computed |= {op.get("resultVariable") for op in tree.iterfind(".//spiffworkflow:serviceTaskOperator", ns)
                     if op.get("resultVariable")}
        if bpmn.stem == "order_to_settlement":
            assert {"paid", "balance", "deposit_required", "order_no", "reservation"} <= computed
        for form in (ROOT / "forms").glob(f"{bpmn.stem}.*.json"):
            if form.name.endswith(".cases.json"):  # model tests (engine.modeltests), not a form
                continue
            props = json.loads(form.read_text(encoding="utf-8"))["properties"]
            writable = {k for k, v in props.items() if not v.get("readOnly")}
            assert not writable & computed, f"{form.name} lets its step write {sorted(writable & computed)}"
