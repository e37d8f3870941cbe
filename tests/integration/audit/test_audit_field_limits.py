"""S2: the longest record the chain accepts is stored by every database, and still verifies.

A chain that accepted more than a column holds would fail at insert on PostgreSQL (SQLite does not
check widths): a queued batch would then be retried for ever, and every record behind it lost.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, text

from piguard.audit.chain import LIMITS, MAX_KEY_CHARS, MAX_KEYS
from piguard.audit.log import AuditLog, verify
from piguard.audit.ports import AuditDraft
from piguard.kernel.clock import FixedClock
from piguard.vault.crypto import ChainKey, CheckpointSigner

SIGNER = CheckpointSigner.generate()
KEY = ChainKey.generate()


def test_s2_records_at_every_field_limit_are_stored_and_verify(
    migrated_engine: Engine, tmp_path: Path
) -> None:
    cp_file = tmp_path / "checkpoints.jsonl"
    clock = FixedClock(datetime(2024, 5, 1, tzinfo=UTC))
    log = AuditLog(migrated_engine, SIGNER, KEY, cp_file, clock)
    widest = AuditDraft(
        actor="a" * LIMITS["actor"],
        action="b" * LIMITS["action"],
        purpose="c" * LIMITS["purpose"],
        subject="d" * LIMITS["subject"],
        categories=tuple(f"{i:04d}" + "e" * (MAX_KEY_CHARS - 4) for i in range(MAX_KEYS)),
        effect="deny",
        clauses=("S" + "2" * 98,) * 4,
        policy_version="f" * LIMITS["policy_version"],
        detail="g" * LIMITS["detail"],
    )
    try:
        log.enqueue(widest)
        log.enqueue(AuditDraft("h", "read", "p", "s", ("k" * 500,), "deny", ("S2",), "v"))
        log.flush(timeout=30)
    finally:
        log.close()

    report = verify(migrated_engine, cp_file, [SIGNER.public_bytes()], KEY, workers=1)
    assert report.ok, report.problems
    assert report.records_checked == 2
    with migrated_engine.connect() as conn:
        stored = conn.execute(text("SELECT categories FROM audit_records ORDER BY seq")).scalars()
        first, second = list(stored)
    assert first.split(",") == list(widest.categories)
    assert second == "k" * (MAX_KEY_CHARS - 1) + "~"  # bounded by the log, not refused
