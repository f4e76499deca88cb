"""definition: a version may repeat an older version's content

Drops the unique constraint on (process_id, content_hash): redeploying a reverted file makes its
content current again as a new version number (engine.versions.deploy says "same content as
version K"), so history stays append-only and new instances run what the file now says.

Revision ID: 0012
Revises: 0009
Create Date: 2026-12-03
"""
from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0009'
branch_labels = None
depends_on = None

# SQLite reflects the unnamed constraint without a name: the batch copy names it by this convention.
_NAMING = {"uq": "uq_%(table_name)s_%(column_0_N_name)s"}


def _content_constraint() -> str | None:
    for constraint in sa.inspect(op.get_bind()).get_unique_constraints('definition'):
        if constraint['column_names'] == ['process_id', 'content_hash']:
            return constraint['name']
    return None


def upgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        with op.batch_alter_table('definition', naming_convention=_NAMING, recreate='always') as batch:
            batch.drop_constraint('uq_definition_process_id_content_hash', type_='unique')
    else:
        name = _content_constraint()
        if name is not None:
            op.drop_constraint(name, 'definition', type_='unique')


def downgrade() -> None:
    # Fails while two versions of a process share their content, as it must.
    with op.batch_alter_table('definition') as batch:
        batch.create_unique_constraint('uq_definition_process_id_content_hash', ['process_id', 'content_hash'])
