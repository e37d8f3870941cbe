"""Domain values → DTOs. The only place that knows both shapes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict

from piguard.consent.model import ConsentEvent
from piguard.policy.decision import Actor, Decision
from piguard.vault.service import StoredValue
from piguard.web.schemas import (
    ActorOut,
    ConsentEventOut,
    DecideOut,
    DecisionOut,
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
