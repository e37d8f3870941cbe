"""The bundled policy files."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

DEFAULT_POLICY = "alipay-2017"


def bundled_policy_path(name: str = DEFAULT_POLICY) -> Path:
    """The path of a bundled policy file by its id, e.g. `alipay-2017`."""
    return Path(str(files(__name__) / f"{name}.yaml"))


def bundled_policy_names() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in Path(str(files(__name__))).glob("*.yaml")))
