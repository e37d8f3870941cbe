"""The policy file format: precise errors, unknown keys refused, references checked (V1, U2)."""

from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from piguard.kernel.errors import PolicyFileError
from piguard.policy.language import format_path, parse_policy
from piguard.policy.model import Policy


def _parse(data: dict[str, Any]) -> Policy:
    return parse_policy(yaml.safe_dump(data, allow_unicode=True), "test.yaml")


def _error(data: dict[str, Any]) -> PolicyFileError:
    with pytest.raises(PolicyFileError) as caught:
        _parse(data)
    return caught.value


def test_v1_bundled_policy_parses(policy: Policy) -> None:
    assert policy.key == "alipay-2017@2017-09-22"
    assert "kyc_aml" in policy.purposes
    assert all(c.clauses for c in policy.categories.values())


def test_v1_format_path() -> None:
    assert format_path(("purposes", "kyc_aml", "required", 2)) == "purposes.kyc_aml.required[2]"
    assert format_path(("outbound", 3, "id")) == "outbound[3].id"


def test_v1_unknown_key_names_path_and_allowed(policy_data: dict[str, Any]) -> None:
    policy_data["purposes"]["kyc_aml"]["colour"] = "red"
    err = _error(policy_data)
    assert err.file == "test.yaml"
    assert err.path == "purposes.kyc_aml.colour"
    assert "unknown key 'colour'" in err.problem
    assert err.allowed is not None
    assert "basis" in err.allowed
    assert "required" in err.allowed


def test_u2_unknown_category_reference_names_index(policy_data: dict[str, Any]) -> None:
    required = policy_data["purposes"]["kyc_aml"]["required"]
    required.append("user.nope")
    err = _error(policy_data)
    assert err.path == f"purposes.kyc_aml.required[{len(required) - 1}]"
    assert "unknown category 'user.nope'" in err.problem
    assert err.allowed is not None
    assert "user.name" in err.allowed


def test_c8_wrong_enum_value_lists_allowed(policy_data: dict[str, Any]) -> None:
    policy_data["purposes"]["kyc_aml"]["basis"] = "maybe"
    err = _error(policy_data)
    assert err.path == "purposes.kyc_aml.basis"
    assert "consent" in err.problem or (err.allowed and "consent" in err.allowed)


def test_v1_missing_required_key(policy_data: dict[str, Any]) -> None:
    del policy_data["purposes"]["kyc_aml"]["refusal"]
    err = _error(policy_data)
    assert err.path == "purposes.kyc_aml.refusal"
    assert "missing" in err.problem


def test_v1_cited_clause_must_exist(policy_data: dict[str, Any]) -> None:
    policy_data["purposes"]["kyc_aml"]["clauses"].append("Z9")
    err = _error(policy_data)
    assert err.path.startswith("purposes.kyc_aml.clauses[")
    assert "'Z9'" in err.problem


def test_def2_bad_mask_spec_refused(policy_data: dict[str, Any]) -> None:
    policy_data["categories"]["user.name"]["mask"] = "blur(3)"
    err = _error(policy_data)
    assert err.path == "categories.user.name.mask"
    assert err.allowed is not None
    assert "keep_ends" in err.allowed


def test_c8_exemption_code_needs_exemption_basis(policy_data: dict[str, Any]) -> None:
    policy_data["purposes"]["kyc_aml"]["exemption"] = "national_security"
    err = _error(policy_data)
    assert err.path == "purposes.kyc_aml.exemption"


def test_s2_grant_category_must_be_declared_by_purpose(policy_data: dict[str, Any]) -> None:
    role = next(iter(r for r in policy_data["roles"].values() if r["kind"] == "staff"))
    grant = role["grants"][0]
    grant["categories"] = ["user.biometric.face"]
    purpose = policy_data["purposes"][grant["purpose"]]
    assert "user.biometric.face" not in purpose.get("required", []) + purpose.get("optional", [])
    err = _error(policy_data)
    assert err.path.endswith(".categories[0]")
    assert "not declared by the purpose" in err.problem


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("id: [unclosed", "line 1"),
        ("- just\n- a list\n", ""),
        ("", ""),
    ],
)
def test_v1_yaml_syntax_and_top_level(text: str, where: str) -> None:
    with pytest.raises(PolicyFileError) as caught:
        parse_policy(text, "broken.yaml")
    assert caught.value.path.startswith(where)
    assert "broken.yaml" in caught.value.message.en


def test_v1_several_problems_are_counted(policy_data: dict[str, Any]) -> None:
    policy_data["purposes"]["kyc_aml"]["basis"] = "maybe"
    policy_data["purposes"]["transfer"]["basis"] = "perhaps"
    err = _error(policy_data)
    assert "(+1 more)" in err.problem


@pytest.mark.parametrize(
    ("period", "problem"),
    [
        ({"years": 5, "months": 6}, "exactly one unit"),
        ({}, "exactly one unit"),
        ({"days": 0}, "greater than or equal to 1"),
        ({"years": "5"}, "valid integer"),
        ({"weeks": 2}, "unknown key 'weeks'"),
    ],
)
def test_s1_a_retention_period_is_one_positive_calendar_unit(
    policy_data: dict[str, Any], period: dict[str, Any], problem: str
) -> None:
    transfer = policy_data["purposes"]["transfer"]  # a fresh copy: the file shares it by anchor
    transfer["retention"] = {**transfer["retention"], "period": period}
    err = _error(policy_data)
    assert err.path.startswith("purposes.transfer.retention.period")
    assert problem in err.problem


def test_s1_retention_from_collection_needs_a_period(policy_data: dict[str, Any]) -> None:
    transfer = policy_data["purposes"]["transfer"]
    transfer["retention"] = {k: v for k, v in transfer["retention"].items() if k != "period"}
    err = _error(policy_data)
    assert err.path == "purposes.transfer.retention.period"
    assert "needs a period" in err.problem


def test_s1_only_a_period_can_be_an_operator_default(policy_data: dict[str, Any]) -> None:
    face_login = policy_data["purposes"]["face_login"]
    assert "period" not in face_login["retention"]
    face_login["retention"] = {**face_login["retention"], "operator_default": True}
    err = _error(policy_data)
    assert err.path == "purposes.face_login.retention.operator_default"


def test_s1_periods_parse_into_calendar_units(policy: Policy) -> None:
    moment = datetime(2020, 2, 29, 12, tzinfo=UTC)
    retention = policy.purposes["transfer"].retention
    assert retention.ends(moment) == datetime(2025, 2, 28, 12, tzinfo=UTC)
    assert policy.purposes["face_login"].retention.ends(moment) == moment
