"""instance search indexes: the orders a page of instances is read in, and who took part

The instance search (engine/instances.py) reads a page as the first rows of an index in the list's
order — started, last change, business key (rows without one last), or one initiator's by start —
and the instances someone took part in as one range of (actor, instance_id) over the log. The
order indexes hold the searched columns, so a filter or the free text is checked in the index.

Revision ID: 0014
Revises: 0015
Create Date: 2026-12-04
"""
from alembic import op
import sqlalchemy as sa


revision = '0014'
down_revision = '0015'
branch_labels = None
depends_on = None

SEARCHED = ['status', 'process_id', 'definition_id', 'customer', 'initiator', 'business_key']
INDEXES = [
    ('ix_instance_created_order', 'instance', ['created_at', 'id', *SEARCHED]),
    ('ix_instance_updated_order', 'instance', ['updated_at', 'id', *SEARCHED]),
    ('ix_instance_key_order', 'instance', [sa.text("(business_key IS NULL)"), 'business_key', 'id', 'created_at',
                                          *SEARCHED[:-1]]),
    ('ix_instance_initiator_created', 'instance', ['initiator', 'created_at', 'id',
                                                  *(c for c in SEARCHED if c != 'initiator')]),
    ('ix_log_entry_actor_instance', 'log_entry', ['actor', 'instance_id']),
]


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _columns in reversed(INDEXES):
        op.drop_index(name, table_name=table)
