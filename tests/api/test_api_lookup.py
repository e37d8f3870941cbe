"""C2.3: finding an account by phone or email, through the blind index, unless switched off."""

from __future__ import annotations

import pytest
from api_support import EMAIL, ID_NUMBER, PHONE, Api, Person, new_person

from piguard.client import PiguardApiError

DISCOVERY = "discoverable_by_phone_email"


def _not_found(api: Api, category: str, value: str) -> PiguardApiError:
    with pytest.raises(PiguardApiError) as caught:
        api.as_role("account_service").lookup(category, value)
    return caught.value


def test_c2_3_lookup_by_phone_finds_the_account_masked(api: Api, person: Person) -> None:
    subject_id = api.register(person)
    spaced = f"+86 {person.phone[:3]} {person.phone[3:7]} {person.phone[7:]}"

    found = api.as_role("account_service").lookup(PHONE, person.phone)
    again = api.as_role("account_service").lookup(PHONE, spaced)

    assert found["subject_id"] == again["subject_id"] == subject_id
    [value] = found["values"]
    assert value["category"] == PHONE
    assert value["value"].endswith(person.phone[-4:])
    assert person.phone not in value["value"]


def test_c2_3_switched_off_lookup_looks_like_no_account(api: Api, person: Person) -> None:
    subject_id = api.register(person)
    me = api.as_subject(subject_id)
    assert me.settings(subject_id)[DISCOVERY] is True

    changed = me.change_settings(subject_id, {DISCOVERY: False}, channel="app")
    hidden = _not_found(api, PHONE, person.phone)
    never = _not_found(api, PHONE, new_person().phone)

    assert changed[DISCOVERY] is False
    assert hidden.status == never.status == 404
    assert (hidden.code, hidden.message_en, hidden.message_zh, hidden.field) == (
        never.code,
        never.message_en,
        never.message_zh,
        never.field,
    )
    me.change_settings(subject_id, {DISCOVERY: True})
    assert api.as_role("account_service").lookup(PHONE, person.phone)["subject_id"] == subject_id


def test_c2_3_lookup_by_email_after_collection(api: Api, person: Person) -> None:
    subject_id = api.register(person)
    api.as_role("account_service").change_identifiers(
        subject_id, {EMAIL: person.email}, evidence="email-link:1"
    )

    found = api.as_role("account_service").lookup(EMAIL, person.email.replace("example", "EXAMPLE"))

    assert found["subject_id"] == subject_id
    assert found["values"][0]["value"].endswith("@example.com")
    assert person.email not in found["values"][0]["value"]


def test_c2_3_only_lookup_categories_can_be_looked_up(api: Api, person: Person) -> None:
    api.register(person)

    with pytest.raises(PiguardApiError) as caught:
        api.as_role("account_service").lookup(ID_NUMBER, person.id_number)

    assert (caught.value.status, caught.value.field) == (422, "category")
    assert person.id_number not in caught.value.message_en


def test_c2_3_s2_no_plaintext_anywhere_on_disk(api: Api, person: Person) -> None:
    subject_id = api.register(person)
    api.as_role("account_service").lookup(PHONE, person.phone)
    api.piguard.audit.flush()

    stored = b"".join(p.read_bytes() for p in sorted(api.var_dir.rglob("*")) if p.is_file())

    assert len(stored) > 0
    assert subject_id.encode() in stored  # the pseudonym is there: we did read the right files
    secrets = (
        person.phone,
        "+86" + person.phone,
        person.id_number,
        person.bank_account,
        person.name,
        person.address,
    )
    for secret in secrets:
        for encoding in ("utf-8", "utf-16-le"):
            assert secret.encode(encoding) not in stored, secret
