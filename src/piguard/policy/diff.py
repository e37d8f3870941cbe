"""Semantic diff of two policy versions, and which changes need fresh consent (U3, V2, PIPL14).

A change needs fresh consent when it adds a purpose, a recipient or recipient type, a sensitive
category, or widens what a purpose collects or what an outbound rule lets leave.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, is_dataclass
from enum import StrEnum

from piguard.policy.model import OutboundRule, Policy, Purpose


class ChangeKind(StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"


@dataclass(frozen=True, slots=True)
class Change:
    """One difference; `consent` says whether processing under it must wait for fresh consent."""

    section: str
    key: str
    kind: ChangeKind
    detail: str
    consent: bool = False
    clauses: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PolicyDiff:
    old: str
    new: str
    changes: tuple[Change, ...]

    @property
    def needs_reconsent(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.consent)

    @property
    def reconsent_purposes(self) -> frozenset[str]:
        """Purposes whose consent-based processing waits for fresh consent after publishing."""
        return frozenset(c.key for c in self.needs_reconsent if c.section == "purposes")


_SECTIONS = (
    "clauses",
    "categories",
    "purposes",
    "services",
    "settings",
    "exemptions",
    "roles",
    "recipient_types",
    "recipients",
    "regions",
    "rights",
    "refusal_grounds",
    "channels",
    "cookies",
)
_REVISION = ("V2", "U3")


def diff_policies(old: Policy, new: Policy) -> PolicyDiff:
    """Every added, removed and changed entry, section by section, with consent flags."""
    changes: list[Change] = []
    for section in _SECTIONS:
        changes.extend(_diff_section(section, getattr(old, section), getattr(new, section), new))
    changes.extend(_diff_outbound(old, new))
    for name in ("cross_border", "minors", "incidents", "monitoring", "wind_down", "controller"):
        if getattr(old, name) != getattr(new, name):
            detail = _differing_fields(getattr(old, name), getattr(new, name))
            changes.append(Change(name, name, ChangeKind.CHANGED, detail))
    return PolicyDiff(old.key, new.key, tuple(changes))


def _diff_section(
    section: str, old: Mapping[str, object], new: Mapping[str, object], policy: Policy
) -> list[Change]:
    out: list[Change] = []
    for key in new.keys() - old.keys():
        out.append(_added(section, key, new[key], policy))
    for key in old.keys() - new.keys():
        out.append(Change(section, key, ChangeKind.REMOVED, "removed"))
    for key in old.keys() & new.keys():
        if old[key] != new[key]:
            out.append(_changed(section, key, old[key], new[key]))
    return sorted(out, key=lambda c: (c.kind, c.key))


def _added(section: str, key: str, value: object, policy: Policy) -> Change:
    consent = section in ("purposes", "recipients", "recipient_types") or (
        section == "categories" and policy.categories[key].sensitive
    )
    return Change(section, key, ChangeKind.ADDED, "new", consent, _REVISION if consent else ())


def _changed(section: str, key: str, old: object, new: object) -> Change:
    detail = _differing_fields(old, new)
    consent = False
    if isinstance(old, Purpose) and isinstance(new, Purpose):
        widened = new.categories - old.categories
        consent = bool(widened) or new.compatible > old.compatible or new.basis != old.basis
        if widened:
            detail += f" (+{', '.join(sorted(widened))})"
    return Change(section, key, ChangeKind.CHANGED, detail, consent, _REVISION if consent else ())


def _diff_outbound(old: Policy, new: Policy) -> list[Change]:
    before = {r.id: r for r in old.outbound}
    after = {r.id: r for r in new.outbound}
    out: list[Change] = []
    for rid in sorted(after.keys() - before.keys()):
        out.append(Change("outbound", rid, ChangeKind.ADDED, "new sharing rule", True, _REVISION))
    for rid in sorted(before.keys() - after.keys()):
        out.append(Change("outbound", rid, ChangeKind.REMOVED, "removed"))
    for rid in sorted(before.keys() & after.keys()):
        if before[rid] != after[rid]:
            out.append(_changed_rule(before[rid], after[rid]))
    return out


def _changed_rule(old: OutboundRule, new: OutboundRule) -> Change:
    widened = (
        bool(new.categories - old.categories)
        or bool(new.recipient_types - old.recipient_types)
        or bool(new.purposes - old.purposes)
        or bool(old.requires - new.requires)
    )
    detail = _differing_fields(old, new) + (" (widened)" if widened else "")
    clauses = _REVISION if widened else ()
    return Change("outbound", new.id, ChangeKind.CHANGED, detail, widened, clauses)


def _differing_fields(old: object, new: object) -> str:
    if not is_dataclass(old):
        return "changed"
    return ", ".join(f.name for f in fields(old) if getattr(old, f.name) != getattr(new, f.name))
