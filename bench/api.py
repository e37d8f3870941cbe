"""API benchmark: piguard over HTTP against a bare FastAPI endpoint served the same way.

Each server runs in its own process on loopback, started here, warmed, then driven by `wrk`
(Debian's wrk: a compiled load generator, so the client is not the bottleneck) for a fixed time
with 16 concurrent clients, each on one HTTP/1.1 keep-alive connection, as a service with a
connection pool calls: `ab -k` spoke HTTP/1.0, whose keep-alive uvicorn does not answer, so every
ab request paid for a new TCP connection (baseline and piguard alike). In the same run:
- the baseline: a bare FastAPI `async def` endpoint, served by uvicorn exactly as `piguard serve`
  serves piguard (the same options and log configuration: access log through the redaction
  filter), 1 and 2 processes;
- `POST /v1/decide` (a customer service agent asking about one subject: an authenticated caller,
  the subject's state read, the decision audited);
- the read path, `GET /v1/subjects/{id}?purpose=customer_service` as a customer service agent:
  decryption, masking, and an audit record committed before the answer leaves;
- `POST /v1/decide/batch`: the same question 1,000 times in one body (`BATCH`), for the same time;
  decisions/s = requests/s x 1,000;
- 1 and 2 processes (`piguard serve --workers N`) on SQLite and on PostgreSQL (a fresh schema on
  the server of PIGUARD_BENCH_POSTGRES_URL, dropped afterwards).

Before each run the request is sent until it answers 200 (`Load.settle`: a 503 left by the run
before is waited out); wrk then runs a Lua script (written to the run's temp dir; the token comes
from the environment) whose `done` hook prints wrk's figures as JSON. Figures are medians over
repetitions (the machine is shared). `errors` counts every request that answered 4xx or 5xx,
timed out (over `TIMEOUT_S`) or failed to connect, read or write. Lines of detail, then one JSON
line.
Run: `.venv/bin/python bench/api.py [--quick | --smoke]`; `--smoke` (the tests) times nothing
worth reading, it only checks that every request succeeds.
"""

from __future__ import annotations

import argparse
import json
import os
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError
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


@dataclass(frozen=True)
class Plan:
    """How much to run: seconds per measurement, measurements per figure, seconds of warm-up."""

    seconds: int
    repeats: int
    warm_seconds: int
    people: int


PLANS = {
    "full": Plan(seconds=5, repeats=5, warm_seconds=2, people=200),
    "quick": Plan(seconds=3, repeats=3, warm_seconds=1, people=50),
    "smoke": Plan(seconds=1, repeats=1, warm_seconds=0, people=3),
}


@dataclass(frozen=True)
class Run:
    """One `wrk` run: requests per second, 99th percentile latency, requests that went wrong."""

    per_s: float
    p99_ms: float
    errors: int
    cores_busy: float  # of the machine's cores, busy on anything (server, database, wrk)


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

# wrk runs this Lua per request kind: the request is built once from `wrk.method`, `wrk.headers`
# and `wrk.body`; `done` prints the run's figures as one JSON line after wrk's own report. The
# token comes from the environment, so it is never written to a file.
SCRIPT = """\
wrk.method = "{method}"
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\n{marker}{{"requests":%d,"duration_us":%d,"p99_us":%d,'
      .. '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\\n',
    summary.requests, summary.duration, latency:percentile(99.0),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""
MARKER = "piguard-bench "
TOKEN_VARIABLE = "PIGUARD_BENCH_TOKEN"  # noqa: S105 - the name of a variable, not a token
TIMEOUT_S = 10  # a slower answer counts as a timeout (an error); wrk's default is 2 s
SETTLE_S = 60  # how long a server may take to work through what the last run left


@dataclass(frozen=True)
class Load:
    """One kind of request: its URL, its caller's token, its JSON body (a POST) if any."""

    url: str
    token: str | None = field(default=None, repr=False)
    body: Path | None = None

    def script(self, directory: Path) -> Path:
        """The Lua script that makes wrk send this request (in `directory`, the run's temp dir)."""
        headers = []
        if self.token is not None:
            headers.append(
                f'wrk.headers["Authorization"] = "Bearer " .. os.getenv("{TOKEN_VARIABLE}")'
            )
        if self.body is not None:
            headers += [
                'wrk.headers["Content-Type"] = "application/json"',
                f'local body = assert(io.open([==[{self.body}]==], "rb"))',
                'wrk.body = body:read("*a")',
                "body:close()",
            ]
        method = "GET" if self.body is None else "POST"
        path = directory / f"{method.lower()}-{secrets.token_hex(4)}.lua"
        path.write_text(SCRIPT.format(method=method, headers="\n".join(headers), marker=MARKER))
        return path

    def settle(self) -> None:
        """Send the request until it answers 200 (wrk counts only 4xx and 5xx as errors).

        503 (the audit queue still full) is waited out, up to `SETTLE_S`: wrk drops the requests
        in flight when its time is up, and the server still decides and audits them, so a run
        would otherwise start on a backlog left by the one before. The writer commits in order,
        so this answer means that backlog is committed: each run starts on an idle server, as
        with ab, which waited for every answer.
        """
        headers = {} if self.token is None else {"Authorization": f"Bearer {self.token}"}
        data = None
        if self.body is not None:
            headers["Content-Type"] = "application/json"
            data = self.body.read_bytes()
        request = urllib.request.Request(self.url, data=data, headers=headers)  # noqa: S310
        deadline = time.monotonic() + SETTLE_S
        while True:
            try:
                with urllib.request.urlopen(request, timeout=SETTLE_S) as answer:  # noqa: S310
                    if answer.status != 200:
                        raise RuntimeError(f"{self.url} answered {answer.status}")
                    return
            except HTTPError as error:
                if error.code != 503 or time.monotonic() > deadline:
                    raise RuntimeError(f"{self.url} answered {error.code}") from error
            time.sleep(0.2)


def wrk(load: Load, script: Path, seconds: int) -> Run:
    """`wrk -t1 -c16` for `seconds` over HTTP/1.1 keep-alive connections."""
    command = ["wrk", "-t1", f"-c{CLIENTS}", f"-d{seconds}s", f"--timeout={TIMEOUT_S}s"]
    env = dict(os.environ)
    if load.token is not None:
        env[TOKEN_VARIABLE] = load.token
    before = _cpu_times()
    done = subprocess.run(  # noqa: S603 - a fixed program and our arguments
        [*command, "--latency", "-s", str(script), load.url],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARKER)]
    if done.returncode != 0 or len(lines) != 1:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    figures = json.loads(lines[0].removeprefix(MARKER))
    if figures["requests"] == 0:
        raise RuntimeError(f"wrk completed no request to {load.url} in {seconds} s")
    errors = sum(figures[kind] for kind in ("connect", "read", "write", "status", "timeout"))
    return Run(
        per_s=figures["requests"] / (figures["duration_us"] / 1e6),
        p99_ms=figures["p99_us"] / 1000,
        errors=errors,
        cores_busy=_busy(before, _cpu_times()),
    )


def _cpu_times() -> tuple[int, int]:
    """(all, idle) jiffies of the machine since boot, from /proc/stat (Linux); (0, 0) without."""
    try:
        fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0, 0
    return sum(fields), fields[3] + fields[4]  # idle and iowait


def _busy(before: tuple[int, int], after: tuple[int, int]) -> float:
    """How many cores were busy, on average, between two `_cpu_times` (what limits a run)."""
    total, idle = after[0] - before[0], after[1] - before[1]
    return (total - idle) / total * (os.cpu_count() or 1) if total > 0 else float("nan")


def measure(load: Load, plan: Plan, directory: Path) -> list[Run]:
    """Warm, then `plan.repeats` runs of `plan.seconds`, each on a settled server."""
    script = load.script(directory)
    if plan.warm_seconds > 0:
        load.settle()
        wrk(load, script, plan.warm_seconds)
    runs = []
    for _ in range(plan.repeats):
        load.settle()
        runs.append(wrk(load, script, plan.seconds))
    return runs


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
    """decide, read and batch on `piguard serve --workers N`."""
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
    command = [*PIGUARD, "serve", "--workers", str(workers)]
    with _server(command, setup.env, "/healthz", log) as base:
        read = f"{base}/v1/subjects/{setup.subject}?purpose={PURPOSE}"
        loads = {
            "decide": Load(f"{base}/v1/decide", setup.token, decide),
            "read": Load(read, setup.token),
            "batch": Load(f"{base}/v1/decide/batch", setup.token, batch),
        }
        return {name: measure(load, plan, log.parent) for name, load in loads.items()}


def measure_minimal(workers: int, plan: Plan, log: Path) -> list[Run]:
    command = [sys.executable, __file__, "--serve-minimal", "--workers", str(workers)]
    with _server(command, dict(os.environ), "/minimal", log) as base:
        return measure(Load(f"{base}/minimal"), plan, log.parent)


# -- report -----------------------------------------------------------------------------------


def _median(runs: list[Run]) -> float:
    return statistics.median(r.per_s for r in runs)


def _p99_median(runs: list[Run]) -> float:
    return statistics.median(r.p99_ms for r in runs)


def _busy_median(runs: list[Run]) -> float:
    return statistics.median(r.cores_busy for r in runs)


def run(plan: Plan) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install -y wrk")
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
    cores = os.cpu_count() or 1
    for key, runs in results.items():
        print(
            f"{key:<16} {_median(runs):>9.0f} req/s  p99 {_p99_median(runs):7.1f} ms  "
            f"errors {sum(r.errors for r in runs)}  cores busy {_busy_median(runs):.2f} of {cores}"
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
        "decide_pg_vs_sqlite": round(pg_ratio, 3),
        "two_procs_vs_one_pg": round(
            _median(results["decide/pg/2"]) / _median(results["decide/pg/1"]), 3
        ),
        "two_procs_vs_one_sqlite": round(sqlite_two, 3),
        "cores_busy_two_procs_pg": round(_busy_median(results["decide/pg/2"]), 2),
        "errors": sum(r.errors for runs in results.values() for r in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="shorter runs, fewer repetitions")
    size.add_argument("--smoke", action="store_true", help="1 s a figure: no timing")
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
