"""Asking the engine a question: the answer, with its reasons, is audited like any decision.

The actor is always the authenticated caller, and a recipient's facts come from piguard's
registry: the body names a recipient by id only (SH0). A denial is a normal answer here (200,
effect `deny`): the caller asked whether it may, it did not try.

A batch is the same questions in one round trip: every subject checked (binding, existence)
before anything is decided, so one that may not be asked about refuses the whole batch with the
single route's error and nothing is audited; then all are decided on one instant and the answer
waits for the commit of the last record.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from fastapi import APIRouter

from piguard.auth.service import Caller
from piguard.bootstrap import Piguard
from piguard.policy.decision import DecisionRequest, SubjectState
from piguard.web.contract import CALLER, WRITE, errors
from piguard.web.deps import CallerDep, PiguardDep, check_binding
from piguard.web.schemas import DecideBatchIn, DecideBatchOut, DecideIn, DecideOut
from piguard.web.views import decide_out

router = APIRouter(prefix="/v1/decide", tags=["decisions"])

_DETAIL = "decide"
_NO_SUBJECT = SubjectState()


@router.post("", responses=errors(*CALLER, *WRITE, 404, 409))
def decide(body: DecideIn, caller: CallerDep, piguard: PiguardDep) -> DecideOut:
    """Decide one request for the caller, on the subject's current state when one is named."""
    subject = check_binding(caller, body.subject_id) if body.subject_id is not None else None
    state = piguard.vault.snapshot(subject) if subject is not None else _NO_SUBJECT
    req = _request(body, caller, piguard, state, piguard.clock.now())
    decision = piguard.enforcer.answer(req, subject or "", detail=_DETAIL)
    return decide_out(decision, req.actor, piguard.enforcer.public_reasons(decision))


@router.post("/batch", responses=errors(*CALLER, *WRITE, 404, 409))
def decide_batch(body: DecideBatchIn, caller: CallerDep, piguard: PiguardDep) -> DecideBatchOut:
    """Decide 1..1000 requests for the caller, in order, each audited as `POST /v1/decide`
    audits one; the answer leaves once every record is committed. The body may be up to
    `PIGUARD_MAX_BATCH_BODY_BYTES` (default 2 MiB)."""
    named = [check_binding(caller, r.subject_id) for r in body.requests if r.subject_id]
    states = piguard.vault.snapshots(named)
    at = piguard.clock.now()
    asked = [
        (_request(r, caller, piguard, states.get(r.subject_id or "", _NO_SUBJECT), at), r)
        for r in body.requests
    ]
    decisions = piguard.enforcer.answer_many(
        [(req, r.subject_id or "") for req, r in asked], detail=_DETAIL
    )
    reasons = piguard.enforcer.public_reasons
    return DecideBatchOut(
        answers=[
            decide_out(decision, req.actor, reasons(decision))
            for (req, _), decision in zip(asked, decisions, strict=True)
        ]
    )


def _request(
    body: DecideIn, caller: Caller, piguard: Piguard, subject: SubjectState, at: datetime
) -> DecisionRequest:
    return DecisionRequest(
        action=body.action,
        actor=replace(caller.actor, case_reference=body.case_reference, authority=body.authority),
        purpose=body.purpose,
        categories=tuple(dict.fromkeys(body.categories)),
        subject=subject,
        recipient=piguard.recipients.view(body.recipient) if body.recipient else None,
        region=body.region,
        exemption=body.exemption,
        at=at,
    )
