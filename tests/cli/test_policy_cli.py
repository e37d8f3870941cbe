"""`piguard policy ...` as a person runs it: real process, real files (V1, V3, P3, V2)."""

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

import piguard
from piguard.policies import bundled_policy_path

# The process runs the piguard this one imported, wherever it came from (PYTHONPATH, a venv).
SOURCES = str(Path(piguard.__file__).resolve().parents[1])


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own CLI with fixed arguments
        [sys.executable, "-m", "piguard.cli.main", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env={
            "COLUMNS": "200",
            "PATH": "/usr/bin:/bin",
            "PYTHONIOENCODING": "utf-8",
            "PYTHONPATH": SOURCES,
        },
    )


def test_v1_validate_bundled_policy() -> None:
    result = run("policy", "validate", str(bundled_policy_path()))
    assert result.returncode == 0, result.stderr
    assert "is a valid policy" in result.stdout


def test_v1_validate_broken_file_names_path_without_traceback(tmp_path: Path) -> None:
    data: dict[str, Any] = yaml.safe_load(bundled_policy_path().read_text(encoding="utf-8"))
    data["purposes"]["kyc_aml"]["required"].append("user.nope")
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    result = run("policy", "validate", str(broken))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert "purposes.kyc_aml.required[" in result.stderr
    assert "unknown category 'user.nope'" in result.stderr


def test_v3_p3_show_renders_both_languages() -> None:
    zh = run("policy", "show", "--lang", "zh", "--raw")
    en = run("policy", "show", "--lang", "en", "--raw")
    assert zh.returncode == en.returncode == 0
    assert "支付宝隐私权政策" in zh.stdout
    assert "Alipay Privacy Policy" in en.stdout
    assert "⚠" in en.stdout
    assert run("policy", "show", "--lang", "fr").returncode == 2


def test_v1_coverage_without_evidence_counts_rules_and_says_tests_were_not_measured() -> None:
    root = Path(__file__).resolve().parents[2]
    result = run("policy", "coverage", cwd=root)
    assert result.returncode == 0, result.stdout
    assert "52 clauses · 52 implemented by rules · tests not measured" in result.stdout
    assert "uncovered" not in result.stdout


def test_v2_diff_marks_changes_needing_fresh_consent(tmp_path: Path) -> None:
    data: dict[str, Any] = yaml.safe_load(bundled_policy_path().read_text(encoding="utf-8"))
    data["version"] = "2018-01-01"
    data["purposes"]["personalization"]["optional"].append("user.location.precise")
    revised = tmp_path / "revised.yaml"
    revised.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    result = run("policy", "diff", str(bundled_policy_path()), str(revised))
    assert result.returncode == 0, result.stderr
    assert "personalization" in result.stdout
    assert "1 need fresh consent" in result.stdout
