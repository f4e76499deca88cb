"""The JSON API under /api/v1: everything the pages do, for scripts and other systems.

Authenticated by a bearer token (POST /api/v1/tokens with username and password) or by the
browser session. Errors are `{"error": sentence, "fields": {...}}` with the status that says
what happened: 400 bad input, 401 not signed in, 403 not allowed, 404 unknown, 409 already done
or changed meanwhile, 422 a form's rules broken, 500 a script or service failed (rolled back).
"""
from __future__ import annotations

from datetime import datetime
from functools import wraps
from typing import Any

from flask import Blueprint, g, jsonify, request
from flask_login import current_user

from engine import access, clock, inbox, notifications
from engine.inbox import InboxQuery
from engine.runtime import CommandFailed, EngineError

from . import http_status, openapi, runtime

bp = Blueprint("api", __name__, url_prefix="/api")


class ApiError(Exception):
    def __init__(self, status: int, message: str, fields: dict | None = None):
        super().__init__(message)
        self.status, self.fields = status, fields or {}


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError):
    return jsonify({"error": str(exc), "fields": exc.fields}), exc.status


@bp.errorhandler(EngineError)
def _engine_error(exc: EngineError):
    status = http_status(exc)
    body: dict[str, Any] = {"error": str(exc), "fields": getattr(exc, "fields", {}) or {}}
    if isinstance(exc, CommandFailed):
        body["incident"] = exc.incident_id
    return jsonify(body), status


@bp.errorhandler(404)
def _not_found(exc):
    return jsonify({"error": f"there is no API resource {request.path}", "fields": {}}), 404


@bp.errorhandler(405)
def _not_allowed(exc):
    return jsonify({"error": f"{request.method} is not allowed on {request.path}", "fields": {}}), 405


def _json_body() -> dict:
    if not request.data:
        return {}
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # nested deeper than the parser goes; the engine allows far less
        body = None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


def authenticated(view):
    """Resolve the caller from a bearer token or the session; 401 otherwise."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            with runtime().store.read() as session:
                who = access.person_for_token(session, header[len("Bearer "):].strip())
            if who is None:
                raise ApiError(401, "the bearer token is not valid")
        elif current_user.is_authenticated:
            who = current_user.person  # looked up this request by the sign-in's user loader
        else:
            raise ApiError(401, "sign in or send a bearer token (POST /api/v1/tokens)")
        g.who = who
        return view(*args, **kwargs)
    return wrapper


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@bp.get("/openapi.json")
def openapi_document():
    return jsonify(openapi.document())


@bp.post("/v1/tokens")
def issue_token():
    body = _json_body()
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise ApiError(400, "send username and password as strings",
                       {k: "this field is required" for k in ("username", "password") if not body.get(k)})
    with runtime().store.write() as session:
        who = access.check_password(session, username, password)
        if who is None:
            raise ApiError(401, "wrong username or password")
        token = access.issue_token(session, who.username, clock.now())
    return jsonify({"token": token, "username": who.username}), 201


@bp.get("/v1/me")
@authenticated
def me():
    who = g.who
    with runtime().store.read() as session:
        unread = notifications.unread_count(session, who.username)
    return jsonify({"username": who.username, "display_name": who.display_name,
                    "roles": sorted(who.roles), "superior": who.superior, "unread": unread})


@bp.get("/v1/processes")
@authenticated
def processes():
    return jsonify(runtime().startable(g.who.username))


@bp.post("/v1/processes/<process_id>/instances")
@authenticated
def start(process_id: str):
    body = _json_body()
    view = runtime().start(process_id, g.who.username, body.get("data", {}))
    return jsonify(view.as_json()), 201


@bp.get("/v1/tasks")
@authenticated
def tasks():
    query = InboxQuery.from_args(request.args)
    with runtime().store.read() as session:
        page = inbox.search(session, g.who, query, clock.now())
    return jsonify({"tasks": [t.as_json() for t in page.tasks], "total": page.total, "page": page.page,
                    "per_page": page.per_page, "pages": page.pages,
                    # positions for the next and previous page (keyset paging: ?after= / ?before=)
                    "next_after": page.next_after, "prev_before": page.prev_before})


@bp.get("/v1/tasks/<task_id>")
@authenticated
def task(task_id: str):
    detail = runtime().task_detail(task_id, g.who.username)
    return jsonify({**detail, "task": detail["task"].as_json()})


def _task_command(name: str):
    """POST /v1/tasks/<id>/<command>: one of the engine's task commands, answered with the task."""
    def view(task_id: str):
        return jsonify(getattr(runtime(), name)(task_id, g.who.username).as_json())
    return authenticated(view)


for _path, _name in (("claim", "claim"), ("unclaim", "unclaim"), ("hand-back", "hand_back")):
    bp.add_url_rule(f"/v1/tasks/<task_id>/{_path}", _name, _task_command(_name), methods=["POST"])


@bp.post("/v1/tasks/<task_id>/complete")
@authenticated
def complete(task_id: str):
    body = _json_body()
    return jsonify(runtime().complete(task_id, g.who.username, body.get("data", {})).as_json())


@bp.put("/v1/tasks/<task_id>/draft")
@authenticated
def save_draft(task_id: str):
    body = _json_body()
    runtime().save_draft(task_id, g.who.username, body.get("data", {}))
    return jsonify({"task_id": task_id, "draft": runtime().draft(task_id)})


@bp.post("/v1/tasks/<task_id>/delegate")
@authenticated
def delegate(task_id: str):
    body = _json_body()
    if not isinstance(body.get("to"), str):
        raise ApiError(400, "name the colleague to delegate to", {"to": "this field is required"})
    return jsonify(runtime().delegate(task_id, g.who.username, body["to"], str(body.get("note", ""))).as_json())


@bp.post("/v1/tasks/<task_id>/comments")
@authenticated
def comment(task_id: str):
    body = _json_body()
    made = runtime().comment(task_id, g.who.username, str(body.get("body", "")))
    return jsonify({**made, "at": _iso(made["at"])}), 201


@bp.get("/v1/instances/<instance_id>")
@authenticated
def instance(instance_id: str):
    view = runtime().instance(instance_id, viewer=g.who.username)
    return jsonify({**view.as_json(), "comments": [{**c, "at": _iso(c["at"])}
                                                   for c in runtime().comments(instance_id)]})


@bp.get("/v1/instances/<instance_id>/history")
@authenticated
def history(instance_id: str):
    return jsonify([{**h, "at": _iso(h["at"])} for h in runtime().history(instance_id, viewer=g.who.username)])


@bp.post("/v1/messages/<name>")
@authenticated
def message(name: str):
    body = _json_body()
    correlation = body.get("correlation") or {}
    if not isinstance(correlation, dict):
        raise ApiError(400, "correlation must be an object of KEY: VALUE", {"correlation": "not an object"})
    delivered = runtime().message(name, body.get("data", {}), correlation, actor=g.who.username)
    return jsonify({"delivered_to": delivered})


@bp.get("/v1/notifications")
@authenticated
def notices():
    with runtime().store.read() as session:
        rows = notifications.for_user(session, g.who.username)
    return jsonify([{**n, "at": _iso(n["at"])} for n in rows])
