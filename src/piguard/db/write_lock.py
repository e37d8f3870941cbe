"""SQLite write transactions taken in turn: a thread lock within a process, a file lock across.

SQLite lets one writer in at a time; the others wait in its busy handler, which sleeps 1, 2,
5, 10 ... ms between tries: a waiter often sleeps longer than the commit it waits for takes,
and two processes that commit often starve each other. So a writer first takes its process's
`threading.Lock` for the database file, then an exclusive `flock` on `<database>-writer.lock`
(the kernel wakes a waiter as soon as it is free), just before `BEGIN IMMEDIATE`; both are given
back when the transaction ends however it ends: commit, rollback, close (SQLAlchemy closes an
invalidated connection), a failed BEGIN, garbage collection. SQLite's own lock stays what keeps
writers apart; these only order piguard's writers, and any other writer still meets them in the
busy handler.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from typing import Final

_guard = threading.Lock()
_LOCKS: Final[dict[str, _FileLock]] = {}


class LockNotHad(sqlite3.OperationalError):
    """The process's write lock was not had in time (as SQLite's "database is locked")."""


_POLL: Final = 0.0005  # seconds between tries for the file lock when the wait is bounded


class _FileLock:
    """The write lock of one database file: the process's thread lock, and the lock file that
    orders processes (opened on first use; a forked child opens its own)."""

    def __init__(self, path: str) -> None:
        self.lock = threading.Lock()
        self.path = path
        self.fd: int | None = None

    def acquire(self, bound: float, blocking: bool) -> bool:
        """Both locks, within `bound` seconds; `blocking`: the file lock as long as it takes
        (the kernel wakes the waiter), else polled. False, holding neither, when not had."""
        started = time.monotonic()
        if not self.lock.acquire(timeout=bound):
            return False
        try:
            if self._lock_file(started + bound, blocking):
                return True
        except BaseException:
            self.lock.release()
            raise
        self.lock.release()
        return False

    def release(self, lock: threading.Lock) -> None:
        """Give back both (`lock`: the thread lock taken, even if a fork replaced it since)."""
        try:
            if self.fd is not None and lock is self.lock:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            lock.release()

    def _lock_file(self, deadline: float, blocking: bool) -> bool:
        if self.fd is None:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        if blocking:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            return True
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(_POLL)

    def forked(self) -> None:
        """In a forked child: the parent's locks are not its own (the open lock file is shared
        with the parent, so it is closed here and opened afresh)."""
        self.lock = threading.Lock()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def file_lock(database: str) -> _FileLock:
    """The process's write lock for the database file at `database`."""
    key = os.path.realpath(database)
    with _guard:
        return _LOCKS.setdefault(key, _FileLock(key + "-writer.lock"))


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
            if not self.file_lock.acquire(bound, blocking=wait is None):
                raise LockNotHad("database is locked (by another writer of piguard)")
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
        if held is not None and self.file_lock is not None:
            self.file_lock.release(held)

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
        entry.forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_locks_in_child)
