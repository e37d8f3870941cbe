"""The enforcement point: every decision is taken by the engine and recorded in the audit log.

Services never decide for themselves; they call `require`, which returns the allowed decision or
raises `Denied` with the clause IDs, after recording the refusal too.
"""

from __future__ import annotations

import hashlib
import re
from typing import TypeVar

from piguard.audit.ports import AuditDraft, AuditSink
from piguard.audit.writer import check, for_subject
from piguard.db.uow import UnitOfWork
from piguard.kernel.errors import Denied
from piguard.kernel.text import LocalText
from piguard.policy import scopes
from piguard.policy.decide import DecisionEngine
from piguard.policy.decision import Decision, DecisionRequest
from piguard.policy.model import Action, Policy

# Each part of an audit record's code stays short enough for all of them to fit its 200 chars.
_CODE_CHARS = 64
_PLAIN_REFERENCE = re.compile(r"[A-Za-z0-9_.-][A-Za-z0-9_.:-]{0,31}")

T = TypeVar("T")

_INPUT = "<input>"  # a part of a reason code that is the caller's text, not a policy name
_AUDIT_INPUT = "input"  # the same, in the audit record's code alphabet

# Reason codes whose last part names the offending category: the error's `field`.
_FIELD_CODES = (
    "category_not_declared",
    "unknown_category",
    "outside_grant",
    "immutable",
    "not_in_rule",
)


class Enforcer:
    """Decide, record, and refuse or allow."""

    def __init__(self, engine: DecisionEngine, audit: AuditSink) -> None:
        self.engine = engine
        self.audit = audit
        self._names = policy_names(engine.policy)

    def require(
        self, req: DecisionRequest, subject: str, uow: UnitOfWork | None = None, detail: str = ""
    ) -> Decision:
        """The allowed decision, audited in `uow` (atomic with a write) or, without one (a read),
        committed before it returns: no data leaves before the record of its access is durable
        (AuditUnavailable otherwise). A refusal is only queued: it releases nothing."""
        decision = self.engine.decide(req)
        draft = _draft(req, decision, subject, detail, self._names)
        if not decision.allowed:
            self.audit.enqueue(draft)
            raise denied(decision, self._names)
        if uow is None:
            self.audit.record(draft)
        else:
            self.audit.append(uow, [draft])
        return decision

    def answer(self, req: DecisionRequest, subject: str, detail: str = "") -> Decision:
        """A decision for a caller that enforces it itself (`POST /v1/decide`): a denial is an
        answer, not an error. The caller acts on the answer as on data released, so the record is
        committed before it returns (AuditUnavailable otherwise), allow and deny alike."""
        decision, draft = self.drafted(req, subject, detail)
        self.audit.record(draft)
        return decision

    def settle(self, decision: Decision, draft: AuditDraft, result: T) -> T:
        """`result` once `draft` is committed (AuditUnavailable otherwise), if `decision`
        allows; a denial's record is only queued, and `refusal` raised."""
        if not decision.allowed:
            self.audit.enqueue(draft)
            raise self.refusal(decision)
        self.audit.record(draft)
        return result

    def refusal(self, decision: Decision) -> Denied:
        """The error a denial is raised as: its clauses and codes, never the caller's text."""
        return denied(decision, self._names)

    def drafted(
        self, req: DecisionRequest, subject: str, detail: str = ""
    ) -> tuple[Decision, AuditDraft]:
        """The decision and the checked draft of its record, for a caller that commits the
        record itself before acting on the answer (`committer.AnswerCommitter`)."""
        decision = self.engine.decide(req)
        return decision, check(_draft(req, decision, subject, detail, self._names))

    def answer_many(
        self, asked: list[tuple[DecisionRequest, str]], detail: str = ""
    ) -> list[Decision]:
        """`answer` for several (request, subject) pairs, in order (`POST /v1/decide/batch`):
        every record queued together, and one wait, for the commit of the last."""
        decisions, drafts = self.drafted_many(asked, detail)
        self.audit.record_many(drafts)
        return decisions

    def drafted_many(
        self, asked: list[tuple[DecisionRequest, str]], detail: str = ""
    ) -> tuple[list[Decision], list[AuditDraft]]:
        """`drafted` for several (request, subject) pairs, in order."""
        decisions = [self.engine.decide(req) for req, _ in asked]
        # A batch asks few distinct questions about many subjects: each question's record is
        # drafted and checked once, then stamped with each subject (checked on its own).
        made: dict[tuple[object, ...], AuditDraft] = {}
        drafts = []
        for (req, subject), decision in zip(asked, decisions, strict=True):
            # Every decision is alive in `decisions` meanwhile: its id names it.
            key = (id(decision), req.actor, req.action, req.purpose, req.categories, req.exemption)
            made_once = made.get(key)
            if made_once is None:
                made_once = made[key] = check(_draft(req, decision, "", detail, self._names))
            drafts.append(for_subject(made_once, subject))
        return decisions, drafts

    def public_reasons(self, decision: Decision) -> list[tuple[str, str]]:
        """(clause, code) pairs safe to show the caller: their own text reads `<input>`."""
        return [(r.clause, _public_code(r.code, self._names)) for r in decision.reasons]


def _draft(
    req: DecisionRequest, decision: Decision, subject: str, detail: str, names: frozenset[str]
) -> AuditDraft:
    return AuditDraft(
        actor=req.actor.label,
        action=req.action.value,
        purpose=req.purpose,
        subject=subject,
        categories=req.categories,
        effect=decision.effect.value,
        clauses=decision.clauses,
        policy_version=decision.policy_version,
        detail=_detail(req, decision, detail, names),
    )


def _detail(req: DecisionRequest, decision: Decision, given: str, names: frozenset[str]) -> str:
    """The record's code: the caller's, else the first reason; then what a grant or exemption
    required, recorded with it (C8, R4, SH4): the exemption used, the case reference and the
    requesting authority. A reference outside the code alphabet is recorded by its digest."""
    # The log keeps no caller text either: what is not a policy name is recorded as `input`.
    code = given or _public_code(decision.reasons[0].code, names, _AUDIT_INPUT)
    parts = [code[:_CODE_CHARS]]
    if req.exemption is not None and decision.allowed:
        parts.append(f"exemption:{req.exemption}"[:40])
    refs = (("case", req.actor.case_reference), ("authority", req.actor.authority))
    parts.extend(_reference(kind, value) for kind, value in refs if value)
    return ":".join(parts)


def _reference(kind: str, value: str) -> str:
    if _PLAIN_REFERENCE.fullmatch(value):
        return f"{kind}:{value}"
    return f"{kind}-sha256:{hashlib.sha256(value.encode()).hexdigest()[:16]}"


def denied(decision: Decision, names: frozenset[str] | None = None) -> Denied:
    """A bilingual refusal naming the clauses, the reason codes and, when known, the field.

    With `names` (the policy's, `policy_names`), every part of a reason code after the code
    itself that is not one of them (an unknown purpose, category or exemption as the caller
    wrote it) reads `<input>`: a refusal never echoes what was submitted. The audit record
    keeps the decision's own codes."""
    reasons = [
        (r.clause, r.code if names is None else _public_code(r.code, names))
        for r in decision.reasons
    ]
    codes = "; ".join(f"{clause} {code}" for clause, code in reasons)
    field = None
    for _, code in reasons:
        kind, _, rest = code.partition(":")
        if kind in _FIELD_CODES:
            field = rest.rpartition(":")[2]
            break
    return Denied(
        LocalText(f"策略拒绝：{codes}", f"refused by the policy: {codes}"),
        field=None if field == _INPUT else field,
        reasons=tuple(f"{clause}:{code}" for clause, code in reasons),
    )


def _public_code(code: str, names: frozenset[str], placeholder: str = _INPUT) -> str:
    kind, *parts = code.split(":")
    return ":".join([kind, *(p if p in names else placeholder for p in parts)])


def policy_names(policy: Policy) -> frozenset[str]:
    """Every name the policy defines, that a reason code may show: its categories, purposes,
    services, settings, exemptions, roles, recipients and their types, regions, rights,
    channels, refusal grounds, clauses and outbound rules, the actions and the scope kinds."""
    names: set[str] = {a.value for a in Action} | set(scopes.SCOPE_KINDS)
    names |= set(scopes.SERVICE.split(":"))
    for table in (
        policy.categories,
        policy.purposes,
        policy.services,
        policy.settings,
        policy.exemptions,
        policy.roles,
        policy.recipient_types,
        policy.recipients,
        policy.regions,
        policy.rights,
        policy.channels,
        policy.refusal_grounds,
        policy.clauses,
    ):
        names.update(table)
    names.update(e.code for e in policy.exemptions.values())
    names.update(rule.id for rule in policy.outbound)
    return frozenset(names)
