"""Kernel: Sensitive values, bilingual text, clocks, the error tree (S2, DEF2)."""

import pickle
from datetime import UTC, datetime, timedelta

import pytest

from piguard.kernel.clock import FixedClock
from piguard.kernel.errors import InvalidInput, PiguardError, PolicyFileError
from piguard.kernel.sensitive import Sensitive
from piguard.kernel.text import LocalText


def test_s2_sensitive_never_prints_its_value() -> None:
    secret = Sensitive("13812345678")
    for shown in (repr(secret), str(secret), f"{secret}", f"{secret:>20}"):
        assert "13812345678" not in shown
    assert secret.reveal() == "13812345678"
    assert secret == Sensitive("13812345678")


def test_s2_sensitive_refuses_pickling() -> None:
    with pytest.raises(TypeError):
        pickle.dumps(Sensitive("x"))


def test_v3_local_text_needs_both_languages() -> None:
    with pytest.raises(ValueError, match="Chinese and an English"):
        LocalText("中文", " ")
    text = LocalText("你好 {name}", "hello {name}").format(name="Li")
    assert (text.in_("zh"), text.in_("en")) == ("你好 Li", "hello Li")


def test_p1_fixed_clock_moves_only_when_told() -> None:
    clock = FixedClock(datetime(2026, 1, 1, tzinfo=UTC))
    assert clock.now() == clock.now()
    clock.advance(timedelta(days=1))
    assert clock.now().day == 2
    with pytest.raises(ValueError, match="aware"):
        FixedClock(datetime(2026, 1, 1))


def test_v1_errors_carry_bilingual_message_and_field() -> None:
    err = InvalidInput(LocalText("错误", "wrong"), field="phone", allowed="CN mobile")
    assert isinstance(err, PiguardError)
    assert err.to_dict() == {
        "code": "invalid_input",
        "message": {"zh": "错误", "en": "wrong"},
        "field": "phone",
        "allowed": "CN mobile",
    }
    policy_err = PolicyFileError("p.yaml", "purposes.x.required[2]", "unknown category 'y'")
    assert policy_err.field == "purposes.x.required[2]"
    assert "p.yaml: purposes.x.required[2]: unknown category 'y'" in policy_err.message.en
