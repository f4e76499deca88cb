"""The "my account" page: a signed-in person changes their own password (the current one checked
and counted like a sign-in) and lists and revokes their own API tokens."""
from __future__ import annotations

import pytest

from engine import access, clock, versions
from engine.runtime import Runtime
from processes import LOOKUPS, SERVICES

from .conftest import DATA
from .test_sessions import sign_in

APPROVAL = DATA / "runtime" / "approval.bpmn"
EN = {"Accept-Language": "en"}


@pytest.fixture
def app(store):
    from web import create_app
    versions.deploy(store, [APPROVAL])
    return create_app(Runtime(store, SERVICES, lookups=LOOKUPS), {"TESTING": True, "WTF_CSRF_ENABLED": False})


def change(client, current="demo", new="a new secret", again=None):
    return client.post("/account/password", headers=EN, data={
        "current": current, "new": new, "again": new if again is None else again})


def issue(app, username="dm.zhou", password="demo") -> dict:
    return app.test_client().post("/api/v1/tokens", json={"username": username, "password": password}).json


def bearer(token: dict) -> dict:
    return {"Authorization": f"Bearer {token['token']}"}


def field_error(page: str, field: str) -> str:
    """The error shown next to a field (the page marks it with data-error-for)."""
    marker = f'data-error-for="{field}">'
    assert marker in page, f"no error next to {field}"
    return page.split(marker, 1)[1].split("<", 1)[0]


def still_signed_in(client) -> bool:
    return client.get("/").status_code == 200


def test_the_header_links_the_account_page_which_lists_ones_tokens(app):
    mine, theirs = issue(app), issue(app, "rep.wang")
    client, _ = sign_in(app, "dm.zhou")
    assert 'href="/account"' in client.get("/", headers=EN).get_data(as_text=True)
    page = client.get("/account", headers=EN).get_data(as_text=True)
    assert "Change password" in page and mine["id"] in page and theirs["id"] not in page
    assert mine["token"] not in page
    assert app.test_client().get("/account").status_code == 302  # signed out: to the sign-in page
    zh = client.get("/account", headers={"Accept-Language": "zh-CN"}).get_data(as_text=True)
    assert "我的账户" in zh and "修改密码" in zh and "有效" in zh  # in Chinese, like every page
    refused = client.post("/account/password", headers={"Accept-Language": "zh-CN"},
                          data={"current": "demo", "new": "short", "again": "short"})
    assert "新密码至少需要 8 个字符" in field_error(refused.get_data(as_text=True), "new")


def test_a_wrong_current_password_is_refused_changes_nothing_and_counts_as_a_failed_sign_in(app, monkeypatch):
    token = issue(app)
    client, _ = sign_in(app, "dm.zhou")
    reply = change(client, current="wrong guess")
    assert reply.status_code == 200
    assert "current password is not right" in field_error(reply.get_data(as_text=True), "current")
    assert still_signed_in(client) and app.test_client().get("/api/v1/me", headers=bearer(token)).status_code == 200
    assert sign_in(app, "dm.zhou")[1].status_code == 302  # the old password still works
    # every wrong guess counts against the same per-user limit as /login (10 failures)
    hashed = []
    real = access.check_password_hash
    monkeypatch.setattr(access, "check_password_hash", lambda h, p: hashed.append(1) or real(h, p))
    answers = [change(client, current=f"guess{i}").status_code for i in range(12)]
    assert answers[:9] == [200] * 9 and set(answers[9:]) == {429}
    assert len(hashed) == 9  # refused before hashing, as /login
    assert sign_in(app, "dm.zhou", address="10.3.3.3")[1].status_code == 429  # /login shares the count
    assert change(client).status_code == 429  # even the right one, until the window passes
    assert sign_in(app, "dm.zhou", "a new secret", address="10.3.3.4")[1].status_code == 429


@pytest.mark.parametrize("new, again, field, words", [
    ("a new secret", "a new secreT", "again", "does not match"),
    ("short", "short", "new", "at least 8 characters"),
    ("seven77", "seven77", "new", "at least 8 characters"),
    ("x" * 201, "x" * 201, "new", "at most 200 characters"),
])
def test_a_bad_new_password_is_refused_naming_its_field(app, new, again, field, words):
    token = issue(app)
    client, _ = sign_in(app, "dm.zhou")
    reply = change(client, new=new, again=again)
    assert reply.status_code == 200 and words in field_error(reply.get_data(as_text=True), field)
    assert still_signed_in(client) and app.test_client().get("/api/v1/me", headers=bearer(token)).status_code == 200
    assert sign_in(app, "dm.zhou", new)[1].status_code == 200  # not changed
    assert sign_in(app, "dm.zhou")[1].status_code == 302


def test_the_new_password_must_differ_from_the_current_one(app, store):
    with store.write() as session:
        access.set_password(session, "dm.zhou", "the same secret", clock.now())
    client, _ = sign_in(app, "dm.zhou", "the same secret")
    reply = change(client, current="the same secret", new="the same secret")
    assert "differ from the current" in field_error(reply.get_data(as_text=True), "new")
    assert still_signed_in(client)


def test_a_new_password_ends_every_other_session_and_token_but_not_this_one(app):
    token = issue(app)
    client, _ = sign_in(app, "dm.zhou")
    other, _ = sign_in(app, "dm.zhou", address="10.0.0.2")
    copied = app.test_client()
    copied.set_cookie("session", client.get_cookie("session").value)  # this browser's old cookie
    reply = change(client)
    assert reply.status_code == 302 and reply.headers["Location"].endswith("/account")
    page = client.get("/account", headers=EN).get_data(as_text=True)
    assert "Your password is changed" in page
    assert still_signed_in(client)
    for signed_out in (other, copied):
        reply = signed_out.get("/")
        assert reply.status_code == 302 and "/login" in reply.headers["Location"]
    assert app.test_client().get("/api/v1/me", headers=bearer(token)).status_code == 401
    assert token["id"] in page and "revoked" in page
    assert sign_in(app, "dm.zhou")[1].status_code == 200
    assert sign_in(app, "dm.zhou", "a new secret")[1].status_code == 302


def test_the_revoke_button_revokes_only_ones_own_token(app):
    first, second, theirs = issue(app), issue(app), issue(app, "rep.wang")
    client, _ = sign_in(app, "dm.zhou")
    page = client.get("/account", headers=EN).get_data(as_text=True)
    assert f'action="/account/tokens/{first["id"]}/revoke"' in page
    reply = client.post(f"/account/tokens/{theirs['id']}/revoke", headers=EN)
    assert reply.status_code == 404 and "no API token" in reply.get_data(as_text=True)
    api = app.test_client()
    assert api.get("/api/v1/me", headers=bearer(theirs)).status_code == 200
    reply = client.post(f"/account/tokens/{first['id']}/revoke", headers=EN)
    assert reply.status_code == 302
    assert "is revoked" in client.get("/account", headers=EN).get_data(as_text=True)
    assert api.get("/api/v1/me", headers=bearer(first)).status_code == 401
    assert api.get("/api/v1/me", headers=bearer(second)).status_code == 200
    assert still_signed_in(client)


def test_the_account_forms_need_the_pages_csrf_token(store):
    from web import create_app
    versions.deploy(store, [APPROVAL])
    app = create_app(Runtime(store, SERVICES, lookups=LOOKUPS), {"TESTING": True})
    token = issue(app)
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    csrf = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    client.post("/login", data={"username": "dm.zhou", "password": "demo", "csrf_token": csrf})
    for path, data in (("/account/password", {"current": "demo", "new": "a new secret", "again": "a new secret"}),
                       (f"/account/tokens/{token['id']}/revoke", {})):
        assert client.post(path, data=data).status_code == 400
        assert client.post(path, data={**data, "csrf_token": "forged"}).status_code == 400
    assert app.test_client().get("/api/v1/me", headers=bearer(token)).status_code == 200
    with store.read() as session:  # the password unchanged
        assert access.check_password(session, "dm.zhou", "demo") is not None
    page = client.get("/account").get_data(as_text=True)
    csrf = page.split('name="csrf_token" value="')[1].split('"')[0]
    assert client.post(f"/account/tokens/{token['id']}/revoke", data={"csrf_token": csrf}).status_code == 302
    assert app.test_client().get("/api/v1/me", headers=bearer(token)).status_code == 401


def test_the_minimum_length_is_the_engines_rule_for_every_door(store):
    with store.write() as session, pytest.raises(access.PasswordRefused) as refused:
        access.set_password(session, "dm.zhou", "seven77", clock.now())
    assert refused.value.field == "new" and "at least 8 characters" in str(refused.value)
    with store.write() as session, pytest.raises(access.PasswordRefused) as refused:
        access.set_password(session, "dm.zhou", "demo" * 2, clock.now())
        access.set_password(session, "dm.zhou", "demo" * 2, clock.now())
    assert "differ from the current" in str(refused.value)
