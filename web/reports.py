"""The auditor's report pages: the SLA breach report (/reports/sla: breaches grouped by process,
step, person, office or month, with counts and median lateness) and the breaches of one group
(/reports/sla/breaches, each linking to its instance); both also as CSV (`?format=csv`).

What a breach and its lateness are, and who may read the report, are the engine's to say
(engine.reports, engine.access.may_read_sla_report); these pages only show its answers, with times
in the company's time zone (BPM_TIMEZONE) as every page shows them.
"""
from __future__ import annotations

from datetime import datetime

from flask import Blueprint, Response, render_template, request
from flask_babel import gettext as _, lazy_gettext as _l
from flask_login import current_user, login_required

from engine import access, spreadsheet
from engine.reports import GROUPINGS, NOBODY, SlaReport, parse_query
from engine.runtime import InvalidInput

from . import runtime, zone, zone_name
from .inbox import pick

bp = Blueprint("reports", __name__, url_prefix="/reports")

GROUPING_NAMES = {"process": _l("process"), "step": _l("step"), "person": _l("person"),
                  "office": _l("office"), "month": _l("month")}
STATE_NAMES = {"done": _l("done"), "open": _l("still open"), "withdrawn": _l("withdrawn")}


def _report() -> SlaReport:
    return SlaReport(runtime().store, zone=zone_name())


@bp.before_request
@login_required
def _auditor_only():
    """Every page of this blueprint is the auditor's (engine.access.may_read_sla_report)."""
    if not access.may_read_sla_report(current_user.person):
        from . import _refusal  # (web/__init__ registers this blueprint)
        return _refusal(403, _("The SLA breach report is for the auditor."))
    return None


@bp.app_context_processor
def _nav() -> dict:
    shown = current_user.is_authenticated and access.may_read_sla_report(current_user.person)
    return {"sla_report_page": shown}


@bp.app_template_filter("lateness")
def lateness(seconds: int | None) -> str:
    """A lateness in days and hours, or hours and minutes: "1 d 3 h", "2 h 15 min"."""
    if seconds is None:
        return "—"
    minutes = round(seconds / 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return _("%(days)s d %(hours)s h", days=days, hours=hours)
    return _("%(hours)s h %(minutes)s min", hours=hours, minutes=minutes)


def _problems(exc: InvalidInput) -> dict[str, str]:
    """The engine's field problems as sentences of the page's language, by field."""
    texts = {"by": _("Choose how to group the breaches."), "since": _("Type a day such as 2026-11-23."),
             "until": _("Type a day such as 2026-11-30."), "month": _("Type a month such as 2026-11."),
             "process": _("Type a short line of text."), "step": _("Type a short line of text."),
             "person": _("Type a short line of text."), "office": _("Type a short line of text.")}
    out = {}
    for field, problem in exc.fields.items():
        out[field] = (_("The last day is before the first.") if field == "until" and problem.startswith("not before")
                      else texts.get(field, _("This value is not understood.")))
    return out


def group_label(by: str, group: dict) -> str:
    """A group as a person reads it: a process or step by its name in the page's language, a
    person by name and username, the month as YYYY-MM."""
    key = group["key"]
    if by in ("process", "step"):
        return pick(group["label"])
    if by in ("person", "office") and key[0] == NOBODY:
        return _("nobody (open to a role)") if by == "person" else _("no office")
    if by == "person":
        return f"{group['label']} ({key[0]})"
    return group["label"]


def _local(value: datetime | None) -> str:
    """A time for a CSV file: ISO 8601 in the company's time zone, with its offset."""
    return value.astimezone(zone()).isoformat(timespec="minutes") if value else ""


def _hours(seconds: int | None) -> str:
    return "" if seconds is None else f"{seconds / 3600:.2f}"


def _csv(filename: str, header: list[str], rows: list[list]) -> Response:
    # a BOM, so that spreadsheet programs read the Chinese names as UTF-8
    return Response("\ufeff" + spreadsheet.text(header, rows, line_end="\r\n"), mimetype="text/csv",
                    headers={"Content-Disposition": f"attachment; filename={filename}"})


def _page_args(query, by: str | None = None) -> dict:
    return {**query.filters(), "by": by or query.by}


@bp.get("/sla")
def sla():
    report = _report()
    chosen = {k: request.args.get(k, "").strip() for k in ("by", "process", "office", "person", "since", "until",
                                                            "step", "month")}
    try:
        query = parse_query(request.args)
    except InvalidInput as exc:
        return render_template("sla_report.html", groups=[], query=None, chosen=chosen, errors=_problems(exc),
                               options=report.options(current_user.username), groupings=GROUPINGS,
                               grouping_names=GROUPING_NAMES, group_label=group_label), 400
    groups = report.groups(current_user.username, query)
    if request.args.get("format") == "csv":
        return _csv(f"sla-report-{query.by}.csv",
                    ["by", "key", "label", "count", "done", "still_open", "withdrawn", "median_late_hours"],
                    [[query.by, "/".join(g["key"]), g["label"], g["count"], g["done"], g["still_open"],
                      g["withdrawn"], _hours(g["median_late_seconds"])] for g in groups])
    return render_template("sla_report.html", groups=groups, query=query, chosen=chosen, errors={},
                           options=report.options(current_user.username), groupings=GROUPINGS,
                           grouping_names=GROUPING_NAMES, group_label=group_label,
                           csv_args={**_page_args(query), "format": "csv"})


@bp.get("/sla/breaches")
def sla_breaches():
    report = _report()
    try:
        query = parse_query(request.args)
    except InvalidInput as exc:
        return render_template("sla_breaches.html", found=None, query=None, errors=_problems(exc),
                               state_names=STATE_NAMES), 400
    found = report.breaches(current_user.username, query)
    if request.args.get("format") == "csv":
        return _csv("sla-breaches.csv",
                    ["instance_id", "business_key", "customer", "process_id", "step_id", "step", "holder",
                     "escalated_to", "due_at", "breached_at", "done_at", "state", "late_hours"],
                    [[b["instance_id"], b["business_key"] or "", b["customer"] or "", b["process_id"],
                      b["element_id"], b["step"], b["holder"] or "", b["escalated_to"] or "", _local(b["due_at"]),
                      _local(b["breached_at"]), _local(b["done_at"]), b["state"], _hours(b["late_seconds"])]
                     for b in found["breaches"]])
    return render_template("sla_breaches.html", found=found, query=query, errors={}, state_names=STATE_NAMES,
                           csv_args={**query.filters(), "format": "csv"},
                           back_args={k: v for k, v in _page_args(query).items()
                                      if k != ("step" if query.by == "step" else query.by)})
