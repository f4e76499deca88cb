"""Evidence for auditors: an instance's evidence bundle (engine.evidence: log, definition files,
state hashes, verification, manifest; checked offline by `bpm verify --bundle`) and its history as
CSV, as downloads. Only for those engine.access.may_export_evidence allows; anyone else gets the
same 404 as for an instance that does not exist, so a refusal reveals nothing.
"""
from __future__ import annotations

from flask import Blueprint, Response, render_template, request
from flask_babel import gettext as _
from flask_login import current_user, login_required

from engine import access, clock, evidence
from engine import instances as engine_instances
from engine.instances import InstanceQuery
from engine.runtime import EngineError, InvalidInput, NotFound

from . import http_status, runtime, views, zone
from .inbox import said

bp = Blueprint("evidence", __name__)


@bp.before_request
@login_required
def _signed_in() -> None:
    """Every download of this blueprint needs a signed-in user."""


@bp.errorhandler(EngineError)
def _refused(exc: EngineError):
    return render_template("error.html", message=said(exc), status=http_status(exc)), http_status(exc)


def _may_export(who: access.Person, instance_id: str) -> None:
    if not access.may_export_evidence(who):
        raise NotFound("there is no instance %(instance)s", instance=instance_id[:80])


def bundle_response(who: access.Person, instance_id: str) -> Response:
    """The instance's evidence bundle as a download (the page's and the API's)."""
    _may_export(who, instance_id)
    rt = runtime()
    with rt.store.read() as session:
        data = evidence.export(session, [instance_id], rt.script_engine, by=who.username)
        name = evidence.file_name(session, instance_id)
    return Response(data, mimetype=evidence.CONTENT_TYPE,
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@bp.get("/instances/bundle")
def search_bundle():
    """The instances a search lists (the page asked for, as /instances shows it, at most 200 a
    page) in one evidence bundle; a search that lists none, or a bad filter, is a 400 sentence."""
    who = current_user.person
    if not access.may_export_evidence(who):
        raise NotFound("there is no instance %(instance)s", instance="bundle")
    try:
        query = InstanceQuery.from_args(request.args)
    except InvalidInput as exc:
        return render_template("error.html", message=said(exc), status=400), 400
    rt = runtime()
    with rt.store.read() as session:
        found = engine_instances.search(session, who, query, clock.now(), zone())
        ids = [row.id for row in found.rows]
        if not ids:
            return render_template("error.html", message=_("No instances match: there is nothing to bundle."),
                                   status=400), 400
        data = evidence.export(session, ids, rt.script_engine, by=who.username)
    name = f"evidence-{len(ids)}-instances-{clock.now().strftime('%Y%m%d-%H%M%S')}.tar"
    return Response(data, mimetype=evidence.CONTENT_TYPE,
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@bp.get("/instances/<instance_id>/bundle")
def bundle(instance_id: str):
    return bundle_response(current_user.person, instance_id)


@bp.get("/instances/<instance_id>/history.csv")
def history_csv(instance_id: str):
    who = current_user.person
    _may_export(who, instance_id)
    steps, replayed = views().history(instance_id, viewer=who.username)  # (no change shown if it did not replay)
    with runtime().store.read() as session:
        name = evidence.file_name(session, instance_id).removesuffix(".tar").replace("evidence-", "history-", 1)
    return Response(evidence.history_csv(evidence.history_rows(steps, replayed)), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
