"""The rules of the order chain (订货—发运—结算, OSB) that need code: the gate on an approved
contract (合同, seed 001 二 2(5)) or a manager's approval of a phone/fax order (2(6)), amounts
computed from the order lines (订货明细), shipments (发货清单) drawn from the lines and never
beyond them, deposits (定金) and receipts (到账) booked once each, the reconciliation (核对到账金额,
001 二 3(5)) check, and the "order" business record (业务台账) other processes read.

Every service here refuses bad input with one sentence (`InvalidInput`, naming the form field when
there is one) and the engine then changes nothing; `order` parameters are the instance's order
facts, built in the BPMN from its data (see `ORDER` in docs/processes.md §4).
"""
from __future__ import annotations

from datetime import date
from typing import Any

from engine import clock, records
from engine.runtime import Conflict, InvalidInput

from .amounts import CENT, money as _money, number as _number

CONTRACT_USABLE = ("approved", "filed")


def _line_name(line: dict) -> str:
    return f"{line.get('product', '')} {line.get('spec') or ''}".strip()


def shipping_view(lines: list[dict]) -> tuple[list[dict], list[dict]]:
    """(what the shipping form shows per line: ordered / shipped so far / remaining, and the rows it
    starts with: each open line with its remaining quantity)."""
    status = [{"line": i + 1, "product": line["product"], "spec": line.get("spec") or "",
               "ordered": line["quantity"], "shipped": line.get("shipped", 0),
               "remaining": _money(line["quantity"] - line.get("shipped", 0))}
              for i, line in enumerate(lines)]
    return status, [{"line": s["line"], "quantity": s["remaining"]} for s in status if s["remaining"] > 0]


def _record(order: dict, status: str) -> dict:
    return {"order_no": order["order_no"], "customer": order["customer"],
            "contract_no": order.get("contract_no"), "credit_level": order.get("credit_level"),
            "amount": order["amount"],
            "lines": [{"product": l["product"], "spec": l.get("spec") or "", "quantity": l["quantity"],
                       "unit_price": l["unit_price"], "shipped": l.get("shipped", 0)} for l in order["lines"]],
            "deposit": order.get("deposit_required"), "paid": order.get("paid", 0),
            "balance": order.get("balance"), "balance_due_date": order.get("balance_due_date"), "status": status,
            "payments": order.get("payments") or [], "shipments": order.get("shipments") or []}


def _publish(order: dict, status: str) -> None:
    records.publish_record("order", order["order_no"], _record(order, status), ref=order.get("contract_no"))


def publish_order(order: dict, status: str) -> str:
    """Service: publish (or republish) the order's business record with `status`."""
    _publish(order, status)
    return status


# --- the gate and the amounts ------------------------------------------------------------------

def _contract(contract_no: str, customer: str) -> dict:
    """The approved contract `contract_no` of `customer` (its record's data), or a refusal."""
    found = records.find("contract", contract_no, lock=True)  # orders on one contract take turns
    if found is None:
        raise InvalidInput("there is no contract %(contract)s: give the number of an approved contract, or "
                           "leave it empty for a phone or fax order that a manager approves",
                           {"contract_no": "no such contract"}, contract=contract_no)
    data = found["data"]
    status = data.get("status")
    if status not in CONTRACT_USABLE:
        raise InvalidInput("contract %(contract)s is %(status)s, not approved: an order may refer only to a "
                           "contract that 总经办 approved", {"contract_no": "not approved"},
                           contract=contract_no, status=status or "without a status")
    if data.get("customer") != customer:
        raise InvalidInput("contract %(contract)s is with customer %(theirs)s, not %(customer)s",
                           {"contract_no": "another customer's contract"}, contract=contract_no,
                           theirs=data.get("customer"), customer=customer)
    return data


def _within_contract(contract_no: str, contract: dict, order_no: str, lines: list[dict]) -> None:
    """Each line is a product of the contract at its unit price, and all orders on the contract
    together take no more of it than the contract says *(choice)*."""
    terms = {(c.get("product"), c.get("spec") or ""): c for c in contract.get("lines") or []}
    taken: dict[tuple, float] = {}
    for other in records.referring("order", contract_no):
        if other["key"] == order_no or other["data"].get("status") == "rejected":
            continue
        for line in other["data"].get("lines") or []:
            key = (line.get("product"), line.get("spec") or "")
            taken[key] = taken.get(key, 0) + float(line.get("quantity") or 0)
    asked: dict[tuple, float] = {}
    for i, line in enumerate(lines):
        key = (line["product"], line.get("spec") or "")
        term = terms.get(key)
        where = f"lines/{i}"
        if term is None:
            raise InvalidInput("line %(line)s (%(product)s) is not in contract %(contract)s",
                               {f"{where}/product": "not in the contract"}, line=i + 1,
                               product=_line_name(line), contract=contract_no)
        if abs(float(line["unit_price"]) - float(term.get("unit_price") or 0)) > CENT:
            raise InvalidInput("line %(line)s (%(product)s): the unit price %(price)s is not the contract's "
                               "%(agreed)s", {f"{where}/unit_price": "not the contract's price"}, line=i + 1,
                               product=_line_name(line), price=line["unit_price"], agreed=term.get("unit_price"))
        asked[key] = asked.get(key, 0) + float(line["quantity"])
        left = float(term.get("quantity") or 0) - taken.get(key, 0)
        if asked[key] > left + 1e-9:
            raise InvalidInput("line %(line)s (%(product)s): %(quantity)s is more than the %(left)s contract "
                               "%(contract)s has left", {f"{where}/quantity": "more than the contract has left"},
                               line=i + 1, product=_line_name(line), quantity=_money(asked[key]),
                               left=_money(left), contract=contract_no)


def price_order(order_no: str, customer: str, credit_level: str, lines: list, contract_no: Any,
                deposit_ratio: float) -> dict:
    """Service: the order's amount = Σ quantity × unit_price of its lines (never typed), its deposit
    by the credit level's ratio, and its gate: an approved contract of the same customer, or (none
    given) the approval of a phone/fax order. Publishes the order record."""
    contract_no = contract_no.strip() if isinstance(contract_no, str) and contract_no.strip() else None
    clean = [{"product": l["product"], "spec": l.get("spec") or "", "quantity": l["quantity"],
              "unit_price": l["unit_price"], "shipped": 0} for l in lines]
    amount = _money(sum(float(l["quantity"]) * float(l["unit_price"]) for l in clean))
    if amount <= 0:
        raise InvalidInput("the order's lines add up to %(amount)s; an order must be worth more than 0",
                           {"lines": "worth nothing"}, amount=amount)
    if contract_no is not None:
        _within_contract(contract_no, _contract(contract_no, customer), order_no, clean)
    status, shipping_list = shipping_view(clean)
    order = {"order_no": order_no, "customer": customer, "contract_no": contract_no,
             "credit_level": credit_level, "lines": clean, "amount": amount,
             "deposit_required": _money(amount * float(deposit_ratio)), "paid": 0, "balance": amount,
             "payments": [], "shipments": []}
    _publish(order, "awaiting_deposit" if contract_no else "open")
    return {"amount": amount, "deposit_required": order["deposit_required"], "lines": clean,
            "contract_no": contract_no, "gate": "contract" if contract_no else "approval",
            "shipping_status": status, "shipping_list": shipping_list}


# --- money in ------------------------------------------------------------------------------------

def _booked(order: dict, amount: Any, voucher: Any, field: str, what: str) -> list[dict]:
    """The payments so far, after checking a new receipt of `amount` with `voucher` fits."""
    received = _number(amount)
    if received is None or received <= 0:
        raise InvalidInput("a %(what)s needs a positive amount, not %(amount)r", {field: "not a positive amount"},
                           what=what, amount=amount)
    payments = list(order.get("payments") or [])
    if voucher and any(p.get("voucher") == voucher for p in payments):
        raise Conflict("voucher %(voucher)s is already booked on order %(order)s; nothing was booked again",
                       voucher=voucher, order=order["order_no"])
    left = float(order["amount"]) - float(order.get("paid") or 0)
    if received > left + CENT:
        raise InvalidInput("order %(order)s has %(left)s left to pay; a %(what)s of %(amount)s is more than that",
                           {field: "more than is left to pay"}, order=order["order_no"], left=_money(left),
                           what=what, amount=_money(received))
    return payments


def book_deposit(order: dict, received: Any, received_on: str, voucher_no: Any = None) -> dict:
    """Service: book a deposit confirmed by finance (once: a voucher already booked is refused)."""
    voucher = voucher_no.strip() if isinstance(voucher_no, str) and voucher_no.strip() else None
    payments = _booked(order, received, voucher, "deposit_received", "deposit")
    payments.append({"kind": "deposit", "amount": _money(received), "received_on": received_on,
                     "voucher": voucher})
    paid = _money(float(order.get("paid") or 0) + float(received))
    result = {"paid": paid, "balance": _money(float(order["amount"]) - paid), "payments": payments}
    _publish({**order, **result},
             "in_production" if paid + CENT >= float(order["deposit_required"]) else "awaiting_deposit")
    return result


def _received_on(payment: dict) -> str:
    """The day the bank received the money (`received_on`, as the receipts page sends it): an ISO
    date not after today; without one, today (a bank notice is booked the day it arrives). Today
    is the company's day (clock.local_date, China time), as finance dates a notice: at 01:00 on
    1 December China time it is 1 December, though UTC's is still 30 November."""
    today = clock.local_date()
    given = payment.get("received_on")
    if given in (None, ""):
        return today.isoformat()
    try:
        day = date.fromisoformat(given) if isinstance(given, str) and len(given) == 10 else None
    except ValueError:
        day = None
    if day is None:
        raise InvalidInput("the day received %(day)r is not a date such as 2026-12-03", {"received_on": "not a date"},
                           day=given)
    if day > today:
        raise InvalidInput("the day received %(day)s is after today", {"received_on": "after today"},
                           day=day.isoformat())
    return day.isoformat()


def book_payment(order: dict, payment: Any) -> dict:
    """Service: book a `payment_received` message (order_no, amount, optional voucher, reference)."""
    payment = payment if isinstance(payment, dict) else {}
    voucher = payment.get("voucher")
    voucher = voucher.strip() if isinstance(voucher, str) and voucher.strip() else None
    payments = _booked(order, payment.get("amount"), voucher, "amount", "payment")
    received = float(payment["amount"])
    payments.append({"kind": "balance", "amount": _money(received), "received_on": _received_on(payment),
                     "voucher": voucher, "reference": payment.get("reference")})
    paid = _money(float(order.get("paid") or 0) + received)
    balance = _money(float(order["amount"]) - paid)
    result = {"paid": paid, "balance": balance, "payments": payments}
    _publish({**order, **result}, "reconciling" if balance <= CENT else "awaiting_payment")
    return result


# --- goods out -------------------------------------------------------------------------------------

def record_shipment(order: dict, shipping_list: Any, carrier: str, shipped_on: str,
                    tracking_no: Any = None) -> dict:
    """Service: one shipment (its own 发货清单 number) of quantities per order line, none beyond what
    is left to ship of its line; returns the lines with `shipped` counted and the shipments so far."""
    lines = [dict(line) for line in order["lines"]]
    rows = shipping_list if isinstance(shipping_list, list) else []
    now: dict[int, float] = {}
    for i, row in enumerate(rows):
        number = row.get("line") if isinstance(row, dict) else None
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= len(lines):
            raise InvalidInput("shipping row %(row)s names line %(line)s; order %(order)s has lines 1 to %(count)s",
                               {f"shipping_list/{i}/line": "no such line"}, row=i + 1, line=number,
                               order=order["order_no"], count=len(lines))
        line = lines[number - 1]
        now[number] = now.get(number, 0) + float(row["quantity"])
        left = float(line["quantity"]) - float(line.get("shipped", 0))
        if now[number] > left + 1e-9:
            raise InvalidInput("line %(line)s (%(product)s): %(quantity)s is more than the %(left)s left to ship "
                               "(%(ordered)s ordered, %(shipped)s shipped before)",
                               {f"shipping_list/{i}/quantity": "more than is left to ship"}, line=number,
                               product=_line_name(line), quantity=_money(now[number]), left=_money(left),
                               ordered=line["quantity"], shipped=line.get("shipped", 0))
    if not now:
        raise InvalidInput("a shipment needs at least one line", {"shipping_list": "empty"})
    for number, quantity in now.items():
        lines[number - 1]["shipped"] = _money(float(lines[number - 1].get("shipped", 0)) + quantity)
    shipments = list(order.get("shipments") or [])
    list_no = f"FH-{order['order_no'].removeprefix('SO-')}-{len(shipments) + 1}"
    shipments.append({"shipping_list_no": list_no, "carrier": carrier, "tracking_no": tracking_no or None,
                      "shipped_on": shipped_on,
                      "lines": [{"line": n, "product": lines[n - 1]["product"], "spec": lines[n - 1].get("spec") or "",
                                 "quantity": _money(q)} for n, q in sorted(now.items())]})
    status, rest = shipping_view(lines)
    done = not rest  # no line with anything left to ship
    _publish({**order, "lines": lines, "shipments": shipments}, "shipped" if done else "partly_shipped")
    return {"lines": lines, "shipments": shipments, "fully_shipped": done, "shipping_list_no": list_no,
            "shipping_status": status, "shipping_list": rest}


# --- reconciliation --------------------------------------------------------------------------------

def check_reconciliation(paid: Any, confirmed_total: Any, note: Any, note_field: str) -> dict:
    """Service: a confirmed total that differs from what was received needs a note saying why; the
    answer says whether the two agree."""
    difference = _money(float(confirmed_total) - float(paid))
    if abs(difference) > CENT and not (isinstance(note, str) and note.strip()):
        raise InvalidInput("the confirmed total %(total)s differs from the %(paid)s received by %(difference)s; "
                           "say why in the note", {note_field: "required when the totals differ"},
                           total=_money(confirmed_total), paid=_money(paid), difference=difference)
    return {"agrees": abs(difference) <= CENT, "difference": difference}
