"""The SLA clock of requests (P1, R7): Chinese working days from verification, capped in days.

A request verified at some moment is due at the end of the Nth Chinese working day after the day
of verification (official holidays are off, make-up working weekends are on: the State Council's
arrangement, as tabled by `chinese_calendar`), and never later than the end of the `cap_days`-th
calendar day after it. Days are days in China (UTC+8); times come in and go out aware, in UTC.

For a year the tables do not hold yet (the arrangement is published late in the year before),
every day counts as a working day: the clock may then run early, never late.

Pure: the caller supplies the times; nothing here reads the clock.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Final

import chinese_calendar

from piguard.policy.model import Sla

# China keeps UTC+8 all year (no daylight saving since 1991): a fixed offset, no tz database.
CHINA_TIME: Final = timezone(timedelta(hours=8), "Asia/Shanghai")


def deadline(verified_at: datetime, sla: Sla) -> datetime:
    """When a request verified at `verified_at` is due (the first moment it is overdue): the end
    of the `sla.working_days`-th Chinese working day after the day of verification, or the end of
    the `sla.cap_days`-th calendar day after it if that comes first."""
    verified_on = _china_day(verified_at)
    due = verified_on + timedelta(days=sla.cap_days)
    counted = 0
    for offset in range(1, sla.cap_days + 1):
        day = verified_on + timedelta(days=offset)
        if is_working_day(day):
            counted += 1
            if counted == sla.working_days:
                due = day
                break
    return datetime.combine(due + timedelta(days=1), time(), CHINA_TIME).astimezone(UTC)


def is_overdue(now: datetime, verified_at: datetime, sla: Sla) -> bool:
    """Whether a request verified at `verified_at` and still open at `now` is past its deadline."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    return now >= deadline(verified_at, sla)


def is_working_day(day: date) -> bool:
    """A working day in China: official holidays off, make-up working weekends on; any day of a
    year the tables do not hold counts as working (the conservative choice)."""
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:  # no arrangement tabled for that year
        return True


def _china_day(moment: datetime) -> date:
    if moment.tzinfo is None:
        raise ValueError("verification times must be aware datetimes")
    return moment.astimezone(CHINA_TIME).date()
