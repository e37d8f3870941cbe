"""`piguard keys rotate` and `retire`, run by an operator beside a running server (S2, R4).

The server is real (uvicorn over HTTP), the commands are real processes on the same `var/`, and
the server's data-key cache is aged by its injected clock instead of waiting a minute. A second
`Piguard` that keeps the key set it loaded before the rotation stands for a server that had not
reloaded yet: its subjects stay readable after a restart, and `retire` refuses until they are
re-wrapped.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from api_support import NAME, Api, Person, new_person, running_api

from cli_support import run_cli
from piguard.bootstrap import build
from piguard.kernel.clock import FixedClock
from piguard.policy.decision import Actor
from piguard.policy.model import ActorKind
from piguard.settings import Settings
from piguard.vault.crypto import read_key_file

ACCOUNT = Actor(ActorKind.SERVICE, "account_service", principal="test")
CACHE_AGED = timedelta(seconds=61)


def _names(api: Api, subject_ids: list[str]) -> list[str]:
    client = api.as_role("account_service")
    return [str(client.read(s, "kyc_aml", [NAME])["values"][0]["value"]) for s in subject_ids]


def _wrapped_by(var_dir: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{var_dir / 'keystore.db'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT kek_id, count(*) FROM data_keys GROUP BY kek_id").fetchall()
    return {str(k): int(n) for k, n in rows}


def _kek_records(var_dir: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(f"file:{var_dir / 'piguard.db'}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT actor, action, effect FROM audit_records "
            "WHERE action IN ('kek_rotate', 'kek_retire') ORDER BY seq"
        ).fetchall()
    return [(str(a), str(b), str(c)) for a, b, c in rows]


def test_s2_r4_keys_rotate_and_retire_beside_a_running_server(tmp_path: Path) -> None:
    var = tmp_path / "var"
    clock = FixedClock(datetime.now(UTC))
    people: list[Person] = [new_person() for _ in range(6)]
    names = [p.name for p in people]
    with running_api(var, clock) as api:
        first = [api.register(p) for p in people[:2]]
        old_kek = read_key_file(var / "keys.json").key_id
        # A server that loaded the key file before the rotation and never reloads it.
        stale = build(Settings(dev=True, var_dir=var), key_wrapper=read_key_file(var / "keys.json"))
        try:
            rotated = run_cli(var, "keys", "rotate")
            assert rotated.returncode == 0, rotated.stderr
            new_kek = read_key_file(var / "keys.json").key_id
            assert f"KEK {new_kek} is current" in rotated.stdout
            assert old_kek in rotated.stdout  # named as retired, still in the key file

            clock.advance(CACHE_AGED)  # the server's cached data keys age out
            assert _names(api, first) == names[:2]
            second = [api.register(p) for p in people[2:4]]  # wrapped by the newest KEK
            strays = [stale.vault.register(ACCOUNT, people[4].values)]
        finally:
            stale.close()
        assert _wrapped_by(var) == {new_kek: 4, old_kek: 1}

        refused = run_cli(var, "keys", "retire")
        assert refused.returncode == 2
        assert "1 data keys are still wrapped" in refused.stderr
        assert "仍有 1 个数据密钥" in refused.stderr
        assert "Traceback" not in refused.stderr
        assert read_key_file(var / "keys.json").retired_keks

    with running_api(var, clock) as api:  # a restart: every subject opens, the stray too
        assert _names(api, first + second + strays) == names[:5]
        finished = run_cli(var, "keys", "rotate")
        assert finished.returncode == 0, finished.stderr
        assert "finished an earlier rotation: 1 data keys re-wrapped" in finished.stdout
        retired = run_cli(var, "keys", "retire")
        assert retired.returncode == 0, retired.stderr
        assert f"retired KEK {old_kek}" in retired.stdout
        clock.advance(CACHE_AGED)
        last = [api.register(people[5])]
        assert _names(api, first + second + strays + last) == names

    key_file = read_key_file(var / "keys.json")
    assert (key_file.key_id, key_file.retired_keks) == (new_kek, ())
    assert _wrapped_by(var) == {new_kek: 6}
    assert _kek_records(var) == [
        ("cli:operator1", "kek_rotate", "allow"),
        ("cli:operator1", "kek_retire", "deny"),
        ("cli:operator1", "kek_rotate", "allow"),
        ("cli:operator1", "kek_retire", "allow"),
    ]
