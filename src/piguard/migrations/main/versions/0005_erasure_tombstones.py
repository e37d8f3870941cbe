"""Erasure across two databases (S2, R4): find tombstoned subjects fast, `ix_subjects_erasing`

An erasure first commits the subject as `erasing` (with its audit record, its blind indexes gone
and its API keys revoked), then destroys its data key in the key store, then marks it `erased`.
Start-up finishes every erasure interrupted between those steps; this partial index holds only
the subjects still `erasing`, so finding them never scans every subject. No column changes: the
status column already holds any state.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_WHERE = sa.text("status = 'erasing'")


def upgrade() -> None:
    op.create_index(
        "ix_subjects_erasing",
        "subjects",
        ["status"],
        sqlite_where=_WHERE,
        postgresql_where=_WHERE,
    )


def downgrade() -> None:
    op.drop_index("ix_subjects_erasing", table_name="subjects")
