"""The Flask application: app factory, extensions (sign-in, CSRF, languages), security headers.

One blueprint per audience (see DESIGN.md): `auth` (sign-in), `account` (one's own password
and API tokens), `inbox` (approvers' pages),
`instances` (the instances one may see, searched),
`customers` (the customer archive and its record of reads), `receipts` (finance's receipts page, 到账登记),
`reports` (the auditor's SLA breach report), `designer` (the process designer's pages and modeller),
`api` (JSON under /api/v1, OpenAPI at /api/openapi.json).
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

import logging

from flask import Flask, current_app, jsonify, render_template, request, session
from flask.sessions import SecureCookieSessionInterface
from flask_babel import Babel, gettext as _
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect
from werkzeug.exceptions import HTTPException, InternalServerError

from engine import clock
from engine.runtime import EngineError, FormRejected, Runtime
from engine.views import Views
from engine.store import PROJECT_ROOT, Store

LANGUAGES = ("zh_CN", "en")
csrf = CSRFProtect()
login_manager = LoginManager()
babel = Babel()
# Sign-in attempts (the page and POST /api/v1/tokens share the counters): refused before any
# password is hashed once a user name or an address has failed too often (see web/auth.py).
limiter = Limiter(key_func=get_remote_address)
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]", "::1")


def _setting(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _demo_setting() -> bool | None:
    """BPM_DEMO: 1/true/on or 0/false/off; unset: demo mode as the database says (engine.access.demo_mode)."""
    raw = os.environ.get("BPM_DEMO", "").strip().lower()
    if raw in ("1", "true", "on", "yes"):
        return True
    if raw in ("0", "false", "off", "no"):
        return False
    return None


def _secure_cookies_setting() -> bool | None:
    """BPM_SECURE_COOKIES: 1/true/on or 0/false/off; unset: secure unless served on localhost."""
    raw = os.environ.get("BPM_SECURE_COOKIES", "").strip().lower()
    if raw in ("1", "true", "on", "yes"):
        return True
    if raw in ("0", "false", "off", "no"):
        return False
    return None


class SessionCookies(SecureCookieSessionInterface):
    """The session cookie is `Secure` (sent over HTTPS only) by BPM_SECURE_COOKIES; when that is
    not set, on every host but localhost, so `make run` works over plain HTTP on one's own machine."""

    def get_cookie_secure(self, app: Flask) -> bool:
        setting = app.config.get("BPM_SECURE_COOKIES")
        if setting is not None:
            return bool(setting)
        host = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else request.host
        return host not in LOCAL_HOSTS


def _secret_key() -> str:
    """BPM_SECRET_KEY, or one generated on first run and kept in instance/secret_key."""
    key = os.environ.get("BPM_SECRET_KEY")
    if key:
        return key
    path = PROJECT_ROOT / "instance" / "secret_key"
    path.parent.mkdir(exist_ok=True)
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


# The engine's kinds of refusal (EngineError.status) as HTTP statuses, for the pages and the API.
# A form's own checks failing is 422; any other bad input (a filter, a body that is not an object) 400.
# A script or service failing on the request's data is 422 too: the step was rolled back and an
# incident records it; the server itself is fine (a 5xx would say otherwise).
_HTTP_STATUS = {"not_found": 404, "forbidden": 403, "conflict": 409, "invalid": 400, "failed": 422}


def http_status(exc: EngineError) -> int:
    return 422 if isinstance(exc, FormRejected) else _HTTP_STATUS.get(exc.status, 400)


def select_locale() -> str:
    """The language chosen in the session, else the browser's preference; Chinese by default."""
    chosen = session.get("lang")
    if chosen in LANGUAGES:
        return chosen
    best = request.accept_languages.best_match(["zh_CN", "zh", "en"])
    return "en" if best == "en" else "zh_CN"


# The largest request body accepted (BPM_MAX_CONTENT_LENGTH bytes): a form with its rows, a JSON
# document with order lines. Larger bodies are refused before they are read.
MAX_CONTENT_LENGTH = int(os.environ.get("BPM_MAX_CONTENT_LENGTH", str(1024 * 1024)))


def _is_api() -> bool:
    return request.path.startswith("/api/")


def _refusal(status: int, message: str):
    """An error in the shape of where it happened: the API's JSON, or the app's own page."""
    if _is_api():
        return jsonify({"error": message, "fields": {}}), status
    return render_template("error.html", message=message, status=status), status


def _has_nul() -> bool:
    """NUL cannot be stored (PostgreSQL refuses it in text) and is never typed by a person."""
    if "\x00" in request.path:
        return True
    sources = [request.args] + ([request.form] if request.mimetype != "application/json" else [])
    for source in sources:
        for key, values in source.lists():
            if "\x00" in key or any("\x00" in v for v in values):
                return True
    return False


def create_app(runtime: Runtime | None = None, config: dict | None = None) -> Flask:
    app = Flask(__name__)
    if runtime is None:
        from processes import LOOKUPS, SERVICES  # the company's services plug into the engine
        runtime = Runtime(Store(), SERVICES, lookups=LOOKUPS)
    config = config or {}
    app.config.update(
        # a key passed in wins; only without one is instance/secret_key read (or made)
        SECRET_KEY=config.get("SECRET_KEY") or _secret_key(),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        BABEL_TRANSLATION_DIRECTORIES=str(Path(__file__).parent / "translations"),
        BABEL_DEFAULT_LOCALE="zh_CN",
        VENDOR_DIR=str(Path(__file__).parent / "static" / "vendor"),
        MAX_CONTENT_LENGTH=MAX_CONTENT_LENGTH,
        BPM_SECURE_COOKIES=_secure_cookies_setting(),
        # Failed sign-ins allowed per user name and per address before sign-in is refused.
        BPM_SIGNIN_LIMIT_USER=_setting("BPM_SIGNIN_LIMIT_USER", "10 per 15 minutes"),
        BPM_SIGNIN_LIMIT_ADDRESS=_setting("BPM_SIGNIN_LIMIT_ADDRESS", "30 per 15 minutes"),
        RATELIMIT_STORAGE_URI=_setting("BPM_RATELIMIT_STORAGE_URI", "memory://"),
        RATELIMIT_HEADERS_ENABLED=False,
        # the zone people read times in (the `when` filter; engine.clock.local_text)
        BPM_TIMEZONE=clock.zone_name(),
        # demo mode (the sign-in page lists the demo users): None = as `bpm init --demo` marked the database
        BPM_DEMO=_demo_setting(),
    )
    app.config.update(config)
    clock.zone(app.config["BPM_TIMEZONE"])  # a zone that is none is refused at start, not on every page
    app.extensions["bpm.runtime"] = runtime
    app.extensions["bpm.views"] = Views(runtime.store, runtime.script_engine)
    app.session_interface = SessionCookies()

    csrf.init_app(app)
    limiter.init_app(app)
    login_manager.init_app(app)
    babel.init_app(app, locale_selector=select_locale)

    from . import account, api, auth, capital, customers, designer, evidence, inbox, instances, receipts, reports
    app.register_blueprint(auth.bp)
    app.register_blueprint(account.bp)
    app.register_blueprint(inbox.bp)
    app.register_blueprint(instances.bp)
    app.register_blueprint(customers.bp)
    app.register_blueprint(receipts.bp)
    app.register_blueprint(reports.bp)
    app.register_blueprint(capital.bp)
    app.register_blueprint(designer.bp)
    app.register_blueprint(evidence.bp)
    app.register_blueprint(api.bp)
    csrf.exempt(api.bp)  # the API authenticates each request by token or session and is JSON-only
    from . import ops
    ops.init_app(app)  # /healthz, /metrics (loopback or BPM_METRICS_TOKEN only)

    @app.before_request
    def refuse_nul():
        if _has_nul():
            return _refusal(400, _("The request contains a NUL character, which no field may hold. "
                                   "Nothing was changed."))
        return None

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        """Every refusal Flask or Werkzeug raises (unknown page, wrong method, body too large) in
        the app's shape and the user's language, never the server's bare page."""
        if isinstance(exc, InternalServerError):
            return server_error(exc)
        status = exc.code or 400
        if _is_api():
            message = {404: f"there is no API resource {request.path}",
                       405: f"{request.method} is not allowed on {request.path}",
                       413: f"the request body is larger than {app.config['MAX_CONTENT_LENGTH']} bytes",
                       429: "too many failed sign-ins for this user or from this address; "
                            "wait and try again later",
                       }.get(status, exc.description or exc.name)
            return jsonify({"error": message, "fields": {}}), status
        message = {404: _("There is no such page."),
                   405: _("This page cannot be used that way."),
                   413: _("What was sent is too large (at most %(size)s bytes). Nothing was changed.",
                          size=app.config["MAX_CONTENT_LENGTH"]),
                   429: _("Too many failed sign-ins for this user or from this address. "
                          "Wait a few minutes and try again."),
                   }.get(status, _("The request was not understood. Nothing was changed."))
        return render_template("error.html", message=message, status=status), status

    @app.errorhandler(Exception)
    def server_error(exc: Exception):
        """A bug: logged in full for the operator, one sentence for the user, still 500."""
        logging.getLogger("bpm.web").error("unexpected error on %s %s", request.method, request.path,
                                           exc_info=exc)
        return _refusal(500, _("Something went wrong on the server; the operator can see what in "
                               "the log. Nothing was changed by this request."))

    @app.after_request
    def security_headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "script-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'self'")
        return response

    return app


def zone_name() -> str:
    """The company's time zone, in which every page shows times and reads days (config
    BPM_TIMEZONE, from the environment's BPM_TIMEZONE at start; checked there)."""
    return current_app.config["BPM_TIMEZONE"]


def zone():
    """`zone_name()` as a ZoneInfo."""
    return clock.zone(zone_name())


def runtime() -> Runtime:
    """The commands: the only code that changes an instance."""
    return current_app.extensions["bpm.runtime"]


def views() -> Views:
    """The reads: what pages and the API show (engine.views)."""
    return current_app.extensions["bpm.views"]
