"""A realistic, seeded request mix for any policy, built from its compiled tables.

Mostly local collect/read/update/erase by service, staff, authority and subject roles on their own
grants (a whole subject's erasure naming no categories), plus outbound flows (by a granted role or
by the recipient itself) to registered recipients, now and then with a claimed region, and with an
exemption where a rule rests on one; registrations writing the fields that never change, and
identifier changes through their own purpose or, wrongly, another; and the realistic share of
mistakes: categories outside the grant, ungranted or unknown purposes, unknown roles, exemptions
claimed by the roles and for the purposes they name or not, with or without the requesting
authority, purposes other than the data's source.

Every grant is as likely as any other, so a large policy's requests spread over all of its grants
(the engine's working set grows with the policy, as it would under traffic that used every rule);
the subject asked about is one who uses the grant's purpose (`mix_population.PORTFOLIO`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from mix_population import AT, Flow, Person, flows, population, recipients_by_type
from piguard.policy.compiler import CompiledGrant, Tables, compile_policy
from piguard.policy.decision import Actor, DecisionRequest, RecipientView, SubjectState
from piguard.policy.model import (
    OUTBOUND_ACTIONS,
    Action,
    ActorKind,
    Basis,
    Category,
    Exemption,
    Policy,
    Requirement,
)

# kind of request → share of the mix
MIX = {
    "local": 0.57,
    "outbound": 0.20,
    "cross_border": 0.01,
    "outside_grant": 0.04,
    "source_purpose": 0.04,
    "no_grant": 0.03,
    "exemption": 0.03,
    "registration": 0.02,
    "identifier_change": 0.01,
    "unknown_purpose": 0.02,
    "unknown_role": 0.02,
    "no_data": 0.01,
}
_WRITES = (Action.COLLECT, Action.UPDATE)
CASE = "CASE-2024-0042"
EVIDENCE = "VERIFY-2024-0815"  # the verification an identifier change rests on (R1, C2.3)
AUTHORITY = "PSB Hangzhou"  # the requesting authority an exemption names (C8(1)-(3))


@dataclass(frozen=True, slots=True)
class Workload:
    """The requests, and how many subjects they were drawn from."""

    requests: list[DecisionRequest]
    subjects: int


def build(policy: Policy, n_requests: int, n_subjects: int, seed: int = 2024) -> Workload:
    """`n_requests` requests over `n_subjects` subjects; deterministic for a seed."""
    rng = random.Random(seed)
    tables = compile_policy(policy)
    all_flows = flows(tables, recipients_by_type(policy, rng))
    gen = _Generator(policy, tables, all_flows, rng, population(policy, all_flows, rng, n_subjects))
    kinds, weights = zip(*MIX.items(), strict=True)
    picks = rng.choices(kinds, weights, k=n_requests)
    return Workload([gen.make(kind) for kind in picks], n_subjects)


class _Generator:
    """Makes one request of a kind; the grants and flows it draws from are indexed once."""

    def __init__(
        self,
        policy: Policy,
        tables: Tables,
        all_flows: list[Flow],
        rng: random.Random,
        people: list[Person],
    ) -> None:
        self.policy, self.rng, self.flows, self.people = policy, rng, all_flows, people
        # in key order: a compiled table's order follows frozensets, which vary between runs
        self.local = [
            g
            for (_, action, _), g in sorted(tables.grants.items())
            if action not in OUTBOUND_ACTIONS and g.kind is not ActorKind.RECIPIENT
        ]
        self.home = policy.cross_border.home
        self.cross_flows = [f for f in all_flows if f.purpose in policy.cross_border.purposes]
        self.foreign = sorted(k for k in policy.regions if k != self.home) or ["XX"]
        self.reuse = [g for g in self.local if g.action in (Action.READ, Action.UPDATE)]
        self.fixed = {g: _fixed(g, policy.categories) for g in self.local}
        # R1: registration writes what never changes; registering is one purpose's job where
        # that purpose can, else any collect that can
        registers = [g for g in self.local if g.action is Action.COLLECT and self.fixed[g]]
        own = [g for g in registers if g.purpose.key == policy.bindings.registration_purpose]
        self.registers = own or registers
        changes = {c.change_purpose for c in policy.categories.values() if c.change_purpose}
        identifiers = [g for g in self.local if g.action in _WRITES and _identifiers(g, policy)]
        self.changes = [g for g in identifiers if g.purpose.key in changes]
        self.other_changes = [g for g in identifiers if g.purpose.key not in changes]
        # C8: the grants for an exemption's purposes, and those of them its roles hold
        self.exempt_for = {
            code: [g for g in self.local if g.purpose.key in e.purposes]
            for code, e in policy.exemptions.items()
        }
        self.exempt = {
            code: [g for g in grants if g.role in policy.exemptions[code].roles]
            for code, grants in self.exempt_for.items()
        }
        self.granted: dict[tuple[str, Action], set[str]] = {}
        for role, action, purpose in tables.grants:
            self.granted.setdefault((role, action), set()).add(purpose)
        self.grantees: dict[tuple[Action, str], list[CompiledGrant]] = {}
        for (_, action, purpose), g in sorted(tables.grants.items()):
            if action in OUTBOUND_ACTIONS:
                self.grantees.setdefault((action, purpose), []).append(g)
        # who uses each purpose, in population order (everyone, in a policy of few purposes)
        self.users: dict[str, list[SubjectState]] = {k: [] for k in policy.purposes}
        self.held_users: dict[str, list[SubjectState]] = {k: [] for k in policy.purposes}
        for person in people:
            for key in person.uses:
                self.users[key].append(person.state)
                if person.state.legal_hold:
                    self.held_users[key].append(person.state)
        self.everyone = [p.state for p in people]
        self.held = [s for s in self.everyone if s.legal_hold] or self.everyone[:1]
        self.makers: dict[str, Callable[[], DecisionRequest]] = {
            "local": self._local,
            "outbound": self._outbound,
            "cross_border": self._cross_border,
            "outside_grant": self._outside_grant,
            "source_purpose": self._source_purpose,
            "no_grant": self._no_grant,
            "exemption": self._exemption,
            "registration": self._registration,
            "identifier_change": self._identifier_change,
            "unknown_purpose": lambda: replace(self._local(), purpose="lottery_winnings"),
            "unknown_role": self._unknown_role,
            "no_data": lambda: replace(self._local(), categories=()),
        }

    def make(self, kind: str) -> DecisionRequest:
        """One request of the given kind of `MIX`."""
        return self.makers[kind]()

    def _sample(self, keys: Sequence[str] | frozenset[str], most: int) -> tuple[str, ...]:
        keys = sorted(keys)
        if not keys:
            return ()
        return tuple(self.rng.sample(keys, self.rng.randint(1, min(most, len(keys)))))

    def _actor(self, g: CompiledGrant, needs_case: bool) -> Actor:
        case = CASE if needs_case and self.rng.random() < 0.85 else None
        return Actor(g.kind, g.role, case)

    def _local(self, grants: list[CompiledGrant] | None = None) -> DecisionRequest:
        """Any grant alike (of `grants`, else of all local ones)."""
        return self._request(self.rng.choice(grants or self.local))

    def _request(self, g: CompiledGrant) -> DecisionRequest:
        """A use of the grant, for a subject who uses its purpose (held data: one under a hold).
        A whole subject's erasure mostly names no categories; a write mostly leaves alone what
        only registration writes (R1), now and then it tries; a write under an identifier's
        change purpose mostly names the verification it rests on."""
        key = g.purpose.key
        if g.grant.reads_held_data:
            subject = self.rng.choice(self.held_users[key] or self.held)
        else:
            subject = self.rng.choice(self.users[key] or self.everyone)
        usable = g.categories & g.purpose.categories
        if g.action in _WRITES and self.rng.random() < 0.95:
            usable = usable - self.fixed[g] or usable
        whole = g.action is Action.ERASE_SUBJECT and self.rng.random() < 0.9
        verified = g.needs_evidence and self.rng.random() < 0.9
        return DecisionRequest(
            action=g.action,
            actor=self._actor(g, g.grant.needs_case_reference),
            purpose=g.purpose.key,
            categories=() if whole else self._sample(usable, 4),
            subject=subject,
            at=AT,
            evidence=EVIDENCE if verified else None,
        )

    def _registration(self) -> DecisionRequest:
        """R1: a collect of the fields that never change (and identifiers), mostly as the vault's
        registration, now and then outside it (denied)."""
        if not self.registers:
            return self._local()
        g = self.rng.choice(self.registers)
        req = self._request(g)
        fixed = self._sample(self.fixed[g], 2)
        return replace(
            req,
            categories=tuple(dict.fromkeys((*fixed, *req.categories))),
            registration=self.rng.random() < 0.9,
        )

    def _identifier_change(self) -> DecisionRequest:
        """An identifier (phone, email) written through its change purpose (mostly with the
        verification it rests on), or through another purpose that declares it (denied, R1)."""
        right = self.changes and (not self.other_changes or self.rng.random() < 0.6)
        grants = self.changes if right else self.other_changes
        if not grants:
            return self._local()
        g = self.rng.choice(grants)
        return replace(self._request(g), categories=self._sample(_identifiers(g, self.policy), 2))

    def _outside_grant(self) -> DecisionRequest:
        """One category the grant does not cover: undeclared, ungranted or unknown."""
        g = self.rng.choice(self.local)
        req = self._request(g)
        others = sorted(set(self.policy.categories) - g.categories) or ["user.unknown"]
        return replace(req, categories=(*req.categories, self.rng.choice(others)))

    def _source_purpose(self) -> DecisionRequest:
        """A read or update of data collected for other purposes (U3)."""
        req = self._local(self.reuse)
        return replace(req, source_purposes=frozenset(self._sample(list(self.policy.purposes), 2)))

    def _no_grant(self) -> DecisionRequest:
        """A declared purpose the role holds no grant for, for this action."""
        req = self._local()
        held = self.granted[(req.actor.role, req.action)]
        others = [k for k in self.policy.purposes if k not in held] or list(self.policy.purposes)
        return replace(req, purpose=self.rng.choice(others))

    def _exemption(self) -> DecisionRequest:
        """C8: mostly by a role the exemption names for a purpose it names; else for a purpose
        it names by any role that holds it, or any grant, or a code the policy does not know; a
        case reference and the requesting authority mostly where the exemption needs them, now
        and then missing."""
        code = self.rng.choice([*self.policy.exemptions, "made_up"])
        exemption = self.policy.exemptions.get(code)
        roll = self.rng.random()
        if roll < 0.6:
            grants = self.exempt.get(code)
        else:
            grants = self.exempt_for.get(code) if roll < 0.8 else None
        req = self._local(grants or None)
        return replace(req, exemption=code, actor=self._exempt_actor(req.actor, exemption))

    def _exempt_actor(self, actor: Actor, exemption: Exemption | None) -> Actor:
        needs_case = exemption is not None and exemption.needs_case_reference
        needs_authority = exemption is not None and exemption.needs_authority
        case = CASE if self.rng.random() < (0.85 if needs_case else 0.3) else None
        by = AUTHORITY if self.rng.random() < (0.8 if needs_authority else 0.05) else None
        return replace(actor, case_reference=case, authority=by)

    def _unknown_role(self) -> DecisionRequest:
        req = self._local()
        if self.rng.random() < 0.5:
            return replace(req, actor=Actor(req.actor.kind, "intern"))
        wrong = ActorKind.STAFF if req.actor.kind is not ActorKind.STAFF else ActorKind.SERVICE
        return replace(req, actor=Actor(wrong, req.actor.role))

    def _outbound(self) -> DecisionRequest:
        """Mostly a flow the subject consented to, else any flow for a subject who uses its
        purpose; the categories are what both the rule and the asker's grant cover, and now and
        then one more."""
        if self.rng.random() < 0.75:
            person = self.rng.choice(self.people)
            subject, flow = person.state, self.rng.choice(person.interests)
        else:
            flow = self.rng.choice(self.flows)
            subject = self.rng.choice(self.users[flow.purpose] or self.everyone)
        return self._outbound_request(flow, subject, self._claimed_region())

    def _cross_border(self) -> DecisionRequest:
        """S1: a flow of a cross-border business purpose, abroad by its recipient's region or by
        the region the caller names, for a subject who uses the purpose."""
        if not self.cross_flows:
            return self._outbound()
        flow = self.rng.choice(self.cross_flows)
        subject = self.rng.choice(self.users[flow.purpose] or self.everyone)
        abroad = flow.recipient.region != self.home
        return self._outbound_request(
            flow, subject, None if abroad else self.rng.choice(self.foreign)
        )

    def _outbound_request(
        self, flow: Flow, subject: SubjectState, region: str | None
    ) -> DecisionRequest:
        rule = flow.rules[0].rule
        needs_case = any(Requirement.CASE_REFERENCE in cr.requires for cr in flow.rules)
        actor, covered = self._outbound_actor(flow, needs_case)
        cats = self._sample(rule.categories & covered or rule.categories, 3)
        if self.rng.random() < 0.06:
            cats = (*cats, self.rng.choice(sorted(self.policy.categories)))
        exemption = self._outbound_exemption(flow)
        if exemption is not None:
            actor = self._exempt_actor(actor, self.policy.exemptions.get(exemption))
        return DecisionRequest(
            action=flow.action,
            actor=actor,
            purpose=flow.purpose,
            categories=cats,
            subject=subject,
            recipient=self._recipient_variant(flow),
            region=region,
            exemption=exemption,
            at=AT,
        )

    def _outbound_exemption(self, flow: Flow) -> str | None:
        """Where a rule of the flow rests on an exemption (C8), mostly one that names the
        flow's purpose, now and then any."""
        if not any(cr.rule.basis is Basis.EXEMPTION for cr in flow.rules):
            return None
        if self.rng.random() < 0.3:
            return None
        fits = sorted(k for k, e in self.policy.exemptions.items() if flow.purpose in e.purposes)
        if fits and self.rng.random() < 0.8:
            return self.rng.choice(fits)
        return self.rng.choice([*self.policy.exemptions, "made_up"])

    def _claimed_region(self) -> str | None:
        """A caller now and then names where the data goes: abroad, or home (which cannot make
        a transfer abroad look domestic, S1)."""
        roll = self.rng.random()
        if roll < 0.04:
            return self.rng.choice(self.foreign)
        return self.home if roll < 0.07 else None

    def _outbound_actor(self, flow: Flow, needs_case: bool) -> tuple[Actor, frozenset[str]]:
        """Who starts the flow, and the categories it may send: a role those of its grant, a
        recipient those the purpose declares; mostly with a case reference where one is needed
        (by a rule, or by the role's grant)."""
        grantees = self.grantees.get((flow.action, flow.purpose), [])
        by_recipient = flow.action is Action.SHARE and (not grantees or self.rng.random() < 0.3)
        if by_recipient:
            declared = self.policy.purposes[flow.purpose].categories
            case = CASE if needs_case and self.rng.random() < 0.85 else None
            return Actor(ActorKind.RECIPIENT, flow.recipient.id, case), declared
        g = self.rng.choice(grantees or self.local)
        return self._actor(g, needs_case or g.grant.needs_case_reference), g.categories

    def _recipient_variant(self, flow: Flow) -> RecipientView:
        """Mostly the registry's view; now and then an unregistered or terminated recipient."""
        roll = self.rng.random()
        if roll < 0.03:
            return replace(flow.recipient, registered=False)
        if roll < 0.05:
            return replace(flow.recipient, active=False)
        return flow.recipient


def _fixed(g: CompiledGrant, categories: Mapping[str, Category]) -> frozenset[str]:
    """What a write under this grant may touch at registration only (R1): the immutable
    categories, and identifiers outside their own change purpose."""
    if g.action not in _WRITES:
        return frozenset()
    return frozenset(
        k
        for k in g.categories & g.purpose.categories
        if categories[k].immutable or categories[k].change_purpose not in (None, g.purpose.key)
    )


def _identifiers(g: CompiledGrant, policy: Policy) -> frozenset[str]:
    """The identifiers (categories with a change purpose) a grant covers."""
    cats = policy.categories
    return frozenset(k for k in g.categories & g.purpose.categories if cats[k].change_purpose)
