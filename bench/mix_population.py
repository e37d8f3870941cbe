"""Seeded subjects and recipients for any policy: the state a realistic request mix runs against.

Subjects have varied consents (most consent-based purposes they use, some separate consents, a
few outbound flows each with what those flows need, cross-border authorisations mostly for the
purposes that may leave), switched-off settings, minors with and without a guardian's consent to
the service and to each of their scopes (and a few guardians' objections), restrictions, pending
re-consents, legal holds and a few closed accounts.

A subject uses at most `PORTFOLIO` purposes (all of them in a policy that has no more), so what
one subject holds stays the same size however large the policy: the mix then measures how the
engine scales with the rules, not with subjects who consent to hundreds of purposes each.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from piguard.policy import scopes
from piguard.policy.compiler import CompiledRule, Tables
from piguard.policy.decision import Authorisation, RecipientView, SubjectState
from piguard.policy.model import (
    Action,
    Basis,
    ConsentType,
    Policy,
    Requirement,
)

AT = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
# Purposes one subject uses at most: the bundled policy declares 41, the 1,000-rule synthetic 50.
PORTFOLIO = 50


@dataclass(frozen=True, slots=True)
class Flow:
    """One way data can leave: an outbound table entry and a registered recipient it fits."""

    action: Action
    purpose: str
    rules: tuple[CompiledRule, ...]
    recipient: RecipientView


@dataclass(frozen=True, slots=True)
class Person:
    """A subject's state, the outbound flows it consented to, and the purposes it uses."""

    state: SubjectState
    interests: tuple[Flow, ...]
    uses: frozenset[str]


def recipients_by_type(policy: Policy, rng: random.Random) -> dict[str, list[RecipientView]]:
    """The registry: the policy's recipients, plus two made-up ones for every other type."""
    out: dict[str, list[RecipientView]] = {t: [] for t in policy.recipient_types}
    for r in policy.recipients.values():
        bound = _bound(policy, r.type, rng)
        flags = {"assessed": r.assessed, "agreement": r.agreement, "risk_flag": r.risk_flag}
        out[r.type].append(RecipientView(r.id, r.type, r.region, bound_policy=bound, **flags))
    foreign = sorted(k for k in policy.regions if k != policy.cross_border.home) or ["XX"]
    for rtype, views in out.items():
        for i in range(2 if not views else 0):
            region = policy.cross_border.home if i == 0 else rng.choice(foreign)
            bound = _bound(policy, rtype, rng)
            views.append(
                RecipientView(
                    f"{rtype}_{i}", rtype, region, assessed=True, agreement=True, bound_policy=bound
                )
            )
    return out


def _bound(policy: Policy, rtype: str, rng: random.Random) -> str | None:
    """A successor mostly has bound itself to the policy (T1)."""
    needs = policy.recipient_types[rtype].requires
    return policy.key if Requirement.SUCCESSOR_BOUND in needs and rng.random() < 0.9 else None


def flows(tables: Tables, registry: dict[str, list[RecipientView]]) -> list[Flow]:
    """Every (outbound entry, recipient) pair that some role, or the recipient, can start."""
    granted = {(action, purpose) for (_, action, purpose) in tables.grants}
    return [
        Flow(action, purpose, rules, rec)
        # in key order: the table's order follows frozensets, which vary between runs
        for (action, rtype, purpose), rules in sorted(tables.outbound.items())
        if action is Action.SHARE or (action, purpose) in granted
        for rec in registry.get(rtype, [])
    ]


def flow_scope(flow: Flow) -> tuple[str, ConsentType] | None:
    """The consent the flow's first rule needs, spelled as the ledger spells it."""
    rule = flow.rules[0].rule
    kind, rec, purpose = rule.consent_scope, flow.recipient, flow.purpose
    if kind is None:
        return None
    spelled = {
        "purpose": scopes.purpose_scope(purpose),
        "recipient": scopes.recipient_scope(rec.id, purpose),
        "recipient_type": scopes.recipient_type_scope(rec.type, purpose),
        "transfer": scopes.transfer_scope(rec.id),
    }
    return spelled.get(kind, scopes.disclose_scope(purpose)), rule.consent_type


def population(policy: Policy, all_flows: list[Flow], rng: random.Random, n: int) -> list[Person]:
    """`n` subjects, each with the outbound flows it has consented to and the purposes it uses."""
    out = []
    for _ in range(n):
        interests = tuple(rng.sample(all_flows, min(6, len(all_flows))))
        uses = _uses(policy, interests, rng)
        out.append(Person(_subject(policy, interests, uses, rng), interests, uses))
    return out


def _uses(policy: Policy, interests: tuple[Flow, ...], rng: random.Random) -> frozenset[str]:
    """Every purpose of a small policy; else the interests' purposes and others at random,
    `PORTFOLIO` in all."""
    if len(policy.purposes) <= PORTFOLIO:
        return frozenset(policy.purposes)
    uses = set(dict.fromkeys(f.purpose for f in interests))
    others = [k for k in policy.purposes if k not in uses]
    uses.update(rng.sample(others, max(0, PORTFOLIO - len(uses))))
    return frozenset(uses)


def _subject(
    policy: Policy, interests: tuple[Flow, ...], uses: frozenset[str], rng: random.Random
) -> SubjectState:
    consents = _purpose_consents(policy, uses, rng)
    authorisations: dict[str, Authorisation] = {}
    cb = policy.cross_border
    for flow in interests:
        needed = flow_scope(flow)
        if needed is not None and rng.random() < 0.9:
            consents[needed[0]] = needed[1] if rng.random() < 0.9 else ConsentType.REGULAR
        # S1: a subject authorises cross-border business it starts (going abroad or not, as a
        # caller may name a region); a few hold an authorisation for a purpose that may not leave
        foreign = flow.recipient.region != cb.home
        odds = (0.8 if foreign else 0.3) if flow.purpose in cb.purposes else 0.1
        if rng.random() < odds:
            consents[scopes.cross_border_scope(flow.purpose)] = cb.consent_type
        if any(Requirement.AUTHORISATION in cr.requires for cr in flow.rules):
            authorisations[flow.recipient.id] = _authorisation(flow, rng)
    for key in sorted(uses & cb.purposes):
        if rng.random() < 0.3:
            consents[scopes.cross_border_scope(key)] = cb.consent_type
    age = _age(policy, rng)
    minor = age is not None and policy.minors.is_minor(age)
    closed = rng.random() < 0.01
    consent_purposes = [
        k for k, p in policy.purposes.items() if k in uses and p.basis is Basis.CONSENT
    ]
    return SubjectState(
        consents=consents,
        settings={
            k: (not s.default) if rng.random() < 0.12 else s.default
            for k, s in policy.settings.items()
        },
        authorisations=authorisations,
        age=age,
        guardian_consents=_guardian_consents(consents, rng) if minor else frozenset(),
        guardian_objection=minor and rng.random() < 0.1,
        legal_hold=rng.random() < (0.5 if closed else 0.01),
        closed=closed,
        pending_reconsent=_some(rng, consent_purposes, 0.02),
        restricted=_some(rng, [k for k in policy.purposes if k in uses], 0.02),
    )


def _guardian_consents(consents: dict[str, ConsentType], rng: random.Random) -> frozenset[str]:
    """M1: a minor's guardian mostly consented to the service as a whole, and, scope by scope,
    to most of what the minor consented to; some consented to scopes but not (or no longer) to
    the service, some to nothing."""
    service = rng.random() < 0.7
    if not service and rng.random() < 0.6:
        return frozenset()
    given = {scope for scope in consents if rng.random() < 0.85}
    return frozenset({scopes.SERVICE, *given} if service else given)


def _purpose_consents(
    policy: Policy, uses: frozenset[str], rng: random.Random
) -> dict[str, ConsentType]:
    """Most consent-based purposes in use consented, separate where asked (mostly), a few too
    weak."""
    out: dict[str, ConsentType] = {}
    for key, purpose in policy.purposes.items():
        if key not in uses or purpose.basis is not Basis.CONSENT or rng.random() > 0.75:
            continue
        strong = purpose.consent_type is ConsentType.SEPARATE and rng.random() < 0.85
        out[scopes.purpose_scope(key)] = ConsentType.SEPARATE if strong else ConsentType.REGULAR
    return out


def _authorisation(flow: Flow, rng: random.Random) -> Authorisation:
    cats = sorted(flow.rules[0].rule.categories)
    covered = frozenset(cats if rng.random() < 0.85 else rng.sample(cats, max(1, len(cats) // 2)))
    roll = rng.random()
    expires = None if roll < 0.3 else AT + timedelta(days=30 if roll < 0.9 else -1)
    return Authorisation(flow.recipient.id, covered, expires, revoked=rng.random() < 0.05)


def _age(policy: Policy, rng: random.Random) -> int | None:
    roll = rng.random()
    if roll < 0.15:
        return None
    if roll < 0.20:
        return rng.randint(8, policy.minors.age_threshold - 1)
    return rng.randint(policy.minors.age_threshold + 1, 80)


def _some(rng: random.Random, keys: list[str], p: float) -> frozenset[str]:
    return frozenset({rng.choice(keys)}) if keys and rng.random() < p else frozenset()
