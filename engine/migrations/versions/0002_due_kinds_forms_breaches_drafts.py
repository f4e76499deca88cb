"""Reminders and escalations in due_timer, forms per definition, SLA breaches, task drafts

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""
from alembic import op
import sqlalchemy as sa

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('definition', schema=None) as batch_op:
        batch_op.add_column(sa.Column('forms', sa.JSON(), nullable=False, server_default='{}'))
    with op.batch_alter_table('due_timer', schema=None) as batch_op:
        batch_op.alter_column('id', existing_type=sa.String(length=36), type_=sa.String(length=80))
        batch_op.add_column(sa.Column('kind', sa.String(length=16), nullable=False, server_default='timer'))
        batch_op.add_column(sa.Column('task_id', sa.String(length=36), nullable=True))
    op.create_table('sla_breach',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('instance_id', sa.String(length=36), nullable=False),
        sa.Column('task_id', sa.String(length=36), nullable=False),
        sa.Column('element_id', sa.String(length=200), nullable=False),
        sa.Column('holder', sa.String(length=64), nullable=True),
        sa.Column('escalated_to', sa.String(length=64), nullable=True),
        sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('breached_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['instance_id'], ['instance.id'], ),
        sa.PrimaryKeyConstraint('id'))
    with op.batch_alter_table('sla_breach', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sla_breach_instance_id'), ['instance_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_sla_breach_task_id'), ['task_id'], unique=False)
    op.create_table('task_draft',
        sa.Column('task_id', sa.String(length=36), nullable=False),
        sa.Column('instance_id', sa.String(length=36), nullable=False),
        sa.Column('username', sa.String(length=64), nullable=False),
        sa.Column('data', sa.JSON(), nullable=False),
        sa.Column('saved_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['instance_id'], ['instance.id'], ),
        sa.PrimaryKeyConstraint('task_id'))
    with op.batch_alter_table('task_draft', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_task_draft_instance_id'), ['instance_id'], unique=False)


def downgrade() -> None:
    op.drop_table('task_draft')
    op.drop_table('sla_breach')
    with op.batch_alter_table('due_timer', schema=None) as batch_op:
        batch_op.drop_column('task_id')
        batch_op.drop_column('kind')
        batch_op.alter_column('id', existing_type=sa.String(length=80), type_=sa.String(length=36))
    with op.batch_alter_table('definition', schema=None) as batch_op:
        batch_op.drop_column('forms')
