"""Subjects and their values: register, read, collect, update, erase (C1.1, C2.x, R1, R3, R4)."""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Query, Response, status

from piguard.bootstrap import Piguard
from piguard.web.deps import CallerDep, PiguardDep, SubjectDep
from piguard.web.schemas import (
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
from piguard.web.views import decision_out, values_out

router = APIRouter(prefix="/v1/subjects", tags=["subjects"])

CATEGORY_LIST: Final = (
    r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+){0,8}(,[a-z][a-z0-9_]*(\.[a-z0-9_]+){0,8}){0,63}$"
)
Purpose = Annotated[PurposeKey, Query(description="A purpose declared in the policy (U2)")]
Categories = Annotated[
    str | None,
    Query(
        pattern=CATEGORY_LIST,
        max_length=8192,
        description="Comma-separated categories; default: every category of the purpose",
    ),
]


def categories_of(piguard: Piguard, purpose: str, categories: str | None) -> tuple[str, ...]:
    """The requested categories, or by default the ones the purpose declares (none if unknown)."""
    if categories is not None:
        return tuple(dict.fromkeys(categories.split(",")))
    found = piguard.policy.purposes.get(purpose)
    return tuple(found.required + found.optional) if found is not None else ()


@router.post("", status_code=status.HTTP_201_CREATED)
def register(body: RegisterIn, caller: CallerDep, piguard: PiguardDep) -> RegisteredOut:
    """Register a subject from the required registration categories (C1.1)."""
    return RegisteredOut(subject_id=piguard.vault.register(caller.actor, body.values, body.source))


@router.get("/{subject_id}")
def read(
    subject: SubjectDep,
    purpose: Purpose,
    caller: CallerDep,
    piguard: PiguardDep,
    categories: Categories = None,
) -> ReadOut:
    """Values projected by the decision: clear, masked or withheld (R1, S2, DEF2, U3)."""
    result = piguard.vault.read(
        caller.actor, subject, purpose, categories_of(piguard, purpose, categories)
    )
    return ReadOut(
        subject_id=result.subject_id,
        values=values_out(result.values),
        decision=decision_out(result.decision),
    )


@router.post("/{subject_id}/values", status_code=status.HTTP_201_CREATED)
def collect(
    subject: SubjectDep, body: CollectIn, caller: CallerDep, piguard: PiguardDep
) -> ValueIdsOut:
    """Collect values for a purpose, recording their source (C2.5, C4, C7)."""
    ids = piguard.vault.collect(caller.actor, subject, body.purpose, body.values, body.source)
    return ValueIdsOut(subject_id=subject, value_ids=ids)


@router.patch("/{subject_id}")
def update(
    subject: SubjectDep, body: UpdateIn, caller: CallerDep, piguard: PiguardDep
) -> ValueIdsOut:
    """Replace values; immutable registration fields are refused (R1, R6)."""
    ids = piguard.vault.update(caller.actor, subject, body.purpose, body.values)
    return ValueIdsOut(subject_id=subject, value_ids=ids)


@router.put("/{subject_id}/identifiers")
def change_identifiers(
    subject: SubjectDep, body: IdentifierChangeIn, caller: CallerDep, piguard: PiguardDep
) -> ValueIdsOut:
    """Change the phone number or email after verifying them; the only write path for
    identifiers after registration (R1, C2.3)."""
    ids = piguard.vault.change_identifier(caller.actor, subject, body.values, body.evidence)
    return ValueIdsOut(subject_id=subject, value_ids=ids)


@router.delete("/{subject_id}", status_code=status.HTTP_204_NO_CONTENT)
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


@router.delete("/{subject_id}/values")
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
