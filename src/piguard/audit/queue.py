"""The group-commit queue: records written in batches, one batch at a time, in their order.

A caller that must not go on before its record is durable (a read, before it returns data) takes a
ticket and waits for the commit of the batch holding it. When no batch is being written, the
waiting thread writes the queued records itself (it leads): no hand-off to another thread and no
wake-up on its critical path. Records that arrive during a commit go in the next batch, written by
one of their waiters, so many readers share one commit. Others (refusals) only enqueue: a flusher
thread writes them within `flush_interval`, runs the after-batch step (the checkpointer, off the
readers' path), and `close` has it write what is queued before it returns.

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
from typing import Final

from piguard.audit.ports import AuditDraft, AuditUnavailable
from piguard.kernel.text import LocalText

_logger = logging.getLogger(__name__)
_MAX_BACKOFF: Final = 1.0

WriteBatch = Callable[[list[AuditDraft], float | None], None]
"""Writes one batch durably (chain, insert, commit) or raises; waits for the database's write
lock until the given monotonic deadline at most (None: as long as the database lets it)."""
AfterBatch = Callable[[], None]
"""Runs after each committed batch and when idle (the checkpointer); never raises."""


class GroupCommitQueue:
    """Tickets are positions in enqueue order; a ticket is settled once its batch committed.

    Invariant: one batch is written at a time (by a waiting reader, the leader, or the flusher),
    batches in enqueue order, each in one transaction; a failed batch stays first in line.
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
                    batch = self._take() if self._settled < target and self._can_take() else []
                    if not batch:
                        self._cond.wait(None if deadline is None else deadline - time.monotonic())
                        continue
                self._write_batch(batch, deadline)  # this caller leads
        finally:
            if quiet:
                with self._cond:
                    self._quiet_waiting -= 1

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

    def _take(self) -> list[AuditDraft]:
        """The next batch, out of the queue until written or put back (the lock held)."""
        self._writing = True
        return [self._queue.popleft() for _ in range(min(len(self._queue), self._batch_size))]

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
                batch = self._take() if self._queue else []
                stopping = self._stopping
            if batch:
                ok = self._write_batch(batch, None)
                delay = self._interval if ok else min(delay * 2, _MAX_BACKOFF)
                if not ok:
                    continue
            self._after_step()  # the checkpointer may seal what is due
            if stopping and not batch:
                return

    def _after_step(self) -> None:
        with self._cond:
            settled = self._settled
        self._after()
        with self._cond:
            self._quiet = max(self._quiet, settled)
            self._cond.notify_all()

    def _write_batch(self, batch: list[AuditDraft], deadline: float | None) -> bool:
        """Write a taken batch; on failure put it back first in line. A leader that ran out of
        time waiting for the database's lock is not a failure: its waiters keep waiting."""
        try:
            self._write(batch, deadline)
        except Exception as exc:
            late = deadline is not None and time.monotonic() >= deadline
            if not late:
                _logger.warning("audit batch of %d records not written: %s", len(batch), exc)
            with self._cond:
                self._queue.extendleft(reversed(batch))
                self._writing = False
                if not late:
                    self._failures += 1
                    self._failure = exc
                self._cond.notify_all()
                if self._stopping:
                    self._wake.notify()
            return False
        with self._cond:
            self._settled += len(batch)
            self._writing = False
            self._cond.notify_all()
            if self._quiet_waiting or self._stopping:
                self._wake.notify()
        return True


def unavailable(zh: str, en: str) -> AuditUnavailable:
    return AuditUnavailable(LocalText(zh, en), reasons=("S2",))
