"""/v1/decide: the engine's answer with its reasons, for the authenticated caller only."""

from __future__ import annotations

import pytest
from api_support import BANK_ACCOUNT, ID_NUMBER, NAME, PHONE, Api, Person, new_person

from piguard.client import PiguardApiError

BANK = {"id": "icbc_test", "type": "financial_institution", "region": "CN"}
CARD_CHECK = [BANK_ACCOUNT, NAME, ID_NUMBER]


def test_s2_def2_decide_answers_with_projection_and_reasons(api: Api) -> None:
    answer = api.as_role("customer_service_agent").decide("read", "customer_service", [PHONE, NAME])

    assert answer["effect"] == "allow"
    assert answer["actor"] == {"kind": "staff", "role": "customer_service_agent"}
    assert answer["projection"][PHONE] == {"kind": "masked", "operator": "keep_ends(3,4)"}
    assert answer["projection"][NAME] == {"kind": "masked", "operator": "name"}
    assert {"clause": "S2", "code": "allow:customer_service_agent:customer_service"} in answer[
        "reasons"
    ]
    assert answer["policy_version"] == api.piguard.policy.key
    assert "audit" in answer["obligations"]


def test_s2_a_denial_is_an_answer_and_is_audited(api: Api) -> None:
    head = api.audit_head()

    answer = api.as_role("marketing_service").decide("read", "kyc_aml", [NAME])

    assert answer["effect"] == "deny"
    assert answer["reasons"] == [
        {"clause": "S2", "code": "no_grant:marketing_service:read:kyc_aml"}
    ]
    assert answer["projection"] == {}
    [(actor, purpose, effect, detail)] = api.audit_since(head)
    assert actor.startswith("service:marketing_service:")
    assert (purpose, effect, detail) == ("kyc_aml", "deny", "decide")


def test_s2_the_actor_cannot_be_spoofed(api: Api) -> None:
    with api.raw() as raw:
        raw.headers["Authorization"] = f"Bearer {api.token('marketing_service')}"
        spoofs = [
            {"action": "read", "purpose": "kyc_aml", "categories": [NAME], "actor": extra}
            for extra in ({"kind": "staff", "role": "aml_officer"}, "aml_officer")
        ] + [{"action": "read", "purpose": "kyc_aml", "categories": [NAME], "role": "aml_officer"}]
        answers = [raw.post("/v1/decide", json=body) for body in spoofs]

    for answer in answers:
        assert answer.status_code == 422
        assert answer.json()["code"] == "invalid_input"
        assert answer.json()["field"] in ("body.actor", "body.role")
    honest = api.as_role("marketing_service").decide("read", "kyc_aml", [NAME])
    assert honest["actor"]["role"] == "marketing_service"
    assert honest["effect"] == "deny"


def test_c5_decide_uses_the_subjects_current_state(api: Api, person: Person) -> None:
    subject_id = api.register(person)
    marketing = api.as_role("marketing_service")
    ask = {"subject_id": subject_id}

    without = marketing.decide("read", "personalization", ["user.behavior.search_history"], **ask)
    api.as_subject(subject_id).grant_consent(subject_id, "purpose:personalization")
    granted = marketing.decide("read", "personalization", ["user.behavior.search_history"], **ask)
    hypothetical = marketing.decide("read", "personalization", ["user.behavior.search_history"])

    assert without["effect"] == "deny"
    assert without["reasons"][0]["clause"] == "C5"
    assert granted["effect"] == "allow"
    assert hypothetical["effect"] == "deny"


def test_sh0_outbound_decisions_check_the_recipient(api: Api) -> None:
    payments = api.as_role("payment_service")

    unchecked = payments.decide("share", "quick_pay", CARD_CHECK, recipient=BANK)
    checked = payments.decide(
        "share", "quick_pay", CARD_CHECK, recipient={**BANK, "assessed": True, "agreement": True}
    )
    unregistered = payments.decide(
        "share", "quick_pay", CARD_CHECK, recipient={**BANK, "registered": False}
    )

    assert unchecked["effect"] == "deny"
    assert unchecked["reasons"][0]["clause"] == "SH0"
    assert checked["effect"] == "allow"
    assert "encrypt_in_transit" in checked["obligations"]
    assert unregistered["reasons"] == [
        {"clause": "SH0", "code": "recipient_unregistered:icbc_test"}
    ]


def test_c8_exemption_needs_a_case_reference(api: Api) -> None:
    security = api.as_role("security_service")
    cats = ["user.device.ip_address"]

    unknown = security.decide("read", "fault_handling", cats, exemption="curiosity")
    without = security.decide("read", "fault_handling", cats, exemption="criminal_justice")
    with_ref = security.decide(
        "read", "fault_handling", cats, exemption="criminal_justice", case_reference="case-2024-17"
    )

    assert unknown["reasons"] == [{"clause": "C8", "code": "unknown_exemption:curiosity"}]
    assert without["reasons"] == [{"clause": "C8", "code": "case_reference_required"}]
    assert with_ref["effect"] == "allow"
    assert {"clause": "C8", "code": "exemption"} in with_ref["reasons"]


def test_u2_decide_refuses_undeclared_purposes_and_others_subjects(api: Api) -> None:
    first, second = api.register(new_person()), api.register(new_person())

    unknown = api.as_role("payment_service").decide("collect", "telepathy", [PHONE])
    with pytest.raises(PiguardApiError) as other:
        api.as_subject(second).decide("read", "self_service", [NAME], subject_id=first)
    with pytest.raises(PiguardApiError) as gone:
        api.as_role("payment_service").decide(
            "read", "quick_pay", [NAME], subject_id="sub_00000000000000000000000000000000"
        )

    assert unknown["effect"] == "deny"
    assert {"clause": "U2", "code": "unknown_purpose:telepathy"} in unknown["reasons"]
    assert other.value.status == gone.value.status == 404
