"""The hostile-caller suite (issue 7): a real server per module, built like the API tests' own.

Each test tries what a hostile or careless caller would, through the real HTTP API, and proves
both the refusal and that nothing was written (row counts of the SQLite files before and after).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from api.api_support import Api, serve
from piguard.bootstrap import build
from piguard.settings import Settings
from piguard.web.app import create_app


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    var_dir = tmp_path_factory.mktemp("hostile")
    piguard = build(Settings(dev=True, var_dir=var_dir))
    with serve(create_app(piguard)) as base_url:
        running = Api(base_url, piguard, var_dir)
        yield running
        running.close()
    piguard.close()
