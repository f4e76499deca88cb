"""Finance's receipts page (到账登记, web/receipts.py) and the message it sends.

A receipt recorded on the page is the message `payment_received` through `Runtime.message`, as
the API sends it: the orders are found in the "order" business records, the receipt booked by the
order's own process, every refusal said next to its field with nothing changed, and a form sent
twice (a double click) books once — `request_id` on `Runtime.message`, the API's
`Idempotency-Key` on POST /api/v1/messages/…

The orders are the "order" records order_to_settlement publishes at every step (`kept` reads
them: the tests drive real instances, nothing is written by hand).
"""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

import processes
from engine import records, versions
from engine.runtime import Conflict, InvalidInput, NotFound, Runtime
from engine.store import IdempotencyKey, LogEntry

from .conftest import snapshot
from .test_once import at_once
from .test_processes import BPMN, Clock, deposit_to_dispatch, do, order, reconcile
from .test_web import app, as_user, catalogs, text  # noqa: F401 (app, catalogs: fixtures)

ORDER = "order"


# --- fixtures and helpers ---------------------------------------------------------------------------

@pytest.fixture
def rt(store):
    versions.deploy(store, [BPMN], actor="design.yang", at=Clock().now)
    return Runtime(store, processes.SERVICES, lookups=processes.LOOKUPS)


def record_of(store, order_no: str) -> dict | None:
    with store.read() as s:
        found = [r for r in records.listed(s.connection(), ORDER, key=order_no) if r["key"] == order_no]
    return found[0] if found else None


def kept(store, view, status: str) -> dict:
    """The order's business record as its process published it, in `status`."""
    record = record_of(store, view.data["order_no"])
    assert record is not None and record["instance_id"] == view.id and record["data"]["status"] == status
    return record


def awaiting_payment(rt, store, clock: Clock, customer: str = "C-A01", amount: float = 120000):
    """An order of `customer` whose balance is due (credit A: on dispatch), and its record."""
    view = rt.start("order_to_settlement", "rep.wang", order(customer, amount), at=clock.now)
    view = deposit_to_dispatch(rt, view, clock)
    if customer != "C-A01":
        view = do(rt, view, "confirm_arrival", "ssg.shen", {"arrived_on": "2026-12-11"}, at=clock(days=2))
    assert view.tasks == [] and view.data["balance"] > 0
    kept(store, view, "awaiting_payment")
    return view


def messages(store, instance_id: str) -> int:
    with store.read() as s:
        return s.scalar(select(func.count()).select_from(LogEntry).where(
            LogEntry.instance_id == instance_id, LogEntry.command == "message"))


@pytest.fixture
def due(rt, store, monkeypatch):
    """An A order awaiting its balance of 84,000 (of 120,000), "now" an hour after its dispatch."""
    clock = Clock()
    view = awaiting_payment(rt, store, clock)
    monkeypatch.setenv("BPM_NOW", clock(hours=1).isoformat())
    return view


def receipt(view, amount="30000", voucher="BK-1210-01", received_on="2026-12-09", **more) -> dict:
    return {"order_no": view.data["order_no"], "amount": amount, "voucher": voucher,
            "received_on": received_on, "request_id": more.pop("request_id", f"rq-{amount}-{voucher}"), **more}


# --- the message, once --------------------------------------------------------------------------------

def test_a_message_sent_twice_with_one_request_id_is_delivered_once(rt, store, due):
    order_no = due.data["order_no"]
    payload = {"order_no": order_no, "amount": 84000, "voucher": "BK-1210-01"}
    at = None  # BPM_NOW
    assert rt.message("payment_received", payload, {"order_no": order_no}, actor="fin.chu", at=at,
                      request_id="bank-slip-7") == [due.id]
    after = snapshot(store, due.id)
    assert after["tasks"] and messages(store, due.id) == 1  # paid in full: finance reconciles now
    # Sent again (a lost reply, a double click): the first result, though nothing waits any more.
    assert rt.message("payment_received", payload, {"order_no": order_no}, actor="fin.chu", at=at,
                      request_id="bank-slip-7") == [due.id]
    assert snapshot(store, due.id) == after and messages(store, due.id) == 1
    # The same id with other content is refused; another sender's id is their own.
    with pytest.raises(Conflict, match="already used for a different request"):
        rt.message("payment_received", {**payload, "amount": 1}, {"order_no": order_no}, actor="fin.chu",
                   at=at, request_id="bank-slip-7")
    with pytest.raises((NotFound, Conflict)):  # nothing waits for a payment on it now
        rt.message("payment_received", payload, {"order_no": order_no}, actor="acct.xu", at=at,
                   request_id="bank-slip-7")
    assert snapshot(store, due.id) == after
    with store.read() as s:
        assert s.scalar(select(func.count()).select_from(IdempotencyKey)) == 1


@pytest.mark.parametrize("day,problem", [("2099-01-01", "after today"), ("9 Dec", "not a date")])
def test_a_bank_notice_with_a_bad_day_received_is_refused_and_books_nothing(rt, store, due, day, problem):
    order_no = due.data["order_no"]
    before = snapshot(store, due.id)
    with pytest.raises(InvalidInput, match=problem):
        rt.message("payment_received", {"order_no": order_no, "amount": 100, "voucher": "BK-X", "received_on": day},
                   {"order_no": order_no}, actor="bank.feed")
    assert snapshot(store, due.id) == before


def test_concurrent_identical_receipts_book_once(rt, store, due):
    """Six identical sendings of the full balance at once (a double click, a retried feed): one
    booking, and every sender gets its result, though the order stops waiting after the first."""
    order_no = due.data["order_no"]
    results, errors = at_once(6, lambda: rt.message(
        "payment_received", {"order_no": order_no, "amount": 84000, "voucher": "BK-1210-01"},
        {"order_no": order_no}, actor="fin.chu", request_id="slip-9"))
    assert errors == [] and results == [[due.id]] * 6
    assert messages(store, due.id) == 1 and rt.instance(due.id).data["paid"] == 120000


def test_the_api_takes_an_idempotency_key_for_a_message(app, store, due):
    client = as_user(app, "acct.xu")
    order_no = due.data["order_no"]
    body = {"data": {"order_no": order_no, "amount": 4000, "voucher": "BK-1210-02"},
            "correlation": {"order_no": order_no}}
    headers = {"Origin": "http://localhost", "Idempotency-Key": "feed-42"}
    for _ in range(2):
        answer = client.post(f"/api/v1/messages/payment_received", json=body, headers=headers)
        assert answer.status_code == 200 and answer.get_json() == {"delivered_to": [due.id]}
    assert messages(store, due.id) == 1


def test_the_api_lists_orders_for_finance_only(app, rt, store, due):
    order_no = due.data["order_no"]
    client = as_user(app, "acct.xu")
    listed = client.get("/api/v1/orders", query_string={"customer": "C-A01", "amount": "84000"})
    assert listed.status_code == 200
    assert [(o["order_no"], o["balance"], o["status"]) for o in listed.get_json()] == [
        (order_no, 84000, "awaiting_payment")]
    assert client.get("/api/v1/orders", query_string={"order_no": "SO-1999"}).get_json() == []
    bad = client.get("/api/v1/orders", query_string={"amount": "lots"})
    assert bad.status_code == 400 and bad.get_json()["fields"] == {"amount": "not a number"}
    refused = as_user(app, "rep.wang").get("/api/v1/orders")
    assert refused.status_code == 403 and "only finance may" in refused.get_json()["error"]


# --- the page ---------------------------------------------------------------------------------------

def test_the_receipts_page_is_finances(app, due):
    anonymous = app.test_client()
    for answer in (anonymous.get("/receipts"), anonymous.post("/receipts", data=receipt(due))):
        assert answer.status_code == 302 and "/login" in answer.headers["Location"]
    page = as_user(app, "fin.chu").get("/receipts")
    assert page.status_code == 200 and 'href="/receipts"' in text(page)
    for user in ("rep.wang", "gm.zhao", "audit.han", "bank.feed"):
        client = as_user(app, user)
        assert 'href="/receipts"' not in text(client.get("/"))
        refused = client.get("/receipts")
        assert refused.status_code == 403 and "The receipts page is for finance." in text(refused)
        assert client.post("/receipts", data=receipt(due)).status_code == 403
    assert "到账登记" in text(as_user(app, "acct.xu", "zh_CN").get("/receipts"))


def test_orders_are_found_by_number_customer_and_amount_awaiting_payment_first(app, rt, store, due):
    clock = Clock(due.updated + timedelta(minutes=1))
    other = rt.start("order_to_settlement", "rep.wang", order("C-B01", 50000), at=clock.now)
    kept(store, other, "open")  # newer, but waiting for the manager's approval
    client = as_user(app, "fin.chu")
    mine, theirs = due.data["order_no"], other.data["order_no"]

    def listed(**query) -> list[str]:
        page = client.get("/receipts", query_string=query)
        assert page.status_code == 200
        return re.findall(r"<tr[^>]*>\s*<td>(SO-[^<]+)</td>", text(page))

    assert listed() == [mine, theirs]
    assert listed(order_no=mine) == [mine] and listed(order_no="SO-") == [mine, theirs]
    assert listed(customer="C-B01") == [theirs] and listed(customer="C-ZZ9") == []
    assert listed(amount="84000") == [mine]  # the balance due
    assert listed(amount="50,000.00") == [theirs]  # the order's amount
    assert listed(amount="7") == []
    page = client.get("/receipts", query_string={"amount": "lots"})
    assert page.status_code == 200 and "Type an amount such as 84000" in text(page)


def test_finance_records_a_partial_then_the_full_receipt_and_the_order_goes_to_reconciliation(
        app, rt, store, due):
    client = as_user(app, "fin.chu")
    order_no = due.data["order_no"]
    page = client.get("/receipts", query_string={"order": order_no})
    assert "84,000.00" in text(page) and "Nothing received yet" not in text(page)  # the deposit is listed
    done = client.post("/receipts", data=receipt(due, "¥30 000", "BK-1210-01", received_on="2026-12-08"))
    assert done.status_code == 302 and done.headers["Location"].endswith(f"/receipts?order={order_no}")
    view = rt.instance(due.id)
    assert (view.data["paid"], view.data["balance"], view.tasks) == (66000, 54000, [])
    shown = text(client.get(done.headers["Location"]))
    assert f"Received CN¥30,000.00 against order {order_no} (voucher BK-1210-01)." in shown
    assert "54,000.00" in shown and "30,000.00" in shown and "BK-1210-01" in shown
    client.post("/receipts", data=receipt(due, "54000", "BK-1211-03"))
    view = rt.instance(due.id)
    assert (view.data["paid"], view.data["balance"]) == (120000, 0)
    assert [(p["amount"], p["voucher"]) for p in view.data["payments"]] == [
        (36000, "BK-1124-07"), (30000, "BK-1210-01"), (54000, "BK-1211-03")]
    assert [p["received_on"] for p in view.data["payments"][1:]] == ["2026-12-08", "2026-12-09"]  # the bank's day
    assert kept(store, view, "reconciling")["data"]["payments"] == view.data["payments"]
    with store.read() as s:  # the same message as the API's, with the voucher and the date
        payloads = [e.input["payload"] for e in s.scalars(select(LogEntry).where(
            LogEntry.instance_id == due.id, LogEntry.command == "message").order_by(LogEntry.seq))]
    assert payloads == [
        {"order_no": order_no, "amount": 30000, "voucher": "BK-1210-01", "received_on": "2026-12-08"},
        {"order_no": order_no, "amount": 54000, "voucher": "BK-1211-03", "received_on": "2026-12-09"}]
    reconcile(rt, view, Clock(view.updated + timedelta(hours=1)))
    # Settled: one more receipt is refused next to the order number.
    again = client.post("/receipts", data=receipt(due, "1", "BK-1212-09"))
    assert again.status_code == 409
    error = re.search(r'id="receipt-order_no-error">([^<]*)<', text(again))
    assert error and error.group(1) == f"Order {order_no} is settled; nothing more can be received against it."
    assert kept(store, view, "settled")


def test_a_double_click_books_one_receipt(app, rt, store, due):
    client = as_user(app, "fin.chu")
    sent = receipt(due, "84000", "BK-1210-01", request_id="page-3f1c")
    assert client.post("/receipts", data=sent).status_code == 302
    second = client.post("/receipts", data=sent)
    assert second.status_code == 302
    assert "This receipt was already recorded; it was booked once." in text(client.get(second.headers["Location"]))
    assert messages(store, due.id) == 1 and rt.instance(due.id).data["paid"] == 120000


def test_a_voucher_already_booked_on_the_order_is_refused_next_to_it(app, rt, store, due):
    client = as_user(app, "fin.chu")
    assert client.post("/receipts", data=receipt(due, "30000", "BK-1210-01")).status_code == 302
    before = snapshot(store, due.id)
    again = client.post("/receipts", data=receipt(due, "20000", "BK-1210-01"))  # another receipt, same slip
    assert again.status_code == 409
    error = re.search(r'id="receipt-voucher-error">([^<]*)<', text(again))
    assert error and "BK-1210-01" in error.group(1) and due.data["order_no"] in error.group(1)
    assert snapshot(store, due.id) == before and rt.instance(due.id).data["paid"] == 66000


@pytest.mark.parametrize("changes, field, sentence, status", [
    ({"order_no": "SO-20991231-ffffff"}, "order_no", "There is no order SO-20991231-ffffff.", 404),
    ({"order_no": ""}, "order_no", "Give the order number", 422),
    ({"voucher": ""}, "voucher", "Give the voucher number (凭证号) of the bank receipt.", 422),
    ({"voucher": "V" * 65}, "voucher", "at most 64 printable characters", 422),
    ({"amount": ""}, "amount", "Give the amount received.", 422),
    ({"amount": "0"}, "amount", "The amount received must be more than 0.", 422),
    ({"amount": "-500"}, "amount", "The amount received must be more than 0.", 422),
    ({"amount": "abc"}, "amount", "Type the amount as a number", 422),
    ({"amount": "10.005"}, "amount", "at most two decimals", 422),
    ({"amount": "84000.01"}, "amount", "84000.01 is more than the balance of CN¥84,000.00 still due on order", 422),
    ({"received_on": "2026-13-01"}, "received_on", "Give the date received as YYYY-MM-DD.", 422),
    ({"received_on": "2027-01-01"}, "received_on", "cannot be later than today", 422),
])
def test_a_bad_receipt_is_refused_next_to_its_field_and_changes_nothing(app, store, due, changes, field,
                                                                        sentence, status):
    before = snapshot(store, due.id)
    refused = as_user(app, "fin.chu").post("/receipts", data=receipt(due, **changes))
    assert refused.status_code == status
    page = text(refused)
    error = re.search(rf'id="receipt-{field}-error">([^<]*)<', page)
    assert error and sentence in error.group(1)
    assert "Nothing was recorded: please correct the marked fields." in page
    assert snapshot(store, due.id) == before
    with store.read() as s:
        assert s.scalar(select(func.count()).select_from(IdempotencyKey)) == 0


def test_an_order_not_awaiting_payment_is_refused_by_the_engine_with_a_sentence(app, rt, store, monkeypatch):
    clock = Clock()
    view = rt.start("order_to_settlement", "rep.wang", order("C-B01"), at=clock.now)
    view = deposit_to_dispatch(rt, view, clock)  # shipped; B pays on arrival, not yet confirmed
    monkeypatch.setenv("BPM_NOW", clock().isoformat())
    kept(store, view, "shipped")  # B: the balance falls due on arrival
    before = snapshot(store, view.id)
    client = as_user(app, "fin.chu")
    refused = client.post("/receipts", data=receipt(view, "1000"))
    api = client.post("/api/v1/messages/payment_received", headers={"Origin": "http://localhost"}, json={
        "data": {"order_no": view.data["order_no"], "amount": 1000}, "correlation": {"order_no": view.data["order_no"]}})
    assert refused.status_code == api.status_code == 404  # NotFound: nothing waits for a payment on it yet; the engine's answer, as the API's
    error = re.search(r'id="receipt-order_no-error">([^<]*)<', text(refused))
    assert error and error.group(1) == (f"Order {view.data['order_no']} is not awaiting payment (it is shipped); "
                                        "nothing was recorded.")
    assert snapshot(store, view.id) == before


def test_the_page_speaks_chinese(app, due):
    client = as_user(app, "fin.chu", "zh_CN")
    page = text(client.get("/receipts", query_string={"order": due.data["order_no"]}))
    assert "登记到账" in page and "凭证号" in page and "待收款" in page
    refused = text(client.post("/receipts", data=receipt(due, voucher="")))
    assert "请填写银行到账的凭证号。" in refused
