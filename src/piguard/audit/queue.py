"""The group-commit queue: records written in batches by one flusher thread, in their order.

A caller that must not go on before its record is durable (a read, before it returns data) takes a
ticket and waits for the commit of the batch holding it; the flusher writes at once when someone
waits, and records that arrive during a commit go in the next batch, so many readers share one
commit. Others (refusals) only enqueue; `close` writes them before it returns.

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

WriteBatch = Callable[[list[AuditDraft]], None]
"""Writes one batch durably (chain, insert, commit) or raises."""
AfterBatch = Callable[[], None]
"""Runs after each committed batch and when idle (the checkpointer); never raises."""


class GroupCommitQueue:
    """Tickets are positions in enqueue order; a ticket is settled once its batch committed.

    Invariant: batches are written in enqueue order, each in one transaction; a failed batch
    stays first in line.
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
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[AuditDraft] = deque()
        self._enqueued = 0  # tickets handed out
        self._settled = 0  # tickets committed
        self._quiet = 0  # tickets committed and past the after-batch step (the checkpointer)
        self._failures = 0
        self._failure: BaseException | None = None
        self._waiting = 0
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
            if len(self._queue) >= self._batch_size:
                self._cond.notify_all()
            start = self._thread is None
        if start:
            self._start()
        return ticket

    def wait(self, ticket: int | None, timeout: float | None, *, quiet: bool = False) -> None:
        """Block until `ticket` (None: every ticket handed out so far) is committed; with
        `quiet`, until the after-batch step has run for it too.

        Raises AuditUnavailable when a write fails meanwhile (the records stay queued and are
        retried), the flusher has stopped, or `timeout` seconds pass."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target, failures = ticket or self._enqueued, self._failures
            if self._done(quiet) >= target:
                return
            self._waiting += 1
            self._cond.notify_all()  # someone waits: write now
            try:
                while self._done(quiet) < target:
                    if self._failures != failures:
                        raise unavailable(
                            "审计记录写入失败，将重试", "writing audit records failed; retrying"
                        ) from self._failure
                    if self._thread is None or not self._thread.is_alive():
                        raise unavailable("审计写入线程已停止", "the audit flusher has stopped")
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise unavailable("等待审计写入超时", "timed out waiting for audit writes")
                    self._cond.wait(remaining)
            finally:
                self._waiting -= 1

    def close(self, timeout: float) -> None:
        """Write what is queued, run the after step a last time, stop the flusher. Idempotent.

        Gives up after `timeout` seconds (the database is down): what is still queued then is
        lost, and logged as an error, so that closing (and interpreter exit) never hangs."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                with self._cond:
                    self._abandoned = True
                    self._cond.notify_all()
                thread.join(_MAX_BACKOFF + 1.0)

    def forked(self) -> None:
        """In a forked child: the parent's flusher and queue are not ours; start afresh."""
        self._reset()

    def _done(self, quiet: bool) -> int:
        return self._quiet if quiet else self._settled

    def _start(self) -> None:
        with self._cond:
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(
                    target=self._run, name="piguard-audit-flusher", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        delay = self._interval
        while True:
            with self._cond:
                if self._abandoned:
                    _logger.error("audit log closed with %d records unwritten", len(self._queue))
                    return
                ready = self._stopping or len(self._queue) >= self._batch_size
                if delay > self._interval or not (ready or (self._queue and self._waiting)):
                    self._cond.wait(delay)
                count = min(len(self._queue), self._batch_size)
                batch = [self._queue.popleft() for _ in range(count)]
                stopping = self._stopping
            if batch:
                ok = self._write_batch(batch)
                delay = self._interval if ok else min(delay * 2, _MAX_BACKOFF)
                continue
            self._after()  # idle: the checkpointer may seal what is due
            if stopping:
                return

    def _write_batch(self, batch: list[AuditDraft]) -> bool:
        try:
            self._write(batch)
        except Exception as exc:  # the batch stays first in line; waiters see the failure
            _logger.warning("audit batch of %d records not written: %s", len(batch), exc)
            with self._cond:
                self._queue.extendleft(reversed(batch))
                self._failures += 1
                self._failure = exc
                self._cond.notify_all()
            return False
        with self._cond:
            self._settled += len(batch)
            self._cond.notify_all()
        self._after()
        with self._cond:
            self._quiet = self._settled
            self._cond.notify_all()
        return True


def unavailable(zh: str, en: str) -> AuditUnavailable:
    return AuditUnavailable(LocalText(zh, en), reasons=("S2",))
