"""API keys: created for a policy role (and, for subjects, bound to one subject), shown once,
stored as SHA-256, compared in constant time. Authentication yields the `Actor` the engine sees.

Every key expires (S2): by default 90 days after issue for services and staff, 30 for a subject's
own key. An expired or revoked key is refused exactly like an unknown one. Issuing and revoking
are audited in the same transaction as the change, naming the key id and role, never the token.
Whether a caller may list or revoke keys is the engine's question, asked by the caller of this
service (the route), under the policy's `bindings.keys_purpose`."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, cast

from sqlalchemy import BindParameter, Select, Table, insert, select, update

from piguard.audit.ports import AuditDraft, AuditSink
from piguard.auth.tables import ApiKeyRow
from piguard.db.in_lists import Bound, in_list
from piguard.db.uow import Transactions, UnitOfWork
from piguard.kernel.clock import Clock
from piguard.kernel.errors import InvalidInput, NotFound, Unauthenticated
from piguard.kernel.ids import new_id
from piguard.kernel.text import LocalText
from piguard.policy.decision import Actor
from piguard.policy.model import ActorKind, Policy
from piguard.vault.repository import VaultRepository, no_such_subject

_PREFIX = "pgk"
_KEYS = cast(Table, ApiKeyRow.__table__)
# Default lifetimes in days: a subject's own key is shorter-lived than a service's or staff's.
DEFAULT_DAYS: Final = {ActorKind.SUBJECT: 30}
DEFAULT_OTHER_DAYS: Final = 90
MAX_DAYS: Final = 366


def _live_keys(ids: tuple[BindParameter[Any], ...]) -> Select[tuple[str]]:
    return select(_KEYS.c.id).where(_KEYS.c.id.in_(ids), _KEYS.c.revoked_at.is_(None))


_KNOWN_KEYS: Final = 10_000  # keys remembered for `cached`


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller: the actor for decisions and, for a subject, whose data it is."""

    actor: Actor
    subject_id: str | None = None


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key_id: str
    role: str
    token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What may be shown of a key: never its secret or the secret's hash."""

    key_id: str
    role: str
    subject_id: str | None
    label: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    # Issued before keys had an expiry (migration 0004): `expires_at` is the default lifetime.
    legacy: bool

    def live(self, now: datetime) -> bool:
        return self.revoked_at is None and now < self.expires_at


def default_days(kind: ActorKind) -> int:
    return DEFAULT_DAYS.get(kind, DEFAULT_OTHER_DAYS)


class ApiKeys:
    def __init__(
        self, transactions: Transactions, policy: Policy, clock: Clock, audit: AuditSink
    ) -> None:
        self._tx = transactions
        self._policy = policy
        self._clock = clock
        self._audit = audit
        self._guardian_role = policy.bindings.guardian_role
        # key id -> (secret hash, caller, expiry): what `authenticate` last found, for `cached`
        self._known: dict[str, tuple[str, Caller, datetime]] = {}
        self._remembering = threading.Lock()

    def create(
        self,
        role: str,
        label: str,
        subject_id: str | None = None,
        *,
        days: int | None = None,
        actor: str = "system",
    ) -> IssuedKey:
        """A new key for a policy role, valid `days` (default: its kind's lifetime); the token is
        returned once and never stored. `actor` (who issues it) is named in the audit record."""
        found = self._policy.roles.get(role)
        # The guardian role is piguard's to give, per request, after checking a recorded link
        # (M1): a key for it would be a standing claim to be someone's guardian.
        if found is None or found.kind is ActorKind.RECIPIENT or role == self._guardian_role:
            raise InvalidInput(
                LocalText(
                    f"不能为角色 {role} 签发密钥", f"no API key can be issued for the role {role}"
                ),
                field="role",
                allowed=", ".join(
                    k
                    for k, r in self._policy.roles.items()
                    if r.kind != "recipient" and k != self._guardian_role
                ),
            )
        if (found.kind is ActorKind.SUBJECT) != (subject_id is not None):
            raise InvalidInput(
                LocalText(
                    "本人密钥必须绑定一个主体", "a subject key is bound to exactly one subject"
                ),
                field="subject_id",
            )
        lifetime = default_days(found.kind) if days is None else days
        if not 1 <= lifetime <= MAX_DAYS:
            raise InvalidInput(
                LocalText(
                    f"有效期须为 1 至 {MAX_DAYS} 天", f"a key is valid for 1 to {MAX_DAYS} days"
                ),
                field="days",
            )
        key_id = new_id("key")
        secret = secrets.token_urlsafe(32)
        now = self._clock.now()
        expires = now + timedelta(days=lifetime)
        with self._tx.write() as uow:
            if subject_id is not None:
                _require_live_subject(uow, subject_id)
            uow.connection.execute(
                insert(_KEYS),
                {
                    "id": key_id,
                    "secret_hash": _hash(secret),
                    "role": role,
                    "subject_id": subject_id,
                    "label": label[:200],
                    "created_at": now,
                    "expires_at": expires,
                },
            )
            self._audit.append(uow, [self._draft(actor, "key_issue", key_id, role, subject_id)])
            uow.commit()
        return IssuedKey(key_id, role, f"{_PREFIX}_{key_id}.{secret}", expires)

    def authenticate(self, token: str) -> Caller:
        """The caller a token names, read from the database now; Unauthenticated otherwise."""
        key_id, secret = _parts(token)
        with self._tx.read() as uow:
            row = uow.connection.execute(select(_KEYS).where(_KEYS.c.id == key_id)).first()
        expected = row.secret_hash if row is not None else _hash("")
        if not hmac.compare_digest(expected, _hash(secret)) or row is None or row.revoked_at:
            self._known.pop(key_id, None)
            raise _unauthenticated()
        role = self._policy.roles.get(row.role)
        expires = expiry_of(row, role.kind) if role is not None else self._clock.now()
        if role is None or self._clock.now() >= expires:
            self._known.pop(key_id, None)
            raise _unauthenticated()
        caller = Caller(Actor(role.kind, role.key, principal=row.id), row.subject_id)
        with self._remembering:  # iterating while another thread inserts would raise
            if len(self._known) >= _KNOWN_KEYS:
                self._known.pop(next(iter(self._known)), None)
            self._known[key_id] = (expected, caller, expires)
        return caller

    def cached(self, token: str) -> Caller | None:
        """The caller a token named when `authenticate` last read its key, if the secret matches
        and the key has not expired since; None: authenticate it. Revocation by another process
        is not seen here: an answer using this caller must check its key where its record
        commits (`live`)."""
        try:
            key_id, secret = _parts(token)
        except Unauthenticated:
            return None
        known = self._known.get(key_id)
        if known is None or not hmac.compare_digest(known[0], _hash(secret)):
            return None
        if self._clock.now() >= known[2]:
            return None
        return known[1]

    @staticmethod
    def live_query(key_ids: set[str]) -> Bound:
        """Of `key_ids`, those not revoked: the query, one column (the id)."""
        return in_list(_live_keys, "k", key_ids)

    def list_keys(self) -> list[KeyInfo]:
        """Every key, oldest first, without its secret or hash."""
        columns = [c for c in _KEYS.c if c.name != "secret_hash"]
        with self._tx.read() as uow:
            rows = uow.connection.execute(select(*columns).order_by(_KEYS.c.created_at)).all()
        return [self._info(row) for row in rows]

    def get(self, key_id: str) -> KeyInfo:
        """One key, without its secret or hash; NotFound when there is none."""
        columns = [c for c in _KEYS.c if c.name != "secret_hash"]
        with self._tx.read() as uow:
            row = uow.connection.execute(select(*columns).where(_KEYS.c.id == key_id)).first()
        if row is None:
            raise no_such_key()
        return self._info(row)

    def revoke(self, key_id: str, *, actor: str = "system") -> bool:
        """Revoke a key at once; audited in the same transaction. False if it already was;
        NotFound if there is no such key."""
        with self._tx.write() as uow:
            row = uow.connection.execute(
                select(_KEYS.c.role, _KEYS.c.subject_id, _KEYS.c.revoked_at).where(
                    _KEYS.c.id == key_id
                )
            ).first()
            if row is None:
                raise no_such_key()
            if row.revoked_at is not None:
                return False
            uow.connection.execute(
                update(_KEYS)
                .where(_KEYS.c.id == key_id, _KEYS.c.revoked_at.is_(None))
                .values(revoked_at=self._clock.now())
            )
            self._audit.append(
                uow, [self._draft(actor, "key_revoke", key_id, row.role, row.subject_id)]
            )
            uow.commit()
        self._known.pop(key_id, None)
        return True

    def revoke_subject_keys(self, uow: UnitOfWork, subject_id: str, *, actor: str) -> int:
        """Revoke every unrevoked key bound to a subject, in the caller's transaction (an
        erasure's: a cancelled account's key stops working when the erasure commits, never
        before, never after), each audited as a revocation by `actor`. Returns how many."""
        rows = uow.connection.execute(
            select(_KEYS.c.id, _KEYS.c.role)
            .where(_KEYS.c.subject_id == subject_id, _KEYS.c.revoked_at.is_(None))
            .order_by(_KEYS.c.id)
        ).all()
        if not rows:
            return 0
        uow.connection.execute(
            update(_KEYS)
            .where(_KEYS.c.id.in_([r.id for r in rows]), _KEYS.c.revoked_at.is_(None))
            .values(revoked_at=self._clock.now())
        )
        for r in rows:  # forgotten now: at worst, a later request reads the key afresh
            self._known.pop(r.id, None)
        drafts = [self._draft(actor, "key_revoke", r.id, r.role, subject_id) for r in rows]
        self._audit.append(uow, drafts)
        return len(rows)

    def _info(self, row: Any) -> KeyInfo:
        role = self._policy.roles.get(row.role)
        kind = role.kind if role is not None else ActorKind.SERVICE
        return KeyInfo(
            key_id=row.id,
            role=row.role,
            subject_id=row.subject_id,
            label=row.label,
            created_at=row.created_at,
            expires_at=expiry_of(row, kind),
            revoked_at=row.revoked_at,
            legacy=row.expires_at is None,
        )

    def _draft(
        self, actor: str, action: str, key_id: str, role: str, subject_id: str | None
    ) -> AuditDraft:
        b = self._policy.bindings
        return AuditDraft(
            actor=actor,
            action=action,
            purpose=b.keys_purpose,
            subject=subject_id or "",
            categories=(b.keys_category,),
            effect="allow",
            clauses=("S2",),
            policy_version=self._policy.key,
            detail=f"{action}:{key_id}:role:{role}",
        )


def _parts(token: str) -> tuple[str, str]:
    """A token's key id and secret; Unauthenticated when it has not the shape of one."""
    prefix, _, rest = token.partition("_")
    key_id, _, secret = rest.partition(".")
    if prefix != _PREFIX or not key_id or not secret:
        raise _unauthenticated()
    return key_id, secret


def expiry_of(row: Any, kind: ActorKind) -> datetime:
    """When a key stops working: its own expiry, or for a key issued before keys had one
    (migration 0004), the default lifetime of its role's kind from its creation."""
    if row.expires_at is not None:
        return cast(datetime, row.expires_at)
    return cast(datetime, row.created_at) + timedelta(days=default_days(kind))


def no_such_key() -> NotFound:
    return NotFound(LocalText("没有这个 API 密钥", "no such API key"), field="key_id")


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _unauthenticated() -> Unauthenticated:
    return Unauthenticated(
        LocalText("缺少或无效的 API 密钥", "missing or invalid API key"), field="Authorization"
    )


def _require_live_subject(uow: UnitOfWork, subject_id: str) -> None:
    """A subject key only for a subject that exists and is not erased or being erased (R4): the
    row is locked, so an erasure cannot slip in between this check and the key's insert."""
    status = VaultRepository(uow.connection).subject_status(subject_id, lock=True)
    if status is None or status.gone:
        raise no_such_subject()
