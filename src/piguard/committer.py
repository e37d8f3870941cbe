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

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from sqlalchemy import Connection

from piguard.audit.ports import AuditDraft, AuditUnavailable
from piguard.audit.queue import unavailable
from piguard.db.uow import Transactions, UnitOfWork

_logger = logging.getLogger(__name__)
_BATCH_DRAFTS: Final = 5000  # drafts per transaction, at most: one batch of decisions fits

SubjectVersion = tuple[int, str]
"""A subject's (state version, status): any change of what decisions read about it moves it."""

LiveKeys = Callable[[Connection, set[str]], set[str]]
"""Of some key ids, those still live (not revoked), read in the given transaction."""
SubjectVersions = Callable[[Connection, set[str]], dict[str, SubjectVersion]]
"""Of some subject ids, the current version of each that exists, read in the given transaction."""
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


@dataclass(slots=True)
class _Pending:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]
    basis: Basis
    drafts: Sequence[AuditDraft]
    outcome: BaseException | None = field(default=None)
    given_up: bool = False  # its waiter stopped waiting before the thread took it: drop it


class AnswerCommitter:
    """One writer thread per process commits pending answers' records, a batch per transaction.

    Answers asked during one turn of an event loop are handed to the thread together, with one
    timer for their wait bound: per answer, a future and a list append, nothing more.

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
        self._tx = transactions
        self._append = append
        self._live_keys = live_keys
        self._versions = subject_versions
        self._max_pending = max_pending
        self._wait = wait_seconds
        self._reset()

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._pending: list[_Pending] = []  # handed to the thread, oldest first
        self._drafts = 0  # drafts asked and not yet taken by the thread
        self._forming: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._closed = False

    async def commit(self, basis: Basis, drafts: Sequence[AuditDraft]) -> None:
        """Return once `drafts` are committed, their basis checked in the same transaction.

        Raises Stale (nothing written), AuditUnavailable (queue full, closed, the database
        failed or did not answer within `wait_seconds`). Drafts must have passed the audit
        log's `check` already: a bad one would fail its whole batch."""
        if self._pid != os.getpid():
            with self._cond:
                self._reset()  # a forked child: the parent's thread and waiters are not ours
        with self._cond:
            if self._closed:
                raise unavailable("审计日志已关闭", "the audit log is closed")
            if self._drafts + len(drafts) > self._max_pending:
                raise unavailable("审计队列已满", "the audit queue is full")
            self._drafts += len(drafts)
        loop = asyncio.get_running_loop()
        pending = _Pending(loop, loop.create_future(), basis, drafts)
        forming = self._forming.get(loop)
        if forming is None:
            forming = self._forming[loop] = []
            loop.call_soon(self._hand_over, loop)
        forming.append(pending)
        try:
            await pending.future
        except asyncio.CancelledError:  # the client left: its records need not be written
            self._give_up([pending])
            raise

    def close(self) -> None:
        """Commit what is pending, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(self._wait + 5.0)

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        """At the end of a loop turn: what it asked goes to the thread, with one timer."""
        formed = self._forming.pop(loop)
        loop.call_later(self._wait, self._expire, formed)
        with self._cond:
            self._pending.extend(formed)
            self._cond.notify()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="piguard-answer-committer", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return
                batch = self._take()
            if not batch:
                continue
            self._commit(batch)
            self._settle(batch)

    def _take(self) -> list[_Pending]:
        """The oldest pending answers still waited for, up to `_BATCH_DRAFTS` drafts (at least
        one answer). Answers given up are dropped: nobody acts on them, and writing them would
        only lengthen the wait of those behind them."""
        count = drafts = dropped = 0
        batch = []
        for pending in self._pending:
            if count and drafts + len(pending.drafts) > _BATCH_DRAFTS:
                break
            count += 1
            if pending.given_up:
                dropped += len(pending.drafts)
                continue
            drafts += len(pending.drafts)
            batch.append(pending)
        self._pending = self._pending[count:]
        self._drafts -= drafts + dropped
        return batch

    def _expire(self, waiters: list[_Pending]) -> None:
        """The wait bound passed (on the waiters' loop): who still waits hears it, and what the
        thread has not taken yet is dropped (what it took may still commit)."""
        late = [p for p in waiters if not p.future.done()]
        self._give_up(late)
        for pending in late:
            pending.future.set_exception(
                unavailable("等待审计写入超时", "timed out waiting for audit writes")
            )

    def _give_up(self, waiters: list[_Pending]) -> None:
        with self._cond:
            for pending in waiters:
                pending.given_up = True

    def _commit(self, batch: list[_Pending]) -> None:
        """One transaction: bases checked, the current ones' records appended, committed."""
        try:
            with self._tx.write() as uow:
                current = self._current(uow.connection, batch)
                for pending, ok in zip(batch, current, strict=True):
                    if not ok:
                        pending.outcome = Stale()
                drafts = [d for p, ok in zip(batch, current, strict=True) if ok for d in p.drafts]
                if drafts:
                    self._append(uow, drafts)
                    uow.commit()
        except Exception as exc:  # the database failed: every waiter hears it, none hangs
            _logger.warning("answer batch of %d not committed: %s", len(batch), type(exc).__name__)
            failed = unavailable("审计记录写入失败", "writing audit records failed")
            for pending in batch:
                pending.outcome = failed

    def _current(self, conn: Connection, batch: list[_Pending]) -> list[bool]:
        keys = {p.basis.key_id for p in batch if p.basis.key_id is not None}
        subjects = {s for p in batch for s, _ in p.basis.subjects}
        live = self._live_keys(conn, keys) if keys else set()
        versions = self._versions(conn, subjects) if subjects else {}
        return [
            (p.basis.key_id is None or p.basis.key_id in live)
            and all(versions.get(s) == v for s, v in p.basis.subjects)
            for p in batch
        ]

    def _settle(self, batch: list[_Pending]) -> None:
        """Wake the waiters: one call into each event loop for the whole batch."""
        by_loop: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
        for pending in batch:
            by_loop.setdefault(pending.loop, []).append(pending)
        for loop, waiters in by_loop.items():
            try:
                loop.call_soon_threadsafe(_wake, waiters)
            except RuntimeError:  # that loop is closed: nobody waits any more
                continue


def _wake(waiters: list[_Pending]) -> None:
    for pending in waiters:
        if pending.future.done():  # timed out or cancelled meanwhile
            continue
        if pending.outcome is None:
            pending.future.set_result(None)
        else:
            pending.future.set_exception(pending.outcome)


__all__ = ["AnswerCommitter", "AuditUnavailable", "Basis", "Stale", "SubjectVersion"]
