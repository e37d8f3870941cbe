"""A held connection (`Transactions.held`): one connection for one thread's units of work, kept
open between them, rolled back between them, and opened again when the database dropped it."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from piguard.db.uow import Transactions


def _backend_id(conn: Connection) -> object:
    if conn.dialect.name == "postgresql":
        return conn.scalar(text("SELECT pg_backend_pid()"))
    return id(conn.connection.dbapi_connection)


def test_s2_held_units_share_one_connection_and_leave_nothing_uncommitted(
    migrated_engine: Engine,
) -> None:
    held = Transactions(migrated_engine).held()
    with held.write() as uow:
        first = _backend_id(uow.connection)
        uow.connection.execute(text("CREATE TABLE held_probe (n INTEGER)"))
        uow.commit()
    with held.write() as uow:
        uow.connection.execute(text("INSERT INTO held_probe VALUES (1)"))  # never committed
    with held.read() as uow:
        assert _backend_id(uow.connection) == first
        assert uow.connection.scalar(text("SELECT count(*) FROM held_probe")) == 0
    held.close()
    with migrated_engine.connect() as other:  # the held unit's write lock was let go
        other.execute(text("INSERT INTO held_probe VALUES (2)"))
        other.commit()


def _drop_backend(engine: Engine, pid: object) -> None:
    with engine.connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        admin.commit()


@pytest.mark.postgres
@pytest.mark.parametrize("ping_after", [0.0, 3600.0], ids=["idle", "under_load"])
def test_s2_a_held_connection_the_server_dropped_is_reopened(
    postgres_engine: Engine, ping_after: float
) -> None:
    """Idle for `ping_after`, it is pinged first and no unit fails; under load (not pinged),
    the unit that meets the lost connection fails, and the next one reopens it."""
    held = Transactions(postgres_engine).held(ping_after=ping_after)
    with held.read() as uow:
        dropped = _backend_id(uow.connection)
    _drop_backend(postgres_engine, dropped)
    if ping_after > 0:
        with pytest.raises(DBAPIError), held.read() as uow:
            uow.connection.execute(text("SELECT 1"))
    with held.read() as uow:
        assert _backend_id(uow.connection) != dropped
    held.close()
