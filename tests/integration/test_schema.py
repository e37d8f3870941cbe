"""S2: the schema exists only through the migrations, and they build exactly what the models say.

Both databases (main and key store) are migrated on each real backend and compared with the ORM
metadata by Alembic's autogenerate, types included: a model changed without a migration (or the
reverse) fails here. The audit tables are insert-only: no code path updates or deletes them.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from types import ModuleType

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, MetaData, text

import piguard
from piguard.audit import checkpointer, scan, writer
from piguard.db import models
from piguard.db.migrate import upgrade
from piguard.vault.keystore import KeyBase, open_keystore

AUDIT_TABLES = ("audit_records", "audit_checkpoints", "AuditRecordRow", "AuditCheckpointRow")
# SQLAlchemy's update()/delete() (functions and methods, Session.delete too) and raw SQL.
WRITES_BUT_INSERT = re.compile(r"\b(update|delete)\s*\(|\b(UPDATE|DELETE|TRUNCATE)\s")


def _differences(engine: Engine, metadata: MetaData) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def test_s2_models_and_migrations_agree(migrated_engine: Engine) -> None:
    assert _differences(migrated_engine, models.metadata) == []
    with migrated_engine.connect() as conn:
        tables = set(migrated_engine.dialect.get_table_names(conn))
    assert set(models.metadata.tables) <= tables


def test_s2_keystore_models_and_migrations_agree(database_url: str) -> None:
    # Its own database: the key store never shares one with the data it protects.
    engine = open_keystore(database_url)
    try:
        upgrade(engine, "keystore")
        assert _differences(engine, KeyBase.metadata) == []
        with engine.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM data_keys")).scalar_one() == 0
    finally:
        engine.dispose()


@pytest.mark.parametrize("module", [writer, checkpointer, scan], ids=lambda m: m.__name__)
def test_s2_audit_tables_are_insert_only_in_code(module: ModuleType) -> None:
    source = inspect.getsource(module)
    assert "audit_records" in source or "AuditRecordRow" in source  # it is the writer/reader
    assert WRITES_BUT_INSERT.findall(source) == []


def test_s2_no_module_updates_or_deletes_audit_tables() -> None:
    """Package-wide: a module naming an audit table never updates or deletes anything.

    The migrations are left out: they create the tables (and drop them on downgrade).
    """
    root = Path(piguard.__file__).parent
    offenders = {
        str(path.relative_to(root)): WRITES_BUT_INSERT.findall(source)
        for path in root.rglob("*.py")
        if "migrations" not in path.relative_to(root).parts
        and any(name in (source := path.read_text(encoding="utf-8")) for name in AUDIT_TABLES)
        and WRITES_BUT_INSERT.search(source)
    }
    assert offenders == {}
