"""The consent ledger and settings on real databases (C5, C7, R2, U1, V2, C2.3, C4)."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from piguard.bootstrap import Piguard, build, notice_hash
from piguard.consent.service import Provenance
from piguard.kernel.errors import Denied, InvalidInput
from piguard.policy import scopes
from piguard.policy.decision import Actor
from piguard.policy.model import ActorKind, ConsentType
from piguard.population import people
from piguard.settings import Settings

ACCOUNT = Actor(ActorKind.SERVICE, "account_service", principal="test")
MARKETING = Actor(ActorKind.SERVICE, "marketing_service", principal="test")
SEARCH = "user.behavior.search_history"
ID_NUMBER = "user.government_id.national_identification_number"


@pytest.fixture
def app(tmp_path: Path, database_url: str) -> Iterator[Piguard]:
    url = None if database_url.startswith("sqlite") else database_url
    built = build(Settings(dev=True, var_dir=tmp_path / "var", database_url=url))
    yield built
    built.close()


@pytest.fixture
def subject(app: Piguard) -> str:
    return app.vault.register(ACCOUNT, next(people(1, seed=11)).registration())


def test_c5_r2_grant_allows_withdrawal_stops_at_once(app: Piguard, subject: str) -> None:
    scope = scopes.purpose_scope("personalization")
    app.consents.grant(ACCOUNT, subject, scope, how=Provenance("app", "checkbox", "screen:v3"))
    app.vault.collect(MARKETING, subject, "personalization", {SEARCH: "跑步鞋"})
    assert (
        app.vault.read(MARKETING, subject, "personalization", (SEARCH,)).values[0].value.reveal()
        == "跑步鞋"
    )
    app.consents.withdraw(ACCOUNT, subject, scope, Provenance("app", "checkbox", "screen:v3"))
    with pytest.raises(Denied) as refused:
        app.vault.read(MARKETING, subject, "personalization", (SEARCH,))
    assert refused.value.reasons == ("C5:consent_required:purpose:personalization",)


def test_v2_each_event_names_policy_version_and_notice_hash(app: Piguard, subject: str) -> None:
    event = app.consents.grant(ACCOUNT, subject, scopes.purpose_scope("pay_later"))
    assert event.policy_version == app.policy.key
    assert event.notice_hash == notice_hash(app.policy)
    events, current = app.consents.history(ACCOUNT, subject)
    assert [e.id for e in events] == [event.id]
    assert current == {scopes.purpose_scope("pay_later"): ConsentType.REGULAR}


def test_c7_ledger_is_append_only_and_folds_in_order(app: Piguard, subject: str) -> None:
    scope = scopes.purpose_scope("ant_forest")
    app.consents.grant(ACCOUNT, subject, scope)
    app.consents.withdraw(ACCOUNT, subject, scope)
    app.consents.grant(ACCOUNT, subject, scope, ConsentType.SEPARATE)
    events, current = app.consents.history(ACCOUNT, subject)
    assert [e.kind for e in events] == ["grant", "withdraw", "grant"]
    assert current[scope] is ConsentType.SEPARATE
    with app.db.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM consent_events")).scalar_one() == 3


def test_r2_kantara_receipt_names_pseudonym_only(app: Piguard, subject: str) -> None:
    event = app.consents.grant(ACCOUNT, subject, scopes.purpose_scope("personalization"))
    receipt = app.consents.receipt(ACCOUNT, subject, event.id, "en")
    assert receipt["version"] == "KI-CR-v1.1.0"
    assert receipt["consentReceiptID"] == event.id
    assert receipt["piiPrincipalId"] == subject
    services = receipt["services"]
    assert isinstance(services, list)
    assert services[0]["purposes"][0]["purposeCategory"] == ["personalization"]


def test_u1_settings_change_all_or_nothing(app: Piguard, subject: str) -> None:
    with pytest.raises(InvalidInput) as bad:
        app.consents.change_settings(ACCOUNT, subject, {"marketing_sms": False, "nonsense": True})
    assert bad.value.field == "changes.<key:1>"  # the unknown key by its position, not echoed
    assert "nonsense" not in bad.value.message.en + bad.value.message.zh
    assert app.consents.settings(ACCOUNT, subject)["marketing_sms"] is True
    state = app.consents.change_settings(ACCOUNT, subject, {"marketing_sms": False}, "sms")
    assert state["marketing_sms"] is False


@pytest.mark.parametrize(
    ("scope", "field"),
    [("purpose:mind_reading", "scope"), ("bogus", "scope"), ("share:x", "scope")],
)
def test_u2_consent_scope_must_name_a_declared_purpose(
    app: Piguard, subject: str, scope: str, field: str
) -> None:
    with pytest.raises(InvalidInput) as bad:
        app.consents.grant(ACCOUNT, subject, scope)
    assert bad.value.field == field


def test_s2_roles_without_a_grant_cannot_record_consents(app: Piguard, subject: str) -> None:
    with pytest.raises(Denied):
        app.consents.grant(MARKETING, subject, scopes.purpose_scope("personalization"))
