"""The Flask application: app factory, extensions (sign-in, CSRF, languages), security headers.

One blueprint per audience (see DESIGN.md): `auth` (sign-in), `inbox` (approvers' pages),
`customers` (the customer archive and its record of reads),
`api` (JSON under /api/v1, OpenAPI at /api/openapi.json).
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from flask import Flask, request, session
from flask_babel import Babel
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

from engine.runtime import EngineError, FormRejected, Runtime
from engine.store import PROJECT_ROOT, Store

LANGUAGES = ("zh_CN", "en")
csrf = CSRFProtect()
login_manager = LoginManager()
babel = Babel()


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
_HTTP_STATUS = {"not_found": 404, "forbidden": 403, "conflict": 409, "invalid": 400, "failed": 500}


def http_status(exc: EngineError) -> int:
    return 422 if isinstance(exc, FormRejected) else _HTTP_STATUS.get(exc.status, 400)


def select_locale() -> str:
    """The language chosen in the session, else the browser's preference; Chinese by default."""
    chosen = session.get("lang")
    if chosen in LANGUAGES:
        return chosen
    best = request.accept_languages.best_match(["zh_CN", "zh", "en"])
    return "en" if best == "en" else "zh_CN"


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
    )
    app.config.update(config)
    app.extensions["bpm.runtime"] = runtime

    csrf.init_app(app)
    login_manager.init_app(app)
    babel.init_app(app, locale_selector=select_locale)

    from . import api, auth, customers, inbox
    app.register_blueprint(auth.bp)
    app.register_blueprint(inbox.bp)
    app.register_blueprint(customers.bp)
    app.register_blueprint(api.bp)
    csrf.exempt(api.bp)  # the API authenticates each request by token or session and is JSON-only

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


def runtime() -> Runtime:
    from flask import current_app
    return current_app.extensions["bpm.runtime"]
