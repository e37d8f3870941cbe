"""The unit of work: one transaction on one Core connection per service call.

Rolled back unless `commit()` is called. Repositories run SQLAlchemy Core statements on
`connection`: no ORM session, identity map or flush on the hot path, where they cost more than
the SQL. Work that must follow a durable commit (a checkpoint line in a file) registers with
`after_commit`; work that must learn how the transaction ended, either way, with `on_end`.

A thread that runs one short transaction after another (a batch writer) holds one connection
for all of them (`Transactions.held`): no pool checkout, and on PostgreSQL no ping, per batch.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from types import TracebackType

from sqlalchemy import Connection, Engine

from piguard.db.engine import READONLY


class UnitOfWork:
    """A transaction scope. Repositories never commit; the service that opened the unit does."""

    __slots__ = ("_after", "_conn", "_ends", "_engine", "_held")

    def __init__(self, engine: Engine, held: HeldConnection | None = None) -> None:
        self._engine = engine
        self._held = held
        self._conn: Connection | None = None
        self._after: list[Callable[[], None]] = []
        self._ends: list[Callable[[bool], None]] = []

    @property
    def connection(self) -> Connection:
        if self._conn is None:
            raise RuntimeError("the unit of work is not open")
        return self._conn

    def __enter__(self) -> UnitOfWork:
        # The transaction begins with the first statement: a write takes its lock no earlier.
        held = self._held
        self._conn = self._engine.connect() if held is None else held.take(self._engine)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn, self._conn, self._after = self.connection, None, []
        ends, self._ends = self._ends, []
        try:
            if self._held is None:
                conn.close()  # rolls back what was not committed
            else:
                self._held.give_back(conn)
        finally:
            for end in ends:
                end(False)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once this unit has committed; never if it rolls back."""
        self._after.append(callback)

    def on_end(self, callback: Callable[[bool], None]) -> None:
        """Run `callback(True)` once this unit's transaction has committed (before the
        `after_commit` callbacks), or `callback(False)` when the unit closes without that
        commit (rolled back, or its commit failed). Callbacks must not raise."""
        self._ends.append(callback)

    def commit(self) -> None:
        self.connection.commit()
        ends, self._ends = self._ends, []
        for end in ends:
            end(True)
        callbacks, self._after = self._after, []
        for callback in callbacks:
            callback()


class HeldConnection:
    """One connection kept open for the units of work of one thread, one after another.

    A unit takes it with its engine's options (a read's, a write's) and gives it back rolled
    back: what the unit did not commit is undone, and a connection the database dropped (its
    error invalidated it) is opened again by the next unit. After `ping_after` idle seconds it
    is pinged first, as the pool pings what it hands out: a restarted database then fails no
    unit; under load, nothing is pinged (a connection lost then fails one unit). In a forked
    child the parent's connection is left alone, never used."""

    __slots__ = ("_conn", "_pid", "_ping_after", "_returned", "_source")

    def __init__(self, source: Engine, ping_after: float = 10.0) -> None:
        self._source = source
        self._ping_after = ping_after
        self._conn: Connection | None = None
        self._pid = os.getpid()
        self._returned = 0.0

    def take(self, engine: Engine) -> Connection:
        if self._conn is None or self._pid != os.getpid():
            self._conn, self._pid = self._source.connect(), os.getpid()
        elif time.monotonic() - self._returned >= self._ping_after:
            self._ping(self._conn)
        return self._conn.execution_options(**engine.get_execution_options())

    def give_back(self, conn: Connection) -> None:
        conn.rollback()
        self._returned = time.monotonic()

    @staticmethod
    def _ping(conn: Connection) -> None:
        try:
            raw = conn.connection.dbapi_connection
            alive = raw is not None and conn.dialect.do_ping(raw)
        except conn.dialect.loaded_dbapi.Error:
            alive = False
        if not alive:
            conn.invalidate()  # reopened at its next statement

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and self._pid == os.getpid():
            conn.close()


class Transactions:
    """Opens units of work on one engine: writes take the write lock at once, reads never do."""

    __slots__ = ("_held", "_readonly", "_writing", "engine")

    def __init__(self, engine: Engine, held: HeldConnection | None = None) -> None:
        self.engine = engine
        self._held = held
        # A snapshot read: on SQLite, a plain BEGIN without the write lock (see db.engine).
        self._readonly = engine.execution_options(**{READONLY: True})
        self._writing = engine.execution_options(**{READONLY: False})

    def write(self) -> UnitOfWork:
        return UnitOfWork(self._writing, self._held)

    def read(self) -> UnitOfWork:
        return UnitOfWork(self._readonly, self._held)

    def held(self, ping_after: float = 10.0) -> Transactions:
        """Units of work on one connection held open (`HeldConnection`), for the one thread
        that uses them; it closes with `close`."""
        return Transactions(self.engine, HeldConnection(self.engine, ping_after))

    def close(self) -> None:
        """Close the held connection, if any (the thread using it has stopped)."""
        if self._held is not None:
            self._held.close()
