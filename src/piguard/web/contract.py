"""The API's contract, exact: what the OpenAPI document promises is what the app does.

- The policy's vocabulary. Request and response fields typed with a `schemas.Names` marker are
  narrowed, when the app is built, to the loaded policy's keys: each route is rebuilt with
  `Literal` types in its signature, so the schema shows an enum and the same pydantic validation
  refuses any other key (422, in the one error body). Whether a known key is *allowed* stays the
  decision engine's question (403).
- Every error an operation can give is declared (`errors`) with the one `ErrorBody` schema.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Mapping
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from fastapi import APIRouter
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, StringConstraints, create_model

from piguard.policy.model import Policy
from piguard.web.schemas import ErrorBody, Names

Vocabulary = Mapping[str, tuple[str, ...]]

_ERRORS: Mapping[int, tuple[str, str]] = {
    400: ("malformed_json", "The body is not valid JSON."),
    401: ("unauthenticated", "Missing, invalid, expired or revoked API key."),
    403: ("denied", "Refused by the policy; `reasons` names the clauses and codes."),
    404: ("not_found", "No such resource, or not one the caller may address."),
    409: ("conflict", "Contradicts the current state, or stored data failed its integrity check."),
    413: ("body_too_large", "The body is over the size limit."),
    415: ("unsupported_media_type", "The body is not `application/json` (UTF-8)."),
    422: ("invalid_input", "Invalid input: `field` names it, `allowed` says what is allowed."),
    503: (
        "unavailable",
        "Nothing was done: the audit log or witness is unavailable; see Retry-After.",
    ),
}
WRITE: tuple[int, ...] = (400, 413, 415, 422)
"""What any operation with a JSON body can answer before it runs."""
CALLER: tuple[int, ...] = (401, 403, 503)
"""What any authenticated, audited operation can answer."""


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses` of a route: each status with the one error body and an example of it."""
    return {status: _error(status) for status in sorted(set(statuses))}


def _error(status: int) -> dict[str, Any]:
    code, text = _ERRORS[status]
    example = {"code": code, "message": {"zh": "…", "en": text}}
    return {
        "model": ErrorBody,
        "description": text,
        "content": {"application/json": {"example": example}},
    }


def vocabulary(policy: Policy) -> Vocabulary:
    """The keys each `Names` marker stands for, from the loaded policy."""
    return {
        "purposes": tuple(policy.purposes),
        "categories": tuple(policy.categories),
        "settings": tuple(policy.settings),
        "roles": tuple(policy.roles),
    }


def key_list_pattern(keys: tuple[str, ...], most: int = 64) -> str:
    """A regular expression for a comma-separated list of 1..`most` of `keys`."""
    one = "(?:" + "|".join(re.escape(k) for k in sorted(keys, key=len, reverse=True)) + ")"
    return f"^{one}(?:,{one}){{0,{most - 1}}}$"


class Specialiser:
    """Rebuilds routes, their annotations and their models with the policy's keys in place of
    the `Names` markers. One per app: models are rebuilt once and shared by its routes."""

    def __init__(self, words: Vocabulary) -> None:
        self._words = words
        self._models: dict[type[BaseModel], type[BaseModel]] = {}

    def add_routes(self, target: APIRouter, source: APIRouter) -> None:
        """Add every route of `source` to `target` (the app's own router, so that each is a
        plain route of the app), its endpoint's signature specialised."""
        for route in source.routes:
            if not isinstance(route, APIRoute):
                raise TypeError(f"not an API route: {route!r}")
            target.add_api_route(
                route.path,
                self.endpoint(route.endpoint),
                response_model=self.annotation(route.response_model),
                methods=sorted(route.methods or ()),
                status_code=route.status_code,
                tags=list(route.tags),
                responses=dict(route.responses),
                summary=route.summary,
                description=route.description,
                response_description=route.response_description,
                name=route.name,
                openapi_extra=route.openapi_extra,
                include_in_schema=route.include_in_schema,
            )

    def endpoint(self, call: Callable[..., Any]) -> Callable[..., Any]:
        """`call` behind a wrapper whose signature FastAPI reads: same names, narrowed types."""
        signature = inspect.signature(call, eval_str=True)
        params = [
            p.replace(annotation=self.annotation(p.annotation))
            for p in signature.parameters.values()
        ]
        returns = self.annotation(signature.return_annotation)
        wrapper: Callable[..., Any]
        if inspect.iscoroutinefunction(call):

            async def wrapper(**kwargs: Any) -> Any:
                return await call(**kwargs)
        else:

            def wrapper(**kwargs: Any) -> Any:
                return call(**kwargs)

        wrapper = functools.wraps(call)(wrapper)
        wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=params, return_annotation=returns
        )
        return wrapper

    def annotation(self, annotation: Any) -> Any:
        """`annotation` with each marked part narrowed; the same object when nothing changes."""
        origin = get_origin(annotation)
        args = get_args(annotation)
        if origin is Annotated:
            base, *meta = args
            marker = next((m for m in meta if isinstance(m, Names)), None)
            if marker is not None:
                return self._named(marker, annotation)
            narrowed = self.annotation(base)
            return annotation if narrowed is base else Annotated[(narrowed, *meta)]
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return self.model(annotation)
        if not args or origin is Literal:
            return annotation
        narrowed_args = tuple(self.annotation(a) for a in args)
        if all(n is a for n, a in zip(narrowed_args, args, strict=True)):
            return annotation
        if origin in (Union, UnionType):
            return Union[narrowed_args]  # noqa: UP007 - built from a tuple
        return origin[narrowed_args]

    def model(self, cls: type[BaseModel]) -> type[BaseModel]:
        """`cls`, or a subclass of the same name with its marked fields narrowed."""
        if cls not in self._models:
            fields: dict[str, Any] = {}
            for name, info in cls.model_fields.items():
                declared = info.rebuild_annotation()
                narrowed = self.annotation(declared)
                if narrowed is not declared:
                    default = ... if info.is_required() else info.default
                    fields[name] = (narrowed, Field(default, description=info.description))
            self._models[cls] = (
                create_model(
                    cls.__name__,
                    __base__=cls,
                    __module__=cls.__module__,
                    __doc__=cls.__doc__,
                    **fields,
                )
                if fields
                else cls
            )
        return self._models[cls]

    def _named(self, marker: Names, declared: Any) -> Any:
        keys = self._words.get(marker.vocabulary, ())
        if not keys:  # a policy without any: nothing valid to name, keep the shape
            return declared
        if marker.listed:
            return Annotated[str, StringConstraints(pattern=key_list_pattern(keys))]
        return Literal[keys]
