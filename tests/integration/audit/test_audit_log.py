"""S2: every access is recorded in a tamper-evident log; verification names what was done to it.

Real databases (SQLite file, PostgreSQL when reachable) built by the migrations; tampering is done
with plain SQL, as an attacker with database access would.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from piguard.audit.chain import COLUMNS, ChainBuilder, format_at
from piguard.audit.checkpoints import read_checkpoint_file
from piguard.audit.log import (
    AuditLog,
    AuditUnavailable,
    signature_check,
    verify,
    verify_storage,
)
from piguard.audit.ports import AuditDraft
from piguard.audit.verify import VerifyReport
from piguard.audit.writer import format_now
from piguard.cli.audit import app
from piguard.db.engine import make_engine
from piguard.db.uow import UnitOfWork
from piguard.kernel.clock import FixedClock, SystemClock
from piguard.kernel.errors import InvalidInput
from piguard.vault.crypto import KeyMaterial

MASTER = base64.b64encode(os.urandom(32)).decode()  # the CLI derives the same keys from it
KEYS = KeyMaterial.from_master_key(MASTER)
SIGNER, KEY = KEYS.signer, KEYS.chain_key
PUBLIC = SIGNER.public_bytes()
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
N = 30  # records in a tampering scenario, each committed with its own checkpoint


def draft(i: int, actor: str = "staff:ops") -> AuditDraft:
    return AuditDraft(
        actor=actor,
        action="read",
        purpose="risk_control",
        subject=f"sub_{i:06x}",
        categories=("phone", "id_number")[: i % 3],
        effect="allow",
        clauses=("S2",),
        policy_version="alipay-2017@1",
        detail=f"n{i}",
    )


def problems(report: VerifyReport) -> list[tuple[str, int]]:
    return [(p.kind, p.seq) for p in report.problems]


def check(engine: Engine, cp_file: Path | None) -> VerifyReport:
    return verify(engine, cp_file, [PUBLIC], KEY, workers=1)


def sql(engine: Engine, *statements: str, **params: object) -> None:
    """Tamper as an attacker with database access would: plain SQL, committed."""
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement), params)


def details(engine: Engine) -> list[tuple[int, str]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT seq, detail FROM audit_records ORDER BY seq"))
        return [(seq, detail) for seq, detail in rows]


@pytest.fixture
def cp_file(tmp_path: Path) -> Path:
    return tmp_path / "audit-checkpoints.jsonl"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def log(migrated_engine: Engine, cp_file: Path, clock: FixedClock) -> Iterator[AuditLog]:
    audit = AuditLog(migrated_engine, SIGNER, KEY, cp_file, clock, flush_interval=0.01)
    yield audit
    audit.close()


@pytest.fixture
def written(migrated_engine: Engine, log: AuditLog, clock: FixedClock) -> Engine:
    """N records, one transaction each, a second apart: every record has its checkpoint."""
    for i in range(1, N + 1):
        with UnitOfWork(migrated_engine) as uow:
            log.append(uow, [draft(i)])
            uow.commit()
        clock.advance(timedelta(seconds=1))
    return migrated_engine


# --- one chain ---------------------------------------------------------------------------------


def test_s2_append_enqueue_and_flush_form_one_unbroken_chain(
    migrated_engine: Engine, log: AuditLog, cp_file: Path
) -> None:
    with UnitOfWork(migrated_engine) as uow:
        log.append(uow, [draft(1), draft(2)])
        uow.commit()
    for i in range(3, 503):
        log.enqueue(draft(i))
    with UnitOfWork(migrated_engine) as uow:
        log.flush()
        log.append(uow, [draft(503)])
        uow.commit()
    for i in range(504, 604):
        log.enqueue(draft(i))
    log.flush()

    rows = details(migrated_engine)
    assert [seq for seq, _ in rows] == list(range(1, 604))
    assert [detail for _, detail in rows] == [f"n{i}" for i in range(1, 604)]  # enqueue order
    report = check(migrated_engine, cp_file)
    assert report.ok, report.problems
    assert (report.records_checked, report.head_seq) == (603, 603)
    assert report.checkpoint_seq >= 2
    assert log.verify() == report


def test_s2_a_bad_draft_fails_its_caller_at_enqueue(log: AuditLog) -> None:
    with pytest.raises(InvalidInput):
        log.enqueue(AuditDraft("staff:ops", "read", "p", "s", (), "allow", ("S2",), "v1", "a b"))
    with pytest.raises(InvalidInput):
        log.enqueue(AuditDraft("staff:ops", "read", "p", 's"', (), "allow", ("S2",), "v1"))
    log.flush()


def test_s2_rolled_back_records_leave_no_checkpoint_in_the_file(
    migrated_engine: Engine, log: AuditLog, cp_file: Path, clock: FixedClock
) -> None:
    with UnitOfWork(migrated_engine) as uow:
        log.append(uow, [draft(1)])
        uow.commit()
    clock.advance(timedelta(seconds=5))
    with UnitOfWork(migrated_engine) as uow:
        log.append(uow, [draft(2), draft(3)])  # a checkpoint is due: signed for seq 3
        uow.connection.rollback()
    clock.advance(timedelta(seconds=5))
    with pytest.raises(InvalidInput), UnitOfWork(migrated_engine) as uow:
        # A bad draft fails the whole append, and its unit: nothing of it is written.
        log.append(
            uow, [draft(4), AuditDraft("staff:ops", "read", "p", "s", (), "allow", (), "v", "a b")]
        )
    with UnitOfWork(migrated_engine) as uow:
        log.append(uow, [draft(5)])  # leaving the unit without commit is a rollback too
    file_seqs = [cp.seq for cp in read_checkpoint_file(cp_file)[0]]
    assert file_seqs == [1]
    assert details(migrated_engine) == [(1, "n1")]

    clock.advance(timedelta(seconds=5))
    with UnitOfWork(migrated_engine) as uow:
        log.append(uow, [draft(6)])
        assert [cp.seq for cp in read_checkpoint_file(cp_file)[0]] == [1]  # not before commit
        uow.commit()
    assert [cp.seq for cp in read_checkpoint_file(cp_file)[0]] == [1, 2]
    assert check(migrated_engine, cp_file).ok


# --- checkpoints -------------------------------------------------------------------------------


def test_s2_a_checkpoint_every_second_under_load(
    migrated_engine: Engine, log: AuditLog, cp_file: Path, clock: FixedClock
) -> None:
    for i in range(40):  # 10 s of writes, one every 250 ms, mixing both ways in
        if i % 2:
            log.enqueue(draft(i))
            log.flush()
        else:
            with UnitOfWork(migrated_engine) as uow:
                log.append(uow, [draft(i)])
                uow.commit()
        clock.advance(timedelta(milliseconds=250))
    with migrated_engine.connect() as conn:
        ats = list(conn.execute(text("SELECT at FROM audit_checkpoints ORDER BY seq")).scalars())
    stamps = [datetime.fromisoformat(at) for at in ats]
    assert len(stamps) == 10
    assert {b - a for a, b in pairwise(stamps)} == {timedelta(seconds=1)}
    assert [cp.at for cp in read_checkpoint_file(cp_file)[0]] == ats


def test_s2_queued_records_alone_get_a_checkpoint_every_interval(
    migrated_engine: Engine, cp_file: Path, clock: FixedClock
) -> None:
    """The queue path on its own (no `append`): batches written by the flusher thread, several per
    step, sign the head whenever `checkpoint_seconds` of the clock have passed, and closing signs
    the rest. The clock moves only between steps; `flush()` is the barrier that makes every
    record of a step committed before it moves, so the stamps do not depend on the machine's
    speed. (How fast the flusher keeps up is measured by bench/vault.py.)"""
    audit = AuditLog(
        migrated_engine, SIGNER, KEY, cp_file, clock, checkpoint_seconds=0.25, batch_size=100
    )
    try:
        i = 0
        for _ in range(12):  # 1.5 s of the clock, in steps of 125 ms: 250 records a step
            for _ in range(250):
                audit.enqueue(draft(i))
                i += 1
            audit.flush()
            clock.advance(timedelta(milliseconds=125))
    finally:
        audit.close()
    cps = read_checkpoint_file(cp_file)[0]
    stamps = [datetime.fromisoformat(cp.at) for cp in cps]
    assert stamps == [T0 + timedelta(milliseconds=250 * k) for k in range(7)]
    assert [cp.seq for cp in cps] == sorted({cp.seq for cp in cps})
    assert cps[-1].seq == i == 3000
    assert check(migrated_engine, cp_file).checkpoint_seq == i


def test_s2_an_idle_log_signs_its_newest_records(
    migrated_engine: Engine, log: AuditLog, cp_file: Path, clock: FixedClock
) -> None:
    with UnitOfWork(migrated_engine) as uow:
        log.append(uow, [draft(1)])
        uow.commit()
    log.enqueue(draft(2))
    log.flush()  # not due yet: seq 2 is covered by the chain only
    assert [cp.seq for cp in read_checkpoint_file(cp_file)[0]] == [1]
    clock.advance(timedelta(seconds=2))
    deadline = time.monotonic() + 10
    while [cp.seq for cp in read_checkpoint_file(cp_file)[0]] != [1, 2]:
        assert time.monotonic() < deadline, "the flusher did not sign the idle head"
        time.sleep(0.01)


def test_s2_closing_signs_the_head(
    migrated_engine: Engine, cp_file: Path, clock: FixedClock
) -> None:
    audit = AuditLog(migrated_engine, SIGNER, KEY, cp_file, clock)
    for i in range(1, 4):
        audit.enqueue(draft(i))
    audit.flush()
    audit.close()
    audit.close()
    assert read_checkpoint_file(cp_file)[0][-1].seq == 3
    with pytest.raises(AuditUnavailable):
        audit.enqueue(draft(4))


def test_s2_flush_reports_a_database_that_refuses_writes(tmp_path: Path, cp_file: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'no-schema.db'}")  # never migrated
    audit = AuditLog(engine, SIGNER, KEY, cp_file, SystemClock(), flush_interval=0.01)
    try:
        audit.enqueue(draft(1))
        with pytest.raises(AuditUnavailable):
            audit.flush(timeout=10)
    finally:
        audit.close(timeout=0.2)
        engine.dispose()


# --- tampering ---------------------------------------------------------------------------------


def test_s2_verify_names_an_edited_record(written: Engine, cp_file: Path) -> None:
    sql(written, "UPDATE audit_records SET actor = 'staff:someone-else' WHERE seq = 10")
    assert problems(check(written, cp_file)) == [("edited", 10)]


def test_s2_verify_names_a_deleted_record(written: Engine, cp_file: Path) -> None:
    sql(written, "DELETE FROM audit_records WHERE seq = 10")
    assert problems(check(written, cp_file)) == [("deleted", 10)]


def test_s2_verify_names_a_forged_record(written: Engine, cp_file: Path) -> None:
    with written.connect() as conn:
        h5 = conn.execute(text("SELECT hash FROM audit_records WHERE seq = 5")).scalar_one()
    forged = ChainBuilder(KEY, N, h5).append(  # an insider's: keyed, but linked to record 5
        at=T0.isoformat(timespec="microseconds"), actor="staff:ops", action="read",
        purpose="risk_control", subject="sub_forged", categories=(), effect="allow",
        clauses=("S2",), policy_version="alipay-2017@1", detail="forged",
    )  # fmt: skip
    sql(
        written,
        "INSERT INTO audit_records (seq, at, actor, action, purpose, subject, categories, effect,"
        " clauses, policy_version, detail, prev_hash, hash) VALUES (:seq, :at, :actor, :action,"
        " :purpose, :subject, :categories, :effect, :clauses, :policy_version, :detail,"
        " :prev_hash, :hash)",
        **dict(zip(COLUMNS, forged.as_row(), strict=True)),
    )
    assert problems(check(written, cp_file)) == [("inserted", N + 1)]


def test_s2_verify_names_records_whose_seqs_were_swapped(written: Engine, cp_file: Path) -> None:
    sql(
        written,
        "UPDATE audit_records SET seq = -10 WHERE seq = 10",
        "UPDATE audit_records SET seq = 10 WHERE seq = 11",
        "UPDATE audit_records SET seq = 11 WHERE seq = -10",
    )
    found = problems(check(written, cp_file))
    assert found[0] == ("edited", 10)
    assert {seq for _, seq in found} <= {10, 11}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_s2_verify_names_records_moved_in_storage(written: Engine, cp_file: Path) -> None:
    """SQLite is read in rowid order: moving a record without touching its fields is seen."""
    with written.connect() as conn:
        rowid = text("SELECT rowid FROM audit_records WHERE seq = :seq")
        r10, r11 = (conn.execute(rowid, {"seq": seq}).scalar_one() for seq in (10, 11))
    sql(
        written,
        "UPDATE audit_records SET rowid = -1 WHERE rowid = :r10",
        "UPDATE audit_records SET rowid = :r10 WHERE rowid = :r11",
        "UPDATE audit_records SET rowid = :r11 WHERE rowid = -1",
        r10=r10,
        r11=r11,
    )
    assert problems(check(written, cp_file)) == [("reordered", 10)]


def test_s2_truncation_is_caught_by_the_checkpoint_file(written: Engine, cp_file: Path) -> None:
    sql(
        written,
        "DELETE FROM audit_records WHERE seq > :keep",
        "DELETE FROM audit_checkpoints WHERE seq > :keep",
        keep=N - 5,
    )
    assert check(written, None).ok  # the database alone is consistent again
    report = check(written, cp_file)
    assert problems(report) == [("truncated", N - 4)]
    assert report.head_seq == N - 5


def test_s2_a_tampered_checkpoint_row_is_named_and_the_file_trusted(
    written: Engine, cp_file: Path
) -> None:
    sql(
        written,
        "UPDATE audit_checkpoints SET hash = (SELECT a.hash FROM audit_records a WHERE a.seq = 1)"
        " WHERE seq = 7",
    )
    report = check(written, cp_file)
    assert problems(report) == [("checkpoint_mismatch", 7)]  # the copies disagree
    assert report.checkpoint_seq == N  # the chain is still held to the file's checkpoints
    assert problems(check(written, None)) == [("bad_signature", 7)]


def test_s2_malformed_checkpoint_lines_are_reported(written: Engine, cp_file: Path) -> None:
    lines = cp_file.read_text().splitlines()
    doc = json.loads(lines[3])
    doc["signature"] = base64.b64encode(b"\x00" * 64).decode()
    lines[3] = json.dumps(doc)
    lines[5] = lines[5][:20]
    cp_file.write_text("\n".join(lines) + "\n" + lines[6][:30])  # a torn last line is ignored
    assert problems(check(written, cp_file)) == [("bad_signature", 0), ("bad_signature", 4)]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "tamper",
    [
        [],
        ["UPDATE audit_records SET detail = 'x' WHERE seq = 3"],
        ["DELETE FROM audit_records WHERE seq = 12"],
        ["UPDATE audit_records SET rowid = 0 WHERE seq = 20"],
        ["DELETE FROM audit_records WHERE seq > 28"],  # N - 2
    ],
)
def test_s2_parallel_ranges_agree_with_one_pass(
    written: Engine, cp_file: Path, tamper: list[str]
) -> None:
    sql(written, *tamper)
    trusted = signature_check([PUBLIC])
    one = verify_storage(written, cp_file, trusted, KEY, workers=1)
    ranges = verify_storage(written, cp_file, trusted, KEY, workers=3, parallel_min=1)
    assert ranges.report == one.report
    assert ranges.parallel is (not tamper)
    assert one.report.ok is (not tamper)


# --- the CLI -----------------------------------------------------------------------------------


def _cli(url: str, cp_file: Path, lang: str = "en", witness: Path | None = None) -> tuple[int, str]:
    key = base64.b64encode(PUBLIC).decode()
    env = {"COLUMNS": "200", "PIGUARD_MASTER_KEY": MASTER, "PIGUARD_VAR_DIR": str(cp_file.parent)}
    if witness is not None:
        env["PIGUARD_AUDIT_WITNESS"] = str(witness)
    result = CliRunner().invoke(
        app,
        [
            *("verify", "--database-url", url, "--checkpoint-file", str(cp_file)),
            *("--public-key", key, "--lang", lang),
        ],
        env=env,
    )
    return result.exit_code, result.output


def test_s2_cli_verify_holds_the_checkpoint_file_to_the_witness(
    database_url: str, written: Engine, cp_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    witness = tmp_path_factory.mktemp("witness")  # outside var/
    (witness / "audit-checkpoints.jsonl").write_bytes(cp_file.read_bytes())
    code, out = _cli(database_url, cp_file, witness=witness)
    assert code == 0, out
    assert f"{N} · directory {witness}" in out
    lines = cp_file.read_bytes().splitlines(keepends=True)
    cp_file.write_bytes(b"".join(lines[:-2]))  # cut short: the witness holds more
    code, out = _cli(database_url, cp_file, witness=witness)
    assert code == 1
    assert re.search(rf"│ checkpoint_missing +│ +{N - 1} │", out), out
    code, out = _cli(database_url, cp_file, lang="zh", witness=witness)
    assert "检查点文件缺少" in out


def test_s2_cli_verify_passes_an_intact_log(
    database_url: str, written: Engine, cp_file: Path
) -> None:
    code, out = _cli(database_url, cp_file)
    assert code == 0, out
    assert "intact" in out
    assert f"{N:,}" in out


@pytest.mark.parametrize(
    ("statements", "kind", "seq", "zh"),
    [
        (["UPDATE audit_records SET purpose = 'marketing' WHERE seq = 10"], "edited", 10, "被修改"),
        (["DELETE FROM audit_records WHERE seq = 12"], "deleted", 12, "缺失"),
        (
            ["DELETE FROM audit_records WHERE seq > 27", "DELETE FROM audit_checkpoints"],
            "truncated",
            N - 2,
            "截断",
        ),
    ],
)
def test_s2_cli_verify_names_the_tampering_and_exits_1(
    database_url: str,
    written: Engine,
    cp_file: Path,
    statements: list[str],
    kind: str,
    seq: int,
    zh: str,
) -> None:
    sql(written, *statements)
    code, out = _cli(database_url, cp_file)
    assert code == 1
    assert re.search(rf"│ {kind} +│ +{seq} │", out), out
    code, out = _cli(database_url, cp_file, lang="zh")
    assert code == 1
    assert zh in out


# --- concurrency -------------------------------------------------------------------------------

_WRITER = """
import os, sys, time
from pathlib import Path
from piguard.audit.log import AuditLog
from piguard.audit.ports import AuditDraft
from piguard.db.engine import make_engine
from piguard.db.uow import UnitOfWork
from piguard.kernel.clock import SystemClock
from piguard.vault.crypto import KeyMaterial

url, cp_file, go, name, count = sys.argv[1:6]
engine = make_engine(url)
keys = KeyMaterial.from_master_key(os.environ["AUDIT_TEST_MASTER"])
log = AuditLog(engine, keys.signer, keys.chain_key, Path(cp_file), SystemClock(),
               checkpoint_seconds=0.05)
Path(go + "." + name).touch()  # ready
while not Path(go).exists():
    time.sleep(0.002)
def draft(i, way):
    return AuditDraft(f"staff:{name}", "read", "risk_control", f"sub_{i}", ("phone",), "allow",
                      ("S2",), "alipay-2017@1", f"{name}.{way}.{i}")
for start in range(0, int(count), 10):
    with UnitOfWork(engine) as uow:
        log.append(uow, [draft(i, "tx") for i in range(start, start + 5)])
        uow.commit()
    for i in range(start + 5, start + 10):
        log.enqueue(draft(i, "q"))
log.flush()
log.close()
engine.dispose()
"""


def test_s2_two_processes_append_one_gapless_chain(
    database_url: str, migrated_engine: Engine, cp_file: Path, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    env = {**os.environ, "AUDIT_TEST_MASTER": MASTER}
    writers = [
        subprocess.Popen(  # noqa: S603 (this interpreter, a fixed script)
            [sys.executable, "-c", _WRITER, database_url, str(cp_file), str(go), name, "2000"],
            env=env,
            stderr=subprocess.PIPE,
        )
        for name in ("a", "b")
    ]
    deadline = time.monotonic() + 120
    while not all(Path(f"{go}.{name}").exists() for name in ("a", "b")):
        assert time.monotonic() < deadline, "the writers did not start"
        time.sleep(0.01)
    go.touch()  # both ready: they start together
    for writer in writers:
        _, err = writer.communicate(timeout=300)
        assert writer.returncode == 0, err.decode()

    rows = details(migrated_engine)
    assert [seq for seq, _ in rows] == list(range(1, 4001))
    for name in ("a", "b"):
        for way in ("tx", "q"):
            mine = [int(d.rsplit(".", 1)[1]) for _, d in rows if d.startswith(f"{name}.{way}.")]
            assert len(mine) == 1000
            assert mine == sorted(mine)  # each process's order is kept
    report = check(migrated_engine, cp_file)
    assert report.ok, report.problems
    assert report.records_checked == 4000
    assert report.checkpoint_seq == 4000  # each writer signed its head on close


def test_s2_audit_rows_have_no_update_or_delete_path() -> None:
    verbs = ("update", "delete", "remove", "truncate", "erase", "purge")
    assert not [name for name in dir(AuditLog) if name.lstrip("_").startswith(verbs)]


def test_s2_cli_verify_exits_2_when_it_cannot_read_the_log(tmp_path: Path, cp_file: Path) -> None:
    code, out = _cli(f"sqlite:///{tmp_path / 'never-migrated.db'}", cp_file)
    assert code == 2
    assert "cannot read the audit log" in out


@given(st.datetimes(timezones=st.just(UTC)), st.integers(0, 999_999))
def test_s2_the_queue_stamps_records_exactly_as_format_at(moment: datetime, micro: int) -> None:
    later = moment.replace(microsecond=micro)  # the same second, again: the cached prefix
    assert format_now(moment) == format_at(moment)
    assert format_now(later) == format_at(later)
    assert format_now(moment.astimezone(timezone(timedelta(hours=8)))) == format_at(moment)
