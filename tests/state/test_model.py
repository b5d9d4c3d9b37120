"""
The values of the state layer: run records.
"""

from __future__ import annotations

import datetime as dt

import attrs
import pytest

from systemflow.state import _memory
from systemflow.state._model import Claim, NewEvent, RunRecord, RunStatus, evolve_record

AT = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def record() -> RunRecord:
    return RunRecord(
        id="r1", name="flow", status=RunStatus.RUNNING, input="1", created_at=AT, updated_at=AT
    )


class TestEvolveRecord:
    def test_as_attrs_evolve(self):
        """It changes the fields named, and keeps every other, as attrs.evolve does."""
        changes = {"output": 2, "current_path": ("a", 0), "attempts": 3, "updated_at": AT}

        assert attrs.evolve(record(), **changes) == evolve_record(record(), **changes)

    def test_every_field(self):
        """Each field of RunRecord can be changed, by its name."""
        original = record()

        for field in attrs.fields(RunRecord):
            changed = evolve_record(original, **{field.name: "new"})

            assert "new" == getattr(changed, field.name)
            assert attrs.evolve(original, **{field.name: "new"}) == changed

    def test_unknown_field(self):
        """A change that names no field is a TypeError."""
        with pytest.raises(TypeError, match="stauts"):
            evolve_record(record(), stauts=RunStatus.PAUSED)


async def test_an_impossible_lease_renewal_fails_the_append_that_makes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In memory the renewal is written lazily, but its expiry is computed by the append."""
    start = dt.datetime.max.replace(tzinfo=dt.UTC) - dt.timedelta(seconds=100)
    clock = [start]
    monkeypatch.setattr(_memory, "_now", lambda: clock[0])
    store = _memory.InMemoryStateStore()
    claim = Claim("a", 95)
    await store.create_run(run_id="r1", name="f", input_json="1", fingerprint="x", claim=claim)
    clock[0] = start + dt.timedelta(seconds=10)  # renewing now would end after year 9999

    with pytest.raises(OverflowError):
        await store.append("r1", [NewEvent("step", ("a",), "1")], claim=claim)
    assert ["started"] == [event.kind for event in await store.history("r1")]
    assert 1 == len(await store.list_runs())  # other readers are unaffected
