"""Logging that never prints personal information or credentials, whoever logs and wherever to.

Services log ids, keys and codes only; redaction is the second line of defence, replacing anything
shaped like a phone number (with or without +86), resident ID number, bank card, email or API key
before it is written, and nothing else of the line. It holds in two places:

- `configure_logging()` installs a log record factory, so every record made in the process (by
  piguard, uvicorn or a library, for a handler that exists now or is added later) is redacted
  when it is created, and puts `RedactingFilter` on the handlers that already exist;
- `uvicorn_log_config()` is the dictConfig uvicorn is started with: its handlers carry the filter.

A record keeps its shape: each string argument is redacted in place (uvicorn's access formatter
unpacks its arguments), percent-encoded text (a query string) is decoded first, and an exception's
text or a stack is redacted once formatted.
"""

from __future__ import annotations

import logging
import re
import traceback
from typing import Any, Final
from urllib.parse import unquote_plus

# Boundaries are ASCII letters and digits only: "电话13912345678" or "key_13912345678" is redacted.
_B: Final = r"(?<![A-Za-z0-9])"
_E: Final = r"(?![A-Za-z0-9])"
_PATTERNS: Final = (
    re.compile(r"(?i)\bbearer\s+\S+"),
    re.compile(r"pgk_[A-Za-z0-9_.\-]+"),
    re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+"),
    re.compile(_B + r"\d{17}[\dXx]" + _E),
    re.compile(r"(?<![A-Za-z0-9+])(\+?86[- ]?)?1[3-9]\d[- ]?\d{4}[- ]?\d{4}" + _E),
    re.compile(_B + r"\d(?:[ -]?\d){11,18}" + _E),
)
REDACTED: Final = "[redacted]"
_DONE: Final = "_piguard_redacted"
_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s %(message)s"


def redact(text: str) -> str:
    """`text` with every personal-looking value and credential replaced by `[redacted]`."""
    for pattern in _PATTERNS:
        text = pattern.sub(REDACTED, text)
    if "%" in text or "+" in text:  # a URL or query string: look at it decoded too
        decoded = unquote_plus(text)
        if decoded != text:
            cleaned = redact(decoded)
            if cleaned != decoded:
                return cleaned
    return text


def _redact_arg(arg: object) -> object:
    if isinstance(arg, str):
        return redact(arg)
    if isinstance(arg, bytes):
        return redact(arg.decode("utf-8", "replace"))
    if isinstance(arg, int | float | bool) or arg is None:
        return arg
    text = str(arg)  # anything else is formatted by %s: redact what it would print
    cleaned = redact(text)
    return arg if cleaned == text else cleaned


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Redact `record` in place (once): its message, arguments, exception text and stack."""
    if getattr(record, _DONE, False):
        return record
    if isinstance(record.msg, str):
        record.msg = redact(record.msg)
    elif record.msg is not None:
        record.msg = redact(str(record.msg))
    args: Any = record.args
    if isinstance(args, tuple):
        record.args = tuple(_redact_arg(a) for a in args)
    elif isinstance(args, dict):
        record.args = {k: _redact_arg(v) for k, v in args.items()}
    for extra in ("color_message",):  # uvicorn's coloured variant of the format string
        value = record.__dict__.get(extra)
        if isinstance(value, str):
            record.__dict__[extra] = redact(value)
    try:
        message = record.getMessage()
    except (TypeError, ValueError):  # a broken format: keep what can be shown, redacted
        record.msg, record.args = redact(f"{record.msg} {record.args}"), ()
    else:
        cleaned = redact(message)
        if cleaned != message and not _keeps_args(record):  # a value formed across arguments
            record.msg, record.args = cleaned, ()
    if record.exc_info and not record.exc_text:
        record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    setattr(record, _DONE, True)
    return record


def _keeps_args(record: logging.LogRecord) -> bool:
    """uvicorn's access formatter unpacks the arguments: they keep their shape."""
    return record.name == "uvicorn.access"


class RedactingFilter(logging.Filter):
    """Redacts each record a handler or logger sees; never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def install_record_factory() -> None:
    """Every record made from now on, by any logger, is redacted as it is created (idempotent)."""
    current = logging.getLogRecordFactory()
    if getattr(current, _DONE, False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return redact_record(current(*args, **kwargs))

    setattr(factory, _DONE, True)
    logging.setLogRecordFactory(factory)


def configure_logging(level: str = "INFO") -> None:
    """The record factory, a root handler if none, and the filter on every existing handler."""
    install_record_factory()
    logging.basicConfig(level=level, format=_FORMAT)
    loggers: list[logging.Logger | logging.PlaceHolder] = [logging.getLogger()]
    loggers += list(logging.Logger.manager.loggerDict.values())
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())


def uvicorn_log_config(level: str = "INFO", *, stream: str = "ext://sys.stderr") -> dict[str, Any]:
    """uvicorn's own logging configuration, each handler carrying the redaction filter, and a root
    handler for piguard's loggers; pass it as `uvicorn.run(log_config=...)`."""
    redact_filter = {"()": f"{__name__}.RedactingFilter"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": redact_filter},
        "formatters": {
            "default": {
                "()": "uvicorn.logging.DefaultFormatter",
                "fmt": "%(levelprefix)s %(message)s",
                "use_colors": None,
            },
            "access": {
                "()": "uvicorn.logging.AccessFormatter",
                "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
            },
            "plain": {"format": _FORMAT},
        },
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["redact"],
                "stream": stream,
            },
            "access": {
                "class": "logging.StreamHandler",
                "formatter": "access",
                "filters": ["redact"],
                "stream": "ext://sys.stdout",
            },
            "piguard": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "filters": ["redact"],
                "stream": stream,
            },
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": ["access"], "level": level, "propagate": False},
        },
        "root": {"handlers": ["piguard"], "level": level},
    }
