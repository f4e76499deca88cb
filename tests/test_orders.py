"""The order chain (订货—发运—结算) as seeds 001 and 004 write it, walked through the engine's API:
gated on an approved contract or a manager's approval (001 二 2(5)(6)), amounts from the lines,
shipments drawn from the lines (004 发货流程, 《发货清单》), balances by credit level with A and B
chased too (001 四), reconciliation by finance and the rep (001 二 3(5)), deposits booked once, the
payment message's refusals, and the "order" business record other processes read."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

import processes
from engine import audit, timers, versions
from engine.runtime import Conflict, Forbidden, InvalidInput, NotFound, Runtime
from engine.store import BusinessRecord, Incident

from .conftest import instances, snapshot
from .test_processes import BPMN, T0, Clock, completions, do, the_task, waiting
from .test_web import as_user, catalogs, text  # noqa: F401 (catalogs: a fixture)

SLAB = ("芝麻灰花岗岩板", "600x600x20")
MARBLE = ("爵士白大理石板", "800x800x18")


@pytest.fixture
def rt(store):
    versions.deploy(store, [BPMN], actor="design.yang", at=T0)
    return Runtime(store, processes.SERVICES, lookups=processes.LOOKUPS)


def put_contract(store, contract_no: str, customer: str = "C-B01", status: str = "approved",
                 lines: list | None = None) -> None:
    """A contract as contract_review publishes it (records.md), written straight into the table."""
    lines = lines or [{"product": SLAB[0], "spec": SLAB[1], "quantity": 500, "unit_price": 500}]
    data = {"contract_no": contract_no, "customer": customer,
            "amount": sum(l["quantity"] * l["unit_price"] for l in lines), "lines": lines,
            "payment_terms": "30% 定金", "delivery_date": "2027-01-15", "status": status,
            "approved_by": "gmo.tang", "approved_at": T0.isoformat()}
    with store.write() as s:
        s.add(BusinessRecord(kind="contract", key=contract_no, ref=None, customer=customer, data=data,
                             instance_id="contract-review-instance", process_id="contract_review", revision=1,
                             updated_at=T0))


def record(store, order_no: str) -> dict | None:
    with store.read() as s:
        row = s.scalars(select(BusinessRecord).where(BusinessRecord.kind == "order",
                                                     BusinessRecord.key == order_no)).first()
        return None if row is None else {**row.data, "_revision": row.revision, "_ref": row.ref}


def line(item=SLAB, quantity=200, unit_price=500) -> dict:
    return {"product": item[0], "spec": item[1], "quantity": quantity, "unit_price": unit_price}


def phone_order(customer="C-B01", lines=None, **changes) -> dict:
    data = {"customer": customer, "contact": "陈美玲", "order_source": "phone",
            "lines": lines or [line()], "delivery_address": "佛山市顺德区大良街道南国东路 55 号",
            "delivery_date": "2026-12-20"}
    data.update(changes)
    return data


def contract_order(contract_no, customer="C-B01", lines=None) -> dict:
    data = phone_order(customer, lines)
    del data["order_source"]
    return {**data, "contract_no": contract_no}


def approve(rt, view, clock, user="dm.zhou", element="approve_order_dm"):
    return do(rt, view, element, user, {"decision": "approve", "comment": "老客户电话订货，同意"}, at=clock())


def deposit(rt, view, clock, amount=None, voucher="BK-1"):
    return do(rt, view, "confirm_deposit", "fin.chu", {
        "deposit_received": amount if amount is not None else view.data["deposit_required"],
        "received_on": "2026-11-24", "voucher_no": voucher}, at=clock(days=1))


def produce(rt, view, clock):
    return do(rt, view, "schedule_production", "prod.jiang", {
        "planned_start": "2026-11-25", "planned_finish": "2026-12-08"}, at=clock())


def ship(rt, view, clock, rows, carrier="德邦物流"):
    return do(rt, view, "ship_goods", "wh.wei", {
        "shipping_list": [{"line": n, "quantity": q} for n, q in rows], "carrier": carrier,
        "shipped_on": clock(days=1).date().isoformat()}, at=clock.now)


def pay(rt, view, amount, at, voucher=None):
    payload = {"order_no": view.data["order_no"], "amount": amount}
    if voucher:
        payload["voucher"] = voucher
    rt.message("payment_received", payload, {"order_no": view.data["order_no"]}, actor="fin.chu", at=at)
    return rt.instance(view.id)


def to_balance(rt, view, clock):
    """Approved phone order of C-B01: deposit, production, everything shipped, arrival confirmed."""
    view = approve(rt, view, clock)
    view = produce(rt, deposit(rt, view, clock), clock)
    view = ship(rt, view, clock, [(i + 1, l["quantity"]) for i, l in enumerate(view.data["lines"])])
    return do(rt, view, "confirm_arrival", "ssg.shen", {"arrived_on": clock(days=2).date().isoformat()},
              at=clock.now)


def reconcile_both(rt, view, clock, finance=None, rep=None, finance_note=None, rep_note=None):
    data = {"confirmed_total": view.data["paid"] if finance is None else finance,
            "reconciled_on": clock().date().isoformat()}
    if finance_note:
        data["reconcile_note"] = finance_note
    view = do(rt, view, "reconcile", "fin.chu", data, at=clock.now)
    data = {"rep_confirmed_total": view.data["paid"] if rep is None else rep,
            "rep_reconciled_on": clock().date().isoformat()}
    if rep_note:
        data["rep_note"] = rep_note
    return do(rt, view, "reconcile_rep", "rep.wang", data, at=clock.now)


# --- 1. gated on approval (001 二 2(5), 2(6)) ---------------------------------------------------

def test_a_phone_order_waits_for_the_department_manager_and_a_rejected_one_never_reaches_production(rt, store):
    clock = Clock()
    view = rt.start("order_to_settlement", "rep.wang", phone_order(), at=clock.now)
    task = the_task(view, "approve_order_dm")
    assert waiting(view) == ["approve_order_dm"] and task.role == "dept_manager"  # no deposit, no production
    assert record(store, view.data["order_no"])["status"] == "open"
    with pytest.raises(InvalidInput, match="comment"):  # a refusal says why
        do(rt, view, "approve_order_dm", "dm.zhou", {"decision": "reject"}, at=clock())
    view = do(rt, view, "approve_order_dm", "dm.zhou", {"decision": "reject", "comment": "客户欠款未清"},
              at=clock())
    assert view.status == "completed" and view.tasks == []
    assert completions(store, view.id) == [("rep.wang", "start"), ("dm.zhou", "complete")]  # nothing more ran
    assert record(store, view.data["order_no"])["status"] == "rejected"


def test_a_phone_order_may_go_to_the_general_office_instead_and_the_rep_cannot_approve_it(rt, store):
    clock = Clock()
    view = rt.start("order_to_settlement", "rep.wang", phone_order(order_source="fax", approver="general_office"),
                    at=clock.now)
    task = the_task(view, "approve_order_go")
    assert task.role == "general_office" and waiting(view) == ["approve_order_go"]
    with pytest.raises(Forbidden):  # the rep who took the order does not approve it
        rt.complete(task.id, "rep.wang", {"decision": "approve"}, at=clock())
    view = approve(rt, view, clock, user="gmo.tang", element="approve_order_go")
    assert waiting(view) == ["confirm_deposit"]
    assert record(store, view.data["order_no"])["status"] == "awaiting_deposit"


def test_an_order_without_a_contract_must_say_it_is_a_phone_or_fax_order(rt, store):
    data = phone_order()
    del data["order_source"]
    with pytest.raises(InvalidInput, match="order_source"):
        rt.start("order_to_settlement", "rep.wang", data, at=T0)
    assert instances(store) == 0


def test_an_order_under_an_approved_contract_needs_no_further_approval(rt, store):
    put_contract(store, "HT-20261120-a1b2c3", status="filed")
    view = rt.start("order_to_settlement", "rep.wang", contract_order("HT-20261120-a1b2c3"), at=T0)
    assert waiting(view) == ["confirm_deposit"] and view.data["contract_no"] == "HT-20261120-a1b2c3"
    kept = record(store, view.data["order_no"])
    assert (kept["status"], kept["contract_no"], kept["_ref"]) == ("awaiting_deposit", "HT-20261120-a1b2c3",
                                                                  "HT-20261120-a1b2c3")


@pytest.mark.parametrize("status,customer,contract_no,problem", [
    ("approved", "C-B01", "HT-20991231-ffffff", "there is no contract HT-20991231-ffffff"),
    ("submitted", "C-B01", "HT-20261120-a1b2c3", "contract HT-20261120-a1b2c3 is submitted, not approved"),
    ("approved", "C-A01", "HT-20261120-a1b2c3", "contract HT-20261120-a1b2c3 is with customer C-A01, not C-B01"),
])
def test_an_order_refers_only_to_an_approved_contract_of_its_customer(rt, store, status, customer, contract_no,
                                                                        problem):
    put_contract(store, "HT-20261120-a1b2c3", customer=customer, status=status)
    with pytest.raises(InvalidInput, match=problem) as refused:
        rt.start("order_to_settlement", "rep.wang", contract_order(contract_no), at=T0)
    assert "contract_no" in refused.value.fields
    assert instances(store) == 0
    with store.read() as s:  # a refusal, not a failure: no order record, no incident
        assert s.scalars(select(BusinessRecord).where(BusinessRecord.kind == "order")).first() is None
        assert s.scalars(select(Incident)).first() is None


@pytest.mark.parametrize("lines,field,problem", [
    ([line(MARBLE, 10, 800)], "lines/0/product", "line 1 .* is not in contract"),
    ([line(SLAB, 10, 450)], "lines/0/unit_price", "unit price 450 is not the contract's 500"),
    ([line(SLAB, 401, 500)], "lines/0/quantity", "401 is more than the 400 contract .* has left"),
])
def test_order_lines_stay_within_the_contract_and_what_other_orders_took(rt, store, lines, field, problem):
    put_contract(store, "HT-20261120-a1b2c3")
    first = rt.start("order_to_settlement", "rep.wang", contract_order("HT-20261120-a1b2c3", lines=[line(SLAB, 100)]),
                     at=T0)
    assert first.data["amount"] == 50000
    with pytest.raises(InvalidInput, match=problem) as refused:
        rt.start("order_to_settlement", "rep.wang", contract_order("HT-20261120-a1b2c3", lines=lines), at=T0)
    assert field in refused.value.fields and instances(store) == 1
    rt.start("order_to_settlement", "rep.wang", contract_order("HT-20261120-a1b2c3", lines=[line(SLAB, 400)]), at=T0)


# --- 2. amounts from the lines -------------------------------------------------------------------

def test_the_amount_is_computed_from_the_lines_and_cannot_be_typed(rt, store):
    with pytest.raises(InvalidInput, match="amount"):  # 10,000 typed over 100,000 of lines
        rt.start("order_to_settlement", "rep.wang", phone_order(amount=10000), at=T0)
    assert instances(store) == 0
    view = rt.start("order_to_settlement", "rep.wang",
                    phone_order(lines=[line(SLAB, 150, 500), line(MARBLE, 31.25, 800)]), at=T0)
    assert view.data["amount"] == 100000 and view.data["deposit_required"] == 30000  # B: 30 %
    assert record(store, view.data["order_no"])["amount"] == 100000


def test_two_orders_on_one_contract_take_turns_and_the_second_sees_what_the_first_took(rt, store):
    """While another command holds the contract (an order for all 500 being written, not yet
    committed), a new order on it waits, then sees that order and is refused; without the lock
    both would pass. PostgreSQL only: SQLite runs one writer at a time anyway."""
    if store.is_sqlite:
        pytest.skip("SQLite serialises writers")
    import threading

    from sqlalchemy import insert

    put_contract(store, "HT-20261120-a1b2c3")
    outcome: list = []

    def second_order() -> None:
        try:
            outcome.append(rt.start("order_to_settlement", "rep.wang",
                                    contract_order("HT-20261120-a1b2c3", lines=[line(SLAB, 200)]), at=T0))
        except InvalidInput as refused:
            outcome.append(refused.fields)

    with store.engine.connect() as other:
        with other.begin():
            other.execute(select(BusinessRecord).where(BusinessRecord.kind == "contract",
                                                       BusinessRecord.key == "HT-20261120-a1b2c3").with_for_update())
            other.execute(insert(BusinessRecord).values(
                kind="order", key="SO-20261123-000001", ref="HT-20261120-a1b2c3", customer="C-B01",
                instance_id="00000000-0000-4000-8000-0000000000cc", process_id="order_to_settlement", revision=1,
                updated_at=T0, data={"order_no": "SO-20261123-000001", "status": "awaiting_deposit",
                                     "lines": [{"product": SLAB[0], "spec": SLAB[1], "quantity": 500,
                                                "unit_price": 500, "shipped": 0}]}))
            waiting = threading.Thread(target=second_order)
            waiting.start()
            waiting.join(timeout=1.0)
            assert waiting.is_alive() and outcome == []  # it waits for the contract
        waiting.join(timeout=30)
    assert outcome == [{"lines/0/quantity": "more than the contract has left"}]


# --- 3. shipping from the order lines (004 发货流程) -----------------------------------------------

def test_shipments_are_drawn_from_the_lines_never_beyond_them_and_come_back_until_all_is_shipped(rt, store):
    clock = Clock()
    view = rt.start("order_to_settlement", "rep.wang", phone_order(lines=[line(SLAB, 10, 500), line(MARBLE, 20, 800)]),
                    at=clock.now)
    view = produce(rt, deposit(rt, approve(rt, view, clock), clock), clock)
    assert view.data["shipping_status"] == [
        {"line": 1, "product": SLAB[0], "spec": SLAB[1], "ordered": 10, "shipped": 0, "remaining": 10},
        {"line": 2, "product": MARBLE[0], "spec": MARBLE[1], "ordered": 20, "shipped": 0, "remaining": 20}]
    before = snapshot(store, view.id)
    with pytest.raises(InvalidInput, match=r"line 1 \(芝麻灰花岗岩板 600x600x20\): 999 is more than the 10 left") as no:
        ship(rt, view, clock, [(1, 999)])
    assert "shipping_list/0/quantity" in no.value.fields
    with pytest.raises(InvalidInput, match="names line 3; order .* has lines 1 to 2"):
        ship(rt, view, clock, [(3, 1)])
    assert snapshot(store, view.id) == before
    view = ship(rt, view, clock, [(1, 4), (2, 20)])
    assert waiting(view) == ["ship_goods"]  # the rest of line 1 is still to ship
    assert [s["remaining"] for s in view.data["shipping_status"]] == [6, 0]
    for field in ("shipping_list", "carrier", "shipped_on"):  # the next list starts empty
        assert field not in view.data
    kept = record(store, view.data["order_no"])
    assert [l["shipped"] for l in kept["lines"]] == [4, 20] and kept["status"] == "partly_shipped"
    with pytest.raises(InvalidInput, match="7 is more than the 6 left to ship"):
        ship(rt, view, clock, [(1, 7)])
    view = ship(rt, view, clock, [(1, 6)], carrier="顺丰快运")
    assert waiting(view) == ["confirm_arrival"]
    shipments = view.data["shipments"]
    order = view.data["order_no"].removeprefix("SO-")
    assert [(s["shipping_list_no"], s["carrier"], [(l["line"], l["quantity"]) for l in s["lines"]])
            for s in shipments] == [(f"FH-{order}-1", "德邦物流", [(1, 4), (2, 20)]),
                                    (f"FH-{order}-2", "顺丰快运", [(1, 6)])]
    kept = record(store, view.data["order_no"])
    assert [l["shipped"] for l in kept["lines"]] == [10, 20] and kept["status"] == "shipped"


# --- 4. collections by credit level (001 四) -------------------------------------------------------

def test_a_b_customer_unpaid_after_arrival_is_reminded_then_chased_by_the_superior(rt, store):
    clock = Clock()
    view = rt.start("order_to_settlement", "rep.wang", phone_order(), at=clock.now)
    assert (view.data["balance_at"], view.data["balance_days"], view.data["remind_days_before"]) == ("arrival", 3, 1)
    view = to_balance(rt, view, clock)
    arrived = clock.now
    assert view.data["balance"] == 70000 and view.data["balance_due_date"] == (arrived + timedelta(days=3)).date().isoformat()
    assert record(store, view.data["order_no"])["status"] == "awaiting_payment"
    assert timers.run_once(rt, arrived + timedelta(days=1)).fired == []
    assert timers.run_once(rt, arrived + timedelta(days=2, minutes=1)).fired == [view.id]
    assert rt.instance(view.id).data["reminder"]["to"] == "rep.wang"
    assert timers.run_once(rt, arrived + timedelta(days=3, minutes=1)).fired == [view.id]
    view = rt.instance(view.id)
    chase = the_task(view, "chase_overdue")
    assert chase.assignee == "om.wu"  # rep.wang's superior
    view = pay(rt, view, 30000, arrived + timedelta(days=4), voucher="BK-0201")  # still taken while chasing
    assert (view.data["paid"], view.data["balance"]) == (60000, 40000)
    assert the_task(view, "chase_overdue").assignee == "om.wu"


def test_a_customer_a_balance_is_due_on_dispatch_and_chased_after_the_grace(rt):
    clock = Clock()
    view = rt.start("order_to_settlement", "rep.wang", phone_order("C-A01"), at=clock.now)
    view = produce(rt, deposit(rt, approve(rt, view, clock), clock), clock)
    view = ship(rt, view, clock, [(1, 200)])
    shipped = clock.now
    assert view.tasks == [] and view.data["dunning_stage"] == "before_reminder"  # no arrival step for A
    assert timers.run_once(rt, shipped + timedelta(days=2, minutes=1)).fired == [view.id]
    assert timers.run_once(rt, shipped + timedelta(days=3, minutes=1)).fired == [view.id]
    assert the_task(rt.instance(view.id), "chase_overdue").assignee == "om.wu"


# --- 5. reconciliation by finance and the rep (001 二 3(5)) ----------------------------------------

def test_the_order_closes_only_after_finance_and_the_rep_both_reconcile(rt, store):
    clock = Clock()
    view = to_balance(rt, rt.start("order_to_settlement", "rep.wang", phone_order(), at=clock.now), clock)
    view = pay(rt, view, 70000, clock(hours=2), voucher="BK-0301")
    assert waiting(view) == ["reconcile", "reconcile_rep"]
    assert the_task(view, "reconcile").role == "finance" and the_task(view, "reconcile_rep").assignee == "rep.wang"
    assert record(store, view.data["order_no"])["status"] == "reconciling"
    view = do(rt, view, "reconcile", "fin.chu", {"confirmed_total": 100000, "reconciled_on": "2026-12-20"},
              at=clock())
    assert view.status == "running" and waiting(view) == ["reconcile_rep"]
    view = do(rt, view, "reconcile_rep", "rep.wang", {"rep_confirmed_total": 100000,
                                                       "rep_reconciled_on": "2026-12-20"}, at=clock())
    assert view.status == "completed"
    kept = record(store, view.data["order_no"])
    assert (kept["status"], kept["paid"], kept["balance"]) == ("settled", 100000, 0)
    with store.read() as s:
        assert audit.verify(s, view.id, rt.script_engine).ok


def test_a_mismatch_needs_a_note_and_the_order_stays_open_until_explained(rt, store):
    clock = Clock()
    view = to_balance(rt, rt.start("order_to_settlement", "rep.wang", phone_order(), at=clock.now), clock)
    view = pay(rt, view, 70000, clock(hours=2))
    before = snapshot(store, view.id)
    with pytest.raises(InvalidInput, match="confirmed total 50000 differs from the 100000 received") as no:
        do(rt, view, "reconcile", "fin.chu", {"confirmed_total": 50000, "reconciled_on": "2026-12-20"}, at=clock())
    assert "reconcile_note" in no.value.fields and snapshot(store, view.id) == before
    view = reconcile_both(rt, view, clock, finance=50000, finance_note="银行回单只见一笔 5 万")
    assert view.status == "running" and waiting(view) == ["explain_difference"]
    view = do(rt, view, "explain_difference", "fin.chu", {"resolution": "recheck", "explanation": "再查银行流水"},
              at=clock())
    assert waiting(view) == ["reconcile", "reconcile_rep"]
    assert "confirmed_total" not in view.data and "reconcile_note" not in view.data  # a new round starts empty
    view = reconcile_both(rt, view, clock, finance=100000, rep=99000, rep_note="客户称少付 1000 元手续费")
    view = do(rt, view, "explain_difference", "fin.chu", {
        "resolution": "explained", "explanation": "客户付款时银行扣手续费 1000 元，由公司承担"}, at=clock())
    assert view.status == "completed" and record(store, view.data["order_no"])["status"] == "settled"


# --- 6. deposits never pre-filled, never booked twice ---------------------------------------------

def test_a_second_deposit_round_starts_empty_and_the_same_voucher_is_not_booked_twice(rt, store):
    clock = Clock()
    view = approve(rt, rt.start("order_to_settlement", "rep.wang", phone_order(lines=[line(SLAB, 400)]),
                                at=clock.now), clock)
    assert view.data["deposit_required"] == 60000
    view = deposit(rt, view, clock, 20000, voucher="BK-1124-07")
    assert waiting(view) == ["confirm_deposit"]
    for field in ("deposit_received", "received_on", "voucher_no"):
        assert field not in view.data  # nothing for the next round's form to start with
    before = snapshot(store, view.id)
    with pytest.raises(Conflict, match="voucher BK-1124-07 is already booked"):
        deposit(rt, view, clock, 20000, voucher="BK-1124-07")
    with pytest.raises(InvalidInput, match="deposit_received"):
        do(rt, view, "confirm_deposit", "fin.chu", {"received_on": "2026-11-25"}, at=clock())
    assert snapshot(store, view.id) == before
    view = deposit(rt, view, clock, 40000, voucher="BK-1126-02")
    assert waiting(view) == ["schedule_production"]
    assert [(p["amount"], p["voucher"]) for p in view.data["payments"]] == [(20000, "BK-1124-07"),
                                                                          (40000, "BK-1126-02")]
    assert record(store, view.data["order_no"])["paid"] == 60000


def test_a_deposit_beyond_the_order_amount_is_refused(rt):
    clock = Clock()
    view = approve(rt, rt.start("order_to_settlement", "rep.wang", phone_order(), at=clock.now), clock)
    with pytest.raises(InvalidInput, match="has 100000 left to pay; a deposit of 100001 is more"):
        deposit(rt, view, clock, 100001)


# --- 7. the payment message -------------------------------------------------------------------------

def test_payments_keep_their_voucher_and_are_refused_in_words_where_they_do_not_fit(rt, store):
    clock = Clock()
    view = rt.start("order_to_settlement", "rep.wang", phone_order(), at=clock.now)
    order_no = view.data["order_no"]
    with pytest.raises(NotFound, match=f"{order_no} .* is not at a step that takes it now"):
        pay(rt, view, 5000, clock())  # awaiting approval, nothing is due
    with pytest.raises(NotFound, match="nothing is known as SO-20991231-ffffff"):
        rt.message("payment_received", {"order_no": "SO-20991231-ffffff", "amount": 5000},
                   {"order_no": "SO-20991231-ffffff"}, actor="fin.chu", at=clock())
    view = to_balance(rt, view, clock)
    view = pay(rt, view, 20000, clock(), voucher="BK-1201-01")
    assert view.data["payments"][-1]["voucher"] == "BK-1201-01"
    before = snapshot(store, view.id)
    with pytest.raises(Conflict, match="voucher BK-1201-01 is already booked"):
        pay(rt, view, 20000, clock(), voucher="BK-1201-01")
    with pytest.raises(InvalidInput, match="has 50000 left to pay; a payment of 60000 is more"):
        pay(rt, view, 60000, clock())
    assert snapshot(store, view.id) == before
    view = pay(rt, view, 50000, clock())
    view = reconcile_both(rt, view, clock)
    assert view.status == "completed"
    with pytest.raises(NotFound, match=f"{order_no} \\(order_to_settlement\\) is already completed"):
        pay(rt, view, 1, clock())
    kept = record(store, order_no)
    assert [p["voucher"] for p in kept["payments"]] == ["BK-1", "BK-1201-01", None]


# --- 8. the order record --------------------------------------------------------------------------

def test_the_order_record_follows_every_step(rt, store):
    clock = Clock()
    put_contract(store, "HT-20261120-a1b2c3")
    view = rt.start("order_to_settlement", "rep.wang", contract_order("HT-20261120-a1b2c3"), at=clock.now)
    order_no = view.data["order_no"]
    seen = [record(store, order_no)]
    view = deposit(rt, view, clock)
    seen.append(record(store, order_no))
    view = ship(rt, produce(rt, view, clock), clock, [(1, 50)])
    seen.append(record(store, order_no))
    view = ship(rt, view, clock, [(1, 150)])
    seen.append(record(store, order_no))
    assert [(r["status"], r["paid"], r["lines"][0]["shipped"]) for r in seen] == [
        ("awaiting_deposit", 0, 0), ("in_production", 30000, 0), ("partly_shipped", 30000, 50),
        ("shipped", 30000, 200)]
    assert seen[0]["lines"] == [{"product": SLAB[0], "spec": SLAB[1], "quantity": 200, "unit_price": 500,
                                 "shipped": 0}]
    assert [r["_revision"] for r in seen] == sorted({r["_revision"] for r in seen})
    assert (seen[0]["customer"], seen[0]["amount"], seen[0]["deposit"]) == ("C-B01", 100000, 30000)



# --- the pages: the same rules where people meet them ---------------------------------------------

@pytest.fixture
def app(rt, catalogs, tmp_path, monkeypatch):
    from web import create_app
    monkeypatch.setenv("BPM_NOW", T0.isoformat())
    return create_app(rt, {
        "TESTING": True, "SECRET_KEY": "test", "WTF_CSRF_ENABLED": False,
        "BABEL_TRANSLATION_DIRECTORIES": str(catalogs), "VENDOR_DIR": str(tmp_path / "vendor"),
    })


def test_the_pages_start_a_deposit_round_empty_show_the_lines_to_ship_and_refuse_too_much_in_words(app, rt, store):
    clock = Clock()
    view = approve(rt, rt.start("order_to_settlement", "rep.wang", phone_order(lines=[line(SLAB, 10, 6000)]),
                                at=clock.now), clock)
    view = deposit(rt, view, clock, 8000, voucher="BK-1124-07")
    finance = as_user(app, "fin.chu")
    html = finance.get(f"/tasks/{the_task(view, 'confirm_deposit').id}").get_data(as_text=True)
    for field in ("deposit_received", "voucher_no"):
        (tag,) = re.findall(rf'<input[^>]*name="{field}"[^>]*>', html)
        assert not re.search(r'value="[^"]', tag), tag  # the second round's form starts empty
    view = produce(rt, deposit(rt, view, clock, 10000, voucher="BK-1126-02"), clock)
    task_id = the_task(view, "ship_goods").id
    warehouse = as_user(app, "wh.wei")
    page = text(warehouse.get(f"/tasks/{task_id}"))
    assert "Order lines: ordered, shipped, remaining" in page and SLAB[0] in page
    before = snapshot(store, view.id)
    reply = warehouse.post(f"/tasks/{task_id}", data={
        "action": "complete", "shipping_list": "", "shipping_list-0": "", "shipping_list-0-line": "1",
        "shipping_list-0-quantity": "999", "carrier": "德邦物流", "shipped_on": "2026-11-25"})
    assert reply.status_code == 422
    html = text(reply)
    assert "line 1 (芝麻灰花岗岩板 600x600x20): 999 is more than the 10 left to ship" in html
    assert 'id="e-shipping_list-0-quantity"' in html and snapshot(store, view.id) == before
