"""S2 over HTTP: every authenticated route of the app against every kind of bad key, and every role
of the policy against every route, expected from the same oracle as the engine matrix.

Routes are enumerated from the app itself: a route added without an entry in `PROBES` fails
`test_s2_every_route_has_a_probe`. For each role, a route answers its success status exactly where
the policy grants the role the route's action for the probed purpose (the role's first granted
purpose for that action, in policy order, else the self-service purpose), and 403 otherwise;
grants that need a case reference or a legal hold count as refused, since no data route carries
either (only `POST /v1/decide` and its batch take a case reference), and so do writes under an
identifier's change purpose except through `PUT /identifiers`, the one route that carries the
verification's reference (R1). Two routes refuse differently by design: a lookup the caller may
not make is 404 like a missing account (C2.3), and `/v1/decide` (and its batch) answers 200 with
the effect.

The guardian role is never issued as a key (M1): piguard, not a key, makes an adult the guardian of
a ward linked to them. Its routes (the ward routes) are exercised with the own key of the world's
subject, an adult linked to the ward it registered; every other role is a row of the matrix.
Values written are valid for their category's format (`api_support.valid_value`).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import pytest
from api_support import PHONE, Api, new_person, valid_value
from starlette.routing import Route
from stdnum.cn import ric

from authz.authz_oracle import CASE, EVIDENCE, grant_for, needs_evidence, writable
from piguard.policies import bundled_policy_path
from piguard.policy import scopes
from piguard.policy.language import load_policy
from piguard.policy.model import Action, ActorKind, Policy
from piguard.web.app import create_app

PUBLIC = {("GET", "/healthz"), ("GET", "/v1/policy"), ("GET", "/docs"), ("GET", "/openapi.json")}
ID_NUMBER = "user.government_id.national_identification_number"
REGISTERED = sorted(new_person().values)
SUBJECT_ROUTE = "/v1/subjects/{subject_id}"


@dataclass
class World:
    """One adult subject who consented to every purpose, a ward of theirs, a consent event."""

    api: Api
    policy: Policy
    subject: str
    phone: str
    minor: str
    event: str
    http: httpx.Client
    spare_key: str = ""  # the id of a key the DELETE /v1/keys probe revokes (again and again)
    keys: dict[tuple[str, str], str] = field(default_factory=dict)

    def key(self, role: str, subject: str | None = None) -> str:
        """A key for `role`; subject-kind roles get one bound to `subject` (default: ours)."""
        bound = subject or self.subject
        kind = self.policy.roles[role].kind
        found = self.keys.get((role, bound if kind is ActorKind.SUBJECT else ""))
        if found is None:
            issued = self.api.piguard.api_keys.create(
                role, "matrix", bound if kind is ActorKind.SUBJECT else None
            )
            found = issued.token
            self.keys[(role, bound if kind is ActorKind.SUBJECT else "")] = found
        return found

    def send(self, token: str | None, method: str, url: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": token} if token is not None else {}
        return self.http.request(method, url, headers=headers, **kw)


Build = Callable[[World, str, str], tuple[str, dict[str, Any]]]


@dataclass(frozen=True)
class Probe:
    """How to call one route as a role: its action, the purpose (fixed, or None: the role's own),
    the request, and the statuses of success and refusal."""

    action: Action | None
    purpose: str | None
    build: Build
    ok: int
    refused: int = 403
    other_subject: int = 404  # a subject key of someone else (404 on subject-bound routes)


def _minor_id() -> str:
    """A fresh resident ID number of someone born on 2015-06-01 (a minor, M1)."""
    first17 = f"11010120150601{secrets.randbelow(1000):03d}"
    return first17 + ric.calc_check_digit(first17 + "?")  # stdnum ignores the last character


def _value(policy: Policy, category: str) -> str:
    return valid_value(policy, category, secrets.randbelow(10**9))


def _decide_body(w: World, role: str, purpose: str) -> dict[str, Any]:
    """A question about the world's subject: reading what the role's grant covers."""
    return {
        "action": "read",
        "purpose": purpose,
        "categories": list(_grant_cats(w, role, Action.READ, purpose)),
        "subject_id": w.subject,
        "case_reference": CASE,
    }


def _grant_cats(w: World, role: str, action: Action, purpose: str) -> tuple[str, ...]:
    grant = grant_for(w.policy, role, action, purpose)
    cats = grant.categories if grant is not None else w.policy.purposes[purpose].categories
    if action in (Action.COLLECT, Action.UPDATE):
        return writable(w.policy, purpose, cats) or tuple(sorted(cats))
    return tuple(sorted(cats))


def _values(w: World, role: str, action: Action, purpose: str) -> dict[str, str]:
    return {c: _value(w.policy, c) for c in _grant_cats(w, role, action, purpose)}


def _subject(w: World) -> str:
    return f"/v1/subjects/{w.subject}"


SPORTS = {"scope": "purpose:sports"}
PUSH = {"scope": "purpose:marketing_push"}


def _choice(action: Action, suffix: str, ok: int, body: dict[str, Any] | None = None) -> Probe:
    """A probe of a route that records or shows the subject's choices (the consent purpose)."""

    def build(w: World, role: str, purpose: str) -> tuple[str, dict[str, Any]]:
        url = _subject(w) + suffix.format(event=w.event, minor=w.minor)
        return url, ({"json": body} if body is not None else {})

    return Probe(action, "consent_management", build, ok)


PROBES: dict[tuple[str, str], Probe] = {
    ("POST", "/v1/subjects"): Probe(
        Action.COLLECT,
        "kyc_aml",
        lambda w, r, p: ("/v1/subjects", {"json": {"values": new_person().values}}),
        201,
        other_subject=403,
    ),
    ("GET", SUBJECT_ROUTE): Probe(
        Action.READ,
        None,
        lambda w, r, p: (
            _subject(w),
            {"params": {"purpose": p, "categories": ",".join(_grant_cats(w, r, Action.READ, p))}},
        ),
        200,
    ),
    ("PATCH", SUBJECT_ROUTE): Probe(
        Action.UPDATE,
        None,
        lambda w, r, p: (
            _subject(w),
            {"json": {"purpose": p, "values": _values(w, r, Action.UPDATE, p)}},
        ),
        200,
    ),
    ("DELETE", SUBJECT_ROUTE): Probe(
        Action.ERASE_SUBJECT,
        None,
        lambda w, r, p: (_subject(w), {"params": {"purpose": p}}),
        204,
    ),
    ("POST", SUBJECT_ROUTE + "/values"): Probe(
        Action.COLLECT,
        None,
        lambda w, r, p: (
            f"{_subject(w)}/values",
            {"json": {"purpose": p, "values": _values(w, r, Action.COLLECT, p)}},
        ),
        201,
    ),
    ("DELETE", SUBJECT_ROUTE + "/values"): Probe(
        Action.ERASE,
        None,
        lambda w, r, p: (
            f"{_subject(w)}/values",
            {"params": {"purpose": p, "categories": ",".join(_grant_cats(w, r, Action.ERASE, p))}},
        ),
        200,
    ),
    ("PUT", SUBJECT_ROUTE + "/identifiers"): Probe(
        Action.UPDATE,
        "identifier_change",
        lambda w, r, p: (
            f"{_subject(w)}/identifiers",
            {"json": {"values": {PHONE: _value(w.policy, PHONE)}, "evidence": EVIDENCE}},
        ),
        200,
    ),
    ("POST", SUBJECT_ROUTE + "/consents"): _choice(Action.UPDATE, "/consents", 201, SPORTS),
    ("GET", SUBJECT_ROUTE + "/consents"): _choice(Action.READ, "/consents", 200),
    ("POST", SUBJECT_ROUTE + "/consents/withdraw"): _choice(
        Action.UPDATE, "/consents/withdraw", 201, PUSH
    ),
    ("GET", SUBJECT_ROUTE + "/consents/{event_id}/receipt"): _choice(
        Action.READ, "/consents/{event}/receipt", 200
    ),
    ("GET", SUBJECT_ROUTE + "/settings"): _choice(Action.READ, "/settings", 200),
    ("PATCH", SUBJECT_ROUTE + "/settings"): _choice(
        Action.UPDATE, "/settings", 200, {"changes": {"marketing_sms": True}}
    ),
    ("POST", SUBJECT_ROUTE + "/wards"): Probe(
        Action.COLLECT,
        "kyc_aml",
        lambda w, r, p: (
            f"{_subject(w)}/wards",
            {
                "json": {
                    "values": new_person().values | {ID_NUMBER: _minor_id()},
                    "relation": "parent",
                    "evidence": "hukou:1",
                }
            },
        ),
        201,
    ),
    ("POST", SUBJECT_ROUTE + "/wards/{minor_id}/consents"): _choice(
        Action.UPDATE, "/wards/{minor}/consents", 201, SPORTS
    ),
    ("POST", SUBJECT_ROUTE + "/wards/{minor_id}/consents/withdraw"): _choice(
        Action.UPDATE, "/wards/{minor}/consents/withdraw", 201, PUSH
    ),
    ("POST", "/v1/lookup"): Probe(
        Action.READ,
        "account_lookup",
        lambda w, r, p: ("/v1/lookup", {"json": {"category": PHONE, "value": w.phone}}),
        200,
        refused=404,
    ),
    ("POST", "/v1/decide"): Probe(
        None,
        None,
        lambda w, r, p: (
            "/v1/decide",
            {"json": _decide_body(w, r, p)},
        ),
        200,
        refused=200,
    ),
    ("POST", "/v1/decide/batch"): Probe(
        None,
        None,
        lambda w, r, p: (
            "/v1/decide/batch",
            {"json": {"requests": [_decide_body(w, r, p)]}},
        ),
        200,
        refused=200,
    ),
    ("GET", "/v1/audit/verify"): Probe(
        Action.READ,
        "audit_oversight",
        lambda w, r, p: ("/v1/audit/verify", {}),
        200,
        other_subject=403,
    ),
    ("GET", "/v1/keys"): Probe(
        Action.READ, "access_management", lambda w, r, p: ("/v1/keys", {}), 200, other_subject=403
    ),
    ("DELETE", "/v1/keys/{key_id}"): Probe(
        Action.UPDATE,
        "access_management",
        lambda w, r, p: (f"/v1/keys/{w.spare_key}", {}),
        204,
        other_subject=403,
    ),
}


_POLICY = load_policy(bundled_policy_path())
_WARD_ROUTES = {k for k in PROBES if "/wards" in k[1]}
_VERIFIED = ("PUT", SUBJECT_ROUTE + "/identifiers")  # the one route that carries `evidence`
# Every role that can hold a key: all but the guardian role (M1).
_KEYED = [r for r in _POLICY.roles if r != _POLICY.bindings.guardian_role]


def _first_purpose(policy: Policy, role: str, action: Action) -> str:
    """The role's first purpose granting `action`, in policy order; else self-service."""
    found = (g.purpose for g in policy.roles[role].grants if action in g.actions)
    return next(found, policy.bindings.self_service_purpose)


def expected(policy: Policy, route: tuple[str, str], role: str) -> tuple[str, bool]:
    """(purpose, allowed) for `role` on `route`, from the oracle's reading of the policy."""
    probe = PROBES[route]
    action = probe.action or Action.READ
    purpose = probe.purpose or _first_purpose(policy, role, action)
    if route in _WARD_ROUTES:
        # piguard makes a subject's own key the guardian (M1); no other key may act as one.
        guardian = policy.bindings.guardian_role or ""
        subject_key = policy.roles[role].kind is ActorKind.SUBJECT
        return purpose, subject_key and grant_for(policy, guardian, action, purpose) is not None
    grant = grant_for(policy, role, action, purpose)
    if grant is None or grant.reads_held_data:
        return purpose, False
    if route != _VERIFIED and needs_evidence(policy, action, purpose):
        return purpose, False
    # Only /v1/decide carries a case reference.
    return purpose, probe.action is None or not grant.needs_case_reference


@pytest.fixture(scope="module")
def world(api: Api, policy: Policy) -> Iterator[World]:
    person = new_person()
    subject = api.register(person)
    me = api.as_subject(subject)
    for purpose in policy.purposes:  # so that neither consent nor U3 stands in the way
        me.grant_consent(subject, scopes.purpose_scope(purpose))
    event = me.grant_consent(subject, "purpose:sports")["id"]
    ward = new_person().values | {ID_NUMBER: _minor_id()}
    minor = me.register_ward(subject, ward, "parent", "hukou:2026-0001")
    with httpx.Client(base_url=api.base_url, timeout=10) as http:
        spare = api.piguard.api_keys.create("auditor", "matrix spare").key_id
        yield World(api, policy, subject, person.phone, minor, event, http, spare)


def _stored(api: Api) -> dict[str, int]:
    return {t: n for t, n in api.counts().items() if t != "audit_records"}


def test_s2_every_route_has_a_probe(api: Api, world: World) -> None:
    app = create_app(api.piguard)
    paths = app.openapi()["paths"]
    found = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    found |= {
        (method, route.path)
        for route in app.routes
        if isinstance(route, Route)
        for method in (route.methods or set()) - {"HEAD"}
    }

    assert found - PUBLIC == set(PROBES)
    assert found >= PUBLIC
    for method, path in PUBLIC:  # public by design: the notice, the probe, the API's own docs
        assert world.send(None, method, path).status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [None, "Basic dXNlcjpwYXNz", "Bearer", "unknown", "revoked"],
    ids=["no-key", "basic", "bare-bearer", "unknown-key", "revoked-key"],
)
def test_s2_no_route_answers_a_missing_malformed_unknown_or_revoked_key(
    api: Api, world: World, authorization: str | None
) -> None:
    if authorization == "unknown":
        authorization = f"Bearer pgk_key_{secrets.token_hex(16)}.{secrets.token_urlsafe(32)}"
    elif authorization == "revoked":
        issued = api.piguard.api_keys.create("privacy_officer", "to revoke")
        api.piguard.api_keys.revoke(issued.key_id)
        authorization = f"Bearer {issued.token}"
    head, before = api.audit_head(), _stored(api)

    for (method, _), probe in PROBES.items():
        url, kw = probe.build(world, "privacy_officer", probe.purpose or "self_service")
        answer = world.send(authorization, method, url, **kw)
        assert (answer.status_code, answer.json()["code"]) == (401, "unauthenticated"), url

    assert _stored(api) == before  # no value, index, key, consent or setting
    # 401s are audited in aggregate (web.refusals): per minute, the first one and a count of the
    # rest, so at most four records however many requests (the loop may cross one minute). Each
    # names only the route and the subject of its path: no caller, token, address or body.
    records = api.records_since(head)
    assert len(records) <= 4, records
    for record in records:
        assert re.fullmatch(r"unauthenticated:[a-z_]+|unauthenticated_more:\d+", record["detail"])
        assert (record["actor"], record["purpose"], record["categories"]) == ("anonymous", "", "")
        assert (record["effect"], record["clauses"]) == ("deny", "S2")
        assert record["subject"] in ("", world.subject)
    leaked = [s for s in [*(authorization or "").split(), "127.0.0.1"] if s in str(records)]
    assert leaked == []


def test_s2_another_subjects_key_finds_nothing_and_writes_nothing(api: Api, world: World) -> None:
    other = api.register(new_person())
    token = f"Bearer {world.key('subject', other)}"
    missing = world.send(
        token, "GET", "/v1/subjects/sub_missing", params={"purpose": "self_service"}
    )
    own = api.as_subject(world.subject).read(world.subject, "self_service", REGISTERED)
    secrets_of_world = [str(v["value"]) for v in own["values"] if v["value"]]
    before = _stored(api)

    for (method, path), probe in PROBES.items():
        url, kw = probe.build(world, "subject", probe.purpose or "self_service")
        answer = world.send(token, method, url, **kw)
        assert answer.status_code == probe.other_subject, (method, path, answer.text)
        if answer.status_code == 404:
            assert answer.json() == missing.json()
        leaked = [s for s in secrets_of_world if len(s) > 3 and s in answer.text]
        assert leaked == [], (method, path)

    assert missing.status_code == 404
    assert _stored(api) == before


@pytest.mark.parametrize("role", _KEYED)
def test_s2_each_role_succeeds_exactly_where_the_policy_grants_it(
    api: Api, world: World, role: str
) -> None:
    wrong: dict[tuple[str, str], str] = {}
    for route, probe in PROBES.items():
        method = route[0]
        purpose, allowed = expected(world.policy, route, role)
        target = world
        if probe.action is Action.ERASE_SUBJECT:  # a subject of its own: the world's must stay
            target = replace(world, subject=api.register(new_person()))
        url, kw = probe.build(target, role, purpose)
        before = _stored(api) if not allowed and method != "GET" else None

        answer = world.send(f"Bearer {world.key(role, target.subject)}", method, url, **kw)

        want = probe.ok if allowed else probe.refused
        if answer.status_code != want:
            wrong[route] = f"{purpose}: {answer.status_code} (want {want}) {answer.text[:160]}"
        elif probe.action is None and _effect(answer.json()) != ("allow" if allowed else "deny"):
            wrong[route] = f"{purpose}: effect {_effect(answer.json())}, allowed={allowed}"
        elif before is not None and _stored(api) != before:
            wrong[route] = f"{purpose}: refused, but rows changed"
        if route == ("PUT", SUBJECT_ROUTE + "/identifiers") and allowed:
            world.phone = kw["json"]["values"][PHONE]
    assert wrong == {}


def _effect(answer: dict[str, Any]) -> str:
    """The effect of a decide answer, or of a batch's one answer."""
    [one] = answer.get("answers", [answer])
    return str(one["effect"])


def test_m1_the_ward_routes_answer_only_the_wards_linked_adult(api: Api, world: World) -> None:
    # The guardian role has no row: it is never a key (tests/abuse, test_m1_the_guardian_role_is_
    # never_issued_as_a_key). The `subject` row reaches every ward route with the own key of the
    # world's subject, the adult linked to the ward, where the guardian role's grants allow it;
    # an adult not linked to the ward, on the same routes under its own id, finds no such ward
    # and writes nothing.
    assert world.policy.bindings.guardian_role not in _KEYED
    assert all(expected(world.policy, route, "subject")[1] for route in _WARD_ROUTES)
    stranger = replace(world, subject=api.register(new_person()))
    token = f"Bearer {world.key('subject', stranger.subject)}"
    before = _stored(api)

    for route in sorted(r for r in _WARD_ROUTES if "{minor_id}" in r[1]):
        url, kw = PROBES[route].build(stranger, "subject", "consent_management")
        answer = world.send(token, route[0], url, **kw)
        assert (answer.status_code, answer.json()["field"]) == (404, "subject_id"), route

    assert _stored(api) == before


def test_s2_the_http_matrix_sees_both_outcomes_on_every_route(policy: Policy) -> None:
    outcomes = {route: {expected(policy, route, role)[1] for role in _KEYED} for route in PROBES}
    assert all(seen == {True, False} for seen in outcomes.values()), outcomes
