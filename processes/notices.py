"""Notices to people (reminders) and the customer-complaint record (客户投诉) for after-sales.

A complaint is a business record (engine.records, kind "complaint", referring to the order): written
by the transaction of the step that registered it, so it is kept, and rolled back with a refused
step, like the rest of the instance."""
from __future__ import annotations

import secrets
from typing import Any

from engine import clock, records

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


def record_complaint(customer: str, order_no: str, reason: str, description: str = "",
                     lines: list | None = None, request_no: str | None = None) -> str:
    """Register a customer complaint (客户投诉登记) for after-sales; returns the complaint id.
    `request_no` is the return request it came with, whose "return" record says how it ended."""
    day = clock.now().strftime("%Y%m%d")
    complaint_id = f"CP-{day}-{secrets.token_hex(3)}"
    records.publish_record("complaint", complaint_id, {
        "id": complaint_id, "customer": customer, "order_no": order_no, "reason": reason,
        "description": description or "", "lines": list(lines or []), "request_no": request_no,
        "at": clock.now().isoformat()}, ref=order_no or None)
    return complaint_id
