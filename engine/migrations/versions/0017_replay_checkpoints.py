"""replay checkpoints: an instance's state after every K-th step, so a replay to a late step starts
near it (engine.checkpoints); trusted only where its hash is the log's for that step

Revision ID: 0017r
Revises: 0016
Create Date: 2026-12-04
"""
from alembic import op
import sqlalchemy as sa

revision = '0017r'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('replay_checkpoint',
        sa.Column('instance_id', sa.String(length=36), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('state', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['instance_id'], ['instance.id']),
        sa.PrimaryKeyConstraint('instance_id', 'seq'))


def downgrade() -> None:
    op.drop_table('replay_checkpoint')
