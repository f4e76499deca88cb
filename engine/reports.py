"""Reports over what the engine recorded: the capital in use of each region (区域资金占用, at the
end of this module), and the auditor's SLA breach report (the 4-hour reply,
4小时复命) — breaches grouped by process, step, person, office or month with their count and median
lateness, and the breaches of one group. Reads only; who may read it is
`engine.access.may_read_sla_report`.

A breach (`store.SlaBreach`) is a task that passed its due time and was escalated. Its
**lateness** runs from that due time until the step was done — the log entry that completed the
task (`LogEntry.task_id`, command `complete`) — or, while the task still waits, until now (such a
breach is also counted as *still open*, and its lateness so far is a lower bound). A task that
ended without being completed (a payment that arrived while it was being chased, a cancelled
instance) is counted as *withdrawn* and has no lateness. A task escalated twice is two breaches,
each late from its own due time. The month of a breach, and the date range a report covers, are
those of its due time in the deployment's time zone. Everything is aggregated in SQL (median by
window functions), on SQLite and PostgreSQL alike.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Float, and_, case, func, literal, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from . import access, clock, inputs, records
from .runtime import Forbidden, InvalidInput, NotFound, loaded_definition, person
from .store import (Definition, HumanTask, Instance, LogEntry, Office, SlaBreach, Store, User,
                    UTCDateTime)

GROUPINGS = ("process", "step", "person", "office", "month")
NOBODY = "-"  # the person (or office) of a breach of a task nobody held: open to a role
DEFAULT_ZONE = "Asia/Shanghai"  # the company's, as the pages show times (BPM_TIMEZONE)
BREACHES_SHOWN = 1000  # the drill-down lists at most this many (newest due first); `total` says how many
MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])")
FILTERS = ("process", "step", "person", "office", "month", "since", "until")

_B, _I, _U, _L, _H = (SlaBreach.__table__, Instance.__table__, User.__table__, LogEntry.__table__,
                      HumanTask.__table__)


class _seconds_between(FunctionElement):
    """Seconds from the second instant to the first, as a float, on either backend."""
    type = Float()
    inherit_cache = True


@compiles(_seconds_between, "sqlite")
def _seconds_sqlite(element, compiler, **kw):
    later, earlier = list(element.clauses)
    return f"((julianday({compiler.process(later, **kw)}) - julianday({compiler.process(earlier, **kw)})) * 86400.0)"


@compiles(_seconds_between, "postgresql")
def _seconds_postgresql(element, compiler, **kw):
    later, earlier = list(element.clauses)
    return f"EXTRACT(EPOCH FROM ({compiler.process(later, **kw)} - {compiler.process(earlier, **kw)}))"


@dataclass(frozen=True)
class SlaQuery:
    """What a report asks: the grouping, and the filters (each None: all). `step` is an element id
    (with `process` it names one step), `person`/`office` a username/office id or NOBODY, `month`
    YYYY-MM, `since`/`until` days (both included) of the due time in the report's zone."""
    by: str = "process"
    process: str | None = None
    step: str | None = None
    person: str | None = None
    office: str | None = None
    month: str | None = None
    since: date | None = None
    until: date | None = None

    def filters(self) -> dict[str, str]:
        """The filters as text (query-string arguments), those set only."""
        return {k: v.isoformat() if isinstance(v, date) else v
                for k in FILTERS if (v := getattr(self, k)) is not None}


def parse_query(args: Mapping[str, Any], *, by: str | None = None) -> SlaQuery:
    """A report query from text arguments (a page's or the API's query string, the CLI's options):
    InvalidInput naming the first bad one; empty arguments are no filter."""
    problems: dict[str, str] = {}
    values: dict[str, Any] = {}
    grouping = by if by is not None else (args.get("by") or "process")
    if grouping not in GROUPINGS:
        problems["by"] = "one of " + ", ".join(GROUPINGS)
    for key in ("process", "step", "person", "office"):
        text = args.get(key)
        if text in (None, ""):
            continue
        if not inputs.fits_key(text, 200) or not text.strip() or not text.isprintable():
            problems[key] = "a short line of text"
        else:
            values[key] = text.strip()
    month = args.get("month")
    if month not in (None, ""):
        if not isinstance(month, str) or not MONTH.fullmatch(month.strip()):
            problems["month"] = "a month such as 2026-11"
        else:
            values["month"] = month.strip()
    for key in ("since", "until"):
        text = args.get(key)
        if text in (None, ""):
            continue
        try:
            values[key] = date.fromisoformat(text.strip()) if isinstance(text, str) else None
        except ValueError:
            values[key] = None
        if values[key] is None:
            del values[key]
            problems[key] = "a day such as 2026-11-23"
    if not problems and values.get("since") and values.get("until") and values["since"] > values["until"]:
        problems["until"] = "not before the first day"
    if problems:
        first = next(iter(problems))
        raise InvalidInput("the SLA report was not made: %(field)s must be %(problem)s", problems,
                           field=first, problem=problems[first])
    return SlaQuery(by=grouping, **values)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput("the time zone %(zone)s is not known", zone=name) from None


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), zone).astimezone(timezone.utc)


def _month_start(year: int, month: int, zone: ZoneInfo) -> datetime:
    return _midnight(date(year, month, 1), zone)


def _next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def _conditions(query: SlaQuery, zone: ZoneInfo) -> list:
    """The WHERE of a query, on sla_breach joined with instance and the holder's user row."""
    where = []
    if query.process is not None:
        where.append(_I.c.process_id == query.process)
    if query.step is not None:
        where.append(_B.c.element_id == query.step)
    if query.person is not None:
        where.append(_B.c.holder.is_(None) if query.person == NOBODY else _B.c.holder == query.person)
    if query.office is not None:
        where.append(_U.c.office_id.is_(None) if query.office == NOBODY else _U.c.office_id == query.office)
    if query.month is not None:
        year, month = int(query.month[:4]), int(query.month[5:])
        where += [_B.c.due_at >= _month_start(year, month, zone),
                  _B.c.due_at < _month_start(*_next_month(year, month), zone)]
    if query.since is not None:
        where.append(_B.c.due_at >= _midnight(query.since, zone))
    if query.until is not None:
        where.append(_B.c.due_at < _midnight(query.until + timedelta(days=1), zone))
    return where


def _joined():
    return _B.join(_I, _I.c.id == _B.c.instance_id).outerjoin(_U, _U.c.username == _B.c.holder)


_DONE = _L.alias("done")


def _breaches_cte(query: SlaQuery, zone: ZoneInfo, now: datetime, extra: list | None = None):
    """Each breach that passes the filters, with its process, its holder's office, when its task
    was done (the log entry that completed it; a task completes once), whether it still waits (its
    inbox row), its lateness in seconds (None: withdrawn) and `extra` columns. Materialised, so the
    two look-ups run once per breach however often the lateness is used."""
    done_at = _DONE.c.at
    end = case((done_at.is_not(None), done_at),
               (_H.c.id.is_not(None), literal(now, UTCDateTime)), else_=None)
    joined = (_joined().outerjoin(_DONE, and_(_DONE.c.task_id == _B.c.task_id, _DONE.c.command == "complete"))
              .outerjoin(_H, _H.c.id == _B.c.task_id))
    base = (select(_B.c.id, _B.c.instance_id, _B.c.task_id, _B.c.element_id, _B.c.holder, _B.c.escalated_to,
                   _B.c.due_at, _B.c.breached_at, _I.c.process_id, _I.c.business_key, _I.c.customer,
                   _U.c.office_id, done_at.label("done_at"),
                   case((_H.c.id.is_not(None), 1), else_=0).label("open"),
                   _seconds_between(end, _B.c.due_at).label("late"), *(extra or []))
            .select_from(joined).where(*_conditions(query, zone)).cte("breach"))
    return base, base.c.late


def _month_key(query: SlaQuery, zone: ZoneInfo, session) -> Any:
    """The month (YYYY-MM, of the due time in `zone`) as an SQL expression: a CASE over the month
    boundaries between the first and last due time that pass the filters (exact across DST)."""
    first, last = session.execute(select(func.min(_B.c.due_at), func.max(_B.c.due_at))
                                  .select_from(_joined()).where(*_conditions(query, zone))).one()
    if first is None:
        return literal("")
    first, last = _aware(first), _aware(last)
    local_first, local_last = first.astimezone(zone), last.astimezone(zone)
    year, month = local_first.year, local_first.month
    whens = []
    while (year, month) < (local_last.year, local_last.month):
        nxt = _next_month(year, month)
        whens.append((_B.c.due_at < _month_start(*nxt, zone), f"{year:04d}-{month:02d}"))
        year, month = nxt
    last_key = f"{year:04d}-{month:02d}"
    return case(*whens, else_=literal(last_key)) if whens else literal(last_key)


def _group_columns(by: str, query: SlaQuery, zone: ZoneInfo, session) -> list:
    if by == "process":
        return [_I.c.process_id.label("g1")]
    if by == "step":
        return [_I.c.process_id.label("g1"), _B.c.element_id.label("g2")]
    if by == "person":
        return [func.coalesce(_B.c.holder, NOBODY).label("g1")]
    if by == "office":
        return [func.coalesce(_U.c.office_id, NOBODY).label("g1")]
    return [_month_key(query, zone, session).label("g1")]


@dataclass
class _Names:
    """Names to label groups and rows with: processes and steps (from the newest version that has
    them), people and offices."""
    processes: dict[str, str]
    steps: dict[tuple[str, str], str]
    people: dict[str, str]
    offices: dict[str, str]
    user_offices: dict[str, str | None]


def _names(session) -> _Names:
    latest: dict[str, tuple[int, int, str]] = {}
    for def_id, process_id, version, name in session.execute(
            select(Definition.id, Definition.process_id, Definition.version, Definition.name)):
        if process_id not in latest or version > latest[process_id][0]:
            latest[process_id] = (version, def_id, name)
    steps: dict[tuple[str, str], str] = {}
    for process_id, (_version, def_id, _name) in latest.items():
        loaded = loaded_definition(session, def_id)
        for spec in [loaded.spec, *loaded.subprocess_specs.values()]:
            for task_spec in spec.task_specs.values():
                element = getattr(task_spec, "bpmn_id", None)
                if element and getattr(task_spec, "manual", False):
                    steps.setdefault((process_id, element), getattr(task_spec, "bpmn_name", None) or element)
    people, user_offices = {}, {}
    for username, display, office_id in session.execute(select(User.username, User.display_name, User.office_id)):
        people[username], user_offices[username] = display, office_id
    offices = dict(session.execute(select(Office.id, Office.name)).all())
    return _Names({p: v[2] for p, v in latest.items()}, steps, people, offices, user_offices)


def _label(by: str, key: tuple, names: _Names) -> str:
    if by == "process":
        return names.processes.get(key[0], key[0])
    if by == "step":
        return names.steps.get((key[0], key[1]), key[1])
    if by == "person":
        return "" if key[0] == NOBODY else names.people.get(key[0], key[0])
    if by == "office":
        return "" if key[0] == NOBODY else names.offices.get(key[0], key[0])
    return key[0]


def _group_filters(by: str, key: tuple) -> dict[str, str]:
    """The filters that select one group (the drill-down's)."""
    if by == "step":
        return {"process": key[0], "step": key[1]}
    return {by: key[0]}


def _aware(value: Any) -> datetime | None:
    """A time read back through an expression (a subquery's MIN), as an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _seconds(value: Any) -> int | None:
    return None if value is None else max(0, round(float(value)))


def sla_groups(session, query: SlaQuery, *, zone: str = DEFAULT_ZONE, now: datetime | None = None) -> list[dict]:
    """The breaches that pass `query`'s filters, grouped by `query.by`: for each group its key,
    label, the filters that select it, and count, done, still_open, withdrawn and
    median_late_seconds (of the breaches with a lateness; None if none has). Process and step
    groups by count (most first), people and offices too, months in order."""
    tz, now = _zone(zone), now or clock.now()
    groups = _group_columns(query.by, query, tz, session)
    base, late = _breaches_cte(query, tz, now, groups)
    keys = [base.c[g.name] for g in groups]
    # One pass, one sort: each breach with its rank by lateness in its group (those without a
    # lateness ranked after all that have one) and how many have one; the median is the mean of
    # the one or two middle ranks.
    ranked = select(*keys, base.c.done_at, base.c.open, late.label("late"),
                    func.row_number().over(partition_by=keys, order_by=[late.is_(None), late]).label("rn"),
                    func.count(late).over(partition_by=keys).label("n")).subquery("ranked")
    rkeys = [ranked.c[g.name] for g in groups]
    middle = and_(ranked.c.late.is_not(None), (ranked.c.rn * 2).between(ranked.c.n, ranked.c.n + 2))
    counts = session.execute(
        select(*rkeys, func.count().label("n"),
               func.sum(case((ranked.c.done_at.is_not(None), 1), else_=0)).label("done"),
               func.sum(case((and_(ranked.c.done_at.is_(None), ranked.c.open == 1), 1), else_=0)).label("still_open"),
               func.avg(case((middle, ranked.c.late), else_=None)).label("median"))
        .group_by(*rkeys)).all()
    medians = {tuple(row[:len(keys)]): row.median for row in counts}
    names = _names(session)
    out = []
    for row in counts:
        key = tuple(row[:len(keys)])
        n, done, still_open = row.n, int(row.done or 0), int(row.still_open or 0)
        out.append({"key": list(key), "label": _label(query.by, key, names),
                    "filters": {**query.filters(), **_group_filters(query.by, key)},
                    "count": n, "done": done, "still_open": still_open, "withdrawn": n - done - still_open,
                    "median_late_seconds": _seconds(medians.get(key))})
    if query.by == "month":
        out.sort(key=lambda g: g["key"])
    else:
        out.sort(key=lambda g: (-g["count"], [str(k) for k in g["key"]]))
    return out


def sla_breaches(session, query: SlaQuery, *, zone: str = DEFAULT_ZONE, now: datetime | None = None,
                 limit: int = BREACHES_SHOWN) -> dict:
    """The breaches that pass `query`'s filters (a group's, see `sla_groups`), latest due first:
    `{"total", "breaches": [...]}` with at most `limit` rows, each with its instance (id, business
    key, customer), step, holder, escalated_to, due, breached, done, state (done, open,
    withdrawn) and late_seconds."""
    tz, now = _zone(zone), now or clock.now()
    base, late = _breaches_cte(query, tz, now)
    rows = session.execute(select(base, func.count().over().label("total"))
                           .order_by(base.c.due_at.desc(), base.c.id.desc()).limit(limit)).all()
    total = rows[0].total if rows else 0
    names = _names(session)
    out = []
    for r in rows:
        state = "done" if r.done_at is not None else "open" if r.open else "withdrawn"
        out.append({"id": r.id, "instance_id": r.instance_id, "business_key": r.business_key,
                    "customer": r.customer, "process_id": r.process_id,
                    "process": names.processes.get(r.process_id, r.process_id), "task_id": r.task_id,
                    "element_id": r.element_id, "step": names.steps.get((r.process_id, r.element_id), r.element_id),
                    "holder": r.holder, "holder_name": names.people.get(r.holder) if r.holder else None,
                    "office": r.office_id, "escalated_to": r.escalated_to,
                    "due_at": _aware(r.due_at), "breached_at": _aware(r.breached_at), "done_at": _aware(r.done_at),
                    "state": state, "late_seconds": _seconds(r.late)})
    return {"total": total, "breaches": out}


def options(session) -> dict:
    """What the report's filters may choose from: processes, offices and the people who held a
    breached task, each as (id, name)."""
    names = _names(session)
    holders = sorted(h for h in session.scalars(select(_B.c.holder).distinct()) if h)
    return {"processes": sorted(names.processes.items()), "offices": sorted(names.offices.items()),
            "people": [(h, names.people.get(h, h)) for h in holders]}


class SlaReport:
    """The SLA breach report over `store`, for those `access.may_read_sla_report` allows; times
    (months, days) in `zone`."""

    def __init__(self, store: Store, zone: str = DEFAULT_ZONE):
        self.store, self.zone = store, zone

    def _check(self, session, viewer: str) -> None:
        who = person(session, viewer)
        if not access.may_read_sla_report(who):
            raise Forbidden("%(user)s may not read the SLA breach report; the auditor may", user=who.username)

    def groups(self, viewer: str, query: SlaQuery, *, now: datetime | None = None) -> list[dict]:
        with self.store.read() as session:
            self._check(session, viewer)
            return sla_groups(session, query, zone=self.zone, now=now)

    def breaches(self, viewer: str, query: SlaQuery, *, now: datetime | None = None,
                 limit: int = BREACHES_SHOWN) -> dict:
        with self.store.read() as session:
            self._check(session, viewer)
            return sla_breaches(session, query, zone=self.zone, now=now, limit=limit)

    def options(self, viewer: str) -> dict:
        with self.store.read() as session:
            self._check(session, viewer)
            return options(session)


# --- capital in use of a region (区域资金占用, seed 002 二) ------------------------------------------
# Seed 002 二 1: 区域资金占用额度 = 年度回款额 × 7%（零售客户 + 库存占用），合同客户（含备案客户）逾期部分
# 视同区域超占用. The figure is read from the order chain's "order" records (engine.records) of the
# region's orders — an order belongs to the region of the rep who raised it — so it is a read-only
# report over what the engine keeps, like the SLA report, reached alike by the page, the API and
# the command line (which may import the engine, not the company's processes/). Who may see it is
# `engine.access.may_see_capital`. Choices, each marked in docs/processes.md:
# - collections (回款) are the money received on the region's orders — deposits and balances, by the
#   day received (`payments[].received_on`), whether or not the order is settled yet;
# - the year's collections are those of the calendar year up to today; "today" is the company's day
#   (clock.local_date, BPM_TIMEZONE), as are the days the order chain keeps: `received_on` is the
#   day the bank received the money as finance gives it (or the company's day it was booked) and
#   `balance_due_date` the day the rep was told (see docs/processes.md §10);
# - retail customers' goods (零售客户): orders without a contract (phone or fax orders), the value
#   shipped to the customer and not yet paid;
# - stock (库存占用): goods made for the region's orders and not yet shipped — the unshipped value of
#   orders in production (deposit in) or partly shipped;
# - overdue contract receivables (合同客户逾期): orders on a contract whose balance is past its due day
#   (`balance_due_date`, set by the order chain by credit level); they are counted in the figure,
#   and shown on their own.

CAPITAL_RATE = 0.07  # seed 002 二 1: 年度回款额 × 7%
STOCK_STATUSES = ("in_production", "partly_shipped")
CENT = 0.005


def _amount(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if number == number else 0.0  # NaN is nothing


def collections(orders: list[dict], since: date, until: date) -> float:
    """The money received on `orders` (their records' data, or the records) from `since` to `until`,
    both days included: every payment, deposit or balance, by the day it was received."""
    total = 0.0
    first, last = since.isoformat(), until.isoformat()
    for order in orders:
        data = order.get("data", order) if isinstance(order, dict) else {}
        if data.get("status") == "rejected":
            continue
        for payment in data.get("payments") or []:
            day = str(payment.get("received_on") or "")[:10]
            if first <= day <= last:
                total += _amount(payment.get("amount"))
    return round(total, 2)


def _line_value(line: dict, quantity: float) -> float:
    return quantity * _amount(line.get("unit_price"))


def order_capital(data: dict, today: date) -> dict:
    """What one order ties up: goods at a retail customer unpaid, stock made for it and not yet
    shipped, and its overdue contract balance (see the notes above)."""
    out = {"retail_goods": 0.0, "stock": 0.0, "overdue_receivables": 0.0}
    if data.get("status") in ("rejected", "settled"):
        return out
    lines = data.get("lines") or []
    shipped = sum(_line_value(l, _amount(l.get("shipped"))) for l in lines)
    unshipped = sum(_line_value(l, max(0.0, _amount(l.get("quantity")) - _amount(l.get("shipped")))) for l in lines)
    paid = _amount(data.get("paid"))
    if data.get("status") in STOCK_STATUSES:
        out["stock"] = round(unshipped, 2)
    if data.get("contract_no"):
        balance = _amount(data.get("amount")) - paid
        due = str(data.get("balance_due_date") or "")[:10]
        if due and due < today.isoformat() and balance > CENT:
            out["overdue_receivables"] = round(balance, 2)
    else:
        out["retail_goods"] = round(max(0.0, shipped - paid), 2)
    return out


def capital_in_use(orders: list[dict], today: date, rate: float = CAPITAL_RATE) -> dict:
    """The capital in use of a region whose orders' records are `orders`, on `today`: its parts, the
    limit (the year's collections × `rate`), and how far over (+) or under (−) it the region is."""
    parts = {"retail_goods": 0.0, "stock": 0.0, "overdue_receivables": 0.0}
    overdue_orders = []
    for order in orders:
        data = order.get("data", order)
        part = order_capital(data, today)
        for key, value in part.items():
            parts[key] += value
        if part["overdue_receivables"] > 0:
            overdue_orders.append({"order_no": data.get("order_no"), "customer": data.get("customer"),
                                   "contract_no": data.get("contract_no"),
                                   "balance_due_date": data.get("balance_due_date"),
                                   "overdue": part["overdue_receivables"]})
    year = collections(orders, date(today.year, 1, 1), today)
    in_use = round(sum(parts.values()), 2)
    limit = round(year * rate, 2)
    return {**{k: round(v, 2) for k, v in parts.items()}, "capital_in_use": in_use,
            "year_collections": year, "rate": rate, "limit": limit, "over_by": round(in_use - limit, 2),
            "over": in_use > limit + CENT, "overdue_orders": overdue_orders, "as_of": today.isoformat()}


def regions(session) -> list[dict]:
    """The regions (大区): the offices right under the root of the office tree, by id."""
    o = Office.__table__
    parent = o.alias("parent")
    rows = session.execute(select(o.c.id, o.c.name).select_from(o.join(parent, parent.c.id == o.c.parent_id))
                           .where(parent.c.parent_id.is_(None)).order_by(o.c.id))
    return [{"id": r.id, "name": r.name} for r in rows]


class CapitalReport:
    """The capital in use of each region over `store`, for those `access.may_see_capital` allows."""

    def __init__(self, store: Store):
        self.store = store

    def visible_regions(self, viewer: str) -> list[dict]:
        """The regions `viewer` may see (a regional manager: his own; the VP and GM: all)."""
        with self.store.read() as session:
            who = person(session, viewer)
            return [r for r in regions(session) if access.may_see_capital(who, r["id"])]

    def figure(self, viewer: str, region: str, *, today: date | None = None) -> dict:
        """The region's capital in use on `today` (by default the company's day of the engine's
        present, BPM_TIMEZONE: at 01:00 China time on 1 December it is 1 December, not UTC's 30 November)."""
        today = today or clock.local_date()
        with self.store.read() as session:
            who = person(session, viewer)
            if not access.may_see_capital(who, region):
                raise Forbidden("%(user)s may not see the capital in use of region %(region)s: only its regional "
                                "manager, the VP of sales and the general manager may", user=who.username,
                                region=str(region)[:64])
            known = {r["id"]: r["name"] for r in regions(session)}
            if region not in known:
                raise NotFound("there is no region %(region)s", region=str(region)[:64])
            orders = records.listed_in_region(session.connection(), "order", region)
        return {"region": region, "name": known[region], **capital_in_use(orders, today)}
