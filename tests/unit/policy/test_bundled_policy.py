"""What the bundled policy says, for clauses decided by content more than by logic."""

from datetime import UTC, datetime
from types import MappingProxyType

import pytest

from piguard.policy import scopes
from piguard.policy.decide import DecisionEngine
from piguard.policy.decision import Actor, DecisionRequest, RecipientView, SubjectState
from piguard.policy.model import (
    Action,
    ActorKind,
    Basis,
    ConsentType,
    Obligation,
    Policy,
    RetentionTrigger,
)
from piguard.sharing.registry import RecipientRegistry

PAYMENT = Actor(ActorKind.SERVICE, "payment_service")
COMPLAINTS = Actor(ActorKind.SERVICE, "complaints_liaison_service", case_reference="消保-2026-001")
DILIGENCE = Actor(ActorKind.SERVICE, "due_diligence_service", case_reference="ipo-2026-001")


def test_p2_real_name_aml_and_risk_control_rest_on_legal_obligation(policy: Policy) -> None:
    assert policy.purposes["kyc_aml"].basis is Basis.LEGAL_OBLIGATION
    assert policy.purposes["risk_control"].basis is Basis.LEGAL_OBLIGATION
    assert "P2" in policy.purposes["kyc_aml"].clauses


def test_c2_5_merchant_data_records_its_source(engine: DecisionEngine) -> None:
    d = engine.decide(
        DecisionRequest(
            Action.COLLECT, PAYMENT, "merchant_oversight", ("user.commerce.shipping_address",)
        )
    )
    assert d.allowed
    assert Obligation.RECORD_SOURCE in d.obligations


def test_c3_complaint_goes_to_consumer_protection_and_is_logged(engine: DecisionEngine) -> None:
    regulator = RecipientView("cbirc", "authority", "CN")
    cats = (
        "user.name",
        "user.government_id.national_identification_number",
        "user.content.complaint",
    )
    d = engine.decide(
        DecisionRequest(Action.SHARE, COMPLAINTS, "complaint_handling", cats, recipient=regulator)
    )
    assert d.allowed
    assert Obligation.DISCLOSURE_LOG in d.obligations
    assert "C3" in d.clauses


def test_c6_service_records_are_kept_as_the_law_requires(policy: Policy) -> None:
    records = policy.purposes["service_records"]
    assert records.basis is Basis.LEGAL_OBLIGATION
    closed = datetime(2020, 2, 29, tzinfo=UTC)
    assert records.retention.after is RetentionTrigger.ACCOUNT_CLOSED
    assert records.retention.ends(closed) == datetime(2025, 2, 28, tzinfo=UTC)
    assert not records.retention.operator_default  # the AML law's period, not the operator's


def test_k1_only_strictly_necessary_cookies_are_on_without_consent(policy: Policy) -> None:
    necessary = [c.key for c in policy.cookies.values() if c.necessary]
    assert necessary == ["strictly_necessary"]
    assert {"security", "functional", "analytics"} <= set(policy.cookies)


def test_k2_beacons_only_after_analytics_consent(engine: DecisionEngine, policy: Policy) -> None:
    assert "K2" in policy.cookies["analytics"].clauses
    web = Actor(ActorKind.SERVICE, "web_service")
    cats = ("user.behavior.browsing_history",)
    without = engine.decide(DecisionRequest(Action.COLLECT, web, "web_analytics", cats))
    consented = SubjectState(
        consents=MappingProxyType({scopes.purpose_scope("web_analytics"): ConsentType.REGULAR})
    )
    with_consent = engine.decide(
        DecisionRequest(Action.COLLECT, web, "web_analytics", cats, consented)
    )
    assert not without.allowed
    assert with_consent.allowed


def test_k3_secure_proxy_is_a_security_exemption_without_consent(
    engine: DecisionEngine, policy: Policy
) -> None:
    assert policy.purposes["secure_proxy"].exemption == "service_security"
    security = Actor(ActorKind.SERVICE, "security_service")
    d = engine.decide(
        DecisionRequest(Action.COLLECT, security, "secure_proxy", ("user.device.hardware_id",))
    )
    assert d.allowed


def test_s3_incident_notice_has_the_four_required_parts(policy: Policy) -> None:
    parts = set(policy.incidents.notice_parts)
    assert {"what_happened", "impact", "measures", "advice", "remedies"} <= parts
    assert policy.incidents.regulator_report
    assert any(c.public for c in policy.channels.values())


def test_s4_wind_down_stops_notifies_and_erases(policy: Policy) -> None:
    steps = policy.wind_down.steps
    assert steps.index("stop_collection") < steps.index("erase_or_anonymise")
    assert "notify_subjects" in steps


def test_sh5_due_diligence_needs_a_confidentiality_agreement(engine: DecisionEngine) -> None:
    cats = ("user.name",)
    advisor = RecipientView("advisor", "due_diligence", "CN", assessed=True)
    bound = RecipientView("advisor", "due_diligence", "CN", assessed=True, agreement=True)
    refused = engine.decide(
        DecisionRequest(Action.SHARE, DILIGENCE, "due_diligence", cats, recipient=advisor)
    )
    allowed = engine.decide(
        DecisionRequest(Action.SHARE, DILIGENCE, "due_diligence", cats, recipient=bound)
    )
    assert [r.code for r in refused.reasons] == ["agreement_missing:advisor"]
    assert allowed.allowed
    assert allowed.show({"user.name": "张三"}) == {"user.name": "*三"}


def test_sh7_cross_border_transfer_is_logged_and_encrypted(engine: DecisionEngine) -> None:
    bank = RecipientView("hk_bank", "financial_institution", "HK", assessed=True, agreement=True)
    state = SubjectState(
        consents=MappingProxyType(
            {
                scopes.purpose_scope("cross_border_payment"): ConsentType.REGULAR,
                scopes.cross_border_scope("cross_border_payment"): ConsentType.REGULAR,
            }
        )
    )
    d = engine.decide(
        DecisionRequest(
            Action.SHARE, PAYMENT, "cross_border_payment", ("user.name",), state, recipient=bank
        )
    )
    assert d.allowed
    assert "SH7" in d.clauses
    assert {Obligation.CROSS_BORDER_LOG, Obligation.ENCRYPT_IN_TRANSIT} <= d.obligations


@pytest.mark.parametrize("right", ["delete", "correct", "inquiry", "complaint"])
def test_r5_r6_r7_p1_requests_are_verified_and_due_in_three_working_days(
    policy: Policy, right: str
) -> None:
    r = policy.rights[right]
    assert r.verification
    assert r.sla is not None
    assert (r.sla.working_days, r.sla.cap_days) == (3, 30)


def test_r7_closing_message_names_the_escalation_routes(policy: Policy) -> None:
    closing = policy.rights["correct"].closing
    assert "consumer-protection" in closing.en
    assert "消费者" in closing.zh


def test_r8_the_five_refusal_grounds_and_no_others(policy: Policy) -> None:
    assert set(policy.refusal_grounds) == {
        "national_security",
        "public_interest",
        "criminal_justice",
        "abuse",
        "harms_others",
    }
    assert all("R8" in g.clauses for g in policy.refusal_grounds.values())


def test_def1_affiliates_are_preregistered_with_agreements(policy: Policy) -> None:
    affiliates = [r for r in policy.recipients.values() if r.type == "affiliate"]
    assert {"ant_financial", "mybank"} <= {r.id for r in affiliates}
    assert all(r.agreement and r.assessed and r.region == "CN" for r in affiliates)


def test_c2_2_a_transfer_collects_the_payees_data_as_another_subjects(
    engine: DecisionEngine, policy: Policy
) -> None:
    payee = tuple(policy.purposes["transfer"].required)
    d = engine.decide(DecisionRequest(Action.COLLECT, PAYMENT, "transfer", payee))
    assert d.allowed  # contract: no consent asked of the payer
    assert [r.clause for r in d.reasons] == ["C2.2"]
    tagged = [c for c in payee if "payee" in policy.categories[c].tags]
    assert tagged == ["user.payee.account", "user.payee.name"]
    assert not engine.decide(
        DecisionRequest(Action.COLLECT, PAYMENT, "transfer", ("user.biometric.face",))
    ).allowed


def test_c6_service_records_are_collected_without_consent_and_refused_to_marketing(
    engine: DecisionEngine, policy: Policy
) -> None:
    records = tuple(sorted(policy.purposes["service_records"].categories))[:3]
    assert engine.decide(
        DecisionRequest(Action.COLLECT, PAYMENT, "service_records", records)
    ).allowed
    marketing = Actor(ActorKind.SERVICE, "marketing_service")
    refused = engine.decide(DecisionRequest(Action.READ, marketing, "service_records", records))
    assert [r.code for r in refused.reasons] == ["no_grant:marketing_service:read:service_records"]


def test_def1_an_affiliate_receives_only_with_the_subjects_consent_to_it(
    engine: DecisionEngine,
) -> None:
    from piguard.policies import bundled_policy_path
    from piguard.policy.language import load_policy

    mybank = RecipientRegistry(load_policy(bundled_policy_path())).view("mybank")
    marketing = Actor(ActorKind.SERVICE, "marketing_service")
    cats = ("user.behavior.search_history",)
    scope = scopes.purpose_scope("personalization")
    state = SubjectState(consents=MappingProxyType(dict.fromkeys((scope,), ConsentType.REGULAR)))
    to_bank = scopes.recipient_scope("mybank", "personalization")
    consented = SubjectState(
        consents=MappingProxyType(dict.fromkeys((scope, to_bank), ConsentType.REGULAR))
    )
    refused = engine.decide(
        DecisionRequest(Action.SHARE, marketing, "personalization", cats, state, recipient=mybank)
    )
    allowed = engine.decide(
        DecisionRequest(
            Action.SHARE, marketing, "personalization", cats, consented, recipient=mybank
        )
    )
    assert (mybank.type, mybank.registered, mybank.agreement) == ("affiliate", True, True)
    assert [r.code for r in refused.reasons] == [f"consent_required:{to_bank}"]
    assert allowed.allowed
