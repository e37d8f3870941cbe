"""One process's SQLite write transactions, taken in turn on a lock of its own.

SQLite lets one writer in at a time; the others wait in its busy handler, which sleeps 1, 2,
5, 10 ... ms between tries: a waiter often sleeps longer than the commit it waits for takes.
Threads of one process therefore queue on a `threading.Lock` per database file first, taken
just before `BEGIN IMMEDIATE` and given back when the transaction ends however it ends: commit,
rollback, close (SQLAlchemy closes an invalidated connection), a failed BEGIN, garbage
collection. SQLite's own lock stays what keeps writers apart; this lock only orders the
process's threads, and other processes still meet them in the busy handler.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from typing import Final

_guard = threading.Lock()
_LOCKS: Final[dict[str, _FileLock]] = {}


class LockNotHad(sqlite3.OperationalError):
    """The process's write lock was not had in time (as SQLite's "database is locked")."""


class _FileLock:
    """The write lock of one database file; replaced whole in a forked child."""

    def __init__(self) -> None:
        self.lock = threading.Lock()


def file_lock(database: str) -> _FileLock:
    """The process's write lock for the database file at `database`."""
    key = os.path.realpath(database)
    with _guard:
        return _LOCKS.setdefault(key, _FileLock())


class SerialisedConnection(sqlite3.Connection):
    """A sqlite3 connection whose write transactions hold its file's process lock.

    Invariant: the lock is held from `begin_write` until the transaction's end, and given back
    exactly once (the lock object taken is the one given back, even across a fork)."""

    file_lock: _FileLock | None = None  # set once connected; None: a private (memory) database
    _held: threading.Lock | None = None

    def begin_write(self, wait: float | None, busy_ms: int) -> None:
        """`BEGIN IMMEDIATE` with the file's lock held; waiting `wait` seconds at most for both
        (None: `busy_ms`, SQLite's own bound). Raises sqlite3.OperationalError when not had."""
        started = time.monotonic()
        bound = busy_ms / 1000 if wait is None else wait
        if self.file_lock is not None and self._held is None:
            lock = self.file_lock.lock
            if not lock.acquire(timeout=bound):
                raise LockNotHad("database is locked (by a thread of this process)")
            self._held = lock
        try:
            if wait is None:
                self.execute("BEGIN IMMEDIATE")
                return
            left = max(round((bound - (time.monotonic() - started)) * 1000), 1)
            self.execute(f"PRAGMA busy_timeout={left}")
            try:
                self.execute("BEGIN IMMEDIATE")
            finally:
                self.execute(f"PRAGMA busy_timeout={busy_ms}")
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.release()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.release()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.release()

    def __del__(self) -> None:
        self.release()


def _fresh_locks_in_child() -> None:
    """A forked child has only the forking thread: locks its parent's threads held are not
    its own, so each file gets a new lock (connections keep the old one to give back)."""
    global _guard
    _guard = threading.Lock()
    for entry in list(_LOCKS.values()):
        entry.lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_locks_in_child)
