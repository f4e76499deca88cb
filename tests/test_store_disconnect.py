"""PostgreSQL connections: no ping per checkout, and a connection the server ended is replaced
at checkout instead of failing the next command (engine.store._stale_connections_replaced)."""
from __future__ import annotations

import select
import time

import psycopg
import pytest
from sqlalchemy import text

from engine.store import Store


@pytest.fixture
def pg_store(postgres_database):
    store = Store(postgres_database)
    yield store
    store.dispose()


def _counting_pings(store: Store, monkeypatch) -> list[int]:
    pings: list[int] = []
    real = store.engine.dialect.do_ping
    monkeypatch.setattr(store.engine.dialect, "do_ping", lambda c: pings.append(1) or real(c))
    return pings


def _terminate(store: Store, postgres_database: str) -> int:
    """End the backend of the pooled connection from outside, as a server restart would; wait
    (bounded) until the pooled connection's socket shows it."""
    with store.engine.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        raw = conn.connection.dbapi_connection
    with psycopg.connect(postgres_database.replace("postgresql+psycopg://", "postgresql://"),
                         autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
    deadline = time.monotonic() + 10
    while not select.select([raw.fileno()], [], [], 0.05)[0]:
        assert time.monotonic() < deadline, "the terminated connection never became readable"
    return pid


def test_a_live_pooled_connection_is_not_pinged(pg_store, monkeypatch):
    pings = _counting_pings(pg_store, monkeypatch)
    for _ in range(20):
        with pg_store.transaction() as conn:
            conn.execute(text("SELECT 1"))
        with pg_store.read() as session:
            session.execute(text("SELECT 1"))
    assert pings == []


def test_a_connection_the_server_ended_is_replaced_before_the_next_transaction(pg_store, postgres_database,
                                                                                 monkeypatch):
    pings = _counting_pings(pg_store, monkeypatch)
    with pg_store.transaction() as conn:
        conn.execute(text("SELECT 1"))
    old = _terminate(pg_store, postgres_database)
    with pg_store.transaction() as conn:  # no error: the pool connected afresh at checkout
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar() != old
    assert pings == [1]  # the one readable connection was pinged, and failed
    with pg_store.read() as session:
        session.execute(text("SELECT 1"))
    assert pings == [1]
