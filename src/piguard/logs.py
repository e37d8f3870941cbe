"""Logging that never prints personal information: a redaction filter on every handler.

Services log ids, keys and codes only; this filter is the second line of defence, replacing
anything shaped like a phone number, resident ID number, bank card or email before it is written.
"""

from __future__ import annotations

import logging
import re

_PATTERNS = (
    re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+"),
    re.compile(r"(?<![\w])\d{17}[\dXx](?![\w])"),
    re.compile(r"(?<![\w])(\+?86[- ]?)?1[3-9]\d[- ]?\d{4}[- ]?\d{4}(?![\w])"),
    re.compile(r"(?<![\w])\d(?:[ -]?\d){11,18}(?![\w])"),
)
REDACTED = "[redacted]"


def redact(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites each record's message with personal-looking values replaced."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def configure_logging(level: str = "INFO") -> None:
    """Root and uvicorn loggers write through the redaction filter."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())
