"""The vault service: register, collect, read, update, erase and look up personal information.

Every call asks the decision engine through the enforcement point, encrypts each value under the
subject's data key with associated data binding it to its subject, category and record, and
writes the data and its audit record in one transaction. Nothing here decides what is allowed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row
from sqlalchemy.exc import IntegrityError as DbIntegrityError

from piguard.db.uow import Transactions
from piguard.enforcement import Enforcer
from piguard.kernel.clock import Clock
from piguard.kernel.errors import Conflict, Denied, InvalidInput, NotFound
from piguard.kernel.ids import new_id
from piguard.kernel.sensitive import Sensitive
from piguard.kernel.text import LocalText
from piguard.policy.decision import Actor, Decision, DecisionRequest, SubjectState
from piguard.policy.model import Action, Policy, RetentionTrigger
from piguard.vault.crypto import BlindIndex, DataKey, aad_for
from piguard.vault.identifiers import birth_date_from_resident_id
from piguard.vault.keys import DataKeys
from piguard.vault.repository import SubjectStatus, VaultRepository
from piguard.vault.states import BIRTH_DATE, SubjectStates
from piguard.vault.validators import validate

REGISTRATION_PURPOSE = "kyc_aml"
ID_NUMBER = "user.government_id.national_identification_number"
INDEXED_TAGS = frozenset({"lookup", "unique"})
MAX_VALUE_CHARS = 4096


@dataclass(frozen=True, slots=True)
class StoredValue:
    """A value as the caller may see it: projected by the decision, with its provenance. The
    value never prints (repr, str, format, logs); `value.reveal()` gives it to whoever serves it."""

    id: str
    category: str
    value: Sensitive[str] | None
    purposes: tuple[str, ...]
    source: str
    collected_at: datetime


@dataclass(frozen=True, slots=True)
class ReadResult:
    subject_id: str
    values: tuple[StoredValue, ...]
    decision: Decision


class VaultService:
    """Use cases on personal data; each owns its transaction."""

    def __init__(
        self,
        *,
        transactions: Transactions,
        policy: Policy,
        enforcer: Enforcer,
        keys: DataKeys,
        index: BlindIndex,
        clock: Clock,
    ) -> None:
        self._tx = transactions
        self._policy = policy
        self._enforcer = enforcer
        self._keys = keys
        self._index = index
        self._clock = clock
        self._states = SubjectStates(policy, keys, clock)

    # -- registration and collection (C1.1, C2.x) ----------------------------------------------

    def register(self, actor: Actor, values: Mapping[str, str], source: str = "subject") -> str:
        """Create a subject from the required categories of registration (C1.1)."""
        purpose = self._policy.purposes[REGISTRATION_PURPOSE]
        missing = [c for c in purpose.required if not values.get(c)]
        if missing:
            raise InvalidInput(
                LocalText(
                    f"注册缺少必填信息：{', '.join(missing)}。{purpose.refusal.zh}",
                    f"registration is missing required fields: {', '.join(missing)}. "
                    f"{purpose.refusal.en}",
                ),
                field=missing[0],
                allowed=", ".join(purpose.required),
            )
        clean = self._normalise(values)
        _check_birth_date(clean)
        if ID_NUMBER in clean and BIRTH_DATE in purpose.categories:
            clean.setdefault(BIRTH_DATE, birth_date_from_resident_id(clean[ID_NUMBER]).isoformat())
        subject_id = new_id("sub")
        req = DecisionRequest(Action.COLLECT, actor, REGISTRATION_PURPOSE, tuple(clean))
        with self._tx.write() as uow:
            self._enforcer.require(req, subject_id, uow, detail="register")
            key = self._keys.create(subject_id)
            try:
                VaultRepository(uow.connection).add_subject(subject_id, self._clock.now())
                self._store(uow.connection, subject_id, key, clean, (REGISTRATION_PURPOSE,), source)
                uow.commit()
            except BaseException:
                self._keys.destroy(subject_id)
                raise
        return subject_id

    def collect(
        self,
        actor: Actor,
        subject_id: str,
        purpose: str,
        values: Mapping[str, str],
        source: str = "subject",
    ) -> list[str]:
        """Store values collected for a purpose, with their source (C2.5) and retention."""
        return self._write(Action.COLLECT, actor, subject_id, purpose, values, source)

    # -- reading (R1, S2, DEF2, U3) --------------------------------------------------------------

    def read(
        self, actor: Actor, subject_id: str, purpose: str, categories: tuple[str, ...]
    ) -> ReadResult:
        """Decrypt and project the values of some categories for a declared purpose."""
        with self._tx.read() as uow:
            found, rows = VaultRepository(uow.connection).subject_with_values(
                subject_id, categories
            )
            subject = _live(found)
            sources = frozenset(p for r in rows for p in r.purposes.split(","))
            req = DecisionRequest(
                Action.READ,
                actor,
                purpose,
                categories,
                self._states.of(uow.connection, subject),
                source_purposes=sources,
            )
            decision = self._enforcer.require(req, subject_id)
        key = self._keys.get(subject_id) if rows else None
        values = tuple(self._open(key, subject_id, row, decision) for row in rows if key)
        return ReadResult(subject_id, values, decision)

    # -- changes (R1, R6) -----------------------------------------------------------------------

    def update(
        self, actor: Actor, subject_id: str, purpose: str, values: Mapping[str, str]
    ) -> list[str]:
        """Replace the values of some categories; immutable registration fields are refused."""
        return self._write(Action.UPDATE, actor, subject_id, purpose, values, "subject")

    def _write(
        self,
        action: Action,
        actor: Actor,
        subject_id: str,
        purpose: str,
        values: Mapping[str, str],
        source: str,
    ) -> list[str]:
        clean = self._normalise(values)
        with self._tx.write() as uow:
            repo = VaultRepository(uow.connection)
            state = self.live_state(uow.connection, subject_id)
            req = DecisionRequest(action, actor, purpose, tuple(clean), state)
            self._enforcer.require(req, subject_id, uow)
            if BIRTH_DATE in clean:
                repo.state_changed(subject_id)
            purposes: tuple[str, ...] = (purpose,)
            if action is Action.UPDATE:  # a replacement keeps the purposes of what it replaces
                old = repo.values(subject_id, tuple(clean))
                purposes = tuple(
                    sorted({p for r in old for p in r.purposes.split(",")} | {purpose})
                )
                repo.delete_values(subject_id, clean)
            key = self._keys.get(subject_id)
            ids = self._store(uow.connection, subject_id, key, clean, purposes, source)
            uow.commit()
        return ids

    # -- erasure (R3, R4, R5) -------------------------------------------------------------------

    def erase_subject(self, actor: Actor, subject_id: str, purpose: str = "self_service") -> None:
        """Crypto-shred a subject in constant time: destroy its data key, drop its indexes and
        mark it erased. Its ciphertext is unreadable from that moment, in every copy of the
        database; `purge_erased` reclaims the space later."""
        with self._tx.write() as uow:
            repo = VaultRepository(uow.connection)
            req = DecisionRequest(
                Action.ERASE, actor, purpose, (), self.live_state(uow.connection, subject_id)
            )
            self._enforcer.require(req, subject_id, uow, detail="erase_subject")
            # The key goes first: if anything below fails, the data is already unreadable.
            self._keys.destroy(subject_id)
            repo.delete_indexes(subject_id)
            repo.mark_erased(subject_id, self._clock.now())
            uow.commit()

    def purge_erased(self, batch: int = 10_000) -> int:
        """Delete up to `batch` unreadable values of erased subjects; returns how many."""
        with self._tx.write() as uow:
            count = VaultRepository(uow.connection).purge_erased(batch)
            uow.commit()
        return count

    def erase_categories(
        self, actor: Actor, subject_id: str, purpose: str, categories: tuple[str, ...]
    ) -> int:
        """Delete the values of some categories (R3)."""
        with self._tx.write() as uow:
            state = self.live_state(uow.connection, subject_id)
            req = DecisionRequest(Action.ERASE, actor, purpose, categories, state)
            self._enforcer.require(req, subject_id, uow)
            repo = VaultRepository(uow.connection)
            count = repo.delete_values(subject_id, categories)
            repo.delete_indexes(subject_id, categories)
            uow.commit()
        return count

    # -- lookup (C2.3) --------------------------------------------------------------------------

    def lookup(self, actor: Actor, category: str, value: str) -> ReadResult | None:
        """Find an account by phone or email through its blind index; None when not found or the
        subject switched discovery off (C2.3): the two are indistinguishable to the caller."""
        cat = self._policy.categories.get(category)
        if cat is None or "lookup" not in cat.tags:
            lookups = sorted(k for k, c in self._policy.categories.items() if "lookup" in c.tags)
            raise InvalidInput(
                LocalText(f"不能按 {category} 查找", f"cannot look up by {category}"),
                field="category",
                allowed=", ".join(lookups),
            )
        digest = self._index.digest(category, self._normalise({category: value})[category])
        with self._tx.read() as uow:
            owner = VaultRepository(uow.connection).index_owner(category, digest)
        if owner is None:
            return None
        try:
            return self.read(actor, owner, "account_lookup", (category,))
        except (NotFound, Denied):
            return None

    # -- the subject's state for decisions ------------------------------------------------------

    def snapshot(self, subject_id: str) -> SubjectState:
        """The current state of an existing subject, for callers that decide themselves."""
        with self._tx.read() as uow:
            return self.live_state(uow.connection, subject_id)

    def live_state(self, connection: Connection, subject_id: str) -> SubjectState:
        """The snapshot the engine needs (consents, settings, age, closure) of a subject that
        exists and is not erased; NotFound otherwise."""
        subject = _live(VaultRepository(connection).subject_status(subject_id))
        return self._states.of(connection, subject)

    # -- helpers --------------------------------------------------------------------------------

    def _normalise(self, values: Mapping[str, str]) -> dict[str, str]:
        """Validate every value of every write: a known category, at most MAX_VALUE_CHARS, no
        control characters, and the format its policy entry names (`vault.validators`)."""
        clean: dict[str, str] = {}
        now = self._clock.now()
        for category, value in values.items():
            cat = self._policy.categories.get(category)
            if cat is None:
                raise InvalidInput(
                    LocalText(f"未知的信息类别 {category}", f"unknown data category {category}"),
                    field=category,
                    allowed="a category of the policy's taxonomy",
                )
            if not isinstance(value, str) or not value.strip() or len(value) > MAX_VALUE_CHARS:
                raise InvalidInput(
                    LocalText(f"{category} 的值无效", f"invalid value for {category}"),
                    field=category,
                    allowed=f"a non-empty string of at most {MAX_VALUE_CHARS} characters",
                )
            clean[category] = validate(cat.validator, value, category, now)
        return clean

    def _store(
        self,
        connection: Connection,
        subject_id: str,
        key: DataKey,
        values: Mapping[str, str],
        purposes: tuple[str, ...],
        source: str,
    ) -> list[str]:
        repo = VaultRepository(connection)
        now = self._clock.now()
        due = self._due(purposes, now)
        rows: list[dict[str, Any]] = []
        for category, value in values.items():
            value_id = new_id("val")
            rows.append(
                {
                    "id": value_id,
                    "subject_id": subject_id,
                    "category": category,
                    "ciphertext": key.encrypt(
                        value.encode(), aad_for(subject_id, category, value_id)
                    ),
                    "purposes": ",".join(purposes),
                    "source": source,
                    "collected_at": now,
                    "updated_at": now,
                    "retention_due": due,
                }
            )
        try:
            for category, value in values.items():
                if INDEXED_TAGS & self._policy.categories[category].tags:
                    self._claim_index(repo, subject_id, category, value)
            repo.add_values(rows)
        except DbIntegrityError:  # a concurrent registration claimed the same identifier
            raise _taken(next(iter(values))) from None
        return [r["id"] for r in rows]

    def _claim_index(
        self, repo: VaultRepository, subject_id: str, category: str, value: str
    ) -> None:
        digest = self._index.digest(category, value)
        owner = repo.index_owner(category, digest)
        if owner is not None and owner != subject_id:
            raise _taken(category)
        repo.set_index(category, digest, subject_id)

    def _due(self, purposes: tuple[str, ...], now: datetime) -> datetime | None:
        """The earliest retention end that counts from collection; others start later."""
        days = [
            self._policy.purposes[p].retention.days
            for p in purposes
            if self._policy.purposes[p].retention.after is RetentionTrigger.COLLECTION
        ]
        return now + timedelta(days=max(days)) if days else None

    def _open(
        self, key: DataKey | None, subject_id: str, row: Row[Any], decision: Decision
    ) -> StoredValue:
        assert key is not None  # noqa: S101 - only called with a key
        # A stored value that validation would refuse today (written before a check existed, or
        # behind the service's back) is still shown to whoever may read it: never a 500.
        raw = key.decrypt(row.ciphertext, aad_for(subject_id, row.category, row.id))
        clear = raw.decode(errors="replace")
        projection = decision.projection.get(row.category)
        shown = projection.apply(clear) if projection is not None else None
        return StoredValue(
            row.id,
            row.category,
            Sensitive(shown) if shown is not None else None,
            tuple(row.purposes.split(",")),
            row.source,
            row.collected_at,
        )


def no_such_subject() -> NotFound:
    """Not found, and erased, look the same to every caller."""
    return NotFound(LocalText("没有该主体", "no such subject"), field="subject_id")


def _live(subject: SubjectStatus | None) -> SubjectStatus:
    if subject is None or subject.status == "erased":
        raise no_such_subject()
    return subject


def _check_birth_date(values: Mapping[str, str]) -> None:
    """A date of birth given with a resident ID number must be the one the number encodes."""
    if BIRTH_DATE in values and ID_NUMBER in values:
        encoded = birth_date_from_resident_id(values[ID_NUMBER], ID_NUMBER).isoformat()
        if values[BIRTH_DATE] != encoded:
            raise InvalidInput(
                LocalText(
                    f"{BIRTH_DATE}：与身份证号码中的出生日期不一致",
                    f"{BIRTH_DATE}: differs from the birth date in the resident ID number",
                ),
                field=BIRTH_DATE,
                allowed=f"the birth date encoded in {ID_NUMBER}, or leave it out",
            )


def _taken(category: str) -> Conflict:
    return Conflict(
        LocalText(f"{category} 已被其他账户使用", f"{category} is already used by another account"),
        field=category,
    )
