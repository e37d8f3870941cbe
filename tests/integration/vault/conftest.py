"""A wired piguard per test on each backend, for the vault's integration tests."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from piguard.bootstrap import Piguard, build
from piguard.settings import Settings


@pytest.fixture
def app(tmp_path: Path, database_url: str) -> Iterator[Piguard]:
    settings = Settings(
        dev=True,
        var_dir=tmp_path / "var",
        database_url=None if database_url.startswith("sqlite") else database_url,
    )
    built = build(settings)
    yield built
    built.close()
