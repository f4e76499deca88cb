"""Returns against real orders (退换货申请): what a return may claim and what it is worth.

A return or exchange names an original order (原订单) that another process keeps as the business
record "order" (engine.records; lines with the cumulative quantity `shipped`). Seed 000 (第三章
办事处退发货管理制度, of which only the titles survive; 办事处经理 签发退换货申请) and seed 004
(滞销产品退换货制度) have goods come back against what was delivered but do not spell out the
arithmetic, so these are the checks that make a claim add up *(choice where marked)*:

- the order exists and is the customer's (`shipped_order`, form lookup on `order_no`);
- each line names a product and specification of that order, and asks for no more than was
  shipped less what other returns of the same order claim — every "return" record referring to
  the order that is not rejected, in-flight requests included *(choice: so two concurrent claims
  cannot take the same goods twice; an exchange counts like a return, its replacement is not a
  new shipment of the order)* (`returnable_lines`, form lookup on `lines`);
- the request's record (`claim`, a service at submission) prices every line at the order line's
  unit price; its `value` (Σ quantity × unit_price) caps the credit note (`credit_within_value`,
  form lookup on `credit_amount`).

Lookups answer one sentence per field (engine.forms) and change nothing; they and the service
read records inside the running command (`engine.records.find` / `referring`). The order's record
is read with a lock held to the end of the command, so two requests against one order take turns
and the second sees the first's claim (PostgreSQL; SQLite runs one writer at a time anyway).
"""
from __future__ import annotations

import secrets
from collections import defaultdict
from typing import Any

from engine import clock, records

from .amounts import CENT, number as _number, shown as _shown


def assign_request_number() -> str:
    """"TH-YYYYMMDD-" and ten hex digits (40 random bits: at 1,000 a day two
    numbers of one day are alike about once in two million days; six digits were, on 3 % of days) (退货);
    the date is the engine's present."""
    return f"TH-{clock.now().strftime('%Y%m%d')}-{secrets.token_hex(5)}"


def _key(line: Any) -> tuple[str, str]:
    """A line's product and specification (产品名称, 规格): what a return is matched on."""
    if not isinstance(line, dict):
        return ("", "")
    spec = line.get("spec")
    return (str(line.get("product") or "").strip(), str(spec or "").strip())


def _label(key: tuple[str, str]) -> str:
    return " ".join(part for part in key if part)


def _order(order_no: Any, customer: Any) -> dict | None:
    """The order record's data if `order_no` is an order of `customer`, else None."""
    record = records.find("order", order_no, lock=True) if isinstance(order_no, str) else None
    if record is None or record["data"].get("customer") != customer:
        return None
    return record["data"]


def _shipped(order: dict) -> dict[tuple[str, str], float]:
    shipped: dict[tuple[str, str], float] = defaultdict(float)
    for line in order.get("lines") or []:
        shipped[_key(line)] += _number(line.get("shipped")) or 0.0
    return shipped


def _prices(order: dict) -> dict[tuple[str, str], float]:
    """Unit price by product and specification; where an order lists the same goods twice at two
    prices, the higher *(choice: the cap on the credit must not refuse a rightful credit)*."""
    prices: dict[tuple[str, str], float] = {}
    for line in order.get("lines") or []:
        price = _number(line.get("unit_price"))
        if price is not None:
            prices[_key(line)] = max(price, prices.get(_key(line), price))
    return prices


def _claimed_before(order_no: str, request_no: Any) -> dict[tuple[str, str], float]:
    """What the order's other returns claim: every record but the rejected ones and this one."""
    claimed: dict[tuple[str, str], float] = defaultdict(float)
    for record in records.referring("return", order_no):
        data = record["data"]
        if record["key"] == request_no or data.get("status") == "rejected":
            continue
        for line in data.get("lines") or []:
            claimed[_key(line)] += _number(line.get("quantity")) or 0.0
    return claimed


# --- form lookups --------------------------------------------------------------------------------

def shipped_order(value: Any, form: dict) -> str | None:
    """Lookup on `order_no`: the original order exists and belongs to the customer of the form."""
    if not isinstance(value, str) or not value.strip():
        return None  # the form's own rules (required, minLength) say so
    record = records.find("order", value, lock=True)
    if record is None:
        return f"there is no order {value.strip()}"
    customer = form.get("customer")
    if isinstance(customer, str) and record["data"].get("customer") != customer:
        return f"order {value.strip()} is not an order of customer {customer}"
    return None


def returnable_lines(value: Any, form: dict) -> dict[str, str]:
    """Lookup on `lines`: each line is on the order and within what was shipped less what the
    order's other returns claim (rows of this request for the same goods add up)."""
    order_no = form.get("order_no")
    order = _order(order_no, form.get("customer"))
    if order is None or not isinstance(value, list):
        return {}  # `shipped_order` names the order's problem
    order_no = order_no.strip()
    shipped, claimed = _shipped(order), _claimed_before(order_no, form.get("request_no"))
    asked: dict[tuple[str, str], float] = defaultdict(float)
    problems: dict[str, str] = {}
    for i, line in enumerate(value):
        key = _key(line)
        if not key[0]:
            continue  # the row's own rules say a product is required
        if key not in shipped:
            problems[f"{i}/product"] = f"order {order_no} has no line {_label(key)}"
            continue
        quantity = _number(line.get("quantity"))
        if quantity is None:
            continue
        asked[key] += quantity
        left = max(0.0, shipped[key] - claimed[key])
        if asked[key] > left + CENT:
            problems[f"{i}/quantity"] = (
                f"at most {_shown(left)} can be returned: order {order_no} shipped {_shown(shipped[key])} "
                f"of {_label(key)} and other returns claim {_shown(claimed[key])}")
    return problems


def credit_within_value(value: Any, form: dict) -> str | None:
    """Lookup on `credit_amount`: no more than the value of the returned lines (`returned_value`,
    computed at submission from the order's unit prices)."""
    amount, limit = _number(value), _number(form.get("returned_value"))
    if amount is None or limit is None:
        return None  # the type is the form's; an instance without a value has no such field
    if amount > limit + CENT:
        return f"must be at most {_shown(limit)}, the value of the returned goods"
    return None


# --- service -------------------------------------------------------------------------------------

def claim(request_no: str, order_no: str, customer: str, kind: str, reason: str,
          lines: list[dict[str, Any]]) -> dict[str, Any]:
    """The "return" record's data at submission (status "requested"): the lines priced at the
    order's unit prices, and their value. The form lookups have checked the order and the
    quantities in the same command."""
    order = _order(order_no, customer)
    if order is None:
        raise ValueError(f"order {order_no} is not an order of customer {customer}")
    prices = _prices(order)
    priced = []
    for line in lines or []:
        key = _key(line)
        priced.append({"product": key[0], "spec": key[1], "quantity": _number(line.get("quantity")) or 0.0,
                       "unit_price": prices.get(key, 0.0)})
    value = round(sum(line["quantity"] * line["unit_price"] for line in priced), 2)
    return {"request_no": request_no, "order_no": order_no.strip(), "customer": customer, "kind": kind,
            "reason": reason, "lines": priced, "value": value, "status": "requested", "credited_amount": 0}
