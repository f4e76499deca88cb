"""Sessions and sign-in (issue 8, "What to build" 6): sign-out and a new password end every
session, tokens expire and can be listed and revoked, Secure cookies, the sign-in rate limit, and
CSRF/Origin on the JSON API when it is called with the browser's session.
"""
from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest

from engine import access, clock, versions
from engine.runtime import Runtime
from processes import LOOKUPS, SERVICES

from .conftest import DATA

ROOT = DATA.parent.parent
APPROVAL = DATA / "runtime" / "approval.bpmn"


@pytest.fixture
def app(store):
    from web import create_app
    versions.deploy(store, [APPROVAL])
    app = create_app(Runtime(store, SERVICES, lookups=LOOKUPS), {"TESTING": True, "WTF_CSRF_ENABLED": False})
    return app


def sign_in(app, username: str, password: str = "demo", address: str = "10.0.0.1"):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    reply = client.post("/login", data={"username": username, "password": password})
    return client, reply


def session_cookie(client) -> str:
    return client.get_cookie("session").value


def test_a_copied_session_cookie_stops_working_after_sign_out(app):
    mine, reply = sign_in(app, "dm.zhou")
    assert reply.status_code == 302
    thief = app.test_client()
    thief.set_cookie("session", session_cookie(mine))
    other_device, _ = sign_in(app, "dm.zhou", address="10.0.0.2")
    assert thief.get("/").status_code == 200 and other_device.get("/").status_code == 200
    mine.post("/logout")
    for client in (thief, other_device):  # every session of the user ended, copies included
        reply = client.get("/")
        assert reply.status_code == 302 and "/login" in reply.headers["Location"]
    assert thief.get("/api/v1/me").status_code == 401
    again, reply = sign_in(app, "dm.zhou")
    assert again.get("/").status_code == 200


def test_a_new_password_ends_every_session_and_revokes_every_token(app, store):
    client, _ = sign_in(app, "dm.zhou")
    api = app.test_client()
    bearer = {"Authorization": "Bearer " + api.post("/api/v1/tokens", json={
        "username": "dm.zhou", "password": "demo"}).json["token"]}
    assert api.get("/api/v1/me", headers=bearer).status_code == 200
    with store.write() as session:
        access.set_password(session, "dm.zhou", "a new secret", clock.now())
    assert client.get("/").status_code == 302
    assert api.get("/api/v1/me", headers=bearer).status_code == 401
    assert sign_in(app, "dm.zhou")[1].status_code == 200            # the old password: refused
    assert sign_in(app, "dm.zhou", "a new secret")[1].status_code == 302


def test_tokens_expire_and_can_be_listed_and_revoked(app, store, monkeypatch):
    api = app.test_client()
    issued = api.post("/api/v1/tokens", json={"username": "rep.wang", "password": "demo"}).json
    mine = {"Authorization": f"Bearer {issued['token']}"}
    second = api.post("/api/v1/tokens", json={"username": "rep.wang", "password": "demo"}).json
    theirs = {"Authorization": "Bearer " + api.post("/api/v1/tokens", json={
        "username": "dm.zhou", "password": "demo"}).json["token"]}
    listed = api.get("/api/v1/tokens", headers=mine).json
    assert {t["id"] for t in listed} == {issued["id"], second["id"]} and all(t["active"] for t in listed)
    assert issued["token"] not in json.dumps(listed)                 # ids, never the tokens
    # revoking another user's token is not possible; one's own stops working at once
    assert api.delete(f"/api/v1/tokens/{issued['id']}", headers=theirs).status_code == 404
    revoked = api.delete(f"/api/v1/tokens/{second['id']}", headers=mine)
    assert revoked.status_code == 200 and revoked.json["active"] is False and revoked.json["revoked_at"]
    assert api.get("/api/v1/me", headers={"Authorization": f"Bearer {second['token']}"}).status_code == 401
    assert api.get("/api/v1/me", headers=mine).status_code == 200
    # expiry: a week by default (BPM_TOKEN_LIFETIME_HOURS)
    monkeypatch.setenv("BPM_NOW", (clock.parse_instant(issued["expires_at"]) + timedelta(seconds=1)).isoformat())
    reply = api.get("/api/v1/me", headers=mine)
    assert reply.status_code == 401 and "expired" in reply.json["error"]
    monkeypatch.setenv("BPM_NOW", (clock.parse_instant(issued["expires_at"]) - timedelta(seconds=1)).isoformat())
    assert api.get("/api/v1/me", headers=mine).status_code == 200


def test_the_command_line_issues_lists_and_revokes_tokens(tmp_path, monkeypatch, capsys):
    from bpm.cli import main
    monkeypatch.setenv("BPM_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    assert main(["init", "--demo"]) == 0
    capsys.readouterr()

    def run(*args):
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err
    code, out, _ = run("token", "issue", "--as", "fin.chu", "--hours", "1", "--json")
    issued = json.loads(out)
    code, out, _ = run("token", "list", "--as", "fin.chu", "--json")
    assert code == 0 and [t["id"] for t in json.loads(out)] == [issued["id"]] and json.loads(out)[0]["active"]
    code, out, _ = run("token", "revoke", issued["id"], "--as", "fin.chu")
    assert code == 0 and "revoked" in out
    code, out, _ = run("token", "list", "--as", "fin.chu", "--json")
    assert json.loads(out)[0]["active"] is False
    code, _, err = run("token", "revoke", issued["id"], "--as", "rep.wang")
    assert code == 1 and err.count("\n") == 1 and "has no token" in err
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    code, _, err = run("password", "fin.chu")
    assert code == 1 and "at least 8" in err
    monkeypatch.setattr("sys.stdin", io.StringIO("long enough now\n"))
    assert run("password", "fin.chu")[0] == 0


def test_secure_cookies_by_setting_and_by_default_outside_localhost(store):
    from web import create_app
    runtime = Runtime(store, SERVICES, lookups=LOOKUPS)

    def cookie(app, base_url):
        client = app.test_client()
        reply = client.get("/login", base_url=base_url)
        return reply.headers.get("Set-Cookie", "")
    default = create_app(runtime, {"TESTING": True})
    assert "Secure" in cookie(default, "https://bpm.example.com")
    assert "Secure" in cookie(default, "http://10.1.2.3:5000")
    assert "Secure" not in cookie(default, "http://127.0.0.1:5000")
    assert "Secure" not in cookie(default, "http://localhost")
    off = create_app(runtime, {"TESTING": True, "BPM_SECURE_COOKIES": False})
    assert "session=" in cookie(off, "http://bpm.example.com") and "Secure" not in cookie(off, "http://bpm.example.com")
    on = create_app(runtime, {"TESTING": True, "BPM_SECURE_COOKIES": True})
    assert "Secure" in cookie(on, "http://localhost")


def test_sign_in_is_refused_before_hashing_after_too_many_failures(app, monkeypatch):
    """Issue 8: 60 wrong passwords then the right one signed in. Now the user name is refused
    after 10 failures (BPM_SIGNIN_LIMIT_USER) from any address, before any hash is computed."""
    hashed = []
    real = access.check_password_hash
    monkeypatch.setattr(access, "check_password_hash", lambda h, p: hashed.append(1) or real(h, p))
    answers = [sign_in(app, "dm.zhou", f"guess{i}", address=f"10.9.0.{i % 7}")[1].status_code for i in range(60)]
    assert answers[:10] == [200] * 10 and set(answers[10:]) == {429}
    assert len(hashed) == 10
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "10.0.0.99"
    reply = client.post("/login", data={"username": "dm.zhou", "password": "demo"},
                        headers={"Accept-Language": "en"})
    assert reply.status_code == 429 and len(hashed) == 10
    page = reply.get_data(as_text=True)  # the app's own page, in the user's language
    assert 'lang="en"' in page and "Too many failed sign-ins for this user" in page
    api = app.test_client()
    reply = api.post("/api/v1/tokens", json={"username": "dm.zhou", "password": "demo"})
    assert reply.status_code == 429 and reply.json["error"].startswith("too many failed sign-ins")
    # others sign in as before, also from the guessers' addresses (under their own limit)
    assert sign_in(app, "rep.wang", address="10.9.0.1")[1].status_code == 302
    assert sign_in(app, "vp.qian", address="10.0.0.50")[1].status_code == 302


def test_one_address_guessing_many_names_is_refused(app):
    answers = [sign_in(app, f"user{i}", "x", address="10.66.0.1")[1].status_code for i in range(35)]
    assert answers[:30] == [200] * 30 and set(answers[30:]) == {429}
    assert sign_in(app, "rep.wang", address="10.66.0.1")[1].status_code == 429
    assert sign_in(app, "rep.wang", address="10.66.0.2")[1].status_code == 302


def test_the_json_api_refuses_a_change_from_another_site_made_with_the_session(app, store):
    """Issue 8: a same-site page could claim a task for a signed-in manager."""
    rep = app.test_client()
    bearer = {"Authorization": "Bearer " + rep.post("/api/v1/tokens", json={
        "username": "rep.wang", "password": "demo"}).json["token"]}
    started = rep.post("/api/v1/processes/approval/instances", headers=bearer, json={"data": {}})
    task = started.json["tasks"][0]["id"]
    rep.post(f"/api/v1/tasks/{task}/complete", headers=bearer, json={"data": {}})
    review = rep.get("/api/v1/tasks", headers={"Authorization": bearer["Authorization"].replace(
        bearer["Authorization"], "Bearer " + rep.post("/api/v1/tokens", json={
            "username": "dm.zhou", "password": "demo"}).json["token"])}).json["tasks"][0]["id"]
    manager, _ = sign_in(app, "dm.zhou")
    for headers in ({"Origin": "http://evil.localhost"}, {"Origin": "https://other.example.com"},
                    {"Referer": "http://evil.localhost/page"}, {}, {"X-CSRFToken": "forged"}):
        refused = manager.post(f"/api/v1/tasks/{review}/claim", headers=headers)
        assert refused.status_code == 403 and "from this site" in refused.json["error"], headers
    assert manager.get(f"/api/v1/tasks/{review}").json["task"]["assignee"] is None
    assert manager.get("/api/v1/me").status_code == 200  # reading stays open to the session
    claimed = manager.post(f"/api/v1/tasks/{review}/claim", headers={"Origin": "http://localhost"})
    assert claimed.status_code == 200 and claimed.json["assignee"] == "dm.zhou"


def test_the_pages_csrf_token_lets_the_session_call_the_api(store):
    from web import create_app
    app = create_app(Runtime(store, SERVICES, lookups=LOOKUPS), {"TESTING": True})
    versions.deploy(store, [APPROVAL])
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    assert client.post("/login", data={"username": "rep.wang", "password": "demo",
                                       "csrf_token": token}).status_code == 302
    page = client.get("/").get_data(as_text=True)  # a new session at sign-in: the page's new token
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    started = client.post("/api/v1/processes/approval/instances", json={"data": {}},
                          headers={"X-CSRFToken": token})
    assert started.status_code == 201, started.json
