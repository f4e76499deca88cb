"""The four company processes end to end through the engine's public API, on SQLite and PostgreSQL.

Every path of docs/processes.md is walked here with the demo organisation: the submitter and the
approver are always different people (four-eyes), times are given with `at=` so that weeks can
pass between two steps, and timers fire through `engine.timers.run_once`.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from lxml import etree
from sqlalchemy import select

import processes
from engine import audit, clock, timers, versions
from engine.runtime import InvalidInput, NotFound, Runtime
from engine.store import BusinessRecord, LogEntry
from processes import customers, notices, orders

from .conftest import contract, snapshot
from .orders_on_file import put_order

ROOT = Path(__file__).resolve().parents[1]
BPMN = ROOT / "bpmn"
FORMS = ROOT / "forms"
T0 = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)  # a Monday, 09:00 in China
PROCESS_IDS = ["archive_access", "branch_change", "branch_closure", "branch_establishment", "contract_review",
               "credit_review", "expense_claim", "monthly_target", "order_to_settlement", "regional_expense",
               "return_request"]

APPROVE = {"decision": "approve"}


def reject(comment: str) -> dict:
    return {"decision": "reject", "comment": comment}


# --- helpers ----------------------------------------------------------------------------------

class Clock:
    """The instant of the next step; each call moves it on (ten minutes unless told)."""

    def __init__(self, start: datetime = T0):
        self.now = start

    def __call__(self, **delta) -> datetime:
        self.now += timedelta(**delta) if delta else timedelta(minutes=10)
        return self.now


@pytest.fixture
def rt(store):
    deployed = versions.deploy(store, [BPMN], actor="design.yang", at=T0)
    assert sorted(d.process_id for d in deployed) == PROCESS_IDS
    return Runtime(store, processes.SERVICES, lookups=processes.LOOKUPS)


def waiting(view) -> list[str]:
    return sorted(t.element_id for t in view.tasks)


def the_task(view, element_id: str):
    found = [t for t in view.tasks if t.element_id == element_id]
    assert len(found) == 1, f"expected one {element_id} task; waiting: {waiting(view)}"
    return found[0]


def do(rt, view, element_id: str, user: str, data: dict | None = None, *, at: datetime):
    return rt.complete(the_task(view, element_id).id, user, data or {}, at=at)


def completions(store, instance_id: str) -> list[tuple[str, str]]:
    """(actor, command) of the instance's log, in order: the history every round stays in."""
    with store.read() as s:
        return [(e.actor, e.command) for e in s.scalars(
            select(LogEntry).where(LogEntry.instance_id == instance_id).order_by(LogEntry.seq))]




# --- branch establishment (分支机构设立审批) -----------------------------------------------------

BRANCH = {
    "name": "南宁办事处",
    "branch_type": "office",
    "location": "广西南宁市青秀区民族大道 136 号",
    "business_scope": "石材产品销售与售后服务",
    "org_structure": "主任 1 名，业务员 4 名，内勤 1 名",
    "head_count": 6,
    "budget": 800000,
    "reason": "广西市场销售额连续两年增长，需就近服务客户",
}


def finish_branch(rt, view, clock: Clock):
    """From an approved establishment: certificate, then registration and filing weeks later."""
    view = do(rt, view, "issue_certificate", "hq.li", {
        "certificate_no": "SZ-2026-017", "issued_on": "2026-11-24", "branch_head": "吴主任",
        "branch_head_username": "om.wu"}, at=clock(days=1))
    registration = the_task(view, "confirm_registration")
    view = do(rt, view, "confirm_registration", "hq.li", {
        "registration_no": "91450100MA5K123456", "registration_authority": "南宁市市场监督管理局",
        "registered_on": "2026-12-12"}, at=clock(days=19))
    assert view.status == "running" and waiting(view) == ["confirm_filing"]
    view = do(rt, view, "confirm_filing", "hq.li", {
        "filed_with": "南宁市商务局", "filing_no": "BA-2027-003", "filed_on": "2027-01-05"},
        at=clock(days=24))
    assert view.status == "completed" and view.tasks == []
    assert view.data["registration_no"] == "91450100MA5K123456" and view.data["filed_on"] == "2027-01-05"
    return view, registration


def test_branch_office_is_decided_by_hq_then_registered_and_filed_weeks_later(rt, store):
    clock = Clock()
    view = rt.start("branch_establishment", "rm.zheng", dict(BRANCH), at=clock.now)
    review = the_task(view, "hq_review")
    assert (review.role, review.form) == ("hq_admin", "branch_establishment.hq_review.json")
    assert rt.claim(review.id, "hq.li", at=clock()).assignee == "hq.li"
    view = do(rt, view, "hq_review", "hq.li", APPROVE, at=clock())
    assert waiting(view) == ["issue_certificate"]  # an office needs no board
    view, registration = finish_branch(rt, view, clock)
    # registration may take a month (P30D), not the four-hour reply rule
    assert registration.due == registration.created + timedelta(days=30)
    assert ("board.sun", "complete") not in completions(store, view.id)


@pytest.mark.parametrize("branch_type", ["branch_company", "subsidiary"])
def test_branch_company_and_subsidiary_need_the_board_after_hq(rt, store, branch_type):
    clock = Clock()
    view = rt.start("branch_establishment", "rm.zheng",
                    dict(BRANCH, name="广西分公司", branch_type=branch_type), at=clock.now)
    view = do(rt, view, "hq_review", "hq.li", APPROVE, at=clock())
    board = the_task(view, "board_approval")
    assert board.role == "board"
    view = do(rt, view, "board_approval", "board.sun", {"decision": "approve", "comment": "同意设立"},
              at=clock(days=5))
    assert waiting(view) == ["issue_certificate"]
    view, _ = finish_branch(rt, view, clock)
    assert [a for a, c in completions(store, view.id) if c == "complete"][:2] == ["hq.li", "board.sun"]


def test_branch_rework_goes_back_to_the_applicant_and_keeps_the_data(rt, store):
    clock = Clock()
    started = {k: v for k, v in BRANCH.items() if k not in ("budget", "reason")}
    view = rt.start("branch_establishment", "rm.zheng", started, at=clock.now)
    review = the_task(view, "hq_review")
    with pytest.raises(InvalidInput):  # returning it needs a comment
        rt.complete(review.id, "hq.li", {"decision": "rework"}, at=clock())
    view = do(rt, view, "hq_review", "hq.li", {"decision": "rework", "comment": "请补充预算与设立理由"},
              at=clock())
    rework = the_task(view, "rework")
    assert (rework.assignee, rework.form) == ("rm.zheng", "branch_establishment.rework.json")
    assert view.data["name"] == BRANCH["name"] and view.data["comment"] == "请补充预算与设立理由"
    corrected = dict(started, budget=BRANCH["budget"], reason=BRANCH["reason"])
    view = do(rt, view, "rework", "rm.zheng", corrected, at=clock(days=1))
    assert waiting(view) == ["hq_review"]
    assert view.data["location"] == BRANCH["location"] and view.data["budget"] == 800000
    view = do(rt, view, "hq_review", "hq.li", APPROVE, at=clock())
    view, _ = finish_branch(rt, view, clock)
    actors = [a for a, c in completions(store, view.id) if c == "complete"]
    assert actors[:3] == ["hq.li", "rm.zheng", "hq.li"]


def test_branch_rejected_by_hq_or_by_the_board_ends(rt):
    clock = Clock()
    view = rt.start("branch_establishment", "rm.zheng", dict(BRANCH), at=clock.now)
    view = do(rt, view, "hq_review", "hq.li", reject("不符合公司区域战略"), at=clock())
    assert view.status == "completed" and view.tasks == [] and view.data["decision"] == "reject"

    view = rt.start("branch_establishment", "rm.zheng", dict(BRANCH, branch_type="branch_company"),
                    at=clock())
    view = do(rt, view, "hq_review", "hq.li", APPROVE, at=clock())
    view = do(rt, view, "board_approval", "board.sun", reject("投资回报不足"), at=clock(days=3))
    assert view.status == "completed" and view.tasks == []


# --- contract review (合同评审) -------------------------------------------------------------------



def approve_up_to(rt, view, levels: list[tuple[str, str]], clock: Clock):
    for element_id, user in levels:
        view = do(rt, view, element_id, user, APPROVE, at=clock())
    return view


def file_signed(rt, view, clock: Clock):
    filing = the_task(view, "file_contract")
    assert filing.assignee == "rep.wang"  # back to the rep who submitted it
    view = do(rt, view, "file_contract", "rep.wang", {
        "signed_on": "2026-11-25", "archive_location": "业务部办公室文件柜 A-3"}, at=clock(days=2))
    assert view.status == "completed" and view.tasks == []
    return view


def test_contract_on_standard_terms_needs_the_department_manager_and_the_general_office(rt, store):
    clock = Clock()
    view = rt.start("contract_review", "rep.wang", contract(), at=clock.now)
    assert (view.data["deviations"], view.data["deviation_approver"], view.data["review_round"]) == ([], "none", 1)
    assert the_task(view, "dm_review").role == "dept_manager"
    view = approve_up_to(rt, view, [("dm_review", "dm.zhou")], clock)
    assert the_task(view, "go_approval").role == "general_office"
    view = approve_up_to(rt, view, [("go_approval", "gmo.tang")], clock)
    assert waiting(view) == ["file_contract"]
    view = file_signed(rt, view, clock)
    assert [a for a, c in completions(store, view.id)] == ["rep.wang", "dm.zhou", "gmo.tang", "rep.wang"]


def test_contract_priced_below_the_quote_goes_to_the_vp_after_the_manager(rt, store):
    clock = Clock()
    view = rt.start("contract_review", "rep.wang", contract(price=480, amount=240000), at=clock.now)
    assert (view.data["deviations"], view.data["deviation_approver"]) == (["price"], "vp_sales")
    view = approve_up_to(rt, view, [("dm_review", "dm.zhou")], clock)
    assert the_task(view, "vp_approval").role == "vp_sales"
    view = approve_up_to(rt, view, [("vp_approval", "vp.qian"), ("go_approval", "gmo.tang")], clock)
    assert waiting(view) == ["file_contract"]
    file_signed(rt, view, clock)


@pytest.mark.parametrize("amount", [1_000_000, 1_850_000])
def test_major_contract_is_reported_to_vp_and_gm_and_confirmed_by_manager_and_general_office(rt, store, amount):
    clock = Clock()
    view = rt.start("contract_review", "rep.wang", contract(amount=amount), at=clock.now)
    assert (view.data["major_contract"], view.data["deviation_approver"]) == (True, "none")
    assert sorted(n["to"] for n in view.data["major_report"]) == ["gm.zhao", "vp.qian"]
    view = approve_up_to(rt, view, [("dm_review", "dm.zhou"), ("go_approval", "gmo.tang")], clock)
    view = file_signed(rt, view, clock)
    assert [a for a, c in completions(store, view.id)] == ["rep.wang", "dm.zhou", "gmo.tang", "rep.wang"]


def test_rejected_contract_is_revised_and_resubmitted_for_a_new_round(rt, store):
    clock = Clock()
    view = rt.start("contract_review", "rep.wang", contract(price=450, amount=225000), at=clock.now)
    review = the_task(view, "dm_review")
    with pytest.raises(InvalidInput):  # a rejection needs its reasons
        rt.complete(review.id, "dm.zhou", {"decision": "reject"}, at=clock())
    view = approve_up_to(rt, view, [("dm_review", "dm.zhou")], clock)
    view = do(rt, view, "vp_approval", "vp.qian", reject("折扣超出授权，请按原报价重新谈判"), at=clock())
    revise = the_task(view, "revise")
    assert (revise.assignee, revise.form) == ("rep.wang", "contract_review.revise.json")
    assert view.data["price"] == 450 and view.data["comment"].startswith("折扣超出授权")

    revised = {k: v for k, v in contract(price=520, amount=260000).items()
               if k not in ("customer", "quote_price", "allowed_discount", "quote_payment_terms", "quote_delivery_date")}
    view = do(rt, view, "revise", "rep.wang", revised, at=clock(hours=2))
    assert (view.data["review_round"], view.data["deviations"], view.data["deviation_approver"]) == (2, [], "none")
    assert waiting(view) == ["dm_review"]  # a new round starts at the department manager
    view = approve_up_to(rt, view, [("dm_review", "dm.zhou"), ("go_approval", "gmo.tang")], clock)
    file_signed(rt, view, clock)
    history = [a for a, c in completions(store, view.id)]
    assert history == ["rep.wang", "dm.zhou", "vp.qian", "rep.wang", "dm.zhou", "gmo.tang", "rep.wang"]


def test_contract_form_refuses_unknown_customers_and_past_delivery_dates(rt):
    with pytest.raises(InvalidInput):
        rt.start("contract_review", "rep.wang", contract(customer="C-ZZ9"), at=T0)
    with pytest.raises(InvalidInput):
        rt.start("contract_review", "rep.wang", contract(delivery_date="2026-11-20"), at=T0)
    with pytest.raises(InvalidInput):
        rt.start("contract_review", "rep.wang", contract(amount=-5), at=T0)


# --- return and exchange (退换货申请) -------------------------------------------------------------

def return_request(**changes) -> dict:
    data = {
        "customer": "C-A01", "order_no": "SO-20261102-4c1d9e", "reason": "quality", "kind": "return",
        "lines": [{"product": "爵士白大理石板", "spec": "800x800x18", "quantity": 12}],
        "description": "表面有裂纹，客户拒收", "attachments": ["crack-1.jpg", "crack-2.jpg"],
    }
    data.update(changes)
    return data


@pytest.fixture
def order_on_file(store):
    """The original order the requests name, as the order chain keeps it (tests/test_returns.py
    walks the checks against it)."""
    return put_order(store)


def inspect(rt, view, result: str, clock: Clock, note: str | None = None):
    data = {"received_on": "2026-11-27", "inspection_result": result}
    if note:
        data["inspection_note"] = note
    return do(rt, view, "inspect", "wh.wei", data, at=clock(days=3))


def test_quality_return_is_signed_inspected_credited_and_recorded_as_a_complaint(rt, order_on_file):
    clock = Clock()
    view = rt.start("return_request", "rep.wang", return_request(), at=clock.now)
    assert the_task(view, "om_sign").role == "office_manager"
    view = do(rt, view, "om_sign", "om.wu", APPROVE, at=clock())
    assert (view.data["needs_sales_plan"], view.data["record_complaint"]) == (False, True)
    assert waiting(view) == ["inspect"]
    view = inspect(rt, view, "confirmed", clock)
    assert the_task(view, "credit_note").role == "finance"
    view = do(rt, view, "credit_note", "fin.chu", {
        "credit_note_no": "HZ-2026-0088", "credit_amount": 9600, "issued_on": "2026-11-28"}, at=clock())
    assert view.status == "completed" and view.tasks == []
    complaint_id = view.data["complaint_id"]
    assert re.fullmatch(r"CP-\d{8}-[0-9a-f]{10}", complaint_id)
    with rt.store.read() as s:
        complaint = s.get(BusinessRecord, ("complaint", complaint_id))
    assert (complaint.ref, complaint.customer, complaint.data["description"]) == (
        view.data["order_no"], view.data["customer"], "表面有裂纹，客户拒收")


def test_slow_moving_goods_need_the_sales_plan_department(rt, order_on_file):
    clock = Clock()
    request = return_request(reason="slow_moving", kind="exchange")
    del request["description"]
    view = rt.start("return_request", "rep.wang", request, at=clock.now)
    view = do(rt, view, "om_sign", "om.wu", APPROVE, at=clock())
    assert (view.data["needs_sales_plan"], view.data["record_complaint"]) == (True, False)
    assert the_task(view, "plan_approval").role == "sales_plan"
    view = do(rt, view, "plan_approval", "plan.chen", APPROVE, at=clock())
    view = inspect(rt, view, "confirmed", clock)
    view = do(rt, view, "ship_replacement", "wh.wei", {
        "shipping_list": [{"product": "爵士白大理石板", "spec": "600x600x18", "quantity": 12}],
        "carrier": "德邦物流", "shipped_on": "2026-11-30"}, at=clock())
    assert view.status == "completed" and "complaint_id" not in view.data

    # the sales plan department may also refuse it
    view = rt.start("return_request", "rep.wang", return_request(reason="slow_moving"), at=clock())
    view = do(rt, view, "om_sign", "om.wu", APPROVE, at=clock())
    view = do(rt, view, "plan_approval", "plan.chen", reject("该批次不属于滞销品范围"), at=clock())
    assert view.status == "completed" and view.tasks == []


def test_an_inspection_that_disagrees_goes_back_to_the_office_manager(rt, store, order_on_file):
    clock = Clock()
    view = rt.start("return_request", "rep.wang", return_request(reason="transport_damage"), at=clock.now)
    view = do(rt, view, "om_sign", "om.wu", APPROVE, at=clock())
    task = the_task(view, "inspect")
    with pytest.raises(InvalidInput):  # a disagreement needs its findings
        rt.complete(task.id, "wh.wei", {"received_on": "2026-11-27", "inspection_result": "disagrees"},
                    at=clock())
    view = inspect(rt, view, "disagrees", clock, note="实收 10 片，其中 2 片破损，与申请 12 片不符")
    assert waiting(view) == ["om_sign"]
    assert view.data["inspection_note"].startswith("实收 10 片")
    view = do(rt, view, "om_sign", "om.wu", {"decision": "approve", "comment": "按实收数量退货"}, at=clock())
    view = inspect(rt, view, "confirmed", clock)
    view = do(rt, view, "credit_note", "fin.chu", {
        "credit_note_no": "HZ-2026-0091", "credit_amount": 1600, "issued_on": "2026-12-03"}, at=clock())
    assert view.status == "completed" and "complaint_id" not in view.data
    assert [a for a, c in completions(store, view.id)] == [
        "rep.wang", "om.wu", "wh.wei", "om.wu", "wh.wei", "fin.chu"]


def test_exchange_ships_a_replacement_and_a_rejected_request_ends(rt, order_on_file):
    clock = Clock()
    view = rt.start("return_request", "rep.wang",
                    return_request(reason="wrong_shipment", kind="exchange"), at=clock.now)
    view = do(rt, view, "om_sign", "om.wu", APPROVE, at=clock())
    view = inspect(rt, view, "confirmed", clock)
    assert waiting(view) == ["ship_replacement"]
    view = do(rt, view, "ship_replacement", "wh.wei", {
        "shipping_list": [{"product": "爵士白大理石板", "spec": "800x800x18", "quantity": 12}],
        "carrier": "顺丰快运", "tracking_no": "SF1234567890", "shipped_on": "2026-11-28"}, at=clock())
    assert view.status == "completed" and view.data["carrier"] == "顺丰快运"

    view = rt.start("return_request", "rep.wang", return_request(), at=clock())
    view = do(rt, view, "om_sign", "om.wu", reject("已超过退货期限"), at=clock())
    assert view.status == "completed" and view.tasks == []


# --- order to settlement (订货—发运—结算) -----------------------------------------------------------

def order(customer: str, amount: float = 100000, **changes) -> dict:
    """A phone order (no contract: the department manager approves it) worth `amount` in its lines."""
    data = {
        "customer": customer, "contact": customers.CUSTOMERS[customer]["contact"], "order_source": "phone",
        "lines": [{"product": "芝麻灰花岗岩板", "spec": "600x600x20", "quantity": 200,
                   "unit_price": amount / 200}],
        "delivery_address": customers.CUSTOMERS[customer]["address"], "delivery_date": "2026-12-20",
    }
    data.update(changes)
    return data


def pay(rt, view, amount: float, at: datetime):
    order_no = view.data["order_no"]
    assert rt.message("payment_received", {"order_no": order_no, "amount": amount},
                      {"order_no": order_no}, at=at) == [view.id]
    return rt.instance(view.id)


def approve_order(rt, view, clock: Clock):
    """The department manager approves the phone order (001 二 2(6))."""
    assert the_task(view, "approve_order_dm").role == "dept_manager"
    return do(rt, view, "approve_order_dm", "dm.zhou", APPROVE, at=clock())


def deposit_to_dispatch(rt, view, clock: Clock):
    """Order approved, deposit confirmed by finance, production scheduled, goods shipped."""
    view = approve_order(rt, view, clock)
    view = do(rt, view, "confirm_deposit", "fin.chu", {
        "deposit_received": view.data["deposit_required"], "received_on": "2026-11-24",
        "voucher_no": "BK-1124-07"}, at=clock(days=1))
    assert the_task(view, "schedule_production").role == "production"
    view = do(rt, view, "schedule_production", "prod.jiang", {
        "work_order_no": "WO-2611-31", "planned_start": "2026-11-25", "planned_finish": "2026-12-08"},
        at=clock())
    assert view.data["reservation"]["reserved"] is True
    view = do(rt, view, "ship_goods", "wh.wei", {
        "shipping_list": [{"line": 1, "quantity": 200}],
        "carrier": "德邦物流", "tracking_no": "DB88230017", "shipped_on": "2026-12-09"}, at=clock(days=15))
    return view


def reconcile(rt, view, clock: Clock):
    """Finance and the rep each confirm the total received (001 二 3(5))."""
    assert the_task(view, "reconcile").role == "finance"
    view = do(rt, view, "reconcile", "fin.chu", {
        "confirmed_total": view.data["paid"], "reconciled_on": clock(hours=1).date().isoformat()},
        at=clock.now)
    view = do(rt, view, "reconcile_rep", "rep.wang", {
        "rep_confirmed_total": view.data["paid"], "rep_reconciled_on": clock.now.date().isoformat()},
        at=clock.now)
    assert view.status == "completed" and view.tasks == []
    return view


def test_order_numbers_credit_levels_and_customer_lookup():
    with clock.fixed_now(datetime(2026, 11, 23, 9, 30, tzinfo=timezone.utc)):
        number = orders.assign_order_number()
    assert re.fullmatch(r"SO-20261123-[0-9a-f]{10}", number)
    # the credit levels and the customer lookup read the database: tests/test_credit.py walks them
    assert all(c["name"] and c["contact"] and c["address"] for c in customers.CUSTOMERS.values())
    reservation = orders.reserve_stock("SO-1", [{"product": "p", "spec": "s", "quantity": 3, "unit_price": 9}])
    assert (reservation["reservation_no"], reservation["lines"]) == (
        "RS-SO-1", [{"product": "p", "spec": "s", "quantity": 3}])
    with pytest.raises(ValueError, match="at least one line"):
        orders.reserve_stock("SO-2", [])
    sent_before = len(notices.OUTBOX)
    notice = notices.send_notice("rep.wang", "subject", "body")
    assert notices.OUTBOX[sent_before:] == [notice] and notice["subject"] == "subject"
    with pytest.raises(ValueError, match="recipient"):
        notices.send_notice("", "subject", "body")


def test_credit_a_pays_the_balance_on_dispatch(rt):
    clock = Clock()
    view = rt.start("order_to_settlement", "rep.wang", order("C-A01", 120000), at=clock.now)
    assert re.fullmatch(r"SO-20261123-[0-9a-f]{10}", view.data["order_no"])
    assert view.business_key == view.data["order_no"]
    assert (view.data["credit_level"], view.data["balance_at"], view.data["balance_days"]) == ("A", "dispatch", 3)
    assert view.data["deposit_required"] == 36000
    view = deposit_to_dispatch(rt, view, clock)
    assert view.tasks == [] and view.data["dunning_stage"] == "before_reminder"  # no arrival step for A
    assert view.data["balance"] == 84000
    view = pay(rt, view, 84000, clock(hours=3))
    assert view.data["paid"] == 120000 and view.data["balance"] == 0
    reconcile(rt, view, clock)


def test_credit_b_pays_on_arrival_and_payments_before_it_are_refused(rt, store):
    clock = Clock()
    view = rt.start("order_to_settlement", "rep.wang", order("C-B01"), at=clock.now)
    view = deposit_to_dispatch(rt, view, clock)
    arrival = the_task(view, "confirm_arrival")
    assert arrival.role == "sales_secretary"
    before = snapshot(store, view.id)
    with pytest.raises(NotFound, match="not at a step that takes it now"):  # no balance before arrival
        rt.message("payment_received", {"order_no": view.data["order_no"], "amount": 70000},
                   {"order_no": view.data["order_no"]}, at=clock())
    assert snapshot(store, view.id) == before
    view = do(rt, view, "confirm_arrival", "ssg.shen", {"arrived_on": "2026-12-11", "received_by": "陈美玲"},
              at=clock(days=2))
    assert view.tasks == [] and view.data["balance"] == 70000 and view.data["dunning_stage"] == "before_reminder"
    view = pay(rt, view, 70000, clock(hours=5))
    reconcile(rt, view, clock)


def test_production_waits_for_the_whole_deposit(rt):
    clock = Clock()
    view = rt.start("order_to_settlement", "rep.wang", order("C-B01", 200000), at=clock.now)
    assert view.data["deposit_required"] == 60000
    view = approve_order(rt, view, clock)
    view = do(rt, view, "confirm_deposit", "fin.chu", {"deposit_received": 20000, "received_on": "2026-11-23"},
              at=clock())
    assert waiting(view) == ["confirm_deposit"]  # still short: no production yet
    assert (view.data["paid"], view.data["balance"]) == (20000, 180000)
    view = do(rt, view, "confirm_deposit", "fin.chu", {"deposit_received": 40000, "received_on": "2026-11-26"},
              at=clock(days=3))
    assert waiting(view) == ["schedule_production"]
    assert [p["amount"] for p in view.data["payments"]] == [20000, 40000]


def test_partial_payments_are_summed_until_the_order_is_settled(rt):
    clock = Clock()
    view = rt.start("order_to_settlement", "rep.wang", order("C-B01"), at=clock.now)
    view = deposit_to_dispatch(rt, view, clock)
    view = do(rt, view, "confirm_arrival", "ssg.shen", {"arrived_on": "2026-12-11"}, at=clock(days=2))
    for amount, paid in ((20000, 50000), (25000, 75000), (15000, 90000)):
        view = pay(rt, view, amount, clock(hours=4))
        assert view.status == "running" and view.tasks == []
        assert (view.data["paid"], view.data["balance"]) == (paid, 100000 - paid)
    view = pay(rt, view, 10000, clock(hours=4))
    assert (view.data["paid"], view.data["balance"]) == (100000, 0)
    assert [p["amount"] for p in view.data["payments"]] == [30000, 20000, 25000, 15000, 10000]
    reconcile(rt, view, clock)


def test_credit_c_is_reminded_before_two_weeks_and_chased_by_the_superior_after(rt, store):
    clock = Clock()
    view = rt.start("order_to_settlement", "rep.wang", order("C-C01"), at=clock.now)
    assert (view.data["balance_at"], view.data["balance_days"]) == ("arrival", 14)
    view = deposit_to_dispatch(rt, view, clock)
    arrived = clock(days=2)
    view = do(rt, view, "confirm_arrival", "ssg.shen", {"arrived_on": arrived.date().isoformat()}, at=arrived)
    assert view.data["balance_due_date"] == (arrived + timedelta(days=14)).date().isoformat()
    view = pay(rt, view, 20000, arrived + timedelta(days=3))
    assert (view.data["paid"], view.data["balance"]) == (50000, 50000)

    assert timers.run_once(rt, arrived + timedelta(days=11)).fired == []
    sent = len(notices.OUTBOX)
    assert timers.run_once(rt, arrived + timedelta(days=12, minutes=1)).fired == [view.id]
    view = rt.instance(view.id)
    assert view.data["reminder"]["sent"] is True and view.data["reminder"]["to"] == "rep.wang"
    assert notices.OUTBOX[sent]["subject"].endswith(view.data["order_no"])
    assert view.tasks == [] and view.data["dunning_stage"] == "before_due"

    assert timers.run_once(rt, arrived + timedelta(days=13)).fired == []
    assert timers.run_once(rt, arrived + timedelta(days=14, minutes=1)).fired == [view.id]
    view = rt.instance(view.id)
    chase = the_task(view, "chase_overdue")
    assert view.data["superior"] == "om.wu" and chase.assignee == "om.wu"  # rep.wang's superior

    # payments are still taken while the chase is open; a balance left keeps it with om.wu
    view = pay(rt, view, 30000, arrived + timedelta(days=14, hours=3))
    assert (view.data["paid"], view.data["balance"]) == (80000, 20000)
    chase = the_task(view, "chase_overdue")
    assert chase.assignee == "om.wu"
    view = do(rt, view, "chase_overdue", "om.wu", {
        "contacted_on": (arrived + timedelta(days=15)).date().isoformat(), "outcome": "promised",
        "promised_date": (arrived + timedelta(days=18)).date().isoformat(),
        "chase_note": "黄总承诺三日内付清尾款"}, at=arrived + timedelta(days=15))
    assert view.tasks == [] and view.data["dunning_stage"] == "chased"
    view = pay(rt, view, 20000, arrived + timedelta(days=17))
    assert view.data["paid"] == 100000
    clock.now = arrived + timedelta(days=17)
    reconcile(rt, view, clock)
    with store.read() as s:  # the log replays to the same states (timers, messages, services)
        steps = audit.replay(s, view.id, rt.script_engine)
    assert len(steps) > 10 and all(step.ok for step in steps)


def test_a_c_customer_paying_in_time_is_never_chased(rt):
    clock = Clock()
    view = rt.start("order_to_settlement", "rep.wang", order("C-C01"), at=clock.now)
    view = deposit_to_dispatch(rt, view, clock)
    arrived = clock(days=2)
    view = do(rt, view, "confirm_arrival", "ssg.shen", {"arrived_on": arrived.date().isoformat()}, at=arrived)
    view = pay(rt, view, 70000, arrived + timedelta(days=9))
    assert waiting(view) == ["reconcile", "reconcile_rep"]
    clock.now = arrived + timedelta(days=9)
    view = reconcile(rt, view, clock)
    assert timers.run_once(rt, arrived + timedelta(days=30)).fired == []
    assert "reminder" not in rt.instance(view.id).data


def test_an_unrated_customer_prepays_in_full(rt):
    clock = Clock()
    view = rt.start("order_to_settlement", "rep.wang", order("C-N01", 50000), at=clock.now)
    assert (view.data["credit_level"], view.data["deposit_required"]) == ("unknown", 50000)
    view = deposit_to_dispatch(rt, view, clock)
    view = do(rt, view, "confirm_arrival", "ssg.shen", {"arrived_on": "2026-12-11"}, at=clock(days=2))
    assert waiting(view) == ["reconcile", "reconcile_rep"] and view.data["balance"] == 0
    reconcile(rt, view, clock)


def test_a_payment_for_an_unknown_order_is_refused_and_changes_nothing(rt, store):
    clock = Clock()
    view = rt.start("order_to_settlement", "rep.wang", order("C-A01"), at=clock.now)
    view = deposit_to_dispatch(rt, view, clock)
    before = snapshot(store, view.id)
    with pytest.raises(NotFound, match="SO-20991231-ffffff"):
        rt.message("payment_received", {"order_no": "SO-20991231-ffffff", "amount": 5000},
                   {"order_no": "SO-20991231-ffffff"}, at=clock())
    assert snapshot(store, view.id) == before
    assert rt.instance(view.id).data["paid"] == 30000


def test_order_form_refuses_empty_lines_and_zero_quantities(rt):
    with pytest.raises(InvalidInput):
        rt.start("order_to_settlement", "rep.wang", order("C-A01", lines=[]), at=T0)
    with pytest.raises(InvalidInput):
        rt.start("order_to_settlement", "rep.wang", order("C-A01", lines=[
            {"product": "芝麻灰花岗岩板", "spec": "600x600x20", "quantity": 0, "unit_price": 500}]), at=T0)
    with pytest.raises(InvalidInput):
        rt.start("order_to_settlement", "rep.wang", dict(order("C-A01"), customer="C-ZZ9"), at=T0)


# --- the files themselves ----------------------------------------------------------------------

BPMN_NS = {"bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
           "spiffworkflow": "http://spiffworkflow.org/bpmn/schema/1.0/core"}
BILINGUAL = re.compile(r"^[^/]*[\u3400-\u9fff][^/]* / [^\u3400-\u9fff]*[A-Za-z][^\u3400-\u9fff]*$")


@pytest.mark.parametrize("process_id", PROCESS_IDS)
def test_every_user_task_and_start_event_has_a_form_and_bilingual_names(process_id):
    root = etree.parse(str(BPMN / f"{process_id}.bpmn")).getroot()
    process = root.find("bpmn:process", BPMN_NS)
    assert process.get("id") == process_id and process.get("isExecutable") == "true"
    for el in process.iter():
        if not isinstance(el.tag, str):
            continue
        tag = etree.QName(el).localname
        # (the start event of an embedded subprocess, monthly_target's per region, is no start of the process)
        if tag == "userTask" or (tag == "startEvent" and el.getparent() is process):
            forms = el.xpath("./bpmn:extensionElements/spiffworkflow:properties/"
                             "spiffworkflow:property[@name='form']/@value", namespaces=BPMN_NS)
            assert forms == [f"{process_id}.{'start' if tag == 'startEvent' else el.get('id')}.json"], el.get("id")
            assert (FORMS / forms[0]).is_file()
        if tag in ("lane",) or (el.get("id") and tag.endswith(("Task", "Event", "Gateway"))):
            assert BILINGUAL.match(el.get("name") or ""), (el.get("id"), el.get("name"))
        if tag == "sequenceFlow" and el.find("bpmn:conditionExpression", BPMN_NS) is not None:
            assert BILINGUAL.match(el.get("name") or ""), (el.get("id"), el.get("name"))


def _titled(schema: dict, where: str) -> None:
    assert schema.get("title") and schema.get("x-title-zh"), where
    for name, prop in (schema.get("properties") or {}).items():
        if set(prop) <= {"minLength"}:
            continue
        _titled(prop, f"{where}/{name}")
    if isinstance(schema.get("items"), dict) and schema["items"].get("type") == "object":
        _titled(schema["items"], f"{where}/items")


@pytest.mark.parametrize("path", sorted(p for p in FORMS.glob("*.json") if not p.name.endswith(".cases.json")),
                         ids=lambda p: p.name)
def test_forms_are_titled_in_both_languages_and_follow_the_conventions(path):
    schema = json.loads(path.read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    _titled(schema, path.name)
    props = schema["properties"]
    if "decision" in props and not props["decision"].get("readOnly"):
        assert "approve" in props["decision"]["enum"] and "comment" in props
        rules = json.dumps(schema.get("allOf", []))
        assert '"then": {"required": ["comment"]' in rules
    if "customer" in props and not props["customer"].get("readOnly"):
        assert props["customer"]["x-lookup"] == "customer"
    if "delivery_date" in props and not props["delivery_date"].get("readOnly"):
        assert props["delivery_date"]["format"] == "date" and props["delivery_date"]["x-not-before"] == "today"
    for key in ("lines", "shipping_list"):
        if key in props and not props[key].get("readOnly"):
            assert props[key]["minItems"] == 1
            assert props[key]["items"]["properties"]["quantity"]["exclusiveMinimum"] == 0
    for name in ("amount", "price", "quote_price", "deposit_received", "credit_amount"):
        if name in props and not props[name].get("readOnly"):
            assert props[name].get("exclusiveMinimum") == 0, name
    for name in set(schema.get("required", [])):
        assert name in props and not props[name].get("readOnly"), name
