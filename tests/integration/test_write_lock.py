"""S2 (availability of the audit log): a process's SQLite write transactions take turns on a lock
of its own, and that lock is given back however a transaction ends, so no thread (or forked
child) is ever left waiting on a lock nobody holds.

Real SQLite files; the database's own lock is held by a plain sqlite3 connection, as another
process would.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from piguard.db.engine import make_engine, write_before
from piguard.db.write_lock import file_lock


@pytest.fixture
def db_file(tmp_path: Path) -> Path:
    return tmp_path / "db" / "lock.db"


@pytest.fixture
def engine(db_file: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{db_file}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
    yield engine
    engine.dispose()


def free(db_file: Path, engine: Engine) -> bool:
    """The process lock is not held, and another thread gets a write transaction at once."""
    if file_lock(str(db_file)).lock.locked():
        return False
    done: list[bool] = []

    def write() -> None:
        with write_before(engine, time.monotonic() + 2) as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
        done.append(True)

    other = threading.Thread(target=write)
    other.start()
    other.join(5)
    return done == [True]


class Boom(Exception):
    pass


def _commit(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))


def _raise_inside(engine: Engine) -> None:
    def fail() -> None:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
            raise Boom

    with pytest.raises(Boom):
        fail()


def _close_without_commit(engine: Engine) -> None:
    conn = engine.connect()
    conn.begin()
    conn.execute(text("INSERT INTO t VALUES (1)"))
    conn.close()


def _invalidate(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.begin()
        conn.execute(text("INSERT INTO t VALUES (1)"))
        conn.invalidate()


def _failed_statement(engine: Engine) -> None:
    with pytest.raises(OperationalError), engine.begin() as conn:
        conn.execute(text("INSERT INTO no_such_table VALUES (1)"))


@pytest.mark.parametrize(
    "end", [_commit, _raise_inside, _close_without_commit, _invalidate, _failed_statement]
)
def test_s2_the_process_write_lock_is_given_back_however_a_transaction_ends(
    db_file: Path, engine: Engine, end: Callable[[Engine], None]
) -> None:
    end(engine)
    assert free(db_file, engine)


def test_s2_a_begin_that_cannot_have_the_database_lock_gives_the_process_lock_back(
    db_file: Path, engine: Engine
) -> None:
    other = sqlite3.connect(db_file, isolation_level=None)  # another process's writer
    try:
        other.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="locked"):  # noqa: SIM117
            with write_before(engine, time.monotonic() + 0.2):
                pass
        assert 0.15 <= time.monotonic() - started < 3  # waited its bound, no longer
        assert not file_lock(str(db_file)).lock.locked()
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert free(db_file, engine)


def test_s2_a_thread_waits_for_the_process_lock_only_until_its_deadline(
    db_file: Path, engine: Engine
) -> None:
    with engine.begin() as conn:  # this thread holds the lock
        conn.execute(text("INSERT INTO t VALUES (1)"))
        errors: list[BaseException] = []

        def write() -> None:
            try:
                with write_before(engine, time.monotonic() + 0.2):
                    pass
            except BaseException as exc:  # reported below
                errors.append(exc)

        other = threading.Thread(target=write)
        other.start()
        other.join(5)
        assert not other.is_alive()
        assert len(errors) == 1
        assert "locked" in str(errors[0])
    assert free(db_file, engine)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_s2_a_forked_child_writes_though_a_parent_thread_held_the_lock(
    db_file: Path, engine: Engine
) -> None:
    """The parent's thread holds the process lock at the fork, as one in the middle of a write
    transaction would (SQLite's own lock is left out: SQLite's state must not cross a fork)."""
    holding, release = threading.Event(), threading.Event()
    lock = file_lock(str(db_file)).lock

    def hold() -> None:
        with lock:
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(5)
    try:
        pid = os.fork()
        if pid == 0:  # the child: the holding thread is not here; its lock must not be either
            code = 1
            try:
                child = make_engine(f"sqlite:///{db_file}")
                with write_before(child, time.monotonic() + 3) as conn:
                    conn.execute(text("INSERT INTO t VALUES (2)"))
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
    finally:
        release.set()
        holder.join(5)
    assert os.waitstatus_to_exitcode(status) == 0
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM t WHERE n = 2")).scalar_one() == 1


_HOLD_IN_ANOTHER_PROCESS = """
import sys, time
from sqlalchemy import text
from piguard.db.engine import make_engine
engine = make_engine(f"sqlite:///{sys.argv[1]}")
with engine.begin() as conn:
    conn.execute(text("INSERT INTO t VALUES (2)"))
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_s2_writers_of_two_processes_take_turns_on_the_lock_file(
    db_file: Path, engine: Engine
) -> None:
    """Another piguard process holding a write transaction holds the lock file: a bounded writer
    here gives up at its bound without meeting SQLite's busy handler, and one without a bound is
    woken as soon as the other commits."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen(  # noqa: S603 - our interpreter, our script
        [sys.executable, "-c", _HOLD_IN_ANOTHER_PROCESS, str(db_file), "1.5"],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "holding"
        started = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="another writer of piguard"):  # noqa: SIM117
            with write_before(engine, time.monotonic() + 0.2):
                pass
        assert time.monotonic() - started < 1.0
        with engine.begin() as conn:  # unbounded: waits for the other's commit
            conn.execute(text("INSERT INTO t VALUES (3)"))
        waited = time.monotonic() - started
    finally:
        holder.wait(10)
        assert holder.stdout is not None
        holder.stdout.close()
    assert 1.0 <= waited < 5
    with engine.connect() as conn:
        assert sorted(conn.execute(text("SELECT n FROM t")).scalars()) == [2, 3]
    assert (db_file.parent / "lock.db-writer.lock").stat().st_mode & 0o777 == 0o600
