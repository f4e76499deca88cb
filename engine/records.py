"""Business records (业务台账): the facts one process keeps for other processes to check.

An order must refer to an approved contract (seed 001 二(5)); a return must name an order that was
shipped to the same customer, for no more than was shipped less what came back before (004, 退换货).
Those checks read what another instance decided. Rather than restore other instances, a process
publishes the facts it owns as a record — kind, key, what it refers to, the customer and a JSON
body — and other processes' services read them.

- `publish_record(kind, key, data, ref=None)` is an engine service for BPMN service tasks. The
  record is written by the transaction of the command whose step published it (like archive
  grants), replacing the earlier version; a key is owned by the instance that first published it,
  and another instance publishing the same kind and key is refused (the whole command with it).
  The first insert of a key is atomic (`INSERT … ON CONFLICT DO NOTHING`, then the owner read):
  two commands publishing one new key at the same instant on PostgreSQL do not both pass — the
  second waits for the first's commit and is refused, as if it had come later.
- `claim(kind, key, data, ref=None, taken=...)` (Python, for domain services) publishes a record
  as a hold on a key — one receipt claimed by one expense claim — refused with the domain's own
  sentence (`taken`, given the key and the holder: the holding instance's business key) when
  another instance holds it (the holder's data may be named too); `release(kind, key)` gives this instance's hold up (its record is
  deleted by the command's transaction), so another instance may claim the key. A service could
  not make this exclusive by reading first: two commands may both read "free" before either
  writes; only the key's row, inserted by the command's own transaction, can refuse the second.
- `read_record(kind, key)` and `read_records(kind, ref)` are engine services too, and `find` /
  `referring` are their Python forms for domain services in `processes/`. They read through the
  running command's transaction and see what the same command published before them. As every
  service result, what they return is logged, so a replay reads the log, not today's records.
- `listed` reads records outside a command, for pages (the receipts page lists orders).
- A region's records (`in_region` in a command, `listed_in_region` outside one) are those whose
  publishing instance was started by someone of that region (大区): its own people or those of
  its offices, as `engine.access.request_office` places a request. `region_of` says a user's region.
"""
from __future__ import annotations

import copy
import json
import re
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.engine import Connection

from . import determinism
from .store import BusinessRecord, Instance, Office, User

KIND = re.compile(r"[a-z][a-z0-9_]{0,39}")
KEY_LENGTH = 200
MAX_BYTES = 256 * 1024
_R = BusinessRecord.__table__


def _context(service: str) -> determinism.CommandContext:
    if determinism.connection() is None:
        raise RuntimeError(f"{service} runs only as a step of a process instance")
    return determinism.current()


def _checked_key(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > KEY_LENGTH:
        raise ValueError(f"the record's {what} must be a text of 1 to {KEY_LENGTH} characters, not {value!r}")
    return value.strip()


def _as_json(row) -> dict:
    return {"kind": row.kind, "key": row.key, "ref": row.ref, "customer": row.customer,
            "data": copy.deepcopy(row.data), "instance_id": row.instance_id, "process_id": row.process_id,
            "revision": row.revision, "updated_at": row.updated_at.isoformat()}


def _pending(ctx: determinism.CommandContext, kind: str, key: str | None = None,
             ref: str | None = None) -> list[dict]:
    return [r for r in ctx.records if r["kind"] == kind
            and (key is None or r["key"] == key) and (ref is None or r["ref"] == ref)]


def _unsaved(record: dict, ctx: determinism.CommandContext) -> dict:
    return {**copy.deepcopy(record), "instance_id": ctx.instance_id, "process_id": None,
            "revision": None, "updated_at": ctx.at.isoformat()}


# --- engine services ---------------------------------------------------------------------------

def publish_record(kind: Any, key: Any, data: Any, ref: Any = None) -> dict:
    """Engine service: keep `data` as the record `kind`/`key` of this instance (see the module)."""
    ctx = _context("publish_record")
    if not isinstance(kind, str) or not KIND.fullmatch(kind):
        raise ValueError(f"a record's kind is a short lower-case name such as 'order', not {kind!r}")
    key = _checked_key(key, "key")
    ref = None if ref in (None, "") else _checked_key(ref, "reference")
    if not isinstance(data, dict):
        raise ValueError(f"a record's data is an object (a dict), not {type(data).__name__}")
    try:
        size = len(json.dumps(data, ensure_ascii=False, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"a record's data must be plain JSON: {exc}") from None
    if size > MAX_BYTES:
        raise ValueError(f"the {kind} record {key} is {size} bytes; at most {MAX_BYTES} are kept")
    customer = data.get("customer")
    record = {"kind": kind, "key": key, "ref": ref,
              "customer": customer if isinstance(customer, str) else None, "data": copy.deepcopy(data)}
    ctx.records = [r for r in ctx.records if (r["kind"], r["key"]) != (kind, key)] + [record]
    return {"kind": kind, "key": key, "ref": ref}


def claim(kind: str, key: Any, data: dict, ref: Any = None, *, taken: str | None = None) -> dict:
    """Hold `kind`/`key` for this instance (see the module): `publish_record`, refused with `taken`
    (a sentence with %(key)s and %(holder)s) when another instance holds the key."""
    published = publish_record(kind, key, data, ref)
    if taken:
        _pending(_context("publish_record"), kind, key=published["key"])[-1]["taken"] = taken
    return published


def release(kind: str, key: Any) -> None:
    """Give up this instance's record `kind`/`key` (deleted when the command commits); a record
    another instance holds is left alone."""
    ctx = _context("publish_record")
    key = _checked_key(key, "key")
    ctx.records = [r for r in ctx.records if (r["kind"], r["key"]) != (kind, key)] + [
        {"kind": kind, "key": key, "released": True}]


def find(kind: str, key: Any, *, lock: bool = False) -> dict | None:
    """The record `kind`/`key` (as this command would leave it), or None; inside a command only.

    `lock`: hold the record's row until the command ends (PostgreSQL `FOR UPDATE`; SQLite's
    writers are serial already), so commands that check something against it — returns against
    an order — take turns and each sees what the one before it wrote."""
    ctx = _context("read_record")
    if not isinstance(key, str) or not key.strip():
        return None
    key = key.strip()
    if (mine := _pending(ctx, kind, key=key)):
        return None if mine[-1].get("released") else _unsaved(mine[-1], ctx)
    query = select(_R).where(_R.c.kind == kind, _R.c.key == key)
    row = ctx.conn.execute(query.with_for_update() if lock else query).first()
    return _as_json(row) if row is not None else None


def referring(kind: str, ref: Any) -> list[dict]:
    """Every record of `kind` whose `ref` is `ref`, by key (as this command would leave them)."""
    ctx = _context("read_records")
    if not isinstance(ref, str) or not ref.strip():
        return []
    ref = ref.strip()
    mine = {r["key"]: _unsaved(r, ctx) for r in _pending(ctx, kind, ref=ref) if not r.get("released")}
    stored = {row.key: _as_json(row) for row in ctx.conn.execute(
        select(_R).where(_R.c.kind == kind, _R.c.ref == ref).order_by(_R.c.key))}
    stored = {k: v for k, v in stored.items() if not any(r["kind"] == kind and r["key"] == k for r in ctx.records)}
    return [v for _, v in sorted({**stored, **mine}.items())]


def read_record(kind: Any, key: Any) -> dict | None:
    """Engine service form of `find`."""
    if not isinstance(kind, str) or not KIND.fullmatch(kind):
        raise ValueError(f"a record's kind is a short lower-case name such as 'order', not {kind!r}")
    return find(kind, key)


def read_records(kind: Any, ref: Any) -> list[dict]:
    """Engine service form of `referring`."""
    if not isinstance(kind, str) or not KIND.fullmatch(kind):
        raise ValueError(f"a record's kind is a short lower-case name such as 'order', not {kind!r}")
    return referring(kind, ref)


SERVICES = {"publish_record": publish_record, "read_record": read_record, "read_records": read_records}


# --- written by the command's transaction ------------------------------------------------------

def _insert(conn: Connection):
    """An insert that does nothing where the key exists (PostgreSQL and SQLite alike)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(_R).on_conflict_do_nothing(index_elements=[_R.c.kind, _R.c.key])


def _refuse(conn: Connection, record: dict, owner: str) -> None:
    from .runtime import Conflict  # (engine.runtime imports this module)
    holder = conn.execute(select(Instance.business_key).where(Instance.id == owner)).scalar() or owner
    if record.get("taken"):  # the holder's data may be named too (a month's run: when it started)
        held = conn.execute(select(_R.c.data).where(_R.c.kind == record["kind"], _R.c.key == record["key"])).scalar()
        named = {k: v for k, v in (held or {}).items() if isinstance(v, (str, int, float))}
        raise Conflict(record["taken"], **{**named, "key": record["key"], "holder": holder})
    raise Conflict("the %(kind)s %(key)s is already kept by another instance (%(owner)s)",
                   kind=record["kind"], key=record["key"], owner=holder)


def write(conn: Connection, records: list[dict], *, instance_id: str, process_id: str, at: datetime) -> None:
    """Write what a command published; refused (and the command with it) where another instance
    owns the key — also when it published the key at the same instant (the insert is atomic)."""
    for record in records:
        where = (_R.c.kind == record["kind"], _R.c.key == record["key"])
        if record.get("released"):
            conn.execute(_R.delete().where(*where, _R.c.instance_id == instance_id))
            continue
        row = conn.execute(select(_R.c.instance_id, _R.c.revision).where(*where)).first()
        values = {"ref": record["ref"], "customer": record["customer"], "data": record["data"],
                  "updated_at": at}
        if row is None:
            inserted = conn.execute(_insert(conn).values(kind=record["kind"], key=record["key"],
                                                         instance_id=instance_id, process_id=process_id,
                                                         revision=1, **values))
            if inserted.rowcount == 1:
                continue
            # Inserted, or another command inserted the key since the read above and committed
            # (the insert waited for it; psycopg may not say which: rowcount -1): whose is it?
            row = conn.execute(select(_R.c.instance_id, _R.c.revision).where(*where)).first()
            if row is None:
                raise RuntimeError(f"the {record['kind']} {record['key']} could not be written")
            if row.instance_id == instance_id:
                continue
            _refuse(conn, record, row.instance_id)
        if row.instance_id != instance_id:
            _refuse(conn, record, row.instance_id)
        conn.execute(_R.update().where(*where).values(revision=row.revision + 1, **values))


# --- read outside a command (pages, API, CLI) --------------------------------------------------

def listed(conn: Connection, kind: str, *, key: str | None = None, customer: str | None = None,
           ref: str | None = None, limit: int = 100) -> list[dict]:
    """Records of `kind`, newest first, narrowed by key prefix, customer or reference."""
    query = select(_R).where(_R.c.kind == kind)
    if key:
        query = query.where(_R.c.key.startswith(key, autoescape=True))
    if customer:
        query = query.where(_R.c.customer == customer)
    if ref:
        query = query.where(_R.c.ref == ref)
    return [_as_json(row) for row in conn.execute(query.order_by(_R.c.updated_at.desc(), _R.c.key).limit(limit))]


# --- a region's records (大区): by whoever started the instance that published them ---------------

def _in_region(kind: str, region: str):
    o, u, i = Office.__table__, User.__table__, Instance.__table__
    people = (select(u.c.username).select_from(u.join(o, o.c.id == u.c.office_id))
              .where(or_(o.c.id == region, o.c.parent_id == region)))
    return (select(_R).select_from(_R.join(i, i.c.id == _R.c.instance_id))
            .where(_R.c.kind == kind, i.c.initiator.in_(people)).order_by(_R.c.key))


def region_of(username: Any) -> str | None:
    """The region (大区) of `username`'s requests, or None (HQ, no office); inside a command only."""
    from .access import request_office  # (engine.access is the one that places a request)
    ctx = _context("region_of")
    if not isinstance(username, str) or not username:
        return None
    return request_office(ctx.conn, username).region or None


def in_region(kind: str, region: Any) -> list[dict]:
    """Every stored record of `kind` published by an instance started in `region`; inside a command."""
    ctx = _context("read_records")
    if not isinstance(region, str) or not region:
        return []
    return [_as_json(row) for row in ctx.conn.execute(_in_region(kind, region))]


def listed_in_region(conn: Connection, kind: str, region: str) -> list[dict]:
    """`in_region` outside a command, for pages and reports."""
    return [_as_json(row) for row in conn.execute(_in_region(kind, region))]
