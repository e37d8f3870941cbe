"""Calendar periods: years and months on the calendar, not as counts of days (S1)."""

import calendar
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from piguard.kernel.periods import Period, PeriodUnit, add_period

SHANGHAI = ZoneInfo("Asia/Shanghai")
YEARS, MONTHS, DAYS = PeriodUnit.YEARS, PeriodUnit.MONTHS, PeriodUnit.DAYS


@pytest.mark.parametrize(
    ("start", "period", "end"),
    [
        ((2020, 2, 29), Period(YEARS, 1), (2021, 2, 28)),
        ((2020, 2, 29), Period(YEARS, 4), (2024, 2, 29)),
        ((2019, 3, 15), Period(YEARS, 5), (2024, 3, 15)),
        ((2024, 1, 31), Period(MONTHS, 1), (2024, 2, 29)),
        ((2023, 1, 31), Period(MONTHS, 1), (2023, 2, 28)),
        ((2023, 8, 31), Period(MONTHS, 6), (2024, 2, 29)),
        ((2023, 12, 15), Period(MONTHS, 1), (2024, 1, 15)),
        ((2023, 11, 30), Period(MONTHS, 14), (2025, 1, 30)),
        ((2024, 2, 28), Period(DAYS, 30), (2024, 3, 29)),
    ],
)
def test_s1_periods_add_on_the_calendar(
    start: tuple[int, int, int], period: Period, end: tuple[int, int, int]
) -> None:
    moment = datetime(*start, 8, 15, tzinfo=SHANGHAI)
    assert add_period(moment, period) == datetime(*end, 8, 15, tzinfo=SHANGHAI)


def test_s1_a_period_needs_an_aware_datetime_and_a_positive_count() -> None:
    with pytest.raises(ValueError, match="aware"):
        add_period(datetime(2024, 1, 1), Period(DAYS, 1))
    with pytest.raises(ValueError, match="positive"):
        Period(YEARS, 0)
    with pytest.raises(ValueError, match="9999"):
        add_period(datetime(9999, 6, 1, tzinfo=UTC), Period(MONTHS, 7))
    with pytest.raises(ValueError, match="9999"):
        add_period(datetime(9999, 12, 31, tzinfo=UTC), Period(DAYS, 1))


moments = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2900, 12, 31), timezones=st.just(UTC)
)


@given(moments, st.integers(1, 1200))
def test_s1_months_keep_the_day_unless_the_month_is_shorter(moment: datetime, n: int) -> None:
    end = add_period(moment, Period(MONTHS, n))
    assert (end.year * 12 + end.month) - (moment.year * 12 + moment.month) == n
    assert end.day == min(moment.day, calendar.monthrange(end.year, end.month)[1])
    assert (end.time(), end.tzinfo) == (moment.time(), moment.tzinfo)


@given(moments, st.integers(1, 100))
def test_s1_a_year_is_twelve_months(moment: datetime, n: int) -> None:
    assert add_period(moment, Period(YEARS, n)) == add_period(moment, Period(MONTHS, 12 * n))


@given(moments, st.integers(1, 36500))
def test_s1_days_are_whole_days(moment: datetime, n: int) -> None:
    assert add_period(moment, Period(DAYS, n)) == moment + timedelta(days=n)


@given(moments, st.integers(1, 600))
def test_s1_a_longer_period_never_ends_sooner(moment: datetime, n: int) -> None:
    assert add_period(moment, Period(MONTHS, n)) <= add_period(moment, Period(MONTHS, n + 1))
    assert add_period(moment, Period(MONTHS, n)) > moment
