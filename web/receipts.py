"""The receipts page (到账登记): finance finds an order (by order no., customer or amount; orders
awaiting payment first) and records a bank receipt against it — part of the balance or all of it,
with the voucher number (凭证号) and the date the money arrived.

The orders are the business records (业务台账, engine.records) of kind "order" that
order_to_settlement publishes with `paid`, `balance` and `status`. A receipt is the message
`payment_received` sent through `Runtime.message`, the very command the API
(POST /api/v1/messages/payment_received) and `bpm message` send: the message's `sender_roles`
decide who may send it and the process decides what it books; there is no other way in. This page
only checks its own form before sending (a voucher, a positive amount of at most two decimals, not
more than the balance *(choice: an overpayment is refused, not booked and flagged)*, a date
received that is not in the future) and says every refusal next to its field, the engine's
included. Its hidden `request_id` makes the form act once (engine.runtime, "exactly once"): a
double click books one receipt.
"""
from __future__ import annotations

import math
import re
import uuid
from datetime import date
from decimal import Decimal, InvalidOperation

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required

from engine import access, clock, records
from engine.runtime import CommandFailed, Conflict, EngineError, NotFound

from . import http_status, runtime
from .forms import SEPARATORS
from .inbox import money, said

bp = Blueprint("receipts", __name__)

MESSAGE = "payment_received"
AWAITING, SETTLED = "awaiting_payment", "settled"
PAID_UP = ("reconciling", SETTLED)  # the whole amount is in: nothing more is received
VOUCHER_MAX = 64
LISTED = 500  # orders read for one search, newest first
STATUS_NAMES = {
    "open": _l("open"), "awaiting_deposit": _l("awaiting the deposit"), "in_production": _l("in production"),
    "partly_shipped": _l("partly shipped"), "shipped": _l("shipped"), AWAITING: _l("awaiting payment"),
    "reconciling": _l("paid in full, reconciling"), SETTLED: _l("settled"), "rejected": _l("rejected"),
}


def status_name(status) -> str:
    return str(STATUS_NAMES.get(status, status or "—"))


@bp.before_request
@login_required
def _finance_only():
    """Every page of this blueprint is finance's (engine.access.may_record_receipts)."""
    if not access.may_record_receipts(current_user.person):
        from . import _refusal  # (web/__init__ registers this blueprint)
        return _refusal(403, _("The receipts page is for finance."))
    return None


@bp.app_context_processor
def _nav() -> dict:
    shown = current_user.is_authenticated and access.may_record_receipts(current_user.person)
    return {"receipts_page": shown, "order_status_name": status_name}


# --- reading the orders ---------------------------------------------------------------------------

def _orders(key: str | None = None, customer: str | None = None) -> list[dict]:
    with runtime().store.read() as session:
        return records.listed(session.connection(), "order", key=key or None, customer=customer or None,
                              limit=LISTED)


def _order(order_no: str) -> dict | None:
    """The order record `order_no` (its data, with `instance_id`), or None."""
    found = [r for r in _orders(key=order_no) if r["key"] == order_no] if order_no else []
    if not found:
        return None
    return {**found[0]["data"], "order_no": order_no, "instance_id": found[0]["instance_id"],
            "updated_at": found[0]["updated_at"]}


def _with_payments(order: dict) -> dict:
    """The order with what its instance has booked so far (`paid`, `balance`, `payments`): the
    record is published by the same steps, the instance is where they are kept."""
    try:
        data = runtime().instance(order["instance_id"]).data
    except EngineError:
        return {**order, "payments": order.get("payments") or []}
    booked = {k: data[k] for k in ("paid", "balance", "payments") if k in data}
    return {**order, **booked, "payments": booked.get("payments") or order.get("payments") or []}


def _search(args) -> tuple[list[dict], dict, dict]:
    """(orders, the search as typed, its errors): awaiting payment first, then the rest, newest first."""
    asked = {k: args.get(k, "").strip() for k in ("order_no", "customer", "amount")}
    errors = {}
    amount = None
    if asked["amount"]:
        amount = number(asked["amount"])
        if amount is None:
            errors["amount"] = _("Type an amount such as 84000 or 84000.50.")
    found = [] if errors else find_orders(asked["order_no"], asked["customer"], amount)
    return found, asked, errors


def find_orders(order_no: str = "", customer: str = "", amount: Decimal | None = None) -> list[dict]:
    """The order records whose number starts with `order_no`, of `customer`, whose amount or
    balance is `amount` (each if given): awaiting payment first, paid-up ones last, else newest
    first. The page and GET /api/v1/orders list these."""
    found = []
    for row in _orders(key=order_no, customer=customer):
        data = {**row["data"], "order_no": row["key"], "updated_at": row["updated_at"]}
        if amount is not None and not any(_same(amount, data.get(k)) for k in ("amount", "balance")):
            continue
        found.append(data)
    found.sort(key=lambda d: (d.get("status") != AWAITING, d.get("status") in PAID_UP))
    return found


def _same(a: Decimal, b) -> bool:
    return isinstance(b, (int, float)) and not isinstance(b, bool) and math.isfinite(b) and \
        abs(Decimal(str(b)) - a) < Decimal("0.005")


def number(text: str) -> Decimal | None:
    text = SEPARATORS.sub("", text)
    if not re.fullmatch(r"[+-]?\d+(\.\d+)?", text):
        return None
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


# --- the pages ------------------------------------------------------------------------------------

def _page(values: dict | None = None, errors: dict | None = None, message: str | None = None,
          status: int = 200, order_no: str | None = None):
    orders, asked, search_errors = _search(request.args)
    order_no = order_no if order_no is not None else request.args.get("order", "").strip()
    order = _order(order_no) if order_no else None
    if order is not None:
        order = _with_payments(order)
    today = clock.local_date().isoformat()
    values = values if values is not None else {"order_no": order_no or "", "received_on": today}
    return render_template("receipts.html", orders=orders, asked=asked, search_errors=search_errors,
                           order=order, values=values, errors=errors or {}, message=message,
                           request_id=values.get("request_id") or uuid.uuid4().hex, today=today,
                           awaiting=AWAITING, paid_up=PAID_UP), status


@bp.get("/receipts")
def page():
    return _page()


@bp.post("/receipts")
def record():
    """Record a receipt: the page's own checks, then the engine's message; nothing changes unless
    the message is booked."""
    me = current_user.username
    values = {k: request.form.get(k, "").strip()
              for k in ("order_no", "amount", "voucher", "received_on", "request_id")}
    order_no = values["order_no"]
    rt = runtime()
    if rt.answered(me, values["request_id"], "message") is not None:  # sent twice: booked once
        flash(_("This receipt was already recorded; it was booked once."), "info")
        return redirect(url_for("receipts.page", order=order_no))
    errors, status = _checked(values)
    if errors:
        return _page(values, errors, _("Nothing was recorded: please correct the marked fields."),
                     status, order_no=order_no if "order_no" not in errors else "")
    payload = {"order_no": order_no, "amount": _plain(values["amount"]), "voucher": values["voucher"],
               "received_on": values["received_on"]}
    try:
        rt.message(MESSAGE, payload, {"order_no": order_no}, actor=me,
                   request_id=values["request_id"] or None)
    except EngineError as exc:
        errors = _engine_errors(exc, order_no)
        return _page(values, errors, next(iter(errors.values()), said(exc)), http_status(exc), order_no=order_no)
    flash(_("Received %(amount)s against order %(order)s (voucher %(voucher)s).",
            amount=money(payload["amount"]), order=order_no, voucher=values["voucher"]), "success")
    return redirect(url_for("receipts.page", order=order_no))


FIELDS = ("order_no", "amount", "voucher", "received_on")


def _engine_errors(exc: EngineError, order_no: str) -> dict:
    """The engine's refusal next to the field it names: the fields of the message data it found
    wrong, the voucher when it is the voucher that was refused, the order's number when no order
    of that number waits for a receipt, the amount when the process failed on it (an incident,
    rolled back); {} shows it above the form."""
    fields = {k.split(".")[0].split("/")[0]: v for k, v in (getattr(exc, "fields", None) or {}).items()}
    if (named := {k: said(exc) for k in fields if k in FIELDS}):
        return named
    params = getattr(exc, "params", None) or {}
    if "voucher" in params:  # a voucher already booked on the order
        return {"voucher": said(exc)}
    if isinstance(exc, NotFound) or (isinstance(exc, Conflict) and "what" in params):  # nothing waits for it
        order = _order(order_no)
        return {"order_no": _("Order %(order)s is not awaiting payment (it is %(status)s); nothing was "
                              "recorded.", order=order_no, status=status_name(order and order.get("status")))}
    if isinstance(exc, CommandFailed):
        return {"amount": said(exc)}
    return {}


def _plain(text: str) -> int | float:
    """The amount as JSON sends it: a whole number as an integer."""
    amount = number(text)
    return int(amount) if amount == amount.to_integral_value() else float(amount)


def _checked(values: dict) -> tuple[dict, int]:
    """The form's own checks, against the order record: ({field: sentence}, HTTP status)."""
    errors: dict[str, str] = {}
    status = 422
    order_no = values["order_no"]
    order = _order(order_no) if order_no else None
    if order is not None:
        order = _with_payments(order)  # the balance as the instance keeps it now
    if not order_no:
        errors["order_no"] = _("Give the order number (SO-…) the money was paid for.")
    elif order is None:
        errors["order_no"] = _("There is no order %(order)s.", order=order_no)
        status = 404
    elif order.get("status") in PAID_UP or (_balance(order) is not None and _balance(order) <= 0):
        errors["order_no"] = (
            _("Order %(order)s is settled; nothing more can be received against it.", order=order_no)
            if order.get("status") == SETTLED else
            _("Order %(order)s is already paid in full; nothing more can be received against it.", order=order_no))
        status = 409
    amount = number(values["amount"]) if values["amount"] else None
    if not values["amount"]:
        errors["amount"] = _("Give the amount received.")
    elif amount is None:
        errors["amount"] = _("Type the amount as a number such as 84000 or 84000.50.")
    elif amount <= 0:
        errors["amount"] = _("The amount received must be more than 0.")
    elif amount != amount.quantize(Decimal("0.01")):
        errors["amount"] = _("The amount has at most two decimals (fen).")
    elif order is not None and "order_no" not in errors and (balance := _balance(order)) is not None \
            and amount > balance:
        errors["amount"] = _("%(amount)s is more than the balance of %(balance)s still due on order "
                             "%(order)s; an overpayment is not recorded here.",
                             amount=values["amount"], balance=money(float(balance)), order=order_no)
    if not values["voucher"]:
        errors["voucher"] = _("Give the voucher number (凭证号) of the bank receipt.")
    elif len(values["voucher"]) > VOUCHER_MAX or not values["voucher"].isprintable():
        errors["voucher"] = _("A voucher number is at most %(max)d printable characters.", max=VOUCHER_MAX)
    received = None
    try:
        received = date.fromisoformat(values["received_on"]) if values["received_on"] else None
    except ValueError:
        errors["received_on"] = _("Give the date received as YYYY-MM-DD.")
    if not values["received_on"]:
        errors["received_on"] = _("Give the date the money was received.")
    elif received is not None and received > clock.local_date():
        errors["received_on"] = _("The date received cannot be later than today (%(today)s).",
                                  today=clock.local_date().isoformat())
    return errors, status


def _balance(order: dict) -> Decimal | None:
    value = order.get("balance")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return Decimal(str(value))

