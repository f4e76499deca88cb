"""Notices to people (reminders, reports 汇报) and the customer-complaint record (客户投诉) for after-sales.

A complaint is a business record (engine.records, kind "complaint", referring to the order): written
by the transaction of the step that registered it, so it is kept, and rolled back with a refused
step, like the rest of the instance."""
from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import select

from engine import clock, determinism, records
from engine.store import User, UserRole

# What was sent, newest last: a stand-in for the mail gateway, so tests and demos can see the effect.
OUTBOX: list[dict[str, Any]] = []


def send_notice(to: str, subject: str, body: str) -> dict[str, Any]:
    """Send a notice to a user (by username)."""
    if not to:
        raise ValueError("a notice needs a recipient")
    notice = {"sent": True, "to": to, "subject": subject, "body": body,
              "at": clock.now().isoformat(), "notice_id": f"N-{secrets.token_hex(4)}"}
    OUTBOX.append(notice)
    return notice


def role_holders(role: str) -> list[str]:
    """The active users holding `role`, by username; read through the running command's
    transaction (a service step of an instance only)."""
    conn = determinism.connection()
    if conn is None:
        raise RuntimeError("the holders of a role are looked up only as a step of a process instance")
    return list(conn.scalars(
        select(UserRole.username).join(User, User.username == UserRole.username)
        .where(UserRole.role_id == role, User.active.is_(True)).order_by(UserRole.username)))


def notify_role_holders(roles: Any, subject: str, body: str) -> list[dict[str, Any]]:
    """Send the notice to every active holder of each role in `roles` (a list, or a text with
    commas), once per person; returns the notices sent, which the instance keeps as its record
    of the report (e.g. a major contract reported to the VP and the GM, seed 001 二、2(2))."""
    names = roles.split(",") if isinstance(roles, str) else list(roles or [])
    names = [n.strip() for n in names if isinstance(n, str) and n.strip()]
    if not names:
        raise ValueError("a report needs at least one role to go to")
    sent: list[dict[str, Any]] = []
    for role in names:
        holders = role_holders(role)
        if not holders:
            raise ValueError(f"nobody holds the role {role!r} to receive the notice {subject!r}")
        for username in holders:
            if all(n["to"] != username for n in sent):
                sent.append({**send_notice(username, subject, body), "role": role})
    return sent


def record_complaint(customer: str, order_no: str, reason: str, description: str = "",
                     lines: list | None = None, request_no: str | None = None) -> str:
    """Register a customer complaint (客户投诉登记) for after-sales; returns the complaint id.
    `request_no` is the return request it came with, whose "return" record says how it ended."""
    day = clock.now().strftime("%Y%m%d")
    complaint_id = f"CP-{day}-{secrets.token_hex(5)}"
    records.publish_record("complaint", complaint_id, {
        "id": complaint_id, "customer": customer, "order_no": order_no, "reason": reason,
        "description": description or "", "lines": list(lines or []), "request_no": request_no,
        "at": clock.now().isoformat()}, ref=order_no or None)
    return complaint_id
