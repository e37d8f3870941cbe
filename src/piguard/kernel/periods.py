"""Calendar periods: "5 years" is five calendar years, not 1,825 days (S1).

A `Period` is a count of one calendar unit. `add_period` adds it to an aware datetime the way a
calendar does: the same day of the month, clamped to the month's last day when that day does not
exist (Feb 29 + 1 year → Feb 28; Jan 31 + 1 month → Feb 28 or 29), at the same wall-clock time.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class PeriodUnit(StrEnum):
    """The calendar units a retention period may be written in."""

    YEARS = "years"
    MONTHS = "months"
    DAYS = "days"


@dataclass(frozen=True, slots=True)
class Period:
    """A positive count of exactly one calendar unit, such as 5 years or 6 months."""

    unit: PeriodUnit
    count: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"a period is a positive count, not {self.count}")


def add_period(moment: datetime, period: Period) -> datetime:
    """`moment` plus `period` on the calendar; `moment` must be aware, and the result keeps its
    time of day and time zone. Raises ValueError past the year 9999."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("add_period needs an aware datetime")
    if period.unit is PeriodUnit.DAYS:
        try:
            return moment + timedelta(days=period.count)
        except OverflowError:
            raise ValueError("the period ends after the year 9999") from None
    months = period.count * 12 if period.unit is PeriodUnit.YEARS else period.count
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    if year > 9999:
        raise ValueError("the period ends after the year 9999")
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)
