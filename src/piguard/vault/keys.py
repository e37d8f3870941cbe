"""Data keys per subject: created, wrapped into the key store, unwrapped on use, destroyed on erase.

Wrapping goes through the `KeyWrapper` port: the local key-encryption key (key file or master
key, `crypto.KeyMaterial`) by default, a KMS adapter in production. Unwrapped keys are cached
briefly in memory: a read then costs no key-store or KMS round trip. Erasing in this process
evicts at once; other processes drop the key when its cache entry ages out (by the injected
clock; an entry from the future, after the clock was set back, counts as aged out).
A wrapper that can tell whether a KEK was retired (`RetiringWrapper`, the local key file) is
asked after each new key is stored, so a retire that ran meanwhile cannot strand that key.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime
from typing import Protocol, runtime_checkable

from piguard.kernel.clock import Clock, SystemClock
from piguard.kernel.errors import IntegrityError
from piguard.kernel.text import LocalText
from piguard.vault.crypto import DataKey, key_aad_for
from piguard.vault.keystore import KeyStore

_CACHE_SIZE = 10_000
_CACHE_SECONDS = 60.0


@runtime_checkable
class KeyWrapper(Protocol):
    """Envelope encryption of data keys.

    A KMS adapter implements these three members with the KMS's encrypt and decrypt calls,
    passing `context` as the encryption context (it binds a wrapped key to its subject), and
    `DataKey.export()` / `DataKey(raw)` on either side. Wrapped keys stay in piguard's key store,
    beside the `key_id` that wrapped them, so erasure stays a local delete.
    """

    @property
    def key_id(self) -> str:
        """The id of the key that wraps new data keys (at most 16 characters)."""
        ...

    def wrap(self, data_key: DataKey, context: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes, context: bytes) -> DataKey:
        """The data key, or IntegrityError when `wrapped` or `context` was altered."""
        ...


@runtime_checkable
class RetiringWrapper(Protocol):
    """A `KeyWrapper` whose old keys can be retired while this process runs (the key file)."""

    def still_holds(self, key_id: str) -> bool:
        """Whether `key_id` can still unwrap (checked now, not from a stale copy)."""
        ...


class DataKeys:
    """The vault's view of per-subject data keys.

    Invariant: the `kek_id` stored beside a wrapped key is never newer than the KEK that wrapped
    it (it is read before wrapping), so rotation and retirement never skip a key.
    """

    def __init__(
        self,
        store: KeyStore,
        wrapper: KeyWrapper,
        clock: Clock | None = None,
        *,
        cache_seconds: float = _CACHE_SECONDS,
    ) -> None:
        self.store = store
        self.wrapper = wrapper
        self._clock = clock or SystemClock()
        self._cache_seconds = cache_seconds
        self._cache: OrderedDict[str, tuple[datetime, DataKey]] = OrderedDict()

    def create(self, subject_id: str) -> DataKey:
        key = DataKey.generate()
        aad = key_aad_for(subject_id)
        kek_id = self.wrapper.key_id
        self.store.put(subject_id, self.wrapper.wrap(key, aad), kek_id)
        if isinstance(self.wrapper, RetiringWrapper) and not self.wrapper.still_holds(kek_id):
            # A retire ran between wrapping and storing: wrap again under the newest KEK (the
            # retire re-wraps what it sees; what it could not see yet is ours to fix).
            kek_id = self.wrapper.key_id
            self.store.rewrap([(subject_id, self.wrapper.wrap(key, aad))], kek_id)
        self._remember(subject_id, key)
        return key

    def get(self, subject_id: str) -> DataKey:
        hit = self._cache.get(subject_id)
        if hit is not None and 0 <= self._age(hit[0]) < self._cache_seconds:
            return hit[1]
        wrapped = self.store.get(subject_id)
        if wrapped is None:
            raise IntegrityError(
                LocalText("该主体的数据密钥已销毁", "the data key of this subject was destroyed")
            )
        key = self.wrapper.unwrap(wrapped, key_aad_for(subject_id))
        self._remember(subject_id, key)
        return key

    def destroy(self, subject_id: str) -> None:
        self._cache.pop(subject_id, None)
        self.store.destroy(subject_id)

    def _age(self, since: datetime) -> float:
        return (self._clock.now() - since).total_seconds()

    def _remember(self, subject_id: str, key: DataKey) -> None:
        self._cache[subject_id] = (self._clock.now(), key)
        self._cache.move_to_end(subject_id)
        while len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
