"""Job ids: UUIDv7 strings, increasing within a process, derived ids stable."""

from __future__ import annotations

import random
import uuid

from offload.ids import IdGenerator, _format, derived_id, id_time_ms


def test_the_fast_formatting_matches_the_uuid_module() -> None:
    rng = random.Random(7)
    for value in [0, (1 << 128) - 1, *(rng.getrandbits(128) for _ in range(1000))]:
        assert _format(value) == str(uuid.UUID(int=value))


def test_ids_are_version_7_and_increase() -> None:
    new_id = IdGenerator()
    ids = [new_id() for _ in range(10_000)]  # many within one millisecond: the counter orders
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 7 for i in ids[:50])


def test_a_derived_id_is_the_same_everywhere_and_keeps_its_time() -> None:
    assert derived_id(1_700_000_000_000, "cron:nightly") == derived_id(
        1_700_000_000_000, "cron:nightly"
    )
    assert derived_id(1_700_000_000_000, "a") != derived_id(1_700_000_000_000, "b")
    assert id_time_ms(derived_id(1_700_000_000_000, "a")) == 1_700_000_000_000
