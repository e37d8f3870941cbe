"""A guardian acting for a minor (M1): register them, consent or object for them, scope by scope.

The path names the guardian (the caller's own subject) and the minor; the link between them is
piguard's own record, checked by the service, never the caller's word.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from piguard.consent.service import Provenance
from piguard.web.contract import CALLER, WRITE, errors
from piguard.web.deps import SUBJECT_ID_PATTERN, CallerDep, PiguardDep, SubjectDep
from piguard.web.schemas import ConsentEventOut, GrantIn, RegisteredOut, WardIn, WithdrawIn
from piguard.web.views import event_out

router = APIRouter(prefix="/v1/subjects/{subject_id}/wards", tags=["guardians"])
MinorId = Annotated[str, Path(pattern=SUBJECT_ID_PATTERN, description="The minor's pseudonym")]


@router.post("", status_code=status.HTTP_201_CREATED, responses=errors(*CALLER, *WRITE, 404, 409))
def register_ward(
    subject: SubjectDep, body: WardIn, caller: CallerDep, piguard: PiguardDep
) -> RegisteredOut:
    """Register a minor linked to the calling guardian, with their consent to the service."""
    minor = piguard.guardians.register_ward(
        caller.actor, subject, body.values, body.relation, body.evidence
    )
    return RegisteredOut(subject_id=minor)


@router.post(
    "/{minor_id}/consents",
    status_code=status.HTTP_201_CREATED,
    responses=errors(*CALLER, *WRITE, 404),
)
def grant(
    subject: SubjectDep, minor_id: MinorId, body: GrantIn, caller: CallerDep, piguard: PiguardDep
) -> ConsentEventOut:
    """A guardian's consent for one scope of the minor (M1)."""
    how = Provenance(body.channel, body.method, body.evidence)
    event = piguard.guardians.grant(
        caller.actor, subject, minor_id, body.scope, body.consent_type, how
    )
    return event_out(event)


@router.post(
    "/{minor_id}/consents/withdraw",
    status_code=status.HTTP_201_CREATED,
    responses=errors(*CALLER, *WRITE, 404),
)
def withdraw(
    subject: SubjectDep,
    minor_id: MinorId,
    body: WithdrawIn,
    caller: CallerDep,
    piguard: PiguardDep,
) -> ConsentEventOut:
    """A guardian's withdrawal; of `service:all`, an objection that stops the minor's use (M1)."""
    how = Provenance(body.channel, body.method, body.evidence)
    event = piguard.guardians.withdraw(caller.actor, subject, minor_id, body.scope, how)
    return event_out(event)
