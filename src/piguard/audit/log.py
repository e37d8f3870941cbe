"""The audit log (clause S2): chained records and signed checkpoints in the database.

Two ways in, one chain:
- `append(session, drafts)` chains and inserts inside the caller's transaction, atomic with the
  data it audits (writes);
- `enqueue(draft)` hands a record to a flusher thread that writes batches in their own
  transactions (reads and refusals), in enqueue order.

Writers are serialised on the chain head: on PostgreSQL by a transaction-scoped advisory lock, on
SQLite by the write lock every transaction takes at `BEGIN IMMEDIATE` (`db.engine.make_engine`).
The primary key on `seq` is the last line: a writer that raced anyway fails, it never forks.

When `checkpoint_seconds` have passed since the last checkpoint, a write also signs the new head
and stores it in `audit_checkpoints`, in the same transaction. Its line in the checkpoint file,
outside the database, is written only once that transaction has committed, so the file never names
a record that was rolled back. The flusher signs the head when records written here are still
uncovered and a checkpoint is due, and on `close()`, so the newest records do not stay uncovered.

Insert-only: nothing in piguard updates or deletes audit rows.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from contextlib import closing
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import chain
from pathlib import Path
from typing import Any, Final, Protocol

from sqlalchemy import Connection, Engine, insert, select

from piguard.audit.chain import (
    COLUMNS,
    ChainBuilder,
    Row,
    bounded_keys,
    check_subject,
    format_at,
)
from piguard.audit.checkpoint import Checkpoint, make_checkpoint
from piguard.audit.ports import AuditDraft
from piguard.audit.scan import (
    StoredVerification,
    append_checkpoint_line,
    signature_check,
    verify,
    verify_storage,
)
from piguard.audit.tables import AuditCheckpointRow, AuditRecordRow
from piguard.audit.verify import VerifyReport
from piguard.db.uow import UnitOfWork
from piguard.kernel.clock import Clock
from piguard.kernel.errors import PiguardError
from piguard.kernel.text import LocalText

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

_LOCK_KEY: Final = 0x5049_4755_4152_4400  # "PIGUARD\0": the chain's advisory lock on PostgreSQL
_MAX_BACKOFF: Final = 1.0
_CHUNK: Final = 75  # rows per INSERT: 975 parameters, under SQLite's oldest limit of 999
_EXIT_TIMEOUT: Final = 10.0
_HEAD: Final = (
    select(AuditRecordRow.seq, AuditRecordRow.hash).order_by(AuditRecordRow.seq.desc()).limit(1)
)
_HEAD_SQL: Final = "SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1"
_LAST_CHECKPOINT: Final = (
    select(AuditCheckpointRow.seq, AuditCheckpointRow.at)
    .order_by(AuditCheckpointRow.seq.desc())
    .limit(1)
)
_logger = logging.getLogger(__name__)
_checker = threading.local()

_Queued = tuple[AuditDraft, str]  # a checked draft and its `at`


class SigningKey(Protocol):
    """What checkpoints are signed with: `vault.crypto.CheckpointSigner` (Ed25519)."""

    def sign(self, data: bytes) -> bytes: ...

    def public_bytes(self) -> bytes: ...


def key_id_of(public_key: bytes) -> str:
    """The id a checkpoint names its key by: the first 16 hex digits of SHA-256(public key)."""
    return hashlib.sha256(public_key).hexdigest()[:16]


class AuditUnavailable(PiguardError):
    """Queued audit records could not be made durable: the database failed, or the log is closed."""

    code = "audit_unavailable"


class AuditLog:
    """The audit log adapter, an `AuditSink`.

    Invariant: records get gapless seqs in the order they are written (enqueue order within one
    process), and a checkpoint line reaches the file only after its records are committed.
    """

    def __init__(
        self,
        engine: Engine,
        signer: SigningKey,
        checkpoint_file: Path,
        clock: Clock,
        checkpoint_seconds: float = 1.0,
        batch_size: int = 1000,
        flush_interval: float = 0.05,
    ) -> None:
        if checkpoint_seconds <= 0 or batch_size < 1 or flush_interval <= 0:
            raise ValueError("checkpoint_seconds, batch_size and flush_interval must be positive")
        self._engine = engine
        self._signer = _Keyed(signer)
        self._file = Path(checkpoint_file)
        self._clock = clock
        self._every = timedelta(seconds=checkpoint_seconds)
        self._batch_size = batch_size
        self._interval = flush_interval
        self._postgres = engine.dialect.name == "postgresql"
        self._insert = _insert_sql(engine)
        self._cp_lock = threading.Lock()
        self._last_cp: datetime | None = None  # time of the last checkpoint known here
        self._dirty = False  # records written here since the last checkpoint
        self._idle_retry = 0.0  # monotonic time before which a failed idle checkpoint waits
        self._file_lock = threading.Lock()
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[_Queued] = deque()
        self._enqueued = 0
        self._settled = 0
        self._failures = 0
        self._failure: BaseException | None = None
        self._waiting = 0
        self._stopping = False
        self._abandoned = False
        self._thread: threading.Thread | None = None
        _OPEN.add(self)

    @property
    def public_key(self) -> bytes:
        """The public half of the signing key: what `verify` needs to trust the checkpoints."""
        return self._signer.public_key

    def append(self, uow: UnitOfWork, drafts: list[AuditDraft]) -> None:
        """Chain and insert `drafts` in the caller's open transaction, atomic with its writes.

        Raises InvalidInput for a draft with unsafe fields (nothing is inserted then). The chain
        stays locked until the caller's transaction ends: keep write transactions short.
        """
        if not drafts:
            return
        at = _format_at(self._clock.now())
        items = [(_check(draft, at), at) for draft in drafts]  # all checked before any write
        cp = self._write(uow.connection, items)
        if cp is not None:
            uow.after_commit(lambda: self._record(cp))
        if self._thread is None:
            self._start()

    def enqueue(self, draft: AuditDraft) -> None:
        """Queue `draft`, stamped now; it is written within about `flush_interval`.

        The fields are checked here, so a bad draft fails its caller with InvalidInput, never a
        batch. Raises AuditUnavailable once the log is closed.
        """
        at = _format_at(self._clock.now())
        draft = _check(draft, at)
        with self._cond:
            if self._stopping:
                raise _unavailable("审计日志已关闭", "the audit log is closed")
            self._queue.append((draft, at))
            self._enqueued += 1
            if len(self._queue) >= self._batch_size:
                self._cond.notify_all()
        if self._thread is None:
            self._start()

    def flush(self, timeout: float | None = None) -> None:
        """Block until every record enqueued before this call is committed.

        Raises AuditUnavailable when a write fails meanwhile (the records stay queued and are
        retried) or `timeout` seconds pass.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target, failures = self._enqueued, self._failures
            if self._settled >= target:
                return
            self._waiting += 1
            self._cond.notify_all()
            try:
                while self._settled < target:
                    if self._failures != failures:
                        raise _unavailable(
                            "审计记录写入失败，将重试", "writing audit records failed; retrying"
                        ) from self._failure
                    if self._thread is None or not self._thread.is_alive():
                        raise _unavailable("审计写入线程已停止", "the audit flusher has stopped")
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise _unavailable("等待审计写入超时", "timed out waiting for audit writes")
                    self._cond.wait(remaining)
            finally:
                self._waiting -= 1

    def verify(self, *, workers: int | None = None) -> VerifyReport:
        """Verify what is stored (not what is still queued) under this log's own public key."""
        return verify(self._engine, self._file, [self._signer.public_key], workers=workers)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, sign the head, stop the flusher. Idempotent.

        Gives up after `timeout` seconds (the database is down): what is still queued then is
        lost, and logged as an error, so that closing (and interpreter exit) never hangs.
        """
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
        _OPEN.discard(self)

    # --- writing ----------------------------------------------------------------------------

    def _write(self, conn: Connection, items: Sequence[_Queued]) -> Checkpoint | None:
        """Chain `items` (drafts that passed `_check`) after the stored head and insert them;
        sign the head when a checkpoint is due."""
        if self._postgres:
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})")
        builder = self._head(conn)
        link = builder.append_checked
        rows = [
            link(
                at, d.actor, d.action, d.purpose, d.subject, d.categories, d.effect, d.clauses,
                d.policy_version, d.detail,
            )
            for d, at in items
        ]  # fmt: skip
        self._insert_rows(conn, rows)
        now = self._clock.now()
        cp = None
        if self._due(now, conn):
            cp = self._sign(conn, builder.last_seq, builder.last_hash, now)
        self._dirty = cp is None
        return cp

    def _head(self, conn: Connection) -> ChainBuilder:
        """A builder positioned after the stored head, read under the chain's lock."""
        if self._insert is None:
            head = conn.execute(_HEAD).first()
        else:
            with closing(_cursor(conn)) as cur:
                cur.execute(_HEAD_SQL)
                head = cur.fetchone()
        return ChainBuilder(int(head[0]), str(head[1])) if head is not None else ChainBuilder()

    def _insert_rows(self, conn: Connection, rows: list[Row]) -> None:
        if self._insert is not None:
            # Multi-row VALUES: one statement step per chunk rather than per row, so the writer
            # gives up the GIL (to threads that enqueue) 75 times less often; the rest: executemany.
            chunk, single = self._insert
            whole = len(rows) - len(rows) % _CHUNK
            with closing(_cursor(conn)) as cur:
                for start in range(0, whole, _CHUNK):
                    cur.execute(chunk, tuple(chain.from_iterable(rows[start : start + _CHUNK])))
                if len(rows) - whole == 1:
                    cur.execute(single, rows[whole])
                elif whole < len(rows):
                    cur.executemany(single, rows[whole:])
        else:
            conn.execute(insert(AuditRecordRow), [dict(zip(COLUMNS, r, strict=True)) for r in rows])

    def _due(self, now: datetime, conn: Connection | None = None) -> bool:
        with self._cp_lock:
            last = self._last_cp
        if last is None and conn is not None:  # not known here yet: the newest stored one
            row = conn.execute(_LAST_CHECKPOINT).first()
            last = _parse_at(row[1]) if row is not None else None
            with self._cp_lock:
                self._last_cp = self._last_cp or last
        return last is None or not timedelta(0) <= now - last < self._every

    def _sign(self, conn: Connection, seq: int, head: str, now: datetime) -> Checkpoint:
        cp = make_checkpoint(self._signer, seq, head, format_at(now))
        conn.execute(
            insert(AuditCheckpointRow).values(
                seq=cp.seq, hash=cp.hash, at=cp.at, signature=cp.signature, key_id=cp.key_id
            )
        )
        with self._cp_lock:
            self._last_cp = now
        return cp

    def _record(self, cp: Checkpoint) -> None:
        """Append the checkpoint's line to the file (fsync'd); called after its commit."""
        try:
            with self._file_lock:
                append_checkpoint_line(self._file, cp, self._signer.public_key)
        except OSError:
            _logger.exception("audit checkpoint %d not written to %s", cp.seq, self._file)

    # --- the flusher ------------------------------------------------------------------------

    def _forked(self) -> None:
        """In a forked child: the parent's flusher and queue are not ours; start afresh."""
        self._cond, self._queue, self._thread = threading.Condition(threading.Lock()), deque(), None
        self._cp_lock, self._file_lock = threading.Lock(), threading.Lock()
        self._enqueued = self._settled = self._waiting = 0

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
            self._checkpoint_idle(final=stopping)
            if stopping:
                return

    def _write_batch(self, batch: list[_Queued]) -> bool:
        try:
            with self._engine.begin() as conn:
                cp = self._write(conn, batch)
        except Exception as exc:  # the batch stays first in line; flush() reports the failure
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
        if cp is not None:
            self._record(cp)
        return True

    def _checkpoint_idle(self, *, final: bool) -> None:
        """Sign the head when records written here are uncovered and a checkpoint is due."""
        now = self._clock.now()
        due = final or (self._due(now) and time.monotonic() >= self._idle_retry)
        if not (self._dirty and due):
            return
        self._dirty = False
        try:
            with self._engine.begin() as conn:
                if self._postgres:
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})")
                head = conn.execute(_HEAD).first()
                last = conn.execute(_LAST_CHECKPOINT).first()
                cp = None
                if head is not None and (last is None or last[0] < head[0]):
                    cp = self._sign(conn, head[0], head[1], now)
        except Exception:
            self._dirty = True
            self._idle_retry = time.monotonic() + self._every.total_seconds()
            _logger.exception("audit checkpoint not written")
            return
        if cp is not None:
            self._record(cp)


class _Keyed:
    """A `SigningKey` seen as a `checkpoint.Signer`, named by the id of its public key."""

    __slots__ = ("_key", "key_id", "public_key")

    def __init__(self, key: SigningKey) -> None:
        self._key = key
        self.public_key = key.public_bytes()
        self.key_id = key_id_of(self.public_key)

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)


def _format_at(moment: datetime) -> str:
    """The same text as `chain.format_at`, for every record: in UTC, the part up to the second
    is formatted once a second (`isoformat` would be a third of an enqueue)."""
    global _second  # one (key, text) pair, replaced whole: safe across threads
    if moment.tzinfo is not UTC:
        return format_at(moment)
    key = (moment.second, moment.minute, moment.hour, moment.day, moment.month, moment.year)
    last = _second
    if last[0] != key:
        last = _second = (key, moment.isoformat(timespec="seconds")[:-6])
    return f"{last[1]}.{moment.microsecond:06d}+00:00"


_second: tuple[tuple[int, ...], str] = ((), "")


def _check(draft: AuditDraft, at: str) -> AuditDraft:
    """The draft to chain, its category keys bounded (`chain.bounded_keys`: a caller's unknown
    key is recorded only in a short sanitised form); InvalidInput now for any other field the
    chain would refuse later.

    Drafts repeat but for their subject: once a draft's other fields passed, only the subject is
    checked again (the `at` is ours and always well formed). Only drafts that needed no bounding
    are remembered, so a remembered shape never skips it."""
    shape = (
        draft.actor, draft.action, draft.purpose, draft.categories, draft.effect, draft.clauses,
        draft.policy_version, draft.detail,
    )  # fmt: skip
    if shape in _checked_shapes:
        check_subject(draft.subject)
        return draft
    try:
        keys = bounded_keys(tuple(draft.categories))
    except TypeError:  # an unhashable key: the chain's check names the field
        keys = draft.categories
    bounded = keys != draft.categories
    if bounded:
        draft = replace(draft, categories=keys)
    _full_check(draft, at)
    if not bounded and len(_checked_shapes) < _SHAPES:
        _checked_shapes.add(shape)
    return draft


_SHAPES = 10_000
_checked_shapes: set[tuple[object, ...]] = set()


def _full_check(draft: AuditDraft, at: str) -> None:
    builder = getattr(_checker, "builder", None)
    if builder is None:
        builder = _checker.builder = ChainBuilder()  # one per thread: its head is never used
    builder.append(
        at=at, actor=draft.actor, action=draft.action, purpose=draft.purpose,
        subject=draft.subject, categories=draft.categories, effect=draft.effect,
        clauses=draft.clauses, policy_version=draft.policy_version, detail=draft.detail,
    )  # fmt: skip


def _cursor(conn: Connection) -> Any:
    """A cursor of the driver's connection under `conn`, inside its transaction. The chain's
    statements carry text and integers only: SQLAlchemy's per-statement work (type processing,
    result wrapping) would cost more than the SQL on this hot path."""
    if not conn.in_transaction():  # the driver must not run it in autocommit, outside the unit
        conn.begin()
    raw = conn.connection.dbapi_connection
    assert raw is not None  # noqa: S101 - a connection in a transaction has one
    return raw.cursor()


def _insert_sql(engine: Engine) -> tuple[str, str] | None:
    """INSERTs of `_CHUNK` rows and of one row in the driver's paramstyle (None: use Core)."""
    mark = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(engine.dialect.paramstyle)
    if mark is None:
        return None
    row = "(" + ", ".join([mark] * len(COLUMNS)) + ")"
    head = f"INSERT INTO audit_records ({', '.join(COLUMNS)}) VALUES "  # noqa: S608
    return head + ", ".join([row] * _CHUNK), head + row


def _parse_at(value: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo is not None else None


def _unavailable(zh: str, en: str) -> AuditUnavailable:
    return AuditUnavailable(LocalText(zh, en), reasons=("S2",))


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
