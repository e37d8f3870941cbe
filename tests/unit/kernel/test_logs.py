"""Logs never print personal information (S2)."""

import logging

import pytest

from piguard.logs import REDACTED, RedactingFilter, redact, uvicorn_log_config


@pytest.mark.parametrize(
    "secret",
    [
        "13812345678",
        "+86 138 1234 5678",
        "11010519491231002X",
        "6222021234567890123",
        "alice@example.com",
    ],
)
def test_s2_redaction_removes_personal_values(secret: str) -> None:
    out = redact(f"lookup failed for {secret} in request")
    assert secret not in out
    assert REDACTED in out


def test_s2_ids_and_codes_survive_redaction() -> None:
    text = "subject sub_0190abcd1234ffee read purpose=kyc_aml clauses=C1.1,S2 seq=1024"
    assert redact(text) == text


def test_s2_filter_rewrites_records(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("piguard.test")
    caplog.handler.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO):
        logger.info("phone %s", "13912345678")
    assert "13912345678" not in caplog.text
    assert REDACTED in caplog.text


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("GET /v1/x?phone=%2B8613912345678 HTTP/1.1", "GET /v1/x?phone="),
        ("GET /v1/x?e=alice%40example.com HTTP/1.1", "GET /v1/x?e="),
        ("联系电话13912345678。", "联系电话"),
        ("key_13912345678 seq=1", " seq=1"),
        ("Authorization: Bearer pgk_key_0190ab.s3cr3t-Value_x", "Authorization: "),
        ("token=pgk_key_0190ab.s3cr3t-Value_x&x=1", "&x=1"),
    ],
)
def test_s2_redaction_sees_encoded_adjacent_and_credential_values(text: str, kept: str) -> None:
    out = redact(text)
    assert REDACTED in out
    assert kept in out
    for secret in ("13912345678", "alice", "s3cr3t"):
        assert secret not in out


def test_s2_an_access_record_keeps_its_argument_shape() -> None:
    from uvicorn.logging import AccessFormatter

    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/v1/s/x?phone=13912345678", "1.1", 404),
        None,
    )
    assert RedactingFilter().filter(record)
    line = AccessFormatter('%(client_addr)s "%(request_line)s" %(status_code)s').format(record)
    assert line.startswith('127.0.0.1:5000 "GET /v1/s/x?phone=[redacted] HTTP/1.1" 404')


def test_s2_every_handler_of_the_uvicorn_log_config_redacts() -> None:
    config = uvicorn_log_config()
    assert set(config["handlers"]) == {"default", "access", "piguard"}
    for handler in config["handlers"].values():
        assert handler["filters"] == ["redact"]
    assert config["filters"]["redact"]["()"] == "piguard.logs.RedactingFilter"
    assert config["root"]["handlers"] == ["piguard"]
