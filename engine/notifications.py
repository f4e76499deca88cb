"""In-app notifications (assigned to you, reminder, escalated to you, returned to you, a reply
(复命) from someone you are the superior of) and the mail outbox they feed when `BPM_SMTP_URL` is set.
"""
from __future__ import annotations

import logging
import os
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from . import clock
from .store import Notification

MESSAGES = {
    "assigned": "任务已分配给您 / Assigned to you: {name}",
    "reminder": "任务即将到期 / Reminder, due soon: {name}",
    "escalated": "逾期任务已升级给您 / Escalated to you (overdue with {holder}): {name}",
    "escalated_away": "您的任务已逾期，已升级给 {to} / Your overdue task was escalated to {to}: {name}",
    "returned": "任务已交还给您 / Returned to you: {name}",
    "reply_in_progress": "{by} 复命：进行中，预计 {expected_local} 完成 / {by} replies: in progress, "
                         "expected by {expected_local}: {name}",
    "reply_cannot_finish": "{by} 复命：无法按时完成，原因：{reason} / {by} replies: cannot finish, "
                           "because {reason}: {name}",
}


def message(event: dict) -> str:
    return MESSAGES.get(event["kind"], "{name}").format(**{"holder": "-", "to": "-", "expected_local": _local(
        event.get("expected_by")), **event})


def _local(instant: str | None) -> str:
    """An ISO instant as the company reads it: 2026-11-30 12:00 Asia/Shanghai (BPM_TIMEZONE)."""
    if not instant:
        return "-"
    return f"{clock.local_text(instant)} {clock.zone_name()}"


def smtp_enabled() -> bool:
    return bool(os.environ.get("BPM_SMTP_URL"))


def for_user(session: Session, username: str, limit: int = 50) -> list[dict]:
    rows = session.scalars(select(Notification).where(Notification.username == username)
                           .order_by(Notification.at.desc(), Notification.id.desc()).limit(limit))
    return [{"id": r.id, "kind": r.kind, "message": r.message, "instance_id": r.instance_id,
             "task_id": r.task_id, "at": r.at, "read": r.read, "params": r.params} for r in rows]


def leads_to(session: Session, who, items: list[dict]) -> list[dict]:
    """Where each notice of `items` (for_user) can take `who` now: "task" while they may still open
    its task, else "instance" if they may see its instance (the task moved on: done, escalated,
    handed back), else None — never a link that ends on a refusal. Sets item["leads_to"]."""
    from . import access
    from .runtime import _may_view  # the one rule of who sees an instance (access.may_view_instance)
    from .store import HumanTask
    task_ids = {i["task_id"] for i in items if i.get("task_id")}
    tasks = {r.id: r for r in session.execute(
        select(HumanTask.id, HumanTask.role, HumanTask.assignee, HumanTask.office_scope)
        .where(HumanTask.id.in_(task_ids)))} if task_ids else {}
    seen: dict[str, bool] = {}
    for item in items:
        task = tasks.get(item.get("task_id"))
        if task is not None and access.may_open_task(who, task.role, task.assignee, task.office_scope):
            item["leads_to"] = "task"
        elif item.get("instance_id"):
            if item["instance_id"] not in seen:
                seen[item["instance_id"]] = _may_view(session, item["instance_id"], who)
            item["leads_to"] = "instance" if seen[item["instance_id"]] else None
        else:
            item["leads_to"] = None
    return items


def unread_count(session: Session, username: str) -> int:
    return session.scalar(select(func.count()).select_from(Notification).where(
        Notification.username == username, Notification.read.is_(False))) or 0


def mark_read(session: Session, username: str, ids: list[int] | None = None) -> None:
    query = update(Notification).where(Notification.username == username, Notification.read.is_(False))
    if ids is not None:
        query = query.where(Notification.id.in_(ids))
    session.execute(query.values(read=True))


_NOT_PARAMS = ("kind", "username", "task_id", "element_id", "lane")


def params(event: dict) -> dict:
    """What a page needs to write the notice in its reader's language (name, holder, to, by, ...)."""
    return {k: v for k, v in event.items() if k not in _NOT_PARAMS and isinstance(v, (str, int, float, type(None)))}


def rows_for(events: list[dict], instance_id: str, at: datetime, recipients) -> list[dict]:
    """Notification rows for a command's events; `recipients(event)` names who hears of each."""
    rows = []
    for event in events:
        for username in recipients(event):
            rows.append({"username": username, "kind": event["kind"], "message": message(event),
                         "instance_id": instance_id, "task_id": event["task_id"], "at": at,
                         "read": False, "params": params(event)})
    return rows


def deliver_outbox(session: Session, url: str, domain: str, now: datetime, limit: int = 100) -> int:
    """Send pending outbox mail through the SMTP server of `url` (smtp://[user:pass@]host[:port]);
    recipients are `username@domain`. Returns how many were sent; failures stay pending."""
    import smtplib
    from email.message import EmailMessage
    from urllib.parse import unquote, urlparse

    from .store import Outbox

    parsed = urlparse(url)
    pending = session.scalars(select(Outbox).where(Outbox.status == "pending").order_by(Outbox.id)
                              .limit(limit)).all()
    if not pending:
        return 0
    sent = 0
    with smtplib.SMTP(parsed.hostname or "localhost", parsed.port or 25, timeout=10) as smtp:
        if parsed.scheme == "smtps" or parsed.query == "starttls":
            smtp.starttls()
        if parsed.username:
            smtp.login(unquote(parsed.username), unquote(parsed.password or ""))
        for mail in pending:
            message = EmailMessage()
            message["From"] = f"bpm@{domain}"
            message["To"] = f"{mail.recipient}@{domain}"
            message["Subject"] = mail.subject
            message.set_content(mail.body)
            try:
                smtp.send_message(message)
            except (smtplib.SMTPException, OSError):
                # Stop here but keep the marks of what went out: the caller's transaction commits
                # them, so those mails are not sent again; this one and the rest stay pending.
                logging.getLogger(__name__).warning("outbox mail %s not sent", mail.id, exc_info=True)
                break
            mail.status, mail.sent_at = "sent", now
            sent += 1
    return sent
