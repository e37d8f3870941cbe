"""The policy file format: a Pydantic schema that refuses unknown keys and wrong shapes.

These classes only check shape; `policy.language` turns a checked document into the frozen model
and checks references between sections.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, model_validator

from piguard.policy.model import (
    Action,
    ActorKind,
    Basis,
    ConsentType,
    Obligation,
    Requirement,
    RetentionTrigger,
    SpiClass,
)

Key = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$", max_length=120)]
PolicyId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]*$", max_length=64)]
ClauseId = Annotated[str, StringConstraints(pattern=r"^[A-Z]+[0-9]*(\.[0-9]+)*$", max_length=16)]
NonEmpty = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]
Clauses = Annotated[list[ClauseId], Field(min_length=1)]
Wildcard = Literal["*"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class TextDoc(Strict):
    zh: NonEmpty
    en: NonEmpty


class ControllerDoc(Strict):
    name: TextDoc
    contact: TextDoc
    hotline: NonEmpty


class SectionDoc(Strict):
    title: TextDoc
    intro: TextDoc | None = None


class ClauseDoc(Strict):
    section: Key
    title: TextDoc
    text: TextDoc
    prominent: bool = False
    notice_only: bool = False


class CategoryDoc(Strict):
    label: TextDoc
    spi: SpiClass | None = None
    mask: NonEmpty = "full"
    immutable: bool = False
    validator: Key | None = None
    tags: list[Key] = []
    change_purpose: Key | None = None
    clauses: Clauses


class PeriodDoc(Strict):
    """A period in calendar units: exactly one of years, months or days, positive."""

    years: Annotated[StrictInt, Field(ge=1, le=100)] | None = None
    months: Annotated[StrictInt, Field(ge=1, le=1200)] | None = None
    days: Annotated[StrictInt, Field(ge=1, le=36500)] | None = None

    @model_validator(mode="after")
    def _one_unit(self) -> PeriodDoc:
        given = [v for v in (self.years, self.months, self.days) if v is not None]
        if len(given) != 1:
            raise ValueError("a period names exactly one unit: years, months or days")
        return self


class RetentionDoc(Strict):
    period: PeriodDoc | None = None
    after: RetentionTrigger
    operator_default: bool = False
    label: TextDoc


class PurposeDoc(Strict):
    label: TextDoc
    description: TextDoc
    basis: Basis
    exemption: Key | None = None
    consent_type: ConsentType = ConsentType.REGULAR
    required: list[Key] = []
    optional: list[Key] = []
    refusal: TextDoc
    retention: RetentionDoc
    compatible: list[Key] = []
    optional_service: bool = False
    prominent: bool = False
    obligations: list[Obligation] = []
    clauses: Clauses


class ServiceDoc(Strict):
    label: TextDoc
    description: TextDoc
    purpose: Key
    clauses: Clauses


class GateDoc(Strict):
    when: bool
    actions: Annotated[list[Action], Field(min_length=1)]
    purposes: list[Key] = []
    categories: list[Key] = []
    withhold: bool = False


class SettingDoc(Strict):
    label: TextDoc
    default: bool
    gates: list[GateDoc] = []
    clauses: Clauses


class ExemptionDoc(Strict):
    label: TextDoc
    purposes: Annotated[list[Key], Field(min_length=1)]
    roles: Annotated[list[Key], Field(min_length=1)]
    needs_case_reference: bool
    needs_authority: bool = False
    clauses: Clauses


class GrantDoc(Strict):
    purpose: Key | Wildcard
    actions: Annotated[list[Action], Field(min_length=1)]
    categories: list[Key] | Wildcard = "*"
    masks: dict[Key, NonEmpty] = {}
    needs_case_reference: bool = False
    reads_held_data: bool = False
    erases: list[Key] | Wildcard = []
    clauses: Clauses


class RoleDoc(Strict):
    kind: ActorKind
    label: TextDoc
    grants: list[GrantDoc] = []
    clauses: Clauses


class RecipientTypeDoc(Strict):
    label: TextDoc
    requires: list[Requirement] = []
    clauses: Clauses


class RecipientDoc(Strict):
    name: TextDoc
    type: Key
    region: NonEmpty
    agreement: bool = False
    assessed: bool = False
    risk_flag: bool = False
    clauses: Clauses


class OutboundDoc(Strict):
    id: Key
    action: Literal[Action.SHARE, Action.TRANSFER, Action.DISCLOSE]
    purposes: list[Key] | Wildcard
    recipient_types: list[Key] = []
    categories: list[Key] | Wildcard = "*"
    basis: Basis
    consent_scope: (
        Literal["purpose", "recipient", "recipient_type", "transfer", "disclose"] | None
    ) = None
    consent_type: ConsentType = ConsentType.REGULAR
    requires: list[Requirement] = []
    masks: dict[Key, NonEmpty] = {}
    obligations: list[Obligation] = []
    clauses: Clauses


class RegionDoc(Strict):
    label: TextDoc


class CrossBorderDoc(Strict):
    home: NonEmpty
    purposes: Annotated[list[Key], Field(min_length=1)]
    consent_type: ConsentType = ConsentType.REGULAR
    requires: list[Requirement] = []
    obligations: list[Obligation] = []
    clauses: Clauses


class SlaDoc(Strict):
    working_days: Annotated[int, Field(ge=1, le=60)]
    cap_days: Annotated[int, Field(ge=1, le=365)]
    clauses: Clauses


class RightDoc(Strict):
    label: TextDoc
    sla: SlaDoc | None = None
    verification: bool = True
    closing: TextDoc
    clauses: Clauses


class GroundDoc(Strict):
    label: TextDoc
    clauses: Clauses


class ChannelDoc(Strict):
    label: TextDoc
    public: bool = False
    clauses: Clauses


class MinorsDoc(Strict):
    age_threshold: Annotated[int, Field(ge=1, le=21)]
    inclusive: bool = False
    all_sensitive: bool = False
    clauses: Clauses


class CookieDoc(Strict):
    label: TextDoc
    necessary: bool = False
    clauses: Clauses


class IncidentsDoc(Strict):
    notice_parts: Annotated[list[Key], Field(min_length=1)]
    record_fields: list[Key] = []
    public_announcement_threshold: Annotated[int, Field(ge=1)]
    regulator_report: bool = True
    clauses: Clauses


class MonitoringDoc(Strict):
    bulk_read_records: Annotated[int, Field(ge=1)]
    subjects_per_hour: Annotated[int, Field(ge=1)]
    repeated_denials: Annotated[int, Field(ge=1)]
    off_hours: tuple[Annotated[int, Field(ge=0, le=23)], Annotated[int, Field(ge=0, le=23)]]
    recipient_queries_per_minute: Annotated[int, Field(ge=1)]
    clauses: Clauses


class WindDownDoc(Strict):
    steps: Annotated[list[Key], Field(min_length=1)]
    clauses: Clauses


class BindingsDoc(Strict):
    registration_purpose: Key
    self_service_purpose: Key
    consent_purpose: Key
    consent_category: Key
    lookup_purpose: Key
    audit_purpose: Key
    audit_category: Key
    keys_purpose: Key
    keys_category: Key
    age_from: Key | None = None
    birth_date: Key | None = None
    guardian_role: Key | None = None


class PolicyDoc(Strict):
    """The whole file."""

    id: PolicyId
    version: NonEmpty
    profile: Literal["base", "pipl"] = "base"
    title: TextDoc
    published: NonEmpty
    effective: NonEmpty
    controller: ControllerDoc
    sections: dict[Key, SectionDoc]
    clauses: dict[ClauseId, ClauseDoc]
    categories: dict[Key, CategoryDoc]
    purposes: dict[Key, PurposeDoc]
    services: dict[Key, ServiceDoc] = {}
    settings: dict[Key, SettingDoc] = {}
    exemptions: dict[Key, ExemptionDoc] = {}
    roles: dict[Key, RoleDoc]
    recipient_types: dict[Key, RecipientTypeDoc]
    recipients: dict[Key, RecipientDoc] = {}
    outbound: list[OutboundDoc] = []
    regions: dict[NonEmpty, RegionDoc]
    cross_border: CrossBorderDoc
    rights: dict[Key, RightDoc]
    refusal_grounds: dict[Key, GroundDoc]
    channels: dict[Key, ChannelDoc]
    minors: MinorsDoc
    cookies: dict[Key, CookieDoc] = {}
    incidents: IncidentsDoc
    monitoring: MonitoringDoc
    wind_down: WindDownDoc
    bindings: BindingsDoc
