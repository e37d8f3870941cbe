"""Consent and setting events in SQL: insert and read only. Repositories never commit."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Connection, Row, Table, bindparam, insert, select

from piguard.consent.model import ConsentEvent, ConsentEventKind, Guardianship, SettingEvent
from piguard.consent.tables import ConsentEventRow, GuardianshipRow, SettingEventRow
from piguard.policy.model import ConsentType

_CONSENTS = cast(Table, ConsentEventRow.__table__)
_SETTINGS = cast(Table, SettingEventRow.__table__)
_GUARDIANS = cast(Table, GuardianshipRow.__table__)
_EVENTS_OF = (
    select(_CONSENTS)
    .where(_CONSENTS.c.subject_id == bindparam("subject_id"))
    .order_by(_CONSENTS.c.seq)
)
_SETTINGS_OF = (
    select(_SETTINGS)
    .where(_SETTINGS.c.subject_id == bindparam("subject_id"))
    .order_by(_SETTINGS.c.seq)
)


class ConsentRepository:
    __slots__ = ("_c",)

    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def add(self, event: ConsentEvent) -> None:
        self._c.execute(
            insert(_CONSENTS),
            {
                "id": event.id,
                "subject_id": event.subject_id,
                "kind": event.kind.value,
                "scope": event.scope,
                "consent_type": event.consent_type.value,
                "policy_version": event.policy_version,
                "notice_hash": event.notice_hash,
                "channel": event.channel,
                "method": event.method,
                "evidence": event.evidence,
                "at": event.at,
                "guardian_id": event.guardian_id,
            },
        )

    def add_guardianship(self, link: Guardianship) -> None:
        self._c.execute(
            insert(_GUARDIANS),
            {
                "id": link.id,
                "minor_id": link.minor_id,
                "guardian_id": link.guardian_id,
                "relation": link.relation,
                "evidence": link.evidence,
                "at": link.at,
            },
        )

    def guardianship(self, minor_id: str, guardian_id: str) -> Guardianship | None:
        row = self._c.execute(
            select(_GUARDIANS).where(
                _GUARDIANS.c.minor_id == minor_id, _GUARDIANS.c.guardian_id == guardian_id
            )
        ).first()
        if row is None:
            return None
        return Guardianship(
            row.id, row.minor_id, row.guardian_id, row.relation, row.evidence, row.at
        )

    def events(self, subject_id: str) -> list[ConsentEvent]:
        return [_event(r) for r in self._c.execute(_EVENTS_OF, {"subject_id": subject_id})]

    def event(self, subject_id: str, event_id: str) -> ConsentEvent | None:
        row = self._c.execute(
            select(_CONSENTS).where(
                _CONSENTS.c.id == event_id, _CONSENTS.c.subject_id == subject_id
            )
        ).first()
        return _event(row) if row is not None else None

    def add_setting(self, event: SettingEvent) -> None:
        self._c.execute(
            insert(_SETTINGS),
            {
                "subject_id": event.subject_id,
                "key": event.key,
                "value": event.value,
                "channel": event.channel,
                "at": event.at,
            },
        )

    def settings(self, subject_id: str) -> list[SettingEvent]:
        rows = self._c.execute(_SETTINGS_OF, {"subject_id": subject_id})
        return [SettingEvent(r.subject_id, r.key, r.value, r.channel, r.at) for r in rows]


def _event(r: Row[Any]) -> ConsentEvent:
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
        guardian_id=r.guardian_id,
    )
