"""The decision engine: `DecisionEngine(policy).decide(request) -> Decision`, pure and total.

Deny by default: an unknown purpose, role or category, a missing consent, a failed check, or any
error inside the engine is a denial with its reasons. Answers are immutable and cached (allowed
ones per compiled grant or rule, denials per reason), so the common decision is a few dictionary
lookups and attribute reads; the detailed checks run only when a fast test says something is off.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import MappingProxyType

from piguard.policy import scopes
from piguard.policy.compiler import CompiledGrant, CompiledRule, compile_policy
from piguard.policy.decision import (
    CLEAR,
    WITHHELD,
    Decision,
    DecisionRequest,
    Effect,
    Projection,
    ProjectionKind,
    Reason,
    RecipientView,
)
from piguard.policy.masking import CLEAR as CLEAR_SPEC
from piguard.policy.masking import WITHHELD as WITHHELD_SPEC
from piguard.policy.model import (
    CONSENT_STRENGTH,
    OUTBOUND_ACTIONS,
    Action,
    ActorKind,
    Basis,
    Category,
    Obligation,
    Policy,
    Purpose,
    Requirement,
)

_CACHE_LIMIT = 4096
_LOCAL_OBLIGATIONS = {
    Action.COLLECT: frozenset(
        {Obligation.AUDIT, Obligation.ENCRYPT_AT_REST, Obligation.RECORD_SOURCE}
    ),
    Action.UPDATE: frozenset({Obligation.AUDIT, Obligation.ENCRYPT_AT_REST}),
    Action.READ: frozenset({Obligation.AUDIT}),
    Action.ERASE: frozenset({Obligation.AUDIT}),
    Action.ERASE_SUBJECT: frozenset({Obligation.AUDIT}),
}
_ERASURES = frozenset({Action.ERASE, Action.ERASE_SUBJECT})
_WRITES = frozenset({Action.COLLECT, Action.UPDATE})
_OUTBOUND_OBLIGATIONS = frozenset({Obligation.AUDIT, Obligation.ENCRYPT_IN_TRANSIT})
_NOTHING: frozenset[str] = frozenset()
_NO_FLAGS = (False, False, False, False)
_RECIPIENT = ActorKind.RECIPIENT


class DecisionEngine:
    """Answers every action for every actor from one compiled policy."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._t = compile_policy(policy)
        self._version = policy.key
        minors = policy.minors
        # Ages below this are minors (M1); precomputed so the check is one comparison.
        self._adult_age = minors.age_threshold + 1 if minors.inclusive else minors.age_threshold
        self._all_sensitive = minors.all_sensitive
        self._home = policy.cross_border.home
        self._denials: dict[tuple[str, str], Decision] = {}
        self._outbound_allowed: dict[object, Decision] = {}
        self._not_applicable = Decision(
            Effect.NOT_APPLICABLE, (Reason("V1", "no_personal_information"),), self._version
        )

    def decide(self, req: DecisionRequest) -> Decision:
        """Decide one request; never raises."""
        try:
            if req.actor.kind is _RECIPIENT or req.action in OUTBOUND_ACTIONS:
                return self._outbound(req)
            grant = self._t.grants.get((req.actor.role, req.action, req.purpose))
            if grant is None or grant.kind is not req.actor.kind:
                return self._no_grant(req, req.action)
            return self._local(grant, req)
        except Exception:  # any failure inside the engine must still be a denial
            return self._deny("V1", "engine_error")

    # -- local actions: collect, read, update, erase ------------------------------------------

    def _local(self, g: CompiledGrant, req: DecisionRequest) -> Decision:
        st = req.subject
        exempt = req.exemption is not None
        age = st.age
        minor = age is not None and age < self._adult_age  # inline: the hot path
        if minor:
            denial = self._minor_denial(g, req)
            if denial is not None:
                return denial
        if exempt or st.closed or g.special:
            denial = self._special_cases(g, req)
            if denial is not None:
                return denial
        scope = g.consent_scope
        if (
            (scope is None or exempt or self._consent_holds(scope, g.consent_strength, req))
            and not st.restricted
            and not req.source_purposes
            and not g.gates
        ):
            withheld: frozenset[str] = _NOTHING  # the common case: nothing more to check
        else:
            checked = self._purpose_checks(g, req, exempt)
            if checked.__class__ is Decision:
                return checked
            withheld = checked  # type: ignore[assignment]
        minor_spi = self._all_sensitive and minor
        if withheld or minor_spi or st.legal_hold or exempt or req.registration:
            flags = (minor_spi, st.legal_hold, exempt, req.registration)
            key: object = (req.categories, withheld, flags)
        else:
            flags = _NO_FLAGS  # the common case builds no tuple
            key = req.categories
        found = g.decisions.get(key)
        if found is None:
            found = self._build_local(g, req.categories, withheld, flags)
            if len(g.decisions) < _CACHE_LIMIT:
                g.decisions[key] = found
        return found

    def _purpose_checks(
        self, g: CompiledGrant, req: DecisionRequest, exempt: bool
    ) -> Decision | frozenset[str]:
        """What the purpose itself demands (consent, restriction, U3, settings): a denial, or
        the categories that settings withhold from a read."""
        st = req.subject
        scope = g.consent_scope
        if (
            scope is not None
            and not exempt
            and not self._consent_holds(scope, g.consent_strength, req)
        ):
            return self._consent_denial(scope, g.consent_strength, req, g.purpose.clauses[0])
        if (
            st.restricted
            and req.purpose in st.restricted
            and g.action not in _ERASURES
            and g.purpose.basis is not Basis.LEGAL_OBLIGATION
        ):
            return self._deny("R2", f"restricted:{req.purpose}")
        if req.source_purposes and req.purpose not in req.source_purposes:
            denial = self._purpose_limitation(g, req)
            if denial is not None:
                return denial
        if not g.gates:
            return _NOTHING
        return self._gates(g, req)

    def _gates(self, g: CompiledGrant, req: DecisionRequest) -> Decision | frozenset[str]:
        withheld: frozenset[str] = _NOTHING
        settings = req.subject.settings
        for gate in g.gates:
            if settings.get(gate.setting, gate.default) != gate.when:
                continue
            hit = (
                set(req.categories) if gate.whole else gate.categories.intersection(req.categories)
            )
            if not hit:
                continue
            if gate.withhold and g.action is Action.READ:
                withheld |= hit
            else:
                return self._deny(gate.clauses[0], f"setting:{gate.setting}")
        return withheld

    def _consent_holds(self, scope: str, strength: int, req: DecisionRequest) -> bool:
        """The fast test; `_consent_denial` says why when it fails."""
        st = req.subject
        have = st.consents.get(scope)
        if have is None or CONSENT_STRENGTH[have] < strength:
            return False
        age = st.age
        if age is not None and age < self._adult_age and scope not in st.guardian_consents:
            return False
        return req.purpose not in st.pending_reconsent

    def _minor(self, req: DecisionRequest) -> bool:
        age = req.subject.age
        return age is not None and age < self._adult_age

    def _consent_denial(
        self, scope: str, strength: int, req: DecisionRequest, clause: str
    ) -> Decision:
        st = req.subject
        have = st.consents.get(scope)
        if have is None:
            return self._deny(clause, f"consent_required:{scope}")
        if CONSENT_STRENGTH[have] < strength:
            return self._deny(clause, f"separate_consent_required:{scope}")
        if scope not in st.guardian_consents and self._minor(req):
            return self._deny("M1", f"guardian_consent_required:{scope}")
        return self._deny("V2", f"reconsent_required:{req.purpose}")

    def _minor_denial(self, g: CompiledGrant, req: DecisionRequest) -> Decision | None:
        """M1: a minor uses the service only with a guardian's consent to it as a whole, and a
        guardian's objection stops it. Erasure always remains possible, and what the law makes
        us keep may still be read, never collected anew."""
        if g.action in _ERASURES:
            return None
        if g.purpose.basis is Basis.LEGAL_OBLIGATION and g.action is not Action.COLLECT:
            return None
        st = req.subject
        if st.guardian_objection:
            return self._deny("M1", "guardian_objection")
        if scopes.SERVICE not in st.guardian_consents:
            return self._deny("M1", f"guardian_consent_required:{scopes.SERVICE}")
        return None

    def _special_cases(self, g: CompiledGrant, req: DecisionRequest) -> Decision | None:
        denial = self._grant_preconditions(g, req)
        if denial is not None:
            return denial
        if req.subject.closed and not g.grant.reads_held_data and g.action not in _ERASURES:
            return self._deny("R4", "account_closed")
        return None

    def _grant_preconditions(self, g: CompiledGrant, req: DecisionRequest) -> Decision | None:
        """Exemption codes (C8), case references, and held data read only under a hold (R4)."""
        if req.exemption is not None:
            denial = self._exemption_denial(req)
            if denial is not None:
                return denial
        if g.grant.needs_case_reference and not req.actor.case_reference:
            return self._deny(g.clauses[0], "case_reference_required")
        if g.needs_evidence and not req.evidence:
            return self._deny("R1", f"verification_required:{g.purpose.key}")
        if g.grant.reads_held_data and not req.subject.legal_hold:
            return self._deny("R4", "no_legal_hold")
        return None

    def _exemption_denial(self, req: DecisionRequest) -> Decision | None:
        """C8: only the roles and purposes the policy names may invoke an exemption, with what
        it requires (a case reference and the requesting authority for C8(1)-(3))."""
        exemption = self.policy.exemptions.get(req.exemption or "")
        if exemption is None:
            return self._deny("C8", f"unknown_exemption:{req.exemption}")
        if req.actor.role not in exemption.roles:
            return self._deny("C8", f"exemption_not_granted:{exemption.code}:{req.actor.role}")
        if req.purpose not in exemption.purposes:
            return self._deny("C8", f"exemption_not_for_purpose:{exemption.code}:{req.purpose}")
        if exemption.needs_case_reference and not req.actor.case_reference:
            return self._deny("C8", "case_reference_required")
        if exemption.needs_authority and not req.actor.authority:
            return self._deny("C8", "requesting_authority_required")
        return None

    def _purpose_limitation(self, g: CompiledGrant, req: DecisionRequest) -> Decision | None:
        """U3: data collected for one purpose serves another only if compatible or consented."""
        if g.action not in (Action.READ, Action.UPDATE):
            return None
        if g.purpose.compatible & req.source_purposes:
            return None
        if scopes.purpose_scope(req.purpose) in req.subject.consents:
            return None
        return self._deny("U3", f"purpose_limitation:{req.purpose}")

    def _build_local(
        self,
        g: CompiledGrant,
        categories: tuple[str, ...],
        withheld: frozenset[str],
        flags: tuple[bool, bool, bool, bool],
    ) -> Decision:
        minor_spi, hold, exempt, registration = flags
        whole = g.action is Action.ERASE_SUBJECT
        if not categories and not whole:
            return self._not_applicable  # not allowed either: services always name categories
        cats: list[Category] = []
        for key in categories:
            denial = self._category_denial(g, key, registration) if not whole else None
            if denial is not None:
                return denial
            cats.append(self.policy.categories[key])
        projection: dict[str, Projection] = {}
        if g.action is Action.READ:
            for cat in cats:
                projection[cat.key] = (
                    WITHHELD if cat.key in withheld else self._local_projection(g, cat, minor_spi)
                )
        # What must go with the action is the policy's word: a purpose that verifies what it
        # collects (C1.1) names record_provenance itself.
        obligations = set(_LOCAL_OBLIGATIONS[g.action]) | g.purpose.obligations
        if g.action in _ERASURES and hold:
            obligations.add(Obligation.HOLD)
        reasons = [Reason(c, f"allow:{g.role}:{g.purpose.key}") for c in g.clauses]
        if exempt:
            obligations.add(Obligation.CASE_REFERENCE)
            reasons.append(Reason("C8", "exemption"))
        if hold and g.action in _ERASURES:
            reasons.append(Reason("R4", "legal_hold"))
        erases = g.grant.erases if g.action is Action.ERASE else frozenset()
        return self._allow(reasons, projection, obligations, erases)

    def _category_denial(
        self, g: CompiledGrant, key: str, registration: bool = False
    ) -> Decision | None:
        cat = self.policy.categories.get(key)
        if cat is None:
            return self._deny("U2", f"unknown_category:{key}")
        if key not in g.purpose.categories:
            return self._deny("U2", f"category_not_declared:{g.purpose.key}:{key}")
        if key not in g.categories:
            return self._deny("S2", f"outside_grant:{g.role}:{key}")
        if g.action in _WRITES and not registration:
            # R1: registration fields never change, identifiers only through their own operation,
            # whichever write path is tried.
            if cat.immutable:
                return self._deny("R1", f"immutable:{key}")
            if cat.change_purpose is not None and g.purpose.key != cat.change_purpose:
                return self._deny("R1", f"identifier_change_required:{key}")
        return None

    def _local_projection(self, g: CompiledGrant, cat: Category, minor_spi: bool) -> Projection:
        if g.kind is ActorKind.SUBJECT:
            return CLEAR
        spec = g.grant.masks.get(cat.key)
        if spec is None and g.kind is ActorKind.STAFF and (cat.sensitive or minor_spi):
            spec = cat.mask
        return _projection(spec)

    # -- outbound actions: share, transfer, disclose, and recipients' queries -----------------

    def _outbound(self, req: DecisionRequest) -> Decision:
        action, rec = req.action, req.recipient
        if req.actor.kind is ActorKind.RECIPIENT:
            if action is not Action.READ and action is not Action.SHARE:
                return self._deny("SH0", f"recipient_cannot:{action}")
            if rec is None or rec.id != req.actor.role:
                return self._deny("SH0", "recipient_mismatch")
            # A recipient's query is a share to it: the same checks, whatever verb it used
            # (the compiled recipient check carries the action `share`).
            action = Action.SHARE
            grant = self._t.recipient_checks.get(req.purpose)
            if grant is None:
                return self._deny("U2", f"unknown_purpose:{req.purpose}")
        else:
            found = self._t.grants.get((req.actor.role, action, req.purpose))
            if found is None or found.kind is not req.actor.kind:
                return self._no_grant(req, action)
            grant = found
        denial = self._outbound_grant_checks(grant, req)
        if denial is not None:
            return denial
        if rec is None:
            return self._deny("SH0", "recipient_missing")
        if not rec.registered:
            return self._deny("SH0", f"recipient_unregistered:{rec.id}")
        if not rec.active:
            return self._deny("SH0", f"recipient_terminated:{rec.id}")
        rules = self._t.outbound.get((action, rec.type, req.purpose))
        if not rules:
            return self._deny("SH0", f"no_rule:{action}:{rec.type}:{req.purpose}")
        denials: list[Decision] = []
        for rule in rules:
            decision = self._try_rule(rule, req, rec)
            if decision.effect is not Effect.DENY:
                return decision
            denials.append(decision)
        # The most specific refusal: a rule that covers the categories and failed on its own
        # condition (e.g. D1's separate consent) says more than one that does not cover them.
        return next((d for d in denials if not _not_in_rule(d)), denials[0])

    def _outbound_grant_checks(self, g: CompiledGrant, req: DecisionRequest) -> Decision | None:
        """What leaves must first be usable here: declared, granted, consented, not switched off."""
        age = req.subject.age
        if age is not None and age < self._adult_age:
            denial = self._minor_denial(g, req)
            if denial is not None:
                return denial
        exempt = req.exemption is not None
        if exempt or g.special:
            denial = self._grant_preconditions(g, req)
            if denial is not None:
                return denial
        if not g.categories.issuperset(req.categories):
            for key in req.categories:
                denial = self._category_denial(g, key)
                if denial is not None:
                    return denial
        checked = self._purpose_checks(g, req, exempt)
        if checked.__class__ is Decision:
            return checked
        if checked:
            return self._deny("DEF2", "withheld_by_setting")
        return None

    def _try_rule(self, cr: CompiledRule, req: DecisionRequest, rec: RecipientView) -> Decision:
        rule, st = cr.rule, req.subject
        if not req.categories:
            return self._not_applicable
        if not rule.categories.issuperset(req.categories):
            missing = next(k for k in req.categories if k not in rule.categories)
            return self._deny("DEF2", f"not_in_rule:{rule.id}:{missing}")
        if st.closed and (
            rule.basis is not Basis.LEGAL_OBLIGATION
            or self.policy.purposes[req.purpose].basis is not Basis.LEGAL_OBLIGATION
        ):  # R4: after closure, only what the law obliges still leaves
            return self._deny("R4", "account_closed")
        exempt = req.exemption is not None
        if exempt:
            denial = self._exemption_denial(req)
            if denial is not None:
                return denial
        elif rule.basis is Basis.EXEMPTION:
            return self._deny("C8", f"exemption_required:{rule.id}")
        if cr.needs_assessment and not rec.assessed:
            return self._deny("SH0", f"assessment_missing:{rec.id}")
        if cr.needs_agreement and not rec.agreement:
            return self._deny("SH0", f"agreement_missing:{rec.id}")
        for need in cr.other_requires:
            failed = _requirement_failure(need, cr, req, rec)
            if failed is not None:
                return self._deny(*failed)
        if rule.consent_scope is not None and not exempt:
            scope = _rule_scope(rule.consent_scope, rec, req.purpose)
            if not self._consent_holds(scope, cr.strength, req):
                return self._consent_denial(scope, cr.strength, req, rule.clauses[0])
        # A caller may name a region to make a transfer stricter, never to make it look domestic.
        cross = rec.region != self._home or (req.region is not None and req.region != self._home)
        if cross:
            denial = self._cross_border_denial(req, rec)
            if denial is not None:
                return denial
        flags = (cross, rec.risk_flag, exempt)
        cache_key = (rule.id, cr.recipient_type, req.purpose, req.categories, flags)
        found = self._outbound_allowed.get(cache_key)
        if found is None:
            purpose = self.policy.purposes[req.purpose]
            found = self._build_outbound(cr, purpose, req.categories, flags)
            if len(self._outbound_allowed) < _CACHE_LIMIT:
                self._outbound_allowed[cache_key] = found
        return found

    def _cross_border_denial(self, req: DecisionRequest, rec: RecipientView) -> Decision | None:
        """S1/SH7: leaving the home region needs the subject's authorisation and an agreement."""
        cb = self.policy.cross_border
        if req.purpose not in cb.purposes:
            return self._deny("S1", f"not_cross_border_business:{req.purpose}")
        have = req.subject.consents.get(scopes.cross_border_scope(req.purpose))
        if have is None or CONSENT_STRENGTH[have] < CONSENT_STRENGTH[cb.consent_type]:
            return self._deny("S1", f"cross_border_consent_required:{req.purpose}")
        if Requirement.AGREEMENT in cb.requires and not rec.agreement:
            return self._deny("S1", f"cross_border_agreement_missing:{rec.id}")
        return None

    def _build_outbound(
        self,
        cr: CompiledRule,
        purpose: Purpose,
        categories: tuple[str, ...],
        flags: tuple[bool, bool, bool],
    ) -> Decision:
        cross, risk, exempt = flags
        rule = cr.rule
        projection = {key: _projection(rule.masks.get(key)) for key in categories}
        obligations = set(_OUTBOUND_OBLIGATIONS) | rule.obligations | purpose.obligations
        reasons = [Reason(c, f"allow:{rule.id}") for c in cr.clauses]
        reasons.append(Reason("SH0", "recipient_checked"))
        if cross:
            obligations |= self.policy.cross_border.obligations
            reasons.extend(Reason(c, "cross_border") for c in self.policy.cross_border.clauses)
        if risk:
            obligations.add(Obligation.RISK_WARNING)
            reasons.append(Reason("TP1", "risk_flag"))
        if exempt:
            obligations.add(Obligation.CASE_REFERENCE)
            reasons.append(Reason("C8", "exemption"))
        return self._allow(reasons, projection, obligations)

    # -- answers ---------------------------------------------------------------------------------

    def _no_grant(self, req: DecisionRequest, action: Action) -> Decision:
        if req.purpose not in self.policy.purposes:
            return self._deny_all(
                (Reason("U2", f"unknown_purpose:{req.purpose}"), Reason("V1", "undeclared"))
            )
        role = self.policy.roles.get(req.actor.role)
        if role is None:
            return self._deny("S2", f"unknown_role:{req.actor.role}")
        if role.kind is not req.actor.kind:
            return self._deny("S2", f"actor_kind_mismatch:{req.actor.role}")
        return self._deny("S2", f"no_grant:{req.actor.role}:{action}:{req.purpose}")

    def _allow(
        self,
        reasons: Iterable[Reason],
        projection: dict[str, Projection],
        obligations: set[Obligation],
        erases: frozenset[str] = frozenset(),
    ) -> Decision:
        return Decision(
            Effect.ALLOW,
            tuple(dict.fromkeys(reasons)),
            self._version,
            MappingProxyType(projection),
            frozenset(obligations),
            erases,
        )

    def _deny(self, clause: str, code: str) -> Decision:
        """A denial for one reason; cached, since denials repeat."""
        found = self._denials.get((clause, code))
        if found is None:
            found = Decision(Effect.DENY, (Reason(clause, code),), self._version)
            if len(self._denials) < _CACHE_LIMIT:
                self._denials[(clause, code)] = found
        return found

    def _deny_all(self, reasons: tuple[Reason, ...]) -> Decision:
        return Decision(Effect.DENY, reasons, self._version)


def _not_in_rule(decision: Decision) -> bool:
    return decision.reasons[0].code.startswith("not_in_rule:")


def _projection(spec: str | None) -> Projection:
    if spec is None or spec == CLEAR_SPEC:
        return CLEAR
    if spec == WITHHELD_SPEC:
        return WITHHELD
    return Projection(ProjectionKind.MASKED, spec)


def _rule_scope(kind: str, rec: RecipientView, purpose: str) -> str:
    if kind == "purpose":
        return scopes.purpose_scope(purpose)
    if kind == "recipient":
        return scopes.recipient_scope(rec.id, purpose)
    if kind == "recipient_type":
        return scopes.recipient_type_scope(rec.type, purpose)
    if kind == "transfer":
        return scopes.transfer_scope(rec.id)
    return scopes.disclose_scope(purpose)


def _requirement_failure(
    need: Requirement, cr: CompiledRule, req: DecisionRequest, rec: RecipientView
) -> tuple[str, str] | None:
    """The (clause, code) of a rarer precondition that fails, or None (SH4, SH6, T1, D1)."""
    if need is Requirement.CASE_REFERENCE and not req.actor.case_reference:
        return cr.rule.clauses[0], "case_reference_required"
    if need is Requirement.AUTHORISATION:
        grant = req.subject.authorisations.get(rec.id)
        if grant is None or not grant.covers(req.categories, req.at):
            return "R2", f"authorisation_missing:{rec.id}"
    if need is Requirement.SUCCESSOR_BOUND and not rec.bound_policy:
        return "T1", f"successor_not_bound:{rec.id}"
    if need is Requirement.MASKED_ONLY:
        for key in req.categories:
            if cr.rule.masks.get(key, CLEAR_SPEC) == CLEAR_SPEC:
                return "D1", f"unmasked_disclosure:{key}"
    return None
