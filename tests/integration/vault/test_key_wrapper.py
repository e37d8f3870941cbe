"""S2: data keys are wrapped through the `KeyWrapper` port, so a KMS can hold the wrapping key.

The stand-in KMS below keeps its own AES-256-GCM key (real encryption, never shared with piguard)
and counts its calls; piguard keeps the wrapped keys and their `key_id` in its key store.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from piguard.bootstrap import Piguard, build
from piguard.kernel.errors import IntegrityError
from piguard.kernel.text import LocalText
from piguard.policy.decision import Actor
from piguard.policy.model import ActorKind
from piguard.population import people
from piguard.settings import Settings
from piguard.vault.crypto import DataKey, KeyEncryptionKey
from piguard.vault.keys import KeyWrapper
from piguard.vault.keystore import KeyStore
from piguard.vault.rotation import rewrap_all

ACCOUNT = Actor(ActorKind.SERVICE, "account_service", principal="test")
CS = Actor(ActorKind.STAFF, "customer_service_agent", principal="test")
NAME = "user.name"


class StandInKms:
    """A KMS as piguard sees one: encrypt and decrypt under a key it never hands out."""

    key_id = "kms-test-01"

    def __init__(self) -> None:
        self._kek = KeyEncryptionKey.generate()
        self.wraps = 0
        self.unwraps = 0

    def wrap(self, data_key: DataKey, context: bytes) -> bytes:
        self.wraps += 1
        return self._kek.wrap(DataKey(data_key.export()), context)

    def unwrap(self, wrapped: bytes, context: bytes) -> DataKey:
        self.unwraps += 1
        return self._kek.unwrap(wrapped, context)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    external = None if database_url.startswith("sqlite") else database_url
    return Settings(dev=True, var_dir=tmp_path / "var", database_url=external)


@pytest.fixture
def kms() -> StandInKms:
    return StandInKms()


@pytest.fixture
def app(settings: Settings, kms: StandInKms) -> Iterator[Piguard]:
    built = build(settings, key_wrapper=kms)
    yield built
    built.close()


def _register(app: Piguard, count: int) -> list[str]:
    return [app.vault.register(ACCOUNT, p.registration()) for p in people(count, seed=11)]


def _name(app: Piguard, subject_id: str) -> str | None:
    return app.vault.read(CS, subject_id, "customer_service", (NAME,)).values[0].value.reveal()


def test_s2_the_kms_wraps_every_data_key_and_the_key_store_names_it(
    app: Piguard, kms: StandInKms
) -> None:
    assert isinstance(kms, KeyWrapper)
    subjects = _register(app, 3)

    assert kms.wraps == 3
    assert KeyStore(app.keystore_db).count_by_kek() == {"kms-test-01": 3}
    assert all(_name(app, s) for s in subjects)
    assert kms.unwraps == 0  # keys created in this process stay cached: no KMS round trip


def test_s2_keys_wrapped_by_the_kms_do_not_open_without_it(
    app: Piguard, settings: Settings, kms: StandInKms
) -> None:
    subject = _register(app, 1)[0]
    app.close()

    local = build(settings)  # the local key file's KEK: it never saw the KMS key
    try:
        with pytest.raises(IntegrityError):
            _name(local, subject)
    finally:
        local.close()

    again = build(settings, key_wrapper=kms)  # a new process with the KMS: unwrapped once
    try:
        assert _name(again, subject)
        assert _name(again, subject)
        assert kms.unwraps == 1
    finally:
        again.close()


def test_s2_a_kms_wrapped_key_is_bound_to_its_subject(
    app: Piguard, settings: Settings, kms: StandInKms
) -> None:
    first, second = _register(app, 2)
    app.close()
    swap = (
        "UPDATE data_keys SET wrapped = (SELECT wrapped FROM data_keys WHERE subject_id = :b) "
        "WHERE subject_id = :a"
    )
    again = build(settings, key_wrapper=kms)
    try:
        with again.keystore_db.begin() as conn:
            conn.execute(text(swap), {"a": first, "b": second})
        with pytest.raises(IntegrityError):
            _name(again, first)
        assert _name(again, second)
    finally:
        again.close()


def test_r4_erasure_with_a_kms_deletes_the_wrapped_key_locally(
    app: Piguard, kms: StandInKms
) -> None:
    subject = _register(app, 1)[0]
    calls = (kms.wraps, kms.unwraps)

    app.vault.erase_subject(Actor(ActorKind.SUBJECT, "subject"), subject)

    assert KeyStore(app.keystore_db).get(subject) is None
    assert KeyStore(app.keystore_db).count_by_kek() == {}
    assert (kms.wraps, kms.unwraps) == calls  # erasure needs nothing from the KMS


class VersionedKms:
    """A KMS whose key has versions: new data keys go to the newest, old versions still open."""

    def __init__(self) -> None:
        self._versions = [KeyEncryptionKey.generate()]

    @property
    def key_id(self) -> str:
        return f"kms-v{len(self._versions)}"

    def rotate(self) -> None:
        self._versions.append(KeyEncryptionKey.generate())

    def wrap(self, data_key: DataKey, context: bytes) -> bytes:
        return self._versions[-1].wrap(DataKey(data_key.export()), context)

    def unwrap(self, wrapped: bytes, context: bytes) -> DataKey:
        for kek in self._versions:
            try:
                return kek.unwrap(wrapped, context)
            except IntegrityError:
                continue
        raise IntegrityError(LocalText("未知密钥版本", "unknown key version"))

    def drop_oldest(self) -> None:
        self._versions.pop(0)


def test_s2_a_kms_rotates_through_the_same_port_and_keys_move_to_its_new_version(
    settings: Settings,
) -> None:
    kms = VersionedKms()
    built = build(settings, key_wrapper=kms)
    try:
        subjects = _register(built, 3)
        kms.rotate()
        store = KeyStore(built.keystore_db)
        assert store.count_by_kek() == {"kms-v1": 3}
        assert rewrap_all(kms, store, batch=2) == 3
        assert store.count_by_kek() == {"kms-v2": 3}
        assert rewrap_all(kms, store) == 0  # re-run: nothing left
    finally:
        built.close()
    kms.drop_oldest()  # the KMS retires version 1: every key already moved
    again = build(settings, key_wrapper=kms)
    try:
        assert all(_name(again, s) for s in subjects)
    finally:
        again.close()
