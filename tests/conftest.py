"""Fixtures: a migrated database on SQLite and, when `BPM_TEST_POSTGRES_URL` is set, on PostgreSQL.

CI sets `BPM_TEST_POSTGRES_URL`; there a missing PostgreSQL fails the run instead of skipping.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

from datetime import datetime, timezone

from engine import access, credit
from engine.runtime import Runtime
from engine.store import Base, DueTimer, HumanTask, Instance, LogEntry, MessageWait, Store, migrate

DATA = Path(__file__).parent / "data"
LISTED_AT = datetime(2026, 11, 1, 1, 0, tzinfo=timezone.utc)  # when the demo credit list was drawn up
POSTGRES_URL = os.environ.get("BPM_TEST_POSTGRES_URL")


@pytest.fixture(scope="session")
def postgres_database():
    """A throw-away database on the PostgreSQL server, migrated once, dropped at the end."""
    if not POSTGRES_URL:
        if os.environ.get("CI"):
            pytest.fail("CI must run the PostgreSQL tests: BPM_TEST_POSTGRES_URL is not set")
        pytest.skip("PostgreSQL tests need BPM_TEST_POSTGRES_URL "
                    "(e.g. postgresql://postgres@127.0.0.1:5432/test)")
    admin_url = POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1)
    name = f"bpm_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    store = Store(url)
    migrate(store)
    store.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _seed_credit_list(session) -> None:
    """The demo customers on the credit list (engine.credit): the processes read their levels there."""
    from processes.customers import DEMO_CREDIT_LIST
    credit.seed(session, DEMO_CREDIT_LIST, LISTED_AT)


def _empty(store: Store) -> None:
    with store.engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = Store(f"sqlite:///{tmp_path / 'bpm.sqlite3'}")
        migrate(s)
    else:
        s = Store(request.getfixturevalue("postgres_database"))
        _empty(s)
    with s.write() as session:
        access.seed_demo(session)
        _seed_credit_list(session)
    yield s
    s.dispose()


@pytest.fixture
def sqlite_store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'bpm.sqlite3'}")
    migrate(s)
    with s.write() as session:
        access.seed_demo(session)
        _seed_credit_list(session)
    yield s
    s.dispose()


@pytest.fixture
def runtime(store):
    return Runtime(store)


# --- helpers the test files share ------------------------------------------------------------------

def snapshot(store, instance_id: str) -> dict:
    """Everything a command may change for one instance: compared before and after a refused command."""
    with store.read() as s:
        row = s.get(Instance, instance_id)

        def count(table):
            return s.scalar(select(func.count()).select_from(table).where(table.instance_id == instance_id))
        return {
            "state_hash": row.state_hash, "revision": row.revision, "status": row.status,
            "log": count(LogEntry), "timers": count(DueTimer), "waits": count(MessageWait),
            "tasks": sorted((t.id, t.element_id, t.assignee) for t in s.scalars(
                select(HumanTask).where(HumanTask.instance_id == instance_id))),
        }


def instances(store) -> int:
    """How many instances the database holds (a refused start must not add one)."""
    with store.read() as s:
        return s.scalar(select(func.count()).select_from(Instance))


def contract(**changes) -> dict:
    """contract_review start data on its standard path (every negotiated term as quoted: price,
    discount within the quote's band, payment terms, delivery date), with `changes`."""
    data = {
        "customer": "C-B01", "amount": 260000, "quote_price": 520, "price": 520,
        "allowed_discount": 3, "discount": 0,
        "quote_payment_terms": "30% 定金，发货前付清", "payment_terms": "30% 定金，发货前付清",
        "quote_delivery_date": "2027-01-15", "delivery_date": "2027-01-15",
        "lines": [{"product": "芝麻灰花岗岩板", "spec": "600x600x20", "quantity": 500, "unit_price": 520}],
    }
    if "amount" in changes and "lines" not in changes:  # one line that adds up to the amount asked for
        price = changes.get("price", data["price"])
        data["lines"] = [{**data["lines"][0], "quantity": changes["amount"] / price, "unit_price": price}]
    data.update(changes)
    return data


def views_of(rt):
    """The read side (engine.views) over the runtime's store: what pages and the API show."""
    from engine.views import Views
    return Views(rt.store, rt.script_engine)


def history_json(rt, instance_id: str) -> list[dict]:
    """An instance's steps as the API gives them."""
    return [step.as_json() for step in views_of(rt).history(instance_id)[0]]
