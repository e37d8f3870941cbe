"""Consent and setting events: insert-only tables; the current state is a fold over them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from piguard.db.base import Base, UtcDateTime


class ConsentEventRow(Base):
    __tablename__ = "consent_events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    scope: Mapped[str] = mapped_column(String(200))
    consent_type: Mapped[str] = mapped_column(String(16))
    policy_version: Mapped[str] = mapped_column(String(80))
    notice_hash: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(32))
    method: Mapped[str] = mapped_column(String(32))
    evidence: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    guardian_id: Mapped[str | None] = mapped_column(String(40), nullable=True)


class GuardianshipRow(Base):
    """A guardian linked to a minor (M1); one link per pair, never edited."""

    __tablename__ = "guardianships"
    __table_args__ = (UniqueConstraint("minor_id", "guardian_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    minor_id: Mapped[str] = mapped_column(ForeignKey("subjects.id"), index=True)
    guardian_id: Mapped[str] = mapped_column(ForeignKey("subjects.id"), index=True)
    relation: Mapped[str] = mapped_column(String(32))
    evidence: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(UtcDateTime)


class SettingEventRow(Base):
    __tablename__ = "setting_events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id"), index=True)
    key: Mapped[str] = mapped_column(String(64))
    value: Mapped[bool] = mapped_column(Boolean)
    channel: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
