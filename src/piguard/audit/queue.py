"""The group-commit queue: records written in batches, one batch at a time, in their order.

A caller that must not go on before its record is durable (a read, before it returns data) takes a
ticket and waits for the commit of the batch holding it. When no batch is being written, the
waiting thread writes the queued records itself (it leads): no hand-off to another thread and no
wake-up on its critical path. Records that arrive during a commit go in the next batch, written by
one of their waiters, so many readers share one commit. Others (refusals) only enqueue: a flusher
thread writes them within `flush_interval`, runs the after-batch step (the checkpointer, off the
readers' path), and `close` has it write what is queued before it returns.

A data transaction that audits its own write (`hand_over`) takes the records waiting in line,
under the chain's lock, and chains them before its own: they ride on its commit, and a reader
whose record is in it pays no fsync of its own. It may take a batch a leader took but has not
claimed yet (the leader claims its batch once it holds the chain's lock): the leader then writes
nothing and waits like any follower. A taken batch is written by whoever holds it, exactly once:
settled when its transaction commits, put back first in line when it does not.

The queue is bounded: when it is full, or the batch holding a waiter's record is not committed
within the wait bound (the database is locked or down), the caller gets `AuditUnavailable`. A
record that timed out stays queued and is written when the database lets it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Final

from piguard.audit.ports import AuditDraft, AuditUnavailable
from piguard.kernel.text import LocalText

_logger = logging.getLogger(__name__)
_MAX_BACKOFF: Final = 1.0

Claim = Callable[[], list[AuditDraft]]
"""A taken batch's records, to call under the chain's lock: empty when a data commit took them."""
WriteBatch = Callable[[Claim, float | None], None]
"""Writes one claimed batch durably (chain, insert, commit) or raises; waits for the database's
write lock until the given monotonic deadline at most (None: as long as the database lets it)."""
AfterBatch = Callable[[], None]
"""Runs after each committed batch and when idle (the checkpointer); never raises."""


class _Batch:
    """Records taken by a leader or the flusher: claimed by their writer, or by a data commit."""

    __slots__ = ("claimed", "drafts", "lost")

    def __init__(self, drafts: list[AuditDraft]) -> None:
        self.drafts = drafts
        self.claimed = False  # its writer holds the chain's lock: no data commit can take it
        self.lost = False  # a data commit took it: its writer writes nothing


class Handover:
    """Records a data transaction took: settled if it commits, put back first if it does not."""

    __slots__ = ("_generation", "_queue", "done", "drafts")

    def __init__(self, queue: GroupCommitQueue, drafts: list[AuditDraft], generation: object):
        self._queue = queue
        self._generation = generation
        self.drafts = drafts
        self.done = False

    def end(self, committed: bool) -> None:
        """The transaction ended (a `UnitOfWork.on_end` callback): once only, never raises."""
        self._queue._ended(self, committed, self._generation)


class GroupCommitQueue:
    """Tickets are positions in enqueue order; a ticket is settled once its batch committed.

    Invariant: one batch is written at a time (by a waiting reader, the leader, the flusher, or a
    data transaction), batches in enqueue order, each in one transaction; a failed batch stays
    first in line. While none is out, the queue holds tickets settled+1 .. enqueued in order.
    """

    def __init__(
        self,
        write: WriteBatch,
        after: AfterBatch,
        *,
        batch_size: int,
        flush_interval: float,
        max_pending: int,
    ) -> None:
        self._write = write
        self._after = after
        self._batch_size = batch_size
        self._interval = flush_interval
        self._max_pending = max_pending
        self._reset()

    def _reset(self) -> None:
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # waiters: a batch committed or failed
        self._wake = threading.Condition(lock)  # the flusher: work that is its own
        self._queue: deque[AuditDraft] = deque()
        self._enqueued = 0  # tickets handed out
        self._settled = 0  # tickets committed
        self._quiet = 0  # tickets committed and past the after-batch step (the checkpointer)
        self._failures = 0
        self._failure: BaseException | None = None
        self._writing = False  # a batch is out of the queue, being written
        self._open: _Batch | None = None  # the batch out, while a data commit may still take it
        self._generation = object()  # a fork's child starts a new one
        self._quiet_waiting = 0
        self._stopping = False
        self._abandoned = False
        self._thread: threading.Thread | None = None

    def put(self, draft: AuditDraft) -> int:
        """Queue a checked draft; its ticket. AuditUnavailable when full or closed."""
        with self._cond:
            if self._stopping:
                raise unavailable("审计日志已关闭", "the audit log is closed")
            if len(self._queue) >= self._max_pending:
                raise unavailable("审计队列已满", "the audit queue is full")
            self._queue.append(draft)
            self._enqueued += 1
            ticket = self._enqueued
            if len(self._queue) == self._batch_size:
                self._wake.notify()
            start = self._thread is None
        if start:
            self._start()
        return ticket

    def put_many(self, drafts: list[AuditDraft]) -> int:
        """Queue checked drafts together, in order and next to each other: the last one's
        ticket. All or none: AuditUnavailable when they do not all fit, or when closed."""
        with self._cond:
            if self._stopping:
                raise unavailable("审计日志已关闭", "the audit log is closed")
            if len(self._queue) + len(drafts) > self._max_pending:
                raise unavailable("审计队列已满", "the audit queue is full")
            self._queue.extend(drafts)
            self._enqueued += len(drafts)
            ticket = self._enqueued
            if len(self._queue) >= self._batch_size:
                self._wake.notify()
            start = self._thread is None
        if start:
            self._start()
        return ticket

    def wait(self, ticket: int | None, timeout: float | None, *, quiet: bool = False) -> None:
        """Block until `ticket` (None: every ticket handed out so far) is committed; with
        `quiet`, until the after-batch step has run for it too. While no batch is being
        written, the caller writes what is queued itself.

        Raises AuditUnavailable when a write fails meanwhile (the records stay queued and are
        retried), the flusher has stopped, or `timeout` seconds pass."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target, failures = ticket or self._enqueued, self._failures
            if self._done(quiet) >= target:
                return
            if quiet:
                self._quiet_waiting += 1
                self._wake.notify()
        try:
            while True:
                with self._cond:
                    if self._done(quiet) >= target:
                        return
                    self._check(failures, deadline)
                    batch = self._take() if self._settled < target and self._can_take() else None
                    if batch is None:
                        self._cond.wait(None if deadline is None else deadline - time.monotonic())
                        continue
                self._write_batch(batch, deadline)  # this caller leads
        finally:
            if quiet:
                with self._cond:
                    self._quiet_waiting -= 1

    def hand_over(self) -> Handover | None:
        """For a data transaction holding the chain's lock: the records waiting (those of a batch
        taken but not claimed first), in ticket order, to chain before its own; None: nothing
        to take. The caller must end the handover when its transaction ends, either way."""
        with self._cond:
            if self._abandoned:
                return None
            if not self._writing:
                if not self._queue:
                    return None
                drafts = self._pop(self._batch_size)
                self._writing = True
            elif self._open is not None and not self._open.claimed:
                self._open.lost = True
                drafts = self._open.drafts + self._pop(self._batch_size - len(self._open.drafts))
                self._open = None
            else:
                return None
            return Handover(self, drafts, self._generation)

    def _ended(self, handover: Handover, committed: bool, generation: object) -> None:
        with self._cond:
            if handover.done or generation is not self._generation:
                return  # ended already, or a forked child's copy of its parent's
            handover.done = True
            if committed:
                self._settled += len(handover.drafts)
            else:
                self._queue.extendleft(reversed(handover.drafts))
            self._writing = False
            self._cond.notify_all()
            if self._quiet_waiting or self._stopping:
                self._wake.notify()

    def close(self, timeout: float) -> None:
        """Write what is queued, run the after step a last time, stop the flusher. Idempotent.

        Gives up after `timeout` seconds (the database is down): what is still queued then is
        lost, and logged as an error, so that closing (and interpreter exit) never hangs."""
        with self._cond:
            self._stopping = True
            self._wake.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                with self._cond:
                    self._abandoned = True
                    self._wake.notify()
                thread.join(_MAX_BACKOFF + 1.0)

    def forked(self) -> None:
        """In a forked child: the parent's flusher and queue are not ours; start afresh."""
        self._reset()

    def _done(self, quiet: bool) -> int:
        return self._quiet if quiet else self._settled

    def _check(self, failures: int, deadline: float | None) -> None:
        """Raise for a waiter that must stop waiting (the lock held)."""
        if self._failures != failures:
            raise unavailable(
                "审计记录写入失败，将重试", "writing audit records failed; retrying"
            ) from self._failure
        if self._thread is None or not self._thread.is_alive():
            raise unavailable("审计写入线程已停止", "the audit flusher has stopped")
        if deadline is not None and deadline <= time.monotonic():
            raise unavailable("等待审计写入超时", "timed out waiting for audit writes")

    def _can_take(self) -> bool:
        return bool(self._queue) and not self._writing and not self._abandoned

    def _take(self) -> _Batch:
        """The next batch, out of the queue until written or put back (the lock held)."""
        self._writing = True
        self._open = _Batch(self._pop(self._batch_size))
        return self._open

    def _pop(self, most: int) -> list[AuditDraft]:
        return [self._queue.popleft() for _ in range(min(len(self._queue), most))]

    def _claim(self, batch: _Batch) -> list[AuditDraft]:
        """The batch's records for its writer, now under the chain's lock (empty: taken)."""
        with self._cond:
            if batch.lost:
                return []
            batch.claimed = True
            self._open = None
            return batch.drafts

    def _start(self) -> None:
        with self._cond:
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(
                    target=self._run, name="piguard-audit-flusher", daemon=True
                )
                self._thread.start()

    def _urgent(self) -> bool:
        """The flusher has work that cannot wait for its next tick (the lock held)."""
        if self._writing:
            return False  # the writer's end wakes it when it matters
        full = len(self._queue) >= self._batch_size
        return self._stopping or full or (self._quiet_waiting > 0 and self._quiet < self._settled)

    def _run(self) -> None:
        """Writes what only enqueued (each tick, or at once when a batch is full), runs the
        after-batch step, drains the queue on close."""
        delay = self._interval
        while True:
            with self._cond:
                if delay > self._interval or not self._urgent():
                    self._wake.wait(delay)
                if self._abandoned:
                    _logger.error("audit log closed with %d records unwritten", len(self._queue))
                    return
                if self._writing:
                    continue
                batch = self._take() if self._queue else None
                stopping = self._stopping
            if batch is not None:
                ok = self._write_batch(batch, None)
                delay = self._interval if ok else min(delay * 2, _MAX_BACKOFF)
                if not ok:
                    continue
            self._after_step()  # the checkpointer may seal what is due
            if stopping and batch is None:
                return

    def _after_step(self) -> None:
        with self._cond:
            settled = self._settled
        self._after()
        with self._cond:
            self._quiet = max(self._quiet, settled)
            self._cond.notify_all()

    def _write_batch(self, batch: _Batch, deadline: float | None) -> bool:
        """Write a taken batch; on failure put it back first in line. A leader that ran out of
        time waiting for the database's lock is not a failure: its waiters keep waiting. A batch
        a data commit took is that commit's to settle or put back, whatever happened here."""
        try:
            self._write(partial(self._claim, batch), deadline)
        except Exception as exc:
            late = deadline is not None and time.monotonic() >= deadline
            with self._cond:
                if batch.lost:
                    return True
                if not late:
                    _logger.warning(
                        "audit batch of %d records not written: %s", len(batch.drafts), exc
                    )
                self._open = None
                self._queue.extendleft(reversed(batch.drafts))
                self._writing = False
                if not late:
                    self._failures += 1
                    self._failure = exc
                self._cond.notify_all()
                if self._stopping:
                    self._wake.notify()
            return False
        with self._cond:
            if batch.lost:
                return True
            self._settled += len(batch.drafts)
            self._writing = False
            self._cond.notify_all()
            if self._quiet_waiting or self._stopping:
                self._wake.notify()
        return True


def unavailable(zh: str, en: str) -> AuditUnavailable:
    return AuditUnavailable(LocalText(zh, en), reasons=("S2",))
