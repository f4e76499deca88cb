"""sla_breach: an index on due_at, which the SLA breach report's days and months select by

Revision ID: 0013
Revises: 0010
Create Date: 2026-12-04
"""
from alembic import op


revision = '0013'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_sla_breach_due_at', 'sla_breach', ['due_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_sla_breach_due_at', table_name='sla_breach')
