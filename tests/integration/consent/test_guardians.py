"""Minors and their guardians (M1) on real databases, tried as a minor or a stranger would.

A minor uses the service only through a linked guardian: registration included, consent scope by
scope, and a guardian's withdrawal of the service is an objection. Age comes from the verified ID
number, never from a value a caller can post.
"""

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from stdnum.cn import ric

from piguard.bootstrap import Piguard, build
from piguard.consent.service import Provenance
from piguard.kernel.clock import FixedClock
from piguard.kernel.errors import Denied, InvalidInput, NotFound
from piguard.policy import scopes
from piguard.policy.decision import Actor
from piguard.policy.model import ActorKind, ConsentType
from piguard.population import people
from piguard.settings import Settings

ACCOUNT = Actor(ActorKind.SERVICE, "account_service", principal="test")
MARKETING = Actor(ActorKind.SERVICE, "marketing_service", principal="test")
AML = Actor(ActorKind.STAFF, "aml_officer", principal="test")
SELF = Actor(ActorKind.SUBJECT, "subject", principal="key")
SEARCH = "user.behavior.search_history"
ID_NUMBER = "user.government_id.national_identification_number"
BIRTH = "user.demographic.date_of_birth"
PERSONALISATION = scopes.purpose_scope("personalization")
NOW = datetime(2026, 11, 29, 23, 0, tzinfo=UTC)


def id_born(born: date, seq: str = "123") -> str:
    first17 = f"110101{born:%Y%m%d}{seq}"
    return first17 + ric.calc_check_digit(first17 + "?")  # stdnum ignores the last character


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def app(tmp_path: Path, database_url: str, clock: FixedClock) -> Iterator[Piguard]:
    url = None if database_url.startswith("sqlite") else database_url
    built = build(Settings(dev=True, var_dir=tmp_path / "var", database_url=url), clock)
    yield built
    built.close()


@pytest.fixture
def crowd() -> Iterator[dict[str, str]]:
    return (p.registration() for p in people(20, seed=31))


@pytest.fixture
def guardian(app: Piguard, crowd: Iterator[dict[str, str]]) -> str:
    return app.vault.register(ACCOUNT, next(crowd))


def minor_values(crowd: Iterator[dict[str, str]], born: date = date(2015, 6, 1)) -> dict[str, str]:
    values = next(crowd)
    values[ID_NUMBER] = id_born(born)
    return values


def test_m1_a_minor_cannot_register_without_a_guardian(
    app: Piguard, crowd: Iterator[dict[str, str]]
) -> None:
    with pytest.raises(Denied) as refused:
        app.vault.register(ACCOUNT, minor_values(crowd))
    assert refused.value.reasons == (f"M1:guardian_consent_required:{scopes.SERVICE}",)


def test_m1_a_guardian_registers_and_consents_scope_by_scope(
    app: Piguard, crowd: Iterator[dict[str, str]], guardian: str
) -> None:
    minor = app.guardians.register_ward(
        SELF, guardian, minor_values(crowd), "parent", "hukou:2026-0001"
    )
    # The minor's own consent does not count (M1), nor does a guardian's "consent to everything".
    app.consents.grant(SELF, minor, PERSONALISATION)
    with pytest.raises(Denied) as refused:
        app.vault.collect(MARKETING, minor, "personalization", {SEARCH: "跑步鞋"})
    assert refused.value.reasons == (f"M1:guardian_consent_required:{PERSONALISATION}",)

    app.guardians.grant(SELF, guardian, minor, PERSONALISATION, ConsentType.REGULAR, Provenance())
    app.vault.collect(MARKETING, minor, "personalization", {SEARCH: "跑步鞋"})
    events, _ = app.consents.history(ACCOUNT, minor)
    assert [(e.scope, e.guardian_id) for e in events if e.guardian_id] == [
        (scopes.SERVICE, guardian),
        (PERSONALISATION, guardian),
    ]


def test_m1_a_guardians_objection_stops_processing_but_not_erasure_or_aml_records(
    app: Piguard, crowd: Iterator[dict[str, str]], guardian: str
) -> None:
    minor = app.guardians.register_ward(
        SELF, guardian, minor_values(crowd), "legal_guardian", "court-order:77"
    )
    app.guardians.grant(SELF, guardian, minor, PERSONALISATION, ConsentType.REGULAR, Provenance())
    app.guardians.withdraw(SELF, guardian, minor, scopes.SERVICE, Provenance())

    with pytest.raises(Denied) as refused:
        app.vault.collect(MARKETING, minor, "personalization", {SEARCH: "跑步鞋"})
    assert refused.value.reasons == ("M1:guardian_objection",)
    assert app.vault.read(AML, minor, "kyc_aml", (ID_NUMBER,)).values  # kept by law (P2)
    app.vault.erase_subject(SELF, minor)
    with pytest.raises(NotFound):
        app.vault.snapshot(minor)


def test_m1_only_the_linked_adult_acts_as_guardian(
    app: Piguard, crowd: Iterator[dict[str, str]], guardian: str
) -> None:
    minor = app.guardians.register_ward(
        SELF, guardian, minor_values(crowd), "parent", "hukou:2026-0002"
    )
    stranger = app.vault.register(ACCOUNT, next(crowd))
    with pytest.raises(NotFound):  # not linked looks like no such minor
        app.guardians.grant(
            SELF, stranger, minor, PERSONALISATION, ConsentType.REGULAR, Provenance()
        )
    with pytest.raises(Denied) as minor_itself:
        app.guardians.grant(SELF, minor, minor, PERSONALISATION, ConsentType.REGULAR, Provenance())
    assert minor_itself.value.reasons == ("M1:guardian_not_adult",)
    with pytest.raises(Denied) as service:
        app.guardians.grant(
            MARKETING, guardian, minor, PERSONALISATION, ConsentType.REGULAR, Provenance()
        )
    assert service.value.reasons == ("M1:guardian_only",)


def test_m1_wards_are_minors_and_links_carry_a_relation_and_a_reference(
    app: Piguard, crowd: Iterator[dict[str, str]], guardian: str
) -> None:
    with pytest.raises(InvalidInput) as adult:
        app.guardians.register_ward(SELF, guardian, next(crowd), "parent", "hukou:1")
    assert adult.value.field == ID_NUMBER
    with pytest.raises(InvalidInput) as relation:
        app.guardians.register_ward(SELF, guardian, minor_values(crowd), "friend", "hukou:1")
    assert relation.value.field == "relation"
    with pytest.raises(InvalidInput) as evidence:
        app.guardians.register_ward(
            SELF, guardian, minor_values(crowd), "parent", "张三的户口本 110101…"
        )
    assert evidence.value.field == "evidence"


def test_m1_age_comes_from_the_id_number_not_a_posted_birth_date(
    app: Piguard, crowd: Iterator[dict[str, str]], guardian: str
) -> None:
    minor = app.guardians.register_ward(
        SELF, guardian, minor_values(crowd), "parent", "hukou:2026-0003"
    )
    for write in (app.vault.collect, app.vault.update):
        with pytest.raises(Denied) as refused:
            write(SELF, minor, "self_service", {BIRTH: "1990-01-01"})
        assert refused.value.reasons == (f"R1:immutable:{BIRTH}",)
    assert app.vault.snapshot(minor).age == 11


def test_m1_a_minor_becomes_an_adult_on_their_eighteenth_birthday(
    app: Piguard, crowd: Iterator[dict[str, str]], guardian: str, clock: FixedClock
) -> None:
    values = minor_values(crowd, born=date(2008, 11, 30))  # eighteen tomorrow
    minor = app.guardians.register_ward(SELF, guardian, values, "parent", "hukou:2026-0004")
    app.consents.grant(ACCOUNT, minor, PERSONALISATION)

    with pytest.raises(Denied) as refused:
        app.vault.collect(MARKETING, minor, "personalization", {SEARCH: "跑步鞋"})
    assert refused.value.reasons == (f"M1:guardian_consent_required:{PERSONALISATION}",)

    clock.advance(timedelta(hours=2))  # the next day: the cached snapshot ages with it
    app.vault.collect(MARKETING, minor, "personalization", {SEARCH: "跑步鞋"})
