"""Data keys per subject: created, wrapped into the key store, unwrapped on use, destroyed on erase.

Unwrapped keys are cached briefly in memory: a read then costs no key-store round trip. Erasing in
this process evicts at once; other processes drop the key when its cache entry ages out.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from piguard.kernel.errors import IntegrityError
from piguard.kernel.text import LocalText
from piguard.vault.crypto import DataKey, KeyMaterial, key_aad_for
from piguard.vault.keystore import KeyStore

_CACHE_SIZE = 10_000
_CACHE_SECONDS = 60.0


class DataKeys:
    """The vault's view of per-subject data keys."""

    def __init__(self, store: KeyStore, material: KeyMaterial) -> None:
        self.store = store
        self.material = material
        self._cache: OrderedDict[str, tuple[float, DataKey]] = OrderedDict()

    def create(self, subject_id: str) -> DataKey:
        key = DataKey.generate()
        wrapped = self.material.kek.wrap(key, key_aad_for(subject_id))
        self.store.put(subject_id, wrapped, self.material.kek.key_id)
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
        key = self.material.unwrap(wrapped, key_aad_for(subject_id))
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
