"""The hottest routes called without FastAPI's per-request machinery, for the inputs it accepts.

FastAPI still declares these routes: their schema, models and errors are its. A route whose
endpoint is marked `lean` gets its arguments here, straight from the request: the caller (the
`api_call` dependency, called as FastAPI would), the path and query parameters (FastAPI's own
field validation), and the JSON body (its model's `model_validate_json`: parsed and validated in
one pass of pydantic's core). Whatever this does not accept as it is (a missing or invalid
parameter, an empty body, JSON the model refuses) goes to FastAPI's own handler, which answers it
with exactly the error it always gives. So the answer to every request is the one FastAPI would
give; a valid request only skips dependency solving and the second parse of its body, a tenth
to a fifth of a decision's time (bench/api.py, A/B runs).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextlib import AsyncExitStack
from copy import deepcopy
from dataclasses import dataclass
from types import UnionType
from typing import TYPE_CHECKING, Annotated, Any, Final, TypeVar, Union, get_args, get_origin

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import request_response

if TYPE_CHECKING:  # FastAPI's own field type, only named here
    from fastapi._compat import ModelField

LEAN: Final = "__piguard_lean__"
F = TypeVar("F", bound=Callable[..., Any])


def lean(endpoint: F) -> F:
    """Mark an endpoint to be called by `LeanRoute`'s handler (kept by `functools.wraps`)."""
    setattr(endpoint, LEAN, True)
    return endpoint


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class LeanRoute(APIRoute):
    """An APIRoute that calls a `lean` endpoint with arguments taken from the request directly,
    and hands every request it does not take as it is to FastAPI's handler.

    Served as Starlette serves a plain route: FastAPI's wrapper opens two exit stacks per
    request for dependencies with `yield`, which a lean endpoint does not have; they are opened
    for FastAPI's handler when it answers."""

    declined = 0
    """Requests handed to FastAPI's handler (invalid input): for the tests and the curious."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        if getattr(self.endpoint, LEAN, False):
            if kwargs.get("max_body_size") is not None:
                raise TypeError("a lean route's body limit is the app's (middleware.BodyGuard)")
            self.app = request_response(self._lean_handler(self.get_route_handler()))

    def _lean_handler(self, full: Handler) -> Handler:
        arguments = _Arguments.of(self.dependant)
        endpoint = self.dependant.call
        assert endpoint is not None  # noqa: S101 - a route's dependant has its endpoint

        async def handler(request: Request) -> Response:
            kwargs = await arguments.taken(request)
            if kwargs is not None:
                answer: Response = await endpoint(**kwargs)
                return answer
            self.declined += 1
            scope = request.scope  # FastAPI's handler finds its exit stacks here
            async with AsyncExitStack() as request_stack:
                scope["fastapi_inner_astack"] = request_stack
                async with AsyncExitStack() as function_stack:
                    scope["fastapi_function_astack"] = function_stack
                    return await full(request)

        return handler


@dataclass(frozen=True)
class _Arguments:
    """How a lean endpoint's arguments come from a request."""

    params: tuple[_Param, ...]
    request_name: str | None
    callers: tuple[tuple[str, Callable[[Request], Awaitable[Any]]], ...]
    body: tuple[str, type[BaseModel]] | None

    @classmethod
    def of(cls, dependant: Dependant) -> _Arguments:
        """What the endpoint takes; TypeError (at start-up) for anything this does not handle."""
        if not inspect.iscoroutinefunction(dependant.call):
            raise TypeError("a lean endpoint is async: it runs on the event loop")
        if dependant.header_params or dependant.cookie_params or len(dependant.body_params) > 1:
            raise TypeError("a lean endpoint takes no header, cookie or second body parameter")
        callers = tuple(_request_only(d) for d in dependant.dependencies)
        body = None
        if dependant.body_params:
            field = dependant.body_params[0]
            model = field.field_info.annotation
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise TypeError("a lean endpoint's body is one pydantic model")
            body = (field.name, model)
        params = tuple(
            _Param.of(field, kind)
            for kind, fields in (("path", dependant.path_params), ("query", dependant.query_params))
            for field in fields
        )
        return cls(params, dependant.request_param_name, callers, body)

    async def taken(self, request: Request) -> dict[str, Any] | None:
        """The endpoint's arguments; None when FastAPI must answer (invalid input). The caller
        first, as FastAPI solves it first: a bad key is a 401 whatever the rest is."""
        kwargs: dict[str, Any] = {}
        if self.request_name is not None:
            kwargs[self.request_name] = request
        for name, call in self.callers:
            kwargs[name] = await call(request)
        for param in self.params:
            value = param.taken(request)
            if value is _INVALID:
                return None
            kwargs[param.name] = value
        if self.body is not None:
            raw = await request.body()
            if not raw:
                return None
            name, model = self.body
            try:
                kwargs[name] = model.model_validate_json(raw)
            except ValidationError:
                return None
        return kwargs


_INVALID: Final = object()  # a parameter FastAPI must answer for


@dataclass(frozen=True)
class _Param:
    """A path or query parameter, taken as FastAPI takes a single value (the last occurrence),
    validated by FastAPI's own field: its value, its default when missing, or invalid."""

    name: str
    alias: str
    kind: str
    field: ModelField

    @classmethod
    def of(cls, field: ModelField, kind: str) -> _Param:
        info = field.field_info
        annotation = info.annotation
        if (
            info.validation_alias is not None
            or (isinstance(annotation, type) and issubclass(annotation, BaseModel))
            or _is_sequence(annotation)
        ):
            raise TypeError("a lean endpoint's parameters are single plain values, named plainly")
        return cls(field.name, field.alias, kind, field)

    def taken(self, request: Request) -> Any:
        params = request.path_params if self.kind == "path" else request.query_params
        value: Any = params.get(self.alias)
        if value is None:
            info = self.field.field_info
            if info.is_required() or info.validate_default:
                return _INVALID  # FastAPI's "missing" error, or its validation of the default
            return deepcopy(self.field.default)
        checked, errors = self.field.validate(value, {}, loc=(self.kind, self.alias))
        return _INVALID if errors else checked


def _is_sequence(annotation: Any) -> bool:
    """A list, tuple, set or sequence, optional or annotated or not."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _is_sequence(get_args(annotation)[0])
    if origin in (Union, UnionType):
        return any(_is_sequence(a) for a in get_args(annotation) if a is not type(None))
    return origin in (list, tuple, set, frozenset, Sequence)


def _request_only(dependency: Dependant) -> tuple[str, Callable[[Request], Awaitable[Any]]]:
    """A dependency that takes the request alone and is awaited (`deps.api_call`)."""
    call = dependency.call
    takes_only_the_request = not (
        dependency.path_params
        or dependency.query_params
        or dependency.header_params
        or dependency.cookie_params
        or dependency.body_params
        or dependency.dependencies
    )
    if (
        call is None
        or dependency.name is None
        or dependency.request_param_name is None
        or not takes_only_the_request
        or not inspect.iscoroutinefunction(call)
    ):
        raise TypeError("a lean endpoint's dependencies take the request alone and are async")
    request_name = dependency.request_param_name

    async def called(request: Request) -> Any:
        return await call(**{request_name: request})

    return dependency.name, called
