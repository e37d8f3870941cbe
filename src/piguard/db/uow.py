"""The unit of work: one transaction per service call, rolled back unless `commit()` is called."""

from __future__ import annotations

from types import TracebackType

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from piguard.db.engine import READONLY


class UnitOfWork:
    """A session scope. Repositories never commit; the service that opened the unit does."""

    def __init__(self, factory: sessionmaker[Session], *, readonly: bool = False) -> None:
        self._factory = factory
        self._readonly = readonly
        self._session: Session | None = None

    @property
    def session(self) -> Session:
        if self._session is None:
            raise RuntimeError("the unit of work is not open")
        return self._session

    def __enter__(self) -> UnitOfWork:
        self._session = self._factory()
        if self._readonly:  # a snapshot read: on SQLite, no write lock (see db.engine)
            self._session.connection(execution_options={READONLY: True})
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.session.rollback()
        finally:
            self.session.close()
            self._session = None

    def commit(self) -> None:
        self.session.commit()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False, autoflush=False)
