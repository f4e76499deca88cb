"""The region's money rules of seed 002 (集团公司年度销售区域管理办法) through the engine's public API,
with real order_to_settlement instances as the source of the collections:

- 三 1 the regional expense cap: a region's expenses are limited to 0.3 % of its collections
  (区域费用以区域回款额的0.3%为限), filed by the regional manager and approved by the general manager
  (区域经理备案总经理审批执行); his own travel is paid as spent (区域经理出差费用实报实销);
- 二 1 capital in use: retail customers' goods + stock, limited to 7 % of the year's collections,
  contract customers' overdue balances counted toward it; a page and an API for the regional
  manager (his region) and the VP (every region), one rule of who may see it
  (engine.access.may_see_capital).
"""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

import processes
from engine import access, audit, versions
from engine.reports import CapitalReport, capital_in_use, collections
from engine.runtime import Forbidden, InvalidInput, NotFound, Runtime
from engine.store import BusinessRecord, HumanTask, Instance, Office

from .conftest import contract
from .test_orders import (SLAB, approve, contract_order, deposit, line, pay, phone_order, produce,
                          reconcile_both, ship)
from .test_processes import APPROVE, BPMN, T0, Clock, do, the_task, waiting
from .test_web import as_user, at, catalogs, make_app  # noqa: F401 (catalogs: a fixture)


@pytest.fixture
def rt(store, monkeypatch):
    monkeypatch.setenv("BPM_NOW", at(T0 + timedelta(days=12)))  # "today" for pages: 2026-12-05
    versions.deploy(store, [BPMN], actor="design.yang", at=T0)
    return Runtime(store, processes.SERVICES, lookups=processes.LOOKUPS)


def kept(store, kind: str, key: str) -> dict:
    with store.read() as s:
        return s.get(BusinessRecord, (kind, key)).data


def count(store) -> int:
    with store.read() as s:
        return s.scalar(select(func.count()).select_from(Instance))


def settled_order(rt, clock, lines=None, customer="C-B01", rep="rep.wang"):
    """A phone order raised by `rep` taken to the end: approved, deposit, production, shipped, arrived,
    the balance paid by the bank, reconciled — settled (all of it received in late November 2026)."""
    view = rt.start("order_to_settlement", rep, phone_order(customer, lines), at=clock())
    view = produce(rt, deposit(rt, approve(rt, view, clock), clock), clock)
    view = ship(rt, view, clock, [(i + 1, l["quantity"]) for i, l in enumerate(view.data["lines"])])
    view = do(rt, view, "confirm_arrival", "ssg.shen", {"arrived_on": clock().date().isoformat()}, at=clock())
    view = pay(rt, view, view.data["balance"], clock())
    view = reconcile_both(rt, view, clock)
    assert view.status == "completed", waiting(view)
    assert kept(rt.store, "order", view.data["order_no"])["status"] == "settled"
    return view


def filing(month="2026-11", lines=None, **more) -> dict:
    return {"month": month, "expenses": lines or [{"category": "office", "description": "办公用品", "amount": 250}],
            **more}


def rm_travel(amount) -> dict:
    return {"category": "rm_travel", "description": "南宁办事处巡查出差", "amount": amount, "spent_on": "2026-11-18"}


# --- 三 1: the cap is 0.3 % of the region's collections of the month ----------------------------------

def test_the_cap_is_three_per_mille_of_the_month_collected_on_the_regions_settled_orders(rt, store):
    clock = Clock()
    order = settled_order(rt, clock)  # 200 × 500 = 100,000: 30,000 deposit on 11-24, 70,000 balance
    assert [p["amount"] for p in kept(store, "order", order.data["order_no"])["payments"]] == [30000, 70000]
    view = rt.start("regional_expense", "rm.zheng", filing(lines=[
        {"category": "office", "description": "办公用品", "amount": 180},
        {"category": "communication", "description": "电话费", "amount": 120}]), at=clock())
    data = view.data
    assert (data["region"], data["collections"], data["cap"]) == ("south_china", 100000, 300)
    assert (data["counted_total"], data["month_total"], data["within_cap"]) == (300, 300, True)  # at the cap: within
    task = the_task(view, "gm_approval")  # within the cap: the general manager approves (总经理审批执行)
    assert (task.role, task.assignee) == ("general_manager", None) and waiting(view) == ["gm_approval"]
    assert task.due == clock.now + timedelta(hours=4)  # the 4-hour reply
    assert data["filing_no"].startswith("FY-") and data["business_key"] == data["filing_no"]
    # another month's filing sees that month's collections: none in October
    october = rt.start("regional_expense", "rm.zheng", filing("2026-10", over_cap_reason="十月展会"), at=clock())
    assert (october.data["collections"], october.data["cap"], october.data["within_cap"]) == (0, 0, False)
    # the GM approves, finance pays, the filing's record follows
    view = do(rt, view, "gm_approval", "gm.zhao", APPROVE, at=clock())
    assert waiting(view) == ["pay_expenses"] and kept(store, "regional_expense", data["filing_no"])["status"] == "approved"
    view = do(rt, view, "pay_expenses", "fin.chu", {"paid_on": "2026-12-01", "voucher_no": "FK-1"}, at=clock())
    assert view.status == "completed"
    record = kept(store, "regional_expense", data["filing_no"])
    assert (record["status"], record["voucher_no"], record["total"], record["region"]) == ("paid", "FK-1", 300,
                                                                                            "south_china")
    with store.read() as s:
        for instance_id in s.scalars(select(Instance.id)):
            assert audit.verify(s, instance_id, rt.script_engine).ok, instance_id


def test_over_the_cap_needs_a_reason_and_waits_for_the_general_managers_comment(rt, store):
    clock = Clock()
    settled_order(rt, clock)  # November's collections 100,000: cap 300
    first = rt.start("regional_expense", "rm.zheng", filing(), at=clock())  # 250 of 300
    assert first.data["within_cap"] is True
    before = count(store)
    with pytest.raises(InvalidInput) as refused:  # a second filing of the month: 250 + 80 > 300, no reason
        rt.start("regional_expense", "rm.zheng", filing(lines=[
            {"category": "transport", "description": "出租车", "amount": 80}]), at=clock())
    assert set(refused.value.fields) == {"over_cap_reason"}
    assert "would be 330, over the cap of 300 (0.3 % of the 100000 collected that month) by 30" in str(refused.value)
    assert count(store) == before  # nothing started
    view = rt.start("regional_expense", "rm.zheng", filing(lines=[
        {"category": "transport", "description": "出租车", "amount": 80}], over_cap_reason="客户集中拜访，车费超支"),
        at=clock())
    assert (view.data["filed_before"], view.data["month_total"], view.data["over_by"]) == (250, 330, 30)
    task = the_task(view, "gm_over_cap")
    assert task.role == "general_manager" and waiting(view) == ["gm_over_cap"]
    assert task.due == clock.now + timedelta(hours=4)
    with pytest.raises((Forbidden, NotFound)):  # the general manager's, not the VP's (not even shown to him)
        do(rt, view, "gm_over_cap", "vp.qian", {"decision": "approve", "comment": "同意"}, at=clock())
    with pytest.raises(InvalidInput) as refused:  # over the cap the GM says why
        do(rt, view, "gm_over_cap", "gm.zhao", APPROVE, at=clock())
    assert "comment" in refused.value.fields
    view = do(rt, view, "gm_over_cap", "gm.zhao", {"decision": "reject", "comment": "本月费用已达上限"}, at=clock())
    assert view.status == "completed" and view.tasks == []
    assert kept(store, "regional_expense", view.data["filing_no"])["status"] == "rejected"
    # a rejected filing no longer counts against the month: 250 + 40 is within the cap again
    again = rt.start("regional_expense", "rm.zheng", filing(lines=[
        {"category": "transport", "description": "出租车", "amount": 40}]), at=clock())
    assert (again.data["filed_before"], again.data["within_cap"]) == (250, True)


def test_the_regional_managers_own_travel_is_paid_as_spent_and_not_counted(rt, store):
    clock = Clock()
    settled_order(rt, clock)  # cap 300
    view = rt.start("regional_expense", "rm.zheng", filing(lines=[
        {"category": "office", "description": "办公用品", "amount": 250}, rm_travel(4860)]), at=clock())
    data = view.data
    assert (data["counted_total"], data["paid_as_spent"], data["amount"], data["within_cap"]) == (250, 4860, 5110, True)
    assert waiting(view) == ["gm_approval"]  # 5,110 filed, 250 counted: within the cap
    view = do(rt, view, "gm_approval", "gm.zhao", APPROVE, at=clock())
    task = the_task(view, "pay_expenses")
    assert task.role == "finance"
    view = do(rt, view, "pay_expenses", "acct.xu", {"paid_on": "2026-12-01", "voucher_no": "FK-9"}, at=clock())
    record = kept(store, "regional_expense", data["filing_no"])
    assert (record["status"], record["total"], record["paid_as_spent"]) == ("paid", 5110, 4860)  # all of it paid
    # travel alone is within a cap of nothing: a month without collections
    alone = rt.start("regional_expense", "rm.zheng", filing("2026-09", lines=[rm_travel(3000)]), at=clock())
    assert (alone.data["cap"], alone.data["within_cap"], waiting(alone)) == (0, True, ["gm_approval"])


def test_only_a_regional_manager_files_and_nobody_approves_his_own(rt, store):
    clock = Clock()
    for user in ("rep.wang", "om.wu", "gm.zhao", "fin.chu"):
        with pytest.raises(Forbidden):
            rt.start("regional_expense", user, filing(lines=[rm_travel(100)]), at=clock())
    view = rt.start("regional_expense", "rm.zheng", filing(lines=[rm_travel(100)]), at=clock())
    with pytest.raises((Forbidden, NotFound)):
        do(rt, view, "gm_approval", "rm.zheng", APPROVE, at=clock())
    with pytest.raises(InvalidInput) as refused:  # a month is YYYY-MM
        rt.start("regional_expense", "rm.zheng", filing("2026-13", lines=[rm_travel(100)]), at=clock())
    assert "month" in refused.value.fields


# --- 二 1: capital in use -------------------------------------------------------------------------------

def approved_contract(rt, clock) -> str:
    review = rt.start("contract_review", "rep.wang", contract(), at=clock())  # C-B01: 500 × 520
    review = do(rt, review, "dm_review", "dm.zhou", APPROVE, at=clock())
    review = do(rt, review, "go_approval", "gmo.tang", APPROVE, at=clock())
    return review.data["contract_no"]


def region_orders(rt):
    """What the figure is read from (the order chain's records of the region), as the report reads it."""
    from engine import records
    with rt.store.read() as s:
        return records.listed_in_region(s.connection(), "order", "south_china")


def test_capital_in_use_counts_retail_goods_stock_and_overdue_contract_balances(rt, store):
    clock = Clock()
    settled_order(rt, clock)  # 100,000 collected, nothing tied up
    # a contract order (B: balance due 3 days after arrival), shipped and arrived, never paid: overdue
    contract_no = approved_contract(rt, clock)
    owed = rt.start("order_to_settlement", "rep.wang", contract_order(contract_no, lines=[line(SLAB, 200, 520)]),
                    at=clock())
    owed = produce(rt, deposit(rt, owed, clock, voucher="BK-2"), clock)  # 31,200 deposit
    owed = ship(rt, owed, clock, [(1, 200)])
    owed = do(rt, owed, "confirm_arrival", "ssg.shen", {"arrived_on": clock().date().isoformat()}, at=clock())
    due = kept(store, "order", owed.data["order_no"])["balance_due_date"]
    assert due == (clock.now + timedelta(days=3)).date().isoformat()
    # a retail (phone) order, half shipped: 50,000 of goods at the customer against a 30,000 deposit,
    # 50,000 of goods made and waiting in stock
    retail = rt.start("order_to_settlement", "rep.liu", phone_order("C-A01", [line(SLAB, 200, 500)]), at=clock())
    retail = produce(rt, deposit(rt, approve(rt, retail, clock), clock, voucher="BK-3"), clock)
    retail = ship(rt, retail, clock, [(1, 100)])

    report = CapitalReport(store)
    on_the_due_day = report.figure("vp.qian", "south_china", today=date.fromisoformat(due))
    assert on_the_due_day["overdue_receivables"] == 0  # due today is not yet overdue
    day_after = date.fromisoformat(due) + timedelta(days=1)
    figure = report.figure("vp.qian", "south_china", today=day_after)
    assert (figure["retail_goods"], figure["stock"], figure["overdue_receivables"]) == (20000, 50000, 72800)
    assert figure["capital_in_use"] == 142800
    assert figure["year_collections"] == 100000 + 31200 + 30000  # deposits count as collected too
    assert figure["limit"] == round(161200 * 0.07, 2) == 11284
    assert (figure["over"], figure["over_by"]) == (True, 131516)
    assert [(o["order_no"], o["overdue"]) for o in figure["overdue_orders"]] == [(owed.data["order_no"], 72800)]
    # the balance paid: nothing overdue any more, and the payment is this year's collection
    owed = pay(rt, owed, 72800, clock())
    paid = report.figure("vp.qian", "south_china", today=day_after)
    assert (paid["overdue_receivables"], paid["year_collections"]) == (0, 161200 + 72800)
    # a new year starts the year's collections again
    assert report.figure("vp.qian", "south_china", today=date(2027, 1, 2))["year_collections"] == 0


def test_the_figures_arithmetic_on_records_as_the_order_chain_writes_them():
    today = date(2026, 12, 10)
    orders = [
        {"order_no": "SO-1", "customer": "C-A01", "contract_no": None, "amount": 1000, "paid": 300,
         "status": "partly_shipped", "lines": [{"quantity": 10, "unit_price": 100, "shipped": 4}],
         "payments": [{"amount": 300, "received_on": "2026-11-02"}]},
        {"order_no": "SO-2", "customer": "C-B01", "contract_no": "HT-1", "amount": 5000, "paid": 1500,
         "balance_due_date": "2026-12-09", "status": "awaiting_payment",
         "lines": [{"quantity": 10, "unit_price": 500, "shipped": 10}],
         "payments": [{"amount": 1500, "received_on": "2025-12-30"}]},
        {"order_no": "SO-3", "customer": "C-B01", "contract_no": "HT-1", "amount": 800, "paid": 0,
         "status": "rejected", "lines": [{"quantity": 1, "unit_price": 800, "shipped": 0}], "payments": []},
    ]
    figure = capital_in_use(orders, today)
    assert (figure["retail_goods"], figure["stock"], figure["overdue_receivables"]) == (100, 600, 3500)
    assert (figure["year_collections"], figure["limit"]) == (300, 21)  # last year's 1,500 not counted
    assert collections(orders, date(2025, 12, 1), date(2025, 12, 31)) == 1500


# --- who sees it: one rule (access.may_see_capital) for the page, the API and the command line -------

@pytest.fixture
def east(store):
    """A second region, without a regional manager of its own in the demo organisation."""
    with store.write() as s:
        s.add(Office(id="east_china", name="华东大区 East China region", parent_id="HQ"))


def test_may_see_capital_is_the_regions_manager_the_vp_and_the_general_manager(rt, store, east):
    with store.read() as s:
        who = {u: access.person(s, u) for u in ("rm.zheng", "vp.qian", "gm.zhao", "rep.wang", "om.wu", "fin.chu")}
    assert access.may_see_capital(who["rm.zheng"], "south_china")
    assert not access.may_see_capital(who["rm.zheng"], "east_china")
    assert all(access.may_see_capital(who[u], r) for u in ("vp.qian", "gm.zhao") for r in ("south_china", "east_china"))
    assert not any(access.may_see_capital(who[u], "south_china") for u in ("rep.wang", "om.wu", "fin.chu"))
    report = CapitalReport(store)
    assert [r["id"] for r in report.visible_regions("rm.zheng")] == ["south_china"]
    assert [r["id"] for r in report.visible_regions("vp.qian")] == ["east_china", "south_china"]
    with pytest.raises(NotFound):
        report.figure("vp.qian", "nowhere")


@pytest.fixture
def app(rt, catalogs, tmp_path):
    return make_app(rt, catalogs, tmp_path)


def _token(client, user):
    reply = client.post("/api/v1/tokens", json={"username": user, "password": "demo"})
    return {"Authorization": f"Bearer {reply.json['token']}"}


# (user, region) -> what the page and the API answer: 200, or 403 with a sentence
SEES = {("rm.zheng", "south_china"): 200, ("rm.zheng", "east_china"): 403,
        ("vp.qian", "south_china"): 200, ("vp.qian", "east_china"): 200,
        ("gm.zhao", "south_china"): 200,
        ("rep.wang", "south_china"): 403, ("om.wu", "south_china"): 403, ("fin.chu", "south_china"): 403}


def test_roles_by_page_and_api(rt, store, app, east):
    clock = Clock()
    settled_order(rt, clock)
    client = app.test_client()
    for (user, region), status in SEES.items():
        page = as_user(app, user).get(f"/regions/{region}/capital")
        api = client.get(f"/api/v1/regions/{region}/capital", headers=_token(client, user))
        assert (page.status_code, api.status_code) == (status, status), (user, region)
        if status == 403:
            sentence = f"{user} may not see the capital in use of region {region}"
            assert sentence in api.json["error"] and sentence in page.get_data(as_text=True), (user, region)
        else:
            assert api.json["region"] == region and api.json["limit"] == (7000 if region == "south_china" else 0)
    shown = as_user(app, "rm.zheng").get("/regions/south_china/capital").get_data(as_text=True)
    assert "Capital in use" in shown and "Overdue contract receivables" in shown and "7,000" in shown
    zh = as_user(app, "rm.zheng", lang="zh_CN").get("/regions/south_china/capital").get_data(as_text=True)
    assert "资金占用" in zh and "逾期合同应收款" in zh
    # the overview: the regional manager his own region, the VP every region, a rep refused
    own = as_user(app, "rm.zheng").get("/regions/capital").get_data(as_text=True)
    assert "region-south_china" in own and "region-east_china" not in own
    every = as_user(app, "vp.qian").get("/regions/capital").get_data(as_text=True)
    assert "region-south_china" in every and "region-east_china" in every
    refused = as_user(app, "rep.wang").get("/regions/capital")
    assert refused.status_code == 403 and "regional manager" in refused.get_data(as_text=True)
    assert "/regions/capital" in as_user(app, "vp.qian").get("/").get_data(as_text=True)  # in the menu
    assert "/regions/capital" not in as_user(app, "rep.wang").get("/").get_data(as_text=True)
    missing = client.get("/api/v1/regions/nowhere/capital", headers=_token(client, "vp.qian"))
    assert missing.status_code == 404 and "there is no region nowhere" in missing.json["error"]


def test_the_command_line_asks_the_same_rule(tmp_path, monkeypatch, capsys):
    from bpm.cli import main
    monkeypatch.setenv("BPM_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    monkeypatch.setenv("BPM_NOW", "2026-12-05T01:00:00+00:00")

    def run(*args):
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err
    assert run("init", "--demo")[0] == 0
    code, out, _ = run("capital", "south_china", "--as", "rm.zheng", "--json")
    figure = json.loads(out)
    assert code == 0 and (figure["region"], figure["limit"], figure["over"], figure["as_of"]) == (
        "south_china", 0, False, "2026-12-05")
    code, out, _ = run("capital", "--as", "vp.qian")
    assert code == 0 and out.startswith("south_china  in use 0")
    code, out, err = run("capital", "south_china", "--as", "rep.wang")
    assert code == 1 and out == "" and err.strip() == (
        "bpm capital: rep.wang may not see the capital in use of region south_china: only its regional manager, "
        "the VP of sales and the general manager may")
    code, _, err = run("capital", "--as", "om.wu")
    assert code == 1 and "may not see the capital in use of any region" in err


# --- China's day, not UTC's: 2026-12-01 01:00 in China is 2026-11-30 17:00 UTC --------------------------

def test_between_midnight_and_eight_in_china_the_day_is_chinas_for_receipts_the_cap_and_the_capital(
        rt, store, monkeypatch):
    from .test_orders import to_balance
    night = datetime(2026, 11, 30, 17, 0, tzinfo=timezone.utc)  # 2026-12-01 01:00 China time
    clock = Clock()
    view = to_balance(rt, rt.start("order_to_settlement", "rep.wang", phone_order("C-B01"), at=clock()), clock)
    order_no = view.data["order_no"]
    # a bank notice booked at 01:00 is received on 1 December; a notice dated 1 December is not "after today"
    pay(rt, view, 20000, night)
    rt.message("payment_received", {"order_no": order_no, "amount": 10000, "received_on": "2026-12-01"},
               {"order_no": order_no}, actor="fin.chu", at=night + timedelta(minutes=1))
    days = [(p["amount"], p["received_on"]) for p in kept(store, "order", order_no)["payments"]]
    assert days[-2:] == [(20000, "2026-12-01"), (10000, "2026-12-01")]
    # December's cap counts them, November's does not
    december = rt.start("regional_expense", "rm.zheng", filing("2026-12", over_cap_reason="x"),
                        at=night + timedelta(minutes=2))
    november = rt.start("regional_expense", "rm.zheng", filing("2026-11", over_cap_reason="x"),
                        at=night + timedelta(minutes=3))
    assert december.data["collections"] == 30000 and november.data["collections"] == 30000  # (deposit 11-2x)
    # the capital figure is as of 1 December, and on 1 January 01:00 the year's collections are 2027's
    monkeypatch.setenv("BPM_NOW", night.isoformat())
    assert CapitalReport(store).figure("vp.qian", "south_china")["as_of"] == "2026-12-01"
    monkeypatch.setenv("BPM_NOW", "2026-12-31T17:00:00+00:00")
    new_year = CapitalReport(store).figure("vp.qian", "south_china")
    assert (new_year["as_of"], new_year["year_collections"]) == ("2027-01-01", 0)
