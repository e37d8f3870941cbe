"""S2: no read goes on before its audit record is durable; a writer with database access alone
cannot get a record sealed; seq order and time order agree.

Real databases (SQLite file, PostgreSQL when reachable); the write lock is held by a second
connection, and forgeries are made with plain SQL, as an attacker with database access would.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, text

from piguard.audit.chain import COLUMNS, encode
from piguard.audit.checkpoints import read_checkpoint_file
from piguard.audit.log import AuditLog, AuditUnavailable
from piguard.audit.ports import AuditDraft
from piguard.db.engine import READONLY, make_engine
from piguard.db.uow import UnitOfWork
from piguard.kernel.clock import Clock, FixedClock, SystemClock
from piguard.vault.crypto import ChainKey, KeyMaterial

KEYS = KeyMaterial.generate()
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def draft(i: int, effect: str = "allow") -> AuditDraft:
    return AuditDraft(
        "staff:ops", "read", "risk_control", f"sub_{i:06x}", ("phone",), effect, ("S2",),
        "alipay-2017@1", f"n{i}",
    )  # fmt: skip


def count(engine: Engine, where: str = "") -> int:
    """Records stored, read from a snapshot (no write lock: one may be held)."""
    with engine.execution_options(**{READONLY: True}).connect() as conn:
        query = f"SELECT COUNT(*) FROM audit_records {where}"  # noqa: S608 - the tests' own
        return int(conn.execute(text(query)).scalar_one())


def new_log(
    engine: Engine, cp_file: Path, clock: Clock | None = None, **options: float
) -> AuditLog:
    options = {"flush_interval": 0.01, **options}
    return AuditLog(
        engine, KEYS.signer, KEYS.chain_key, cp_file, clock or SystemClock(),
        **options,  # type: ignore[arg-type]
    )  # fmt: skip


@contextmanager
def write_locked(database_url: str) -> Iterator[None]:
    """Another connection holds the write lock on the audit records until the block ends:
    `BEGIN IMMEDIATE` on SQLite, an EXCLUSIVE table lock on PostgreSQL."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            conn.begin()
            if engine.dialect.name == "postgresql":
                conn.execute(text("LOCK TABLE audit_records IN EXCLUSIVE MODE"))
            else:
                conn.execute(text("SELECT 1"))  # the transaction began with BEGIN IMMEDIATE
            yield
            conn.rollback()
    finally:
        engine.dispose()


@pytest.fixture
def cp_file(tmp_path: Path) -> Path:
    return tmp_path / "audit-checkpoints.jsonl"


# --- item 1: durable before the read goes on ---------------------------------------------------


def test_s2_a_read_returns_only_once_its_record_is_committed(
    migrated_engine: Engine, cp_file: Path
) -> None:
    log = new_log(migrated_engine, cp_file, flush_interval=5.0)  # the flusher would idle 5 s
    try:
        started = time.monotonic()
        log.record(draft(1))
        assert count(migrated_engine) == 1  # another connection sees it: committed
        assert time.monotonic() - started < 2.5  # written at once for the waiter
    finally:
        log.close()


def test_s2_a_lone_reader_commits_its_record_itself(migrated_engine: Engine, cp_file: Path) -> None:
    """No batch in flight: the waiting reader writes (leads) the commit, no hand-off to the
    flusher thread; the checkpointer's after-batch step stays off its path."""
    committers: list[str] = []
    event.listen(
        migrated_engine, "commit", lambda _conn: committers.append(threading.current_thread().name)
    )
    log = new_log(migrated_engine, cp_file, flush_interval=5.0, checkpoint_seconds=0.001)
    try:
        for i in range(3):
            committers.clear()
            log.record(draft(i))
            assert committers == [threading.current_thread().name]  # its commit, and no seal
        log.flush(timeout=30)
        assert "piguard-audit-flusher" in committers  # the seal: on the flusher
    finally:
        log.close()


def test_s2_readers_waiting_together_share_a_commit(
    database_url: str, migrated_engine: Engine, cp_file: Path
) -> None:
    commits: list[int] = []
    event.listen(migrated_engine, "commit", lambda _conn: commits.append(1))
    log = new_log(migrated_engine, cp_file, wait_seconds=30)
    errors: list[BaseException] = []

    def read(i: int) -> None:
        try:
            log.record(draft(i))
        except BaseException as exc:  # reported below
            errors.append(exc)

    try:
        with write_locked(database_url):
            readers = [threading.Thread(target=read, args=(i,)) for i in range(40)]
            for reader in readers:
                reader.start()
            time.sleep(0.3)  # every reader is waiting on the locked log
            assert count(migrated_engine) == 0
        for reader in readers:
            reader.join(30)
        assert errors == []
        assert count(migrated_engine) == 40
        assert len(commits) <= 3  # the batch in flight when the lock went, then one for the rest
    finally:
        log.close()


def test_s2_reads_fail_closed_while_the_log_cannot_be_written(
    database_url: str, migrated_engine: Engine, cp_file: Path
) -> None:
    log = new_log(migrated_engine, cp_file, wait_seconds=0.3)
    try:
        with write_locked(database_url):
            started = time.monotonic()
            with pytest.raises(AuditUnavailable) as caught:
                log.record(draft(1))
            assert 0.25 <= time.monotonic() - started < 5
            assert caught.value.retry_after == 1
            assert caught.value.message.zh
            assert "timed out" in caught.value.message.en
        log.flush(timeout=30)  # the record stayed queued: written once the lock is gone
        assert count(migrated_engine) == 1
    finally:
        log.close()


def test_s2_the_queue_is_bounded(database_url: str, migrated_engine: Engine, cp_file: Path) -> None:
    # The flusher never takes a batch meanwhile (none is full, its tick is long): a batch out of
    # the queue, blocked on the lock, would leave room for one more and make this a race.
    log = new_log(migrated_engine, cp_file, max_pending=5, batch_size=100, flush_interval=60)
    try:
        with write_locked(database_url):
            accepted = 0
            with pytest.raises(AuditUnavailable, match="full"):  # noqa: PT012 - the loop is the act
                while accepted < 100:
                    log.enqueue(draft(accepted, "deny"))
                    accepted += 1
            assert accepted < 10
            with pytest.raises(AuditUnavailable, match="full"):
                log.record(draft(999))
    finally:
        log.close()
    assert count(migrated_engine) == accepted  # what was accepted is written on close, no more


def test_s2_no_refusal_is_lost_on_a_clean_shutdown(migrated_engine: Engine, cp_file: Path) -> None:
    log = new_log(migrated_engine, cp_file, flush_interval=5.0)
    for i in range(3000):
        log.enqueue(draft(i, "deny"))
    log.close()  # at once: nothing was flushed before
    assert count(migrated_engine, "WHERE effect = 'deny'") == 3000
    assert read_checkpoint_file(cp_file)[0][-1].seq == 3000  # and sealed
    with pytest.raises(AuditUnavailable):
        log.enqueue(draft(3001, "deny"))


# --- item 2: a forger without the chain key ----------------------------------------------------


def _forge(engine: Engine, key: ChainKey | None) -> int:
    """Append a record linked to the head with plain SQL, its hash computed under `key` (a
    guess) or as the old unkeyed SHA-256 (None); its seq."""
    with engine.connect() as conn:
        seq, head, at = conn.execute(
            text("SELECT seq, hash, at FROM audit_records ORDER BY seq DESC LIMIT 1")
        ).one()
    row = (
        seq + 1, at, "staff:forger", "read", "risk_control", "sub_forged", "phone", "allow",
        "S2", "alipay-2017@1", "forged", head,
    )  # fmt: skip
    canonical = encode(*row)
    digest = key.mac(canonical) if key else hashlib.sha256(head.encode() + canonical).hexdigest()
    names = ", ".join(COLUMNS)
    marks = ", ".join(f":{name}" for name in COLUMNS)
    with engine.begin() as conn:
        conn.execute(
            text(f"INSERT INTO audit_records ({names}) VALUES ({marks})"),  # noqa: S608
            dict(zip(COLUMNS, (*row, digest), strict=True)),
        )
    return int(seq) + 1


@pytest.mark.parametrize("guess", [ChainKey.generate(), None], ids=["guessed-key", "unkeyed"])
def test_s2_a_record_forged_with_plain_sql_is_never_sealed(
    migrated_engine: Engine, cp_file: Path, guess: ChainKey | None, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FixedClock(T0)
    log = new_log(migrated_engine, cp_file, clock)
    try:
        for i in range(1, 6):
            log.record(draft(i))
            clock.advance(timedelta(seconds=1))
        log.flush()
        forged = _forge(migrated_engine, guess)
        with caplog.at_level(logging.ERROR, logger="piguard.audit"):
            for i in range(10, 16):  # later records, both ways in, each with a checkpoint due
                clock.advance(timedelta(seconds=2))
                with UnitOfWork(migrated_engine) as uow:
                    log.append(uow, [draft(i)])
                    uow.commit()
                log.record(draft(i + 100))
                log.flush()
        assert count(migrated_engine) == forged + 12  # the log still writes: reads go on
        report = log.verify()
    finally:
        log.close()
    sealed = [cp.seq for cp in read_checkpoint_file(cp_file)[0]]
    assert sealed
    assert max(sealed) < forged  # no checkpoint covers the forged record
    with migrated_engine.connect() as conn:
        stored = conn.execute(text("SELECT max(seq) FROM audit_checkpoints")).scalar_one()
    assert stored < forged
    assert not report.ok
    assert (report.problems[0].kind, report.problems[0].seq) == ("edited", forged)
    assert report.checkpoint_seq < forged
    assert report.unsealed == report.head_seq - report.checkpoint_seq >= 13
    withheld = [r.getMessage() for r in caplog.records if "withheld" in r.getMessage()]
    assert len(withheld) == 1  # said once, not at every due checkpoint
    assert f"edited at seq {forged}" in withheld[0]
    assert not any("forger" in m or "sub_" in m for m in withheld)  # seqs and kinds only


# --- item 4: seq order and time order agree ----------------------------------------------------


class SteppingBack:
    """A clock behind the other writer's, stepping back a millisecond at every reading."""

    def __init__(self, start: datetime) -> None:
        self._at = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            self._at -= timedelta(milliseconds=1)
            return self._at


def test_s2_times_follow_seqs_across_writers_even_when_a_clock_goes_back(
    migrated_engine: Engine, cp_file: Path
) -> None:
    ahead = new_log(migrated_engine, cp_file)
    behind = new_log(migrated_engine, cp_file, SteppingBack(datetime.now(UTC)))

    def write(log: AuditLog, base: int) -> None:
        for i in range(base, base + 60):
            if i % 2:
                log.record(draft(i))
            else:
                with UnitOfWork(migrated_engine) as uow:
                    log.append(uow, [draft(i)])
                    uow.commit()

    threads = [
        threading.Thread(target=write, args=(log, base))
        for log, base in ((ahead, 0), (behind, 1000))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    ahead.close()
    behind.close()
    with migrated_engine.connect() as conn:
        ats = list(conn.execute(text("SELECT at FROM audit_records ORDER BY seq")).scalars())
    assert len(ats) == 120
    assert all(a <= b for a, b in pairwise(ats))
    report = ahead.verify(workers=1)
    assert report.ok, report.problems
    assert report.unsealed == 0


def test_s2_a_backdated_record_is_named_by_the_verifier(
    migrated_engine: Engine, cp_file: Path
) -> None:
    log = new_log(migrated_engine, cp_file, FixedClock(T0))
    try:
        for i in range(1, 4):
            log.record(draft(i))
    finally:
        log.close()
    with migrated_engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM audit_records ORDER BY seq")).all()
    # An insider holding the chain key rewrites record 3 a second earlier, links and all.
    values = dict(zip(COLUMNS, rows[2], strict=True))
    values["at"] = "2024-05-01T11:59:59.000000+00:00"
    values["hash"] = KEYS.chain_key.mac(encode(*(values[c] for c in COLUMNS[:-1])))
    with migrated_engine.begin() as conn:
        conn.execute(text("UPDATE audit_records SET at = :at, hash = :hash WHERE seq = 3"), values)
        conn.execute(text("DELETE FROM audit_checkpoints"))
    cp_file.unlink()
    report = log.verify(workers=1)
    assert [(p.kind, p.seq) for p in report.problems] == [("backdated", 3)]
