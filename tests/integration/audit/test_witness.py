"""The audit witness (S2): checkpoint lines kept outside var/, by a folder or a witness service
that refuses every line which would rewrite or drop what it already witnessed."""

from __future__ import annotations

import base64
import json
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, text

from api.api_support import serve
from audit_support import OTHER_SIGNER as OTHER
from audit_support import SIGNER, Keyed
from audit_support import checkpoint_line as line
from piguard.audit.chain import GENESIS
from piguard.audit.checkpoint import Checkpoint, decode_line, encode_line, make_checkpoint
from piguard.audit.log import AuditLog
from piguard.audit.ports import AuditDraft
from piguard.audit.witness import DirectoryWitness, HttpWitness, WitnessUnavailable
from piguard.audit.witness_store import WitnessStore
from piguard.db.engine import make_engine
from piguard.db.migrate import upgrade
from piguard.kernel.clock import FixedClock
from piguard.vault.crypto import ChainKey
from piguard.web.witness import create_witness_app

CHAIN_KEY = ChainKey.generate()
TOKEN = "t" * 40
LOG = "payments-prod"


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    folder = tmp_path / "witness"
    with serve(create_witness_app(WitnessStore(folder), TOKEN)) as base:
        yield f"{base}/v1/logs/{LOG}/checkpoints", folder


def test_s2_checkpoint_lines_round_trip() -> None:
    cp = make_checkpoint(Keyed(SIGNER), 7, "b" * 64, "2026-11-29T10:00:00.000000+00:00")
    decoded, key = decode_line(encode_line(cp, SIGNER.public_bytes()))
    assert decoded == cp
    assert key == SIGNER.public_bytes()
    assert decoded.seq == 7
    assert decoded.hash != GENESIS


def test_s2_directory_witness_keeps_lines_in_a_private_file(tmp_path: Path) -> None:
    witness = DirectoryWitness(tmp_path / "w")
    assert witness.read() is None
    witness.publish(line(1))
    witness.publish(line(2))
    assert witness.read() == line(1) + line(2)
    kept = tmp_path / "w" / "audit-checkpoints.jsonl"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert stat.S_IMODE(kept.parent.stat().st_mode) == 0o700


def test_s2_directory_witness_that_cannot_write_says_so(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    witness = DirectoryWitness(blocker)  # a file where the folder should be
    with pytest.raises(WitnessUnavailable) as caught:
        witness.publish(line(1))
    assert "directory" in caught.value.message.en
    assert caught.value.message.zh


def test_s2_witness_service_keeps_what_it_was_given(service: tuple[str, Path]) -> None:
    url, folder = service
    with HttpWitness(url, TOKEN) as witness:
        assert witness.read() is None
        witness.publish(line(1))
        witness.publish(line(3))  # gaps are fine: a publisher may miss one
        witness.publish(line(3))  # a retry of the newest line is accepted, not doubled
        assert witness.read() == line(1) + line(3)
    assert stat.S_IMODE((folder / f"{LOG}.jsonl").stat().st_mode) == 0o600


def test_s2_witness_service_refuses_to_rewrite_or_drop_history(service: tuple[str, Path]) -> None:
    url, _ = service
    with HttpWitness(url, TOKEN) as witness:
        witness.publish(line(1))
        witness.publish(line(5))
        rewrites = [line(5, head="c" * 64), line(4), line(1), line(6, signer=OTHER)]
        for forged in rewrites:
            with pytest.raises(WitnessUnavailable) as caught:
                witness.publish(forged)
            assert "HTTP 409" in caught.value.message.en
        assert witness.read() == line(1) + line(5)


def test_s2_witness_remembers_its_tip_across_restarts(tmp_path: Path) -> None:
    folder = tmp_path / "witness"
    WitnessStore(folder).append(LOG, line(2))
    with (
        serve(create_witness_app(WitnessStore(folder), TOKEN)) as base,
        HttpWitness(f"{base}/v1/logs/{LOG}/checkpoints", TOKEN) as witness,
    ):
        with pytest.raises(WitnessUnavailable, match="409"):
            witness.publish(line(2, head="d" * 64))
        with pytest.raises(WitnessUnavailable, match="409"):
            witness.publish(line(3, signer=OTHER))
        witness.publish(line(3))
        assert witness.read() == line(2) + line(3)


def test_s2_witness_service_answers_only_its_token(service: tuple[str, Path]) -> None:
    url, _ = service
    for headers in ({}, {"Authorization": "Bearer " + "x" * 40}, {"Authorization": TOKEN}):
        for method in ("GET", "POST"):
            answer = httpx.request(
                method, url, headers={**headers, "Content-Type": "application/json"},
                content=line(1) if method == "POST" else None,
            )  # fmt: skip
            assert answer.status_code == 401, (method, headers)
            assert answer.json()["code"] == "unauthenticated"
    with HttpWitness(url, TOKEN) as witness:
        assert witness.read() is None  # nothing got in


def test_s2_witness_service_refuses_bad_lines_clearly(service: tuple[str, Path]) -> None:
    url, _ = service
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    doc = json.loads(line(1))
    bad_signature = {**doc, "signature": base64.b64encode(bytes(64)).decode()}
    cases = {
        b"not json": "line",
        json.dumps({**doc, "extra": 1}).encode(): "line",
        json.dumps({**doc, "seq": "1"}).encode(): "seq",
        json.dumps({**doc, "signature": "%%%"}).encode(): "signature",
        json.dumps(bad_signature).encode(): "signature",
    }
    for body, field in cases.items():
        answer = httpx.post(url, headers=auth, content=body)
        assert answer.status_code == 422, body
        assert answer.json()["field"] == field
        assert answer.json()["message"]["zh"]
    too_big = httpx.post(url, headers=auth, content=b" " * 5000)
    assert too_big.status_code == 413
    odd_log = httpx.post(url.replace(LOG, "Bad_Log"), headers=auth, content=line(1))
    assert odd_log.status_code == 422
    assert odd_log.json()["field"] == "log_id"
    with HttpWitness(url, TOKEN) as witness:
        assert witness.read() is None


def test_s2_unreachable_witness_is_reported_not_ignored(tmp_path: Path) -> None:
    with serve(create_witness_app(WitnessStore(tmp_path / "w"), TOKEN)) as base:
        url = f"{base}/v1/logs/{LOG}/checkpoints"
    with HttpWitness(url, TOKEN) as witness, pytest.raises(WitnessUnavailable) as caught:
        witness.publish(line(1))  # the server has stopped
    assert url in caught.value.message.en
    assert caught.value.message.zh
    assert TOKEN not in caught.value.message.en


def test_s2_a_checkpoint_line_cannot_smuggle_a_bad_checkpoint() -> None:
    doc = json.loads(line(1))
    with pytest.raises(Exception, match="seq"):
        decode_line(json.dumps({**doc, "seq": 0}).encode())
    assert isinstance(decode_line(line(1))[0], Checkpoint)


# --- the witness wired to the audit log (checkpointer publishes, verify compares) -------------


def _written_log(tmp_path: Path, witness: DirectoryWitness) -> tuple[AuditLog, Engine, Path]:
    engine = make_engine(f"sqlite:///{tmp_path / 'db' / 'piguard.db'}")
    upgrade(engine, "main")
    cp_file = tmp_path / "var" / "audit-checkpoints.jsonl"
    clock = FixedClock(datetime(2026, 11, 29, 10, 0, tzinfo=UTC))
    log = AuditLog(engine, SIGNER, CHAIN_KEY, cp_file, clock, witness=witness)
    for i in range(1, 6):
        log.record(
            AuditDraft("staff:ops", "read", "p", f"sub_{i}", (), "allow", ("S2",), "v1", "ok")
        )
        clock.advance(timedelta(seconds=2))
        log.flush()
    return log, engine, cp_file


def _kinds(log: AuditLog) -> list[tuple[str, int]]:
    return [(p.kind, p.seq) for p in log.verify(workers=1).problems]


def test_s2_the_checkpointer_publishes_every_line_to_the_witness_after_the_file(
    tmp_path: Path,
) -> None:
    witness = DirectoryWitness(tmp_path / "witness")
    log, engine, cp_file = _written_log(tmp_path, witness)
    try:
        assert witness.read() == cp_file.read_bytes()
        assert [decode_line(x)[0].seq for x in cp_file.read_bytes().splitlines()] == [1, 2, 3, 4, 5]
        report = log.verify(workers=1)
        assert report.ok, report.problems
        assert report.checkpoint_seq == 5
    finally:
        log.close()
        engine.dispose()


def test_s2_verify_fails_when_the_local_checkpoint_file_is_removed_cut_or_rewritten(
    tmp_path: Path,
) -> None:
    witness = DirectoryWitness(tmp_path / "witness")
    log, engine, cp_file = _written_log(tmp_path, witness)
    try:
        kept = cp_file.read_bytes()
        lines = kept.splitlines(keepends=True)
        cp_file.unlink()  # removed, while the database holds checkpoints
        assert ("checkpoint_missing", 5) in _kinds(log)
        cp_file.write_bytes(b"".join(lines[:3]))  # shorter than the witnessed sequence
        assert _kinds(log) == [("checkpoint_missing", 4)]
        cp_file.write_bytes(b"".join(lines[:4]) + line(5, head="c" * 64))  # a rewritten line
        assert ("checkpoint_mismatch", 5) in _kinds(log)
        cp_file.write_bytes(kept)
        assert _kinds(log) == []
    finally:
        log.close()
        engine.dispose()


def test_s2_verify_holds_the_log_to_the_witness_when_var_is_rewritten(tmp_path: Path) -> None:
    """Whoever holds var/ truncates the log and removes its checkpoints everywhere in var/: the
    witness's copy still shows it."""
    witness = DirectoryWitness(tmp_path / "witness")
    log, engine, cp_file = _written_log(tmp_path, witness)
    try:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM audit_records WHERE seq > 3"))
            conn.execute(text("DELETE FROM audit_checkpoints WHERE seq > 3"))
        cp_file.write_bytes(b"".join(cp_file.read_bytes().splitlines(keepends=True)[:3]))
        found = _kinds(log)
        assert ("truncated", 4) in found
        assert ("checkpoint_missing", 4) in found
    finally:
        log.close()
        engine.dispose()


def test_s2_a_witness_that_cannot_be_read_is_no_verdict(tmp_path: Path) -> None:
    log, engine, _ = _written_log(tmp_path, DirectoryWitness(tmp_path / "witness"))
    try:
        kept = tmp_path / "witness" / "audit-checkpoints.jsonl"
        kept.unlink()
        kept.mkdir()  # unreadable as a file: the witness's copy cannot be had
        with pytest.raises(WitnessUnavailable):
            log.verify(workers=1)
    finally:
        log.close()
        engine.dispose()
