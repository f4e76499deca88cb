"""What commands and reads return: a task (TaskView) and an instance (InstanceView) as the pages,
the API and the CLI show them.

Kept apart from engine.runtime (which re-exports them) so that the inbox reads without importing
the executor.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from .store import HumanTask


@dataclass
class TaskView:
    id: str
    instance_id: str
    process_id: str
    name: str
    element_id: str
    role: str | None
    assignee: str | None
    due: datetime | None
    created: datetime
    form: str | None = None
    business_key: str | None = None
    customer: str | None = None
    amount: float | None = None
    office_scope: str = ""  # the office or region whose people may take it while open; "": anyone
    escalated_from: str | None = None  # who held it before an escalation brought it to `assignee`

    def as_json(self) -> dict:
        return {"id": self.id, "instance_id": self.instance_id, "process_id": self.process_id,
                "name": self.name, "element_id": self.element_id, "role": self.role,
                "assignee": self.assignee, "due": self.due.isoformat() if self.due else None,
                "created": self.created.isoformat(), "form": self.form,
                "business_key": self.business_key, "customer": self.customer, "amount": self.amount,
                "office_scope": self.office_scope, "escalated_from": self.escalated_from}

    @classmethod
    def from_json(cls, d: dict) -> "TaskView":
        return cls(d["id"], d["instance_id"], d["process_id"], d["name"], d["element_id"], d["role"],
                   d["assignee"], _instant(d["due"]), _instant(d["created"]), d["form"],
                   d["business_key"], d["customer"], d["amount"], d.get("office_scope", ""),
                   d.get("escalated_from"))


@dataclass
class InstanceView:
    id: str
    process_id: str
    version: int
    status: str
    data: dict
    tasks: list[TaskView] = field(default_factory=list)
    business_key: str | None = None
    initiator: str | None = None
    created: datetime | None = None
    updated: datetime | None = None
    incidents: list[dict] | None = None  # None: not looked up (command results)
    changed: bool = True  # False: a timer command found nothing to do and wrote nothing

    def as_json(self) -> dict:
        return {"id": self.id, "process_id": self.process_id, "version": self.version,
                "status": self.status, "business_key": self.business_key,
                "initiator": self.initiator,
                "created": self.created.isoformat() if self.created else None,
                "updated": self.updated.isoformat() if self.updated else None,
                "data": self.data, "tasks": [t.as_json() for t in self.tasks],
                **({"incidents": self.incidents} if self.incidents is not None else {})}

    @classmethod
    def from_json(cls, d: dict) -> "InstanceView":
        """The view `as_json` gave (a command's result kept with its request id)."""
        return cls(d["id"], d["process_id"], d["version"], d["status"], d["data"],
                   [TaskView.from_json(t) for t in d["tasks"]], d["business_key"], d["initiator"],
                   _instant(d["created"]), _instant(d["updated"]), d.get("incidents"))


def _instant(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def task_view(row: HumanTask) -> TaskView:
    return TaskView(row.id, row.instance_id, row.process_id, row.name, row.element_id, row.role,
                    row.assignee, row.due_at, row.created_at, row.form, row.business_key,
                    row.customer, row.amount, row.office_scope or "", row.escalated_from)
