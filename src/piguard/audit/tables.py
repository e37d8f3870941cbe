"""Audit tables: insert-only in code. No update or delete path exists for them."""

from __future__ import annotations

from sqlalchemy import BigInteger, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from piguard.audit.chain import LIMITS
from piguard.db.base import Base


class AuditRecordRow(Base):
    __tablename__ = "audit_records"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(LIMITS["actor"]))
    action: Mapped[str] = mapped_column(String(LIMITS["action"]))
    purpose: Mapped[str] = mapped_column(String(LIMITS["purpose"]))
    subject: Mapped[str] = mapped_column(String(LIMITS["subject"]))
    categories: Mapped[str] = mapped_column(Text)
    effect: Mapped[str] = mapped_column(String(16))
    clauses: Mapped[str] = mapped_column(String(LIMITS["clauses"]))
    policy_version: Mapped[str] = mapped_column(String(LIMITS["policy_version"]))
    detail: Mapped[str] = mapped_column(String(LIMITS["detail"]))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditCheckpointRow(Base):
    __tablename__ = "audit_checkpoints"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[str] = mapped_column(String(40))
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(16))
