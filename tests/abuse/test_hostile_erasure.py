"""Hostile callers against erasure (S2, R3, R4, C7) and identifiers (R1, C2.3), over HTTP.

A service granted `erase` for its own purpose must never cancel an account nor reach another
purpose's copies; identifiers and registration fields are written only where the policy says.
"""

from __future__ import annotations

import pytest
from hostile_support import DOCUMENT, ID_NUMBER, call, own_key, reasons, stored

from api.api_support import PHONE, Api, new_person, valid_value
from piguard.policy import scopes
from piguard.policy.model import Action, Policy

LOW_CARBON = "user.behavior.low_carbon_activity"
ENERGY = "user.behavior.green_energy"
SCAN = "scan:kyc-front-0001.png"


def _values(api: Api, token: str, subject: str, purpose: str, cats: str) -> dict[str, object]:
    answer = call(
        api,
        token,
        "GET",
        f"/v1/subjects/{subject}",
        params={"purpose": purpose, "categories": cats},
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def _forest_member(api: Api) -> str:
    """A subject who consented to Ant Forest, with energy collected by the forest service and a
    copy of the energy they entered themselves (self-service)."""
    subject = api.register(new_person())
    me = api.as_subject(subject)
    me.grant_consent(subject, scopes.purpose_scope("ant_forest"))
    forest = api.as_role("forest_service")
    policy = api.piguard.policy
    forest.collect(
        subject,
        "ant_forest",
        {LOW_CARBON: valid_value(policy, LOW_CARBON, 12), ENERGY: valid_value(policy, ENERGY, 120)},
    )
    me.collect(subject, "self_service", {ENERGY: valid_value(policy, ENERGY, 118)})
    return subject


def test_s2_r4_a_service_cannot_cancel_an_account_with_its_erase_grant(
    api: Api, policy: Policy
) -> None:
    subject = _forest_member(api)
    held, rows = api.held_for(subject), stored(api)
    token = api.token("forest_service")

    answer = call(api, token, "DELETE", f"/v1/subjects/{subject}", params={"purpose": "ant_forest"})
    default = call(api, token, "DELETE", f"/v1/subjects/{subject}")

    assert answer.status_code == default.status_code == 403
    assert "S2:no_grant:forest_service:erase_subject:ant_forest" in reasons(answer)
    assert "S2:no_grant:forest_service:erase_subject:self_service" in reasons(default)
    assert (api.held_for(subject), stored(api)) == (held, rows)
    mine = _values(api, api.token("aml_officer"), subject, "kyc_aml", ID_NUMBER)
    assert [v["category"] for v in mine["values"]] == [ID_NUMBER]
    # Only the roles the policy grants `erase_subject` could have done it (R4, R5).
    grantees = {
        r.key for r in policy.roles.values() for g in r.grants if Action.ERASE_SUBJECT in g.actions
    }
    assert grantees == {"subject", "privacy_officer"}


def test_c7_r3_an_erase_without_categories_removes_only_its_purposes_copies(api: Api) -> None:
    subject = _forest_member(api)
    before = api.held_for(subject)

    answer = call(
        api,
        api.token("forest_service"),
        "DELETE",
        f"/v1/subjects/{subject}/values",
        params={"purpose": "ant_forest"},
    )

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"deleted": 2}
    assert api.held_for(subject)["personal_values"] == before["personal_values"] - 2
    kept = _values(api, own_key(api, subject), subject, "self_service", f"{ENERGY},{LOW_CARBON}")
    assert [(v["category"], v["purposes"]) for v in kept["values"]] == [(ENERGY, ["self_service"])]


@pytest.mark.parametrize("categories", ["", ",", " "])
def test_c7_r3_an_empty_category_list_is_422_never_nothing_to_check(
    api: Api, categories: str
) -> None:
    subject = _forest_member(api)
    held, rows = api.held_for(subject), stored(api)
    params = {"purpose": "ant_forest", "categories": categories}
    path = f"/v1/subjects/{subject}/values"

    answer = call(api, api.token("marketing_service"), "DELETE", path, params=params)

    assert answer.status_code == 422
    assert answer.json()["field"] == "query.categories"
    assert (api.held_for(subject), stored(api)) == (held, rows)


def test_c7_c1_2_the_wallets_erase_leaves_the_kyc_copy_of_a_document(api: Api) -> None:
    subject = api.register(new_person())
    api.as_role("account_service").collect(subject, "kyc_aml", {DOCUMENT: SCAN})
    api.as_subject(subject).grant_consent(subject, scopes.purpose_scope("certificate_wallet"))
    wallet = api.as_role("certificate_wallet_service")
    wallet.collect(subject, "certificate_wallet", {DOCUMENT: "wallet:id-card-0001.png"})

    deleted = wallet.erase_values(subject, "certificate_wallet", [DOCUMENT])

    assert deleted == 1
    aml = _values(api, api.token("aml_officer"), subject, "kyc_aml", DOCUMENT)
    assert [(v["value"], v["purposes"]) for v in aml["values"]] == [(SCAN, ["kyc_aml"])]
    # The wallet's own copy is gone; what it still sees is the KYC copy, readable under its
    # purpose because the subject consented to that purpose (U3).
    seen = _values(
        api, api.token("certificate_wallet_service"), subject, "certificate_wallet", DOCUMENT
    )
    assert [v["purposes"] for v in seen["values"]] == [["kyc_aml"]]


# -- identifiers and registration fields (R1, C2.3) ---------------------------------------------


def _phone_writes(subject: str, phone: str) -> list[tuple[str, str, dict[str, object]]]:
    """Every way a subject might try to put a phone number on its own record."""
    path = f"/v1/subjects/{subject}"
    return [
        ("POST", f"{path}/values", {"purpose": "self_service", "values": {PHONE: phone}}),
        ("PATCH", path, {"purpose": "self_service", "values": {PHONE: phone}}),
        ("PUT", f"{path}/identifiers", {"values": {PHONE: phone}, "evidence": "sms-otp:0001"}),
    ]


def test_r1_c2_3_someone_elses_phone_gets_the_same_answer_as_a_fresh_one(api: Api) -> None:
    owner, prober = new_person(), new_person()
    api.register(owner)
    subject = api.register(prober)
    token = own_key(api, subject)
    fresh = new_person().phone
    rows = stored(api)

    for (method, path, taken_body), (_, _, fresh_body) in zip(
        _phone_writes(subject, owner.phone), _phone_writes(subject, fresh), strict=True
    ):
        taken = call(api, token, method, path, json=taken_body)
        other = call(api, token, method, path, json=fresh_body)
        assert taken.status_code != 409, (method, path)
        assert (taken.status_code, taken.json()) == (other.status_code, other.json())
    assert stored(api) == rows


def test_r1_no_route_replaces_the_id_number(api: Api, policy: Policy) -> None:
    person = new_person()
    subject = api.register(person)
    other_id = new_person().id_number
    rows = stored(api)
    # Every write grant that covers the ID number, and the identifier route, as each role.
    tries: list[tuple[str, str, str, dict[str, object]]] = []
    for role in policy.roles.values():
        if role.key == "guardian":
            continue  # acts through the ward routes only
        for grant in role.grants:
            if ID_NUMBER not in grant.categories:
                continue
            body = {"purpose": grant.purpose, "values": {ID_NUMBER: other_id}}
            if Action.COLLECT in grant.actions:
                tries.append((role.key, "POST", f"/v1/subjects/{subject}/values", body))
            if Action.UPDATE in grant.actions:
                tries.append((role.key, "PATCH", f"/v1/subjects/{subject}", body))
    assert {r for r, *_ in tries} >= {"subject", "account_service", "privacy_officer"}
    # With every consent in place, only R1 can refuse.
    me = api.as_subject(subject)
    for purpose in sorted({str(b["purpose"]) for *_, b in tries}):
        me.grant_consent(subject, scopes.purpose_scope(purpose))
    rows = stored(api)
    change = {"values": {ID_NUMBER: other_id}, "evidence": "sms-otp:0002"}
    tries += [
        (r, "PUT", f"/v1/subjects/{subject}/identifiers", change)
        for r in ("account_service", "subject")
    ]

    for role, method, path, body in tries:
        token = own_key(api, subject) if role == "subject" else api.token(role)
        answer = call(api, token, method, path, json=body)
        assert answer.status_code in (403, 422), (role, method, path, answer.text)
        if answer.status_code == 403:
            assert any(r.startswith(f"R1:immutable:{ID_NUMBER}") for r in reasons(answer)), (
                role,
                path,
                reasons(answer),
            )

    assert stored(api) == rows
    mine = _values(api, api.token("aml_officer"), subject, "kyc_aml", ID_NUMBER)
    assert [v["value"] for v in mine["values"]] == [person.id_number]


def test_r1_c1_1_a_second_account_cannot_take_the_first_accounts_id_number(api: Api) -> None:
    first = new_person()
    api.register(first)
    second = new_person().values | {ID_NUMBER: first.id_number}
    rows = stored(api)

    answer = call(
        api, api.token("account_service"), "POST", "/v1/subjects", json={"values": second}
    )

    assert answer.status_code == 409
    assert answer.json()["field"] == ID_NUMBER
    assert first.id_number not in answer.text
    assert stored(api) == rows


def test_r1_c2_3_identifiers_change_only_through_their_own_route(api: Api) -> None:
    subject = api.register(new_person())
    rows = stored(api)
    body = {"purpose": "identifier_change", "values": {PHONE: new_person().phone}}

    answer = call(api, api.token("account_service"), "PATCH", f"/v1/subjects/{subject}", json=body)

    # PATCH carries no verification's reference: only PUT /identifiers can (R1, C2.3).
    assert answer.status_code == 403, answer.text
    assert reasons(answer) == ["R1:verification_required:identifier_change"]
    assert stored(api) == rows


# -- the audit log holds any accepted request: it never costs the subject its rights (R1, R4) -----


def _well_stocked(api: Api, policy: Policy) -> tuple[str, str]:
    """A subject who entered, in one request, a value for every self-service category it may
    write."""
    subject = api.register(new_person())
    token = own_key(api, subject)
    purpose = policy.purposes["self_service"]
    cats = [c for c in purpose.categories if not policy.categories[c].immutable]
    cats = [c for c in cats if policy.categories[c].change_purpose is None]
    n = new_person().n
    body = {"purpose": "self_service", "values": {c: valid_value(policy, c, n) for c in cats}}
    answer = call(api, token, "POST", f"/v1/subjects/{subject}/values", json=body)
    assert answer.status_code == 201, answer.text
    assert len(answer.json()["value_ids"]) == len(cats) > 20
    return subject, token


def test_r4_a_subject_holding_many_categories_can_still_cancel(api: Api, policy: Policy) -> None:
    subject, token = _well_stocked(api, policy)

    refused = call(api, api.token("forest_service"), "DELETE", f"/v1/subjects/{subject}")
    cancelled = call(api, token, "DELETE", f"/v1/subjects/{subject}")

    assert refused.status_code == 403, refused.text
    assert cancelled.status_code == 204, cancelled.text
    assert api.held_for(subject)["data_keys"] == 0


def test_r1_the_subjects_default_view_of_itself_is_answered(api: Api) -> None:
    person = new_person()
    subject = api.register(person)

    answer = call(
        api,
        own_key(api, subject),
        "GET",
        f"/v1/subjects/{subject}",
        params={"purpose": "self_service"},
    )

    assert answer.status_code == 200, answer.text
    assert person.id_number in answer.text
