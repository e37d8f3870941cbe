"""Alembic environment for the key store; the connection comes from `piguard.db.migrate`."""

from __future__ import annotations

from piguard.migrations.env_common import run
from piguard.vault.keystore import KeyBase

run(KeyBase.metadata)
