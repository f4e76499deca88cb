"""Travel and expense claims (出差申请与报销, issue 13 item 1) through the engine's public API.

Seed 001 业务部管理制度 费用 and 区域业务员职责 (7), as docs/processes.md §8 reads them: a flight or an
in-city stay is approved by the superior beforehand, else the flight is paid at the train fare and
the stay not at all; hotel caps per grade (the tables of bpmn/hotel_cap.dmn); a room shared by two
of the same sex below manager grade at 80 % of their two caps, claimed once; the allowance of 30 a
day counted by halves around 12:00 from the ticket times, none in the city or when hosted; one
claim per receipt (a shared taxi); the claim opens on return; the superior and finance answer in
four hours.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from html import unescape
from pathlib import Path

import pytest
from sqlalchemy import select

import processes
from engine import timers, versions
from engine.runtime import Forbidden, InvalidInput, Runtime
from engine.store import BusinessRecord, SlaBreach
from processes.expenses import allowance_days

from .conftest import snapshot
from .test_web import as_user, catalogs, make_app  # noqa: F401 (catalogs: a fixture)

BPMN = Path(__file__).resolve().parents[1] / "bpmn"
T0 = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)  # Monday 09:00 in China
BACK = datetime(2026, 11, 26, 10, 1, tzinfo=timezone.utc)  # 18:01 in China on the day of return
APPROVE = {"decision": "approve"}


def trip(**changes) -> dict:
    data = {"purpose": "拜访南宁客户", "destination": "南宁", "in_city": False, "depart_on": "2026-11-24",
            "return_on": "2026-11-26", "grade": "staff", "sex": "male", "request_flight": False,
            "request_in_city_stay": False}
    data.update(changes)
    return data


def claim(*lines: dict, **changes) -> dict:
    data = {"departure_at": "2026-11-24 08:00", "return_at": "2026-11-26 15:00", "hosted": False,
            "companion_grade": "none", "receipts": list(lines)}
    data.update(changes)
    return data


def hotel(amount: float, nights: int = 1, receipt: str = "H-001", **more) -> dict:
    return {"kind": "hotel", "date": "2026-11-24", "description": "南宁", "amount": amount, "nights": nights,
            "receipt_no": receipt, **more}


def ticket(kind: str, amount: float, receipt: str, **more) -> dict:
    return {"kind": kind, "date": "2026-11-24", "description": "广州—南宁", "amount": amount,
            "receipt_no": receipt, **more}


@pytest.fixture
def rt(store):
    versions.deploy(store, [BPMN], actor="design.yang", at=T0)
    return Runtime(store, processes.SERVICES, lookups=processes.LOOKUPS)


def the_task(view, element_id: str):
    found = [t for t in view.tasks if t.element_id == element_id]
    assert len(found) == 1, f"expected one {element_id} task; waiting: {sorted(t.element_id for t in view.tasks)}"
    return found[0]


def back_from_the_trip(rt, view, at: datetime = BACK):
    """The trip ends at 18:00 on the day of return: the claim opens then, not before."""
    assert [t.element_id for t in rt.instance(view.id).tasks] == []
    assert view.id not in timers.run_once(rt, at - timedelta(minutes=5)).fired
    timers.run_once(rt, at)
    view = rt.instance(view.id)
    task = the_task(view, "file_claim")
    assert task.assignee == view.initiator
    return view


def filed(rt, data: dict, user: str = "rep.wang", *, start: dict | None = None, at: datetime = BACK):
    """A trip without approval beforehand, and its claim filed on return: the view at approve_claim."""
    view = rt.start("expense_claim", user, start or trip(), at=T0)
    view = back_from_the_trip(rt, view, at)
    return rt.complete(the_task(view, "file_claim").id, user, data, at=at + timedelta(minutes=10))


def line(view, n: int = 0) -> dict:
    return view.data["assessed_lines"][n]


# --- hotel caps (001 费用 2(1)) ---------------------------------------------------------------------

def test_a_160_hotel_on_a_staff_trip_is_cut_to_60_with_the_reason_shown_and_paid_after_both_approvals(rt, store):
    view = filed(rt, claim(hotel(320, nights=2), ticket("train", 200, "T-001"), ticket("train", 200, "T-002")))
    approval = the_task(view, "approve_claim")
    assert approval.assignee == "om.wu"  # rep.wang's direct superior
    assert approval.due - approval.created == timedelta(hours=4)  # the 4-hour rule
    assert line(view)["allowed"] == 120 and line(view)["cut"] == 200
    assert line(view)["reason"] == "hotel 160/day on a staff trip cut to 60: staff cap 45–60"
    assert view.data["cuts"] == ["line 1: hotel 160/day on a staff trip cut to 60: staff cap 45–60"]
    assert view.data["cuts_zh"] == ["第 1 行：业务人员出差住宿 160 元/天核减至 60：业务人员标准 45–60 元/天"]
    assert line(view, 1)["reason"] == "" and line(view, 1)["allowed"] == 200
    assert view.data["allowance_days"] == 3 and view.data["allowance"] == 90  # 08:00 out, 15:00 back
    assert view.data["claimed_total"] == 720 and view.data["refund_total"] == 120 + 400 + 90

    with pytest.raises(Forbidden):  # the traveller does not approve their own claim
        rt.complete(approval.id, "rep.wang", APPROVE, at=BACK + timedelta(hours=1))
    view = rt.complete(approval.id, "om.wu", APPROVE, at=BACK + timedelta(hours=1))
    pay = the_task(view, "pay_claim")
    assert pay.role == "finance" and pay.due - pay.created == timedelta(hours=4)
    with pytest.raises(InvalidInput) as refused:
        rt.complete(pay.id, "acct.xu", APPROVE, at=BACK + timedelta(hours=2))
    assert "paid_on" in refused.value.fields
    view = rt.complete(pay.id, "acct.xu", {**APPROVE, "paid_on": "2026-11-27", "voucher_no": "FK-0001"},
                       at=BACK + timedelta(hours=2))
    assert view.status == "completed"
    with store.read() as s:
        kept = {r.key.split("/")[1]: r.data["status"] for r in s.scalars(
            select(BusinessRecord).where(BusinessRecord.kind == "expense_receipt"))}
    assert kept == {"H-001": "paid", "T-001": "paid", "T-002": "paid"}


@pytest.mark.parametrize("grade, per_night, allowed, reason", [
    ("manager", 160, 150, "hotel 160/day on a manager trip cut to 150: manager cap 100–150"),
    ("manager", 150, 150, ""),
    ("senior", 120, 100, "hotel 120/day on a senior trip cut to 100: senior cap 60–100"),
    ("senior", 80, 80, ""),
    ("staff", 60, 60, ""),
])
def test_each_grade_has_its_cap_the_top_of_its_range(rt, grade, per_night, allowed, reason):
    view = filed(rt, claim(hotel(per_night)), start=trip(grade=grade))
    assert (line(view)["allowed"], line(view)["reason"]) == (allowed, reason)


# --- flights (001 费用 二4) ----------------------------------------------------------------------------

def test_a_flight_without_approval_beforehand_is_paid_at_the_train_fare(rt):
    view = rt.start("expense_claim", "rep.wang", trip(), at=T0)
    view = back_from_the_trip(rt, view)
    task = the_task(view, "file_claim")
    with pytest.raises(InvalidInput) as refused:  # the fare it is paid at must be given
        rt.complete(task.id, "rep.wang", claim(ticket("flight", 1200, "F-001")), at=BACK)
    assert refused.value.fields == {"receipts/0/train_fare": "the train fare of the route (no prior approval for a flight)"}
    assert "paid at the train fare" in str(refused.value)
    assert the_task(rt.instance(view.id), "file_claim").id == task.id  # nothing changed

    view = rt.complete(task.id, "rep.wang", claim(ticket("flight", 1200, "F-001", train_fare=310)), at=BACK)
    assert line(view)["allowed"] == 310 and line(view)["cut"] == 890
    assert line(view)["reason"] == "flight 1200 without prior approval paid at the train fare 310 (001 费用 二4)"
    assert line(view)["reason_zh"] == "飞机票 1200 未经事前批准，按火车票价 310 报销（001 费用 二4）"


def test_a_flight_approved_beforehand_by_the_superior_is_paid_in_full(rt):
    view = rt.start("expense_claim", "rep.wang", trip(request_flight=True, preapproval_reason="客户明早开会"), at=T0)
    ask = the_task(view, "preapprove")
    assert ask.assignee == "om.wu" and ask.due == T0 + timedelta(hours=4)
    with pytest.raises(InvalidInput):  # a rejection says why
        rt.complete(ask.id, "om.wu", {"decision": "reject"}, at=T0 + timedelta(hours=1))
    view = rt.complete(ask.id, "om.wu", APPROVE, at=T0 + timedelta(hours=1))
    assert view.data["flight_preapproved"] is True
    view = back_from_the_trip(rt, view)
    view = rt.complete(the_task(view, "file_claim").id, "rep.wang",
                       claim(ticket("flight", 1200, "F-002")), at=BACK)
    assert line(view)["allowed"] == 1200 and line(view)["reason"] == ""


def test_a_flight_the_superior_refused_is_paid_at_the_train_fare(rt):
    view = rt.start("expense_claim", "rep.wang", trip(request_flight=True, preapproval_reason="赶时间"), at=T0)
    view = rt.complete(the_task(view, "preapprove").id, "om.wu", {"decision": "reject", "comment": "坐高铁"},
                       at=T0 + timedelta(hours=1))
    view = back_from_the_trip(rt, view)
    view = rt.complete(the_task(view, "file_claim").id, "rep.wang",
                       claim(ticket("flight", 900, "F-003", train_fare=300)), at=BACK)
    assert line(view)["allowed"] == 300


def test_a_trip_back_before_it_leaves_is_refused(rt):
    with pytest.raises(InvalidInput) as refused:
        rt.start("expense_claim", "rep.wang", trip(depart_on="2026-11-24", return_on="2026-11-23"), at=T0)
    assert refused.value.fields == {"return_on": "must be on or after the day of departure, 2026-11-24"}


def test_asking_for_a_flight_needs_a_reason(rt):
    with pytest.raises(InvalidInput) as refused:
        rt.start("expense_claim", "rep.wang", trip(request_flight=True), at=T0)
    assert "preapproval_reason" in refused.value.fields


# --- shared room (001 费用 2(3)) -----------------------------------------------------------------------

def test_two_staff_of_the_same_sex_share_a_room_refunded_at_80_percent_of_two_caps(rt):
    view = filed(rt, claim(hotel(240, nights=2, shared_with="rep.feng"), companion_grade="staff",
                           companion_name="rep.feng", companion_sex="male"))
    assert view.data["share_room"] is True
    assert line(view)["allowed"] == 192  # 0.8 × (60 + 60) = 96 a night
    assert line(view)["reason"] == ("hotel 120/day on a staff trip cut to 96: room shared with rep.feng: "
                                    "80 % of the two caps 60 + 60 = 96")


def test_a_shared_room_with_a_senior_colleague_takes_both_caps(rt):
    view = filed(rt, claim(hotel(120, shared_with="赵高级"), companion_grade="senior", companion_name="赵高级",
                           companion_sex="male"))
    assert line(view)["allowed"] == 120  # 0.8 × (60 + 100) = 128 ≥ 120: paid in full


def test_a_room_of_ones_own_when_the_room_should_be_shared_gets_half_the_shared_cap(rt):
    view = filed(rt, claim(hotel(60), companion_grade="staff", companion_name="rep.feng", companion_sex="male"))
    assert line(view)["allowed"] == 48  # two such rooms cost no more than the shared one (96)
    assert line(view)["reason"] == ("hotel 60/day on a staff trip cut to 48: a room of one's own on a trip with rep.feng "
                                    "(same sex, below manager), who should share: half the shared room's 96 "
                                    "(80 % of 60 + 60)")


@pytest.mark.parametrize("companion", [
    {"companion_grade": "staff", "companion_name": "李女士", "companion_sex": "female"},  # other sex
    {"companion_grade": "manager", "companion_name": "周经理", "companion_sex": "male"},  # a manager
])
def test_no_shared_room_across_sexes_or_with_a_manager(rt, companion):
    view = filed(rt, claim(hotel(100), **companion))
    assert view.data["share_room"] is False
    assert line(view)["allowed"] == 60 and "staff cap 45–60" in line(view)["reason"]


def test_a_shared_room_is_claimed_by_one_person_only(rt):
    filed(rt, claim(hotel(160, receipt="H-ROOM-7", shared_with="rep.feng"), companion_grade="staff", companion_name="rep.feng",
                    companion_sex="male"))
    view = rt.start("expense_claim", "rep.feng", trip(), at=T0)
    view = back_from_the_trip(rt, view)
    with pytest.raises(InvalidInput) as refused:
        rt.complete(the_task(view, "file_claim").id, "rep.feng", claim(hotel(160, receipt="H-ROOM-7")), at=BACK)
    assert "a shared room is claimed by one traveller only" in str(refused.value)
    assert list(refused.value.fields) == ["receipts/0/receipt_no"]


# --- shared taxi (001 费用 二6) -------------------------------------------------------------------------

def test_a_shared_taxi_is_claimed_once_and_free_again_when_that_claim_is_rejected(rt):
    taxi = ticket("taxi", 45, "TX-88", shared_with="rep.feng")
    first = filed(rt, claim(taxi))
    view = rt.start("expense_claim", "rep.feng", trip(), at=T0)
    view = back_from_the_trip(rt, view)
    task = the_task(view, "file_claim")
    with pytest.raises(InvalidInput) as refused:
        rt.complete(task.id, "rep.feng", claim(ticket("taxi", 45, "TX-88")), at=BACK)
    assert str(refused.value) == (f"line 1: receipt TX-88 is already claimed by {first.data['claim_no']}: "
                                  "a shared taxi is claimed by one traveller only (001 费用 二6)")
    with pytest.raises(InvalidInput):  # one receipt twice on one claim
        rt.complete(task.id, "rep.feng", claim(ticket("taxi", 45, "TX-9"), ticket("taxi", 45, "TX-9")), at=BACK)

    rt.complete(the_task(first, "approve_claim").id, "om.wu", {"decision": "reject", "comment": "由冯申报"},
                at=BACK + timedelta(hours=1))
    assert rt.instance(first.id).status == "completed"
    view = rt.complete(task.id, "rep.feng", claim(ticket("taxi", 45, "TX-88")), at=BACK + timedelta(hours=2))
    assert the_task(view, "approve_claim").assignee == "om.wu"


# --- allowance (001 费用 3, 3.1–3.4) ---------------------------------------------------------------------

@pytest.mark.parametrize("out, back, days", [
    ("2026-11-24 08:00", "2026-11-26 15:00", 3),     # whole first day, whole last day
    ("2026-11-24 12:00", "2026-11-26 12:00", 2.5),   # 12:00 out is a whole day; 12:00 back is a half
    ("2026-11-24 13:00", "2026-11-26 11:00", 2),     # half + 1 + half
    ("2026-11-24 12:01", "2026-11-26 12:01", 2.5),   # half + 1 + whole
    ("2026-11-24 07:30", "2026-11-24 19:00", 1),     # one day across noon
    ("2026-11-24 13:00", "2026-11-24 19:00", 0.5),   # one afternoon
])
def test_allowance_days_by_halves_around_noon_from_the_ticket_times(out, back, days):
    assert allowance_days(out, back) == days


def test_the_allowance_is_30_a_day_counted_by_half_days_through_the_engine(rt):
    view = filed(rt, claim(ticket("train", 200, "T-1"), departure_at="2026-11-24 13:00",
                           return_at="2026-11-26 11:00"))
    assert view.data["allowance_days"] == 2 and view.data["allowance"] == 60
    assert view.data["allowance_reason"].startswith("2 day(s) × 30")


def test_no_allowance_when_hosted_by_a_business_unit(rt):
    view = filed(rt, claim(ticket("train", 200, "T-1"), hosted=True))
    assert view.data["allowance"] == 0 and view.data["allowance_days"] == 3
    assert "hosted by a business unit: no allowance" in view.data["allowance_reason"]
    assert view.data["refund_total"] == 200


def test_a_return_ticket_before_the_departure_is_refused(rt):
    view = rt.start("expense_claim", "rep.wang", trip(), at=T0)
    view = back_from_the_trip(rt, view)
    with pytest.raises(InvalidInput) as refused:
        rt.complete(the_task(view, "file_claim").id, "rep.wang",
                    claim(ticket("train", 1, "T"), return_at="2026-11-23 15:00"), at=BACK)
    assert list(refused.value.fields) == ["return_at"]


# --- in-city trips (001 费用 一, 2(2), 3) ---------------------------------------------------------------

def in_city(**changes) -> dict:
    return trip(in_city=True, destination="广州番禺", depart_on="2026-11-24", return_on="2026-11-25", **changes)


def test_an_in_city_stay_approved_beforehand_is_cut_to_80_and_earns_no_allowance(rt):
    view = rt.start("expense_claim", "rep.wang",
                    in_city(request_in_city_stay=True, preapproval_reason="客户验收到深夜"), at=T0)
    view = rt.complete(the_task(view, "preapprove").id, "om.wu", APPROVE, at=T0 + timedelta(hours=1))
    assert view.data["stay_preapproved"] is True
    back = datetime(2026, 11, 25, 10, 1, tzinfo=timezone.utc)
    view = back_from_the_trip(rt, view, back)
    view = rt.complete(the_task(view, "file_claim").id, "rep.wang",
                       claim(hotel(120), departure_at="2026-11-24 09:00", return_at="2026-11-25 17:00"), at=back)
    assert line(view)["allowed"] == 80
    assert line(view)["reason"] == "hotel 120/day on an in-city trip cut to 80: in-city cap 80"
    assert view.data["allowance"] == 0 and "no allowance in the city" in view.data["allowance_reason"]


def test_an_in_city_stay_without_approval_beforehand_is_not_refunded(rt):
    back = datetime(2026, 11, 25, 10, 1, tzinfo=timezone.utc)
    view = filed(rt, claim(hotel(70), departure_at="2026-11-24 09:00", return_at="2026-11-25 17:00"),
                 start=in_city(), at=back)
    assert line(view)["allowed"] == 0
    assert line(view)["reason"] == ("in-city stay 70/day not refunded: an in-city stay needs the superior's "
                                    "approval beforehand (001 费用 2(2))")


def test_an_in_city_stay_is_asked_for_on_an_in_city_trip_only(rt):
    with pytest.raises(InvalidInput) as refused:
        rt.start("expense_claim", "rep.wang", trip(request_in_city_stay=True, preapproval_reason="x"), at=T0)
    assert "in_city" in refused.value.fields


# --- rounds -----------------------------------------------------------------------------------------

def test_sent_back_the_traveller_corrects_the_claim_and_a_dropped_receipt_is_free_again(rt, store):
    view = filed(rt, claim(ticket("train", 200, "T-1"), ticket("taxi", 30, "TX-1")))
    view = rt.complete(the_task(view, "approve_claim").id, "om.wu",
                       {"decision": "rework", "comment": "的士票由同事申报"}, at=BACK + timedelta(hours=1))
    task = the_task(view, "file_claim")
    assert task.assignee == "rep.wang"
    view = rt.complete(task.id, "rep.wang", claim(ticket("train", 200, "T-1")), at=BACK + timedelta(hours=2))
    assert view.data["claimed_total"] == 200 and the_task(view, "approve_claim").assignee == "om.wu"
    view = rt.complete(the_task(view, "approve_claim").id, "om.wu", APPROVE, at=BACK + timedelta(hours=3))
    view = rt.complete(the_task(view, "pay_claim").id, "fin.chu",
                       {"decision": "rework", "comment": "缺火车票原件"}, at=BACK + timedelta(hours=4))
    assert the_task(view, "file_claim").assignee == "rep.wang"
    with store.read() as s:
        kept = {r.key.split("/")[1]: r.data["status"] for r in s.scalars(
            select(BusinessRecord).where(BusinessRecord.kind == "expense_receipt"))}
    assert kept == {"T-1": "claimed", "TX-1": "withdrawn"}


# --- the superior and the 4-hour rule (000 岗位基本原则) --------------------------------------------------

def test_a_superior_silent_for_four_hours_is_escalated_to_their_own_superior(rt, store):
    view = rt.start("expense_claim", "rep.wang", trip(request_flight=True, preapproval_reason="赶时间"), at=T0)
    assert the_task(view, "preapprove").assignee == "om.wu"
    timers.run_once(rt, T0 + timedelta(hours=3, minutes=59))
    assert the_task(rt.instance(view.id), "preapprove").assignee == "om.wu"
    timers.run_once(rt, T0 + timedelta(hours=4, minutes=1))
    held = the_task(rt.instance(view.id), "preapprove")
    assert held.assignee == "rm.zheng"
    with store.read() as s:
        assert s.scalars(select(SlaBreach.escalated_to)).all() == ["rm.zheng"]
    view = rt.complete(held.id, "rm.zheng", APPROVE, at=T0 + timedelta(hours=5))
    assert view.data["flight_preapproved"] is True


def test_an_office_managers_trip_goes_to_the_regional_manager(rt):
    view = filed(rt, claim(hotel(200)), user="om.wu", start=trip(grade="manager"))
    assert the_task(view, "approve_claim").assignee == "rm.zheng"
    assert line(view)["allowed"] == 150


# --- through the pages: the superior reads each cut's reason; a refusal is said next to the field ------

@pytest.fixture
def pages(rt, catalogs, tmp_path, monkeypatch):
    monkeypatch.setenv("BPM_NOW", BACK.isoformat())
    app = make_app(rt, catalogs, tmp_path)
    return lambda username, lang="zh_CN": as_user(app, username, lang)


def field_errors(response) -> dict[str, str]:
    return {name: unescape(message) for name, message in re.findall(
        r'<p class="field-error" id="e-([^"]+)">([^<]+)</p>', response.get_data(as_text=True))}


def test_the_pages_show_the_reason_of_each_cut_and_refuse_a_flight_without_its_train_fare(rt, pages, store):
    view = rt.start("expense_claim", "rep.wang", trip(), at=T0)
    view = back_from_the_trip(rt, view)
    task = the_task(view, "file_claim")
    rep = pages("rep.wang")
    form = {"departure_at": "2026-11-24 08:00", "return_at": "2026-11-26 15:00", "companion_grade": "none",
            "receipts-0-kind": "flight", "receipts-0-date": "2026-11-24", "receipts-0-amount": "1200",
            "receipts-0-receipt_no": "F-9", "receipts-1-kind": "hotel", "receipts-1-date": "2026-11-24",
            "receipts-1-amount": "160", "receipts-1-nights": "1", "receipts-1-receipt_no": "H-9",
            "action": "complete"}
    before = snapshot(store, view.id)
    response = rep.post(f"/tasks/{task.id}", data=form)
    assert response.status_code == 422
    assert field_errors(response) == {"receipts-0-train_fare": "请填写同路程的火车票价（飞机未经事前批准）。"}
    assert snapshot(store, view.id) == before
    response = rep.post(f"/tasks/{task.id}", data={**form, "receipts-0-train_fare": "300"})
    assert response.status_code in (302, 303)
    approval = the_task(rt.instance(view.id), "approve_claim")
    page = unescape(pages("om.wu").get(f"/tasks/{approval.id}").get_data(as_text=True))
    assert "第 1 行：飞机票 1200 未经事前批准，按火车票价 300 报销（001 费用 二4）" in page
    assert "第 2 行：业务人员出差住宿 160 元/天核减至 60：业务人员标准 45–60 元/天" in page
    page = unescape(pages("om.wu", "en").get(f"/tasks/{approval.id}").get_data(as_text=True))
    assert "hotel 160/day on a staff trip cut to 60: staff cap 45–60" in page


# --- one claim per receipt, also when two claims are filed at the same instant (PostgreSQL) ------------

def test_two_claims_filed_at_the_same_instant_naming_one_receipt_one_is_refused(rt, store, monkeypatch):
    """Both claims read "nobody holds TX-RACE" before either writes (a barrier forces it); the
    receipt's hold is a row keyed by the receipt, so the second to commit is refused with one
    sentence naming the receipt and the claim holding it, and nothing of it is written."""
    if store.is_sqlite:
        pytest.skip("SQLite serialises writers: the second claim reads the first's receipt (tested above)")
    import threading

    from engine.errors import EngineError
    from processes import expenses
    other = Runtime(store, processes.SERVICES, lookups=processes.LOOKUPS)
    views = {}
    for user in ("rep.wang", "rep.feng"):
        views[user] = back_from_the_trip(rt, rt.start("expense_claim", user, trip(), at=T0))
    both_read = threading.Barrier(2, timeout=30)
    holder = expenses._holder

    def read_then_wait(receipt_no, claim_no):
        found = holder(receipt_no, claim_no)
        both_read.wait()  # neither has written when both have read
        return found

    monkeypatch.setattr(expenses, "_holder", read_then_wait)
    outcome: dict[str, object] = {}

    def file(runtime, user):
        try:
            outcome[user] = runtime.complete(the_task(views[user], "file_claim").id, user,
                                             claim(ticket("taxi", 45, "TX-RACE")), at=BACK + timedelta(minutes=10))
        except Exception as exc:  # noqa: BLE001 (asserted below)
            outcome[user] = exc

    threads = [threading.Thread(target=file, args=(runtime, user))
               for runtime, user in ((rt, "rep.wang"), (other, "rep.feng"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    monkeypatch.setattr(expenses, "_holder", holder)
    assert set(outcome) == {"rep.wang", "rep.feng"}
    refused = [u for u, o in outcome.items() if isinstance(o, Exception)]
    assert len(refused) == 1, outcome
    loser = refused[0]
    winner = "rep.feng" if loser == "rep.wang" else "rep.wang"
    held_by = outcome[winner].data["claim_no"]
    assert str(outcome[loser]) == f"receipt TX-RACE is already claimed by {held_by}: a receipt is claimed once"
    assert isinstance(outcome[loser], EngineError) and outcome[loser].status == "conflict"
    # nothing of the refused claim was written: its task is open, it keeps no receipt
    view = rt.instance(views[loser].id)
    assert the_task(view, "file_claim").assignee == loser and "assessed_lines" not in view.data
    with store.read() as s:
        kept = {(r.kind, r.key): r.data.get("claim_no") for r in s.scalars(select(BusinessRecord))
                if r.kind.startswith("expense_receipt")}
    assert set(kept.values()) == {held_by}
    # the refused traveller files again without the taxi the other claimed
    view = rt.complete(the_task(view, "file_claim").id, loser, claim(ticket("train", 200, "T-RACE")),
                       at=BACK + timedelta(minutes=20))
    assert the_task(view, "approve_claim")
