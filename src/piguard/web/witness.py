"""The witness service's HTTP API (`piguard witness serve`): two calls per installation's log.

- `POST /v1/logs/{log_id}/checkpoints`: witness one checkpoint line (201 new, 200 a repeat);
- `GET /v1/logs/{log_id}/checkpoints`: every line witnessed, as JSON lines (404: none yet).

Both need the service's bearer token. What the store refuses (`audit.witness_store`) comes back in
piguard's one error shape: 422 for a malformed or badly signed line, 409 for one that would
rewrite what was witnessed.
"""

from __future__ import annotations

import hmac

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool

from piguard.audit.checkpoint import MAX_LINE_BYTES
from piguard.audit.witness_store import WitnessStore
from piguard.kernel.errors import Unauthenticated
from piguard.kernel.text import LocalText
from piguard.web.errors import install_error_handlers
from piguard.web.middleware import BodyGuard, LastResort, SecurityHeaders

PATH = "/v1/logs/{log_id}/checkpoints"


def create_witness_app(store: WitnessStore, token: str) -> FastAPI:
    """The witness API over `store`, answering only callers that present `token`."""
    if len(token) < 32:
        raise ValueError("the witness token must be at least 32 characters")
    expected = f"Bearer {token}".encode()

    def authorise(request: Request) -> None:
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            raise Unauthenticated(
                LocalText("需要见证服务的令牌", "the witness token is missing or wrong"),
                field="Authorization",
                allowed="Bearer <the witness service's token>",
            )

    app = FastAPI(title="piguard witness", docs_url=None, redoc_url=None, openapi_url=None)
    install_error_handlers(app)

    @app.post(PATH, status_code=201)
    async def publish(log_id: str, request: Request) -> Response:
        authorise(request)
        new = await run_in_threadpool(store.append, log_id, await request.body())
        return Response(status_code=201 if new else 200)

    @app.get(PATH)
    async def read(log_id: str, request: Request) -> Response:
        authorise(request)
        lines = await run_in_threadpool(store.read, log_id)
        return Response(lines, media_type="application/x-ndjson")

    app.add_middleware(BodyGuard, max_body_bytes=MAX_LINE_BYTES)
    app.add_middleware(LastResort)
    app.add_middleware(SecurityHeaders)
    return app
