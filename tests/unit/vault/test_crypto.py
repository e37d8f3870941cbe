"""Real-crypto tests of the vault: envelope keys, blind indexes, signatures, the key file."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pickle
import random
import secrets
import stat
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from piguard.kernel.errors import IntegrityError, InvalidInput
from piguard.vault.crypto import (
    BlindIndex,
    ChainKey,
    CheckpointSigner,
    DataKey,
    KeyEncryptionKey,
    KeyMaterial,
    aad_for,
    key_aad_for,
    load_or_create_key_file,
    master_key_problem,
    verify_signature,
    wrapped_key_id,
    write_key_file,
)

AAD = aad_for("subj-1", "phone", "rec-1")
SECRET = b"13812345678"


def _flip(blob: bytes, index: int) -> bytes:
    return blob[:index] + bytes([blob[index] ^ 0x01]) + blob[index + 1 :]


def _assert_bilingual(error: IntegrityError) -> None:
    assert error.message.zh.strip()
    assert error.message.en.strip()
    assert error.code == "integrity_error"


# --- field encryption (S2) -------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(plaintext=st.binary(max_size=4096), aad=st.binary(min_size=1, max_size=256))
def test_s2_encrypt_decrypt_round_trip(plaintext: bytes, aad: bytes) -> None:
    key = DataKey.generate()
    blob = key.encrypt(plaintext, aad)
    assert blob[0] == 1
    assert len(blob) == 1 + 12 + len(plaintext) + 16
    assert key.decrypt(blob, aad) == plaintext


def test_s2_ciphertext_never_contains_plaintext_and_nonce_is_random() -> None:
    key = DataKey.generate()
    first, second = key.encrypt(SECRET, AAD), key.encrypt(SECRET, AAD)
    assert first != second
    assert first[1:13] != second[1:13]
    assert SECRET not in first


@pytest.mark.parametrize(
    ("subject_id", "category", "record_id"),
    [
        ("subj-2", "phone", "rec-1"),  # other subject
        ("subj-1", "email", "rec-1"),  # other category
        ("subj-1", "phone", "rec-2"),  # other row
    ],
)
def test_s2_ciphertext_moved_to_other_row_fails(
    subject_id: str, category: str, record_id: str
) -> None:
    key = DataKey.generate()
    blob = key.encrypt(SECRET, AAD)
    with pytest.raises(IntegrityError) as caught:
        key.decrypt(blob, aad_for(subject_id, category, record_id))
    _assert_bilingual(caught.value)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (("ab", "c", "d"), ("a", "bc", "d")),
        (("a", "bc", "d"), ("a", "b", "cd")),
        (("a", "b", "c"), ("b", "a", "c")),
        (("1", "23", "4"), ("12", "3", "4")),
    ],
)
def test_s2_aad_encoding_is_unambiguous(
    left: tuple[str, str, str], right: tuple[str, str, str]
) -> None:
    assert aad_for(*left) != aad_for(*right)
    assert aad_for(*left) == aad_for(*left)


@pytest.mark.parametrize(
    ("subject_id", "category", "record_id"),
    [("", "phone", "rec-1"), ("subj-1", "", "rec-1"), ("subj-1", "phone", "")],
)
def test_s2_aad_refuses_empty_parts(subject_id: str, category: str, record_id: str) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        aad_for(subject_id, category, record_id)


def test_s2_encrypt_requires_associated_data() -> None:
    with pytest.raises(ValueError, match="associated data"):
        DataKey.generate().encrypt(SECRET, b"")


def test_s2_tampering_any_byte_of_ciphertext_fails() -> None:
    key = DataKey.generate()
    blob = key.encrypt(SECRET, AAD)
    for index in range(len(blob)):
        with pytest.raises(IntegrityError):
            key.decrypt(_flip(blob, index), AAD)


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda b: b"", id="empty"),
        pytest.param(lambda b: b[:28], id="shorter-than-header-and-tag"),
        pytest.param(lambda b: b[:-1], id="truncated"),
        pytest.param(lambda b: b + b"\x00", id="extended"),
        pytest.param(lambda b: b"\x02" + b[1:], id="unknown-version"),
    ],
)
def test_s2_malformed_ciphertext_fails(mangle: Callable[[bytes], bytes]) -> None:
    key = DataKey.generate()
    blob = key.encrypt(SECRET, AAD)
    with pytest.raises(IntegrityError):
        key.decrypt(mangle(blob), AAD)


def test_r4_destroyed_data_key_makes_every_copy_unreadable() -> None:
    blob = DataKey.generate().encrypt(SECRET, AAD)
    # The key is gone; no other key, however obtained, opens the backup copy.
    for _ in range(5):
        with pytest.raises(IntegrityError):
            DataKey.generate().decrypt(blob, AAD)


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_s2_data_key_must_be_32_bytes(size: int) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        DataKey(b"\x00" * size)


def test_s2_key_objects_never_print_or_pickle_their_bytes() -> None:
    raw = bytes(range(32))
    data_key, kek, index = DataKey(raw), KeyEncryptionKey(raw), BlindIndex(raw)
    signer = CheckpointSigner(raw)
    assert repr(data_key) == str(data_key) == "DataKey(***)"
    assert repr(index) == "BlindIndex(***)"
    assert repr(kek) == f"KeyEncryptionKey(key_id='{kek.key_id}')"
    chain_key = ChainKey(raw)
    assert repr(chain_key) == str(chain_key) == "ChainKey(***)"
    material = KeyMaterial(kek, index, chain_key, signer)
    shown_all = (repr(data_key), repr(kek), repr(index), repr(chain_key), repr(signer))
    for shown in (*shown_all, repr(material)):
        assert raw.hex() not in shown
        assert repr(raw) not in shown
    for obj in (data_key, kek, index, chain_key, signer):
        with pytest.raises(TypeError, match="not pickled"):
            pickle.dumps(obj)


# --- key wrapping (S2, R4) -------------------------------------------------------------------


def test_s2_wrapped_key_round_trip() -> None:
    kek, data_key = KeyEncryptionKey.generate(), DataKey.generate()
    blob = data_key.encrypt(SECRET, AAD)
    wrapped = kek.wrap(data_key, key_aad_for("subj-1"))
    assert len(wrapped) == 1 + 4 + 12 + 32 + 16
    assert wrapped_key_id(wrapped) == kek.key_id
    assert kek.unwrap(wrapped, key_aad_for("subj-1")).decrypt(blob, AAD) == SECRET


def test_s2_wrapped_key_bound_to_subject() -> None:
    kek = KeyEncryptionKey.generate()
    wrapped = kek.wrap(DataKey.generate(), key_aad_for("subj-1"))
    with pytest.raises(IntegrityError) as caught:
        kek.unwrap(wrapped, key_aad_for("subj-2"))
    _assert_bilingual(caught.value)


def test_s2_wrapped_key_needs_its_own_kek() -> None:
    wrapped = KeyEncryptionKey.generate().wrap(DataKey.generate(), key_aad_for("subj-1"))
    with pytest.raises(IntegrityError, match="another key-encryption key"):
        KeyEncryptionKey.generate().unwrap(wrapped, key_aad_for("subj-1"))


def test_s2_tampering_any_byte_of_wrapped_key_fails() -> None:
    kek = KeyEncryptionKey.generate()
    wrapped = kek.wrap(DataKey.generate(), key_aad_for("subj-1"))
    for index in range(len(wrapped)):
        with pytest.raises(IntegrityError):
            kek.unwrap(_flip(wrapped, index), key_aad_for("subj-1"))
    for mangled in (b"", wrapped[:-1], wrapped + b"\x00"):
        with pytest.raises(IntegrityError):
            kek.unwrap(mangled, key_aad_for("subj-1"))


def test_s2_kek_key_id_is_sha256_prefix() -> None:
    raw = os.urandom(32)
    kek = KeyEncryptionKey(raw)
    assert kek.key_id == hashlib.sha256(raw).hexdigest()[:8]
    assert KeyEncryptionKey(raw).key_id == kek.key_id
    assert KeyEncryptionKey.generate().key_id != kek.key_id


def test_s2_rotated_key_material_still_unwraps_old_keys() -> None:
    old = KeyMaterial.generate()
    data_key = DataKey.generate()
    blob = data_key.encrypt(SECRET, AAD)
    wrapped_before = old.kek.wrap(data_key, key_aad_for("subj-1"))
    new = old.rotated()
    assert new.kek.key_id != old.kek.key_id
    assert new.retired_keks == (old.kek,)
    assert new.unwrap(wrapped_before, key_aad_for("subj-1")).decrypt(blob, AAD) == SECRET
    wrapped_after = new.kek.wrap(data_key, key_aad_for("subj-1"))
    assert wrapped_key_id(wrapped_after) == new.kek.key_id
    with pytest.raises(IntegrityError, match="unknown key-encryption key"):
        KeyMaterial.generate().unwrap(wrapped_before, key_aad_for("subj-1"))


# --- blind indexes (C2.3) --------------------------------------------------------------------


def test_c2_3_blind_index_is_keyed_and_deterministic() -> None:
    key = os.urandom(32)
    index = BlindIndex(key)
    digest = index.digest("cn_mobile", "+8613812345678")
    assert digest == BlindIndex(key).digest("cn_mobile", "+8613812345678")
    assert len(digest) == 64
    assert int(digest, 16) >= 0
    assert "13812345678" not in digest
    assert BlindIndex(os.urandom(32)).digest("cn_mobile", "+8613812345678") != digest
    assert index.digest("cn_mobile", "+8613812345679") != digest
    # Not a bare hash of the value: without the key the digest cannot be recomputed.
    assert hashlib.sha256(b"+8613812345678").hexdigest() != digest


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (("email", "a@example.com"), ("cn_mobile", "a@example.com")),
        (("ab", "c"), ("a", "bc")),
        (("email", ""), ("emai", "l")),
    ],
)
def test_c2_3_blind_index_kinds_never_collide(
    left: tuple[str, str], right: tuple[str, str]
) -> None:
    index = BlindIndex.generate()
    assert index.digest(*left) != index.digest(*right)


def test_c2_3_blind_index_key_must_be_strong_and_kind_named() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        BlindIndex(b"\x01" * 31)
    assert BlindIndex(b"\x01" * 64).digest("email", "a@example.com")
    with pytest.raises(ValueError, match="kind"):
        BlindIndex.generate().digest("", "a@example.com")


# --- checkpoint signatures (S2) --------------------------------------------------------------


def test_s2_checkpoint_signature_verifies() -> None:
    signer = CheckpointSigner.generate()
    signature = signer.sign(b"checkpoint 42")
    assert len(signature) == 64
    assert len(signer.public_bytes()) == 32
    assert verify_signature(signer.public_bytes(), b"checkpoint 42", signature)
    reloaded = CheckpointSigner.from_private_bytes(signer.private_bytes())
    assert reloaded.public_bytes() == signer.public_bytes()
    assert verify_signature(reloaded.public_bytes(), b"checkpoint 42", signature)


def test_s2_bad_checkpoint_signature_is_false_not_an_exception() -> None:
    signer = CheckpointSigner.generate()
    public, signature = signer.public_bytes(), signer.sign(b"checkpoint 42")
    assert not verify_signature(public, b"checkpoint 43", signature)
    assert not verify_signature(
        CheckpointSigner.generate().public_bytes(), b"checkpoint 42", signature
    )
    for bad in (b"", signature[:-1], signature + b"\x00", b"\x00" * 64):
        assert not verify_signature(public, b"checkpoint 42", bad)
    for index in range(len(signature)):
        assert not verify_signature(public, b"checkpoint 42", _flip(signature, index))


@pytest.mark.parametrize("public", [b"", b"\x01" * 31, b"\x01" * 33])
def test_s2_malformed_public_key_is_an_integrity_error(public: bytes) -> None:
    with pytest.raises(IntegrityError, match="public key is malformed"):
        verify_signature(public, b"data", b"\x00" * 64)


# --- master key (S2) -------------------------------------------------------------------------


def test_s2_master_key_derives_four_distinct_stable_keys(tmp_path: Path) -> None:
    master = base64.b64encode(os.urandom(32)).decode()
    first, second = KeyMaterial.from_master_key(master), KeyMaterial.from_master_key(master)
    assert first.kek.key_id == second.kek.key_id
    assert first.signer.public_bytes() == second.signer.public_bytes()
    assert first.blind_index.digest("email", "a@x.cn") == second.blind_index.digest(
        "email", "a@x.cn"
    )
    write_key_file(tmp_path / "keys.json", first)
    doc = json.loads((tmp_path / "keys.json").read_text())
    names = ("kek", "blind_index_key", "audit_chain_key", "signing_key")
    raw = {base64.b64decode(doc[name]) for name in names}
    assert len(raw) == 4
    assert first.chain_key.mac(b"x") == second.chain_key.mac(b"x")
    assert base64.b64decode(master) not in raw
    other = KeyMaterial.from_master_key(base64.b64encode(os.urandom(32)).decode())
    assert other.kek.key_id != first.kek.key_id


@pytest.mark.parametrize(
    "value",
    [
        "",
        "not base64!",
        base64.b64encode(b"\x01" * 31).decode(),
        "密钥",
    ],
)
def test_s2_weak_or_malformed_master_key_refused(value: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        KeyMaterial.from_master_key(value)
    assert caught.value.field == "PIGUARD_MASTER_KEY"
    assert caught.value.allowed
    assert caught.value.message.zh.strip()


# Decoded master keys a person made, each with the reason that must refuse it. The 24-byte block
# is random (seeded), so only the period test can catch it written twice.
_BLOCK = random.Random(9).randbytes(24)
PATTERNED_KEYS = [
    pytest.param(b"ab" * 16, "only 2 distinct values", id="ab-repeated"),
    pytest.param(b"\x5a" * 64, "only 1 distinct values", id="one-byte"),
    pytest.param(bytes(range(32)), "simple sequence (steps from byte to byte: only 1", id="up"),
    pytest.param(bytes(range(255, 191, -1)), "simple sequence", id="down-64-bytes"),
    pytest.param(bytes(i * 37 % 256 for i in range(40)), "simple sequence", id="stride-37"),
    pytest.param(bytes(range(16)) * 2, "simple sequence", id="counting-twice"),
    pytest.param(_BLOCK * 2, "a block of 24 bytes repeated", id="random-block-twice"),
    pytest.param(_BLOCK * 3, "a block of 24 bytes repeated", id="random-block-thrice"),
    pytest.param(b"correct horse battery staple, then some", "printable text", id="passphrase"),
    pytest.param(b"my long vault passphrase, typed in!\n", "printable text", id="echo-newline"),
    pytest.param(  # all 16 hex digits: only the text test catches it
        hashlib.sha256(b"key").hexdigest().encode(), "printable text", id="hex-digits-as-text"
    ),
    pytest.param("我的主密钥口令是一句很长的中文句子".encode(), "printable text", id="chinese"),
]


@pytest.mark.parametrize(("master", "reason"), PATTERNED_KEYS)
def test_s2_patterned_or_text_master_key_refused(master: bytes, reason: str) -> None:
    assert len(master) >= 32  # long enough: refused for its content, not its length
    b64 = base64.b64encode(master).decode()
    problem = master_key_problem(b64)
    assert problem is not None
    assert reason in problem.en
    with pytest.raises(InvalidInput) as caught:
        KeyMaterial.from_master_key(b64)
    assert caught.value.field == "PIGUARD_MASTER_KEY"
    assert caught.value.allowed
    assert "openssl rand -base64 32" in caught.value.allowed
    assert caught.value.message.en.startswith("PIGUARD_MASTER_KEY is not random bytes: ")
    assert "不是随机字节" in caught.value.message.zh
    assert b64 not in caught.value.message.en + caught.value.message.zh


def test_s2_random_master_keys_are_never_refused() -> None:
    # The chance that a random key fails a test is below 2^-34 (see crypto.py): none of these may.
    # Most are 32 bytes, the shortest allowed and the likeliest to look patterned.
    sizes = [32] * 20_000 + [n for n in range(33, 129) for _ in range(50)]
    refused = []
    for size in sizes:
        b64 = base64.b64encode(secrets.token_bytes(size)).decode()
        if master_key_problem(b64) is not None:
            refused.append(b64)
    assert refused == []
    KeyMaterial.from_master_key(b64)


# --- key file (R4, S2) -----------------------------------------------------------------------


def test_r4_key_file_created_0600(tmp_path: Path) -> None:
    path = tmp_path / "var" / "keys" / "piguard.keys.json"
    material = load_or_create_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    doc = json.loads(path.read_text())
    assert set(doc) == {
        "version", "kek", "blind_index_key", "audit_chain_key", "signing_key", "retired_keks"
    }  # fmt: skip
    assert doc["version"] == 2
    assert doc["retired_keks"] == []
    assert ChainKey(base64.b64decode(doc["audit_chain_key"])).mac(b"x") == material.chain_key.mac(
        b"x"
    )
    assert KeyEncryptionKey(base64.b64decode(doc["kek"])).key_id == material.kek.key_id
    signer = CheckpointSigner(base64.b64decode(doc["signing_key"]))
    assert signer.public_bytes() == material.signer.public_bytes()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind


def test_r4_key_file_reload_gives_the_same_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    created = load_or_create_key_file(path)
    data_key = DataKey.generate()
    blob = data_key.encrypt(SECRET, AAD)
    wrapped = created.kek.wrap(data_key, key_aad_for("subj-1"))
    loaded = load_or_create_key_file(path)
    assert loaded.unwrap(wrapped, key_aad_for("subj-1")).decrypt(blob, AAD) == SECRET
    assert loaded.blind_index.digest("email", "a@x.cn") == created.blind_index.digest(
        "email", "a@x.cn"
    )
    assert loaded.signer.public_bytes() == created.signer.public_bytes()
    assert loaded.chain_key.mac(b"record") == created.chain_key.mac(b"record")


def test_r4_key_file_rotation_is_persisted(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    original = load_or_create_key_file(path)
    wrapped = original.kek.wrap(DataKey.generate(), key_aad_for("subj-1"))
    write_key_file(path, original.rotated())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    reloaded = load_or_create_key_file(path)
    assert [k.key_id for k in reloaded.retired_keks] == [original.kek.key_id]
    assert reloaded.kek.key_id != original.kek.key_id
    reloaded.unwrap(wrapped, key_aad_for("subj-1"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.json"]


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o606, 0o610])
def test_s2_key_file_world_readable_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "keys.json"
    load_or_create_key_file(path)
    path.chmod(mode)
    with pytest.raises(IntegrityError) as caught:
        load_or_create_key_file(path)
    assert "0600" in caught.value.message.en
    _assert_bilingual(caught.value)


def _valid_doc() -> dict[str, object]:
    b64 = base64.b64encode
    return {
        "version": 2,
        "kek": b64(os.urandom(32)).decode(),
        "blind_index_key": b64(os.urandom(32)).decode(),
        "audit_chain_key": b64(os.urandom(32)).decode(),
        "signing_key": b64(os.urandom(32)).decode(),
        "retired_keks": [],
    }


_DROP = object()


def _with(**changes: object) -> bytes:
    doc = _valid_doc()
    for name, value in changes.items():
        if value is _DROP:
            del doc[name]
        else:
            doc[name] = value
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
        pytest.param(b"[]", id="not-an-object"),
        pytest.param(b"[" * 100_000, id="too-large"),
        pytest.param(b"[" * 50_000, id="deeply-nested"),
        pytest.param(_with(kek=_DROP), id="missing-kek"),
        pytest.param(_with(extra="x"), id="unknown-field"),
        pytest.param(_with(version=3), id="unknown-version"),
        pytest.param(_with(audit_chain_key=_DROP), id="missing-chain-key"),
        pytest.param(_with(audit_chain_key="c2hvcnQ="), id="short-chain-key"),
        pytest.param(_with(version=True), id="boolean-version"),
        pytest.param(_with(kek="***not base64***"), id="bad-base64"),
        pytest.param(_with(kek=base64.b64encode(b"\x00" * 16).decode()), id="short-kek"),
        pytest.param(_with(blind_index_key=12), id="number-instead-of-base64"),
        pytest.param(_with(signing_key=base64.b64encode(b"\x00" * 33).decode()), id="long-seed"),
        pytest.param(_with(retired_keks="abc"), id="retired-not-a-list"),
        pytest.param(_with(retired_keks=["short"]), id="retired-malformed"),
    ],
)
def test_s2_key_file_malformed_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "keys.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
    with pytest.raises(IntegrityError) as caught:
        load_or_create_key_file(path)
    _assert_bilingual(caught.value)
    assert path.read_bytes() == content  # a refused file is never overwritten


def test_s2_key_file_that_is_a_directory_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.mkdir(mode=0o700)
    with pytest.raises(IntegrityError, match="cannot be read"):
        load_or_create_key_file(path)


@pytest.mark.parametrize("attempt", range(5))
def test_r4_key_file_created_concurrently_gives_one_key_set(tmp_path: Path, attempt: int) -> None:
    path = tmp_path / f"keys-{attempt}.json"
    workers = 8
    start = threading.Barrier(workers)

    def first_start() -> str:
        start.wait()
        return load_or_create_key_file(path).kek.key_id

    # Creators racing past "not found" must not clobber each other: all end with the file's keys.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        key_ids = {future.result() for future in [pool.submit(first_start) for _ in range(workers)]}
    assert key_ids == {load_or_create_key_file(path).kek.key_id}
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_s2_a_key_file_from_before_the_keyed_audit_chain_is_refused_clearly(
    tmp_path: Path,
) -> None:
    """Pre-release format 1 had no chain key. It is not upgraded in place (two processes starting
    at once would chain under two keys): the refusal says what it is and what to do."""
    path = tmp_path / "keys.json"
    old = _with(version=1, audit_chain_key=_DROP)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(old)
    with pytest.raises(IntegrityError) as caught:
        load_or_create_key_file(path)
    assert "audit_chain_key" in caught.value.message.en
    assert "start afresh" in caught.value.message.en
    _assert_bilingual(caught.value)
    assert path.read_bytes() == old  # left as it was
