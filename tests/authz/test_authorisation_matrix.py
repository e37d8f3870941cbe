"""S2 (least privilege), generated: every actor × action × purpose of the policy against the engine.

The oracle (`authz_oracle`, its docstring states the exact definition) reads the policy's grants,
outbound rules, exemptions and recipients; the engine is only ever asked. The last tests break a
copy of the policy on purpose and show that the matrix then disagrees exactly where it was broken.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

import pytest
import yaml

from authz.authz_oracle import (
    UNDECLARED_PURPOSE,
    UNKNOWN_ROLE,
    Case,
    actors,
    cases,
    matrix,
    mismatch,
)
from piguard.policies import bundled_policy_path
from piguard.policy.decide import DecisionEngine
from piguard.policy.decision import Effect
from piguard.policy.language import load_policy, parse_policy
from piguard.policy.model import Action, Policy

_BUNDLED = load_policy(bundled_policy_path())


_MATRIX = matrix(_BUNDLED)


def disagreements(
    oracle: Policy, engine: DecisionEngine, every: list[Case] | None = None
) -> dict[tuple[str, str, str], str]:
    """Every (actor, action, purpose) whose answer differs from the oracle's, and why."""
    found: dict[tuple[str, str, str], str] = {}
    for case in matrix(oracle) if every is None else every:
        problem = mismatch(oracle, case, engine.decide(case.request))
        if problem is not None:
            found.setdefault(case.key, f"{case.variant}: {problem}")
    return found


def _mutated(data: dict[str, Any]) -> Policy:
    return parse_policy(yaml.safe_dump(data, allow_unicode=True), "mutated.yaml")


def _grant(data: dict[str, Any], role: str, purpose: str, action: str) -> dict[str, Any]:
    """The grant of `role` for `purpose` that lists `action`, in the plain policy data."""
    grants = data["roles"][role]["grants"]
    return next(g for g in grants if g["purpose"] == purpose and action in g["actions"])


@pytest.mark.parametrize("actor", actors(_BUNDLED))
def test_s2_every_action_and_purpose_is_allowed_exactly_where_the_policy_grants_it(
    engine: DecisionEngine, policy: Policy, actor: str
) -> None:
    wrong = {
        case.key: (case.variant, problem)
        for case in cases(policy, actor)
        if (problem := mismatch(policy, case, engine.decide(case.request))) is not None
    }
    assert wrong == {}


def test_s2_the_matrix_covers_every_role_action_and_purpose_and_both_outcomes(
    policy: Policy,
) -> None:
    every = matrix(policy)
    triples = {case.key for case in every}
    roles = len(policy.roles) + 1 + len(policy.recipients)
    assert len(triples) == roles * len(Action) * (len(policy.purposes) + 1)
    assert {a for a, _, _ in triples} >= {*policy.roles, UNKNOWN_ROLE, *policy.recipients}
    assert {p for _, _, p in triples} == {*policy.purposes, UNDECLARED_PURPOSE}
    outcomes = Counter((case.action, case.allow) for case in every)
    # Every action is both granted to someone and refused to someone.
    assert all(outcomes[(action, True)] and outcomes[(action, False)] for action in Action)
    assert any(case.variant == "registration" for case in every)


def test_s2_a_dropped_grant_is_caught_by_the_matrix(policy_data: dict[str, Any]) -> None:
    _grant(policy_data, "forest_service", "ant_forest", "erase")["actions"].remove("erase")

    wrong = disagreements(_BUNDLED, DecisionEngine(_mutated(policy_data)), _MATRIX)

    assert set(wrong) == {("forest_service", "erase", "ant_forest")}
    assert "S2" in wrong[("forest_service", "erase", "ant_forest")]


def test_s2_an_added_grant_is_caught_by_the_matrix(policy_data: dict[str, Any]) -> None:
    _grant(policy_data, "marketing_service", "marketing_sms", "read")["actions"].append("share")
    mutated = _mutated(policy_data)

    wrong = disagreements(_BUNDLED, DecisionEngine(mutated), _MATRIX)

    # SH1 shares any purpose with consent, so the new grant opens a way out at once.
    assert set(wrong) == {("marketing_service", "share", "marketing_sms")}
    # The oracle follows the policy it reads: on the mutated policy it agrees again.
    assert disagreements(mutated, DecisionEngine(mutated)) == {}


def test_d1_a_grant_without_an_outbound_rule_is_refused_by_engine_and_oracle(
    policy_data: dict[str, Any],
) -> None:
    policy_data["outbound"] = [r for r in policy_data["outbound"] if r["action"] != "disclose"]
    mutated = _mutated(policy_data)

    wrong = disagreements(_BUNDLED, DecisionEngine(mutated), _MATRIX)

    assert set(wrong) == {("promotions_service", "disclose", "promotion_winners")}
    assert disagreements(mutated, DecisionEngine(mutated)) == {}


def _needs(case: Case) -> list[str]:
    """What the oracle added to an allowed case beyond the grant, each of which must matter."""
    req = case.request
    found = []
    if req.actor.case_reference and req.exemption is None and case.actor in _BUNDLED.roles:
        found.append("case_reference")
    if req.subject.legal_hold:
        found.append("legal_hold")
    if req.evidence:
        found.append("evidence")
    if req.registration:
        found.append("registration")
    return found


_PRECONDITIONS = [
    pytest.param(case, need, id=f"{case.actor}-{case.action}-{case.purpose}-{case.variant}-{need}")
    for case in _MATRIX
    if case.allow
    for need in _needs(case)
]


@pytest.mark.parametrize(("case", "need"), _PRECONDITIONS)
def test_c8_r4_r1_what_the_oracle_supplies_is_needed(
    engine: DecisionEngine, case: Case, need: str
) -> None:
    req = case.request
    if need == "case_reference":
        req = replace(req, actor=replace(req.actor, case_reference=None))
    elif need == "legal_hold":
        req = replace(req, subject=replace(req.subject, legal_hold=False))
    elif need == "evidence":
        req = replace(req, evidence=None)
    else:
        req = replace(req, registration=False)

    decision = engine.decide(req)

    assert decision.effect is Effect.DENY
    reason = decision.reasons[0]
    if need == "registration":  # outside registration, R1 protects every field written there
        assert reason.clause == "R1"
        assert reason.code.startswith(("immutable:", "identifier_change_required:"))
    elif need == "evidence":  # a write under a change purpose rests on a verification (R1)
        assert (reason.clause, reason.code) == ("R1", f"verification_required:{case.purpose}")
    else:
        assert reason.code == {"case_reference": "case_reference_required"}.get(
            need, "no_legal_hold"
        )


def test_c8_r4_r1_the_preconditions_are_tried(policy: Policy) -> None:
    tried = Counter(need for _, need in (p.values for p in _PRECONDITIONS))
    assert set(tried) == {"case_reference", "legal_hold", "registration", "evidence"}
