"""task office scope and barred: an open task of an office's or a region's role is for that
office's people; an open approval is not for its submitter

Adds human_task.office_scope ("" = the whole company) and puts it into the open-task order index
and the count cover index right after the role, and adds the open tasks' customer index
(customer, role, office_scope, ...), so the inbox still reads each open branch as one
index range (docs/benchmarks.md, "The inbox"). Open tasks already projected get their scope from
the initiator's office, as engine.access.task_scope gives it. human_task.barred (the submitter of
an open approval, "" = nobody) is in the open-task indexes; rows already projected keep "" until
their instance's next command (the engine refuses the submitter at claim and complete anyway).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

OPEN = sa.text("assignee IS NULL")
UNDATED = sa.text("(due_at IS NULL)")
# the initiator's office, when it is not the root of the organisation (HQ is not scoped)
_OFFICE = ("(SELECT o.id FROM instance i JOIN app_user u ON u.username = i.initiator "
           "JOIN office o ON o.id = u.office_id WHERE i.id = human_task.instance_id AND o.parent_id IS NOT NULL)")
# its region: the office's parent, or the office itself when its parent is the root
_REGION = ("(SELECT CASE WHEN p.parent_id IS NULL THEN o.id ELSE o.parent_id END FROM instance i "
           "JOIN app_user u ON u.username = i.initiator JOIN office o ON o.id = u.office_id "
           "JOIN office p ON p.id = o.parent_id WHERE i.id = human_task.instance_id)")


def upgrade() -> None:
    op.add_column('human_task', sa.Column('office_scope', sa.String(length=64), nullable=False, server_default=''))
    op.add_column('human_task', sa.Column('barred', sa.String(length=64), nullable=False, server_default=''))
    op.execute(f"UPDATE human_task SET office_scope = COALESCE({_OFFICE}, '') "
               "WHERE role IN ('office_manager', 'sales_rep')")
    op.execute(f"UPDATE human_task SET office_scope = COALESCE({_REGION}, '') WHERE role = 'regional_manager'")
    op.drop_index('ix_human_task_open_order', table_name='human_task')
    op.drop_index('ix_human_task_visible_cover', table_name='human_task')
    op.create_index('ix_human_task_customer_open_order', 'human_task',
                    ['customer', 'role', 'office_scope', UNDATED, 'due_at', 'created_at', 'id', 'barred', 'assignee'],
                    sqlite_where=OPEN, postgresql_where=OPEN)
    op.create_index('ix_human_task_open_order', 'human_task',
                    ['role', 'office_scope', UNDATED, 'due_at', 'created_at', 'id', 'process_id', 'amount',
                     'barred', 'assignee'], sqlite_where=OPEN, postgresql_where=OPEN)
    op.create_index('ix_human_task_visible_cover', 'human_task',
                    ['assignee', 'role', 'office_scope', 'customer', 'process_id', 'due_at', 'amount', 'barred'])


def downgrade() -> None:
    op.drop_index('ix_human_task_customer_open_order', table_name='human_task')
    op.drop_index('ix_human_task_visible_cover', table_name='human_task')
    op.drop_index('ix_human_task_open_order', table_name='human_task')
    op.create_index('ix_human_task_open_order', 'human_task',
                    ['role', UNDATED, 'due_at', 'created_at', 'id', 'process_id', 'amount', 'assignee'],
                    sqlite_where=OPEN, postgresql_where=OPEN)
    op.create_index('ix_human_task_visible_cover', 'human_task',
                    ['assignee', 'role', 'customer', 'process_id', 'due_at', 'amount'])
    op.drop_column('human_task', 'barred')
    op.drop_column('human_task', 'office_scope')
