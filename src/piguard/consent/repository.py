"""Consent and setting events in SQL: insert and read only. Repositories never commit."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from piguard.consent.model import ConsentEvent, ConsentEventKind, SettingEvent
from piguard.consent.tables import ConsentEventRow, SettingEventRow
from piguard.policy.model import ConsentType


class ConsentRepository:
    def __init__(self, session: Session) -> None:
        self._s = session

    def add(self, event: ConsentEvent) -> None:
        self._s.add(
            ConsentEventRow(
                id=event.id,
                subject_id=event.subject_id,
                kind=event.kind.value,
                scope=event.scope,
                consent_type=event.consent_type.value,
                policy_version=event.policy_version,
                notice_hash=event.notice_hash,
                channel=event.channel,
                method=event.method,
                evidence=event.evidence,
                at=event.at,
            )
        )

    def events(self, subject_id: str) -> list[ConsentEvent]:
        rows = self._s.scalars(
            select(ConsentEventRow)
            .where(ConsentEventRow.subject_id == subject_id)
            .order_by(ConsentEventRow.seq)
        )
        return [_event(r) for r in rows]

    def event(self, subject_id: str, event_id: str) -> ConsentEvent | None:
        row = self._s.scalar(
            select(ConsentEventRow).where(
                ConsentEventRow.id == event_id, ConsentEventRow.subject_id == subject_id
            )
        )
        return _event(row) if row else None

    def add_setting(self, event: SettingEvent) -> None:
        self._s.add(
            SettingEventRow(
                subject_id=event.subject_id,
                key=event.key,
                value=event.value,
                channel=event.channel,
                at=event.at,
            )
        )

    def settings(self, subject_id: str) -> list[SettingEvent]:
        rows = self._s.scalars(
            select(SettingEventRow)
            .where(SettingEventRow.subject_id == subject_id)
            .order_by(SettingEventRow.seq)
        )
        return [SettingEvent(r.subject_id, r.key, r.value, r.channel, r.at) for r in rows]


def _event(r: ConsentEventRow) -> ConsentEvent:
    return ConsentEvent(
        id=r.id,
        subject_id=r.subject_id,
        kind=ConsentEventKind(r.kind),
        scope=r.scope,
        consent_type=ConsentType(r.consent_type),
        policy_version=r.policy_version,
        notice_hash=r.notice_hash,
        channel=r.channel,
        method=r.method,
        evidence=r.evidence,
        at=r.at,
    )
