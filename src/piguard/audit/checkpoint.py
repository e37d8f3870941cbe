"""Signed checkpoints: the chain head at a seq, signed with a key kept outside the database.

The chain alone shows edits, deletions and moves inside the log; only a checkpoint kept elsewhere
shows that its newest records were dropped (truncation) or that the chain was rebuilt from a point.
Signing comes in through `Signer`; this module never touches key material or `cryptography`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from piguard.audit.chain import is_link_hash
from piguard.kernel.errors import InvalidInput
from piguard.kernel.text import LocalText

CHECKPOINT_KIND: Final = "piguard.audit.checkpoint/1"
"""Signed inside every payload, so a signature over anything else never passes for a checkpoint."""

SignatureCheck = Callable[[bytes, bytes], bool]
"""(payload, signature) -> True when the signature is valid under the trusted public key."""


class Signer(Protocol):
    """Anything that signs checkpoint payloads: the Ed25519 signer in `vault`, a test HMAC."""

    @property
    def key_id(self) -> str: ...

    def sign(self, data: bytes) -> bytes: ...


def checkpoint_payload(seq: int, hash: str, at: str) -> bytes:
    """The signed bytes: sorted-key compact JSON of kind, seq, hash and time."""
    body = {"kind": CHECKPOINT_KIND, "seq": seq, "hash": hash, "at": at}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The chain head `hash` at `seq`, signed at time `at` by key `key_id`."""

    seq: int
    hash: str
    at: str
    signature: bytes
    key_id: str

    def __post_init__(self) -> None:
        if isinstance(self.seq, bool) or not isinstance(self.seq, int) or self.seq < 1:
            raise _invalid("seq", "an integer >= 1")
        if not is_link_hash(self.hash):
            raise _invalid("hash", "64 lower-case hex digits")
        if not isinstance(self.signature, bytes) or not self.signature:
            raise _invalid("signature", "non-empty bytes")

    def payload(self) -> bytes:
        return checkpoint_payload(self.seq, self.hash, self.at)


def make_checkpoint(signer: Signer, seq: int, hash: str, at: str) -> Checkpoint:
    """Sign the head (seq, hash) of the chain; keep the result outside the audit database."""
    return Checkpoint(seq, hash, at, signer.sign(checkpoint_payload(seq, hash, at)), signer.key_id)


def _invalid(field: str, allowed: str) -> InvalidInput:
    return InvalidInput(
        LocalText(f"审计检查点字段 {field} 无效", f"invalid audit checkpoint field {field}"),
        field=field,
        allowed=allowed,
    )
