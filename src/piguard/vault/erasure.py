"""Erasing a whole subject across two databases, so that no failure leaves it half done (S2, R4).

A subject's values live in the main database and its data key in the key store; no transaction
spans both. An erasure therefore runs in three steps, and stopping after any of them is safe:

1. one main-database transaction: the decision and its audit record, the subject's own API keys
   revoked (each audited), its blind indexes deleted, and the tombstone, status `erasing`. From
   this commit on the subject is gone for every path, exactly as once erased
   (`SubjectStatus.gone`): no value of it is read or written, no lookup finds it;
2. the data key destroyed in the key store (crypto-shredding; destroying none is no error);
3. the subject marked `erased`, with the time.

A failure in step 1 rolls all of it back: key intact, subject readable, no record of an erasure
that did not happen. A failure later leaves the tombstone, and every start (`bootstrap.build`)
finishes what it finds (`finish_interrupted`), audited as `system:erasure-recovery`.

The tombstone is a status rather than a table of erasures: every decision already reads the
subject's status in its own transaction, so the tombstone reaches every path with no other query;
who erased, when and for which purpose is the decision's audit record, committed with it and
chained.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final, Protocol

from sqlalchemy import Connection

from piguard.audit.ports import AuditDraft
from piguard.db.engine import is_sqlite, sqlite_maintenance
from piguard.db.uow import Transactions, UnitOfWork
from piguard.enforcement import Enforcer
from piguard.kernel.clock import Clock
from piguard.kernel.errors import PiguardError
from piguard.kernel.text import LocalText
from piguard.policy.decision import Actor, DecisionRequest, SubjectState
from piguard.policy.model import Action, Policy
from piguard.vault.keys import DataKeys
from piguard.vault.repository import VaultRepository, no_such_subject

RECOVERY_ACTOR: Final = "system:erasure-recovery"
RECOVERY_CLAUSES: Final = ("S2", "R4")
FINISHED: Final = "erasure_finished"

_log = logging.getLogger(__name__)

# (connection, subject id, lock) -> the live subject's snapshot, or NotFound
LiveState = Callable[[Connection, str, bool], SubjectState]


class SubjectCredentials(Protocol):
    """The credentials bound to a subject (`auth.service.ApiKeys`): an erasure revokes them in
    its own transaction, audited as revocations by the erasing actor."""

    def revoke_subject_keys(self, uow: UnitOfWork, subject_id: str, *, actor: str) -> int: ...


class ErasureIncomplete(PiguardError):
    """The erasure is committed (the subject is gone for every path) but its data key could not
    be destroyed yet; the next start destroys it."""

    code = "erasure_incomplete"


class Erasures:
    """Whole-subject erasure in three restartable steps, and the finishing of interrupted ones."""

    def __init__(
        self,
        *,
        transactions: Transactions,
        policy: Policy,
        enforcer: Enforcer,
        keys: DataKeys,
        clock: Clock,
        live_state: LiveState,
        credentials: SubjectCredentials | None,
    ) -> None:
        self._tx = transactions
        self._policy = policy
        self._enforcer = enforcer
        self._keys = keys
        self._clock = clock
        self._live_state = live_state
        self._credentials = credentials

    def erase(self, actor: Actor, subject_id: str, purpose: str) -> None:
        """Decide and tombstone (one transaction), destroy the key, mark erased. Raises
        ErasureIncomplete when a step after the tombstone failed: the erasure stands and the
        next start finishes it."""
        self._tombstone(actor, subject_id, purpose)
        try:
            self._finish(subject_id, recovered=False)
        except Exception as exc:
            # No subject id in the log: the tombstone in the database says which one.
            _log.error("erasure: a step after the tombstone failed (%s)", type(exc).__name__)
            raise _incomplete() from exc
        finally:
            self._fold_wal()

    def finish_interrupted(self) -> int:
        """Finish every erasure a crash or failure left tombstoned: destroy its key, mark it
        erased, audit that the system did. Idempotent; one that fails again stays tombstoned
        (gone for every path) for the next start. Returns how many were finished."""
        with self._tx.read() as uow:
            pending = VaultRepository(uow.connection).erasing()
        finished = 0
        for subject_id in pending:
            try:
                finished += self._finish(subject_id, recovered=True)
            except Exception as exc:  # the others still finish; this one is retried next start
                _log.error(
                    "erasure: finishing failed (%s); retried at the next start", type(exc).__name__
                )
        if pending:
            _log.warning("finished %d of %d interrupted erasures", finished, len(pending))
            self._fold_wal()
        return finished

    def _tombstone(self, actor: Actor, subject_id: str, purpose: str) -> None:
        with self._tx.write() as uow:
            state = self._live_state(uow.connection, subject_id, True)
            repo = VaultRepository(uow.connection)
            held = repo.held_categories(subject_id)
            req = DecisionRequest(Action.ERASE_SUBJECT, actor, purpose, held, state)
            self._enforcer.require(req, subject_id, uow, detail="erase_subject")
            if self._credentials is not None:
                self._credentials.revoke_subject_keys(uow, subject_id, actor=actor.label)
            repo.delete_indexes(subject_id)
            if not repo.mark_erasing(subject_id):  # another erasure got there first
                raise no_such_subject()
            uow.commit()

    def _finish(self, subject_id: str, *, recovered: bool) -> bool:
        """Steps 2 and 3; True if this call marked the subject erased."""
        self._keys.destroy(subject_id)
        with self._tx.write() as uow:
            marked = VaultRepository(uow.connection).mark_erased(subject_id, self._clock.now())
            if marked and recovered:
                self._enforcer.audit.append(uow, [self._recovery_record(subject_id)])
            uow.commit()
        return marked

    def _recovery_record(self, subject_id: str) -> AuditDraft:
        """The system finishing an erasure someone decided: the decision's own record names who,
        why and under which clauses; this one names no purpose of its own."""
        return AuditDraft(
            actor=RECOVERY_ACTOR,
            action=Action.ERASE_SUBJECT.value,
            purpose="",
            subject=subject_id,
            categories=(),
            effect="allow",
            clauses=RECOVERY_CLAUSES,
            policy_version=self._policy.key,
            detail=FINISHED,
        )

    def _fold_wal(self) -> None:
        if is_sqlite(self._tx.engine):
            # Fold the WAL into the securely overwritten file: no old page keeps the subject's
            # blind indexes (best effort while other connections read).
            sqlite_maintenance(self._tx.engine, "PRAGMA wal_checkpoint(TRUNCATE)")


def _incomplete() -> ErasureIncomplete:
    return ErasureIncomplete(
        LocalText(
            "删除已记录，该主体的数据已无法读取；其数据密钥尚未销毁，将在服务下次启动时销毁",
            "the erasure is recorded and the subject's data can no longer be read; its data key "
            "is not destroyed yet and will be at the next start",
        )
    )
