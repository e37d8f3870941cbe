"""The hostile-caller suite (issue 7): a real server per module, built like the API tests' own.

Each test tries what a hostile or careless caller would, through the real HTTP API, and proves
both the refusal and that nothing was written (row counts of the SQLite files before and after).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from api.api_support import Api, running_api


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with running_api(tmp_path_factory.mktemp("hostile")) as running:
        yield running
