"""Support for the erasure crash tests: real failures injected at the driver, and what is stored.

An injector raises from SQLAlchemy's `before_cursor_execute` hook when one statement is about to
reach the database (the key store's DELETE of a key, the main database's status change): the
statement never runs and its transaction rolls back, as when the database fails. Nothing of
piguard's storage is replaced or its results faked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

from sqlalchemy import Engine, event, text
from stdnum.cn import ric

from piguard.bootstrap import Piguard
from piguard.population import Person
from piguard.vault.keystore import KeyStore


class InjectedFailure(RuntimeError):
    """The database "failed" here, on purpose."""


def _params(parameters: Any) -> list[object]:
    if isinstance(parameters, dict):
        return list(parameters.values())
    if isinstance(parameters, list | tuple):
        return list(parameters)
    return []


@contextmanager
def failing(
    engine: Engine | type[Engine], when: Callable[[str, list[object]], bool]
) -> Iterator[list[str]]:
    """Every statement on `engine` (the class: on every engine) for which `when(sql,
    parameters)` holds raises instead of running; yields the statements it stopped."""
    stopped: list[str] = []

    def before(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, _many: bool
    ) -> None:
        if when(" ".join(statement.split()).upper(), _params(parameters)):
            stopped.append(statement)
            raise InjectedFailure(statement.split()[0])

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield stopped
    finally:
        event.remove(engine, "before_cursor_execute", before)


def key_delete(sql: str, _params: list[object]) -> bool:
    return sql.startswith("DELETE FROM DATA_KEYS")


def status_change(to: str, *, unless: str | None = None) -> Callable[[str, list[object]], bool]:
    """The UPDATE of `subjects` that writes the status `to` (and not `unless`)."""

    def when(sql: str, params: list[object]) -> bool:
        return sql.startswith("UPDATE SUBJECTS") and to in params and unless not in params

    return when


def status_of(app: Piguard, subject_id: str) -> tuple[str, bool]:
    """The subject's status, and whether its erasure time is set."""
    with app.db.connect() as conn:
        row = conn.execute(
            text("SELECT status, erased_at FROM subjects WHERE id = :s"), {"s": subject_id}
        ).one()
    return str(row.status), row.erased_at is not None


def has_key(app: Piguard, subject_id: str) -> bool:
    return KeyStore(app.keystore_db).get(subject_id) is not None


def count(app: Piguard, table: str, subject_id: str) -> int:
    with app.db.connect() as conn:
        return int(
            conn.execute(
                text(f"SELECT COUNT(*) FROM {table} WHERE subject_id = :s"),  # noqa: S608 - ours
                {"s": subject_id},
            ).scalar_one()
        )


def records(app: Piguard, subject_id: str) -> list[tuple[str, str, str, str]]:
    """(actor, action, effect, detail) of the subject's audit records, oldest first."""
    app.audit.flush()
    with app.db.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT actor, action, effect, detail FROM audit_records "
                "WHERE subject = :s ORDER BY seq"
            ),
            {"s": subject_id},
        ).all()
    return [(str(a), str(b), str(c), str(d)) for a, b, c, d in rows]


def minor_registration(who: Person, born: date = date(2015, 6, 1)) -> dict[str, str]:
    """`who`'s registration with the ID number of a child born on `born` (M1)."""
    first17 = f"110101{born:%Y%m%d}{who.id_number[14:17]}"
    values = who.registration()
    values["user.government_id.national_identification_number"] = first17 + ric.calc_check_digit(
        first17 + "?"
    )
    return values
