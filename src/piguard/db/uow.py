"""The unit of work: one transaction on one Core connection per service call.

Rolled back unless `commit()` is called. Repositories run SQLAlchemy Core statements on
`connection`: no ORM session, identity map or flush on the hot path, where they cost more than
the SQL. Work that must follow a durable commit (a checkpoint line in a file) registers with
`after_commit`; work that must learn how the transaction ended, either way, with `on_end`.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from sqlalchemy import Connection, Engine

from piguard.db.engine import READONLY


class UnitOfWork:
    """A transaction scope. Repositories never commit; the service that opened the unit does."""

    __slots__ = ("_after", "_conn", "_ends", "_engine")

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
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
        self._conn = self._engine.connect()
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
            conn.close()  # rolls back what was not committed
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


class Transactions:
    """Opens units of work on one engine: writes take the write lock at once, reads never do."""

    __slots__ = ("_readonly", "engine")

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # A snapshot read: on SQLite, a plain BEGIN without the write lock (see db.engine).
        self._readonly = engine.execution_options(**{READONLY: True})

    def write(self) -> UnitOfWork:
        return UnitOfWork(self.engine)

    def read(self) -> UnitOfWork:
        return UnitOfWork(self._readonly)
