"""Subject snapshots for the decision engine, cached by the subject's state version.

Every change of consents, settings or status bumps `subjects.state_version` in the same
transaction, and each decision reads that version in its own transaction: a cached snapshot is
used only while it is current, so a withdrawal takes effect at once, in every process (R2).

Age comes from the verified identity number the policy binds (`bindings.age_from`), which only
registration writes: never from a value a caller could overwrite (M1).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace
from datetime import date

from sqlalchemy import Connection

from piguard.consent.model import current_consents, current_settings, guardian_state
from piguard.consent.repository import ConsentRepository
from piguard.kernel.clock import Clock
from piguard.kernel.errors import InvalidInput
from piguard.policy.decision import SubjectState
from piguard.policy.model import Policy
from piguard.vault.crypto import aad_for
from piguard.vault.identifiers import age_on, birth_date_from_resident_id
from piguard.vault.keys import DataKeys
from piguard.vault.repository import GONE, SubjectStatus, VaultRepository

_CACHE_SIZE = 20_000
# (version, snapshot, birth date, the day `aged` was computed for, snapshot with age then)
_Entry = tuple[tuple[int, str], SubjectState, date | None, date | None, SubjectState]


class SubjectStates:
    def __init__(self, policy: Policy, keys: DataKeys, clock: Clock) -> None:
        self._policy = policy
        self._keys = keys
        self._clock = clock
        self._cache: OrderedDict[str, _Entry] = OrderedDict()

    def of(self, connection: Connection, subject: SubjectStatus) -> SubjectState:
        """The current snapshot of a subject whose row was read in this transaction."""
        version = (subject.state_version, subject.status)
        hit = self._cache.get(subject.id)
        if hit is None or hit[0] != version:
            state, birth = self._load(connection, subject)
            hit = (version, state, birth, None, state)
            self._cache[subject.id] = hit
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return self._aged(subject.id, hit)

    def cached(self, subject_id: str) -> tuple[SubjectState, tuple[int, str]] | None:
        """The snapshot last read of a subject and its (state version, status), without reading
        the database: current only if that version still is (`committer.Basis`). None: not
        cached, or gone then."""
        hit = self._cache.get(subject_id)
        if hit is None or hit[0][1] in GONE:
            return None
        return self._aged(subject_id, hit), hit[0]

    def _aged(self, subject_id: str, hit: _Entry) -> SubjectState:
        version, state, birth, aged_on, aged = hit
        today = self._clock.now().date()
        if birth is None or aged_on == today:
            return aged
        # The age changes at most daily: rebuilding the snapshot for it on every decision would
        # cost more than the decision.
        aged = replace(state, age=age_on(birth, today) if birth <= today else 0)
        self._cache[subject_id] = (version, state, birth, today, aged)
        return aged

    def _load(
        self, connection: Connection, subject: SubjectStatus
    ) -> tuple[SubjectState, date | None]:
        consents = ConsentRepository(connection)
        events = consents.events(subject.id)
        guardians = guardian_state(events)
        state = SubjectState(
            consents=current_consents(events),
            settings=current_settings(self._policy, consents.settings(subject.id)),
            guardian_consents=guardians.scopes,
            guardian_objection=guardians.objection,
            closed=subject.status != "active",
        )
        return state, self._birth_date(connection, subject.id)

    def _birth_date(self, connection: Connection, subject_id: str) -> date | None:
        source = self._policy.bindings.age_from
        if source is None:
            return None
        rows = VaultRepository(connection).values(subject_id, (source,))
        if not rows:
            return None
        key = self._keys.get(subject_id)
        raw = key.decrypt(rows[0].ciphertext, aad_for(subject_id, source, rows[0].id))
        return birth_date_of(raw.decode())


def birth_date_of(id_number: str) -> date | None:
    """The birth date an identity number carries, or None if a stored value cannot be read: a
    damaged value must never make a subject unreadable or unerasable. Registration validates
    the number and nothing may rewrite it, so only tampering with the database gets here."""
    try:
        return birth_date_from_resident_id(id_number)
    except InvalidInput:
        return None
