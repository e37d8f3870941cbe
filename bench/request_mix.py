"""A realistic, seeded request mix for any policy, built from its compiled tables.

Mostly local collect/read/update/erase by service, staff, authority and subject roles on their own
grants, plus outbound flows (by a granted role or by the recipient itself) to registered
recipients; and the realistic share of mistakes: categories outside the grant, ungranted or
unknown purposes, unknown roles, claimed exemptions, purposes other than the data's source.

Every grant is as likely as any other, so a large policy's requests spread over all of its grants
(the engine's working set grows with the policy, as it would under traffic that used every rule);
the subject asked about is one who uses the grant's purpose (`mix_population.PORTFOLIO`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from mix_population import AT, Flow, Person, flows, population, recipients_by_type
from piguard.policy.compiler import CompiledGrant, Tables, compile_policy
from piguard.policy.decision import Actor, DecisionRequest, RecipientView, SubjectState
from piguard.policy.model import OUTBOUND_ACTIONS, Action, ActorKind, Policy, Requirement

# kind of request → share of the mix
MIX = {
    "local": 0.62,
    "outbound": 0.20,
    "outside_grant": 0.04,
    "source_purpose": 0.04,
    "no_grant": 0.03,
    "exemption": 0.02,
    "unknown_purpose": 0.02,
    "unknown_role": 0.02,
    "no_data": 0.01,
}


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
        self.local = [
            g
            for (_, action, _), g in tables.grants.items()
            if action not in OUTBOUND_ACTIONS and g.kind is not ActorKind.RECIPIENT
        ]
        home = policy.cross_border.home
        self.foreign = sorted(k for k in policy.regions if k != home) or ["XX"]
        self.reuse = [g for g in self.local if g.action in (Action.READ, Action.UPDATE)]
        self.granted: dict[tuple[str, Action], set[str]] = {}
        for role, action, purpose in tables.grants:
            self.granted.setdefault((role, action), set()).add(purpose)
        self.grantees: dict[tuple[Action, str], list[CompiledGrant]] = {}
        for (_, action, purpose), g in tables.grants.items():
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
            "outside_grant": self._outside_grant,
            "source_purpose": self._source_purpose,
            "no_grant": self._no_grant,
            "exemption": self._exemption,
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
        case = "CASE-2024-0042" if needs_case and self.rng.random() < 0.85 else None
        return Actor(g.kind, g.role, case)

    def _local(self, grants: list[CompiledGrant] | None = None) -> DecisionRequest:
        """Any grant alike, for a subject who uses its purpose (held data: one under a hold)."""
        g = self.rng.choice(grants or self.local)
        key = g.purpose.key
        if g.grant.reads_held_data:
            subject = self.rng.choice(self.held_users[key] or self.held)
        else:
            subject = self.rng.choice(self.users[key] or self.everyone)
        return DecisionRequest(
            action=g.action,
            actor=self._actor(g, g.grant.needs_case_reference),
            purpose=g.purpose.key,
            categories=self._sample(g.categories & g.purpose.categories, 4),
            subject=subject,
            at=AT,
        )

    def _outside_grant(self) -> DecisionRequest:
        """One category the grant does not cover: undeclared, ungranted or unknown."""
        g = self.rng.choice(self.local)
        req = self._local([g])
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
        req = self._local()
        code = self.rng.choice([*self.policy.exemptions, "made_up"])
        case = "CASE-7" if self.rng.random() < 0.5 else None
        return replace(req, exemption=code, actor=replace(req.actor, case_reference=case))

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
        rule = flow.rules[0].rule
        needs_case = any(Requirement.CASE_REFERENCE in cr.requires for cr in flow.rules)
        actor, covered = self._outbound_actor(flow, needs_case)
        cats = self._sample(rule.categories & covered or rule.categories, 3)
        if self.rng.random() < 0.06:
            cats = (*cats, self.rng.choice(sorted(self.policy.categories)))
        return DecisionRequest(
            action=flow.action,
            actor=actor,
            purpose=flow.purpose,
            categories=cats,
            subject=subject,
            recipient=self._recipient_variant(flow),
            region=self.rng.choice(self.foreign) if self.rng.random() < 0.04 else None,
            at=AT,
        )

    def _outbound_actor(self, flow: Flow, needs_case: bool) -> tuple[Actor, frozenset[str]]:
        """Who starts the flow, and the categories it may send: a role those of its grant, a
        recipient those the purpose declares; mostly with a case reference where one is needed
        (by a rule, or by the role's grant)."""
        grantees = self.grantees.get((flow.action, flow.purpose), [])
        by_recipient = flow.action is Action.SHARE and (not grantees or self.rng.random() < 0.3)
        if by_recipient:
            declared = self.policy.purposes[flow.purpose].categories
            case = "CASE-2024-0042" if needs_case and self.rng.random() < 0.85 else None
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
