"""Alembic environment for the main database; the connection comes from `piguard.db.migrate`."""

from __future__ import annotations

from alembic import context

from piguard.db.models import metadata as target_metadata


def run() -> None:
    connection = context.config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
