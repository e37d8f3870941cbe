"""Alembic environment for the main database; the connection comes from `piguard.db.migrate`."""

from __future__ import annotations

from piguard.db.models import metadata
from piguard.migrations.env_common import run

run(metadata)
