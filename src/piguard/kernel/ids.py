"""Identifiers: random, URL-safe, sortable by creation where it helps."""

from __future__ import annotations

import secrets
import time


def new_id(prefix: str) -> str:
    """A time-ordered random id such as `sub_01J...`: 48 bits of milliseconds, 80 random bits."""
    millis = time.time_ns() // 1_000_000
    return f"{prefix}_{millis:012x}{secrets.token_hex(10)}"
