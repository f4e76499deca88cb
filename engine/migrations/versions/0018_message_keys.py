"""message keys: the correlation keys of the messages instances wait for, one row each, indexed

Revision ID: 0018
Revises: 0017r
Create Date: 2026-12-04

Waits already there at upgrade get `keyed` false: the first delivery of their message writes
their keys from their state (engine.runtime's lazy backfill) — a migration cannot restore a
workflow without the engine of its day.
"""
from alembic import op
import sqlalchemy as sa

revision = '0018'
down_revision = '0017r'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE ADD COLUMN (SQLite takes it with a constant default): a batch operation
    # would reflect the tables message_wait refers to, and SQLite cannot reflect instance's
    # expression index (a warning on every upgrade).
    op.add_column('message_wait', sa.Column('keyed', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_index('ix_message_wait_message_keyed', 'message_wait', ['message', 'keyed'], unique=False)
    op.create_table('message_key',
        sa.Column('wait_id', sa.String(length=36), nullable=False),
        sa.Column('key', sa.String(length=200), nullable=False),
        sa.Column('instance_id', sa.String(length=36), nullable=False),
        sa.Column('message', sa.String(length=200), nullable=False),
        sa.Column('value', sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(['instance_id'], ['instance.id']),
        sa.PrimaryKeyConstraint('wait_id', 'key'))
    op.create_index('ix_message_key_lookup', 'message_key', ['message', 'key', 'value'], unique=False)
    op.create_index(op.f('ix_message_key_instance_id'), 'message_key', ['instance_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('message_key', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_message_key_instance_id'))
        batch_op.drop_index('ix_message_key_lookup')
    op.drop_table('message_key')
    with op.batch_alter_table('message_wait', schema=None) as batch_op:
        batch_op.drop_index('ix_message_wait_message_keyed')
        batch_op.drop_column('keyed')
