"""Finding an account by phone or email, through the blind index only (C2.3)."""

from __future__ import annotations

from fastapi import APIRouter

from piguard.vault.repository import no_such_subject
from piguard.web.contract import CALLER, WRITE, errors
from piguard.web.deps import CallerDep, PiguardDep
from piguard.web.schemas import LookupIn, LookupOut
from piguard.web.views import values_out

router = APIRouter(prefix="/v1/lookup", tags=["subjects"])


@router.post("", responses=errors(*CALLER, *WRITE, 404, 409))
def lookup(body: LookupIn, caller: CallerDep, piguard: PiguardDep) -> LookupOut:
    """The account and its masked lookup value; 404 alike for "no such account" and "this
    subject switched discovery off" (C2.3)."""
    found = piguard.vault.lookup(caller.actor, body.category, body.value)
    if found is None:
        raise no_such_subject()
    return LookupOut(subject_id=found.subject_id, values=values_out(found.values))
