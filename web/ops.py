"""What an operator's tools read: `/healthz` (database reachable, schema at the newest migration)
and `/metrics` (Prometheus text: requests, command latency, open incidents, due timers and their
lateness, mail waiting).

Neither shows any business data: /healthz answers ok or what is wrong, /metrics counts and
durations labelled only by endpoint name, HTTP method and status, and command name. Still,
/metrics is served only to a scraper on this machine (a loopback address, with no proxy header:
a reverse proxy on the same machine must not pass it through) or to one presenting
`Authorization: Bearer <BPM_METRICS_TOKEN>` when that setting is made; anyone else gets 404.

Under gunicorn (`bpm serve --processes N`) every server process counts in files under
PROMETHEUS_MULTIPROC_DIR, and a scrape of any one of them sums all (prometheus_client's
multiprocess mode). The timer worker runs in a process of its own, so the timer figures are read
from the database at each scrape, whichever process answers.
"""
from __future__ import annotations

import hmac
import os
import time
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import func, select, text

from engine import clock, observe
from engine.store import DueTimer, Incident, Outbox, Store

bp = Blueprint("ops", __name__)

_LOCAL = CollectorRegistry()  # this process's counters (without PROMETHEUS_MULTIPROC_DIR)
REQUESTS = Counter("bpm_http_requests", "HTTP requests answered", ["endpoint", "method", "status"],
                   registry=_LOCAL)
REQUEST_SECONDS = Histogram("bpm_http_request_seconds", "time to answer an HTTP request", ["method"],
                            registry=_LOCAL)
COMMAND_SECONDS = Histogram("bpm_command_seconds", "time of one engine command (one unit of work)",
                            ["command", "outcome"], registry=_LOCAL,
                            buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
PROXY_HEADERS = ("X-Forwarded-For", "X-Real-IP", "Forwarded")
LOOPBACK = {"127.0.0.1", "::1"}


def _command_observed(command: str, seconds: float, ok: bool) -> None:
    COMMAND_SECONDS.labels(command, "ok" if ok else "failed").observe(seconds)


@lru_cache(maxsize=1)
def schema_head() -> str:
    """The newest migration of engine/migrations, as Alembic names it."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).resolve().parent.parent / "engine" / "migrations"))
    return ScriptDirectory.from_config(config).get_current_head() or ""


def health(store: Store) -> tuple[dict, int]:
    """{"status": "ok"|"failing", "database", "schema"}: 200 when the database answers and its
    schema is the newest migration, 503 otherwise (the sentence says which)."""
    head = schema_head()
    try:
        with store.transaction() as conn:
            current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return {"status": "failing", "database": f"the database does not answer: {first}",
                "schema": None}, 503
    if current != head:
        return {"status": "failing", "database": "ok",
                "schema": f"the database is at migration {current}, this code needs {head} "
                          f"(run `bpm init` if the code is the newer)"}, 503
    return {"status": "ok", "database": "ok", "schema": current}, 200


class _Database:
    """Gauges read from the database at each scrape: the same figures whichever process answers."""

    def __init__(self, store: Store):
        self.store = store

    def collect(self):
        now = clock.now()
        _T, _X, _O = DueTimer.__table__, Incident.__table__, Outbox.__table__
        with self.store.transaction() as conn:
            due, oldest = conn.execute(select(func.count(), func.min(_T.c.due_at)).where(_T.c.due_at <= now)).one()
            incidents = conn.execute(select(func.count()).select_from(_X).where(_X.c.status == "open")).scalar()
            mail = conn.execute(select(func.count()).select_from(_O).where(_O.c.status == "pending")).scalar()
        yield GaugeMetricFamily("bpm_timers_due", "due timers, reminders and escalations not fired yet "
                                "(the worker's queue)", value=due)
        lateness = (now - oldest).total_seconds() if isinstance(oldest, datetime) else 0.0
        yield GaugeMetricFamily("bpm_timer_lateness_seconds", "how long the oldest due timer not fired yet "
                                "has been due (0 when none is)", value=max(lateness, 0.0))
        yield GaugeMetricFamily("bpm_incidents_open", "incidents not resolved", value=incidents)
        yield GaugeMetricFamily("bpm_mail_waiting", "notification mails waiting in the outbox", value=mail)


def may_read_metrics() -> bool:
    """The scraper on this machine (loopback, no proxy header) or the holder of BPM_METRICS_TOKEN."""
    token = current_app.config.get("BPM_METRICS_TOKEN") or ""
    given = request.headers.get("Authorization", "")
    if token and given.startswith("Bearer ") and hmac.compare_digest(given[7:].encode(), token.encode()):
        return True
    return request.remote_addr in LOOPBACK and not any(h in request.headers for h in PROXY_HEADERS)


@bp.get("/healthz")
def healthz():
    body, status = health(current_app.extensions["bpm.runtime"].store)
    return jsonify(body), status


@bp.get("/metrics")
def metrics():
    if not may_read_metrics():
        return Response("not found\n", status=404, mimetype="text/plain")
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        counted = CollectorRegistry()
        MultiProcessCollector(counted)
    else:
        counted = _LOCAL
    database = CollectorRegistry()
    database.register(_Database(current_app.extensions["bpm.runtime"].store))
    body = generate_latest(counted) + generate_latest(database)
    return Response(body, mimetype="text/plain; version=0.0.4; charset=utf-8")


def init_app(app: Flask) -> None:
    """Register the two pages and count every request and every command of this process."""
    app.config.setdefault("BPM_METRICS_TOKEN", os.environ.get("BPM_METRICS_TOKEN", ""))
    app.register_blueprint(bp)
    observe.on_command(_command_observed)

    @app.before_request
    def started():
        g.ops_started = time.perf_counter()

    @app.after_request
    def counted(response):
        started_at = g.get("ops_started")
        if started_at is not None:
            endpoint = request.url_rule.endpoint if request.url_rule is not None else "unknown"
            REQUESTS.labels(endpoint, request.method, str(response.status_code)).inc()
            REQUEST_SECONDS.labels(request.method).observe(time.perf_counter() - started_at)
        return response
