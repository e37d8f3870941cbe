"""Consent and settings as events; the current state is a fold. Pure: no I/O, no clock.

A consent receipt per event is rendered as Kantara Consent Receipt v1.1 JSON, naming the subject by
pseudonym only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from piguard.kernel.text import Lang
from piguard.policy import scopes
from piguard.policy.model import ConsentType, Policy, Purpose

EVIDENCE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,199}$"
"""Evidence is a reference to a record the operator keeps (a document, a call, a form id), never
free text: free text is where personal information would slip into the ledger unencrypted."""
EVIDENCE_ALLOWED = "a reference of 1-200 letters, digits and _ . : / -, starting alphanumeric"


def is_evidence_reference(value: str) -> bool:
    return re.fullmatch(EVIDENCE_PATTERN, value) is not None


class ConsentEventKind(StrEnum):
    GRANT = "grant"
    WITHDRAW = "withdraw"


@dataclass(frozen=True, slots=True)
class ConsentEvent:
    """One grant or withdrawal, tied to the policy version and notice the subject saw."""

    id: str
    subject_id: str
    kind: ConsentEventKind
    scope: str
    consent_type: ConsentType
    policy_version: str
    notice_hash: str
    channel: str
    method: str
    evidence: str
    at: datetime
    guardian_id: str | None = None


@dataclass(frozen=True, slots=True)
class Guardianship:
    """A verified adult linked to a minor (M1): the relation and the evidence a reference."""

    id: str
    minor_id: str
    guardian_id: str
    relation: str
    evidence: str
    at: datetime


@dataclass(frozen=True, slots=True)
class GuardianState:
    """What a minor's guardians said: the scopes they consent to now, and whether they object
    to the minor's use of the service (their last word on it was a withdrawal)."""

    scopes: frozenset[str] = frozenset()
    objection: bool = False


@dataclass(frozen=True, slots=True)
class SettingEvent:
    subject_id: str
    key: str
    value: bool
    channel: str
    at: datetime


def current_consents(events: Iterable[ConsentEvent]) -> dict[str, ConsentType]:
    """Fold events in order: the last event per scope decides; a withdrawal removes the scope."""
    state: dict[str, ConsentType] = {}
    for event in events:
        if event.kind is ConsentEventKind.GRANT:
            state[event.scope] = event.consent_type
        else:
            state.pop(event.scope, None)
    return state


def guardian_state(events: Iterable[ConsentEvent]) -> GuardianState:
    """Fold events in order: a scope counts for a minor only while its last event is a
    guardian's grant; a guardian's withdrawal of the service scope is an objection."""
    granted: dict[str, bool] = {}
    objection = False
    for event in events:
        by_guardian = event.guardian_id is not None
        granted[event.scope] = by_guardian and event.kind is ConsentEventKind.GRANT
        if by_guardian and event.scope == scopes.SERVICE:
            objection = event.kind is ConsentEventKind.WITHDRAW
    return GuardianState(frozenset(s for s, ok in granted.items() if ok), objection)


def current_settings(policy: Policy, events: Iterable[SettingEvent]) -> dict[str, bool]:
    """Policy defaults, overridden by the subject's changes in order."""
    state = {key: setting.default for key, setting in policy.settings.items()}
    for event in events:
        state[event.key] = event.value
    return state


def scope_purposes(scope: str) -> tuple[str, ...]:
    """The purpose(s) a consent scope is about, for receipts."""
    kind, _, rest = scope.partition(":")
    if kind in ("purpose", "disclose", "cross_border"):
        return (rest,)
    if kind in ("share", "share_type"):
        return (rest.rpartition(":")[2],)
    return ()


def kantara_receipt(event: ConsentEvent, policy: Policy, lang: Lang = "zh") -> dict[str, object]:
    """A Kantara Initiative Consent Receipt v1.1 for one event."""
    scopes.scope_kind(event.scope)
    purposes = [policy.purposes[p] for p in scope_purposes(event.scope) if p in policy.purposes]
    categories = {c for p in purposes for c in p.categories}
    sensitive = sorted({spi.value for c in categories if (spi := policy.categories[c].spi)})
    third_party = event.scope.startswith(("share:", "share_type:", "transfer:", "disclose:"))
    controller = policy.controller
    return {
        "version": "KI-CR-v1.1.0",
        "jurisdiction": "CN",
        "consentTimestamp": int(event.at.timestamp()),
        "collectionMethod": event.method,
        "consentReceiptID": event.id,
        "language": lang,
        "piiPrincipalId": event.subject_id,
        "piiControllers": [
            {
                "piiController": controller.name.in_(lang),
                "contact": controller.contact.in_(lang),
                "phone": controller.hotline,
            }
        ],
        "policyUrl": f"/v1/policy?version={event.policy_version}",
        "services": [
            {
                "service": event.scope,
                "purposes": [_receipt_purpose(p, event, lang, third_party) for p in purposes],
            }
        ],
        "sensitive": bool(sensitive),
        "spiCat": sensitive,
        "extensions": {
            "piguard": {
                "event": event.kind.value,
                "consentType": event.consent_type.value,
                "policyVersion": event.policy_version,
                "noticeHash": event.notice_hash,
                "channel": event.channel,
                "evidence": event.evidence,
                "givenByGuardian": event.guardian_id is not None,
            }
        },
    }


def _receipt_purpose(
    p: Purpose, event: ConsentEvent, lang: Lang, third_party: bool
) -> dict[str, object]:
    return {
        "purpose": p.label.in_(lang),
        "purposeCategory": [p.key],
        "consentType": "EXPRESSED" if event.consent_type is ConsentType.REGULAR else "EXPLICIT",
        "piiCategory": sorted(p.categories),
        "primaryPurpose": not p.optional_service,
        "termination": p.retention.label.in_(lang),
        "thirdPartyDisclosure": third_party,
    }
