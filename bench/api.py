"""API benchmark: piguard over HTTP against a bare FastAPI endpoint served the same way.

Each server runs in its own process on loopback, started here, warmed, then driven by `ab`
(Debian's apache2-utils: a compiled load generator, so the client is not the bottleneck) at 16
concurrent clients with keep-alive, in the same run:
- the baseline: a bare FastAPI `async def` endpoint, served by uvicorn exactly as `piguard serve`
  serves piguard (the same options and log configuration: access log through the redaction
  filter), 1 and 2 processes;
- `POST /v1/decide` (a customer service agent asking about one subject: an authenticated caller,
  the subject's state read, the decision audited);
- the read path, `GET /v1/subjects/{id}?purpose=customer_service` as a customer service agent:
  decryption, masking, and an audit record committed before the answer leaves;
- `POST /v1/decide/batch`: the same question 1,000 times in one body (`BATCH`), fewer requests
  (`Plan.requests // BATCH_SHARE`); decisions/s = requests/s x 1,000;
- 1 and 2 processes (`piguard serve --workers N`) on SQLite and on PostgreSQL (a fresh schema on
  the server of PIGUARD_BENCH_POSTGRES_URL, dropped afterwards).

Figures are medians over repetitions (the machine is shared). `errors` counts every request that
failed or answered other than 2xx. Lines of detail, then one JSON line.
Run: `.venv/bin/python bench/api.py [--quick | --smoke]`; `--smoke` (the tests) times nothing
worth reading, it only checks that every request succeeds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.error import URLError
from urllib.parse import quote

import uvicorn
from fastapi import FastAPI
from sqlalchemy import create_engine, text

from piguard.bootstrap import build
from piguard.cli.serve import uvicorn_options
from piguard.logs import install_record_factory
from piguard.population import seed_population
from piguard.settings import Settings

POSTGRES_URL = os.environ.get(
    "PIGUARD_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
CLIENTS = 16
AGENT = "customer_service_agent"
PURPOSE = "customer_service"
CATEGORIES = ("user.contact.phone_number", "user.name")
PIGUARD = [sys.executable, "-m", "piguard.cli.main"]
BATCH = 1000  # requests in one POST /v1/decide/batch
BATCH_SHARE = 50  # a batch request per this many single ones: each carries 1,000 decisions


@dataclass(frozen=True)
class Plan:
    """How much to run: requests per measurement, measurements per figure, warm-up requests."""

    requests: int
    repeats: int
    warm: int
    people: int


PLANS = {
    "full": Plan(requests=6000, repeats=5, warm=1000, people=200),
    "quick": Plan(requests=1500, repeats=3, warm=300, people=50),
    "smoke": Plan(requests=32, repeats=1, warm=16, people=3),
}


@dataclass(frozen=True)
class Run:
    """One `ab` run: requests per second, 99th percentile latency, requests that went wrong."""

    per_s: float
    p99_ms: float
    errors: int


def minimal_app() -> FastAPI:
    """The baseline: FastAPI with one `async def` endpoint and nothing else."""
    app = FastAPI()

    @app.get("/minimal")
    async def minimal() -> dict[str, str]:
        return {"status": "ok"}

    return app


# -- servers ----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _server(command: list[str], env: dict[str, str], ready: str, log: Path) -> Iterator[str]:
    """Start a server process; yield its base URL once `ready` answers; stop it (SIGTERM)."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with log.open("ab") as out:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            [*command, "--port", str(port)], env=env, stdout=out, stderr=out
        )
    try:
        _wait_ready(base + ready, proc)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server stopped with status {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - loopback http
                return
        except (URLError, ConnectionError, OSError):
            time.sleep(0.1)
    raise RuntimeError(f"the server did not answer {url}")


def serve_minimal(port: int, workers: int) -> None:
    """Serve `minimal_app` as `piguard serve` serves piguard (run in a process of its own)."""
    install_record_factory()
    uvicorn.run(
        f"{Path(__file__).stem}:minimal_app",
        factory=True,
        workers=workers,
        **uvicorn_options("127.0.0.1", port),
    )


# -- load -------------------------------------------------------------------------------------


def ab(url: str, requests: int, *, token: str | None = None, body: Path | None = None) -> Run:
    """`ab -k -c 16` against `url`: a POST of the JSON file `body` when given, else a GET."""
    command = ["ab", "-q", "-k", "-c", str(CLIENTS), "-n", str(requests)]
    if token is not None:
        command += ["-H", f"Authorization: Bearer {token}"]
    if body is not None:
        command += ["-p", str(body), "-T", "application/json"]
    done = subprocess.run(  # noqa: S603 - a fixed program and our arguments
        [*command, url], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"ab failed: {done.stderr.strip()}")
    return Run(_per_s(done.stdout), _p99(done.stdout), _errors(done.stdout))


def _per_s(report: str) -> float:
    found = re.search(r"Requests per second:\s+([\d.]+)", report)
    if found is None:
        raise RuntimeError("ab printed no rate")
    return float(found.group(1))


def _errors(report: str) -> int:
    """Non-2xx answers and failed connections, receives and exceptions. ab's `Length` failures
    are not errors: an answer's length varies with its ids and times."""
    count = 0
    non_2xx = re.search(r"Non-2xx responses:\s+(\d+)", report)
    if non_2xx is not None:
        count += int(non_2xx.group(1))
    for kind in ("Connect", "Receive", "Exceptions"):
        found = re.search(rf"{kind}: (\d+)", report)
        count += int(found.group(1)) if found is not None else 0
    return count


def _p99(report: str) -> float:
    """From ab's table of percentiles (whole milliseconds; its `-e` file is unreliable)."""
    found = re.search(r"^\s*99%\s+(\d+)", report, re.MULTILINE)
    if found is None:
        raise RuntimeError("ab printed no 99th percentile")
    return float(found.group(1))


def measure(url: str, plan: Plan, **request: Any) -> list[Run]:
    """Warm, then `plan.repeats` runs."""
    ab(url, plan.warm, **request)
    return [ab(url, plan.requests, **request) for _ in range(plan.repeats)]


# -- piguard ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    """A database with people and a customer service agent's key; the environment to serve it."""

    env: dict[str, str]
    token: str
    subject: str


def prepare(var_dir: Path, database_url: str | None, plan: Plan) -> Setup:
    """Migrate, seed synthetic people and mint a key, in this process, then close."""
    overrides = {"dev": True, "var_dir": var_dir, "database_url": database_url}
    piguard = build(Settings(**overrides))  # type: ignore[arg-type]
    try:
        subjects = seed_population(piguard, plan.people, seed=2017)
        token = piguard.api_keys.create(AGENT, "bench agent").token
    finally:
        piguard.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIGUARD_")}
    env |= {"PIGUARD_DEV": "1", "PIGUARD_VAR_DIR": str(var_dir)}
    if database_url is not None:
        env["PIGUARD_DATABASE_URL"] = database_url
    return Setup(env, token, subjects[len(subjects) // 2])


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A fresh schema on the PostgreSQL server, as a URL selecting it; dropped afterwards."""
    schema = f"bench_{secrets.token_hex(6)}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        separator = "&" if "?" in POSTGRES_URL else "?"
        yield f"{POSTGRES_URL}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def measure_piguard(setup: Setup, workers: int, plan: Plan, log: Path) -> dict[str, list[Run]]:
    """decide and read on `piguard serve --workers N`."""
    question = {
        "action": "read",
        "purpose": PURPOSE,
        "categories": list(CATEGORIES),
        "subject_id": setup.subject,
    }
    decide = log.parent / "decide.json"
    decide.write_text(json.dumps(question))
    batch = log.parent / "batch.json"
    batch.write_text(json.dumps({"requests": [question] * BATCH}))
    batch_plan = replace(
        plan,
        requests=max(plan.requests // BATCH_SHARE, CLIENTS),
        warm=max(plan.warm // BATCH_SHARE, CLIENTS),
    )
    command = [*PIGUARD, "serve", "--workers", str(workers)]
    with _server(command, setup.env, "/healthz", log) as base:
        read = f"{base}/v1/subjects/{setup.subject}?purpose={PURPOSE}"
        return {
            "decide": measure(f"{base}/v1/decide", plan, token=setup.token, body=decide),
            "read": measure(read, plan, token=setup.token),
            "batch": measure(f"{base}/v1/decide/batch", batch_plan, token=setup.token, body=batch),
        }


def measure_minimal(workers: int, plan: Plan, log: Path) -> list[Run]:
    command = [sys.executable, __file__, "--serve-minimal", "--workers", str(workers)]
    with _server(command, dict(os.environ), "/minimal", log) as base:
        return measure(f"{base}/minimal", plan)


# -- report -----------------------------------------------------------------------------------


def _median(runs: list[Run]) -> float:
    return statistics.median(r.per_s for r in runs)


def _p99_median(runs: list[Run]) -> float:
    return statistics.median(r.p99_ms for r in runs)


def run(plan: Plan) -> dict[str, Any]:
    if shutil.which("ab") is None:
        raise SystemExit("ab is missing: apt-get install -y apache2-utils")
    results: dict[str, list[Run]] = {}
    with tempfile.TemporaryDirectory(prefix="piguard-apibench-") as tmp:
        root = Path(tmp)
        log = root / "servers.log"
        for workers in (1, 2):
            results[f"minimal/{workers}"] = measure_minimal(workers, plan, log)
        sqlite = prepare(root / "sqlite", None, plan)
        with postgres_schema() as url:
            postgres = prepare(root / "postgres", url, plan)
            for workers in (1, 2):
                for name, setup in (("sqlite", sqlite), ("pg", postgres)):
                    found = measure_piguard(setup, workers, plan, log)
                    for path, runs in found.items():
                        results[f"{path}/{name}/{workers}"] = runs
    for key, runs in results.items():
        print(
            f"{key:<16} {_median(runs):>9.0f} req/s  p99 {_p99_median(runs):7.1f} ms  "
            f"errors {sum(r.errors for r in runs)}"
        )
    minimal = _median(results["minimal/1"])
    decide = _median(results["decide/sqlite/1"])
    read = _median(results["read/sqlite/1"])
    pg_ratio = _median(results["decide/pg/1"]) / decide
    print(f"decide on PostgreSQL vs SQLite, 1 process: {pg_ratio:.2f}")
    sqlite_two = _median(results["decide/sqlite/2"]) / decide
    print(f"decide, 2 processes vs 1 on SQLite: {sqlite_two:.2f}")
    return {
        "minimal_per_s": round(minimal),
        "decide_per_s": round(decide),
        "decide_vs_minimal": round(decide / minimal, 3),
        "read_per_s": round(read),
        "read_vs_minimal": round(read / minimal, 3),
        "decide_p99_ms": round(_p99_median(results["decide/sqlite/1"]), 1),
        "batch_decisions_per_s": round(_median(results["batch/sqlite/1"]) * BATCH),
        "batch_p99_ms": round(_p99_median(results["batch/sqlite/1"]), 1),
        "two_procs_vs_one_pg": round(
            _median(results["decide/pg/2"]) / _median(results["decide/pg/1"]), 3
        ),
        "errors": sum(r.errors for runs in results.values() for r in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer requests and repetitions")
    size.add_argument("--smoke", action="store_true", help="a few hundred requests: no timing")
    parser.add_argument("--serve-minimal", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_minimal:
        serve_minimal(args.port, args.workers)
        return
    plan = PLANS["smoke" if args.smoke else "quick" if args.quick else "full"]
    print(json.dumps(run(plan)))


if __name__ == "__main__":
    main()
