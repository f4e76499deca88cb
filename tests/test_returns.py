"""Returns against real orders (退换货申请, issue 9 item 5) through the engine's public API.

A return names an order the order chain keeps as an "order" business record (put here by
`orders_on_file.put_order`): the order must exist and be the customer's, the lines within what was
shipped less what other returns claim, the credit note within the value of the returned lines;
every quality claim is registered as a customer complaint on receipt (004 客户投诉处理作业流程:
接到—登记—转相关部门), whatever becomes of it; the request keeps its "return" record up to date.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

import processes
from engine import audit, versions
from engine.runtime import InvalidInput, Runtime
from engine.store import BusinessRecord


from .conftest import instances, snapshot
from .orders_on_file import ORDER_NO, put_order
from .test_web import as_user, catalogs, make_app  # noqa: F401 (catalogs: a fixture)

BPMN = Path(__file__).resolve().parents[1] / "bpmn"
T0 = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)
APPROVE = {"decision": "approve"}
JAZZ = ("爵士白大理石板", "800x800x18")  # 60 of 100 shipped, at 800
GREY = ("芝麻灰花岗岩板", "600x600x20")  # ordered, none shipped yet


def claim(quantity: float = 12, *, goods=JAZZ, **changes) -> dict:
    data = {"customer": "C-A01", "order_no": ORDER_NO, "reason": "quality", "kind": "return",
            "lines": [{"product": goods[0], "spec": goods[1], "quantity": quantity}],
            "description": "表面有裂纹，客户拒收", "attachments": ["crack-1.jpg"]}
    data.update(changes)
    return data


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self, **delta) -> datetime:
        self.now += timedelta(**delta) if delta else timedelta(minutes=10)
        return self.now


@pytest.fixture
def rt(store):
    versions.deploy(store, [BPMN], actor="design.yang", at=T0)
    put_order(store)
    return Runtime(store, processes.SERVICES, lookups=processes.LOOKUPS)


def the_task(view, element_id: str):
    found = [t for t in view.tasks if t.element_id == element_id]
    assert len(found) == 1, f"expected one {element_id} task; waiting: {sorted(t.element_id for t in view.tasks)}"
    return found[0]


def do(rt, view, element_id: str, user: str, data: dict, at: datetime):
    return rt.complete(the_task(view, element_id).id, user, data, at=at)


def inspected(rt, view, clock, result="confirmed", note=None):
    data = {"received_on": "2026-11-27", "inspection_result": result, **({"inspection_note": note} if note else {})}
    return do(rt, view, "inspect", "wh.wei", data, clock(days=3))


def return_records(store) -> dict[str, dict]:
    with store.read() as s:
        return {r.key: {"ref": r.ref, "customer": r.customer, "revision": r.revision, **r.data}
                for r in s.scalars(select(BusinessRecord).where(BusinessRecord.kind == "return"))}


def refused_start(rt, store, data: dict, at: datetime = T0) -> dict[str, str]:
    """Start `data`; it must be refused with nothing created: no instance, record nor complaint."""
    before = (instances(store), return_records(store), len(complaints(store)))
    with pytest.raises(InvalidInput) as refused:
        rt.start("return_request", "rep.wang", data, at=at)
    assert (instances(store), return_records(store), len(complaints(store))) == before
    return refused.value.fields


# --- the order must exist and be the customer's ---------------------------------------------------

def test_a_return_for_an_order_that_does_not_exist_is_refused_and_nothing_is_created(rt, store):
    fields = refused_start(rt, store, claim(order_no="SO-20991231-ffffff"))
    assert fields == {"order_no": "there is no order SO-20991231-ffffff"}


def test_a_return_for_another_customers_order_is_refused(rt, store):
    put_order(store, "SO-20261105-b0b0b0", customer="C-B01")
    fields = refused_start(rt, store, claim(order_no="SO-20261105-b0b0b0"))
    assert fields == {"order_no": "order SO-20261105-b0b0b0 is not an order of customer C-A01"}
    # the same order for its own customer is accepted
    view = rt.start("return_request", "rep.wang", claim(order_no="SO-20261105-b0b0b0", customer="C-B01"), at=T0)
    assert view.status == "running" and the_task(view, "om_sign")


# --- quantities within what was shipped less what was returned before --------------------------

def test_more_than_was_shipped_or_goods_not_on_the_order_are_refused(rt, store):
    fields = refused_start(rt, store, claim(61))
    assert fields == {"lines/0/quantity": f"at most 60 can be returned: order {ORDER_NO} shipped 60 of "
                                          "爵士白大理石板 800x800x18 and other returns claim 0"}
    # ordered, but nothing of it shipped yet
    assert refused_start(rt, store, claim(1, goods=GREY)) == {
        "lines/0/quantity": f"at most 0 can be returned: order {ORDER_NO} shipped 0 of 芝麻灰花岗岩板 600x600x20 "
                            "and other returns claim 0"}
    # a specification the order does not have
    assert refused_start(rt, store, claim(1, goods=("爵士白大理石板", "600x600x18"))) == {
        "lines/0/product": f"order {ORDER_NO} has no line 爵士白大理石板 600x600x18"}
    # two rows of the same goods add up
    rows = [{"product": JAZZ[0], "spec": JAZZ[1], "quantity": 40}, {"product": JAZZ[0], "spec": JAZZ[1], "quantity": 21}]
    assert list(refused_start(rt, store, claim(lines=rows))) == ["lines/1/quantity"]
    # all that was shipped may come back
    assert rt.start("return_request", "rep.wang", claim(60), at=T0).status == "running"


def test_a_second_return_may_claim_only_the_remainder_and_a_rejected_one_frees_its_goods(rt, store):
    clock = Clock()
    first = rt.start("return_request", "rep.wang", claim(50), at=clock.now)  # in flight: it counts
    fields = refused_start(rt, store, claim(11, reason="wrong_shipment", kind="exchange"), at=clock())
    assert fields == {"lines/0/quantity": f"at most 10 can be returned: order {ORDER_NO} shipped 60 of "
                                          "爵士白大理石板 800x800x18 and other returns claim 50"}
    second = rt.start("return_request", "rep.wang", claim(10, reason="wrong_shipment", kind="exchange"), at=clock())
    assert refused_start(rt, store, claim(1), at=clock()) == {
        "lines/0/quantity": f"at most 0 can be returned: order {ORDER_NO} shipped 60 of 爵士白大理石板 800x800x18 "
                            "and other returns claim 60"}
    # the office manager rejects the first: its 50 may be claimed again
    do(rt, first, "om_sign", "om.wu", {"decision": "reject", "comment": "已超过退货期限"}, clock())
    assert return_records(store)[first.data["request_no"]]["status"] == "rejected"
    third = rt.start("return_request", "rep.wang", claim(50), at=clock())
    assert {k: r["status"] for k, r in return_records(store).items()} == {
        first.data["request_no"]: "rejected", second.data["request_no"]: "requested",
        third.data["request_no"]: "requested"}


# --- credit notes within the value of the returned lines -----------------------------------------

def test_a_credit_note_above_the_value_of_the_returned_goods_is_refused(rt, store):
    clock = Clock()
    view = rt.start("return_request", "rep.wang", claim(12), at=clock.now)
    view = do(rt, view, "om_sign", "om.wu", APPROVE, clock())
    view = inspected(rt, view, clock)
    task = the_task(view, "credit_note")
    assert view.data["returned_value"] == 9600
    assert view.data["return_lines"] == [{"product": JAZZ[0], "spec": JAZZ[1], "quantity": 12, "unit_price": 800}]
    before = snapshot(store, view.id)
    for too_much in (9_999_999, 9600.01):
        with pytest.raises(InvalidInput) as refused:
            rt.complete(task.id, "fin.chu", {"credit_note_no": "HZ-2026-0099", "credit_amount": too_much,
                                             "issued_on": "2026-11-28"}, at=clock())
        assert refused.value.fields == {"credit_amount": "must be at most 9600, the value of the returned goods"}
        assert snapshot(store, view.id) == before
    view = rt.complete(task.id, "fin.chu", {"credit_note_no": "HZ-2026-0099", "credit_amount": 9600,
                                            "issued_on": "2026-11-28"}, at=clock())
    assert view.status == "completed"
    record = return_records(store)[view.data["request_no"]]
    assert (record["status"], record["credited_amount"], record["value"]) == ("credited", 9600, 9600)


# --- every quality claim enters the complaint record --------------------------------------------

def complaints(store) -> list[dict]:
    with store.read() as s:
        return [r.data for r in s.scalars(select(BusinessRecord).where(BusinessRecord.kind == "complaint"))]


def complaints_of(store, request_no: str) -> list[dict]:
    return [c for c in complaints(store) if c.get("request_no") == request_no]


def test_a_quality_claim_the_office_manager_rejects_is_still_a_complaint(rt, store):
    clock = Clock()
    view = rt.start("return_request", "rep.wang", claim(12), at=clock.now)
    request_no = view.data["request_no"]
    (complaint,) = complaints_of(store, request_no)  # registered on receipt (登记)
    assert complaint["id"] == view.data["complaint_id"] and complaint["order_no"] == ORDER_NO
    assert complaint["description"] == "表面有裂纹，客户拒收" and complaint["customer"] == "C-A01"
    view = do(rt, view, "om_sign", "om.wu", {"decision": "reject", "comment": "照片显示为安装损坏"}, clock())
    assert view.status == "completed" and len(complaints_of(store, request_no)) == 1
    assert return_records(store)[request_no]["status"] == "rejected"


def test_a_quality_claim_the_inspection_disproves_is_still_a_complaint_and_ends_rejected(rt, store):
    clock = Clock()
    view = rt.start("return_request", "rep.wang", claim(12), at=clock.now)
    view = do(rt, view, "om_sign", "om.wu", APPROVE, clock())
    view = inspected(rt, view, clock, "disagrees", note="实收 12 片，均无裂纹")
    assert [t.element_id for t in view.tasks] == ["om_sign"]
    view = do(rt, view, "om_sign", "om.wu", {"decision": "reject", "comment": "检验无质量问题"}, clock())
    assert view.status == "completed"
    assert len(complaints_of(store, view.data["request_no"])) == 1
    assert return_records(store)[view.data["request_no"]]["status"] == "rejected"


def test_claims_for_other_reasons_are_not_complaints(rt, store):
    clock = Clock()
    view = rt.start("return_request", "rep.wang", claim(12, reason="slow_moving"), at=clock.now)
    view = do(rt, view, "om_sign", "om.wu", APPROVE, clock())
    view = do(rt, view, "plan_approval", "plan.chen", {"decision": "reject", "comment": "不属于滞销品"}, clock())
    assert view.status == "completed" and "complaint_id" not in view.data
    assert complaints_of(store, view.data["request_no"]) == []
    assert return_records(store)[view.data["request_no"]]["status"] == "rejected"


# --- the happy paths, and the record they keep ----------------------------------------------------

def test_a_return_is_numbered_recorded_accepted_and_credited(rt, store):
    clock = Clock()
    view = rt.start("return_request", "rep.wang", claim(12), at=clock.now)
    request_no = view.data["request_no"]
    assert re.fullmatch(r"TH-20261123-[0-9a-f]{10}", request_no)
    assert the_task(view, "om_sign").business_key == request_no
    assert return_records(store) == {request_no: {
        "ref": ORDER_NO, "customer": "C-A01", "revision": 1, "request_no": request_no, "order_no": ORDER_NO,
        "kind": "return", "reason": "quality", "status": "requested", "credited_amount": 0, "value": 9600,
        "lines": [{"product": JAZZ[0], "spec": JAZZ[1], "quantity": 12, "unit_price": 800}]}}
    view = do(rt, view, "om_sign", "om.wu", APPROVE, clock())
    assert return_records(store)[request_no]["status"] == "requested"
    view = inspected(rt, view, clock)
    assert return_records(store)[request_no]["status"] == "accepted"
    view = do(rt, view, "credit_note", "fin.chu", {"credit_note_no": "HZ-2026-0088", "credit_amount": 8000,
                                                    "issued_on": "2026-11-28"}, clock())
    assert view.status == "completed"
    record = return_records(store)[request_no]
    assert (record["status"], record["credited_amount"], record["revision"]) == ("credited", 8000, 3)
    with store.read() as s:  # a replay reads the orders and returns as they were read then
        assert audit.verify(s, view.id, rt.script_engine).ok


def test_an_exchange_is_accepted_and_replaced(rt, store):
    clock = Clock()
    view = rt.start("return_request", "rep.wang", claim(5, reason="wrong_shipment", kind="exchange"), at=clock.now)
    view = do(rt, view, "om_sign", "om.wu", APPROVE, clock())
    view = inspected(rt, view, clock)
    assert return_records(store)[view.data["request_no"]]["status"] == "accepted"
    view = do(rt, view, "ship_replacement", "wh.wei", {
        "shipping_list": [{"product": JAZZ[0], "spec": JAZZ[1], "quantity": 5}],
        "carrier": "顺丰快运", "shipped_on": "2026-11-28"}, clock())
    assert view.status == "completed"
    record = return_records(store)[view.data["request_no"]]
    assert (record["kind"], record["status"], record["credited_amount"]) == ("exchange", "replaced", 0)


def test_two_requests_against_one_order_take_turns_and_the_second_sees_the_first(rt, store):
    """While another command holds the order (a claim for all 60 being written, not yet committed),
    a new request waits for it, then sees that claim and is refused; it would pass if it did not
    wait. PostgreSQL only: SQLite runs one writer at a time anyway."""
    if store.is_sqlite:
        pytest.skip("SQLite serialises writers")
    import threading

    from sqlalchemy import insert

    outcome: list = []

    def second_request() -> None:
        try:
            outcome.append(rt.start("return_request", "rep.feng", claim(12, customer="C-A01"), at=T0))
        except InvalidInput as refused:
            outcome.append(refused.fields)

    with store.engine.connect() as other:
        with other.begin():
            other.execute(select(BusinessRecord).where(BusinessRecord.kind == "order",
                                                       BusinessRecord.key == ORDER_NO).with_for_update())
            other.execute(insert(BusinessRecord).values(
                kind="return", key="TH-20261123-000001", ref=ORDER_NO, customer="C-A01",
                instance_id="00000000-0000-4000-8000-0000000000bb", process_id="return_request", revision=1,
                updated_at=T0, data={"request_no": "TH-20261123-000001", "order_no": ORDER_NO, "status": "requested",
                                     "lines": [{"product": JAZZ[0], "spec": JAZZ[1], "quantity": 60}]}))
            waiting = threading.Thread(target=second_request)
            waiting.start()
            waiting.join(timeout=1.0)
            assert waiting.is_alive() and outcome == []  # it waits for the order
        waiting.join(timeout=30)
    assert outcome == [{"lines/0/quantity": f"at most 0 can be returned: order {ORDER_NO} shipped 60 of "
                                            "爵士白大理石板 800x800x18 and other returns claim 60"}]


# --- through the pages: the sentence next to the field, in the page's language -------------------

@pytest.fixture
def pages(rt, catalogs, tmp_path, monkeypatch):
    monkeypatch.setenv("BPM_NOW", T0.isoformat())
    app = make_app(rt, catalogs, tmp_path)
    return lambda username: as_user(app, username, "zh_CN")


def field_errors(response) -> dict[str, str]:
    from html import unescape
    return {name: unescape(message) for name, message in re.findall(
        r'<p class="field-error" id="e-([^"]+)">([^<]+)</p>', response.get_data(as_text=True))}


def test_the_start_page_says_next_to_the_field_what_the_order_does_not_allow(pages, store):
    rep = pages("rep.wang")
    form = {"customer": "C-A01", "order_no": "SO-20991231-ffffff", "reason": "quality", "kind": "return",
            "lines-0-product": JAZZ[0], "lines-0-spec": JAZZ[1], "lines-0-quantity": "12", "action": "start"}
    response = rep.post("/start/return_request", data=form)
    assert response.status_code == 422
    assert field_errors(response) == {"order_no": "没有订单 SO-20991231-ffffff。"}
    response = rep.post("/start/return_request", data={**form, "order_no": ORDER_NO, "lines-0-quantity": "61"})
    assert response.status_code == 422
    assert field_errors(response) == {"lines-0-quantity": f"最多可退 60：订单 {ORDER_NO} 的 爵士白大理石板 800x800x18 "
                                                          "已发货 60，其他退换货已申请 0。"}
    assert instances(store) == 0


def test_the_credit_note_page_shows_the_value_and_refuses_more(pages, rt, store):
    clock = Clock()
    view = rt.start("return_request", "rep.wang", claim(12), at=clock.now)
    view = do(rt, view, "om_sign", "om.wu", APPROVE, clock())
    view = inspected(rt, view, clock)
    task = the_task(view, "credit_note")
    finance = pages("fin.chu")
    page = finance.get(f"/tasks/{task.id}").get_data(as_text=True)
    shown = re.search(r'id="field-returned_value">.*?<div class="value">([^<]+)</div>', page, re.S)
    assert "退货金额（元）" in page and shown and shown.group(1) == "¥9,600.00"
    assert "<td>¥800.00</td>" in page  # the order's unit price beside each returned line
    before = snapshot(store, view.id)
    response = finance.post(f"/tasks/{task.id}", data={"action": "complete", "credit_note_no": "HZ-2026-0100",
                                                       "credit_amount": "9999999", "issued_on": "2026-11-28"})
    assert response.status_code == 422
    assert field_errors(response) == {"credit_amount": "不能大于 9600，即退货货值。"}
    assert snapshot(store, view.id) == before


def test_the_api_refuses_an_unknown_order_with_the_field_named_and_nothing_created(rt, store):
    from web import create_app
    client = create_app(rt, {"TESTING": True, "SECRET_KEY": "test", "WTF_CSRF_ENABLED": False}).test_client()
    reply = client.post("/api/v1/tokens", json={"username": "rep.wang", "password": "demo"})
    rep = {"Authorization": f"Bearer {reply.json['token']}"}
    refused = client.post("/api/v1/processes/return_request/instances", headers=rep,
                          json={"data": claim(order_no="SO-20991231-ffffff")})
    assert refused.status_code == 422 and refused.is_json
    assert refused.json["fields"] == {"order_no": "there is no order SO-20991231-ffffff"}
    assert instances(store) == 0
    started = client.post("/api/v1/processes/return_request/instances", headers=rep, json={"data": claim(12)})
    assert started.status_code == 201 and started.json["business_key"].startswith("TH-")
