"""The API of one worker process, when `piguard serve --workers N` runs several.

uvicorn starts each worker afresh and calls `app_from_environment` in it: every process builds its
own `Piguard` (engines, pools, audit queue) from the same `PIGUARD_*` settings, and closes it when
it stops. The parent has already migrated the databases, so workers never race to.
"""

from __future__ import annotations

import gc

from fastapi import FastAPI

from piguard.bootstrap import build
from piguard.logs import install_record_factory
from piguard.settings import Settings
from piguard.web.app import create_app

TARGET = f"{__name__}:app_from_environment"


def app_from_environment() -> FastAPI:
    """The API over a `Piguard` built in this process, closed by the app's shutdown."""
    install_record_factory()  # every record made in the worker is redacted too
    app = create_app(build(Settings(), migrate=False), owns_piguard=True)
    freeze_start_up()
    return app


def freeze_start_up() -> None:
    """Tune the cyclic garbage collector for serving. What start-up built (policy, compiled
    grants, modules, pools) is frozen: a full collection walked all of it, tens of milliseconds
    during which the process served nothing, the p99 of a loaded server (77 ms, then 20 ms).
    Young collections run every 50,000 allocations rather than 700: each request allocates a
    few hundred objects, almost none in cycles, and each collection stalls every request in
    flight (p99 22-24 ms, then 13-16 ms, bench/api.py's decide at 16 clients)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(_YOUNG_COLLECTION, older, oldest)


_YOUNG_COLLECTION = 50_000  # allocations between collections of the youngest generation
