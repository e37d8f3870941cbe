"""Subjects and their values: register, read, collect, update, erase (C1.1, C2.x, R1, R3, R4)."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from piguard.auth.service import Caller
from piguard.bootstrap import Piguard
from piguard.committer import Basis
from piguard.policy.decision import Actor
from piguard.vault.service import PendingRead, ReadResult
from piguard.web.contract import CALLER, WRITE, errors
from piguard.web.deps import (
    SECURED,
    ApiCallDep,
    CallerDep,
    PiguardDep,
    SubjectDep,
    SubjectId,
    cached_first,
    check_binding,
)
from piguard.web.lean import lean
from piguard.web.schemas import (
    CategoryList,
    CollectIn,
    DeletedOut,
    IdentifierChangeIn,
    PurposeKey,
    ReadOut,
    RegisteredOut,
    RegisterIn,
    UpdateIn,
    ValueIdsOut,
)
from piguard.web.views import read_json

router = APIRouter(prefix="/v1/subjects", tags=["subjects"])

Purpose = Annotated[PurposeKey, Query(description="A purpose declared in the policy (U2)")]
Categories = Annotated[
    CategoryList | None,
    Query(
        max_length=4096,  # 64 keys; percent-encoded, within the server's line limit
        description="Comma-separated categories; default: every category of the purpose",
    ),
]


CaseReference = Annotated[
    str | None,
    Query(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,119}$",
        description="The case, order or deal reference a grant requires (R4, SH4, SH5, T1)",
    ),
]
Authority = Annotated[
    str | None,
    Query(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,119}$",
        description="The authority requesting an exemption (C8)",
    ),
]


def categories_of(piguard: Piguard, purpose: str, categories: str | None) -> tuple[str, ...]:
    """The requested categories, or by default the ones the purpose declares (none if unknown)."""
    if categories is not None:
        return tuple(dict.fromkeys(categories.split(",")))
    found = piguard.policy.purposes.get(purpose)
    return tuple(found.required + found.optional) if found is not None else ()


@router.post("", status_code=status.HTTP_201_CREATED, responses=errors(*CALLER, *WRITE, 409))
def register(body: RegisterIn, caller: CallerDep, piguard: PiguardDep) -> RegisteredOut:
    """Register a subject from the required registration categories (C1.1)."""
    return RegisteredOut(subject_id=piguard.vault.register(caller.actor, body.values, body.source))


@router.get(
    "/{subject_id}",
    response_model=ReadOut,
    responses=errors(*CALLER, 404, 409, 422),
    openapi_extra=SECURED,
)
@lean
async def read(
    subject_id: SubjectId,
    purpose: Purpose,
    request: Request,
    call: ApiCallDep,
    categories: Categories = None,
    case_reference: CaseReference = None,
    authority: Authority = None,
) -> Response:
    """Values projected by the decision: clear, masked or withheld (R1, S2, DEF2, U3). Reads
    that the policy grants only with a case (R4 held data, SH4, SH5, T1) name it here; it is
    recorded, and decides nothing by itself."""
    piguard = call.piguard
    asked = categories_of(piguard, purpose, categories)

    def actor(caller: Caller) -> Actor:
        check_binding(caller, subject_id)
        return replace(caller.actor, case_reference=case_reference, authority=authority)

    async def cached(caller: Caller) -> Response:
        # The database is read off the loop, with the reads of the same turn (`piguard.reads`);
        # the record commits with the caller's key and the subject's state still as they were
        # (`committer`), before anything leaves.
        pending: PendingRead = await piguard.reads.submit(
            (actor(caller), subject_id, purpose, asked)
        )
        basis = Basis(caller.actor.principal, ((subject_id, pending.version),))
        await piguard.answers.commit(basis, [pending.draft])
        if not pending.decision.allowed:
            raise piguard.enforcer.refusal(pending.decision)
        return _read_out(pending.result)

    def fresh(caller: Caller) -> Response:
        return _read_out(piguard.vault.read(actor(caller), subject_id, purpose, asked))

    return await cached_first(request, call, cached, fresh)


def _read_out(result: ReadResult) -> Response:
    """The answer as JSON, built once: FastAPI would validate the model a second time."""
    body = read_json(result.subject_id, result.values, result.decision)
    return Response(body, media_type="application/json")


@router.post(
    "/{subject_id}/values",
    status_code=status.HTTP_201_CREATED,
    responses=errors(*CALLER, *WRITE, 404, 409),
)
def collect(
    subject: SubjectDep, body: CollectIn, caller: CallerDep, piguard: PiguardDep
) -> ValueIdsOut:
    """Collect values for a purpose, recording their source (C2.5, C4, C7)."""
    ids = piguard.vault.collect(caller.actor, subject, body.purpose, body.values, body.source)
    return ValueIdsOut(subject_id=subject, value_ids=ids)


@router.patch("/{subject_id}", responses=errors(*CALLER, *WRITE, 404, 409))
def update(
    subject: SubjectDep, body: UpdateIn, caller: CallerDep, piguard: PiguardDep
) -> ValueIdsOut:
    """Replace values; immutable registration fields are refused (R1, R6)."""
    ids = piguard.vault.update(caller.actor, subject, body.purpose, body.values)
    return ValueIdsOut(subject_id=subject, value_ids=ids)


@router.put("/{subject_id}/identifiers", responses=errors(*CALLER, *WRITE, 404, 409))
def change_identifiers(
    subject: SubjectDep, body: IdentifierChangeIn, caller: CallerDep, piguard: PiguardDep
) -> ValueIdsOut:
    """Change the phone number or email after verifying them; the only write path for
    identifiers after registration (R1, C2.3)."""
    ids = piguard.vault.change_identifier(caller.actor, subject, body.values, body.evidence)
    return ValueIdsOut(subject_id=subject, value_ids=ids)


@router.delete(
    "/{subject_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(*CALLER, 404, 409, 422),
)
def erase(
    subject: SubjectDep,
    caller: CallerDep,
    piguard: PiguardDep,
    purpose: Annotated[PurposeKey | None, Query()] = None,
) -> Response:
    """Erase the whole subject (R4 cancellation, R5): its own operation, granted only where the
    policy grants `erase_subject`; the data key is destroyed, then its values. The purpose
    defaults to the policy's self-service purpose."""
    piguard.vault.erase_subject(caller.actor, subject, purpose)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete("/{subject_id}/values", responses=errors(*CALLER, 404, 409, 422))
def erase_values(
    subject: SubjectDep,
    purpose: Purpose,
    caller: CallerDep,
    piguard: PiguardDep,
    categories: Categories = None,
) -> DeletedOut:
    """Erase the copies that the purpose holds of some categories (by default all it declares);
    copies kept for other purposes stay (R3, C7)."""
    count = piguard.vault.erase_categories(
        caller.actor, subject, purpose, categories_of(piguard, purpose, categories)
    )
    return DeletedOut(deleted=count)
