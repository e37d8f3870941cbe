"""What services hand the audit log: drafts of records, appended in order by the log itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from piguard.db.uow import UnitOfWork
from piguard.kernel.errors import PiguardError


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


class AuditUnavailable(PiguardError):
    """An audit record could not be made durable in time (the database is locked or down, the
    queue is full, or the log is closed): what it would have recorded must not happen (S2)."""

    code = "audit_unavailable"
    retry_after = 1
    """Seconds a caller should wait before trying again."""


class AuditSink(Protocol):
    """The audit log as services see it."""

    def append(self, uow: UnitOfWork, drafts: list[AuditDraft]) -> None:
        """Chain and insert inside the caller's transaction (for writes: atomic with the data)."""

    def record(self, draft: AuditDraft) -> None:
        """Chain and commit now, with others' records (group commit); return once durable.
        For reads: no data leaves before its record. Raises AuditUnavailable."""

    def record_many(self, drafts: list[AuditDraft]) -> None:
        """`record` for several, queued together in order; returns once the last is durable."""

    def enqueue(self, draft: AuditDraft) -> None:
        """Queue a record for the next batch (refusals); written by `close` at the latest."""

    def flush(self) -> None:
        """Write every queued record now."""
