"""R6: wrong personal information is corrected through the vault service, on real databases.

The subject corrects it under `self_service`, or the privacy officer does on the subject's request
(the bundled policy grants that role `self_service` updates for R5–R7). Afterwards the wrong value
is gone from the vault, every purpose that held it reads the right one, and a registration field
that cannot change (R1) cannot be "corrected" either.
"""

import pytest
from sqlalchemy import select, text

from piguard.bootstrap import Piguard
from piguard.kernel.errors import Denied
from piguard.policy.decision import Actor
from piguard.policy.model import ActorKind
from piguard.population import Person, people
from piguard.vault.crypto import aad_for, key_aad_for
from piguard.vault.keystore import KeyStore
from piguard.vault.tables import ValueRow

ACCOUNT = Actor(ActorKind.SERVICE, "account_service", principal="test")
SUBJECT = Actor(ActorKind.SUBJECT, "subject", principal="key-of-the-subject")
OFFICER = Actor(ActorKind.STAFF, "privacy_officer", principal="officer-7")
ADDRESS = "user.contact.address"
NAME = "user.name"
ID_NUMBER = "user.government_id.national_identification_number"


@pytest.fixture
def person() -> Person:
    return next(people(1, seed=23))


@pytest.fixture
def subject(app: Piguard, person: Person) -> str:
    return app.vault.register(ACCOUNT, person.registration())


def stored(app: Piguard, subject_id: str, category: str) -> list[str]:
    """Every value the vault holds for a category of a subject, decrypted row by row."""
    wrapped = KeyStore(app.keystore_db).get(subject_id)
    assert wrapped is not None
    key = app.keys.unwrap(wrapped, key_aad_for(subject_id))
    with app.db.connect() as conn:
        rows = conn.execute(
            select(ValueRow.id, ValueRow.ciphertext).where(
                ValueRow.subject_id == subject_id, ValueRow.category == category
            )
        ).all()
    return [key.decrypt(r.ciphertext, aad_for(subject_id, category, r.id)).decode() for r in rows]


def shown(app: Piguard, actor: Actor, subject_id: str, purpose: str, category: str) -> str | None:
    [value] = app.vault.read(actor, subject_id, purpose, (category,)).values
    return value.value.reveal() if value.value is not None else None


@pytest.mark.parametrize(
    ("actor", "category", "right", "clause"),
    [  # the subject's own edit is audited under its grant (R1), the officer's under R6
        (SUBJECT, ADDRESS, "浙江省杭州市西湖区文三路 477 号", "R1"),
        (OFFICER, ADDRESS, "上海市浦东新区世纪大道 100 号", "R6"),
    ],
    ids=["subject", "privacy_officer"],
)
def test_r6_a_wrong_value_is_corrected_through_the_vault(
    app: Piguard,
    subject: str,
    person: Person,
    actor: Actor,
    category: str,
    right: str,
    clause: str,
) -> None:
    wrong = person.address
    assert stored(app, subject, category) == [wrong]

    app.vault.update(actor, subject, "self_service", {category: right})

    assert stored(app, subject, category) == [right]  # the wrong value is gone, not kept beside
    assert shown(app, SUBJECT, subject, "self_service", category) == right
    # The purpose the wrong value was collected for reads the corrected one.
    assert shown(app, ACCOUNT, subject, "kyc_aml", category) == right
    with app.db.connect() as conn:
        [(who, purpose, clauses)] = conn.execute(
            text("SELECT actor, purpose, clauses FROM audit_records WHERE action = 'update'")
        ).all()
    assert (who, purpose) == (actor.label, "self_service")
    assert clause in clauses.split(",")


@pytest.mark.parametrize("actor", [SUBJECT, OFFICER], ids=["subject", "privacy_officer"])
@pytest.mark.parametrize("category", [NAME, ID_NUMBER])
def test_r6_r1_an_immutable_registration_field_cannot_be_corrected(
    app: Piguard, subject: str, person: Person, actor: Actor, category: str
) -> None:
    before = stored(app, subject, category)
    other = next(people(1, seed=24))
    wrong_fix = {NAME: other.name, ID_NUMBER: other.id_number}[category]

    with pytest.raises(Denied) as refused:
        app.vault.update(actor, subject, "self_service", {category: wrong_fix})

    assert refused.value.field == category
    assert any(r.startswith("R1:immutable") for r in refused.value.reasons)
    assert stored(app, subject, category) == before
