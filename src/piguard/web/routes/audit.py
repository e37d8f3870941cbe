"""Verifying the audit chain (S2): only for callers the engine allows to oversee access records."""

from __future__ import annotations

from fastapi import APIRouter

from piguard.policy.decision import DecisionRequest
from piguard.policy.model import Action
from piguard.web.contract import CALLER, errors
from piguard.web.deps import CallerDep, PiguardDep
from piguard.web.schemas import AuditProblemOut, AuditVerifyOut

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get("/verify", responses=errors(*CALLER))
def verify(caller: CallerDep, piguard: PiguardDep) -> AuditVerifyOut:
    """Check every record and signed checkpoint; `ok` false names the first problem of each kind."""
    b = piguard.policy.bindings
    piguard.enforcer.require(
        DecisionRequest(Action.READ, caller.actor, b.audit_purpose, (b.audit_category,)),
        subject="",
        detail="audit_verify",
    )
    report = piguard.audit.verify()
    return AuditVerifyOut(
        ok=report.ok,
        records_checked=report.records_checked,
        head_seq=report.head_seq,
        head_hash=report.head_hash,
        checkpoint_seq=report.checkpoint_seq,
        unsealed=report.unsealed,
        problems=[
            AuditProblemOut(
                kind=p.kind, seq=p.seq, summary={"zh": p.describe("zh"), "en": p.describe("en")}
            )
            for p in report.problems
        ],
        problems_omitted=report.problems_omitted,
    )
