"""human_task.escalated_from, notification.params, and the setting table (demo mode)

human_task.escalated_from: who held the task before it was escalated (the task's internal
`escalated_from`, projected like its holder), so the inbox can say "escalated from 周经理" without
restoring the state. Rows of running instances get it at their next command.
notification.params: the facts a notice was made of (task name, holder, superior, times), so a page
writes it in its reader's language; older notices keep their bilingual message only.
setting: the deployment's own facts kept in its database, one value per key; `demo` = "1" once
`bpm init --demo` seeded the demo organisation (the sign-in page then lists the demo users).

Revision ID: 0015
Revises: 0013
Create Date: 2026-12-04
"""
from alembic import op
import sqlalchemy as sa


revision = '0015'
down_revision = '0013'
branch_labels = None
depends_on = None


# Plain ALTER TABLE (SQLite 3.35+ drops a column itself): a batch copy of human_task would lose its
# expression indexes, which SQLAlchemy cannot reflect.
def upgrade() -> None:
    op.add_column('human_task', sa.Column('escalated_from', sa.String(length=64), nullable=True))
    op.add_column('notification', sa.Column('params', sa.JSON(), nullable=True))
    op.create_table('setting',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )


def downgrade() -> None:
    op.drop_table('setting')
    op.drop_column('notification', 'params')
    op.drop_column('human_task', 'escalated_from')
