"""The vault service: register, collect, read, update, erase and look up personal information.

Every call asks the decision engine through the enforcement point, encrypts each value under the
subject's data key with associated data binding it to its subject, category and record, and
writes the data and its audit record in one transaction. Nothing here decides what is allowed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, Row
from sqlalchemy.exc import IntegrityError as DbIntegrityError

from piguard.audit.ports import AuditDraft
from piguard.consent.model import ConsentEvent, ConsentEventKind, Guardianship
from piguard.consent.repository import ConsentRepository
from piguard.db.in_lists import Bound
from piguard.db.uow import Transactions
from piguard.enforcement import Enforcer
from piguard.kernel.clock import Clock
from piguard.kernel.errors import (
    Conflict,
    Denied,
    InvalidInput,
    NotFound,
    Overloaded,
    PiguardError,
)
from piguard.kernel.ids import new_id
from piguard.kernel.sensitive import Sensitive
from piguard.kernel.text import LocalText
from piguard.policy import scopes
from piguard.policy.decision import Actor, Decision, DecisionRequest, SubjectState
from piguard.policy.model import Action, ConsentType, Policy, RetentionTrigger
from piguard.vault.crypto import BlindIndex, DataKey, aad_for
from piguard.vault.erasure import Erasures, SubjectCredentials
from piguard.vault.identifiers import age_on, birth_date_from_resident_id
from piguard.vault.keys import DataKeys
from piguard.vault.repository import (
    SubjectStatus,
    VaultRepository,
    no_such_subject,
    versions_query,
)
from piguard.vault.states import SubjectStates, birth_date_of
from piguard.vault.validators import validate

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
class WardLink:
    """A guardian registering a minor (M1): who they are to the minor, and the evidence of it
    (a reference to a document piguard's operator verified, never the document itself)."""

    guardian_id: str
    relation: str
    evidence: str
    notice_hash: str


@dataclass(frozen=True, slots=True)
class ReadResult:
    subject_id: str
    values: tuple[StoredValue, ...]
    decision: Decision


ReadAsked = tuple[Actor, str, str, tuple[str, ...]]
"""A read as asked: actor, subject id, purpose, categories."""

_READ_REFUSALS: Final = {
    "full": ("等待中的读取过多", "too many reads are waiting"),
    "closed": ("服务正在停止", "the service is stopping"),
    "timeout": ("读取超时", "the read timed out"),
    "failed": ("读取失败", "the read failed"),
}


def read_refusal(why: str) -> Overloaded:
    """A read not done (`batching.Refuse`): nothing was read or recorded; try again."""
    zh, en = _READ_REFUSALS[why]
    return Overloaded(LocalText(f"{zh}，未读取任何数据", f"{en}; nothing was read"))


@dataclass(frozen=True, slots=True)
class PendingRead:
    """A read before its audit record is committed: a denial's `result` holds no values."""

    draft: AuditDraft
    version: tuple[int, str]
    result: ReadResult
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
        credentials: SubjectCredentials | None = None,
    ) -> None:
        self._tx = transactions
        self._policy = policy
        self._enforcer = enforcer
        self._keys = keys
        self._index = index
        self._clock = clock
        self._states = SubjectStates(policy, keys, clock)
        self._erasures = Erasures(
            transactions=transactions,
            policy=policy,
            enforcer=enforcer,
            keys=keys,
            clock=clock,
            live_state=lambda c, s, lock: self.live_state(c, s, lock=lock),
            credentials=credentials,
        )

    # -- registration and collection (C1.1, C2.x) ----------------------------------------------

    def register(
        self,
        actor: Actor,
        values: Mapping[str, str],
        source: str = "subject",
        ward_of: WardLink | None = None,
    ) -> str:
        """Create a subject from the required categories of registration (C1.1). A minor is
        registered only by a linked guardian (`ward_of`), whose consent to the minor's use of
        the service is recorded with the link, atomically (M1)."""
        registration = self._policy.bindings.registration_purpose
        purpose = self._policy.purposes[registration]
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
        self._fill_birth_date(clean)
        subject_id = new_id("sub")
        state = self._registrant(clean, ward_of)
        req = DecisionRequest(
            Action.COLLECT, actor, registration, tuple(clean), state, registration=True
        )
        with self._tx.write() as uow:
            self._enforcer.require(req, subject_id, uow, detail="register")
            key = self._keys.create(subject_id)
            try:
                VaultRepository(uow.connection).add_subject(subject_id, self._clock.now())
                self._store(uow.connection, subject_id, key, clean, (registration,), source)
                if ward_of is not None:
                    self._link_guardian(uow.connection, subject_id, ward_of)
                uow.commit()
            except BaseException:
                self._keys.destroy(subject_id)
                raise
        return subject_id

    def _fill_birth_date(self, clean: dict[str, str]) -> None:
        """Registration records the birth date the verified ID number carries (M1, R1); one
        given with the number must be the one it encodes."""
        b = self._policy.bindings
        if b.age_from is None or b.birth_date is None or b.age_from not in clean:
            return
        born = birth_date_from_resident_id(clean[b.age_from], b.age_from).isoformat()
        given = clean.get(b.birth_date)
        if given is not None and given != born:
            raise InvalidInput(
                LocalText(
                    f"{b.birth_date}：与身份证号码中的出生日期不一致",
                    f"{b.birth_date}: differs from the birth date in the identity number",
                ),
                field=b.birth_date,
                allowed=f"the birth date encoded in {b.age_from}, or leave it out",
            )
        if b.birth_date in self._policy.purposes[b.registration_purpose].categories:
            clean[b.birth_date] = born

    def _registrant(self, clean: Mapping[str, str], ward_of: WardLink | None) -> SubjectState:
        """The state a registration is decided on: the age its verified ID number gives, and a
        guardian's consent to the service when a guardian registers a minor."""
        age_from = self._policy.bindings.age_from
        birth = (
            birth_date_of(clean[age_from]) if age_from is not None and age_from in clean else None
        )
        today = self._clock.now().date()
        age = age_on(birth, today) if birth is not None and birth <= today else None
        minor = age is not None and self._policy.minors.is_minor(age)
        if ward_of is not None and not minor:
            raise InvalidInput(
                LocalText("只有未成年人由监护人注册", "only a minor is registered by a guardian"),
                field=age_from or "values",
                allowed="the identity number of a minor (M1)",
            )
        consents = frozenset({scopes.SERVICE}) if ward_of is not None else frozenset()
        return SubjectState(age=age, guardian_consents=consents)

    def _link_guardian(self, connection: Connection, minor_id: str, link: WardLink) -> None:
        now = self._clock.now()
        repo = ConsentRepository(connection)
        repo.add_guardianship(
            Guardianship(
                new_id("grd"), minor_id, link.guardian_id, link.relation, link.evidence, now
            )
        )
        repo.add(
            ConsentEvent(
                id=new_id("cr"),
                subject_id=minor_id,
                kind=ConsentEventKind.GRANT,
                scope=scopes.SERVICE,
                consent_type=ConsentType.REGULAR,
                policy_version=self._policy.key,
                notice_hash=link.notice_hash,
                channel="api",
                method="agreement",
                evidence=link.evidence,
                at=now,
                guardian_id=link.guardian_id,
            )
        )

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
        pending = self.read_unrecorded(actor, subject_id, purpose, categories)
        return self._enforcer.settle(pending.decision, pending.draft, pending.result)

    def read_unrecorded(
        self, actor: Actor, subject_id: str, purpose: str, categories: tuple[str, ...]
    ) -> PendingRead:
        """`read` up to its audit record: the decision, its checked draft and, when allowed,
        the values decrypted and projected. Nothing of it may leave before the draft is
        committed (`Enforcer.settle`, or `committer.AnswerCommitter` with `version` as the
        subject's basis); a denial is raised once its record is (`Enforcer.refusal`)."""
        (found,) = self.read_many_unrecorded([(actor, subject_id, purpose, categories)])
        if isinstance(found, PiguardError):
            raise found
        return found

    def read_many_unrecorded(
        self, asked: list[ReadAsked], transactions: Transactions | None = None
    ) -> list[PendingRead | PiguardError]:
        """`read_unrecorded` of each, in one read transaction (reads batched off an event loop,
        `batching.LoopBatcher`, on its thread's `transactions`); for each, its pending read or
        the error it met (no such subject), so that one does not fail the others."""
        with (transactions or self._tx).read() as uow:
            found = [self._decided(uow.connection, *one) for one in asked]
        # Decided and decrypted once the snapshot is let go: a read waits for its record's
        # commit, and a read transaction held meanwhile keeps SQLite's WAL from being reset.
        return [self._opened(*one) if isinstance(one, tuple) else one for one in found]

    def _decided(
        self,
        connection: Connection,
        actor: Actor,
        subject_id: str,
        purpose: str,
        categories: tuple[str, ...],
    ) -> tuple[SubjectStatus, list[Row[Any]], DecisionRequest] | PiguardError:
        try:
            found, rows = VaultRepository(connection).subject_with_values(subject_id, categories)
            subject = _live(found)
        except PiguardError as exc:
            return exc
        sources = frozenset(p for r in rows for p in r.purposes.split(","))
        state = self._states.of(connection, subject)
        req = DecisionRequest(
            Action.READ, actor, purpose, categories, state, source_purposes=sources
        )
        return subject, rows, req

    def _opened(
        self, subject: SubjectStatus, rows: list[Row[Any]], req: DecisionRequest
    ) -> PendingRead:
        decision, draft = self._enforcer.drafted(req, subject.id)
        values: tuple[StoredValue, ...] = ()
        if decision.allowed and rows:
            key = self._keys.get(subject.id)
            values = tuple(self._open(key, subject.id, row, decision) for row in rows)
        result = ReadResult(subject.id, values, decision)
        return PendingRead(draft, (subject.state_version, subject.status), result, decision)

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
        serves: str | None = None,
        evidence: str | None = None,
    ) -> list[str]:
        """Decide and store; the values serve `serves` (by default the decision's purpose)."""
        clean = self._normalise(values)
        serves = serves or purpose
        with self._tx.write() as uow:
            repo = VaultRepository(uow.connection)
            state = self.live_state(uow.connection, subject_id, lock=True)
            req = DecisionRequest(action, actor, purpose, tuple(clean), state, evidence=evidence)
            self._enforcer.require(req, subject_id, uow)
            purposes: tuple[str, ...] = (serves,)
            if action is Action.UPDATE:  # a replacement keeps the purposes of what it replaces
                old = repo.values(subject_id, tuple(clean))
                purposes = tuple(sorted({p for r in old for p in r.purposes.split(",")} | {serves}))
                repo.delete_values(subject_id, clean)
            key = self._keys.get(subject_id)
            ids = self._store(uow.connection, subject_id, key, clean, purposes, source)
            uow.commit()
        return ids

    # -- erasure (R3, R4, R5) -------------------------------------------------------------------

    def erase_subject(self, actor: Actor, subject_id: str, purpose: str | None = None) -> None:
        """Crypto-shred a subject in constant time (`vault.erasure`): tombstone it with the
        decision, its API keys revoked and its indexes dropped, then destroy its data key, then
        mark it erased. Its own operation (R4 cancellation, R5), granted apart from any erase
        of one purpose's data; the decision covers every category the subject holds."""
        purpose = purpose or self._policy.bindings.self_service_purpose
        self._erasures.erase(actor, subject_id, purpose)

    def finish_erasures(self) -> int:
        """Finish the erasures a crash or a key-store failure interrupted (run at start-up)."""
        return self._erasures.finish_interrupted()

    def purge_erased(self, batch: int = 10_000) -> int:
        """Delete up to `batch` unreadable values of erased subjects; returns how many."""
        with self._tx.write() as uow:
            count = VaultRepository(uow.connection).purge_erased(batch)
            uow.commit()
        return count

    def erase_categories(
        self, actor: Actor, subject_id: str, purpose: str, categories: tuple[str, ...]
    ) -> int:
        """Erase the copies of some categories that the decision's purposes hold (R3, R5, C7):
        a value kept for another purpose, such as an ID scan kept for AML, stays, released
        only from the erased purposes. Returns how many values were erased or released."""
        with self._tx.write() as uow:
            state = self.live_state(uow.connection, subject_id, lock=True)
            req = DecisionRequest(Action.ERASE, actor, purpose, categories, state)
            decision = self._enforcer.require(req, subject_id, uow)
            repo = VaultRepository(uow.connection)
            gone, released = _erased_copies(repo.values(subject_id, categories), decision.erases)
            repo.delete_value_ids([row.id for row in gone])
            for row, kept in released:
                repo.set_purposes(row.id, ",".join(kept))
            left = {row.category for row in repo.values(subject_id, categories)}
            repo.delete_indexes(subject_id, [c for c in categories if c not in left])
            uow.commit()
        return len(gone) + len(released)

    # -- identifiers (R1, C2.3) -----------------------------------------------------------------

    def change_identifier(
        self, actor: Actor, subject_id: str, values: Mapping[str, str], evidence: str
    ) -> list[str]:
        """Replace identifiers such as the phone number after the caller verified that the
        subject controls them, under the purpose the policy names for changing them (R1). The
        new value serves the account as registration's did; the evidence reference is kept as
        its source."""
        purposes = {self._policy.categories[c].change_purpose for c in self._normalise(values)}
        if len(purposes) != 1 or None in purposes:
            changeable = sorted(k for k, c in self._policy.categories.items() if c.change_purpose)
            raise InvalidInput(
                LocalText("只能变更同一类标识", "only identifiers changed together can be"),
                field="values",
                allowed=", ".join(changeable),
            )
        purpose = str(purposes.pop())
        source = f"verified:{evidence}"
        registration = self._policy.bindings.registration_purpose
        return self._write(
            Action.UPDATE, actor, subject_id, purpose, values, source, registration, evidence
        )

    # -- lookup (C2.3) --------------------------------------------------------------------------

    def lookup(self, actor: Actor, category: str, value: str) -> ReadResult | None:
        """Find an account by phone or email through its blind index; None when not found or the
        subject switched discovery off (C2.3): the two are indistinguishable to the caller."""
        cat = self._policy.categories.get(category)
        if cat is None or "lookup" not in cat.tags:
            lookups = sorted(k for k, c in self._policy.categories.items() if "lookup" in c.tags)
            raise InvalidInput(
                LocalText("不能按该类别查找", "cannot look up by this category"),
                field="category",
                allowed=", ".join(lookups),
            )
        digest = self._index.digest(category, self._normalise({category: value})[category])
        with self._tx.read() as uow:
            owner = VaultRepository(uow.connection).index_owner(category, digest)
        if owner is None:
            return None
        try:
            return self.read(actor, owner, self._policy.bindings.lookup_purpose, (category,))
        except (NotFound, Denied):
            return None

    # -- the subject's state for decisions ------------------------------------------------------

    def snapshot(self, subject_id: str) -> SubjectState:
        """The current state of an existing subject, for callers that decide themselves."""
        with self._tx.read() as uow:
            return self.live_state(uow.connection, subject_id)

    def snapshots(self, subject_ids: Iterable[str]) -> dict[str, SubjectState]:
        """`snapshot` of each subject, read in one transaction (a batch of decisions)."""
        with self._tx.read() as uow:
            return {s: self.live_state(uow.connection, s) for s in dict.fromkeys(subject_ids)}

    def cached_state(self, subject_id: str) -> tuple[SubjectState, tuple[int, str]] | None:
        """The snapshot this process last read of a subject, with the version it was read at;
        current only while that version is (`committer.Basis`). None: read it afresh."""
        return self._states.cached(subject_id)

    @staticmethod
    def versions_query(subject_ids: set[str]) -> Bound:
        """(id, state version, status) of each existing subject of `subject_ids`: the query."""
        return versions_query(subject_ids)

    def live_state(
        self, connection: Connection, subject_id: str, *, lock: bool = False
    ) -> SubjectState:
        """The snapshot the engine needs (consents, settings, age, closure) of a subject that
        exists and is neither erased nor being erased; NotFound otherwise. A write passes
        `lock`: the subject's row stays locked to its commit, so a write that read it live
        cannot land after an erasure's tombstone."""
        subject = _live(VaultRepository(connection).subject_status(subject_id, lock=lock))
        return self._states.of(connection, subject)

    # -- helpers --------------------------------------------------------------------------------

    def _normalise(self, values: Mapping[str, str]) -> dict[str, str]:
        """Validate every value of every write: a known category, at most MAX_VALUE_CHARS, no
        control characters, and the format its policy entry names (`vault.validators`)."""
        clean: dict[str, str] = {}
        now = self._clock.now()
        for position, (category, value) in enumerate(values.items()):
            cat = self._policy.categories.get(category)
            if cat is None:  # named by its position: the key itself is the caller's text
                where = f"values.<key:{position}>"
                raise InvalidInput(
                    LocalText(f"{where}：未知的信息类别", f"{where}: unknown data category"),
                    field=where,
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
        """The earliest a value may be due: the latest end, on the calendar (S1), of the
        retentions that count from collection; those counting from a later trigger end later."""
        retentions = (self._policy.purposes[p].retention for p in purposes)
        ends = [r.ends(now) for r in retentions if r.after is RetentionTrigger.COLLECTION]
        return max(ends) if ends else None

    def _open(
        self, key: DataKey, subject_id: str, row: Row[Any], decision: Decision
    ) -> StoredValue:
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


def _live(subject: SubjectStatus | None) -> SubjectStatus:
    if subject is None or subject.gone:
        raise no_such_subject()
    return subject


def _erased_copies(
    rows: list[Row[Any]], erases: frozenset[str]
) -> tuple[list[Row[Any]], list[tuple[Row[Any], list[str]]]]:
    """Split values into those whose every purpose is erased (deleted) and those that keep other
    purposes (released from the erased ones only); values of no erased purpose are untouched."""
    gone: list[Row[Any]] = []
    released: list[tuple[Row[Any], list[str]]] = []
    for row in rows:
        purposes = row.purposes.split(",")
        kept = [p for p in purposes if p not in erases]
        if not kept:
            gone.append(row)
        elif len(kept) < len(purposes):
            released.append((row, kept))
    return gone, released


def _taken(category: str) -> Conflict:
    return Conflict(
        LocalText(f"{category} 已被其他账户使用", f"{category} is already used by another account"),
        field=category,
    )
