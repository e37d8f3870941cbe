"""Alembic migrations: `main` for the service database, `keystore` for the data-key database."""
