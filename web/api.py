"""The JSON API under /api/v1: everything the pages do, for scripts and other systems.

Authenticated by a bearer token (POST /api/v1/tokens with username and password; it expires, and
GET/DELETE /api/v1/tokens list and revoke one's tokens) or by the browser session, whose changes
must come from this site (an `Origin` of this host, or the page's CSRF token in `X-CSRFToken`). Errors are `{"error": sentence, "fields": {...}}` with the status that says
what happened: 400 bad input, 401 not signed in, 403 not allowed, 404 unknown, 409 already done
or changed meanwhile, 422 a form's rules broken or a script or service failed on the data (rolled back; an incident).
"""
from __future__ import annotations

from datetime import datetime
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, g, jsonify, request, url_for
from flask_login import current_user
from flask_wtf.csrf import CSRFError, validate_csrf

from engine import access, clock, drafts, inbox, instances, migration, notifications
from engine.credit import CreditList
from engine.customers import Archive
from engine.inbox import InboxQuery
from engine.instances import InstanceQuery
from engine.reports import CapitalReport, SlaReport, parse_query
from engine.runtime import CommandFailed, EngineError

from . import http_status, openapi, receipts, runtime, views, zone, zone_name
from .auth import sign_in_limits

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


# An unknown resource (404), a wrong method (405), a body too large (413): the app's own
# HTTPException handler (web/__init__.py) answers these in the API's JSON shape.


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


def _from_this_site() -> bool:
    """A browser sent this request from one of this site's pages: its Origin (else Referer) is this
    host, or it carries the session's CSRF token. Another site's page — even one of the same site
    on another subdomain or port, which SameSite cookies let through — has neither."""
    origin = request.headers.get("Origin") or request.headers.get("Referer")
    if origin and origin != "null":
        return urlsplit(origin).netloc == request.host
    try:
        validate_csrf(request.headers.get("X-CSRFToken", ""))
    except (CSRFError, Exception):  # a missing, expired or forged token (wtforms' ValidationError)
        return False
    return True


def authenticated(view):
    """Resolve the caller from a bearer token or the session; 401 otherwise. A change made with
    the session cookie must come from this site (CSRF); a bearer token is never sent by a browser
    on its own, so it needs no such check."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            with runtime().store.read() as session:
                who = access.person_for_token(session, header[len("Bearer "):].strip(), clock.now())
            if who is None:
                raise ApiError(401, "the bearer token is not valid (unknown, expired or revoked)")
        elif current_user.is_authenticated:
            if request.method not in ("GET", "HEAD", "OPTIONS") and not _from_this_site():
                raise ApiError(403, "a change made with the browser's session must come from this site: "
                                    "send an Origin of this host or the X-CSRFToken header, or use a bearer token")
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
@sign_in_limits
def issue_token():
    body = _json_body()
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise ApiError(400, "send username and password as strings",
                       {k: "this field is required" for k in ("username", "password") if not body.get(k)})
    now = clock.now()
    with runtime().store.write() as session:
        who = access.check_password(session, username, password)
        if who is None:
            g.sign_in_failed = True  # counted by the sign-in limits
            raise ApiError(401, "wrong username or password")
        token = access.issue_token(session, who.username, now)
    return jsonify({"token": token, "username": who.username, "id": access.token_id(token),
                    "expires_at": _iso(now + access.token_lifetime())}), 201


def _token_json(t: dict) -> dict:
    return {**t, **{k: _iso(t[k]) for k in ("created_at", "expires_at", "revoked_at")}}


@bp.get("/v1/tokens")
@authenticated
def list_tokens():
    with runtime().store.read() as session:
        return jsonify([_token_json(t) for t in access.tokens(session, g.who.username, clock.now())])


@bp.delete("/v1/tokens/<token_id>")
@authenticated
def revoke_token(token_id: str):
    with runtime().store.write() as session:
        if not access.revoke_token(session, g.who.username, token_id, clock.now()):
            raise ApiError(404, f"{g.who.username} has no token {token_id[:40]!r}")
        found = next(t for t in access.tokens(session, g.who.username, clock.now()) if t["id"] == token_id)
    return jsonify(_token_json(found))


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
    return jsonify(views().startable(g.who.username))


@bp.post("/v1/processes/<process_id>/instances")
@authenticated
def start(process_id: str):
    body = _json_body()
    view = runtime().start(process_id, g.who.username, body.get("data", {}),
                           request_id=request.headers.get("Idempotency-Key"))
    return jsonify(view.as_json()), 201


@bp.get("/v1/processes/<process_id>/migration")
@authenticated
def migration_plan(process_id: str):
    """The dry run of moving the running instances of version `from` to version `to` (engine.migration):
    for each, whether it can move, where its waiting tokens land, or why not. Changes nothing."""
    moves = migration.plan(runtime().store, process_id, request.args.get("from"), request.args.get("to"),
                           actor=g.who.username)
    return jsonify([m.as_json() for m in moves])


@bp.post("/v1/processes/<process_id>/migration")
@authenticated
def migrate(process_id: str):
    """Move those that can ({"from": N, "to": M}), each as one logged step; the others stay, with the reason."""
    body = _json_body()
    moves = migration.migrate(runtime().store, process_id, body.get("from"), body.get("to"), actor=g.who.username)
    return jsonify([m.as_json() for m in moves])


# --- the designer's drafts (engine.drafts; the same rules as the /design pages) ---------------------

def _draft_number(raw: str) -> int:
    if not raw.isdigit() or len(raw) > 9 or int(raw) < 1:
        raise ApiError(400, f"the draft number must be a whole number from 1, not {raw[:40]!r}")
    return int(raw)


@bp.get("/v1/processes/<process_id>/drafts")
@authenticated
def process_drafts(process_id: str):
    """A process's drafts, oldest first (designers)."""
    drafts.check_designer(runtime().store, g.who.username)
    return jsonify([d.as_json() for d in drafts.drafts(runtime().store, process_id)])


@bp.post("/v1/processes/<process_id>/drafts")
@authenticated
def save_process_draft(process_id: str):
    """Save `{"files": {name: text}, "based_on_version": N}` as the process's next draft."""
    body = _json_body()
    files, based_on = body.get("files"), body.get("based_on_version")
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise ApiError(400, "files must be an object of file names to their text", {"files": "not an object of texts"})
    if based_on is not None and (isinstance(based_on, bool) or not isinstance(based_on, int) or based_on < 1):
        raise ApiError(400, "based_on_version must be a whole number from 1",
                       {"based_on_version": "not a whole number from 1"})
    number = drafts.save_draft(runtime().store, process_id, files, g.who.username, based_on=based_on)
    return jsonify({"process_id": process_id, "number": number}), 201


@bp.get("/v1/processes/<process_id>/drafts/<number>")
@authenticated
def process_draft(process_id: str, number: str):
    """One draft with its files (designers)."""
    drafts.check_designer(runtime().store, g.who.username)
    files = drafts.draft_files(runtime().store, process_id, _draft_number(number))
    return jsonify({"process_id": process_id, "number": int(number), "files": files})


@bp.post("/v1/processes/<process_id>/drafts/<number>/deploy")
@authenticated
def deploy_process_draft(process_id: str, number: str):
    """Deploy a draft after the lint: 422 with the findings when it finds errors."""
    from engine.definitions import DefinitionError
    try:
        deployed = drafts.deploy_draft(runtime().store, process_id, _draft_number(number), g.who.username)
    except drafts.DraftRefused as exc:
        return jsonify({"error": str(exc), "fields": {}, "findings": [f.as_json() for f in exc.findings]}), 422
    except DefinitionError as exc:
        raise ApiError(422, "the draft does not deploy: " + "; ".join(str(p) for p in exc.problems))
    return jsonify([d.as_json() for d in deployed])


@bp.post("/v1/processes/<process_id>/model-tests")
@authenticated
def model_tests(process_id: str):
    """Run the model tests of a deployed version (engine.modeltests), for designers: body
    `{"version": N}` optional (default: the newest)."""
    from engine import modeltests
    from engine.definitions import DefinitionError
    version = _json_body().get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
        raise ApiError(400, "version must be a whole number from 1", {"version": "not a whole number from 1"})
    try:
        results = modeltests.run_deployed(runtime().store, process_id, version, actor=g.who.username)
    except DefinitionError as exc:  # a version deployed before its cases' rules changed
        raise ApiError(422, "the version's files do not deploy: " + "; ".join(str(p) for p in exc.problems))
    return jsonify({"process_id": process_id, "version": version, "passed": all(r.passed for r in results),
                    "results": [r.as_json() for r in results]})


# What POST /v1/lint takes: diagrams and decision tables (XML), forms and label tables (JSON).
LINT_SUFFIXES = (".bpmn", ".dmn", ".json")


def _lint_files() -> dict[str, bytes]:
    """The files of a lint request: multipart files, or JSON {"files": {name: text}}; 400 unless
    there is at least one, each a .bpmn, .dmn or .json file by name, the diagrams XML text."""
    files: dict[str, bytes] = {}
    if request.files:
        for upload in request.files.getlist("files") or [f for _, f in request.files.items(multi=True)]:
            files[upload.filename or upload.name] = upload.read()
    else:
        given = _json_body().get("files")
        if not isinstance(given, dict) or not all(isinstance(v, str) for v in given.values()):
            raise ApiError(400, 'send the files to lint as multipart files, or as JSON {"files": {"name.bpmn": "text"}}')
        files = {str(name): text.encode("utf-8") for name, text in given.items()}
    if not files:
        raise ApiError(400, "no files were sent: send at least one .bpmn file")
    for name, data in files.items():
        if not name.lower().endswith(LINT_SUFFIXES):
            raise ApiError(400, f"{name} is not a .bpmn, .dmn or form (.json) file")
        if name.lower().endswith((".bpmn", ".dmn")):
            try:
                text = data.decode("utf-8").lstrip("\ufeff \t\r\n")
            except UnicodeDecodeError:
                text = ""
            if not text.startswith("<"):
                raise ApiError(400, f"{name} is not XML: a diagram or decision table is an XML text file")
    return files


@bp.post("/v1/lint")
@authenticated
def lint_models():
    """Lint a designer's files (engine.lint): deploy's problems as errors, what would fail late as
    warnings, each at its file, line and element. Designers only (access.may_deploy)."""
    from engine import lint, versions
    with runtime().store.read() as session:  # who may not lint learns nothing of their files
        versions.check_designer(session, g.who.username)
    files = _lint_files()
    findings = lint.lint(runtime().store, files, actor=g.who.username)
    return jsonify({"findings": [f.as_json() for f in findings]})


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
    detail = views().task_detail(task_id, g.who.username)
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
    return jsonify(runtime().complete(task_id, g.who.username, body.get("data", {}),
                                      request_id=request.headers.get("Idempotency-Key")).as_json())


@bp.post("/v1/tasks/<task_id>/reply")
@authenticated
def reply(task_id: str):
    """The reply to the superior (复命): {"kind": "in_progress", "expected_by": ISO time} or
    {"kind": "cannot_finish", "reason": text}; answered with the task and its due time."""
    body = _json_body()
    return jsonify(runtime().reply(task_id, g.who.username, body.get("kind"), expected_by=body.get("expected_by"),
                                   reason=body.get("reason")).as_json())


@bp.put("/v1/tasks/<task_id>/draft")
@authenticated
def save_draft(task_id: str):
    body = _json_body()
    runtime().save_draft(task_id, g.who.username, body.get("data", {}))
    return jsonify({"task_id": task_id, "draft": views().draft(task_id, g.who.username)})


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


@bp.get("/v1/instances")
@authenticated
def search_instances():
    """The instances the caller may see, as on the instances page: 400 naming a bad parameter, 403
    for scope=all unless an auditor."""
    query = InstanceQuery.from_args(request.args)
    with runtime().store.read() as session:
        page = instances.search(session, g.who, query, clock.now(), zone())
    return jsonify(page.as_json())


@bp.get("/v1/instances/<instance_id>")
@authenticated
def instance(instance_id: str):
    view = runtime().instance(instance_id, viewer=g.who.username)
    return jsonify({**view.as_json(), "comments": [{**c, "at": _iso(c["at"])}
                                                   for c in views().comments(instance_id)]})


@bp.get("/v1/instances/<instance_id>/history")
@authenticated
def history(instance_id: str):
    steps, _ = views().history(instance_id, viewer=g.who.username)
    return jsonify([step.as_json() for step in steps])


@bp.get("/v1/instances/<instance_id>/bundle")
@authenticated
def bundle(instance_id: str):
    """The instance's evidence bundle (a tar file; web.evidence), for auditors; others get the 404
    of an instance that does not exist."""
    from .evidence import bundle_response
    return bundle_response(g.who, instance_id)


@bp.post("/v1/messages/<name>")
@authenticated
def message(name: str):
    body = _json_body()
    correlation = body.get("correlation") or {}
    if not isinstance(correlation, dict):
        raise ApiError(400, "correlation must be an object of KEY: VALUE", {"correlation": "not an object"})
    delivered = runtime().message(name, body.get("data", {}), correlation, actor=g.who.username,
                                  request_id=request.headers.get("Idempotency-Key"))
    return jsonify({"delivered_to": delivered})


@bp.get("/v1/orders")
@authenticated
def orders():
    """Finance's order search, as on the receipts page (web/receipts.py)."""
    if not access.may_record_receipts(g.who):
        raise ApiError(403, f"{g.who.username} may not list orders for receipts: only finance may")
    amount = None
    if (text := request.args.get("amount", "").strip()):
        amount = receipts.number(text)
        if amount is None:
            raise ApiError(400, f"amount must be a number such as 84000 or 84000.50, not {text!r}",
                           {"amount": "not a number"})
    found = receipts.find_orders(request.args.get("order_no", "").strip(),
                                 request.args.get("customer", "").strip(), amount)
    return jsonify(found)


@bp.get("/v1/notifications")
@authenticated
def notices():
    with runtime().store.read() as session:
        rows = notifications.for_user(session, g.who.username)
    return jsonify([{**n, "at": _iso(n["at"])} for n in rows])


# --- customer archives (客户档案): every read recorded, rules in engine.access --------------------

def _archive() -> Archive:
    return Archive(runtime().store)


@bp.get("/v1/customers")
@authenticated
def customers():
    return jsonify(_archive().listing(g.who.username))


@bp.post("/v1/customers")
@authenticated
def create_customer_card():
    body = _json_body()
    made = _archive().create(body.pop("id", None), g.who.username, body)
    return jsonify(made), 201, {"Location": url_for("api.customer_card", customer_id=made["id"])}


@bp.get("/v1/customers/<customer_id>")
@authenticated
def customer_card(customer_id: str):
    return jsonify(_archive().card(customer_id, g.who.username, door="api"))


@bp.patch("/v1/customers/<customer_id>")
@authenticated
def change_customer_card(customer_id: str):
    body = _json_body()
    revision = body.get("revision")
    if revision is not None and (not isinstance(revision, int) or isinstance(revision, bool)):
        raise ApiError(400, "revision must be the card's revision number", {"revision": "not an integer"})
    return jsonify(_archive().update(customer_id, g.who.username, body.get("changes"), revision=revision))


def _limit() -> int:
    text = request.args.get("limit", "200")
    if not text.isdigit() or not 1 <= int(text) <= 1000:
        raise ApiError(400, "limit must be a whole number from 1 to 1000", {"limit": "1 to 1000"})
    return int(text)


@bp.get("/v1/archive-reads")
@authenticated
def archive_reads():
    return jsonify(_archive().reads(g.who.username, customer=request.args.get("customer") or None,
                                    limit=_limit()))


@bp.get("/v1/archive-grants")
@authenticated
def archive_grants():
    return jsonify(_archive().grants(g.who.username, customer=request.args.get("customer") or None))


# --- the credit list (客户信用等级一览表): kept by credit_review, rules in engine.access ----------------

@bp.get("/v1/credit-list")
@authenticated
def credit_list():
    """Every customer's credit level and the changes of level (newest first), or one customer's."""
    listing = CreditList(runtime().store)
    customer = request.args.get("customer") or None
    entries = listing.entries(g.who.username)
    changes = listing.changes(g.who.username, customer=customer, limit=_limit())
    if customer is not None:
        entries = [e for e in entries if e["id"] == customer]
        if not entries:
            raise ApiError(404, f"{customer[:64]} is not a customer on the credit list")
    return jsonify({"customers": entries, "changes": changes})


# --- capital in use of a region (区域资金占用, seed 002 二): engine.reports; rule access.may_see_capital

@bp.get("/v1/regions/<region_id>/capital")
@authenticated
def region_capital(region_id: str):
    """The region's capital in use today: retail customers' goods, stock, overdue contract
    receivables, the 7 % limit on the year's collections, and how far over (+) or under (−) it is."""
    return jsonify(CapitalReport(runtime().store).figure(g.who.username, region_id))


# --- the SLA breach report (engine.reports): the auditor's; rules in engine.access -------------------

def _sla_report() -> SlaReport:
    return SlaReport(runtime().store, zone=zone_name())


@bp.get("/v1/reports/sla")
@authenticated
def sla_report():
    """Breaches grouped by `by` (process, step, person, office, month), with counts and median lateness."""
    query = parse_query(request.args)
    groups = _sla_report().groups(g.who.username, query)
    return jsonify({"by": query.by, "filters": query.filters(), "groups": groups})


@bp.get("/v1/reports/sla/breaches")
@authenticated
def sla_report_breaches():
    """The breaches of one group (a group's `filters`), latest due first."""
    found = _sla_report().breaches(g.who.username, parse_query(request.args))
    return jsonify({"total": found["total"], "breaches": [
        {**b, **{k: _iso(b[k]) for k in ("due_at", "breached_at", "done_at")}} for b in found["breaches"]]})
