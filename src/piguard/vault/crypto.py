"""Authenticated encryption, key wrapping, blind indexes, audit chain keys, checkpoint signatures.

The only module of piguard that imports `cryptography`: primitives and their parameters are
chosen and reviewed here, and every other module uses these few types. No I/O except the
key-file helper at the bottom.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import stat
from dataclasses import dataclass, replace
from itertools import pairwise
from pathlib import Path
from typing import Final, NoReturn

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from piguard.files import GROUP_OR_OTHER_ACCESS, loose_mode, private_dir
from piguard.kernel.errors import IntegrityError, InvalidInput
from piguard.kernel.text import LocalText

KEY_SIZE: Final = 32
_NONCE_SIZE: Final = 12
_TAG_SIZE: Final = 16
_VERSION: Final = 1
_HEADER: Final = bytes([_VERSION])
_KEY_FILE_VERSION: Final = 2  # 2: with the audit chain key
_KEY_ID_BYTES: Final = 4  # shown as 8 hex characters
_WRAPPED_SIZE: Final = 1 + _KEY_ID_BYTES + _NONCE_SIZE + KEY_SIZE + _TAG_SIZE
_KEY_FILE_FIELDS: Final = frozenset(
    {"version", "kek", "blind_index_key", "audit_chain_key", "signing_key", "retired_keks"}
)
_KEY_FILE_MAX_BYTES: Final = 64 * 1024
_MASTER_KEY_VAR: Final = "PIGUARD_MASTER_KEY"


MASTER_KEY_ALLOWED: Final = (
    f"the base64 of at least {KEY_SIZE} random bytes, e.g. from `openssl rand -base64 {KEY_SIZE}`"
)
# Tests of a decoded master key for a pattern or text instead of random bytes. Each refuses a
# truly random key of n >= 32 bytes with a chance that only falls as n grows; the figures are
# for n = 32, computed exactly (the four together stay below 2^-34, one in 20 billion keys):
# - fewer than 16 distinct byte values (one byte over and over, a short block repeated): random
#   32 bytes show about 30, fewer than 16 with a chance below 2^-54;
# - steps between neighbouring bytes (mod 256) taking fewer than 16 values (counting up or down,
#   in any constant stride): the 31 steps of random bytes are independent and uniform, so the
#   same bound applies, below 2^-50;
# - a period of at most n/2 (a block written twice or more, such as 16 random bytes doubled to
#   pass the length check): at most 2 * 256^(-n/2), 2^-127;
# - valid UTF-8 made only of printable characters and whitespace (a passphrase, or hex digits,
#   base64-encoded): about 2^-34 (ASCII alone would be 2^-43; other scripts count too).
_MIN_DISTINCT: Final = 16


def master_key_problem(b64: str) -> LocalText | None:
    """Why `b64` cannot be a master key (not base64 of >= 32 bytes, or not random), or None."""
    try:
        master = base64.b64decode(b64.strip(), validate=True)
    except ValueError:
        master = b""
    if len(master) < KEY_SIZE:
        return LocalText(
            f"{_MASTER_KEY_VAR} 必须是至少 {KEY_SIZE} 个随机字节的 base64 编码",
            f"{_MASTER_KEY_VAR} must be the base64 of at least {KEY_SIZE} random bytes",
        )
    why = _not_random(master)
    if why is None:
        return None
    return LocalText(
        f"{_MASTER_KEY_VAR} 不是随机字节：{why.zh}；请用 `openssl rand -base64 {KEY_SIZE}` 生成",
        f"{_MASTER_KEY_VAR} is not random bytes: {why.en}; "
        f"generate one with `openssl rand -base64 {KEY_SIZE}`",
    )


def _not_random(master: bytes) -> LocalText | None:
    # Never names the bytes themselves: the message must not leak any part of the key.
    distinct = len(set(master))
    if distinct < _MIN_DISTINCT:
        return LocalText(
            f"只有 {distinct} 种不同的字节值", f"its bytes take only {distinct} distinct values"
        )
    steps = len({(b - a) % 256 for a, b in pairwise(master)})
    if steps < _MIN_DISTINCT:
        return LocalText(
            f"字节按简单规律排列（相邻字节之差只有 {steps} 种）",
            f"its bytes follow a simple sequence (steps from byte to byte: only {steps} distinct)",
        )
    n = len(master)
    period = next((p for p in range(1, n // 2 + 1) if master[p:] == master[:-p]), None)
    if period is not None:
        return LocalText(
            f"由 {period} 个字节的片段重复组成", f"it is a block of {period} bytes repeated"
        )
    try:
        text = master.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if all(c.isprintable() or c.isspace() for c in text):
        return LocalText(
            "解码后是可打印的文本（口令？），不是随机字节",
            "it decodes to printable text (a passphrase?), not random bytes",
        )
    return None


def _lp(*parts: bytes) -> bytes:
    # A 4-byte length before each part: ("ab", "c") and ("a", "bc") never encode alike.
    return b"".join(len(part).to_bytes(4, "big") + part for part in parts)


def _tampered() -> IntegrityError:
    return IntegrityError(
        LocalText(
            "密文无法解密：数据被篡改、被移到其他记录，或其密钥已销毁",
            "ciphertext cannot be decrypted: it was altered, moved to another record, "
            "or its key was destroyed",
        )
    )


def _require_key(raw: bytes, what: str, *, exact: bool = True) -> bytes:
    if not isinstance(raw, bytes) or len(raw) < KEY_SIZE or (exact and len(raw) != KEY_SIZE):
        raise ValueError(f"{what} needs {'exactly' if exact else 'at least'} {KEY_SIZE} bytes")
    return raw


def _seal(aead: AESGCM, header: bytes, plaintext: bytes, aad: bytes) -> bytes:
    if not aad:
        raise ValueError("associated data is required: it binds the ciphertext to its place")
    # Random 96-bit nonces are safe far beyond the number of messages one subject key seals.
    nonce = os.urandom(_NONCE_SIZE)
    return header + nonce + aead.encrypt(nonce, plaintext, header + aad)


def _open(aead: AESGCM, header: bytes, body: bytes, aad: bytes) -> bytes:
    try:
        return aead.decrypt(body[:_NONCE_SIZE], body[_NONCE_SIZE:], header + aad)
    except InvalidTag:
        raise _tampered() from None


def aad_for(subject_id: str, category: str, record_id: str) -> bytes:
    """Associated data binding a field ciphertext to its subject, category and record."""
    if not (subject_id and category and record_id):
        raise ValueError("subject_id, category and record_id must all be non-empty")
    return _lp(b"piguard.field.v1", subject_id.encode(), category.encode(), record_id.encode())


def key_aad_for(subject_id: str) -> bytes:
    """Associated data binding a wrapped data key to its subject."""
    if not subject_id:
        raise ValueError("subject_id must be non-empty")
    return _lp(b"piguard.data-key.v1", subject_id.encode())


class DataKey:
    """A subject's AES-256-GCM data key: destroying it shreds every copy of its ciphertexts.

    Invariant: exactly 32 bytes; never printed or pickled. Blobs are version byte + nonce +
    ciphertext + tag, and the version byte is authenticated with the associated data.
    """

    __slots__ = ("_aead", "_key")

    def __init__(self, key: bytes) -> None:
        self._key = _require_key(key, "DataKey")
        self._aead = AESGCM(self._key)  # keyed once: every value of the subject reuses it

    @classmethod
    def generate(cls) -> DataKey:
        return cls(AESGCM.generate_key(bit_length=256))

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        return _seal(self._aead, _HEADER, plaintext, aad)

    def decrypt(self, blob: bytes, aad: bytes) -> bytes:
        if len(blob) < 1 + _NONCE_SIZE + _TAG_SIZE or blob[0] != _VERSION:
            raise _tampered()
        return _open(self._aead, blob[:1], blob[1:], aad)

    def export(self) -> bytes:
        """The raw key, for a `KeyWrapper` to wrap at once (a KMS adapter sends it to the KMS).
        Nothing else takes a data key out of this object."""
        return self._key

    def __repr__(self) -> str:
        return "DataKey(***)"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("key material is not pickled")


def wrapped_key_id(wrapped: bytes) -> str:
    """The `key_id` of the KEK that wrapped this data key (read from its authenticated header)."""
    if len(wrapped) != _WRAPPED_SIZE or wrapped[0] != _VERSION:
        raise _tampered()
    return wrapped[1 : 1 + _KEY_ID_BYTES].hex()


class KeyEncryptionKey:
    """The key that wraps data keys (from the key file, the master key or a KMS).

    Invariant: exactly 32 bytes, never printed or pickled; its `key_id` (first 8 hex of its
    SHA-256) travels in each wrapped key, so a rotated key set finds the KEK that wrapped it.
    """

    __slots__ = ("_aead", "_key", "key_id")

    def __init__(self, key: bytes) -> None:
        self._key = _require_key(key, "KeyEncryptionKey")
        self._aead = AESGCM(self._key)
        self.key_id = hashlib.sha256(self._key).hexdigest()[: 2 * _KEY_ID_BYTES]

    @classmethod
    def generate(cls) -> KeyEncryptionKey:
        return cls(AESGCM.generate_key(bit_length=256))

    def wrap(self, data_key: DataKey, aad: bytes) -> bytes:
        header = bytes([_VERSION]) + bytes.fromhex(self.key_id)
        return _seal(self._aead, header, data_key.export(), aad)

    def unwrap(self, wrapped: bytes, aad: bytes) -> DataKey:
        if wrapped_key_id(wrapped) != self.key_id:
            raise IntegrityError(
                LocalText(
                    "数据密钥由另一把密钥加密密钥封装",
                    "the data key was wrapped by another key-encryption key",
                )
            )
        header_size = 1 + _KEY_ID_BYTES
        return DataKey(_open(self._aead, wrapped[:header_size], wrapped[header_size:], aad))

    def __repr__(self) -> str:
        return f"KeyEncryptionKey(key_id={self.key_id!r})"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("key material is not pickled")


class BlindIndex:
    """Keyed digests for equality lookups (phone, email, ID number) without plaintext scans.

    Invariant: the key is separate from the KEK (at least 32 bytes); the same kind and value
    always give the same digest, and kind and value are length-prefixed so kinds never collide.
    """

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        self._key = _require_key(key, "BlindIndex key", exact=False)

    @classmethod
    def generate(cls) -> BlindIndex:
        return cls(secrets.token_bytes(KEY_SIZE))

    def digest(self, kind: str, normalized_value: str) -> str:
        if not kind:
            raise ValueError("a blind index needs a kind")
        message = _lp(b"piguard.blind-index.v1", kind.encode(), normalized_value.encode())
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return "BlindIndex(***)"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("key material is not pickled")


class ChainKey:
    """The HMAC-SHA256 key that links audit records (`audit.chain`): kept outside the database,
    so a writer with database access alone cannot compute a record's link.

    Invariant: at least 32 bytes; never printed or pickled. `mac` is HMAC-SHA256 (RFC 2104) with
    the padded key's two hash states computed once: the verifier calls it once per record.
    """

    __slots__ = ("_inner", "_key", "_outer")

    def __init__(self, key: bytes) -> None:
        self._key = _require_key(key, "audit chain key", exact=False)
        block = hashlib.sha256(key).digest() if len(key) > 64 else key
        block = block.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    @classmethod
    def generate(cls) -> ChainKey:
        return cls(secrets.token_bytes(KEY_SIZE))

    def mac(self, data: bytes) -> str:
        """Hex HMAC-SHA256 of `data` under this key."""
        inner = self._inner.copy()
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()

    def export(self) -> bytes:
        """The raw key, for the key file and for verifier processes started by this one."""
        return self._key

    def __repr__(self) -> str:
        return "ChainKey(***)"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("key material is not pickled")


def _private_raw(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


class CheckpointSigner:
    """Ed25519 key that signs audit-chain checkpoints; the public half verifies them anywhere.

    Invariant: the private key is never printed or pickled.
    """

    __slots__ = ("_key",)

    def __init__(self, private_raw: bytes) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(_require_key(private_raw, "signing key"))

    @classmethod
    def generate(cls) -> CheckpointSigner:
        return cls(_private_raw(Ed25519PrivateKey.generate()))

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> CheckpointSigner:
        return cls(raw)

    def private_bytes(self) -> bytes:
        return _private_raw(self._key)

    def public_bytes(self) -> bytes:
        return self._key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def __repr__(self) -> str:
        return f"CheckpointSigner(public={self.public_bytes().hex()[:16]}...)"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("key material is not pickled")


def verify_signature(public_key: bytes, data: bytes, signature: bytes) -> bool:
    """True when `signature` is a valid Ed25519 signature of `data`; False for any bad signature.

    A public key that is not an Ed25519 key at all is a configuration fault: IntegrityError.
    """
    try:
        key = Ed25519PublicKey.from_public_bytes(public_key)
    except ValueError:
        raise IntegrityError(
            LocalText("审计签名公钥格式错误", "the audit signing public key is malformed")
        ) from None
    try:
        key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


def _hkdf(master: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=None, info=label).derive(master)


@dataclass(frozen=True, slots=True, eq=False)
class KeyMaterial:
    """The root keys of one installation: KEK, blind-index key, audit chain key,
    checkpoint-signing key.

    Invariant: the four keys are independent (one leaking reveals nothing of the others);
    `kek` wraps new data keys, `retired_keks` only unwrap keys wrapped before a rotation.
    """

    kek: KeyEncryptionKey
    blind_index: BlindIndex
    chain_key: ChainKey
    signer: CheckpointSigner
    retired_keks: tuple[KeyEncryptionKey, ...] = ()

    @classmethod
    def generate(cls) -> KeyMaterial:
        return cls(
            KeyEncryptionKey.generate(),
            BlindIndex.generate(),
            ChainKey.generate(),
            CheckpointSigner.generate(),
        )

    @classmethod
    def from_master_key(cls, b64: str) -> KeyMaterial:
        """Derive the four keys from one master secret (`PIGUARD_MASTER_KEY`) with HKDF-SHA256.

        Changing the master key changes all four keys: blind indexes must then be rebuilt, and
        the audit log verifies only under the key it was chained with.
        """
        problem = master_key_problem(b64)
        if problem is not None:
            raise InvalidInput(problem, field=_MASTER_KEY_VAR, allowed=MASTER_KEY_ALLOWED)
        master = base64.b64decode(b64.strip(), validate=True)
        return cls(
            KeyEncryptionKey(_hkdf(master, b"piguard/v1/kek")),
            BlindIndex(_hkdf(master, b"piguard/v1/blind-index")),
            ChainKey(_hkdf(master, b"piguard/v1/audit-chain")),
            CheckpointSigner(_hkdf(master, b"piguard/v1/checkpoint-signing")),
        )

    def kek_for(self, key_id: str) -> KeyEncryptionKey:
        for kek in self.kek_chain():
            if kek.key_id == key_id:
                return kek
        raise IntegrityError(
            LocalText(
                f"未知的密钥加密密钥 {key_id}",
                f"unknown key-encryption key {key_id}",
            )
        )

    # -- the local `KeyWrapper` (vault.keys): the embedded default, before a KMS --------------

    @property
    def key_id(self) -> str:
        """The current KEK's id: new data keys are wrapped by it."""
        return self.kek.key_id

    def wrap(self, data_key: DataKey, aad: bytes) -> bytes:
        return self.kek.wrap(data_key, aad)

    def unwrap(self, wrapped: bytes, aad: bytes) -> DataKey:
        """Unwrap with whichever KEK, current or retired, wrapped this data key."""
        return self.kek_for(wrapped_key_id(wrapped)).unwrap(wrapped, aad)

    def rotated(self) -> KeyMaterial:
        """A new current KEK; the old one is kept (retired) to unwrap existing data keys."""
        return replace(self, kek=KeyEncryptionKey.generate(), retired_keks=self.kek_chain())

    def kek_chain(self) -> tuple[KeyEncryptionKey, ...]:
        """Every KEK this material unwraps with: the current one first, then the retired ones."""
        return (self.kek, *self.retired_keks)

    def without_retired(self) -> KeyMaterial:
        """The same keys with the retired KEKs dropped: what `piguard keys retire` writes."""
        return replace(self, retired_keks=())


# --- the local key file (the embedded default; production takes keys from a KMS) ---------------


def _key_file_error(path: Path, zh: str, en: str) -> IntegrityError:
    return IntegrityError(
        LocalText(f"密钥文件 {path} 被拒绝：{zh}", f"key file {path} refused: {en}")
    )


def _b64(value: object) -> bytes:
    if not isinstance(value, str):
        raise ValueError("not a base64 string")
    return base64.b64decode(value, validate=True)


def _parse(path: Path, raw: bytes) -> KeyMaterial:
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        doc = None
    if isinstance(doc, dict) and doc.get("version") == 1 and "audit_chain_key" not in doc:
        # Written before audit records were keyed (pre-release): not upgraded in place, since two
        # processes upgrading at once would chain under two keys. See README, "The audit log".
        raise _key_file_error(
            path,
            "它早于带密钥的审计链（版本 1，缺少 audit_chain_key）；"
            "请移走该文件及其数据库，重新开始",
            "it predates the keyed audit chain (version 1, no audit_chain_key); move it and its "
            "databases aside and start afresh",
        )
    try:
        if not isinstance(doc, dict) or set(doc) != _KEY_FILE_FIELDS:
            raise ValueError("wrong fields")
        if type(doc["version"]) is not int or doc["version"] != _KEY_FILE_VERSION:
            raise ValueError("unknown version")
        if not isinstance(doc["retired_keks"], list):
            raise ValueError("retired_keks is not a list")
        return KeyMaterial(
            KeyEncryptionKey(_b64(doc["kek"])),
            BlindIndex(_b64(doc["blind_index_key"])),
            ChainKey(_b64(doc["audit_chain_key"])),
            CheckpointSigner(_b64(doc["signing_key"])),
            tuple(KeyEncryptionKey(_b64(item)) for item in doc["retired_keks"]),
        )
    except (ValueError, RecursionError):
        raise _key_file_error(
            path,
            "格式错误（需要 JSON 字段 version、kek、blind_index_key、audit_chain_key、signing_key、"
            "retired_keks）",
            "malformed (expected JSON with version 2, kek, blind_index_key, audit_chain_key, "
            "signing_key, retired_keks as base64)",
        ) from None


def _dump(material: KeyMaterial) -> bytes:
    doc = {
        "version": _KEY_FILE_VERSION,
        "kek": base64.b64encode(material.kek._key).decode(),
        "blind_index_key": base64.b64encode(material.blind_index._key).decode(),
        "audit_chain_key": base64.b64encode(material.chain_key.export()).decode(),
        "signing_key": base64.b64encode(material.signer.private_bytes()).decode(),
        "retired_keks": [base64.b64encode(k._key).decode() for k in material.retired_keks],
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


def read_key_file(path: Path) -> KeyMaterial:
    """Load an existing key file (FileNotFoundError if there is none), with the same checks as
    `load_or_create_key_file`: for a running process that follows a rotation."""
    return _read_key_file(path)


def _read_key_file(path: Path) -> KeyMaterial:
    # Symlinks are followed (secret mounts use them); fstat checks the file actually opened.
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise _key_file_error(path, "无法读取", f"cannot be read ({exc.strerror})") from None
    with handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise _key_file_error(path, "不是普通文件", "not a regular file")
        loose = loose_mode(info.st_mode, GROUP_OR_OTHER_ACCESS)
        if loose is not None:
            raise _key_file_error(
                path,
                f"权限 {loose:04o} 允许其他用户访问，应为 0600",
                f"mode {loose:04o} lets other users in; use 0600",
            )
        raw = handle.read(_KEY_FILE_MAX_BYTES + 1)
    if len(raw) > _KEY_FILE_MAX_BYTES:
        raise _key_file_error(path, "文件过大", "file too large")
    return _parse(path, raw)


def _write_temp(path: Path, data: bytes) -> Path:
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _fsync_dir(directory: Path) -> None:
    if os.name == "posix":
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def load_or_create_key_file(path: Path) -> KeyMaterial:
    """Load the key file, or create it: 0600, parent 0700, written atomically.

    Creation links a complete temp file into place, which fails if another process created the
    file first; that file is then loaded, so concurrent first starts agree on one key set.
    """
    try:
        return _read_key_file(path)
    except FileNotFoundError:
        pass
    material = KeyMaterial.generate()
    tmp = _write_temp(path, _dump(material))
    try:
        os.link(tmp, path)
    except FileExistsError:
        return _read_key_file(path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return material


def write_key_file(path: Path, material: KeyMaterial) -> None:
    """Replace the key file atomically (0600), e.g. after `KeyMaterial.rotated()`."""
    tmp = _write_temp(path, _dump(material))
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
