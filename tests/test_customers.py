"""Customer archives (客户档案, seed 001 三(五)(六)): who reads a card, who keeps it, the general
manager's grants through `archive_access`, the record of every read, and the doors (engine, page,
API, command line), on SQLite and PostgreSQL.
"""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from html import unescape
from pathlib import Path

import pytest
from sqlalchemy import func, select

import processes
from engine import access, audit, customers, versions
from engine.runtime import Conflict, Forbidden, InvalidInput, NotFound, Runtime
from engine.store import ArchiveGrant, ArchiveRead, CustomerCard, HumanTask, Instance
from processes.customers import DEMO_CARDS

from .conftest import snapshot, views_of
from .test_authority import USERS

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)  # Monday 09:00 in China
DEMO_USERS = [u[0] for u in access.DEMO_USERS]

# Who may read C-A01 (served by rep.wang, Guangzhou) and C-C01 (served by rep.liu, Nanning), and on
# what basis: seed 001 三(六)2's posts, the rep who serves the customer; everybody else needs a grant.
READ = {
    # user:        (C-A01,                C-C01)
    "gm.zhao":     ("role:general_manager", "role:general_manager"),  # 总经理
    "board.sun":   (None, None),                                        # the board is not on the list
    "gmo.tang":    ("role:general_office", "role:general_office"),      # 总经理助理 (总经办)
    "vp.qian":     ("role:vp_sales", "role:vp_sales"),                  # 副总经理
    "hq.li":       ("head:hq_admin", "head:hq_admin"),                  # 人事行政部部长
    "dm.zhou":     ("role:dept_manager", "role:dept_manager"),          # 业务部经理
    "rm.zheng":    (None, None),
    "om.wu":       (None, None),
    "rep.wang":    ("rep", None),                                       # serves C-A01 only
    "rep.feng":    (None, None),                                        # same office, not his customer
    "om.lin":      (None, None),
    "rep.liu":     (None, "rep"),                                       # serves C-C01 only
    "plan.chen":   (None, None),
    "fin.chu":     ("head:finance", "head:finance"),                    # 财务部经理
    "acct.xu":     (None, None),                                        # an accountant, not the head
    "wh.wei":      (None, None),
    "prod.jiang":  ("head:production", "head:production"),              # 生产部部长
    "ssg.shen":    (None, None),
    "audit.han":   (None, None),                                        # sees the record of reads, not cards
    "design.yang": (None, None),                                        # process designer, not 设计部
    "bank.feed":   (None, None),  # the bank integration's service account, where the organisation has it
}
PEOPLE = [u for u in READ if u != "bank.feed"]  # CLI.md's demo organisation: 20 people
# Who keeps a card up to date (三(五)2(2)): the department manager, and the rep for his customers.
EDIT = {user: set() for user in READ}
EDIT.update({"dm.zhou": {"C-A01", "C-C01"}, "rep.wang": {"C-A01"}, "rep.liu": {"C-C01"}})
# Who sees the record of reads.
AUDIT = {"audit.han", "gm.zhao"}
CONFIDENTIAL = ["138 2240 7781", "020-8562 3109", "马丽", "大型建材贸易商", "围棋", "电子对账单"]


@pytest.fixture
def rt(store):
    with store.write() as s:
        customers.seed_cards(s, DEMO_CARDS, T0)
    versions.deploy(store, [ROOT / "bpmn"], actor="design.yang", at=T0)
    return Runtime(store, processes.SERVICES, lookups=processes.LOOKUPS)


@pytest.fixture
def archive(rt):
    return customers.Archive(rt.store)


def reads(store) -> list[tuple]:
    with store.read() as s:
        return [(r.reader, r.customer_id, r.allowed, r.basis, r.grant_id, r.door)
                for r in s.scalars(select(ArchiveRead).order_by(ArchiveRead.id))]


def ask(rt, user: str, customer: str = "C-A01", at: datetime = T0):
    return rt.start("archive_access", user, {"customer": customer, "reason": "发货前核对收货联系人"}, at=at)


def decide(rt, view, data: dict, at: datetime, user: str = "gm.zhao"):
    (task,) = view.tasks
    assert (task.element_id, task.role) == ("gm_decision", "general_manager")
    return rt.complete(task.id, user, data, at=at)


# --- who reads, who keeps: the table over the 20 demo users ----------------------------------------

def test_the_table_covers_every_demo_user():
    assert set(DEMO_USERS) <= set(READ) and set(PEOPLE) <= set(DEMO_USERS) and len(PEOPLE) == 20


@pytest.mark.parametrize("customer,column", [("C-A01", 0), ("C-C01", 1)])
def test_read_a_customer_card_for_every_demo_user(archive, store, customer, column):
    for user in DEMO_USERS:
        expected = READ[user][column]
        if expected is None:
            with pytest.raises(Forbidden, match="may not read the archive"):
                archive.card(customer, user, door="cli", at=T0)
        else:
            card = archive.card(customer, user, door="cli", at=T0)
            assert card["basis"] == expected and card["id"] == customer, user
            assert card["may_edit"] == (customer in EDIT[user]), user
    recorded = reads(store)
    assert [(r[0], r[2], r[3]) for r in recorded] == [(u, READ[u][column] is not None, READ[u][column])
                                                      for u in DEMO_USERS]
    assert {r[1] for r in recorded} == {customer}


def test_edit_a_customer_card_for_every_demo_user(archive, store):
    for user in DEMO_USERS:
        for customer in ("C-A01", "C-C01"):
            change = {"notes": f"checked by {user}"}
            if customer in EDIT[user]:
                assert archive.update(customer, user, change, at=T0)["changes"], (user, customer)
            else:
                with pytest.raises(Forbidden, match="may not change the archive"):
                    archive.update(customer, user, change, at=T0)
    with store.read() as s:
        assert s.get(CustomerCard, "C-A01").revision == 3 and s.get(CustomerCard, "C-C01").revision == 3


def test_record_of_reads_for_every_demo_user(archive):
    for user in DEMO_USERS:
        if user in AUDIT:
            assert archive.reads(user) == []
        else:
            with pytest.raises(Forbidden):
                archive.reads(user)


def test_anyone_may_ask_for_access(rt):
    """The start event of archive_access lies in no lane: every employee may start it."""
    for user in DEMO_USERS:
        assert "archive_access" in [p["process_id"] for p in views_of(rt).startable(user)], user
    view = ask(rt, "wh.wei")
    assert view.status == "running" and view.tasks[0].role == "general_manager"


def test_the_head_of_a_department_is_the_holder_whose_superior_does_not_hold_the_role(archive, store):
    with store.write() as s:
        access.add_user(s, "fin.new", "x", ["finance"], superior="gm.zhao", office_id="HQ")
        access.add_user(s, "fin.clerk", "x", ["finance"], superior="fin.new", office_id="HQ")
        access.add_user(s, "prod.clerk", "x", ["production"], superior="prod.jiang", office_id="HQ")
    assert archive.card("C-B01", "fin.new", door="api", at=T0)["basis"] == "head:finance"
    for clerk in ("fin.clerk", "prod.clerk"):
        with pytest.raises(Forbidden):
            archive.card("C-B01", clerk, door="api", at=T0)


def test_a_refusal_says_the_same_whether_the_customer_exists_or_not(archive, store):
    with pytest.raises(Forbidden) as known:
        archive.card("C-A01", "wh.wei", door="web", at=T0)
    with pytest.raises(Forbidden) as unknown:
        archive.card("C-ZZ9", "wh.wei", door="web", at=T0)
    assert str(unknown.value) == str(known.value).replace("C-A01", "C-ZZ9")
    with pytest.raises(NotFound):  # a reader by post learns it does not exist
        archive.card("C-ZZ9", "gm.zhao", door="web", at=T0)
    with pytest.raises(InvalidInput):
        archive.card("x" * 65, "gm.zhao", door="web", at=T0)
    assert [r[:3] for r in reads(store)] == [("wh.wei", "C-A01", False), ("wh.wei", "C-ZZ9", False)]


# --- grants through archive_access -----------------------------------------------------------------

def test_warehouse_asks_gm_grants_until_a_day_then_reads_until_that_day(rt, archive, store):
    with pytest.raises(Forbidden):
        archive.card("C-A01", "wh.wei", door="web", at=T0)
    view = ask(rt, "wh.wei")
    with pytest.raises(Forbidden):  # asking is not being granted
        archive.card("C-A01", "wh.wei", door="web", at=T0 + timedelta(minutes=5))
    done = decide(rt, view, {"decision": "approve", "until": "2026-11-30"}, T0 + timedelta(hours=1))
    assert done.status == "completed" and done.data["grant"] == {"customer": "C-A01", "until": "2026-11-30"}
    with store.read() as s:
        (grant,) = s.scalars(select(ArchiveGrant)).all()
        assert (grant.customer_id, grant.grantee, grant.granted_by, grant.valid_until, grant.instance_id) == (
            "C-A01", "wh.wei", "gm.zhao", date(2026, 11, 30), view.id)
    card = archive.card("C-A01", "wh.wei", door="web", at=T0 + timedelta(days=1))
    assert card["basis"] == "grant" and card["grant"] == {"id": grant.id, "valid_until": "2026-11-30"}
    assert "138 2240 7781" in card["phones"]
    archive.card("C-A01", "wh.wei", door="api", at=datetime(2026, 11, 30, 23, 59, tzinfo=timezone.utc))
    with pytest.raises(Forbidden):  # the day after the last day
        archive.card("C-A01", "wh.wei", door="api", at=datetime(2026, 12, 1, 0, 0, tzinfo=timezone.utc))
    for other_customer, other_user in (("C-B01", "wh.wei"), ("C-A01", "acct.xu")):
        with pytest.raises(Forbidden):  # one requester, one customer
            archive.card(other_customer, other_user, door="cli", at=T0 + timedelta(days=1))
    assert [r[2:5] for r in reads(store) if r[0] == "wh.wei"] == [
        (False, None, None), (False, None, None), (True, "grant", grant.id), (True, "grant", grant.id),
        (False, None, None), (False, None, None)]
    assert [g["grantee"] for g in archive.grants("audit.han")] == ["wh.wei"]
    with store.read() as s:  # the auditor's record check replays it (the grant service is not run again)
        assert audit.verify(s, view.id, rt.script_engine).ok
        assert s.scalar(select(func.count()).select_from(ArchiveGrant)) == 1


def test_a_refused_request_grants_nothing(rt, archive, store):
    view = ask(rt, "ssg.shen", "C-B01")
    with pytest.raises(InvalidInput):  # refusing needs a reason
        decide(rt, view, {"decision": "reject"}, T0 + timedelta(hours=1))
    done = decide(rt, view, {"decision": "reject", "comment": "业务需要不足"}, T0 + timedelta(hours=1))
    assert done.status == "completed" and "grant" not in done.data
    with store.read() as s:
        assert s.scalar(select(func.count()).select_from(ArchiveGrant)) == 0
    with pytest.raises(Forbidden):
        archive.card("C-B01", "ssg.shen", door="web", at=T0 + timedelta(hours=2))


def test_a_grant_needs_an_end_date_not_in_the_past_and_only_the_gm_decides(rt, store):
    view = ask(rt, "rep.feng", "C-A01")
    for data in ({"decision": "approve"}, {"decision": "approve", "until": "2026-11-22"}):
        with pytest.raises(InvalidInput) as refused:
            decide(rt, view, data, T0 + timedelta(hours=1))
        assert "until" in refused.value.fields
    for user in ("vp.qian", "dm.zhou", "rep.feng"):
        with pytest.raises((Forbidden, NotFound)):  # NotFound: a non-viewer is told nothing
            decide(rt, view, {"decision": "approve", "until": "2026-12-31"}, T0 + timedelta(hours=1), user)
    with store.read() as s:
        assert s.scalar(select(func.count()).select_from(ArchiveGrant)) == 0


def test_only_the_general_manager_can_make_a_grant_even_through_another_process(store, tmp_path):
    """A designer's process in which the warehouse reaches the grant service: the command is refused
    and rolled back whole (engine.customers.record_grants checks the person who acted)."""
    source = (ROOT / "bpmn" / "archive_access.bpmn").read_text(encoding="utf-8")
    forged = (source.replace('id="archive_access"', 'id="self_grant"')
              .replace('processRef="archive_access"', 'processRef="self_grant"')
              .replace('value="general_manager"', 'value="warehouse"')
              .replace("archive_access.gm_decision.json", "self_grant.gm_decision.json")
              .replace("archive_access.start.json", "self_grant.start.json"))
    (tmp_path / "self_grant.bpmn").write_text(forged, encoding="utf-8")
    for name in ("start", "gm_decision"):
        (tmp_path / f"self_grant.{name}.json").write_text(
            (ROOT / "forms" / f"archive_access.{name}.json").read_text(encoding="utf-8"), encoding="utf-8")
    versions.deploy(store, [tmp_path], actor="design.yang", at=T0)
    rt = Runtime(store, processes.SERVICES, lookups=processes.LOOKUPS)
    view = rt.start("self_grant", "rep.wang", {"customer": "C-A01", "reason": "x"}, at=T0)
    (task,) = view.tasks
    assert task.role == "warehouse"
    before = snapshot(store, view.id)
    with pytest.raises(Forbidden, match="wh.wei may not grant access to a customer archive"):
        rt.complete(task.id, "wh.wei", {"decision": "approve", "until": "2026-12-31"}, at=T0)
    assert snapshot(store, view.id) == before
    with store.read() as s:
        assert s.scalar(select(func.count()).select_from(ArchiveGrant)) == 0


def test_the_grant_service_outside_a_process_refuses():
    with pytest.raises(RuntimeError, match="only as a step of a process"):
        customers.grant_service("C-A01", "2026-12-31")


# --- keeping a card: change history ------------------------------------------------------------------

def test_every_change_is_kept_with_who_when_and_what(archive, store):
    t1, t2 = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    done = archive.update("C-A01", "rep.wang", {"phones": ["020-8562 3107", "  139 0000 1111 "],
                                                 "notes": "每年三月集中备货。"}, at=t1, revision=1)
    assert done["revision"] == 2 and done["changes"]["phones"][1] == ["020-8562 3107", "139 0000 1111"]
    assert archive.update("C-A01", "rep.wang", {"notes": "每年三月集中备货。"}, at=t1) == {
        "id": "C-A01", "revision": 2, "changes": {}}  # nothing changed: no history line
    with pytest.raises(Conflict, match="changed by rep.wang"):  # dm.zhou read revision 1
        archive.update("C-A01", "dm.zhou", {"address": "广州市天河区新地址"}, at=t2, revision=1)
    archive.update("C-A01", "dm.zhou", {"address": "广州市天河区新地址"}, at=t2, revision=2)
    card = archive.card("C-A01", "vp.qian", door="web", at=t2)
    assert [(h["revision"], h["by"], h["at"], sorted(h["changes"])) for h in card["history"]] == [
        (1, "init", T0.isoformat(), ["address", "characteristics", "contacts", "credit_level", "family",
                                     "name", "notes", "phones", "rep"]),
        (2, "rep.wang", t1.isoformat(), ["notes", "phones"]),
        (3, "dm.zhou", t2.isoformat(), ["address"])]
    assert card["history"][2]["changes"]["address"] == [DEMO_CARDS[0]["address"], "广州市天河区新地址"]
    assert (card["revision"], card["updated_by"]) == (3, "dm.zhou")


def test_bad_changes_name_the_field_and_change_nothing(archive, store):
    cases = [({"credit_level": "A"}, "credit_level"), ({"phones": "020"}, "phones"),
             ({"name": ""}, "name"), ({"notes": "x" * 4001}, "notes"), ({"nickname": "x"}, "nickname"),
             ({"contacts": [{"name": "a", "age": 3}]}, "contacts.0"), ({"rep": "wh.wei"}, "rep"),
             ({"address": "a\x00b"}, "address"), ({"notes": "a\ud800b"}, "notes"), ({"rep": "rep\x00"}, "rep"),
             ({"phones": ["1", "\ud800"]}, "phones.1")]
    for change, field in cases:
        with pytest.raises(InvalidInput) as refused:
            archive.update("C-A01", "dm.zhou", change, at=T0)
        assert field in refused.value.fields and field in str(refused.value), change
    with pytest.raises(InvalidInput):
        archive.update("C-A01", "dm.zhou", ["not", "an", "object"], at=T0)
    with store.read() as s:
        assert s.get(CustomerCard, "C-A01").revision == 1


def test_the_department_manager_assigns_customers_to_reps(archive):
    with pytest.raises(Forbidden, match="only the department manager"):
        archive.update("C-A01", "rep.wang", {"rep": "rep.feng"}, at=T0)
    with pytest.raises(Forbidden):
        archive.card("C-N01", "rep.feng", door="web", at=T0)
    archive.update("C-N01", "dm.zhou", {"rep": "rep.feng"}, at=T0)
    assert archive.card("C-N01", "rep.feng", door="web", at=T0)["basis"] == "rep"
    archive.update("C-N01", "dm.zhou", {"rep": None}, at=T0)
    with pytest.raises(Forbidden):
        archive.card("C-N01", "rep.feng", door="web", at=T0)


# --- instance data is not a back door to the card ------------------------------------------------

def test_an_order_carries_its_delivery_facts_and_nothing_of_the_card(rt, store):
    """The warehouse ships an order of C-A01: its task shows the order's delivery facts (typed by
    the rep), and no phone, characteristic, family note or other contact from the archive."""
    assert not any(hasattr(mod, "customer") for mod in (processes.customers,))  # no card accessor
    for record in processes.customers.CUSTOMERS.values():
        assert set(record) == {"name", "name_en", "contact", "address", "credit"}
    order = {"customer": "C-A01", "contact": "刘建国", "order_source": "phone",
             "lines": [{"product": "芝麻灰花岗岩板", "spec": "600x600x20", "quantity": 200, "unit_price": 600}],
             "delivery_address": "广州市天河区黄埔大道西 268 号", "delivery_date": "2026-12-20"}
    view = rt.start("order_to_settlement", "rep.wang", order, at=T0)
    view = rt.complete(view.tasks[0].id, "dm.zhou", {"decision": "approve"}, at=T0)
    view = rt.complete(view.tasks[0].id, "fin.chu", {"deposit_received": view.data["deposit_required"],
                                                     "received_on": "2026-11-24"}, at=T0 + timedelta(days=1))
    view = rt.complete(view.tasks[0].id, "prod.jiang", {"work_order_no": "WO-1", "planned_start": "2026-11-25",
                                                        "planned_finish": "2026-12-08"}, at=T0 + timedelta(days=1))
    (ship,) = view.tasks
    assert ship.element_id == "ship_goods"
    detail = views_of(rt).task_detail(ship.id, "wh.wei")
    assert detail["data"]["delivery_address"] == order["delivery_address"]
    with store.read() as s:
        state = s.get(Instance, view.id).state
    seen = json.dumps(detail["data"], ensure_ascii=False) + state
    assert [word for word in CONFIDENTIAL if word in seen] == []


# --- the doors: page, API, command line ------------------------------------------------------------

@pytest.fixture
def app(rt, tmp_path, monkeypatch):
    from web import create_app

    from .browser_server import compile_catalogs
    monkeypatch.setenv("BPM_NOW", T0.isoformat())
    return create_app(rt, {"TESTING": True, "SECRET_KEY": "test", "WTF_CSRF_ENABLED": False,
                           "BABEL_TRANSLATION_DIRECTORIES": str(compile_catalogs(tmp_path / "tr")),
                           "VENDOR_DIR": str(tmp_path / "vendor")})


def signed_in(app, user: str, lang: str = "en"):
    client = app.test_client()
    assert client.post("/login", data={"username": user, "password": "demo"}).status_code == 302
    client.post("/lang", data={"lang": lang})
    return client


def page(response) -> str:
    return unescape(response.get_data(as_text=True))


def test_card_page_reads_refuses_and_is_recorded(app, store):
    gm = signed_in(app, "gm.zhao")
    shown = gm.get("/customers/C-A01")
    assert shown.status_code == 200
    assert "138 2240 7781" in page(shown) and "Update the card" not in page(shown)
    wh = signed_in(app, "wh.wei", "zh_CN")
    refused = wh.get("/customers/C-A01")
    assert refused.status_code == 403
    assert "138 2240 7781" not in page(refused) and "/start/archive_access" in page(refused)
    assert "不得查阅客户 C-A01 的档案" in page(refused)
    listing = page(wh.get("/customers"))
    assert "C-A01" in listing and "广州华鼎" not in listing
    assert "广州华鼎" in page(gm.get("/customers"))
    assert "You read it as: head of Finance." in page(signed_in(app, "fin.chu").get("/customers/C-A01"))
    assert "财务部负责人" in page(signed_in(app, "fin.chu", "zh_CN").get("/customers/C-A01"))
    assert [r[0:3] + r[5:] for r in reads(store)] == [("gm.zhao", "C-A01", True, "web"),
                                                      ("wh.wei", "C-A01", False, "web"),
                                                      ("fin.chu", "C-A01", True, "web"),
                                                      ("fin.chu", "C-A01", True, "web")]


def test_card_page_edits_for_the_serving_rep_and_refuses_others(app, store):
    rep = signed_in(app, "rep.wang")
    assert "Update the card" in page(rep.get("/customers/C-A01"))
    saved = rep.post("/customers/C-A01", data={
        "revision": "1", "name": DEMO_CARDS[0]["name"], "address": DEMO_CARDS[0]["address"],
        "phones": "020-8562 3107\n138 0000 9999", "contacts": "刘建国 | 采购经理 | 138 2240 7781",
        "characteristics": "c", "family": "", "notes": "n"})
    assert saved.status_code == 302
    card = page(rep.get("/customers/C-A01"))
    assert "138 0000 9999" in card and "rep.wang" in card
    bad = rep.post("/customers/C-A01", data={"revision": "2", "name": "", "address": "a"})
    assert bad.status_code == 422 and "Nothing was changed" in page(bad)
    other = signed_in(app, "rep.feng")
    assert other.post("/customers/C-A01", data={"revision": "2", "notes": "x"}).status_code == 403
    with store.read() as s:
        assert s.get(CustomerCard, "C-A01").revision == 2


def test_auditor_page_lists_reads_filtered_by_customer(app):
    signed_in(app, "dm.zhou").get("/customers/C-B01")
    signed_in(app, "wh.wei").get("/customers/C-A01")
    auditor = signed_in(app, "audit.han")
    everything = page(auditor.get("/archive-reads"))
    assert "dm.zhou" in everything and "wh.wei" in everything
    only_a = page(auditor.get("/archive-reads?customer=C-A01"))
    assert "wh.wei" in only_a and "dm.zhou" not in only_a and "refused" in only_a
    assert auditor.get("/customers/C-A01").status_code == 403  # the record, not the cards
    assert signed_in(app, "rep.wang").get("/archive-reads").status_code == 403


def token(client, user: str) -> dict:
    reply = client.post("/api/v1/tokens", json={"username": user, "password": "demo"})
    return {"Authorization": f"Bearer {reply.json['token']}"}


def test_api_card_changes_and_record_of_reads(app, store):
    client = app.test_client()
    dm, wh, auditor = token(client, "dm.zhou"), token(client, "wh.wei"), token(client, "audit.han")
    card = client.get("/api/v1/customers/C-C01", headers=dm)
    assert card.status_code == 200 and card.json["basis"] == "role:dept_manager"
    assert card.json["history"][0]["by"] == "init"
    refused = client.get("/api/v1/customers/C-C01", headers=wh)
    assert refused.status_code == 403 and "archive_access" in refused.json["error"]
    assert client.get("/api/v1/customers/C-ZZ9", headers=dm).status_code == 404
    changed = client.patch("/api/v1/customers/C-C01", headers=dm,
                           json={"changes": {"notes": "改为月结"}, "revision": 1})
    assert changed.status_code == 200 and changed.json["changes"]["notes"][1] == "改为月结"
    assert client.patch("/api/v1/customers/C-C01", headers=dm,
                        json={"changes": {"notes": "x"}, "revision": 1}).status_code == 409
    assert client.patch("/api/v1/customers/C-C01", headers=dm,
                        json={"changes": {"phones": 5}}).json["fields"] == {"phones": "a list of at most 10 phone numbers"}
    assert client.patch("/api/v1/customers/C-C01", headers=wh, json={"changes": {"notes": "x"}}).status_code == 403
    record = client.get("/api/v1/archive-reads?customer=C-C01", headers=auditor)
    assert record.status_code == 200
    assert [(r["reader"], r["allowed"], r["door"]) for r in record.json] == [
        ("wh.wei", False, "api"), ("dm.zhou", True, "api")]
    assert client.get("/api/v1/archive-reads", headers=wh).status_code == 403
    assert client.get("/api/v1/archive-reads?limit=0", headers=auditor).status_code == 400
    listed = {c["id"]: c for c in client.get("/api/v1/customers", headers=wh).json}
    assert listed["C-A01"] == {"id": "C-A01", "name": None, "may_read": False}
    paths = client.get("/api/openapi.json").json["paths"]
    assert {"get", "patch"} <= set(paths["/v1/customers/{customer_id}"]) and "/v1/archive-reads" in paths


def test_cli_customer_reads_refuses_and_records(tmp_path, monkeypatch, capsys):
    from bpm.cli import main
    monkeypatch.setenv("BPM_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    monkeypatch.setenv("BPM_NOW", T0.isoformat())
    assert main(["init", "--demo"]) == 0
    capsys.readouterr()
    assert main(["customer", "C-A01", "--as", "gm.zhao", "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["id"] == "C-A01" and card["basis"] == "role:general_manager" and card["rep"] == "rep.wang"
    assert main(["customer", "C-A01", "--as", "rep.wang"]) == 0
    assert "read as rep" in capsys.readouterr().out
    assert main(["customer", "C-A01", "--as", "wh.wei"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "wh.wei may not read the archive of customer C-A01" in err
    assert main(["customer", "C-A01", "--as", "nobody"]) == 1
    assert "there is no user 'nobody'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["customer", "C-A01"])
    assert usage.value.code == 2
    assert main(["init", "--demo"]) == 0  # safe to run twice: the cards stay as they are
    from engine.store import Store
    store = Store()
    assert [r[0:3] + r[5:] for r in reads(store)] == [("gm.zhao", "C-A01", True, "cli"),
                                                      ("rep.wang", "C-A01", True, "cli"),
                                                      ("wh.wei", "C-A01", False, "cli")]
    store.dispose()


def test_asking_and_granting_through_the_pages(app, store):
    wh = signed_in(app, "wh.wei")
    assert "/start/archive_access" in page(wh.get("/start"))
    started = wh.post("/start/archive_access", data={"customer": "C-B01", "reason": "核对收货人"})
    assert started.status_code == 302, page(started)
    with store.read() as s:
        (task,) = s.scalars(select(HumanTask)).all()
    gm = signed_in(app, "gm.zhao", "zh_CN")
    form = page(gm.get(f"/tasks/{task.id}"))
    assert "核对收货人" in form and "wh.wei" in form and "授权截止日期" in form
    done = gm.post(f"/tasks/{task.id}", data={"decision": "approve", "until": "2026-11-27", "action": "complete"})
    assert done.status_code == 302, page(done)
    card = page(wh.get("/customers/C-B01"))
    assert "the general manager's grant" in card and "0757-2238 6410" in card and "2026-11-27" in card
    assert signed_in(app, "wh.wei").get("/customers/C-A01").status_code == 403


# --- building a card (建立客户档案卡, seed 001 三(五)2(1)) -------------------------------------------

# Who builds a card: the department manager, and a sales rep, who then serves the customer.
CREATE = {user: False for user in USERS}
CREATE.update({"dm.zhou": True, "rep.wang": True, "rep.feng": True, "rep.liu": True})
NEW = {"name": "南宁青秀石材有限公司", "address": "广西南宁市青秀区竹溪大道 8 号", "phones": ["0771-555 0101"],
       "contacts": [{"name": "黄海", "title": "采购主管", "phone": "139 7700 1234"}], "notes": "展会上结识"}
C_B01 = next(c for c in DEMO_CARDS if c["id"] == "C-B01")  # served by rep.feng


def cards(store) -> list[tuple]:
    with store.read() as s:
        return [(c.id, c.name, c.rep, c.revision) for c in s.scalars(select(CustomerCard).order_by(CustomerCard.id))]


def test_the_create_table_covers_every_demo_user():
    assert list(CREATE) == USERS == DEMO_USERS


def test_create_a_customer_card_for_every_demo_user(archive, store):
    before = cards(store)
    for i, user in enumerate(USERS):
        customer = f"C-D{i:02d}"
        if CREATE[user]:
            assert archive.create(customer, user, NEW, at=T0)["revision"] == 1, user
            card = archive.card(customer, user, door="cli", at=T0)  # whoever built a card reads and keeps it
            assert card["basis"] == ("role:dept_manager" if user == "dm.zhou" else "rep"), user
            assert card["rep"] == (None if user == "dm.zhou" else user) and card["may_edit"], user
        else:
            with pytest.raises(Forbidden, match=f"{user} may not create a customer archive"):
                archive.create(customer, user, NEW, at=T0)
    made = [c for c in cards(store) if c not in before]
    assert [c[0] for c in made] == [f"C-D{i:02d}" for i, u in enumerate(USERS) if CREATE[u]]


def test_a_new_card_begins_its_history_with_its_creation(archive):
    t1, t2 = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    done = archive.create(" c-d01 ", "rep.liu", NEW, at=t1)  # the id is kept trimmed, in capitals
    assert done["id"] == "C-D01" and done["revision"] == 1
    assert done["changes"] == {"name": [None, NEW["name"]], "address": [None, NEW["address"]],
                               "phones": [None, NEW["phones"]], "contacts": [None, NEW["contacts"]],
                               "notes": [None, NEW["notes"]], "rep": [None, "rep.liu"]}
    archive.update("C-D01", "rep.liu", {"family": "夫妻共同经营"}, at=t2, revision=1)
    card = archive.card("C-D01", "dm.zhou", door="web", at=t2)
    assert [(h["revision"], h["by"], h["at"]) for h in card["history"]] == [
        (1, "rep.liu", t1.isoformat()), (2, "rep.liu", t2.isoformat())]
    assert card["history"][0]["changes"] == done["changes"]
    assert (card["credit_level"], card["characteristics"], card["family"]) == (None, "", "夫妻共同经营")


def test_who_serves_a_new_customer(archive):
    with pytest.raises(Forbidden, match="only the department manager"):
        archive.create("C-D01", "rep.wang", {"name": "x", "rep": "rep.feng"}, at=T0)
    with pytest.raises(Forbidden, match="only the department manager"):
        archive.create("C-D01", "rep.wang", {"name": "x", "rep": None}, at=T0)  # a rep serves what he builds
    assert archive.create("C-D01", "rep.wang", {"name": "x", "rep": "rep.wang"}, at=T0)["changes"]["rep"] == [
        None, "rep.wang"]
    archive.create("C-D02", "dm.zhou", {"name": "y", "rep": "rep.feng"}, at=T0)
    assert archive.card("C-D02", "rep.feng", door="cli", at=T0)["basis"] == "rep"


def test_a_duplicate_id_is_refused_and_tells_nothing_of_the_card(archive, store):
    before = cards(store)
    for user in ("rep.wang", "dm.zhou"):  # rep.wang may not read C-B01; dm.zhou may
        with pytest.raises(Conflict) as taken:
            archive.create("C-B01", user, NEW, at=T0)
        said = str(taken.value) + repr(taken.value.params)
        assert "C-B01" in said and "already" in said
        for secret in (C_B01["name"], C_B01["address"], "rep.feng", "revision"):
            assert secret not in said, (user, secret)
    with pytest.raises(Conflict):
        archive.create("c-a01", "rep.wang", NEW, at=T0)
    with pytest.raises(Forbidden):  # refused before the id is looked at: a non-creator learns nothing
        archive.create("C-B01", "wh.wei", NEW, at=T0)
    assert cards(store) == before and reads(store) == []
    with store.read() as s:
        assert s.get(CustomerCard, "C-B01").name == C_B01["name"]


def test_bad_new_cards_name_what_was_wrong_and_create_nothing(archive, store):
    before = cards(store)
    fields = [({}, "name"), ({"name": ""}, "name"), ({"name": "x" * 201}, "name"), ({"name": "a\x00b"}, "name"),
              ({"name": "n", "notes": "a\ud800"}, "notes"), ({"name": "n", "credit_level": "A"}, "credit_level"),
              ({"name": "n", "revision": 3}, "revision"), ({"name": "n", "rep": "wh.wei"}, "rep"),
              ({"name": "n", "phones": "1"}, "phones"), ({"name": "n", "contacts": [{"age": 3}]}, "contacts.0")]
    for given, field in fields:
        with pytest.raises(InvalidInput) as refused:
            archive.create("C-D01", "dm.zhou", given, at=T0)
        assert field in refused.value.fields and field in str(refused.value), given
    for bad_id in ["", "  ", "C/D01", "C D01", "C-" + "1" * 19, "C-\x00", "\ud800", "C-D01\t2", None, 5,
                   "../C-A01", "-C", "客户1"]:
        with pytest.raises(InvalidInput, match="customer id") as refused:
            archive.create(bad_id, "dm.zhou", {"name": "n"}, at=T0)
        assert "id" in refused.value.fields, bad_id
    with pytest.raises(InvalidInput):
        archive.create("C-D01", "dm.zhou", ["name"], at=T0)
    assert cards(store) == before


def test_new_card_page_for_those_who_may_create(app, store):
    rep = signed_in(app, "rep.feng")
    assert 'href="/customers/new"' in page(rep.get("/customers"))
    form = rep.get("/customers/new")
    assert form.status_code == 200 and "New customer card" in page(form)
    made = rep.post("/customers", data={"id": "C-D01", "name": NEW["name"], "address": NEW["address"],
                                        "phones": "0771-555 0101\n139 7700 1234",
                                        "contacts": "黄海 | 采购主管 | 139 7700 1234", "notes": "n"})
    assert made.status_code == 302 and made.headers["Location"].endswith("/customers/C-D01")
    card = page(rep.get("/customers/C-D01"))
    assert "黄海" in card and "139 7700 1234" in card and "Update the card" in card
    bad = rep.post("/customers", data={"id": "C D", "name": ""})
    assert bad.status_code == 422 and "Nothing was created" in page(bad)
    taken = rep.post("/customers", data={"id": "C-A01", "name": "x"})
    assert taken.status_code == 409 and "already" in page(taken)
    assert DEMO_CARDS[0]["name"] not in page(taken) and "rep.wang" not in page(taken)
    wh = signed_in(app, "wh.wei", "zh_CN")
    assert "/customers/new" not in page(wh.get("/customers"))
    assert wh.get("/customers/new").status_code == 403
    refused = wh.post("/customers", data={"id": "C-D02", "name": "x"})
    assert refused.status_code == 403 and "不得建立客户档案" in page(refused)
    assert [c[0] for c in cards(store)].count("C-D01") == 1 and "C-D02" not in [c[0] for c in cards(store)]


def test_api_creates_a_card(app, store):
    client = app.test_client()
    rep, dm, wh = token(client, "rep.liu"), token(client, "dm.zhou"), token(client, "wh.wei")
    made = client.post("/api/v1/customers", headers=rep, json={"id": "C-D01", **NEW})
    assert made.status_code == 201 and made.json["id"] == "C-D01" and made.json["revision"] == 1
    assert made.headers["Location"].endswith("/api/v1/customers/C-D01")
    assert client.get("/api/v1/customers/C-D01", headers=rep).json["history"][0]["by"] == "rep.liu"
    assert client.post("/api/v1/customers", headers=wh, json={"id": "C-D02", "name": "x"}).status_code == 403
    taken = client.post("/api/v1/customers", headers=rep, json={"id": "C-B01", "name": "x"})
    assert taken.status_code == 409 and C_B01["name"] not in taken.get_data(as_text=True)
    assert "rep.feng" not in taken.get_data(as_text=True)
    bad = client.post("/api/v1/customers", headers=dm, json={"id": "C-D03", "name": "", "x": 1})
    assert bad.status_code == 400 and "name" in bad.json["fields"]  # InvalidInput, as PATCH answers it
    assert client.post("/api/v1/customers", headers=dm, json={"name": "x"}).json["fields"] == {
        "id": "a short code of capital letters, digits and hyphens, such as C-D01"}
    assert client.post("/api/v1/customers", headers=dm, json=["x"]).status_code == 400
    paths = client.get("/api/openapi.json").json["paths"]
    assert {"get", "post"} <= set(paths["/v1/customers"])
    assert [c[0] for c in cards(store)].count("C-D01") == 1 and "C-D03" not in [c[0] for c in cards(store)]


def test_cli_customer_add(tmp_path, monkeypatch, capsys):
    from bpm.cli import main
    monkeypatch.setenv("BPM_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    monkeypatch.setenv("BPM_NOW", T0.isoformat())
    assert main(["init", "--demo"]) == 0
    capsys.readouterr()
    data = json.dumps(NEW, ensure_ascii=False)
    assert main(["customer-add", "C-D01", "--as", "rep.liu", "--data", data, "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert (done["id"], done["revision"], done["changes"]["rep"]) == ("C-D01", 1, [None, "rep.liu"])
    assert main(["customer-add", "C-D02", "--as", "dm.zhou", "--data", '{"name": "桂林石材"}']) == 0
    assert capsys.readouterr().out.strip() == "customer C-D02 created (revision 1), served by nobody yet"
    assert main(["customer", "C-D01", "--as", "rep.liu"]) == 0
    assert "read as rep" in capsys.readouterr().out
    for argv, said in [(["C-D01", "--as", "rep.liu", "--data", '{"name": "x"}'], "already"),
                       (["C-D03", "--as", "wh.wei", "--data", '{"name": "x"}'], "wh.wei may not create"),
                       (["C-D03", "--as", "rep.liu", "--data", "{not json"], "--data"),
                       (["C-D03", "--as", "rep.liu", "--data", '{"name": ""}'], "name"),
                       (["C D", "--as", "rep.liu", "--data", '{"name": "x"}'], "customer id")]:
        assert main(["customer-add", *argv]) == 1, argv
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and said in err, (argv, err)
    with pytest.raises(SystemExit) as usage:
        main(["customer-add", "C-D03", "--data", '{"name": "x"}'])
    assert usage.value.code == 2
