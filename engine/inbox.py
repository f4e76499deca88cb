"""Queries over the human-task projection: a user's inbox (held by them or open to their roles)."""
from __future__ import annotations

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from .access import Person
from .runtime import TaskView, task_view
from .store import HumanTask


def tasks_for(session: Session, who: Person, limit: int = 500) -> list[TaskView]:
    """Tasks held by `who` and open tasks of their roles, soonest due first, then oldest."""
    query = (select(HumanTask)
             .where(or_(HumanTask.assignee == who.username,
                        and_(HumanTask.assignee.is_(None), HumanTask.role.in_(sorted(who.roles)))))
             .order_by(HumanTask.due_at.is_(None), HumanTask.due_at, HumanTask.created_at)
             .limit(limit))
    return [task_view(row) for row in session.scalars(query)]
