"""Real databases for integration tests: a SQLite file and, when reachable, PostgreSQL.

`database_url` runs a test once per backend. SQLite gets a fresh file under `tmp_path`; PostgreSQL
gets a fresh schema on the server named by PIGUARD_TEST_POSTGRES_URL, selected through the URL
(`?options=-csearch_path=...`) so that subprocesses and CLIs given the URL land in it too, and
dropped afterwards. PostgreSQL tests are skipped when the server is unreachable, except under
CI=true, where they fail. `migrated_engine` is an engine on that database at the newest schema,
built by the migrations as in production; `app` is all of piguard built on it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from piguard.bootstrap import Piguard, build
from piguard.db.engine import make_engine
from piguard.db.migrate import upgrade
from piguard.settings import Settings

POSTGRES_URL = os.environ.get(
    "PIGUARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@cache
def _postgres_problem() -> str | None:
    """Why PostgreSQL cannot be used, or None when it can (asked once per session)."""
    engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        return f"PostgreSQL unreachable at {make_url(POSTGRES_URL)!r}: {type(exc).__name__}"
    finally:
        engine.dispose()
    return None


def require_postgres() -> None:
    """Skip the calling test without PostgreSQL; under CI=true, fail it instead."""
    problem = _postgres_problem()
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(problem)
    pytest.skip(problem)


def _with_search_path(url: str, schema: str) -> str:
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options={quote(f'-csearch_path={schema}')}"


@contextmanager
def _postgres_schema() -> Iterator[str]:
    """A fresh schema on the PostgreSQL server, as a URL selecting it; dropped afterwards."""
    require_postgres()
    schema = f"t_{secrets.token_hex(6)}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        yield _with_search_path(POSTGRES_URL, schema)
        with admin.connect() as conn:
            conn.execute(text("SET lock_timeout = '10s'"))
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


@pytest.fixture(
    params=[pytest.param("sqlite"), pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """An empty database of each backend, as a URL; nothing of it outlives the test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'piguard.db'}"
        return
    with _postgres_schema() as url:
        yield url


@pytest.fixture
def postgres_engine() -> Iterator[Engine]:
    """For what only a database server does: an engine on a fresh PostgreSQL schema, migrated."""
    with _postgres_schema() as url:
        engine = make_engine(url)
        upgrade(engine, "main")
        yield engine
        engine.dispose()


@pytest.fixture
def migrated_engine(database_url: str) -> Iterator[Engine]:
    """An engine (`db.engine.make_engine`) on `database_url`, migrated to the newest schema."""
    engine = make_engine(database_url)
    upgrade(engine, "main")
    yield engine
    engine.dispose()


@pytest.fixture
def app(tmp_path: Path, database_url: str) -> Iterator[Piguard]:
    """The whole of piguard (`bootstrap.build`, dev keys under `tmp_path`) on `database_url`."""
    url = None if database_url.startswith("sqlite") else database_url
    built = build(Settings(dev=True, var_dir=tmp_path / "var", database_url=url))
    yield built
    built.close()
