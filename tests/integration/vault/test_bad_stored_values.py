"""A bad value already in the database never makes a subject unreadable, and never unerasable.

The attacker (or an old version of piguard) has written a value that today's validation refuses:
straight into `personal_values` with SQL, encrypted with the subject's real data key and bound to
its row by the vault's own associated data, so only the plaintext is bad. Reading, consenting,
deciding and erasing that subject must still work, or refuse clearly (a PiguardError, never a
crash), on SQLite and PostgreSQL (R1, R4, S2).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import insert, update

from piguard.bootstrap import Piguard
from piguard.consent.service import Provenance
from piguard.kernel.errors import NotFound, PiguardError
from piguard.kernel.ids import new_id
from piguard.policy import scopes
from piguard.policy.decision import Actor, DecisionRequest
from piguard.policy.model import Action, ActorKind, ConsentType
from piguard.population import people
from piguard.vault.crypto import aad_for, key_aad_for
from piguard.vault.keystore import KeyStore
from piguard.vault.tables import SubjectRow, ValueRow

ACCOUNT = Actor(ActorKind.SERVICE, "account_service", principal="test")
SUBJECT = Actor(ActorKind.SUBJECT, "subject")
BIRTH_DATE = "user.demographic.date_of_birth"
ID_NUMBER = "user.government_id.national_identification_number"

# (category, plaintext bytes): each refused by today's validation, or not even UTF-8.
BAD_VALUES = [
    pytest.param("user.account.nickname", b"\xff\xfe\x00bad utf-8", id="nickname-not-utf8"),
    pytest.param("user.account.nickname", b"nul\x00and\x1bescape", id="nickname-controls"),
    pytest.param("user.contact.phone_number", b"not a phone", id="phone-not-a-phone"),
    pytest.param("user.demographic.gender", "\u202e攻击".encode(), id="gender-bidi-override"),
    pytest.param("user.financial.transaction_amount", b"NaN", id="amount-nan"),
    pytest.param("user.government_id.expiry_date", b"2999-99-99", id="expiry-not-a-date"),
    pytest.param("user.account.login_name", b"x" * 20_000, id="login-name-huge"),
    pytest.param(BIRTH_DATE, b"not-a-date", id="birth-date-not-a-date"),
    pytest.param(BIRTH_DATE, b"2999-01-01", id="birth-date-future"),
    pytest.param(BIRTH_DATE, b"", id="birth-date-empty"),
    # The age source (M1): a damaged ID number leaves the subject readable and erasable too.
    pytest.param(ID_NUMBER, b"not-an-id-number", id="id-number-garbage"),
    pytest.param(ID_NUMBER, b"110101299901011234", id="id-number-born-in-2999"),
]


def _plant(app: Piguard, subject_id: str, category: str, plaintext: bytes) -> None:
    """Write `plaintext` as the subject's value of `category`, as an attacker with the database
    and the subject's key would: replacing the stored row, or adding one."""
    wrapped = KeyStore(app.keystore_db).get(subject_id)
    assert wrapped is not None
    key = app.keys.unwrap(wrapped, key_aad_for(subject_id))
    table = ValueRow.__table__
    with app.db.begin() as conn:
        existing = conn.execute(
            table.select().where(table.c.subject_id == subject_id, table.c.category == category)
        ).first()
        value_id = existing.id if existing is not None else new_id("val")
        ciphertext = key.encrypt(plaintext, aad_for(subject_id, category, value_id))
        if existing is not None:
            conn.execute(update(table).where(table.c.id == value_id).values(ciphertext=ciphertext))
        else:
            now = app.clock.now()
            conn.execute(
                insert(table).values(
                    id=value_id, subject_id=subject_id, category=category, ciphertext=ciphertext,
                    purposes="kyc_aml,self_service", source="subject", collected_at=now,
                    updated_at=now, retention_due=None,
                )
            )  # fmt: skip
        subjects = SubjectRow.__table__
        conn.execute(  # as any change of state would: cached snapshots are dropped
            update(subjects)
            .where(subjects.c.id == subject_id)
            .values(state_version=subjects.c.state_version + 1)
        )


def _survives(step: Callable[[], object]) -> object:
    """Run one operation: it may succeed or refuse clearly (a PiguardError, returned), never
    fail otherwise."""
    try:
        return step()
    except PiguardError as refusal:
        return refusal


@pytest.mark.parametrize(("category", "plaintext"), BAD_VALUES)
def test_r4_a_bad_stored_value_leaves_the_subject_readable_and_erasable(
    app: Piguard, category: str, plaintext: bytes
) -> None:
    person = next(people(1, seed=23))
    subject_id = app.vault.register(ACCOUNT, person.registration())
    _plant(app, subject_id, category, plaintext)

    own = app.vault.read(SUBJECT, subject_id, "self_service", (category, "user.name"))
    shown = {v.category: v.value.reveal() for v in own.values if v.value is not None}
    assert shown["user.name"] == person.name
    assert category in shown  # the subject sees what is held about them, even when it is odd
    staff = _survives(lambda: app.vault.read(ACCOUNT, subject_id, "kyc_aml", (category,)))
    assert not isinstance(staff, PiguardError) or (staff.code, bool(staff.message.zh)) == (
        "denied",
        True,
    )
    app.consents.grant(
        SUBJECT,
        subject_id,
        scopes.purpose_scope("personalization"),
        ConsentType.REGULAR,
        Provenance("app", "checkbox", "test"),
    )
    state = app.vault.snapshot(subject_id)
    decision = app.enforcer.answer(
        DecisionRequest(Action.READ, SUBJECT, "self_service", (category,), state), subject_id
    )
    assert decision.allowed

    app.vault.erase_subject(SUBJECT, subject_id)

    with pytest.raises(NotFound):
        app.vault.read(SUBJECT, subject_id, "self_service", ("user.name",))
    assert app.vault.purge_erased() >= 1
