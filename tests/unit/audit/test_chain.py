"""S2: every staff access is audited in a tamper-evident log — the hash chain and its builder."""

import hashlib
import hmac
import itertools
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypedDict, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from piguard.audit import verify as verify_module
from piguard.audit.chain import (
    COLUMNS,
    GENESIS,
    AuditEntry,
    ChainBuilder,
    Row,
    encode,
    format_at,
    is_link_hash,
    split_keys,
)
from piguard.audit.verify import verify_chain
from piguard.kernel.errors import InvalidInput
from piguard.vault.crypto import ChainKey

AT = "2024-05-01T12:00:00.000001+00:00"
RAW_KEY = b"c" * 32
KEY = ChainKey(RAW_KEY)


class Fields(TypedDict):
    at: str
    actor: str
    action: str
    purpose: str
    subject: str
    categories: Sequence[str]
    effect: str
    clauses: Sequence[str]
    policy_version: str
    detail: str


def fields(**changes: Any) -> Fields:
    base: Fields = {
        "at": AT,
        "actor": "staff:ops-17",
        "action": "read",
        "purpose": "risk_control",
        "subject": "sub_018f2a3b",
        "categories": ("phone", "id_number"),
        "effect": "allow",
        "clauses": ("S2", "C2.3"),
        "policy_version": "alipay-2017@1",
        "detail": "ok",
    }
    return cast(Fields, {**base, **changes})


def canonical_of(entry: AuditEntry) -> bytes:
    """The reference encoding, written out here apart from the code: sorted-key compact JSON."""
    body = {name: getattr(entry, name) for name in COLUMNS[:-1]}
    body = {k: list(v) if isinstance(v, tuple) else v for k, v in body.items()}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def link_of(entry: AuditEntry) -> str:
    """HMAC-SHA256 (the standard library's) under the chain key, of the reference encoding."""
    return hmac.new(RAW_KEY, canonical_of(entry), hashlib.sha256).hexdigest()


def no_check(data: bytes, signature: bytes) -> bool:
    return False


def test_s2_first_entry_links_to_genesis() -> None:
    entry = ChainBuilder(KEY).append(**fields())
    assert (entry.seq, entry.prev_hash) == (1, GENESIS)
    assert entry.hash == link_of(entry)
    assert is_link_hash(entry.hash)


def test_s2_entries_are_gapless_and_linked() -> None:
    builder = ChainBuilder(KEY)
    entries = [builder.append(**fields(subject=f"sub_{i}")) for i in range(5)]
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    for before, after in itertools.pairwise(entries):
        assert after.prev_hash == before.hash
    assert (builder.last_seq, builder.last_hash) == (5, entries[-1].hash)


def test_s2_canonical_is_sorted_compact_json_without_hash() -> None:
    entry = ChainBuilder(KEY).append(**fields(purpose="风控"))
    body = {name: getattr(entry, name) for name in COLUMNS[:-1]}
    expected = json.dumps(
        {k: list(v) if isinstance(v, tuple) else v for k, v in body.items()},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    assert canonical_of(entry) == expected
    assert encode(*entry.as_row()[:-1]) == expected
    assert set(json.loads(expected)) == set(COLUMNS) - {"hash"}
    assert "风控".encode() in expected


@pytest.mark.parametrize("index", [0, 1, 2, 6, 8, 11])
def test_s2_the_encoder_refuses_what_is_not_a_stored_field(index: int) -> None:
    row = list(ChainBuilder(KEY).append(**fields()).as_row()[:-1])
    row[index] = ("phone",) if index in (6, 8) else (True if index == 0 else b"bytes")
    with pytest.raises(TypeError):
        encode(*row)  # type: ignore[arg-type]


def test_s2_builder_resumes_after_a_stored_head() -> None:
    one = ChainBuilder(KEY)
    first = [one.append(**fields(subject=f"sub_{i}")) for i in range(6)]
    two = ChainBuilder(KEY)
    head = [two.append(**fields(subject=f"sub_{i}")) for i in range(3)]
    resumed = ChainBuilder(KEY, head[-1].seq, head[-1].hash)
    rest = [resumed.append(**fields(subject=f"sub_{i}")) for i in range(3, 6)]
    assert head + rest == first


@pytest.mark.parametrize(
    ("last_seq", "last_hash"),
    [(-1, GENESIS), (0, "a" * 64), (3, "xyz"), (3, "A" * 64), (True, GENESIS), (1.0, "a" * 64)],
)
def test_s2_builder_refuses_a_bad_head(last_seq: object, last_hash: str) -> None:
    with pytest.raises(InvalidInput):
        ChainBuilder(KEY, last_seq, last_hash)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("actor", ""),
        ("actor", 'a"b'),
        ("actor", "a\\b"),
        ("action", "read\nwrite"),
        ("subject", "x" * 201),
        ("subject", 42),
        ("purpose", "\ud800"),
        ("categories", "phone"),
        ("categories", ("a,b",)),
        ("categories", ("",)),
        ("clauses", (1,)),
        ("clauses", ('S"2',)),
        ("effect", "maybe"),
        ("at", "2024-05-01T12:00:00Z"),
        ("at", "2024-05-01T12:00:00.000001+08:00"),
        ("detail", "has space"),
        ("detail", "x" * 201),
        ("policy_version", ""),
    ],
)
def test_s2_builder_refuses_unsafe_fields(field: str, value: object) -> None:
    builder = ChainBuilder(KEY)
    with pytest.raises(InvalidInput) as caught:
        builder.append(**fields(**{field: value}))
    assert caught.value.field == field
    assert caught.value.allowed
    assert (builder.last_seq, builder.last_hash) == (0, GENESIS)


def test_s2_format_at_is_utc_with_microseconds() -> None:
    moment = datetime(2024, 5, 1, 20, 0, tzinfo=timezone(timedelta(hours=8)))
    assert format_at(moment) == "2024-05-01T12:00:00.000000+00:00"
    assert format_at(datetime(2024, 5, 1, 12, 0, 0, 1, tzinfo=UTC)) == AT
    ChainBuilder(KEY).append(**fields(at=format_at(moment)))
    with pytest.raises(ValueError, match="aware"):
        format_at(datetime(2024, 5, 1))


def test_s2_row_round_trip() -> None:
    entry = ChainBuilder(KEY).append(**fields(clauses=()))
    row = entry.as_row()
    assert len(row) == len(COLUMNS)
    assert (row[COLUMNS.index("categories")], row[COLUMNS.index("clauses")]) == (
        "phone,id_number",
        "",
    )
    assert AuditEntry.from_row(row) == entry
    assert split_keys("") == ()


_clean_text = st.text(
    st.characters(
        codec="utf-8",
        exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"),
        exclude_characters='"\\',
    )
    | st.just(" "),
    max_size=12,
)
_key = _clean_text.filter(lambda k: k != "" and "," not in k)


@given(
    actor=_clean_text.filter(bool),
    purpose=_clean_text,
    subject=_clean_text,
    categories=st.lists(_key, max_size=4),
    clauses=st.lists(_key, max_size=3),
    effect=st.sampled_from(["allow", "deny", "not_applicable"]),
    detail=st.from_regex(r"[A-Za-z0-9_.:-]{0,64}", fullmatch=True),
)
def test_s2_fast_encodings_match_the_reference(
    actor: str,
    purpose: str,
    subject: str,
    categories: list[str],
    clauses: list[str],
    effect: str,
    detail: str,
) -> None:
    builder = ChainBuilder(KEY)
    entries = [
        builder.append(
            **fields(
                actor=actor,
                purpose=purpose,
                subject=subject,
                categories=categories,
                clauses=clauses,
                effect=effect,
                detail=detail,
            )
        )
        for _ in range(2)
    ]
    for entry in entries:
        assert entry.hash == link_of(entry)
    with pytest.MonkeyPatch.context() as patch:  # the verifier's own pass, not its walker
        patch.setattr(verify_module, "_content", _no_fallback)
        report = verify_chain([e.as_row() for e in entries], (), no_check, KEY)
    assert report.ok, report.problems


_any_text = st.text(max_size=12)


@given(
    actor=_any_text,
    subject=_any_text,
    categories=st.lists(_any_text.filter(lambda k: k != "" and "," not in k), max_size=3),
    detail=_any_text,
)
def test_s2_the_one_encoder_is_the_reference_for_any_text(
    actor: str, subject: str, categories: list[str], detail: str
) -> None:
    """Quotes, backslashes, control characters: the fast path steps aside, the bytes stay the
    reference's."""
    entry = AuditEntry(
        7, AT, actor, "read", "p", subject, tuple(categories), "allow", ("S2",), "v", detail,
        GENESIS, "",
    )  # fmt: skip
    try:
        expected = canonical_of(entry)
    except UnicodeEncodeError:  # a lone surrogate: no UTF-8 at all
        with pytest.raises(UnicodeEncodeError):
            encode(*entry.as_row()[:-1])
        return
    assert encode(*entry.as_row()[:-1]) == expected


def test_s2_the_chain_key_is_hmac_sha256() -> None:
    for data in (b"", b"x", b"y" * 1000):
        assert KEY.mac(data) == hmac.new(RAW_KEY, data, hashlib.sha256).hexdigest()
    long = b"L" * 100  # longer than a block: hashed first, as RFC 2104 says
    assert ChainKey(long).mac(b"m") == hmac.new(long, b"m", hashlib.sha256).hexdigest()
    assert "ccc" not in repr(KEY) + str(KEY)


def _no_fallback(row: Row, key: ChainKey) -> tuple[bool, str | None]:
    raise AssertionError(f"verify fell back to the reference encoding for record {row[0]}")


def test_s2_append_checked_links_exactly_like_append() -> None:
    fields = {
        "at": "2026-11-29T06:00:00.000001+00:00",
        "actor": "service:payment_service:key_1",
        "action": "read",
        "purpose": "quick_pay",
        "subject": "sub_0123",
        "categories": ("user.name", "user.contact.phone_number"),
        "effect": "allow",
        "clauses": ("C2.1", "S2"),
        "policy_version": "alipay-2017@2017-09-22",
        "detail": "allow:payment_service:quick_pay",
    }
    checked, plain = ChainBuilder(KEY), ChainBuilder(KEY)
    for _ in range(3):
        assert checked.append_checked(**fields) == plain.append(**fields).as_row()
    assert checked.last_hash == plain.last_hash
