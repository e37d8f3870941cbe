"""Signed checkpoints: the chain head at a seq, signed with a key kept outside the database.

The chain alone shows edits, deletions and moves inside the log; only a checkpoint kept elsewhere
shows that its newest records were dropped (truncation) or that the chain was rebuilt from a point.
Signing comes in through `Signer`; this module never touches key material or `cryptography`.
"""

from __future__ import annotations

import base64
import binascii
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


# --- the line format: how a checkpoint is kept outside the database (file, witness) --------------

LINE_FIELDS: Final = frozenset({"seq", "hash", "at", "signature", "key_id", "public_key"})
MAX_LINE_BYTES: Final = 4096
"""Longest checkpoint line accepted: a real one is under 400 bytes."""


def encode_line(cp: Checkpoint, public_key: bytes) -> bytes:
    """One line of a checkpoint file: sorted-key compact JSON, binary values base64, newline.

    The `public_key` is informative: trust comes from the keys a verifier is given."""
    body = {
        "seq": cp.seq,
        "hash": cp.hash,
        "at": cp.at,
        "signature": base64.b64encode(cp.signature).decode(),
        "key_id": cp.key_id,
        "public_key": base64.b64encode(public_key).decode(),
    }
    return (json.dumps(body, sort_keys=True, separators=(",", ":")) + "\n").encode()


def decode_line(line: bytes) -> tuple[Checkpoint, bytes]:
    """The checkpoint of one line and the public key it names; InvalidInput naming the field."""
    if len(line) > MAX_LINE_BYTES:
        raise _invalid("line", f"at most {MAX_LINE_BYTES} bytes")
    try:
        doc = json.loads(line)
    except (ValueError, RecursionError):
        raise _invalid("line", "one JSON object") from None
    if not isinstance(doc, dict) or set(doc) != LINE_FIELDS:
        raise _invalid("line", "a JSON object with exactly " + ", ".join(sorted(LINE_FIELDS)))
    seq, at, key_id = doc["seq"], doc["at"], doc["key_id"]
    if type(seq) is not int:
        raise _invalid("seq", "an integer >= 1")
    if not isinstance(at, str) or not isinstance(key_id, str) or not isinstance(doc["hash"], str):
        raise _invalid("at", "text fields at, hash and key_id")
    signature = _base64("signature", doc["signature"])
    public_key = _base64("public_key", doc["public_key"])
    return Checkpoint(seq, doc["hash"], at, signature, key_id), public_key


def _base64(field: str, value: object) -> bytes:
    try:
        if not isinstance(value, str):
            raise ValueError(field)
        return base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        raise _invalid(field, "base64 text") from None
