"""The credit list (客户信用等级一览表): each customer's credit level — A, B or C (seed 001 四(一)), or
none yet — with the day it holds from, and every change of a level: who approved it, when, old and
new, why, and the credit_review instance that proposed and approved it.

The sales secretary group keeps the list monthly (seed 004 SSG 四 1 7)): only the credit_review
process changes a level. Its steps call two engine services: `proposal_service` checks the proposed
changes and shows each customer's present level beside the new one; `apply_service`, reached after
the department manager's approval, hands the changes to the command, and the runtime writes them
in the same transaction (`record_changes`) once it has checked that the person who acted is a
department manager (业务部经理) — anyone else, and the whole step is refused.

The processes read the list inside their command (`level_of`, `is_listed`: the `credit_level`
service and the `customer` form lookup of processes/), on the command's own connection. The list
holds an id, a name and a level: nothing of the confidential archive card (engine.customers), so
reading it is never a way to the card.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from . import access, determinism, inputs
from .runtime import Forbidden, InvalidInput, person
from .statements import Prepared
from .store import CreditChange, CreditListEntry, Store

LEVELS = ("A", "B", "C")
REASON_LIMIT = 1000
_L, _C = CreditListEntry.__table__, CreditChange.__table__
_SELECT_ENTRY = Prepared(select(_L.c.id, _L.c.name, _L.c.level, _L.c.since).where(_L.c.id == bindparam("id")))


def _connection() -> Connection:
    conn = determinism.connection()
    if conn is None:
        raise RuntimeError("the credit list is read by a step of a process instance, inside its command")
    return conn


def _entry(conn: Connection, customer: Any):
    if not inputs.fits_key(customer, _L.c.id.type.length):
        return None
    return _SELECT_ENTRY.first(conn, {"id": customer})


# --- what the processes read ---------------------------------------------------------------------

def level_of(customer: Any) -> str | None:
    """The customer's level on the list ("A", "B", "C"), or None: not listed, or not yet rated."""
    row = _entry(_connection(), customer)
    return row.level if row is not None and row.level in LEVELS else None


def is_listed(customer: Any) -> bool:
    """Whether the customer is on the list (rated or not)."""
    return _entry(_connection(), customer) is not None


# --- the services of credit_review ---------------------------------------------------------------

def _checked(conn: Connection, changes: Any) -> list[dict]:
    """The proposed changes, each with the customer's name and present level; ValueError with one
    sentence naming the first wrong entry."""
    if not isinstance(changes, list):
        raise ValueError("the proposed changes must be a list of customer, new level and reason")
    seen: set[str] = set()
    out = []
    for i, change in enumerate(changes, 1):
        if not isinstance(change, dict):
            raise ValueError(f"change {i} is not a customer, a new level and a reason")
        customer, level, reason = change.get("customer"), change.get("level"), change.get("reason") or ""
        row = _entry(conn, customer)
        if row is None:
            raise ValueError(f"change {i}: {customer!r} is not a customer on the credit list")
        if level not in LEVELS:
            raise ValueError(f"change {i}: the credit level of {customer} must be A, B or C, not {level!r}")
        if customer in seen:
            raise ValueError(f"change {i}: customer {customer} is proposed twice; one change per customer")
        if not isinstance(reason, str) or inputs.text_problem(reason, REASON_LIMIT):
            raise ValueError(f"change {i}: the reason must be text of at most {REASON_LIMIT} characters")
        seen.add(customer)
        out.append({"customer": customer, "name": row.name, "level_before": row.level or "",
                    "level": level, "reason": reason.strip()})
    return out


def proposal_service(changes: Any) -> list[dict]:
    """Engine service `credit_proposal`: the proposed changes checked, each beside the customer's
    present level (for the department manager's review)."""
    return _checked(_connection(), changes)


def apply_service(changes: Any) -> dict:
    """Engine service `apply_credit_changes`: hand the approved changes to the command, which writes
    them (`record_changes`) once it has checked that whoever completed the step leading here is a
    department manager; anywhere else this service refuses."""
    ctx = determinism.current()
    if ctx is None:
        raise RuntimeError("apply_credit_changes runs only as a step of a process instance")
    checked = _checked(_connection(), changes)
    ctx.credit_changes.extend({"customer": c["customer"], "level": c["level"], "reason": c["reason"]}
                              for c in checked)
    return {"applied": [{"customer": c["customer"], "from": c["level_before"] or None, "to": c["level"]}
                        for c in checked if c["level_before"] != c["level"]],
            "unchanged": [c["customer"] for c in checked if c["level_before"] == c["level"]]}


def record_changes(conn: Connection, changes: list[dict], *, actor: str, instance_id: str,
                   at: datetime) -> None:
    """Write the changes a command approved, in its transaction; refused unless `actor` is a
    department manager. A level equal to the present one is no change and leaves no record."""
    try:
        approver = access.person(conn, actor)
    except access.UnknownUser:
        approver = None
    if approver is None or not access.may_approve_credit(approver):
        raise Forbidden("%(user)s may not change the credit list; only the department manager approves "
                        "a change of credit level", user=actor)
    for change in changes:
        level = change["level"]
        if level not in LEVELS:
            raise InvalidInput("the credit level of %(customer)s must be A, B or C, not %(level)r",
                               {"level": "must be A, B or C"}, customer=change["customer"], level=level)
        before = conn.execute(select(_L.c.level).where(_L.c.id == change["customer"]).with_for_update()).first()
        if before is None:
            raise InvalidInput("%(customer)s is not a customer on the credit list", customer=change["customer"])
        if before.level == level:
            continue
        conn.execute(update(_L).where(_L.c.id == change["customer"])
                     .values(level=level, since=at.date(), updated_at=at))
        conn.execute(insert(_C).values(customer_id=change["customer"], at=at, approved_by=approver.username,
                                       old_level=before.level, new_level=level, reason=change["reason"],
                                       instance_id=instance_id))


# --- reading the list (pages, API, CLI) ----------------------------------------------------------

def _entry_json(row: CreditListEntry) -> dict:
    return {"id": row.id, "name": row.name, "level": row.level, "since": row.since.isoformat()}


def _change_json(row: CreditChange) -> dict:
    return {"customer": row.customer_id, "at": row.at.isoformat(), "approved_by": row.approved_by,
            "from": row.old_level, "to": row.new_level, "reason": row.reason, "instance_id": row.instance_id}


class CreditList:
    """The credit list in `store`, for the people who work with it (access.may_view_credit_list)."""

    def __init__(self, store: Store):
        self.store = store

    def _viewer(self, session: Session, viewer: str) -> access.Person:
        who = person(session, viewer)
        if not access.may_view_credit_list(who):
            raise Forbidden("%(user)s may not see the credit list; the sales secretaries, the managers who "
                            "approve orders and contracts, finance and the auditor may", user=who.username)
        return who

    def entries(self, viewer: str) -> list[dict]:
        """Every customer with its level and the day it holds from, by id."""
        with self.store.read() as session:
            self._viewer(session, viewer)
            return [_entry_json(r) for r in session.scalars(select(CreditListEntry).order_by(CreditListEntry.id))]

    def changes(self, viewer: str, *, customer: str | None = None, limit: int = 500) -> list[dict]:
        """The changes of level, newest first, of one customer or all."""
        with self.store.read() as session:
            self._viewer(session, viewer)
            query = select(CreditChange).order_by(CreditChange.at.desc(), CreditChange.id.desc()).limit(limit)
            if customer is not None:
                query = query.where(CreditChange.customer_id == customer)
            return [_change_json(r) for r in session.scalars(query)]


# --- the list a deployment starts from ------------------------------------------------------------

def seed(session: Session, entries: Iterable[dict], at: datetime) -> int:
    """Add the customers not yet listed (`id`, `name`, `level`: A, B, C or None); listed ones are
    left as they are (their level is the review's)."""
    existing = set(session.scalars(select(CreditListEntry.id)))
    added = 0
    for entry in entries:
        if entry["id"] in existing:
            continue
        level = entry.get("level")
        if level is not None and level not in LEVELS:
            raise ValueError(f"customer {entry['id']}: credit level {level!r} is not A, B or C")
        session.add(CreditListEntry(id=entry["id"], name=entry["name"], level=level,
                                    since=entry.get("since") or at.date(), updated_at=at))
        added += 1
    return added

