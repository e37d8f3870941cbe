"""What services hand the audit log: drafts of records, appended in order by the log itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from piguard.db.uow import UnitOfWork


@dataclass(frozen=True, slots=True)
class AuditDraft:
    """A record before it is chained: ids, keys and codes only, never personal values."""

    actor: str
    action: str
    purpose: str
    subject: str
    categories: tuple[str, ...]
    effect: str
    clauses: tuple[str, ...]
    policy_version: str
    detail: str = ""


class AuditSink(Protocol):
    """The audit log as services see it."""

    def append(self, uow: UnitOfWork, drafts: list[AuditDraft]) -> None:
        """Chain and insert inside the caller's transaction (for writes: atomic with the data)."""

    def enqueue(self, draft: AuditDraft) -> None:
        """Queue a record for the next batch (reads and refusals); flushed within the interval."""

    def flush(self) -> None:
        """Write every queued record now."""
