"""No personal data leaves before the record of that access is durable (S2), through real HTTP.

A second connection holds the SQLite write lock: reads answer 503 with a retry hint and nothing
of the subject, instead of the data. A server process killed with SIGKILL mid-traffic: every read
that returned data has its audit record. A server stopped cleanly: every refusal is recorded.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import httpx
import pytest
from api_support import NAME, Api, Person, new_person, running_api, write_locked

import piguard
from piguard.audit.chain import encode
from piguard.bootstrap import build
from piguard.policy.decision import Actor
from piguard.policy.model import ActorKind
from piguard.settings import Settings

SOURCES = str(Path(piguard.__file__).resolve().parents[1])
ACCOUNT = Actor(ActorKind.SERVICE, "account_service", principal="test")


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with running_api(tmp_path / "var") as running:
        yield running


def test_s2_reads_get_503_not_data_while_the_log_cannot_be_written(api: Api) -> None:
    who: Person = new_person()
    subject_id = api.register(who)
    token = api.piguard.api_keys.create("subject", "lock test", subject_id).token
    headers = {"Authorization": f"Bearer {token}"}
    url = f"/v1/subjects/{subject_id}?purpose=self_service"
    with api.raw() as http:
        with write_locked(api.var_dir / "piguard.db"):
            answers = [http.get(url, headers=headers) for _ in range(2)]
        for answer in answers:
            assert answer.status_code == 503
            assert answer.headers["Retry-After"] == "1"
            body = answer.json()
            assert body["code"] == "audit_unavailable"
            assert body["message"]["zh"]
            assert body["message"]["en"]
            for value in who.values.values():
                assert value not in answer.text
        after = http.get(url, headers=headers)  # the lock is gone: reads go on
    assert after.status_code == 200
    assert who.name in after.text
    reads = [r for r in api.records_since(0) if r["action"] == "read" and r["subject"]]
    assert len(reads) == 3  # the refused attempts stay recorded, once the log could write


def test_s2_a_decision_is_answered_only_once_its_record_is_durable(api: Api) -> None:
    """The caller of /v1/decide enforces the answer itself: it gets one only when the record of
    it is committed, and a 503 with a retry hint while the log cannot be written."""
    token = api.piguard.api_keys.create("customer_service_agent", "decide durability").token
    headers = {"Authorization": f"Bearer {token}"}
    body = {"action": "read", "purpose": "customer_service", "categories": [NAME]}
    with api.raw() as http:
        with write_locked(api.var_dir / "piguard.db"):
            refused = http.post("/v1/decide", json=body, headers=headers)
        answered = http.post("/v1/decide", json=body, headers=headers)
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "1"
    assert refused.json()["code"] == "audit_unavailable"
    assert answered.status_code == 200
    assert answered.json()["effect"] == "allow"
    # Read straight from the file, no flush: the answer's record is already there.
    with closing(sqlite3.connect(f"file:{api.var_dir / 'piguard.db'}?mode=ro", uri=True)) as db:
        decided = db.execute(
            "SELECT COUNT(*) FROM audit_records WHERE detail = 'decide' AND actor LIKE ?",
            (f"staff:customer_service_agent:{token.split('.')[0].removeprefix('pgk_')}%",),
        ).fetchone()[0]
    assert decided == 2  # the answer, and the attempt refused while the log was locked


# --- a server in a process of its own ----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _prepared(var_dir: Path, subjects: int) -> list[tuple[str, str]]:
    """Register subjects and mint each its key, in-process, before the server starts."""
    app = build(Settings(dev=True, var_dir=var_dir))
    try:
        made = []
        for _ in range(subjects):
            sid = app.vault.register(ACCOUNT, new_person().values)
            made.append((sid, app.api_keys.create("subject", "durability", sid).token))
    finally:
        app.close()
    return made


@contextmanager
def served_process(var_dir: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`piguard serve` in a process of its own; its base URL once it answers."""
    port = _free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": SOURCES,
        "PIGUARD_DEV": "1",
        "PIGUARD_VAR_DIR": str(var_dir),
    }
    proc = subprocess.Popen(  # noqa: S603 - our own CLI with fixed arguments
        [sys.executable, "-m", "piguard.cli.main", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, "the server exited"
            assert time.monotonic() < deadline, "the server did not start"
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        yield proc, base
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)


def _audited(var_dir: Path, effect: str) -> Counter[str]:
    with closing(sqlite3.connect(f"file:{var_dir / 'piguard.db'}?mode=ro", uri=True)) as db:
        rows = db.execute(
            "SELECT subject FROM audit_records WHERE action = 'read' AND effect = ?", (effect,)
        )
        return Counter(str(subject) for (subject,) in rows)


def test_s2_after_a_sigkill_every_read_that_returned_data_is_recorded(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"
    subjects = _prepared(var_dir, 6)
    returned: Counter[str] = Counter()
    stop = threading.Event()

    def reader(k: int) -> None:
        with httpx.Client(base_url=base, timeout=5) as http:
            i = k
            while not stop.is_set():
                sid, token = subjects[i % len(subjects)]
                i += 1
                try:
                    answer = http.get(
                        f"/v1/subjects/{sid}?purpose=self_service",
                        headers={"Authorization": f"Bearer {token}"},
                    )
                except httpx.HTTPError:
                    return  # the server is gone
                if answer.status_code == 200 and answer.json()["values"]:
                    returned[sid] += 1  # personal data left the server

    with served_process(var_dir) as (proc, base):
        readers = [threading.Thread(target=reader, args=(k,)) for k in range(4)]
        for thread in readers:
            thread.start()
        deadline = time.monotonic() + 30
        while sum(returned.values()) < 40 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)  # mid-traffic: no shutdown, no flush
        proc.wait(30)
        stop.set()
        for thread in readers:
            thread.join(10)
    assert sum(returned.values()) >= 40
    recorded = _audited(var_dir, "allow")
    missing = {sid: n - recorded[sid] for sid, n in returned.items() if recorded[sid] < n}
    assert missing == {}, "reads returned data without a durable audit record"


def test_s2_a_clean_shutdown_loses_no_refusal(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"
    (own, token), (other, _) = _prepared(var_dir, 2)
    with served_process(var_dir) as (proc, base):
        # The log cannot write while the refusals come in and the server is told to stop: they
        # are still queued when it shuts down, and written by its close once the lock is gone.
        with write_locked(var_dir / "piguard.db"), httpx.Client(base_url=base, timeout=5) as http:
            for _ in range(50):  # another subject's data: refused, the refusal only queued
                answer = http.get(
                    f"/v1/subjects/{other}?purpose=self_service",
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert answer.status_code in (403, 404)
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            assert sum(_audited(var_dir, "deny").values()) == 0
        assert proc.wait(60) == 0
    assert own != other
    assert sum(_audited(var_dir, "deny").values()) == 50


def test_s2_a_record_forged_with_plain_sql_fails_the_api_verify_and_is_never_sealed(
    api: Api,
) -> None:
    """The attack of issue 8: a correctly chained record appended with plain SQL, its hash
    computed as a writer without the chain key can (the old unkeyed SHA-256)."""
    subject_id = api.register(new_person())
    auditor = api.as_role("auditor")
    assert auditor.audit_verify()["ok"] is True
    db_file = api.var_dir / "piguard.db"
    with closing(sqlite3.connect(db_file, isolation_level=None)) as db:
        seq, head, at = db.execute(
            "SELECT seq, hash, at FROM audit_records ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        row = (
            seq + 1, at, "staff:forger", "read", "customer_service", subject_id, "user.name",
            "allow", "S2", api.piguard.policy.key, "forged", head,
        )  # fmt: skip
        digest = hashlib.sha256(head.encode() + encode(*row)).hexdigest()
        db.execute("BEGIN IMMEDIATE")
        marks = ", ".join("?" * 13)
        db.execute(f"INSERT INTO audit_records VALUES ({marks})", (*row, digest))  # noqa: S608
        db.execute("COMMIT")
    for _ in range(3):  # more traffic, checkpoints due
        time.sleep(1.1)
        api.as_subject(subject_id).read(subject_id, "self_service")
    api.piguard.audit.flush()

    report = auditor.audit_verify()

    assert report["ok"] is False
    assert (report["problems"][0]["kind"], report["problems"][0]["seq"]) == ("edited", seq + 1)
    assert report["checkpoint_seq"] <= seq
    assert report["unsealed"] == report["head_seq"] - report["checkpoint_seq"] >= 4
    with closing(sqlite3.connect(f"file:{db_file}?mode=ro", uri=True)) as db:
        assert db.execute("SELECT max(seq) FROM audit_checkpoints").fetchone()[0] <= seq
