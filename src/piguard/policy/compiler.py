"""Compile a policy once into lookup tables, so that a decision is a handful of dictionary lookups.

Grants are keyed by (role, action, purpose) and outbound rules by (action, recipient type,
purpose); the settings gates that can touch a grant are attached to it ahead of time. Nothing here
scans rules at decision time, so the cost of a decision does not grow with the size of the policy.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

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
        "purpose",
        "role",
    )

    def __init__(self, role: Role, grant: Grant, action: Action, purpose: Purpose) -> None:
        self.role = role.key
        self.kind = role.kind
        self.grant = grant
        self.action = action
        self.purpose = purpose
        self.categories = grant.categories
        self.clauses = tuple(dict.fromkeys((*purpose.clauses, *grant.clauses, *role.clauses)))
        self.consent_scope = _consent_scope(role, action, purpose)
        self.consent_strength = CONSENT_STRENGTH[purpose.consent_type]
        self.gates: tuple[GateCheck, ...] = ()
        self.decisions: dict[object, Decision] = {}


def _consent_scope(role: Role, action: Action, purpose: Purpose) -> str | None:
    """The consent a use needs: consent purposes, not erasure or the subject's own acts."""
    if purpose.basis is not Basis.CONSENT or action is Action.ERASE:
        return None
    if role.kind is ActorKind.SUBJECT:
        return None
    return scopes.purpose_scope(purpose.key)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """An outbound rule with the recipient type's own requirements merged in (SH0)."""

    rule: OutboundRule
    requires: frozenset[Requirement]
    strength: int
    clauses: ClauseIds


@dataclass(frozen=True, slots=True)
class Tables:
    """The compiled policy."""

    policy: Policy
    grants: dict[GrantKey, CompiledGrant]
    roles_by_key: dict[str, Role]
    outbound: dict[RuleKey, tuple[CompiledRule, ...]]
    outbound_actions_by_purpose: dict[str, frozenset[Action]]


def compile_policy(policy: Policy) -> Tables:
    """Build the lookup tables of a policy; pure and deterministic."""
    grants: dict[GrantKey, CompiledGrant] = {}
    for role in policy.roles.values():
        for grant in role.grants:
            purpose = policy.purposes[grant.purpose]
            for action in grant.actions:
                key = (role.key, action, grant.purpose)
                compiled = CompiledGrant(role, grant, action, purpose)
                compiled.gates = _gates_for(policy, action, purpose.key, grant.categories)
                grants[key] = compiled
    outbound: defaultdict[RuleKey, list[CompiledRule]] = defaultdict(list)
    actions: defaultdict[str, set[Action]] = defaultdict(set)
    for rule in policy.outbound:
        for rtype in rule.recipient_types:
            merged = rule.requires | policy.recipient_types[rtype].requires
            clauses = tuple(dict.fromkeys((*rule.clauses, *policy.recipient_types[rtype].clauses)))
            compiled_rule = CompiledRule(rule, merged, CONSENT_STRENGTH[rule.consent_type], clauses)
            for purpose_key in rule.purposes:
                outbound[(rule.action, rtype, purpose_key)].append(compiled_rule)
                actions[purpose_key].add(rule.action)
    return Tables(
        policy=policy,
        grants=grants,
        roles_by_key=dict(policy.roles),
        outbound={k: tuple(v) for k, v in outbound.items()},
        outbound_actions_by_purpose={k: frozenset(v) for k, v in actions.items()},
    )


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
