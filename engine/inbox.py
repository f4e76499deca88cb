"""Queries over the human-task projection: a user's inbox (held by them or open to their roles),
with filters, sorting and paging that never touch an instance's state; saved filters.
"""
from __future__ import annotations

import base64
import functools
import json
import math
import operator
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta, timezone
from typing import Mapping

from sqlalchemy import and_, bindparam, delete, func, or_, select, union_all
from sqlalchemy.orm import Session

from . import inputs
from .access import Person, inbox_scopes
from .errors import InvalidInput
from .results import TaskView, task_view
from .statements import Prepared
from .store import HumanTask, SavedFilter

SORT_KEYS = ("process", "business_key", "customer", "amount", "step", "assignee", "created", "due")
_COLUMNS = {"process": HumanTask.process_id, "business_key": HumanTask.business_key,
            "customer": HumanTask.customer, "amount": HumanTask.amount, "step": HumanTask.name,
            "assignee": HumanTask.assignee, "created": HumanTask.created_at, "due": HumanTask.due_at}
SCOPES = ("all", "mine", "claimable")
MAX_PER_PAGE = 200
MAX_Q = 200


@dataclass(frozen=True)
class InboxQuery:
    q: str | None = None  # free text within business key, customer, step name and process id
    process: str | None = None
    overdue: bool = False
    customer: str | None = None
    amount_min: float | None = None
    amount_max: float | None = None
    scope: str = "all"
    sort: str = "due"
    desc: bool = False
    page: int = 1
    per_page: int = 50
    # Keyset paging: the page after the row `after` (or before the row `before`) names, in this
    # sort; `page` then only says which page that is. Without them, `page` is read with OFFSET.
    after: str | None = None
    before: str | None = None

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> "InboxQuery":
        """Read a query from URL parameters; a bad value is refused naming its field."""
        problems: dict[str, str] = {}
        values: dict = {}

        def number(name: str, kind=float, low=None, high=None):
            raw = (args.get(name) or "").strip()
            if not raw:
                return None
            try:
                value = kind(raw)
            except ValueError:
                problems[name] = f"{raw[:40]!r} is not a number"
                return None
            if problem := inputs.number_problem(value):
                problems[name] = problem
                return None
            if (low is not None and value < low) or (high is not None and value > high):
                problems[name] = f"must be between {low} and {high}"
                return None
            return value

        for name in ("process", "customer"):
            raw = (args.get(name) or "").strip()
            problem = inputs.text_problem(raw, _H.c[{"process": "process_id"}.get(name, name)].type.length)
            if problem:
                problems[name], raw = problem, ""
            values[name] = raw or None
        raw = (args.get("q") or "").strip()
        if problem := inputs.text_problem(raw, MAX_Q):
            problems["q"], raw = problem, ""
        values["q"] = raw or None
        values["overdue"] = (args.get("overdue") or "").lower() in ("1", "true", "on", "yes")
        values["desc"] = (args.get("desc") or "").lower() in ("1", "true", "on", "yes")
        values["amount_min"] = number("amount_min")
        values["amount_max"] = number("amount_max")
        values["page"] = number("page", int, 1, 10**6) or 1
        values["per_page"] = number("per_page", int, 1, MAX_PER_PAGE) or 50
        scope = (args.get("scope") or "all").strip()
        if scope not in SCOPES:
            problems["scope"] = f"must be one of {', '.join(SCOPES)}"
        values["scope"] = scope if scope in SCOPES else "all"
        sort = (args.get("sort") or "due").strip()
        if sort not in SORT_KEYS:
            problems["sort"] = f"must be one of {', '.join(SORT_KEYS)}"
        values["sort"] = sort if sort in SORT_KEYS else "due"
        values["after"], values["before"] = inputs.positions(
            args, lambda raw: _decode_cursor(raw, values["sort"], values["desc"]) is not None, problems)
        if problems:
            listed = "; ".join(f"{k}: {v}" for k, v in problems.items())
            raise InvalidInput("the inbox filter is not valid: %(problems)s", problems, problems=listed)
        return cls(**values)

    def to_args(self) -> dict[str, str]:
        """The non-default values as URL parameters (bookmarkable, shareable)."""
        default = InboxQuery()
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value == getattr(default, f.name):
                continue
            out[f.name] = ("1" if value else "") if isinstance(value, bool) else str(value)
        return out

    def replace(self, **changes) -> "InboxQuery":
        """This query changed; a position (after/before) is kept only when given again."""
        return InboxQuery(**{**asdict(self), "after": None, "before": None, **changes})


@dataclass
class InboxPage:
    tasks: list[TaskView]
    total: int
    page: int
    per_page: int
    next_after: str | None = None    # the position to ask for the next page with (after=)
    prev_before: str | None = None   # and the previous one (before=)

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))


_H = HumanTask.__table__
_SORT_COLUMNS = {key: _H.c[column.key] for key, column in _COLUMNS.items()}


def _order(columns, query: InboxQuery) -> list:
    column = columns[_SORT_COLUMNS[query.sort].key]
    return [column.is_(None), column.desc() if query.desc else column.asc(), columns.created_at, columns.id]


def _cursor(query: InboxQuery, task: TaskView) -> str:
    """An opaque position in the list: the row's sort value, created time and id."""
    value = getattr(task, {"process": "process_id", "step": "name", "created": "created"}.get(query.sort, query.sort))
    if isinstance(value, datetime):
        value = value.isoformat()
    raw = json.dumps([query.sort, query.desc, value, task.created.isoformat(), task.id], ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")


def _decode_cursor(text: str, sort: str, desc: bool) -> tuple | None:
    """(value, created, id) of a position made by `_cursor` for this sort, or None."""
    # A position comes back from the client: anything in it may be forged, and each value is bound
    # into SQL, so each must be what the column holds (aware times, finite numbers, clean short text).
    if len(text) > 2000:
        return None
    try:
        sort_, desc_, value, created, task_id = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if (sort_, desc_) != (sort, desc) or not inputs.fits_key(task_id, _H.c.id.type.length):
            return None
        if value is not None and sort in ("created", "due"):
            value = _aware(value)
        elif value is not None and sort == "amount" and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or inputs.number_problem(value)):
            return None
        elif value is not None and sort not in ("amount", "created", "due") and not inputs.fits_key(
                value, _SORT_COLUMNS[sort].type.length or inputs.MAX_TEXT):
            return None
        return value, _aware(created), task_id
    except (ValueError, TypeError, UnicodeDecodeError, OverflowError, RecursionError):
        return None


def _aware(text) -> datetime:
    """An instant with its offset, as the columns hold them; anything else is a ValueError."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError("a position's time must carry its offset")
    return value.astimezone(timezone.utc)  # (an instant beyond year 9999 in UTC: OverflowError)


def _beyond(sort: str, desc: bool, direction: str, null_key: bool):
    """Rows after (or before) the position bound as :k_value, :k_created, :k_id, in the inbox order
    (the sort column in its direction, undated/empty last, then created_at, id)."""
    column = _SORT_COLUMNS[sort]
    forward = direction == "after"
    tie = (or_(_H.c.created_at > bindparam("k_created", type_=_H.c.created_at.type),
               and_(_H.c.created_at == bindparam("k_created", type_=_H.c.created_at.type),
                    _H.c.id > bindparam("k_id")))
           if forward else
           or_(_H.c.created_at < bindparam("k_created", type_=_H.c.created_at.type),
               and_(_H.c.created_at == bindparam("k_created", type_=_H.c.created_at.type),
                    _H.c.id < bindparam("k_id"))))
    if null_key:  # the position is in the trailing group of rows without a value
        return and_(column.is_(None), tie) if forward else or_(column.is_not(None), and_(column.is_(None), tie))
    k_value = bindparam("k_value", type_=column.type)
    further = (column > k_value) if forward != desc else (column < k_value)
    inside = and_(column.is_not(None), or_(further, and_(column == k_value, tie)))
    return or_(column.is_(None), inside) if forward else inside


def _reversed(columns, query: InboxQuery) -> list:
    column = columns[_SORT_COLUMNS[query.sort].key]
    return [column.is_(None).desc(), column.asc() if query.desc else column.desc(),
            columns.created_at.desc(), columns.id.desc()]


@functools.lru_cache(maxsize=512)
def _statements(held: bool, scopes: int, filters: tuple[str, ...], sort: str, desc: bool,
                keyset: tuple[str, bool] | None = None) -> tuple[Prepared, Prepared]:
    """The count and the page for one shape of query, built and compiled once; the values (user,
    roles, filter values, limit and offset) are bound parameters.

    The visible set is read as disjoint branches: held by the user; open (no holder), of each
    role and in each office scope the user reaches (access.inbox_scopes), but not their own
    requests' approvals (`barred`, checked in the index). Each branch is one range of an inbox-order index (`ix_human_task_held_order`,
    `ix_human_task_open_order`), so its first rows come in order without reading the rest; an OR
    across them would read and sort every visible task (docs/benchmarks.md, "The inbox"). The
    count is the sum of the branches' counts; the page the first rows of each branch merged and
    cut again."""
    query = InboxQuery(sort=sort, desc=desc)
    branches = ([_H.c.assignee == bindparam("me")] if held else []) + [
        and_(_H.c.assignee.is_(None), _H.c.role == bindparam(f"role_{i}"),
             _H.c.office_scope == bindparam(f"scope_{i}"), _H.c.barred != bindparam("who"))
        for i in range(scopes)]
    conditions = [_FILTERS[name] for name in filters]
    counts = [select(func.count()).select_from(_H).where(b, *conditions).scalar_subquery() for b in branches]
    count = select(functools.reduce(operator.add, counts).label("total"))
    # The page's ids first, from the sort keys alone (which the order indexes hold: no table row is
    # read for the rows a deep page skips), then those rows joined back by id.
    keys = [_H.c.id, _SORT_COLUMNS[sort], _H.c.created_at] if sort != "created" else [_H.c.id, _H.c.created_at]
    # With a position (keyset paging) each branch starts right after it, so a deep page reads as
    # little as the first; "before" reads backwards from it. Without one, OFFSET.
    order = _order if keyset is None or keyset[0] == "after" else _reversed
    where = conditions + ([_beyond(sort, desc, *keyset)] if keyset else [])
    skip = bindparam("offset") if keyset is None else None
    if len(branches) == 1:
        ids = (select(*keys).where(branches[0], *where).order_by(*order(_H.c, query))
               .limit(bindparam("limit")).offset(skip).subquery("ids"))
    else:
        firsts = [select(*keys).where(b, *where).order_by(*order(_H.c, query))
                  .limit(bindparam("upto")).subquery().select() for b in branches]
        merged = union_all(*firsts).subquery("visible")
        ids = (select(merged).order_by(*order(merged.c, query))
               .limit(bindparam("limit")).offset(skip).subquery("ids"))
    page = select(_H).join(ids, ids.c.id == _H.c.id).order_by(*_order(ids.c, query))
    return Prepared(count), Prepared(page)


_FILTERS = {
    "process": _H.c.process_id == bindparam("process"),
    "customer": _H.c.customer == bindparam("customer"),
    "amount_min": _H.c.amount >= bindparam("amount_min"),
    "amount_max": _H.c.amount <= bindparam("amount_max"),
    "overdue": _H.c.due_at < bindparam("now"),
    # Free text: a leading wildcard no btree answers, so each task of a branch is read from its
    # order index and its row checked (docs/benchmarks.md, "Free text in the inbox").
    "q": or_(*(column.ilike(bindparam("q"), escape="\\") for column in
               (_H.c.business_key, _H.c.customer, _H.c.name, _H.c.process_id))),
}


def like_pattern(text: str) -> str:
    """`text` anywhere, LIKE's wildcards (% and _) and the escape itself taken as plain characters."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def search(session: Session, who: Person, query: InboxQuery, now: datetime) -> InboxPage:
    """One page of the user's inbox (see `_statements` for how it is read)."""
    held = query.scope in ("all", "mine")
    roles = inbox_scopes(who) if query.scope in ("all", "claimable") else []
    if not held and not roles:
        return InboxPage([], 0, query.page, query.per_page)
    values = {"process": query.process, "customer": query.customer, "amount_min": query.amount_min,
              "amount_max": query.amount_max, "overdue": now if query.overdue else None,
              "q": like_pattern(query.q) if query.q else None}
    filters = tuple(name for name in _FILTERS if values[name] is not None)
    position = query.after or query.before
    key = _decode_cursor(position, query.sort, query.desc) if position else None
    keyset = ("after" if query.after else "before", key[0] is None) if key else None
    count, page = _statements(held, len(roles), filters, query.sort, query.desc, keyset)
    offset = (query.page - 1) * query.per_page if keyset is None else 0
    params = {("now" if name == "overdue" else name): values[name] for name in filters}
    for i, (role, office_scope) in enumerate(roles):
        params[f"role_{i}"], params[f"scope_{i}"] = role, office_scope
    if held:
        params["me"] = who.username
    if roles:
        params["who"] = who.username
    total = count.first(session, params).total or 0
    rows = page.all(session, {**params, "limit": query.per_page, "offset": offset,
                              "upto": offset + query.per_page,
                              **({"k_value": key[0], "k_created": key[1], "k_id": key[2]} if key else {})})
    tasks = [task_view(r) for r in rows]
    result = InboxPage(tasks, total, query.page, query.per_page)
    if tasks and query.page * query.per_page < total:
        result.next_after = _cursor(query, tasks[-1])
    if tasks and query.page > 1:
        result.prev_before = _cursor(query, tasks[0])
    return result


def tasks_for(session: Session, who: Person, limit: int = 500) -> list[TaskView]:
    """Tasks held by `who` and open tasks of their roles, soonest due first, then oldest."""
    return search(session, who, InboxQuery(per_page=limit), datetime.max).tasks


def due_soon(task: TaskView, now: datetime, within: timedelta = timedelta(hours=1)) -> str | None:
    """'overdue', 'soon' (within the hour) or None — how the inbox colours the due column."""
    if task.due is None:
        return None
    if task.due < now:
        return "overdue"
    return "soon" if task.due - now <= within else None


# --- saved filters -------------------------------------------------------------------------------

def save_filter(session: Session, username: str, name: str, args: Mapping[str, str]) -> None:
    name = name.strip()
    if not name:
        raise InvalidInput("a saved filter needs a name", {"name": "this field is required"})
    problem = inputs.text_problem(name, SavedFilter.__table__.c.name.type.length)
    if problem:
        raise InvalidInput("the filter's name %(problem)s", {"name": problem}, problem=problem)
    InboxQuery.from_args(args)  # refuse a filter that could not be shown
    row = session.get(SavedFilter, (username, name))
    if row is None:
        session.add(SavedFilter(username=username, name=name, args=dict(args)))
    else:
        row.args = dict(args)


def saved_filters(session: Session, username: str) -> list[dict]:
    rows = session.scalars(select(SavedFilter).where(SavedFilter.username == username)
                           .order_by(SavedFilter.name))
    return [{"name": r.name, "args": dict(r.args)} for r in rows]


def delete_filter(session: Session, username: str, name: str) -> None:
    session.execute(delete(SavedFilter).where(SavedFilter.username == username, SavedFilter.name == name))
