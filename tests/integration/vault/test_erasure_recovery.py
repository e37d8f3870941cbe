"""Erasure across the main database and the key store, tried from the crash side (S2, R4).

A real failure is injected between the steps (the key store's DELETE, the main database's status
change), then piguard is built again on the same files, as after a restart: the erasure must
complete (key gone, subject erased, audit chain sound, every read refused), and a failure before
the tombstone must change nothing at all.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from erasure_support import (
    InjectedFailure,
    count,
    failing,
    has_key,
    key_delete,
    minor_registration,
    records,
    status_change,
    status_of,
)
from sqlalchemy import Engine

from piguard.bootstrap import Piguard, build
from piguard.consent.service import Provenance
from piguard.kernel.errors import NotFound, Unauthenticated
from piguard.policy import scopes
from piguard.policy.decision import Actor
from piguard.policy.model import ActorKind, ConsentType
from piguard.population import Person, people
from piguard.settings import Settings
from piguard.vault.erasure import FINISHED, RECOVERY_ACTOR, ErasureIncomplete

ACCOUNT = Actor(ActorKind.SERVICE, "account_service", principal="test")
SELF = Actor(ActorKind.SUBJECT, "subject", principal="key")
OFFICER = Actor(ActorKind.STAFF, "privacy_officer", principal="test")
PHONE = "user.contact.phone_number"
NAME = "user.name"
ERASE = ("subject", "erase_subject", "allow", "erase_subject")


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    url = None if database_url.startswith("sqlite") else database_url
    return Settings(dev=True, var_dir=tmp_path / "var", database_url=url)


@pytest.fixture
def crowd() -> Iterator[Person]:
    return iter(people(6, seed=53))


@pytest.fixture
def app(settings: Settings) -> Iterator[Piguard]:
    built = build(settings)
    yield built
    built.close()


def restarted(app: Piguard) -> Piguard:
    """Close `app` and build piguard again on the same files: a restart."""
    app.close()
    return build(app.settings)


def _subject_with_key(app: Piguard, who: Person) -> tuple[str, str]:
    subject = app.vault.register(ACCOUNT, who.registration())
    token = app.api_keys.create("subject", "own", subject).token
    app.api_keys.authenticate(token)
    return subject, token


def assert_gone(app: Piguard, subject: str, who: Person, token: str) -> None:
    """Every path answers as for a subject that does not exist; its own key is refused."""
    with pytest.raises(NotFound):
        app.vault.read(ACCOUNT, subject, "kyc_aml", (PHONE,))
    with pytest.raises(NotFound):
        app.vault.update(SELF, subject, "self_service", {NAME: "李四"})
    with pytest.raises(NotFound):
        app.vault.erase_categories(OFFICER, subject, "self_service", (NAME,))
    with pytest.raises(NotFound):
        app.vault.change_identifier(SELF, subject, {PHONE: "13800139999"}, "sms-otp:1")
    with pytest.raises(NotFound):
        app.vault.snapshot(subject)
    with pytest.raises(NotFound):
        app.consents.grant(SELF, subject, scopes.purpose_scope("personalization"))
    with pytest.raises(NotFound):
        app.consents.history(SELF, subject)
    with pytest.raises(NotFound):
        app.consents.change_settings(SELF, subject, {"location_collection": False})
    with pytest.raises(NotFound):
        app.vault.erase_subject(OFFICER, subject)
    assert app.vault.lookup(ACCOUNT, PHONE, who.phone) is None
    assert count(app, "blind_indexes", subject) == 0
    with pytest.raises(Unauthenticated):
        app.api_keys.authenticate(token)


def test_s2_r4_a_key_store_failure_after_the_tombstone_is_finished_at_the_next_start(
    app: Piguard, crowd: Iterator[Person], caplog: pytest.LogCaptureFixture
) -> None:
    who, other = next(crowd), next(crowd)
    subject, token = _subject_with_key(app, who)
    kept, _ = _subject_with_key(app, other)

    with failing(app.keystore_db, key_delete) as stopped, pytest.raises(ErasureIncomplete):
        app.vault.erase_subject(SELF, subject)

    assert stopped  # the key store really refused the DELETE
    assert status_of(app, subject) == ("erasing", False)
    assert has_key(app, subject)  # keyed, but unreadable by anyone: never the reverse
    assert_gone(app, subject, who, token)
    assert [r[1:] for r in records(app, subject)][-2:] == [
        ("erase_subject", "allow", "erase_subject"),
        ("key_revoke", "allow", records(app, subject)[-1][3]),
    ]
    assert who.phone not in caplog.text
    assert subject not in caplog.text

    again = restarted(app)
    try:
        assert status_of(again, subject) == ("erased", True)
        assert not has_key(again, subject)
        assert has_key(again, kept)
        assert records(again, subject)[-1] == (RECOVERY_ACTOR, "erase_subject", "allow", FINISHED)
        assert_gone(again, subject, who, token)
        assert again.vault.read(ACCOUNT, kept, "kyc_aml", (PHONE,)).values
        assert again.audit.verify().ok
        assert again.vault.finish_erasures() == 0  # idempotent: nothing left, nothing audited
        assert records(again, subject)[-1][0] == RECOVERY_ACTOR
        assert [r[0] for r in records(again, subject)].count(RECOVERY_ACTOR) == 1
    finally:
        again.close()


def test_s2_r4_a_main_database_failure_after_the_key_is_gone_never_leaves_it_readable(
    app: Piguard, crowd: Iterator[Person]
) -> None:
    who = next(crowd)
    subject, token = _subject_with_key(app, who)

    erased = status_change("erased")
    with failing(app.db, erased) as stopped, pytest.raises(ErasureIncomplete):
        app.vault.erase_subject(OFFICER, subject)

    assert stopped
    assert status_of(app, subject) == ("erasing", False)
    assert not has_key(app, subject)
    assert_gone(app, subject, who, token)  # keyless and never "active": not a 409, a 404

    again = restarted(app)
    try:
        assert status_of(again, subject) == ("erased", True)
        assert records(again, subject)[-1][0] == RECOVERY_ACTOR
        assert again.audit.verify().ok
    finally:
        again.close()


def test_s2_r4_an_erasure_that_fails_before_its_tombstone_changes_nothing(
    app: Piguard, crowd: Iterator[Person]
) -> None:
    who = next(crowd)
    subject, token = _subject_with_key(app, who)
    app.consents.grant(SELF, subject, scopes.purpose_scope("personalization"))
    before = records(app, subject)
    indexes = count(app, "blind_indexes", subject)

    # The tombstone is phase 1's last statement: the decision, its record, the revocations and
    # the index deletions all ran, and all must roll back with it.
    tombstone = status_change("erasing", unless="erased")
    with failing(app.db, tombstone) as stopped, pytest.raises(InjectedFailure):
        app.vault.erase_subject(SELF, subject)

    assert stopped
    assert status_of(app, subject) == ("active", False)
    assert has_key(app, subject)
    assert count(app, "blind_indexes", subject) == indexes > 0
    assert records(app, subject) == before  # no record of an erasure that did not happen
    assert app.api_keys.authenticate(token).subject_id == subject
    assert app.vault.read(ACCOUNT, subject, "kyc_aml", (PHONE,)).values[0].value is not None
    assert app.vault.lookup(ACCOUNT, PHONE, who.phone) is not None
    assert app.consents.history(SELF, subject)[1]

    again = restarted(app)  # nothing to finish: start-up leaves the subject alone
    try:
        assert status_of(again, subject) == ("active", False)
        assert has_key(again, subject)
        again.vault.erase_subject(SELF, subject)  # and a later erasure works
        assert status_of(again, subject) == ("erased", True)
        assert not has_key(again, subject)
        assert again.audit.verify().ok
    finally:
        again.close()


def test_s2_r4_m1_a_tombstoned_guardian_or_ward_is_gone_for_guardian_links(
    app: Piguard, crowd: Iterator[Person]
) -> None:
    guardian = app.vault.register(ACCOUNT, next(crowd).registration())
    minor = app.guardians.register_ward(
        SELF, guardian, minor_registration(next(crowd)), "parent", "hukou:2026-0099"
    )
    scope = scopes.purpose_scope("personalization")

    with failing(app.keystore_db, key_delete), pytest.raises(ErasureIncomplete):
        app.vault.erase_subject(SELF, minor)
    with pytest.raises(NotFound):
        app.guardians.grant(SELF, guardian, minor, scope, ConsentType.REGULAR, Provenance())
    with failing(app.keystore_db, key_delete), pytest.raises(ErasureIncomplete):
        app.vault.erase_subject(SELF, guardian)
    with pytest.raises(NotFound):
        app.guardians.register_ward(
            SELF, guardian, minor_registration(next(crowd)), "parent", "hukou:2026-0100"
        )
    assert app.vault.finish_erasures() == 2


def test_s2_start_up_logs_no_subject_when_it_finishes_erasures(
    settings: Settings, crowd: Iterator[Person], caplog: pytest.LogCaptureFixture
) -> None:
    app = build(settings)
    who = next(crowd)
    subject, _ = _subject_with_key(app, who)
    with failing(app.keystore_db, key_delete), pytest.raises(ErasureIncomplete):
        app.vault.erase_subject(SELF, subject)
    app.close()
    caplog.set_level(logging.DEBUG)

    build(settings).close()

    assert "finished 1 of 1 interrupted erasures" in caplog.text
    assert subject not in caplog.text
    assert who.phone not in caplog.text


def test_s2_r4_a_start_whose_key_store_still_fails_serves_and_keeps_the_subject_gone(
    app: Piguard, crowd: Iterator[Person]
) -> None:
    who = next(crowd)
    subject, token = _subject_with_key(app, who)
    with failing(app.keystore_db, key_delete), pytest.raises(ErasureIncomplete):
        app.vault.erase_subject(SELF, subject)
    app.close()

    # Every engine: the one the next start makes for the key store is not there yet.
    with failing(Engine, key_delete) as stopped:
        second = build(app.settings)
    try:
        assert stopped
        assert status_of(second, subject) == ("erasing", False)
        assert has_key(second, subject)
        assert_gone(second, subject, who, token)
    finally:
        second.close()

    third = build(app.settings)
    try:
        assert status_of(third, subject) == ("erased", True)
        assert not has_key(third, subject)
        assert third.audit.verify().ok
    finally:
        third.close()
