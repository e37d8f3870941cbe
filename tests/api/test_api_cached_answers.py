"""/v1/decide answers from what the serving process has cached (the caller's key, the subject's
snapshot) and commits its record only if those still hold, checked in the transaction of the
commit. These tests change the facts behind the server's back, from a second piguard on the same
database (another process, with caches of its own), and prove the very next answer sees it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from api_support import NAME, PHONE, Api, new_person, running_api, write_locked

from piguard.bootstrap import Piguard, build
from piguard.kernel.clock import FixedClock
from piguard.policy.decision import Actor
from piguard.settings import Settings
from piguard.web.schemas import ReadOut

AGENT = "customer_service_agent"
QUESTION = {"action": "read", "purpose": "customer_service", "categories": [PHONE, NAME]}
PERSONAL = {
    "action": "read",
    "purpose": "personalization",
    "categories": ["user.behavior.search_history"],
}


def _own(other: Piguard, subject: str) -> Actor:
    """The subject's own actor, as the other process authenticates a key it issued."""
    return other.api_keys.authenticate(other.api_keys.create("subject", "own", subject).token).actor


@contextmanager
def other_process(api: Api) -> Iterator[Piguard]:
    """A second piguard over the server's database: its own caches, as another process has."""
    other = build(Settings(dev=True, var_dir=api.var_dir), migrate=False)
    try:
        yield other
    finally:
        other.close()


def _decide(api: Api, token: str, body: dict[str, object]) -> httpx.Response:
    with api.raw() as raw:
        return raw.post("/v1/decide", json=body, headers={"Authorization": f"Bearer {token}"})


def _warm(api: Api, token: str, body: dict[str, object]) -> dict[str, object]:
    """Ask twice: the second answer comes from the server's caches."""
    first = _decide(api, token, body)
    second = _decide(api, token, body)
    assert first.status_code == second.status_code == 200, first.text
    assert first.json() == second.json()
    answer: dict[str, object] = second.json()
    return answer


def test_s2_a_key_revoked_by_another_process_is_refused_at_once(api: Api) -> None:
    subject = api.register(new_person())
    issued = api.piguard.api_keys.create(AGENT, "cached agent")
    _warm(api, issued.token, {**QUESTION, "subject_id": subject})
    with other_process(api) as other:
        assert other.api_keys.revoke(issued.key_id)
    head = api.audit_head()

    refused = _decide(api, issued.token, {**QUESTION, "subject_id": subject})

    assert refused.status_code == 401
    assert refused.json()["code"] == "unauthenticated"
    assert any(issued.key_id in r["actor"] for r in api.records_since(0))  # named, before
    assert [r for r in api.records_since(head) if issued.key_id in r["actor"]] == []


def test_s2_a_key_revoked_here_is_refused_at_once(api: Api) -> None:
    issued = api.piguard.api_keys.create(AGENT, "cached agent")
    _warm(api, issued.token, QUESTION)
    api.piguard.api_keys.revoke(issued.key_id)

    assert _decide(api, issued.token, QUESTION).status_code == 401


def test_s2_a_cached_key_id_with_another_secret_is_refused(api: Api) -> None:
    issued = api.piguard.api_keys.create(AGENT, "cached agent")
    _warm(api, issued.token, QUESTION)
    forged = issued.token[:-4] + ("AAAA" if not issued.token.endswith("AAAA") else "BBBB")

    assert _decide(api, forged, QUESTION).status_code == 401
    assert _decide(api, issued.token, QUESTION).status_code == 200


def test_r2_a_withdrawal_in_another_process_is_seen_by_the_next_answer(api: Api) -> None:
    subject = api.register(new_person())
    api.as_subject(subject).grant_consent(subject, "purpose:personalization")
    marketing = api.token("marketing_service")
    asked = {**PERSONAL, "subject_id": subject}
    assert _warm(api, marketing, asked)["effect"] == "allow"
    with other_process(api) as other:
        other.consents.withdraw(_own(other, subject), subject, "purpose:personalization")

    answer = _decide(api, marketing, asked)

    assert answer.status_code == 200
    assert answer.json()["effect"] == "deny"
    assert api.records_since(api.audit_head() - 1)[-1]["effect"] == "deny"


def test_r4_a_subject_erased_by_another_process_is_not_found_at_once(api: Api) -> None:
    subject = api.register(new_person())
    token = api.token(AGENT)
    _warm(api, token, {**QUESTION, "subject_id": subject})
    with other_process(api) as other:
        other.vault.erase_subject(_own(other, subject), subject)

    gone = _decide(api, token, {**QUESTION, "subject_id": subject})

    assert (gone.status_code, gone.json()["code"]) == (404, "not_found")


def test_s2_a_batch_with_one_subject_changed_elsewhere_is_answered_on_fresh_state(
    api: Api,
) -> None:
    stays, changes = api.register(new_person()), api.register(new_person())
    for subject in (stays, changes):
        api.as_subject(subject).grant_consent(subject, "purpose:personalization")
    marketing = api.token("marketing_service")
    batch = {"requests": [{**PERSONAL, "subject_id": s} for s in (stays, changes)]}
    with api.raw() as raw:
        post = lambda: raw.post(  # noqa: E731 - the same request, twice
            "/v1/decide/batch", json=batch, headers={"Authorization": f"Bearer {marketing}"}
        )
        assert [a["effect"] for a in post().json()["answers"]] == ["allow", "allow"]
        with other_process(api) as other:
            other.consents.withdraw(_own(other, changes), changes, "purpose:personalization")
        after = post()

    assert [a["effect"] for a in after.json()["answers"]] == ["allow", "deny"]


def test_s2_a_subject_key_cannot_reach_a_cached_subject_of_another(api: Api) -> None:
    mine, theirs = api.register(new_person()), api.register(new_person())
    own = api.piguard.api_keys.create("subject", "own", mine).token
    _warm(api, api.token(AGENT), {**QUESTION, "subject_id": theirs})  # theirs is cached now
    asked = {"action": "read", "purpose": "self_service", "categories": [PHONE]}
    _warm(api, own, {**asked, "subject_id": mine})
    head = api.audit_head()

    probe = _decide(api, own, {**asked, "subject_id": theirs})

    assert (probe.status_code, probe.json()["code"]) == (404, "not_found")
    details = [r["detail"] for r in api.records_since(head)]
    assert details
    assert all(d.startswith("not_bound") for d in details), details


def test_s2_a_decide_waits_for_a_locked_database_then_is_refused_with_a_retry_hint(
    api: Api,
) -> None:
    token = api.token(AGENT)
    _warm(api, token, QUESTION)

    with write_locked(api.var_dir / "piguard.db"):
        blocked = _decide(api, token, QUESTION)

    assert blocked.status_code == 503
    assert blocked.headers["Retry-After"] == "1"
    assert blocked.json()["code"] == "audit_unavailable"
    assert _decide(api, token, QUESTION).status_code == 200


@pytest.fixture
def clocked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, FixedClock]]:
    clock = FixedClock(datetime.now(UTC))
    with running_api(tmp_path_factory.mktemp("clocked"), clock=clock) as running:
        yield running, clock


def test_s2_a_cached_key_stops_working_when_it_expires(clocked: tuple[Api, FixedClock]) -> None:
    api, clock = clocked
    issued = api.piguard.api_keys.create(AGENT, "short", days=1)
    _warm(api, issued.token, QUESTION)

    clock.advance(timedelta(days=1))

    assert _decide(api, issued.token, QUESTION).status_code == 401


def _read(api: Api, token: str, subject: str, purpose: str = "customer_service") -> httpx.Response:
    with api.raw() as raw:
        return raw.get(
            f"/v1/subjects/{subject}",
            params={"purpose": purpose},
            headers={"Authorization": f"Bearer {token}"},
        )


def test_s2_a_read_with_a_key_revoked_elsewhere_releases_nothing(api: Api) -> None:
    subject = api.register(new_person())
    issued = api.piguard.api_keys.create(AGENT, "cached reader")
    for _ in range(2):
        assert _read(api, issued.token, subject).status_code == 200
    with other_process(api) as other:
        other.api_keys.revoke(issued.key_id)
    head = api.audit_head()

    denied = _read(api, issued.token, subject, purpose="personalization")  # the cached key
    refused = _read(api, issued.token, subject)

    assert (denied.status_code, refused.status_code) == (401, 401)
    assert "values" not in refused.json()
    # Nothing recorded under the revoked key (the 401s are counted anonymously, per minute).
    assert any(issued.key_id in r["actor"] for r in api.records_since(0))  # named, before
    assert [r for r in api.records_since(head) if issued.key_id in r["actor"]] == []


def test_r4_a_read_of_a_subject_erased_elsewhere_is_not_found(api: Api) -> None:
    subject = api.register(new_person())
    token = api.token(AGENT)
    assert _read(api, token, subject).status_code == 200
    with other_process(api) as other:
        other.vault.erase_subject(_own(other, subject), subject)

    assert _read(api, token, subject).status_code == 404


def test_s2_a_subject_key_reads_only_its_own_subject_on_the_cached_path(api: Api) -> None:
    mine, theirs = api.register(new_person()), api.register(new_person())
    own = api.piguard.api_keys.create("subject", "own", mine).token
    assert _read(api, own, mine, purpose="self_service").status_code == 200
    assert _read(api, api.token(AGENT), theirs).status_code == 200

    probe = _read(api, own, theirs, purpose="self_service")

    assert (probe.status_code, probe.json()["code"]) == (404, "not_found")
    assert "values" not in probe.json()


def test_s2_a_denied_read_on_the_cached_path_is_refused_and_recorded(api: Api) -> None:
    subject = api.register(new_person())
    token = api.token(AGENT)
    assert _read(api, token, subject).status_code == 200
    head = api.audit_head()

    refused = _read(api, token, subject, purpose="personalization")

    assert refused.status_code == 403
    assert refused.json()["code"] == "denied"
    records = [r for r in api.records_since(head) if r["action"] == "read"]
    assert [(r["purpose"], r["effect"]) for r in records] == [("personalization", "deny")]


def test_s2_an_overloaded_server_refuses_at_once_with_a_retry_hint(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Two requests in the app at most: while the database is locked they wait (up to the
    audit's bound), and the rest are refused at once, never queued into timeouts."""
    with running_api(tmp_path_factory.mktemp("overload"), max_in_flight=2) as api:
        token = api.token(AGENT)
        _warm(api, token, QUESTION)
        with write_locked(api.var_dir / "piguard.db"), ThreadPoolExecutor(10) as pool:
            started = time.monotonic()
            answers = list(pool.map(lambda _: _decide(api, token, QUESTION), range(10)))
            took = time.monotonic() - started
        after = _decide(api, token, QUESTION)

    codes = sorted(a.json()["code"] for a in answers)
    assert {a.status_code for a in answers} == {503}
    assert codes.count("overloaded") >= 8
    assert set(codes) <= {"overloaded", "audit_unavailable"}
    assert all(a.headers["Retry-After"] == "1" for a in answers)
    overloaded = next(a.json() for a in answers if a.json()["code"] == "overloaded")
    assert overloaded["message"]["zh"]
    assert overloaded["message"]["en"]
    assert took < 5  # the admitted two waited at most the audit's 2 s bound
    assert after.status_code == 200


def test_s2_a_bad_key_is_refused_before_its_request_is_looked_at(api: Api) -> None:
    forged = "pgk_key_0190a1b2c3d4e5f6a7b8c9d0e1f2a3b4.not-a-secret"
    bad = {"action": "read", "purpose": "telepathy", "categories": ["no.such.category"]}
    with api.raw() as raw:
        auth = {"Authorization": f"Bearer {forged}"}
        answers = [
            raw.post("/v1/decide", json=bad, headers=auth),
            raw.post("/v1/decide/batch", json={"requests": [bad]}, headers=auth),
            raw.get("/v1/subjects/sub_x", params={"purpose": "telepathy"}, headers=auth),
        ]

    assert [(a.status_code, a.json()["code"]) for a in answers] == [(401, "unauthenticated")] * 3


def test_s2_a_subject_key_revoked_elsewhere_probing_another_subject_gets_401(api: Api) -> None:
    mine, theirs = api.register(new_person()), api.register(new_person())
    own = api.piguard.api_keys.create("subject", "own", mine)
    asked = {"action": "read", "purpose": "self_service", "categories": [PHONE]}
    _warm(api, own.token, {**asked, "subject_id": mine})
    with other_process(api) as other:
        other.api_keys.revoke(own.key_id)
    head = api.audit_head()

    probe = _decide(api, own.token, {**asked, "subject_id": theirs})
    read = _read(api, own.token, theirs, purpose="self_service")

    assert (probe.status_code, read.status_code) == (401, 401)
    assert [r for r in api.records_since(head) if r["detail"].startswith("not_bound")] == []


def test_s2_a_read_answer_is_the_read_model_byte_for_byte_on_both_paths(api: Api) -> None:
    """The read answer is rendered without building `ReadOut` (`views.read_json`): it is the
    model's own JSON, masked, withheld and clear values and Chinese text included, from the
    database (first) and from the cache (second) alike."""
    subject = api.register(new_person())
    for token, purpose in (
        (api.token(AGENT), "customer_service"),
        (api.token("account_service"), "counterparty_view"),
    ):
        answers = [_read(api, token, subject, purpose=purpose) for _ in range(2)]
        for answer in answers:
            assert answer.status_code == 200, answer.text
            model = ReadOut.model_validate_json(answer.content)
            assert answer.content == model.model_dump_json().encode()
            assert model.values
        assert answers[0].content == answers[1].content
