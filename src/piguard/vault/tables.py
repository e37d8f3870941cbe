"""Vault tables: subjects, encrypted values and blind indexes. No column holds plaintext PI."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, text
from sqlalchemy.orm import Mapped, mapped_column

from piguard.db.base import Base, UtcDateTime


class SubjectRow(Base):
    """A data subject under a pseudonymous id; its data key lives in the key store, not here."""

    __tablename__ = "subjects"
    # Start-up finds interrupted erasures through this partial index: it holds only the rows
    # being erased, so it costs registrations nothing and start-up no scan of every subject.
    __table_args__ = (
        Index(
            "ix_subjects_erasing",
            "status",
            sqlite_where=text("status = 'erasing'"),
            postgresql_where=text("status = 'erasing'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    # Bumped by every change of consents, settings or birth date: cached snapshots key on it.
    state_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    erased_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class ValueRow(Base):
    """One encrypted personal value with its purposes, source, collection time and retention."""

    __tablename__ = "personal_values"
    __table_args__ = (Index("ix_personal_values_subject_category", "subject_id", "category"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id"))
    category: Mapped[str] = mapped_column(String(120))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    purposes: Mapped[str] = mapped_column(String(600))
    source: Mapped[str] = mapped_column(String(120))
    collected_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    retention_due: Mapped[datetime | None] = mapped_column(UtcDateTime)


class BlindIndexRow(Base):
    """A keyed HMAC of a normalised identifier: lookups without plaintext (C2.3)."""

    __tablename__ = "blind_indexes"

    kind: Mapped[str] = mapped_column(String(120), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id"), index=True)
