"""Subjects, encrypted values and blind indexes in SQL. Repositories never commit."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Row, Table, bindparam, delete, insert, select, update
from sqlalchemy.orm import Session

from piguard.vault.tables import BlindIndexRow, SubjectRow, ValueRow

_SUBJECTS = cast(Table, SubjectRow.__table__)
_VALUES = cast(Table, ValueRow.__table__)
# Built once: constructing a statement costs more than running it on the hot path.
_SUBJECT_STATUS = select(_SUBJECTS.c.id, _SUBJECTS.c.status, _SUBJECTS.c.state_version).where(
    _SUBJECTS.c.id == bindparam("subject_id")
)
_VALUES_OF = (
    select(_VALUES)
    .where(
        _VALUES.c.subject_id == bindparam("subject_id"),
        _VALUES.c.category.in_(bindparam("categories", expanding=True)),
    )
    .order_by(_VALUES.c.collected_at, _VALUES.c.id)
)

_INSERT_VALUES = insert(_VALUES)


class VaultRepository:
    def __init__(self, session: Session) -> None:
        self._s = session

    @property
    def _core(self) -> Connection:
        """The session's connection, for Core statements: no ORM machinery on the hot path."""
        return self._s.connection()

    def add_subject(self, subject_id: str, at: datetime) -> None:
        self._s.add(SubjectRow(id=subject_id, status="active", created_at=at))

    def subject(self, subject_id: str) -> SubjectRow | None:
        return self._s.get(SubjectRow, subject_id)

    def subject_status(self, subject_id: str) -> Row[str, str, int] | None:
        """(id, status, state_version) without the ORM, for the read path."""
        return self._core.execute(_SUBJECT_STATUS, {"subject_id": subject_id}).first()

    def state_changed(self, subject_id: str) -> None:
        """Bump the subject's state version: cached decision snapshots of it are stale now."""
        self._s.execute(
            update(SubjectRow)
            .where(SubjectRow.id == subject_id)
            .values(state_version=SubjectRow.state_version + 1)
            .execution_options(synchronize_session=False)
        )

    def add_values(self, rows: list[dict[str, Any]]) -> None:
        """Insert value rows (dicts of `ValueRow` columns) in one statement, without the ORM."""
        if rows:
            self._core.execute(_INSERT_VALUES, rows)

    def values(self, subject_id: str, categories: Iterable[str]) -> Sequence[Row[Any]]:
        """Rows with the columns of `ValueRow`, read without the ORM: reads are the hot path."""
        return self._core.execute(
            _VALUES_OF, {"subject_id": subject_id, "categories": list(categories)}
        ).all()

    def delete_values(self, subject_id: str, categories: Iterable[str] | None = None) -> int:
        stmt = delete(ValueRow).where(ValueRow.subject_id == subject_id)
        if categories is not None:
            stmt = stmt.where(ValueRow.category.in_(list(categories)))
        return int(getattr(self._s.execute(stmt), "rowcount", 0))

    def purge_erased(self, batch: int) -> int:
        erased = select(SubjectRow.id).where(SubjectRow.status == "erased")
        doomed = select(ValueRow.id).where(ValueRow.subject_id.in_(erased)).limit(batch)
        ids = list(self._s.scalars(doomed))
        if ids:
            self._s.execute(delete(ValueRow).where(ValueRow.id.in_(ids)))
        return len(ids)

    def index_owner(self, kind: str, digest: str) -> str | None:
        row = self._s.get(BlindIndexRow, (kind, digest))
        return row.subject_id if row else None

    def set_index(self, kind: str, digest: str, subject_id: str) -> None:
        self._s.execute(
            delete(BlindIndexRow).where(
                BlindIndexRow.subject_id == subject_id, BlindIndexRow.kind == kind
            )
        )
        self._s.execute(
            insert(BlindIndexRow).values(kind=kind, digest=digest, subject_id=subject_id)
        )

    def delete_indexes(self, subject_id: str, kinds: Iterable[str] | None = None) -> None:
        stmt = delete(BlindIndexRow).where(BlindIndexRow.subject_id == subject_id)
        if kinds is not None:
            stmt = stmt.where(BlindIndexRow.kind.in_(list(kinds)))
        self._s.execute(stmt)
