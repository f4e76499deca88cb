"""the credit list (客户信用等级一览表) as data, its changes, and the runs of timer start events

Creates credit_list (id, name, level, since) and credit_change (who approved, when, old and new
level, reason, instance), filled from the customer cards' credit levels where there are cards; and
timer_start, one row per scheduled run of a process started by a timer (its primary key makes a run
start once, whatever the number of workers).

Revision ID: 0010
Revises: 0012
Create Date: 2026-12-03
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('credit_list',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('level', sa.String(length=8), nullable=True),
    sa.Column('since', sa.Date(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('credit_change',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('customer_id', sa.String(length=64), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('approved_by', sa.String(length=64), nullable=False),
    sa.Column('old_level', sa.String(length=8), nullable=True),
    sa.Column('new_level', sa.String(length=8), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('instance_id', sa.String(length=36), nullable=True),
    sa.ForeignKeyConstraint(['customer_id'], ['credit_list.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('credit_change', schema=None) as batch_op:
        batch_op.create_index('ix_credit_change_customer_at', ['customer_id', 'at'], unique=False)
        batch_op.create_index(batch_op.f('ix_credit_change_at'), ['at'], unique=False)
    op.create_table('timer_start',
    sa.Column('process_id', sa.String(length=200), nullable=False),
    sa.Column('scheduled_for', sa.DateTime(timezone=True), nullable=False),
    sa.Column('instance_id', sa.String(length=36), nullable=True),
    sa.Column('incident_id', sa.Integer(), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('process_id', 'scheduled_for')
    )
    # The levels the archive cards carried become the list's (the card keeps showing its own copy).
    day = "date(updated_at)" if op.get_bind().dialect.name == "sqlite" else "CAST(updated_at AS DATE)"
    op.execute("INSERT INTO credit_list (id, name, level, since, updated_at) "
               "SELECT id, name, CASE WHEN credit_level IN ('A', 'B', 'C') THEN credit_level END, "
               f"{day}, updated_at FROM customer_card")


def downgrade() -> None:
    op.drop_table('timer_start')
    with op.batch_alter_table('credit_change', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_credit_change_at'))
        batch_op.drop_index('ix_credit_change_customer_at')
    op.drop_table('credit_change')
    op.drop_table('credit_list')
