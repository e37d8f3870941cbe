"""S2, the insider with everything: whoever holds var/ (database, checkpoint file) and every key
(chain and signing keys, from the key file) can rewrite the log and re-sign it so that it
verifies. A witness outside var/ is what stops that: history before the last witnessed
checkpoint can no longer be rewritten unnoticed."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from piguard.audit.chain import COLUMNS, encode
from piguard.audit.checkpoint import encode_line, make_checkpoint
from piguard.audit.log import key_id_of
from piguard.bootstrap import Piguard, build, load_keys
from piguard.policy.decision import Actor
from piguard.policy.model import ActorKind
from piguard.population import people
from piguard.settings import Settings
from piguard.vault.crypto import CheckpointSigner

ACCOUNT = Actor(ActorKind.SERVICE, "account_service", principal="test")
PHONE = "user.contact.phone_number"
_ALL_RECORDS = f"SELECT {', '.join(COLUMNS)} FROM audit_records ORDER BY seq"  # noqa: S608


class _Signer:
    def __init__(self, key: CheckpointSigner) -> None:
        self._key = key
        self.key_id = key_id_of(key.public_bytes())

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)


def _history(settings: Settings) -> None:
    """Registrations and reads, then a clean close: everything sealed (and witnessed)."""
    app = build(settings)
    try:
        for who in people(3, seed=8):
            subject = app.vault.register(ACCOUNT, who.registration())
            app.vault.read(ACCOUNT, subject, "kyc_aml", (PHONE,))
    finally:
        app.close()


def _rewrite_everything(app: Piguard) -> int:
    """The insider's rewrite: the first read is re-attributed, every later record re-chained
    under the chain key, the checkpoints replaced by one re-signed head, in the database and in
    the checkpoint file. Returns the seq of the rewritten record."""
    keys = load_keys(app.settings)
    with app.db.begin() as conn:
        rows = [dict(zip(COLUMNS, row, strict=True)) for row in conn.execute(text(_ALL_RECORDS))]
        target = next(r["seq"] for r in rows if r["action"] == "read")
        prev = None
        for row in rows:
            if row["seq"] == target:
                row["actor"] = "service:marketing_service:other"
            if row["seq"] >= target:
                row["prev_hash"] = prev if prev is not None else row["prev_hash"]
                row["hash"] = keys.chain_key.mac(encode(*(row[c] for c in COLUMNS[:-1])))
                conn.execute(
                    text("UPDATE audit_records SET actor = :actor, prev_hash = :prev_hash, "
                         "hash = :hash WHERE seq = :seq"),
                    row,
                )  # fmt: skip
            prev = row["hash"]
        head = rows[-1]
        cp = make_checkpoint(_Signer(keys.signer), head["seq"], head["hash"], head["at"])
        conn.execute(text("DELETE FROM audit_checkpoints"))
        conn.execute(
            text("INSERT INTO audit_checkpoints (seq, hash, at, signature, key_id) "
                 "VALUES (:seq, :hash, :at, :signature, :key_id)"),
            {"seq": cp.seq, "hash": cp.hash, "at": cp.at, "signature": cp.signature,
             "key_id": cp.key_id},
        )  # fmt: skip
    app.settings.checkpoint_file.write_bytes(encode_line(cp, keys.signer.public_bytes()))
    return int(target)


def _settings(tmp_path: Path, database_url: str, witness: Path | None) -> Settings:
    url = None if database_url.startswith("sqlite") else database_url
    return Settings(
        dev=True,
        var_dir=tmp_path / "var",
        database_url=url,
        audit_witness=str(witness) if witness else None,
    )


def test_s2_without_a_witness_the_insider_with_every_key_goes_unnoticed(
    tmp_path: Path, database_url: str
) -> None:
    """The limit the README states: this is the attack the witness exists for, and it is real."""
    settings = _settings(tmp_path, database_url, None)
    _history(settings)
    app = build(settings, migrate=False)
    try:
        _rewrite_everything(app)
        report = app.audit.verify(workers=1)
    finally:
        app.close()
    assert report.ok, report.problems


@pytest.mark.parametrize("file", ["re-signed", "copied from the witness"])
def test_s2_with_a_witness_the_insider_with_every_key_is_caught(
    tmp_path: Path, database_url: str, file: str
) -> None:
    witness = tmp_path / "witness"  # outside var/: another volume or owner in production
    settings = _settings(tmp_path, database_url, witness)
    _history(settings)
    witnessed = (witness / "audit-checkpoints.jsonl").read_bytes()
    app = build(settings, migrate=False)
    try:
        target = _rewrite_everything(app)
        if file == "copied from the witness":  # the file now agrees with the witness
            settings.checkpoint_file.write_bytes(witnessed)
        report = app.audit.verify(workers=1)
    finally:
        app.close()
    assert not report.ok
    # The rewritten chain no longer reaches a witnessed head at or after the rewritten record.
    assert any(p.kind == "truncated" and p.seq >= target for p in report.problems), report
    # The witness kept what it had: nothing the insider did shortened or changed it.
    assert (witness / "audit-checkpoints.jsonl").read_bytes().startswith(witnessed)


@pytest.mark.parametrize("cut", ["deleted", "emptied"])
def test_s2_with_a_witness_dropping_the_local_checkpoint_file_fails_verification(
    tmp_path: Path, database_url: str, cut: str
) -> None:
    witness = tmp_path / "witness"
    settings = _settings(tmp_path, database_url, witness)
    _history(settings)
    if cut == "deleted":
        settings.checkpoint_file.unlink()
    else:
        settings.checkpoint_file.write_bytes(b"")
    app = build(settings, migrate=False)
    try:
        report = app.audit.verify(workers=1)
    finally:
        app.close()
    assert not report.ok
    assert "checkpoint_missing" in {p.kind for p in report.problems}
