"""The instance search: every instance a person may see — those they started, those they took part
in, and for auditors all — filtered, searched by free text, sorted and paged by position; read from
the instance columns, the log's actors and the task, breach and incident tables, never the state.
"""
from __future__ import annotations

import base64
import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from datetime import date, datetime, time, timedelta, timezone
from typing import Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import and_, func, literal, or_, select, tuple_
from sqlalchemy.orm import Session

from . import access, inputs
from .inbox import like_pattern
from .errors import Forbidden, InvalidInput
from .store import Definition, HumanTask, Incident, Instance, LogEntry, SlaBreach

SCOPES = ("took_part", "started", "all")
SORT_KEYS = ("started", "changed", "business_key")
STATUSES = ("running", "completed", "cancelled")
MAX_PER_PAGE = 200
MAX_Q = 200
COUNT_LIMIT = 1_000  # matches counted; beyond, "more than 1,000" (and Next goes on by position)
DENSE = 2_000        # a membership (took part, overdue, …) of more rows: checked while an order index is walked
DEFAULT_ZONE = "Asia/Shanghai"

_I, _D, _L = Instance.__table__, Definition.__table__, LogEntry.__table__
_H, _B, _N = HumanTask.__table__, SlaBreach.__table__, Incident.__table__
_SORT_COLUMNS = {"started": _I.c.created_at, "changed": _I.c.updated_at, "business_key": _I.c.business_key}
_TRUE = ("1", "true", "on", "yes")


def zone() -> ZoneInfo:
    """The deployment's time zone (BPM_TIMEZONE, default Asia/Shanghai): dates of the search are its days."""
    try:
        return ZoneInfo(os.environ.get("BPM_TIMEZONE") or DEFAULT_ZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_ZONE)


@dataclass(frozen=True)
class InstanceQuery:
    scope: str | None = None  # None: the default for the person (default_scope)
    q: str | None = None      # free text: business key, customer, initiator, process name
    process: str | None = None
    business_key: str | None = None
    customer: str | None = None
    actor: str | None = None  # took part (acted on it, or started it)
    started_from: date | None = None  # days in the deployment's zone, both inclusive
    started_to: date | None = None
    status: str | None = None
    overdue: bool = False     # an open task past its due time
    breach: bool = False      # an SLA breach recorded
    incident: bool = False    # an open incident
    sort: str = "started"
    desc: bool = True         # newest first
    page: int = 1
    per_page: int = 50
    # Keyset paging, as the inbox: the page after (before) the row the position names, in this sort.
    after: str | None = None
    before: str | None = None

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> "InstanceQuery":
        """Read a query from URL parameters; a bad value is refused naming its field."""
        problems: dict[str, str] = {}
        values: dict = {}

        def number(name: str, low: int, high: int) -> int | None:
            raw = (args.get(name) or "").strip()
            if not raw:
                return None
            try:
                value = int(raw)
            except ValueError:
                problems[name] = f"{raw[:40]!r} is not a whole number"
                return None
            if not low <= value <= high:
                problems[name] = f"must be between {low} and {high}"
                return None
            return value

        def choice(name: str, allowed: tuple[str, ...], default):
            raw = (args.get(name) or "").strip()
            if not raw:
                return default
            if raw not in allowed:
                problems[name] = f"must be one of {', '.join(allowed)}"
                return default
            return raw

        def day(name: str) -> date | None:
            raw = (args.get(name) or "").strip()
            if not raw:
                return None
            try:
                return date.fromisoformat(raw)
            except ValueError:
                problems[name] = f"{raw[:40]!r} is not a date such as 2026-11-23"
                return None

        limits = {"q": MAX_Q, "process": _I.c.process_id.type.length, "business_key": _I.c.business_key.type.length,
                  "customer": _I.c.customer.type.length, "actor": _L.c.actor.type.length}
        for name, limit in limits.items():
            raw = (args.get(name) or "").strip()
            problem = inputs.text_problem(raw, limit)
            if problem:
                problems[name], raw = problem, ""
            values[name] = raw or None
        values["scope"] = choice("scope", SCOPES, None)
        values["status"] = choice("status", STATUSES, None)
        values["sort"] = choice("sort", SORT_KEYS, "started")
        desc = (args.get("desc") or "").strip().lower()
        values["desc"] = desc in _TRUE if desc else True
        for name in ("overdue", "breach", "incident"):
            values[name] = (args.get(name) or "").strip().lower() in _TRUE
        values["started_from"], values["started_to"] = day("started_from"), day("started_to")
        if values["started_from"] and values["started_to"] and values["started_to"] < values["started_from"]:
            problems["started_to"] = "is before the first day of the range"
        values["page"] = number("page", 1, 10**6) or 1
        values["per_page"] = number("per_page", 1, MAX_PER_PAGE) or 50
        values["after"], values["before"] = inputs.positions(
            args, lambda raw: _decode_cursor(raw, values["sort"], values["desc"]) is not None, problems)
        if problems:
            listed = "; ".join(f"{k}: {v}" for k, v in problems.items())
            raise InvalidInput("the instance search is not valid: %(problems)s", problems, problems=listed)
        return cls(**values)

    def to_args(self) -> dict[str, str]:
        """The non-default values as URL parameters (bookmarkable, shareable)."""
        default = InstanceQuery()
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value == getattr(default, f.name):
                continue
            if f.name == "desc":
                out[f.name] = "1" if value else "0"
            elif isinstance(value, bool):
                out[f.name] = "1" if value else ""
            else:
                out[f.name] = value.isoformat() if isinstance(value, date) else str(value)
        return out

    def replace(self, **changes) -> "InstanceQuery":
        """This query changed; a position (after/before) is kept only when given again."""
        return InstanceQuery(**{**asdict(self), "after": None, "before": None, **changes})


def default_scope(who: access.Person) -> str:
    """Auditors see every instance; anyone else the ones they took part in."""
    return "all" if access.may_search_all_instances(who) else "took_part"


@dataclass
class Step:
    """A step an instance waits at (an open human task) and who holds it."""
    name: str
    element_id: str
    assignee: str | None
    role: str | None
    due: datetime | None

    def as_json(self) -> dict:
        return {"name": self.name, "element_id": self.element_id, "assignee": self.assignee,
                "role": self.role, "due": self.due.isoformat() if self.due else None}


@dataclass
class InstanceRow:
    id: str
    process_id: str
    process_name: str
    version: int
    business_key: str | None
    customer: str | None
    amount: float | None
    status: str
    initiator: str
    started: datetime
    changed: datetime
    steps: list[Step] = field(default_factory=list)
    overdue: bool = False
    breach: bool = False
    incident: bool = False

    def as_json(self) -> dict:
        return {"id": self.id, "process_id": self.process_id, "process_name": self.process_name,
                "version": self.version, "business_key": self.business_key, "customer": self.customer,
                "amount": self.amount, "status": self.status, "initiator": self.initiator,
                "started": self.started.isoformat(), "changed": self.changed.isoformat(),
                "steps": [s.as_json() for s in self.steps], "overdue": self.overdue,
                "breach": self.breach, "incident": self.incident}


@dataclass
class InstancePage:
    rows: list[InstanceRow]
    total: int
    page: int
    per_page: int
    scope: str
    more: bool = False  # more than `total` (COUNT_LIMIT) match
    next_after: str | None = None
    prev_before: str | None = None

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))

    def as_json(self) -> dict:
        return {"instances": [r.as_json() for r in self.rows], "total": self.total, "page": self.page,
                "per_page": self.per_page, "pages": self.pages, "scope": self.scope, "more": self.more,
                "next_after": self.next_after, "prev_before": self.prev_before}


# --- positions ---------------------------------------------------------------------------------

def _cursor(query: InstanceQuery, row: InstanceRow) -> str:
    value = {"started": row.started, "changed": row.changed, "business_key": row.business_key}[query.sort]
    if isinstance(value, datetime):
        value = value.isoformat()
    raw = json.dumps([query.sort, query.desc, value, row.id], ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")


def _decode_cursor(text: str, sort: str, desc: bool) -> tuple | None:
    """(value, id) of a position made by `_cursor` for this sort, or None. Anything in it may be
    forged: each value must be what its column holds before it is bound."""
    if len(text) > 2000:
        return None
    try:
        sort_, desc_, value, instance_id = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if (sort_, desc_) != (sort, desc) or not inputs.fits_key(instance_id, _I.c.id.type.length):
            return None
        if sort in ("started", "changed"):
            value = datetime.fromisoformat(value)
            if value.tzinfo is None:
                return None
            value = value.astimezone(timezone.utc)
        elif value is not None and not inputs.fits_key(value, _I.c.business_key.type.length):
            return None
        return value, instance_id
    except (ValueError, TypeError, UnicodeDecodeError, OverflowError, RecursionError):
        return None


def _order(sort: str, ascending: bool) -> list:
    """The list's order in one direction: the sort column, then id (rows without a business key
    after the others, ascending). Every column in the same direction, so an index serves it both ways."""
    column = _SORT_COLUMNS[sort]
    keys = ([column.is_(None)] if sort == "business_key" else []) + [column, _I.c.id]
    return [k.asc() if ascending else k.desc() for k in keys]


def _beyond(sort: str, greater: bool, value, instance_id: str):
    """Rows after the position (value, id) in the ascending order of `_order` (greater) or before it."""
    column = _SORT_COLUMNS[sort]
    pair = tuple_(column, _I.c.id)
    value = literal(value, type_=column.type) if value is not None else None
    instance_id = literal(instance_id, type_=_I.c.id.type)
    if sort != "business_key":
        return pair > tuple_(value, instance_id) if greater else pair < tuple_(value, instance_id)
    if value is None:  # the position is in the trailing group without a business key
        if greater:
            return and_(column.is_(None), _I.c.id > instance_id)
        return or_(column.is_not(None), and_(column.is_(None), _I.c.id < instance_id))
    if greater:
        return or_(column.is_(None), and_(column.is_not(None), pair > tuple_(value, instance_id)))
    return and_(column.is_not(None), pair < tuple_(value, instance_id))


# --- the search ----------------------------------------------------------------------------------

_MANY = None  # a membership too large to list (see `_member`)
_FEW = ()     # a short one, left to PostgreSQL as a subquery


def _member(ids, table, *where):
    """The instance has a row in `table` (a log entry by someone, an open task past due, a breach,
    an open incident). Few such instances: `ids`, their list, read beforehand — looked up one by
    one, a short list drives the query (and the planners know its length). Many (`_MANY`): checked
    per instance while an order index is walked, so a page stops after its rows instead of sorting
    them all."""
    if ids is _MANY:
        return select(table.c.instance_id).where(table.c.instance_id == _I.c.id, *where).exists()
    if ids is _FEW:  # PostgreSQL: the subquery, whose rows its planner estimates from statistics
        return _I.c.id.in_(select(table.c.instance_id).where(*where))
    return _I.c.id.in_(ids)


def _took_part(username: str, ids):
    """Instances with a log entry by `username`: every command they gave, the start included (a
    start is logged by its initiator). One range of ix_log_entry_actor_instance."""
    return _member(ids, _L, _L.c.actor == username)


def _unindexed(column, sqlite: bool):
    """On SQLite `column` as an expression no index answers (`status || ''`): a value most instances
    share (a status, a process) is then checked inside an order index rather than read as a long
    range of its own index and sorted (SQLite without ANALYZE takes any equality for a short range).
    PostgreSQL knows from its statistics how many rows a value has: there the column stays plain."""
    return column.concat("") if sqlite else column


def _day_start(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=tz).astimezone(timezone.utc)


def scope_of(who: access.Person, query: InstanceQuery) -> str:
    """The scope asked for, or the person's default; `all` is refused to whoever may not search
    every instance (access.may_search_all_instances)."""
    scope = query.scope or default_scope(who)
    if scope == "all" and not access.may_search_all_instances(who):
        raise Forbidden("only auditors may search all instances; %(user)s may search the instances "
                        "they started or took part in", user=who.username)
    return scope


def memberships(who: access.Person, query: InstanceQuery, now: datetime) -> dict[str, tuple]:
    """The membership conditions of a search — name: (table, its WHERE) — whose size decides how
    each is read (`_member`)."""
    scope = scope_of(who, query)
    found = {}
    if scope == "took_part":
        found["took_part"] = (_L, [_L.c.actor == who.username])
    if query.actor:
        found["actor"] = (_L, [_L.c.actor == query.actor])
    if query.overdue:
        found["overdue"] = (_H, [_H.c.due_at < now])
    if query.breach:
        found["breach"] = (_B, [])
    if query.incident:
        found["incident"] = (_N, [_N.c.status == "open"])
    return found


def membership_ids(session: Session, who: access.Person, query: InstanceQuery, now: datetime) -> dict:
    """Each membership of the search as the list of its instance ids (on PostgreSQL `_FEW`), or
    `_MANY` when it holds more than DENSE: up to DENSE + 1 ids of its own table are read (an index
    range; at most a short scan)."""
    found, sqlite = {}, session.get_bind().dialect.name == "sqlite"
    for name, (table, where) in memberships(who, query, now).items():
        first = select(table.c.instance_id).where(*where).distinct().limit(DENSE + 1)
        if sqlite:  # SQLite plans a list it is given better than its subquery (no statistics)
            ids = list(session.execute(first).scalars())
            found[name] = _MANY if len(ids) > DENSE else ids
        else:
            size = session.execute(select(func.count()).select_from(first.subquery())).scalar() or 0
            found[name] = _MANY if size > DENSE else _FEW
    return found


def conditions(who: access.Person, query: InstanceQuery, now: datetime, tz: ZoneInfo | None = None,
               ids: dict | None = None, sqlite: bool = True) -> tuple[str, list]:
    """The scope (`scope_of`) and the WHERE conditions of the search; `ids` are the memberships
    as `membership_ids` read them (without them: each checked per instance)."""
    ids = ids or {}
    scope = scope_of(who, query)
    where: list = []
    if scope == "started":
        where.append(_I.c.initiator == who.username)
    elif scope == "took_part":
        where.append(_took_part(who.username, ids.get("took_part", _MANY)))
    if query.process:
        where.append(_unindexed(_I.c.process_id, sqlite) == query.process)
    if query.business_key:
        where.append(_I.c.business_key == query.business_key)
    if query.customer:
        where.append(_I.c.customer == query.customer)
    if query.actor:
        where.append(_took_part(query.actor, ids.get("actor", _MANY)))
    if query.status:
        where.append(_unindexed(_I.c.status, sqlite) == query.status)
    tz = tz or zone()
    if query.started_from:
        where.append(_I.c.created_at >= _day_start(query.started_from, tz))
    if query.started_to:
        where.append(_I.c.created_at < _day_start(query.started_to + timedelta(days=1), tz))
    if query.overdue:
        where.append(_member(ids.get("overdue", _MANY), _H, _H.c.due_at < now))
    if query.breach:
        where.append(_member(ids.get("breach", _MANY), _B))
    if query.incident:
        where.append(_member(ids.get("incident", _MANY), _N, _N.c.status == "open"))
    if query.q:
        pattern = like_pattern(query.q)
        names = select(_D.c.id).where(or_(_D.c.name.ilike(pattern, escape="\\"),
                                          _D.c.process_id.ilike(pattern, escape="\\")))
        where.append(or_(_I.c.business_key.ilike(pattern, escape="\\"), _I.c.customer.ilike(pattern, escape="\\"),
                         _I.c.initiator.ilike(pattern, escape="\\"), _I.c.definition_id.in_(names)))
    return scope, where


def search(session: Session, who: access.Person, query: InstanceQuery, now: datetime,
           tz: ZoneInfo | None = None) -> InstancePage:
    """One page of the instances `who` may see that match `query`, with each row's open steps and
    holders and its overdue / breach / incident flags."""
    scope, where = conditions(who, query, now, tz, membership_ids(session, who, query, now),
                              session.get_bind().dialect.name == "sqlite")
    position = query.after or query.before
    key = _decode_cursor(position, query.sort, query.desc) if position else None
    # Counted up to COUNT_LIMIT + 1 rows: beyond that the page says "more than COUNT_LIMIT", and a
    # count never reads a hundred thousand rows to say so (docs/benchmarks.md, "Instance search").
    if scope == "took_part" and len(where) == 1:  # (the default list of everyone but auditors)
        # every instance a log entry names exists: counted in the log's (actor, instance_id) index alone
        counted = (select(_L.c.instance_id).where(_L.c.actor == who.username).distinct()
                   .limit(COUNT_LIMIT + 1).subquery())
    else:
        counted = select(_I.c.id).where(*where).limit(COUNT_LIMIT + 1).subquery()
    total = session.execute(select(func.count()).select_from(counted)).scalar() or 0
    forward = query.before is None or key is None
    ascending = (not query.desc) if forward else query.desc
    ids = select(_I.c.id).where(*where)
    if key is not None:
        ids = ids.where(_beyond(query.sort, ascending, *key))
    # one row more than the page: whether there is a page beyond it, also past the counted rows
    ids = ids.order_by(*_order(query.sort, ascending)).limit(query.per_page + 1)
    if key is None:
        ids = ids.offset((query.page - 1) * query.per_page)
    page_ids = list(session.execute(ids).scalars())
    beyond = len(page_ids) > query.per_page
    page_ids = page_ids[:query.per_page]
    if not forward:
        page_ids.reverse()
    rows = _rows(session, page_ids, now)
    result = InstancePage(rows, min(total, COUNT_LIMIT), query.page, query.per_page, scope,
                          more=total > COUNT_LIMIT)
    if rows and (beyond if forward else True):
        result.next_after = _cursor(query, rows[-1])
    if rows and query.page > 1:
        result.prev_before = _cursor(query, rows[0])
    return result


def _rows(session: Session, ids: list[str], now: datetime) -> list[InstanceRow]:
    """The page's rows in the order of `ids`, with steps and flags: four small reads by id."""
    if not ids:
        return []
    found = {r.id: r for r in session.execute(
        select(_I.c.id, _I.c.process_id, _D.c.name, _D.c.version, _I.c.business_key, _I.c.customer,
               _I.c.amount, _I.c.status, _I.c.initiator, _I.c.created_at, _I.c.updated_at)
        .join(_D, _D.c.id == _I.c.definition_id).where(_I.c.id.in_(ids)))}
    steps: dict[str, list[Step]] = {}
    for t in session.execute(select(_H.c.instance_id, _H.c.name, _H.c.element_id, _H.c.assignee, _H.c.role,
                                    _H.c.due_at).where(_H.c.instance_id.in_(ids))
                             .order_by(_H.c.instance_id, _H.c.created_at, _H.c.id)):
        steps.setdefault(t.instance_id, []).append(Step(t.name, t.element_id, t.assignee, t.role, t.due_at))
    breached = set(session.execute(select(_B.c.instance_id).where(_B.c.instance_id.in_(ids)).distinct()).scalars())
    incidents = set(session.execute(select(_N.c.instance_id).where(
        _N.c.instance_id.in_(ids), _N.c.status == "open").distinct()).scalars())
    rows = []
    for instance_id in ids:
        r = found.get(instance_id)
        if r is None:  # gone between the two reads (never deleted today)
            continue
        mine = steps.get(instance_id, [])
        rows.append(InstanceRow(
            r.id, r.process_id, r.name, r.version, r.business_key, r.customer, r.amount, r.status, r.initiator,
            r.created_at, r.updated_at, mine, any(s.due is not None and s.due < now for s in mine),
            instance_id in breached, instance_id in incidents))
    return rows
