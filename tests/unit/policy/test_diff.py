"""Semantic diff of policy versions and what needs fresh consent (V2, U3)."""

from typing import Any

import yaml

from piguard.policy.diff import ChangeKind, diff_policies
from piguard.policy.language import parse_policy
from piguard.policy.model import Policy


def _revise(data: dict[str, Any]) -> Policy:
    data["version"] = "2018-01-01"
    return parse_policy(yaml.safe_dump(data, allow_unicode=True), "revised.yaml")


def test_v2_identical_policies_have_no_changes(policy: Policy, policy_data: dict[str, Any]) -> None:
    same = parse_policy(yaml.safe_dump(policy_data, allow_unicode=True), "same.yaml")
    assert diff_policies(policy, same).changes == ()


def test_v2_new_purpose_needs_fresh_consent(policy: Policy, policy_data: dict[str, Any]) -> None:
    new = dict(policy_data["purposes"]["personalization"])
    new["label"] = {"zh": "新用途", "en": "New use"}
    policy_data["purposes"]["lifestyle_ads"] = new
    result = diff_policies(policy, _revise(policy_data))
    added = [c for c in result.changes if c.key == "lifestyle_ads"]
    assert added[0].kind is ChangeKind.ADDED
    assert added[0].consent
    assert "lifestyle_ads" in result.reconsent_purposes
    assert "V2" in added[0].clauses


def test_u3_widened_purpose_needs_fresh_consent_narrowed_does_not(
    policy: Policy, policy_data: dict[str, Any]
) -> None:
    policy_data["purposes"]["personalization"]["optional"].append("user.location.precise")
    policy_data["purposes"]["quick_pay"]["optional"] = []
    result = diff_policies(policy, _revise(policy_data))
    by_key = {c.key: c for c in result.changes if c.section == "purposes"}
    assert by_key["personalization"].consent
    assert "user.location.precise" in by_key["personalization"].detail
    assert not by_key["quick_pay"].consent


def test_v2_new_recipient_and_widened_sharing_need_fresh_consent(
    policy: Policy, policy_data: dict[str, Any]
) -> None:
    policy_data["recipients"]["new_partner"] = {
        "name": {"zh": "新伙伴", "en": "New partner"},
        "type": "partner",
        "region": "CN",
        "clauses": ["SH0"],
    }
    rule = next(r for r in policy_data["outbound"] if r["id"] == "sh2_bill_payment")
    rule["recipient_types"].append("partner")
    result = diff_policies(policy, _revise(policy_data))
    keys = {(c.section, c.key): c for c in result.needs_reconsent}
    assert ("recipients", "new_partner") in keys
    assert ("outbound", "sh2_bill_payment") in keys
    assert "widened" in keys[("outbound", "sh2_bill_payment")].detail


def test_v2_new_sensitive_category_needs_fresh_consent(
    policy: Policy, policy_data: dict[str, Any]
) -> None:
    policy_data["categories"]["user.biometric.voiceprint"] = {
        "label": {"zh": "声纹", "en": "Voiceprint"},
        "spi": "biometric",
        "mask": "withheld",
        "clauses": ["DEF2"],
    }
    result = diff_policies(policy, _revise(policy_data))
    assert any(c.key == "user.biometric.voiceprint" and c.consent for c in result.changes)
