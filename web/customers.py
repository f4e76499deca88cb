"""The customer archive's pages (客户档案): the list, a card with its change history (and its edit
form for those who keep it), the record of reads for the auditor; and the credit list (客户信用等级一览表)
with its changes of level, for those who work with it (engine.credit; changed only by credit_review).

Who may read, keep or audit is engine.access's to say (through engine.customers.Archive, which
records every read it answers); these pages only show its answers.
"""
from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required

from engine import access
from engine.credit import CreditList
from engine.customers import Archive, check_may_create
from engine.runtime import Conflict, EngineError, Forbidden, InvalidInput

from . import http_status, runtime, views
from .inbox import colleagues, said

bp = Blueprint("customers", __name__)


@bp.before_request
@login_required
def _signed_in() -> None:
    """Every page of this blueprint needs a signed-in user."""


@bp.errorhandler(EngineError)
def _refused(exc: EngineError):
    if isinstance(exc, Forbidden) and request.endpoint == "customers.card":  # a refused read, recorded
        # The auditor may not read a card, but sees who did (and this refusal among them).
        customer = (request.view_args or {}).get("customer_id", "")
        return render_template("customer_refused.html", message=said(exc), customer=customer,
                               reads=_customer_reads(customer)), 403
    return render_template("error.html", message=said(exc), status=http_status(exc)), http_status(exc)


def _archive() -> Archive:
    return Archive(runtime().store)


def _reps() -> list[tuple[str, str]]:
    return colleagues("sales_rep")


@bp.get("/customers")
def listing():
    wanted = request.args.get("id", "").strip()
    if wanted:
        return redirect(url_for("customers.card", customer_id=wanted))
    return render_template("customers.html", cards=_archive().listing(current_user.username),
                           audits=access.may_view_archive_reads(current_user.person),
                           creates=access.may_create_archive(current_user.person),
                           credit=access.may_view_credit_list(current_user.person))


def _new_card_page(values: dict | None = None, errors: dict | None = None, status: int = 200,
                   message: str | None = None):
    check_may_create(current_user.person)
    assigns = access.may_assign_customer(current_user.person)
    return render_template("customer_new.html", values=values or {}, errors=errors or {}, message=message,
                           assigns=assigns, reps=_reps() if assigns else []), status


@bp.get("/customers/new")
def new_card():
    return _new_card_page()


@bp.post("/customers")
def create():
    """Build a card (建立客户档案卡): the engine decides who may, and checks every field."""
    customer_id = request.form.get("id", "")
    try:
        done = _archive().create(customer_id, current_user.username, _changes(request.form))
    except InvalidInput as exc:
        return _new_card_page(request.form.to_dict(), _field_errors(exc), 422,
                              _("Nothing was created: please correct the marked fields."))
    except Conflict as exc:  # the id is taken: the sentence says nothing of that card
        return _new_card_page(request.form.to_dict(), {"id": said(exc)}, 409, said(exc))
    flash(_("The card %(id)s is created.", id=done["id"]), "success")
    return redirect(url_for("customers.card", customer_id=done["id"]))


def _customer_reads(customer_id: str) -> list[dict] | None:
    """The reads of this customer's card for those who may see the record of reads (the auditor,
    the general manager), else None: the card page shows them below the card."""
    if not access.may_view_archive_reads(current_user.person):
        return None
    try:
        return _archive().reads(current_user.username, customer=customer_id, limit=50)
    except InvalidInput:
        return None  # not even an id: the refusal says so


def _card_page(customer_id: str, values: dict | None = None, errors: dict | None = None,
               status: int = 200, message: str | None = None):
    card = _archive().card(customer_id, current_user.username, door="web")
    return render_template("customer.html", card=card, reads=_customer_reads(card["id"]),
                           values=values or _form_values(card),
                           errors=errors or {}, message=message,
                           reps=_reps() if card["may_assign"] else []), status


@bp.get("/customers/<customer_id>")
def card(customer_id: str):
    return _card_page(customer_id)


def _form_values(card: dict) -> dict:
    """A card as its edit form shows it: lists one entry a line, a contact as name | title | phone."""
    return {"name": card["name"], "address": card["address"], "phones": "\n".join(card["phones"]),
            "contacts": "\n".join(" | ".join(c.get(k, "") for k in ("name", "title", "phone"))
                                  for c in card["contacts"]),
            "characteristics": card["characteristics"], "family": card["family"], "notes": card["notes"],
            "rep": card["rep"] or "", "revision": card["revision"]}


def _field_errors(exc: InvalidInput) -> dict:
    """The engine's field errors by form field: a list's entry (phones.1, contacts.0.name) marks its box."""
    return {k.split(".")[0]: v for k, v in exc.fields.items()}


def _changes(form) -> dict:
    changes = {key: form.get(key, "") for key in ("name", "address", "characteristics", "family", "notes")}
    changes["phones"] = [line.strip() for line in form.get("phones", "").splitlines() if line.strip()]
    contacts = []
    for line in form.get("contacts", "").splitlines():
        if line.strip():
            parts = [p.strip() for p in line.split("|")] + ["", ""]
            contacts.append({"name": parts[0], "title": parts[1], "phone": "|".join(parts[2:]).strip("| ")})
    changes["contacts"] = contacts
    if "rep" in form:
        changes["rep"] = form.get("rep") or None
    return changes


@bp.post("/customers/<customer_id>")
def change(customer_id: str):
    revision = request.form.get("revision", "")
    try:
        done = _archive().update(customer_id, current_user.username, _changes(request.form),
                                 revision=int(revision) if revision.isdigit() else None)
    except InvalidInput as exc:
        values = {**request.form.to_dict(), "revision": revision}
        return _card_page(customer_id, values, _field_errors(exc), 422,
                          _("Nothing was changed: please correct the marked fields."))
    if done["changes"]:
        flash(_("The card is saved (revision %(revision)s).", revision=done["revision"]), "success")
    else:
        flash(_("Nothing was changed."), "info")
    return redirect(url_for("customers.card", customer_id=customer_id))


@bp.get("/archive-reads")
def reads():
    customer = request.args.get("customer", "").strip() or None
    archive = _archive()
    rows = archive.reads(current_user.username, customer=customer, limit=500)
    return render_template("archive_reads.html", rows=rows, customer=customer or "",
                           grants=archive.grants(current_user.username, customer=customer))


@bp.get("/credit-list")
def credit_list():
    listing = CreditList(runtime().store)
    customer = request.args.get("customer", "").strip() or None
    entries = listing.entries(current_user.username)
    return render_template("credit_list.html", entries=entries, customer=customer or "",
                           changes=listing.changes(current_user.username, customer=customer),
                           starts=any(p["process_id"] == "credit_review"
                                      for p in views().startable(current_user.username)))
