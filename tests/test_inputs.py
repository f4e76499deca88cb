"""Input that cannot break anything (issue 8, "What to build" 5): each bad case of the issue
through the API (SQLite and PostgreSQL), a sample through the pages and the command line.

A refusal is the API's JSON shape with a 4xx, or the app's own page in the user's language;
nothing is stored; the inbox keeps answering.
"""
from __future__ import annotations

import base64
import json

import pytest
from sqlalchemy import func, select

from engine import versions
from engine.runtime import InvalidInput, NotFound, Runtime
from engine.store import Comment
from processes import LOOKUPS, SERVICES

from .conftest import DATA, instances

ROOT = DATA.parent.parent
APPROVAL = DATA / "runtime" / "approval.bpmn"   # no forms: its tasks take any JSON object
CONTRACT = {"customer": "C-A01", "amount": 200000, "quote_price": 100, "price": 92,
            "payment_terms": "30% deposit, balance on delivery", "delivery_date": "2099-12-20",
            "quote_payment_terms": "30% deposit, balance on delivery", "quote_delivery_date": "2099-12-20"}


@pytest.fixture
def app(store):
    from web import create_app
    versions.deploy(store, [ROOT / "bpmn"])
    versions.deploy(store, [APPROVAL])
    return create_app(Runtime(store, SERVICES, lookups=LOOKUPS), {"TESTING": True})


@pytest.fixture
def client(app):
    return app.test_client()


def token(client, username: str) -> dict:
    reply = client.post("/api/v1/tokens", json={"username": username, "password": "demo"})
    assert reply.status_code == 201, reply.json
    return {"Authorization": f"Bearer {reply.json['token']}"}


def api_refused(reply, *statuses: int) -> dict:
    """A refusal in the API's shape: one of `statuses`, {"error": sentence, "fields": {...}}."""
    assert reply.status_code in (statuses or (400, 422)), (reply.status_code, reply.data[:300])
    body = reply.get_json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], reply.data[:300]
    assert isinstance(body.get("fields"), dict)
    return body


def raw_post(client, path: str, text: str, headers: dict):
    return client.post(path, data=text, content_type="application/json", headers=headers)


# --- numbers ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("number", ["1e999", "-1e999", "NaN", "Infinity", "1e400", "1e16",
                                    "123456789012345678901234567890"])
def test_numbers_that_are_not_finite_or_too_big_are_refused_and_the_inbox_keeps_answering(
        client, store, number):
    rep = token(client, "rep.wang")
    for process in ("approval", "contract_review"):
        data = json.dumps({**CONTRACT}).replace('"amount": 200000', f'"amount": {number}')
        body = api_refused(raw_post(client, f"/api/v1/processes/{process}/instances",
                                    '{"data": %s}' % data, rep))
        assert "amount" in body["fields"], body
    assert instances(store) == 0
    for who in ("rep.wang", "dm.zhou"):
        assert client.get("/api/v1/tasks", headers=token(client, who)).status_code == 200


def test_a_task_completed_with_infinity_is_refused_and_changes_nothing(client, store):
    rep = token(client, "rep.wang")
    started = client.post("/api/v1/processes/approval/instances", headers=rep, json={"data": {"amount": 10}})
    assert started.status_code == 201
    task = started.json["tasks"][0]["id"]
    body = api_refused(raw_post(client, f"/api/v1/tasks/{task}/complete",
                                '{"data": {"amount": 1e999, "lines": [{"qty": NaN}]}}', rep))
    assert set(body["fields"]) == {"amount", "lines/0/qty"}
    assert client.get(f"/api/v1/instances/{started.json['id']}", headers=rep).json["data"]["amount"] == 10
    assert client.get("/api/v1/tasks", headers=rep).status_code == 200


# --- text ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, problem", [
    ("a\\u0000b", "NUL"), ("\\ud800", "surrogate"), ("x" * 20_000, "at most"),
])
def test_nul_lone_surrogates_and_over_long_text_are_refused(client, store, text, problem):
    rep = token(client, "rep.wang")
    for process in ("approval", "contract_review"):
        reply = raw_post(client, f"/api/v1/processes/{process}/instances",
                         '{"data": {"amount": 5, "customer": "C-A01", "note": "%s"}}' % text, rep)
        body = api_refused(reply)
        assert problem in json.dumps(body, ensure_ascii=False) or reply.status_code == 422, body
    started = client.post("/api/v1/processes/approval/instances", headers=rep, json={"data": {}})
    task = started.json["tasks"][0]["id"]
    for path, key in ((f"/api/v1/tasks/{task}/comments", "body"), (f"/api/v1/tasks/{task}/delegate", "to"),
                      (f"/api/v1/tasks/{task}/delegate", "note")):
        extra = ', "to": "rep.feng"' if key == "note" else ""
        api_refused(raw_post(client, path, '{"%s": "%s"%s}' % (key, text, extra), rep), 400, 404, 422)
    api_refused(raw_post(client, f"/api/v1/tasks/{task}/complete", '{"data": {"note": "%s"}}' % text, rep))
    api_refused(client.put(f"/api/v1/tasks/{task}/draft", data='{"data": {"note": "%s"}}' % text,
                           content_type="application/json", headers=rep))
    api_refused(raw_post(client, "/api/v1/messages/%s" % "payment_received",
                         '{"data": {"note": "%s"}, "correlation": {"order_no": "%s"}}' % (text, text), rep),
                400, 403, 404, 422)
    api_refused(raw_post(client, "/api/v1/tokens", '{"username": "%s", "password": "demo"}' % text, {}),
                400, 401)
    with store.read() as s:
        assert s.scalar(select(func.count()).select_from(Comment)) == 0
    assert instances(store) == 1


def test_names_beyond_their_columns_are_refused(client, store):
    """Fields the inbox projects into columns (business key, customer: 200) must fit them."""
    rep = token(client, "rep.wang")
    for field in ("business_key", "order_no", "customer", "name"):
        body = api_refused(client.post("/api/v1/processes/approval/instances", headers=rep,
                                       json={"data": {field: "名" * 201}}))
        assert body["fields"] == {field: "must have at most 200 characters"}
    assert client.post("/api/v1/processes/approval/instances", headers=rep,
                       json={"data": {"customer": "名" * 200}}).status_code == 201


def test_json_nested_a_thousand_deep_is_refused(client, store):
    rep = token(client, "rep.wang")
    deep = "[" * 1000 + "]" * 1000
    for path in ("/api/v1/processes/approval/instances", "/api/v1/processes/contract_review/instances"):
        api_refused(raw_post(client, path, '{"data": {"x": %s}}' % deep, rep))
    nested = '{"a":' * 1000 + "1" + "}" * 1000
    api_refused(raw_post(client, "/api/v1/processes/approval/instances", '{"data": %s}' % nested, rep))
    assert instances(store) == 0


def test_identifiers_with_nul_or_surrogates_are_unknown_not_a_crash(client):
    rep = token(client, "rep.wang")
    for path in ("/api/v1/tasks/a%00b", "/api/v1/instances/a%00b", "/api/v1/instances/a%00b/history"):
        api_refused(client.get(path, headers=rep), 400, 404)
    api_refused(client.post("/api/v1/tasks/a%00b/claim", headers=rep), 400, 404)
    api_refused(client.post("/api/v1/processes/a%00b/instances", headers=rep, json={}), 400, 404)
    api_refused(client.get("/api/v1/tasks?customer=a%00b", headers=rep), 400)
    api_refused(client.get("/api/v1/tasks?amount_min=nan", headers=rep), 400)


# --- paging positions --------------------------------------------------------------------------------

def _position(*parts) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(parts)).encode()).decode().rstrip("=")


FORGED = [
    "!!!", "x" * 5000, _position("due", False, "2026-01-01T00:00:00", "2026-01-01T00:00:00", "t"),
    _position("due", False, None, "2026-01-01T00:00:00+00:00", "t\u0000"),
    _position("due", False, None, "2026-01-01T00:00:00+00:00", "t" * 500),
    _position("due", False, None, "9999-12-31T23:59:59-23:59", "t"),
    _position("due", False, {"a": 1}, "2026-01-01T00:00:00+00:00", "t"),
    _position("due", False, None, 5, "t"),
    base64.urlsafe_b64encode(b'["amount", false, Infinity, "2026-01-01T00:00:00+00:00", "t"]').decode(),
    _position("amount", False, 10**30, "2026-01-01T00:00:00+00:00", "t"),
    _position("customer", False, "c\u0000", "2026-01-01T00:00:00+00:00", "t"),
    _position("customer", False, "c" * 300, "2026-01-01T00:00:00+00:00", "t"),
    base64.urlsafe_b64encode(b"[" * 1400).decode(),
]


@pytest.mark.parametrize("position", FORGED)
def test_forged_paging_positions_are_refused(client, position):
    dm = token(client, "dm.zhou")
    sort = "amount" if "amount" in base64.urlsafe_b64decode(position + "==")[:12].decode("latin-1") else (
        "customer" if "customer" in base64.urlsafe_b64decode(position + "==")[:14].decode("latin-1") else "due")
    for side in ("after", "before"):
        reply = client.get(f"/api/v1/tasks?sort={sort}&{side}={position}", headers=dm)
        body = api_refused(reply, 400)
        assert set(body["fields"]) == {side}


# --- size --------------------------------------------------------------------------------------------

def test_a_ten_megabyte_body_is_refused_before_it_is_read(client, store):
    rep = token(client, "rep.wang")
    started = client.post("/api/v1/processes/approval/instances", headers=rep, json={"data": {}})
    task = started.json["tasks"][0]["id"]
    reply = client.post(f"/api/v1/tasks/{task}/comments", headers=rep, json={"body": "x" * 10_000_000})
    api_refused(reply, 413)
    with store.read() as s:
        assert s.scalar(select(func.count()).select_from(Comment)) == 0


def test_every_api_error_is_json(client):
    rep = token(client, "rep.wang")
    api_refused(client.get("/api/v1/nothing-here", headers=rep), 404)
    api_refused(client.get("/api/nothing", headers=rep), 404)
    api_refused(client.delete("/api/v1/me", headers=rep), 405)
    api_refused(client.post("/api/v1/tasks", headers=rep), 405)
    api_refused(raw_post(client, "/api/v1/processes/approval/instances", "[1, 2]", rep), 400)
    api_refused(raw_post(client, "/api/v1/processes/approval/instances", '{"data": [1]}', rep), 400)
    api_refused(raw_post(client, "/api/v1/tasks/x/delegate", '{"to": 5}', rep), 400)
    api_refused(raw_post(client, "/api/v1/tasks/x/comments", '{"body": 5}', rep), 400, 404)


# --- through the pages --------------------------------------------------------------------------------

def signed_in(app, username: str, lang: str = "en"):
    client = app.test_client()
    client.post("/lang", data={"lang": lang})
    app.config["WTF_CSRF_ENABLED"] = False
    reply = client.post("/login", data={"username": username, "password": "demo"})
    assert reply.status_code == 302, reply.data[:500]
    return client


def test_pages_refuse_bad_input_with_the_apps_own_page(app, store):
    rep = signed_in(app, "rep.wang", "zh_CN")
    # a forged position on the inbox page: the inbox itself says so, in Chinese
    reply = rep.get(f"/?after={FORGED[2]}")
    assert reply.status_code == 400 and "<html" in reply.get_data(as_text=True)
    # NUL in a form field: the app's page, in the user's language
    reply = rep.post("/start/approval", data={"note": "a\x00b"})
    assert reply.status_code == 400 and 'lang="zh-CN"' in reply.get_data(as_text=True)
    # a long name through the start form: refused next to the field, nothing started
    reply = rep.post("/start/contract_review", data={**CONTRACT, "payment_terms": "x" * 20_000})
    assert reply.status_code == 422
    assert instances(store) == 0
    # a body over the size limit, and an unknown page: the app's page, not the server's
    reply = rep.post("/start/approval", data={"note": "x" * 10_000_000})
    assert reply.status_code == 413 and 'lang="zh-CN"' in reply.get_data(as_text=True)
    reply = rep.get("/no/such/page")
    assert reply.status_code == 404 and 'lang="zh-CN"' in reply.get_data(as_text=True)
    assert rep.get("/").status_code == 200


# --- the engine's own check, for every door --------------------------------------------------------------

def test_the_engine_refuses_for_every_door(store):
    from engine import inputs
    versions.deploy(store, [APPROVAL])
    runtime = Runtime(store)
    for data in ({"amount": float("inf")}, {"amount": float("nan")}, {"n": "\x00"}, {"n": "\ud800"},
                 {"x": [[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]}, {"customer": "c" * 201}):
        with pytest.raises(InvalidInput):
            runtime.start("approval", "rep.wang", data)
    with pytest.raises(NotFound):
        runtime.start("approval", "rep.\x00wang", {})
    assert instances(store) == 0
    assert inputs.problems({"a": [1, 2.5, "ok", None, True, {"b": "c"}]}) == {}


def test_the_command_line_says_one_sentence(tmp_path, monkeypatch, capsys):
    from bpm.cli import main
    monkeypatch.setenv("BPM_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    assert main(["init", "--demo"]) == 0
    capsys.readouterr()
    code = main(["start", "contract_review", "--as", "rep.wang",
                 "--data", json.dumps(CONTRACT).replace("200000", "NaN")])
    _, err = capsys.readouterr()
    assert code == 1 and err.count("\n") == 1 and "amount" in err and "finite" in err
    code = main(["complete", "\udcff", "--as", "rep.wang", "--data", "{}"])
    _, err = capsys.readouterr()
    assert code == 1 and err.count("\n") == 1 and "no open task" in err


def test_every_form_bounds_its_text_within_the_columns():
    """forms/*.json declare maxLength on every free-text field; projected fields fit their column."""
    from engine.inputs import COLUMN_FIELDS, MAX_TEXT
    unbounded, too_long = [], []

    def walk(form, props, prefix=""):
        for name, field in props.items():
            kind = field.get("type")
            if kind == "string" and "enum" not in field:
                limit = field.get("maxLength")
                if not isinstance(limit, int):
                    unbounded.append(f"{form}: {prefix}{name}")
                elif limit > (COLUMN_FIELDS.get(name, MAX_TEXT) if not prefix else MAX_TEXT):
                    too_long.append(f"{form}: {prefix}{name}")
            if kind == "array" and isinstance(field.get("items"), dict):
                walk(form, field["items"].get("properties") or {}, f"{prefix}{name}/")
            if kind == "object":
                walk(form, field.get("properties") or {}, f"{prefix}{name}/")
    for path in sorted(p for p in (ROOT / "forms").glob("*.json") if not p.name.endswith(".cases.json")):
        walk(path.name, json.loads(path.read_text(encoding="utf-8")).get("properties") or {})
    assert unbounded == [] and too_long == []


def test_row_numbers_a_page_never_writes_are_ignored(app):
    """A forged row field ('lines-' and 5,000 digits, or '²') is not a row: no crash, no row."""
    rep = signed_in(app, "rep.wang")
    for fields in ({"lines-" + "9" * 5000 + "-product": "x"}, {"remove_row": "lines-" + "9" * 5000},
                   {"remove_row": "lines-²"}, {"add_row": "lines-²-x"}):
        reply = rep.post("/start/contract_review", data={**CONTRACT, **fields})
        assert reply.status_code in (200, 302, 422), (list(fields)[0][:20], reply.status_code)


def test_an_infinite_amount_kept_before_the_check_does_not_break_the_inbox(app, store):
    """Rows written before input was checked may hold Infinity: the inbox shows them."""
    from sqlalchemy import update
    from engine.store import HumanTask
    rep = token(app.test_client(), "rep.wang")
    app.test_client().post("/api/v1/processes/approval/instances", headers=rep, json={"data": {"amount": 5}})
    with store.write() as s:
        s.execute(update(HumanTask).values(amount=float("inf")))
    page = signed_in(app, "rep.wang")
    assert page.get("/").status_code == 200
    assert page.get("/?sort=amount").status_code == 200
