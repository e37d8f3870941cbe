"""The enforcement point: every decision is taken by the engine and recorded in the audit log.

Services never decide for themselves; they call `require`, which returns the allowed decision or
raises `Denied` with the clause IDs, after recording the refusal too.
"""

from __future__ import annotations

import hashlib
import re

from piguard.audit.ports import AuditDraft, AuditSink
from piguard.db.uow import UnitOfWork
from piguard.kernel.errors import Denied
from piguard.kernel.text import LocalText
from piguard.policy.decide import DecisionEngine
from piguard.policy.decision import Decision, DecisionRequest

# Each part of an audit record's code stays short enough for all of them to fit its 200 chars.
_CODE_CHARS = 64
_PLAIN_REFERENCE = re.compile(r"[A-Za-z0-9_.-][A-Za-z0-9_.:-]{0,31}")

# Reason codes whose last part names the offending category: the error's `field`.
_FIELD_CODES = (
    "category_not_declared",
    "unknown_category",
    "outside_grant",
    "immutable",
    "not_in_rule",
)


class Enforcer:
    """Decide, record, and refuse or allow."""

    def __init__(self, engine: DecisionEngine, audit: AuditSink) -> None:
        self.engine = engine
        self.audit = audit

    def require(
        self, req: DecisionRequest, subject: str, uow: UnitOfWork | None = None, detail: str = ""
    ) -> Decision:
        """The allowed decision, audited in `uow` (atomic with a write) or queued."""
        decision = self.engine.decide(req)
        if not decision.allowed:
            self.audit.enqueue(_draft(req, decision, subject, detail))
            raise denied(decision)
        if uow is None:
            self.audit.enqueue(_draft(req, decision, subject, detail))
        else:
            self.audit.append(uow, [_draft(req, decision, subject, detail)])
        return decision

    def answer(self, req: DecisionRequest, subject: str, detail: str = "") -> Decision:
        """A decision for a caller that enforces it itself (`POST /v1/decide`): audited, and a
        denial is an answer, not an error."""
        decision = self.engine.decide(req)
        self.audit.enqueue(_draft(req, decision, subject, detail))
        return decision


def _draft(req: DecisionRequest, decision: Decision, subject: str, detail: str) -> AuditDraft:
    return AuditDraft(
        actor=req.actor.label,
        action=req.action.value,
        purpose=req.purpose,
        subject=subject,
        categories=req.categories,
        effect=decision.effect.value,
        clauses=decision.clauses,
        policy_version=decision.policy_version,
        detail=_detail(req, decision, detail),
    )


def _detail(req: DecisionRequest, decision: Decision, given: str) -> str:
    """The record's code: the caller's, else the first reason; then what a grant or exemption
    required, recorded with it (C8, R4, SH4): the exemption used, the case reference and the
    requesting authority. A reference outside the code alphabet is recorded by its digest."""
    parts = [(given or decision.reasons[0].code)[:_CODE_CHARS]]
    if req.exemption is not None and decision.allowed:
        parts.append(f"exemption:{req.exemption}"[:40])
    refs = (("case", req.actor.case_reference), ("authority", req.actor.authority))
    parts.extend(_reference(kind, value) for kind, value in refs if value)
    return ":".join(parts)


def _reference(kind: str, value: str) -> str:
    if _PLAIN_REFERENCE.fullmatch(value):
        return f"{kind}:{value}"
    return f"{kind}-sha256:{hashlib.sha256(value.encode()).hexdigest()[:16]}"


def denied(decision: Decision) -> Denied:
    """A bilingual refusal naming the clauses, the reason codes and, when known, the field."""
    codes = "; ".join(f"{r.clause} {r.code}" for r in decision.reasons)
    field = None
    for reason in decision.reasons:
        kind, _, rest = reason.code.partition(":")
        if kind in _FIELD_CODES:
            field = rest.rpartition(":")[2]
            break
    return Denied(
        LocalText(f"策略拒绝：{codes}", f"refused by the policy: {codes}"),
        field=field,
        reasons=tuple(f"{r.clause}:{r.code}" for r in decision.reasons),
    )
