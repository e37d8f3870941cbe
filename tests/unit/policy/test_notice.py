"""The rendered notice: every clause, both languages, key clauses highlighted (V3, P3)."""

import pytest

from piguard.kernel.text import Lang
from piguard.policy.model import Policy
from piguard.policy.notice import build_notice, render_markdown


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_v3_notice_shows_every_clause_in_both_languages(policy: Policy, lang: str) -> None:
    notice = build_notice(policy, lang)  # type: ignore[arg-type]
    assert set(notice.clause_ids) == set(policy.clauses)
    text = render_markdown(notice)
    for clause in policy.clauses.values():
        assert clause.text.in_(lang) in text  # type: ignore[arg-type]
    assert policy.controller.hotline in text


def test_p3_prominent_clauses_are_bold_and_flagged(policy: Policy) -> None:
    text = render_markdown(build_notice(policy, "en"))
    prominent = [c for c in policy.clauses.values() if c.prominent]
    assert prominent
    for clause in prominent:
        assert f"**{clause.text.en}**" in text
        assert f"⚠ [{clause.id}]" in text
    plain = next(c for c in policy.clauses.values() if not c.prominent)
    assert f"**{plain.text.en}**" not in text


def test_v3_notice_names_purposes_retention_and_rights(policy: Policy) -> None:
    text = render_markdown(build_notice(policy, "zh"))
    for purpose in policy.purposes.values():
        assert purpose.label.zh in text
        assert purpose.retention.label.zh in text
    for right in policy.rights.values():
        assert right.label.zh in text
    assert "3个工作日" in text


@pytest.mark.parametrize(
    ("lang", "mark"), [("zh", "运营方默认设置"), ("en", "a default set by the operator")]
)
def test_s1_operator_default_periods_are_not_shown_as_promises(
    policy: Policy, lang: Lang, mark: str
) -> None:
    lines = render_markdown(build_notice(policy, lang)).splitlines()
    for purpose in policy.purposes.values():
        line = next(x for x in lines if x.startswith(f"- **{purpose.label.in_(lang)}**"))
        assert (mark in line) == purpose.retention.operator_default, purpose.key
    assert policy.purposes["customer_service"].retention.operator_default  # 3 years: no law
    assert not policy.purposes["kyc_aml"].retention.operator_default  # 5 years: AML law
