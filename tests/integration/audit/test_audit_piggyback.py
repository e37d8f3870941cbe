"""S2: reads' records waiting in the queue ride on a data write's commit (`AuditLog.append`).

A data transaction takes the waiting records, those of a batch a leader took but has not written
included, and chains them before its own, in ticket order. They are settled when it commits and
put back first in line when it does not: each written exactly once, the chain gapless.

Real databases (SQLite file, PostgreSQL when reachable), real threads; the data transaction holds
the chain's lock while readers queue behind it, as a slow write would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from piguard.audit.log import AuditLog
from piguard.audit.ports import AuditDraft
from piguard.audit.writer import lock_chain
from piguard.db.engine import READONLY
from piguard.db.uow import UnitOfWork
from piguard.kernel.clock import SystemClock
from piguard.vault.crypto import KeyMaterial

KEYS = KeyMaterial.generate()


def draft(i: int, action: str = "read") -> AuditDraft:
    return AuditDraft(
        "staff:ops", action, "risk_control", f"sub_{i:06x}", ("phone",), "allow", ("S2",),
        "alipay-2017@1", f"n{i}",
    )  # fmt: skip


def stored(engine: Engine) -> list[tuple[int, str, str]]:
    """(seq, action, detail) of every stored record in seq order, from a snapshot."""
    with engine.execution_options(**{READONLY: True}).connect() as conn:
        rows = conn.execute(text("SELECT seq, action, detail FROM audit_records ORDER BY seq"))
        return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]


def new_log(engine: Engine, cp_file: Path) -> AuditLog:
    # The flusher idles 5 s: what is written in these tests is written by a reader or a data commit.
    return AuditLog(
        engine, KEYS.signer, KEYS.chain_key, cp_file, SystemClock(), flush_interval=5.0,
        wait_seconds=30,
    )  # fmt: skip


def held_data_transaction(engine: Engine) -> UnitOfWork:
    """A data write's unit, open and holding the chain's lock (SQLite: its write lock)."""
    uow = UnitOfWork(engine).__enter__()
    uow.connection.execute(text("SELECT 1"))  # SQLite: BEGIN IMMEDIATE
    lock_chain(uow.connection)
    return uow


def queue_behind(log: AuditLog, engine: Engine) -> tuple[threading.Thread, list[bool]]:
    """Refusals n0..n4 queued, a reader n5 leading a batch that waits for the chain's lock, then
    n6..n9 queued: tickets 1..10. The reader's thread notes whether its record was stored when
    `record` returned."""
    for i in range(5):
        log.enqueue(draft(i, "refuse"))
    seen: list[bool] = []

    def read() -> None:
        log.record(draft(5))
        seen.append(any(detail == "n5" for _, _, detail in stored(engine)))

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.3)  # the reader took n0..n5 and waits for the lock
    for i in range(6, 10):
        log.enqueue(draft(i, "refuse"))
    return reader, seen


def audit_then_fail(log: AuditLog, uow: UnitOfWork) -> None:
    """The data write fails after its audit: the unit closes on the exception, as in `with`."""
    try:
        log.append(uow, [draft(99, "collect")])
        raise RuntimeError("the data write failed after its audit")
    finally:
        uow.__exit__(RuntimeError, None, None)


@pytest.fixture
def cp_file(tmp_path: Path) -> Path:
    return tmp_path / "audit-checkpoints.jsonl"


def test_s2_records_taken_by_a_data_commit_are_durable_when_the_reader_returns(
    migrated_engine: Engine, cp_file: Path
) -> None:
    log = new_log(migrated_engine, cp_file)
    try:
        uow = held_data_transaction(migrated_engine)
        try:
            reader, seen = queue_behind(log, migrated_engine)
            log.append(uow, [draft(99, "collect")])
            time.sleep(0.2)
            assert reader.is_alive()  # not settled before the data commit
            assert stored(migrated_engine) == []
            uow.commit()
        finally:
            uow.__exit__(None, None, None)
        reader.join(30)
        assert seen == [True]  # durable when the read returned
        rows = stored(migrated_engine)
        # Taken in ticket order, before the data transaction's own record; one commit for all.
        assert [detail for _, _, detail in rows] == [f"n{i}" for i in range(10)] + ["n99"]
        assert [seq for seq, _, _ in rows] == list(range(1, 12))
    finally:
        log.close()
    assert len(stored(migrated_engine)) == 11  # nothing was left queued to write again


@pytest.mark.parametrize("failure", ["rollback", "error"])
def test_s2_a_rolled_back_data_transaction_puts_taken_records_back_in_order(
    migrated_engine: Engine, cp_file: Path, failure: str
) -> None:
    log = new_log(migrated_engine, cp_file)
    try:
        uow = held_data_transaction(migrated_engine)
        reader, seen = queue_behind(log, migrated_engine)
        if failure == "rollback":
            log.append(uow, [draft(99, "collect")])
            uow.__exit__(None, None, None)  # closed without a commit: rolled back
        else:
            with pytest.raises(RuntimeError, match="failed after its audit"):
                audit_then_fail(log, uow)
        reader.join(30)
        assert seen == [True]  # the reader wrote the put-back records itself
        log.flush(timeout=30)
        rows = stored(migrated_engine)
        assert [detail for _, _, detail in rows] == [f"n{i}" for i in range(10)]  # once, in order
        assert [seq for seq, _, _ in rows] == list(range(1, 11))
        report = log.verify()
        assert report.ok, report.problems
    finally:
        log.close()
    assert len(stored(migrated_engine)) == 10


def test_s2_concurrent_readers_and_writers_give_a_gapless_chain_that_verifies(
    migrated_engine: Engine, cp_file: Path
) -> None:
    log = new_log(migrated_engine, cp_file)
    errors: list[BaseException] = []
    committed: list[int] = []

    def reader(k: int) -> None:
        for i in range(40):
            log.record(draft(k * 1000 + i))

    def writer(k: int) -> None:
        for i in range(40):
            n = 100_000 + k * 1000 + i
            with UnitOfWork(migrated_engine) as uow:
                log.append(uow, [draft(n, "collect")])
                if i % 4 == 3:
                    continue  # rolled back: what it took goes back in line
                uow.commit()
                committed.append(n)

    def run(work: Callable[[int], None], k: int) -> None:
        try:
            work(k)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(w, k)) for k in range(4) for w in (reader, writer)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert errors == []
        log.flush(timeout=30)
        rows = stored(migrated_engine)
        details = [detail for _, _, detail in rows]
        reads = {f"n{k * 1000 + i}" for k in range(4) for i in range(40)}
        assert sorted(details) == sorted(reads | {f"n{n}" for n in committed})  # each once
        assert [seq for seq, _, _ in rows] == list(range(1, len(rows) + 1))
        report = log.verify()
        assert report.ok, report.problems
    finally:
        log.close()
