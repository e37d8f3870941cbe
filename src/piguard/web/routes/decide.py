"""Asking the engine a question: the answer, with its reasons, is audited like any decision.

The actor is always the authenticated caller, and a recipient's facts come from piguard's
registry: the body names a recipient by id only (SH0). A denial is a normal answer here (200,
effect `deny`): the caller asked whether it may, it did not try.
"""

from __future__ import annotations

from dataclasses import replace

from fastapi import APIRouter

from piguard.policy.decision import DecisionRequest, SubjectState
from piguard.web.contract import CALLER, WRITE, errors
from piguard.web.deps import CallerDep, PiguardDep, check_binding
from piguard.web.schemas import DecideIn, DecideOut
from piguard.web.views import decide_out

router = APIRouter(prefix="/v1/decide", tags=["decisions"])


@router.post("", responses=errors(*CALLER, *WRITE, 404, 409))
def decide(body: DecideIn, caller: CallerDep, piguard: PiguardDep) -> DecideOut:
    """Decide one request for the caller, on the subject's current state when one is named."""
    actor = replace(caller.actor, case_reference=body.case_reference, authority=body.authority)
    subject = check_binding(caller, body.subject_id) if body.subject_id is not None else None
    req = DecisionRequest(
        action=body.action,
        actor=actor,
        purpose=body.purpose,
        categories=tuple(dict.fromkeys(body.categories)),
        subject=piguard.vault.snapshot(subject) if subject is not None else SubjectState(),
        recipient=piguard.recipients.view(body.recipient) if body.recipient else None,
        region=body.region,
        exemption=body.exemption,
        at=piguard.clock.now(),
    )
    decision = piguard.enforcer.answer(req, subject or "", detail="decide")
    return decide_out(decision, actor, piguard.enforcer.public_reasons(decision))
