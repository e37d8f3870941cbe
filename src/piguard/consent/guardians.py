"""Guardians of minors (M1): a verified adult, linked to the minor, registers them and consents
for them, scope by scope; a guardian's withdrawal of the service scope is an objection.

A guardian acts under the policy's guardian role (`bindings.guardian_role`), which piguard gives
a caller only after checking the link it recorded itself: a minor, or anyone else, claiming a
guardian's consent gets nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from piguard.consent.model import EVIDENCE_ALLOWED, ConsentEvent, is_evidence_reference
from piguard.consent.repository import ConsentRepository
from piguard.consent.service import ConsentService, Provenance
from piguard.db.uow import Transactions
from piguard.kernel.errors import Denied, InvalidInput
from piguard.kernel.text import LocalText
from piguard.policy.decision import Actor
from piguard.policy.model import ActorKind, ConsentType, Policy
from piguard.vault.repository import no_such_subject
from piguard.vault.service import VaultService, WardLink

RELATIONS: Final = frozenset({"parent", "legal_guardian"})


class GuardianService:
    """What a guardian may do for a minor, each step checked against the recorded link."""

    def __init__(
        self,
        *,
        transactions: Transactions,
        policy: Policy,
        vault: VaultService,
        consents: ConsentService,
        notice_hash: str,
    ) -> None:
        self._tx = transactions
        self._policy = policy
        self._vault = vault
        self._consents = consents
        self._notice_hash = notice_hash

    def register_ward(
        self,
        caller: Actor,
        guardian_id: str,
        values: Mapping[str, str],
        relation: str,
        evidence: str,
    ) -> str:
        """Register a minor, linked to the calling guardian, with the guardian's consent to the
        minor's use of the service (M1: registration included)."""
        _check_link_facts(relation, evidence)
        actor = self._as_guardian(caller, guardian_id)
        link = WardLink(guardian_id, relation, evidence, self._notice_hash)
        return self._vault.register(actor, values, source=f"guardian:{guardian_id}", ward_of=link)

    def grant(
        self,
        caller: Actor,
        guardian_id: str,
        minor_id: str,
        scope: str,
        consent_type: ConsentType,
        how: Provenance,
    ) -> ConsentEvent:
        """A guardian's consent for one scope of a linked minor, never for everything."""
        actor = self._linked(caller, guardian_id, minor_id)
        return self._consents.grant(actor, minor_id, scope, consent_type, how, guardian_id)

    def withdraw(
        self, caller: Actor, guardian_id: str, minor_id: str, scope: str, how: Provenance
    ) -> ConsentEvent:
        """A guardian's withdrawal; of the service scope, an objection that stops the minor's
        use of the service (M1)."""
        actor = self._linked(caller, guardian_id, minor_id)
        return self._consents.withdraw(actor, minor_id, scope, how, guardian_id)

    def _linked(self, caller: Actor, guardian_id: str, minor_id: str) -> Actor:
        actor = self._as_guardian(caller, guardian_id)
        with self._tx.read() as uow:
            link = ConsentRepository(uow.connection).guardianship(minor_id, guardian_id)
        if link is None:  # not linked and not there look the same
            raise no_such_subject()
        return actor

    def _as_guardian(self, caller: Actor, guardian_id: str) -> Actor:
        """The guardian role for a live adult subject acting on their own behalf."""
        role = self._policy.bindings.guardian_role
        if caller.kind is not ActorKind.SUBJECT or role is None:
            raise Denied(
                LocalText("只有监护人本人可以这样做", "only a guardian in person may do this"),
                reasons=("M1:guardian_only",),
            )
        state = self._vault.snapshot(guardian_id)
        if state.age is None or self._policy.minors.is_minor(state.age):
            raise Denied(
                LocalText("监护人须为已核验身份的成年人", "a guardian must be a verified adult"),
                reasons=("M1:guardian_not_adult",),
            )
        return Actor(ActorKind.SUBJECT, role, principal=caller.principal)


def _check_link_facts(relation: str, evidence: str) -> None:
    if relation not in RELATIONS:
        raise InvalidInput(
            LocalText("监护关系无效", "invalid guardian relation"),
            field="relation",
            allowed=", ".join(sorted(RELATIONS)),
        )
    if not is_evidence_reference(evidence):
        raise InvalidInput(
            LocalText("证明材料须为引用编号", "evidence must be a document reference"),
            field="evidence",
            allowed=EVIDENCE_ALLOWED,
        )
