"""The one table from piguard's error tree to HTTP, and every error answer's JSON shape.

Handlers are registered per class and found by class hierarchy, so routes carry no try/except.
Every error answer, ours or the framework's (validation, 404, 405), has the same shape:
`{code, message: {zh, en}, field?, allowed?, reasons?}`. Nothing here echoes a submitted value or
key: a field path shows the schema's names and, for a key the caller chose, its position only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from piguard.audit.ports import AuditUnavailable
from piguard.audit.witness import WitnessUnavailable
from piguard.kernel.errors import (
    Conflict,
    Denied,
    IntegrityError,
    InvalidInput,
    NotFound,
    Overloaded,
    PiguardError,
    PolicyFileError,
    Unauthenticated,
)
from piguard.kernel.text import LocalText
from piguard.logs import redact
from piguard.vault.erasure import ErasureIncomplete

log = logging.getLogger("piguard.web")

ERROR_STATUS: Final[Mapping[type[PiguardError], int]] = MappingProxyType(
    {
        InvalidInput: 422,
        PolicyFileError: 422,
        NotFound: 404,
        Conflict: 409,
        Unauthenticated: 401,
        Denied: 403,
        IntegrityError: 409,
        AuditUnavailable: 503,  # fail closed: no audit record, no processing (S2)
        ErasureIncomplete: 503,  # erased for every caller; its key is destroyed at next start
        WitnessUnavailable: 503,  # no verdict without the witness's copy of the checkpoints
        Overloaded: 503,  # nothing was done: more is waiting than the process takes on
    }
)
"""Error class → HTTP status; a subclass takes the status of its nearest listed ancestor."""

_HTTP_CODES: Final[Mapping[int, tuple[str, LocalText]]] = MappingProxyType(
    {
        400: ("malformed_json", LocalText("请求体不是有效的 JSON", "the body is not valid JSON")),
        404: ("not_found", LocalText("没有该资源", "no such resource")),
        405: ("method_not_allowed", LocalText("不支持该请求方法", "method not allowed")),
        413: ("body_too_large", LocalText("请求体过大", "the body is too large")),
        415: (
            "unsupported_media_type",
            LocalText("请求体必须是 application/json", "the body must be application/json"),
        ),
        503: ("unavailable", LocalText("服务暂时不可用", "the service is unavailable")),
    }
)
INTERNAL: Final = (
    "internal_error",
    LocalText("服务内部错误，已记录", "internal error; it has been logged"),
)

# Chinese texts for the validation errors people meet most; the rest get a general one.
_VALIDATION_ZH: Final[Mapping[str, str]] = MappingProxyType(
    {
        "missing": "缺少必填字段",
        "extra_forbidden": "不允许的字段",
        "string_type": "应为字符串",
        "string_too_short": "字符串过短",
        "string_too_long": "字符串过长",
        "string_pattern_mismatch": "格式不符合要求",
        "dict_type": "应为 JSON 对象",
        "model_attributes_type": "应为 JSON 对象",
        "list_type": "应为数组",
        "bool_type": "应为布尔值",
        "enum": "不是允许的取值",
        "literal_error": "不是允许的取值",
        "too_short": "元素过少",
        "too_long": "元素过多",
        "json_invalid": "不是有效的 JSON",
    }
)
_MAX_FIELD = 200
_LOC_SOURCES: Final = ("body", "query", "path", "header", "cookie")
_KEY_TAG: Final = "[key]"  # pydantic's last part of a dict key's own error
_FREE_TEXT: Final = frozenset({"value_error", "assertion_error", "custom_error"})


def error_body(
    code: str, message: LocalText, *, field: str | None = None, allowed: str | None = None
) -> dict[str, object]:
    """The error JSON for answers that do not come from a `PiguardError`."""
    body: dict[str, object] = {"code": code, "message": {"zh": message.zh, "en": message.en}}
    if field is not None:
        body["field"] = field
    if allowed is not None:
        body["allowed"] = allowed
    return body


def status_for(exc: PiguardError) -> int:
    """The status of the nearest ancestor in `ERROR_STATUS`; unlisted errors are 500."""
    for cls in type(exc).__mro__:
        if cls in ERROR_STATUS:
            return ERROR_STATUS[cls]
    return 500


async def _piguard_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PiguardError)  # noqa: S101 - registered for PiguardError classes only
    status = status_for(exc)
    refusals = getattr(request.app.state, "refusals", None)
    if refusals is not None:  # 404 and 401 never reach the engine: recorded here (S2)
        refusals.refused(request, exc, status)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(retry_after, int):  # a passing condition (the audit log is busy): try again
        headers["Retry-After"] = str(retry_after)
    return JSONResponse(public(exc.to_dict()), status_code=status, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for this class only
    errors: Sequence[Mapping[str, Any]] = exc.errors()
    first: Mapping[str, Any] = errors[0] if errors else {"type": "invalid", "loc": (), "msg": ""}
    kind = str(first.get("type", "invalid"))
    field = _field(first.get("loc", ()), exc.body, _schema_names(request.app))
    if kind == "json_invalid":
        code, text = _HTTP_CODES[400]
        return JSONResponse(error_body(code, text, field="body"), status_code=400)
    zh = _VALIDATION_ZH.get(kind, "输入无效")
    more = f" (+{len(errors) - 1})" if len(errors) > 1 else ""
    body = error_body(
        "invalid_input",
        LocalText(f"{field}：{zh}{more}", f"{field}: {_message(first)}{more}"),
        field=field,
        allowed=_allowed(first),
    )
    return JSONResponse(public(body), status_code=422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for this class only
    code, text = _HTTP_CODES.get(
        exc.status_code, ("http_error", LocalText("请求无法处理", "the request cannot be handled"))
    )
    headers = dict(exc.headers or {})
    if exc.status_code == 405:  # the first route's methods only: say every route's on this path
        headers["Allow"] = ", ".join(sorted(_methods_at(request.app.router.routes, request.scope)))
    return JSONResponse(error_body(code, text), status_code=exc.status_code, headers=headers)


def _methods_at(routes: Sequence[BaseRoute], scope: Scope) -> set[str]:
    """Every method some route answers on the scope's path."""
    methods: set[str] = set()
    for route in routes:
        if route.matches(scope)[0] is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return methods


def public(body: dict[str, object]) -> dict[str, object]:
    """The last check on an error body: anything in it shaped like personal information or a
    key is replaced (`logs.redact`). The fields and messages are built to hold none; this is the
    second line of defence."""
    return {k: _redacted(v) for k, v in body.items()}


def _redacted(value: object) -> object:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return value


def _schema_names(app: FastAPI) -> frozenset[str]:
    """The names a field path may show as they are: the API's own (every parameter and every
    property of its OpenAPI schema) and the policy's data categories and settings."""
    names: frozenset[str] | None = getattr(app.state, "schema_names", None)
    if names is None:
        found = set(_LOC_SOURCES) | {_KEY_TAG}
        schema = app.openapi()
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                found.update(p["name"] for p in operation.get("parameters", ()))
        for component in schema.get("components", {}).get("schemas", {}).values():
            found.update(component.get("properties", {}))
        piguard = getattr(app.state, "piguard", None)
        if piguard is not None:
            found.update(piguard.policy.categories)
            found.update(piguard.policy.settings)
        names = app.state.schema_names = frozenset(found)
    return names


def _field(loc: object, submitted: object, names: frozenset[str]) -> str:
    """The dotted path of an error: schema names and list positions as they are; any other part
    (a key the caller chose) as `<key:N>`, its position in its object, or `<key>`."""
    parts = loc if isinstance(loc, list | tuple) else ()
    node: object = submitted if parts[:1] == ("body",) else None
    shown: list[str] = []
    for i, part in enumerate(parts):
        if i == 0 and part in _LOC_SOURCES:
            shown.append(str(part))
            continue
        if isinstance(part, int):
            shown.append(str(part))
            node = node[part] if isinstance(node, list) and -len(node) <= part < len(node) else None
            continue
        if isinstance(part, str) and part in names:
            shown.append(part)
        elif isinstance(node, dict) and part in node:
            shown.append(f"<key:{list(node).index(part)}>")
        else:
            shown.append("<key>")
        node = node.get(part) if isinstance(node, dict) else None
    return ".".join(shown)[:_MAX_FIELD] or "body"


def _message(error: Mapping[str, Any]) -> str:
    """pydantic's English message, unless its type may carry what was submitted (a validator's
    own error text): then a fixed one. The input itself is never used."""
    ctx = error.get("ctx")
    kind = str(error.get("type", ""))
    if kind in _FREE_TEXT or (isinstance(ctx, Mapping) and "error" in ctx):
        return "invalid value"
    return str(error.get("msg", "invalid input"))


def _allowed(error: Mapping[str, Any]) -> str | None:
    """What the schema allows, from the fixed parts of pydantic's context only."""
    ctx = error.get("ctx")
    if not isinstance(ctx, Mapping):
        return None
    for key in ("expected", "pattern", "max_length", "min_length"):
        if key in ctx:
            return f"{key}: {ctx[key]}"[:_MAX_FIELD]
    return None


def install_error_handlers(app: FastAPI) -> None:
    """Register the table's handlers, the validation handler and the HTTP error handler."""
    for cls in ERROR_STATUS:
        app.add_exception_handler(cls, _piguard_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
