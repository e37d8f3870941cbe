"""The consent ledger and settings service: append-only events, each checked and audited.

Recording a choice is itself processing (purpose `consent_management` in the policy), so it goes
through the enforcement point like every other use. A grant names the policy version and the hash
of the notice the subject saw; a receipt per event is available as Kantara Consent Receipt v1.1.
"""

from __future__ import annotations

from dataclasses import dataclass

from piguard.consent.model import (
    EVIDENCE_ALLOWED,
    ConsentEvent,
    ConsentEventKind,
    SettingEvent,
    current_consents,
    current_settings,
    is_evidence_reference,
    kantara_receipt,
)
from piguard.consent.repository import ConsentRepository
from piguard.db.uow import Transactions, UnitOfWork
from piguard.enforcement import Enforcer
from piguard.kernel.clock import Clock
from piguard.kernel.errors import InvalidInput, NotFound
from piguard.kernel.ids import new_id
from piguard.kernel.text import Lang, LocalText
from piguard.policy import scopes
from piguard.policy.decision import Actor, DecisionRequest
from piguard.policy.model import Action, ConsentType, Policy
from piguard.vault.repository import VaultRepository
from piguard.vault.service import VaultService

CHANNELS = frozenset({"app", "web", "api", "sms", "phone", "counter", "letter"})
METHODS = frozenset({"checkbox", "in_context", "agreement", "sms_reply", "api", "verbal", "paper"})


@dataclass(frozen=True, slots=True)
class Provenance:
    """How a choice was collected: channel, method and evidence (a reference, never PI)."""

    channel: str = "api"
    method: str = "api"
    evidence: str = ""


class ConsentService:
    def __init__(
        self,
        *,
        transactions: Transactions,
        policy: Policy,
        enforcer: Enforcer,
        vault: VaultService,
        notice_hash: str,
        clock: Clock,
    ) -> None:
        self._tx = transactions
        self._policy = policy
        self._enforcer = enforcer
        self._vault = vault
        self._notice_hash = notice_hash
        self._clock = clock

    def grant(
        self,
        actor: Actor,
        subject_id: str,
        scope: str,
        consent_type: ConsentType = ConsentType.REGULAR,
        how: Provenance = Provenance(),
        guardian_id: str | None = None,
    ) -> ConsentEvent:
        """Record a consent; `guardian_id` only from `GuardianService`, which verified the link."""
        return self._record(
            actor, subject_id, ConsentEventKind.GRANT, scope, consent_type, how, guardian_id
        )

    def withdraw(
        self,
        actor: Actor,
        subject_id: str,
        scope: str,
        how: Provenance = Provenance(),
        guardian_id: str | None = None,
    ) -> ConsentEvent:
        """Withdrawal is as easy as the grant and takes effect for every later decision."""
        return self._record(
            actor,
            subject_id,
            ConsentEventKind.WITHDRAW,
            scope,
            ConsentType.REGULAR,
            how,
            guardian_id,
        )

    def history(
        self, actor: Actor, subject_id: str
    ) -> tuple[list[ConsentEvent], dict[str, ConsentType]]:
        with self._tx.read() as uow:
            req = self._read_request(uow, actor, subject_id)
            events = ConsentRepository(uow.connection).events(subject_id)
        self._enforcer.require(req, subject_id)
        return events, current_consents(events)

    def receipt(
        self, actor: Actor, subject_id: str, event_id: str, lang: Lang = "zh"
    ) -> dict[str, object]:
        with self._tx.read() as uow:
            req = self._read_request(uow, actor, subject_id)
            event = ConsentRepository(uow.connection).event(subject_id, event_id)
        self._enforcer.require(req, subject_id)
        if event is None:
            raise NotFound(LocalText("没有该同意记录", "no such consent event"), field="event_id")
        return kantara_receipt(event, self._policy, lang)

    def settings(self, actor: Actor, subject_id: str) -> dict[str, bool]:
        with self._tx.read() as uow:
            req = self._read_request(uow, actor, subject_id)
            events = ConsentRepository(uow.connection).settings(subject_id)
        self._enforcer.require(req, subject_id)
        return current_settings(self._policy, events)

    def change_settings(
        self, actor: Actor, subject_id: str, changes: dict[str, bool], channel: str = "api"
    ) -> dict[str, bool]:
        """Change some settings at once (C2.3, C4, C7(2), U1); all or nothing."""
        unknown = [i for i, key in enumerate(changes) if key not in self._policy.settings]
        if unknown or not changes:  # an unknown key is named by its position, never echoed
            where = f"changes.<key:{unknown[0]}>" if unknown else "changes"
            raise InvalidInput(
                LocalText(f"{where}：未知的设置", f"{where}: unknown setting"),
                field=where,
                allowed=", ".join(self._policy.settings),
            )
        _check_choice("channel", channel, CHANNELS)
        with self._tx.write() as uow:
            self._check(uow, actor, subject_id)
            repo = ConsentRepository(uow.connection)
            now = self._clock.now()
            for key, value in changes.items():
                repo.add_setting(SettingEvent(subject_id, key, bool(value), channel, now))
            state = current_settings(self._policy, repo.settings(subject_id))
            uow.commit()
        return state

    def _record(
        self,
        actor: Actor,
        subject_id: str,
        kind: ConsentEventKind,
        scope: str,
        consent_type: ConsentType,
        how: Provenance,
        guardian_id: str | None,
    ) -> ConsentEvent:
        self._validate_scope(scope)
        _check_choice("channel", how.channel, CHANNELS)
        _check_choice("method", how.method, METHODS)
        if how.evidence and not is_evidence_reference(how.evidence):
            raise InvalidInput(
                LocalText("证据须为引用编号", "evidence must be a reference, not free text"),
                field="evidence",
                allowed=EVIDENCE_ALLOWED,
            )
        event = ConsentEvent(
            id=new_id("cr"),
            subject_id=subject_id,
            kind=kind,
            scope=scope,
            consent_type=consent_type,
            policy_version=self._policy.key,
            notice_hash=self._notice_hash,
            channel=how.channel,
            method=how.method,
            evidence=how.evidence,
            at=self._clock.now(),
            guardian_id=guardian_id,
        )
        with self._tx.write() as uow:
            self._check(uow, actor, subject_id, detail=kind)
            ConsentRepository(uow.connection).add(event)
            uow.commit()
        return event

    def _check(self, uow: UnitOfWork, actor: Actor, subject_id: str, detail: str = "") -> None:
        """Decide a change, audited in its transaction."""
        b = self._policy.bindings
        state = self._vault.live_state(uow.connection, subject_id, lock=True)
        req = DecisionRequest(Action.UPDATE, actor, b.consent_purpose, (b.consent_category,), state)
        self._enforcer.require(req, subject_id, uow, detail=detail)
        # Every later decision must see this change, in every process (R2).
        VaultRepository(uow.connection).state_changed(subject_id)

    def _read_request(self, uow: UnitOfWork, actor: Actor, subject_id: str) -> DecisionRequest:
        """The request to read consents, from the subject's state in `uow`. The caller decides
        it once the read transaction is over: a read waits for its audit record's commit, and a
        snapshot held meanwhile would keep SQLite's WAL from being reset."""
        b = self._policy.bindings
        state = self._vault.live_state(uow.connection, subject_id)
        return DecisionRequest(Action.READ, actor, b.consent_purpose, (b.consent_category,), state)

    def _validate_scope(self, scope: str) -> None:
        try:
            kind = scopes.scope_kind(scope)
        except ValueError:
            raise InvalidInput(
                LocalText("无效的同意范围", "invalid consent scope"),
                field="scope",
                allowed="purpose:<p>, share:<recipient>:<p>, share_type:<type>:<p>, "
                f"transfer:<recipient>, disclose:<p>, cross_border:<p>, {scopes.SERVICE}",
            ) from None
        if kind == "service":
            if scope != scopes.SERVICE:
                raise InvalidInput(
                    LocalText("无效的同意范围", "invalid consent scope"),
                    field="scope",
                    allowed=scopes.SERVICE,
                )
            return
        purposes = [part for part in scope.split(":")[1:] if part in self._policy.purposes]
        if kind != "transfer" and not purposes:
            raise InvalidInput(
                LocalText("同意范围未指明已声明的用途", "the scope names no declared purpose"),
                field="scope",
                allowed=", ".join(self._policy.purposes),
            )


def _check_choice(field: str, value: str, allowed: frozenset[str]) -> None:
    if value not in allowed:
        raise InvalidInput(
            LocalText(f"{field} 的值无效", f"invalid {field}"),
            field=field,
            allowed=", ".join(sorted(allowed)),
        )
