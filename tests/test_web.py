"""The approvers' web pages through Flask's test client, on the demo organisation (password "demo"),
and the posted-form-to-JSON rules of web/forms.py.

"Now" is pinned with BPM_NOW, so due times and the not-before-today dates are stable; the
catalogs are compiled into a temporary folder, as `pybabel compile` does at install.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from html import unescape
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from sqlalchemy import func, select
from werkzeug.datastructures import MultiDict

import processes
from engine import access, versions
from engine.runtime import Runtime
from engine.store import HumanTask, Instance, TaskDraft
from web import create_app, forms

from .browser_server import compile_catalogs
from .conftest import contract, snapshot

ROOT = Path(__file__).resolve().parents[1]
FORMS = ROOT / "forms"
TRANSLATIONS = ROOT / "web" / "translations"
T0 = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)  # Monday 09:00 in China




def at(when: datetime) -> str:
    return when.isoformat()


# --- fixtures ---------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def catalogs(tmp_path_factory) -> Path:
    """The .po files compiled, as `pybabel compile -d web/translations` does."""
    return compile_catalogs(tmp_path_factory.mktemp("translations"))


@pytest.fixture
def rt(store, monkeypatch):
    monkeypatch.setenv("BPM_NOW", at(T0))
    versions.deploy(store, [ROOT / "bpmn"], actor="design.yang", at=T0)
    return Runtime(store, processes.SERVICES, lookups=processes.LOOKUPS)


@pytest.fixture
def app(rt, catalogs, tmp_path):
    return make_app(rt, catalogs, tmp_path)


def make_app(rt, catalogs: Path, tmp_path: Path):
    """The web app for tests: no CSRF, the compiled catalogs, a throw-away vendor folder."""
    return create_app(rt, {
        "TESTING": True, "SECRET_KEY": "test", "WTF_CSRF_ENABLED": False,
        "BABEL_TRANSLATION_DIRECTORIES": str(catalogs), "VENDOR_DIR": str(tmp_path / "vendor"),
    })


@pytest.fixture
def client(app):
    return app.test_client()


def sign_in(client, username: str, password: str = "demo", **query):
    return client.post("/login", query_string=query, data={"username": username, "password": password})


def as_user(app, username: str, lang: str = "en"):
    client = app.test_client()
    assert sign_in(client, username).status_code == 302
    client.post("/lang", data={"lang": lang})
    return client


def text(response) -> str:
    return unescape(response.get_data(as_text=True))




def open_task(store, instance_id: str) -> HumanTask:
    with store.read() as s:
        rows = s.scalars(select(HumanTask).where(HumanTask.instance_id == instance_id)).all()
    assert len(rows) == 1
    return rows[0]


# --- signing in -------------------------------------------------------------------------------

def test_every_page_needs_a_signed_in_user(client):
    for url in ["/", "/tasks/x", "/start", "/start/contract_review", "/instances/x", "/notifications"]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response.headers["Location"].startswith("/login?next="), url
    assert client.post("/tasks/x/claim").status_code == 302
    assert client.get("/login").status_code == 200


def test_signing_in_goes_back_to_the_page_asked_for(client):
    response = client.get("/notifications")
    target = response.headers["Location"]
    next_url = re.search(r"next=([^&]+)", target).group(1)
    response = client.post(target, data={"username": "dm.zhou", "password": "demo"})
    assert response.status_code == 302 and response.headers["Location"] == "/notifications"
    assert "周经理 Zhou" in text(client.get("/notifications"))
    assert next_url  # the login link carried it


def test_sign_in_refuses_to_redirect_to_another_site(client):
    for evil in ["https://evil.example/x", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"]:
        response = sign_in(client, "dm.zhou", next=evil)
        assert response.headers["Location"] == "/", evil
        client.post("/logout")


def test_a_wrong_password_and_an_unknown_user_get_the_same_answer(client):
    wrong = sign_in(client, "dm.zhou", "nope")
    unknown = sign_in(client, "no.such.user", "nope")
    for response in (wrong, unknown):
        assert response.status_code == 200
    client.post("/lang", data={"lang": "en"})
    wrong, unknown = sign_in(client, "dm.zhou", "nope"), sign_in(client, "no.such.user", "nope")
    assert "Wrong username or password." in text(wrong)
    strip = lambda r: re.sub(r'value="[^"]*"', "", text(r))  # noqa: E731 (the typed name, CSRF)
    assert strip(wrong) == strip(unknown)
    assert client.get("/").status_code == 302  # still signed out


def test_signing_out_is_a_post_and_ends_the_session(app):
    client = as_user(app, "dm.zhou")
    assert client.get("/logout").status_code == 405
    assert client.post("/logout").status_code == 302
    assert client.get("/").status_code == 302


def test_csrf_token_is_required_on_every_post(rt, catalogs):
    app = create_app(rt, {"TESTING": True, "SECRET_KEY": "test", "WTF_CSRF_ENABLED": True,
                          "BABEL_TRANSLATION_DIRECTORIES": str(catalogs)})
    client = app.test_client()
    assert client.post("/login", data={"username": "dm.zhou", "password": "demo"}).status_code == 400
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    response = client.post("/login", data={"username": "dm.zhou", "password": "demo", "csrf_token": token})
    assert response.status_code == 302
    view = rt.start("contract_review", "rep.wang", contract())
    task_id = view.tasks[0].id
    assert client.post(f"/tasks/{task_id}/claim").status_code == 400
    assert client.post("/lang", data={"lang": "en"}).status_code == 400
    assert open_task(rt.store, view.id).assignee is None
    page = client.get("/").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert client.post(f"/tasks/{task_id}/claim", data={"csrf_token": token}).status_code == 302
    assert open_task(rt.store, view.id).assignee == "dm.zhou"


def test_a_refused_csrf_token_is_explained(rt, catalogs):
    app = create_app(rt, {"TESTING": True, "SECRET_KEY": "test", "WTF_CSRF_ENABLED": True,
                          "BABEL_TRANSLATION_DIRECTORIES": str(catalogs)})
    response = app.test_client().post("/lang", data={"lang": "en"})
    assert response.status_code == 400 and "未做任何更改" in text(response)  # Chinese by default


def test_security_headers_on_every_page(client, app):
    for response in (client.get("/login"), as_user(app, "dm.zhou").get("/")):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        assert "unsafe-inline" not in response.headers["Content-Security-Policy"].split("script-src")[1].split(";")[0]
    page = text(as_user(app, "dm.zhou").get("/"))
    assert "<script>" not in page and "onclick" not in page  # CSP allows no inline script


# --- the inbox ----------------------------------------------------------------------------------

def test_the_department_manager_sees_the_contract_a_rep_submitted(app, rt):
    view = rt.start("contract_review", "rep.wang", contract())
    task_id = view.tasks[0].id
    page = text(as_user(app, "dm.zhou").get("/"))
    assert f"/tasks/{task_id}" in page
    assert "Department manager review" in page and "C-B01" in page and "260,000.00" in page
    assert "open to Business department manager" in page
    assert "1 task" in page
    other = text(as_user(app, "rep.feng").get("/"))
    assert f"/tasks/{task_id}" not in other and "No tasks match." in other


def test_inbox_filters_and_sort_live_in_the_url(app, rt):
    small = rt.start("contract_review", "rep.wang", contract(amount=120000)).tasks[0].id
    large = rt.start("contract_review", "rep.wang", contract(amount=900000, customer="C-A01")).tasks[0].id
    client = as_user(app, "dm.zhou")

    page = text(client.get("/?sort=amount&desc=1"))
    assert page.index(large) < page.index(small)
    assert 'aria-sort="descending"' in page
    assert 'href="/?sort=amount"' in page  # the column link turns the order around
    page = text(client.get("/?sort=amount"))
    assert page.index(small) < page.index(large)

    page = text(client.get("/?customer=C-A01"))
    assert large in page and small not in page
    page = text(client.get("/?amount_min=500000&amount_max=1000000"))
    assert large in page and small not in page
    assert 'value="500000"' in page  # the filter form shows what the URL asks
    page = text(client.get("/?scope=mine"))
    assert large not in page and small not in page
    page = text(client.get("/?process=return_request"))
    assert "No tasks match." in page

    response = client.get("/?amount_min=lots")
    assert response.status_code == 400
    assert "amount_min" in text(response)


def test_inbox_pages(app, rt):
    ids = [rt.start("contract_review", "rep.wang", contract(amount=100000 + i)).tasks[0].id for i in range(3)]
    client = as_user(app, "dm.zhou")
    page = text(client.get("/?per_page=2&sort=amount"))
    assert ids[0] in page and ids[1] in page and ids[2] not in page
    assert "Page 1 of 2" in page
    # "Next" carries the position of the last row shown (keyset paging), "Previous" the first one's
    nxt = re.search(r'href="(/\?[^"]*)" rel="next"', client.get("/?per_page=2&sort=amount").get_data(as_text=True))
    assert nxt and "after=" in nxt.group(1) and "page=2" in nxt.group(1)
    second = client.get(unescape(nxt.group(1))).get_data(as_text=True)
    assert ids[2] in second and ids[0] not in second and "Page 2 of 2" in text(client.get(unescape(nxt.group(1))))
    prev = re.search(r'href="(/\?[^"]*)" rel="prev"', second)
    assert prev and "after=" not in prev.group(1) and "before=" not in prev.group(1)  # page 1: plainly
    page = text(client.get("/?per_page=2&sort=amount&page=2"))  # a bookmarked page number still works
    assert ids[2] in page and ids[0] not in page
    assert client.get("/?after=nonsense").status_code == 400


def test_saved_filters(app, rt):
    client = as_user(app, "dm.zhou")
    response = client.post("/filters", data={"name": "大单", "amount_min": "500000", "sort": "amount", "desc": "1"})
    assert response.status_code == 302
    page = text(client.get("/"))
    assert "大单" in page
    assert re.search(r'href="/\?[^"]*amount_min=500000', client.get("/").get_data(as_text=True))
    assert client.post("/filters/delete", data={"name": "大单"}).status_code == 302
    page = text(client.get("/"))
    assert "Filter “大单” deleted." in page and ">大单</a>" not in page
    page = text(client.post("/filters", data={"name": " ", "amount_min": "1"}, follow_redirects=True))
    assert "The filter was not saved" in page


def test_due_times_are_coloured(app, rt, monkeypatch):
    task_id = rt.start("contract_review", "rep.wang", contract()).tasks[0].id
    client = as_user(app, "dm.zhou")
    row = lambda page: re.search(rf'<tr class="([^"]*)">\s*<td[^>]*><input type="checkbox" name="task" value="{task_id}"', page).group(1)  # noqa: E731
    assert "due-" not in row(client.get("/").get_data(as_text=True))
    monkeypatch.setenv("BPM_NOW", at(T0 + timedelta(hours=3, minutes=30)))
    assert "due-soon" in row(client.get("/").get_data(as_text=True))
    monkeypatch.setenv("BPM_NOW", at(T0 + timedelta(hours=5)))
    assert "due-overdue" in row(client.get("/").get_data(as_text=True))
    page = text(client.get("/?overdue=1"))
    assert task_id in page


def test_claim_and_unclaim_from_the_inbox(app, rt):
    view = rt.start("contract_review", "rep.wang", contract())
    task_id = view.tasks[0].id
    client = as_user(app, "dm.zhou")
    response = client.post(f"/tasks/{task_id}/claim", data={"next": "/?sort=amount"})
    assert response.headers["Location"] == "/?sort=amount"
    assert open_task(rt.store, view.id).assignee == "dm.zhou"
    assert f'formaction="/tasks/{task_id}/unclaim"' in client.get("/").get_data(as_text=True)
    client.post(f"/tasks/{task_id}/unclaim")
    assert open_task(rt.store, view.id).assignee is None


def flashes(page: str) -> list[str]:
    return re.findall(r'<li class="flash flash-\w+">(.*?)</li>', page, re.S)


def test_bulk_claim_and_bulk_approve_report_each_task(app, rt):
    views = [rt.start("contract_review", "rep.wang", contract(amount=100000 + i)) for i in range(2)]
    ids = [v.tasks[0].id for v in views]
    client = as_user(app, "dm.zhou")
    client.post("/tasks/bulk", data={"action": "claim", "task": ids, "confirm": "1"})
    assert [open_task(rt.store, v.id).assignee for v in views] == ["dm.zhou", "dm.zhou"]
    response = client.post("/tasks/bulk", data={"action": "approve", "task": ids, "confirm": "1"},
                           follow_redirects=True)
    assert flashes(text(response)) == ["2 claimed.", "2 approved."]
    office = as_user(app, "gmo.tang")  # standard terms: then 总经办 approves, back to the rep to file
    office.post("/tasks/bulk", data={"action": "claim", "task": [open_task(rt.store, v.id).id for v in views],
                                     "confirm": "1"})
    page = text(office.post("/tasks/bulk", data={"action": "approve", "confirm": "1",
                                                 "task": [open_task(rt.store, v.id).id for v in views]},
                            follow_redirects=True))
    assert flashes(page) == ["2 claimed.", "2 approved."]
    for view in views:
        task = open_task(rt.store, view.id)
        assert (task.element_id, task.assignee) == ("file_contract", "rep.wang")

    # the filing form asks for more than a decision: bulk approval leaves it alone
    rep = as_user(app, "rep.wang")
    filing = open_task(rt.store, views[0].id)
    before = snapshot(rt.store, views[0].id)
    asked = text(rep.post("/tasks/bulk", data={"action": "approve", "task": [filing.id]}))
    assert "its form asks for more than a decision: it will be left alone" in asked  # said before, too
    page = text(rep.post("/tasks/bulk", data={"action": "approve", "task": [filing.id], "confirm": "1"},
                         follow_redirects=True))
    assert "asks for more than a decision" in page
    assert snapshot(rt.store, views[0].id) == before


def test_delegating_to_a_colleague_of_the_same_role(app, rt, store):
    with store.write() as s:
        access.add_user(s, "dm.lin", "demo", ["dept_manager"], display_name="林经理 Lin", superior="vp.qian")
    view = rt.start("contract_review", "rep.wang", contract())
    task_id = view.tasks[0].id
    client = as_user(app, "dm.zhou")
    page = text(client.get(f"/tasks/{task_id}"))
    assert 'id="delegate"' in page and "林经理 Lin (dm.lin)" in page
    response = client.post(f"/tasks/{task_id}/delegate", data={"to": "dm.lin", "note": "请代为审核"})
    assert response.status_code == 302
    assert open_task(store, view.id).assignee == "dm.lin"
    lin = as_user(app, "dm.lin")
    page = text(lin.get("/"))
    assert task_id in page
    assert re.search(r'class="badge"[^>]*>1<', lin.get("/").get_data(as_text=True))  # unread notice
    notices = text(lin.get("/notifications"))
    assert "Assigned" in notices and f"/tasks/{task_id}" in notices
    lin.post("/notifications/read")
    assert 'class="badge"' not in lin.get("/").get_data(as_text=True)
    assert "请代为审核" in text(lin.get(f"/tasks/{task_id}"))  # the note is in the comments


def test_the_superior_hands_an_escalated_task_back_from_its_page(app, rt, store, monkeypatch):
    from engine import timers
    # standard terms: one level, so the VP is the superior it goes to (a deviating contract's
    # review would skip him, as the VP level will be his: tests/test_duties.py)
    view = rt.start("contract_review", "rep.wang", contract())
    task_id = view.tasks[0].id
    rt.claim(task_id, "dm.zhou")
    assert 'id="hand-back"' not in text(as_user(app, "dm.zhou").get(f"/tasks/{task_id}"))
    later = T0 + timedelta(hours=5)
    timers.run_once(rt, later)  # silent for 5 h: escalated to dm.zhou's superior
    assert open_task(store, view.id).assignee == "vp.qian"
    monkeypatch.setenv("BPM_NOW", at(later))
    vp = as_user(app, "vp.qian", lang="zh_CN")
    page = text(vp.get(f"/tasks/{task_id}"))
    assert 'id="hand-back"' in page and "交回 dm.zhou" in page
    response = vp.post(f"/tasks/{task_id}/hand-back", follow_redirects=True)
    assert "已交回 dm.zhou" in text(response)
    assert open_task(store, view.id).assignee == "dm.zhou"
    before = snapshot(store, view.id)  # handed back once: no one to hand it back to now
    page = text(as_user(app, "dm.zhou").post(f"/tasks/{task_id}/hand-back", follow_redirects=True))
    assert "there is no one to hand it back to" in page
    assert snapshot(store, view.id) == before


# --- the task page ----------------------------------------------------------------------------

def test_task_page_renders_the_form_from_its_schema(app, rt):
    view = rt.start("contract_review", "rep.wang", contract(price=480, amount=240000))
    task_id = view.tasks[0].id
    client = as_user(app, "dm.zhou")
    response = client.get(f"/tasks/{task_id}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    page = text(response)
    assert '<input type="radio" name="decision" value="approve">' in html
    assert '<input type="radio" name="decision" value="reject">' in html
    assert '<textarea id="f-comment" name="comment"' in html
    assert 'name="customer"' not in html  # read-only context is shown, not posted
    assert "Negotiated unit price (CNY)" in page and "CN¥480.00" in page
    assert "芝麻灰花岗岩板" in page and "600x600x20" in page  # the lines, as a table
    assert "Price below the quote" in page and "Price 480 below the quoted 520" in page  # the deviations
    assert "History" in page and "Wang started it" in page
    zh = text(as_user(app, "dm.zhou", "zh_CN").get(f"/tasks/{task_id}"))
    assert "业务部经理审核" in zh and "成交单价（元）" in zh and "同意" in zh and "驳回" in zh


def test_an_invalid_submission_is_shown_again_with_its_values_and_changes_nothing(app, rt, store):
    view = rt.start("contract_review", "rep.wang", contract())
    task_id = view.tasks[0].id
    before = snapshot(store, view.id)
    client = as_user(app, "dm.zhou")
    response = client.post(f"/tasks/{task_id}", data={"action": "complete", "decision": "reject", "comment": ""})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert '<input type="radio" name="decision" value="reject" checked>' in html
    comment_field = re.search(r'<div class="field field-textarea has-error" id="field-comment">(.*?)</div>', html, re.S)
    assert comment_field and "This field is required." in comment_field.group(1)
    assert "Nothing was submitted" in html
    assert snapshot(store, view.id) == before


def test_an_invalid_start_keeps_every_row_and_says_what_is_wrong_where(app, rt, store):
    client = as_user(app, "rep.wang")
    form = {"customer": "C-ZZ9", "amount": "260,000", "quote_price": "520", "price": "520",
            "quote_payment_terms": "月结30天", "quote_delivery_date": "2026-11-20",
            "payment_terms": "月结30天", "delivery_date": "2026-11-20", "lines": "",
            "lines-0": "", "lines-0-product": "花岗岩", "lines-0-quantity": "12", "lines-0-unit_price": "500",
            "lines-1": "", "lines-1-product": "大理石", "lines-1-quantity": "many", "lines-1-unit_price": "80",
            "action": "start"}
    response = client.post("/start/contract_review", data=form)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    for name, value in [("customer", "C-ZZ9"), ("amount", "260000"), ("lines-0-product", "花岗岩"),
                        ("lines-1-product", "大理石"), ("lines-1-quantity", "many"), ("delivery_date", "2026-11-20")]:
        assert re.search(rf'name="{name}" value="{value}"', html), name
    errors = dict(re.findall(r'<p class="field-error" id="e-([^"]+)">([^<]+)</p>', html))
    assert set(errors) == {"customer", "delivery_date", "lines-1-quantity"}
    assert "not a known customer" in errors["customer"]
    assert "in the past" in unescape(errors["delivery_date"])
    assert errors["lines-1-quantity"] == "Must be a number."
    with store.read() as s:
        assert s.scalar(select(func.count()).select_from(Instance)) == 0


def test_a_valid_approval_moves_the_task_to_the_next_approver(app, rt, store):
    view = rt.start("contract_review", "rep.wang", contract(price=480, amount=240000))  # below the quote
    task_id = view.tasks[0].id
    client = as_user(app, "dm.zhou")
    response = client.post(f"/tasks/{task_id}", data={"action": "complete", "decision": "approve",
                                                        "comment": "价格可接受"})
    assert response.status_code == 302 and response.headers["Location"] == "/"
    page = text(client.get("/"))
    assert "is done." in page and "VP approval" in page
    assert task_id not in page
    task = open_task(store, view.id)
    assert task.element_id == "vp_approval" and task.role == "vp_sales"
    assert task.id in text(as_user(app, "vp.qian").get("/"))
    assert client.get(f"/tasks/{task_id}").status_code == 409  # done already: said so


def test_four_eyes_refusal_is_shown_on_the_page(app, rt, store):
    with store.write() as s:
        access.add_user(s, "boss.rep", "demo", ["sales_rep", "dept_manager"])
        # two other department managers: the review stays open to them (with one it would go to
        # him at once, tests/test_duties.py), so the submitter can reach it and be refused
        access.add_user(s, "dm.he", "demo", ["dept_manager"])
    view = rt.start("contract_review", "boss.rep", contract())
    assert view.tasks[0].assignee is None
    client = as_user(app, "boss.rep")
    response = client.post(f"/tasks/{view.tasks[0].id}", data={"action": "complete", "decision": "approve"})
    assert response.status_code == 403 and "four-eyes" in text(response)
    assert "another Business department manager must" in text(response)  # the role by its name
    chinese = as_user(app, "boss.rep", lang="zh_CN")  # the engine's refusal in the page's language
    response = chinese.post(f"/tasks/{view.tasks[0].id}", data={"action": "complete", "decision": "approve"})
    assert response.status_code == 403
    assert "双人原则：boss.rep 提交了此申请，不能自己审批；须由另一位业务部经理审批" in text(response)
    assert "four-eyes" not in text(response)
    page = text(chinese.post(f"/tasks/{view.tasks[0].id}/claim", follow_redirects=True))
    assert "双人原则：boss.rep 提交了此申请，不能自己审批" in page  # nor claim it
    rt.claim(view.tasks[0].id, "dm.he")
    page = text(as_user(app, "dm.zhou", lang="zh_CN").post(f"/tasks/{view.tasks[0].id}/claim",
                                                            follow_redirects=True))
    assert f"没有待办任务 {view.tasks[0].id}" in page  # held by another, in an instance he may not see


def test_a_draft_is_kept_and_shown_again_without_changing_the_instance(app, rt, store):
    view = rt.start("contract_review", "rep.wang", contract())
    task_id = view.tasks[0].id
    before = snapshot(store, view.id)
    client = as_user(app, "dm.zhou")
    response = client.post(f"/tasks/{task_id}", data={"action": "draft", "decision": "reject", "comment": "再议"})
    assert response.status_code == 302
    with store.read() as s:
        assert s.get(TaskDraft, task_id).data == {"decision": "reject", "comment": "再议"}
    html = client.get(f"/tasks/{task_id}").get_data(as_text=True)
    assert '<input type="radio" name="decision" value="reject" checked>' in html and ">再议</textarea>" in html
    assert snapshot(store, view.id) == before


def test_rows_are_added_and_removed_without_javascript(app, rt):
    client = as_user(app, "rep.wang")
    base = {"customer": "C-B01", "lines": "", "lines-0": "", "lines-0-product": "花岗岩", "lines-0-quantity": "3"}
    html = client.post("/start/contract_review", data={**base, "add_row": "lines"}).get_data(as_text=True)
    assert 'name="lines-0-product" value="花岗岩"' in html and 'name="lines-1-product" value=""' in html
    assert 'name="customer" value="C-B01"' in html
    html = client.post("/start/contract_review", data={
        **base, "lines-1": "", "lines-1-product": "大理石", "remove_row": "lines-0"}).get_data(as_text=True)
    assert 'name="lines-0-product" value="大理石"' in html and "花岗岩" not in html
    assert 'name="lines-1-product"' not in html


def test_comments_on_a_task(app, rt):
    view = rt.start("contract_review", "rep.wang", contract())
    task_id = view.tasks[0].id
    client = as_user(app, "dm.zhou")
    client.post(f"/tasks/{task_id}/comments", data={"body": "请补充付款担保"})
    assert "请补充付款担保" in text(client.get(f"/tasks/{task_id}"))
    assert "请补充付款担保" in text(client.get(f"/instances/{view.id}"))
    stranger = as_user(app, "fin.chu")
    assert stranger.post(f"/tasks/{task_id}/comments", data={"body": "x"}).status_code == 404


def test_others_may_not_open_a_task_or_an_instance(app, rt):
    view = rt.start("contract_review", "rep.wang", contract())
    stranger = as_user(app, "fin.chu")
    assert stranger.get(f"/tasks/{view.tasks[0].id}").status_code == 404  # as if there were none
    assert stranger.get(f"/instances/{view.id}").status_code == 404
    assert as_user(app, "rep.wang").get(f"/tasks/{view.tasks[0].id}").status_code == 403  # its initiator
    assert as_user(app, "audit.han").get(f"/instances/{view.id}").status_code == 200
    assert stranger.get("/tasks/no-such-task").status_code == 404


def test_the_auditor_sees_whether_an_instance_record_is_whole(app, rt, store):
    from sqlalchemy import update
    view = rt.start("contract_review", "rep.wang", contract())
    rt.complete(view.tasks[0].id, "dm.zhou", {"decision": "approve", "comment": "ok"})
    auditor = as_user(app, "audit.han")
    page = text(auditor.get(f"/instances/{view.id}"))
    assert 'id="verification"' in page and "Whole: 2 steps" in page
    assert 'id="verification"' not in text(as_user(app, "rep.wang").get(f"/instances/{view.id}"))
    with store.write() as s:  # the stored state edited behind the engine's back
        row = s.get(Instance, view.id)
        s.execute(update(Instance).where(Instance.id == view.id).values(state=row.state.replace("ok", "ko")))
    page = text(auditor.get(f"/instances/{view.id}"))
    assert "Not whole: the instance's stored state is not the state after step 2" in page
    chinese = as_user(app, "audit.han", lang="zh_CN")
    page = text(chinese.get(f"/instances/{view.id}"))
    assert "不完整：" in page and "实例保存的状态不是第 2 步之后的状态" in page


# --- starting, instances, language ---------------------------------------------------------------

def test_start_lists_what_the_user_may_start_and_starts_it(app, rt, store):
    client = as_user(app, "rep.wang")
    page = text(client.get("/start"))
    assert "/start/contract_review" in page and "/start/return_request" in page
    assert "/start/branch_establishment" not in page
    assert as_user(app, "dm.zhou").get("/start/contract_review").status_code == 404
    form = {"customer": "C-B01", "amount": "260000", "quote_price": "520", "price": "520",
            "quote_payment_terms": "30% 定金", "quote_delivery_date": "2027-01-15",
            "payment_terms": "30% 定金", "delivery_date": "2027-01-15", "lines": "", "lines-0": "",
            "lines-0-product": "芝麻灰花岗岩板", "lines-0-spec": "600x600x20", "lines-0-quantity": "500",
            "lines-0-unit_price": "520", "action": "start"}
    response = client.post("/start/contract_review", data=form)
    assert response.status_code == 302 and response.headers["Location"].startswith("/instances/")
    with store.read() as s:
        row = s.scalars(select(Instance)).one()
        task = s.scalars(select(HumanTask)).one()
    assert row.initiator == "rep.wang" and row.amount == 260000
    assert task.element_id == "dm_review"


def test_instance_page_without_the_diagram_viewer(app, rt):
    view = rt.start("contract_review", "rep.wang", contract())
    page = text(as_user(app, "rep.wang").get(f"/instances/{view.id}"))
    assert "The diagram viewer is not installed" in page
    assert "Department manager review" in page and "running" in page
    assert "Contract amount (CNY)" in page and "CN¥260,000.00" in page
    assert "bpmn-navigated-viewer" not in page


def test_instance_page_draws_the_diagram_with_markers(app, rt, tmp_path):
    viewer = tmp_path / "vendor" / "bpmn-js" / "bpmn-navigated-viewer.production.min.js"
    viewer.parent.mkdir(parents=True)
    viewer.write_text("/* stand-in */")
    view = rt.start("contract_review", "rep.wang", contract())
    html = as_user(app, "rep.wang").get(f"/instances/{view.id}").get_data(as_text=True)
    assert "/static/vendor/bpmn-js/bpmn-navigated-viewer.production.min.js" in html
    assert "/static/js/diagram.js" in html
    data = re.search(r'<script type="application/json" id="diagram-data">(.*?)</script>', html, re.S).group(1)
    import json
    parsed = json.loads(data)
    assert parsed["markers"]["active"] == ["dm_review"]
    assert "contract_submitted" in parsed["markers"]["completed"]
    assert parsed["xml"].startswith("<?xml") and "</script" not in data


def test_the_language_switch_changes_the_page_language(app, rt):
    rt.start("contract_review", "rep.wang", contract())
    client = app.test_client()
    sign_in(client, "dm.zhou")
    page = text(client.get("/"))
    assert "收件箱" in page and "业务部经理审核" in page and '<html lang="zh-CN">' in page
    response = client.post("/lang", data={"lang": "en", "next": "/?sort=amount"})
    assert response.headers["Location"] == "/?sort=amount"
    page = text(client.get("/"))
    assert "Inbox" in page and "Department manager review" in page and '<html lang="en">' in page
    assert "收件箱" not in page
    client.post("/lang", data={"lang": "xx"})  # unknown: unchanged
    assert "Inbox" in text(client.get("/"))
    client.post("/logout")
    assert "Sign in" in text(client.get("/login"))  # the choice outlives the session


def test_every_message_has_a_chinese_translation():
    with (TRANSLATIONS / "zh_Hans_CN" / "LC_MESSAGES" / "messages.po").open("rb") as f:
        catalog = read_po(f)
    with (TRANSLATIONS / "messages.pot").open("rb") as f:
        template = read_po(f)
    missing = [m.id for m in template if m.id and m.id not in catalog]
    untranslated = [m.id for m in catalog if m.id and (not m.string or
                    (isinstance(m.string, tuple) and not all(m.string)) or m.fuzzy)]
    assert missing == [] and untranslated == []


# --- web/forms.py: from posted fields to JSON ------------------------------------------------------

def schema(name: str) -> dict:
    import json
    return json.loads((FORMS / name).read_text(encoding="utf-8"))


def test_parse_types_fields_by_the_schema():
    start = schema("contract_review.start.json")
    posted = MultiDict({"customer": "  C-B01 ", "amount": "1,260,000", "quote_price": "¥520.50",
                        "price": "abc", "payment_terms": "", "note": "line 1\r\nline 2",
                        "lines": "", "lines-0": "", "lines-0-product": "花岗岩", "lines-0-quantity": "3",
                        "lines-3": "", "lines-3-quantity": "2.5", "lines-3-unit_price": "",
                        "unknown": "ignored"})
    assert forms.parse(start, posted) == {
        "customer": "C-B01", "amount": 1260000, "quote_price": 520.5, "price": "abc",
        "note": "line 1\nline 2",
        "lines": [{"product": "花岗岩", "quantity": 3}, {"quantity": 2.5}],
    }


def test_parse_leaves_out_read_only_fields_and_reads_booleans_and_integers():
    review = schema("contract_review.dm_review.json")
    posted = MultiDict({"customer": "forged", "amount": "1", "decision": "approve", "comment": "ok"})
    assert forms.parse(review, posted) == {"decision": "approve", "comment": "ok"}
    made_up = {"type": "object", "properties": {
        "urgent": {"type": "boolean"}, "count": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}},
        "address": {"type": "object", "properties": {"city": {"type": "string"}, "zip": {"type": "integer"}}}}}
    assert forms.parse(made_up, MultiDict({"count": "3.0", "tags-0": "a", "tags-1": "", "address-city": "南宁"})) == \
        {"urgent": False, "count": 3, "tags": ["a"], "address": {"city": "南宁"}}  # a blank entry is nothing
    assert forms.parse(made_up, MultiDict({"urgent": "true", "count": "2.5"}))["urgent"] is True
    assert forms.parse(made_up, MultiDict({"count": "2.5"}))["count"] == 2.5  # the engine says it is no integer
    assert "tags" not in forms.parse(made_up, MultiDict({}))


def test_array_without_rows_and_rows_added_and_removed():
    start = schema("contract_review.start.json")
    assert forms.parse(start, MultiDict({"lines": ""}))["lines"] == []
    assert "lines" not in forms.parse(start, MultiDict({}))
    data = {"lines": [{"product": "a"}]}
    assert forms.add_row(start, data, "lines") and data["lines"] == [{"product": "a"}, {}]
    assert forms.remove_row(start, data, "lines-0") and data["lines"] == [{}]
    assert not forms.remove_row(start, data, "lines-7")
    assert not forms.add_row(start, data, "customer")
    review = schema("contract_review.dm_review.json")
    assert not forms.add_row(review, {}, "lines")  # read-only rows are not edited


def test_initial_values_never_carry_over_a_previous_decision():
    review = schema("contract_review.vp_approval.json")
    data = {"customer": "C-B01", "amount": 240000, "decision": "approve", "comment": "ok by dm"}
    assert forms.initial(review, data) == {"customer": "C-B01", "amount": 240000}
    assert forms.initial(review, data, {"decision": "reject"}) == \
        {"customer": "C-B01", "amount": 240000, "decision": "reject"}
    filing = schema("contract_review.file_contract.json")
    assert forms.initial(filing, {})["archive_location"].startswith("业务部办公室文件柜")


def test_errors_by_field_name_and_the_ones_with_no_field():
    start = schema("contract_review.start.json")
    errors = forms.errors_by_name({"lines/1/quantity": "must be of type number", "": "the data must be a JSON object"})
    assert errors == {"lines-1-quantity": "must be of type number", "": "the data must be a JSON object"}
    values = {"lines": [{}, {}]}
    assert forms.unplaced(start, values, errors) == {"": "the data must be a JSON object"}


def test_which_forms_need_only_a_decision():
    assert forms.decision_only(schema("contract_review.dm_review.json"))
    assert not forms.decision_only(schema("contract_review.file_contract.json"))
    assert not forms.decision_only(schema("contract_review.start.json"))
    assert not forms.decision_only(None)


@pytest.mark.parametrize("lang", ["en", "zh_CN"])
def test_every_form_of_the_company_renders_editable_and_read_only(app, lang):
    """Each schema in forms/ through the macros of form_macros.html, with an empty row in each array."""
    from flask import render_template_string, session
    page = '{% import "form_macros.html" as f with context %}{{ f.form_fields(schema, values, {}, editable) }}'
    with app.test_request_context("/"):
        session["lang"] = lang
        for path in sorted(p for p in FORMS.glob("*.json") if not p.name.endswith(".cases.json")):
            form = schema(path.name)
            values = {name: [{}] for name, field in forms.properties(form).items() if forms.kind(field) == "array"}
            for editable in (True, False):
                html = render_template_string(page, schema=form, values=values, editable=editable)
                for name, field in forms.properties(form).items():
                    assert forms.title(field, lang) in unescape(html), (path.name, name)
                    if editable and not field.get("readOnly") and forms.kind(field) not in ("array", "object"):
                        assert f'name="{name}"' in html, (path.name, name)


def test_widgets_follow_the_schema_and_x_ui():
    review = schema("contract_review.dm_review.json")
    widgets = forms.ui_widgets(review)
    kinds = {name: forms.widget(field, widgets.get(name)) for name, field in forms.ordered_fields(review)}
    assert kinds["decision"] == "radio" and kinds["comment"] == "textarea" and kinds["amount"] == "readonly"
    start = schema("return_request.start.json")
    kinds = {name: forms.widget(field, forms.ui_widgets(start).get(name)) for name, field in forms.ordered_fields(start)}
    assert kinds == {"customer": "text", "order_no": "text", "reason": "select", "kind": "select",
                     "lines": "rows", "description": "textarea", "attachments": "list"}
    order = schema("contract_review.start.json")
    assert forms.widget(forms.properties(order)["amount"]) == "money"
    assert forms.widget(forms.properties(order)["delivery_date"]) == "date"
    assert [n for n, _ in forms.ordered_fields(order)][:3] == ["customer", "amount", "quote_price"]
    assert forms.title(forms.properties(order)["amount"], "zh_CN") == "合同金额（元）"
    assert forms.enum_label(forms.properties(start)["reason"], "quality", "zh_CN") == "质量问题"


@pytest.mark.parametrize("locale", ["zh_CN", "en"])
def test_money_is_written_as_babel_writes_it(locale):
    """The inbox's fast CNY formatting gives Babel's text, rounding and the sign of zero included."""
    import random
    from babel.numbers import format_currency
    from web.inbox import _cny_affixes, format_cny
    assert _cny_affixes(locale) is not None  # the fast path is the one under test
    rng = random.Random(3)
    values = [0, -0.0, 0.005, 0.015, 0.125, 2.675, -2.5, -0.004, 999.995, 1234567.895, 10**12 + 0.5, 7, -3]
    values += [round(rng.uniform(-1e7, 1e7), rng.choice([0, 1, 2, 3, 4])) for _ in range(2000)]
    for value in values:
        assert format_cny(value, locale) == format_currency(value, "CNY", locale=locale), value


def test_a_secret_key_given_in_the_config_writes_no_key_file(rt, tmp_path, monkeypatch):
    import web
    monkeypatch.setattr(web, "PROJECT_ROOT", tmp_path)
    monkeypatch.delenv("BPM_SECRET_KEY", raising=False)
    assert create_app(rt, {"SECRET_KEY": "given"}).config["SECRET_KEY"] == "given"
    assert not (tmp_path / "instance" / "secret_key").exists()
    made = create_app(rt).config["SECRET_KEY"]
    assert (tmp_path / "instance" / "secret_key").read_text().strip() == made


def test_money_in_a_locale_the_fast_path_does_not_know_is_left_to_babel():
    from babel.numbers import format_currency
    from web.inbox import _cny_affixes, format_cny
    assert _cny_affixes("de_DE") is None  # "1.234.567,90 CN¥": not "<sign>1,234,567.90"
    assert format_cny(1234567.895, "de_DE") == format_currency(1234567.895, "CNY", locale="de_DE")


# --- approver finishing (issue 10 part 7) ---------------------------------------------------------

def _browser_fields(html: str, action: str | None = None) -> MultiDict:
    """What a browser sends for the page's form (the one posting to `action`; default: every form
    but the header's): every named input, select and textarea in page order (checked boxes and
    radios only), as a browser builds the body."""
    from html.parser import HTMLParser

    class Fields(HTMLParser):
        def __init__(self):
            super().__init__()
            self.pairs, self.textarea, self.select, self.in_template, self.form = [], None, None, 0, None

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "template":
                self.in_template += 1
            if tag == "form":
                self.form = a.get("action")
            if self.in_template or not a.get("name") or self.form in ("/lang", "/logout") or \
                    (action is not None and self.form != action):
                return
            if tag == "input" and a.get("type") not in ("submit", "button", "checkbox", "radio"):
                self.pairs.append((a["name"], a.get("value") or ""))
            elif tag == "input" and "checked" in a:
                self.pairs.append((a["name"], a.get("value") or "on"))
            elif tag == "textarea":
                self.textarea = [a["name"], ""]
            elif tag == "select":
                self.select = a["name"]
            elif tag == "option" and self.select and "selected" in a:
                self.pairs.append((self.select, a.get("value") or ""))

        def handle_data(self, data):
            if self.textarea:
                self.textarea[1] += data

        def handle_endtag(self, tag):
            if tag == "template":
                self.in_template -= 1
            if tag == "textarea" and self.textarea:
                self.pairs.append(tuple(self.textarea))
                self.textarea = None
            if tag == "select":
                self.select = None
            if tag == "form":
                self.form = None

    parser = Fields()
    parser.feed(html)
    return MultiDict(parser.pairs)


def test_a_list_of_file_names_survives_the_page_and_an_empty_one_stores_nothing(app):
    """The attachments list (return_request): what the page draws, sent back as a browser sends
    it, is what was entered; an empty row is no attachment, not ""."""
    start = schema("return_request.start.json")
    client = as_user(app, "rep.wang")
    page = client.post("/start/return_request", data={"attachments": "", "attachments-0": "crack-1.jpg",
                                                      "attachments-1": "", "add_row": "attachments"})
    fields = _browser_fields(text(page))
    assert fields.getlist("attachments-0") == ["crack-1.jpg"]  # one input per row, not a marker too
    assert forms.parse(start, fields)["attachments"] == ["crack-1.jpg"]  # the empty rows: nothing
    assert "attachments" not in forms.parse(start, MultiDict([("attachments", ""), ("attachments-0", " ")]))
    assert "attachments" not in forms.parse(start, MultiDict([("attachments", "")]))
    filed = schema("contract_review.file_contract.json")
    assert "attachment" not in forms.parse(filed, MultiDict([("attachment", ""), ("signed_on", "2026-11-23")]))


def test_an_attachment_is_kept_when_the_page_comes_back_with_an_error(app, store):
    client = as_user(app, "rep.wang")
    response = client.post("/start/return_request", data={
        "customer": "C-A01", "order_no": "SO-20991231-ffffff", "reason": "quality", "kind": "return",
        "lines": "", "lines-0": "", "lines-0-product": "x", "lines-0-quantity": "1",
        "attachments": "", "attachments-0": "crack-1.jpg", "action": "start"})
    assert response.status_code == 422
    assert _browser_fields(text(response)).getlist("attachments-0") == ["crack-1.jpg"]
    with store.read() as s:
        assert s.scalar(select(func.count()).select_from(Instance)) == 0


@pytest.mark.parametrize("lang,active,other", [("zh_CN", "中文", "English"), ("en", "English", "中文")])
def test_the_active_language_button_says_so(app, client, lang, active, other):
    for who in (client, as_user(app, "dm.zhou", lang)):
        who.post("/lang", data={"lang": lang})
        for url in ("/login", "/", "/no-such-page"):
            html = text(who.get(url, follow_redirects=True))
            assert re.search(rf'aria-pressed="true"[^>]*>{active}</button>', html), (url, lang)
            assert re.search(rf'aria-pressed="false"[^>]*>{other}</button>', html), (url, lang)
    css = (ROOT / "web" / "static" / "css" / "app.css").read_text()
    assert re.search(r'\.lang button\[aria-pressed="?true"?\]\s*\{[^}]*background', css)


@pytest.mark.parametrize("lang,title,sentence", [("zh_CN", "未找到", "没有这个页面。"),
                                                  ("en", "Not found", "There is no such page.")])
def test_an_unknown_address_gets_the_app_page_in_the_users_language(app, client, lang, title, sentence):
    client.post("/lang", data={"lang": lang})
    for who in (client, as_user(app, "dm.zhou", lang)):
        for url in ("/no-such-page", "/instances/x/y/z", "/static/no-such.css"):
            response = who.get(url)
            assert response.status_code == 404, url
            page = text(response)
            assert f"<h1>{title}</h1>" in page and sentence in page and 'class="top"' in page, url


def _links(page: str, message_part: str) -> list[str]:
    """The links of the notices whose words contain `message_part`."""
    return [href for href, words in re.findall(r'<a href="([^"]+)">([^<]*)</a>', page) if message_part in words]


def test_notices_lead_to_where_the_task_is_now_and_tell_the_holder_it_was_escalated(app, rt, store):
    from engine import timers
    view = rt.start("contract_review", "rep.wang", contract())
    task_id = view.tasks[0].id
    rt.claim(task_id, "dm.zhou")
    timers.run_once(rt, T0 + timedelta(hours=5))  # silent for 5 h: escalated to vp.qian
    for lang, words in (("zh_CN", "您的任务已逾期，已升级给 vp.qian：业务部经理审核"),
                        ("en", "Your overdue task was escalated to vp.qian: Department manager review")):
        page = text(as_user(app, "dm.zhou", lang).get("/notifications"))
        assert _links(page, words) == [f"/instances/{view.id}"], lang  # not the task she may no longer open
    vp = as_user(app, "vp.qian", "zh_CN")
    page = text(vp.get("/notifications"))
    assert _links(page, "逾期任务已升级给您（dm.zhou 处逾期）：业务部经理审核") == [f"/tasks/{task_id}"]
    rt.hand_back(task_id, "vp.qian")
    page = text(vp.get("/notifications"))
    assert _links(page, "逾期任务已升级给您") == [f"/instances/{view.id}"]  # moved on: its instance
    assert vp.get(f"/instances/{view.id}").status_code == 200
    zhou = as_user(app, "dm.zhou")
    rt.complete(task_id, "dm.zhou", {"decision": "approve"})
    page = text(zhou.get("/notifications"))
    assert _links(page, "Returned to you") == [f"/instances/{view.id}"]
    assert all("/tasks/" not in href for href in _links(page, ""))


def test_a_notice_about_an_instance_one_may_not_see_is_plain_words(app, rt, store):
    from engine import timers
    view = rt.start("contract_review", "rep.wang", contract())
    timers.run_once(rt, T0 + timedelta(hours=5))  # open to the role; its one member dm.zhou is told
    page = text(as_user(app, "dm.zhou").get("/notifications"))
    assert "Your overdue task was escalated to" in page
    assert _links(page, "Your overdue task was escalated") == []  # no link that ends on a refusal
    assert f"/instances/{view.id}" not in page


def test_inbox_rows_show_an_escalated_task_as_such(app, rt, store):
    from engine import timers
    view = rt.start("contract_review", "rep.wang", contract())
    rt.claim(view.tasks[0].id, "dm.zhou")
    timers.run_once(rt, T0 + timedelta(hours=5))
    for lang, words in (("zh_CN", "升级自 周经理 Zhou"), ("en", "escalated from 周经理 Zhou")):
        page = text(as_user(app, "vp.qian", lang).get("/"))
        assert re.search(rf'<span class="tag tag-escalated"[^>]*>{words}</span>', page), lang
    assert "tag-escalated" not in text(as_user(app, "rep.wang").get("/"))


def test_a_bulk_action_asks_first_then_says_in_one_line_what_happened(app, rt, store):
    with store.write() as s:
        access.add_user(s, "dm.lin", "demo", ["dept_manager"], display_name="林经理 Lin", superior="vp.qian")
    views = [rt.start("contract_review", "rep.wang", contract(amount=100000 + i)) for i in range(4)]
    ids = [v.tasks[0].id for v in views]
    before = [snapshot(store, v.id) for v in views]
    client = as_user(app, "dm.zhou")
    asked = client.post("/tasks/bulk", data={"action": "claim", "task": ids, "next": "/?sort=amount"})
    page = text(asked)
    assert asked.status_code == 200 and "Claim 4 tasks?" in page
    for view in views:
        assert view.business_key in page
    form = _browser_fields(page, "/tasks/bulk")
    assert form.getlist("task") == ids and form["action"] == "claim" and form["next"] == "/?sort=amount"
    assert re.search(r'<button type="submit" name="confirm" value="1"[^>]*>Claim 4 tasks</button>', page)
    assert 'href="/?sort=amount">Cancel</a>' in page
    assert [snapshot(store, v.id) for v in views] == before  # asking changed nothing
    rt.claim(ids[3], "dm.lin")  # meanwhile a colleague takes one
    done = client.post("/tasks/bulk", data={**form.to_dict(flat=False), "confirm": "1"})
    assert done.status_code == 302 and done.headers["Location"] == "/?sort=amount"
    said = flashes(text(client.get("/")))
    assert len(said) == 1 and said[0].startswith("3 claimed, 1 refused: ")
    # one she may no longer open is named by its id only (a refusal reveals nothing of it)
    assert said[0] == f"3 claimed, 1 refused: {ids[3]}: there is no open task {ids[3]}"
    assert [open_task(store, v.id).assignee for v in views] == ["dm.zhou"] * 3 + ["dm.lin"]
    chinese = as_user(app, "dm.zhou", "zh_CN")
    page = text(chinese.post("/tasks/bulk", data={"action": "approve", "task": ids[:3]}))
    assert "批量同意 3 项任务？" in page
    said = flashes(text(chinese.post("/tasks/bulk", data={"action": "approve", "task": ids[:3], "confirm": "1"},
                                     follow_redirects=True)))
    assert said == ["已同意 3 项。"]


# --- a newcomer's first minute (issue 10 part 8) --------------------------------------------------

def test_the_sign_in_page_lists_the_demo_users_only_in_demo_mode(app, client, store):
    client.post("/lang", data={"lang": "en"})
    page = text(client.get("/login"))
    assert "dm.zhou" not in page and "demo-users" not in page  # demo users seeded, demo mode not on
    with store.write() as s:
        access.set_demo_mode(s, True)  # what `bpm init --demo` does
    page = text(client.get("/login"))
    table = re.search(r'<table class="compact demo-users">(.*?)</table>', page, re.S)
    assert table and "Demo users" in page and "password <code>demo</code>" in page
    row = re.search(r"<tr><td><code>dm\.zhou</code></td><td>周经理 Zhou</td><td>(.*?)</td><td>(.*?)</td></tr>",
                    table.group(1))
    assert row and row.groups() == ("Business department manager", "总部 Headquarters")
    client.post("/lang", data={"lang": "zh_CN"})
    page = text(client.get("/login"))
    assert "演示用户" in page and "<td>业务部经理</td>" in page
    signed_in = as_user(app, "dm.zhou")
    assert "demo-users" not in text(signed_in.get("/"))
    app.config["BPM_DEMO"] = False  # the deployment's setting wins over the database's flag
    assert "demo-users" not in text(client.get("/login"))
