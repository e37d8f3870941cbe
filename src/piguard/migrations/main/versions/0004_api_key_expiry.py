"""API keys expire (S2): `api_keys.expires_at`

Keys issued before this revision keep NULL: they live the default lifetime of their role's kind
(90 days for services and staff, 30 for subjects) from their creation, like a key issued now, so
no key is valid forever and none is cut off before the operator can see it in `piguard keys list`.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("expires_at")
