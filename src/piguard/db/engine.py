"""Engine factory: SQLite (WAL, synchronous=FULL) by default, PostgreSQL in production."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from piguard.files import private_dir, private_file

READONLY = "piguard_readonly"


def make_engine(url: str, *, secure_delete: bool = False, **kwargs: Any) -> Engine:
    """Build an engine; for SQLite, set durable pragmas per connection, and create a missing
    database file 0600 in a 0700 folder (its -wal and -shm files take the file's mode)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, **kwargs)
    if parsed.database and parsed.database != ":memory:" and "uri" not in parsed.query:
        private_dir(Path(parsed.database).parent)
        private_file(Path(parsed.database))
    engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy issue BEGIN itself so that a write transaction can be IMMEDIATE.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        if secure_delete:  # deleted content is overwritten, not left in free pages
            cur.execute("PRAGMA secure_delete=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock at once: no deadlock upgrading a read to a write.
        # A unit of work that only reads says so, and reads a snapshot without the lock.
        readonly = conn.get_execution_options().get(READONLY, False)
        # Straight to the driver: this runs for every transaction.
        conn.connection.dbapi_connection.execute("BEGIN" if readonly else "BEGIN IMMEDIATE")

    return engine


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def sqlite_maintenance(engine: Engine, *statements: str) -> None:
    """Run PRAGMAs that must not be inside a transaction (checkpoints), on a pooled connection."""
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None  # noqa: S101 - a checked-out connection has one
        for statement in statements:
            raw.execute(statement)
