"""The unit of work's SQL, compiled once per dialect and run on the DBAPI cursor.

A command runs about seven statements. Through `Connection.execute` each costs ~65 µs of
SQLAlchemy bookkeeping (cache key, execution context, result metadata) on top of the ~5 µs the
driver needs. `Prepared` keeps what SQLAlchemy computes for a statement and reuses it.

Compiled once per dialect — the engine's `Dialect` object, so per-engine settings such as the
JSON serializer are honoured — and, for INSERT and UPDATE, per set of parameter names, because
SQLAlchemy compiles those with `column_keys` taken from the parameters (which columns an INSERT
names, which Python-side defaults it fills in). From the `SQLCompiler` it keeps:

- the SQL string (`Compiled.string`), including PostgreSQL's bind casts (`%(x)s::VARCHAR`);
- the parameter order of positional paramstyles (`SQLCompiler.positiontup`: sqlite's qmark) or
  the rendered names of named ones (`SQLCompiler.escaped_bind_names`: psycopg's pyformat);
- scalar Python-side column defaults the statement needs (`SQLCompiler.insert_prefetch` /
  `update_prefetch`, e.g. `DueTimer.kind` default `"timer"`), filled in as SQLAlchemy does.

Each execution builds its parameters with `SQLCompiler.construct_params`, as SQLAlchemy does (so
literal values inside the statement such as `status == "open"` or `LIMIT 1`, and a missing
required value, behave the same), then runs the bind processors. These are the types' own,
obtained through public API: `type.dialect_impl(dialect).bind_processor(dialect)` — the same
objects SQLAlchemy memoises as `compiled._bind_processors` (`TypeEngine._cached_bind_processor`
is `_dialect_info(dialect)["impl"].bind_processor(dialect)`, and `dialect_impl` returns that
impl). A `TypeDecorator` such as `engine.store.UTCDateTime` thus runs `process_bind_param` and
then the dialect's own conversion (SQLite's datetime-to-text, JSON serialisation, psycopg's
`Json` wrapper): a row written here is byte-identical to one SQLAlchemy writes. Result processors
likewise: `column.type.dialect_impl(dialect).result_processor(dialect, coltype)` with `coltype`
from `cursor.description`, as `CursorResultMetaData` does (datetimes and JSON read on SQLite come
back as aware datetimes and dicts). Rows are named tuples of the statement's column keys.

The statement runs on the DBAPI connection under the SQLAlchemy `Connection`
(`Connection.connection.dbapi_connection`), inside the transaction SQLAlchemy began (or
autobegins, as `Connection.execute` would), so BEGIN, COMMIT and ROLLBACK stay SQLAlchemy's.
Single executions go through `Connection._cursor_execute`, the one private method relied on for
running: it is SQLAlchemy's own primitive for running a string on a cursor (it runs sequences and
column defaults) and gives the same `before_cursor_execute`/`after_cursor_execute` events, echo
logging, `do_execute` dialect hooks and DBAPI error handling (wrapping into
`sqlalchemy.exc.DBAPIError` subclasses, invalidation on disconnect) as a normal execution. A
failure while building the parameters (a naive datetime, data JSON cannot encode) goes through
`Connection._handle_dbapi_exception` and surfaces as the `StatementError` `Connection.execute`
raises. Events receive `context=None` (no `ExecutionContext` is built), and the Core-level
`before_execute`/`after_execute` events do not fire.

Refused when first compiled: statements whose SQL depends on the parameter values (expanding
`IN`, literal-execute parameters), Python-side defaults that are not scalars (callables, SQL
expressions, sequences), numeric paramstyles. An INSERT is compiled `inline()`: it does not fetch
generated primary keys (no `RETURNING` on PostgreSQL); the engine never reads them back.
"""
from __future__ import annotations

import weakref
from collections import namedtuple
from typing import Any, Mapping, Sequence

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import ClauseElement


class _Plan:
    """One statement compiled for one dialect (and, for INSERT/UPDATE, one set of keys)."""

    __slots__ = ("sql", "compiled", "order", "names", "processors", "positional", "defaults",
                 "results")

    def __init__(self, statement: ClauseElement, dialect: Dialect, keys: Sequence[str] | None):
        if dialect.paramstyle.startswith("numeric"):
            raise ValueError(f"Prepared does not support the {dialect.paramstyle} paramstyle")
        compiled = statement.compile(dialect=dialect, column_keys=list(keys) if keys is not None else None)
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError("Prepared cannot run a statement whose SQL depends on its parameters "
                             f"(expanding or literal-execute parameters): {compiled.string!r}")
        defaults = {}
        for columns, attribute in ((getattr(compiled, "insert_prefetch", ()), "default"),
                                   (getattr(compiled, "update_prefetch", ()), "onupdate")):
            for column in columns:
                default = getattr(column, attribute)
                if default is None or not default.is_scalar:
                    raise ValueError(f"Prepared fills in scalar column defaults only; give "
                                     f"{column} explicitly: {compiled.string!r}")
                defaults[column.key] = default.arg
        self.defaults: dict[str, Any] = defaults
        self.sql: str = compiled.string
        self.compiled = compiled
        self.positional: bool = bool(compiled.positional)
        by_name = {name: bind for bind, name in compiled.bind_names.items()}
        # The (unescaped) bind names in the order the DBAPI wants them, and for named
        # paramstyles the name each is rendered as.
        self.order: tuple[str, ...] = tuple(compiled.positiontup if self.positional else by_name)
        escaped = compiled.escaped_bind_names or {}
        self.names: tuple[str, ...] = tuple(escaped.get(n, n) for n in self.order)
        self.processors: tuple = tuple(by_name[n].type.dialect_impl(dialect).bind_processor(dialect)
                                       for n in self.order)
        # (type codes of cursor.description, result processors for them), replaced as a whole
        self.results: tuple = (None, ())

    def parameters(self, params: Mapping[str, Any] | None):
        if self.defaults:
            params = {**self.defaults, **(params or {})}
        values = self.compiled.construct_params(params, escape_names=False)
        ordered = [values[n] if p is None else p(values[n]) for n, p in zip(self.order, self.processors)]
        return tuple(ordered) if self.positional else dict(zip(self.names, ordered))

    def row_processors(self, statement: ClauseElement, dialect: Dialect, description) -> tuple:
        codes = tuple(d[1] for d in description)
        known, processors = self.results
        if codes != known:
            columns = list(statement.exported_columns)
            if len(columns) != len(codes):
                raise ValueError(f"the statement returned {len(codes)} columns, expected "
                                 f"{len(columns)}: {self.sql!r}")
            processors = tuple(c.type.dialect_impl(dialect).result_processor(dialect, code)
                               for c, code in zip(columns, codes))
            self.results = (codes, processors)
        return processors


class Prepared:
    """A Core statement compiled once per dialect and executed on the DBAPI cursor."""

    def __init__(self, statement: ClauseElement):
        self._keyed = bool(getattr(statement, "is_insert", False) or getattr(statement, "is_update", False))
        if getattr(statement, "is_insert", False):
            statement = statement.inline()
        self.statement = statement
        keys = list(statement.exported_columns.keys())
        if len(set(keys)) != len(keys):
            raise ValueError(f"Prepared needs distinct column names; label the duplicates: {keys}")
        self.Row = namedtuple("Row", keys) if keys else None
        self._plans: weakref.WeakKeyDictionary[Dialect, dict] = weakref.WeakKeyDictionary()
        self._last: tuple = (None, None, None)  # (dialect, keys, plan) of the last execution

    def __repr__(self) -> str:
        return f"Prepared({str(self.statement)!r})"

    # --- compiling ---

    def plan(self, dialect: Dialect, params: Mapping[str, Any] | None = None) -> _Plan:
        """The statement compiled for `dialect` (and for INSERT/UPDATE the names in `params`)."""
        keys = tuple(params or ()) if self._keyed else None
        last_dialect, last_keys, plan = self._last
        if dialect is last_dialect and keys == last_keys:
            return plan
        plans = self._plans.get(dialect)
        if plans is None:
            plans = self._plans[dialect] = {}
        plan = plans.get(keys)
        if plan is None:
            plan = plans[keys] = _Plan(self.statement, dialect, keys)
        self._last = (dialect, keys, plan)
        return plan

    # --- running ---

    def first(self, executor: Connection | Session, params: Mapping[str, Any] | None = None):
        """The first row, or None (the rest are discarded, as `Result.first()` does)."""
        conn, plan, cursor = self._run(executor, params)
        try:
            row = cursor.fetchone()
            return None if row is None else self._rows(conn, plan, cursor, [row])[0]
        finally:
            cursor.close()

    def all(self, executor: Connection | Session, params: Mapping[str, Any] | None = None) -> list:
        conn, plan, cursor = self._run(executor, params)
        try:
            return self._rows(conn, plan, cursor, cursor.fetchall())
        finally:
            cursor.close()

    def execute(self, executor: Connection | Session, params: Mapping[str, Any] | None = None) -> int:
        """Run an INSERT/UPDATE/DELETE; returns the DBAPI rowcount (rows matched)."""
        _, _, cursor = self._run(executor, params)
        try:
            return cursor.rowcount
        finally:
            cursor.close()

    def executemany(self, executor: Connection | Session, rows: Sequence[Mapping[str, Any]]) -> None:
        """One execution per parameter set, compiled for the first set's names, as
        `Connection.execute(statement, [...])` does; a single set is a plain execute."""
        if len(rows) <= 1:
            if rows:
                self.execute(executor, rows[0])
            return
        conn = self._connection(executor)
        plan = self.plan(conn.dialect, rows[0])
        try:
            parameters = [plan.parameters(r) for r in rows]
        except Exception as exc:
            conn._handle_dbapi_exception(exc, plan.sql, list(rows), None, None)
        cursor = conn.connection.dbapi_connection.cursor()
        sql = plan.sql
        try:
            for listener in conn.dispatch.before_cursor_execute:
                sql, parameters = listener(conn, cursor, sql, parameters, None, True)
            try:
                conn.dialect.do_executemany(cursor, sql, parameters, None)
            except BaseException as exc:
                conn._handle_dbapi_exception(exc, sql, parameters, cursor, None)
            conn.dispatch.after_cursor_execute(conn, cursor, sql, parameters, None, True)
        finally:
            cursor.close()

    # --- internals ---

    @staticmethod
    def _connection(executor: Connection | Session) -> Connection:
        conn = executor.connection() if isinstance(executor, Session) else executor
        if not conn.in_transaction():
            conn.begin()  # what Connection.execute does (autobegin)
        return conn

    def _run(self, executor: Connection | Session, params: Mapping[str, Any] | None):
        conn = self._connection(executor)
        plan = self.plan(conn.dialect, params)
        try:
            parameters = plan.parameters(params)
        except Exception as exc:  # the StatementError Connection.execute raises
            conn._handle_dbapi_exception(exc, plan.sql, params, None, None)
        cursor = conn.connection.dbapi_connection.cursor()
        conn._cursor_execute(cursor, plan.sql, parameters)
        return conn, plan, cursor

    def _rows(self, conn: Connection, plan: _Plan, cursor, fetched: list) -> list:
        if self.Row is None:
            raise ValueError(f"{self!r} returns no rows")
        make = self.Row._make
        processors = plan.row_processors(self.statement, conn.dialect, cursor.description)
        if not any(processors):
            return [make(r) for r in fetched]
        return [make([v if p is None else p(v) for p, v in zip(processors, r)]) for r in fetched]
