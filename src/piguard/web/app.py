"""The REST API: `create_app(piguard)` over a `Piguard` built once by the caller.

Nothing here reads settings from the environment or keeps globals: the app holds the one `Piguard`
it was given. Layers, outermost first: security headers, the last-resort 500, the body guard
(413/415), then FastAPI with the one error table of `web.errors`.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

from piguard.bootstrap import Piguard
from piguard.web.contract import Specialiser, document, shapes, vocabulary
from piguard.web.errors import install_error_handlers
from piguard.web.lean import LeanRoute
from piguard.web.middleware import Admission, BodyGuard, LastResort, SecurityHeaders
from piguard.web.refusals import RefusalAudit
from piguard.web.routes import (
    audit,
    consents,
    decide,
    guardians,
    keys,
    lookup,
    policy,
    privacy_settings,
    subjects,
)

BATCH_PATH = "/v1/decide/batch"
_CDN = "https://cdn.jsdelivr.net"
# Threads running sync routes at once (anyio's default is 40): no more than the engines' pools
# keep open (db.engine.POOL_SIZE), so that no request waits for a new connection.
REQUEST_THREADS = 16
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def create_app(piguard: Piguard, *, owns_piguard: bool = False) -> FastAPI:
    """The API over one wired `Piguard`; the caller owns it and closes it, unless it hands it
    over with `owns_piguard` (a worker process): then the app's shutdown closes it."""
    refusals = RefusalAudit(piguard)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        to_thread.current_default_thread_limiter().total_tokens = REQUEST_THREADS
        yield
        refusals.flush()  # the unauthenticated requests counted since the last record
        if owns_piguard:
            piguard.close()  # writes the queued audit records, seals the head

    app = FastAPI(
        lifespan=lifespan,
        title="piguard",
        summary="Personal-information protection engine: the privacy policy, enforced.",
        version=piguard.policy.key,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.router.route_class = LeanRoute  # a `lean` endpoint skips FastAPI's dependency solving
    app.state.piguard = piguard
    app.state.refusals = refusals
    install_error_handlers(app)
    # The hottest first: a request is matched against the routes in order.
    routers = (decide, subjects, consents, guardians, privacy_settings, lookup, policy, audit, keys)
    # The schema's enums and shapes: this policy's keys, categories and formats.
    specialise = Specialiser(vocabulary(piguard.policy), shapes(piguard.policy))
    for module in routers:
        specialise.add_routes(app.router, module.router)
    document(app, piguard.policy, piguard.clock.now().date())
    app.add_api_route("/docs", _docs_page(app), include_in_schema=False)
    # add_middleware wraps: the last added is the outermost.
    app.add_middleware(
        BodyGuard,
        max_body_bytes=piguard.settings.max_body_bytes,
        per_path={BATCH_PATH: piguard.settings.max_batch_body_bytes},
    )
    app.add_middleware(LastResort)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(Admission, limit=piguard.settings.max_in_flight)
    return app


def _docs_page(app: FastAPI) -> Callable[[], HTMLResponse]:
    """Swagger UI with a CSP that allows its CDN and exactly its own inline script (by hash)."""
    page = get_swagger_ui_html(openapi_url=app.openapi_url or "", title=f"{app.title} API")
    body = bytes(page.body)
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in _INLINE_SCRIPT.findall(body.decode())
    )
    csp = (
        f"default-src 'none'; script-src {_CDN} {hashes}; style-src {_CDN}; "
        "img-src https://fastapi.tiangolo.com data:; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )

    def docs() -> HTMLResponse:
        return HTMLResponse(body, headers={"Content-Security-Policy": csp})

    return docs
