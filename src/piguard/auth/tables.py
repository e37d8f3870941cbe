"""API keys are stored as SHA-256 hashes; the secret is shown once, at creation."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from piguard.db.base import Base, UtcDateTime


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(64))
    # A subject's own key is bound to that subject: it can never reach another subject's data.
    subject_id: Mapped[str | None] = mapped_column(String(40))
    label: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Set for every key issued since migration 0004; NULL for an older key, which lives the
    # default lifetime of its role's kind from `created_at` (`auth.service.expiry_of`).
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
