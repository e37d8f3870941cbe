"""Vault benchmark: what encryption, decisions and audit cost, against plain SQLAlchemy.

1. Encrypted collect+read round trips through the service layer versus the same rows written and
   read in plaintext with plain SQLAlchemy (synchronous=FULL too), on the same SQLite database,
   in the same run: one caller, then 8 and 16 threads at once. Each read returns only once its
   audit record is committed with synchronous=FULL (a waiting reader writes the queued records
   itself, many readers' records in one commit): the durable audit of reads is in the figure.
   One caller pays one more fsync per trip than plain; callers together share commits. With
   many callers, plain SQLAlchemy's writers sleep-poll in SQLite's busy handler while piguard's
   take turns on a process lock (`db.write_lock`): part of that ratio is the plain side's wait.
2. Erasing a subject with 10 values versus one with 10,000 (crypto-shredding: constant time).
3. Durable audit append rate (WAL, synchronous=FULL, batched, sealed by verified checkpoints) and
   verification of the keyed (HMAC-SHA256) chain: 1,000,000 records in the full run, measured;
   `--quick` verifies 50,000 and labels the per-million figure it derives as an extrapolation.
   Each beside its floor measured in the same run with the sqlite3 module alone (a bare
   hash-chain insert; reading and hashing every row in one process), since the machine's speed
   varies.

Medians over repetitions; the machine is shared. Ends with one JSON line of all the figures.
Run: `.venv/bin/python bench/vault.py [--quick]`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    insert,
    select,
)

from piguard.audit.chain import COLUMNS
from piguard.audit.log import verify
from piguard.audit.ports import AuditDraft
from piguard.audit.scan import SELECT_RECORDS
from piguard.bootstrap import Piguard, build
from piguard.kernel.ids import new_id
from piguard.policy.decision import Actor
from piguard.policy.model import ActorKind
from piguard.population import Person, people
from piguard.settings import Settings

PAYMENT = Actor(ActorKind.SERVICE, "payment_service", principal="bench")
ACCOUNT = Actor(ActorKind.SERVICE, "account_service", principal="bench")
# Whole-subject erasure is the subject's own cancellation (R4), never a service's grant.
SUBJECT = Actor(ActorKind.SUBJECT, "subject", principal="bench")
CATEGORY = "user.commerce.shipping_address"
CATEGORIES = (CATEGORY, "user.commerce.shipping_contact", "user.financial.merchant_payee")
SAMPLES = ("杭州市西湖区{i}号", "1380013{i:04d}", "测试商户{i}号")  # each valid for its category
PURPOSE = "merchant_oversight"

_plain = MetaData()
PLAIN = Table(
    "bench_plain_values",
    _plain,
    Column("id", String(40), primary_key=True),
    Column("subject_id", String(40), index=True),
    Column("category", String(120)),
    Column("value", Text),
    Column("purposes", String(600)),
    Column("source", String(120)),
    Column("collected_at", DateTime(timezone=True)),
    Column("n", Integer),
)


def median_seconds(run: Callable[[], None], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def plain_engine(app: Piguard) -> Engine:
    """Plain SQLAlchemy on the same database file, as durable (synchronous=FULL) but with none of
    piguard's hooks: the baseline a platform would have without piguard."""
    engine = create_engine(app.db.url)

    @event.listens_for(engine, "connect")
    def _durable(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA synchronous=FULL")

    return engine


def round_trips(app: Piguard, subjects: list[str], n: int, threads: int = 1) -> tuple[float, float]:
    """(encrypted, plain) seconds for n collect+read round trips each, run by `threads` callers
    at once. Each trip writes one value of one subject and reads that subject's values of the
    category back, on both sides alike. Each encrypted read waits for its audit record's commit:
    alone, one more durable commit per trip than plain; together, readers share commits."""
    plain_db = plain_engine(app)
    _plain.create_all(plain_db)
    now = app.clock.now()
    rounds = {"encrypted": 0, "plain": 0}

    def pick(side: str, i: int) -> tuple[str, str]:
        turn = rounds[side] * n + i
        return subjects[turn % len(subjects)], CATEGORIES[turn // len(subjects) % len(CATEGORIES)]

    def encrypted_trips(start: int) -> None:
        for i in range(start, n, threads):
            subject_id, category = pick("encrypted", i)
            value = {category: _sample(category, i)}
            app.vault.collect(PAYMENT, subject_id, PURPOSE, value, "merchant:b")
            app.vault.read(PAYMENT, subject_id, PURPOSE, (category,))

    def plain_trips(start: int) -> None:
        for i in range(start, n, threads):
            subject_id, category = pick("plain", i)
            with plain_db.begin() as conn:
                conn.execute(
                    insert(PLAIN).values(
                        id=new_id("val"),
                        subject_id=subject_id,
                        category=category,
                        value=_sample(category, i),
                        purposes=PURPOSE,
                        source="merchant:b",
                        collected_at=now,
                        n=i,
                    )
                )
            with plain_db.connect() as conn:
                conn.execute(
                    select(PLAIN).where(
                        PLAIN.c.subject_id == subject_id, PLAIN.c.category == category
                    )
                ).all()

    def encrypted() -> None:
        _together(encrypted_trips, threads)
        rounds["encrypted"] += 1

    def plain() -> None:
        _together(plain_trips, threads)
        rounds["plain"] += 1

    enc, pl = [], []
    for _ in range(5):  # interleave so that machine noise hits both alike
        enc.append(median_seconds(encrypted, 1))
        pl.append(median_seconds(plain, 1))
    return statistics.median(enc), statistics.median(pl)


def _together(work: Callable[[int], None], threads: int) -> None:
    """`work(k)` for k in range(threads), each in a thread of its own (one: in this one)."""
    if threads == 1:
        work(0)
        return
    with ThreadPoolExecutor(threads) as pool:
        for done in [pool.submit(work, k) for k in range(threads)]:
            done.result()


def _sample(category: str, i: int) -> str:
    return SAMPLES[CATEGORIES.index(category)].format(i=i % 10_000)


def erase_ratio(app: Piguard, big: int, crowd: list[Person]) -> tuple[float, float]:
    """(seconds to erase a subject with 10 values, with `big` values), medians of 3."""
    small_t, big_t = [], []
    for round_ in range(3):
        small = app.vault.register(ACCOUNT, crowd[2 * round_].registration())
        large = app.vault.register(ACCOUNT, crowd[2 * round_ + 1].registration())
        _fill(app, small, 10 - 6)
        _fill(app, large, big - 6)
        small_t.append(median_seconds(partial(app.vault.erase_subject, SUBJECT, small), 1))
        big_t.append(median_seconds(partial(app.vault.erase_subject, SUBJECT, large), 1))
        app.vault.purge_erased(batch=1_000_000)
    return statistics.median(small_t), statistics.median(big_t)


def _fill(app: Piguard, subject_id: str, count: int) -> None:
    for start in range(0, count, 500):
        values = {CATEGORY: "x"}
        for _ in range(min(500, count - start)):
            app.vault.collect(PAYMENT, subject_id, PURPOSE, values, "merchant:b")


def audit_rates(app: Piguard, records: int) -> tuple[float, float]:
    """(durable appends per second, seconds to verify `records` records)."""
    draft = AuditDraft(
        "service:payment_service:bench",
        "read",
        PURPOSE,
        "sub_bench",
        (CATEGORY,),
        "allow",
        ("C2.5", "S2"),
        app.policy.key,
        "bench",
    )
    app.audit.flush()
    rates = []
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(20_000):
            app.audit.enqueue(draft)
        app.audit.flush()
        rates.append(20_000 / (time.perf_counter() - start))
    remaining = records - _count(app)
    for start in range(0, max(remaining, 0), 50_000):
        for _ in range(min(50_000, remaining - start)):
            app.audit.enqueue(draft)
        app.audit.flush()
    started = time.perf_counter()
    report = verify(
        app.db, app.settings.checkpoint_file, [app.keys.signer.public_bytes()], app.keys.chain_key
    )
    elapsed = time.perf_counter() - started
    assert report.ok, report.problems[:3]
    assert report.records_checked >= records, report.records_checked
    return statistics.median(rates), elapsed


def bare_chain_append_rate(folder: Path, records: int = 20_000) -> float:
    """The floor under the audit log's append rate, in the same run: a hash chain inserted with
    the sqlite3 module alone (WAL, synchronous=FULL, 1,000 rows per commit), no piguard."""
    path = folder / "bare-chain.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(f"CREATE TABLE chain ({', '.join(COLUMNS)})")
    insert = f"INSERT INTO chain VALUES ({', '.join('?' * len(COLUMNS))})"  # noqa: S608
    prev, seq, rates = "0" * 64, 0, []
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(records // 1000):
            rows = []
            for _ in range(1000):
                seq += 1
                at = datetime.now(UTC).isoformat(timespec="microseconds")
                body = f"{prev}|{seq}|{at}|service:payment_service:bench|read|{PURPOSE}|sub_bench"
                digest = hashlib.sha256(body.encode()).hexdigest()
                rows.append(
                    (
                        seq,
                        at,
                        "a",
                        "read",
                        PURPOSE,
                        "s",
                        CATEGORY,
                        "allow",
                        "S2",
                        "v",
                        "",
                        prev,
                        digest,
                    )
                )
                prev = digest
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(insert, rows)
            conn.execute("COMMIT")
        rates.append(records / (time.perf_counter() - start))
    conn.close()
    return statistics.median(rates)


def bare_read_and_hash_seconds(app: Piguard) -> float:
    """The floor under verification, in the same run: read every audit row with the sqlite3
    module and SHA-256 its fields joined, in one process, with no checks."""
    conn = sqlite3.connect(app.db.url.database or "")
    started = time.perf_counter()
    for row in conn.execute(f"{SELECT_RECORDS} ORDER BY rowid"):
        hashlib.sha256("|".join(map(str, row)).encode()).hexdigest()
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def _count(app: Piguard) -> int:
    with app.db.connect() as conn:
        return int(conn.exec_driver_sql("SELECT COUNT(*) FROM audit_records").scalar_one())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    trips, big, records = (50, 1_000, 50_000) if args.quick else (300, 10_000, 1_000_000)
    with tempfile.TemporaryDirectory() as tmp:
        app = build(Settings(dev=True, var_dir=Path(tmp)))
        try:
            crowd = list(people(trips + 6, seed=5))  # one generator: no two share an identifier
            subjects = [app.vault.register(ACCOUNT, p.registration()) for p in crowd[:trips]]
            enc, plain = round_trips(app, subjects, trips)
            enc8, plain8 = round_trips(app, subjects, trips, threads=8)
            enc16, plain16 = round_trips(app, subjects, trips, threads=16)
            small_s, big_s = erase_ratio(app, big, crowd[trips:])
            append_rate, verify_s = audit_rates(app, records)
            bare_verify_s = bare_read_and_hash_seconds(app)
        finally:
            app.close()
        bare_append = bare_chain_append_rate(Path(tmp))
    figures = {
        "encrypted_round_trips_per_s": round(trips / enc, 1),
        "plain_round_trips_per_s": round(trips / plain, 1),
        "encrypted_overhead_ratio": round(enc / plain, 3),
        "encrypted_round_trips_per_s_8_callers": round(trips / enc8, 1),
        "plain_round_trips_per_s_8_callers": round(trips / plain8, 1),
        "encrypted_overhead_ratio_8_callers": round(enc8 / plain8, 3),
        "encrypted_round_trips_per_s_16_callers": round(trips / enc16, 1),
        "plain_round_trips_per_s_16_callers": round(trips / plain16, 1),
        "encrypted_overhead_ratio_16_callers": round(enc16 / plain16, 3),
        "erase_10_ms": round(small_s * 1000, 2),
        f"erase_{big}_ms": round(big_s * 1000, 2),
        "erase_10k_vs_10_ratio": round(big_s / small_s, 3),
        "audit_append_per_s": round(append_rate),
        "audit_records_verified": records,
        "audit_verify_s": round(verify_s, 3),
        "bare_chain_append_per_s": round(bare_append),
        "audit_append_vs_bare_ratio": round(append_rate / bare_append, 3),
        "bare_read_and_hash_s": round(bare_verify_s, 3),
        "audit_verify_vs_bare_ratio": round(verify_s / bare_verify_s, 3),
    }
    # Measured at 1,000,000 records, or labelled for what it is: a linear extrapolation.
    per_million = round(verify_s * 1_000_000 / records, 3)
    if records == 1_000_000:
        figures["audit_verify_1m_s"] = per_million
    else:
        figures["audit_verify_1m_s_extrapolated"] = per_million
    for key, value in figures.items():
        print(f"{key:40} {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
