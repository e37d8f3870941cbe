"""Logs never print personal information (S2)."""

import logging

import pytest

from piguard.logs import REDACTED, RedactingFilter, redact


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
