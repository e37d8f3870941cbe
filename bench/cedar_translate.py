"""The engine's compiled tables as AWS Cedar policies and entities, for a like-for-like baseline.

Cedar has no string concatenation and no dynamic record keys, so the request side
(`cedar_request`) groups the subject's consents by kind and strength into sets of purposes (with,
beside each, the scopes a minor's guardian consented to), and joins the consents and authorisation
that name the request's recipient into `context.recipient`. Everything else is the engine's own
data, unchanged. The mapping:

- each local grant (role, action, purpose) → one `permit`, the principal typed by actor kind
  (an `erase_subject` names no categories: the whole subject goes);
- each outbound rule × recipient type → one `permit` over the rule's purposes, for a principal
  whose role entity lists the purpose under the action, or for the recipient itself;
- what a role's outbound grant demands before any rule (the engine's `_outbound_grant_checks`:
  case reference, legal hold, categories inside the grant, purpose consent, restriction,
  settings) → one `forbid … unless` per grant, since it must hold whichever rule allows;
- what a purpose demands when a recipient itself asks (the compiled `recipient_checks`:
  categories declared by the purpose, restriction, U3 on a read, settings gates on sharing) → one
  `forbid … unless` per purpose that some sharing rule lists;
- what every allowed answer needs → global `forbid`s: a known exemption, and for each exemption
  its roles, purposes, case reference and requesting authority (C8); some data, unless erasing a
  whole subject (V1); a minor's guardian's consent to the service and no objection (M1).

Entities: one per role (its outbound grants' purposes as attributes, a member of the exemptions
that name it), one per purpose (a member of the rule groups that list it and of the exemptions
that name it), constant category sets, and one `DataSubject` per subject snapshot.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import cedarpy

from piguard.policy.compiler import CompiledGrant, CompiledRule, Tables, compile_policy
from piguard.policy.masking import CLEAR
from piguard.policy.model import (
    CONSENT_STRENGTH,
    OUTBOUND_ACTIONS,
    Action,
    ActorKind,
    Basis,
    Policy,
    Requirement,
)

KIND_TYPE = {kind: kind.value.capitalize() for kind in ActorKind}
LEVELS = tuple(sorted(set(CONSENT_STRENGTH.values())))
HAS_CASE = '(context has case_reference && context.case_reference != "")'
HAS_AUTHORITY = '(context has authority && context.authority != "")'
HAS_EVIDENCE = '(context has evidence && context.evidence != "")'
SUBJECT = "context.subject"
RECIPIENT = "context.recipient"
_PURPOSE = "context.purpose"
_OUTBOUND_KINDS = ("share", "transfer", "disclose")
_ERASURES = (Action.ERASE, Action.ERASE_SUBJECT)
_WRITES = (Action.COLLECT, Action.UPDATE)
_INLINE_SET = 3  # longer sets are entity attributes, parsed once with the store


@dataclass(frozen=True, slots=True)
class CedarPolicy:
    """A policy set and entity store, parsed once, ready for `cedarpy.is_authorized`."""

    text: str
    entities: list[dict[str, Any]]
    policy_set: cedarpy.PolicySet
    statements: int

    def entity_set(self, extra: list[dict[str, Any]]) -> cedarpy.Entities:
        """The policy's entities plus `extra` (the subjects), parsed once for reuse."""
        return cedarpy.Entities.from_json_str(json.dumps(self.entities + extra))


def lit(text: str) -> str:
    """A Cedar string literal; policy keys never hold control characters."""
    if any(ord(c) < 32 for c in text):
        raise ValueError(f"control character in {text!r}")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def lits(items: Iterable[str]) -> str:
    return "[" + ", ".join(lit(i) for i in sorted(items)) + "]"


def uid(kind: str, key: str) -> str:
    return f"{kind}::{lit(key)}"


def translate_policy(policy: Policy) -> CedarPolicy:
    """Translate the engine's compiled tables for `policy` into Cedar."""
    tables = compile_policy(policy)
    translator = _Translator(policy, tables)
    statements = list(translator.statements())
    text = "\n\n".join(statements) + "\n"
    entities = _role_entities(tables) + translator.entities()
    return CedarPolicy(
        text=text,
        entities=entities,
        policy_set=cedarpy.PolicySet.from_str(text),
        statements=len(statements),
    )


def _role_entities(tables: Tables) -> list[dict[str, Any]]:
    """One entity per role, listing the purposes of each outbound grant as attributes, a member
    of each exemption that names the role (C8)."""
    granted: dict[tuple[ActorKind, str], dict[str, list[dict[str, Any]]]] = {}
    for role in tables.policy.roles.values():
        if role.kind is not ActorKind.RECIPIENT:
            granted[(role.kind, role.key)] = {a: [] for a in _OUTBOUND_KINDS}
    for (role_key, action, purpose), g in tables.grants.items():
        if action in OUTBOUND_ACTIONS and (g.kind, role_key) in granted:
            ref = {"__entity": {"type": "Purpose", "id": purpose}}
            granted[(g.kind, role_key)][action.value].append(ref)
    return [
        {
            "uid": {"type": KIND_TYPE[kind], "id": key},
            "attrs": attrs,
            "parents": _exemptions_naming(tables.policy, role=key),
        }
        for (kind, key), attrs in granted.items()
    ]


def _exemptions_naming(
    policy: Policy, role: str | None = None, purpose: str | None = None
) -> list[dict[str, str]]:
    """The `Exemption` entities that name this role, or this purpose (their parents)."""
    return [
        {"type": "Exemption", "id": e.code}
        for e in policy.exemptions.values()
        if role in e.roles or purpose in e.purposes
    ]


class _Translator:
    """Builds the statements; one method per kind of engine check."""

    def __init__(self, policy: Policy, tables: Tables) -> None:
        self.policy = policy
        self.tables = tables
        self.sets: dict[tuple[str, ...], str] = {}
        self.groups: dict[str, list[str]] = {}  # purpose -> the rule groups that list it
        minors = policy.minors
        adult_age = minors.age_threshold + 1 if minors.inclusive else minors.age_threshold
        self.minor = f"({SUBJECT} has age && {SUBJECT}.age < {adult_age})"

    def statements(self) -> Iterator[str]:
        yield from self._global_forbids()
        for (_, action, _), g in self.tables.grants.items():
            if g.kind is ActorKind.RECIPIENT:
                continue  # the engine sends every recipient actor down the outbound path
            if action in OUTBOUND_ACTIONS:
                yield _statement("forbid", g, "unless", self._outbound_grant_checks(g))
            else:
                yield _statement("permit", g, "when", self._local_checks(g))
        groups = list(_rule_groups(self.tables))
        shared = {
            p for cr, _, purposes in groups if cr.rule.action is Action.SHARE for p in purposes
        }
        for purpose in sorted(shared):
            yield self._recipient_forbid(self.tables.recipient_checks[purpose])
        for cr, rtype, purposes in groups:
            yield self._outbound_permit(cr, rtype, purposes)

    def entities(self) -> list[dict[str, Any]]:
        """The constant sets and the purposes' rule groups the statements refer to."""
        sets = [
            {"uid": {"type": "Set", "id": name}, "attrs": {"v": list(items)}, "parents": []}
            for items, name in self.sets.items()
        ]
        named = {p for e in self.policy.exemptions.values() for p in e.purposes}
        purposes = [
            {
                "uid": {"type": "Purpose", "id": purpose},
                "attrs": {},
                "parents": [{"type": "RuleGroup", "id": g} for g in self.groups.get(purpose, [])]
                + _exemptions_naming(self.policy, purpose=purpose),
            }
            for purpose in sorted(self.groups.keys() | named)
        ]
        return sets + purposes

    def _set(self, items: Iterable[str]) -> str:
        """A set literal, or for a long set a constant entity's attribute, built once by Cedar
        when the store is parsed instead of from a literal at every evaluation."""
        key = tuple(sorted(set(items)))
        if len(key) <= _INLINE_SET:
            return lits(key)
        name = self.sets.setdefault(key, f"s{len(self.sets)}")
        return f"{uid('Set', name)}.v"

    def _global_forbids(self) -> Iterator[str]:
        yield from self._exemption_forbids()
        yield (
            "// V1: nothing personal is touched, so nothing is allowed (a whole subject's erasure"
            " names no categories)\n"
            "forbid (principal, action, resource)\n"
            "when { context.categories.isEmpty()"
            f" && action != {uid('Action', Action.ERASE_SUBJECT.value)} }};"
        )
        yield self._minor_forbid()

    def _exemption_forbids(self) -> Iterator[str]:
        """C8: a known exemption, claimed by a role it names for a purpose it names, with a case
        reference and the requesting authority where it needs them. Role and purpose entities
        are members of the exemptions that name them."""
        exemptions = self.policy.exemptions.values()
        yield (
            "// C8: only the exemptions the policy names\n"
            "forbid (principal, action, resource)\n"
            "when { context has exemption"
            f" && !{lits(e.code for e in exemptions)}.contains(context.exemption) }};"
        )
        for e in exemptions:
            ref = uid("Exemption", e.code)
            needs = [f"principal in {ref}", f"resource in {ref}"]
            if e.needs_case_reference:
                needs.append(HAS_CASE)
            if e.needs_authority:
                needs.append(HAS_AUTHORITY)
            wants = ", ".join(
                w
                for w, on in (
                    ("its roles and purposes", True),
                    ("a case reference", e.needs_case_reference),
                    ("the requesting authority", e.needs_authority),
                )
                if on
            )
            body = "\n  && ".join(needs)
            yield (
                f"// C8 {e.code}: {wants}\n"
                "forbid (principal, action, resource)\n"
                f"when {{ context has exemption && context.exemption == {lit(e.code)} }}\n"
                f"unless {{\n  {body}\n}};"
            )

    def _minor_forbid(self) -> str:
        """M1 (the engine's `_minor_denial`): a minor uses the service only with a guardian's
        consent to it as a whole and no guardian's objection; erasure always remains possible,
        and what the law makes us keep may still be used, never collected anew."""
        kept = [k for k, p in self.policy.purposes.items() if p.basis is Basis.LEGAL_OBLIGATION]
        erasures = ", ".join(uid("Action", a.value) for a in _ERASURES)
        exceptions = [f"action in [{erasures}]"]
        if kept:
            exceptions.append(
                f"({self._set(kept)}.contains({_PURPOSE})"
                f" && action != {uid('Action', Action.COLLECT.value)})"
            )
        return (
            "// M1: a minor, without the guardian's consent to the service or against their"
            " objection\n"
            "forbid (principal, action, resource)\n"
            f"when {{ {self.minor}\n"
            f"  && ({SUBJECT}.guardian_objection || !{SUBJECT}.guardian_service) }}\n"
            f"unless {{ {' || '.join(exceptions)} }};"
        )

    def _local_checks(self, g: CompiledGrant) -> list[str]:
        """Categories (known, declared, granted; R1 for writes), case, verification, hold,
        closed."""
        checks = [] if g.action is Action.ERASE_SUBJECT else self._local_categories(g)
        if g.grant.needs_case_reference:
            checks.append(HAS_CASE)
        if g.needs_evidence:
            checks.append(f"{HAS_EVIDENCE} // R1: the verification a change rests on")
        if g.grant.reads_held_data:
            checks.append(f"{SUBJECT}.legal_hold")
        elif g.action not in _ERASURES:
            checks.append(f"!{SUBJECT}.closed")
        return checks + self._purpose_checks(g, lit(g.purpose.key))

    def _local_categories(self, g: CompiledGrant) -> list[str]:
        """Every category known, declared by the purpose and granted; for a write, R1: the
        immutable ones, and identifiers outside their own change purpose, at registration only."""
        known = self.policy.categories
        allowed = g.categories & g.purpose.categories & known.keys()
        checks = [f"{self._set(allowed)}.containsAll(context.categories)"]
        if g.action in _WRITES:
            fixed = {
                c
                for c in allowed
                if known[c].immutable or known[c].change_purpose not in (None, g.purpose.key)
            }
            if fixed:
                checks.append(
                    f"(context.registration || !context.categories.containsAny({self._set(fixed)}))"
                    " // R1: at registration only"
                )
        return checks

    def _outbound_grant_checks(self, g: CompiledGrant) -> list[str]:
        """A role's outbound grant, before any rule: the grant's preconditions, every category
        inside the grant (declared by the purpose too, since a grant's categories are), and the
        purpose checks, where any settings gate that hits denies."""
        checks = [f"{self._set(g.categories)}.containsAll(context.categories)"]
        if g.grant.needs_case_reference:
            checks.append(HAS_CASE)
        if g.grant.reads_held_data:
            checks.append(f"{SUBJECT}.legal_hold")
        return checks + self._purpose_checks(g, lit(g.purpose.key))

    def _recipient_forbid(self, g: CompiledGrant) -> str:
        """A recipient's own query for a purpose: the engine's synthetic grant for it (no purpose
        consent; the rule's recipient-scoped consent stands in)."""
        checks = [f"{self._set(g.categories)}.containsAll(context.categories)"]
        checks += self._purpose_checks(g, lit(g.purpose.key), recipient=True)
        actions = f"[{uid('Action', Action.READ.value)}, {uid('Action', Action.SHARE.value)}]"
        head = (
            f"// recipients asking for {g.purpose.key}\n"
            f"forbid (principal is {KIND_TYPE[ActorKind.RECIPIENT]}, action in {actions},"
            f" resource == {uid('Purpose', g.purpose.key)})"
        )
        body = "\n  && ".join(checks)
        return f"{head}\nunless {{\n  {body}\n}};"

    def _purpose_checks(self, g: CompiledGrant, purpose: str, recipient: bool = False) -> list[str]:
        """Consent, restriction (R2), purpose limitation (U3) and settings gates.

        The engine tests U3 and withholding against the request's own action: a recipient's
        query may arrive as a read, which U3 then covers; any gate that hits it denies."""
        checks: list[str] = []
        if g.consent_scope is not None:
            consents = f"{SUBJECT}.consents.purpose"
            have = f"{consents}.s{g.consent_strength}.contains({purpose})"
            checks.append(self._consent(have, f"{consents}.guardian.contains({purpose})", purpose))
        if g.action not in _ERASURES and g.purpose.basis is not Basis.LEGAL_OBLIGATION:
            checks.append(f"!{SUBJECT}.restricted.contains({purpose})")
        if g.action in (Action.READ, Action.UPDATE):
            checks.append(self._purpose_limitation(g, purpose))
        for gate in g.gates:
            if gate.withhold and g.action is Action.READ:
                continue  # withheld fields still allow the read
            key, default = lit(gate.setting), str(gate.default).lower()
            value = (
                f"(if {SUBJECT}.settings has {key} then {SUBJECT}.settings[{key}] else {default})"
            )
            hit = (
                "!context.categories.isEmpty()"
                if gate.whole
                else f"context.categories.containsAny({self._set(gate.categories)})"
            )
            checks.append(f"!({value} == {str(gate.when).lower()} && {hit})")
        return checks

    def _purpose_limitation(self, g: CompiledGrant, purpose: str) -> str:
        options = [
            "context.source_purposes.isEmpty()",
            f"context.source_purposes.contains({purpose})",
        ]
        if g.purpose.compatible:
            compatible = self._set(g.purpose.compatible)
            options.append(f"context.source_purposes.containsAny({compatible})")
        options.append(f"{SUBJECT}.consents.purpose.s{LEVELS[0]}.contains({purpose})")
        return "(" + " || ".join(options) + ")"

    def _consent(self, have: str, guardian: str, purpose: str) -> str:
        """The engine's consent check, skipped when an exemption is claimed: a minor's consent
        holds only if their guardian consented to the same scope (M1)."""
        parts = (
            have,
            f"(!{self.minor} || {guardian})",
            f"!{SUBJECT}.pending_reconsent.contains({purpose})",
        )
        return f"(context has exemption || ({' && '.join(parts)}))"

    def _outbound_permit(self, cr: CompiledRule, rtype: str, purposes: list[str]) -> str:
        rule = cr.rule
        group = f"{rule.id}/{rtype}"
        for purpose in purposes:
            self.groups.setdefault(purpose, []).append(group)
        action = uid("Action", rule.action.value)
        grantee = (
            f"(action == {action} && principal has {rule.action.value}"
            f" && principal.{rule.action.value}.contains(resource))"
        )
        if rule.action is Action.SHARE:
            scope = f"action in [{action}, {uid('Action', 'read')}]"
            who = f"({grantee} || (principal is Recipient && principal == {RECIPIENT}.uid))"
        else:
            scope, who = f"action == {action}", grantee
        checks = [
            f"context has recipient && {who}",
            f"resource in {uid('RuleGroup', group)}",
            f"{RECIPIENT}.registered && {RECIPIENT}.active && {RECIPIENT}.type == {lit(rtype)}",
            f"{self._set(rule.categories)}.containsAll(context.categories)",
        ]
        duties = [p for p in purposes if self.policy.purposes[p].basis is Basis.LEGAL_OBLIGATION]
        if rule.basis is not Basis.LEGAL_OBLIGATION or not duties:  # R4, as the engine
            checks.append(f"!{SUBJECT}.closed")
        elif len(duties) < len(purposes):
            checks.append(f"(!{SUBJECT}.closed || {self._set(duties)}.contains({_PURPOSE}))")
        if rule.basis is Basis.EXEMPTION:
            checks.append("context has exemption // C8: which, and by whom, the C8 forbids check")
        checks.extend(_requirement(need, cr, self._set) for need in sorted(cr.requires))
        if rule.consent_scope is not None:
            have, guardian = _rule_consent(rule.consent_scope, cr.strength)
            checks.append(self._consent(have, guardian, _PURPOSE))
        checks.append(self._cross_border())
        body = "\n  && ".join(c for c in checks if c)
        head = f"// {rule.id} → {rtype}\npermit (principal, {scope}, resource)"
        return f"{head}\nwhen {{\n  {body}\n}};"

    def _cross_border(self) -> str:
        """S1/SH7: data stays home unless the recipient is abroad or the caller names a region
        abroad (a claimed region can only make it stricter); then the purpose must be
        cross-border business, authorised by the subject, with an agreement on file."""
        cb = self.policy.cross_border
        home = lit(cb.home)
        domestic = (
            f"({RECIPIENT}.region == {home} && (!(context has region) || context.region == {home}))"
        )
        level = CONSENT_STRENGTH[cb.consent_type]
        needs = [
            f"{self._set(cb.purposes)}.contains({_PURPOSE})",
            f"{SUBJECT}.consents.cross_border.s{level}.contains({_PURPOSE})",
        ]
        if Requirement.AGREEMENT in cb.requires:
            needs.append(f"{RECIPIENT}.agreement")
        return f"({domestic} || ({' && '.join(needs)})) // S1, SH7"


def _statement(effect: str, g: CompiledGrant, keyword: str, checks: list[str]) -> str:
    what = f"{g.role} {g.action.value} for {g.purpose.key}"
    if effect == "forbid":
        what = f"what {g.role}'s {g.action.value} for {g.purpose.key} needs before any rule"
    head = (
        f"// {', '.join(g.clauses)}: {what}\n"
        f"{effect} (principal == {uid(KIND_TYPE[g.kind], g.role)},"
        f" action == {uid('Action', g.action.value)}, resource == {uid('Purpose', g.purpose.key)})"
    )
    body = "\n  && ".join(checks) if checks else "true"
    return f"{head}\n{keyword} {{\n  {body}\n}};"


def _rule_groups(tables: Tables) -> Iterator[tuple[CompiledRule, str, list[str]]]:
    """Each compiled rule (one per rule × recipient type) with the purposes it is filed under."""
    groups: dict[int, tuple[CompiledRule, str, list[str]]] = {}
    for (_, rtype, purpose), rules in tables.outbound.items():
        for cr in rules:
            groups.setdefault(id(cr), (cr, rtype, []))[2].append(purpose)
    yield from groups.values()


def _rule_consent(kind: str, strength: int) -> tuple[str, str]:
    """Where the consent a rule names sits in the context, and the guardian's consent to the
    same scope beside it (mirrors the engine's `_rule_scope`)."""
    if kind == "transfer":  # one scope per recipient, whatever the purpose
        consents = f"{RECIPIENT}.consents.transfer"
        return f"{consents}.s{strength}", f"{consents}.guardian"
    consents = {
        "purpose": f"{SUBJECT}.consents.purpose",
        "recipient": f"{RECIPIENT}.consents.share",
        "recipient_type": f"{RECIPIENT}.consents.share_type",
    }.get(kind, f"{SUBJECT}.consents.disclose")
    return (
        f"{consents}.s{strength}.contains({_PURPOSE})",
        f"{consents}.guardian.contains({_PURPOSE})",
    )


def _requirement(
    need: Requirement, cr: CompiledRule, constant: Callable[[Iterable[str]], str]
) -> str:
    """A rule's precondition (mirrors the engine's `_requirement_failure`)."""
    auth = f"{RECIPIENT}.authorisation"
    if need is Requirement.REGISTERED:
        return ""  # every outbound permit checks registration
    if need is Requirement.ASSESSMENT:
        return f"{RECIPIENT}.assessed"
    if need is Requirement.AGREEMENT:
        return f"{RECIPIENT}.agreement"
    if need is Requirement.CASE_REFERENCE:
        return HAS_CASE
    if need is Requirement.AUTHORISATION:
        return (
            f"({RECIPIENT} has authorisation && !{auth}.revoked"
            f" && {auth}.categories.containsAll(context.categories)"
            f" && (!({auth} has expires_at) || (context has at && context.at < {auth}.expires_at)))"
        )
    if need is Requirement.SUCCESSOR_BOUND:
        return f'({RECIPIENT} has bound_policy && {RECIPIENT}.bound_policy != "")'
    if need is Requirement.MASKED_ONLY:
        masked = constant(k for k, spec in cr.rule.masks.items() if spec != CLEAR)
        return f"{masked}.containsAll(context.categories)"
    raise ValueError(f"no Cedar translation for requirement {need!r}")
