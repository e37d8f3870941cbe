"""The local `KeyWrapper` over the key file, following rotation and retirement while it runs.

A server loads the key file once at start; `piguard keys rotate` and `retire`, run by another
process, replace the file atomically. This wrapper notices, so a server never needs a restart:
- asked for the KEK that wraps new data keys, it stats the file (one system call) and reloads it
  when it changed, so new keys are wrapped by the newest KEK;
- meeting a data key wrapped by a KEK it does not know, it checks the file at most once per
  `recheck_seconds`: a forged wrapped key naming random KEK ids costs one stat per interval,
  never a storm of reloads;
- `still_holds(key_id)` tells `DataKeys`, after a new key is stored, whether a retire dropped the
  KEK that wrapped it meanwhile (it is then wrapped again under the newest KEK).
A file that cannot be read keeps the keys already loaded: a bad edit does not stop a server.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from piguard.kernel.errors import IntegrityError
from piguard.vault.crypto import DataKey, KeyMaterial, read_key_file, wrapped_key_id

RECHECK_SECONDS = 1.0
_Signature = tuple[int, int, int, int]


def _signature(path: Path) -> _Signature | None:
    # A replaced file has another inode, size or time: enough to know it must be read again.
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


class KeyFileWrapper:
    """The key file's KEKs as a `vault.keys.KeyWrapper`, reloaded when the file changes.

    Invariant: `material` is always a complete key set that was once in the file; it is replaced
    whole (one reference), so a wrap or unwrap in another thread sees the old set or the new one.
    """

    def __init__(
        self,
        path: Path,
        material: KeyMaterial,
        *,
        recheck_seconds: float = RECHECK_SECONDS,
        ticks: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = path
        self.material = material
        self._seen = _signature(path)
        self._recheck = recheck_seconds
        self._ticks = ticks
        self._last_unknown = -math.inf
        self._lock = threading.Lock()
        self.reloads = 0

    @property
    def key_id(self) -> str:
        """The id of the newest KEK in the file: the one that wraps new data keys."""
        self._refresh()
        return self.material.key_id

    def wrap(self, data_key: DataKey, context: bytes) -> bytes:
        return self.material.wrap(data_key, context)

    def unwrap(self, wrapped: bytes, context: bytes) -> DataKey:
        """Unwrap with the KEK named in `wrapped`; an unknown one first sends us to the file."""
        if wrapped_key_id(wrapped) not in self._known() and self._may_recheck():
            self._refresh()
        return self.material.unwrap(wrapped, context)

    def still_holds(self, key_id: str) -> bool:
        """Whether the key file (read now if it changed) still has the KEK `key_id`."""
        self._refresh()
        return key_id in self._known()

    def _known(self) -> set[str]:
        return {kek.key_id for kek in self.material.kek_chain()}

    def _may_recheck(self) -> bool:
        with self._lock:
            now = self._ticks()
            if now - self._last_unknown < self._recheck:
                return False
            self._last_unknown = now
            return True

    def _refresh(self) -> None:
        seen = _signature(self._path)
        if seen is None or seen == self._seen:
            return
        with self._lock:
            if seen == self._seen:
                return
            try:
                material = read_key_file(self._path)
            except (OSError, IntegrityError):
                return
            self.material, self._seen = material, seen
            self.reloads += 1
