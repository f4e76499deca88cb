"""The capital-in-use page (区域资金占用, seed 002 二): each region's figure — retail customers' goods,
stock, overdue contract receivables — against its limit, 7 % of the year's collections.

The figure is the engine's (engine.reports.CapitalReport) and so is who may see it
(engine.access.may_see_capital: a regional manager his own region, the VP of sales and the general
manager every region); this page only shows the answers. The API's `GET /api/v1/regions/<id>/capital`
and `bpm capital` give the same figure.
"""
from __future__ import annotations

from flask import Blueprint, render_template
from flask_babel import gettext as _
from flask_login import current_user, login_required

from engine import access
from engine.errors import EngineError
from engine.reports import CapitalReport

from . import http_status, runtime
from .inbox import said

bp = Blueprint("capital", __name__)


@bp.errorhandler(EngineError)
def _refused(exc: EngineError):
    """The engine's refusal (not allowed, no such region) in the page's language, never a 500."""
    return render_template("error.html", message=said(exc), status=http_status(exc)), http_status(exc)


def _report() -> CapitalReport:
    return CapitalReport(runtime().store)


@bp.app_context_processor
def _nav() -> dict:
    shown = current_user.is_authenticated and access.may_see_capital(current_user.person, current_user.person.office_id)
    return {"capital_page": shown}


@bp.get("/regions/capital")
@login_required
def overview():
    """Every region the user may see, each with its figure; none: refused with a sentence."""
    report = _report()
    regions = report.visible_regions(current_user.username)
    if not regions:
        from . import _refusal  # (web/__init__ registers this blueprint)
        return _refusal(403, _("The capital in use of a region is for its regional manager, the VP of sales "
                               "and the general manager."))
    figures = [report.figure(current_user.username, r["id"]) for r in regions]
    return render_template("capital.html", figures=figures)


@bp.get("/regions/<region_id>/capital")
@login_required
def region(region_id: str):
    figure = _report().figure(current_user.username, region_id)  # refused (403, 404) by the engine
    return render_template("capital.html", figures=[figure], one=True)
