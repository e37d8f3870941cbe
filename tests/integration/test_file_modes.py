"""S2: what piguard creates on disk only its owner can reach: folders 0700, files 0600.

A real build on SQLite, with the umask cleared so that only the modes piguard asks for count
(the usual 022 would hide a file created 0644 as well as one created 0600 to a group check).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from piguard.bootstrap import build
from piguard.population import seed_population
from piguard.settings import Settings


@pytest.fixture
def no_umask() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.usefixtures("no_umask")
def test_s2_a_build_creates_its_folders_0700_and_files_0600(tmp_path: Path) -> None:
    var = tmp_path / "srv" / "var"  # two missing folders
    data = tmp_path / "data"
    settings = Settings(dev=True, var_dir=var, database_url=f"sqlite:///{data}/main.db")
    app = build(settings)
    try:
        seed_population(app, 3, seed=5)  # writes data, data keys and audit records
        # Open connections keep each database's -wal and -shm files: SQLite gives them the
        # mode of their database file. The writers' lock file is piguard's, made 0600.
        files = [var / "keys.json", data / "main.db", var / "keystore.db"]
        ends = ("-wal", "-shm", "-writer.lock")
        files += [db.with_name(db.name + end) for db in files[1:] for end in ends]
        assert {str(f): _mode(f) for f in files} == {str(f): 0o600 for f in files}
    finally:
        app.close()
    assert _mode(settings.checkpoint_file) == 0o600
    folders = [tmp_path / "srv", var, data]
    assert {str(f): _mode(f) for f in folders} == {str(f): 0o700 for f in folders}
    assert {p.name for p in var.iterdir()} == {
        "keys.json",
        "keystore.db",
        "keystore.db-writer.lock",
        "audit-checkpoints.jsonl",
    }


@pytest.mark.usefixtures("no_umask")
def test_s2_a_build_keeps_the_mode_of_an_existing_var_dir(tmp_path: Path) -> None:
    var = tmp_path / "var"
    var.mkdir(mode=0o750)
    build(Settings(dev=True, var_dir=var)).close()
    assert _mode(var) == 0o750  # the operator's choice, allowed since others cannot write
    assert _mode(var / "piguard.db") == 0o600
