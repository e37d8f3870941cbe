"""guardianships (M1) and who gave a consent: a linked guardian's consent is recorded as such,
never claimed as a consent type

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "guardianships",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("minor_id", sa.String(length=40), nullable=False),
        sa.Column("guardian_id", sa.String(length=40), nullable=False),
        sa.Column("relation", sa.String(length=32), nullable=False),
        sa.Column("evidence", sa.String(length=200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["guardian_id"], ["subjects.id"], name=op.f("fk_guardianships_guardian_id_subjects")
        ),
        sa.ForeignKeyConstraint(
            ["minor_id"], ["subjects.id"], name=op.f("fk_guardianships_minor_id_subjects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guardianships")),
        sa.UniqueConstraint("minor_id", "guardian_id", name=op.f("uq_guardianships_minor_id")),
    )
    with op.batch_alter_table("guardianships", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_guardianships_guardian_id"), ["guardian_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_guardianships_minor_id"), ["minor_id"], unique=False)
    with op.batch_alter_table("consent_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("guardian_id", sa.String(length=40), nullable=True))
    # "guardian" was a type any caller could claim; such events prove nothing of a guardian.
    op.execute("UPDATE consent_events SET consent_type = 'regular' WHERE consent_type = 'guardian'")


def downgrade() -> None:
    with op.batch_alter_table("consent_events", schema=None) as batch_op:
        batch_op.drop_column("guardian_id")
    with op.batch_alter_table("guardianships", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_guardianships_minor_id"))
        batch_op.drop_index(batch_op.f("ix_guardianships_guardian_id"))
    op.drop_table("guardianships")
