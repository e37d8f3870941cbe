"""`piguard keys ...` and `piguard demo` as an operator runs them: real processes, real files (S2).

Keys are listed without secrets, revoked at once (the token is refused by the next request), and
each issue and revocation is an audit record naming the operator, the key id and its role, never
the token. `piguard demo` restarted mints no further live demo keys."""

from __future__ import annotations

import base64
import re
import secrets
import sqlite3
from pathlib import Path

import pytest

from cli_support import run_cli as run
from piguard.bootstrap import build
from piguard.kernel.errors import Unauthenticated
from piguard.settings import Settings


def _records(var_dir: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(f"file:{var_dir / 'piguard.db'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT actor, action, detail FROM audit_records ORDER BY seq")
        return [tuple(r) for r in rows]


@pytest.fixture
def var_dir(tmp_path: Path) -> Path:
    return tmp_path / "var"


def test_s2_keys_are_created_listed_and_revoked_from_the_cli(var_dir: Path) -> None:
    made = run(
        var_dir, "keys", "create-api-key", "--role", "auditor", "--label", "ops", "--days", "7"
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    key_id = re.search(r"key (key_[0-9a-f]+)", made.stdout)
    assert key_id is not None
    assert token.startswith(f"pgk_{key_id[1]}.")
    secret = token.partition(".")[2]

    listed = run(var_dir, "keys", "list")
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if key_id[1] in line)
    assert row.split()[1:3] == ["auditor", "ops"]  # no subject: role, then label
    assert secret not in listed.stdout

    piguard_ = build(Settings(dev=True, var_dir=var_dir))
    try:
        piguard_.api_keys.authenticate(token)  # valid before
        revoked = run(var_dir, "keys", "revoke", key_id[1])
        assert revoked.returncode == 0, revoked.stderr
        with pytest.raises(Unauthenticated):
            piguard_.api_keys.authenticate(token)  # refused at once, by a running process too
    finally:
        piguard_.close()
    assert re.search(r"expires\s+revoked\s+live", listed.stdout)  # the header
    again = run(var_dir, "keys", "list")
    row = next(line for line in again.stdout.splitlines() if key_id[1] in line)
    assert row.rstrip().endswith("no")

    records = [r for r in _records(var_dir) if r[1] in ("key_issue", "key_revoke")]
    assert records == [
        ("cli:operator1", "key_issue", f"key_issue:{key_id[1]}:role:auditor"),
        ("cli:operator1", "key_revoke", f"key_revoke:{key_id[1]}:role:auditor"),
    ]
    assert secret not in str(_records(var_dir))


def test_s2_revoking_an_unknown_key_from_the_cli_says_so(var_dir: Path) -> None:
    answer = run(var_dir, "keys", "revoke", "key_nothere")
    assert answer.returncode == 2
    assert "no such API key" in answer.stderr
    assert "Traceback" not in answer.stderr


def test_s2_a_restarted_demo_adds_no_live_demo_keys(var_dir: Path) -> None:
    first = run(var_dir, "demo", "--people", "1", "--no-serve")
    assert first.returncode == 0, first.stderr
    assert "pgk_" in first.stdout
    live = _live_demo_keys(var_dir)
    assert len(live) == 7  # six roles and the first subject

    for _ in range(2):
        again = run(var_dir, "demo", "--people", "1", "--no-serve")
        assert again.returncode == 0, again.stderr
        assert "pgk_" not in again.stdout
        assert "piguard keys create-api-key" in again.stdout
    assert _live_demo_keys(var_dir) == live


def _live_demo_keys(var_dir: Path) -> set[str]:
    app_ = build(Settings(dev=True, var_dir=var_dir))
    try:
        now = app_.clock.now()
        return {
            k.key_id
            for k in app_.api_keys.list_keys()
            if k.label.startswith("demo ") and k.live(now)
        }
    finally:
        app_.close()


@pytest.mark.parametrize("command", ["rotate", "retire"])
def test_s2_keys_from_the_master_key_are_not_rotated_or_retired_here(
    var_dir: Path, command: str
) -> None:
    master = base64.b64encode(secrets.token_bytes(32)).decode()
    answer = run(var_dir, "keys", command, env={"PIGUARD_MASTER_KEY": master})
    assert answer.returncode == 2
    assert "PIGUARD_MASTER_KEY" in answer.stderr
    assert "rotate them in the key manager" in answer.stderr
    assert "请在密钥管理系统中轮换" in answer.stderr
    assert "Traceback" not in answer.stderr
    assert not (var_dir / "keys.json").exists()


def test_s2_retire_with_nothing_retired_changes_nothing(var_dir: Path) -> None:
    first = run(var_dir, "keys", "retire")
    assert first.returncode == 0, first.stderr
    assert "nothing to retire" in first.stdout
    before = (var_dir / "keys.json").read_bytes()
    again = run(var_dir, "keys", "retire")
    assert again.returncode == 0, again.stderr
    assert (var_dir / "keys.json").read_bytes() == before
    assert [r[1:] for r in _records(var_dir) if r[1] == "kek_retire"] == [
        ("kek_retire", "kek_retire:retired:none")
    ] * 2
