"""The instances page: every instance the signed-in person may see (started by them, taken part in,
and for auditors all), found by filters and free text, sorted and paged by position. The search
and who may see what are the engine's (engine/instances.py, engine/access.py); this draws it.
"""
from __future__ import annotations

import re
from collections import namedtuple

from flask import Blueprint, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required

from engine import access, clock
from engine import instances as engine_instances
from engine.instances import SCOPES, STATUSES, InstanceQuery
from engine.runtime import Forbidden, InvalidInput

from . import forms, runtime, zone
from .inbox import _processes, money, pick, role_name, said, when

bp = Blueprint("instances", __name__)


@bp.before_request
@login_required
def _signed_in() -> None:
    """Every page of this blueprint needs a signed-in user."""


def field_error(message: str) -> str:
    """A field's problem (the engine's English sentence) in the page's language."""
    patterns = [
        (r"'.*' is not a date such as (\S+)", lambda m: _("Not a date: write it like %(example)s.", example=m[1])),
        (r"is before the first day of the range", lambda m: _("Must not be before the first day.")),
        (r"'.*' is not a whole number", lambda m: _("Must be a whole number.")),
        (r"must be between (\S+) and (\S+)", lambda m: _("Must be between %(low)s and %(high)s.", low=m[1], high=m[2])),
        (r"is not a position in this list.*",
         lambda m: _("This position is not one of this list; start again from the first page.")),
        (r"give after or before, not both", lambda m: _("Give after or before, not both.")),
    ]
    for pattern, say in patterns:
        found = re.fullmatch(pattern, message.strip())
        if found:
            return say(found)
    return forms.error_text(message)


def _labels() -> dict:
    return {
        "scope": {"took_part": _("I took part in"), "started": _("Started by me"), "all": _("All instances")},
        "status": {"running": _("Running"), "completed": _("Completed"), "cancelled": _("Cancelled")},
        "sort": {"started": _("Started"), "changed": _("Last change"), "business_key": _("Business key")},
    }


_Row = namedtuple("_Row", "instance url process status started changed amount steps")


@bp.get("/instances")
def instances():
    errors: dict[str, str] = {}
    who = current_user.person
    try:
        query = InstanceQuery.from_args(request.args)
    except InvalidInput as exc:
        errors, query = {k: field_error(v) for k, v in exc.fields.items()}, None
    page, status = None, 200
    if query is not None:
        try:
            with runtime().store.read() as session:
                page = engine_instances.search(session, who, query, clock.now(), zone())
        except Forbidden as exc:
            errors["scope"], status = said(exc), 403
    elif errors:
        status = 400
    current = query or InstanceQuery()
    labels = _labels()

    def sort_url(key: str) -> str:
        desc = not current.desc if current.sort == key else key != "business_key"
        return url_for("instances.instances", **current.replace(sort=key, desc=desc, page=1).to_args())

    def page_url(number: int) -> str:
        if page is not None and number == page.page + 1 and page.next_after:
            return url_for("instances.instances", **current.replace(page=number, after=page.next_after).to_args())
        if page is not None and number == page.page - 1 and number > 1 and page.prev_before:
            return url_for("instances.instances", **current.replace(page=number, before=page.prev_before).to_args())
        return url_for("instances.instances", **current.replace(page=number).to_args())

    rows, now = [], clock.now()
    prefix = url_for("inbox.instance", instance_id="ID")[:-2]
    for r in page.rows if page else []:
        steps = [(pick(s.name), s.assignee or _("open to %(role)s", role=role_name(s.role)),
                  s.due is not None and s.due < now) for s in r.steps]
        rows.append(_Row(r, prefix + r.id, pick(r.process_name), labels["status"].get(r.status, r.status),
                         when(r.started), when(r.changed), money(r.amount) if r.amount is not None else "—", steps))
    scopes = [s for s in SCOPES if s != "all" or access.may_search_all_instances(who)]
    return render_template(
        "instances.html", page=page, rows=rows, query=current, args=request.args, errors=errors,
        labels=labels, scopes=scopes, statuses=STATUSES, processes=_processes(), sort_url=sort_url,
        page_url=page_url, default_scope=engine_instances.default_scope(who),
        may_export=access.may_export_evidence(who),
    ), status
