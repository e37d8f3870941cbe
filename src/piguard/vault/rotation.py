"""Key-encryption-key rotation and retirement: re-wrap every data key, then drop the old KEKs.

Two steps, so a key-store backup can be made useless on purpose (R4) without stranding a key:
- `rotate` adds a new current KEK to the key file (the old ones kept, retired) atomically before
  any data key is re-wrapped, then re-wraps every data key through the `KeyWrapper` port, a batch
  per transaction. Interrupted, it is re-run: while the file holds retired KEKs, `rotate` only
  finishes re-wrapping, so a key a server wrapped with an old KEK meanwhile is picked up too.
- `retire` drops the retired KEKs from the key file, refusing while any data key is still
  wrapped by one. A key stored by a server that had not yet seen the rotation between its check
  and its write is re-wrapped with the retired KEKs it still holds in memory; a key stored after
  its write is re-wrapped by that server (`DataKeys.create`). Once the file no longer holds a
  KEK, no backup of the key store taken while that KEK was in use opens with it.
Both hold an exclusive lock beside the key file: two of them never write it at once.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from piguard.audit.ports import AuditDraft, AuditSink
from piguard.db.uow import Transactions
from piguard.kernel.errors import Conflict, IntegrityError
from piguard.kernel.text import LocalText
from piguard.policy.model import Policy
from piguard.vault.crypto import KeyMaterial, key_aad_for, load_or_create_key_file, write_key_file
from piguard.vault.keys import KeyWrapper
from piguard.vault.keystore import KeyStore


@dataclass(frozen=True, slots=True)
class RotationReport:
    kek_id: str
    rewrapped: int
    resumed: bool
    retired: tuple[str, ...]  # KEKs kept in the key file until `retire`


@dataclass(frozen=True, slots=True)
class RetireReport:
    kek_id: str
    retired: tuple[str, ...]  # KEKs dropped from the key file (none: there was nothing to do)
    rewrapped: int  # keys stored by a server during the retire, re-wrapped by it


class StillWrapped(Conflict):
    """`retire` refused: data keys are still wrapped by a retired KEK."""

    code = "kek_still_in_use"


@contextmanager
def key_file_lock(key_file: Path) -> Iterator[None]:
    """Hold the key file's rotation lock, or refuse at once: another rotate or retire runs."""
    lock = key_file.with_name(f".{key_file.name}.lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise IntegrityError(
            LocalText(
                f"无法锁定密钥文件 {key_file}（{exc.strerror}）：其所在目录必须可写",
                f"cannot lock the key file {key_file} ({exc.strerror}): its folder must be "
                "writable to rotate or retire keys",
            )
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Conflict(
                LocalText(
                    "另一个密钥轮换或停用操作正在进行，请稍后重试",
                    "another key rotation or retirement is running; try again when it ends",
                )
            ) from None
        yield
    finally:
        os.close(fd)  # closing releases the lock


def rewrap_all(wrapper: KeyWrapper, store: KeyStore, batch: int = 500) -> int:
    """Re-wrap, through the port, every data key not yet under `wrapper.key_id`.

    A KMS adapter rotates the same way: its `key_id` names its new key version, and this moves
    every data key onto it. Each batch commits on its own; returns how many were re-wrapped."""
    target = wrapper.key_id
    done = 0
    while True:
        pending = list(store.wrapped_by_other_keks(target, batch))
        if not pending:
            return done
        store.rewrap(_rewrapped(wrapper, pending), target)
        done += len(pending)


def _rewrapped(wrapper: KeyWrapper, items: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    return [
        (sid, wrapper.wrap(wrapper.unwrap(wrapped, key_aad_for(sid)), key_aad_for(sid)))
        for sid, wrapped in items
    ]


def _ids(material: KeyMaterial) -> tuple[str, ...]:
    return tuple(kek.key_id for kek in material.retired_keks)


def rotate(key_file: Path, store: KeyStore, batch: int = 500) -> RotationReport:
    """Make a new KEK current (unless a rotation is unfinished) and re-wrap every data key."""
    with key_file_lock(key_file):
        material = load_or_create_key_file(key_file)
        resumed = bool(material.retired_keks)
        if not resumed:
            material = material.rotated()
            write_key_file(key_file, material)
        rewrapped = rewrap_all(material, store, batch)
    return RotationReport(material.key_id, rewrapped, resumed, _ids(material))


def retire(key_file: Path, store: KeyStore, batch: int = 500) -> RetireReport:
    """Drop the retired KEKs from the key file; StillWrapped while a data key needs one."""
    with key_file_lock(key_file):
        material = load_or_create_key_file(key_file)
        retired = _ids(material)
        if not retired:
            return RetireReport(material.key_id, (), 0)
        counts = store.count_by_kek()
        waiting = sum(counts.get(kek_id, 0) for kek_id in retired)
        if waiting:
            raise _still_wrapped(waiting, retired)
        write_key_file(key_file, material.without_retired())
        # Keys stored between the count and the write, by a server still on an old KEK: the
        # retired KEKs are still in `material`, so they move onto the current one now.
        rewrapped = 0
        while pending := store.wrapped_by_keks(retired, batch):
            store.rewrap(_rewrapped(material, pending), material.key_id)
            rewrapped += len(pending)
    return RetireReport(material.key_id, retired, rewrapped)


def _still_wrapped(waiting: int, retired: tuple[str, ...]) -> StillWrapped:
    ids = ", ".join(retired)
    return StillWrapped(
        LocalText(
            f"仍有 {waiting} 个数据密钥由待停用的密钥加密密钥 {ids} 封装（可能由尚未重新加载"
            "密钥文件的服务器写入）：请先运行 `piguard keys rotate` 完成重新封装，再停用",
            f"{waiting} data keys are still wrapped by the retired key-encryption key(s) {ids} "
            "(perhaps written by a server that had not reloaded the key file yet): run "
            "`piguard keys rotate` to re-wrap them, then retire again",
        ),
        field="retired_keks",
    )


class KekRotation:
    """Rotation and retirement as operator commands: each outcome is an audit record naming the
    operator and the KEK ids (never key material). A refused retire is recorded as a denial."""

    def __init__(
        self,
        key_file: Path,
        store: KeyStore,
        transactions: Transactions,
        audit: AuditSink,
        policy: Policy,
    ) -> None:
        self._key_file = key_file
        self._store = store
        self._tx = transactions
        self._audit = audit
        self._policy = policy

    def rotate(self, actor: str, batch: int = 500) -> RotationReport:
        report = rotate(self._key_file, self._store, batch)
        how = "resumed" if report.resumed else "new"
        self._record(actor, "kek_rotate", f"{how}:{report.kek_id}:rewrapped:{report.rewrapped}")
        return report

    def retire(self, actor: str, batch: int = 500) -> RetireReport:
        try:
            report = retire(self._key_file, self._store, batch)
        except StillWrapped:
            self._record(actor, "kek_retire", "refused:still_wrapped", effect="deny")
            raise
        self._record(actor, "kek_retire", "retired:" + ("-".join(report.retired) or "none"))
        return report

    def _record(self, actor: str, action: str, detail: str, effect: str = "allow") -> None:
        b = self._policy.bindings
        draft = AuditDraft(
            actor=actor,
            action=action,
            purpose=b.keys_purpose,
            subject="",
            categories=(b.keys_category,),
            effect=effect,
            clauses=("S2", "R4"),
            policy_version=self._policy.key,
            detail=f"{action}:{detail}"[:200],  # the chain's bound; ids are 8 hex each
        )
        with self._tx.write() as uow:
            self._audit.append(uow, [draft])
            uow.commit()
