"""customer archives (客户档案): cards, their change history, the GM's grants and the record of reads

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('customer_card',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('address', sa.String(length=500), nullable=False),
    sa.Column('phones', sa.JSON(), nullable=False),
    sa.Column('contacts', sa.JSON(), nullable=False),
    sa.Column('characteristics', sa.Text(), nullable=False),
    sa.Column('family', sa.Text(), nullable=False),
    sa.Column('credit_level', sa.String(length=8), nullable=True),
    sa.Column('notes', sa.Text(), nullable=False),
    sa.Column('rep', sa.String(length=64), nullable=True),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_by', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('customer_card', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_customer_card_rep'), ['rep'], unique=False)

    op.create_table('customer_card_change',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('customer_id', sa.String(length=64), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('by', sa.String(length=64), nullable=False),
    sa.Column('changes', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customer_card.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('customer_id', 'revision')
    )

    op.create_table('archive_grant',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('customer_id', sa.String(length=64), nullable=False),
    sa.Column('grantee', sa.String(length=64), nullable=False),
    sa.Column('granted_by', sa.String(length=64), nullable=False),
    sa.Column('granted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('valid_until', sa.Date(), nullable=False),
    sa.Column('instance_id', sa.String(length=36), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('archive_grant', schema=None) as batch_op:
        batch_op.create_index('ix_archive_grant_grantee_customer', ['grantee', 'customer_id'], unique=False)

    op.create_table('archive_read',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('customer_id', sa.String(length=64), nullable=False),
    sa.Column('reader', sa.String(length=64), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('allowed', sa.Boolean(), nullable=False),
    sa.Column('basis', sa.String(length=64), nullable=True),
    sa.Column('grant_id', sa.Integer(), nullable=True),
    sa.Column('door', sa.String(length=16), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('archive_read', schema=None) as batch_op:
        batch_op.create_index('ix_archive_read_customer_at', ['customer_id', 'at'], unique=False)
        batch_op.create_index(batch_op.f('ix_archive_read_at'), ['at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('archive_read', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_archive_read_at'))
        batch_op.drop_index('ix_archive_read_customer_at')
    op.drop_table('archive_read')
    with op.batch_alter_table('archive_grant', schema=None) as batch_op:
        batch_op.drop_index('ix_archive_grant_grantee_customer')
    op.drop_table('archive_grant')
    op.drop_table('customer_card_change')
    with op.batch_alter_table('customer_card', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_customer_card_rep'))
    op.drop_table('customer_card')
