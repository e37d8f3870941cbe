"""The key store: per-subject data keys, wrapped by the key-encryption key, in their own database.

Data keys never live in the main database, so a copy or backup of it holds ciphertext only.
Erasing a subject deletes its wrapped key here with secure-delete on and the WAL checkpointed,
after which no copy of the main database can be decrypted for that subject (crypto-shredding).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import cast

from sqlalchemy import (
    Engine,
    LargeBinary,
    MetaData,
    String,
    Table,
    bindparam,
    delete,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from piguard.db.base import NAMING
from piguard.db.engine import is_sqlite, make_engine, sqlite_maintenance


class KeyBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class DataKeyRow(KeyBase):
    __tablename__ = "data_keys"

    subject_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    kek_id: Mapped[str] = mapped_column(String(16), index=True)


_KEYS = cast(Table, DataKeyRow.__table__)
_WRAPPED_OF = select(_KEYS.c.wrapped).where(_KEYS.c.subject_id == bindparam("subject_id"))


def open_keystore(url: str) -> Engine:
    """The key store's engine: on SQLite, deleted keys are overwritten on disk."""
    return make_engine(url, secure_delete=True)


class KeyStore:
    """Wrapped data keys by subject. Each call is its own short transaction."""

    def __init__(self, engine: Engine) -> None:
        """`engine` should be made with `secure_delete=True` (see `open_keystore`)."""
        self._engine = engine

    def put(self, subject_id: str, wrapped: bytes, kek_id: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                insert(_KEYS), {"subject_id": subject_id, "wrapped": wrapped, "kek_id": kek_id}
            )

    def get(self, subject_id: str) -> bytes | None:
        with self._engine.connect() as conn:
            found = conn.execute(_WRAPPED_OF, {"subject_id": subject_id}).scalar()
        return bytes(found) if found is not None else None

    def destroy(self, subject_id: str) -> bool:
        """Delete a subject's key for good; True if there was one."""
        with self._engine.begin() as conn:
            gone = conn.execute(delete(_KEYS).where(_KEYS.c.subject_id == subject_id))
        if is_sqlite(self._engine):
            # Fold the WAL into the (securely overwritten) file, so no old copy of the key lingers.
            sqlite_maintenance(self._engine, "PRAGMA wal_checkpoint(TRUNCATE)")
        return gone.rowcount > 0

    def wrapped_by_other_keks(self, kek_id: str, batch: int) -> Iterator[tuple[str, bytes]]:
        """Keys not yet wrapped by `kek_id`, a batch at a time (for rotation)."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(_KEYS.c.subject_id, _KEYS.c.wrapped)
                .where(_KEYS.c.kek_id != kek_id)
                .limit(batch)
            ).all()
        yield from ((sid, wrapped) for sid, wrapped in rows)

    def wrapped_by_keks(self, kek_ids: Collection[str], batch: int) -> list[tuple[str, bytes]]:
        """Keys still wrapped by one of `kek_ids`, a batch at a time (for retirement)."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(_KEYS.c.subject_id, _KEYS.c.wrapped)
                .where(_KEYS.c.kek_id.in_(list(kek_ids)))
                .limit(batch)
            ).all()
        return [(sid, bytes(wrapped)) for sid, wrapped in rows]

    def rewrap(self, items: list[tuple[str, bytes]], kek_id: str) -> None:
        with self._engine.begin() as conn:
            for sid, wrapped in items:
                conn.execute(
                    update(_KEYS)
                    .where(_KEYS.c.subject_id == sid)
                    .values(wrapped=wrapped, kek_id=kek_id)
                )

    def count_by_kek(self) -> dict[str, int]:
        with self._engine.connect() as conn:
            rows = conn.execute(text("SELECT kek_id, COUNT(*) FROM data_keys GROUP BY kek_id"))
            return {str(k): int(n) for k, n in rows}
