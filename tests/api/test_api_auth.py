"""Authentication (401) and the policy's least-privilege grants (S2: 403 with reasons)."""

from __future__ import annotations

import pytest
from api_support import ID_NUMBER, NAME, Api, Person

from piguard.client import PiguardApiError
from piguard.kernel.errors import InvalidInput


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "Bearer not-a-token",
        "Bearer pgk_key_000000000000000000000000000000.secret",
        "Bearer " + "x" * 5000,
    ],
)
def test_s2_missing_or_bad_token_is_401(api: Api, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    with api.raw() as raw:
        answer = raw.get("/v1/subjects/sub_x", params={"purpose": "kyc_aml"}, headers=headers)

    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    body = answer.json()
    assert (body["code"], body["field"]) == ("unauthenticated", "Authorization")
    assert body["message"]["zh"]
    assert body["message"]["en"]


def test_s2_tampered_and_revoked_keys_are_401(api: Api, person: Person) -> None:
    subject_id = api.register(person)
    issued = api.piguard.api_keys.create("customer_service_agent", "to revoke")
    client = api.client(issued.token)
    tampered = api.client(issued.token[:-2] + ("AA" if issued.token[-2:] != "AA" else "BB"))
    assert client.read(subject_id, "customer_service", [NAME])["decision"]["effect"] == "allow"

    api.piguard.api_keys.revoke(issued.key_id)

    for who in (client, tampered):
        with pytest.raises(PiguardApiError) as caught:
            who.read(subject_id, "customer_service", [NAME])
        assert (caught.value.status, caught.value.code) == (401, "unauthenticated")


def test_s2_role_without_grant_is_403_with_reasons(api: Api, person: Person) -> None:
    subject_id = api.register(person)
    head = api.audit_head()

    with pytest.raises(PiguardApiError) as caught:
        api.as_role("marketing_service").read(subject_id, "kyc_aml", [NAME, ID_NUMBER])

    assert (caught.value.status, caught.value.code) == (403, "denied")
    assert "S2:no_grant:marketing_service:read:kyc_aml" in caught.value.reasons
    assert "S2" in caught.value.message_en
    assert ("deny", "kyc_aml") in {(e, p) for _, p, e, _ in api.audit_since(head)}


def test_s2_staff_outside_its_grant_is_403(api: Api, person: Person) -> None:
    subject_id = api.register(person)

    with pytest.raises(PiguardApiError) as caught:
        api.as_role("auditor").read(subject_id, "service_records", [ID_NUMBER])

    assert caught.value.status == 403
    assert caught.value.field == ID_NUMBER
    assert any(r.startswith("S2:outside_grant:auditor") for r in caught.value.reasons)


def test_r1_subject_key_cannot_register_or_act_as_staff(api: Api, person: Person) -> None:
    subject_id = api.register(person)
    me = api.as_subject(subject_id)

    with pytest.raises(PiguardApiError) as registering:
        me.register({NAME: "冒名"})
    with pytest.raises(PiguardApiError) as as_staff:
        me.read(subject_id, "customer_service", [NAME])

    assert registering.value.status in (403, 422)
    assert as_staff.value.status == 403
    assert any(r.startswith("S2:no_grant:subject") for r in as_staff.value.reasons)


def test_m1_the_guardian_role_is_never_issued_as_a_key(api: Api, person: Person) -> None:
    adult = api.register(person)

    with pytest.raises(InvalidInput) as refused:
        api.piguard.api_keys.create("guardian", "claimed guardian", adult)

    assert refused.value.field == "role"
    assert "guardian" not in (refused.value.allowed or "").split(", ")
