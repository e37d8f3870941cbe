"""Verifying the audit log: one streaming pass that names the first bad record of each kind.

Records come in storage order, as `Row` tuples (the fast path: no objects built per record) or as
`AuditEntry` values. An intact record costs one `chain.encode` and one HMAC under the chain key.
Any record that is not the expected next link goes to `_Walker`, which classifies it keeping only
a few recent chain heads and the open gaps in the numbering, so memory does not grow with the log.
Checkpoints, signed outside the database, add what the chain alone cannot show: truncation; the
records after the newest valid one are reported as unsealed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Final, Literal, cast

from piguard.audit.chain import GENESIS, AuditEntry, LinkKey, Row, encode
from piguard.audit.checkpoint import Checkpoint, SignatureCheck
from piguard.kernel.errors import IntegrityError
from piguard.kernel.text import Lang, LocalText

ProblemKind = Literal[
    "edited",
    "deleted",
    "inserted",
    "reordered",
    "backdated",
    "truncated",
    "bad_signature",
    "checkpoint_missing",
    "checkpoint_mismatch",
]

_SUMMARY: Final[dict[ProblemKind, LocalText]] = {
    "edited": LocalText(
        "第 {seq} 条审计记录被修改：内容与其哈希不符",
        "audit record {seq} was edited: its content no longer matches its hash",
    ),
    "deleted": LocalText(
        "第 {seq} 条审计记录缺失：记录被删除",
        "audit record {seq} is missing: records were deleted",
    ),
    "inserted": LocalText(
        "序号 {seq} 处插入了伪造记录：哈希链接断开或序号重复",
        "a forged record was inserted at seq {seq}: the hash link breaks or the seq repeats",
    ),
    "reordered": LocalText(
        "第 {seq} 条审计记录的存储顺序被调换",
        "audit record {seq} is stored out of order",
    ),
    "backdated": LocalText(
        "第 {seq} 条审计记录的时间早于其前一条记录",
        "audit record {seq} carries a time earlier than the record before it",
    ),
    "truncated": LocalText(
        "审计日志与签名检查点不符：自序号 {seq} 起被截断或改写",
        "the log no longer matches a signed checkpoint: truncated or rewritten at seq {seq}",
    ),
    "bad_signature": LocalText(
        "序号 {seq} 的检查点签名无效",
        "the checkpoint at seq {seq} has an invalid signature",
    ),
    "checkpoint_missing": LocalText(
        "检查点文件缺少序号 {seq} 的检查点，而数据库或见证方持有它：文件被删除或截短",
        "the checkpoint file lacks the checkpoint at seq {seq} that the database or the witness "
        "holds: the file was removed or cut short",
    ),
    "checkpoint_mismatch": LocalText(
        "序号 {seq} 的检查点在检查点文件、数据库与见证方之间不一致：某一份被改写",
        "the checkpoint at seq {seq} differs between the checkpoint file, the database and the "
        "witness: a copy was rewritten",
    ),
}
_ORDER: Final = {kind: i for i, kind in enumerate(_SUMMARY)}


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding: its kind, the seq of the first bad record, a technical detail (no PI)."""

    kind: ProblemKind
    seq: int
    detail: str

    def describe(self, lang: Lang) -> str:
        """A one-line summary for the CLI, in Chinese or English."""
        return _SUMMARY[self.kind].format(seq=self.seq).in_(lang)


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The verdict, with problems sorted by seq.

    `checkpoint_seq` is the newest validly signed checkpoint (0: none): what is sealed. The
    `unsealed` records after it are protected by the keyed chain only, so dropping them would go
    unnoticed; a healthy log has unsealed records for at most a checkpoint interval.
    """

    ok: bool
    records_checked: int
    head_seq: int
    head_hash: str
    problems: tuple[Problem, ...]
    checkpoint_seq: int = 0
    problems_omitted: int = 0

    @property
    def unsealed(self) -> int:
        """Records after the newest validly signed checkpoint."""
        return max(self.head_seq - self.checkpoint_seq, 0)

    def raise_if_broken(self) -> None:
        """Raise IntegrityError naming the first problem, when there is one."""
        if self.problems:
            first = self.problems[0]
            raise IntegrityError(
                LocalText(first.describe("zh"), first.describe("en")), reasons=("S2",)
            )


_MAX_GAPS: Final = 10_000

Start = tuple[int, str, str]
"""Where a chain is taken up: seq, hash and `at` of the record before the first one given."""
ORIGIN: Final[Start] = (0, GENESIS, "")


def verify_chain(
    records: Iterable[Row] | Iterable[AuditEntry],
    checkpoints: Sequence[Checkpoint],
    check_signature: SignatureCheck,
    key: LinkKey,
    *,
    max_problems: int = 1000,
    start: Start = ORIGIN,
) -> VerifyReport:
    """Check every record and checkpoint in one pass over `records` (storage order, read once).

    Each record must be the next link under `key`, and not earlier in time than the one before
    it. `start` takes the chain up after a known record (the checkpointer's last seal).
    Fast path: `Row` tuples in `chain.COLUMNS` order, categories and clauses comma-joined as
    stored. Findings beyond `max_problems` are only counted. A `check_signature` that raises is
    not a verdict: its error propagates.
    """
    walker = _Walker(max_problems, key)
    cps = walker.trust(checkpoints, check_signature)
    tail_seq, tail_hash, last_at = start
    tail_prev = cast(str | None, None)
    mac, step, n = key.mac, walker.step, 0
    for n, row in enumerate(_rows(records), 1):
        digest = None  # the keyed hash when the row could be encoded, else the walker tries
        try:
            seq, at, actor, act, purp, subj, cats, eff, clauses, pv, detail, prev, h = row
            digest = mac(
                encode(seq, at, actor, act, purp, subj, cats, eff, clauses, pv, detail, prev)
            )
            if digest == h and prev == tail_hash and seq == tail_seq + 1:
                if at < last_at:
                    walker.add("backdated", seq, "its time is earlier than its predecessor's")
                tail_seq, tail_hash, tail_prev, last_at = seq, h, prev, at
                if seq in cps:
                    walker.note(seq, h, h)
                continue
        except (TypeError, ValueError, AttributeError):
            digest = None
        before = tail_seq
        tail_seq, tail_hash, tail_prev = step(n, row, digest, (tail_seq, tail_hash, tail_prev))
        if tail_seq != before and digest is not None and digest == row[12]:
            last_at = _at_of(row, last_at)  # the head moved to an intact row: keep up with its time
    return walker.report(n, tail_seq, tail_hash, cps)


def _rows(records: Iterable[Row] | Iterable[AuditEntry]) -> Iterator[Row]:
    items: Iterator[Row | AuditEntry] = iter(records)
    first = next(items, None)
    if first is None:
        return iter(())
    rest = chain((first,), items)
    if isinstance(first, AuditEntry):
        return map(_as_row, rest)
    return cast(Iterator[Row], rest)


def _as_row(item: Row | AuditEntry) -> Row:
    return item.as_row() if isinstance(item, AuditEntry) else item


def _at_of(row: Row, default: str) -> str:
    try:
        at = row[1]
    except (TypeError, IndexError, KeyError):
        return default
    return at if isinstance(at, str) else default


def _content(row: Row, key: LinkKey) -> tuple[bool, str | None]:
    """Exact check through the one encoder: (content matches hash, recomputed hash)."""
    try:
        seq, at, actor, action, purpose, subject, cats, effect, clauses, pv, detail, prev, h = row
        computed = key.mac(
            encode(
                seq, at, actor, action, purpose, subject, cats, effect, clauses, pv, detail, prev
            )
        )
    except (TypeError, ValueError, AttributeError):
        return False, None
    return computed == h, computed


def _key(row: Row) -> tuple[int, str, str] | None:
    try:
        seq, prev, h = row[0], row[11], row[12]
    except (TypeError, IndexError, KeyError):
        return None
    if isinstance(seq, bool) or not isinstance(seq, int):
        return None
    if not isinstance(prev, str) or not isinstance(h, str):
        return None
    return seq, prev, h


_Tail = tuple[int, str, str | None]  # seq and hash of the chain head, and the hash it links to
_Gap = tuple[int, int, str, str]  # missing seqs lo..hi, hash of record lo-1, prev_hash of hi+1


class _Walker:
    """Classifies the records that are not the expected next link; O(gaps + problems) memory."""

    def __init__(self, max_problems: int, key: LinkKey) -> None:
        self._max = max_problems
        self._key = key
        self._omitted = 0
        self._problems: dict[tuple[ProblemKind, int], Problem] = {}
        self._gaps: list[_Gap] = []
        self._alts: deque[tuple[int, str]] = deque(maxlen=4)  # other heads a record may link to
        self._last = (0, "")  # row number and hash of the last row this walker saw
        self._cps: dict[int, str] = {}
        self._cp_matched: set[int] = set()
        self._cp_differs: set[int] = set()

    def add(self, kind: ProblemKind, seq: int, detail: str) -> None:
        if (kind, seq) in self._problems:
            return
        if len(self._problems) >= self._max:
            self._omitted += 1
            return
        self._problems[(kind, seq)] = Problem(kind, seq, detail)

    def trust(self, checkpoints: Sequence[Checkpoint], check: SignatureCheck) -> dict[int, str]:
        for cp in checkpoints:
            if not check(cp.payload(), cp.signature):
                self.add("bad_signature", cp.seq, f"signature by key {cp.key_id} does not verify")
            elif self._cps.setdefault(cp.seq, cp.hash) != cp.hash:
                self.add("truncated", cp.seq, "two signed checkpoints disagree on this seq")
        return self._cps

    def note(self, seq: int, h: str, computed: str | None) -> None:
        expected = self._cps.get(seq)
        if expected is None:
            return
        if expected in (h, computed):
            self._cp_matched.add(seq)
        else:
            self._cp_differs.add(seq)

    def step(self, n: int, row: Row, digest: str | None, tail: _Tail) -> _Tail:
        """Place one record that is not the expected next link; return the new chain head."""
        tail_seq, tail_hash, _ = tail
        last = self._last[1] if self._last[0] == n - 1 else tail_hash
        key = _key(row)
        if key is None:
            self._last = (n, "")
            self.add("edited", tail_seq + 1, "malformed row")
            return tail_seq + 1, tail_hash, tail[2]
        seq, prev, h = key
        self._last = (n, h)
        ok, computed = (digest == h, digest) if digest is not None else _content(row, self._key)
        self.note(seq, h, computed)
        gap = next((g for g in self._gaps if g[0] <= seq <= g[1]), None) if ok else None
        if gap is not None:
            self._fill(gap, seq, prev, h, adjacent=prev == last)
            return tail
        head = self._head(prev, tail)
        if head is None:
            return self._unlinked(ok, seq, prev, h, computed, tail)
        pos = head + 1
        if not ok:
            self.add("edited", pos, "content no longer matches its hash")
            if computed is not None:
                self._alts.append((pos, computed))  # only the hash column may have changed
        elif seq != pos:
            if seq > pos:
                self.add("deleted", pos, f"the chain links but its numbering jumps to {seq}")
            else:
                self.add("inserted", seq, f"the chain links but seq {seq} follows {head}")
            pos = seq
        elif pos <= tail_seq:
            self.add("inserted", pos, f"two records claim seq {pos}, both linking to {head}")
        if pos > tail_seq:
            return pos, h, prev
        self._alts.append((pos, h))
        return tail

    def _head(self, prev: str, tail: _Tail) -> int | None:
        """The seq of the known record `prev` names: the head, the one before, or a recent fork."""
        if prev == tail[1]:
            return tail[0]
        if prev == tail[2]:
            return tail[0] - 1
        return next((seq for seq, h in reversed(self._alts) if h == prev), None)

    def _unlinked(
        self, ok: bool, seq: int, prev: str, h: str, computed: str | None, tail: _Tail
    ) -> _Tail:
        tail_seq, tail_hash, _ = tail
        if not ok:
            pos = seq if seq > tail_seq else tail_seq + 1
            self.add("edited", pos, "content matches neither its hash nor its link")
            if computed is not None:
                self._alts.append((pos, computed))
        elif seq <= tail_seq:
            self.add("inserted", seq, f"a stray record claims seq {seq}, already passed")
            return tail
        else:
            pos = seq
            if seq == tail_seq + 1:
                self.add("inserted", seq, f"record {seq} does not link to record {tail_seq}")
        if pos > tail_seq + 1:
            self._open((tail_seq + 1, pos - 1, tail_hash, prev))
            return pos, h, prev
        return pos, h, tail_hash  # a twin of this record may still link to the old head

    def _open(self, gap: _Gap) -> None:
        if len(self._gaps) < _MAX_GAPS:
            self._gaps.append(gap)
        else:
            self._missing(gap)

    def _missing(self, gap: _Gap) -> None:
        lo, hi = gap[0], gap[1]
        self.add(
            "deleted",
            lo,
            f"record {lo} is missing" if lo == hi else f"records {lo}-{hi} are missing",
        )

    def _fill(self, gap: _Gap, seq: int, prev: str, h: str, *, adjacent: bool) -> None:
        lo, hi, before, after = gap
        self._gaps.remove(gap)
        if not (adjacent and seq == lo):
            self.add("reordered", seq, f"record {seq} is stored after records with higher seq")
        for part in ((lo, seq - 1, before, prev), (seq + 1, hi, h, after)):
            if part[0] <= part[1]:
                self._gaps.append(part)
            elif part[2] != part[3]:
                self.add(
                    "inserted", part[1] + 1, f"record {part[1] + 1} does not link to {part[0] - 1}"
                )

    def report(self, n: int, head_seq: int, head_hash: str, cps: dict[int, str]) -> VerifyReport:
        for gap in self._gaps:
            self._missing(gap)
        for seq in sorted(self._cp_differs - self._cp_matched):
            self.add("truncated", seq, "differs from the signed checkpoint: rewritten at or before")
        newest = max(cps, default=0)
        if newest > head_seq:
            self.add(
                "truncated", head_seq + 1, f"checkpoint names seq {newest}, log ends at {head_seq}"
            )
        problems = sorted(self._problems.values(), key=lambda p: (p.seq, _ORDER[p.kind]))
        return VerifyReport(
            ok=not problems and not self._omitted,
            records_checked=n,
            head_seq=head_seq,
            head_hash=head_hash,
            problems=tuple(problems),
            checkpoint_seq=newest,
            problems_omitted=self._omitted,
        )
