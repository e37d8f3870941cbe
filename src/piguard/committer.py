"""Answers from cached facts, committed only if those facts still hold.

A request on the hot path (`POST /v1/decide`) is answered on the event loop from what this
process has cached: the caller's key and the subject's snapshot. What it assumed is its `Basis`:
the key is not revoked, each subject's state version and status are unchanged. The answer's
audit record is committed by one writer thread, in batches, and the basis is checked again in
the very transaction that commits the record, so a revocation or a withdrawal committed by any
process before that commit is never answered past (R2, S2). A request whose basis no longer holds
writes nothing and gets `Stale`: the caller answers it again from the database.

The queue is bounded: a request past `max_pending` drafts, or whose commit does not come within
`wait_seconds`, gets `AuditUnavailable` (503 with a retry hint). What a waiter gave up (timed out,
or the client left) is dropped unless its commit is already under way (then it is recorded though
never answered): an overload never piles up work for answers nobody will read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from sqlalchemy import Connection

from piguard.audit.ports import AuditDraft, AuditUnavailable
from piguard.audit.queue import unavailable
from piguard.audit.writer import locked_reads, pipelined
from piguard.batching import LoopBatcher
from piguard.db.in_lists import Bound
from piguard.db.uow import Transactions, UnitOfWork

_BATCH_DRAFTS: Final = 5000  # drafts per transaction, at most: one batch of decisions fits

SubjectVersion = tuple[int, str]
"""A subject's (state version, status): any change of what decisions read about it moves it."""

LiveKeys = Callable[[set[str]], Bound]
"""Of some key ids, those still live (not revoked): the query."""
SubjectVersions = Callable[[set[str]], Bound]
"""Of some subject ids, (id, state version, status) of each that exists: the query."""
Append = Callable[[UnitOfWork, list[AuditDraft]], None]
"""The audit log's `append`: chain and insert in the caller's transaction."""


@dataclass(frozen=True, slots=True)
class Basis:
    """The stored facts a cached answer assumed: checked again where its record commits."""

    key_id: str | None = None
    subjects: tuple[tuple[str, SubjectVersion], ...] = ()


class Stale(Exception):
    """The facts an answer assumed changed before its record committed: nothing was written;
    answer again from the database."""


class AnswerCommitter:
    """One writer thread per process (`batching.LoopBatcher`) commits pending answers' records,
    a batch per transaction.

    Invariant: a record is inserted only in a transaction that found its basis current; a waiter
    is told committed, `Stale` or `AuditUnavailable`, never left waiting past `wait_seconds`.
    """

    def __init__(
        self,
        transactions: Transactions,
        append: Append,
        live_keys: LiveKeys,
        subject_versions: SubjectVersions,
        *,
        max_pending: int = 20_000,
        wait_seconds: float = 2.0,
    ) -> None:
        self._tx = transactions.held()  # one connection for the writer thread's transactions
        self._append = append
        self._live_keys = live_keys
        self._versions = subject_versions
        self._batcher: LoopBatcher[_Answer, None] = LoopBatcher(
            "piguard-answer-committer",
            self._commit,
            _refusal,
            weight=lambda answer: len(answer[1]),
            max_weight=max_pending,
            batch_weight=_BATCH_DRAFTS,
            wait_seconds=wait_seconds,
            stopped=self._tx.close,
        )

    async def commit(self, basis: Basis, drafts: Sequence[AuditDraft]) -> None:
        """Return once `drafts` are committed, their basis checked in the same transaction.

        Raises Stale (nothing written), AuditUnavailable (queue full, closed, the database
        failed or did not answer within `wait_seconds`). Drafts must have passed the audit
        log's `check` already: a bad one would fail its whole batch."""
        await self._batcher.submit((basis, drafts))

    def close(self) -> None:
        """Commit what is pending, then stop the thread."""
        self._batcher.close()

    def _commit(self, batch: list[_Answer]) -> list[object]:
        """One transaction: bases checked, the current ones' records appended, committed."""
        with self._tx.write() as uow:
            current = self._current(uow.connection, [basis for basis, _ in batch])
            drafts = [d for (_, ds), ok in zip(batch, current, strict=True) if ok for d in ds]
            if drafts:
                with pipelined(uow.connection):  # the inserts and the commit: one round trip
                    self._append(uow, drafts)
                    uow.commit()
        return [None if ok else Stale() for ok in current]

    def _current(self, conn: Connection, bases: list[Basis]) -> list[bool]:
        """Whether each basis holds, read under the chain's lock (`locked_reads`): a change
        that commits its own record (a revocation, a withdrawal) is then either seen here or
        chained after these records."""
        keys = {b.key_id for b in bases if b.key_id is not None}
        subjects = {s for b in bases for s, _ in b.subjects}
        queries = [self._live_keys(keys)] if keys else []
        if subjects:
            queries.append(self._versions(subjects))
        found = iter(locked_reads(conn, queries))
        live = {row[0] for row in next(found)} if keys else set()
        versions = {row[0]: (row[1], row[2]) for row in next(found)} if subjects else {}
        return [
            (b.key_id is None or b.key_id in live)
            and all(versions.get(s) == v for s, v in b.subjects)
            for b in bases
        ]


_Answer = tuple[Basis, Sequence[AuditDraft]]
_REFUSALS: Final = {
    "full": ("审计队列已满", "the audit queue is full"),
    "closed": ("审计日志已关闭", "the audit log is closed"),
    "timeout": ("等待审计写入超时", "timed out waiting for audit writes"),
    "failed": ("审计记录写入失败", "writing audit records failed"),
}


def _refusal(why: str) -> AuditUnavailable:
    return unavailable(*_REFUSALS[why])


__all__ = ["AnswerCommitter", "AuditUnavailable", "Basis", "Stale", "SubjectVersion"]
