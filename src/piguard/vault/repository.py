"""Subjects, encrypted values and blind indexes in SQL. Repositories never commit.

Core statements on the unit of work's connection, built once where they run on every call:
building and compiling a statement costs more than running it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import (
    BindParameter,
    Connection,
    Row,
    Select,
    Table,
    and_,
    bindparam,
    delete,
    insert,
    select,
    update,
)

from piguard.db.in_lists import Bound, in_list
from piguard.kernel.errors import NotFound
from piguard.kernel.text import LocalText
from piguard.vault.tables import BlindIndexRow, SubjectRow, ValueRow

_SUBJECTS = cast(Table, SubjectRow.__table__)
_VALUES = cast(Table, ValueRow.__table__)
_INDEXES = cast(Table, BlindIndexRow.__table__)
_VALUE_COLUMNS = tuple(_VALUES.c)

_SUBJECT_STATUS = select(_SUBJECTS.c.id, _SUBJECTS.c.status, _SUBJECTS.c.state_version).where(
    _SUBJECTS.c.id == bindparam("subject_id")
)
# For a write: the row stays locked until commit, so an erasure and a write of the same subject
# take turns (PostgreSQL; SQLite writers are serialised anyway and render no FOR UPDATE).
_SUBJECT_STATUS_LOCKED = _SUBJECT_STATUS.with_for_update()
_INSERT_SUBJECT = insert(_SUBJECTS)
_INSERT_VALUES = insert(_VALUES)
_STATE_CHANGED = (
    update(_SUBJECTS)
    .where(_SUBJECTS.c.id == bindparam("subject_id"))
    .values(state_version=_SUBJECTS.c.state_version + 1)
)
_INDEX_OWNER = select(_INDEXES.c.subject_id).where(
    _INDEXES.c.kind == bindparam("kind"), _INDEXES.c.digest == bindparam("digest")
)
# Statements for one count of categories, without SQLAlchemy's "expanding" IN, which is
# recompiled on every call; a policy has a few dozen categories, so few counts occur.
_CATEGORY_COUNTS = 128


# A subject's life: `erasing` is the tombstone an erasure commits before its key is destroyed
# (`vault.erasure`); from then on the subject is gone for every path, as once `erased`.
ACTIVE = "active"
ERASING = "erasing"
ERASED = "erased"
GONE = frozenset({ERASING, ERASED})


@dataclass(frozen=True, slots=True)
class SubjectStatus:
    """What a decision keys a subject's snapshot on."""

    id: str
    status: str
    state_version: int

    @property
    def gone(self) -> bool:
        """Erased, or being erased: no data of it is read or written any more."""
        return self.status in GONE


def versions_query(subject_ids: Collection[str]) -> Bound:
    """(id, state version, status) of each of these subjects that exists."""
    return in_list(_versions, "s", subject_ids)


def _versions(ids: tuple[BindParameter[Any], ...]) -> Select[tuple[str, int, str]]:
    return select(_SUBJECTS.c.id, _SUBJECTS.c.state_version, _SUBJECTS.c.status).where(
        _SUBJECTS.c.id.in_(ids)
    )


def no_such_subject() -> NotFound:
    """Not found, erased and being erased look the same to every caller."""
    return NotFound(LocalText("没有该主体", "no such subject"), field="subject_id")


class VaultRepository:
    __slots__ = ("_c",)

    def __init__(self, connection: Connection) -> None:
        self._c = connection

    # -- subjects --------------------------------------------------------------------------------

    def add_subject(self, subject_id: str, at: datetime) -> None:
        self._c.execute(_INSERT_SUBJECT, {"id": subject_id, "status": ACTIVE, "created_at": at})

    def subject_status(self, subject_id: str, *, lock: bool = False) -> SubjectStatus | None:
        """The subject's status; with `lock`, its row is locked until the transaction ends."""
        stmt = _SUBJECT_STATUS_LOCKED if lock else _SUBJECT_STATUS
        row = self._c.execute(stmt, {"subject_id": subject_id}).first()
        return SubjectStatus(*row) if row is not None else None

    def subject_with_values(
        self, subject_id: str, categories: Sequence[str]
    ) -> tuple[SubjectStatus | None, list[Row[Any]]]:
        """A subject's status and its values of some categories, in one statement (reads)."""
        count, params = _bind(subject_id, categories)
        rows = self._c.execute(_status_and_values(count), params).all()
        if not rows:
            return None, []
        status = SubjectStatus(subject_id, rows[0].status, rows[0].state_version)
        return status, [row for row in rows if row.id is not None]

    def state_changed(self, subject_id: str) -> None:
        """Bump the subject's state version: cached decision snapshots of it are stale now."""
        self._c.execute(_STATE_CHANGED, {"subject_id": subject_id})

    def mark_erasing(self, subject_id: str) -> bool:
        """Tombstone an active subject; False if it was not active (a concurrent erasure)."""
        done = self._c.execute(
            update(_SUBJECTS)
            .where(_SUBJECTS.c.id == subject_id, _SUBJECTS.c.status == ACTIVE)
            .values(status=ERASING, state_version=_SUBJECTS.c.state_version + 1)
        )
        return done.rowcount > 0

    def mark_erased(self, subject_id: str, at: datetime) -> bool:
        """Finish a tombstoned subject's erasure; False if it was not (or no longer) erasing."""
        done = self._c.execute(
            update(_SUBJECTS)
            .where(_SUBJECTS.c.id == subject_id, _SUBJECTS.c.status == ERASING)
            .values(status=ERASED, erased_at=at, state_version=_SUBJECTS.c.state_version + 1)
        )
        return done.rowcount > 0

    def erasing(self) -> list[str]:
        """Every tombstoned subject whose erasure has not finished (a partial index finds them)."""
        stmt = select(_SUBJECTS.c.id).where(_SUBJECTS.c.status == ERASING).order_by(_SUBJECTS.c.id)
        return list(self._c.scalars(stmt))

    # -- values ----------------------------------------------------------------------------------

    def add_values(self, rows: list[dict[str, Any]]) -> None:
        """Insert value rows (dicts of `ValueRow` columns) in one statement."""
        if rows:  # one row as one row: SQLAlchemy's executemany path costs more for a single
            self._c.execute(_INSERT_VALUES, rows[0] if len(rows) == 1 else rows)

    def values(self, subject_id: str, categories: Sequence[str]) -> list[Row[Any]]:
        """Rows with the columns of `ValueRow`, oldest first."""
        count, params = _bind(subject_id, categories)
        return list(self._c.execute(_values_of(count), params).all())

    def held_categories(self, subject_id: str) -> tuple[str, ...]:
        """Every category the subject holds a value of, in a stable order."""
        stmt = (
            select(_VALUES.c.category)
            .where(_VALUES.c.subject_id == subject_id)
            .distinct()
            .order_by(_VALUES.c.category)
        )
        return tuple(self._c.scalars(stmt))

    def delete_value_ids(self, ids: Sequence[str]) -> None:
        if ids:
            self._c.execute(delete(_VALUES).where(_VALUES.c.id.in_(list(ids))))

    def set_purposes(self, value_id: str, purposes: str) -> None:
        self._c.execute(update(_VALUES).where(_VALUES.c.id == value_id).values(purposes=purposes))

    def delete_values(self, subject_id: str, categories: Iterable[str] | None = None) -> int:
        stmt = delete(_VALUES).where(_VALUES.c.subject_id == subject_id)
        if categories is not None:
            stmt = stmt.where(_VALUES.c.category.in_(list(categories)))
        return int(self._c.execute(stmt).rowcount)

    def purge_erased(self, batch: int) -> int:
        erased = select(_SUBJECTS.c.id).where(_SUBJECTS.c.status == ERASED)
        doomed = select(_VALUES.c.id).where(_VALUES.c.subject_id.in_(erased)).limit(batch)
        ids = list(self._c.scalars(doomed))
        if ids:
            self._c.execute(delete(_VALUES).where(_VALUES.c.id.in_(ids)))
        return len(ids)

    # -- blind indexes ---------------------------------------------------------------------------

    def index_owner(self, kind: str, digest: str) -> str | None:
        found = self._c.execute(_INDEX_OWNER, {"kind": kind, "digest": digest}).first()
        return str(found[0]) if found is not None else None

    def set_index(self, kind: str, digest: str, subject_id: str) -> None:
        self._c.execute(
            delete(_INDEXES).where(_INDEXES.c.subject_id == subject_id, _INDEXES.c.kind == kind)
        )
        self._c.execute(
            insert(_INDEXES), {"kind": kind, "digest": digest, "subject_id": subject_id}
        )

    def delete_indexes(self, subject_id: str, kinds: Iterable[str] | None = None) -> None:
        stmt = delete(_INDEXES).where(_INDEXES.c.subject_id == subject_id)
        if kinds is not None:
            stmt = stmt.where(_INDEXES.c.kind.in_(list(kinds)))
        self._c.execute(stmt)


def _bind(subject_id: str, categories: Sequence[str]) -> tuple[int, dict[str, Any]]:
    """Parameters for the statements of `_in_categories`: each distinct category once."""
    params: dict[str, Any] = {f"c{i}": c for i, c in enumerate(dict.fromkeys(categories))}
    count = len(params)
    params["subject_id"] = subject_id
    return count, params


def _in_categories(count: int) -> Any:
    return _VALUES.c.category.in_([bindparam(f"c{i}") for i in range(count)])


@lru_cache(maxsize=_CATEGORY_COUNTS)
def _values_of(count: int) -> Select[Any]:
    return (
        select(_VALUES)
        .where(_VALUES.c.subject_id == bindparam("subject_id"), _in_categories(count))
        .order_by(_VALUES.c.collected_at, _VALUES.c.id)
    )


@lru_cache(maxsize=_CATEGORY_COUNTS)
def _status_and_values(count: int) -> Select[Any]:
    """The subject's row joined to its matching values: one row per value, or one row with
    empty value columns when it has none."""
    matching = and_(_VALUES.c.subject_id == _SUBJECTS.c.id, _in_categories(count))
    return (
        select(_SUBJECTS.c.status, _SUBJECTS.c.state_version, *_VALUE_COLUMNS)
        .select_from(_SUBJECTS.outerjoin(_VALUES, matching))
        .where(_SUBJECTS.c.id == bindparam("subject_id"))
        .order_by(_VALUES.c.collected_at, _VALUES.c.id)
    )
