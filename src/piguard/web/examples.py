"""An example of every operation's request and success answer in `/openapi.json`, from the
loaded policy: its purposes, categories (each value a sample of its format,
`value_schemas.SAMPLES`), settings and roles, and a decision its engine really gives.

Made-up data only: ids of the shape piguard issues, the samples' names and numbers. Answers are
built as the API's own models, so an example always has the answer's shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any, Final

from pydantic import BaseModel

from piguard.consent.model import ConsentEvent, ConsentEventKind, kantara_receipt
from piguard.policy.decide import DecisionEngine
from piguard.policy.decision import Actor, DecisionRequest, SubjectState
from piguard.policy.model import Action, ActorKind, Basis, ConsentType, Policy
from piguard.policy.notice import build_notice
from piguard.policy.scopes import purpose_scope
from piguard.web.schemas import (
    ApiKeyOut,
    AuditVerifyOut,
    ConsentEventOut,
    ConsentsOut,
    DecideOut,
    DeletedOut,
    HealthOut,
    LookupOut,
    NoticeOut,
    ReadOut,
    RegisteredOut,
    SettingsOut,
    ValueIdsOut,
    ValueOut,
)
from piguard.web.value_schemas import SAMPLES, resident_id
from piguard.web.views import decide_out, decision_out, notice_out

SUBJECT: Final = "sub_0190a1b2c3d4e5f6a7b8c9d0e1f2a3b4"
MINOR: Final = "sub_0190a1b2c3d4e5f6a7b8c9d0e1f2a3c5"
EVENT: Final = "cr_0190a1b2c3d4e5f6a7b8c9d0e1f2a3b4"
KEY: Final = "key_0190a1b2c3d4e5f6a7b8c9d0e1f2a3b4"
VALUE_IDS: Final = ("val_0190a1b2c3d4e5f6a7b8c9d0e1f2a3b4", "val_0190a1b2c3d4e5f6a7b8c9d0e1f2a3b5")
AT: Final = datetime(2024, 5, 1, 0, 30, tzinfo=UTC)
EVIDENCE: Final = "sms-otp:20240501-0001"
CASE: Final = "case-2024-0001"


@dataclass(frozen=True)
class Example:
    """An operation's examples: its body, its parameters by name, its success answer."""

    body: object | None = None
    params: Mapping[str, object] | None = None
    answer: object | None = None


class _Examples:
    """The examples of one policy."""

    def __init__(self, policy: Policy, today: date) -> None:
        self.policy = policy
        self.today = today
        b = policy.bindings
        self.registration = policy.purposes[b.registration_purpose]
        self.self_service = b.self_service_purpose

    # -- values ---------------------------------------------------------------------------------

    def sample(self, category: str) -> str:
        return SAMPLES[self.policy.categories[category].validator or "text"]

    def values(self, categories: tuple[str, ...]) -> dict[str, str]:
        return {c: self.sample(c) for c in categories}

    def registration_values(self, *, minor: bool = False) -> dict[str, str]:
        found = self.values(self.registration.required)
        age_from = self.policy.bindings.age_from
        if minor and age_from in found:  # born eight years ago this January
            found[age_from] = resident_id(f"110101{self.today.year - 8}0115001")
        return found

    def mutable(self, purpose: str) -> tuple[str, ...]:
        """Up to two categories of `purpose` that an update may replace."""
        p = self.policy.purposes[purpose]
        keys = [c for c in (*p.required, *p.optional) if not self.policy.categories[c].immutable]
        return tuple(keys[:2])

    def value_out(self, category: str, purpose: str, i: int = 0) -> ValueOut:
        return ValueOut(
            id=VALUE_IDS[i % 2],
            category=category,
            value=self.sample(category),
            purposes=[purpose],
            source="subject",
            collected_at=AT,
        )

    def identifiers(self) -> dict[str, str]:
        keys = [k for k, c in self.policy.categories.items() if c.change_purpose]
        return self.values(tuple(keys[:1]))

    # -- consents, settings ---------------------------------------------------------------------

    def consent_purpose(self) -> str:
        """A purpose that rests on consent, else the registration purpose."""
        found = [k for k, p in self.policy.purposes.items() if p.basis is Basis.CONSENT]
        return found[0] if found else self.registration.key

    def grant(self) -> dict[str, object]:
        purpose = self.policy.purposes[self.consent_purpose()]
        return {
            "scope": purpose_scope(purpose.key),
            "consent_type": purpose.consent_type.value,
            "channel": "app",
            "method": "checkbox",
            "evidence": "",
        }

    def event(self, kind: ConsentEventKind = ConsentEventKind.GRANT) -> ConsentEvent:
        purpose = self.policy.purposes[self.consent_purpose()]
        return ConsentEvent(
            id=EVENT,
            subject_id=SUBJECT,
            kind=kind,
            scope=purpose_scope(purpose.key),
            consent_type=purpose.consent_type
            if kind is ConsentEventKind.GRANT
            else ConsentType.REGULAR,
            policy_version=self.policy.key,
            notice_hash="9f2c" * 16,
            channel="app",
            method="checkbox",
            evidence="",
            at=AT,
        )

    def event_out(self, kind: ConsentEventKind = ConsentEventKind.GRANT) -> ConsentEventOut:
        e = self.event(kind)
        return ConsentEventOut(
            id=e.id,
            subject_id=e.subject_id,
            kind=e.kind.value,
            scope=e.scope,
            consent_type=e.consent_type.value,
            policy_version=e.policy_version,
            notice_hash=e.notice_hash,
            channel=e.channel,
            method=e.method,
            evidence=e.evidence,
            at=e.at,
        )

    def settings(self) -> dict[str, bool]:
        return {k: s.default for k, s in self.policy.settings.items()}

    # -- decisions ------------------------------------------------------------------------------

    def decision_request(self) -> DecisionRequest:
        """Reading the registration categories, by the first role granted it (else the first)."""
        purpose = self.registration.key
        roles = [
            r
            for r in self.policy.roles.values()
            if any(g.purpose == purpose and Action.READ in g.actions for g in r.grants)
        ] or list(self.policy.roles.values())
        role = roles[0]
        return DecisionRequest(
            Action.READ,
            Actor(ActorKind(role.kind), role.key),
            purpose,
            self.registration.required[:2],
            SubjectState(),
        )

    def decide_body(self) -> dict[str, object]:
        req = self.decision_request()
        return {
            "action": req.action.value,
            "purpose": req.purpose,
            "categories": list(req.categories),
            "subject_id": SUBJECT,
        }

    def decide_answer(self) -> DecideOut:
        req = self.decision_request()
        return decide_out(DecisionEngine(self.policy).decide(req), req.actor)

    def read_answer(self) -> ReadOut:
        req = self.decision_request()
        decision = DecisionEngine(self.policy).decide(req)
        return ReadOut(
            subject_id=SUBJECT,
            values=[self.value_out(c, req.purpose, i) for i, c in enumerate(req.categories)],
            decision=decision_out(decision),
        )

    # -- the policy -----------------------------------------------------------------------------

    def notice(self) -> NoticeOut:
        """The English notice, its first section's first item only."""
        notice = build_notice(self.policy, "en")
        short = replace(
            notice,
            sections=tuple(replace(s, items=s.items[:1]) for s in notice.sections[:1]),
            appendices=tuple((t, tuple(lines[:2])) for t, lines in notice.appendices[:1]),
        )
        shown = notice_out(short, self.policy.key)
        return shown.model_copy(update={"markdown": shown.markdown.split("\n\n", 1)[0]})

    # -- every operation ------------------------------------------------------------------------

    def operations(self) -> dict[tuple[str, str], Example]:
        p = self.policy
        subject = {"subject_id": SUBJECT}
        lookup = next((k for k, c in p.categories.items() if "lookup" in c.tags), None)
        collect_purpose = self.consent_purpose()
        collected = self.mutable(collect_purpose) or self.registration.required[:1]
        updated = self.mutable(self.self_service) or collected
        role = next(iter(p.roles))
        grant = self.grant()
        withdraw = {k: grant[k] for k in ("scope", "channel", "method")}
        ids = ValueIdsOut(subject_id=SUBJECT, value_ids=list(VALUE_IDS[:1]))
        setting = next(iter(p.settings), None)
        changes = {setting: not p.settings[setting].default} if setting else {}
        ward = {"subject_id": SUBJECT, "minor_id": MINOR}
        read_params = {
            **subject,
            "purpose": self.registration.key,
            "categories": ",".join(self.registration.required[:2]),
            "case_reference": CASE,
            "authority": "PSB-Beijing-Dongcheng",
        }
        return {
            ("post", "/v1/subjects"): Example(
                {"values": self.registration_values(), "source": "subject"},
                None,
                RegisteredOut(subject_id=SUBJECT),
            ),
            ("get", "/v1/subjects/{subject_id}"): Example(None, read_params, self.read_answer()),
            ("post", "/v1/subjects/{subject_id}/values"): Example(
                {"purpose": collect_purpose, "values": self.values(collected), "source": "subject"},
                subject,
                ids,
            ),
            ("patch", "/v1/subjects/{subject_id}"): Example(
                {"purpose": self.self_service, "values": self.values(updated)}, subject, ids
            ),
            ("put", "/v1/subjects/{subject_id}/identifiers"): Example(
                {"values": self.identifiers(), "evidence": EVIDENCE}, subject, ids
            ),
            ("delete", "/v1/subjects/{subject_id}"): Example(
                None, {**subject, "purpose": self.self_service}
            ),
            ("delete", "/v1/subjects/{subject_id}/values"): Example(
                None,
                {**subject, "purpose": collect_purpose, "categories": ",".join(collected)},
                DeletedOut(deleted=len(collected)),
            ),
            ("post", "/v1/subjects/{subject_id}/consents"): Example(
                grant, subject, self.event_out()
            ),
            ("post", "/v1/subjects/{subject_id}/consents/withdraw"): Example(
                withdraw, subject, self.event_out(ConsentEventKind.WITHDRAW)
            ),
            ("get", "/v1/subjects/{subject_id}/consents"): Example(
                None,
                subject,
                ConsentsOut(
                    events=[self.event_out()],
                    current={str(grant["scope"]): str(grant["consent_type"])},
                ),
            ),
            ("get", "/v1/subjects/{subject_id}/consents/{event_id}/receipt"): Example(
                None,
                {**subject, "event_id": EVENT, "lang": "en"},
                kantara_receipt(self.event(), p, "en"),
            ),
            ("post", "/v1/subjects/{subject_id}/wards"): Example(
                {
                    "values": self.registration_values(minor=True),
                    "relation": "parent",
                    "evidence": "birth-certificate:A0001",
                },
                subject,
                RegisteredOut(subject_id=MINOR),
            ),
            ("post", "/v1/subjects/{subject_id}/wards/{minor_id}/consents"): Example(
                grant, ward, self.event_out()
            ),
            ("post", "/v1/subjects/{subject_id}/wards/{minor_id}/consents/withdraw"): Example(
                withdraw, ward, self.event_out(ConsentEventKind.WITHDRAW)
            ),
            ("get", "/v1/subjects/{subject_id}/settings"): Example(
                None, subject, SettingsOut(subject_id=SUBJECT, settings=self.settings())
            ),
            ("patch", "/v1/subjects/{subject_id}/settings"): Example(
                {"changes": changes, "channel": "app"},
                subject,
                SettingsOut(subject_id=SUBJECT, settings=self.settings() | changes),
            ),
            ("post", "/v1/lookup"): Example(
                {"category": lookup, "value": self.sample(lookup)} if lookup else None,
                None,
                LookupOut(
                    subject_id=SUBJECT,
                    values=[self.value_out(lookup, p.bindings.lookup_purpose)] if lookup else [],
                ),
            ),
            ("post", "/v1/decide"): Example(self.decide_body(), None, self.decide_answer()),
            ("post", "/v1/decide/batch"): Example(
                {"requests": [self.decide_body()]}, None, {"answers": [self.decide_answer()]}
            ),
            ("get", "/v1/policy"): Example(
                None, {"lang": "en", "version": p.version}, self.notice()
            ),
            ("get", "/healthz"): Example(None, None, HealthOut(status="ok", policy_version=p.key)),
            ("get", "/v1/audit/verify"): Example(
                None,
                None,
                AuditVerifyOut(
                    ok=True,
                    records_checked=1024,
                    head_seq=1024,
                    head_hash="3b7e" * 16,
                    checkpoint_seq=1000,
                    unsealed=24,
                    problems=[],
                    problems_omitted=0,
                ),
            ),
            ("get", "/v1/keys"): Example(
                None,
                None,
                [
                    ApiKeyOut(
                        id=KEY,
                        role=role,
                        subject_id=None,
                        label="account service, primary",
                        created_at=AT,
                        expires_at=datetime(2025, 5, 1, tzinfo=UTC),
                        revoked_at=None,
                        live=True,
                    )
                ],
            ),
            ("delete", "/v1/keys/{key_id}"): Example(None, {"key_id": KEY}),
        }


def _json(value: object) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    return value


def operation_examples(policy: Policy, today: date) -> dict[tuple[str, str], Example]:
    """(method, path) → the examples of that operation, from `policy`."""
    return _Examples(policy, today).operations()


def add_examples(document: dict[str, Any], policy: Policy, today: date) -> None:
    """Write each operation's examples into an OpenAPI `document` (in place): the body's, each
    named parameter's, and the first 2xx answer's that has a body."""
    examples = operation_examples(policy, today)
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            found = examples.get((method, path))
            if found is not None:
                _write(operation, found)


def _write(operation: dict[str, Any], example: Example) -> None:
    def set_example(at: dict[str, Any], value: object) -> None:
        at["example"] = _json(value)

    body = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if body is not None and example.body is not None:
        set_example(body, example.body)
    for param in operation.get("parameters", []):
        if example.params and param["name"] in example.params:
            set_example(param, example.params[param["name"]])
    for status, answer in sorted(operation.get("responses", {}).items()):
        content = answer.get("content", {}).get("application/json")
        if status.startswith("2") and content is not None and example.answer is not None:
            set_example(content, example.answer)
            break
