"""The customer archive (客户档案): the cards, their change history, the general manager's grants of
access and the record of every read (seed 001 三(五)(六); RULES.md "Confidentiality").

Who may read, keep and grant is decided by engine.access (`may_read_archive`, `may_edit_archive`,
`may_grant_archive`); this module asks it, and records each read — allowed or refused — in the same
transaction that answers it. A grant is made only by the `archive_access` process: its service task
calls `grant_service`, and the runtime writes the grant in the transaction of the command that
reached it, once it has checked that the person who acted may grant.
"""
from __future__ import annotations

import copy
import re
from datetime import date, datetime
from typing import Any, Iterable

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import access, clock, determinism, inputs
from .runtime import Conflict, Forbidden, InvalidInput, NotFound, _may_view, person
from .store import (ArchiveGrant, ArchiveRead, CreditListEntry, CustomerCard, CustomerCardChange, Instance,
                    Store, User, UserRole)

DOORS = ("web", "api", "cli")
# What a card holds, in the order a page shows it; `credit_level` is kept on the credit list by
# the sales secretary group (engine.credit), so a card shows the list's level and is not edited for it.
FIELDS = ("name", "address", "phones", "contacts", "characteristics", "family", "credit_level",
          "notes", "rep")
EDITABLE = ("name", "address", "phones", "contacts", "characteristics", "family", "notes", "rep")
TEXT_LIMITS = {"name": 200, "address": 500, "characteristics": 4000, "family": 4000, "notes": 4000}
MAX_PHONES, MAX_CONTACTS, PHONE_LENGTH, CONTACT_PART_LENGTH = 10, 20, 40, 100
CONTACT_KEYS = ("name", "title", "phone")
# A new customer's id: a short code that reads well in a URL, a file name and on the phone (C-D01);
# kept in capitals so that c-d01 and C-D01 are one customer. Older ids (the seed's) stay as they are.
NEW_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,19}")
NEW_ID_RULE = "a short code of capital letters, digits and hyphens, such as C-D01"


# --- reading a card ----------------------------------------------------------------------------

def _superior_roles(session: Session, who: access.Person) -> frozenset[str]:
    if who.superior is None:
        return frozenset()
    return frozenset(session.scalars(select(UserRole.role_id).where(UserRole.username == who.superior)))


def _valid_grant(session: Session, username: str, customer_id: str, today: date) -> ArchiveGrant | None:
    """The grant of `username` for `customer_id` that lasts longest from `today`, if any is valid."""
    return session.scalars(select(ArchiveGrant).where(
        ArchiveGrant.grantee == username, ArchiveGrant.customer_id == customer_id,
        ArchiveGrant.valid_until >= today).order_by(ArchiveGrant.valid_until.desc(), ArchiveGrant.id)
        .limit(1)).first()


def _card_json(card: CustomerCard) -> dict:
    return {"id": card.id, **{f: copy.deepcopy(getattr(card, f)) for f in FIELDS},
            "revision": card.revision, "updated_at": card.updated_at.isoformat(),
            "updated_by": card.updated_by}


def _history(session: Session, customer_id: str) -> list[dict]:
    rows = session.scalars(select(CustomerCardChange).where(CustomerCardChange.customer_id == customer_id)
                           .order_by(CustomerCardChange.revision))
    return [{"revision": r.revision, "at": r.at.isoformat(), "by": r.by, "changes": copy.deepcopy(r.changes)}
            for r in rows]


class Archive:
    """The customer archive in `store`."""

    def __init__(self, store: Store):
        self.store = store

    def card(self, customer_id: str, reader: str, *, door: str, at: datetime | None = None) -> dict:
        """The card with its change history, for `reader`; the read is recorded either way."""
        if door not in DOORS:
            raise ValueError(f"unknown door {door!r}")
        at = at or clock.now()
        customer_id = _customer_id(customer_id)
        refused: Exception | None = None
        with self.store.write() as session:
            who = person(session, reader)
            card = session.get(CustomerCard, customer_id)
            superior_roles = _superior_roles(session, who)
            by_post = access.archive_reader_basis(who, superior_roles)
            grant = None
            if by_post is None and not access.serves_customer(who, card.rep if card else None):
                grant = _valid_grant(session, who.username, customer_id, at.date())
            basis = access.may_read_archive(who, superior_roles, card.rep if card else None, grant is not None)
            if basis is None:
                # The same answer whether the customer exists or not: a refusal tells nothing.
                refused = Forbidden("%(user)s may not read the archive of customer %(customer)s; ask the "
                                    "general manager for access (process archive_access)",
                                    user=who.username, customer=customer_id)
            elif card is None:
                # Only someone who may read every card (or holds a grant for it) learns it does not exist.
                raise NotFound("there is no customer archive %(customer)s", customer=customer_id)
            session.add(ArchiveRead(customer_id=customer_id, reader=who.username, at=at,
                                    allowed=basis is not None, basis=basis,
                                    grant_id=grant.id if basis == "grant" else None, door=door))
            if refused is None:
                result = _card_json(card)
                listed = session.get(CreditListEntry, customer_id)
                if listed is not None:  # the level is the credit list's (engine.credit), not the card's copy
                    result["credit_level"] = listed.level
                result["history"] = _history(session, customer_id)
                result["basis"] = basis
                result["grant"] = ({"id": grant.id, "valid_until": grant.valid_until.isoformat()}
                                   if basis == "grant" else None)
                result["may_edit"] = access.may_edit_archive(who, card.rep)
                result["may_assign"] = access.may_assign_customer(who)
        if refused is not None:
            raise refused  # after the commit: the refused attempt stays on record
        return result

    def listing(self, viewer: str, *, at: datetime | None = None) -> list[dict]:
        """Every card's id, with its name and a link only where `viewer` may read it (no card is
        read here, so nothing is recorded)."""
        at = at or clock.now()
        with self.store.read() as session:
            who = person(session, viewer)
            superior_roles = _superior_roles(session, who)
            granted = set(session.scalars(select(ArchiveGrant.customer_id).where(
                ArchiveGrant.grantee == who.username, ArchiveGrant.valid_until >= at.date())))
            out = []
            for card_id, name, rep in session.execute(select(CustomerCard.id, CustomerCard.name, CustomerCard.rep)
                                                      .order_by(CustomerCard.id)):
                basis = access.may_read_archive(who, superior_roles, rep, card_id in granted)
                out.append({"id": card_id, "name": name if basis else None, "may_read": basis is not None})
            return out

    # --- building a card (建立客户档案卡, 三(五)2(1)) ---

    def create(self, customer_id: Any, creator: str, fields: Any, *, at: datetime | None = None) -> dict:
        """A new card, built by the department manager or a sales rep (`access.may_create_archive`);
        its creation is its first change (revision 1: each field given, `[None, value]`). A rep's
        card is served by him; the department manager may name any active rep, or none yet.
        An id already in use is refused (409) with a sentence that says nothing of that card."""
        at = at or clock.now()
        with self.store.write() as session:
            who = person(session, creator)
            check_may_create(who)
            customer_id = _new_customer_id(customer_id)
            if not isinstance(fields, dict):
                raise InvalidInput("a new card must be a JSON object of field: value")
            clean = _checked_changes(session, {"name": "", **fields})  # the name is required
            if access.may_assign_customer(who):
                rep = clean.get("rep")
            elif clean.get("rep", who.username) != who.username:
                raise Forbidden("only the department manager says which sales rep serves a customer; "
                                "%(user)s may not", user=who.username)
            else:
                rep = who.username
            taken = Conflict("the customer id %(customer)s is already in use; no card was created: "
                             "choose another id", customer=customer_id)
            if session.get(CustomerCard, customer_id) is not None:
                raise taken
            values = {"name": "", "address": "", "phones": [], "contacts": [], "characteristics": "",
                      "family": "", "credit_level": None, "notes": "", **clean, "rep": rep}
            session.add(CustomerCard(id=customer_id, **values, revision=1, updated_at=at, updated_by=who.username))
            try:
                session.flush()
            except IntegrityError:  # built at the same moment by someone else
                raise taken from None
            changes = {f: [None, copy.deepcopy(v)] for f, v in values.items() if v not in (None, "", [])}
            session.add(CustomerCardChange(customer_id=customer_id, revision=1, at=at, by=who.username,
                                           changes=changes))
            if session.get(CreditListEntry, customer_id) is None:
                # A new customer is on the credit list at once, not yet rated: it may order (paying
                # in advance) until the sales secretaries' review rates it (engine.credit).
                session.add(CreditListEntry(id=customer_id, name=values["name"], level=None,
                                            since=at.date(), updated_at=at))
            return {"id": customer_id, "revision": 1, "changes": changes}

    # --- keeping a card up to date (三(五)2(2): 变更记录) ---

    def update(self, customer_id: str, editor: str, changes: Any, *, at: datetime | None = None,
               revision: int | None = None) -> dict:
        """Change fields of a card; the change (who, when, each field before and after) is kept.
        `revision`: the card's revision the editor saw (refused if someone changed it since)."""
        at = at or clock.now()
        customer_id = _customer_id(customer_id)
        if not isinstance(changes, dict):
            raise InvalidInput("the changes to a card must be a JSON object of field: value")
        with self.store.write() as session:
            who = person(session, editor)
            card = session.scalars(select(CustomerCard).where(CustomerCard.id == customer_id)
                                   .with_for_update()).first()
            if card is None:
                if "dept_manager" in who.roles:
                    raise NotFound("there is no customer archive %(customer)s", customer=customer_id)
                raise Forbidden("%(user)s may not change the archive of customer %(customer)s",
                                user=who.username, customer=customer_id)
            if not access.may_edit_archive(who, card.rep):
                raise Forbidden("%(user)s may not change the archive of customer %(customer)s",
                                user=who.username, customer=customer_id)
            clean = _checked_changes(session, changes)
            if "rep" in clean and clean["rep"] != card.rep and not access.may_assign_customer(who):
                raise Forbidden("only the department manager says which sales rep serves a customer; "
                                "%(user)s may not", user=who.username)
            if revision is not None and revision != card.revision:
                raise Conflict("the archive of customer %(customer)s was changed by %(user)s since you "
                               "read it (revision %(revision)s); read it again and retry",
                               customer=customer_id, user=card.updated_by, revision=card.revision)
            diff = {f: [copy.deepcopy(getattr(card, f)), v] for f, v in clean.items() if getattr(card, f) != v}
            if diff:
                for f, (_before, after) in diff.items():
                    setattr(card, f, copy.deepcopy(after))
                card.revision += 1
                card.updated_at, card.updated_by = at, who.username
                session.add(CustomerCardChange(customer_id=customer_id, revision=card.revision, at=at,
                                               by=who.username, changes=diff))
            return {"id": customer_id, "revision": card.revision, "changes": diff}

    # --- the record of reads, for the auditor ---

    def reads(self, viewer: str, *, customer: str | None = None, limit: int = 200) -> list[dict]:
        """The newest reads first (allowed and refused), of one customer or all."""
        with self.store.read() as session:
            _check_may_view_reads(session, viewer)
            return reads_of(session, _customer_id(customer) if customer else None, limit)

    def instance_reads(self, viewer: str, instance_id: str, *, limit: int = 50) -> list[dict] | None:
        """The reads of the archive of an instance's customer (`Instance.customer`), newest first, for
        the instance page: None when `viewer` may not see the record of reads (the page then shows
        nothing of it), [] when the instance names no customer or nobody read its card. An instance
        the viewer may not see is NotFound, as everywhere."""
        with self.store.read() as session:
            who = person(session, viewer)
            if not access.may_view_archive_reads(who):
                return None
            row = session.execute(select(Instance.customer, Instance.initiator)
                                  .where(Instance.id == instance_id)).first() if inputs.fits_key(instance_id, 36) else None
            if row is None or not _may_view(session, instance_id, who, row.initiator):
                raise NotFound("there is no instance %(instance)s", instance=instance_id)
            return reads_beside(session, who, row.customer, limit)

    def grants(self, viewer: str, *, customer: str | None = None) -> list[dict]:
        """The grants made, newest first: for the general manager and the auditor."""
        with self.store.read() as session:
            who = person(session, viewer)
            if not access.may_view_archive_reads(who):
                raise Forbidden("%(user)s may not see the grants of archive access", user=who.username)
            query = select(ArchiveGrant).order_by(ArchiveGrant.granted_at.desc(), ArchiveGrant.id.desc())
            if customer:
                query = query.where(ArchiveGrant.customer_id == _customer_id(customer))
            return [{"id": g.id, "customer": g.customer_id, "grantee": g.grantee, "granted_by": g.granted_by,
                     "granted_at": g.granted_at.isoformat(), "valid_until": g.valid_until.isoformat(),
                     "instance_id": g.instance_id} for g in session.scalars(query)]


def _check_may_view_reads(session: Session, viewer: str) -> None:
    who = person(session, viewer)
    if not access.may_view_archive_reads(who):
        raise Forbidden("%(user)s may not see the record of archive reads; the auditor may", user=who.username)


def reads_beside(session: Session, who: access.Person, customer_id: str | None, limit: int = 50) -> list[dict] | None:
    """The reads of `customer_id`'s card shown beside an instance of that customer: None when `who`
    may not see the record of reads, [] when there is no customer or nobody read its card."""
    if not access.may_view_archive_reads(who):
        return None
    return reads_of(session, customer_id, limit) if customer_id else []


def reads_of(session: Session, customer_id: str | None, limit: int = 200) -> list[dict]:
    """The reads of one customer's card (or of all, None), newest first, allowed and refused alike;
    one range of the (customer_id, at) index. Whoever calls it has checked that the reader may see
    them (`access.may_view_archive_reads`)."""
    query = select(ArchiveRead).order_by(ArchiveRead.at.desc(), ArchiveRead.id.desc()).limit(limit)
    if customer_id is not None:
        query = query.where(ArchiveRead.customer_id == customer_id)
    return [{"id": r.id, "at": r.at.isoformat(), "reader": r.reader, "customer": r.customer_id,
             "allowed": r.allowed, "basis": r.basis, "grant_id": r.grant_id, "door": r.door}
            for r in session.scalars(query)]


def _customer_id(value: Any) -> str:
    if not inputs.fits_key(value, 64) or not value.strip() or not value.isprintable():
        raise InvalidInput("a customer id is a short line of text, such as C-A01")
    return value.strip()


def check_may_create(who: access.Person) -> None:
    """Refuse, with the archive's own sentence, someone who may not build a card (the new-card page
    asks before it shows its form)."""
    if not access.may_create_archive(who):
        raise Forbidden("%(user)s may not create a customer archive; the sales reps and the "
                        "department manager build the cards", user=who.username)


def _new_customer_id(value: Any) -> str:
    if isinstance(value, str) and NEW_ID.fullmatch(value.strip()):
        return value.strip().upper()
    raise InvalidInput("the card was not created: the customer id must be a short code of capital "
                       "letters, digits and hyphens, such as C-D01 (at most 20 characters)", {"id": NEW_ID_RULE})


def _text(field: str, value: Any, limit: int, problems: dict[str, str]) -> str | None:
    if not isinstance(value, str):
        problems[field] = "must be text"
        return None
    value = value.strip()
    problem = inputs.text_problem(value, limit)
    if problem:
        problems[field] = problem
    return value


def _checked_changes(session: Session, changes: dict) -> dict:
    """The changes as the card stores them, or InvalidInput naming every bad field."""
    problems: dict[str, str] = {}
    clean: dict[str, Any] = {}
    for key, value in changes.items():
        if key == "credit_level":
            problems[key] = "the credit level is kept on the credit list by the sales secretary group"
        elif key not in EDITABLE:
            problems[str(key)[:64]] = "not a field of a customer card"
        elif key in TEXT_LIMITS:
            clean[key] = _text(key, value, TEXT_LIMITS[key], problems)
            if key == "name" and not problems.get(key) and not clean[key]:
                problems[key] = "this field is required"
        elif key == "phones":
            if not isinstance(value, list) or len(value) > MAX_PHONES:
                problems[key] = f"a list of at most {MAX_PHONES} phone numbers"
            else:
                clean[key] = [p for p in (_text(f"phones.{i}", v, PHONE_LENGTH, problems)
                                          for i, v in enumerate(value)) if p]
        elif key == "contacts":
            if not isinstance(value, list) or len(value) > MAX_CONTACTS:
                problems[key] = f"a list of at most {MAX_CONTACTS} contacts"
                continue
            contacts = []
            for i, contact in enumerate(value):
                if not isinstance(contact, dict) or set(contact) - set(CONTACT_KEYS):
                    problems[f"contacts.{i}"] = "a contact has name, title and phone"
                    continue
                entry = {k: _text(f"contacts.{i}.{k}", contact.get(k, ""), CONTACT_PART_LENGTH, problems) or ""
                         for k in CONTACT_KEYS}
                if any(entry.values()):
                    contacts.append(entry)
            clean[key] = contacts
        elif key == "rep":
            if value in (None, ""):
                clean[key] = None
            elif not inputs.fits_key(value, 64) or session.scalar(
                    select(UserRole.username).join(User, User.username == UserRole.username).where(
                        UserRole.username == value, UserRole.role_id == "sales_rep",
                        User.active.is_(True))) is None:
                problems[key] = "not an active sales rep"
            else:
                clean[key] = value
    if problems:
        first = next(iter(problems))
        raise InvalidInput("the card was not changed: %(field)s: %(problem)s", problems,
                           field=first, problem=problems[first])
    return clean


# --- demo cards ---------------------------------------------------------------------------------

def seed_cards(session: Session, cards: Iterable[dict], at: datetime) -> int:
    """Add the cards not yet in the archive (each with its first change: created by `init`)."""
    existing = set(session.scalars(select(CustomerCard.id)))
    added = 0
    for data in cards:
        if data["id"] in existing:
            continue
        values = {f: copy.deepcopy(data.get(f)) for f in FIELDS}
        for f in ("address", "characteristics", "family", "notes"):
            values[f] = values[f] or ""
        values["phones"] = values["phones"] or []
        values["contacts"] = values["contacts"] or []
        session.add(CustomerCard(id=data["id"], **values, revision=1, updated_at=at, updated_by="init"))
        session.flush()
        session.add(CustomerCardChange(customer_id=data["id"], revision=1, at=at, by="init",
                                       changes={f: [None, v] for f, v in values.items() if v not in (None, "", [])}))
        added += 1
    return added


# --- grants, made by the archive_access process -------------------------------------------------

def grant_service(customer: Any, until: Any) -> dict:
    """Engine service `grant_archive_access` for a BPMN service task: grant the instance's initiator
    access to `customer`'s card up to and including the day `until` (ISO date). The grant is written
    by the command's own transaction (`record_grants`), which first checks that whoever completed the
    step leading here may grant (the general manager); anywhere else this service refuses."""
    ctx = determinism.current()
    if ctx is None:
        raise RuntimeError("grant_archive_access runs only as a step of a process instance")
    customer = _customer_id(customer)
    try:
        last_day = date.fromisoformat(str(until)[:10])
    except ValueError:
        raise ValueError(f"the end date of the grant {until!r} is not a date such as 2026-12-31") from None
    if last_day < clock.now().date():
        raise ValueError(f"the end date of the grant {last_day.isoformat()} is in the past")
    grant = {"customer": customer, "until": last_day.isoformat()}
    ctx.archive_grants.append(grant)
    return dict(grant)


def record_grants(conn: Connection, grants: list[dict], *, grantee: str, actor: str,
                  instance_id: str, at: datetime) -> None:
    """Write the grants a command made, in its transaction; refused unless `actor` may grant."""
    try:
        grantor = access.person(conn, actor)
    except access.UnknownUser:
        grantor = None
    if grantor is None or not access.may_grant_archive(grantor):
        raise Forbidden("%(user)s may not grant access to a customer archive; only the general manager may",
                        user=actor)
    conn.execute(insert(ArchiveGrant.__table__), [
        {"customer_id": g["customer"], "grantee": grantee, "granted_by": grantor.username, "granted_at": at,
         "valid_until": date.fromisoformat(g["until"]), "instance_id": instance_id} for g in grants])
