"""Logs never print personal information or an API key (S2), through the real server.

The server is the one `piguard serve` runs: `cli.serve.server_config`, uvicorn with piguard's log
configuration and the redacting record factory. The tests read what its real handlers write (the
access log's, uvicorn's and the root's stream handlers, their streams pointed at buffers), so a
line is checked as formatted, after every filter and formatter.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from api_support import luhn_card, mobile, resident_id, serve_config

from piguard.bootstrap import Piguard, build
from piguard.cli.serve import server_config
from piguard.logs import REDACTED
from piguard.settings import Settings

PHONE = mobile(4321)
ID_NUMBER = resident_id(4321)
CARD = luhn_card(4321)
EMAIL = "someone.4321@example.com"
IDENTIFIERS = (PHONE, ID_NUMBER, CARD, EMAIL, PHONE[3:])  # the phone's last 8 digits too
_LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "piguard")


@dataclass
class Served:
    base_url: str
    piguard: Piguard
    streams: dict[str, io.StringIO]

    def text(self, handler: str | None = None) -> str:
        """What the named handler (or every handler) has written so far."""
        for one in logging.getLogger().handlers + _uvicorn_handlers():
            one.flush()
        chosen = [handler] if handler else list(self.streams)
        return "".join(self.streams[name].getvalue() for name in chosen)


def _uvicorn_handlers() -> list[logging.Handler]:
    return [h for name in _LOGGERS[1:] for h in logging.getLogger(name).handlers]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    saved = _save_logging()
    piguard = build(Settings(dev=True, var_dir=Path(tmp_path_factory.mktemp("logs"))))
    try:
        config = server_config(piguard, "127.0.0.1", 0)  # configures logging, as `serve` does
        streams: dict[str, io.StringIO] = {}
        for handler in {*logging.getLogger().handlers, *_uvicorn_handlers()}:
            assert isinstance(handler, logging.StreamHandler)
            assert handler.name is not None
            streams[handler.name] = io.StringIO()
            handler.setStream(streams[handler.name])
        assert {"access", "default", "piguard"} <= set(streams)
        with serve_config(config) as base_url:
            yield Served(base_url, piguard, streams)
    finally:
        piguard.close()
        _restore_logging(saved)


def _save_logging() -> tuple[object, dict[str, tuple[list[logging.Handler], int, bool]]]:
    loggers = {name: logging.getLogger(name) for name in _LOGGERS}
    return logging.getLogRecordFactory(), {
        name: (list(lg.handlers), lg.level, lg.propagate) for name, lg in loggers.items()
    }


def _restore_logging(
    saved: tuple[object, dict[str, tuple[list[logging.Handler], int, bool]]],
) -> None:
    factory, loggers = saved
    logging.setLogRecordFactory(factory)  # type: ignore[arg-type]
    for name, (handlers, level, propagate) in loggers.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


def _access_lines(served: Served, marker: str) -> list[str]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [line for line in served.text("access").splitlines() if marker in line]
        if lines:
            return lines
        time.sleep(0.02)
    raise AssertionError(f"no access log line with {marker!r}")


def _assert_clean(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text
        assert quote(secret, safe="") not in text


def test_s2_the_access_log_line_of_a_phone_in_the_query_holds_no_phone(served: Served) -> None:
    with httpx.Client(base_url=served.base_url, timeout=10) as client:
        answer = client.get(
            "/v1/subjects/sub_access1",
            params={"purpose": "customer_service", "phone": PHONE, "e": EMAIL, "m": f"+86{PHONE}"},
        )

    assert answer.status_code in (401, 404, 422)
    lines = _access_lines(served, "/v1/subjects/sub_access1")
    assert len(lines) == 1
    line = lines[0]
    assert f'"GET /v1/subjects/sub_access1?purpose=customer_service&phone={REDACTED}' in line
    assert str(answer.status_code) in line  # the rest of the line is kept
    _assert_clean(line, *IDENTIFIERS)


@pytest.mark.parametrize("secret", [PHONE, f"+86 {PHONE}", ID_NUMBER, CARD, EMAIL])
def test_s2_identifiers_in_the_path_never_reach_the_access_log(served: Served, secret: str) -> None:
    marker = f"/v1/subjects/{quote(secret, safe='')}"
    with httpx.Client(base_url=served.base_url, timeout=10) as client:
        client.get(f"/v1/subjects/{quote(secret, safe='')}", params={"probe": "path"})

    line = _access_lines(served, "probe=path")[-1]
    assert REDACTED in line
    assert marker not in line
    _assert_clean(line, secret, secret.replace(" ", ""))


def test_s2_an_api_key_never_appears_in_any_log_line(served: Served) -> None:
    token = served.piguard.api_keys.create("customer_service_agent", "log test").token
    secret = token.partition(".")[2]
    with httpx.Client(base_url=served.base_url, timeout=10) as client:
        client.get(
            "/v1/subjects/sub_tokens",
            params={"purpose": "customer_service"},
            headers={"Authorization": f"Bearer {token}"},
        )
        client.get("/v1/subjects/sub_tokens", params={"access_token": token, "probe": "token"})
        client.get(f"/v1/subjects/{token}", params={"probe": "token"})
        client.get("/v1/policy", headers={"Authorization": f"Bearer {token}x"})
    logging.getLogger("piguard.web").warning("refused Authorization: Bearer %s", token)
    logging.getLogger("piguard.web").error("key %s for %s", token, PHONE)

    _access_lines(served, "probe=token")
    everything = served.text()
    assert "refused Authorization" in everything  # the piguard line is there, redacted
    assert token not in everything
    assert secret not in everything
    _assert_clean(everything, PHONE)


def test_s2_a_handler_added_later_and_an_exception_text_are_redacted(served: Served) -> None:
    later = io.StringIO()
    handler = logging.StreamHandler(later)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    logger = logging.getLogger("somelibrary.client")
    logger.addHandler(handler)
    try:
        logger.warning("lookup %s failed", {"phone": PHONE, "email": EMAIL})
        try:
            raise ValueError(f"no account for {ID_NUMBER} / 电话{PHONE}")
        except ValueError:
            logger.exception("unexpected")
        logger.info("card %s%s", CARD[:10], CARD[10:])  # a value formed across two arguments
    finally:
        logger.removeHandler(handler)

    written = later.getvalue()
    assert "somelibrary.client lookup" in written
    assert "ValueError: no account for" in written  # the traceback is kept, its values are not
    assert written.count(REDACTED) >= 5
    _assert_clean(written, *IDENTIFIERS)
