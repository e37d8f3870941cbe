"""Hostile callers against minors' protection (M1, R1), over HTTP.

A minor (born 2015) is registered by a linked guardian. Neither the minor nor another adult can
claim a guardian's consent, change the birth date that makes them a minor, or act on the guardian
routes; each refusal writes nothing.
"""

from __future__ import annotations

from datetime import date

import pytest
from hostile_support import BIRTH, ID_NUMBER, call, id_born, own_key, reasons, stored

from api.api_support import Api, new_person
from piguard.kernel.errors import InvalidInput

SPORTS = "purpose:sports"
ADULT_BIRTH = "1990-01-01"


@pytest.fixture(scope="module")
def family(api: Api) -> tuple[str, str]:
    """(guardian, minor): an adult and the 2015-born ward they registered."""
    guardian = api.register(new_person())
    values = new_person().values | {ID_NUMBER: id_born(date(2015, 6, 1), "731")}
    minor = api.as_subject(guardian).register_ward(guardian, values, "parent", "hukou:2026-0001")
    return guardian, minor


def test_m1_a_claimed_guardian_consent_type_is_422_and_writes_nothing(
    api: Api, family: tuple[str, str]
) -> None:
    guardian, minor = family
    rows = stored(api)
    claim = {"scope": SPORTS, "consent_type": "guardian"}

    own = call(api, own_key(api, minor), "POST", f"/v1/subjects/{minor}/consents", json=claim)
    ward = f"/v1/subjects/{guardian}/wards/{minor}/consents"
    linked = call(api, own_key(api, guardian), "POST", ward, json=claim)

    for answer in (own, linked):
        assert answer.status_code == 422
        assert answer.json()["field"] == "body.consent_type"
    assert stored(api) == rows


def test_m1_r1_a_minor_cannot_post_a_new_birth_date(api: Api, family: tuple[str, str]) -> None:
    _, minor = family
    token = own_key(api, minor)
    body = {"purpose": "self_service", "values": {BIRTH: ADULT_BIRTH}}
    rows = stored(api)

    posted = call(api, token, "POST", f"/v1/subjects/{minor}/values", json=body)
    patched = call(api, token, "PATCH", f"/v1/subjects/{minor}", json=body)
    # Nor can the account service on the minor's behalf, under registration's own purpose.
    kyc = {"purpose": "kyc_aml", "values": {BIRTH: ADULT_BIRTH}}
    by_service = call(api, api.token("account_service"), "PATCH", f"/v1/subjects/{minor}", json=kyc)

    for answer in (posted, patched, by_service):
        assert answer.status_code == 403
        assert reasons(answer) == [f"R1:immutable:{BIRTH}"]
    assert stored(api) == rows
    mine = api.as_subject(minor).read(minor, "self_service", [BIRTH])
    assert [v["value"] for v in mine["values"]] == ["2015-06-01"]


def test_m1_the_minors_own_key_is_refused_on_the_guardian_routes(
    api: Api, family: tuple[str, str]
) -> None:
    guardian, minor = family
    token = own_key(api, minor)
    grant = {"scope": SPORTS}
    ward = new_person().values | {ID_NUMBER: id_born(date(2016, 3, 3), "732")}
    rows = stored(api)

    as_itself = call(api, token, "POST", f"/v1/subjects/{minor}/wards/{minor}/consents", json=grant)
    registering = call(
        api,
        token,
        "POST",
        f"/v1/subjects/{minor}/wards",
        json={"values": ward, "relation": "parent", "evidence": "hukou:2026-0002"},
    )
    via_guardian = call(
        api, token, "POST", f"/v1/subjects/{guardian}/wards/{minor}/consents", json=grant
    )
    withdrawing = call(
        api, token, "POST", f"/v1/subjects/{guardian}/wards/{minor}/consents/withdraw", json=grant
    )

    for answer in (as_itself, registering):
        assert answer.status_code == 403
        assert reasons(answer) == ["M1:guardian_not_adult"]
    for answer in (via_guardian, withdrawing):
        assert answer.status_code == 404
        assert answer.json()["field"] == "subject_id"
    assert stored(api) == rows


def test_m1_another_adults_key_gets_404_like_a_missing_subject(
    api: Api, family: tuple[str, str]
) -> None:
    guardian, minor = family
    stranger = api.register(new_person())
    token = own_key(api, stranger)
    grant = {"scope": SPORTS}
    rows = stored(api)

    paths = [
        f"/v1/subjects/{guardian}/wards/{minor}/consents",
        f"/v1/subjects/{stranger}/wards/{minor}/consents",
        f"/v1/subjects/{stranger}/wards/{minor}/consents/withdraw",
        f"/v1/subjects/{minor}/consents",
    ]
    answers = [call(api, token, "POST", path, json=grant) for path in paths]
    missing = call(
        api, token, "POST", f"/v1/subjects/{stranger}/wards/sub_404/consents", json=grant
    )
    reading = call(api, token, "GET", f"/v1/subjects/{minor}", params={"purpose": "self_service"})

    for answer in [*answers, reading]:
        assert answer.status_code == 404, answer.text
        assert answer.json() == missing.json()
    assert stored(api) == rows
    # The guardian's own consent still works: the refusals above were about who asked.
    api.as_subject(guardian).grant_for_ward(guardian, minor, SPORTS)
    assert stored(api)["consent_events"] == rows["consent_events"] + 1


def test_m1_the_guardian_role_is_never_issued_as_a_key(api: Api) -> None:
    """piguard makes an adult a guardian per request, from a recorded link; a key for the role
    would be a standing claim to be anyone's guardian."""
    adult = api.register(new_person())
    guardian = api.piguard.policy.bindings.guardian_role
    assert guardian is not None

    for bound in (adult, None):
        with pytest.raises(InvalidInput) as refused:
            api.piguard.api_keys.create(guardian, "claimed guardian", bound)

        assert refused.value.field == "role"
        assert guardian not in str(refused.value.allowed).split(", ")
    assert "subject" in str(refused.value.allowed).split(", ")  # the adult's own key instead
