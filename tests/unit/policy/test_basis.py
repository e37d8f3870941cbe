"""What a lawful basis lets the engine do: due diligence and a business transfer are reasonable
business practice (SH5, T1), not legal duties, so they end with the account (R4) and yield to a
restriction (R2), while what the law obliges does not."""

from typing import Any

import pytest

from piguard.kernel.text import Lang
from piguard.policy.decide import DecisionEngine
from piguard.policy.decision import Actor, Decision, DecisionRequest, RecipientView, SubjectState
from piguard.policy.model import Action, ActorKind, Basis, Policy
from piguard.policy.notice import build_notice, render_markdown

CASE = "(2026)京01民初1号"
# One least-privilege role per outbound business (S2).
ROLES = {
    "due_diligence": Actor(ActorKind.SERVICE, "due_diligence_service", case_reference=CASE),
    "business_transfer": Actor(ActorKind.SERVICE, "business_transfer_service", case_reference=CASE),
    "legal_request": Actor(ActorKind.SERVICE, "legal_response_service", case_reference=CASE),
}
ADVISOR = RecipientView("advisor", "due_diligence", "CN", assessed=True, agreement=True)
SUCCESSOR = RecipientView("newco", "successor", "CN", bound_policy="alipay-2017@2017-09-22")
AUTHORITY = RecipientView("pboc", "authority", "CN")
CLOSED = SubjectState(closed=True, legal_hold=True)
NAME = ("user.name",)


def _ask(engine: DecisionEngine, action: Action, purpose: str, **kw: Any) -> Decision:
    return engine.decide(DecisionRequest(action, ROLES[purpose], purpose, NAME, **kw))


def _codes(decision: Decision) -> list[str]:
    return [r.code for r in decision.reasons]


@pytest.mark.parametrize("purpose", ["due_diligence", "business_transfer"])
@pytest.mark.parametrize(
    ("lang", "said", "not_said"),
    [
        ("zh", "根据法律规定及合理商业习惯", "法定义务"),
        ("en", "in line with the law and reasonable business practice", "legal obligation"),
    ],
)
def test_sh5_t1_the_notice_gives_business_practice_not_law_as_the_basis(
    policy: Policy, purpose: str, lang: Lang, said: str, not_said: str
) -> None:
    assert policy.purposes[purpose].basis is Basis.BUSINESS_PRACTICE
    head = f"- **{policy.purposes[purpose].label.in_(lang)}**"
    line = next(
        x for x in render_markdown(build_notice(policy, lang)).splitlines() if x.startswith(head)
    )
    assert said in line
    assert not_said not in line


def test_sh5_an_open_account_goes_to_due_diligence_under_agreement(engine: DecisionEngine) -> None:
    assert _ask(engine, Action.SHARE, "due_diligence", recipient=ADVISOR).allowed


def test_sh5_a_closed_account_is_not_handed_to_due_diligence(engine: DecisionEngine) -> None:
    d = _ask(engine, Action.SHARE, "due_diligence", subject=CLOSED, recipient=ADVISOR)
    assert _codes(d) == ["account_closed"]
    assert "R4" in d.clauses


def test_sh5_a_restriction_stops_due_diligence(engine: DecisionEngine) -> None:
    restricted = SubjectState(restricted=frozenset({"due_diligence"}))
    d = _ask(engine, Action.SHARE, "due_diligence", subject=restricted, recipient=ADVISOR)
    assert _codes(d) == ["restricted:due_diligence"]


def test_t1_a_closed_account_is_not_transferred_to_a_successor(engine: DecisionEngine) -> None:
    assert _ask(engine, Action.TRANSFER, "business_transfer", recipient=SUCCESSOR).allowed
    d = _ask(engine, Action.TRANSFER, "business_transfer", subject=CLOSED, recipient=SUCCESSOR)
    assert _codes(d) == ["account_closed"]


def test_r4_what_the_law_obliges_still_reaches_the_authority_after_closure(
    engine: DecisionEngine,
) -> None:
    """The legal-obligation path is unchanged: closure and restriction do not stop it."""
    shut = SubjectState(closed=True, legal_hold=True, restricted=frozenset({"legal_request"}))
    for action in (Action.SHARE, Action.TRANSFER):
        assert _ask(engine, action, "legal_request", subject=shut, recipient=AUTHORITY).allowed
