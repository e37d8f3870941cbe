"""The consent ledger: grant, withdraw, history, Kantara receipts (C5, C7, SH1, R2, PIPL15)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status

from piguard.consent.service import Provenance
from piguard.web.contract import CALLER, WRITE, errors
from piguard.web.deps import CallerDep, PiguardDep, SubjectDep
from piguard.web.schemas import ConsentEventOut, ConsentsOut, GrantIn, Lang, WithdrawIn
from piguard.web.views import event_out

router = APIRouter(prefix="/v1/subjects/{subject_id}/consents", tags=["consents"])


@router.post("", status_code=status.HTTP_201_CREATED, responses=errors(*CALLER, *WRITE, 404))
def grant(
    subject: SubjectDep, body: GrantIn, caller: CallerDep, piguard: PiguardDep
) -> ConsentEventOut:
    """Record a consent, tied to the policy version and the notice shown."""
    event = piguard.consents.grant(
        caller.actor,
        subject,
        body.scope,
        body.consent_type,
        Provenance(body.channel, body.method, body.evidence),
    )
    return event_out(event)


@router.post(
    "/withdraw", status_code=status.HTTP_201_CREATED, responses=errors(*CALLER, *WRITE, 404)
)
def withdraw(
    subject: SubjectDep, body: WithdrawIn, caller: CallerDep, piguard: PiguardDep
) -> ConsentEventOut:
    """Withdraw a consent: every later decision sees it at once (R2, PIPL15)."""
    event = piguard.consents.withdraw(
        caller.actor, subject, body.scope, Provenance(body.channel, body.method, body.evidence)
    )
    return event_out(event)


@router.get("", responses=errors(*CALLER, 404, 422))
def history(subject: SubjectDep, caller: CallerDep, piguard: PiguardDep) -> ConsentsOut:
    """Every consent event in order, and the consents in force now."""
    events, current = piguard.consents.history(caller.actor, subject)
    return ConsentsOut(
        events=[event_out(e) for e in events],
        current={scope: kind.value for scope, kind in current.items()},
    )


@router.get("/{event_id}/receipt", responses=errors(*CALLER, 404, 422))
def receipt(
    subject: SubjectDep,
    event_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9_]{1,64}$")],
    caller: CallerDep,
    piguard: PiguardDep,
    lang: Annotated[Lang, Query()] = "zh",
) -> dict[str, Any]:
    """The event as a Kantara Initiative Consent Receipt v1.1."""
    return piguard.consents.receipt(caller.actor, subject, event_id, lang)
