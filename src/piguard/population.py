"""A synthetic population for the demo and benchmarks: Faker zh_CN people, valid identifiers,
varied consents and settings. Everything goes through the services, like a real platform."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from faker import Faker

from piguard.bootstrap import Piguard
from piguard.consent.service import Provenance
from piguard.kernel.errors import InvalidInput
from piguard.policy import scopes
from piguard.policy.decision import Actor
from piguard.policy.model import ActorKind, ConsentType
from piguard.vault.identifiers import cn_mobile, cn_resident_id

ACCOUNT_SERVICE = Actor(ActorKind.SERVICE, "account_service", principal="demo-seed")
OPTIONAL = ("personalization", "pay_later", "ant_forest", "sports", "marketing_sms", "face_login")
SETTINGS = ("discoverable_by_phone_email", "location_collection", "marketing_sms")


@dataclass(frozen=True, slots=True)
class Person:
    name: str
    id_number: str
    phone: str
    email: str
    address: str
    bank_card: str

    def registration(self) -> dict[str, str]:
        return {
            "user.name": self.name,
            "user.government_id.national_identification_number": self.id_number,
            "user.contact.phone_number": self.phone,
            "user.contact.email": self.email,
            "user.contact.address": self.address,
            "user.financial.bank_account": self.bank_card,
        }


def people(count: int, seed: int = 2017) -> Iterator[Person]:
    """`count` distinct synthetic people with identifiers that pass validation."""
    fake = Faker("zh_CN")
    fake.seed_instance(seed)
    seen: set[str] = set()
    made = 0
    while made < count:
        id_number, email = _valid(cn_resident_id, fake.ssn()), fake.unique.email()
        phone = _valid(cn_mobile, fake.phone_number())
        if id_number is None or phone is None or {id_number, phone} & seen:
            continue
        seen.update((id_number, phone))
        made += 1
        yield Person(fake.name(), id_number, phone, email, fake.address(), _card(fake))


def _valid(validator: Callable[[str, str], str], raw: str) -> str | None:
    """The stored form of an identifier Faker made, or None when the vault would refuse it."""
    try:
        return validator(raw, "synthetic")
    except InvalidInput:
        return None


def _card(fake: Faker) -> str:
    return str(fake.credit_card_number(card_type="unionpay"))


def seed_population(
    app: Piguard, count: int, on_person: Callable[[], None] | None = None, seed: int = 2017
) -> list[str]:
    """Register `count` people and give them varied consents and settings; returns their ids."""
    rng = random.Random(seed)  # noqa: S311 - synthetic data, not security
    ids: list[str] = []
    for person in people(count, seed):
        subject_id = app.vault.register(ACCOUNT_SERVICE, person.registration())
        for purpose in rng.sample(OPTIONAL, rng.randint(0, 3)):
            app.consents.grant(
                ACCOUNT_SERVICE,
                subject_id,
                scopes.purpose_scope(purpose),
                ConsentType.REGULAR,
                Provenance("app", "checkbox", "demo-seed"),
            )
        switched = {s: False for s in SETTINGS if rng.random() < 0.15}
        if switched:
            app.consents.change_settings(ACCOUNT_SERVICE, subject_id, switched, channel="app")
        ids.append(subject_id)
        if on_person is not None:
            on_person()
    return ids
