"""Support for the API tests: synthetic people, and `Api`, a handle on a running server.

Identifiers are computed, never real: resident ID numbers with an ISO 7064 MOD 11-2 check digit,
mobile numbers 1380013xxxx, Luhn-valid card numbers, emails at example.com. `valid_value` gives a
value of the right format for any category, from the validator the policy names for it.
"""

from __future__ import annotations

import itertools
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import httpx
import uvicorn
from starlette.types import ASGIApp

from piguard.bootstrap import Piguard, build
from piguard.client import PiguardClient
from piguard.kernel.clock import Clock
from piguard.policy.model import Policy
from piguard.settings import Settings
from piguard.vault.validators import DEFAULT

NAME = "user.name"
ID_NUMBER = "user.government_id.national_identification_number"
PHONE = "user.contact.phone_number"
EMAIL = "user.contact.email"
ADDRESS = "user.contact.address"
BANK_ACCOUNT = "user.financial.bank_account"
TABLES = (
    "subjects",
    "personal_values",
    "blind_indexes",
    "consent_events",
    "setting_events",
    "audit_records",
)
# Audit actions of issuing and revoking API keys (auth.service).
KEY_EVENTS = ("key_issue", "key_revoke")

# -- synthetic identifiers, computed (never real people) ------------------------------------------

_numbers = itertools.count(1)
_ID_WEIGHTS = [pow(2, 17 - i, 11) for i in range(17)]


def resident_id(n: int) -> str:
    """A valid PRC resident ID number: Beijing Dongcheng, an adult birth date, ISO 7064 MOD 11-2."""
    body = f"110101{_birth_date(n):%Y%m%d}{n % 1000:03d}"
    check = (12 - sum(int(d) * w for d, w in zip(body, _ID_WEIGHTS, strict=True)) % 11) % 11
    return body + ("X" if check == 10 else str(check))


def luhn_card(n: int) -> str:
    """A 19-digit UnionPay-style card number with a valid Luhn check digit."""
    body = f"622202{n:012d}"
    total = 0
    for i, digit in enumerate(reversed(body)):
        d = int(digit) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


def mobile(n: int) -> str:
    """1380013xxxx for the first 10,000 people, then on: distinct for every n a suite makes."""
    return f"138{(130_000 + n) % 100_000_000:08d}"


def _birth_date(n: int) -> date:
    """An adult's birth date (1960-2001); with the sequence number n % 1000, distinct for every n
    below 15 million."""
    return date(1960, 1, 1) + timedelta(days=n // 1000 % 15_000)


def _birth(n: int) -> str:
    return _birth_date(n).isoformat()


# One valid value per validator of `vault.validators`, varied by n where the format allows
# (test_r1_the_tests_values_are_valid_for_every_validator keeps the two registries in step).
SAMPLES: Final[Mapping[str, Callable[[int], str]]] = MappingProxyType(
    {
        "text": lambda n: f"测试文本{n}\n第二行",
        "line": lambda n: f"北京市东城区测试路{n}号",
        "name": lambda n: f"测试{n}",
        "token": lambda n: f"tok-{n}",
        "blob_reference": lambda n: f"oss://test/{n}.png",
        "account_number": lambda n: f"ACC-{n:06d}",
        "gender": lambda n: ("male", "female")[n % 2],
        "verification_result": lambda n: "pass",
        "country": lambda n: ("CN", "HK", "SG")[n % 3],
        "birth_date": _birth,
        "document_expiry": lambda n: f"{2030 + n % 20}-12-31",
        "past_time": lambda n: f"2024-05-01T08:{n % 60:02d}:00+08:00",
        "amount": lambda n: f"{n % 100_000}.50",
        "count": str,
        "credit_score": lambda n: str(350 + n % 600),
        "geo_point": lambda n: f"39.{n % 10_000:04d},116.4074",
        "ip_address": lambda n: f"192.0.2.{n % 256}",
        "cn_resident_id": resident_id,
        "cn_mobile": mobile,
        "cn_phone": mobile,
        "bank_card": luhn_card,
        "email": lambda n: f"user{n}@example.com",
        "login_name": lambda n: f"login{n}@example.com",
    }
)


def valid_value(policy: Policy, category: str, n: int) -> str:
    """A value of `category` that its validator (in `policy`) accepts; `n` varies it."""
    return SAMPLES[policy.categories[category].validator or DEFAULT](n)


@dataclass(frozen=True)
class Person:
    """The registration values of one synthetic person."""

    n: int
    name: str
    id_number: str
    phone: str
    address: str
    bank_account: str
    email: str

    @property
    def values(self) -> dict[str, str]:
        return {
            NAME: self.name,
            ID_NUMBER: self.id_number,
            PHONE: self.phone,
            ADDRESS: self.address,
            BANK_ACCOUNT: self.bank_account,
        }


def new_person() -> Person:
    n = next(_numbers)
    return Person(
        n=n,
        name=f"测试{'甲乙丙丁戊己庚辛壬癸'[n % 10]}{n}",
        id_number=resident_id(n),
        phone=mobile(n),
        address=f"北京市东城区测试路{n}号",
        bank_account=luhn_card(n),
        email=f"user{n}@example.com",
    )


# -- a running server ---------------------------------------------------------------------------


@dataclass
class Api:
    """A running server, its `Piguard`, and clients for roles and subjects."""

    base_url: str
    piguard: Piguard
    var_dir: Path
    app: Any = None  # the served ASGI app, where a test looks at its routes
    _clients: dict[str, PiguardClient] = field(default_factory=dict)

    def client(self, token: str | None) -> PiguardClient:
        """A fresh client (closed with the server)."""
        made = PiguardClient(self.base_url, token, timeout=10)
        self._clients[f"anon-{len(self._clients)}"] = made
        return made

    def as_role(self, role: str) -> PiguardClient:
        """A client holding a staff or service key for `role` (one per role)."""
        if role not in self._clients:
            issued = self.piguard.api_keys.create(role, f"test {role}")
            self._clients[role] = PiguardClient(self.base_url, issued.token, timeout=10)
        return self._clients[role]

    def as_subject(self, subject_id: str) -> PiguardClient:
        """A client holding the subject's own key (role `subject`)."""
        if subject_id not in self._clients:
            issued = self.piguard.api_keys.create("subject", "test subject", subject_id)
            self._clients[subject_id] = PiguardClient(self.base_url, issued.token, timeout=10)
        return self._clients[subject_id]

    def raw(self) -> httpx.Client:
        """A bare httpx client for requests the SDK would never send."""
        return httpx.Client(base_url=self.base_url, timeout=10)

    def token(self, role: str) -> str:
        return self.piguard.api_keys.create(role, f"raw {role}").token

    def register(self, who: Person) -> str:
        return self.as_role("account_service").register(who.values)

    def counts(self) -> dict[str, int]:
        """Rows per table (main database and key store), after the audit queue is flushed."""
        self.piguard.audit.flush()
        with _readonly(self.var_dir / "piguard.db") as db:
            found = {t: _count(db, t) for t in TABLES}
        with _readonly(self.var_dir / "keystore.db") as keys:
            found["data_keys"] = _count(keys, "data_keys")
        return found

    def held_for(self, subject_id: str) -> dict[str, int]:
        """What is stored for one subject: values, blind indexes, its wrapped data key."""
        where = "WHERE subject_id = ?"
        with _readonly(self.var_dir / "piguard.db") as db:
            found = {
                t: _count(db, t, where, subject_id) for t in ("personal_values", "blind_indexes")
            }
        with _readonly(self.var_dir / "keystore.db") as keys:
            found["data_keys"] = _count(keys, "data_keys", where, subject_id)
        return found

    def audit_since(self, seq: int) -> list[tuple[str, str, str, str]]:
        """(actor, purpose, effect, detail) of the audit records after `seq`, but for the
        issue and revocation of API keys (`KEY_EVENTS`: the clients mint keys on first use)."""
        self.piguard.audit.flush()
        with _readonly(self.var_dir / "piguard.db") as db:
            rows = db.execute(
                "SELECT actor, purpose, effect, detail FROM audit_records WHERE seq > ? "
                "AND action NOT IN (?, ?) ORDER BY seq",
                (seq, *KEY_EVENTS),
            ).fetchall()
        return [(str(a), str(p), str(e), str(d)) for a, p, e, d in rows]

    def records_since(self, seq: int, *, key_events: bool = False) -> list[dict[str, str]]:
        """Every field but the hashes of the audit records after `seq`, after a flush; those of
        issuing and revoking API keys only with `key_events` (the clients mint keys on first
        use)."""
        self.piguard.audit.flush()
        with _readonly(self.var_dir / "piguard.db") as db:
            db.row_factory = sqlite3.Row
            rows = db.execute(
                "SELECT actor, action, purpose, subject, categories, effect, clauses, detail "
                "FROM audit_records WHERE seq > ? ORDER BY seq",
                (seq,),
            ).fetchall()
        return [dict(row) for row in rows if key_events or row["action"] not in KEY_EVENTS]

    def audit_head(self) -> int:
        self.piguard.audit.flush()
        with _readonly(self.var_dir / "piguard.db") as db:
            return int(db.execute("SELECT coalesce(max(seq), 0) FROM audit_records").fetchone()[0])

    def close(self) -> None:
        for made in self._clients.values():
            made.close()


@contextmanager
def _readonly(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to one of the server's SQLite files, closed on exit."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        yield db
    finally:
        db.close()


def _count(db: sqlite3.Connection, table: str, where: str = "", *args: str) -> int:
    query = f"SELECT count(*) FROM {table} {where}"  # noqa: S608 - fixed table names
    return int(db.execute(query, args).fetchone()[0])


@contextmanager
def serve(app: ASGIApp) -> Iterator[str]:
    """Run `app` under uvicorn on 127.0.0.1 (an ephemeral port) in a thread; yield its base URL."""
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    with serve_config(config) as base_url:
        yield base_url


@contextmanager
def serve_config(config: uvicorn.Config) -> Iterator[str]:
    """Run a server of `config` on 127.0.0.1 (an ephemeral port, whatever its host and port) in a
    thread; yield its base URL."""
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so (else each
    # answer, written in two parts, waits ~40 ms for a delayed ACK).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the API server did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextmanager
def running_api(var_dir: Path, clock: Clock | None = None, **settings: object) -> Iterator[Api]:
    """A real server over an app built in `var_dir` (dev settings, SQLite, and `settings`),
    closed afterwards."""
    from piguard.web.app import create_app  # the web layer only where a server is wanted

    piguard = build(Settings(dev=True, var_dir=var_dir, **settings), clock=clock)  # type: ignore[arg-type]
    try:
        app = create_app(piguard)
        with serve(app) as base_url:
            running = Api(base_url, piguard, var_dir, app)
            try:
                yield running
            finally:
                running.close()
    finally:
        piguard.close()


@contextmanager
def write_locked(db_file: Path) -> Iterator[None]:
    """Another connection holds the database's write lock (`BEGIN IMMEDIATE`) meanwhile."""
    conn = sqlite3.connect(db_file, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()
