"""Domain values → DTOs. The only place that knows both shapes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict

from pydantic_core import to_json

from piguard.consent.model import ConsentEvent
from piguard.policy.decision import Actor, Decision
from piguard.policy.notice import Notice, render_markdown
from piguard.vault.service import StoredValue
from piguard.web.schemas import (
    ActorOut,
    AppendixOut,
    ConsentEventOut,
    DecideOut,
    DecisionOut,
    NoticeItemOut,
    NoticeOut,
    NoticeSectionOut,
    ProjectionOut,
    ReasonOut,
    ValueOut,
)


def decision_out(decision: Decision, reasons: list[tuple[str, str]] | None = None) -> DecisionOut:
    """A decision as the API shows it; `reasons` when some codes must not be shown as they are."""
    shown = reasons if reasons is not None else [(r.clause, r.code) for r in decision.reasons]
    return DecisionOut(
        effect=decision.effect.value,
        reasons=[ReasonOut(clause=clause, code=code) for clause, code in shown],
        obligations=sorted(o.value for o in decision.obligations),
        policy_version=decision.policy_version,
    )


def decide_out(
    decision: Decision, actor: Actor, reasons: list[tuple[str, str]] | None = None
) -> DecideOut:
    return DecideOut(
        **decision_out(decision, reasons).model_dump(),
        actor=ActorOut(kind=actor.kind.value, role=actor.role),
        projection={
            key: ProjectionOut(kind=p.kind.value, operator=p.operator)
            for key, p in decision.projection.items()
        },
    )


_RENDERED = 4096  # rendered answers kept: one per (decision, role) the engine hands out


def decide_json(
    decision: Decision, actor: Actor, reasons: Callable[[Decision], list[tuple[str, str]]]
) -> bytes:
    """`decide_out` as JSON, rendered once per engine answer and role: the engine hands out the
    same immutable `Decision` for the same case, so most answers are a dictionary lookup."""
    return _once(
        (id(decision), actor.kind, actor.role),
        decision,
        lambda: decide_out(decision, actor, reasons(decision)).model_dump_json().encode(),
    )


def read_json(subject_id: str, values: Iterable[StoredValue], decision: Decision) -> bytes:
    """`ReadOut` as JSON, the same bytes as the model's, without building it: the values by
    pydantic's own serialiser, the decision's part rendered once per engine answer."""
    shown = to_json(
        [
            {
                "id": v.id,
                "category": v.category,
                "value": v.value.reveal() if v.value is not None else None,
                "purposes": list(v.purposes),
                "source": v.source,
                "collected_at": v.collected_at,
            }
            for v in values
        ]
    )
    part = _once((id(decision), None, ""), decision, lambda: _decision_json(decision))
    return b'{"subject_id":%b,"values":%b,"decision":%b}' % (to_json(subject_id), shown, part)


def _decision_json(decision: Decision) -> bytes:
    return decision_out(decision).model_dump_json().encode()


def _once(key: tuple[int, object, str], decision: Decision, render: Callable[[], bytes]) -> bytes:
    """What `render` gives for this decision, rendered once: the engine hands out the same
    immutable `Decision` for the same case."""
    hit = _rendered.get(key)
    if hit is not None and hit[0] is decision:  # the id of a decision since freed is not it
        return hit[1]
    body = render()
    if len(_rendered) >= _RENDERED:
        _rendered.clear()
    _rendered[key] = (decision, body)
    return body


_rendered: dict[tuple[int, object, str], tuple[Decision, bytes]] = {}


def values_out(values: Iterable[StoredValue]) -> list[ValueOut]:
    return [
        ValueOut(
            id=v.id,
            category=v.category,
            value=v.value.reveal() if v.value is not None else None,
            purposes=list(v.purposes),
            source=v.source,
            collected_at=v.collected_at,
        )
        for v in values
    ]


def event_out(event: ConsentEvent) -> ConsentEventOut:
    return ConsentEventOut.model_validate(asdict(event))


def notice_out(notice: Notice, policy_version: str) -> NoticeOut:
    """A rendered privacy notice as the API shows it, its Markdown included."""
    return NoticeOut(
        lang=notice.lang,
        title=notice.title,
        version=notice.version,
        policy_version=policy_version,
        effective=notice.effective,
        controller=notice.controller,
        sections=[
            NoticeSectionOut(
                key=s.key,
                title=s.title,
                items=[
                    NoticeItemOut(
                        clause=i.clause, title=i.title, text=i.text, prominent=i.prominent
                    )
                    for i in s.items
                ],
            )
            for s in notice.sections
        ],
        appendices=[AppendixOut(title=t, lines=list(lines)) for t, lines in notice.appendices],
        markdown=render_markdown(notice),
    )
