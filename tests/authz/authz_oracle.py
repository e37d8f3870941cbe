"""The authorisation matrix's oracle: what the policy file says each actor may do, read from the
policy's own tables (`roles[*].grants`, `outbound`, `exemptions`, `recipients`), never from the
engine or its compiled tables.

The matrix walks every actor (each role of the policy, an unknown role, and each pre-registered
recipient asking on its own behalf) × every `Action` × every declared purpose plus an undeclared
one. For each triple it builds the requests the policy *would* allow if it granted the triple, and
predicts the engine's answer.

The oracle, exactly:

* A **role** may do a *local* action (collect, read, update, erase, erase_subject) for a purpose
  iff one of its grants names that purpose and that action.
* A **role** may do an *outbound* action (share, transfer, disclose) for a purpose iff it has such
  a grant AND some outbound rule of that action covers the purpose for some recipient type, the
  rule shares at least one category the grant covers, and, if the rule's basis is `exemption`, an
  exemption of the policy names this role and purpose. Every such (rule, recipient type) route
  must be allowed on its own.
* A **recipient** asking for itself may read or share (a query is a share to it) for a purpose
  iff a `share` rule covers the purpose for its recipient type with a category of the purpose,
  and the rule's basis is not `exemption` (exemptions name roles, never recipients).
* Everything else is refused: effect `deny`, every reason naming a clause of the policy, and for a
  role of the policy with no grant the reason `S2 no_grant:<role>:<action>:<purpose>`.

The requests give the engine everything a rule could ask for, so that only the grant and the rule
decide: an adult subject holding, as separate consents, every scope the purpose or the route could
need; the case reference (and requesting authority) a grant, rule or exemption demands; a legal
hold where a grant reads held data; the verification reference (`evidence`) that a write (collect
or update) under an identifier's change purpose, the `change_purpose` of some category, rests on
(R1); an authorisation covering the route's categories; a recipient that satisfies its type and
rule (a registered one of the policy when there is one). Categories are the grant's (∩ the rule's
for outbound actions), minus what a write may not touch: immutable categories (except in a
registration variant, `registration=True`, for collect under the registration purpose) and
identifiers outside their own change purpose.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from piguard.policy import scopes
from piguard.policy.decision import (
    Actor,
    Authorisation,
    Decision,
    DecisionRequest,
    Effect,
    RecipientView,
    SubjectState,
)
from piguard.policy.model import (
    OUTBOUND_ACTIONS,
    Action,
    ActorKind,
    Basis,
    ConsentType,
    Grant,
    OutboundRule,
    Policy,
    Requirement,
)

UNKNOWN_ROLE = "unknown_role"
UNDECLARED_PURPOSE = "undeclared_purpose"
CASE = "case-2026-0001"
EVIDENCE = "sms-otp:2026-0001"
AUTHORITY = "pboc"
_ADULT = 30
_SOME_CATEGORY = "user.name"


@dataclass(frozen=True)
class Case:
    """One request of the matrix and what the oracle expects of it."""

    actor: str
    action: Action
    purpose: str
    variant: str
    request: DecisionRequest
    allow: bool
    # For an allowed local action, the clauses of the grant that decides; for a refused triple
    # of a known role and purpose without a grant, the `no_grant` code.
    clauses: tuple[str, ...] = ()
    code: str | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.actor, self.action.value, self.purpose)


@dataclass(frozen=True)
class Route:
    """A way out: an outbound rule, one recipient type of it, and what the request needs."""

    rule: OutboundRule
    recipient: RecipientView
    categories: tuple[str, ...]
    exemption: str | None = None
    requires: frozenset[Requirement] = field(default_factory=frozenset)


def actors(policy: Policy) -> list[str]:
    """Every role, an unknown role, then every pre-registered recipient."""
    return [*policy.roles, UNKNOWN_ROLE, *policy.recipients]


def purposes(policy: Policy) -> list[str]:
    return [*policy.purposes, UNDECLARED_PURPOSE]


def grant_for(policy: Policy, role: str, action: Action, purpose: str) -> Grant | None:
    """The grant of `role` that names `purpose` and `action` (the policy has at most one)."""
    found = [
        g
        for g in (policy.roles[role].grants if role in policy.roles else ())
        if g.purpose == purpose and action in g.actions
    ]
    assert len(found) <= 1, f"two grants for {role} {action} {purpose}"
    return found[0] if found else None


def routes(
    policy: Policy, action: Action, purpose: str, role: str | None, within: frozenset[str]
) -> list[Route]:
    """The usable routes out for a purpose: `role` None is a recipient asking for itself."""
    found: list[Route] = []
    for rule in policy.outbound:
        if rule.action is not action or purpose not in rule.purposes:
            continue
        exemption = None
        if rule.basis is Basis.EXEMPTION:
            # Exemptions are claimed by the roles the policy names, never by a recipient.
            exemption = next(
                (
                    e.code
                    for e in policy.exemptions.values()
                    if role in e.roles and purpose in e.purposes
                ),
                None,
            )
            if exemption is None:
                continue
        for rtype in sorted(rule.recipient_types):
            requires = rule.requires | policy.recipient_types[rtype].requires
            cats = rule.categories & within
            if Requirement.MASKED_ONLY in requires:
                cats = frozenset(c for c in cats if rule.masks.get(c, "clear") != "clear")
            if cats:
                found.append(
                    Route(
                        rule, recipient_of(policy, rtype), tuple(sorted(cats)), exemption, requires
                    )
                )
    return found


def recipient_of(policy: Policy, rtype: str) -> RecipientView:
    """A recipient of the type that satisfies every requirement: the policy's own when it has one
    (facts as the registry gives them), else a registered, assessed one with an agreement."""
    for key, rec in policy.recipients.items():
        if rec.type == rtype:
            return RecipientView(key, rtype, rec.region, True, rec.assessed, rec.agreement)
    return RecipientView(
        f"test_{rtype}",
        rtype,
        policy.cross_border.home,
        assessed=True,
        agreement=True,
        bound_policy=policy.key,
    )


def every_scope(policy: Policy, purpose: str) -> Mapping[str, ConsentType]:
    """Every consent scope a use of `purpose` could need, as a separate consent."""
    found = [
        scopes.purpose_scope(purpose),
        scopes.disclose_scope(purpose),
        scopes.cross_border_scope(purpose),
    ]
    found += [scopes.recipient_type_scope(t, purpose) for t in policy.recipient_types]
    recipients = [*policy.recipients, *(f"test_{t}" for t in policy.recipient_types)]
    found += [scopes.recipient_scope(r, purpose) for r in recipients]
    found += [scopes.transfer_scope(r) for r in recipients]
    return MappingProxyType(dict.fromkeys(found, ConsentType.SEPARATE))


def writable(policy: Policy, purpose: str, categories: frozenset[str]) -> tuple[str, ...]:
    """What a write outside registration may touch (R1)."""
    return tuple(
        sorted(
            c
            for c in categories
            if not policy.categories[c].immutable
            and policy.categories[c].change_purpose in (None, purpose)
        )
    )


def needs_evidence(policy: Policy, action: Action, purpose: str) -> bool:
    """Whether a write rests on a verification: collect or update under a change purpose (R1)."""
    return action in (Action.COLLECT, Action.UPDATE) and any(
        c.change_purpose == purpose for c in policy.categories.values()
    )


def matrix(policy: Policy) -> list[Case]:
    """Every case of the matrix, actor by actor."""
    return [case for actor in actors(policy) for case in cases(policy, actor)]


def cases(policy: Policy, actor: str) -> Iterator[Case]:
    """Every case of one actor's row of the matrix."""
    consents = {p: every_scope(policy, p) for p in purposes(policy)}
    for action in Action:
        for purpose in purposes(policy):
            state = SubjectState(consents=consents[purpose], age=_ADULT)
            if actor in policy.recipients:
                yield from _recipient_cases(policy, actor, action, purpose, state)
            else:
                yield from _role_cases(policy, actor, action, purpose, state)


def _role_cases(
    policy: Policy, role: str, action: Action, purpose: str, state: SubjectState
) -> Iterator[Case]:
    kind = policy.roles[role].kind if role in policy.roles else ActorKind.SERVICE
    grant = grant_for(policy, role, action, purpose)
    actor = Actor(kind, role)
    if grant is None:
        yield _refused(policy, role, action, purpose, actor, state)
        return
    if grant.needs_case_reference:
        actor = replace(actor, case_reference=CASE)
    if grant.reads_held_data:
        state = replace(state, legal_hold=True)
    evidence = EVIDENCE if needs_evidence(policy, action, purpose) else None
    base = DecisionRequest(action, actor, purpose, (), state, evidence=evidence)
    if action in OUTBOUND_ACTIONS:
        found = routes(policy, action, purpose, role, grant.categories)
        if not found:
            yield _refused(policy, role, action, purpose, actor, state, known_grant=True)
        for route in found:
            req = _through(route, base)
            yield Case(role, action, purpose, route_name(route), req, allow=True)
        return
    clauses = tuple(dict.fromkeys(grant.clauses))
    if action is Action.ERASE_SUBJECT:
        # Whole-subject erasure covers whatever the subject holds: the engine decides it on the
        # grant alone, so the categories are the purpose's, whatever they are.
        cats = tuple(sorted(policy.purposes[purpose].categories))
    elif action in (Action.COLLECT, Action.UPDATE):
        cats = writable(policy, purpose, grant.categories)
    else:
        cats = tuple(sorted(grant.categories))
    yield Case(role, action, purpose, "grant", replace(base, categories=cats), True, clauses)
    if action is Action.COLLECT and purpose == policy.bindings.registration_purpose:
        every = tuple(sorted(grant.categories))
        req = replace(base, categories=every, registration=True)
        yield Case(role, action, purpose, "registration", req, True, clauses)


def _recipient_cases(
    policy: Policy, rid: str, action: Action, purpose: str, state: SubjectState
) -> Iterator[Case]:
    rec = policy.recipients[rid]
    me = RecipientView(rid, rec.type, rec.region, True, rec.assessed, rec.agreement)
    actor = Actor(ActorKind.RECIPIENT, rid)
    base = DecisionRequest(action, actor, purpose, (), state, recipient=me)
    usable: list[Route] = []
    if action in (Action.READ, Action.SHARE) and purpose in policy.purposes:
        declared = policy.purposes[purpose].categories
        # A recipient's query is a share to it (SH0, SH6): its own type's share rules decide.
        usable = [
            r
            for r in routes(policy, Action.SHARE, purpose, None, declared)
            if r.recipient.type == rec.type
        ]
    if not usable:
        cats = _any_categories(policy, purpose)
        req = replace(base, categories=cats, actor=replace(actor, case_reference=CASE))
        code = _recipient_refusal(policy, rec.type, action, purpose)
        yield Case(rid, action, purpose, "refused", req, allow=False, code=code)
    for route in usable:
        req = _through(replace(route, recipient=me), base)
        yield Case(rid, action, purpose, route_name(route), req, allow=True)


def _recipient_refusal(policy: Policy, rtype: str, action: Action, purpose: str) -> str | None:
    """The first reason a recipient's own query is refused, where the policy alone says it."""
    if action not in (Action.READ, Action.SHARE):
        return f"recipient_cannot:{action.value}"
    if purpose not in policy.purposes:
        return f"unknown_purpose:{purpose}"
    if not any(
        r.action is Action.SHARE and purpose in r.purposes and rtype in r.recipient_types
        for r in policy.outbound
    ):
        return f"no_rule:share:{rtype}:{purpose}"
    return None


def _through(route: Route, base: DecisionRequest) -> DecisionRequest:
    """The request down one route, with what the rule and the recipient type require."""
    actor = base.actor
    if Requirement.CASE_REFERENCE in route.requires or route.exemption is not None:
        actor = replace(actor, case_reference=CASE)
    if route.exemption is not None:
        actor = replace(actor, authority=AUTHORITY)
    state = base.subject
    if Requirement.AUTHORISATION in route.requires:
        grant = Authorisation(route.recipient.id, frozenset(route.categories))
        state = replace(state, authorisations=MappingProxyType({route.recipient.id: grant}))
    return replace(
        base,
        actor=actor,
        subject=state,
        categories=route.categories,
        recipient=route.recipient,
        exemption=route.exemption,
    )


def route_name(route: Route) -> str:
    return f"{route.rule.id}->{route.recipient.type}"


def _any_categories(policy: Policy, purpose: str) -> tuple[str, ...]:
    if purpose in policy.purposes:
        return tuple(sorted(policy.purposes[purpose].categories))
    return (_SOME_CATEGORY,)


def _refused(
    policy: Policy,
    role: str,
    action: Action,
    purpose: str,
    actor: Actor,
    state: SubjectState,
    known_grant: bool = False,
) -> Case:
    """A triple the policy does not allow, asked as generously as possible (a case reference,
    a legal hold, a verification reference, a recipient that satisfies everything) so that only
    the grant can refuse it."""
    cats = _any_categories(policy, purpose)
    any_route = next(
        iter(routes(policy, action, purpose, role, frozenset(policy.categories))), None
    )
    recipient = any_route.recipient if any_route else recipient_of(policy, "affiliate")
    req = DecisionRequest(
        action,
        replace(actor, case_reference=CASE),
        purpose,
        cats,
        replace(state, legal_hold=True),
        recipient=recipient if action in OUTBOUND_ACTIONS else None,
        evidence=EVIDENCE,
    )
    code = None
    if purpose not in policy.purposes:
        code = f"unknown_purpose:{purpose}"
    elif role not in policy.roles:
        code = f"unknown_role:{role}"
    elif not known_grant:
        code = f"no_grant:{role}:{action.value}:{purpose}"
    return Case(role, action, purpose, "refused", req, allow=False, code=code)


def mismatch(policy: Policy, case: Case, decision: Decision) -> str | None:
    """Why the engine's answer disagrees with the oracle, or None when it agrees."""
    real = set(policy.clauses)
    unreal = [r.clause for r in decision.reasons if r.clause not in real]
    if unreal or not decision.reasons:
        return f"reasons name no clause of the policy: {decision.reasons}"
    if case.allow:
        if decision.effect is not Effect.ALLOW:
            return f"refused: {decision.reasons}"
        if case.clauses and decision.clauses != case.clauses:
            return f"cites {decision.clauses}, the grant cites {case.clauses}"
        return None
    if decision.effect is not Effect.DENY:
        return f"not refused: {decision.effect} {decision.reasons}"
    if case.code is not None and decision.reasons[0].code != case.code:
        return f"refused for {decision.reasons}, not {case.code}"
    return None
