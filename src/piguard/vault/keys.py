"""Data keys per subject: created, wrapped into the key store, unwrapped on use, destroyed on erase.

Wrapping goes through the `KeyWrapper` port: the local key-encryption key (key file or master
key, `crypto.KeyMaterial`) by default, a KMS adapter in production. Unwrapped keys are cached
briefly in memory: a read then costs no key-store or KMS round trip. Erasing in this process
evicts at once; other processes drop the key when its cache entry ages out.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Protocol, runtime_checkable

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


class DataKeys:
    """The vault's view of per-subject data keys."""

    def __init__(self, store: KeyStore, wrapper: KeyWrapper) -> None:
        self.store = store
        self.wrapper = wrapper
        self._cache: OrderedDict[str, tuple[float, DataKey]] = OrderedDict()

    def create(self, subject_id: str) -> DataKey:
        key = DataKey.generate()
        wrapped = self.wrapper.wrap(key, key_aad_for(subject_id))
        self.store.put(subject_id, wrapped, self.wrapper.key_id)
        self._remember(subject_id, key)
        return key

    def get(self, subject_id: str) -> DataKey:
        hit = self._cache.get(subject_id)
        if hit is not None and time.monotonic() - hit[0] < _CACHE_SECONDS:
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

    def _remember(self, subject_id: str, key: DataKey) -> None:
        self._cache[subject_id] = (time.monotonic(), key)
        self._cache.move_to_end(subject_id)
        while len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
