"""Retention due dates the vault writes count calendar years and months, not days (S1)."""

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from piguard.bootstrap import Piguard, build
from piguard.kernel.clock import FixedClock
from piguard.policy.decision import Actor
from piguard.policy.model import ActorKind
from piguard.population import people
from piguard.settings import Settings
from piguard.vault.tables import ValueRow

ACCOUNT = Actor(ActorKind.SERVICE, "account_service", principal="test")
PAYMENT = Actor(ActorKind.SERVICE, "payment_service", principal="test")
# transfer keeps payee data 5 years from collection (ret_txn)
TRANSFER = {"user.payee.account": "payee@example.com", "user.payee.name": "*四"}


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2019, 3, 15, 9, 30, tzinfo=UTC))


@pytest.fixture
def app(tmp_path: Path, database_url: str, clock: FixedClock) -> Iterator[Piguard]:
    settings = Settings(
        dev=True,
        var_dir=tmp_path / "var",
        database_url=None if database_url.startswith("sqlite") else database_url,
    )
    built = build(settings, clock)
    yield built
    built.close()


def _due(app: Piguard, value_ids: list[str]) -> set[datetime | None]:
    with app.db.connect() as conn:
        rows = conn.execute(
            select(ValueRow.retention_due).where(ValueRow.id.in_(value_ids))
        ).scalars()
        return set(rows)


def _collect_transfer(app: Piguard) -> list[str]:
    subject = app.vault.register(ACCOUNT, next(iter(people(1, seed=3))).registration())
    return app.vault.collect(PAYMENT, subject, "transfer", TRANSFER)


def test_s1_five_year_retention_lands_on_the_same_calendar_date(app: Piguard) -> None:
    # 1,825 days from 2019-03-15 would be 2024-03-13: two leap days fall in between
    assert _due(app, _collect_transfer(app)) == {datetime(2024, 3, 15, 9, 30, tzinfo=UTC)}


def test_s1_five_years_from_a_leap_day_end_on_february_28(app: Piguard, clock: FixedClock) -> None:
    clock.advance(datetime(2020, 2, 29, 23, 59, tzinfo=UTC) - clock.now())
    assert _due(app, _collect_transfer(app)) == {datetime(2025, 2, 28, 23, 59, tzinfo=UTC)}


def test_s1_registration_data_gets_no_due_date_until_the_account_closes(app: Piguard) -> None:
    """kyc_aml counts its 5 years from account closure, which has not happened."""
    subject = app.vault.register(ACCOUNT, next(iter(people(1, seed=4))).registration())
    with app.db.connect() as conn:
        dues = conn.execute(
            select(ValueRow.retention_due).where(ValueRow.subject_id == subject)
        ).scalars()
        assert set(dues) == {None}
