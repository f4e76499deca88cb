"""reserved for issue 8 (filled in by the change that needs it)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
