"""The clause-coverage gate end to end (V1): a real pytest run measured by `clause_evidence`,
then `piguard policy coverage --evidence` on what it wrote.

The inner suite has a test that loads the policy file and pins a value of it, a test that asks the
engine, one that masks a value through a function imported by name in another thread, one that
reaches the engine only in a fixture, and one that reaches the SLA clock and then fails. Only the
two that reached piguard in their own passing body count.
"""

import json
import os
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from piguard.cli.policy import app
from piguard.policies import bundled_policy_path
from piguard.policy.coverage import coverage, evidence_from_document
from piguard.policy.language import load_policy

TESTS = Path(__file__).resolve().parents[1]

INNER = textwrap.dedent(
    """
    import threading
    from datetime import UTC, datetime

    import pytest

    from piguard.policies import bundled_policy_path
    from piguard.policy.decide import DecisionEngine
    from piguard.policy.decision import Actor, DecisionRequest
    from piguard.policy.language import load_policy
    from piguard.policy.masking import masker
    from piguard.policy.model import Action, ActorKind
    from piguard.policy.sla import deadline

    POLICY = load_policy(bundled_policy_path())
    PAYMENT = Actor(ActorKind.SERVICE, "payment_service")

    def ask():
        request = DecisionRequest(
            Action.COLLECT, PAYMENT, "risk_control", ("user.location.precise",)
        )
        return DecisionEngine(POLICY).decide(request)

    def test_r6_pins_the_correction_deadline():
        sla = load_policy(bundled_policy_path()).rights["correct"].sla
        assert (sla.working_days, sla.cap_days) == (3, 30)

    def test_c4_asks_the_engine():
        assert ask().allowed

    def test_def2_masks_in_another_thread():
        shown = []
        mask = lambda: shown.append(masker("keep_ends(3,4)")("13812345678"))
        worker = threading.Thread(target=mask)
        worker.start()
        worker.join()
        assert shown == ["138****5678"]

    @pytest.fixture
    def decided():
        return ask()

    def test_r1_reaches_the_engine_only_in_a_fixture(decided):
        assert decided.allowed

    def test_r7_reaches_the_clock_then_fails():
        deadline(datetime(2024, 9, 30, tzinfo=UTC), POLICY.rights["correct"].sla)
        assert False
    """
)


def test_v1_only_tests_that_reach_piguard_count_and_the_gate_fails_on_pinned_clauses(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    monkeypatch.setenv("PYTHONPATH", path)
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_subprocess("-p", "clause_evidence", "-W", "error")
    result.assert_outcomes(passed=4, failed=1)
    evidence_file = pytester.path / ".pytest-clause-evidence.json"
    evidence = evidence_from_document(json.loads(evidence_file.read_text(encoding="utf-8")))

    assert evidence.reached == {
        "test_r6_pins_the_correction_deadline": frozenset(),
        "test_c4_asks_the_engine": {"DecisionEngine.decide"},
        "test_def2_masks_in_another_thread": {"masking.masker"},
        "test_r1_reaches_the_engine_only_in_a_fixture": frozenset(),
    }  # test_r7_... failed: no evidence at all
    report = coverage(load_policy(bundled_policy_path()), [], evidence)
    rows = {r.clause: r for r in report.rows}
    assert [c for c in ("R6", "C4", "DEF2", "R1", "R7") if rows[c].covered] == ["C4", "DEF2"]
    _check_gate(evidence_file, report.uncovered, pytester.path / "gaps.txt")


def _check_gate(evidence_file: Path, uncovered: tuple[str, ...], gaps: Path) -> None:
    """The CLI fails on the pinned clause R6 unless it is a known gap, and on a known gap (C4)
    that is covered."""

    def gate(known: list[str]) -> tuple[int, str]:
        gaps.write_text("".join(f"{c}  not yet\n" for c in known), encoding="utf-8")
        result = CliRunner().invoke(
            app, ["coverage", "--evidence", str(evidence_file), "--known-gaps", str(gaps)]
        )
        return result.exit_code, " ".join(result.output.split())  # as if never wrapped

    code, out = gate([c for c in uncovered if c != "R6"])
    assert code == 1
    assert "│ R6 │ 3 │ 1 │ 0 │ uncovered" in out
    assert "1 uncovered: R6" in out
    code, out = gate(list(uncovered))
    assert code == 0, out
    assert "│ C4 │ 13 │ 1 │ 1 │ ok" in out
    assert f"{len(uncovered)} known gaps" in out
    code, out = gate([*uncovered, "C4"])
    assert code == 1
    assert out.endswith("remove them from the list: C4")


def test_v1_coverage_refuses_evidence_it_cannot_read(tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": "something else", "tests": {}}), encoding="utf-8")
    for path, message in [
        (tmp_path / "missing.json", "cannot read"),
        (other, "not clause evidence"),
    ]:
        result = CliRunner().invoke(app, ["coverage", "--evidence", str(path)])
        assert result.exit_code == 2
        assert message in result.output
        assert "Traceback" not in result.output
