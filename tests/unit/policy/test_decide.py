"""The decision engine against the bundled policy, clause family by clause family."""

from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import pytest

from piguard.policy import scopes
from piguard.policy.decide import DecisionEngine
from piguard.policy.decision import (
    Actor,
    Authorisation,
    Decision,
    DecisionRequest,
    Effect,
    ProjectionKind,
    RecipientView,
    SubjectState,
)
from piguard.policy.model import Action, ActorKind, ConsentType, Obligation, Policy

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
ACCOUNT = Actor(ActorKind.SERVICE, "account_service")
PAYMENT = Actor(ActorKind.SERVICE, "payment_service")
MARKETING = Actor(ActorKind.SERVICE, "marketing_service")
FOREST = Actor(ActorKind.SERVICE, "forest_service")
LEGAL = Actor(ActorKind.SERVICE, "legal_response_service")
PROMOTIONS = Actor(ActorKind.SERVICE, "promotions_service")
TRANSFERS = Actor(ActorKind.SERVICE, "business_transfer_service", case_reference="merger-2026-1")
AGENT = Actor(ActorKind.STAFF, "customer_service_agent")
SUBJECT = Actor(ActorKind.SUBJECT, "subject")
AUTHORITY = Actor(ActorKind.AUTHORITY, "authority", case_reference="(2026)京01刑初123号")
MYBANK = RecipientView("mybank", "affiliate", "CN", assessed=True, agreement=True)
PHONE = "user.contact.phone_number"
NAME = "user.name"
ID_NUMBER = "user.government_id.national_identification_number"
LOCATION = "user.location.precise"


def consents(*scope_list: str, kind: ConsentType = ConsentType.REGULAR) -> SubjectState:
    return SubjectState(consents=MappingProxyType(dict.fromkeys(scope_list, kind)))


def ask(
    engine: DecisionEngine, action: Action, actor: Actor, purpose: str, *cats: str, **kw: Any
) -> Decision:
    return engine.decide(DecisionRequest(action, actor, purpose, tuple(cats), **kw))


def codes(decision: Decision) -> list[str]:
    return [r.code for r in decision.reasons]


# -- collection (C1–C8) --------------------------------------------------------------------------


def test_c1_1_registration_collects_required_categories_with_obligations(
    engine: DecisionEngine, policy: Policy
) -> None:
    required = policy.purposes["kyc_aml"].required
    d = ask(engine, Action.COLLECT, ACCOUNT, "kyc_aml", *required, registration=True)
    assert d.allowed
    assert {
        Obligation.ENCRYPT_AT_REST,
        Obligation.RECORD_PROVENANCE,
        Obligation.AUDIT,
    } <= d.obligations
    assert "C1.1" in d.clauses
    assert d.policy_version == "alipay-2017@2017-09-22"


def test_c1_1_undeclared_category_refused_with_u2(engine: DecisionEngine) -> None:
    d = ask(
        engine, Action.COLLECT, ACCOUNT, "kyc_aml", NAME, "user.biometric.face", registration=True
    )
    assert d.effect is Effect.DENY
    assert d.clauses == ("U2",)
    assert codes(d) == ["category_not_declared:kyc_aml:user.biometric.face"]


def test_c1_2_document_image_is_sensitive_and_collected_for_kyc(
    engine: DecisionEngine, policy: Policy
) -> None:
    assert policy.categories["user.government_id.document_image"].sensitive
    assert ask(
        engine, Action.COLLECT, ACCOUNT, "kyc_aml", "user.government_id.document_image"
    ).allowed


def test_c2_1_quick_pay_binding_is_contract_no_consent_needed(engine: DecisionEngine) -> None:
    card = ("user.financial.bank_account", "user.financial.bank_reserved_phone")
    assert ask(engine, Action.COLLECT, PAYMENT, "quick_pay", *card).allowed
    # The name and ID number it checks are read from registration, never written again (R1).
    assert ask(engine, Action.READ, PAYMENT, "quick_pay", NAME, ID_NUMBER).allowed
    rewrite = ask(engine, Action.COLLECT, PAYMENT, "quick_pay", *card, ID_NUMBER)
    assert codes(rewrite) == [f"immutable:{ID_NUMBER}"]


def test_c2_2_payee_data_is_tagged_as_another_subjects(policy: Policy) -> None:
    payee = [
        c for c in policy.purposes["transfer"].required if "payee" in policy.categories[c].tags
    ]
    assert payee


def test_c2_3_lookup_refused_when_subject_switched_off_discovery(engine: DecisionEngine) -> None:
    on = ask(engine, Action.READ, ACCOUNT, "account_lookup", PHONE)
    off = ask(
        engine,
        Action.READ,
        ACCOUNT,
        "account_lookup",
        PHONE,
        subject=SubjectState(settings={"discoverable_by_phone_email": False}),
    )
    assert on.allowed
    assert off.effect is Effect.DENY
    assert off.clauses == ("C2.3",)


def test_c2_4_counterparty_sees_masked_name_and_login(engine: DecisionEngine) -> None:
    d = ask(engine, Action.READ, ACCOUNT, "counterparty_view", NAME, "user.account.login_name")
    assert d.show({NAME: "张三", "user.account.login_name": "13812345678"}) == {
        NAME: "*三",
        "user.account.login_name": "138****5678",
    }


def test_c2_6_no_category_can_hold_a_raw_fingerprint(policy: Policy) -> None:
    fingerprint = [k for k in policy.categories if "fingerprint" in k]
    assert fingerprint == ["user.biometric.fingerprint_verification_result"]


def test_c2_6_face_login_is_optional_and_needs_consent(engine: DecisionEngine) -> None:
    face = "user.biometric.face"
    assert not ask(engine, Action.COLLECT, ACCOUNT, "face_login", face).allowed
    granted = consents(scopes.purpose_scope("face_login"))
    assert ask(engine, Action.COLLECT, ACCOUNT, "face_login", face, subject=granted).allowed


def test_c4_location_off_refuses_location_write(engine: DecisionEngine) -> None:
    off = SubjectState(settings={"location_collection": False})
    d = ask(
        engine,
        Action.COLLECT,
        PAYMENT,
        "risk_control",
        "user.device.ip_address",
        LOCATION,
        subject=off,
    )
    assert d.effect is Effect.DENY
    assert d.clauses == ("C4",)
    assert ask(
        engine, Action.COLLECT, PAYMENT, "risk_control", "user.device.ip_address", subject=off
    ).allowed


def test_c4_payment_still_works_with_location_off(engine: DecisionEngine) -> None:
    off = SubjectState(settings={"location_collection": False})
    assert ask(
        engine, Action.COLLECT, PAYMENT, "quick_pay", "user.financial.bank_account", subject=off
    ).allowed


def test_c5_personalization_needs_consent_and_stops_on_withdrawal(engine: DecisionEngine) -> None:
    cat = "user.behavior.search_history"
    granted = consents(scopes.purpose_scope("personalization"))
    assert ask(engine, Action.READ, MARKETING, "personalization", cat, subject=granted).allowed
    withdrawn = ask(engine, Action.READ, MARKETING, "personalization", cat)
    assert withdrawn.effect is Effect.DENY
    assert codes(withdrawn) == ["consent_required:purpose:personalization"]


def test_c7_optional_service_needs_its_own_consent_and_never_blocks_payment(
    engine: DecisionEngine,
) -> None:
    pay_later = Actor(ActorKind.SERVICE, "pay_later_service")
    score = "user.financial.credit_score"
    assert not ask(engine, Action.COLLECT, pay_later, "pay_later", score).allowed
    other = consents(scopes.purpose_scope("ant_forest"))
    assert not ask(engine, Action.COLLECT, pay_later, "pay_later", score, subject=other).allowed
    granted = consents(scopes.purpose_scope("pay_later"))
    assert ask(engine, Action.COLLECT, pay_later, "pay_later", score, subject=granted).allowed
    assert ask(engine, Action.COLLECT, PAYMENT, "quick_pay", "user.financial.bank_account").allowed


ENERGY = "user.behavior.green_energy"


def _friends_read_hidden_energy(engine: DecisionEngine) -> Decision:
    """Friends read the energy and nickname of an owner who hid the energy value (C7(2))."""
    state = SubjectState(
        consents={scopes.purpose_scope("forest_friends_view"): ConsentType.REGULAR},
        settings={"hide_energy_value": True},
    )
    return ask(
        engine,
        Action.READ,
        FOREST,
        "forest_friends_view",
        ENERGY,
        "user.account.nickname",
        subject=state,
    )


def test_c7_forest_hidden_energy_is_withheld_from_friends(engine: DecisionEngine) -> None:
    energy = ENERGY
    d = _friends_read_hidden_energy(engine)
    assert d.allowed
    assert d.projection[energy].kind is ProjectionKind.WITHHELD
    assert d.show({energy: "1234", "user.account.nickname": "小蚂蚁"})[energy] is None


def test_c7_closing_forest_stops_conversion(engine: DecisionEngine) -> None:
    state = SubjectState(
        consents={scopes.purpose_scope("ant_forest"): ConsentType.REGULAR},
        settings={"forest_enabled": False},
    )
    d = ask(
        engine,
        Action.COLLECT,
        FOREST,
        "ant_forest",
        "user.behavior.low_carbon_activity",
        subject=state,
    )
    assert d.effect is Effect.DENY
    assert codes(d) == ["setting:forest_enabled"]


@pytest.mark.parametrize(
    ("exemption", "case_reference", "allowed", "code"),
    [
        ("nonsense", "case-1", False, "unknown_exemption:nonsense"),
        (
            "national_security",
            "case-1",
            False,
            "exemption_not_granted:national_security:marketing_service",
        ),
        (
            "service_security",
            None,
            False,
            "exemption_not_granted:service_security:marketing_service",
        ),
        ("self_disclosed", None, False, "exemption_not_granted:self_disclosed:marketing_service"),
    ],
)
def test_c8_exemptions_never_let_marketing_around_consent(
    engine: DecisionEngine,
    exemption: str,
    case_reference: str | None,
    allowed: bool,
    code: str | None,
) -> None:
    actor = Actor(ActorKind.SERVICE, "marketing_service", case_reference=case_reference)
    d = ask(
        engine,
        Action.READ,
        actor,
        "personalization",
        "user.behavior.search_history",
        exemption=exemption,
    )
    assert d.allowed is allowed
    if allowed:
        assert Obligation.CASE_REFERENCE in d.obligations
        assert "C8" in d.clauses
    else:
        assert codes(d) == [code]


def test_c8_exemptions_only_for_their_roles_and_purposes_with_what_they_require(
    engine: DecisionEngine,
) -> None:
    face = "user.biometric.face"
    assert codes(
        ask(engine, Action.COLLECT, ACCOUNT, "face_login", face, exemption="self_disclosed")
    ) == ["exemption_not_for_purpose:self_disclosed:face_login"]
    assert ask(engine, Action.READ, ACCOUNT, "kyc_aml", NAME, exemption="public_source").allowed
    cased = Actor(ActorKind.AUTHORITY, "authority", case_reference="(2026)京01刑初1号")
    no_authority = ask(
        engine, Action.READ, cased, "legal_request", NAME, exemption="criminal_justice"
    )
    assert codes(no_authority) == ["requesting_authority_required"]
    named = Actor(
        ActorKind.AUTHORITY, "authority", case_reference="(2026)京01刑初1号", authority="bj-psb"
    )
    d = ask(engine, Action.READ, named, "legal_request", NAME, exemption="criminal_justice")
    assert d.allowed
    assert Obligation.CASE_REFERENCE in d.obligations
    security = Actor(ActorKind.SERVICE, "security_service")
    ip = "user.device.ip_address"
    assert ask(
        engine, Action.READ, security, "fault_handling", ip, exemption="service_security"
    ).allowed


# -- storage and protection (S1, S2) -------------------------------------------------------------


def test_s2_staff_see_sensitive_categories_masked_by_default(engine: DecisionEngine) -> None:
    d = ask(engine, Action.READ, AGENT, "customer_service", PHONE, NAME)
    assert d.allowed
    assert d.show({PHONE: "13812345678", NAME: "张三"}) == {PHONE: "138****5678", NAME: "*三"}


def test_s2_staff_without_a_grant_are_refused(engine: DecisionEngine) -> None:
    d = ask(engine, Action.READ, AGENT, "kyc_aml", NAME)
    assert d.effect is Effect.DENY
    assert codes(d) == ["no_grant:customer_service_agent:read:kyc_aml"]


def test_s2_role_of_wrong_kind_refused(engine: DecisionEngine) -> None:
    impostor = Actor(ActorKind.STAFF, "payment_service")
    assert codes(ask(engine, Action.READ, impostor, "quick_pay", NAME)) == [
        "actor_kind_mismatch:payment_service"
    ]


def test_s1_cross_border_needs_authorisation_and_agreement(engine: DecisionEngine) -> None:
    bank = RecipientView("hsbc_hk", "financial_institution", "HK", assessed=True, agreement=True)
    base = scopes.purpose_scope("cross_border_payment")
    without = ask(
        engine,
        Action.SHARE,
        PAYMENT,
        "cross_border_payment",
        NAME,
        recipient=bank,
        subject=consents(base),
    )
    assert without.effect is Effect.DENY
    assert without.clauses == ("S1",)
    both = consents(base, scopes.cross_border_scope("cross_border_payment"))
    d = ask(
        engine, Action.SHARE, PAYMENT, "cross_border_payment", NAME, recipient=bank, subject=both
    )
    assert d.allowed
    assert {Obligation.CROSS_BORDER_LOG, Obligation.ENCRYPT_IN_TRANSIT} <= d.obligations


# -- use (U1–U3) ---------------------------------------------------------------------------------


def test_u1_unsubscribed_channel_suppresses_marketing(engine: DecisionEngine) -> None:
    state = SubjectState(
        consents={scopes.purpose_scope("marketing_sms"): ConsentType.REGULAR},
        settings={"marketing_sms": False},
    )
    d = ask(engine, Action.READ, MARKETING, "marketing_sms", PHONE, subject=state)
    assert d.effect is Effect.DENY
    assert d.clauses == ("U1",)


def test_u2_v1_unknown_purpose_refused(engine: DecisionEngine) -> None:
    d = ask(engine, Action.READ, PAYMENT, "mind_reading", NAME)
    assert d.effect is Effect.DENY
    assert d.clauses == ("U2", "V1")


def test_u3_data_of_one_purpose_not_reused_for_an_incompatible_one(engine: DecisionEngine) -> None:
    ip = "user.device.ip_address"

    def read(source: str, state: SubjectState) -> Decision:
        return ask(
            engine,
            Action.READ,
            PAYMENT,
            "risk_control",
            ip,
            subject=state,
            source_purposes=frozenset({source}),
        )

    reuse = read("web_analytics", SubjectState())
    assert reuse.effect is Effect.DENY
    assert reuse.clauses == ("U3",)
    assert read("kyc_aml", SubjectState()).allowed
    assert read("web_analytics", consents(scopes.purpose_scope("risk_control"))).allowed


# -- sharing, transfer, disclosure (SH0–SH7, T1, D1, TP1) ------------------------------------------


def test_sh1_sharing_with_affiliate_needs_consent_for_that_recipient(
    engine: DecisionEngine,
) -> None:
    scope = scopes.recipient_scope("mybank", "personalization")
    state = consents(scopes.purpose_scope("personalization"), scope)
    cat = "user.behavior.search_history"
    assert not ask(
        engine, Action.SHARE, MARKETING, "personalization", cat, recipient=MYBANK
    ).allowed
    d = ask(
        engine, Action.SHARE, MARKETING, "personalization", cat, recipient=MYBANK, subject=state
    )
    assert d.allowed
    assert Obligation.ENCRYPT_IN_TRANSIT in d.obligations


@pytest.mark.parametrize(
    ("recipient", "code"),
    [
        (None, "recipient_missing"),
        (RecipientView("x", "affiliate", "CN", registered=False), "recipient_unregistered:x"),
        (
            RecipientView("x", "affiliate", "CN", active=False, assessed=True, agreement=True),
            "recipient_terminated:x",
        ),
        (RecipientView("x", "affiliate", "CN", assessed=True), "agreement_missing:x"),
        (RecipientView("x", "affiliate", "CN", agreement=True), "assessment_missing:x"),
    ],
)
def test_sh0_recipient_must_be_registered_assessed_bound_and_active(
    engine: DecisionEngine, recipient: RecipientView | None, code: str
) -> None:
    state = consents(
        scopes.purpose_scope("personalization"), scopes.recipient_scope("x", "personalization")
    )
    d = ask(
        engine,
        Action.SHARE,
        MARKETING,
        "personalization",
        "user.behavior.search_history",
        recipient=recipient,
        subject=state,
    )
    assert d.effect is Effect.DENY
    assert codes(d) == [code]


def test_sh2_dispute_evidence_to_bank_without_consent(engine: DecisionEngine) -> None:
    bank = RecipientView("icbc", "financial_institution", "CN", assessed=True, agreement=True)
    d = ask(
        engine,
        Action.SHARE,
        PAYMENT,
        "dispute_resolution",
        "user.commerce.delivery_proof",
        recipient=bank,
    )
    assert d.allowed
    assert "SH2" in d.clauses


def test_sh4_legal_request_needs_case_reference(engine: DecisionEngine) -> None:
    court = RecipientView("court", "authority", "CN")
    no_case = ask(engine, Action.SHARE, LEGAL, "legal_request", NAME, recipient=court)
    assert codes(no_case) == ["case_reference_required"]
    assert not ask(engine, Action.READ, LEGAL, "legal_request", NAME).allowed
    with_case = Actor(ActorKind.SERVICE, "legal_response_service", case_reference="case-9")
    assert ask(engine, Action.SHARE, with_case, "legal_request", NAME, recipient=court).allowed


def test_sh6_r2_authorised_third_party_within_scope_expiry_and_revocation(
    engine: DecisionEngine,
) -> None:
    rec = RecipientView("fund_app", "authorised_third_party", "CN", assessed=True, agreement=True)
    actor = Actor(ActorKind.RECIPIENT, "fund_app")
    scope = scopes.recipient_scope("fund_app", "authorised_query")

    def state(grant: Authorisation) -> SubjectState:
        return SubjectState(
            consents={scope: ConsentType.REGULAR}, authorisations={"fund_app": grant}
        )

    good = Authorisation("fund_app", frozenset({NAME}), expires_at=NOW + timedelta(days=1))
    assert ask(
        engine,
        Action.READ,
        actor,
        "authorised_query",
        NAME,
        recipient=rec,
        subject=state(good),
        at=NOW,
    ).allowed
    cases = {
        "out of scope": (good, PHONE),
        "expired": (Authorisation("fund_app", frozenset({NAME}), NOW - timedelta(seconds=1)), NAME),
        "revoked": (Authorisation("fund_app", frozenset({NAME}), None, revoked=True), NAME),
    }
    for grant, cat in cases.values():
        d = ask(
            engine,
            Action.READ,
            actor,
            "authorised_query",
            cat,
            recipient=rec,
            subject=state(grant),
            at=NOW,
        )
        assert d.effect is Effect.DENY


def test_sh6_recipient_cannot_pose_as_another(engine: DecisionEngine) -> None:
    d = ask(
        engine,
        Action.READ,
        Actor(ActorKind.RECIPIENT, "evil"),
        "authorised_query",
        NAME,
        recipient=MYBANK,
    )
    assert codes(d) == ["recipient_mismatch"]


def test_t1_transfer_to_successor_needs_binding_to_the_policy(engine: DecisionEngine) -> None:
    unbound = RecipientView("newco", "successor", "CN")
    bound = RecipientView("newco", "successor", "CN", bound_policy="alipay-2017@2017-09-22")
    assert codes(
        ask(engine, Action.TRANSFER, TRANSFERS, "business_transfer", NAME, recipient=unbound)
    ) == ["successor_not_bound:newco"]
    d = ask(engine, Action.TRANSFER, TRANSFERS, "business_transfer", NAME, recipient=bound)
    assert d.allowed
    assert Obligation.NOTIFY_SUBJECT in d.obligations


def test_d1_winners_list_is_disclosed_only_masked(engine: DecisionEngine) -> None:
    public = RecipientView("public", "public", "CN")
    d = ask(engine, Action.DISCLOSE, PROMOTIONS, "promotion_winners", PHONE, recipient=public)
    assert d.allowed
    assert d.show({PHONE: "13812345678"}) == {PHONE: "138****5678"}


def test_tp1_risky_third_party_adds_a_warning(engine: DecisionEngine) -> None:
    rec = RecipientView(
        "mini_app", "third_party_service", "CN", assessed=True, agreement=True, risk_flag=True
    )
    actor = Actor(ActorKind.RECIPIENT, "mini_app")
    state = SubjectState(
        consents={scopes.recipient_scope("mini_app", "authorised_query"): ConsentType.REGULAR},
        authorisations={"mini_app": Authorisation("mini_app", frozenset({NAME}))},
    )
    d = ask(engine, Action.READ, actor, "authorised_query", NAME, recipient=rec, subject=state)
    assert d.allowed
    assert Obligation.RISK_WARNING in d.obligations


# -- the subject's own rights (R1–R4) -------------------------------------------------------------


def test_r1_subject_reads_own_data_in_clear(engine: DecisionEngine) -> None:
    d = ask(engine, Action.READ, SUBJECT, "self_service", PHONE, ID_NUMBER)
    assert d.show({PHONE: "13812345678", ID_NUMBER: "11010519491231002X"}) == {
        PHONE: "13812345678",
        ID_NUMBER: "11010519491231002X",
    }


@pytest.mark.parametrize("action", [Action.UPDATE, Action.COLLECT])
def test_r1_immutable_registration_field_refused_on_every_write_path(
    engine: DecisionEngine, action: Action
) -> None:
    birth = "user.demographic.date_of_birth"
    for cat in (ID_NUMBER, birth, NAME):
        assert codes(ask(engine, action, SUBJECT, "self_service", cat)) == [f"immutable:{cat}"]
    assert ask(engine, action, SUBJECT, "self_service", "user.account.nickname").allowed


def test_r1_identifiers_change_only_through_their_own_operation(engine: DecisionEngine) -> None:
    for action in (Action.UPDATE, Action.COLLECT):
        assert codes(ask(engine, action, SUBJECT, "self_service", PHONE)) == [
            f"identifier_change_required:{PHONE}"
        ]
    assert codes(ask(engine, Action.COLLECT, ACCOUNT, "kyc_aml", PHONE)) == [
        f"identifier_change_required:{PHONE}"
    ]
    assert codes(ask(engine, Action.UPDATE, ACCOUNT, "identifier_change", PHONE)) == [
        "verification_required:identifier_change"
    ]
    verified = ask(engine, Action.UPDATE, ACCOUNT, "identifier_change", PHONE, evidence="otp:1")
    assert verified.allowed
    assert not ask(
        engine, Action.UPDATE, SUBJECT, "identifier_change", PHONE, evidence="otp:1"
    ).allowed


def test_r4_closed_account_collects_nothing_and_held_data_needs_authority(
    engine: DecisionEngine,
) -> None:
    closed = SubjectState(closed=True, legal_hold=True)
    assert codes(ask(engine, Action.COLLECT, PAYMENT, "quick_pay", NAME, subject=closed)) == [
        "account_closed"
    ]
    assert ask(engine, Action.READ, AUTHORITY, "regulatory_query", NAME, subject=closed).allowed
    no_case = Actor(ActorKind.AUTHORITY, "authority")
    assert not ask(engine, Action.READ, no_case, "regulatory_query", NAME, subject=closed).allowed
    no_hold = SubjectState(closed=True)
    assert codes(
        ask(engine, Action.READ, AUTHORITY, "regulatory_query", NAME, subject=no_hold)
    ) == ["no_legal_hold"]


def test_r3_subject_deletes_a_transaction_record(engine: DecisionEngine) -> None:
    record = "user.financial.transaction_record"
    assert ask(engine, Action.ERASE, SUBJECT, "self_service", record).allowed
    assert codes(ask(engine, Action.ERASE, SUBJECT, "self_service", NAME)) == [
        "outside_grant:subject:user.name"
    ]


def test_r4_erasure_under_legal_hold_carries_the_hold_obligation(engine: DecisionEngine) -> None:
    held = SubjectState(legal_hold=True)
    whole_account = ask(engine, Action.ERASE_SUBJECT, SUBJECT, "self_service", NAME, subject=held)
    assert whole_account.allowed
    assert Obligation.HOLD in whole_account.obligations
    assert "R4" in whole_account.clauses
    free = ask(engine, Action.ERASE_SUBJECT, SUBJECT, "self_service", NAME)
    assert Obligation.HOLD not in free.obligations


# -- minors, revisions ---------------------------------------------------------------------------


def test_m1_minor_needs_guardian_consent_and_guardian_can_object(engine: DecisionEngine) -> None:
    scope = scopes.purpose_scope("personalization")
    cat = "user.behavior.search_history"
    to_service = frozenset({scopes.SERVICE})
    minor = SubjectState(consents={scope: ConsentType.REGULAR}, age=15)
    assert codes(ask(engine, Action.READ, MARKETING, "personalization", cat, subject=minor)) == [
        f"guardian_consent_required:{scopes.SERVICE}"
    ]
    own_consent_only = SubjectState(
        consents={scope: ConsentType.REGULAR}, age=15, guardian_consents=to_service
    )
    assert codes(
        ask(engine, Action.READ, MARKETING, "personalization", cat, subject=own_consent_only)
    ) == [f"guardian_consent_required:{scope}"]
    with_guardian = SubjectState(
        consents={scope: ConsentType.REGULAR}, age=15, guardian_consents=to_service | {scope}
    )
    assert ask(
        engine, Action.READ, MARKETING, "personalization", cat, subject=with_guardian
    ).allowed
    objected = SubjectState(
        consents={scope: ConsentType.REGULAR},
        age=15,
        guardian_consents=frozenset({scope}),
        guardian_objection=True,
    )
    assert codes(ask(engine, Action.READ, MARKETING, "personalization", cat, subject=objected)) == [
        "guardian_objection"
    ]
    adult = SubjectState(consents={scope: ConsentType.REGULAR}, age=18)
    assert ask(engine, Action.READ, MARKETING, "personalization", cat, subject=adult).allowed


def test_v2_processing_waits_for_fresh_consent_after_a_revision(engine: DecisionEngine) -> None:
    scope = scopes.purpose_scope("personalization")
    state = SubjectState(
        consents={scope: ConsentType.REGULAR}, pending_reconsent=frozenset({"personalization"})
    )
    d = ask(
        engine,
        Action.READ,
        MARKETING,
        "personalization",
        "user.behavior.search_history",
        subject=state,
    )
    assert codes(d) == ["reconsent_required:personalization"]


# -- totality ------------------------------------------------------------------------------------


def test_v1_engine_error_is_a_denial(engine: DecisionEngine) -> None:
    broken = DecisionRequest(Action.READ, PAYMENT, "quick_pay", [NAME])  # type: ignore[arg-type]
    d = engine.decide(broken)
    assert d.effect is Effect.DENY
    assert codes(d) == ["engine_error"]


def test_v1_no_categories_is_not_applicable(engine: DecisionEngine) -> None:
    d = ask(engine, Action.READ, PAYMENT, "quick_pay")
    assert d.effect is Effect.NOT_APPLICABLE
    assert d.reasons


def test_c7_hidden_energy_stays_visible_to_its_owner(engine: DecisionEngine) -> None:
    energy = ENERGY
    state = SubjectState(settings={"hide_energy_value": True})
    own = ask(engine, Action.READ, SUBJECT, "self_service", energy, subject=state)
    assert own.show({energy: "1234"}) == {energy: "1234"}
    friends = _friends_read_hidden_energy(engine)
    assert friends.show({energy: "1234", "user.account.nickname": "小蚂蚁"}) == {
        energy: None,
        "user.account.nickname": "小蚂蚁",
    }


def test_c5_entrusted_processing_rides_on_personalisation_consent_and_setting(
    engine: DecisionEngine,
) -> None:
    processor = RecipientView("dataco", "processor", "CN", assessed=True, agreement=True)
    cat = "user.behavior.search_history"
    granted = consents(scopes.purpose_scope("personalization"))
    assert ask(
        engine,
        Action.SHARE,
        MARKETING,
        "personalization",
        cat,
        recipient=processor,
        subject=granted,
    ).allowed
    assert not ask(
        engine, Action.SHARE, MARKETING, "personalization", cat, recipient=processor
    ).allowed
    switched_off = SubjectState(
        consents=granted.consents, settings={"personalized_recommendations": False}
    )
    d = ask(
        engine,
        Action.SHARE,
        MARKETING,
        "personalization",
        cat,
        recipient=processor,
        subject=switched_off,
    )
    assert codes(d) == ["setting:personalized_recommendations"]
    no_agreement = RecipientView("dataco", "processor", "CN", assessed=True)
    assert codes(
        ask(
            engine,
            Action.SHARE,
            MARKETING,
            "personalization",
            cat,
            recipient=no_agreement,
            subject=granted,
        )
    ) == ["agreement_missing:dataco"]


def test_sh0_outbound_reasons_name_the_recipient_type_that_asked(engine: DecisionEngine) -> None:
    scope = scopes.purpose_scope("personalization")
    cat = "user.behavior.search_history"
    partner = RecipientView("p1", "partner", "CN", assessed=True, agreement=True)
    affiliate = RecipientView("a1", "affiliate", "CN", assessed=True, agreement=True)
    state = consents(
        scope,
        scopes.recipient_scope("p1", "personalization"),
        scopes.recipient_scope("a1", "personalization"),
    )
    to_partner = ask(
        engine, Action.SHARE, MARKETING, "personalization", cat, recipient=partner, subject=state
    )
    to_affiliate = ask(
        engine, Action.SHARE, MARKETING, "personalization", cat, recipient=affiliate, subject=state
    )
    assert to_partner.allowed
    assert to_affiliate.allowed
    assert "DEF1" in to_affiliate.clauses
    assert "DEF1" not in to_partner.clauses


def test_r2_restriction_and_settings_bind_recipient_queries_too(engine: DecisionEngine) -> None:
    rec = RecipientView("fund_app", "authorised_third_party", "CN", assessed=True, agreement=True)
    actor = Actor(ActorKind.RECIPIENT, "fund_app")
    state = SubjectState(
        consents={scopes.recipient_scope("fund_app", "authorised_query"): ConsentType.REGULAR},
        authorisations={"fund_app": Authorisation("fund_app", frozenset({NAME}))},
        restricted=frozenset({"authorised_query"}),
    )
    d = ask(engine, Action.READ, actor, "authorised_query", NAME, recipient=rec, subject=state)
    assert codes(d) == ["restricted:authorised_query"]


def test_u2_nothing_leaves_that_the_purpose_does_not_declare(engine: DecisionEngine) -> None:
    state = consents(
        scopes.purpose_scope("personalization"), scopes.recipient_scope("mybank", "personalization")
    )
    d = ask(
        engine,
        Action.SHARE,
        MARKETING,
        "personalization",
        "user.biometric.face",
        recipient=MYBANK,
        subject=state,
    )
    assert d.effect is Effect.DENY
    assert codes(d) == ["category_not_declared:personalization:user.biometric.face"]
