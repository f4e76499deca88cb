"""Persistence: SQLAlchemy 2.0 typed models, the database connection and its transactions.

SQLite (WAL, under `instance/`) by default, PostgreSQL through `BPM_DATABASE_URL`. The schema is
owned by the Alembic migrations in `engine/migrations`; `migrate()` applies them.
"""
from __future__ import annotations

import fcntl
import os
import select
import threading
import time
from collections import deque
from contextlib import contextmanager, nullcontext
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Optional

from sqlalchemy import (JSON, BigInteger, Boolean, Date, DateTime, Float, ForeignKey, Index, Integer,
                        String, Text, UniqueConstraint, create_engine, event, false, text)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes on every backend (SQLite keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Optional[datetime], dialect) -> Optional[datetime]:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Optional[datetime], dialect) -> Optional[datetime]:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    pass


# A partial index has the same WHERE on both databases. SQLite's is given with the Index;
# PostgreSQL's is added when a PostgreSQL engine is made (`_postgresql_where`): naming a dialect's
# keyword (`postgresql_where=`) imports SQLAlchemy's dialect for it, ~40 ms that a SQLite process
# (a CLI command above all) would pay for nothing.
_POSTGRESQL_WHERE: list[tuple[Index, str]] = []


def _partial_index(name: str, *columns: Any, where: str) -> Index:
    index = Index(name, *columns, sqlite_where=text(where))
    _POSTGRESQL_WHERE.append((index, where))
    return index


def _postgresql_where() -> None:
    """Give the partial indexes their WHERE on PostgreSQL (see `_partial_index`); idempotent."""
    while _POSTGRESQL_WHERE:
        index, where = _POSTGRESQL_WHERE.pop()
        index.dialect_options["postgresql"]["where"] = text(where)


# --- organisation -----------------------------------------------------------------------------

class Office(Base):
    __tablename__ = "office"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    parent_id: Mapped[Optional[str]] = mapped_column(ForeignKey("office.id"))


class Setting(Base):
    """A fact of the deployment kept in its database: `demo` = "1" after `bpm init --demo`."""
    __tablename__ = "setting"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Role(Base):
    __tablename__ = "role"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name_zh: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str] = mapped_column(String(100))


class User(Base):
    __tablename__ = "app_user"
    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(300))
    office_id: Mapped[Optional[str]] = mapped_column(ForeignKey("office.id"))
    superior: Mapped[Optional[str]] = mapped_column(ForeignKey("app_user.username"))
    active: Mapped[bool] = mapped_column(default=True)
    # Part of every signed-in session; raised at sign-out and password change, which ends every
    # session of the user at once, a copied session cookie included.
    session_version: Mapped[int] = mapped_column(Integer, default=0)


class UserRole(Base):
    __tablename__ = "user_role"
    username: Mapped[str] = mapped_column(ForeignKey("app_user.username"), primary_key=True)
    role_id: Mapped[str] = mapped_column(ForeignKey("role.id"), primary_key=True)


# --- definitions ------------------------------------------------------------------------------

class Definition(Base):
    """One deployed, immutable version of one process. Two versions may have the same content:
    a reverted file is deployed again as a new version (engine.versions.deploy, `same_as`)."""
    __tablename__ = "definition"
    __table_args__ = (UniqueConstraint("process_id", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    process_id: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(300))
    content_hash: Mapped[str] = mapped_column(String(64))
    files: Mapped[dict[str, str]] = mapped_column(JSON)
    spec: Mapped[str] = mapped_column(Text)  # serialized spec + subprocess specs, shared by instances
    lane_roles: Mapped[dict[str, str]] = mapped_column(JSON)
    forms: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # form name -> JSON Schema
    deployed_by: Mapped[str] = mapped_column(String(64))
    deployed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ProcessDraft(Base):
    """A designer's saved, not yet deployed set of a process's files (engine/drafts.py): numbered
    per process, never changed once saved; deploying one makes a Definition."""
    __tablename__ = "process_draft"
    __table_args__ = (UniqueConstraint("process_id", "number"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    process_id: Mapped[str] = mapped_column(String(200), index=True)
    number: Mapped[int] = mapped_column(Integer)
    files: Mapped[dict[str, str]] = mapped_column(JSON)  # file name -> text
    based_on_version: Mapped[Optional[int]] = mapped_column(Integer)
    author: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


# --- runtime ----------------------------------------------------------------------------------

# What the instance search filters by, held in its order indexes so a filter is checked in the index.
_SEARCHED = ("status", "process_id", "definition_id", "customer", "initiator", "business_key")


class Instance(Base):
    __tablename__ = "instance"
    # The instance search (engine/instances.py) reads a page as the first rows of one of these
    # orders (started, last change, business key — rows without one last), all of it or one
    # initiator's, each holding the searched columns (a filter or the free text is checked in the
    # index, without the wide row); `ix_log_entry_actor_instance` gives the instances someone took
    # part in.
    __table_args__ = (
        Index("ix_instance_created_order", "created_at", "id", *_SEARCHED),
        Index("ix_instance_updated_order", "updated_at", "id", *_SEARCHED),
        Index("ix_instance_key_order", text("(business_key IS NULL)"), "business_key", "id", "created_at",
              *_SEARCHED[:-1]),
        Index("ix_instance_initiator_created", "initiator", "created_at", "id",
              *(c for c in _SEARCHED if c != "initiator")),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    definition_id: Mapped[int] = mapped_column(ForeignKey("definition.id"), index=True)
    process_id: Mapped[str] = mapped_column(String(200), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    business_key: Mapped[Optional[str]] = mapped_column(String(200), index=True)
    customer: Mapped[Optional[str]] = mapped_column(String(200), index=True)
    amount: Mapped[Optional[float]] = mapped_column(Float)
    initiator: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(Text)
    state_hash: Mapped[str] = mapped_column(String(64))
    revision: Mapped[int] = mapped_column(Integer)  # = log length; checked at write (races)
    log_hash: Mapped[str] = mapped_column(String(64))  # hash of the last log entry
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)


class HumanTask(Base):
    """Inbox projection: one row per READY user task; derived from the state, never edited."""
    __tablename__ = "human_task"
    # The inbox (engine/inbox.py) reads the visible set as disjoint branches (held by me; open and
    # of one of my roles), each one range of an index already in inbox order (due first, undated
    # last, then oldest) that also holds the filtered columns, so a filter is checked without the
    # table; a customer has its own such index; the cover index answers every branch's count.
    # An open task is read per (role, office_scope): the scope is part of the open branch's range
    # (and of the open tasks' customer index, which the planner then prefers for a customer);
    # `barred` is in the open indexes too, so leaving the submitter's own approvals out of their
    # inbox is checked in the index.
    __table_args__ = (
        Index("ix_human_task_held_order", "assignee", text("(due_at IS NULL)"), "due_at",
              "created_at", "id", "process_id", "amount"),
        _partial_index("ix_human_task_open_order", "role", "office_scope", text("(due_at IS NULL)"), "due_at",
                       "created_at", "id", "process_id", "amount", "barred",
                       "assignee",  # (always NULL: makes the index covering)
                       where="assignee IS NULL"),
        Index("ix_human_task_customer_order", "customer", "assignee", text("(due_at IS NULL)"),
              "due_at", "created_at", "id"),
        _partial_index("ix_human_task_customer_open_order", "customer", "role", "office_scope",
                       text("(due_at IS NULL)"), "due_at", "created_at", "id", "barred",
                       "assignee",  # (always NULL: makes the index covering)
                       where="assignee IS NULL"),
        Index("ix_human_task_visible_cover", "assignee", "role", "office_scope", "customer", "process_id",
              "due_at", "amount", "barred"),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    instance_id: Mapped[str] = mapped_column(ForeignKey("instance.id"), index=True)
    process_id: Mapped[str] = mapped_column(String(200))
    element_id: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(300))
    role: Mapped[Optional[str]] = mapped_column(String(64))
    assignee: Mapped[Optional[str]] = mapped_column(String(64))
    # The office or region whose people may take the task while it is open (access.task_scope);
    # "" = the whole company. Never NULL: an equality keeps the open branch one index range.
    office_scope: Mapped[str] = mapped_column(String(64), default="", server_default="")
    # Who may not take the task while it is open although they hold its role: the submitter of an
    # approval (four-eyes); "" = nobody. The inbox leaves it out of their open branches.
    barred: Mapped[str] = mapped_column(String(64), default="", server_default="")
    form: Mapped[Optional[str]] = mapped_column(String(200))
    business_key: Mapped[Optional[str]] = mapped_column(String(200))
    customer: Mapped[Optional[str]] = mapped_column(String(200))
    amount: Mapped[Optional[float]] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    # who held it before an escalation moved it to `assignee` (None: not escalated, or handed back)
    escalated_from: Mapped[Optional[str]] = mapped_column(String(64))


class DueTimer(Base):
    """Something of an instance due at an instant — a waiting timer event (`timer`), a reminder
    to a task's holder (`reminder`) or a task's escalation (`escalation`); derived from the state."""
    __tablename__ = "due_timer"
    id: Mapped[str] = mapped_column(String(80), primary_key=True)  # task id, or task id:kind
    instance_id: Mapped[str] = mapped_column(ForeignKey("instance.id"), index=True)
    element_id: Mapped[str] = mapped_column(String(200))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    kind: Mapped[str] = mapped_column(String(16), default="timer")
    task_id: Mapped[Optional[str]] = mapped_column(String(36))


class MessageWait(Base):
    """A message an instance waits for; derived from the state."""
    __tablename__ = "message_wait"
    # The waits whose correlation keys are not written yet (waiting since before migration 0017):
    # the first delivery of their message writes them (runtime's lazy backfill), found by this index.
    __table_args__ = (Index("ix_message_wait_message_keyed", "message", "keyed"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # the waiting task's id
    instance_id: Mapped[str] = mapped_column(ForeignKey("instance.id"), index=True)
    message: Mapped[str] = mapped_column(String(200), index=True)
    element_id: Mapped[str] = mapped_column(String(200))
    # True: its MessageKey rows are written (every wait projected since migration 0017)
    keyed: Mapped[bool] = mapped_column(Boolean, default=True, server_default=false())


class MessageKey(Base):
    """One correlation key of a message an instance waits for: the value of the variable the
    message's `correlation` property names, as the instance's data held it when it was projected
    (derived from the state with its MessageWait, in the same transaction). Delivery finds the
    waiting instance with one lookup in (message, key, value) instead of restoring every waiting
    instance. A value longer than the column is stored as its digest (`runtime.key_value`)."""
    __tablename__ = "message_key"
    __table_args__ = (Index("ix_message_key_lookup", "message", "key", "value"),)
    wait_id: Mapped[str] = mapped_column(String(36), primary_key=True)  # MessageWait.id
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    instance_id: Mapped[str] = mapped_column(ForeignKey("instance.id"), index=True)
    message: Mapped[str] = mapped_column(String(200))
    value: Mapped[str] = mapped_column(String(200))


class LogEntry(Base):
    """Append-only, hash-chained log of the commands an instance received."""
    __tablename__ = "log_entry"
    # When each task was completed, in one index range per task and without the table: the SLA
    # report (engine/reports.py) looks up every breached task's completion here. Who took part in
    # which instances: the instance search's "took part" (engine/instances.py).
    __table_args__ = (UniqueConstraint("instance_id", "seq"),
                      _partial_index("ix_log_entry_completion", "task_id", "at", where="command = 'complete'"),
                      Index("ix_log_entry_actor_instance", "actor", "instance_id"))
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    instance_id: Mapped[str] = mapped_column(ForeignKey("instance.id"))
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(64))
    command: Mapped[str] = mapped_column(String(32))
    task_id: Mapped[Optional[str]] = mapped_column(String(36), index=True)
    input: Mapped[dict[str, Any]] = mapped_column(JSON)
    state_hash: Mapped[str] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class ReplayCheckpoint(Base):
    """An instance's state as it was after step `seq` of its log, kept every
    `engine.checkpoints.EVERY` steps in the command's own transaction, so a replay to a late step
    starts near it instead of at step 1 (engine.audit). Trusted only where the state's hash is the
    one the hash chain pins for that step; `bpm verify` replays from step 1 regardless."""
    __tablename__ = "replay_checkpoint"
    instance_id: Mapped[str] = mapped_column(ForeignKey("instance.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    state: Mapped[str] = mapped_column(Text)


class SlaBreach(Base):
    """A task that passed its due time and was escalated (the 4-hour reply rule), for the auditor."""
    __tablename__ = "sla_breach"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance_id: Mapped[str] = mapped_column(ForeignKey("instance.id"), index=True)
    task_id: Mapped[str] = mapped_column(String(36), index=True)
    element_id: Mapped[str] = mapped_column(String(200))
    holder: Mapped[Optional[str]] = mapped_column(String(64))
    escalated_to: Mapped[Optional[str]] = mapped_column(String(64))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)  # the SLA report's days and months
    breached_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TaskDraft(Base):
    """Form data saved but not submitted; kept by task, so escalation does not lose it."""
    __tablename__ = "task_draft"
    task_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    instance_id: Mapped[str] = mapped_column(ForeignKey("instance.id"), index=True)
    username: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    saved_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Comment(Base):
    """A remark on a task, kept with its instance (delegation notes too)."""
    __tablename__ = "comment"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance_id: Mapped[str] = mapped_column(ForeignKey("instance.id"), index=True)
    task_id: Mapped[Optional[str]] = mapped_column(String(36))
    author: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class Notification(Base):
    """In-app notice to a user: a task assigned, a reminder, an escalation, a task returned."""
    __tablename__ = "notification"
    __table_args__ = (Index("ix_notification_user_read", "username", "read"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    instance_id: Mapped[Optional[str]] = mapped_column(String(36))
    task_id: Mapped[Optional[str]] = mapped_column(String(36))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    read: Mapped[bool] = mapped_column(default=False)
    # what the notice was made of (name, holder, to, by, ...): a page writes it in its reader's
    # language from these; None for notices from before they were kept
    params: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)


class Outbox(Base):
    """Mail waiting to be sent for a notification (only when BPM_SMTP_URL is set)."""
    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    recipient: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)


class SavedFilter(Base):
    """An inbox filter a user named and kept (the query string of the inbox URL)."""
    __tablename__ = "saved_filter"
    username: Mapped[str] = mapped_column(ForeignKey("app_user.username"), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    args: Mapped[dict[str, Any]] = mapped_column(JSON)


class ApiToken(Base):
    """A bearer token for the JSON API; only its SHA-256 is stored. It works until `expires_at`
    (NULL: issued before tokens expired; no longer works) unless revoked."""
    __tablename__ = "api_token"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    username: Mapped[str] = mapped_column(ForeignKey("app_user.username"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    revoked_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)


class IdempotencyKey(Base):
    """A start or complete sent with a request id (API `Idempotency-Key`, CLI `--request-id`, the
    pages' hidden `request_id`) and its result, written in the command's own transaction: sent
    again, it answers with that result and changes nothing. Kept for a bounded time
    (runtime.REQUEST_ID_KEPT); a user's keys are their own."""
    __tablename__ = "idempotency_key"
    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    command: Mapped[str] = mapped_column(String(32))
    fingerprint: Mapped[str] = mapped_column(String(64))  # sha256 of what was asked (command, target, data)
    instance_id: Mapped[Optional[str]] = mapped_column(String(36))
    result: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class Incident(Base):
    """A command that failed and was rolled back, kept so a person can see it and retry."""
    __tablename__ = "incident"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance_id: Mapped[Optional[str]] = mapped_column(String(36), index=True)
    process_id: Mapped[str] = mapped_column(String(200))
    command: Mapped[str] = mapped_column(String(32))
    input: Mapped[dict[str, Any]] = mapped_column(JSON)
    actor: Mapped[str] = mapped_column(String(64))
    element_id: Mapped[Optional[str]] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    resolved_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)


# --- customer archives (客户档案, seed 001 三(五)(六)); engine/customers.py owns them ----------------

class CustomerCard(Base):
    """A customer's archive card: confidential, read only as engine.access.may_read_archive says."""
    __tablename__ = "customer_card"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(500), default="")
    phones: Mapped[list[str]] = mapped_column(JSON, default=list)
    contacts: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)  # name, title, phone
    characteristics: Mapped[str] = mapped_column(Text, default="")  # 客户特征
    family: Mapped[str] = mapped_column(Text, default="")  # 客户家庭基本情况
    credit_level: Mapped[Optional[str]] = mapped_column(String(8))
    notes: Mapped[str] = mapped_column(Text, default="")
    rep: Mapped[Optional[str]] = mapped_column(String(64), index=True)  # the sales rep who serves it
    revision: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_by: Mapped[str] = mapped_column(String(64))


class CustomerCardChange(Base):
    """One change of a card (变更记录): who, when, and each field's value before and after."""
    __tablename__ = "customer_card_change"
    __table_args__ = (UniqueConstraint("customer_id", "revision"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customer_card.id"))
    revision: Mapped[int] = mapped_column(Integer)  # the card's revision this change made
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    by: Mapped[str] = mapped_column(String(64))
    changes: Mapped[dict[str, Any]] = mapped_column(JSON)  # field -> [before, after]


class ArchiveGrant(Base):
    """The general manager's permission (总经理批准) for one person to read one customer's card
    until a day, recorded by the `archive_access` process that asked for it."""
    __tablename__ = "archive_grant"
    __table_args__ = (Index("ix_archive_grant_grantee_customer", "grantee", "customer_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(String(64))
    grantee: Mapped[str] = mapped_column(String(64))
    granted_by: Mapped[str] = mapped_column(String(64))
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    valid_until: Mapped[date] = mapped_column(Date)  # the last day it may be used (UTC, as clock)
    instance_id: Mapped[Optional[str]] = mapped_column(String(36))


class BusinessRecord(Base):
    """A business fact one process keeps for others to check (业务台账): an approved contract, an
    order with its lines, shipments and receipts, a return against an order. Written only by the
    process instance that owns it (engine.records), in the transaction of the command that
    published it; `ref` names what it refers to (a return's order number), `customer` whose it is."""
    __tablename__ = "business_record"
    __table_args__ = (Index("ix_business_record_ref", "kind", "ref"),
                      Index("ix_business_record_customer", "kind", "customer"))
    kind: Mapped[str] = mapped_column(String(40), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    ref: Mapped[Optional[str]] = mapped_column(String(200))
    customer: Mapped[Optional[str]] = mapped_column(String(200))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    instance_id: Mapped[str] = mapped_column(String(36))
    process_id: Mapped[str] = mapped_column(String(200))
    revision: Mapped[int] = mapped_column(Integer)  # times published
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ArchiveRead(Base):
    """Every attempt to read a card, allowed or refused, for the auditor: who, when, which customer,
    on what basis (a role, serving the customer, or a grant), through which door."""
    __tablename__ = "archive_read"
    __table_args__ = (Index("ix_archive_read_customer_at", "customer_id", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(String(64))
    reader: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    allowed: Mapped[bool] = mapped_column()
    basis: Mapped[Optional[str]] = mapped_column(String(64))  # role:…, head:…, rep, grant; None: refused
    grant_id: Mapped[Optional[int]] = mapped_column(Integer)
    door: Mapped[str] = mapped_column(String(16))  # web, api, cli


# --- the credit list (客户信用等级一览表, seed 004 SSG; levels per seed 001 四); engine/credit.py ----------

class CreditListEntry(Base):
    """A customer on the credit list the processes read: id, name, level (A, B, C; None: not yet
    rated) and the day the level holds from. Not the archive card: nothing confidential here."""
    __tablename__ = "credit_list"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    level: Mapped[Optional[str]] = mapped_column(String(8))
    since: Mapped[date] = mapped_column(Date)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CreditChange(Base):
    """One change of a customer's level: who approved it, when, old and new level, the reason, and
    the credit_review instance that proposed and approved it."""
    __tablename__ = "credit_change"
    __table_args__ = (Index("ix_credit_change_customer_at", "customer_id", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("credit_list.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    approved_by: Mapped[str] = mapped_column(String(64))
    old_level: Mapped[Optional[str]] = mapped_column(String(8))
    new_level: Mapped[Optional[str]] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(Text, default="")
    instance_id: Mapped[Optional[str]] = mapped_column(String(36))


# --- instances started by a timer start event (engine/schedules.py) ---------------------------------

class TimerStart(Base):
    """One scheduled run of a process whose start event is a timer: the unique row that makes the
    run start once, whatever the number of workers (instance_id None: the start failed, see the
    incident)."""
    __tablename__ = "timer_start"
    process_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    scheduled_for: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    instance_id: Mapped[Optional[str]] = mapped_column(String(36))
    incident_id: Mapped[Optional[int]] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)


# --- connection -------------------------------------------------------------------------------

def default_url() -> str:
    url = os.environ.get("BPM_DATABASE_URL")
    if url:
        return url
    folder = PROJECT_ROOT / "instance"
    folder.mkdir(exist_ok=True)
    return f"sqlite:///{folder / 'bpm.sqlite3'}"


class NestedWrite(RuntimeError):
    """A thread opened a write transaction on SQLite inside one it already holds: SQLite has one
    writer at a time, so the inner one would wait for the outer for ever."""


class WriterQueue:
    """Write transactions on one SQLite database, one at a time, in the order they asked — the
    threads of this process in a FIFO queue, and the processes on the file through a lock file.

    SQLite lets one connection write at a time; without this, writers that find the database
    locked sleep and retry inside `BEGIN IMMEDIATE` (sqlite3's busy handler, up to 100 ms a sleep)
    and whichever retries at the right moment wins, so a command could wait seconds while later
    ones went first. Here each writer thread takes a place in a FIFO queue before it begins, and
    the one finishing hands the turn to the next in line (no newcomer can barge in between).

    Other processes on the same file (`bpm serve`'s timer worker, a CLI command) are met through
    `<database>-writer.lock` beside the database: the thread whose turn it is takes an exclusive
    `flock` on it before `BEGIN IMMEDIATE` and gives it up after COMMIT or ROLLBACK. A process
    that finds it taken sleeps in the kernel and is woken when it is given up, instead of polling
    in SQLite's busy handler; the kernel drops the lock of a process that dies, however it dies.
    The file holds nothing, is created when first needed and is never deleted (deleting it while
    in use would let two processes each lock a file of their own). Writers that do not use this
    code (the sqlite3 shell) still meet SQLite's busy timeout, as before.

    A thread that asks again while it holds the turn is refused (`NestedWrite`) rather than left
    waiting for itself. A writer waits `timeout` seconds in all (its place in the queue and the
    file lock) and then gets `TimeoutError`. `BPM_SQLITE_WRITER_QUEUE=0` turns both the queue and
    the lock file off (benchmarks compare)."""

    def __init__(self, timeout: float = 30.0, lock_path: str | None = None):
        self.timeout = timeout  # seconds a writer waits for its turn, as SQLite's busy timeout
        self.lock_path = lock_path  # the lock file shared with other processes (None: this process only)
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._holder: int | None = None  # thread ident holding the turn
        self._waiting: deque[tuple[int, threading.Event]] = deque()
        self._file: int | None = None  # descriptor holding the lock file's flock, while a turn lasts

    @contextmanager
    def turn(self) -> Iterator[None]:
        deadline = time.monotonic() + self.timeout
        self._acquire()
        try:
            if self.lock_path is not None:
                self._file = _lock_file(self.lock_path, deadline, self.timeout)
            yield
        finally:
            if self._file is not None:
                _unlock_file(self._file)
                self._file = None
            self._release()

    def _acquire(self) -> None:
        me = threading.get_ident()
        with self._lock:
            if self._holder == me:
                raise NestedWrite("a write transaction on SQLite was opened inside another one of the "
                                  "same thread; it would wait for itself (finish the outer one first)")
            if self._holder is None and not self._waiting:
                self._holder = me
                return
            called = threading.Event()
            self._waiting.append((me, called))
        if called.wait(self.timeout):
            return  # `_release` made this thread the holder before setting the event
        with self._lock:
            if called.is_set():  # handed the turn just as the wait ran out
                return
            self._waiting.remove((me, called))
        raise TimeoutError(f"waited {self.timeout:g} s for the database's write lock: another write "
                           f"transaction of this process holds it")

    def _release(self) -> None:
        with self._lock:
            if self._waiting:
                self._holder, called = self._waiting.popleft()
                called.set()
            else:
                self._holder = None

    def waiting(self) -> int:
        """How many writers wait for their turn (the holder not counted)."""
        with self._lock:
            return len(self._waiting)


def lock_file_path(database: str) -> str:
    """The lock file the processes writing the SQLite database at path `database` share."""
    return os.path.abspath(database) + "-writer.lock"


def _lock_file(path: str, deadline: float, timeout: float) -> int | None:
    """Take the exclusive flock on the lock file `path`, waiting until `deadline` (monotonic):
    the descriptor that holds it, or None where the file cannot be opened (a read-only folder,
    where nothing can be written either: SQLite's own locking then says so).

    Uncontended, one open and one flock. Contended, a helper thread waits in a blocking flock,
    asleep in the kernel and woken when the holder gives the lock up, while this thread waits
    for it at most until the deadline. Not a LOCK_NB poll (a poll is what SQLite's busy handler
    does: a waiter that sleeps between tries loses to one that comes at the right moment) and not
    an alarm (SIGALRM reaches the main thread only, and writers run in request threads). A helper
    whose writer gave up unlocks at once if it ever gets the lock; each wait has a descriptor of
    its own, so an abandoned one never holds a later writer's lock."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except BlockingIOError:
        pass
    except BaseException:
        os.close(fd)
        raise
    guard, done = threading.Lock(), threading.Event()
    outcome: dict[str, Any] = {}

    def wait() -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            outcome["error"] = exc
        with guard:
            if outcome.get("abandoned"):
                _unlock_file(fd)
                return
            done.set()

    threading.Thread(target=wait, name="sqlite-writer-lock", daemon=True).start()
    try:
        got = done.wait(max(deadline - time.monotonic(), 0.0))
    except BaseException:  # interrupted (Ctrl-C, a stopping worker's SIGTERM): give the wait up
        got = False
        with guard:
            if not done.is_set():
                outcome["abandoned"] = True
                raise
        _unlock_file(fd)
        raise
    if not got:
        with guard:
            if not done.is_set():
                outcome["abandoned"] = True
                raise TimeoutError(f"waited {timeout:g} s for the database's write lock: a write "
                                   f"transaction of another process holds it ({path})")
    if "error" in outcome:  # (no lock was taken)
        os.close(fd)
        raise outcome["error"]
    return fd


def _unlock_file(fd: int) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)  # explicit: a forked child's copy of the descriptor keeps no lock
    finally:
        os.close(fd)


_WRITER_QUEUES: dict[str, WriterQueue] = {}
_WRITER_QUEUES_LOCK = threading.Lock()


def writer_queue(url: str, database: str | None = None) -> WriterQueue:
    """The process's queue of writers to the SQLite database at `url` (one per database, shared
    by every Store on it); `database`, the file's path, gives it the lock file it shares with the
    other processes writing that file."""
    with _WRITER_QUEUES_LOCK:
        queue = _WRITER_QUEUES.get(url)
        if queue is None:
            queue = _WRITER_QUEUES[url] = WriterQueue(lock_path=lock_file_path(database) if database else None)
        return queue


def _writer_queues_after_fork() -> None:
    """A forked child starts with empty queues: the threads that held or waited for a turn in the
    parent do not exist in the child, and the parent's lock file descriptor is the parent's."""
    global _WRITER_QUEUES_LOCK
    _WRITER_QUEUES_LOCK = threading.Lock()
    for queue in _WRITER_QUEUES.values():
        if queue._file is not None:
            try:
                os.close(queue._file)  # the child's copy only: the parent's lock stays the parent's
            except OSError:
                pass
        queue._reset()


os.register_at_fork(after_in_child=_writer_queues_after_fork)


def _writer_queue_enabled() -> bool:
    return os.environ.get("BPM_SQLITE_WRITER_QUEUE", "1").strip().lower() not in ("0", "false", "no", "off")


class Store:
    """The database: an SQLAlchemy engine and the transactions the engine runs in."""

    def __init__(self, url: str | None = None):
        self.url = url or default_url()
        if self.url.startswith("postgresql://"):
            self.url = "postgresql+psycopg://" + self.url[len("postgresql://"):]
        self.engine: Engine = _create_engine(self.url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        # Writers on SQLite take the write lock at BEGIN, so two commands never both read a
        # revision and then race to write it (a deferred transaction would fail at upgrade).
        writer = self.engine.execution_options(bpm_write=True) if self.is_sqlite else self.engine
        # Reads on PostgreSQL run in autocommit: under READ COMMITTED each statement takes its own
        # snapshot even inside a transaction, so BEGIN and ROLLBACK would buy nothing but two round
        # trips per read (a page makes several reads). SQLite keeps its read transaction: there it
        # is one snapshot for the whole read, and costs no round trip.
        reader = self.engine if self.is_sqlite else self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._reader = sessionmaker(reader, expire_on_commit=False)
        self._writer = sessionmaker(writer, expire_on_commit=False)
        self._write_engine = writer
        self._read_engine = reader
        # Whether a read sees what other connections committed: not so for an in-memory SQLite
        # database, which is one per connection.
        self.shared = not (self.is_sqlite and self.engine.url.database in (None, "", ":memory:"))
        # SQLite's writers take turns in arrival order (WriterQueue); an in-memory database is
        # one per connection, so there is nothing to queue for.
        # Other processes on the same file take turns with this one through its lock file.
        self.writers: WriterQueue | None = (
            writer_queue(self.url, self.engine.url.database) if self.is_sqlite and _writer_queue_enabled()
            and self.shared else None)

    def _turn(self):
        return self.writers.turn() if self.writers is not None else nullcontext()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A Core connection in one write transaction: the commands' hot path, without the ORM."""
        with self._turn(), self._write_engine.begin() as connection:
            yield connection

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One transaction that commits on success and rolls back on any exception."""
        with self._turn(), self._writer() as session, session.begin():
            yield session

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A Core connection for reads outside any write transaction (and outside SQLite's writer
        queue): on SQLite one read transaction (one snapshot), on PostgreSQL autocommit."""
        with self._read_engine.connect() as connection:
            yield connection

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._reader() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def _create_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_connection, _record):
            dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("bpm_write")
                                 else "BEGIN")
        return engine
    _postgresql_where()
    engine = create_engine(url)
    event.listen(engine, "checkout", _stale_connections_replaced(engine.dialect))
    return engine


def _stale_connections_replaced(dialect):
    """A pool checkout hook that replaces a connection the server has closed, without a round trip
    on a live one (what `pool_pre_ping` costs on every checkout: a `SELECT 1` per transaction).

    An idle pooled connection has nothing to read: a server that ends it (restart, a terminated
    backend, `idle_session_timeout`) sends its FATAL message and closes, which makes the socket
    readable. So only a closed or readable connection is pinged, and one that fails the ping is
    given up with `DisconnectionError`, on which SQLAlchemy's pool connects afresh and tries once
    more. A connection that dies between checkout and its first statement (or silently, with no
    packet) still fails that statement; SQLAlchemy then invalidates the pool (its optimistic
    disconnect handling) and the next transaction gets a fresh connection."""

    def checkout(dbapi_connection, _record, _proxy) -> None:
        if getattr(dbapi_connection, "closed", False) or getattr(dbapi_connection, "broken", False):
            raise DisconnectionError("the pooled connection is closed")
        try:
            readable = select.select([dbapi_connection.fileno()], [], [], 0)[0]
        except (OSError, ValueError) as exc:
            raise DisconnectionError(f"the pooled connection's socket is gone: {exc}") from exc
        if readable:  # the server said something: a notice, or that it ended the session
            try:
                alive = dialect.do_ping(dbapi_connection)
            except Exception as exc:  # any failure here means the connection is of no use
                raise DisconnectionError(f"the pooled connection failed its ping: {exc}") from exc
            if not alive:
                raise DisconnectionError("the pooled connection failed its ping")
    return checkout


def migrate(store: Store) -> None:
    """Bring the schema up to date with the Alembic migrations."""
    from alembic import command
    from alembic.config import Config

    folder = Path(__file__).resolve().parent / "migrations"
    config = Config()
    config.set_main_option("script_location", str(folder))
    config.set_main_option("sqlalchemy.url", store.url.replace("%", "%%"))
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
