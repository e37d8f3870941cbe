"""The vault through its service layer, on real databases, with real encryption (S2, R1, R4)."""

import logging
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, inspect, select, text

from piguard.bootstrap import Piguard, build
from piguard.db.engine import sqlite_maintenance
from piguard.kernel.errors import Conflict, Denied, IntegrityError, InvalidInput, NotFound
from piguard.policy.decision import Actor
from piguard.policy.model import ActorKind
from piguard.population import Person, people
from piguard.settings import Settings
from piguard.vault.crypto import aad_for, key_aad_for
from piguard.vault.keystore import KeyStore
from piguard.vault.rotation import rotate
from piguard.vault.tables import ValueRow

ACCOUNT = Actor(ActorKind.SERVICE, "account_service", principal="test")
SUBJECT = Actor(ActorKind.SUBJECT, "subject")
PHONE = "user.contact.phone_number"
ID_NUMBER = "user.government_id.national_identification_number"


@pytest.fixture
def crowd() -> list[Person]:
    return list(people(5, seed=7))


def _register(app: Piguard, crowd: list[Person]) -> list[str]:
    return [app.vault.register(ACCOUNT, p.registration()) for p in crowd]


def _phone(app: Piguard, subject_id: str) -> str | None:
    value = app.vault.read(ACCOUNT, subject_id, "kyc_aml", (PHONE,)).values[0].value
    return value.reveal() if value is not None else None


def _secrets(crowd: list[Person]) -> list[bytes]:
    values = [v for p in crowd for v in (p.name, p.id_number, p.phone, p.email, p.bank_card)]
    return [v.encode() for v in values]


def _files(var: Path) -> list[Path]:
    return [f for f in var.rglob("*") if f.is_file()]


def test_s2_no_plaintext_at_rest_in_database_wal_keystore_or_logs(
    app: Piguard, crowd: list[Person], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ids = _register(app, crowd)
    app.vault.read(ACCOUNT, ids[0], "kyc_aml", (PHONE, ID_NUMBER))
    app.audit.flush()
    secrets = _secrets(crowd)
    blobs = [f.read_bytes() for f in _files(app.settings.var_dir)]
    assert any(
        f.name.endswith("-wal") or f.name.endswith(".db") for f in _files(app.settings.var_dir)
    )
    if app.db.dialect.name == "postgresql":
        with app.db.connect() as conn:
            for table in inspect(conn).get_table_names():
                rows = conn.execute(text(f'SELECT * FROM "{table}"')).all()  # noqa: S608 - table names from the schema
                blobs.append(repr(rows).encode())
    blobs.append(caplog.text.encode())
    for secret in secrets:
        assert not any(secret in blob for blob in blobs), "plaintext personal data found at rest"
    assert _phone(app, ids[0]) == crowd[0].phone


def test_r4_crypto_shredding_leaves_a_copy_of_the_database_unreadable(
    app: Piguard, crowd: list[Person], tmp_path: Path
) -> None:
    gone, kept = _register(app, crowd)[:2]
    app.audit.flush()
    backup = _backup(app, tmp_path)

    app.vault.erase_subject(SUBJECT, gone)

    with backup.connect() as conn:
        rows = conn.execute(select(ValueRow.__table__)).mappings().all()
    store = KeyStore(app.keystore_db)
    readable: dict[str, int] = {}
    for row in rows:
        wrapped = store.get(row["subject_id"])
        if wrapped is None:
            continue
        key = app.keys.unwrap(wrapped, key_aad_for(row["subject_id"]))
        key.decrypt(row["ciphertext"], aad_for(row["subject_id"], row["category"], row["id"]))
        readable[row["subject_id"]] = readable.get(row["subject_id"], 0) + 1
    assert any(r["subject_id"] == gone for r in rows), "the backup still holds the ciphertext"
    assert gone not in readable
    assert readable.get(kept, 0) > 0
    with pytest.raises(NotFound):
        app.vault.read(ACCOUNT, gone, "kyc_aml", (PHONE,))


def _backup(app: Piguard, tmp_path: Path) -> Engine:
    """A copy of the main database taken now: the file itself on SQLite, a table copy elsewhere."""
    copy = tmp_path / "backup.db"
    if app.db.dialect.name == "sqlite":
        sqlite_maintenance(app.db, "PRAGMA wal_checkpoint(TRUNCATE)")
        shutil.copy(app.settings.var_dir / "piguard.db", copy)
        return create_engine(f"sqlite:///{copy}")
    backup = create_engine(f"sqlite:///{copy}")
    ValueRow.__table__.create(backup)
    with app.db.connect() as source, backup.begin() as target:
        rows = source.execute(select(ValueRow.__table__)).mappings().all()
        target.execute(ValueRow.__table__.insert(), [dict(r) for r in rows])
    return backup


def test_s2_ciphertext_moved_to_another_row_does_not_decrypt(
    app: Piguard, crowd: list[Person]
) -> None:
    a, b = _register(app, crowd)[:2]
    with app.db.begin() as conn:
        source = conn.execute(
            select(ValueRow.ciphertext).where(ValueRow.subject_id == a, ValueRow.category == PHONE)
        ).scalar_one()
        conn.execute(
            ValueRow.__table__.update()
            .where(ValueRow.subject_id == b, ValueRow.category == PHONE)
            .values(ciphertext=source)
        )
    with pytest.raises(IntegrityError):
        app.vault.read(ACCOUNT, b, "kyc_aml", (PHONE,))


def test_c1_1_registration_refuses_missing_and_invalid_fields_and_writes_nothing(
    app: Piguard, crowd: list[Person]
) -> None:
    values = crowd[0].registration()
    del values[PHONE]
    with pytest.raises(InvalidInput) as missing:
        app.vault.register(ACCOUNT, values)
    assert missing.value.field == PHONE
    bad = crowd[0].registration() | {ID_NUMBER: "110105194912310021"}
    with pytest.raises(InvalidInput) as invalid:
        app.vault.register(ACCOUNT, bad)
    assert invalid.value.field == ID_NUMBER
    assert "110105194912310021" not in invalid.value.message.en
    with app.db.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM subjects")).scalar_one() == 0
        assert conn.execute(text("SELECT COUNT(*) FROM personal_values")).scalar_one() == 0


def test_c1_1_one_account_per_phone_and_identity(app: Piguard, crowd: list[Person]) -> None:
    app.vault.register(ACCOUNT, crowd[0].registration())
    twin = crowd[1].registration() | {PHONE: crowd[0].phone}
    with pytest.raises(Conflict) as taken:
        app.vault.register(ACCOUNT, twin)
    assert taken.value.field == PHONE
    with app.db.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM subjects")).scalar_one() == 1


def test_r1_immutable_field_refused_mutable_one_updated(app: Piguard, crowd: list[Person]) -> None:
    sid = _register(app, crowd)[0]
    with pytest.raises(Denied) as refused:
        app.vault.update(ACCOUNT, sid, "kyc_aml", {ID_NUMBER: crowd[1].id_number})
    assert refused.value.field == ID_NUMBER
    assert any(r.startswith("R1:") for r in refused.value.reasons)
    with pytest.raises(Denied) as identifier:
        app.vault.update(ACCOUNT, sid, "kyc_aml", {PHONE: "138 0013 8000"})
    assert identifier.value.reasons == (f"R1:identifier_change_required:{PHONE}",)
    app.vault.change_identifier(ACCOUNT, sid, {PHONE: "138 0013 8000"}, evidence="sms-otp:4711")
    values = app.vault.read(ACCOUNT, sid, "kyc_aml", (PHONE,)).values
    assert [v.value.reveal() if v.value else None for v in values] == ["13800138000"]
    assert [v.source for v in values] == ["verified:sms-otp:4711"]
    assert "kyc_aml" in values[0].purposes  # a replacement keeps what the old value served
    with pytest.raises(Conflict):
        app.vault.change_identifier(ACCOUNT, sid, {PHONE: crowd[1].phone}, evidence="otp:1")


def test_c2_3_lookup_by_blind_index_honours_discovery_setting(
    app: Piguard, crowd: list[Person]
) -> None:
    sid = _register(app, crowd)[0]
    found = app.vault.lookup(ACCOUNT, PHONE, crowd[0].phone)
    assert found is not None
    assert found.subject_id == sid
    app.consents.change_settings(ACCOUNT, sid, {"discoverable_by_phone_email": False})
    assert app.vault.lookup(ACCOUNT, PHONE, crowd[0].phone) is None
    assert app.vault.lookup(ACCOUNT, PHONE, "13900000000") is None


def test_c2_5_value_keeps_purpose_source_and_time(app: Piguard, crowd: list[Person]) -> None:
    sid = _register(app, crowd)[0]
    payment = Actor(ActorKind.SERVICE, "payment_service")
    app.vault.collect(
        payment,
        sid,
        "merchant_oversight",
        {"user.commerce.shipping_address": "杭州市西湖区"},
        "merchant:m42",
    )
    value = app.vault.read(
        payment, sid, "merchant_oversight", ("user.commerce.shipping_address",)
    ).values[0]
    assert value.source == "merchant:m42"
    assert value.purposes == ("merchant_oversight",)
    assert value.collected_at is not None


class _InterruptedStore(KeyStore):
    """The real key store, failing after its first batch: an interruption mid-rotation."""

    calls = 0

    def rewrap(self, items: list[tuple[str, bytes]], kek_id: str) -> None:
        self.calls += 1
        if self.calls > 1:
            raise KeyboardInterrupt
        super().rewrap(items, kek_id)


def test_s2_key_rotation_rewraps_and_resumes_after_interruption(
    app: Piguard, crowd: list[Person]
) -> None:
    ids = _register(app, crowd)
    before = KeyStore(app.keystore_db).count_by_kek()
    with pytest.raises(KeyboardInterrupt):
        rotate(app.settings.resolved_key_file, _InterruptedStore(app.keystore_db), batch=2)
    half = KeyStore(app.keystore_db).count_by_kek()
    assert len(half) == 2, "some keys re-wrapped, some not yet"
    midway = build(app.settings)
    try:
        for sid, person in zip(ids, crowd, strict=True):
            assert _phone(midway, sid) == person.phone
    finally:
        midway.close()
    report = rotate(app.settings.resolved_key_file, KeyStore(app.keystore_db), batch=2)
    assert report.resumed
    after = KeyStore(app.keystore_db).count_by_kek()
    assert set(after) == {report.kek_id}
    assert set(after) != set(before)
    assert sum(after.values()) == len(ids)
    assert report.retired == tuple(before)  # kept in the key file until `retire`
    fresh = build(app.settings)
    try:
        assert _phone(fresh, ids[0]) == crowd[0].phone
        assert [k.key_id for k in fresh.keys.retired_keks] == list(before)
    finally:
        fresh.close()


def test_r4_erasure_is_immediate_and_purge_reclaims_the_ciphertext(
    app: Piguard, crowd: list[Person]
) -> None:
    gone, kept = _register(app, crowd)[:2]
    app.vault.erase_subject(SUBJECT, gone)
    with pytest.raises(NotFound):
        app.vault.read(ACCOUNT, gone, "kyc_aml", (PHONE,))
    assert app.vault.lookup(ACCOUNT, PHONE, crowd[0].phone) is None
    assert app.vault.purge_erased() > 0
    with app.db.connect() as conn:
        left = conn.execute(
            text("SELECT COUNT(*) FROM personal_values WHERE subject_id = :s"), {"s": gone}
        ).scalar_one()
    assert left == 0
    assert _phone(app, kept) == crowd[1].phone


def test_s2_read_results_never_print_their_values(app: Piguard, crowd: list[Person]) -> None:
    sid = _register(app, crowd)[0]
    result = app.vault.read(ACCOUNT, sid, "kyc_aml", (PHONE, ID_NUMBER))

    shown = {v.category: v.value.reveal() for v in result.values if v.value is not None}
    assert shown == {PHONE: crowd[0].phone, ID_NUMBER: crowd[0].id_number}
    for text_form in (repr(result), str(result), f"{result}", f"{result.values[0].value}"):
        assert crowd[0].phone not in text_form
        assert crowd[0].id_number not in text_form


def test_c2_5_collection_times_come_back_aware_in_utc(app: Piguard, crowd: list[Person]) -> None:
    before = app.clock.now()
    sid = _register(app, crowd)[0]
    [stored] = app.vault.read(ACCOUNT, sid, "kyc_aml", (PHONE,)).values

    assert stored.collected_at.utcoffset() == timedelta(0)
    assert before <= stored.collected_at <= app.clock.now()  # comparable with aware times


def test_s2_r4_erasure_leaves_no_blind_index_in_the_database_file_or_its_wal(
    tmp_path: Path, crowd: list[Person]
) -> None:
    """The embedded database's own files, as an attacker with var/ and the index key reads them
    (PostgreSQL's storage is its own)."""
    app = build(Settings(dev=True, var_dir=tmp_path / "var"))
    try:
        gone, kept = _register(app, crowd)[:2]
        app.audit.flush()
        digests = {
            who: app.keys.blind_index.digest(PHONE, person.phone).encode()
            for who, person in ((gone, crowd[0]), (kept, crowd[1]))
        }
        database = Path(str(app.db.url.database))
        files = (database, Path(f"{database}-wal"))

        def on_disk() -> bytes:
            return b"".join(p.read_bytes() for p in files if p.exists())

        assert digests[gone] in on_disk()
        app.vault.erase_subject(SUBJECT, gone)
        left = on_disk()
    finally:
        app.close()

    assert digests[gone] not in left  # not in a live page, a free page or the WAL
    assert digests[kept] in left
