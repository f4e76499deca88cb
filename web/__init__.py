"""The Flask application: a status page until the approver's web app lands."""
from __future__ import annotations

from flask import Flask
from sqlalchemy import func, select

from engine.store import Definition, HumanTask, Instance, Store


def create_app(store: Store | None = None) -> Flask:
    app = Flask(__name__)
    app.config["STORE"] = store or Store()

    @app.get("/")
    def status():
        with app.config["STORE"].read() as session:
            definitions = session.scalar(select(func.count()).select_from(Definition))
            instances = session.scalar(select(func.count()).select_from(Instance))
            tasks = session.scalar(select(func.count()).select_from(HumanTask))
        return (f"<!doctype html><meta charset=utf-8><title>BPM</title>"
                f"<h1>BPM engine is running</h1><p>{definitions} deployed versions, "
                f"{instances} instances, {tasks} open tasks.</p>"
                f"<p>The approver's web app comes next; use the <code>bpm</code> command meanwhile.</p>")

    return app
