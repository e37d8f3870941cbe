"""A real piguard API server per test module.

The server is uvicorn on 127.0.0.1 (an ephemeral port) in a background thread, over an app built
from `build(Settings(dev=True, var_dir=tmp))`: SQLite files in a temporary folder. Tests talk to it
through `PiguardClient` (and raw httpx for malformed requests) and inspect the SQLite files
directly to prove what was, or was not, written.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from api_support import Api, Person, new_person, running_api


@pytest.fixture
def person() -> Person:
    return new_person()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with running_api(tmp_path_factory.mktemp("piguard")) as running:
        yield running
