"""A `DecisionRequest` as a Cedar request: principal, action, resource and a context record.

The context carries the request's own data unchanged, except where Cedar cannot look a key up at
run time: consents become sets of purposes per scope kind and strength level (`s1` = any consent,
`s2` = separate; `guardian` = the scopes a minor's guardian consented to as well, M1), and the
subject's consents and authorisation naming the request's recipient are joined into
`context.recipient`, as a policy enforcement point would fetch them. The subject itself is
`context.subject`, a reference to its `DataSubject` entity in the store.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from cedar_translate import KIND_TYPE, LEVELS
from piguard.policy import scopes
from piguard.policy.decision import DecisionRequest, RecipientView, SubjectState
from piguard.policy.model import CONSENT_STRENGTH, ActorKind, ConsentType

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# scope kind → its prefix, spelled by the same module the ledger and the engine use
_SUBJECT_SCOPES = {
    "purpose": scopes.purpose_scope(""),
    "disclose": scopes.disclose_scope(""),
    "cross_border": scopes.cross_border_scope(""),
}


def micros(at: datetime) -> int:
    """Epoch microseconds: Cedar compares Longs exactly (naive times are taken as UTC)."""
    aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return (aware - _EPOCH) // _MICROSECOND


class RequestTranslator:
    """Builds Cedar requests. Each subject snapshot becomes one `DataSubject` entity, parsed once
    into the entity store, as the engine is handed ready-built `SubjectState`s."""

    def __init__(self) -> None:
        self._subjects: dict[int, tuple[SubjectState, dict[str, Any]]] = {}

    def subject_entities(self) -> list[dict[str, Any]]:
        """The entities of every subject seen so far."""
        return [
            {"uid": ref["__entity"], "attrs": _subject_record(st), "parents": []}
            for st, ref in self._subjects.values()
        ]

    def request(self, req: DecisionRequest) -> dict[str, Any]:
        """The request as `cedarpy.is_authorized` takes it, the context as a dict."""
        return {
            "principal": {"type": KIND_TYPE[req.actor.kind], "id": req.actor.role},
            "action": {"type": "Action", "id": req.action.value},
            "resource": {"type": "Purpose", "id": req.purpose},
            "context": self.context(req),
        }

    def prepared(self, req: DecisionRequest) -> dict[str, Any]:
        """The same with the context already JSON, so timing measures Cedar, not `json.dumps`."""
        found = self.request(req)
        found["context"] = json.dumps(found["context"])
        return found

    def context(self, req: DecisionRequest) -> dict[str, Any]:
        """The context record; optional request fields are present only when set."""
        ctx: dict[str, Any] = {
            "purpose": req.purpose,  # the resource's id, which Cedar cannot read as a string
            "categories": list(dict.fromkeys(req.categories)),
            "source_purposes": sorted(req.source_purposes),
            "subject": self._subject(req.subject),
            "registration": req.registration,  # set by the vault's registration only (R1)
        }
        optional = {
            "exemption": req.exemption,
            "case_reference": req.actor.case_reference,
            "authority": req.actor.authority,
            "evidence": req.evidence,
            "region": req.region,
            "at": None if req.at is None else micros(req.at),
        }
        ctx.update((k, v) for k, v in optional.items() if v is not None)
        if req.recipient is not None:
            ctx["recipient"] = _recipient(req.recipient, req.subject)
        return ctx

    def _subject(self, st: SubjectState) -> dict[str, Any]:
        cached = self._subjects.get(id(st))
        if cached is not None and cached[0] is st:
            return cached[1]
        ref = {"__entity": {"type": "DataSubject", "id": f"subject-{len(self._subjects)}"}}
        self._subjects[id(st)] = (st, ref)
        return ref


def _subject_record(st: SubjectState) -> dict[str, Any]:
    """A `SubjectState` as entity attributes (`age` only when known)."""
    record: dict[str, Any] = {
        "consents": {k: _levels(st, p) for k, p in _SUBJECT_SCOPES.items()},
        "settings": dict(st.settings),
        "guardian_service": scopes.SERVICE in st.guardian_consents,
        "guardian_objection": st.guardian_objection,
        "legal_hold": st.legal_hold,
        "closed": st.closed,
        "pending_reconsent": sorted(st.pending_reconsent),
        "restricted": sorted(st.restricted),
    }
    if st.age is not None:
        record["age"] = st.age
    return record


def _purposes(consents: Mapping[str, ConsentType], prefix: str) -> dict[str, int]:
    """Purpose → strength for the scopes that start with `prefix`."""
    return {
        scope[len(prefix) :]: CONSENT_STRENGTH[kind]
        for scope, kind in consents.items()
        if scope.startswith(prefix)
    }


def _levels(st: SubjectState, prefix: str) -> dict[str, list[str]]:
    """{"s1": purposes with any consent, "s2": purposes with at least separate consent, …,
    "guardian": purposes whose scope a guardian consented to} for the scopes of `prefix`."""
    strengths = _purposes(st.consents, prefix)
    levels = {f"s{lv}": sorted(p for p, s in strengths.items() if s >= lv) for lv in LEVELS}
    levels["guardian"] = sorted(
        scope[len(prefix) :] for scope in st.guardian_consents if scope.startswith(prefix)
    )
    return levels


def _recipient(rec: RecipientView, st: SubjectState) -> dict[str, Any]:
    """The registry's view of the recipient, joined with the subject's grants that name it."""
    transfer = st.consents.get(scopes.transfer_scope(rec.id))
    strength = 0 if transfer is None else CONSENT_STRENGTH[transfer]
    record: dict[str, Any] = {
        "uid": {"__entity": {"type": KIND_TYPE[ActorKind.RECIPIENT], "id": rec.id}},
        "id": rec.id,
        "type": rec.type,
        "region": rec.region,
        "registered": rec.registered,
        "assessed": rec.assessed,
        "agreement": rec.agreement,
        "active": rec.active,
        "risk_flag": rec.risk_flag,
        "consents": {
            "share": _levels(st, scopes.recipient_scope(rec.id, "")),
            "share_type": _levels(st, scopes.recipient_type_scope(rec.type, "")),
            "transfer": {
                **{f"s{lv}": strength >= lv for lv in LEVELS},
                "guardian": scopes.transfer_scope(rec.id) in st.guardian_consents,
            },
        },
    }
    if rec.bound_policy is not None:
        record["bound_policy"] = rec.bound_policy
    auth = st.authorisations.get(rec.id)
    if auth is not None:
        record["authorisation"] = {"categories": sorted(auth.categories), "revoked": auth.revoked}
        if auth.expires_at is not None:
            record["authorisation"]["expires_at"] = micros(auth.expires_at)
    return record
