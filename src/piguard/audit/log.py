"""The audit log (clause S2): chained records and signed checkpoints in the database.

A facade over three parts, one job each:
- `writer.ChainWriter` chains records and inserts them under the chain's lock;
- `queue.GroupCommitQueue` writes queued records in batches, one commit per batch;
- `checkpointer.Checkpointer` seals verified records with signed checkpoints.

Three ways in, one chain:
- `append(uow, drafts)` chains and inserts inside the caller's transaction, atomic with the data
  it audits (writes), after the records waiting in the queue, which ride on its commit;
- `record(draft)` returns once the record is committed, with the batch holding it (reads: no
  data leaves before its record is durable); `record_many(drafts)` likewise for several;
- `enqueue(draft)` only queues (refusals); `close()` writes what is queued.
"""

from __future__ import annotations

import atexit
import os
import weakref
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Final

from sqlalchemy import Engine

from piguard.audit.checkpointer import Checkpointer, SigningKey, key_id_of
from piguard.audit.ports import AuditDraft, AuditUnavailable
from piguard.audit.queue import Claim, GroupCommitQueue
from piguard.audit.scan import (
    StoredVerification,
    signature_check,
    verify,
    verify_storage,
)
from piguard.audit.verify import VerifyReport
from piguard.audit.witness import Witness
from piguard.audit.writer import ChainWriter, check, lock_chain
from piguard.db.engine import write_before
from piguard.db.uow import UnitOfWork
from piguard.kernel.clock import Clock
from piguard.vault.crypto import ChainKey

__all__ = [
    "AuditLog",
    "AuditUnavailable",
    "SigningKey",
    "StoredVerification",
    "key_id_of",
    "signature_check",
    "verify",
    "verify_storage",
]

_EXIT_TIMEOUT: Final = 10.0


class AuditLog:
    """The audit log adapter, an `AuditSink`.

    Invariant: records get gapless seqs in the order they are written (enqueue order within one
    process) and non-decreasing times; a checkpoint covers only records that verify, and its line
    reaches the file only after it is committed.
    """

    def __init__(
        self,
        engine: Engine,
        signer: SigningKey,
        chain_key: ChainKey,
        checkpoint_file: Path,
        clock: Clock,
        checkpoint_seconds: float = 1.0,
        batch_size: int = 1000,
        flush_interval: float = 0.05,
        wait_seconds: float = 2.0,
        max_pending: int = 100_000,
        witness: Witness | None = None,
    ) -> None:
        if min(checkpoint_seconds, batch_size, flush_interval, wait_seconds, max_pending) <= 0:
            raise ValueError("the audit log's intervals, bounds and sizes must be positive")
        self._engine = engine
        self._key = chain_key
        self._file = Path(checkpoint_file)
        self._wait = wait_seconds
        self._witness = witness
        self._writer = ChainWriter(engine, chain_key, clock)
        self._checkpointer = Checkpointer(
            engine,
            signer,
            chain_key,
            signature_check([signer.public_bytes()]),
            self._file,
            clock,
            timedelta(seconds=checkpoint_seconds),
            witness,
        )
        self._queue = GroupCommitQueue(
            self._write_batch,
            self._checkpointer.seal_if_due,
            batch_size=batch_size,
            flush_interval=flush_interval,
            max_pending=max_pending,
        )
        _OPEN.add(self)

    @property
    def public_key(self) -> bytes:
        """The public half of the signing key: what `verify` needs to trust the checkpoints."""
        return self._checkpointer.public_key

    def append(
        self, uow: UnitOfWork, drafts: list[AuditDraft], *, seal: bool = True, checked: bool = False
    ) -> None:
        """Chain and insert `drafts` in the caller's open transaction, atomic with its writes.

        Raises InvalidInput for a draft with unsafe fields (nothing is inserted then). The chain
        stays locked until the caller's transaction ends: keep write transactions short. Without
        `seal`, a due checkpoint is left to the flusher's next tick rather than made after the
        commit by the caller (a writer whose waiters must not wait for it). `checked`: each draft
        is what `writer.check` returned for it already.
        """
        if not drafts:
            return
        if not checked:
            drafts = [check(draft) for draft in drafts]  # all checked before any write
        self._writer.write(uow.connection, drafts, partial(self._waiting, uow))
        uow.after_commit(self._sealed_after_commit if seal else self._checkpointer.written)

    def _waiting(self, uow: UnitOfWork) -> list[AuditDraft]:
        """The queued records, taken under the chain's lock to ride on `uow`'s commit: settled
        when it commits, put back first in line when it does not."""
        handover = self._queue.hand_over()
        if handover is None:
            return []
        uow.on_end(handover.end)
        return handover.drafts

    def record(self, draft: AuditDraft) -> None:
        """Return once `draft` is committed, in the next group commit.

        Raises InvalidInput for a bad draft, AuditUnavailable when the queue is full, the log is
        closed, or the commit does not come within `wait_seconds` (the record stays queued).
        """
        ticket = self._queue.put(check(draft))
        self._queue.wait(ticket, self._wait)

    def record_many(self, drafts: list[AuditDraft]) -> None:
        """Return once every one of `drafts` is committed: queued together, in order, the wait
        is for the last one's group commit.

        Raises InvalidInput for a bad draft (nothing is queued then), AuditUnavailable as
        `record` does; nothing is queued when they do not all fit.
        """
        if not drafts:
            return
        checked = [check(draft) for draft in drafts]  # all checked before any is queued
        self._queue.wait(self._queue.put_many(checked), self._wait)

    def enqueue(self, draft: AuditDraft) -> None:
        """Queue `draft`; it is written within about `flush_interval`, and by `close` at the
        latest. Raises InvalidInput for a bad draft, AuditUnavailable when full or closed."""
        self._queue.put(check(draft))

    def flush(self, timeout: float | None = None) -> None:
        """Block until every record queued before this call is committed and, when due, sealed.

        Raises AuditUnavailable when a write fails meanwhile (the records stay queued and are
        retried) or `timeout` seconds pass.
        """
        self._queue.wait(None, timeout, quiet=True)

    def verify(self, *, workers: int | None = None) -> VerifyReport:
        """Verify what is stored (not what is still queued) under this log's own keys, with the
        witness's copy of the checkpoints when there is a witness."""
        return verify(
            self._engine,
            self._file,
            [self.public_key],
            self._key,
            witness=self._witness,
            workers=workers,
        )

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, seal the head, stop the flusher. Idempotent."""
        self._queue.close(timeout)
        self._checkpointer.seal_if_due(final=True)
        closer = getattr(self._witness, "close", None)
        if callable(closer):  # an HTTP witness holds a connection pool
            closer()
        _OPEN.discard(self)

    def _write_batch(self, claim: Claim, deadline: float | None) -> None:
        with write_before(self._engine, deadline) as conn:
            lock_chain(conn)  # claimed under the chain's lock: a data commit may have taken it
            batch = claim()
            if not batch:
                return
            self._writer.write(conn, batch)
        self._checkpointer.written()

    def _sealed_after_commit(self) -> None:
        self._checkpointer.written()
        self._checkpointer.seal_if_due()

    def _forked(self) -> None:
        self._queue.forked()
        self._checkpointer.forked()


_OPEN: Final[weakref.WeakSet[AuditLog]] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for log in list(_OPEN):
        log._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _close_open_logs() -> None:
    """At interpreter exit: write what is queued, within a bound, so exit never hangs."""
    for log in list(_OPEN):
        log.close(timeout=_EXIT_TIMEOUT)
