"""A real server process killed (SIGKILL) in the middle of an erasure, then started again (S2, R4).

The key store is held locked by this test, so the server's erasure stops after its tombstone
committed, waiting to destroy the key; the process is killed there. The next start finishes the
erasure: key gone, subject erased, the audit chain sound, every read refused.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from erasure_support import has_key, records, status_of
from sqlalchemy import Engine, text

from piguard.bootstrap import build
from piguard.db.engine import make_engine
from piguard.kernel.errors import NotFound, Unauthenticated
from piguard.policy.decision import Actor
from piguard.policy.model import ActorKind
from piguard.population import people
from piguard.settings import Settings
from piguard.vault.erasure import RECOVERY_ACTOR

ACCOUNT = Actor(ActorKind.SERVICE, "account_service", principal="test")
PHONE = "user.contact.phone_number"
_WAIT = 60.0

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(settings: Settings, database_url: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PIGUARD_DEV": "1", "PIGUARD_VAR_DIR": str(settings.var_dir)}
    if settings.database_url is not None:
        env["PIGUARD_DATABASE_URL"] = database_url
    command = [sys.executable, "-m", "piguard.cli.main", "serve", "--host", "127.0.0.1"]
    return subprocess.Popen(  # noqa: S603 - this interpreter, piguard's own CLI
        [*command, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _until(check: object, what: str) -> None:
    deadline = time.monotonic() + _WAIT
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def _status(engine: Engine, subject: str) -> str:
    with engine.connect() as conn:
        found = conn.execute(text("SELECT status FROM subjects WHERE id = :s"), {"s": subject})
        return str(found.scalar_one())


def has_key_in(settings: Settings, subject: str) -> bool:
    with sqlite3.connect(f"file:{settings.var_dir / 'keystore.db'}?mode=ro", uri=True) as db:
        found = db.execute("SELECT COUNT(*) FROM data_keys WHERE subject_id = ?", (subject,))
        return bool(found.fetchone()[0])


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_s2_r4_a_server_killed_mid_erasure_finishes_it_at_the_next_start(
    tmp_path: Path, database_url: str
) -> None:
    url = None if database_url.startswith("sqlite") else database_url
    settings = Settings(dev=True, var_dir=tmp_path / "var", database_url=url)
    who = next(iter(people(1, seed=61)))
    app = build(settings)
    subject = app.vault.register(ACCOUNT, who.registration())
    officer = app.api_keys.create("privacy_officer", "officer").token
    own = app.api_keys.create("subject", "own", subject).token
    app.close()

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = _serve(settings, database_url, port)
    lock = sqlite3.connect(settings.var_dir / "keystore.db", isolation_level=None, timeout=30)
    try:
        _until(lambda: _up(base), "the server")
        auth = {"Authorization": f"Bearer {officer}"}
        # A read first: the server caches the key and the snapshot, so that only destroying the
        # key needs the key store, which this test then holds locked.
        read = httpx.get(
            f"{base}/v1/subjects/{subject}",
            params={"purpose": "self_service", "categories": PHONE},
            headers=auth,
            timeout=10,
        )
        assert read.status_code == 200, read.text
        lock.execute("BEGIN IMMEDIATE")

        def erase() -> None:
            with contextlib.suppress(httpx.HTTPError):  # the server dies under the request
                httpx.delete(f"{base}/v1/subjects/{subject}", headers=auth, timeout=_WAIT)

        caller = threading.Thread(target=erase, daemon=True)
        caller.start()
        # A bare engine, not `build`: a start-up would try to finish the erasure itself.
        probe = make_engine(settings.resolved_database_url)
        try:
            _until(lambda: _status(probe, subject) == "erasing", "the tombstone")
            server.send_signal(signal.SIGKILL)
            server.wait(timeout=_WAIT)
            assert has_key_in(settings, subject)  # killed before the key was destroyed
            lock.execute("ROLLBACK")
            caller.join(timeout=_WAIT)
        finally:
            probe.dispose()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=_WAIT)
        lock.close()
    assert server.returncode == -signal.SIGKILL

    again = build(settings)
    try:
        assert status_of(again, subject) == ("erased", True)
        assert not has_key(again, subject)
        assert records(again, subject)[-1][0] == RECOVERY_ACTOR
        assert again.audit.verify().ok
        with pytest.raises(NotFound):
            again.vault.read(ACCOUNT, subject, "kyc_aml", (PHONE,))
        with pytest.raises(Unauthenticated):
            again.api_keys.authenticate(own)
        assert again.vault.lookup(ACCOUNT, PHONE, who.phone) is None
    finally:
        again.close()
