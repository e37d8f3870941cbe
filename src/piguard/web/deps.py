"""Typed dependencies: the wired `Piguard`, the authenticated caller, and a subject id the caller
may address.

The subject binding is identity, not policy: a subject's own key addresses only that subject, and
any other id answers 404 exactly like a subject that does not exist. Whether the caller may do
what it asks is always the decision engine's question, asked by the services.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Final, NamedTuple, TypeVar

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from piguard.auth.service import Caller
from piguard.bootstrap import Piguard
from piguard.committer import Stale
from piguard.kernel.errors import NotFound, Unauthenticated
from piguard.kernel.text import LocalText
from piguard.vault.repository import no_such_subject

T = TypeVar("T")

SUBJECT_ID_PATTERN: Final = r"^[A-Za-z0-9_]{1,64}$"
_MAX_TOKEN = 512
SubjectId = Annotated[str, Path(pattern=SUBJECT_ID_PATTERN, description="Subject pseudonym")]

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="`Authorization: Bearer <token>`: an API key issued for a policy role.",
)


def piguard_of(request: Request) -> Piguard:
    piguard: Piguard = request.app.state.piguard
    return piguard


async def get_piguard(request: Request) -> Piguard:  # async: no thread for an attribute
    return piguard_of(request)


PiguardDep = Annotated[Piguard, Depends(get_piguard)]


def bearer_token(request: Request) -> str:
    """The token of `Authorization: Bearer <token>`, unchecked; 401 when missing, of another
    scheme, or longer than any token."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token or len(token) > _MAX_TOKEN:
        raise Unauthenticated(
            LocalText("缺少或无效的 API 密钥", "missing or invalid API key"), field="Authorization"
        )
    return token


async def get_token(
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """`bearer_token`; the `HTTPBearer` dependency only declares the scheme in the schema."""
    return bearer_token(request)


TokenDep = Annotated[str, Depends(get_token)]


class ApiCall(NamedTuple):
    piguard: Piguard
    token: str
    caller: Caller
    fresh: bool  # the key was read from the database for this request


async def api_call(request: Request) -> ApiCall:
    """piguard and the caller in one dependency, for the hot routes (each dependency costs a
    request some microseconds); they declare the scheme with `SECURED`. The caller comes from
    the keys this process knows (`ApiKeys.cached`), else from the database in a worker thread:
    either way a bad key is a 401 before anything else is looked at."""
    piguard = piguard_of(request)
    token = bearer_token(request)
    caller = piguard.api_keys.cached(token)
    fresh = caller is None
    if caller is None:
        caller = await run_in_threadpool(piguard.api_keys.authenticate, token)
    request.state.caller = caller
    return ApiCall(piguard, token, caller, fresh)


ApiCallDep = Annotated[ApiCall, Depends(api_call)]
SECURED: Final[dict[str, Any]] = {"security": [{_bearer.scheme_name: []}]}
"""`openapi_extra` of a route that takes `ApiCallDep`: the schema names its scheme."""


def get_caller(request: Request, piguard: PiguardDep, token: TokenDep) -> Caller:
    """The caller behind `Authorization: Bearer <token>`, its key read now; 401 when missing or
    invalid. Kept on the request so that a refusal after this point is audited under the
    caller's name."""
    caller = piguard.api_keys.authenticate(token)
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


async def bound_subject(
    caller: CallerDep,
    subject_id: SubjectId,
) -> str:
    return check_binding(caller, subject_id)


SubjectDep = Annotated[str, Depends(bound_subject)]


async def cached_first(
    request: Request,
    call: ApiCall,
    fast: Callable[[Caller], Awaitable[T]],
    slow: Callable[[Caller], T],
) -> T:
    """`fast` on the event loop when the caller's key came from the cache: it answers from
    cached facts and commits its record only if they still hold (`committer`), else raises
    Stale. Then, or when it refuses with 404 (answered only once the key is read afresh: a key
    revoked elsewhere gets its 401), or when the key was just read, `slow` in a worker thread,
    on the key and facts read from the database now."""
    if not call.fresh:
        try:
            return await fast(call.caller)
        except (Stale, NotFound):
            pass

    def afresh() -> T:
        caller = call.caller if call.fresh else get_caller(request, call.piguard, call.token)
        return slow(caller)

    return await run_in_threadpool(afresh)
