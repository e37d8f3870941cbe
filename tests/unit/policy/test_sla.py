"""The SLA clock of requests (P1, R7): Chinese working days from verification, capped.

Dates are checked against the State Council's arrangements: National Day 2024 (1–7 October off,
Sunday 29 September and Saturday 12 October worked), Spring Festival 2025 (28 January – 4 February
off, Sunday 26 January and Saturday 8 February worked).
"""

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from piguard.policy.model import Policy, Sla
from piguard.policy.sla import CHINA_TIME, deadline, is_overdue, is_working_day

SHANGHAI = ZoneInfo("Asia/Shanghai")
R7 = Sla(working_days=3, cap_days=30, clauses=("R7",))


def china(day: str, at: str = "10:00") -> datetime:
    """A moment given in Beijing time, as the aware UTC datetime the services hold."""
    return datetime.fromisoformat(f"{day}T{at}").replace(tzinfo=SHANGHAI).astimezone(UTC)


def end_of(day: str) -> datetime:
    """The end of a day in China (midnight before the next one), in UTC."""
    return china((date.fromisoformat(day) + timedelta(days=1)).isoformat(), "00:00")


@pytest.mark.parametrize("right", ["inquiry", "complaint"])
def test_p1_inquiries_are_due_three_working_days_after_verification(
    policy: Policy, right: str
) -> None:
    sla = policy.rights[right].sla
    assert "P1" in sla.clauses
    # Verified on Monday 2024-11-04: Tuesday, Wednesday and Thursday are the three days.
    assert deadline(china("2024-11-04"), sla) == end_of("2024-11-07")


@pytest.mark.parametrize("right", ["correct", "delete"])
def test_r7_rights_requests_skip_the_national_day_holiday(policy: Policy, right: str) -> None:
    sla = policy.rights[right].sla
    assert "R7" in sla.clauses
    # Verified Monday 30 September 2024: 1–7 October are off; 8, 9 and 10 October count.
    assert deadline(china("2024-09-30"), sla) == end_of("2024-10-10")


def test_p1_r7_the_spring_festival_holiday_does_not_count() -> None:
    # Verified Monday 27 January 2025: 28 January – 4 February are off.
    assert deadline(china("2025-01-27"), R7) == end_of("2025-02-07")


def test_p1_r7_a_make_up_working_saturday_counts() -> None:
    # Verified Thursday 6 February 2025: Friday 7, Saturday 8 (worked), Monday 10.
    assert deadline(china("2025-02-06"), R7) == end_of("2025-02-10")
    # Verified Thursday 10 October 2024: Friday 11, Saturday 12 (worked), Monday 14.
    assert deadline(china("2024-10-10"), R7) == end_of("2024-10-14")
    assert is_working_day(date(2024, 10, 12))
    assert not is_working_day(date(2024, 10, 13))


def test_p1_r7_the_day_of_verification_never_counts() -> None:
    # Sunday 29 September 2024 was a working day; verified on it, counting starts the next day.
    assert deadline(china("2024-09-29", "08:00"), R7) == end_of("2024-10-09")
    # Verified on a holiday or a weekend: the first working day after it is day one.
    assert deadline(china("2024-10-03"), R7) == end_of("2024-10-10")
    assert deadline(china("2024-11-09"), R7) == end_of("2024-11-13")


def test_p1_r7_the_calendar_day_cap_comes_first_when_it_is_earlier() -> None:
    short = Sla(working_days=3, cap_days=5, clauses=("R7",))
    # Verified 30 September 2024: the third working day is 10 October, the cap 5 October.
    assert deadline(china("2024-09-30"), short) == end_of("2024-10-05")
    # Outside a holiday the working days come first, and the cap changes nothing.
    assert deadline(china("2024-11-04"), short) == deadline(china("2024-11-04"), R7)
    long = Sla(working_days=20, cap_days=25, clauses=("P1",))
    assert deadline(china("2025-01-20"), long) == end_of("2025-02-14")


def test_p1_r7_days_are_counted_in_china_whatever_the_zone_of_the_time() -> None:
    # 15:59 UTC on 29 September 2024 is 23:59 that Sunday in Beijing (a working day, not
    # counted); a minute later it is Monday 30 September there, so the deadline moves a day.
    sunday = datetime(2024, 9, 29, 15, 59, tzinfo=UTC)
    monday = datetime(2024, 9, 29, 16, 0, tzinfo=UTC)
    assert deadline(sunday, R7) == end_of("2024-10-09")
    assert deadline(monday, R7) == end_of("2024-10-10")
    new_york = monday.astimezone(ZoneInfo("America/New_York"))
    assert deadline(new_york, R7) == deadline(monday, R7)
    due = deadline(monday, R7)
    assert due.tzinfo is UTC
    assert due == datetime(2024, 10, 10, 16, 0, tzinfo=UTC)


def test_p1_r7_overdue_from_the_deadline_on() -> None:
    verified = china("2024-09-30")
    due = deadline(verified, R7)
    assert not is_overdue(verified, verified, R7)
    assert not is_overdue(due - timedelta(microseconds=1), verified, R7)
    assert is_overdue(due, verified, R7)
    assert is_overdue(due.astimezone(timezone(timedelta(hours=-5))), verified, R7)


def test_p1_r7_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):  # naive on purpose
        deadline(datetime(2024, 9, 30, 10), R7)
    with pytest.raises(ValueError, match="aware"):
        is_overdue(datetime(2024, 10, 11), china("2024-09-30"), R7)


def test_p1_r7_a_year_without_an_official_calendar_counts_every_day() -> None:
    # The tables hold no arrangement for 2099: every day counts, so the clock runs early.
    assert deadline(china("2099-12-30"), R7) == end_of("2100-01-02")
    assert is_working_day(date(2099, 12, 31))


def test_p1_r7_china_time_is_shanghai_time_over_the_calendar_years() -> None:
    eight_hours = timedelta(hours=8)
    for year in range(2004, 2027):
        for month in (1, 7):  # winter and summer
            moment = datetime(year, month, 15, 12, tzinfo=UTC)
            assert moment.astimezone(SHANGHAI).utcoffset() == eight_hours
            assert moment.astimezone(CHINA_TIME).utcoffset() == eight_hours
