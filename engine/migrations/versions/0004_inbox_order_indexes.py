"""inbox order indexes: the visible set read as disjoint branches, each in inbox order

Replaces (role, due_at) and (assignee, due_at), which could not give the inbox order across the
OR of held and open tasks (every visible row was read and sorted; docs/benchmarks.md, "The inbox").

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

OPEN = sa.text("assignee IS NULL")
UNDATED = sa.text("(due_at IS NULL)")


def upgrade() -> None:
    op.drop_index('ix_human_task_role_due', table_name='human_task')
    op.drop_index('ix_human_task_assignee_due', table_name='human_task')
    op.create_index('ix_human_task_held_order', 'human_task',
                    ['assignee', UNDATED, 'due_at', 'created_at', 'id', 'process_id', 'amount'])
    op.create_index('ix_human_task_open_order', 'human_task',
                    ['role', UNDATED, 'due_at', 'created_at', 'id', 'process_id', 'amount', 'assignee'],
                    sqlite_where=OPEN, postgresql_where=OPEN)
    op.create_index('ix_human_task_customer_order', 'human_task',
                    ['customer', 'assignee', UNDATED, 'due_at', 'created_at', 'id'])
    op.create_index('ix_human_task_visible_cover', 'human_task',
                    ['assignee', 'role', 'customer', 'process_id', 'due_at', 'amount'])


def downgrade() -> None:
    for name in ('ix_human_task_visible_cover', 'ix_human_task_customer_order', 'ix_human_task_open_order',
                 'ix_human_task_held_order'):
        op.drop_index(name, table_name='human_task')
    op.create_index('ix_human_task_assignee_due', 'human_task', ['assignee', 'due_at'])
    op.create_index('ix_human_task_role_due', 'human_task', ['role', 'due_at'])
