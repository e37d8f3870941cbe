"""S2: every staff access is audited in a tamper-evident log — verification names what was done."""

import hashlib
import hmac
import json
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import get_args

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
)
from piguard.audit.checkpoint import (
    CHECKPOINT_KIND,
    Checkpoint,
    checkpoint_payload,
    make_checkpoint,
)
from piguard.audit.verify import Problem, ProblemKind, VerifyReport, verify_chain
from piguard.kernel.errors import IntegrityError, InvalidInput
from piguard.vault.crypto import ChainKey

AT = "2024-05-01T12:00:00.000001+00:00"


@dataclass(frozen=True)
class HmacSigner:
    """Test stand-in for the Ed25519 signer: same Protocol, symmetric key."""

    key: bytes
    key_id: str = "test-hmac"

    def sign(self, data: bytes) -> bytes:
        return hmac.new(self.key, data, hashlib.sha256).digest()

    def check(self, data: bytes, signature: bytes) -> bool:
        return hmac.compare_digest(self.sign(data), signature)


SIGNER = HmacSigner(b"k" * 32)
KEY = ChainKey(b"c" * 32)  # the chain key: held outside the database


def append(builder: ChainBuilder, i: int, detail: str = "ok") -> AuditEntry:
    return builder.append(
        at=AT,
        actor=f"staff:ops-{i % 7}",
        action="read",
        purpose="risk_control",
        subject=f"sub_{i:06x}",
        categories=("phone", "id_number")[: i % 3],
        effect="allow",
        clauses=("S2",),
        policy_version="alipay-2017@1",
        detail=detail,
    )


def build(n: int) -> list[Row]:
    builder = ChainBuilder(KEY)
    return [append(builder, i).as_row() for i in range(1, n + 1)]


def checkpoint(row: Row) -> Checkpoint:
    return make_checkpoint(SIGNER, row[0], row[12], AT)


def verify(rows: list[Row], *cps: Checkpoint) -> VerifyReport:
    return verify_chain(rows, cps, SIGNER.check, KEY)


def found(report: VerifyReport) -> list[tuple[str, int]]:
    return [(p.kind, p.seq) for p in report.problems]


def rehashed(row: Row, key: ChainKey = KEY, **changes: object) -> Row:
    """The row with fields changed and its hash recomputed under `key`: as an insider holding the
    chain key could (KEY), or as a writer with database access alone can (any other key)."""
    values = dict(zip(COLUMNS, row, strict=True)) | changes
    values["hash"] = key.mac(encode(*(values[name] for name in COLUMNS[:-1])))  # type: ignore[arg-type]
    return tuple(values[name] for name in COLUMNS)  # type: ignore[return-value]


def forged(after: Row | None, seq: int) -> Row:
    """A well-formed record with seq `seq` linked to `after` (None: the genesis)."""
    builder = ChainBuilder(KEY, after[0], after[12]) if after else ChainBuilder(KEY)
    entry = append(builder, 999, detail="forged")
    assert entry.seq == seq
    return entry.as_row()


def test_s2_intact_chain_verifies() -> None:
    rows = build(50)
    report = verify(rows, checkpoint(rows[24]), checkpoint(rows[-1]))
    assert report.ok
    assert found(report) == []
    assert (report.records_checked, report.head_seq, report.head_hash) == (50, 50, rows[-1][12])
    assert report.checkpoint_seq == 50
    report.raise_if_broken()


def test_s2_intact_rows_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def slow(row: Row, key: ChainKey) -> tuple[bool, str | None]:
        raise AssertionError(f"slow path taken for {row[0]}")

    monkeypatch.setattr(verify_module, "_content", slow)
    assert verify(build(30)).ok


def test_s2_entries_and_one_pass_iterators_verify() -> None:
    builder = ChainBuilder(KEY)
    entries = [append(builder, i) for i in range(1, 11)]
    assert verify_chain(entries, (), SIGNER.check, KEY).ok
    rows: Iterator[Row] = (e.as_row() for e in entries)
    assert verify_chain(rows, [checkpoint(entries[-1].as_row())], SIGNER.check, KEY).ok


def test_s2_empty_log() -> None:
    report = verify([])
    assert report.ok
    assert (report.records_checked, report.head_seq, report.head_hash) == (0, 0, GENESIS)
    rows = build(3)
    assert found(verify([], checkpoint(rows[-1]))) == [("truncated", 1)]


@pytest.mark.parametrize("column", COLUMNS)
def test_s2_edit_detected_at_record(column: str) -> None:
    rows = build(20)
    index = COLUMNS.index(column)
    new: object = {
        "seq": 99,
        "prev_hash": "e" * 64,
        "hash": "f" * 64,
        "categories": "phone,bank_card",
    }.get(column, f"{rows[6][index]}x")
    rows[6] = (*rows[6][:index], new, *rows[6][index + 1 :])  # type: ignore[assignment]
    report = verify(rows, checkpoint(rows[-1]))
    assert not report.ok
    assert found(report) == [("edited", 7)]


def test_s2_edit_with_recomputed_hash_breaks_the_next_link() -> None:
    rows = build(20)
    rows[6] = rehashed(rows[6], actor="staff:someone-else")
    assert found(verify(rows, checkpoint(rows[-1]))) == [("inserted", 8)]


def test_s2_quote_injection_is_an_edit() -> None:
    """Values needing JSON escapes take the exact encoding: `a\\"b` never passes for `a"b`."""
    values = dict(zip(COLUMNS, build(1)[0], strict=True)) | {"actor": 'a"b\n'}
    row = rehashed(tuple(values[name] for name in COLUMNS))  # type: ignore[arg-type]
    assert verify([row]).ok
    assert found(verify([(row[0], row[1], 'a\\"b\\n', *row[3:])])) == [("edited", 1)]


def test_s2_entries_verify_exactly_through_the_one_encoder() -> None:
    builder = ChainBuilder(KEY)
    entries = [append(builder, i) for i in range(1, 6)]
    assert verify_chain(entries, (), SIGNER.check, KEY).ok
    entries[2] = replace(entries[2], categories=(*entries[2].categories, "bank_card"))
    assert found(verify_chain(entries, (), SIGNER.check, KEY)) == [("edited", 3)]


def test_s2_a_writer_without_the_chain_key_cannot_make_a_record_that_passes() -> None:
    """The database alone is not enough: a record edited, or appended, with its link computed
    under any key but the chain's (or as the old unkeyed SHA-256) is found at once."""
    rows = build(10)
    guess = ChainKey(b"g" * 32)
    edited = [*rows[:4], rehashed(rows[4], guess, actor="staff:someone-else"), *rows[5:]]
    assert found(verify(edited))[0] == ("edited", 5)
    appended = forged(rows[-1], 11)
    appended = rehashed(appended, guess)
    assert found(verify([*rows, appended])) == [("edited", 11)]
    unkeyed = hashlib.sha256(rows[-1][12].encode() + encode(*appended[:12])).hexdigest()
    assert found(verify([*rows, (*appended[:12], unkeyed)])) == [("edited", 11)]
    assert verify([*rows, rehashed(appended)]).ok  # only the chain key makes it pass


def test_s2_a_record_earlier_than_its_predecessor_is_named() -> None:
    builder = ChainBuilder(KEY)
    rows = [append(builder, i).as_row() for i in range(1, 4)]
    late = builder.append(
        at="2024-05-01T11:59:59.999999+00:00", actor="staff:ops", action="read",
        purpose="risk_control", subject="sub_x", categories=(), effect="allow", clauses=("S2",),
        policy_version="alipay-2017@1", detail="ok",
    )  # fmt: skip
    report = verify([*rows, late.as_row()])
    assert found(report) == [("backdated", 4)]
    assert "earlier" in report.problems[0].describe("en")
    assert "早于" in report.problems[0].describe("zh")


def test_s2_verification_takes_up_the_chain_after_a_seal() -> None:
    rows = build(10)
    start = (rows[5][0], rows[5][12], rows[5][1])
    assert verify_chain(rows[6:], (), SIGNER.check, KEY, start=start).ok
    report = verify_chain(rows[7:], (), SIGNER.check, KEY, start=start)
    assert found(report) == [("deleted", 7)]


def test_s2_the_report_counts_unsealed_records() -> None:
    rows = build(12)
    report = verify(rows, checkpoint(rows[8]))
    assert (report.ok, report.checkpoint_seq, report.unsealed) == (True, 9, 3)
    assert verify(rows).unsealed == 12


def test_s2_malformed_rows_are_edits() -> None:
    rows: list[object] = list(build(5))
    rows[1] = (2, None)
    rows[3] = None
    report = verify_chain(rows, (), SIGNER.check, KEY)  # type: ignore[arg-type]
    assert found(report)[0] == ("edited", 2)


@pytest.mark.parametrize("k", [1, 7, 19])
def test_s2_delete_detected(k: int) -> None:
    rows = build(20)
    del rows[k - 1]
    report = verify(rows, checkpoint(build(20)[-1]))
    assert found(report) == [("deleted", k)]
    assert report.problems[0].detail == f"record {k} is missing"


def test_s2_delete_of_a_range_named_once() -> None:
    rows = build(20)
    del rows[4:9]
    report = verify(rows)
    assert found(report) == [("deleted", 5)]
    assert "5-9" in report.problems[0].detail


@pytest.mark.parametrize("k", [0, 6, 19])
def test_s2_insert_detected(k: int) -> None:
    rows = build(20)
    rows.insert(k, forged(rows[k - 1] if k else None, k + 1))
    assert found(verify(rows, checkpoint(rows[-1]))) == [("inserted", k + 1)]


def test_s2_insert_after_its_twin_detected() -> None:
    rows = build(20)
    rows.insert(7, forged(rows[5], 7))  # stored after the real record 7
    assert found(verify(rows, checkpoint(rows[-1]))) == [("inserted", 7)]


def test_s2_insert_of_a_garbage_record_detected() -> None:
    rows = build(20)
    garbage = rehashed(rows[7], prev_hash="a" * 64)
    rows.insert(7, garbage)
    assert found(verify(rows))[0] == ("inserted", 8)
    rows[7] = (*garbage[:12], "b" * 64)
    assert found(verify(rows)) == [("edited", 8), ("inserted", 8)]


@pytest.mark.parametrize(("i", "j"), [(7, 8), (1, 2), (3, 15), (1, 20), (19, 20)])
def test_s2_reorder_detected(i: int, j: int) -> None:
    rows = build(20)
    rows[i - 1], rows[j - 1] = rows[j - 1], rows[i - 1]
    report = verify(rows, checkpoint(build(20)[-1]))
    assert report.problems[0] == Problem(
        "reordered", i, f"record {i} is stored after records with higher seq"
    )
    assert {p.kind for p in report.problems} == {"reordered"}
    assert report.head_seq == 20


def test_s2_record_moved_to_the_end_detected() -> None:
    rows = build(20)
    rows.append(rows.pop(4))
    report = verify(rows, checkpoint(rows[-2]))
    assert found(report) == [("reordered", 5)]


def test_s2_truncation_detected_by_checkpoint() -> None:
    rows = build(20)
    cp = checkpoint(rows[-1])
    report = verify(rows[:17], cp)
    assert found(report) == [("truncated", 18)]
    assert "20" in report.problems[0].detail


def test_s2_truncation_after_the_last_checkpoint_goes_unseen() -> None:
    """Pins the documented limit: only records up to `checkpoint_seq` are protected from drops."""
    rows = build(20)
    report = verify(rows[:17], checkpoint(rows[14]))
    assert report.ok
    assert report.checkpoint_seq == 15


def test_s2_rebuilt_tail_detected_by_checkpoint() -> None:
    rows = build(20)
    cps = checkpoint(rows[14]), checkpoint(rows[-1])
    builder = ChainBuilder(KEY, rows[8][0], rows[8][12])
    rows[9:] = [append(builder, i, detail="rewritten").as_row() for i in range(10, 21)]
    assert found(verify(rows, *cps)) == [("truncated", 15), ("truncated", 20)]


def test_s2_bad_checkpoint_signature() -> None:
    rows = build(20)
    good = checkpoint(rows[-1])
    bad = Checkpoint(good.seq, good.hash, good.at, b"x" * 32, good.key_id)
    report = verify(rows[:10], bad)
    assert found(report) == [("bad_signature", 20)]
    assert report.checkpoint_seq == 0  # an unverified checkpoint is not trusted
    wrong_head = make_checkpoint(SIGNER, 20, "c" * 64, AT)
    assert found(verify(rows, wrong_head)) == [("truncated", 20)]


def test_s2_checkpoint_payload_is_canonical_and_signed() -> None:
    payload = checkpoint_payload(3, "a" * 64, AT)
    assert json.loads(payload) == {"at": AT, "hash": "a" * 64, "kind": CHECKPOINT_KIND, "seq": 3}
    assert (
        payload == json.dumps(json.loads(payload), sort_keys=True, separators=(",", ":")).encode()
    )
    cp = make_checkpoint(SIGNER, 3, "a" * 64, AT)
    assert (cp.key_id, cp.payload()) == ("test-hmac", payload)
    assert SIGNER.check(payload, cp.signature)


@pytest.mark.parametrize(
    ("seq", "head", "signature"), [(0, "a" * 64, b"s"), (1, "xyz", b"s"), (1, "a" * 64, b"")]
)
def test_s2_checkpoint_refuses_bad_fields(seq: int, head: str, signature: bytes) -> None:
    with pytest.raises(InvalidInput):
        Checkpoint(seq, head, AT, signature, "k")


@pytest.mark.parametrize("kind", get_args(ProblemKind))
def test_s2_problem_describes_itself_in_both_languages(kind: ProblemKind) -> None:
    problem = Problem(kind, 42, "detail")
    zh, en = problem.describe("zh"), problem.describe("en")
    assert "42" in zh
    assert "42" in en
    assert zh != en
    assert "\n" not in zh + en
    assert any("\u4e00" <= ch <= "\u9fff" for ch in zh)


def test_s2_broken_log_raises_integrity_error() -> None:
    rows = build(5)
    del rows[2]
    with pytest.raises(IntegrityError) as caught:
        verify(rows).raise_if_broken()
    assert caught.value.reasons == ("S2",)
    assert "3" in caught.value.message.zh


def test_s2_problems_beyond_the_cap_are_counted() -> None:
    rows = [(*r[:10], "edited", *r[11:]) for r in build(10)]
    report = verify_chain(rows, (), SIGNER.check, KEY, max_problems=3)
    assert found(report) == [("edited", 1), ("edited", 2), ("edited", 3)]
    assert report.problems_omitted == 7
    assert not report.ok


_TAMPERS = ("edit", "rehash", "delete", "insert", "forge", "swap", "truncate")


@given(n=st.integers(2, 25), tamper=st.sampled_from(_TAMPERS), data=st.data())
def test_s2_any_single_tampering_is_located(n: int, tamper: str, data: st.DataObject) -> None:
    rows = build(n)
    cp = checkpoint(rows[-1])
    k = data.draw(st.integers(1, n), label="k")
    if tamper == "edit":
        index = data.draw(st.integers(0, len(COLUMNS) - 1), label="column")
        old = rows[k - 1][index]
        values = st.integers() if index == 0 else st.text(max_size=70)
        new = data.draw(values.filter(lambda v: v != old), label="value")
        rows[k - 1] = (*rows[k - 1][:index], new, *rows[k - 1][index + 1 :])  # type: ignore[assignment]
        position = k
    elif tamper == "rehash":
        rows[k - 1] = rehashed(rows[k - 1], detail="changed")
        position = k
    elif tamper == "delete":
        del rows[k - 1]
        position = k
    elif tamper in ("insert", "forge"):
        k -= 1  # insert between records k and k + 1
        row = forged(rows[k - 1] if k else None, k + 1)
        if tamper == "forge":
            row = (*row[:11], "a" * 64, data.draw(st.sampled_from([row[12], "b" * 64])))
        rows.insert(k, row)
        position = k + 1
    elif tamper == "swap":
        i, j = sorted(data.draw(st.lists(st.integers(1, n), min_size=2, max_size=2, unique=True)))
        rows[i - 1], rows[j - 1] = rows[j - 1], rows[i - 1]
        position = i
    else:
        rows = rows[: k - 1]
        position = k
    report = verify(rows, cp)
    assert not report.ok
    assert abs(report.problems[0].seq - position) <= 1, (tamper, position, report.problems)


def test_s2_verification_streams_in_constant_memory() -> None:
    def rows(n: int) -> Iterator[Row]:
        builder = ChainBuilder(KEY)
        for i in range(1, n + 1):
            yield append(builder, i).as_row()

    tracemalloc.start()
    try:
        report = verify_chain(rows(5000), (), SIGNER.check, KEY)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.ok
    assert report.records_checked == 5000
    assert peak < 200_000  # a list of these rows alone would take megabytes
