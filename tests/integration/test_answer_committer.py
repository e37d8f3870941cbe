"""The answer committer on each backend: a record is committed only in a transaction that found
its basis current (the key unrevoked, each subject's state version and status unchanged);
otherwise nothing is written and the waiter hears `Stale`. Bounds: a full queue, a closed
committer and a locked database are refusals (AuditUnavailable), never a hang."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import func, select

from piguard.audit.ports import AuditDraft, AuditUnavailable
from piguard.audit.tables import AuditRecordRow
from piguard.audit.writer import LOCK_KEY
from piguard.auth.service import ApiKeys
from piguard.bootstrap import Piguard
from piguard.committer import AnswerCommitter, Basis, Stale
from piguard.policy.decision import Actor
from piguard.policy.model import ActorKind
from piguard.population import people

ACCOUNT = Actor(ActorKind.SERVICE, "account_service", principal="test")
DETAIL = "committer-test"


def _draft(app: Piguard, subject: str) -> AuditDraft:
    return AuditDraft(
        actor="staff:customer_service_agent",
        action="read",
        purpose="customer_service",
        subject=subject,
        categories=("user.name",),
        effect="allow",
        clauses=("P1", "S2"),
        policy_version=app.policy.key,
        detail=DETAIL,
    )


def _written(app: Piguard) -> int:
    with app.transactions.read() as uow:
        query = select(func.count()).where(AuditRecordRow.detail == DETAIL)
        return int(uow.connection.scalar(query) or 0)


def _subject(app: Piguard, seed: int) -> tuple[str, tuple[int, str]]:
    """A registered subject and its (state version, status), read as a decision reads it."""
    subject = app.vault.register(ACCOUNT, next(iter(people(1, seed=seed))).registration())
    app.vault.snapshot(subject)
    cached = app.vault.cached_state(subject)
    assert cached is not None
    return subject, cached[1]


def _own(app: Piguard, subject: str) -> Actor:
    """The subject's own actor, as its key authenticates."""
    return app.api_keys.authenticate(app.api_keys.create("subject", "own", subject).token).actor


def _commit(committer: AnswerCommitter, *asked: tuple[Basis, list[AuditDraft]]) -> list[object]:
    """Ask in one loop turn (one batch); each outcome: None (committed) or the exception."""

    async def all_of() -> list[object]:
        return await asyncio.gather(
            *(committer.commit(basis, drafts) for basis, drafts in asked), return_exceptions=True
        )

    return asyncio.run(all_of())


def test_s2_a_current_basis_commits_and_a_stale_one_writes_nothing(app: Piguard) -> None:
    key = app.api_keys.create("customer_service_agent", "agent")
    current, version = _subject(app, 1)
    changed, old = _subject(app, 2)
    app.consents.grant(_own(app, changed), changed, "purpose:personalization")

    outcomes = _commit(
        app.answers,
        (Basis(key.key_id, ((current, version),)), [_draft(app, current)]),
        (Basis(key.key_id, ((changed, old),)), [_draft(app, changed)]),
        (Basis(key.key_id, ((current, version), (changed, old))), [_draft(app, current)]),
    )

    assert outcomes[0] is None
    assert isinstance(outcomes[1], Stale)
    assert isinstance(outcomes[2], Stale)
    assert _written(app) == 1


def test_s2_a_revoked_key_or_an_unknown_subject_is_stale(app: Piguard) -> None:
    key = app.api_keys.create("customer_service_agent", "agent")
    subject, version = _subject(app, 3)
    app.api_keys.revoke(key.key_id)
    live = app.api_keys.create("customer_service_agent", "agent 2")

    outcomes = _commit(
        app.answers,
        (Basis(key.key_id), [_draft(app, "")]),
        (Basis(live.key_id, (("sub_nobody", version),)), [_draft(app, "sub_nobody")]),
        (Basis("key_never_issued"), [_draft(app, "")]),
        (Basis(live.key_id, ((subject, version),)), [_draft(app, subject)]),
    )

    assert [type(o) for o in outcomes[:3]] == [Stale, Stale, Stale]
    assert outcomes[3] is None
    assert _written(app) == 1


def test_s2_erasure_makes_a_cached_basis_stale(app: Piguard) -> None:
    key = app.api_keys.create("customer_service_agent", "agent")
    subject, version = _subject(app, 4)
    app.vault.erase_subject(_own(app, subject), subject)

    (outcome,) = _commit(
        app.answers, (Basis(key.key_id, ((subject, version),)), [_draft(app, subject)])
    )

    assert isinstance(outcome, Stale)
    assert _written(app) == 0


def _committer(app: Piguard, **bounds: float) -> AnswerCommitter:
    return AnswerCommitter(
        app.transactions,
        app.audit.append,
        ApiKeys.live_query,
        app.vault.versions_query,
        **bounds,  # type: ignore[arg-type]
    )


def test_s2_a_full_queue_and_a_closed_committer_refuse_at_once(app: Piguard) -> None:
    full = _committer(app, max_pending=2)
    drafts = [_draft(app, "")] * 3

    (over,) = _commit(full, (Basis(), drafts))
    full.close()
    (closed,) = _commit(full, (Basis(), drafts[:1]))

    assert isinstance(over, AuditUnavailable)
    assert "full" in over.message.en
    assert isinstance(closed, AuditUnavailable)
    assert _written(app) == 0


@contextmanager
def _locked(app: Piguard, tmp_path: Path) -> Iterator[None]:
    """Another connection holds the lock every audit writer takes: SQLite's write lock, or the
    chain's advisory lock on PostgreSQL."""
    if app.db.dialect.name == "postgresql":
        with app.db.connect() as conn:
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({LOCK_KEY})")
            yield
            conn.rollback()
        return
    holder = sqlite3.connect(tmp_path / "var" / "piguard.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        yield
        holder.execute("ROLLBACK")
    finally:
        holder.close()


def test_s2_a_locked_database_is_refused_within_the_wait_bound(
    app: Piguard, tmp_path: Path
) -> None:
    bounded = _committer(app, wait_seconds=0.3)
    with _locked(app, tmp_path):
        (outcome,) = _commit(bounded, (Basis(), [_draft(app, "")]))
    bounded.close()

    assert isinstance(outcome, AuditUnavailable)
    assert "timed out" in outcome.message.en


def test_s2_an_answer_given_up_before_its_commit_began_is_not_written(
    app: Piguard, tmp_path: Path
) -> None:
    """No pile-up: behind a commit stuck on a lock, answers whose waiters gave up are dropped;
    the commit already under way still lands once the lock goes."""
    bounded = _committer(app, wait_seconds=0.3)

    async def stuck_then_queued() -> list[object]:
        under_way = asyncio.ensure_future(bounded.commit(Basis(), [_draft(app, "sub_a")]))
        await asyncio.sleep(0.1)  # handed over and taken: the thread waits for the lock
        behind = asyncio.ensure_future(bounded.commit(Basis(), [_draft(app, "sub_b")]))
        return await asyncio.gather(under_way, behind, return_exceptions=True)

    with _locked(app, tmp_path):
        outcomes = asyncio.run(stuck_then_queued())
    bounded.close()  # the stuck commit ends first

    assert [type(o) for o in outcomes] == [AuditUnavailable, AuditUnavailable]
    with app.transactions.read() as uow:
        subjects = uow.connection.scalars(
            select(AuditRecordRow.subject).where(AuditRecordRow.detail == DETAIL)
        ).all()
    assert subjects == ["sub_a"]


def test_s2_a_revocation_committing_while_the_commit_waits_for_the_chain_is_seen(
    app: Piguard, tmp_path: Path
) -> None:
    """The basis is checked under the chain's lock, not before it: a revocation that holds the
    lock (as every audited change does until it commits) and commits while an answer's commit
    waits is seen by that commit's checks, so the answer is never chained after it."""
    key = app.api_keys.create("customer_service_agent", "agent")
    revoke = "UPDATE api_keys SET revoked_at = CURRENT_TIMESTAMP WHERE id = {}"

    async def asked_while_revoking(revoking: Callable[[], None]) -> object:
        commit = asyncio.ensure_future(
            app.answers.commit(Basis(key.key_id), [_draft(app, "sub_r")])
        )
        await asyncio.sleep(0.2)  # taken by the writer thread: it waits for the lock
        revoking()
        (outcome,) = await asyncio.gather(commit, return_exceptions=True)
        return outcome

    if app.db.dialect.name == "postgresql":
        with app.db.connect() as holder:
            holder.exec_driver_sql(f"SELECT pg_advisory_xact_lock({LOCK_KEY})")
            holder.exec_driver_sql(revoke.format("%s"), (key.key_id,))
            outcome = asyncio.run(asked_while_revoking(holder.commit))
    else:
        sqlite = sqlite3.connect(tmp_path / "var" / "piguard.db", isolation_level=None)
        try:
            sqlite.execute("BEGIN IMMEDIATE")
            sqlite.execute(revoke.format("?"), (key.key_id,))
            outcome = asyncio.run(asked_while_revoking(lambda: sqlite.execute("COMMIT")))
        finally:
            sqlite.close()

    assert isinstance(outcome, Stale)
    assert _written(app) == 0


def test_s2_committed_answers_chain_with_every_other_writer_and_verify(app: Piguard) -> None:
    """The head read with the checks (one round trip on PostgreSQL) is the head the records
    chain to: batches of answers between records written by the other paths (a read's
    `record`, refusals queued to ride on the next commit) leave one gapless chain that
    verifies."""
    subject, version = _subject(app, 3)
    basis = Basis(None, ((subject, version),))
    for round_ in range(3):
        app.audit.record(_draft(app, f"direct_{round_}"))
        app.audit.enqueue(_draft(app, f"queued_{round_}"))
        outcomes = _commit(app.answers, *[(basis, [_draft(app, subject)] * 2)] * 3)
        assert outcomes == [None, None, None]
    app.audit.flush(timeout=10)

    report = app.audit.verify()
    assert report.ok, report
    assert _written(app) == 3 * (1 + 1 + 6)
