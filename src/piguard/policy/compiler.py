"""Compile a policy once into lookup tables, so that a decision is a handful of dictionary lookups.

Grants are keyed by (role, action, purpose) and outbound rules by (action, recipient type,
purpose); the settings gates that can touch a grant are attached to it ahead of time. Nothing here
scans rules at decision time, so the cost of a decision does not grow with the size of the policy.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from piguard.kernel.text import LocalText
from piguard.policy import scopes
from piguard.policy.decision import Decision
from piguard.policy.model import (
    CONSENT_STRENGTH,
    Action,
    ActorKind,
    Basis,
    ClauseIds,
    Grant,
    OutboundRule,
    Policy,
    Purpose,
    Requirement,
    Role,
)

GrantKey = tuple[str, Action, str]
_WRITES = (Action.COLLECT, Action.UPDATE)
RuleKey = tuple[Action, str, str]


@dataclass(frozen=True, slots=True)
class GateCheck:
    """A settings gate attached to a grant: `whole` means the purpose itself is gated."""

    setting: str
    default: bool
    when: bool
    whole: bool
    categories: frozenset[str]
    withhold: bool
    clauses: ClauseIds


class CompiledGrant:
    """One (role, action, purpose) entry with everything a decision needs precomputed.

    `decisions` caches the finished Decision per tuple of categories: decisions are immutable
    values, so one allowed answer serves every request that asks the same thing.
    """

    __slots__ = (
        "action",
        "categories",
        "clauses",
        "consent_scope",
        "consent_strength",
        "decisions",
        "gates",
        "grant",
        "kind",
        "needs_evidence",
        "purpose",
        "role",
        "special",
    )

    def __init__(self, role: Role, grant: Grant, action: Action, purpose: Purpose) -> None:
        self.role = role.key
        self.kind = role.kind
        self.grant = grant
        self.action = action
        self.purpose = purpose
        self.categories = grant.categories
        # Preconditions only some grants have; one flag keeps them off the common path.
        self.special = grant.needs_case_reference or grant.reads_held_data
        self.needs_evidence = False  # set by compile_policy for writes under a change purpose
        # Reasons name what decided: the grant that allowed it, not every clause its purpose
        # or role is cited for elsewhere.
        self.clauses = tuple(dict.fromkeys(grant.clauses))
        self.consent_scope = _consent_scope(role, action, purpose)
        self.consent_strength = CONSENT_STRENGTH[purpose.consent_type]
        self.gates: tuple[GateCheck, ...] = ()
        self.decisions: dict[object, Decision] = {}


def _consent_scope(role: Role, action: Action, purpose: Purpose) -> str | None:
    """The consent a use needs: consent purposes, not erasure or the subject's own acts."""
    if purpose.basis is not Basis.CONSENT or action in (Action.ERASE, Action.ERASE_SUBJECT):
        return None
    if role.kind in (ActorKind.SUBJECT, ActorKind.RECIPIENT):
        return None
    return scopes.purpose_scope(purpose.key)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """An outbound rule for one recipient type, with that type's requirements merged in (SH0).

    Assessment and agreement, checked on almost every share, are flags; the rarer requirements
    stay a tuple to walk.
    """

    rule: OutboundRule
    recipient_type: str
    requires: frozenset[Requirement]
    strength: int
    clauses: ClauseIds
    needs_assessment: bool
    needs_agreement: bool
    other_requires: tuple[Requirement, ...]


_FLAGGED = (Requirement.REGISTERED, Requirement.ASSESSMENT, Requirement.AGREEMENT)
_RECIPIENT_ROLE = Role(
    "recipient", ActorKind.RECIPIENT, LocalText("接收方", "Recipient"), (), ("SH0", "SH6")
)


@dataclass(frozen=True, slots=True)
class Tables:
    """The compiled policy."""

    policy: Policy
    grants: dict[GrantKey, CompiledGrant]
    outbound: dict[RuleKey, tuple[CompiledRule, ...]]
    recipient_checks: dict[str, CompiledGrant]


def compile_policy(policy: Policy) -> Tables:
    """Build the lookup tables of a policy; pure and deterministic."""
    grants: dict[GrantKey, CompiledGrant] = {}
    change_purposes = {c.change_purpose for c in policy.categories.values() if c.change_purpose}
    for role in policy.roles.values():
        for grant in role.grants:
            purpose = policy.purposes[grant.purpose]
            for action in grant.actions:
                key = (role.key, action, grant.purpose)
                compiled = CompiledGrant(role, grant, action, purpose)
                compiled.gates = _gates_for(policy, action, purpose.key, grant.categories)
                compiled.needs_evidence = action in _WRITES and purpose.key in change_purposes
                compiled.special = compiled.special or compiled.needs_evidence
                grants[key] = compiled
    outbound: defaultdict[RuleKey, list[CompiledRule]] = defaultdict(list)
    for rule in policy.outbound:
        for rtype in rule.recipient_types:
            compiled_rule = _compile_rule(policy, rule, rtype)
            for purpose_key in rule.purposes:
                outbound[(rule.action, rtype, purpose_key)].append(compiled_rule)
    return Tables(
        policy=policy,
        grants=grants,
        outbound={k: tuple(v) for k, v in outbound.items()},
        recipient_checks={p: _recipient_check(policy, p) for p in policy.purposes},
    )


def _compile_rule(policy: Policy, rule: OutboundRule, rtype: str) -> CompiledRule:
    kind = policy.recipient_types[rtype]
    merged = rule.requires | kind.requires
    return CompiledRule(
        rule=rule,
        recipient_type=rtype,
        requires=merged,
        strength=CONSENT_STRENGTH[rule.consent_type],
        clauses=tuple(dict.fromkeys((*rule.clauses, *kind.clauses))),
        needs_assessment=Requirement.ASSESSMENT in merged,
        needs_agreement=Requirement.AGREEMENT in merged,
        other_requires=tuple(sorted(r for r in merged if r not in _FLAGGED)),
    )


def _recipient_check(policy: Policy, purpose_key: str) -> CompiledGrant:
    """What the purpose demands when a recipient itself asks (SH6): restriction and settings.
    Consent comes from the outbound rule, scoped to that recipient."""
    purpose = policy.purposes[purpose_key]
    grant = Grant(purpose_key, frozenset({Action.SHARE}), purpose.categories, {}, ("SH0",))
    compiled = CompiledGrant(_RECIPIENT_ROLE, grant, Action.SHARE, purpose)
    compiled.gates = _gates_for(policy, Action.SHARE, purpose_key, purpose.categories)
    return compiled


def _gates_for(
    policy: Policy, action: Action, purpose: str, categories: frozenset[str]
) -> tuple[GateCheck, ...]:
    """The gates that can touch a grant: purposes pick the requests, categories what is hit."""
    found: list[GateCheck] = []
    for setting in policy.settings.values():
        for gate in setting.gates:
            if action not in gate.actions:
                continue
            if gate.purposes and purpose not in gate.purposes:
                continue
            whole = not gate.categories
            touched = gate.categories & categories
            if whole or touched:
                found.append(
                    GateCheck(
                        setting.key,
                        setting.default,
                        gate.when,
                        whole,
                        frozenset(touched),
                        gate.withhold,
                        setting.clauses,
                    )
                )
    return tuple(found)
