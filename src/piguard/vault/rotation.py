"""Key-encryption-key rotation: re-wrap every data key under a new KEK, data untouched.

Safe to interrupt and re-run: the key file gains the new KEK (keeping the old one, retired)
atomically before any data key is re-wrapped; each batch commits on its own; the retired KEKs are
dropped only once no data key needs them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from piguard.vault.crypto import KeyMaterial, key_aad_for, load_or_create_key_file, write_key_file
from piguard.vault.keystore import KeyStore


@dataclass(frozen=True, slots=True)
class RotationReport:
    kek_id: str
    rewrapped: int
    resumed: bool


def rotate(key_file: Path, store: KeyStore, batch: int = 500) -> RotationReport:
    material = load_or_create_key_file(key_file)
    resumed = bool(material.retired_keks)
    if not resumed:
        material = material.rotated()
        write_key_file(key_file, material)
    rewrapped = _rewrap_all(material, store, batch)
    write_key_file(key_file, replace(material, retired_keks=()))
    return RotationReport(material.kek.key_id, rewrapped, resumed)


def _rewrap_all(material: KeyMaterial, store: KeyStore, batch: int) -> int:
    done = 0
    while True:
        pending = list(store.wrapped_by_other_keks(material.kek.key_id, batch))
        if not pending:
            return done
        items = [
            (sid, material.kek.wrap(material.unwrap(wrapped, key_aad_for(sid)), key_aad_for(sid)))
            for sid, wrapped in pending
        ]
        store.rewrap(items, material.kek.key_id)
        done += len(items)
