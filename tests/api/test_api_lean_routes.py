"""The lean routes (`web.lean`) answer exactly as FastAPI would: the same piguard served twice,
once with the lean handler and once with FastAPI's own, gives the same status and body to every
request a hostile or careless caller sends, and to the valid ones."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import httpx
import pytest
from api_support import NAME, PHONE, Api, new_person, serve
from fastapi import APIRouter, Header, Query
from fastapi.routing import APIRoute

import piguard.web.app as web_app
from piguard.web.lean import LeanRoute, lean

AGENT = "customer_service_agent"
QUESTION = {"action": "read", "purpose": "customer_service", "categories": [PHONE, NAME]}


@pytest.fixture(scope="module")
def plain_url(api: Api) -> Iterator[str]:
    """The same piguard, its routes FastAPI's own (`APIRoute`): the reference answers."""
    patch = pytest.MonkeyPatch()
    patch.setattr(web_app, "LeanRoute", APIRoute)
    try:
        plain = web_app.create_app(api.piguard)
    finally:
        patch.undo()
    assert not any(isinstance(r, LeanRoute) for r in plain.router.routes)
    with serve(plain) as base_url:
        yield base_url


Send = Callable[[httpx.Client, str, str], httpx.Response]


def _post(body: bytes | None, content_type: str = "application/json") -> Send:
    def send(client: httpx.Client, path: str, token: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"}
        if body is not None:
            headers["Content-Type"] = content_type
        return client.post(path, content=body, headers=headers)

    return send


def _get(params: dict[str, Any] | list[tuple[str, str]]) -> Send:
    def send(client: httpx.Client, path: str, token: str) -> httpx.Response:
        return client.get(path, params=params, headers={"Authorization": f"Bearer {token}"})

    return send


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


DECIDE_BODIES = {
    "valid": _json(QUESTION),
    "valid_other_subject_shape": _json({**QUESTION, "categories": [PHONE, PHONE]}),
    "no_body": None,
    "empty_body": b"",
    "not_json": b"{action: read",
    "an_array": _json([QUESTION]),
    "a_string": _json("read"),
    "null": b"null",
    "unknown_purpose": _json({**QUESTION, "purpose": "curiosity"}),
    "unknown_category": _json({**QUESTION, "categories": ["user.soul"]}),
    "empty_categories": _json({**QUESTION, "categories": []}),
    "missing_action": _json({k: v for k, v in QUESTION.items() if k != "action"}),
    "extra_field": _json({**QUESTION, "exemption_granted": True}),
    "number_for_string": _json({**QUESTION, "purpose": 7}),
    "bad_subject": _json({**QUESTION, "subject_id": "../etc"}),
    "unknown_subject": _json({**QUESTION, "subject_id": "nobody_here"}),
    "nan": b'{"action": "read", "purpose": "customer_service", "categories": [NaN]}',
    "duplicate_keys": b'{"action": "read", "action": "delete", "purpose": "customer_service",'
    b' "categories": ["user.name"]}',
    "deep": b"[" * 5000 + b"]" * 5000,
}


def _cases(subject: str) -> Iterator[tuple[str, str, Send]]:
    bodies = {**DECIDE_BODIES, "valid_with_subject": _json({**QUESTION, "subject_id": subject})}
    for name, body in bodies.items():
        yield f"decide {name}", "/v1/decide", _post(body)
        batch = None if body is None else b'{"requests": [' + body + b"]}"
        yield f"batch {name}", "/v1/decide/batch", _post(batch)
    yield "decide text/plain", "/v1/decide", _post(_json(QUESTION), "text/plain")
    yield "batch empty list", "/v1/decide/batch", _post(_json({"requests": []}))
    yield "batch 1001", "/v1/decide/batch", _post(_json({"requests": [QUESTION] * 1001}))
    read = f"/v1/subjects/{subject}"
    yield "read valid", read, _get({"purpose": "customer_service"})
    yield "read categories", read, _get([("purpose", "customer_service"), ("categories", PHONE)])
    yield "read no purpose", read, _get({})
    yield "read unknown purpose", read, _get({"purpose": "curiosity"})
    yield "read empty purpose", read, _get({"purpose": ""})
    yield "read unknown category", read, _get({"purpose": "customer_service", "categories": "x"})
    yield "read two purposes", read, _get([("purpose", "customer_service"), ("purpose", "x")])
    yield "read long case", read, _get({"purpose": "customer_service", "case_reference": "c" * 999})
    yield (
        "read two categories",
        read,
        _get([("purpose", "customer_service"), ("categories", PHONE), ("categories", NAME)]),
    )
    yield "read empty category", read, _get([("purpose", "customer_service"), ("categories", "")])
    yield "read unknown parameter", read, _get({"purpose": "customer_service", "x": "1"})
    yield "read purpose in capitals", read, _get({"purpose": "CUSTOMER_SERVICE"})
    yield (
        "read case and authority",
        read,
        _get({"purpose": "customer_service", "case_reference": "CASE-1", "authority": "court"}),
    )
    yield "read bad subject", "/v1/subjects/a..b", _get({"purpose": "customer_service"})
    yield "read unknown subject", "/v1/subjects/nobody", _get({"purpose": "customer_service"})


def _answer(response: httpx.Response) -> tuple[int, object]:
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, response.text


def test_s2_lean_routes_answer_every_request_as_fastapi_does(api: Api, plain_url: str) -> None:
    subject = api.register(new_person())
    token = api.token(AGENT)
    with (
        httpx.Client(base_url=api.base_url, timeout=30) as lean_client,
        httpx.Client(base_url=plain_url, timeout=30) as plain_client,
    ):
        for name, path, send in _cases(subject):
            for _ in range(2):  # the second from the caches the first filled
                got, expected = send(lean_client, path, token), send(plain_client, path, token)
                assert _answer(got) == _answer(expected), name


def _declined(api: Api) -> int:
    app = api.app
    return sum(r.declined for r in app.router.routes if isinstance(r, LeanRoute))


def test_s2_valid_requests_take_the_lean_path_and_only_invalid_ones_are_handed_over(
    api: Api,
) -> None:
    subject = api.register(new_person())
    token = api.token(AGENT)
    with httpx.Client(base_url=api.base_url, timeout=30) as client:
        before = _declined(api)
        for name, path, send in _cases(subject):
            answer = send(client, path, token)
            if name in ("decide valid", "batch valid", "read valid", "read two categories"):
                assert answer.status_code == 200, name
                assert _declined(api) == before, name
            if name in ("decide unknown_purpose", "read no purpose", "decide empty_body"):
                assert _declined(api) > before, name
            before = _declined(api)


def test_s2_lean_routes_refuse_a_bad_key_before_anything_else(api: Api) -> None:
    with httpx.Client(base_url=api.base_url, timeout=30) as client:
        for token in ("x" * 600, "not-a-key", "k1.forged"):
            answer = _post(b"not json")(client, "/v1/decide", token)
            assert answer.status_code == 401, token
            assert answer.json()["field"] == "Authorization"
        bare = client.post(  # no Authorization at all
            "/v1/decide", content=b"not json", headers={"Content-Type": "application/json"}
        )
        assert (bare.status_code, bare.json()["field"]) == (401, "Authorization")


def test_s2_a_lean_endpoint_that_lean_cannot_serve_fails_at_start_up() -> None:
    """Only what the lean handler knows how to take: an endpoint asking for more (a sync one,
    a header) is refused when the app is built, never served half right."""

    def sync_endpoint() -> dict[str, str]:
        return {}

    async def with_query(x_token: str | None = None) -> dict[str, str | None]:
        return {"x_token": x_token}

    router = APIRouter(route_class=LeanRoute)
    with pytest.raises(TypeError, match="async"):
        router.add_api_route("/sync", lean(sync_endpoint))

    async def header_endpoint(token: str = Header()) -> dict[str, str]:
        return {"token": token}

    with pytest.raises(TypeError, match="header"):
        router.add_api_route("/header", lean(header_endpoint))

    async def list_endpoint(x: Annotated[list[str], Query()]) -> dict[str, list[str]]:
        return {"x": x}

    with pytest.raises(TypeError, match="single"):
        router.add_api_route("/list", lean(list_endpoint))
    router.add_api_route("/query", lean(with_query))  # query parameters are served
    assert isinstance(router.routes[-1], LeanRoute)
