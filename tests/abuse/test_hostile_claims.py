"""Hostile callers claiming what they are not given (C8, SH0) and the reasons answers give, over
HTTP: exemptions claimed by roles the policy does not name, recipient facts supplied by the caller,
unknown recipients; and reasons that cite the rule that decided (issue 7, item 4).
"""

from __future__ import annotations

from typing import Any

import pytest
from hostile_support import audit_clauses, call, own_key, reasons, stored

from api.api_support import BANK_ACCOUNT, PHONE, Api, Person, new_person
from piguard.policy import scopes
from piguard.policy.decide import DecisionEngine
from piguard.policy.decision import Actor, DecisionRequest, RecipientView
from piguard.policy.model import Action, ActorKind, Policy

RESERVED_PHONE = "user.financial.bank_reserved_phone"
PARTICIPATION = "user.behavior.promotion_participation"
SEARCH = "user.behavior.search_history"


@pytest.fixture(scope="module")
def adult() -> Person:
    return new_person()


@pytest.fixture(scope="module")
def subject(api: Api, adult: Person) -> str:
    """An adult who consented to nothing optional (no marketing SMS consent)."""
    return api.register(adult)


def _decide(api: Api, role: str, **body: Any) -> dict[str, Any]:
    answer = call(api, api.token(role), "POST", "/v1/decide", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


# -- C8: exemptions only for the roles and purposes the policy names ----------------------------


@pytest.mark.parametrize(
    "claim",
    [
        {"exemption": "self_disclosed"},
        {"exemption": "public_source"},
        {"exemption": "criminal_justice", "case_reference": "case-2026-7", "authority": "pboc"},
        {"exemption": "national_security", "case_reference": "case-2026-8", "authority": "mps"},
        {"exemption": "no_such_exemption"},
    ],
    ids=lambda claim: claim["exemption"],
)
def test_c8_marketing_cannot_read_a_phone_by_claiming_an_exemption(
    api: Api, subject: str, adult: Person, claim: dict[str, str]
) -> None:
    ask = {"action": "read", "purpose": "marketing_sms", "categories": [PHONE]}
    plain = _decide(api, "marketing_service", subject_id=subject, **ask)

    claimed = _decide(api, "marketing_service", subject_id=subject, **ask, **claim)

    assert plain["reasons"] == [{"clause": "U1", "code": "consent_required:purpose:marketing_sms"}]
    code = claim["exemption"]
    assert claimed["effect"] == "deny"
    known = code in api.piguard.policy.exemptions
    assert claimed["reasons"] == (
        [{"clause": "C8", "code": f"exemption_not_granted:{code}:marketing_service"}]
        if known
        else [{"clause": "C8", "code": "unknown_exemption:<input>"}]  # never echoed
    )
    assert claimed["projection"] == {}
    # And the read itself, with the claim in the query: refused, the phone never in the answer.
    params = {"purpose": "marketing_sms", "categories": PHONE, **claim}
    token = api.token("marketing_service")
    read = call(api, token, "GET", f"/v1/subjects/{subject}", params=params)
    assert read.status_code == 403
    assert reasons(read) == ["U1:consent_required:purpose:marketing_sms"]
    assert adult.phone[-8:] not in read.text


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        (
            "POST",
            "/values",
            {"purpose": "kyc_aml", "values": {BANK_ACCOUNT: "6222020000000000000"}},
        ),
        ("PATCH", "", {"purpose": "kyc_aml", "values": {"user.contact.address": "北京"}}),
    ],
    ids=["collect", "update"],
)
@pytest.mark.parametrize(
    "claim",
    [
        {"exemption": "self_disclosed"},
        {"exemption": "criminal_justice", "case_reference": "case-2026-9", "authority": "pboc"},
    ],
    ids=["self_disclosed", "criminal_justice"],
)
def test_c8_no_write_route_accepts_an_exemption(
    api: Api, subject: str, method: str, path: str, body: dict[str, Any], claim: dict[str, str]
) -> None:
    rows = stored(api)

    answer = call(
        api,
        api.token("account_service"),
        method,
        f"/v1/subjects/{subject}{path}",
        json=body | claim,
    )

    assert answer.status_code == 422
    assert answer.json()["field"].startswith("body.")
    assert stored(api) == rows


# -- SH0: recipients are named by id; their facts come from the registry -------------------------


def test_sh0_recipient_facts_in_the_body_are_422(api: Api, subject: str) -> None:
    me = api.as_subject(subject)
    me.grant_consent(subject, scopes.purpose_scope("personalization"))
    forged = {"id": "evil_corp", "type": "processor", "agreement": True, "assessed": True}
    rows = stored(api)

    answer = call(
        api,
        api.token("marketing_service"),
        "POST",
        "/v1/decide",
        json={
            "action": "share",
            "purpose": "personalization",
            "categories": [SEARCH],
            "subject_id": subject,
            "recipient": forged,
        },
    )

    assert answer.status_code == 422
    assert answer.json()["field"] == "body.recipient"
    assert stored(api) == rows


def test_sh0_an_unknown_recipient_is_refused_even_with_the_subjects_consent(
    api: Api, subject: str
) -> None:
    me = api.as_subject(subject)
    for recipient in ("evil_corp", "mybank"):
        me.grant_consent(subject, scopes.recipient_scope(recipient, "personalization"))
    me.grant_consent(subject, scopes.purpose_scope("personalization"))
    ask = {"action": "share", "purpose": "personalization", "categories": [SEARCH]}

    unknown = _decide(api, "marketing_service", subject_id=subject, recipient="evil_corp", **ask)
    registered = _decide(api, "marketing_service", subject_id=subject, recipient="mybank", **ask)

    assert unknown["effect"] == "deny"
    assert unknown["reasons"] == [{"clause": "SH0", "code": "recipient_unregistered:<input>"}]
    assert unknown["projection"] == {}
    assert registered["effect"] == "allow"  # the same share to a registered affiliate


# -- Reasons cite what decided (issue 7, item 4) ------------------------------------------------


def test_c2_1_an_allowed_quick_pay_collect_cites_only_its_grant(api: Api, subject: str) -> None:
    card = {BANK_ACCOUNT: new_person().bank_account, RESERVED_PHONE: new_person().phone}

    answer = _decide(
        api, "payment_service", action="collect", purpose="quick_pay", categories=list(card)
    )
    api.as_role("payment_service").collect(subject, "quick_pay", card)

    assert answer["effect"] == "allow"
    assert answer["reasons"] == [{"clause": "C2.1", "code": "allow:payment_service:quick_pay"}]
    assert audit_clauses(api, "payment_service", "collect", "quick_pay") == ["C2.1"]


def test_d1_a_disclosure_outside_the_masked_list_cites_the_consent_rule(
    engine: DecisionEngine,
) -> None:
    public = RecipientView("the_public", "public", "CN")
    req = DecisionRequest(
        Action.DISCLOSE,
        Actor(ActorKind.SERVICE, "promotions_service"),
        "promotion_winners",
        (PARTICIPATION,),
        recipient=public,
    )

    decision = engine.decide(req)

    assert [(r.clause, r.code) for r in decision.reasons] == [
        ("D1", "consent_required:disclose:promotion_winners")
    ]


def test_d1_over_http_a_disclosure_outside_the_masked_list_cites_the_consent_rule(
    api: Api, subject: str, policy: Policy
) -> None:
    [recipient] = [k for k, r in policy.recipients.items() if r.type == "public"]  # registered
    [winners] = [r for r in policy.outbound if r.action is Action.DISCLOSE and r.masks]
    ask = {"action": "disclose", "purpose": "promotion_winners", "subject_id": subject}

    outside = _decide(
        api, "promotions_service", categories=[PARTICIPATION], recipient=recipient, **ask
    )
    listed = sorted(winners.categories)
    masked = _decide(api, "promotions_service", categories=listed, recipient=recipient, **ask)

    assert outside["reasons"] == [
        {"clause": "D1", "code": "consent_required:disclose:promotion_winners"}
    ]
    assert outside["effect"] == "deny"
    assert outside["projection"] == {}
    assert masked["effect"] == "allow"
    assert masked["projection"][PHONE] == {"kind": "masked", "operator": "keep_ends(3,4)"}
    assert masked["projection"] == {
        c: {"kind": "masked", "operator": winners.masks[c]} for c in listed
    }


def test_r2_the_subjects_own_key_cannot_decide_for_another_subject(api: Api, subject: str) -> None:
    other = api.register(new_person())
    ask = {"action": "read", "purpose": "self_service", "categories": [PHONE]}

    answer = call(
        api, own_key(api, other), "POST", "/v1/decide", json={**ask, "subject_id": subject}
    )

    assert answer.status_code == 404
    assert reasons(answer) == []
