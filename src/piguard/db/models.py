"""Every table of the main database, imported so that one metadata knows them all."""

from __future__ import annotations

from piguard.audit.tables import AuditCheckpointRow, AuditRecordRow
from piguard.auth.tables import ApiKeyRow
from piguard.consent.tables import ConsentEventRow, GuardianshipRow, SettingEventRow
from piguard.db.base import Base
from piguard.vault.tables import BlindIndexRow, SubjectRow, ValueRow

metadata = Base.metadata

__all__ = [
    "ApiKeyRow",
    "AuditCheckpointRow",
    "AuditRecordRow",
    "BlindIndexRow",
    "ConsentEventRow",
    "GuardianshipRow",
    "SettingEventRow",
    "SubjectRow",
    "ValueRow",
    "metadata",
]
