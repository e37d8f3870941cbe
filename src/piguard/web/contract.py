"""The API's contract, exact: what the OpenAPI document promises is what the app does.

- The policy's vocabulary. Request and response fields typed with a `schemas.Names` marker are
  narrowed, when the app is built, to the loaded policy's keys: each route is rebuilt with
  `Literal` types in its signature, so the schema shows an enum and the same pydantic validation
  refuses any other key (422, in the one error body). Whether a known key is *allowed* stays the
  decision engine's question (403).
- The policy's shapes. Fields typed with a `schemas.Shaped` marker get the JSON Schema of what
  the server accepts there, written from the policy (`shapes`): a `values` object names the
  categories it takes, each with the schema of its validator (`web.value_schemas`, one component
  per validator); the consent scope is the pattern of the scopes the ledger accepts. Validation
  stays the server's own (the vault's validators, the ledger): the schema says what it accepts.
- Every error an operation can give is declared (`errors`) with the one `ErrorBody` schema.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Mapping
from datetime import date
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema, create_model

from piguard.policy.model import Policy
from piguard.policy.scopes import SCOPE_KINDS, SERVICE
from piguard.web.examples import add_examples
from piguard.web.schemas import ErrorBody, Names, Shaped, ShapeKind
from piguard.web.value_schemas import VALUE_SCHEMAS, Schema, minor_id_schema

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


def lookup_categories(policy: Policy) -> tuple[str, ...]:
    """The categories an account can be found by (`vault.lookup`): those tagged `lookup`."""
    return tuple(k for k, c in policy.categories.items() if "lookup" in c.tags)


# -- the shapes of values and scopes ---------------------------------------------------------------

MAX_VALUES = 64
"""Categories in one `values` object (`schemas.Values`)."""
MINOR_ID = "cn_resident_id_minor"
"""The component of a minor's resident ID number (a guardian registering a ward, M1)."""


def component(validator: str) -> str:
    """The name of the component that holds the schema of a validator's values."""
    return "".join(part.title() for part in validator.split("_")) + "Value"


def value_components() -> dict[str, Schema]:
    """One component per validator (and a minor's ID number): what its values may be."""
    found = {component(name): dict(schema) for name, schema in VALUE_SCHEMAS.items()}
    found[component(MINOR_ID)] = minor_id_schema()
    return found


def _ref(validator: str) -> Schema:
    return {"$ref": f"#/components/schemas/{component(validator)}"}


def _values(policy: Policy, categories: Mapping[str, str], required: tuple[str, ...]) -> Schema:
    """A `values` object of `categories` (key → validator), each with its component."""
    schema: Schema = {
        "type": "object",
        "properties": {
            key: _ref(validator) | {"description": policy.categories[key].label.en}
            for key, validator in categories.items()
        },
        "additionalProperties": False,
        "minProperties": max(1, len(required)),
        "maxProperties": MAX_VALUES,
    }
    if required:
        schema["required"] = list(required)
    return schema


def _validator(policy: Policy, key: str) -> str:
    return policy.categories[key].validator or "text"


def _registration(policy: Policy, *, ward: bool) -> Schema:
    """The registration purpose's categories, the required ones required. The birth date that
    registration reads from the ID number (`bindings.birth_date`) is left out: the vault takes it
    only equal to the one the number encodes, a rule between two values no schema can state."""
    b = policy.bindings
    purpose = policy.purposes[b.registration_purpose]
    derived = b.birth_date if b.age_from in purpose.categories else None
    keys = [k for k in (*purpose.required, *purpose.optional) if k != derived]
    validators = {k: _validator(policy, k) for k in dict.fromkeys(keys)}
    if ward and b.age_from in validators and validators[b.age_from] == "cn_resident_id":
        validators[b.age_from] = MINOR_ID
    schema = _values(policy, validators, tuple(k for k in purpose.required if k != derived))
    schema["description"] = (
        "The registration purpose's categories"
        + (" of a minor (M1)" if ward else "")
        + "."
        + (f" {derived} is left out: registration reads it from {b.age_from}." if derived else "")
    )
    return schema


def _identifiers(policy: Policy) -> Schema:
    """The identifiers changed together: the categories of one `change_purpose` (R1)."""
    groups: dict[str, dict[str, str]] = {}
    for key, category in policy.categories.items():
        if category.change_purpose:
            groups.setdefault(category.change_purpose, {})[key] = _validator(policy, key)
    shapes = [_values(policy, group, ()) for group in groups.values()]
    if len(shapes) == 1:
        return shapes[0]
    if not shapes:  # nothing can be changed: no object is valid
        return _values(policy, {}, ())
    return {"oneOf": shapes}


def _scope(policy: Policy) -> Schema:
    """The consent scopes the ledger accepts (`consent.service`): `service:all`, `transfer:` a
    recipient, and the other kinds naming a declared purpose. A subset of the request's shape
    (`schemas.Scope`): the ledger also accepts a purpose among more parts."""
    purposes = "|".join(re.escape(p) for p in sorted(policy.purposes, key=len, reverse=True))
    part = "[A-Za-z0-9_.-]"
    named = "|".join(
        k for k in SCOPE_KINDS if k not in ("service", "transfer", "share", "share_type")
    )
    alternatives = [
        re.escape(SERVICE),
        "transfer:[A-Za-z0-9_.:-]{1,200}",
        f"(?:{named}):(?:{purposes})",
        f"share:{part}{{1,119}}:(?:{purposes})",
        f"share_type:{part}{{1,119}}:(?:{purposes})",
    ]
    return {
        "type": "string",
        "pattern": "^(?:" + "|".join(alternatives) + ")$",
        "description": "A consent scope: " + ", ".join(
            ("purpose:<purpose>", "disclose:<purpose>", "cross_border:<purpose>",
             "share:<recipient>:<purpose>", "share_type:<type>:<purpose>",
             "transfer:<recipient>", SERVICE)
        ),
    }  # fmt: skip


def _lookup(policy: Policy) -> Schema:
    """Only the lookup categories, each with the format of its values (merged into `LookupIn`;
    the vault refuses any other category with its own 422, naming the lookup categories)."""
    lookups = lookup_categories(policy)
    if not lookups:  # nothing to look up by: every request is a 422
        return {"not": {}}
    return {
        "properties": {"category": {"type": "string", "enum": list(lookups)}},
        "oneOf": [
            {
                "properties": {"category": {"const": key}, "value": _ref(_validator(policy, key))},
                "required": ["category", "value"],
            }
            for key in lookup_categories(policy)
        ],
    }


def _merge(schema: dict[str, Any], extra: Schema) -> None:
    """`extra`'s keywords into a model's `schema`; its properties replace those of the same name."""
    for key, value in extra.items():
        if key == "properties":
            schema.setdefault("properties", {}).update(value)
        else:
            schema[key] = value


def shapes(policy: Policy) -> dict[ShapeKind, Schema]:
    """The JSON Schema of each `Shaped` marker, from the loaded policy."""
    every = {k: _validator(policy, k) for k in policy.categories}
    return {
        "values": _values(policy, every, ()),
        "registration": _registration(policy, ward=False),
        "ward": _registration(policy, ward=True),
        "identifiers": _identifiers(policy),
        "scope": _scope(policy),
        "lookup": _lookup(policy),
    }


def key_list_pattern(keys: tuple[str, ...], most: int = 64) -> str:
    """A regular expression for a comma-separated list of 1..`most` of `keys`."""
    one = "(?:" + "|".join(re.escape(k) for k in sorted(keys, key=len, reverse=True)) + ")"
    return f"^{one}(?:,{one}){{0,{most - 1}}}$"


class Specialiser:
    """Rebuilds routes, their annotations and their models with the policy's keys in place of
    the `Names` markers. One per app: models are rebuilt once and shared by its routes."""

    def __init__(self, words: Vocabulary, shaped: Mapping[ShapeKind, Schema]) -> None:
        self._words = words
        self._shapes = shaped
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
            shape = next((m for m in meta if isinstance(m, Shaped)), None)
            if shape is not None:
                return Annotated[(narrowed, *meta, WithJsonSchema(self._shapes[shape.kind]))]
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
            shape = getattr(cls, "shape", None)
            if not fields and not isinstance(shape, Shaped):
                self._models[cls] = cls
                return cls
            base = cls
            if isinstance(shape, Shaped):  # the whole model's schema gains the shape's keywords
                extra = self._shapes[shape.kind]
                config = ConfigDict(json_schema_extra=lambda schema: _merge(schema, extra))
                namespace = {"__module__": cls.__module__, "__doc__": cls.__doc__}
                base = type(cls.__name__, (cls,), namespace | {"model_config": config})
            self._models[cls] = create_model(
                cls.__name__,
                __base__=base,
                __module__=cls.__module__,
                __doc__=cls.__doc__,
                **fields,
            )
        return self._models[cls]

    def _named(self, marker: Names, declared: Any) -> Any:
        keys = self._words.get(marker.vocabulary, ())
        if not keys:  # a policy without any: nothing valid to name, keep the shape
            return declared
        if marker.listed:
            return Annotated[str, StringConstraints(pattern=key_list_pattern(keys))]
        return Literal[keys]


# -- the document ---------------------------------------------------------------------------------


def document(app: FastAPI, policy: Policy, today: date) -> None:
    """Make `app.openapi()` the full contract: FastAPI's document, the value components the
    shapes refer to, and an example of each operation's request and success (`web.examples`)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            found = generate()
            found.setdefault("components", {}).setdefault("schemas", {}).update(value_components())
            add_examples(found, policy, today)
            app.openapi_schema = found
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
