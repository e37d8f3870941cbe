"""The policy model: what a privacy policy says, as frozen values.

A `Policy` is built only by `policy.language` from a validated file; every rule names the clause
IDs it implements, so a decision can always say why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from piguard.kernel.periods import Period, add_period
from piguard.kernel.text import LocalText


class Action(StrEnum):
    """Everything a service may do with personal information."""

    COLLECT = "collect"
    READ = "read"
    UPDATE = "update"
    SHARE = "share"
    TRANSFER = "transfer"
    DISCLOSE = "disclose"
    ERASE = "erase"
    # Erasing a whole subject (R4 cancellation, R5): its own operation, never implied by a grant
    # to erase one purpose's data.
    ERASE_SUBJECT = "erase_subject"


OUTBOUND_ACTIONS = frozenset({Action.SHARE, Action.TRANSFER, Action.DISCLOSE})


class ActorKind(StrEnum):
    """Who asks: the person themself, staff, a platform service, a recipient or an authority."""

    SUBJECT = "subject"
    STAFF = "staff"
    SERVICE = "service"
    RECIPIENT = "recipient"
    AUTHORITY = "authority"


class Basis(StrEnum):
    """Why a use is lawful (C8, PIPL13).

    `business_practice` is the policy's own words for due diligence, "根据法律规定及合理商业习惯"
    (SH5: law *and reasonable business practice*), and covers a merger, acquisition or bankruptcy
    (T1): a corporate transaction the company chooses, not a duty the law imposes. Unlike
    `legal_obligation` it neither outlives the account (R4) nor overrides a restriction (R2).
    """

    CONSENT = "consent"
    CONTRACT = "contract"
    LEGAL_OBLIGATION = "legal_obligation"
    BUSINESS_PRACTICE = "business_practice"
    EXEMPTION = "exemption"


class ConsentType(StrEnum):
    """How strong a consent is: `separate` is PIPL's stand-alone consent. Who gave it (the
    subject or a linked guardian, M1) is recorded on the event, never claimed as a type."""

    REGULAR = "regular"
    SEPARATE = "separate"


CONSENT_STRENGTH: Mapping[ConsentType, int] = {
    ConsentType.REGULAR: 1,
    ConsentType.SEPARATE: 2,
}


class SpiClass(StrEnum):
    """The seven classes of sensitive personal information of DEF2."""

    IDENTITY = "identity"
    ACCOUNT = "account"
    CREDIT = "credit"
    BEHAVIOUR = "behaviour"
    BIOMETRIC = "biometric"
    NETWORK_IDENTIFIER = "network_identifier"
    CONTACT = "contact"


class Obligation(StrEnum):
    """What must happen alongside an allowed action."""

    AUDIT = "audit"
    ENCRYPT_AT_REST = "encrypt_at_rest"
    ENCRYPT_IN_TRANSIT = "encrypt_in_transit"
    RECORD_SOURCE = "record_source"
    RECORD_PROVENANCE = "record_provenance"
    DISCLOSURE_LOG = "disclosure_log"
    CROSS_BORDER_LOG = "cross_border_log"
    CASE_REFERENCE = "case_reference"
    HOLD = "hold"
    NOTIFY_SUBJECT = "notify_subject"
    RISK_WARNING = "risk_warning"
    DELAY_24H = "delay_24h"


class Requirement(StrEnum):
    """Preconditions an outbound rule can demand of the recipient or the subject's state."""

    REGISTERED = "registered"
    ASSESSMENT = "assessment"
    AGREEMENT = "agreement"
    CASE_REFERENCE = "case_reference"
    AUTHORISATION = "authorisation"
    SUCCESSOR_BOUND = "successor_bound"
    MASKED_ONLY = "masked_only"


class RetentionTrigger(StrEnum):
    """From when a retention period counts."""

    COLLECTION = "collection"
    ACCOUNT_CLOSED = "account_closed"
    CONSENT_WITHDRAWN = "consent_withdrawn"


ClauseIds = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Clause:
    """One numbered clause of the policy: its notice text and whether it is shown in bold (P3)."""

    id: str
    title: LocalText
    text: LocalText
    section: str
    prominent: bool = False
    notice_only: bool = False


@dataclass(frozen=True, slots=True)
class Category:
    """A data category of the taxonomy; `spi` names its sensitive class (DEF2) when it has one.

    Immutable categories are written at registration only; a category with a `change_purpose`
    (an identifier such as a phone number) is written at registration or under that purpose."""

    key: str
    label: LocalText
    spi: SpiClass | None
    mask: str
    clauses: ClauseIds
    immutable: bool = False
    validator: str | None = None
    tags: frozenset[str] = frozenset()
    change_purpose: str | None = None

    @property
    def sensitive(self) -> bool:
        return self.spi is not None


@dataclass(frozen=True, slots=True)
class Retention:
    """How long data of a purpose is kept once its trigger happens (S1).

    `period` is in calendar units; None means the data is kept until the trigger itself (consent
    withdrawn, account closed) and no longer. `operator_default` marks a period the policy text
    does not state: the operator chose it, and the notice says so instead of presenting it as the
    policy's promise.
    """

    period: Period | None
    after: RetentionTrigger
    label: LocalText
    operator_default: bool = False

    def ends(self, trigger_at: datetime) -> datetime:
        """When the retention of data whose trigger happened at `trigger_at` ends."""
        return trigger_at if self.period is None else add_period(trigger_at, self.period)


@dataclass(frozen=True, slots=True)
class Purpose:
    """A declared use of personal information with its lawful basis (U2, V1)."""

    key: str
    label: LocalText
    description: LocalText
    basis: Basis
    required: tuple[str, ...]
    optional: tuple[str, ...]
    refusal: LocalText
    retention: Retention
    clauses: ClauseIds
    exemption: str | None = None
    consent_type: ConsentType = ConsentType.REGULAR
    compatible: frozenset[str] = frozenset()
    optional_service: bool = False
    prominent: bool = False
    obligations: frozenset[Obligation] = frozenset()

    @property
    def categories(self) -> frozenset[str]:
        return frozenset(self.required) | frozenset(self.optional)


@dataclass(frozen=True, slots=True)
class Service:
    """An optional service of C7: its own purpose, its own consent, never a condition of payment."""

    key: str
    label: LocalText
    description: LocalText
    purpose: str
    clauses: ClauseIds


@dataclass(frozen=True, slots=True)
class SettingGate:
    """While a setting has the value `when`, the listed actions are refused (or fields withheld)."""

    when: bool
    actions: frozenset[Action]
    purposes: frozenset[str]
    categories: frozenset[str]
    withhold: bool = False


@dataclass(frozen=True, slots=True)
class Setting:
    """A switch the subject controls (C2.3, C4, C7(2), U1)."""

    key: str
    label: LocalText
    default: bool
    gates: tuple[SettingGate, ...]
    clauses: ClauseIds


@dataclass(frozen=True, slots=True)
class Exemption:
    """A case where PI may be used without consent (C8), only by the roles and for the purposes
    the policy names; some must be requested by an authority with a case reference."""

    code: str
    label: LocalText
    needs_case_reference: bool
    clauses: ClauseIds
    purposes: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()
    needs_authority: bool = False


@dataclass(frozen=True, slots=True)
class Grant:
    """Least privilege (S2): a role may do `actions` for `purpose` on `categories` only.

    `masks` maps a category to a masking operator spec or "clear"; a sensitive category left out
    of it is masked with the category's own operator in staff views (DEF2). `erases` names the
    purposes whose copies an erase under this grant removes (by default the grant's purpose).
    """

    purpose: str
    actions: frozenset[Action]
    categories: frozenset[str]
    masks: Mapping[str, str]
    clauses: ClauseIds
    needs_case_reference: bool = False
    reads_held_data: bool = False
    erases: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Role:
    """A staff role, platform service, authority or the subject, as a set of grants."""

    key: str
    kind: ActorKind
    label: LocalText
    grants: tuple[Grant, ...]
    clauses: ClauseIds


@dataclass(frozen=True, slots=True)
class RecipientType:
    """A kind of recipient (SH0, DEF1) and what it needs before anything flows to it."""

    key: str
    label: LocalText
    requires: frozenset[Requirement]
    clauses: ClauseIds


@dataclass(frozen=True, slots=True)
class Recipient:
    """A pre-registered recipient, such as an affiliate of DEF1."""

    id: str
    name: LocalText
    type: str
    region: str
    clauses: ClauseIds
    agreement: bool = False
    assessed: bool = False
    risk_flag: bool = False


@dataclass(frozen=True, slots=True)
class OutboundRule:
    """A sharing, transfer or public-disclosure rule (SH1–SH7, T1, D1, C3, C5)."""

    id: str
    action: Action
    purposes: frozenset[str]
    recipient_types: frozenset[str]
    categories: frozenset[str]
    basis: Basis
    requires: frozenset[Requirement]
    masks: Mapping[str, str]
    obligations: frozenset[Obligation]
    clauses: ClauseIds
    consent_scope: str | None = None
    consent_type: ConsentType = ConsentType.REGULAR


@dataclass(frozen=True, slots=True)
class Region:
    """A storage or processing region (S1)."""

    key: str
    label: LocalText


@dataclass(frozen=True, slots=True)
class CrossBorder:
    """The cross-border rule of S1/SH7: what a transfer out of the home region needs, and the
    cross-border business purposes that alone may leave it."""

    home: str
    purposes: frozenset[str]
    consent_type: ConsentType
    requires: frozenset[Requirement]
    obligations: frozenset[Obligation]
    clauses: ClauseIds


@dataclass(frozen=True, slots=True)
class Sla:
    """A deadline in Chinese working days from verification, with a calendar-day cap (P1, R7)."""

    working_days: int
    cap_days: int
    clauses: ClauseIds


@dataclass(frozen=True, slots=True)
class Right:
    """A right or request type the subject can exercise (R*, P1); `sla` only where the policy
    promises a deadline."""

    key: str
    label: LocalText
    sla: Sla | None
    verification: bool
    clauses: ClauseIds
    closing: LocalText


@dataclass(frozen=True, slots=True)
class RefusalGround:
    """One of the only grounds on which a request may be refused (R8)."""

    code: str
    label: LocalText
    clauses: ClauseIds


@dataclass(frozen=True, slots=True)
class Channel:
    """A way to reach subjects (V2, S3); `public` channels reach everyone at once."""

    key: str
    label: LocalText
    public: bool
    clauses: ClauseIds


@dataclass(frozen=True, slots=True)
class Minors:
    """M1: who counts as a minor, and what their consent-based processing needs."""

    age_threshold: int
    inclusive: bool
    all_sensitive: bool
    clauses: ClauseIds

    def is_minor(self, age: int) -> bool:
        return age <= self.age_threshold if self.inclusive else age < self.age_threshold


@dataclass(frozen=True, slots=True)
class CookieCategory:
    """A cookie category of K1; only strictly necessary ones are on without consent."""

    key: str
    label: LocalText
    necessary: bool
    clauses: ClauseIds


@dataclass(frozen=True, slots=True)
class Incidents:
    """S3: the parts every incident notice must have, and when to announce publicly."""

    notice_parts: tuple[str, ...]
    record_fields: tuple[str, ...]
    public_announcement_threshold: int
    regulator_report: bool
    clauses: ClauseIds


@dataclass(frozen=True, slots=True)
class Monitoring:
    """S2/SH0: thresholds above which staff or recipient access raises an alert."""

    bulk_read_records: int
    subjects_per_hour: int
    repeated_denials: int
    off_hours: tuple[int, int]
    recipient_queries_per_minute: int
    clauses: ClauseIds


@dataclass(frozen=True, slots=True)
class WindDown:
    """S4: what stopping operations does."""

    steps: tuple[str, ...]
    clauses: ClauseIds


@dataclass(frozen=True, slots=True)
class Controller:
    """Who is responsible and how to reach them (P1, PIPL17)."""

    name: LocalText
    contact: LocalText
    hotline: str


@dataclass(frozen=True, slots=True)
class Bindings:
    """The parts of a policy that piguard's generic services use for their own jobs, so that no
    service names a key of one particular policy."""

    registration_purpose: str
    self_service_purpose: str
    consent_purpose: str
    consent_category: str
    lookup_purpose: str
    audit_purpose: str
    audit_category: str
    # S2: listing and revoking API keys (`GET /v1/keys`, `DELETE /v1/keys/{id}`).
    keys_purpose: str
    keys_category: str
    age_from: str | None = None
    birth_date: str | None = None
    guardian_role: str | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    """A whole privacy policy, version-stamped; the decision engine compiles it once."""

    id: str
    version: str
    profile: str
    title: LocalText
    published: str
    effective: str
    controller: Controller
    sections: Mapping[str, LocalText]
    clauses: Mapping[str, Clause]
    categories: Mapping[str, Category]
    purposes: Mapping[str, Purpose]
    services: Mapping[str, Service]
    settings: Mapping[str, Setting]
    exemptions: Mapping[str, Exemption]
    roles: Mapping[str, Role]
    recipient_types: Mapping[str, RecipientType]
    recipients: Mapping[str, Recipient]
    outbound: tuple[OutboundRule, ...]
    regions: Mapping[str, Region]
    cross_border: CrossBorder
    rights: Mapping[str, Right]
    refusal_grounds: Mapping[str, RefusalGround]
    channels: Mapping[str, Channel]
    minors: Minors
    cookies: Mapping[str, CookieCategory]
    incidents: Incidents
    monitoring: Monitoring
    wind_down: WindDown
    bindings: Bindings
    # Text the policy sets at the head of a section, before its numbered clauses.
    section_intros: Mapping[str, LocalText] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """`id@version`: what every decision and audit record names."""
        return f"{self.id}@{self.version}"
