"""Schemathesis hooks: the formats of `piguard.web.value_schemas.FORMATS`, taught to its generator.

No pattern can say a check digit or a bound that moves with the clock, so the schema names a
`format` there, and schemathesis (run with SCHEMATHESIS_HOOKS=contract_formats) draws its values
from these strategies: every value they draw is one the format allows (the contract tests hold
them to the vault's validators). Dates keep a day's margin from today, whatever the time zone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta, timezone

import schemathesis
from hypothesis import strategies as st

from piguard.web.value_schemas import FORMATS

_ID_WEIGHTS = [pow(2, 17 - i, 11) for i in range(17)]
# Region codes (GB/T 2260) in force since before 1900 as python-stdnum knows them: a number is
# valid only with a region code in force at its birth date. Beijing Dongcheng and Chaoyang,
# Shanghai Huangpu and Xuhui.
_REGIONS = ("110101", "110105", "310101", "310104")
MINOR_YEARS = 17
"""A minor's age in these strategies: under 17, a minor under any policy's threshold of 18."""


def _today() -> date:
    return datetime.now(UTC).date()


def _days(first: date, last: date) -> st.SearchStrategy[date]:
    return st.dates(min_value=first, max_value=last)


def _resident_id(born: st.SearchStrategy[date]) -> st.SearchStrategy[str]:
    def build(region: str, day: date, sequence: int) -> str:
        body = f"{region}{day:%Y%m%d}{sequence:03d}"
        check = (12 - sum(int(d) * w for d, w in zip(body, _ID_WEIGHTS, strict=True)) % 11) % 11
        return body + ("X" if check == 10 else str(check))

    return st.builds(build, st.sampled_from(_REGIONS), born, st.integers(0, 999))


def _luhn(body: str) -> str:
    total = 0
    for i, digit in enumerate(reversed(body)):
        d = int(digit) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


def _bank_card() -> st.SearchStrategy[str]:
    bodies = st.integers(11, 18).flatmap(lambda n: st.text("0123456789", min_size=n, max_size=n))
    return bodies.map(_luhn)


def _past_time() -> st.SearchStrategy[str]:
    latest = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=1)
    moments = st.datetimes(min_value=datetime(2000, 1, 2), max_value=latest)
    offsets = st.integers(-12 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))

    def stamp(utc: datetime, zone: timezone) -> str:
        return utc.replace(tzinfo=UTC).astimezone(zone).isoformat(timespec="seconds")

    return st.builds(stamp, moments, offsets)


def strategies(today: date) -> Mapping[str, st.SearchStrategy[str]]:
    """Format → values of it, as of `today` (with a day's margin at either end)."""
    yesterday = today - timedelta(days=1)
    minor_since = date(today.year - MINOR_YEARS, today.month, 1) + timedelta(days=40)
    expiry = _days(date(1984, 1, 1), date(today.year + 50, 12, 31)).map(date.isoformat)
    return {
        "cn-resident-id": _resident_id(_days(date(1900, 1, 1), yesterday)),
        "cn-resident-id-minor": _resident_id(_days(minor_since, yesterday)),
        "bank-card": _bank_card(),
        "birth-date": _days(date(1900, 1, 1), yesterday).map(date.isoformat),
        "document-expiry": st.one_of(st.just("长期"), expiry),
        "past-date-time": _past_time(),
    }


def register(today: Callable[[], date] = _today) -> None:
    found = strategies(today())
    assert set(found) == set(FORMATS), "every format of the schema has a strategy"
    for name, strategy in found.items():
        schemathesis.openapi.format(name, strategy)


register()
