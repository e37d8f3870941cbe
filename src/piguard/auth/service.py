"""API keys: created for a policy role (and, for subjects, bound to one subject), shown once,
stored as SHA-256, compared in constant time. Authentication yields the `Actor` the engine sees."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, insert, select, update

from piguard.auth.tables import ApiKeyRow
from piguard.db.uow import Transactions
from piguard.kernel.clock import Clock
from piguard.kernel.errors import InvalidInput, Unauthenticated
from piguard.kernel.ids import new_id
from piguard.kernel.text import LocalText
from piguard.policy.decision import Actor
from piguard.policy.model import ActorKind, Policy

_PREFIX = "pgk"
_KEYS = cast(Table, ApiKeyRow.__table__)


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


class ApiKeys:
    def __init__(self, transactions: Transactions, policy: Policy, clock: Clock) -> None:
        self._tx = transactions
        self._policy = policy
        self._clock = clock
        self._guardian_role = policy.bindings.guardian_role

    def create(self, role: str, label: str, subject_id: str | None = None) -> IssuedKey:
        """A new key for a policy role; the token is returned once and never stored."""
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
        key_id = new_id("key")
        secret = secrets.token_urlsafe(32)
        with self._tx.write() as uow:
            uow.connection.execute(
                insert(_KEYS),
                {
                    "id": key_id,
                    "secret_hash": _hash(secret),
                    "role": role,
                    "subject_id": subject_id,
                    "label": label[:200],
                    "created_at": self._clock.now(),
                },
            )
            uow.commit()
        return IssuedKey(key_id, role, f"{_PREFIX}_{key_id}.{secret}")

    def authenticate(self, token: str) -> Caller:
        prefix, _, rest = token.partition("_")
        key_id, _, secret = rest.partition(".")
        if prefix != _PREFIX or not key_id or not secret:
            raise _unauthenticated()
        with self._tx.read() as uow:
            row = uow.connection.execute(select(_KEYS).where(_KEYS.c.id == key_id)).first()
        expected = row.secret_hash if row is not None else _hash("")
        if not hmac.compare_digest(expected, _hash(secret)) or row is None or row.revoked_at:
            raise _unauthenticated()
        role = self._policy.roles.get(row.role)
        if role is None:
            raise _unauthenticated()
        return Caller(Actor(role.kind, role.key, principal=row.id), row.subject_id)

    def revoke(self, key_id: str) -> None:
        with self._tx.write() as uow:
            uow.connection.execute(
                update(_KEYS)
                .where(_KEYS.c.id == key_id, _KEYS.c.revoked_at.is_(None))
                .values(revoked_at=self._clock.now())
            )
            uow.commit()


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _unauthenticated() -> Unauthenticated:
    return Unauthenticated(
        LocalText("缺少或无效的 API 密钥", "missing or invalid API key"), field="Authorization"
    )
