"""Sealing the chain: signed checkpoints, only over records that verify under the chain key.

When `checkpoint_seconds` have passed since the last checkpoint, the head is sealed: every record
after the last valid seal is read back and verified (keyed links, time order) first, so a record
forged with plain SQL is never signed; it is logged (kinds and seqs only) and the seal withheld.
The checkpoint is stored in `audit_checkpoints` under the chain's lock, then published outside the
database once that transaction has committed (`_publish`): to the local checkpoint file, then to
the witness outside var/ when there is one, so neither names a record that was rolled back, and
every witnessed line is in the file.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final, Protocol

from sqlalchemy import Connection, Engine, insert

from piguard.audit.chain import COLUMNS, LinkKey, Row, format_at
from piguard.audit.checkpoint import Checkpoint, SignatureCheck, encode_line, make_checkpoint
from piguard.audit.tables import AuditCheckpointRow
from piguard.audit.verify import ORIGIN, Start, verify_chain
from piguard.audit.witness import Witness, WitnessUnavailable
from piguard.audit.writer import lock_chain
from piguard.db.engine import READONLY
from piguard.files import append_durably
from piguard.kernel.clock import Clock

_logger = logging.getLogger(__name__)
_CHECKPOINTS_FROM: Final = (
    "SELECT seq, hash, at, signature, key_id FROM audit_checkpoints WHERE seq > {mark} "
    "ORDER BY seq DESC"
)
_RECORD_AT: Final = "SELECT hash, at FROM audit_records WHERE seq = {mark}"
_RECORDS_AFTER: Final = (
    f"SELECT {', '.join(COLUMNS)} FROM audit_records WHERE seq > {{mark}} ORDER BY seq"  # noqa: S608
)
_REPEAT: Final = 60.0
_NEWEST_AT: Final = "SELECT at FROM audit_checkpoints ORDER BY seq DESC LIMIT 1"


class SigningKey(Protocol):
    """What checkpoints are signed with: `vault.crypto.CheckpointSigner` (Ed25519)."""

    def sign(self, data: bytes) -> bytes: ...

    def public_bytes(self) -> bytes: ...


def key_id_of(public_key: bytes) -> str:
    """The id a checkpoint names its key by: the first 16 hex digits of SHA-256(public key)."""
    return hashlib.sha256(public_key).hexdigest()[:16]


class Checkpointer:
    """Signs the chain head at most every `every`, over verified records only.

    Invariant: a checkpoint is signed only for a head whose records since the last valid seal
    all verify under the chain key; its line is published only after its row committed.
    """

    def __init__(
        self,
        engine: Engine,
        signer: SigningKey,
        key: LinkKey,
        check: SignatureCheck,
        checkpoint_file: Path,
        clock: Clock,
        every: timedelta,
        witness: Witness | None = None,
    ) -> None:
        self._engine = engine
        # Reading back is a snapshot: on SQLite it must not take the write lock from writers.
        self._reader = engine.execution_options(**{READONLY: True})
        self._signer = _Keyed(signer)
        self._key = key
        self._check = check
        self._file = Path(checkpoint_file)
        self._witness = witness
        self._clock = clock
        self._every = every
        self._mark = "%s" if engine.dialect.paramstyle in ("format", "pyformat") else "?"
        self._busy = threading.Lock()
        self._file_lock = threading.Lock()
        self._last_at: datetime | None = None  # time of the newest checkpoint known here
        self._sealed: Start = ORIGIN  # the newest seal verified here
        self._dirty = False  # records written here since the last seal
        self._retry = 0.0  # monotonic time before which a failed seal is not tried again
        self._last_alarm = ("", 0.0)  # what was last logged as withholding a seal, and when

    @property
    def public_key(self) -> bytes:
        return self._signer.public_key

    def written(self) -> None:
        """Records were committed here: the next due seal covers them."""
        self._dirty = True

    def seal_if_due(self, *, final: bool = False) -> None:
        """Seal the head when records written here are unsealed and a checkpoint is due (always
        when `final`). Never raises: a failure is logged and retried after an interval."""
        if not self._dirty:
            return
        if not self._busy.acquire(blocking=final):
            return  # another thread is sealing now
        try:
            now = self._clock.now()
            if not final and (time.monotonic() < self._retry or not self._due(now)):
                return
            self._dirty = False
            try:
                cp = self._seal(now)
            except Exception:
                self._dirty = True
                self._retry = time.monotonic() + self._every.total_seconds()
                _logger.exception("audit checkpoint not written")
                return
            if cp is not None:
                self._publish(cp)
        finally:
            self._busy.release()

    def forked(self) -> None:
        """In a forked child: the parent's locks may be held by threads that do not exist here."""
        self._busy, self._file_lock = threading.Lock(), threading.Lock()

    def _due(self, now: datetime) -> bool:
        last = self._last_at
        if last is None:  # not known here yet: the newest stored one
            with self._reader.connect() as conn:
                stored = conn.exec_driver_sql(_NEWEST_AT).scalar()
            last = self._last_at = _parse_at(stored)
        return last is None or not timedelta(0) <= now - last < self._every

    def _seal(self, now: datetime) -> Checkpoint | None:
        with self._reader.connect() as conn:
            base = self._base(conn)
            if base is None:
                return None
            last = _Last()
            rows = conn.exec_driver_sql(_RECORDS_AFTER.format(mark=self._mark), (base[0],))
            report = verify_chain(last.track(rows), (), self._check, self._key, start=base)
        if not report.ok:
            found = "; ".join(f"{p.kind} at seq {p.seq}" for p in report.problems[:5])
            self._alarm(f"records after seq {base[0]} do not verify ({found})")
            self._dirty = True
            self._retry = time.monotonic() + self._every.total_seconds()
            return None
        if report.head_seq <= base[0]:
            return None
        with self._engine.begin() as conn:
            lock_chain(conn)
            if self._newest_valid(conn, report.head_seq - 1) is not None:
                return None  # another process sealed this head, or a later one
            cp = make_checkpoint(self._signer, report.head_seq, report.head_hash, format_at(now))
            conn.execute(
                insert(AuditCheckpointRow).values(
                    seq=cp.seq, hash=cp.hash, at=cp.at, signature=cp.signature, key_id=cp.key_id
                )
            )
        self._sealed, self._last_at = (cp.seq, cp.hash, last.at), now
        return cp

    def _base(self, conn: Connection) -> Start | None:
        """The newest seal to verify from: this process's, or a later valid one in the database
        whose record is still there; None when the log disagrees with a valid checkpoint."""
        found = self._newest_valid(conn, self._sealed[0])
        if found is None:
            return self._sealed
        seq, h = found
        record = conn.exec_driver_sql(_RECORD_AT.format(mark=self._mark), (seq,)).first()
        if record is None or record[0] != h:
            self._alarm(f"the log disagrees with seal {seq}")
            return None
        return seq, h, str(record[1])

    def _alarm(self, why: str) -> None:
        """Log why sealing stopped (seqs and kinds only): at once for a new finding, then once
        every `_REPEAT` seconds while it lasts, rather than at every interval."""
        now = time.monotonic()
        if why != self._last_alarm[0] or now - self._last_alarm[1] >= _REPEAT:
            _logger.error("audit checkpoint withheld: %s", why)
            self._last_alarm = (why, now)

    def _newest_valid(self, conn: Connection, after: int) -> tuple[int, str] | None:
        """(seq, hash) of the newest checkpoint after seq `after` signed with a trusted key."""
        rows = conn.exec_driver_sql(_CHECKPOINTS_FROM.format(mark=self._mark), (after,))
        for seq, h, at, signature, key_id in rows:
            try:
                cp = Checkpoint(seq, h, at, bytes(signature), key_id)
            except Exception:  # noqa: S112 - a malformed row is no seal; verify reports it
                continue
            if self._check(cp.payload(), cp.signature):
                return seq, h
        return None

    def _publish(self, cp: Checkpoint) -> None:
        """After commit: the checkpoint's line to the local file (fsync'd), then the witness.
        A copy that cannot be written is logged; verification reports what it then lacks."""
        line = encode_line(cp, self._signer.public_key)
        try:
            with self._file_lock:
                append_durably(self._file, line)
        except OSError:
            _logger.exception("audit checkpoint %d not written to %s", cp.seq, self._file)
            return  # never witnessed unless in the file: verify holds the file to the witness
        if self._witness is None:
            return
        try:
            self._witness.publish(line)
        except WitnessUnavailable as exc:
            _logger.error("audit checkpoint %d not witnessed: %s", cp.seq, exc.message.en)


class _Last:
    """Remembers the `at` of the last row streamed to the verifier."""

    at = ""

    def track(self, rows: Any) -> Iterator[Row]:
        for row in rows:
            self.at = row[1]
            yield row


class _Keyed:
    """A `SigningKey` seen as a `checkpoint.Signer`, named by the id of its public key."""

    __slots__ = ("_key", "key_id", "public_key")

    def __init__(self, key: SigningKey) -> None:
        self._key = key
        self.public_key = key.public_bytes()
        self.key_id = key_id_of(self.public_key)

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)


def _parse_at(value: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo is not None else None
