"""Contract review (合同评审) as seed 001 二、2(1)–(6) writes it, through the engine's public API.

- (5) every formal contract: 业务部经理确认审核, then 总经办审批, before production — no path
  leaves out either level;
- (3) terms that deviate from the quote (price, discount, payment terms, delivery date) are
  reviewed by the department manager and approved by the VP or the GM, as the decision table
  `contract_approval_authority` says;
- (2),(4) a major contract (重大合同) is confirmed by the department manager and 总经办 and
  reported to the VP and the GM;
- a rejection at any level returns the contract to the rep, each round kept;
- the contract number (HT-…) is given at submission, is the business key, and keys the
  "contract" business record the order chain checks (published as approved, then filed).
"""
from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

import processes
from engine import records, timers, versions
from engine.runtime import Forbidden, InvalidInput, NotFound, Runtime
from engine.store import LogEntry, SlaBreach, UserRole
from processes import notices
from web import create_app

from .conftest import contract, snapshot
from .test_processes import APPROVE, BPMN, T0, Clock, reject, the_task, waiting
from .test_web import as_user, catalogs, text  # noqa: F401  (catalogs: a fixture the app needs)

FORMS = BPMN.parent / "forms"
CONTRACT_NO = re.compile(r"^HT-20261123-[0-9a-f]{10}$")
REFUSED = (Forbidden, NotFound)  # NotFound: one who may not even see the instance is not told it exists
RECORD_FIELDS = {"contract_no", "customer", "amount", "lines", "payment_terms", "delivery_date", "status",
                 "approved_by", "approved_at"}


@pytest.fixture
def rt(store, monkeypatch):
    monkeypatch.setenv("BPM_NOW", T0.isoformat())
    versions.deploy(store, [BPMN], actor="design.yang", at=T0)
    return Runtime(store, processes.SERVICES, lookups=processes.LOOKUPS)


def do(rt, view, element_id: str, user: str, data: dict | None, clock: Clock, **delta):
    return rt.complete(the_task(view, element_id).id, user, data or {}, at=clock(**delta))


def actors(store, instance_id: str) -> list[str]:
    with store.read() as s:
        return [e.actor for e in s.scalars(select(LogEntry).where(LogEntry.instance_id == instance_id)
                                           .order_by(LogEntry.seq)) if e.command in ("start", "complete")]


def contract_record(store, contract_no: str) -> dict | None:
    with store.read() as s:
        found = [r for r in records.listed(s.connection(), "contract", key=contract_no) if r["key"] == contract_no]
    return found[0] if found else None


def file_signed(rt, view, clock: Clock):
    filing = the_task(view, "file_contract")
    assert filing.assignee == "rep.wang"  # back to the rep who submitted it
    return do(rt, view, "file_contract", "rep.wang", {"signed_on": "2026-11-25",
                                                       "archive_location": "业务部办公室文件柜 A-3"}, clock, days=2)


def reports(contract_no: str) -> list[str]:
    return sorted(n["to"] for n in notices.OUTBOX if contract_no in n["subject"])


# --- 001 二、2(5): manager review, then 总经办 approval, for every formal contract --------------------

def test_a_standard_contract_is_reviewed_by_the_manager_approved_by_the_general_office_and_filed(rt, store):
    clock = Clock()
    view = rt.start("contract_review", "rep.wang", contract(), at=clock.now)
    no = view.data["contract_no"]
    assert CONTRACT_NO.match(no) and view.business_key == no
    assert (view.data["deviations"], view.data["deviation_approver"], view.data["major_contract"],
            view.data["review_round"]) == ([], "none", False, 1)
    assert the_task(view, "dm_review").role == "dept_manager"

    view = do(rt, view, "dm_review", "dm.zhou", APPROVE, clock)
    go = the_task(view, "go_approval")  # not "the manager alone": 总经办 follows
    assert go.role == "general_office" and waiting(view) == ["go_approval"]
    assert contract_record(store, no) is None  # not approved yet: no order may refer to it

    view = do(rt, view, "go_approval", "gmo.tang", APPROVE, clock)
    assert waiting(view) == ["file_contract"] and view.data["approved_by"] == "gmo.tang"
    approved = contract_record(store, no)
    assert set(approved["data"]) >= RECORD_FIELDS and approved["revision"] == 1
    assert {k: approved["data"][k] for k in ("contract_no", "customer", "amount", "payment_terms", "delivery_date",
                                             "status", "approved_by", "approved_at")} == {
        "contract_no": no, "customer": "C-B01", "amount": 260000, "payment_terms": "30% 定金，发货前付清",
        "delivery_date": "2027-01-15", "status": "approved", "approved_by": "gmo.tang",
        "approved_at": clock.now.isoformat()}
    assert approved["data"]["lines"] == [{"product": "芝麻灰花岗岩板", "spec": "600x600x20", "quantity": 500,
                                          "unit_price": 520}]
    assert (approved["customer"], approved["process_id"]) == ("C-B01", "contract_review")

    view = file_signed(rt, view, clock)
    assert view.status == "completed" and view.tasks == []
    filed = contract_record(store, no)
    assert (filed["data"]["status"], filed["revision"], filed["data"]["approved_by"]) == ("filed", 2, "gmo.tang")
    assert filed["data"]["signed_on"] == "2026-11-25"
    assert actors(store, view.id) == ["rep.wang", "dm.zhou", "gmo.tang", "rep.wang"]
    assert reports(no) == []  # not major: nobody above is told


def test_contract_numbers_differ_and_the_rep_cannot_choose_one(rt, store):
    first = rt.start("contract_review", "rep.wang", contract(), at=T0)
    second = rt.start("contract_review", "rep.wang", contract(), at=T0)
    assert first.data["contract_no"] != second.data["contract_no"]
    assert all(CONTRACT_NO.match(v.data["contract_no"]) for v in (first, second))
    with pytest.raises(InvalidInput, match="contract_no"):
        rt.start("contract_review", "rep.wang", contract(contract_no="HT-MINE"), at=T0)


# --- 001 二、2(3): deviations from the quote add the VP or the GM, as the table says ----------------

DEVIATIONS = [
    # changes, terms that deviate, the level the table adds, who holds it
    ({"price": 480, "amount": 240000}, ["price"], "vp_approval", "vp.qian"),
    ({"discount": 5}, ["discount"], "vp_approval", "vp.qian"),  # the quote allows 3 %
    ({"delivery_date": "2026-12-20"}, ["delivery_date"], "vp_approval", "vp.qian"),
    ({"payment_terms": "货到后180天付款，无定金"}, ["payment_terms"], "gm_approval", "gm.zhao"),
    ({"price": 480, "payment_terms": "货到后180天付款，无定金"}, ["price", "payment_terms"], "gm_approval", "gm.zhao"),
]


@pytest.mark.parametrize("changes, terms, level, approver", DEVIATIONS,
                         ids=["price", "discount", "delivery_date", "payment_terms", "price+payment_terms"])
def test_each_deviating_term_adds_the_vp_or_gm_between_the_manager_and_the_general_office(
        rt, store, changes, terms, level, approver):
    clock = Clock()
    view = rt.start("contract_review", "rep.wang", contract(**changes), at=clock.now)
    assert view.data["deviations"] == terms
    notes = view.data["deviation_notes"]
    assert len(notes) == len(terms)
    assert all(re.search(r"[\u4e00-\u9fff]", n) and " / " in n and re.search(r"[A-Za-z]{4}", n) for n in notes)
    role = {"vp_approval": "vp_sales", "gm_approval": "general_manager"}[level]
    assert view.data["deviation_approver"] == role
    assert waiting(view) == ["dm_review"]  # the manager reviews the deviation first

    view = do(rt, view, "dm_review", "dm.zhou", APPROVE, clock)
    assert waiting(view) == [level] and the_task(view, level).role == role
    view = do(rt, view, level, approver, APPROVE, clock)
    assert waiting(view) == ["go_approval"]  # and 总经办 approves last
    view = do(rt, view, "go_approval", "gmo.tang", APPROVE, clock)
    assert contract_record(store, view.data["contract_no"])["data"]["status"] == "approved"
    view = file_signed(rt, view, clock)
    assert view.status == "completed"
    assert actors(store, view.id) == ["rep.wang", "dm.zhou", approver, "gmo.tang", "rep.wang"]


def test_a_discount_within_the_quotes_band_and_reworded_whitespace_are_not_deviations(rt):
    view = rt.start("contract_review", "rep.wang",
                    contract(discount=3, payment_terms=" 30% 定金，发货前付清  "), at=T0)
    assert (view.data["deviations"], view.data["deviation_approver"]) == ([], "none")
    view = rt.start("contract_review", "rep.wang", contract(discount=3.5), at=T0)
    assert view.data["deviations"] == ["discount"]
    bare = {k: v for k, v in contract().items() if k not in ("discount", "allowed_discount")}
    view = rt.start("contract_review", "rep.wang", bare, at=T0)  # no discount given: none granted
    assert view.data["deviations"] == [] and "given" not in view.data
    view = rt.start("contract_review", "rep.wang", {**bare, "discount": 1}, at=T0)  # no band quoted: none allowed
    assert view.data["deviations"] == ["discount"]


def test_the_approvers_see_what_deviates_on_their_form():
    """Every approval form shows the quote beside the negotiated terms and the deviations, read-only."""
    for level in ("dm_review", "vp_approval", "gm_approval", "go_approval"):
        form = json.loads((FORMS / f"contract_review.{level}.json").read_text(encoding="utf-8"))
        for name in ("contract_no", "review_round", "deviations", "deviation_notes", "deviation_approver",
                     "major_contract", "major_report", "quote_price", "price", "allowed_discount", "discount",
                     "quote_payment_terms", "payment_terms", "quote_delivery_date", "delivery_date"):
            assert form["properties"][name]["readOnly"] is True, (level, name)
        terms = form["properties"]["deviations"]["items"]
        assert set(terms["enum"]) == {"price", "discount", "payment_terms", "delivery_date"}
        assert terms["x-enum-titles-zh"]["price"] == "单价低于原报价" and terms["x-enum-titles"]["price"]


# --- 001 二、2(2),(4): major contracts, confirmed by the manager and 总经办, reported to VP and GM --

@pytest.mark.parametrize("amount", [1_000_000, 1_850_000])
def test_a_major_contract_is_reported_to_the_vp_and_the_gm_and_confirmed_by_manager_and_general_office(
        rt, store, amount):
    clock = Clock()
    view = rt.start("contract_review", "rep.wang", contract(amount=amount), at=clock.now)
    no = view.data["contract_no"]
    assert (view.data["major_contract"], view.data["deviation_approver"]) == (True, "none")
    assert reports(no) == ["gm.zhao", "vp.qian"]
    assert sorted((n["to"], n["role"]) for n in view.data["major_report"]) == [
        ("gm.zhao", "general_manager"), ("vp.qian", "vp_sales")]
    notice = next(n for n in notices.OUTBOX if n["to"] == "vp.qian" and no in n["subject"])
    assert "重大合同" in notice["subject"] and "Major contract" in notice["subject"] and str(amount) in notice["body"]
    # choice: reported, not approved — no GM level for a major contract on the quoted terms
    view = do(rt, view, "dm_review", "dm.zhou", APPROVE, clock)
    assert waiting(view) == ["go_approval"]
    view = do(rt, view, "go_approval", "gmo.tang", APPROVE, clock)
    view = file_signed(rt, view, clock)
    assert actors(store, view.id) == ["rep.wang", "dm.zhou", "gmo.tang", "rep.wang"]


def test_just_under_the_threshold_is_not_major_and_a_deviating_major_contract_goes_to_the_gm(rt, store):
    under = rt.start("contract_review", "rep.wang", contract(amount=999_999), at=T0)
    assert under.data["major_contract"] is False and reports(under.data["contract_no"]) == []
    clock = Clock()
    view = rt.start("contract_review", "rep.wang", contract(amount=1_200_000, price=500), at=clock.now)
    assert (view.data["major_contract"], view.data["deviation_approver"]) == (True, "general_manager")
    assert reports(view.data["contract_no"]) == ["gm.zhao", "vp.qian"]
    view = do(rt, view, "dm_review", "dm.zhou", APPROVE, clock)
    view = do(rt, view, "gm_approval", "gm.zhao", APPROVE, clock)
    view = do(rt, view, "go_approval", "gmo.tang", APPROVE, clock)
    assert waiting(view) == ["file_contract"]


# --- rejection at any level: back to the rep, a new round, every round kept -----------------------

REJECTIONS = [  # the contract, the levels approved before the one that rejects
    (contract(), [("dm_review", "dm.zhou")], ("go_approval", "gmo.tang")),
    (contract(), [], ("dm_review", "dm.zhou")),
    (contract(price=450, amount=225000), [("dm_review", "dm.zhou")], ("vp_approval", "vp.qian")),
    (contract(payment_terms="月结90天"), [("dm_review", "dm.zhou")], ("gm_approval", "gm.zhao")),
]


@pytest.mark.parametrize("start, before, rejecting", REJECTIONS, ids=["general_office", "dm", "vp", "gm"])
def test_a_rejection_at_any_level_returns_the_contract_for_a_new_round(rt, store, start, before, rejecting):
    clock = Clock()
    view = rt.start("contract_review", "rep.wang", start, at=clock.now)
    no = view.data["contract_no"]
    for element_id, user in before:
        view = do(rt, view, element_id, user, APPROVE, clock)
    level, user = rejecting
    with pytest.raises(InvalidInput):  # a rejection needs its reasons
        do(rt, view, level, user, {"decision": "reject"}, clock)
    view = do(rt, view, level, user, reject("条款须按原报价重新谈判"), clock)
    revise = the_task(view, "revise")
    assert (revise.assignee, revise.form) == ("rep.wang", "contract_review.revise.json")
    assert view.data["comment"].startswith("条款须按原报价") and contract_record(store, no) is None

    before_revise = snapshot(store, view.id)
    with pytest.raises(InvalidInput, match="quote_price"):  # the quote stays as submitted (choice)
        do(rt, view, "revise", "rep.wang", {"quote_price": 450, "price": 450, "amount": 225000,
                                            "payment_terms": "30% 定金，发货前付清",
                                            "delivery_date": "2027-01-15"}, clock)
    assert snapshot(store, view.id) == before_revise

    view = do(rt, view, "revise", "rep.wang", {"price": 520, "amount": 260000, "lines": contract()["lines"], "discount": 0,
                                               "payment_terms": "30% 定金，发货前付清",
                                               "delivery_date": "2027-01-15"}, clock, hours=2)
    assert (view.data["review_round"], view.data["deviations"], view.data["contract_no"]) == (2, [], no)
    assert view.business_key == no and waiting(view) == ["dm_review"]  # the new round starts at the manager
    view = do(rt, view, "dm_review", "dm.zhou", APPROVE, clock)
    view = do(rt, view, "go_approval", "gmo.tang", APPROVE, clock)
    view = file_signed(rt, view, clock)
    assert view.status == "completed"
    round_one = ["rep.wang", *(u for _, u in before), user]
    assert actors(store, view.id) == [*round_one, "rep.wang", "dm.zhou", "gmo.tang", "rep.wang"]


def test_a_revised_contract_that_still_deviates_goes_up_again(rt):
    clock = Clock()
    view = rt.start("contract_review", "rep.wang", contract(price=450, amount=225000), at=clock.now)
    view = do(rt, view, "dm_review", "dm.zhou", reject("价格过低"), clock)
    view = do(rt, view, "revise", "rep.wang", {"price": 520, "amount": 260000, "lines": contract()["lines"], "payment_terms": "货到付款",
                                               "delivery_date": "2027-01-15"}, clock)
    assert (view.data["review_round"], view.data["deviations"], view.data["deviation_approver"]) == (
        2, ["payment_terms"], "general_manager")
    view = do(rt, view, "dm_review", "dm.zhou", APPROVE, clock)
    assert waiting(view) == ["gm_approval"]


# --- who may act ---------------------------------------------------------------------------------

def test_wrong_roles_are_refused_and_nothing_changes(rt, store):
    clock = Clock()
    view = rt.start("contract_review", "rep.wang", contract(price=480, amount=240000), at=clock.now)
    review = the_task(view, "dm_review")
    before = snapshot(store, view.id)
    for user in ("rep.feng", "rep.wang", "gmo.tang", "vp.qian", "fin.chu"):  # a rep, the submitter, 总经办...
        with pytest.raises(REFUSED):
            rt.complete(review.id, user, APPROVE, at=clock())
    assert snapshot(store, view.id) == before
    view = do(rt, view, "dm_review", "dm.zhou", APPROVE, clock)
    vp = the_task(view, "vp_approval")
    for user in ("rep.feng", "gmo.tang", "dm.zhou"):
        with pytest.raises(REFUSED):
            rt.complete(vp.id, user, APPROVE, at=clock())
    view = do(rt, view, "vp_approval", "vp.qian", APPROVE, clock)
    go = the_task(view, "go_approval")
    for user in ("rep.feng", "rep.wang", "dm.zhou", "vp.qian"):
        with pytest.raises(REFUSED):
            rt.complete(go.id, user, APPROVE, at=clock())
    view = do(rt, view, "go_approval", "gmo.tang", APPROVE, clock)
    with pytest.raises(REFUSED):
        rt.complete(the_task(view, "file_contract").id, "rep.feng", {"signed_on": "2026-11-25"}, at=clock())


def test_a_start_without_the_quotes_terms_is_refused_naming_the_field(rt, store):
    data = contract()
    del data["quote_payment_terms"]
    with pytest.raises(InvalidInput, match="quote_payment_terms"):
        rt.start("contract_review", "rep.wang", data, at=T0)
    with pytest.raises(InvalidInput, match="discount"):
        rt.start("contract_review", "rep.wang", contract(discount=150), at=T0)


def test_the_amount_must_be_what_the_lines_add_up_to_so_a_major_contract_cannot_be_typed_small(rt, store):
    from .conftest import instances
    lines = [{"product": "芝麻灰花岗岩板", "spec": "600x600x20", "quantity": 2400, "unit_price": 520}]  # 1,248,000
    with pytest.raises(InvalidInput, match="amount") as refused:
        rt.start("contract_review", "rep.wang", contract(amount=999999, lines=lines), at=T0)
    assert refused.value.fields == {"amount": "must be 1248000, the total of the lines (quantity × unit price)"}
    assert instances(store) == 0
    view = rt.start("contract_review", "rep.wang", contract(amount=1248000, lines=lines), at=T0)
    assert view.data["major_contract"] is True
    # On revision the same check holds: a lower amount over the same lines is refused.
    view = do(rt, view, "dm_review", "dm.zhou", reject("金额有误，请核对"), Clock())
    with pytest.raises(InvalidInput, match="amount") as refused:
        rt.complete(the_task(view, "revise").id, "rep.wang", {
            k: v for k, v in contract(amount=900000, lines=lines).items()
            if k not in ("customer", "quote_price", "allowed_discount", "quote_payment_terms", "quote_delivery_date")},
                    at=T0 + timedelta(hours=1))
    assert list(refused.value.fields) == ["amount"]


# --- the 4-hour reply with the 总经办 level (RULES: one person approves at most one level) ----------

def test_escalations_with_the_general_office_level(rt, store):
    # a silent manager: standard contract -> vp.qian (no later level of his)
    standard = rt.start("contract_review", "rep.wang", contract(), at=T0)
    # a silent manager: price deviation -> past vp.qian (the VP level is his) to gm.zhao
    priced = rt.start("contract_review", "rep.wang", contract(price=480, amount=240000), at=T0)
    # a silent manager: payment deviation -> vp.qian (the GM level is gm.zhao's)
    credit = rt.start("contract_review", "rep.wang", contract(payment_terms="月结90天"), at=T0)
    timers.run_once(rt, T0 + timedelta(hours=5))
    assert the_task(rt.instance(standard.id), "dm_review").assignee == "vp.qian"
    assert the_task(rt.instance(priced.id), "dm_review").assignee == "gm.zhao"
    assert the_task(rt.instance(credit.id), "dm_review").assignee == "vp.qian"

    # a silent 总经办: to gm.zhao (gmo.tang's superior) ...
    at = T0 + timedelta(hours=6)
    view = rt.complete(the_task(rt.instance(standard.id), "dm_review").id, "vp.qian", APPROVE, at=at)
    # ... unless gm.zhao approved the GM level of this round: no one above him, gmo.tang keeps it
    other = rt.complete(the_task(rt.instance(credit.id), "dm_review").id, "vp.qian", APPROVE, at=at)
    other = rt.complete(the_task(other, "gm_approval").id, "gm.zhao", APPROVE, at=at)
    go = the_task(other, "go_approval")
    timers.run_once(rt, at + timedelta(hours=5))
    escalated = the_task(rt.instance(view.id), "go_approval")
    assert escalated.assignee == "gm.zhao"
    done = rt.complete(escalated.id, "gm.zhao", APPROVE, at=at + timedelta(hours=6))  # he may act on it
    assert contract_record(store, done.data["contract_no"])["data"]["approved_by"] == "gm.zhao"
    kept = the_task(rt.instance(other.id), "go_approval")
    assert kept.id == go.id and kept.assignee == "gmo.tang"  # no one to escalate to: she keeps it
    with store.read() as s:
        assert s.scalars(select(SlaBreach.escalated_to).where(SlaBreach.instance_id == other.id)
                         .order_by(SlaBreach.breached_at)).all() == ["vp.qian", None]
        assert s.scalars(select(SlaBreach.escalated_to).where(SlaBreach.instance_id == view.id)
                         .order_by(SlaBreach.breached_at)).all() == ["vp.qian", "gm.zhao"]


def test_a_gm_who_also_sits_in_the_general_office_approves_one_level_of_a_round(rt, store):
    """Role overlap: gm.zhao also holds general_office. Having approved the GM level, he may not
    take 总经办's of the same round: it goes at once to the other holder, gmo.tang. A new round
    counts afresh."""
    with store.write() as s:
        s.add(UserRole(username="gm.zhao", role_id="general_office"))
    clock = Clock()
    view = rt.start("contract_review", "rep.wang", contract(payment_terms="月结90天"), at=clock.now)
    view = do(rt, view, "dm_review", "dm.zhou", APPROVE, clock)
    view = do(rt, view, "gm_approval", "gm.zhao", APPROVE, clock)
    go = the_task(view, "go_approval")
    assert go.assignee == "gmo.tang"
    before = snapshot(store, view.id)
    with pytest.raises(Forbidden):
        rt.complete(go.id, "gm.zhao", APPROVE, at=clock())
    assert snapshot(store, view.id) == before
    view = do(rt, view, "go_approval", "gmo.tang", reject("定金比例须按报价"), clock)
    view = do(rt, view, "revise", "rep.wang", {"price": 520, "amount": 260000, "lines": contract()["lines"], "payment_terms": "30% 定金，发货前付清",
                                               "delivery_date": "2027-01-15"}, clock)
    view = do(rt, view, "dm_review", "dm.zhou", APPROVE, clock)
    view = do(rt, view, "go_approval", "gm.zhao", APPROVE, clock)  # round 2: his only level
    assert waiting(view) == ["file_contract"] and view.data["approved_by"] == "gm.zhao"


# --- the business key in the inbox -----------------------------------------------------------------

def test_the_contract_number_is_the_business_key_in_the_inbox(rt, catalogs, tmp_path):  # noqa: F811
    app = create_app(rt, {"TESTING": True, "SECRET_KEY": "test", "WTF_CSRF_ENABLED": False,
                          "BABEL_TRANSLATION_DIRECTORIES": str(catalogs), "VENDOR_DIR": str(tmp_path / "vendor")})
    view = rt.start("contract_review", "rep.wang", contract(), at=T0)
    no = view.data["contract_no"]
    page = text(as_user(app, "dm.zhou").get("/"))
    assert no in page
    rt.complete(the_task(view, "dm_review").id, "dm.zhou", APPROVE, at=T0 + timedelta(minutes=5))
    page = text(as_user(app, "gmo.tang").get("/"))
    assert no in page and "General office approval" in page
