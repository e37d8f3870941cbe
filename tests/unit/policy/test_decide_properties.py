"""Properties of the decision engine over the bundled policy (V1, SH1, DEF2)."""

from types import MappingProxyType

from hypothesis import given, settings
from hypothesis import strategies as st

from piguard.policies import bundled_policy_path
from piguard.policy import scopes
from piguard.policy.decide import DecisionEngine
from piguard.policy.decision import Actor, Decision, DecisionRequest, RecipientView, SubjectState
from piguard.policy.language import load_policy
from piguard.policy.masking import MASK_CHAR
from piguard.policy.model import Action, ActorKind, ConsentType

POLICY = load_policy(bundled_policy_path())
ENGINE = DecisionEngine(POLICY)
GRANTS = sorted(
    (role.key, role.kind, action, grant.purpose, tuple(sorted(grant.categories)))
    for role in POLICY.roles.values()
    for grant in role.grants
    for action in grant.actions
    if role.kind is not ActorKind.RECIPIENT
)
RECIPIENTS = [
    RecipientView(r.id, r.type, r.region, assessed=r.assessed, agreement=r.agreement)
    for r in POLICY.recipients.values()
] + [RecipientView("hk_bank", "financial_institution", "HK", assessed=True, agreement=True)]
SCOPES = sorted(
    {scopes.purpose_scope(p) for p in POLICY.purposes}
    | {scopes.recipient_scope(r.id, p) for r in RECIPIENTS for p in POLICY.purposes}
    | {scopes.recipient_type_scope(r.type, p) for r in RECIPIENTS for p in POLICY.purposes}
    | {scopes.cross_border_scope(p) for p in POLICY.purposes}
    | {scopes.SERVICE}
)
SETTINGS = sorted(POLICY.settings)


@st.composite
def requests(draw: st.DrawFn) -> DecisionRequest:
    role, kind, action, purpose, granted = draw(st.sampled_from(GRANTS))
    cats = draw(st.lists(st.sampled_from(granted), max_size=4, unique=True)) if granted else []
    if draw(st.booleans()):
        cats.append(draw(st.sampled_from(sorted(POLICY.categories))))
    state = SubjectState(
        consents=MappingProxyType(
            {
                s: draw(st.sampled_from(list(ConsentType)))
                for s in draw(st.lists(st.sampled_from(SCOPES), max_size=12, unique=True))
            }
        ),
        settings={
            k: draw(st.booleans()) for k in draw(st.lists(st.sampled_from(SETTINGS), unique=True))
        },
        age=draw(st.one_of(st.none(), st.integers(10, 80))),
        guardian_consents=frozenset(draw(st.lists(st.sampled_from(SCOPES), max_size=6))),
    )
    recipient = (
        draw(st.sampled_from(RECIPIENTS)) if action in (Action.SHARE, Action.TRANSFER) else None
    )
    return DecisionRequest(
        action, Actor(kind, role), purpose, tuple(cats), state, recipient=recipient
    )


def without(req: DecisionRequest, scope: str) -> DecisionRequest:
    """The same request after the subject, or a minor's guardian, withdrew one scope."""
    fewer = {k: v for k, v in req.subject.consents.items() if k != scope}
    state = SubjectState(
        consents=fewer,
        settings=req.subject.settings,
        age=req.subject.age,
        guardian_consents=req.subject.guardian_consents - {scope},
    )
    return DecisionRequest(
        req.action, req.actor, req.purpose, req.categories, state, recipient=req.recipient
    )


@settings(max_examples=400, deadline=None)
@given(req=requests(), data=st.data())
def test_sh1_withdrawing_a_consent_never_widens_what_is_allowed(
    req: DecisionRequest, data: st.DataObject
) -> None:
    if not req.subject.consents:
        return
    scope = data.draw(st.sampled_from(sorted(req.subject.consents)))
    before, after = ENGINE.decide(req), ENGINE.decide(without(req, scope))
    if after.allowed:
        assert before.allowed
        assert set(after.projection) <= set(before.projection)
        for key, proj in after.projection.items():
            assert _rank(proj.kind) <= _rank(before.projection[key].kind)


def _rank(kind: object) -> int:
    return {"withheld": 0, "masked": 1, "clear": 2}[str(kind)]


@settings(max_examples=300, deadline=None)
@given(
    role=st.text(min_size=1, max_size=12),
    purpose=st.text(min_size=1, max_size=12),
    action=st.sampled_from(list(Action)),
    kind=st.sampled_from(list(ActorKind)),
    cats=st.lists(st.text(max_size=10), max_size=3),
)
def test_v1_deny_by_default(
    role: str, purpose: str, action: Action, kind: ActorKind, cats: list[str]
) -> None:
    known = (role, action, purpose) in {(g[0], g[2], g[3]) for g in GRANTS}
    d = ENGINE.decide(DecisionRequest(action, Actor(kind, role), purpose, tuple(cats)))
    if not known:
        assert not d.allowed
    assert d.reasons


@settings(max_examples=400, deadline=None)
@given(req=requests())
def test_v1_every_decision_has_a_reason_and_a_version(req: DecisionRequest) -> None:
    d: Decision = ENGINE.decide(req)
    assert d.reasons
    assert all(r.clause in POLICY.clauses for r in d.reasons)
    assert d.policy_version == POLICY.key


@settings(max_examples=300, deadline=None)
@given(req=requests(), value=st.text(min_size=1, max_size=30))
def test_def2_projection_never_reveals_more_than_clear(req: DecisionRequest, value: str) -> None:
    d = ENGINE.decide(req)
    shown = d.show(dict.fromkeys(req.categories, value))
    for out in shown.values():
        if out is None:
            continue
        assert len(out) == len(value)
        assert all(ch == MASK_CHAR or ch == value[i] for i, ch in enumerate(out))
