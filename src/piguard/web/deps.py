"""Typed dependencies: the wired `Piguard`, the authenticated caller, and a subject id the caller
may address.

The subject binding is identity, not policy: a subject's own key addresses only that subject, and
any other id answers 404 exactly like a subject that does not exist. Whether the caller may do
what it asks is always the decision engine's question, asked by the services.
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from piguard.auth.service import Caller
from piguard.bootstrap import Piguard
from piguard.kernel.errors import NotFound, Unauthenticated
from piguard.kernel.text import LocalText
from piguard.vault.repository import no_such_subject

SUBJECT_ID_PATTERN: Final = r"^[A-Za-z0-9_]{1,64}$"
_MAX_TOKEN = 512

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="`Authorization: Bearer <token>`: an API key issued for a policy role.",
)


def get_piguard(request: Request) -> Piguard:
    piguard: Piguard = request.app.state.piguard
    return piguard


PiguardDep = Annotated[Piguard, Depends(get_piguard)]


def get_caller(
    request: Request,
    piguard: PiguardDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """The caller behind `Authorization: Bearer <token>`; 401 when missing or invalid. Kept on
    the request so that a refusal after this point is audited under the caller's name."""
    if credentials is None or len(credentials.credentials) > _MAX_TOKEN:
        raise Unauthenticated(
            LocalText("缺少或无效的 API 密钥", "missing or invalid API key"), field="Authorization"
        )
    caller = piguard.api_keys.authenticate(credentials.credentials)
    request.state.caller = caller
    return caller


CallerDep = Annotated[Caller, Depends(get_caller)]


class NotBound(NotFound):
    """A subject key addressing another subject. The caller gets exactly the answer for a subject
    that does not exist; the audit record (`web.refusals`) names the subject it tried."""

    def __init__(self, subject: str) -> None:
        found = no_such_subject()
        super().__init__(found.message, field=found.field)
        self.subject = subject


def check_binding(caller: Caller, subject_id: str) -> str:
    """The subject id, if the caller may address it at all (a subject key: only its own)."""
    if caller.subject_id is not None and caller.subject_id != subject_id:
        raise NotBound(subject_id)
    return subject_id


def bound_subject(
    caller: CallerDep,
    subject_id: Annotated[str, Path(pattern=SUBJECT_ID_PATTERN, description="Subject pseudonym")],
) -> str:
    return check_binding(caller, subject_id)


SubjectDep = Annotated[str, Depends(bound_subject)]
