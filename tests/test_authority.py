"""Who may do what: every user of CLI.md's demo organisation x every action, through the engine,
and a sample of the same cells through the JSON API, the pages and the command line.

The expectations are written out below from RULES.md and CLI.md, one table per action; they are
not computed from engine.access. To add an action, add one `Action` to ACTIONS: who may do it,
how to set it up, how to try it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import pytest
from sqlalchemy import func, select

import processes
from engine import access, customers, reports, timers, versions
from engine.runtime import EngineError, Forbidden, InvalidInput, NotFound, Runtime
from engine.store import CustomerCard, Definition, Instance
from processes.customers import DEMO_CARDS

from .conftest import DATA, contract, snapshot, views_of
from .orders_on_file import put_order

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)  # a Monday, 09:00 in China

# CLI.md's demo organisation, and the bank's service account (a finance payment feed).
USERS = ["gm.zhao", "board.sun", "gmo.tang", "vp.qian", "hq.li", "dm.zhou", "rm.zheng", "om.wu",
         "rep.wang", "rep.feng", "om.lin", "rep.liu", "plan.chen", "fin.chu", "acct.xu", "wh.wei",
         "prod.jiang", "ssg.shen", "audit.han", "design.yang", "bank.feed"]
REPS = {"rep.wang", "rep.feng", "rep.liu"}
FINANCE = {"fin.chu", "acct.xu"}

BRANCH = {"name": "南宁办事处", "branch_type": "office", "location": "广西南宁市青秀区民族大道 136 号",
          "business_scope": "石材产品销售与售后服务", "org_structure": "主任 1 名，业务员 4 名",
          "head_count": 6, "budget": 800000, "reason": "就近服务客户"}
RETURN = {"customer": "C-A01", "order_no": "SO-20261102-4c1d9e", "reason": "quality", "kind": "return",
          "lines": [{"product": "爵士白大理石板", "spec": "800x800x18", "quantity": 12}],
          "description": "表面有裂纹"}
TRIP = {"purpose": "拜访客户", "destination": "南宁", "in_city": False, "depart_on": "2026-11-24",
        "return_on": "2026-11-26", "grade": "staff", "sex": "male", "request_flight": False,
        "request_in_city_stay": False}
START_DATA = {"branch_establishment": BRANCH, "contract_review": contract(), "return_request": RETURN,
              "expense_claim": TRIP}


def order(customer: str = "C-A01", amount: float = 100000) -> dict:
    """A phone order worth `amount` in its lines (the department manager approves it)."""
    return {"customer": customer, "contact": "陈美玲", "order_source": "phone",
            "lines": [{"product": "芝麻灰花岗岩板", "spec": "600x600x20", "quantity": 200,
                       "unit_price": amount / 200}],
            "delivery_address": "广州市天河区", "delivery_date": "2026-12-20"}


START_DATA["order_to_settlement"] = order()
START_DATA["archive_access"] = {"customer": "C-A01", "reason": "核对发货地址"}
START_DATA["regional_expense"] = {"month": "2026-11", "expenses": [
    {"category": "rm_travel", "description": "南宁出差", "amount": 500}]}


# --- the world an action is tried in -----------------------------------------------------------

class World:
    """The runtime of the four company processes, with a clock that moves on at each step."""

    def __init__(self, store):
        self.store = store
        versions.deploy(store, [ROOT / "bpmn"], actor="design.yang", at=T0)
        self.rt = Runtime(store, processes.SERVICES, lookups=processes.LOOKUPS)
        self.now = T0
        # the order RETURN names, shipped often enough for a return by every user tried
        put_order(store, lines=[{"product": "爵士白大理石板", "spec": "800x800x18", "quantity": 10000,
                                 "unit_price": 800, "shipped": 10000}])

    def with_cards(self):
        with self.store.write() as session:
            if session.get(CustomerCard, "C-A01") is None:
                customers.seed_cards(session, DEMO_CARDS, T0)

    def return_awaiting_office_sign(self):
        """rep.wang (Guangzhou office) files a return: its om_sign is for Guangzhou's office manager."""
        return self.rt.start("return_request", "rep.wang", RETURN, at=self.tick())

    def tick(self, **delta) -> datetime:
        self.now += timedelta(**delta) if delta else timedelta(minutes=5)
        return self.now

    def task(self, view, element_id: str):
        return next(t for t in self.rt.instance(view.id).tasks if t.element_id == element_id)

    # the situations the actions need: each a fresh instance of the order chain
    def order_awaiting_deposit(self):
        view = self.rt.start("order_to_settlement", "rep.wang", order(), at=self.tick())
        return self.rt.complete(self.task(view, "approve_order_dm").id, "dm.zhou", {"decision": "approve"},
                                at=self.tick())

    def order_with_production_escalated(self):
        """Deposit in; production silent for five hours: escalated to prod.jiang's superior, gm.zhao."""
        view = self.order_awaiting_deposit()
        self.rt.complete(self.task(view, "confirm_deposit").id, "fin.chu",
                         {"deposit_received": 30000, "received_on": "2026-11-23"}, at=self.tick())
        timers.run_once(self.rt, self.tick(hours=5))
        assert self.task(view, "schedule_production").assignee == "gm.zhao"
        return view

    def order_awaiting_payment(self):
        """A credit-A order shipped: its balance is due now, as message payment_received."""
        view = self.order_awaiting_deposit()
        rt = self.rt
        rt.complete(self.task(view, "confirm_deposit").id, "fin.chu",
                    {"deposit_received": 30000, "received_on": "2026-11-23"}, at=self.tick())
        rt.complete(self.task(view, "schedule_production").id, "prod.jiang",
                    {"work_order_no": "WO-1", "planned_start": "2026-11-25", "planned_finish": "2026-12-08"},
                    at=self.tick())
        rt.complete(self.task(view, "ship_goods").id, "wh.wei",
                    {"shipping_list": [{"line": 1, "quantity": 200}],
                     "carrier": "德邦物流", "tracking_no": "DB1", "shipped_on": "2026-12-09"}, at=self.tick())
        return rt.instance(view.id)


@dataclass
class Action:
    allowed: set[str]                       # who may, as RULES.md / CLI.md say
    rule: str                               # where it is said
    setup: Callable[[World], Any]           # a situation to try it in (None: nothing needed)
    attempt: Callable[[World, Any, str], Any]  # try it as that user; raises EngineError when refused
    changed: Callable[[World, Any], Any] = lambda world, situation: None  # what a refusal must leave as it was


def _instances(world: World):
    with world.store.read() as s:
        return s.scalar(select(func.count()).select_from(Instance))


def _start(process_id: str) -> Action:
    return Action(
        allowed={"branch_establishment": {"rm.zheng"}, "archive_access": set(USERS),
                 "regional_expense": {"rm.zheng"}, "expense_claim": set(USERS)}.get(process_id, REPS),
        rule={"branch_establishment": "RULES §1: the applicant's lane, 区域经理（申请人）",
              "archive_access": "CLI.md: anyone may ask the general manager to read an archive",
              "contract_review": "RULES §2: the sales rep submits a contract",
              "return_request": "RULES §3: a sales rep files a request",
              "order_to_settlement": "RULES roles: sales_rep raises orders",
              "regional_expense": "002 三 1: 区域经理备案 (the regional manager files)",
              "expense_claim": "001 费用: whoever travels files the trip (start_roles *)"}[process_id],
        setup=lambda world: None,
        attempt=lambda world, _, user: world.rt.start(process_id, user, START_DATA[process_id], at=world.tick()),
        changed=lambda world, _: _instances(world))


def _card(world: World, _) -> Any:
    with world.store.read() as s:
        card = s.get(CustomerCard, "C-A01")
        return (card.revision, card.address, card.rep)


def _card_count(world: World, _) -> Any:
    with world.store.read() as s:
        return s.scalar(select(func.count()).select_from(CustomerCard))


def _snapshot(world: World, view) -> dict:
    return snapshot(world.store, view.id)


def _deploy(world: World, _, user: str):
    return versions.deploy(world.store, [DATA / "runtime" / "approval.bpmn"], actor=user, at=world.tick())


def _definitions(world: World, _):
    with world.store.read() as s:
        return s.scalar(select(func.count()).select_from(Definition))


def _other_finance(user: str) -> str:
    return "fin.chu" if user == "acct.xu" else "acct.xu"


ACTIONS: dict[str, Action] = {
    **{f"start {p}": _start(p) for p in ("branch_establishment", "contract_review", "return_request",
                                         "order_to_settlement", "archive_access", "regional_expense",
                                         "expense_claim")},
    "view an order": Action(
        {"rep.wang", "dm.zhou", "fin.chu", "acct.xu", "audit.han"},
        "DESIGN human tasks / access.may_view_instance: its initiator, who may act on an open task, "
        "who acted (dm.zhou approved the phone order), the auditor (who reads every history)",
        World.order_awaiting_deposit,
        lambda world, view, user: world.rt.instance(view.id, viewer=user), _snapshot),
    "see a region's capital in use": Action(
        {"rm.zheng", "vp.qian", "gm.zhao"},
        "002 二 1 / access.may_see_capital: the region's regional manager, the VP (分管副总) and the GM",
        lambda world: None,
        lambda world, _, user: reports.CapitalReport(world.store).figure(user, "south_china")),
    "claim": Action(
        FINANCE, "RULES roles: finance confirms deposits",
        World.order_awaiting_deposit,
        lambda world, view, user: world.rt.claim(world.task(view, "confirm_deposit").id, user, at=world.tick()),
        _snapshot),
    "complete": Action(
        FINANCE, "RULES §4: finance confirms the deposit",
        World.order_awaiting_deposit,
        lambda world, view, user: world.rt.complete(
            world.task(view, "confirm_deposit").id, user,
            {"deposit_received": 30000, "received_on": "2026-11-23"}, at=world.tick()),
        _snapshot),
    "delegate": Action(
        FINANCE, "DESIGN human tasks: hand to a colleague of the same role",
        World.order_awaiting_deposit,
        lambda world, view, user: world.rt.delegate(
            world.task(view, "confirm_deposit").id, user, _other_finance(user), at=world.tick()),
        _snapshot),
    "hand back": Action(
        {"gm.zhao"}, "RULES 4-hour reply: the superior an overdue task went to may hand it back",
        World.order_with_production_escalated,
        lambda world, view, user: world.rt.hand_back(world.task(view, "schedule_production").id, user,
                                                     at=world.tick()),
        _snapshot),
    "reply (复命) on an open task": Action(
        FINANCE, "seed 000 岗位基本原则 / access.may_reply: whoever may act on the task replies to the superior; "
                 "an open task: its role",
        World.order_awaiting_deposit,
        lambda world, view, user: world.rt.reply(
            world.task(view, "confirm_deposit").id, user, "in_progress",
            expected_by=world.now + timedelta(hours=2), at=world.tick()),
        _snapshot),
    "reply (复命) on a held task": Action(
        {"gm.zhao"}, "seed 000 岗位基本原则: the holder replies (here the superior it was escalated to)",
        World.order_with_production_escalated,
        lambda world, view, user: world.rt.reply(
            world.task(view, "schedule_production").id, user, "cannot_finish", reason="排产已满 / fully booked",
            at=world.tick()),
        _snapshot),
    "message payment_received": Action(
        FINANCE | {"bank.feed"}, "CLI.md bpm message: payment_received needs finance (and the bank feed)",
        World.order_awaiting_payment,
        lambda world, view, user: world.rt.message(
            "payment_received", {"order_no": view.data["order_no"], "amount": 70000},
            {"order_no": view.data["order_no"]}, actor=user, at=world.tick()),
        _snapshot),
    "claim an office's return (om_sign)": Action(
        {"om.wu"}, "RULES offices: an office's requests go to that office's manager (rep.wang: Guangzhou)",
        World.return_awaiting_office_sign,
        lambda world, view, user: world.rt.claim(world.task(view, "om_sign").id, user, at=world.tick()),
        _snapshot),
    "read a customer card (C-A01, served by rep.wang)": Action(
        {"gm.zhao", "vp.qian", "gmo.tang", "dm.zhou", "fin.chu", "hq.li", "prod.jiang", "rep.wang"},
        "seed 001 三(六)2 / RULES confidentiality: 总经理, 副总经理, 总经理助理, 财务部经理 (not the accountant), "
        "业务部经理, 人事行政部部长, 生产部部长; the rep serving the customer; anyone else needs a grant",
        World.with_cards,
        lambda world, _, user: customers.Archive(world.store).card("C-A01", user, door="cli", at=world.tick()),
        _card),
    "create a customer card": Action(
        {"dm.zhou", "rep.wang", "rep.feng", "rep.liu"},
        "seed 001 三(五)2(1): the reps and the department manager build the cards (建立客户档案卡)",
        lambda world: None,
        lambda world, _, user: customers.Archive(world.store).create(
            "C-N" + str(USERS.index(user)).zfill(2), user, {"name": f"新客户 of {user}"}, at=world.tick()),
        _card_count),
    "deploy": Action(
        {"design.yang"}, "RULES roles: designer edits and deploys BPMN, forms and DMN",
        lambda world: None, _deploy, _definitions),
    "read the SLA breach report": Action(
        {"audit.han"}, "RULES 4-hour reply: the breach is recorded for the auditor",
        World.order_with_production_escalated,
        lambda world, _, user: reports.SlaReport(world.store).groups(user, reports.SlaQuery(by="person"))),
}


def outcome(world: World, action: Action, situation, user: str) -> str:
    """'allowed', 'refused' (Forbidden, or NotFound for someone who may not see the thing), or what
    else went wrong; a refusal must leave everything as it was."""
    before = action.changed(world, situation)
    try:
        action.attempt(world, situation, user)
    except (Forbidden, NotFound) as exc:
        after = action.changed(world, situation)
        return "refused" if after == before else f"refused but changed something ({exc})"
    except EngineError as exc:
        return f"{type(exc).__name__}: {exc}"
    return "allowed"


def test_the_users_are_cli_mds_demo_organisation():
    assert [u[0] for u in access.DEMO_USERS] == USERS


@pytest.mark.parametrize("name", list(ACTIONS))
def test_every_user_may_do_exactly_what_the_rules_say(store, name):
    action, world = ACTIONS[name], World(store)
    assert action.allowed <= set(USERS)
    situation = None
    wrong = []
    for user in USERS:
        if situation is None:
            situation = action.setup(world)
        got = outcome(world, action, situation, user)
        want = "allowed" if user in action.allowed else "refused"
        if got != want:
            wrong.append(f"{user}: expected {want}, got {got}")
        if got == "allowed":
            situation = None  # used up: the next user gets a fresh one
    assert wrong == [], f"{name} ({action.rule})"


# --- the cases, through the doors people use -------------------------------------------

@pytest.fixture
def world(store):
    return World(store)


@pytest.fixture
def api(world):
    from web import create_app
    app = create_app(world.rt, {"TESTING": True, "SECRET_KEY": "test", "WTF_CSRF_ENABLED": False})
    return app.test_client()


def bearer(api, username: str) -> dict:
    reply = api.post("/api/v1/tokens", json={"username": username, "password": "demo"})
    assert reply.status_code == 201, reply.json
    return {"Authorization": f"Bearer {reply.json['token']}"}


def test_the_warehouse_cannot_start_a_contract_review_nor_finance_a_return(api, world):
    for user, process_id in (("wh.wei", "contract_review"), ("fin.chu", "return_request")):
        reply = api.post(f"/api/v1/processes/{process_id}/instances", headers=bearer(api, user),
                         json={"data": START_DATA[process_id]})
        assert reply.status_code == 403, reply.json
        assert reply.json["error"] == f"{user} may not start process {process_id}: only sales_rep may"
        assert process_id not in [p["process_id"] for p in
                                  api.get("/api/v1/processes", headers=bearer(api, user)).json]
    assert _instances(world) == 0
    assert api.post("/api/v1/processes/contract_review/instances", headers=bearer(api, "rep.wang"),
                    json={"data": contract()}).status_code == 201


def test_a_process_lets_anyone_signed_in_start_it_by_a_property(world, tmp_path):
    source = (DATA / "runtime" / "approval.bpmn").read_text(encoding="utf-8")
    anyone = source.replace('<bpmn:startEvent id="start" />', (
        '<bpmn:startEvent id="start"><bpmn:extensionElements><spiffworkflow:properties>'
        '<spiffworkflow:property name="start_roles" value="*" /></spiffworkflow:properties>'
        '</bpmn:extensionElements></bpmn:startEvent>'))
    assert anyone != source
    path = tmp_path / "approval.bpmn"
    path.write_text(anyone, encoding="utf-8")
    versions.deploy(world.store, [path], actor="design.yang")
    for user in ("wh.wei", "audit.han", "rep.wang"):
        assert world.rt.start("approval", user, {"amount": 1}).status == "running"
        assert "approval" in [p["process_id"] for p in views_of(world.rt).startable(user)]
    few = path.read_text(encoding="utf-8").replace('value="*"', 'value="warehouse, auditor"')
    path.write_text(few, encoding="utf-8")
    versions.deploy(world.store, [path], actor="design.yang")
    world.rt.start("approval", "wh.wei", {"amount": 1})
    with pytest.raises(Forbidden, match="only auditor, warehouse may"):
        world.rt.start("approval", "rep.wang", {"amount": 1})
    path.write_text(few.replace("warehouse, auditor", "warehouse, ghosts"), encoding="utf-8")
    from engine.definitions import DefinitionError
    with pytest.raises(DefinitionError, match="start_roles names 'ghosts', which is not a known role"):
        versions.deploy(world.store, [path], actor="design.yang")


def test_a_sales_reps_token_cannot_book_a_payment_for_his_own_order(api, world):
    view = world.order_awaiting_payment()
    before = snapshot(world.store, view.id)
    order_no = view.data["order_no"]
    reply = api.post("/api/v1/messages/payment_received", headers=bearer(api, "rep.wang"),
                     json={"data": {"order_no": order_no, "amount": 70000}, "correlation": {"order_no": order_no}})
    assert reply.status_code == 403
    assert reply.json["error"] == "rep.wang may not send message payment_received: only bank_feed, finance may"
    assert snapshot(world.store, view.id) == before
    reply = api.post("/api/v1/messages/payment_received", headers=bearer(api, "bank.feed"),
                     json={"data": {"order_no": order_no, "amount": 70000}, "correlation": {"order_no": order_no}})
    assert reply.status_code == 200 and reply.json["delivered_to"] == [view.id]
    assert world.rt.instance(view.id).data["paid"] == 100000


def test_a_payment_needs_its_order_number_and_an_unknown_one_is_refused(world):
    view = world.order_awaiting_payment()
    before = snapshot(world.store, view.id)
    with pytest.raises(InvalidInput, match="message payment_received needs correlation order_no"):
        world.rt.message("payment_received", {"order_no": "SO-20991231-ffffff", "amount": 5000}, at=world.tick())
    with pytest.raises(InvalidInput, match="needs correlation order_no"):
        world.rt.message("payment_received", {"amount": 5000}, actor="fin.chu", at=world.tick())
    with pytest.raises(NotFound, match="no instance is waiting for message 'payment_received' with "
                                       "order_no=SO-20991231-ffffff"):
        world.rt.message("payment_received", {"order_no": "SO-20991231-ffffff", "amount": 5000},
                         {"order_no": "SO-20991231-ffffff"}, actor="fin.chu", at=world.tick())
    with pytest.raises(InvalidInput, match="order_no SO-20991231-ffffff but its correlation"):
        world.rt.message("payment_received", {"order_no": "SO-20991231-ffffff", "amount": 5000},
                         {"order_no": view.data["order_no"]}, actor="fin.chu", at=world.tick())
    assert snapshot(world.store, view.id) == before


def test_a_non_viewer_learns_nothing_from_a_refusal(api, world):
    view = world.order_awaiting_deposit()
    task_id = world.task(view, "confirm_deposit").id
    world.rt.complete(task_id, "fin.chu", {"deposit_received": 30000, "received_on": "2026-11-23"})
    never = "00000000-0000-0000-0000-000000000000"
    stranger = bearer(api, "wh.wei")
    for path in ("claim", "unclaim", "hand-back", "complete", "delegate", "comments"):
        body = {"to": "acct.xu", "body": "x", "data": {}}
        done = api.post(f"/api/v1/tasks/{task_id}/{path}", headers=stranger, json=body)
        missing = api.post(f"/api/v1/tasks/{never}/{path}", headers=stranger, json=body)
        assert (done.status_code, missing.status_code) == (404, 404), path
        assert done.json["error"] == missing.json["error"].replace(never, task_id), path
    assert api.get(f"/api/v1/tasks/{task_id}", headers=stranger).status_code == 404
    # one who may see the instance (fin.chu acted on it) is told what happened
    reply = api.post(f"/api/v1/tasks/{task_id}/complete", headers=bearer(api, "fin.chu"), json={"data": {}})
    assert reply.status_code == 409 and "completed by fin.chu" in reply.json["error"]
    # an open task of an instance one may not see: the same answer as for no task at all
    open_task = world.task(view, "schedule_production").id
    for path in ("claim", "unclaim", "complete", "comments"):
        reply = api.post(f"/api/v1/tasks/{open_task}/{path}", headers=stranger, json={"body": "x", "data": {}})
        assert reply.status_code == 404 and reply.json["error"] == f"there is no open task {open_task}", path
    assert api.put(f"/api/v1/tasks/{open_task}/draft", headers=stranger,
                   json={"data": {}}).status_code == 404
    reply = api.get(f"/api/v1/instances/{view.id}", headers=stranger)
    assert reply.status_code == 404 and reply.json["error"] == f"there is no instance {view.id}"
    assert api.get(f"/api/v1/instances/{view.id}/history", headers=stranger).status_code == 404


def test_a_draft_is_read_only_by_those_who_may_work_on_the_task(world):
    view = world.order_awaiting_deposit()
    task_id = world.task(view, "confirm_deposit").id
    world.rt.save_draft(task_id, "fin.chu", {"voucher_no": "BK-1"})
    assert world.rt.draft(task_id, "acct.xu") == {"voucher_no": "BK-1"}
    with pytest.raises(NotFound, match=f"there is no open task {task_id}"):
        world.rt.draft(task_id, "wh.wei")
    with pytest.raises(Forbidden):
        world.rt.draft(task_id, "rep.wang")  # may see the instance, may not work on the task


def test_bulk_actions_name_only_tasks_the_user_may_see(world):
    from web import create_app
    app = create_app(world.rt, {"TESTING": True, "SECRET_KEY": "test", "WTF_CSRF_ENABLED": False})
    client = app.test_client()
    client.post("/login", data={"username": "wh.wei", "password": "demo"})
    client.post("/lang", data={"lang": "en"})
    view = world.order_awaiting_deposit()
    task_id = world.task(view, "confirm_deposit").id
    asked = client.post("/tasks/bulk", data={"task": task_id, "action": "claim"}).get_data(as_text=True)
    assert view.data["order_no"] not in asked and task_id in asked  # the confirm step names it by id only
    page = client.post("/tasks/bulk", data={"task": task_id, "action": "claim", "confirm": "1"},
                       follow_redirects=True).get_data(as_text=True)
    assert view.data["order_no"] not in page and f"there is no open task {task_id}" in page


def test_pages_start_and_show_by_the_same_rule(world):
    from web import create_app
    app = create_app(world.rt, {"TESTING": True, "SECRET_KEY": "test", "WTF_CSRF_ENABLED": False})
    view = world.order_awaiting_deposit()
    for user in ("rep.wang", "wh.wei", "fin.chu", "audit.han", "design.yang", "rm.zheng"):
        client = app.test_client()
        client.post("/login", data={"username": user, "password": "demo"})
        for process_id in START_DATA:
            may = user in ACTIONS[f"start {process_id}"].allowed
            assert client.get(f"/start/{process_id}").status_code == (200 if may else 404), (user, process_id)
            assert (f"/start/{process_id}" in client.get("/start").get_data(as_text=True)) == may
        may = user in ACTIONS["view an order"].allowed
        assert client.get(f"/instances/{view.id}").status_code == (200 if may else 404), user


def test_the_api_answers_as_the_engine(api, world):
    for user in ("rep.wang", "wh.wei", "fin.chu", "acct.xu", "audit.han", "bank.feed", "gm.zhao"):
        headers = bearer(api, user)
        view = world.order_awaiting_payment()
        order_no = view.data["order_no"]
        reply = api.post("/api/v1/messages/payment_received", headers=headers,
                         json={"data": {"order_no": order_no, "amount": 10}, "correlation": {"order_no": order_no}})
        assert reply.status_code == (200 if user in ACTIONS["message payment_received"].allowed else 403), user
        view = world.order_awaiting_deposit()
        reply = api.get(f"/api/v1/instances/{view.id}", headers=headers)
        assert reply.status_code == (200 if user in ACTIONS["view an order"].allowed else 404), user
        task_id = world.task(view, "confirm_deposit").id
        reply = api.post(f"/api/v1/tasks/{task_id}/claim", headers=headers)
        assert reply.status_code in ((200,) if user in ACTIONS["claim"].allowed else (403, 404)), user
        reply = api.post("/api/v1/processes/order_to_settlement/instances", headers=headers,
                         json={"data": order()})
        assert reply.status_code == (201 if user in ACTIONS["start order_to_settlement"].allowed else 403), user


def test_the_command_line_deploys_only_as_the_designer_or_the_operator(tmp_path, monkeypatch, capsys):
    from bpm.cli import main
    monkeypatch.setenv("BPM_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    monkeypatch.delenv("BPM_NOW", raising=False)

    def bpm(*args: str):
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err
    assert bpm("init", "--demo")[0] == 0
    approval = str(DATA / "runtime" / "approval.bpmn")
    code, out, err = bpm("deploy", approval, "--as", "rep.wang")
    assert (code, out) == (1, "") and err.strip() == "bpm deploy: rep.wang may not deploy: only designer may"
    assert bpm("deploy", approval, "--as", "ghost")[2].strip() == "bpm deploy: there is no user 'ghost'"
    assert "approval" not in [r["process_id"] for r in json.loads(bpm("definitions", "--json")[1])]
    code, out, err = bpm("deploy", approval, "--as", "design.yang")
    assert code == 0 and out.strip() == "approval 1 deployed", err
    waiting = str(DATA / "runtime" / "waiting.bpmn")
    code, out, err = bpm("deploy", waiting)  # without --as: the operator on the server's shell
    assert code == 0, err
    rows = {r["process_id"]: r["deployed_by"] for r in json.loads(bpm("definitions", "--json")[1])}
    assert rows["approval"] == "design.yang" and rows["waiting"] == "operator"
    # instance --as: only what that user may see
    code, out, err = bpm("start", "approval", "--as", "rep.wang", "--data", '{"amount": 3}', "--json")
    instance_id = json.loads(out)["id"]
    assert bpm("instance", instance_id, "--as", "rep.wang")[0] == 0
    code, out, err = bpm("instance", instance_id, "--as", "wh.wei")
    assert (code, err.strip()) == (1, f"bpm instance: there is no instance {instance_id}")
    code, out, err = bpm("start", "approval", "--as", "wh.wei")
    assert code == 1 and "wh.wei may not start process approval: only sales_rep may" in err
