"""Shared fixtures: the bundled policy, parsed once per session.

Plugins: `clause_evidence` records which of piguard's entry points each test reaches (what
`piguard policy coverage --evidence` counts); `pytester` runs a pytest inside a test.
"""

from pathlib import Path

import pytest
import yaml

from piguard.policies import bundled_policy_path
from piguard.policy.decide import DecisionEngine
from piguard.policy.language import load_policy
from piguard.policy.model import Policy

pytest_plugins = ["clause_evidence", "pytester"]


@pytest.fixture(scope="session")
def policy_path() -> Path:
    return bundled_policy_path()


@pytest.fixture(scope="session")
def policy(policy_path: Path) -> Policy:
    return load_policy(policy_path)


@pytest.fixture(scope="session")
def engine(policy: Policy) -> DecisionEngine:
    return DecisionEngine(policy)


@pytest.fixture
def policy_data(policy_path: Path) -> dict[str, object]:
    """The bundled policy as plain data, for tests that break it on purpose."""
    data = yaml.safe_load(policy_path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data
