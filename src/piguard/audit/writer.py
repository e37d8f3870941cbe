"""Writing audit records: drafts checked, then chained and inserted under the chain's lock.

Writers are serialised on the chain head: on PostgreSQL by a transaction-scoped advisory lock, on
SQLite by the write lock every transaction takes at `BEGIN IMMEDIATE` (`db.engine.make_engine`).
The primary key on `seq` is the last line: a writer that raced anyway fails, it never forks.

A record's `at` is stamped here, under the lock, and never earlier than the head's `at`: seq
order and time order agree across processes, even when a clock steps back.

Insert-only: nothing here updates or deletes audit rows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from itertools import chain
from typing import Any, Final

from sqlalchemy import Connection, Engine, Select, insert, select

from piguard.audit.chain import (
    COLUMNS,
    GENESIS,
    ChainBuilder,
    LinkKey,
    Row,
    bounded_keys,
    check_subject,
    format_at,
    is_at,
)
from piguard.audit.ports import AuditDraft
from piguard.audit.tables import AuditRecordRow
from piguard.db.in_lists import Bound
from piguard.kernel.clock import Clock

LOCK_KEY: Final = 0x5049_4755_4152_4400  # "PIGUARD\0": the chain's advisory lock on PostgreSQL
_CHUNK: Final = 75  # rows per INSERT: 975 parameters, under SQLite's oldest limit of 999
_HEAD: Final = (
    select(AuditRecordRow.seq, AuditRecordRow.hash, AuditRecordRow.at)
    .order_by(AuditRecordRow.seq.desc())
    .limit(1)
)
_HEAD_SQL: Final = "SELECT seq, hash, at FROM audit_records ORDER BY seq DESC LIMIT 1"
_LOCK_SQL: Final = f"SELECT pg_advisory_xact_lock({LOCK_KEY})"
_CHECK_AT: Final = "2000-01-01T00:00:00.000000+00:00"  # any well-formed time, to check a draft
_checker = threading.local()


def lock_chain(conn: Connection) -> None:
    """Take the chain's lock for the rest of `conn`'s transaction (SQLite: it holds it already);
    once per transaction (the lock stacks: a second take would cost a round trip only)."""
    if conn.dialect.name != "postgresql":
        return
    if not conn.in_transaction():
        conn.begin()
    transaction = conn.get_transaction()
    if conn.info.get(_LOCKED_IN) is transaction:
        return
    conn.exec_driver_sql(_LOCK_SQL)
    conn.info[_LOCKED_IN] = transaction


_LOCKED_IN: Final = "piguard_chain_locked_in"  # the transaction that holds the chain's lock
_HEAD_IN: Final = "piguard_chain_head_in"  # (transaction, head row) read with the lock


def locked_reads(conn: Connection, queries: Sequence[Bound]) -> list[list[tuple[Any, ...]]]:
    """Take the chain's lock, then run `queries` (each one's rows) and read the chain's head
    for the next `ChainWriter.write` in this transaction: what they read was committed before
    this transaction's place in the chain. On PostgreSQL in one round trip (a pipeline), the
    queries sent as the driver's own SQL; on SQLite the transaction holds the lock already."""
    if conn.dialect.name != "postgresql":
        return [[tuple(row) for row in conn.execute(*query)] for query in queries]
    raw = _raw(conn)
    statements = [
        (_LOCK_SQL, None),
        *((_driver_sql(conn, query), params) for query, params in queries),
        (_HEAD_SQL, None),
    ]
    with raw.pipeline():  # psycopg's
        cursors = [raw.cursor() for _ in statements]
        for cursor, (sql, params) in zip(cursors, statements, strict=True):
            cursor.execute(sql, params)
    rows = [cursor.fetchall() for cursor in cursors]
    transaction = conn.get_transaction()
    conn.info[_LOCKED_IN] = transaction
    conn.info[_HEAD_IN] = (transaction, rows[-1][0] if rows[-1] else None)
    return [[tuple(row) for row in found] for found in rows[1:-1]]


@contextmanager
def pipelined(conn: Connection) -> Iterator[None]:
    """On PostgreSQL, statements sent without waiting for their results until the block's end
    or a commit in it (one round trip for the chain's inserts and the commit)."""
    if conn.dialect.name != "postgresql":
        yield
        return
    with _raw(conn).pipeline():  # psycopg's
        yield


def _driver_sql(conn: Connection, query: Select[Any]) -> str:
    """The statement as the driver's SQL (named parameters), compiled once per statement: the
    statements come from `db.in_lists`, a few fixed ones."""
    known = _compiled.get(id(query))
    if known is not None and known[0] is query:
        return known[1]
    sql = query.compile(dialect=conn.dialect).string
    if len(_compiled) >= _COMPILED:
        _compiled.clear()
    _compiled[id(query)] = (query, sql)
    return sql


_COMPILED: Final = 512
_compiled: dict[int, tuple[Select[Any], str]] = {}


class ChainWriter:
    """Chains checked drafts after the stored head and inserts them, in the caller's transaction.

    Invariant: records get gapless seqs in the order given, and non-decreasing times.
    """

    def __init__(self, engine: Engine, key: LinkKey, clock: Clock) -> None:
        self._key = key
        self._clock = clock
        self._insert = _insert_sql(engine)

    def write(
        self,
        conn: Connection,
        drafts: Sequence[AuditDraft],
        first: Callable[[], Sequence[AuditDraft]] | None = None,
    ) -> tuple[int, str]:
        """Chain and insert `drafts` (each passed `check`); the new head's (seq, hash). `first`
        gives, once the chain's lock is held, checked drafts to chain before them."""
        lock_chain(conn)
        seq, head, head_at = self._head(conn)
        if first is not None:
            drafts = [*first(), *drafts]
        builder = ChainBuilder(self._key, seq, head)
        at = max(format_now(self._clock.now()), head_at)  # a clock may step back: not the record
        link = builder.append_checked
        rows = [
            link(
                at, d.actor, d.action, d.purpose, d.subject, d.categories, d.effect, d.clauses,
                d.policy_version, d.detail,
            )
            for d in drafts
        ]  # fmt: skip
        self._insert_rows(conn, rows)
        return builder.last_seq, builder.last_hash

    def _head(self, conn: Connection) -> tuple[int, str, str]:
        """The stored head (seq, hash, at), read under the chain's lock (by `locked_reads`, or
        now); nothing: genesis."""
        read = conn.info.pop(_HEAD_IN, None)
        if read is not None and read[0] is conn.get_transaction():
            head = read[1]
        elif self._insert is None:
            head = conn.execute(_HEAD).first()
        else:
            with closing(_cursor(conn)) as cur:
                cur.execute(_HEAD_SQL)
                head = cur.fetchone()
        if head is None:
            return 0, GENESIS, ""
        at = head[2] if is_at(head[2]) else ""  # an edited head's odd time is not carried on
        return int(head[0]), str(head[1]), at

    def _insert_rows(self, conn: Connection, rows: list[Row]) -> None:
        if self._insert is not None:
            # Multi-row VALUES: one statement per chunk rather than per row, so the writer gives
            # up the GIL (to threads that enqueue) once a chunk, and PostgreSQL gets one message.
            with closing(_cursor(conn)) as cur:
                for start in range(0, len(rows), _CHUNK):
                    part = rows[start : start + _CHUNK]
                    cur.execute(self._insert(len(part)), tuple(chain.from_iterable(part)))
        else:
            conn.execute(insert(AuditRecordRow), [dict(zip(COLUMNS, r, strict=True)) for r in rows])


def format_now(moment: datetime) -> str:
    """The same text as `chain.format_at`: in UTC, the part up to the second is formatted once
    a second (`isoformat` would cost a third of a record)."""
    global _second  # one (key, text) pair, replaced whole: safe across threads
    if moment.tzinfo is not UTC:
        return format_at(moment)
    key = (moment.second, moment.minute, moment.hour, moment.day, moment.month, moment.year)
    last = _second
    if last[0] != key:
        last = _second = (key, moment.isoformat(timespec="seconds")[:-6])
    return f"{last[1]}.{moment.microsecond:06d}+00:00"


_second: tuple[tuple[int, ...], str] = ((), "")


def check(draft: AuditDraft) -> AuditDraft:
    """The draft to chain, its category keys bounded (`chain.bounded_keys`: a caller's unknown
    key is recorded only in a short sanitised form); InvalidInput now for any other field the
    chain would refuse later, so a bad draft fails its caller, never a batch.

    Drafts repeat but for their subject: once a draft's other fields passed, only the subject is
    checked again. Only drafts that needed no bounding are remembered, so a remembered shape
    never skips it."""
    shape = (
        draft.actor, draft.action, draft.purpose, draft.categories, draft.effect, draft.clauses,
        draft.policy_version, draft.detail,
    )  # fmt: skip
    if shape in _checked_shapes:
        check_subject(draft.subject)
        return draft
    try:
        keys = bounded_keys(tuple(draft.categories))
    except TypeError:  # an unhashable key: the chain's check names the field
        keys = draft.categories
    bounded = keys != draft.categories
    if bounded:
        draft = replace(draft, categories=keys)
    _full_check(draft)
    if not bounded and len(_checked_shapes) < _SHAPES:
        _checked_shapes.add(shape)
    return draft


def for_subject(checked: AuditDraft, subject: str) -> AuditDraft:
    """A checked draft about another subject: only the subject is checked."""
    check_subject(subject)
    c = checked  # the constructor: dataclasses.replace costs several times more
    return AuditDraft(
        c.actor, c.action, c.purpose, subject, c.categories, c.effect, c.clauses,
        c.policy_version, c.detail,
    )  # fmt: skip


_SHAPES: Final = 10_000
_checked_shapes: set[tuple[object, ...]] = set()


class _NoKey:
    """The key of the builder that only checks drafts: its links are never stored."""

    def mac(self, data: bytes) -> str:
        return "0" * 64


def _full_check(draft: AuditDraft) -> None:
    builder = getattr(_checker, "builder", None)
    if builder is None:
        builder = _checker.builder = ChainBuilder(_NoKey())  # one per thread
    builder.append(
        at=_CHECK_AT, actor=draft.actor, action=draft.action, purpose=draft.purpose,
        subject=draft.subject, categories=draft.categories, effect=draft.effect,
        clauses=draft.clauses, policy_version=draft.policy_version, detail=draft.detail,
    )  # fmt: skip


def _cursor(conn: Connection) -> Any:
    """A cursor of the driver's connection under `conn`, inside its transaction. The chain's
    statements carry text and integers only: SQLAlchemy's per-statement work (type processing,
    result wrapping) would cost more than the SQL on this hot path."""
    return _raw(conn).cursor()


def _raw(conn: Connection) -> Any:
    """The driver's connection under `conn`, in `conn`'s transaction (begun now if need be: the
    driver must not run a statement in autocommit, outside the unit)."""
    if not conn.in_transaction():
        conn.begin()
    raw = conn.connection.dbapi_connection
    assert raw is not None  # noqa: S101 - a connection in a transaction has one
    return raw


def _insert_sql(engine: Engine) -> Callable[[int], str] | None:
    """The INSERT of n rows (1 to `_CHUNK`) in the driver's paramstyle (None: use Core)."""
    mark = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(engine.dialect.paramstyle)
    if mark is None:
        return None
    row = "(" + ", ".join([mark] * len(COLUMNS)) + ")"
    head = f"INSERT INTO audit_records ({', '.join(COLUMNS)}) VALUES "  # noqa: S608
    statements = [head + ", ".join([row] * n) for n in range(_CHUNK + 1)]
    return statements.__getitem__
