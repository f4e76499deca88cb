"""`engine.statements.Prepared` writes and reads exactly what SQLAlchemy does, on SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import bindparam, delete, event, exc, insert, select, text, update

from engine.statements import Prepared
from engine.store import Definition, DueTimer, HumanTask, Instance, LogEntry

SHANGHAI = timezone(timedelta(hours=8))
AT = datetime(2026, 11, 23, 9, 30, 15, 123456, tzinfo=SHANGHAI)  # 01:30:15.123456 UTC
DUE = datetime(2026, 11, 24, 18, 0, tzinfo=timezone.utc)
INPUT = {"task_id": "t-1", "data": {"amount": 1234.5, "ok": True, "none": None, "客户": "华东",
                                     "items": [{"sku": "A", "qty": 2}], "nested": {"deep": [1, 2.5]}}}

_H, _L, _T, _I = HumanTask.__table__, LogEntry.__table__, DueTimer.__table__, Instance.__table__
INSERT_TASK, INSERT_LOG, INSERT_TIMER = Prepared(insert(_H)), Prepared(insert(_L)), Prepared(insert(_T))
SELECT_TASK = Prepared(select(_H.c.id, _H.c.created_at, _H.c.due_at, _H.c.amount).where(
    _H.c.id == bindparam("id")))
SELECT_LOG = Prepared(select(_L.c.seq, _L.c.at, _L.c.input).where(_L.c.instance_id == bindparam("iid"))
                      .order_by(_L.c.seq))
UPDATE_DUE = Prepared(update(_H).where(_H.c.instance_id == bindparam("w_iid"))
                      .values(due_at=bindparam("v_due")))
DELETE_TASKS = Prepared(delete(_H).where(_H.c.instance_id == bindparam("iid")))


@pytest.fixture
def instance_id(store):
    """A deployed definition (stand-in) and one instance, written through SQLAlchemy."""
    with store.write() as session:
        definition = Definition(process_id="p", version=1, name="p", content_hash="0" * 64, files={},
                                spec="{}", lane_roles={}, deployed_by="design.yang", deployed_at=AT)
        session.add(definition)
        session.flush()
        session.add(Instance(id="i-1", definition_id=definition.id, process_id="p", status="running",
                             initiator="rep.wang", state="{}", state_hash="0" * 64, revision=1,
                             log_hash="0" * 64, created_at=AT, updated_at=AT))
    return "i-1"


def task_row(task_id: str, instance_id: str, **changes) -> dict:
    row = {"id": task_id, "instance_id": instance_id, "process_id": "p", "element_id": "review",
           "name": "Review 审批", "role": "dept_manager", "assignee": None, "form": None,
           "business_key": "SO-1", "customer": "C-1", "amount": 1234.5, "created_at": AT, "due_at": DUE}
    return {**row, **changes}


def log_row(instance_id: str, seq: int) -> dict:
    return {"instance_id": instance_id, "seq": seq, "at": AT, "actor": "rep.wang", "command": "complete",
            "task_id": "t-1", "input": INPUT, "state_hash": "a" * 64, "prev_hash": "b" * 64,
            "hash": "c" * 64}


def stored(store, table: str, columns: list[str], where: str, value) -> tuple:
    """The columns as the database holds them (text on both backends), and on SQLite their storage class."""
    if store.is_sqlite:
        listed = ", ".join(f"{c}, typeof({c})" for c in columns)
    else:
        listed = ", ".join(f"CAST({c} AS TEXT), pg_typeof({c})::text" for c in columns)
    with store.engine.connect() as conn:
        return tuple(conn.execute(text(f"SELECT {listed} FROM {table} WHERE {where} = :v"), {"v": value}).one())


def test_rows_written_are_the_rows_sqlalchemy_writes(store, instance_id):
    with store.transaction() as conn:
        INSERT_TASK.execute(conn, task_row("t-prepared", instance_id))
        conn.execute(insert(_H), [task_row("t-core", instance_id)])
        INSERT_LOG.execute(conn, log_row(instance_id, 2))
        conn.execute(insert(_L), [log_row(instance_id, 3)])
    columns = [c.key for c in _H.c if c.key != "id"]
    assert stored(store, "human_task", columns, "id", "t-prepared") == \
        stored(store, "human_task", columns, "id", "t-core")
    columns = [c.key for c in _L.c if c.key not in ("id", "seq")]
    assert stored(store, "log_entry", columns, "seq", 2) == stored(store, "log_entry", columns, "seq", 3)
    with store.read() as session:
        prepared, core = session.get(HumanTask, "t-prepared"), session.get(HumanTask, "t-core")
        assert prepared.created_at == AT and prepared.created_at.utcoffset() == timedelta(0)
        assert prepared.due_at == DUE == core.due_at and prepared.amount == 1234.5
        entries = session.scalars(select(LogEntry).order_by(LogEntry.seq)).all()
        assert [e.input for e in entries] == [INPUT, INPUT] and entries[0].at == AT == entries[1].at
        # What the inbox and the timer worker ask through SQLAlchemy sees both rows the same way.
        due = session.scalars(select(HumanTask.id).where(HumanTask.due_at <= DUE).order_by(HumanTask.id)).all()
        assert due == ["t-core", "t-prepared"]
        assert session.scalars(select(HumanTask.id).where(HumanTask.due_at < DUE)).all() == []


def test_scalar_column_defaults_are_filled_in_as_sqlalchemy_does(store, instance_id):
    row = {"instance_id": instance_id, "element_id": "cool_off", "due_at": DUE}
    with store.transaction() as conn:
        INSERT_TIMER.executemany(conn, [{**row, "id": "d-prepared-1"}, {**row, "id": "d-prepared-2"}])
        conn.execute(insert(_T), [{**row, "id": "d-core"}])
    columns = [c.key for c in _T.c if c.key != "id"]
    expected = stored(store, "due_timer", columns, "id", "d-core")
    assert stored(store, "due_timer", columns, "id", "d-prepared-1") == expected
    assert stored(store, "due_timer", columns, "id", "d-prepared-2") == expected
    with store.read() as session:
        assert {t.kind for t in session.scalars(select(DueTimer))} == {DueTimer.kind.default.arg}


def test_rows_read_are_the_rows_sqlalchemy_reads(store, instance_id):
    with store.transaction() as conn:
        INSERT_TASK.executemany(conn, [task_row("t-1", instance_id), task_row("t-2", instance_id, due_at=None)])
        for seq in (2, 3):
            INSERT_LOG.execute(conn, log_row(instance_id, seq))
    with store.transaction() as conn:
        for task_id in ("t-1", "t-2"):
            assert SELECT_TASK.first(conn, {"id": task_id}) == tuple(
                conn.execute(SELECT_TASK.statement, {"id": task_id}).one())
        mine = SELECT_TASK.first(conn, {"id": "t-1"})
        assert mine.created_at == AT and mine.created_at.utcoffset() == timedelta(0) and mine.due_at == DUE
        assert SELECT_TASK.first(conn, {"id": "t-2"}).due_at is None
        assert SELECT_TASK.first(conn, {"id": "nope"}) is None
        entries = SELECT_LOG.all(conn, {"iid": instance_id})
        assert entries == [tuple(r) for r in conn.execute(SELECT_LOG.statement, {"iid": instance_id})]
        assert [(e.seq, e.at, e.input) for e in entries] == [(2, AT, INPUT), (3, AT, INPUT)]


def test_rowcount_and_the_transaction_are_sqlalchemys(store, instance_id):
    with store.transaction() as conn:
        INSERT_TASK.executemany(conn, [task_row("t-1", instance_id), task_row("t-2", instance_id)])
    with pytest.raises(RuntimeError):
        with store.transaction() as conn:
            assert UPDATE_DUE.execute(conn, {"w_iid": instance_id, "v_due": AT}) == 2
            assert UPDATE_DUE.execute(conn, {"w_iid": "other", "v_due": AT}) == 0
            assert DELETE_TASKS.execute(conn, {"iid": instance_id}) == 2
            raise RuntimeError("roll back")
    with store.read() as session:  # rolled back by SQLAlchemy, as if the statements were its own
        assert sorted((t.id, t.due_at) for t in session.scalars(select(HumanTask))) == [("t-1", DUE), ("t-2", DUE)]
    with store.read() as session:  # an ORM session is accepted too (its connection is used)
        assert SELECT_TASK.first(session, {"id": "t-1"}).due_at == DUE


def test_errors_are_sqlalchemys(store, instance_id):
    with pytest.raises(exc.StatementError, match="naive datetime"):
        with store.transaction() as conn:
            INSERT_TASK.execute(conn, task_row("t-naive", instance_id, created_at=datetime(2026, 1, 1)))
    with pytest.raises(exc.StatementError, match="A value is required for bind parameter 'id'"):
        with store.transaction() as conn:
            SELECT_TASK.first(conn, {})
    with store.transaction() as conn:
        INSERT_TASK.execute(conn, task_row("t-1", instance_id))
    with pytest.raises(exc.IntegrityError):
        with store.transaction() as conn:
            INSERT_TASK.execute(conn, task_row("t-1", instance_id))
    with pytest.raises(exc.IntegrityError):
        with store.transaction() as conn:
            INSERT_TASK.executemany(conn, [task_row("t-9", instance_id), task_row("t-9", instance_id)])
    with store.read() as session:
        assert session.scalars(select(HumanTask.id)).all() == ["t-1"]


def test_cursor_events_see_every_statement(store, instance_id):
    seen = []

    def before(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, executemany))

    event.listen(store.engine, "before_cursor_execute", before)
    try:
        with store.transaction() as conn:
            seen.clear()
            INSERT_TASK.execute(conn, task_row("t-1", instance_id))
            INSERT_TASK.executemany(conn, [task_row("t-2", instance_id), task_row("t-3", instance_id)])
            SELECT_TASK.first(conn, {"id": "t-1"})
    finally:
        event.remove(store.engine, "before_cursor_execute", before)
    assert [many for _, many in seen] == [False, True, False]
    assert seen[0][0] == INSERT_TASK.plan(store.engine.dialect, task_row("t-1", instance_id)).sql


def test_compiled_once_per_dialect_and_names(store):
    dialect = store.engine.dialect
    first = SELECT_TASK.plan(dialect, {"id": "a"})
    assert SELECT_TASK.plan(dialect, {"id": "b"}) is first
    row = task_row("t", "i")
    assert INSERT_TASK.plan(dialect, row) is INSERT_TASK.plan(dialect, dict(row))
    fewer = {k: v for k, v in row.items() if k != "due_at"}
    assert "due_at" not in INSERT_TASK.plan(dialect, fewer).sql  # compiled for the names given
    assert "RETURNING" not in INSERT_LOG.plan(dialect, log_row("i", 1)).sql
