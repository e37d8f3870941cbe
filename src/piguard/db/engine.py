"""Engine factory: SQLite (WAL, synchronous=FULL) by default, PostgreSQL in production."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

from piguard.db.write_lock import SerialisedConnection, file_lock
from piguard.files import private_dir, private_file

READONLY = "piguard_readonly"
LOCK_WAIT = "piguard_lock_wait"  # seconds a write transaction may wait for the write lock
_BUSY_MS: Final = 30_000
# Connections kept open per engine: one per request thread of the API (web.app.REQUEST_THREADS),
# the audit flusher and checkpointer, and spare. Serving then never opens a connection (and runs
# its PRAGMAs, or on PostgreSQL a login) only to close it again on return to a full pool.
POOL_SIZE: Final = 24


def make_engine(url: str, *, secure_delete: bool = False, **kwargs: Any) -> Engine:
    """Build an engine; for SQLite, set durable pragmas per connection, and create a missing
    database file 0600 in a 0700 folder (its -wal and -shm files take the file's mode)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        pool = {"pool_size": POOL_SIZE, "max_overflow": POOL_SIZE}
        return create_engine(url, pool_pre_ping=True, **(pool | kwargs))
    if parsed.database and parsed.database != ":memory:" and "uri" not in parsed.query:
        private_dir(Path(parsed.database).parent)
        private_file(Path(parsed.database))
    # Write transactions of this process's threads take turns on a lock of its own (write_lock).
    connect = {"timeout": _BUSY_MS / 1000, "factory": SerialisedConnection}
    private = not parsed.database or parsed.database == ":memory:" or "uri" in parsed.query
    if not private:  # a file: a pool of connections (in memory, one per thread)
        kwargs = {"pool_size": POOL_SIZE, "max_overflow": POOL_SIZE} | kwargs
    engine = create_engine(url, connect_args=connect, **kwargs)
    shared = None if private else file_lock(parsed.database or "")

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy issue BEGIN itself so that a write transaction can be IMMEDIATE.
        dbapi_conn.isolation_level = None
        dbapi_conn.file_lock = shared
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={_BUSY_MS}")
        if secure_delete:  # deleted content is overwritten, not left in free pages
            cur.execute("PRAGMA secure_delete=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock at once: no deadlock upgrading a read to a write.
        # A unit of work that only reads says so, and reads a snapshot without the lock.
        options = conn.get_execution_options()
        # Straight to the driver: this runs for every transaction.
        raw = conn.connection.dbapi_connection
        if options.get(READONLY, False):
            raw.execute("BEGIN")
            return
        raw.begin_write(options.get(LOCK_WAIT), _BUSY_MS)

    return engine


@contextmanager
def write_before(engine: Engine, deadline: float | None) -> Iterator[Connection]:
    """`engine.begin()`, but waiting for the write lock (SQLite's, PostgreSQL's row and advisory
    locks) only until the monotonic `deadline` (None: as long as the database lets it); a lock
    not had by then raises the driver's error."""
    if deadline is None:
        with engine.begin() as conn:
            yield conn
        return
    wait = max(deadline - time.monotonic(), 0.001)
    with engine.connect() as conn:
        if is_sqlite(engine):
            conn.execution_options(**{LOCK_WAIT: wait})
        with conn.begin():
            if engine.dialect.name == "postgresql":  # 0 would mean no bound at all
                conn.exec_driver_sql(f"SET LOCAL lock_timeout = {_milliseconds(wait)}")
            yield conn


def _milliseconds(seconds: float) -> int:
    return max(math.ceil(seconds * 1000), 1)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def sqlite_maintenance(engine: Engine, *statements: str) -> None:
    """Run PRAGMAs that must not be inside a transaction (checkpoints), on a pooled connection."""
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None  # noqa: S101 - a checked-out connection has one
        for statement in statements:
            raw.execute(statement)
