"""The JSON API: tokens, the inbox, start and complete with every error status, OpenAPI."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from engine import versions
from engine.runtime import Runtime
from engine.store import Comment, Instance
from processes import LOOKUPS, SERVICES

from .conftest import DATA, snapshot

ROOT = DATA.parent.parent
CONTRACT = {"customer": "C-A01", "amount": 200000, "quote_price": 100, "price": 92,
            "payment_terms": "30% deposit, balance on delivery", "delivery_date": "2099-12-20",
            "quote_payment_terms": "30% deposit, balance on delivery", "quote_delivery_date": "2099-12-20"}


@pytest.fixture
def client(store):
    from web import create_app
    versions.deploy(store, [ROOT / "bpmn"])
    app = create_app(Runtime(store, SERVICES, lookups=LOOKUPS), {"TESTING": True})
    return app.test_client()


def token(client, username: str) -> dict:
    reply = client.post("/api/v1/tokens", json={"username": username, "password": "demo"})
    assert reply.status_code == 201, reply.json
    return {"Authorization": f"Bearer {reply.json['token']}"}


def test_tokens_and_401(client):
    assert client.get("/api/v1/tasks").status_code == 401
    assert client.get("/api/v1/tasks").json["error"].startswith("sign in")
    bad = client.post("/api/v1/tokens", json={"username": "dm.zhou", "password": "nope"})
    assert bad.status_code == 401 and bad.json == {"error": "wrong username or password", "fields": {}}
    assert client.get("/api/v1/tasks", headers={"Authorization": "Bearer forged"}).status_code == 401
    assert client.get("/api/v1/me", headers=token(client, "dm.zhou")).json["roles"] == ["dept_manager"]


def test_contract_walk_and_every_error_status(client, store):
    rep, dm = token(client, "rep.wang"), token(client, "dm.zhou")
    refused = client.post("/api/v1/processes/contract_review/instances", headers=rep,
                          json={"data": {**CONTRACT, "customer": "C-NOPE", "amount": -1}})
    assert refused.status_code == 422
    assert set(refused.json["fields"]) == {"customer", "amount"}
    with store.read() as s:
        assert s.scalar(select(func.count()).select_from(Instance)) == 0
    assert client.post("/api/v1/processes/nope/instances", headers=rep, json={}).status_code == 404
    assert client.post("/api/v1/processes/contract_review/instances", headers=rep,
                       data="not json", content_type="application/json").status_code == 400

    started = client.post("/api/v1/processes/contract_review/instances", headers=rep, json={"data": CONTRACT})
    assert started.status_code == 201
    instance_id = started.json["id"]
    inbox = client.get("/api/v1/tasks?sort=amount&desc=1", headers=dm).json
    assert inbox["total"] == 1
    task = inbox["tasks"][0]
    assert {"id", "instance_id", "process_id", "name", "role", "assignee", "due"} <= task.keys()
    assert client.get("/api/v1/tasks?sort=nonsense", headers=dm).status_code == 400

    before = snapshot(store, instance_id)
    assert client.post(f"/api/v1/tasks/{task['id']}/complete", headers=rep,
                       json={"data": {"decision": "approve"}}).status_code == 403
    invalid = client.post(f"/api/v1/tasks/{task['id']}/complete", headers=dm, json={"data": {"decision": "reject"}})
    assert invalid.status_code == 422 and "comment" in invalid.json["fields"]
    assert snapshot(store, instance_id) == before

    done = client.post(f"/api/v1/tasks/{task['id']}/complete", headers=dm,
                       json={"data": {"decision": "approve", "comment": "ok"}})
    assert done.status_code == 200 and done.json["tasks"][0]["role"] == "vp_sales"
    again = client.post(f"/api/v1/tasks/{task['id']}/complete", headers=dm,
                        json={"data": {"decision": "approve", "comment": "ok"}})
    assert again.status_code == 409 and "already done" in again.json["error"]
    assert client.post("/api/v1/tasks/00000000-0000-0000-0000-000000000000/claim", headers=dm).status_code == 404

    history = client.get(f"/api/v1/instances/{instance_id}/history", headers=dm).json
    assert [h["command"] for h in history] == ["start", "complete"]
    assert client.get(f"/api/v1/instances/{instance_id}", headers=dm).json["status"] == "running"


def test_openapi_describes_every_api_route(client):
    doc = client.get("/api/openapi.json").json
    assert doc["openapi"].startswith("3.")
    described = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    app = client.application
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1"):
            continue
        path = rule.rule[len("/api"):].replace("<", "{").replace(">", "}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method.lower()) in described, (path, method)


def test_an_instance_is_shown_only_to_those_who_may_see_it(client):
    """Its initiator, whoever may act on an open task, whoever acted on it, and auditors; not a
    colleague with nothing to do with it (the rule is the engine's: access.may_view_instance)."""
    rep, dm = token(client, "rep.wang"), token(client, "dm.zhou")
    instance_id = client.post("/api/v1/processes/contract_review/instances", headers=rep,
                              json={"data": CONTRACT}).json["id"]
    for path in (f"/api/v1/instances/{instance_id}", f"/api/v1/instances/{instance_id}/history"):
        for who in (rep, dm, token(client, "audit.han")):
            assert client.get(path, headers=who).status_code == 200, path
        refused = client.get(path, headers=token(client, "wh.wei"))  # the answer for no such instance
        assert refused.status_code == 404 and refused.json["error"] == f"there is no instance {instance_id}"
    task = client.get("/api/v1/tasks", headers=dm).json["tasks"][0]
    client.post(f"/api/v1/tasks/{task['id']}/complete", headers=dm, json={"data": {"decision": "approve", "comment": "ok"}})
    # dm.zhou acted on it and no longer has an open task there: still his to see
    assert client.get(f"/api/v1/instances/{instance_id}", headers=dm).status_code == 200
    assert client.get("/api/v1/instances/nope", headers=dm).status_code == 404


def test_the_inbox_pages_by_position(client):
    rep, dm = token(client, "rep.wang"), token(client, "dm.zhou")
    for amount in (200000, 210000, 220000):
        client.post("/api/v1/processes/contract_review/instances", headers=rep, json={"data": {**CONTRACT, "amount": amount}})
    first = client.get("/api/v1/tasks?per_page=2&sort=amount", headers=dm).json
    assert (first["total"], first["pages"], first["prev_before"]) == (3, 2, None)
    second = client.get(f"/api/v1/tasks?per_page=2&sort=amount&page=2&after={first['next_after']}", headers=dm).json
    assert [t["amount"] for t in first["tasks"] + second["tasks"]] == [200000, 210000, 220000]
    assert second["next_after"] is None
    back = client.get(f"/api/v1/tasks?per_page=2&sort=amount&before={second['prev_before']}", headers=dm).json
    assert [t["id"] for t in back["tasks"]] == [t["id"] for t in first["tasks"]]
    refused = client.get(f"/api/v1/tasks?per_page=2&sort=due&after={first['next_after']}", headers=dm)
    assert refused.status_code == 400 and set(refused.json["fields"]) == {"after"}


def test_only_those_who_may_work_on_a_task_comment_on_it(client, store):
    rep, dm = token(client, "rep.wang"), token(client, "dm.zhou")
    client.post("/api/v1/processes/contract_review/instances", headers=rep, json={"data": CONTRACT})
    task = client.get("/api/v1/tasks", headers=dm).json["tasks"][0]
    refused = client.post(f"/api/v1/tasks/{task['id']}/comments", headers=token(client, "wh.wei"), json={"body": "x"})
    assert refused.status_code == 404 and refused.json["error"] == f"there is no open task {task['id']}"
    refused = client.post(f"/api/v1/tasks/{task['id']}/comments", headers=rep, json={"body": "x"})
    assert refused.status_code == 403 and refused.json["error"] == f"rep.wang may not comment on task {task['id']}"
    assert client.post(f"/api/v1/tasks/{task['id']}/comments", headers=dm, json={"body": "ok"}).status_code == 201
    with store.read() as s:
        assert [c.body for c in s.scalars(select(Comment))] == ["ok"]


def test_a_script_failing_on_the_data_is_a_422_naming_the_incident_not_a_500(store):
    """An error the user's data causes is a 4xx: the step is rolled back and an incident records it."""
    from web import create_app
    versions.deploy(store, [ROOT / "tests" / "data" / "runtime" / "failing.bpmn"])
    client = create_app(Runtime(store), {"TESTING": True}).test_client()
    rep = token(client, "rep.wang")
    started = client.post("/api/v1/processes/failing/instances", headers=rep, json={"data": {}})
    assert started.status_code == 201, started.json
    task_id = started.json["tasks"][0]["id"]
    failed = client.post(f"/api/v1/tasks/{task_id}/complete", headers=rep, json={"data": {"amount": 0}})
    assert failed.status_code == 422, failed.json
    assert "ZeroDivisionError" in failed.json["error"] and "incident" in failed.json["error"]
    assert client.get(f"/api/v1/tasks/{task_id}", headers=rep).status_code == 200  # still open
