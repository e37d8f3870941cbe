"""S2, C7, R2 across processes: two OS processes writing the same database lose nothing.

Each worker builds its own `Piguard` on the same database and key file (as two server processes
would), then records consents on the same subjects while reading them, in rounds: the test sends
every worker the order for event k and waits until each has answered before it sends k + 1. Both
run each round at the same time, on the same subject, and neither can starve the other or run
ahead: the interleaving comes from these barriers, not from sleeps. Afterwards the ledger holds
every event once, the audit chain is one gapless, verified chain with exactly one record per
audited operation, and every process's decisions agree with the fold of the ledger.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import textwrap
from itertools import pairwise
from pathlib import Path
from typing import IO

import pytest
from sqlalchemy import Engine, text

from piguard.audit.log import verify
from piguard.bootstrap import Piguard, build
from piguard.consent.model import current_consents
from piguard.consent.repository import ConsentRepository
from piguard.db.engine import make_engine
from piguard.db.uow import UnitOfWork
from piguard.kernel.errors import Denied
from piguard.policy import scopes
from piguard.policy.decision import Actor
from piguard.policy.model import ActorKind
from piguard.population import people
from piguard.settings import Settings
from piguard.vault.crypto import KeyMaterial

ACCOUNT = Actor(ActorKind.SERVICE, "account_service", principal="test")
MARKETING = Actor(ActorKind.SERVICE, "marketing_service", principal="test")
SEARCH = "user.behavior.search_history"
SCOPE = scopes.purpose_scope("personalization")
WORKERS = 2
SUBJECTS = 10
EVENTS = 100  # consent events per worker, alternating grant/withdraw per subject
# Audit records per worker: each consent write appends one in its transaction; each read after a
# write enqueues one; at the end one read per subject checks what that process decides.
AUDITED = EVENTS + EVENTS + SUBJECTS
HANG = 120.0  # seconds without an answer after which a worker is taken to hang (not a pace)

WORKER = textwrap.dedent(
    """
    import json, sys
    from piguard.bootstrap import build
    from piguard.kernel.errors import Denied
    from piguard.policy.decision import Actor
    from piguard.policy.model import ActorKind
    from piguard.settings import Settings

    job = json.loads(sys.argv[1])
    me, subjects = job["worker"], job["subjects"]
    ACCOUNT = Actor(ActorKind.SERVICE, "account_service", principal=f"worker{me}")
    MARKETING = Actor(ActorKind.SERVICE, "marketing_service", principal=f"worker{me}")
    SEARCH = ("user.behavior.search_history",)

    def say(line):
        print(line, flush=True)

    def decides(subject):
        try:
            app.vault.read(MARKETING, subject, "personalization", SEARCH)
        except Denied:
            return False
        return True

    app = build(Settings(dev=True, var_dir=job["var_dir"], database_url=job["database_url"]))
    say("ready")
    for order in sys.stdin:  # "event K", then "final": one answer each
        if order.startswith("final"):
            break
        k = int(order.split()[1])
        subject = subjects[k % len(subjects)]
        if (k // len(subjects) + me) % 2 == 0:
            app.consents.grant(ACCOUNT, subject, job["scope"])
        else:
            app.consents.withdraw(ACCOUNT, subject, job["scope"])
        decides(subject)
        say(f"done {k}")
    final = {s: decides(s) for s in subjects}
    app.audit.flush()
    app.close()
    say(json.dumps(final))
    """
)


def _settings(tmp_path: Path, database_url: str) -> Settings:
    url = None if database_url.startswith("sqlite") else database_url
    return Settings(dev=True, var_dir=tmp_path / "var", database_url=url)


def _start(
    settings: Settings, worker: int, subjects: list[str], stderr: IO[str]
) -> subprocess.Popen[str]:
    job = {
        "worker": worker,
        "subjects": subjects,
        "scope": SCOPE,
        "var_dir": str(settings.var_dir),
        "database_url": settings.database_url,
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIGUARD_")}
    return subprocess.Popen(  # noqa: S603 - this interpreter running our own fixed script
        [sys.executable, "-W", "error", "-c", WORKER, json.dumps(job)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env=env,
    )


def _order(procs: list[subprocess.Popen[str]], order: str) -> None:
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(order + "\n")
        proc.stdin.flush()


def _answers(procs: list[subprocess.Popen[str]], log: Path) -> list[str]:
    """The next line of every worker: the barrier of a round. A worker answers one line per
    order, so nothing is left in a pipe's buffer when `select` waits on it."""
    lines = []
    for proc in procs:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], HANG)
        line = proc.stdout.readline() if ready else ""
        if not line:
            pytest.fail(f"a worker stopped answering: {log.read_text()}")
        lines.append(line.strip())
    return lines


def _count(engine: Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


def _folds(engine: Engine, subjects: list[str]) -> dict[str, bool]:
    """Whether each subject's ledger, folded in order, ends with the scope granted."""
    with UnitOfWork(engine) as uow:
        repo = ConsentRepository(uow.connection)
        return {s: SCOPE in current_consents(repo.events(s)) for s in subjects}


def _decides(app: Piguard, subject: str) -> bool:
    try:
        app.vault.read(MARKETING, subject, "personalization", (SEARCH,))
    except Denied:
        return False
    return True


def test_s2_two_processes_append_audit_and_consents_without_loss(
    tmp_path: Path, database_url: str
) -> None:
    settings = _settings(tmp_path, database_url)
    setup = build(settings)  # migrates, and creates the key file both workers load
    subjects = [setup.vault.register(ACCOUNT, p.registration()) for p in people(SUBJECTS, seed=5)]
    keys = setup.keys
    setup.audit.flush()
    setup.close()
    engine = make_engine(settings.resolved_database_url)
    try:
        _run_and_check(settings, engine, subjects, keys)
    finally:
        engine.dispose()


def _run_workers(settings: Settings, subjects: list[str]) -> list[dict[str, bool]]:
    """Start the workers, lead them through the rounds, and return what each decides at the end."""
    log = settings.var_dir.parent / "workers.log"
    with log.open("w") as stderr:
        procs = [_start(settings, i, subjects, stderr) for i in range(WORKERS)]
        try:
            assert _answers(procs, log) == ["ready"] * WORKERS
            for k in range(EVENTS):
                _order(procs, f"event {k}")
                assert _answers(procs, log) == [f"done {k}"] * WORKERS
            _order(procs, "final")
            seen_by_workers = [json.loads(line) for line in _answers(procs, log)]
            codes = [proc.wait(HANG) for proc in procs]
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                for pipe in (proc.stdin, proc.stdout):
                    if pipe is not None:
                        pipe.close()
    assert codes == [0] * WORKERS, log.read_text()
    assert "Traceback" not in log.read_text()
    return seen_by_workers


def _run_and_check(
    settings: Settings, engine: Engine, subjects: list[str], keys: KeyMaterial
) -> None:
    before = _count(engine, "SELECT COUNT(*) FROM audit_records")
    assert before == SUBJECTS  # one record per registration

    seen_by_workers = _run_workers(settings, subjects)

    # The consent ledger: every event once, in a unique order.
    total_events = WORKERS * EVENTS
    assert _count(engine, "SELECT COUNT(*) FROM consent_events") == total_events
    assert _count(engine, "SELECT COUNT(DISTINCT seq) FROM consent_events") == total_events
    assert _count(engine, "SELECT COUNT(DISTINCT id) FROM consent_events") == total_events
    per_subject = WORKERS * EVENTS // SUBJECTS
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT subject_id, COUNT(*) FROM consent_events GROUP BY subject_id")
        )
        counts = {str(subject): int(n) for subject, n in rows}
    assert counts == dict.fromkeys(subjects, per_subject)
    with engine.connect() as conn:
        writers = conn.execute(
            text(
                "SELECT actor FROM audit_records WHERE detail IN ('grant', 'withdraw') ORDER BY seq"
            )
        ).scalars()
        switches = sum(a != b for a, b in pairwise(writers))
    assert switches >= EVENTS, "each round holds one write of each worker"
    # Every consent write bumps its subject's state version once: no bump is lost to a race.
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, state_version FROM subjects"))
        versions = {str(subject): int(version) for subject, version in rows}
    assert versions == dict.fromkeys(subjects, per_subject), "lost state_version updates"

    # The audit log: one gapless chain, verified, one record per audited operation.
    expected = before + WORKERS * AUDITED
    report = verify(engine, settings.checkpoint_file, [keys.signer.public_bytes()], keys.chain_key)
    assert report.ok, report.problems
    assert (report.records_checked, report.head_seq) == (expected, expected)
    assert _count(engine, "SELECT COUNT(*) FROM audit_records") == expected
    assert _count(engine, "SELECT COUNT(DISTINCT seq) FROM audit_records") == expected
    assert _count(engine, "SELECT MIN(seq) FROM audit_records") == 1
    assert _count(engine, "SELECT MAX(seq) FROM audit_records") == expected
    assert report.checkpoint_seq == expected  # each closing process signed its head
    writes = "SELECT COUNT(*) FROM audit_records WHERE action = 'update' AND detail IN "
    assert _count(engine, writes + "('grant', 'withdraw')") == total_events
    reads = (
        "SELECT COUNT(*) FROM audit_records WHERE action = 'read' AND purpose = 'personalization'"
    )
    assert _count(engine, reads) == WORKERS * (EVENTS + SUBJECTS)

    # Every process decides by the fold of the ledger: the workers at the end, and a fresh one.
    folds = _folds(engine, subjects)
    for worker, seen in enumerate(seen_by_workers):
        assert seen == folds, f"worker {worker} decides on a stale consent state"
    fresh = build(settings, migrate=False)
    try:
        for subject in subjects:
            assert _decides(fresh, subject) is folds[subject]
            _, current = fresh.consents.history(ACCOUNT, subject)
            assert (SCOPE in current) is folds[subject]
    finally:
        fresh.close()
