"""A second policy end to end: the generic services take every key from the policy's bindings.

`tests/policies/library-card.yaml` shares no purpose, category or role with the bundled Alipay
policy; registering, reading, consenting, looking up, changing an identifier and erasing all run
on it as they do on the bundled one (V1: one policy governs every purpose, whichever it is).
"""

from collections.abc import Iterator
from pathlib import Path

import pytest

from piguard.bootstrap import Piguard, build
from piguard.kernel.errors import Denied, NotFound
from piguard.policy.decision import Actor
from piguard.policy.model import ActorKind
from piguard.population import people
from piguard.settings import Settings

POLICY = Path(__file__).resolve().parents[1] / "policies" / "library-card.yaml"
DESK = Actor(ActorKind.SERVICE, "desk", principal="test")
LIBRARIAN = Actor(ActorKind.STAFF, "librarian", principal="test")
MEMBER = Actor(ActorKind.SUBJECT, "member", principal="test")


@pytest.fixture
def library(tmp_path: Path, database_url: str) -> Iterator[Piguard]:
    url = None if database_url.startswith("sqlite") else database_url
    built = build(
        Settings(dev=True, var_dir=tmp_path / "var", database_url=url, policy_file=POLICY)
    )
    yield built
    built.close()


def test_v1_a_second_policy_runs_register_read_consent_lookup_and_erase(library: Piguard) -> None:
    person = next(people(1, seed=5))
    member = library.vault.register(
        DESK,
        {
            "member.name": person.name,
            "member.national_id": person.id_number,
            "member.mobile": person.phone,
        },
    )

    mine = library.vault.read(MEMBER, member, "self_view", ("member.name", "member.mobile"))
    shown = {v.category: v.value.reveal() for v in mine.values if v.value is not None}
    assert shown == {"member.name": person.name, "member.mobile": person.phone}
    staff = library.vault.read(LIBRARIAN, member, "membership", ("member.national_id",))
    masked = staff.values[0].value
    assert masked is not None
    assert masked.reveal() != person.id_number  # DEF2: masked in a staff view

    with pytest.raises(Denied) as no_consent:
        library.vault.collect(DESK, member, "recommendations", {"member.loans": "《红楼梦》"})
    assert no_consent.value.reasons == ("L2:consent_required:purpose:recommendations",)
    library.consents.grant(MEMBER, member, "purpose:recommendations")
    library.vault.collect(DESK, member, "recommendations", {"member.loans": "《红楼梦》"})

    found = library.vault.lookup(DESK, "member.mobile", person.phone)
    assert found is not None
    assert found.subject_id == member
    library.vault.change_identifier(DESK, member, {"member.mobile": "13900001111"}, "otp:1")
    assert library.vault.lookup(DESK, "member.mobile", "13900001111") is not None

    library.vault.erase_subject(MEMBER, member)
    with pytest.raises(NotFound):
        library.vault.snapshot(member)
