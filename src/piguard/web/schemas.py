"""The API's data transfer objects. Every request model refuses unknown keys (extra='forbid').

Keys that end up in the audit log (purposes, categories, sources, scopes) are held to the narrow
shapes the log accepts, so a request can never carry text into it that the chain would refuse.
Fields that name the policy's vocabulary carry a `Names` marker: `web.contract` narrows them to
the loaded policy's keys when the app is built (an enum in the schema, a 422 for anything else).
Fields whose exact shape only the policy knows (which categories a `values` object takes and each
one's format, the consent scopes) carry a `Shaped` marker: `web.contract` writes their schema from
the policy; the server's own checks (the vault's validators, the consent ledger) stay what they
are, and the schema says what they accept.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, ClassVar, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints, WithJsonSchema

from piguard.consent.model import EVIDENCE_PATTERN
from piguard.consent.service import CHANNELS, METHODS
from piguard.policy.model import Action, ConsentType


@dataclass(frozen=True)
class Names:
    """Marks a string as a key of the policy's `vocabulary` (purposes, categories, settings,
    roles); `listed`: a comma-separated list of such keys."""

    vocabulary: Literal["purposes", "categories", "settings", "roles"]
    listed: bool = False


ShapeKind = Literal["values", "registration", "ward", "identifiers", "scope", "lookup"]


@dataclass(frozen=True)
class Shaped:
    """Marks a field (or, as a model's `shape`, a whole model) whose JSON Schema `web.contract`
    writes from the policy: `values` any category with its format, `registration` and `ward` the
    registration purpose's categories (required ones required), `identifiers` the categories
    changed together, `scope` the consent scopes the ledger accepts, `lookup` each lookup
    category with the format of its value."""

    kind: ShapeKind


PurposeKey = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,79}$"), Names("purposes")]
CategoryKey = Annotated[
    str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+){0,8}$"), Names("categories")
]
CategoryList = Annotated[
    str,
    StringConstraints(
        pattern=r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+){0,8}(,[a-z][a-z0-9_]*(\.[a-z0-9_]+){0,8}){0,63}$"
    ),
    Names("categories", listed=True),
]
SettingKey = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$"), Names("settings")]
RoleKey = Annotated[str, Names("roles")]
Key = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,119}$")]
PlainValue = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
Scope = Annotated[str, StringConstraints(pattern=r"^[a-z_]+:[A-Za-z0-9_.:-]{1,200}$")]
# Checked by the consent ledger (its message names the field and what is allowed): the schema
# lists what it allows.
Channel = Annotated[Key, WithJsonSchema({"type": "string", "enum": sorted(CHANNELS)})]
Method = Annotated[Key, WithJsonSchema({"type": "string", "enum": sorted(METHODS)})]
Values = Annotated[dict[CategoryKey, PlainValue], Field(min_length=1, max_length=64)]
AnyValues = Annotated[Values, Shaped("values")]
Lang = Literal["zh", "en"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- subjects and values --------------------------------------------------------------------------


class RegisterIn(_In):
    values: Annotated[Values, Shaped("registration")]
    source: Key = "subject"


class RegisteredOut(BaseModel):
    subject_id: str


class CollectIn(_In):
    purpose: PurposeKey
    values: AnyValues
    source: Key = "subject"


class UpdateIn(_In):
    purpose: PurposeKey
    values: AnyValues


EvidenceReference = Annotated[str, StringConstraints(pattern=EVIDENCE_PATTERN)]
OptionalEvidence = Annotated[str, StringConstraints(pattern=f"^$|{EVIDENCE_PATTERN}")]


class IdentifierChangeIn(_In):
    """New identifiers, with the reference of the verification the caller performed."""

    values: Annotated[Values, Shaped("identifiers")]
    evidence: EvidenceReference


class WardIn(_In):
    """A minor's registration by their guardian (M1): the link and the evidence of it."""

    values: Annotated[Values, Shaped("ward")]
    relation: Literal["parent", "legal_guardian"]
    evidence: EvidenceReference


class ValueIdsOut(BaseModel):
    subject_id: str
    value_ids: list[str]


class ValueOut(BaseModel):
    id: str
    category: str
    value: str | None = Field(description="Clear, masked, or null when withheld by the decision")
    purposes: list[str]
    source: str
    collected_at: datetime


class ReasonOut(BaseModel):
    clause: str
    code: str


class DecisionOut(BaseModel):
    effect: str
    reasons: list[ReasonOut]
    obligations: list[str]
    policy_version: str


class ReadOut(BaseModel):
    subject_id: str
    values: list[ValueOut]
    decision: DecisionOut


class DeletedOut(BaseModel):
    deleted: int


class LookupIn(_In):
    shape: ClassVar[Shaped] = Shaped("lookup")

    category: CategoryKey
    value: Annotated[str, StringConstraints(min_length=1, max_length=320)]


class LookupOut(BaseModel):
    subject_id: str
    values: list[ValueOut]


# -- consents and settings ------------------------------------------------------------------------


class GrantIn(_In):
    scope: Annotated[Scope, Shaped("scope")]
    consent_type: ConsentType = ConsentType.REGULAR
    channel: Channel = "api"
    method: Method = "api"
    evidence: OptionalEvidence = ""


class WithdrawIn(_In):
    scope: Annotated[Scope, Shaped("scope")]
    channel: Channel = "api"
    method: Method = "api"
    evidence: OptionalEvidence = ""


class ConsentEventOut(BaseModel):
    id: str
    subject_id: str
    kind: str
    scope: str
    consent_type: str
    policy_version: str
    notice_hash: str
    channel: str
    method: str
    evidence: str
    at: datetime


class ConsentsOut(BaseModel):
    events: list[ConsentEventOut]
    current: dict[str, str]


class SettingsOut(BaseModel):
    subject_id: str
    settings: dict[str, bool]


class SettingsIn(_In):
    changes: Annotated[
        dict[SettingKey, StrictBool],
        Field(min_length=1, max_length=32),
    ]
    channel: Channel = "api"


# -- decisions -------------------------------------------------------------------------------------


class DecideIn(_In):
    """A question to the engine. The actor is always the authenticated caller: no field names it."""

    action: Action
    purpose: PurposeKey
    categories: Annotated[list[CategoryKey], Field(max_length=64)] = []
    subject_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]{1,64}$")] | None = None
    recipient: Key | None = Field(
        None, description="A recipient's id: its facts come from piguard's registry (SH0)"
    )
    region: Key | None = Field(
        None, description="A destination region: can only make a transfer stricter (S1)"
    )
    exemption: Key | None = None
    case_reference: Key | None = None
    authority: Key | None = Field(
        None, description="The authority requesting an exemption of C8(1)-(3)"
    )


MAX_BATCH: Final = 1000
"""Requests in one `POST /v1/decide/batch`."""


class DecideBatchIn(_In):
    """Questions for one caller, answered in order, each audited like a single one."""

    requests: Annotated[list[DecideIn], Field(min_length=1, max_length=MAX_BATCH)]


class ActorOut(BaseModel):
    kind: str
    role: RoleKey


class ProjectionOut(BaseModel):
    kind: str
    operator: str | None


class DecideOut(DecisionOut):
    actor: ActorOut
    projection: dict[str, ProjectionOut]


class DecideBatchOut(BaseModel):
    answers: list[DecideOut] = Field(description="One answer per request, in request order")


# -- errors ----------------------------------------------------------------------------------------


class MessageOut(BaseModel):
    zh: str
    en: str


class ErrorBody(BaseModel):
    """Every error answer (`web.errors`): a stable code, the message in Chinese and English, and
    where they apply the field at fault, what it allows, and the policy's reason codes."""

    code: str
    message: MessageOut
    field: str | None = None
    allowed: str | None = None
    reasons: list[str] | None = None


# -- policy, health, audit -------------------------------------------------------------------------


class NoticeItemOut(BaseModel):
    clause: str
    title: str
    text: str
    prominent: bool


class NoticeSectionOut(BaseModel):
    key: str
    title: str
    items: list[NoticeItemOut]


class AppendixOut(BaseModel):
    title: str
    lines: list[str]


class NoticeOut(BaseModel):
    lang: Lang
    title: str
    version: str
    policy_version: str
    effective: str
    controller: str
    sections: list[NoticeSectionOut]
    appendices: list[AppendixOut]
    markdown: str


class HealthOut(BaseModel):
    status: Literal["ok"]
    policy_version: str


class AuditProblemOut(BaseModel):
    kind: str
    seq: int
    summary: dict[str, str]


class ApiKeyOut(BaseModel):
    """An API key as listed: never its secret or the secret's hash."""

    id: str
    role: str
    subject_id: str | None
    label: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    live: bool


class AuditVerifyOut(BaseModel):
    """The verdict. `checkpoint_seq` is what is sealed (the newest validly signed checkpoint);
    the `unsealed` records after it rest on the keyed chain alone."""

    ok: bool
    records_checked: int
    head_seq: int
    head_hash: str
    checkpoint_seq: int
    unsealed: int
    problems: list[AuditProblemOut]
    problems_omitted: int
