"""Support for the audit tests: signed checkpoint lines, as piguard's checkpointer writes them."""

from __future__ import annotations

from piguard.audit.checkpoint import encode_line, make_checkpoint
from piguard.vault.crypto import CheckpointSigner

SIGNER = CheckpointSigner.generate()
OTHER_SIGNER = CheckpointSigner.generate()


class Keyed:
    """A CheckpointSigner as a `checkpoint.Signer` (named by a key id)."""

    def __init__(self, signer: CheckpointSigner, key_id: str = "k1") -> None:
        self._signer = signer
        self.key_id = key_id

    def sign(self, data: bytes) -> bytes:
        return self._signer.sign(data)


def checkpoint_line(seq: int, head: str = "a" * 64, signer: CheckpointSigner = SIGNER) -> bytes:
    """The line of a checkpoint at `seq` naming `head`, signed by `signer`."""
    cp = make_checkpoint(Keyed(signer), seq, head, f"2026-11-29T10:00:{seq % 60:02d}.000000+00:00")
    return encode_line(cp, signer.public_bytes())
