"""`piguard witness serve` as an operator runs it: a real process on a real port (S2).

The first start writes a new token 0600 and says where; a token file others could read, or a
folder others could write in, stops it with one line and exit 2."""

from __future__ import annotations

import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx

import piguard
from audit_support import checkpoint_line as line

SOURCES = str(Path(piguard.__file__).resolve().parents[1])


def _command(folder: Path, token_file: Path, port: int) -> list[str]:
    return [
        sys.executable, "-m", "piguard.cli.main", "witness", "serve", "--dir", str(folder),
        "--token-file", str(token_file), "--port", str(port),
    ]  # fmt: skip


def _env() -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "PYTHONPATH": SOURCES, "PYTHONIOENCODING": "utf-8"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_s2_witness_serve_makes_a_token_and_witnesses(tmp_path: Path) -> None:
    folder, token_file, port = tmp_path / "w", tmp_path / "token", _free_port()
    proc = subprocess.Popen(  # noqa: S603 - our own CLI with fixed arguments
        _command(folder, token_file, port), env=_env(), stdout=subprocess.PIPE, text=True
    )
    try:
        url = f"http://127.0.0.1:{port}/v1/logs/demo/checkpoints"
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, "the witness exited"
                assert time.monotonic() < deadline, "the witness did not start"
                time.sleep(0.1)
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        assert len(token) >= 32
        auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        assert httpx.post(url, headers=auth, content=line(1)).status_code == 201
        assert httpx.get(url, headers=auth).content == line(1)
        assert httpx.get(url).status_code == 401
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert str(token_file) in out.replace("\n", "")
    assert token not in out  # the token is in its file, never on the screen


def test_s2_witness_serve_refuses_a_token_file_others_can_read(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("z" * 40)
    token_file.chmod(0o644)
    done = subprocess.run(  # noqa: S603 - our own CLI with fixed arguments
        _command(tmp_path / "w", token_file, _free_port()),
        env=_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "0600" in done.stderr
    assert "Traceback" not in done.stderr
