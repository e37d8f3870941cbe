"""Run Alembic migrations programmatically: the schema exists only through them."""

from __future__ import annotations

from importlib.resources import files
from typing import Literal

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

Database = Literal["main", "keystore"]


def alembic_config(engine: Engine, which: Database) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(files("piguard.migrations") / which))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, which: Database = "main") -> None:
    """Bring a database to the newest revision."""
    cfg = alembic_config(engine, which)
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")
