"""What the decision engine is asked and what it answers: plain values, no behaviour beyond masks.

A `DecisionRequest` carries everything the engine needs (the subject's state is a snapshot built by
the service layer), so `decide` is a pure function of its input and the compiled policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from piguard.policy.masking import masker
from piguard.policy.model import Action, ActorKind, ConsentType, Obligation


def _no_entries() -> Mapping[str, Any]:
    return MappingProxyType({})


class Effect(StrEnum):
    """Allow, deny, or not applicable (nothing personal is touched). Anything unsure is deny."""

    ALLOW = "allow"
    DENY = "deny"
    NOT_APPLICABLE = "not_applicable"


class ProjectionKind(StrEnum):
    CLEAR = "clear"
    MASKED = "masked"
    WITHHELD = "withheld"


@dataclass(frozen=True, slots=True)
class Projection:
    """How one category is shown to the actor: in clear, masked by a named operator, or withheld."""

    kind: ProjectionKind
    operator: str | None = None

    def apply(self, value: str) -> str | None:
        if self.kind is ProjectionKind.WITHHELD:
            return None
        if self.kind is ProjectionKind.CLEAR or self.operator is None:
            return value
        return masker(self.operator)(value)


CLEAR = Projection(ProjectionKind.CLEAR)
WITHHELD = Projection(ProjectionKind.WITHHELD)


@dataclass(frozen=True, slots=True)
class Reason:
    """Why: a clause ID and a short machine code (e.g. `C4`, `setting:location_collection`)."""

    clause: str
    code: str


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks. `role` is a policy role key, or the recipient id for a recipient actor;
    `principal` names the caller (an API key id) for the audit log and never affects a decision;
    `authority` names the authority that requested an exemption (C8(1)-(3))."""

    kind: ActorKind
    role: str
    case_reference: str | None = None
    principal: str = ""
    authority: str | None = None

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.role}" + (f":{self.principal}" if self.principal else "")


@dataclass(frozen=True, slots=True)
class RecipientView:
    """A recipient as the registry knows it now (SH0): status, assessment, agreement, region."""

    id: str
    type: str
    region: str
    registered: bool = True
    assessed: bool = False
    agreement: bool = False
    active: bool = True
    risk_flag: bool = False
    bound_policy: str | None = None


@dataclass(frozen=True, slots=True)
class Authorisation:
    """A third party's authorisation to query the subject (SH6): scope, expiry, revocation."""

    recipient: str
    categories: frozenset[str]
    expires_at: datetime | None = None
    revoked: bool = False

    def covers(self, categories: tuple[str, ...], at: datetime | None) -> bool:
        if self.revoked or not self.categories.issuperset(categories):
            return False
        return self.expires_at is None or (at is not None and at < self.expires_at)


@dataclass(frozen=True, slots=True)
class SubjectState:
    """A snapshot of one subject's consents, settings, authorisations, age and holds.

    `guardian_consents` are the scopes a linked guardian consented to (M1): for a minor only
    those count, and the guardian's consent to the service as a whole (`scopes.SERVICE`) is
    what lets a minor use the service at all."""

    consents: Mapping[str, ConsentType] = field(default_factory=_no_entries)
    settings: Mapping[str, bool] = field(default_factory=_no_entries)
    authorisations: Mapping[str, Authorisation] = field(default_factory=_no_entries)
    age: int | None = None
    guardian_consents: frozenset[str] = frozenset()
    guardian_objection: bool = False
    legal_hold: bool = False
    closed: bool = False
    pending_reconsent: frozenset[str] = frozenset()
    restricted: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class DecisionRequest:
    """One question: may this actor do this action, for this purpose, on these data?

    `registration` is set only by the vault's registration use case, never from a caller's
    input: registration alone may write immutable fields and identifiers (R1). `evidence` is the
    reference of the verification a write under an identifier's change purpose rests on."""

    action: Action
    actor: Actor
    purpose: str
    categories: tuple[str, ...]
    subject: SubjectState = field(default_factory=SubjectState)
    recipient: RecipientView | None = None
    region: str | None = None
    exemption: str | None = None
    source_purposes: frozenset[str] = frozenset()
    at: datetime | None = None
    registration: bool = False
    evidence: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """The engine's answer: effect, projection per category, obligations, reasons (clauses).

    For an allowed `erase`, `erases` names the purposes whose copies go: a value kept for any
    other purpose stays (R3, R4)."""

    effect: Effect
    reasons: tuple[Reason, ...]
    policy_version: str
    projection: Mapping[str, Projection] = field(default_factory=_no_entries)
    obligations: frozenset[Obligation] = frozenset()
    erases: frozenset[str] = frozenset()

    @property
    def allowed(self) -> bool:
        return self.effect is Effect.ALLOW

    @property
    def clauses(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.clause for r in self.reasons))

    def show(self, values: Mapping[str, str]) -> dict[str, str | None]:
        """Apply the projection to clear values; categories not in the projection are dropped."""
        if not self.allowed:
            return {}
        return {k: p.apply(values[k]) for k, p in self.projection.items() if k in values}
