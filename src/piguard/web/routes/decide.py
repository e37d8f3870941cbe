"""Asking the engine a question: the answer, with its reasons, is audited like any decision.

The actor is always the authenticated caller, and a recipient's facts come from piguard's
registry: the body names a recipient by id only (SH0). A denial is a normal answer here (200,
effect `deny`): the caller asked whether it may, it did not try.

A batch is the same questions in one round trip: every subject checked (binding, existence)
before anything is decided, so one that may not be asked about refuses the whole batch with the
single route's error and nothing is audited; then all are decided on one instant and the answer
waits for the commit of the last record.

Both answer on the event loop when this process knows the caller's key and every subject's
snapshot, and commit the records only if those are still current (`committer`); otherwise, or
when they changed meanwhile, in a worker thread, on the key and state read afresh.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime

from fastapi import APIRouter, Request, Response

from piguard.auth.service import Caller
from piguard.bootstrap import Piguard
from piguard.committer import Basis, Stale, SubjectVersion
from piguard.policy.decision import Actor, Decision, DecisionRequest, SubjectState
from piguard.web.contract import CALLER, WRITE, errors
from piguard.web.deps import SECURED, ApiCallDep, cached_first, check_binding
from piguard.web.lean import lean
from piguard.web.schemas import DecideBatchIn, DecideBatchOut, DecideIn, DecideOut
from piguard.web.views import decide_json

router = APIRouter(prefix="/v1/decide", tags=["decisions"])

_DETAIL = "decide"
_NO_SUBJECT = SubjectState()


@router.post(
    "",
    response_model=DecideOut,
    responses=errors(*CALLER, *WRITE, 404, 409),
    openapi_extra=SECURED,
)
@lean
async def decide(body: DecideIn, request: Request, call: ApiCallDep) -> Response:
    """Decide one request for the caller, on the subject's current state when one is named."""
    piguard = call.piguard

    async def cached(caller: Caller) -> Response:
        subject = body.subject_id
        basis = _cached_basis(piguard, caller, [subject])
        state = basis[subject][0] if subject is not None else _NO_SUBJECT
        req = _request(body, caller, piguard, state, piguard.clock.now())
        decision, draft = piguard.enforcer.drafted(req, subject or "", detail=_DETAIL)
        await piguard.answers.commit(_basis(caller, basis), [draft])
        return _out(piguard, req, decision)

    def fresh(caller: Caller) -> Response:
        subject = check_binding(caller, body.subject_id) if body.subject_id is not None else None
        state = piguard.vault.snapshot(subject) if subject is not None else _NO_SUBJECT
        req = _request(body, caller, piguard, state, piguard.clock.now())
        return _out(piguard, req, piguard.enforcer.answer(req, subject or "", detail=_DETAIL))

    return await cached_first(request, call, cached, fresh)


@router.post(
    "/batch",
    response_model=DecideBatchOut,
    responses=errors(*CALLER, *WRITE, 404, 409),
    openapi_extra=SECURED,
)
@lean
async def decide_batch(body: DecideBatchIn, request: Request, call: ApiCallDep) -> Response:
    """Decide 1..1000 requests for the caller, in order, each audited as `POST /v1/decide`
    audits one; the answer leaves once every record is committed. The body may be up to
    `PIGUARD_MAX_BATCH_BODY_BYTES` (default 2 MiB)."""
    piguard = call.piguard

    async def cached(caller: Caller) -> Response:
        basis = _cached_basis(piguard, caller, [r.subject_id for r in body.requests])
        asked = _asked(body, caller, piguard, {s: state for s, (state, _) in basis.items()})
        decisions, drafts = piguard.enforcer.drafted_many(asked, detail=_DETAIL)
        await piguard.answers.commit(_basis(caller, basis), drafts)
        return _batch_out(piguard, asked, decisions)

    def fresh(caller: Caller) -> Response:
        named = [check_binding(caller, r.subject_id) for r in body.requests if r.subject_id]
        asked = _asked(body, caller, piguard, piguard.vault.snapshots(named))
        decisions = piguard.enforcer.answer_many(asked, detail=_DETAIL)
        return _batch_out(piguard, asked, decisions)

    return await cached_first(request, call, cached, fresh)


_Known = dict[str, tuple[SubjectState, SubjectVersion]]


def _cached_basis(piguard: Piguard, caller: Caller, named: list[str | None]) -> _Known:
    """Each named subject the caller may address, with its cached snapshot and version; Stale
    when one is not cached: read them afresh."""
    known: _Known = {}
    for subject in named:
        if subject is None or subject in known:
            continue
        check_binding(caller, subject)
        found = piguard.vault.cached_state(subject)
        if found is None:
            raise Stale
        known[subject] = found
    return known


def _basis(caller: Caller, known: _Known) -> Basis:
    return Basis(caller.actor.principal, tuple((s, v) for s, (_, v) in known.items()))


def _asked(
    body: DecideBatchIn, caller: Caller, piguard: Piguard, states: Mapping[str, SubjectState]
) -> list[tuple[DecisionRequest, str]]:
    """The batch's requests, in order. A batch asks few distinct questions about many subjects:
    each question is built once, then given each subject's state."""
    at = piguard.clock.now()
    built: dict[tuple[object, ...], DecisionRequest] = {}
    asked = []
    for r in body.requests:
        key = (
            r.action, r.purpose, tuple(r.categories), r.recipient, r.region, r.exemption,
            r.case_reference, r.authority,
        )  # fmt: skip
        question = built.get(key)
        if question is None:
            question = built[key] = _request(r, caller, piguard, _NO_SUBJECT, at)
        subject = r.subject_id or ""
        asked.append((_about(question, states[subject]) if subject else question, subject))
    return asked


def _about(question: DecisionRequest, subject: SubjectState) -> DecisionRequest:
    q = question  # the constructor: dataclasses.replace costs several times more
    return DecisionRequest(
        q.action, q.actor, q.purpose, q.categories, subject, q.recipient, q.region, q.exemption,
        q.source_purposes, q.at, q.registration, q.evidence,
    )  # fmt: skip


def _out(piguard: Piguard, req: DecisionRequest, decision: Decision) -> Response:
    return _json(decide_json(decision, req.actor, piguard.enforcer.public_reasons))


def _batch_out(
    piguard: Piguard, asked: list[tuple[DecisionRequest, str]], decisions: list[Decision]
) -> Response:
    reasons = piguard.enforcer.public_reasons
    answers = b",".join(
        decide_json(decision, req.actor, reasons)
        for (req, _), decision in zip(asked, decisions, strict=True)
    )
    return _json(b'{"answers":[' + answers + b"]}")


def _json(body: bytes) -> Response:
    return Response(body, media_type="application/json")


def _request(
    body: DecideIn, caller: Caller, piguard: Piguard, subject: SubjectState, at: datetime
) -> DecisionRequest:
    return DecisionRequest(
        action=body.action,
        actor=_actor(caller.actor, body.case_reference, body.authority),
        purpose=body.purpose,
        categories=tuple(dict.fromkeys(body.categories)),
        subject=subject,
        recipient=piguard.recipients.view(body.recipient) if body.recipient else None,
        region=body.region,
        exemption=body.exemption,
        at=at,
    )


def _actor(actor: Actor, case_reference: str | None, authority: str | None) -> Actor:
    """The caller with the case and authority its question names (most name none)."""
    if actor.case_reference == case_reference and actor.authority == authority:
        return actor
    return replace(actor, case_reference=case_reference, authority=authority)
