"""Key-encryption-key rotation and retirement on real databases and a real key file (S2, R4).

`rotate` keeps the old KEK (retired) and `retire` drops it, refusing while a data key needs it;
once dropped, a key-store backup taken before the rotation no longer opens with the key file. A
server that had not yet seen the rotation (here: a `Piguard` wrapping with the key set it loaded
before, as a process on an old key file would) strands nothing, whichever side of retire's check
its write falls on.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from piguard.bootstrap import Piguard, build
from piguard.kernel.clock import FixedClock
from piguard.kernel.errors import Conflict, IntegrityError
from piguard.policy.decision import Actor
from piguard.policy.model import ActorKind
from piguard.population import Person, people
from piguard.settings import Settings
from piguard.vault.crypto import (
    DataKey,
    KeyEncryptionKey,
    key_aad_for,
    load_or_create_key_file,
    read_key_file,
    write_key_file,
)
from piguard.vault.keyfile import KeyFileWrapper
from piguard.vault.keys import DataKeys
from piguard.vault.keystore import KeyStore
from piguard.vault.rotation import StillWrapped, key_file_lock, retire, rotate

ACCOUNT = Actor(ActorKind.SERVICE, "account_service", principal="test")
SUBJECT = Actor(ActorKind.SUBJECT, "subject")
PHONE = "user.contact.phone_number"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    external = None if database_url.startswith("sqlite") else database_url
    return Settings(dev=True, var_dir=tmp_path / "var", database_url=external)


@pytest.fixture
def app(settings: Settings) -> Iterator[Piguard]:
    built = build(settings)
    yield built
    built.close()


@pytest.fixture
def crowd() -> list[Person]:
    return list(people(6, seed=23))


def _register(app: Piguard, who: list[Person]) -> list[str]:
    return [app.vault.register(ACCOUNT, p.registration()) for p in who]


def _phone(app: Piguard, subject_id: str) -> str | None:
    value = app.vault.read(ACCOUNT, subject_id, "kyc_aml", (PHONE,)).values[0].value
    return value.reveal() if value is not None else None


def _phones_after_restart(settings: Settings, ids: list[str]) -> list[str | None]:
    fresh = build(settings)
    try:
        return [_phone(fresh, sid) for sid in ids]
    finally:
        fresh.close()


def _store(app: Piguard) -> KeyStore:
    return KeyStore(app.keystore_db)


def _stale(settings: Settings, app: Piguard) -> Piguard:
    """A process still on the key set it loaded before a rotation (it never reloads)."""
    return build(settings, key_wrapper=app.keys)


# -- backups (R4) -------------------------------------------------------------------------------


def _backup(source: Path, target: Path) -> None:
    # The SQLite online backup: a consistent copy even with the WAL in use.
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


def _restore(backup: Path, key_file: Path, var: Path) -> Piguard:
    """A piguard on backed-up databases and today's key file: what a thief of both would run."""
    var.mkdir(mode=0o700)
    for name in ("piguard.db", "keystore.db"):
        shutil.copy(backup / name, var / name)
        os.chmod(var / name, 0o600)
    shutil.copy(key_file, var / "keys.json")
    os.chmod(var / "keys.json", 0o600)
    return build(Settings(dev=True, var_dir=var))


def _phone_from_backup(backup: Path, key_file: Path, var: Path, subject_id: str) -> str | None:
    restored = _restore(backup, key_file, var)
    try:
        return _phone(restored, subject_id)
    finally:
        restored.close()


def test_r4_retiring_the_old_kek_makes_an_older_key_store_backup_useless(
    tmp_path: Path, crowd: list[Person]
) -> None:
    settings = Settings(dev=True, var_dir=tmp_path / "var")
    app = build(settings)
    try:
        gone, kept = _register(app, crowd[:2])
        backup = tmp_path / "backup"
        backup.mkdir()
        for name in ("piguard.db", "keystore.db"):
            _backup(settings.var_dir / name, backup / name)
        app.vault.erase_subject(SUBJECT, gone)
        key_file = settings.resolved_key_file

        rotate(key_file, _store(app))
        # Before retire, the backup plus today's key file still opens the erased subject.
        found = _phone_from_backup(backup, key_file, tmp_path / "thief1", gone)
        assert found == crowd[0].phone

        report = retire(key_file, _store(app))
        assert report.retired
        assert report.kek_id not in report.retired
        with pytest.raises(IntegrityError, match="unknown key-encryption key"):
            _phone_from_backup(backup, key_file, tmp_path / "thief2", gone)
        assert _phone(app, kept) == crowd[1].phone  # the live store moved on with the key file
    finally:
        app.close()
    assert _phones_after_restart(settings, [kept]) == [crowd[1].phone]
    assert not read_key_file(key_file).retired_keks


# -- retire refuses while a retired KEK is in use -----------------------------------------------


def test_s2_retire_refuses_while_a_stale_server_wraps_with_the_old_kek(
    app: Piguard, settings: Settings, crowd: list[Person]
) -> None:
    old_kek = app.keys.key_id
    early = _register(app, crowd[:2])
    stale = _stale(settings, app)
    try:
        report = rotate(settings.resolved_key_file, _store(app))
        assert report.rewrapped == 2
        assert report.retired == (old_kek,)
        late = _register(stale, crowd[2:4])  # after the rotation, under the retired KEK
    finally:
        stale.close()
    assert _store(app).count_by_kek() == {report.kek_id: 2, old_kek: 2}

    with pytest.raises(StillWrapped) as refused:
        retire(settings.resolved_key_file, _store(app))
    assert "2 data keys" in refused.value.message.en
    assert "keys rotate" in refused.value.message.en
    assert "keys rotate" in refused.value.message.zh
    assert read_key_file(settings.resolved_key_file).retired_keks  # nothing dropped
    # After a restart, every subject opens: the retired KEK is still in the key file.
    phones = [p.phone for p in crowd[:4]]
    assert _phones_after_restart(settings, early + late) == phones

    again = rotate(settings.resolved_key_file, _store(app))  # finishes: no new KEK
    assert again.resumed
    assert again.kek_id == report.kek_id
    assert again.rewrapped == 2
    assert retire(settings.resolved_key_file, _store(app)).retired == (old_kek,)
    assert _phones_after_restart(settings, early + late) == phones
    assert retire(settings.resolved_key_file, _store(app)).retired == ()  # nothing left


class _StaleWriteAfterCount(KeyStore):
    """The real key store; right after retire counts, a stale server stores a new key."""

    def __init__(self, app: Piguard, stale: Piguard, person: Person) -> None:
        super().__init__(app.keystore_db)
        self._stale, self._person = stale, person
        self.written: list[str] = []

    def count_by_kek(self) -> dict[str, int]:
        counts = super().count_by_kek()
        self.written.append(self._stale.vault.register(ACCOUNT, self._person.registration()))
        return counts


def test_s2_a_key_stored_by_a_stale_server_during_retire_is_rewrapped_not_stranded(
    app: Piguard, settings: Settings, crowd: list[Person]
) -> None:
    stale = _stale(settings, app)
    try:
        first = _register(app, crowd[:1])
        rotate(settings.resolved_key_file, _store(app))
        racing = _StaleWriteAfterCount(app, stale, crowd[1])
        report = retire(settings.resolved_key_file, racing)
    finally:
        stale.close()
    assert report.rewrapped == 1
    assert set(_store(app).count_by_kek()) == {report.kek_id}
    assert _phones_after_restart(settings, first + racing.written) == [
        crowd[0].phone,
        crowd[1].phone,
    ]


class _RetireBeforePut(KeyStore):
    """The real key store; before a new key lands, another process rotates and retires."""

    def __init__(self, app: Piguard, key_file: Path) -> None:
        super().__init__(app.keystore_db)
        self._key_file = key_file

    def put(self, subject_id: str, wrapped: bytes, kek_id: str) -> None:
        rotate(self._key_file, KeyStore(self._engine))
        retire(self._key_file, KeyStore(self._engine))
        super().put(subject_id, wrapped, kek_id)


def test_s2_a_key_stored_after_retire_wrote_the_key_file_is_rewrapped_by_its_server(
    app: Piguard, settings: Settings
) -> None:
    key_file = settings.resolved_key_file
    wrapper = KeyFileWrapper(key_file, app.keys)
    old_kek = wrapper.key_id
    keys = DataKeys(_RetireBeforePut(app, key_file), wrapper)

    made = keys.create("sub_racing")

    now = read_key_file(key_file)
    assert [k.key_id for k in now.kek_chain()] == [now.key_id]
    assert now.key_id != old_kek
    assert _store(app).count_by_kek() == {now.key_id: 1}
    wrapped = _store(app).get("sub_racing")
    assert wrapped is not None
    opened = now.unwrap(wrapped, key_aad_for("sub_racing"))
    assert opened.export() == made.export()


def test_s2_rotate_and_retire_refuse_while_another_holds_the_key_file(
    app: Piguard, settings: Settings
) -> None:
    key_file = settings.resolved_key_file
    before = key_file.read_bytes()
    with key_file_lock(key_file):
        with pytest.raises(Conflict, match="another key rotation"):
            rotate(key_file, _store(app))
        with pytest.raises(Conflict, match="another key rotation"):
            retire(key_file, _store(app))
    assert key_file.read_bytes() == before
    assert rotate(key_file, _store(app)).retired  # the lock is released on exit


# -- a running process follows the key file ------------------------------------------------------


def test_s2_a_running_process_reads_keys_rotated_by_another_and_wraps_new_ones_with_the_new_kek(
    settings: Settings, crowd: list[Person]
) -> None:
    clock = FixedClock(datetime.now(UTC))
    server = build(settings, clock=clock)
    try:
        old_kek = server.keys.key_id
        early = _register(server, crowd[:2])
        report = rotate(settings.resolved_key_file, KeyStore(server.keystore_db))
        assert [_phone(server, s) for s in early] == [p.phone for p in crowd[:2]]  # cached keys
        clock.advance(timedelta(seconds=61))  # the cache ages out: re-wrapped keys are unwrapped
        assert [_phone(server, s) for s in early] == [p.phone for p in crowd[:2]]
        late = _register(server, crowd[2:3])
        assert KeyStore(server.keystore_db).count_by_kek() == {report.kek_id: 3}
        assert old_kek != report.kek_id
        retire(settings.resolved_key_file, KeyStore(server.keystore_db))
        clock.advance(timedelta(seconds=61))
        assert [_phone(server, s) for s in early + late] == [p.phone for p in crowd[:3]]
    finally:
        server.close()


def _forged(key_id: str) -> bytes:
    """A wrapped key of the right shape naming the KEK `key_id`, sealed by no KEK we hold."""
    blob = KeyEncryptionKey.generate().wrap(DataKey.generate(), key_aad_for("sub_x"))
    return blob[:1] + bytes.fromhex(key_id) + blob[5:]


class _Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_s2_unknown_kek_ids_recheck_the_key_file_at_most_once_per_interval(
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "keys.json"
    material = load_or_create_key_file(key_file)
    ticks = _Ticks()
    wrapper = KeyFileWrapper(key_file, material, ticks=ticks)
    rotated = material.rotated()
    write_key_file(key_file, rotated)
    data_key = DataKey.generate()
    real = rotated.wrap(data_key, key_aad_for("sub_a"))

    for n in range(500):  # a storm of forged keys naming random KEKs
        with pytest.raises(IntegrityError, match="unknown key-encryption key"):
            wrapper.unwrap(_forged(f"{n:08x}"), key_aad_for("sub_x"))
    assert wrapper.reloads == 1  # the first one rechecked (and found the rotation); no more
    assert wrapper.unwrap(real, key_aad_for("sub_a")).export() == data_key.export()

    retired = rotated.rotated()
    write_key_file(key_file, retired)
    newer = retired.wrap(data_key, key_aad_for("sub_a"))
    ticks.now += 0.5
    with pytest.raises(IntegrityError, match="unknown key-encryption key"):
        wrapper.unwrap(newer, key_aad_for("sub_a"))  # within the interval: not rechecked
    assert wrapper.reloads == 1
    ticks.now += 0.6
    assert wrapper.unwrap(newer, key_aad_for("sub_a")).export() == data_key.export()
    assert wrapper.reloads == 2


def test_s2_a_key_file_that_cannot_be_read_keeps_the_keys_a_process_loaded(
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "keys.json"
    material = load_or_create_key_file(key_file)
    wrapper = KeyFileWrapper(key_file, material)
    wrapped = material.wrap(DataKey.generate(), key_aad_for("sub_a"))
    for broken in (b"{}", b"not json", b"x" * 100_000):
        key_file.write_bytes(broken)
        assert wrapper.key_id == material.key_id
        assert wrapper.still_holds(material.key_id)
        wrapper.unwrap(wrapped, key_aad_for("sub_a"))
    key_file.unlink()
    assert wrapper.key_id == material.key_id
    assert wrapper.reloads == 0


def test_s2_the_data_key_cache_ages_by_the_injected_clock_and_distrusts_a_clock_set_back(
    app: Piguard,
) -> None:
    class _Counting(KeyFileWrapper):
        unwraps = 0

        def unwrap(self, wrapped: bytes, context: bytes) -> DataKey:
            self.unwraps += 1
            return super().unwrap(wrapped, context)

    clock = FixedClock(datetime.now(UTC))
    wrapper = _Counting(app.settings.resolved_key_file, app.keys)
    keys = DataKeys(_store(app), wrapper, clock, cache_seconds=60)
    keys.create("sub_cache")
    keys.get("sub_cache")
    assert wrapper.unwraps == 0
    clock.advance(timedelta(seconds=59))
    keys.get("sub_cache")
    assert wrapper.unwraps == 0
    clock.advance(timedelta(seconds=2))
    keys.get("sub_cache")
    assert wrapper.unwraps == 1
    clock.advance(timedelta(hours=-1))  # set back: the entry looks from the future
    keys.get("sub_cache")
    assert wrapper.unwraps == 2


def test_s2_the_rotation_lock_does_not_follow_a_planted_symlink(
    app: Piguard, settings: Settings, tmp_path: Path
) -> None:
    key_file = settings.resolved_key_file
    target = tmp_path / "elsewhere"
    key_file.with_name(f".{key_file.name}.lock").symlink_to(target)
    before = key_file.read_bytes()
    with pytest.raises(IntegrityError, match="cannot lock the key file"):
        rotate(key_file, _store(app))
    assert not target.exists()
    assert key_file.read_bytes() == before
