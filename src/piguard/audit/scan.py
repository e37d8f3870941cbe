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

The checkpoint file is JSON lines `{"at","hash","key_id","public_key","seq","signature"}` (binary
values base64). Its `public_key` is informative only: trust comes from the keys the caller passes.
"""

from __future__ import annotations

import base64
import binascii
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
from piguard.audit.verify import Problem, VerifyReport, verify_chain
from piguard.files import private_dir
from piguard.kernel.errors import InvalidInput
from piguard.kernel.text import LocalText
from piguard.vault.crypto import ChainKey, verify_signature

if TYPE_CHECKING:
    from sqlalchemy import Engine

SELECT_RECORDS: Final = f"SELECT {', '.join(COLUMNS)} FROM audit_records"  # noqa: S608 constants
SELECT_CHECKPOINTS: Final = "SELECT seq, hash, at, signature, key_id FROM audit_checkpoints"
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
    workers: int | None = None,
) -> VerifyReport:
    """Verify the stored log: every record under the chain `key`, every checkpoint (database
    and file, file wins)."""
    check = signature_check(public_keys)
    return verify_storage(engine, checkpoint_file, check, key, workers=workers).report


def verify_storage(
    engine: Engine,
    checkpoint_file: Path | None,
    check: SignatureCheck,
    key: ChainKey,
    *,
    workers: int | None = None,
    parallel_min: int = PARALLEL_MIN,
) -> StoredVerification:
    """Verify every stored record against the keyed chain and the signed checkpoints.

    Checkpoints come from the database and from the file; for a seq both name, the file wins
    (it lives outside the database, so deleting the newest records and their checkpoint rows still
    shows as truncation). Malformed checkpoints are reported as `bad_signature`. Database
    checkpoints are read before records, so a concurrent writer never causes a false finding.
    """
    db_cps, problems = _db_checkpoints(engine)
    file_cps, file_problems = read_checkpoint_file(checkpoint_file)
    problems += file_problems
    in_file = {cp.seq for cp in file_cps}
    cps = [cp for cp in db_cps if cp.seq not in in_file] + list(dict.fromkeys(file_cps))
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
        report, len(cps), len(in_file), checkpoint_file is not None and checkpoint_file.exists(),
        parallel,
    )  # fmt: skip


def append_checkpoint_line(path: Path, cp: Checkpoint, public_key: bytes) -> None:
    """Append the checkpoint's line to the file and fsync it (the folder too, on creation).

    One `write` with O_APPEND, so lines of concurrent processes never interleave.
    """
    data = checkpoint_line(cp, public_key)
    private_dir(path.parent)
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        if os.write(fd, data) != len(data):
            raise OSError(f"short write to {path}")
        os.fsync(fd)
    finally:
        os.close(fd)
    if created and os.name == "posix":
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def checkpoint_line(cp: Checkpoint, public_key: bytes) -> bytes:
    """One line of the checkpoint file (sorted-key compact JSON, newline-terminated)."""
    body = {
        "seq": cp.seq,
        "hash": cp.hash,
        "at": cp.at,
        "signature": base64.b64encode(cp.signature).decode(),
        "key_id": cp.key_id,
        "public_key": base64.b64encode(public_key).decode(),
    }
    return (json.dumps(body, sort_keys=True, separators=(",", ":")) + "\n").encode()


def read_checkpoint_file(path: Path | None) -> tuple[list[Checkpoint], list[Problem]]:
    """The checkpoints of the file (none when absent) and a problem per malformed line.

    A last line without its newline is a write cut short by a crash: it is ignored.
    """
    if path is None or not path.exists():
        return [], []
    lines = path.read_bytes().split(b"\n")[:-1]
    cps: list[Checkpoint] = []
    problems: list[Problem] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        seq: object = 0
        try:
            doc = json.loads(line)
            seq = doc["seq"] if isinstance(doc, dict) else 0
            sig = base64.b64decode(doc["signature"], validate=True)
            cps.append(_checkpoint(seq, doc["hash"], doc["at"], sig, doc["key_id"]))
        except (ValueError, TypeError, KeyError, binascii.Error, InvalidInput, RecursionError):
            where = seq if type(seq) is int else 0
            problems.append(
                Problem("bad_signature", where, f"checkpoint file line {number} is malformed")
            )
    return cps, problems


def _checkpoint(seq: object, h: object, at: object, sig: object, key_id: object) -> Checkpoint:
    if type(seq) is not int or not isinstance(at, str) or not isinstance(key_id, str):
        raise TypeError("malformed checkpoint")
    if isinstance(sig, memoryview):
        sig = sig.tobytes()
    return Checkpoint(seq, cast(str, h), at, cast(bytes, sig), key_id)


def _db_checkpoints(engine: Engine) -> tuple[list[Checkpoint], list[Problem]]:
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute(SELECT_CHECKPOINTS)
        rows = cur.fetchall()
        cur.close()
    finally:
        raw.close()
    cps: list[Checkpoint] = []
    problems: list[Problem] = []
    for seq, h, at, sig, key_id in rows:
        try:
            cps.append(_checkpoint(seq, h, at, sig, key_id))
        except (TypeError, InvalidInput):
            where = seq if type(seq) is int else 0
            problems.append(Problem("bad_signature", where, "malformed checkpoint row"))
    return cps, problems


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
