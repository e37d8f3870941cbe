"""/v1/decide: the engine's answer with its reasons, for the authenticated caller only."""

from __future__ import annotations

import hashlib

import pytest
from api_support import NAME, PHONE, Api, Person, new_person

from piguard.client import PiguardApiError
from piguard.policy.decision import Actor
from piguard.policy.model import ActorKind

BANK = {"id": "icbc_test", "type": "financial_institution", "region": "CN"}


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


def test_sh0_recipient_facts_come_from_the_registry_never_the_caller(
    api: Api, person: Person
) -> None:
    subject_id = api.register(person)
    me = api.as_subject(subject_id)
    for scope in ("purpose:pay_later", "share:sesame_credit:pay_later"):
        me.grant_consent(subject_id, scope)
    pay_later = api.as_role("pay_later_service")
    ask = {"subject_id": subject_id}

    registered = pay_later.decide("share", "pay_later", [PHONE], recipient="sesame_credit", **ask)
    unknown = pay_later.decide("share", "pay_later", [PHONE], recipient="icbc_test", **ask)
    with pytest.raises(PiguardApiError) as claimed:
        pay_later.decide(
            "share", "pay_later", [PHONE], recipient={**BANK, "agreement": True}, **ask
        )

    assert registered["effect"] == "allow"
    assert {"clause": "SH0", "code": "recipient_checked"} in registered["reasons"]
    assert unknown["reasons"] == [{"clause": "SH0", "code": "recipient_unregistered:<input>"}]
    assert (claimed.value.status, claimed.value.field) == (422, "body.recipient")


def test_s1_a_claimed_region_never_makes_a_transfer_domestic(api: Api, person: Person) -> None:
    subject_id = api.register(person)
    me = api.as_subject(subject_id)
    for scope in ("purpose:pay_later", "share:sesame_credit:pay_later"):
        me.grant_consent(subject_id, scope)
    pay_later = api.as_role("pay_later_service")
    ask = {"subject_id": subject_id, "recipient": "sesame_credit"}

    home = pay_later.decide("share", "pay_later", [PHONE], region="CN", **ask)
    abroad = pay_later.decide("share", "pay_later", [PHONE], region="US", **ask)

    assert home["effect"] == "allow"
    assert abroad["reasons"] == [{"clause": "S1", "code": "not_cross_border_business:pay_later"}]


def test_c8_exemptions_only_for_the_roles_and_purposes_the_policy_names(api: Api) -> None:
    security = api.as_role("security_service")
    marketing = api.as_role("marketing_service")
    cats = ["user.device.ip_address"]

    unknown = security.decide("read", "fault_handling", cats, exemption="curiosity")
    borrowed = security.decide(
        "read", "fault_handling", cats, exemption="criminal_justice", case_reference="c-1"
    )
    own = security.decide("read", "fault_handling", cats, exemption="service_security")
    claimed = marketing.decide(
        "read",
        "personalization",
        ["user.behavior.search_history"],
        exemption="criminal_justice",
        case_reference="case-2024-17",
        authority="bj-psb",
    )

    assert unknown["reasons"] == [{"clause": "C8", "code": "unknown_exemption:<input>"}]
    assert borrowed["reasons"] == [
        {"clause": "C8", "code": "exemption_not_granted:criminal_justice:security_service"}
    ]
    assert own["effect"] == "allow"
    assert {"clause": "C8", "code": "exemption"} in own["reasons"]
    assert claimed["reasons"] == [
        {"clause": "C8", "code": "exemption_not_granted:criminal_justice:marketing_service"}
    ]


def test_u2_decide_refuses_undeclared_purposes_and_others_subjects(api: Api) -> None:
    first, second = api.register(new_person()), api.register(new_person())

    with pytest.raises(PiguardApiError) as unknown:
        api.as_role("payment_service").decide("collect", "telepathy", [PHONE])
    with pytest.raises(PiguardApiError) as other:
        api.as_subject(second).decide("read", "self_service", [NAME], subject_id=first)
    with pytest.raises(PiguardApiError) as gone:
        api.as_role("payment_service").decide(
            "read", "quick_pay", [NAME], subject_id="sub_00000000000000000000000000000000"
        )

    assert (unknown.value.status, unknown.value.field) == (422, "body.purpose")  # the schema's enum
    assert other.value.status == gone.value.status == 404


def test_c8_a_use_under_an_exemption_is_audited_as_such(api: Api) -> None:
    head = api.audit_head()

    api.as_role("security_service").decide(
        "read", "fault_handling", ["user.device.ip_address"], exemption="service_security"
    )

    [(actor, purpose, effect, detail)] = api.audit_since(head)
    assert actor.startswith("service:security_service:")
    assert (purpose, effect, detail) == (
        "fault_handling",
        "allow",
        "decide:exemption:service_security",
    )


def test_c8_sh4_the_case_reference_and_authority_are_recorded_with_the_use(api: Api) -> None:
    subject = api.register(new_person())
    head = api.audit_head()
    api.as_role("authority").decide(
        "read",
        "legal_request",
        [NAME],
        exemption="criminal_justice",
        case_reference="bj-2026-xingchu-123",
        authority="bj-psb",
    )
    [(_, _, effect, detail)] = api.audit_since(head)
    # A reference outside the code alphabet (as a court's own numbering) is kept by its digest.
    court_case = "(2026)京01刑初123号"
    head = api.audit_head()
    api.piguard.vault.read(
        Actor(ActorKind.AUTHORITY, "authority", case_reference=court_case),
        subject,
        "legal_request",
        (NAME,),
    )
    [(_, _, _, by_digest)] = api.audit_since(head)

    assert (effect, detail) == (
        "allow",
        "decide:exemption:criminal_justice:case:bj-2026-xingchu-123:authority:bj-psb",
    )
    digest = hashlib.sha256(court_case.encode()).hexdigest()[:16]
    assert by_digest.endswith(f":case-sha256:{digest}")


def test_s2_decide_answers_and_audit_records_never_keep_the_callers_text(api: Api) -> None:
    head = api.audit_head()
    phone = "13912345678"

    exempt = api.as_role("marketing_service").decide(
        "read", "personalization", ["user.behavior.search_history"], exemption=phone
    )
    shared = api.as_role("payment_service").decide(
        "share", "quick_pay", ["user.financial.bank_account"], recipient=phone
    )
    records = api.audit_since(head)

    assert exempt["reasons"] == [{"clause": "C8", "code": "unknown_exemption:<input>"}]
    assert shared["reasons"][0]["code"] == "recipient_unregistered:<input>"
    assert phone not in str(exempt) + str(shared) + str(records)
    assert {detail for *_, detail in records} == {"decide"}
