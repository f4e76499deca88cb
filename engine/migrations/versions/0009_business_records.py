"""business records: facts one process keeps for others to check (业务台账)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'business_record',
        sa.Column('kind', sa.String(length=40), nullable=False),
        sa.Column('key', sa.String(length=200), nullable=False),
        sa.Column('ref', sa.String(length=200), nullable=True),
        sa.Column('customer', sa.String(length=200), nullable=True),
        sa.Column('data', sa.JSON(), nullable=False),
        sa.Column('instance_id', sa.String(length=36), nullable=False),
        sa.Column('process_id', sa.String(length=200), nullable=False),
        sa.Column('revision', sa.Integer(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('kind', 'key'),
    )
    op.create_index('ix_business_record_ref', 'business_record', ['kind', 'ref'])
    op.create_index('ix_business_record_customer', 'business_record', ['kind', 'customer'])


def downgrade() -> None:
    op.drop_index('ix_business_record_customer', table_name='business_record')
    op.drop_index('ix_business_record_ref', table_name='business_record')
    op.drop_table('business_record')
