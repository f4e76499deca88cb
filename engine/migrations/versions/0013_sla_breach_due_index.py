"""The SLA breach report's indexes: sla_breach by due_at (its days and months), and each task's
completion (log_entry task_id, at where command = 'complete'), looked up for every breach

Revision ID: 0013
Revises: 0010
Create Date: 2026-12-04
"""
from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_sla_breach_due_at', 'sla_breach', ['due_at'], unique=False)
    op.create_index('ix_log_entry_completion', 'log_entry', ['task_id', 'at'], unique=False,
                    sqlite_where=sa.text("command = 'complete'"), postgresql_where=sa.text("command = 'complete'"))


def downgrade() -> None:
    op.drop_index('ix_log_entry_completion', table_name='log_entry')
    op.drop_index('ix_sla_breach_due_at', table_name='sla_breach')
