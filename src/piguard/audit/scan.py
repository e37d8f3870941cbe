"""The stored audit log read back and verified, and the checkpoint file (clause S2).

Storage order is what a verifier must see, since a reorder is only visible against it:
- SQLite: `ORDER BY rowid`. `seq` is a BIGINT key, not an alias of the rowid, so the rowid is the
  order rows were written in (writers are serialised, rows are never deleted, so each new rowid is
  the largest so far). Moving a record to another position in storage shows as `reordered`; giving
  a record another `seq` shows as `edited`, since `seq` is hashed.
- PostgreSQL: `ORDER BY seq`. Heap order (`ctid`) is not write order when several backends insert,
  so the only trustworthy order is the key; moving a record there means changing its `seq`, which
  the hash covers: it shows as `edited`.

Records are streamed as raw DBAPI tuples (`chain.Row`): no ORM objects. A large SQLite log is
checked in rowid ranges by worker processes (`python -m piguard.audit.scan`, which imports no
SQLAlchemy: it starts in a tenth of a second); their verdict is only trusted when every range is
intact and the ranges join up; anything else is re-checked in one pass by `verify_chain`, so the
report that names problems always comes from the reference verifier.

Checkpoints come from the database, the local file and the witness (`audit.checkpoints`), in the
line format of `checkpoint.encode_line`; trust comes from the keys the caller passes.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

from piguard.audit.chain import COLUMNS, Row
from piguard.audit.checkpoint import Checkpoint, SignatureCheck
from piguard.audit.checkpoints import gather
from piguard.audit.verify import VerifyReport, verify_chain
from piguard.kernel.errors import InvalidInput
from piguard.kernel.text import LocalText
from piguard.vault.crypto import ChainKey, verify_signature

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from piguard.audit.witness import Witness

SELECT_RECORDS: Final = f"SELECT {', '.join(COLUMNS)} FROM audit_records"  # noqa: S608 constants
_RANGE: Final = f"{SELECT_RECORDS} WHERE rowid > ? AND rowid <= ? ORDER BY rowid"
_AT_OF: Final = "SELECT at FROM audit_records WHERE seq = ?"
_FIRST_AFTER: Final = "SELECT seq FROM audit_records WHERE rowid > ? ORDER BY rowid LIMIT 1"
PARALLEL_MIN: Final = 200_000
"""Below this many rows one pass is faster than starting worker processes."""
_MAX_WORKERS: Final = 4
_WORKER_TIMEOUT: Final = 3600.0


@dataclass(frozen=True, slots=True)
class StoredVerification:
    """A verdict on stored records plus what it rested on: how many checkpoints, from where."""

    report: VerifyReport
    checkpoints: int
    from_file: int
    file_found: bool
    parallel: bool
    witnessed: int = 0


def signature_check(public_keys: Sequence[bytes]) -> SignatureCheck:
    """A check that accepts a checkpoint signed by any of the trusted Ed25519 `public_keys`.

    Raises InvalidInput without keys, IntegrityError for a key that is not an Ed25519 key.
    """
    keys = tuple(public_keys)
    if not keys:
        raise InvalidInput(
            LocalText("需要至少一个受信任的检查点公钥", "need at least one trusted public key"),
            field="public_keys",
        )
    for key in keys:
        verify_signature(key, b"", bytes(64))  # raises for a malformed key, before any verdict

    def check(payload: bytes, signature: bytes) -> bool:
        return any(verify_signature(key, payload, signature) for key in keys)

    return check


def verify(
    engine: Engine,
    checkpoint_file: Path | None,
    public_keys: Sequence[bytes],
    key: ChainKey,
    *,
    witness: Witness | None = None,
    workers: int | None = None,
) -> VerifyReport:
    """Verify the stored log: every record under the chain `key`, every checkpoint (database,
    file and witness, which must agree)."""
    check = signature_check(public_keys)
    return verify_storage(
        engine, checkpoint_file, check, key, witness=witness, workers=workers
    ).report


def verify_storage(
    engine: Engine,
    checkpoint_file: Path | None,
    check: SignatureCheck,
    key: ChainKey,
    *,
    witness: Witness | None = None,
    workers: int | None = None,
    parallel_min: int = PARALLEL_MIN,
) -> StoredVerification:
    """Verify every stored record against the keyed chain and the signed checkpoints.

    Checkpoints come from the database, the file and the witness (`checkpoints.gather`): for a
    seq several name, the one kept furthest from the log is trusted, so deleting the newest
    records and their checkpoint rows still shows as truncation, and copies that disagree, or a
    file that lost what the database or the witness holds, are findings. Malformed checkpoints
    are reported as `bad_signature`. Raises WitnessUnavailable when the witness cannot be read.
    """
    gathered = gather(engine, checkpoint_file, witness)
    cps, problems = gathered.checkpoints, gathered.problems
    report = None
    if engine.dialect.name == "sqlite":
        count = workers if workers is not None else _cpus()
        report = _parallel(engine, cps, check, key, count, parallel_min)
    parallel = report is not None
    if report is None:
        report = _single_pass(engine, cps, check, key)
    if problems:
        merged = sorted((*report.problems, *problems), key=lambda p: p.seq)
        report = replace(report, ok=False, problems=tuple(merged))
    return StoredVerification(
        report, len(cps), gathered.from_file, gathered.file_found, parallel, gathered.witnessed
    )


def _single_pass(
    engine: Engine, cps: Sequence[Checkpoint], check: SignatureCheck, key: ChainKey
) -> VerifyReport:
    raw = engine.raw_connection()
    try:
        if engine.dialect.name == "sqlite":
            cur: Any = raw.cursor()
            cur.execute(f"{SELECT_RECORDS} ORDER BY rowid")
        elif engine.dialect.name == "postgresql":
            cur = raw.driver_connection.cursor(name="piguard_audit_verify")  # type: ignore[union-attr]
            cur.itersize = 10_000
            cur.execute(f"{SELECT_RECORDS} ORDER BY seq")
        else:
            cur = raw.cursor()
            cur.execute(f"{SELECT_RECORDS} ORDER BY seq")
        try:
            return verify_chain(cast(Iterable[Row], cur), cps, check, key)
        finally:
            cur.close()
    finally:
        raw.rollback()
        raw.close()


# --- parallel ranges (large SQLite logs) --------------------------------------------------------


def _cpus() -> int:
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        count = os.cpu_count() or 1
    return min(count, _MAX_WORKERS)


def _trust_all(_payload: bytes, _signature: bytes) -> bool:
    return True  # workers get checkpoints whose signatures the parent has already checked


def scan_range(
    path: str, lo: int, hi: int, checkpoints: list[list[Any]], key: ChainKey
) -> dict[str, Any]:
    """Verify the rows with `lo < rowid <= hi` as if the chain started at their first row.

    An intact range that does not start at seq 1 yields exactly one problem: `deleted` at seq 1
    (the records before it, which another range holds). The time order across the ranges'
    edges is checked by the parent (`_stitch`).
    """
    cps = [Checkpoint(seq, h, "", b"-", "") for seq, h in checkpoints]
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        cur = conn.execute(_RANGE, (lo, hi))
        first = cur.fetchone()
        if first is None:
            return {"n": 0}
        report = verify_chain(chain((first,), cur), cps, _trust_all, key, max_problems=4)
        last_at = conn.execute(_AT_OF, (report.head_seq,)).fetchone()
    finally:
        conn.close()
    return {
        "n": report.records_checked,
        "first": [first[0], first[11], first[1]],
        "last_at": last_at[0] if last_at else "",
        "head": [report.head_seq, report.head_hash],
        "problems": [[p.kind, p.seq] for p in report.problems],
        "omitted": report.problems_omitted,
    }


def _parallel(
    engine: Engine,
    cps: Sequence[Checkpoint],
    check: SignatureCheck,
    key: ChainKey,
    workers: int,
    minimum: int,
) -> VerifyReport | None:
    """The all-clear from parallel ranges, or None: then one pass decides and names problems."""
    path = engine.url.database
    if workers < 2 or not path or path == ":memory:" or path.startswith("file:"):
        return None
    trusted: dict[int, str] = {}
    for cp in cps:
        if not check(cp.payload(), cp.signature) or trusted.setdefault(cp.seq, cp.hash) != cp.hash:
            return None
    bounds = _bounds(engine, workers, minimum)
    if bounds is None:
        return None
    edges, firsts = bounds
    jobs: list[dict[str, Any]] = []
    for k, first in enumerate(firsts):
        end = firsts[k + 1] if k + 1 < len(firsts) else None
        mine = [[s, h] for s, h in trusted.items() if s >= first and (end is None or s < end)]
        # The chain key goes to our own worker through its stdin pipe, never its command line.
        jobs.append(
            {
                "path": path, "lo": edges[k], "hi": edges[k + 1], "checkpoints": mine,
                "key": key.export().hex(),
            }
        )  # fmt: skip
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for job in jobs[1:]:
            # This interpreter and a fixed module: no shell, no outside input in the command.
            proc = subprocess.Popen(
                [sys.executable, "-m", "piguard.audit.scan"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            procs.append(proc)
            if proc.stdin is None:
                return None
            proc.stdin.write(json.dumps(job).encode())
            proc.stdin.close()
        results = [_run_job(jobs[0])]
        for proc in procs:
            # The answer is a few hundred bytes: it fits the pipe, so waiting first cannot block.
            if proc.wait(timeout=_WORKER_TIMEOUT) != 0 or proc.stdout is None:
                return None
            results.append(json.loads(proc.stdout.read()))
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
    return _stitch(results, firsts, max(trusted, default=0))


def _bounds(engine: Engine, workers: int, minimum: int) -> tuple[list[int], list[int]] | None:
    """Rowid edges of the ranges and the seq of each range's first row (None: do one pass)."""
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("SELECT max(rowid) FROM audit_records")
        top = (cur.fetchone() or (None,))[0]
        if type(top) is not int or top < max(minimum, workers):
            return None
        edges = [top * k // workers for k in range(workers)] + [top]
        firsts: list[int] = []
        for lo in edges[:-1]:
            cur.execute(_FIRST_AFTER, (lo,))
            row = cur.fetchone()
            if row is None or type(row[0]) is not int or (firsts and row[0] <= firsts[-1]):
                return None
            firsts.append(row[0])
        cur.close()
    finally:
        raw.close()
    return edges, firsts


def _stitch(results: list[dict[str, Any]], firsts: list[int], newest: int) -> VerifyReport | None:
    head_seq, head_hash, head_at, total = 0, "", "", 0
    for k, res in enumerate(results):
        if res["n"] == 0:
            return None
        first_seq, first_prev, first_at = res["first"]
        expected = [] if k == 0 else [["deleted", 1]]
        if res["problems"] != expected or res["omitted"] or first_seq != firsts[k]:
            return None
        if k and (first_seq != head_seq + 1 or first_prev != head_hash or first_at < head_at):
            return None
        head_seq, head_hash = res["head"]
        head_at = res["last_at"]
        total += res["n"]
    if firsts[0] != 1 or newest > head_seq:
        return None
    return VerifyReport(
        ok=True,
        records_checked=total,
        head_seq=head_seq,
        head_hash=head_hash,
        problems=(),
        checkpoint_seq=newest,
    )


def _run_job(job: dict[str, Any]) -> dict[str, Any]:
    key = ChainKey(bytes.fromhex(job["key"]))
    return scan_range(job["path"], job["lo"], job["hi"], job["checkpoints"], key)


def _main() -> None:
    sys.stdout.write(json.dumps(_run_job(json.load(sys.stdin))))


if __name__ == "__main__":
    _main()
