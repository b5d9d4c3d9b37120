"""
Failure and crash points of a tree, as lists and as hypothesis strategies.
"""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings

import systemflow as sf
from systemflow.testing import (
    CrashPoint,
    FlowHarness,
    MockService,
    list_crash_points,
    list_failure_points,
    strategies,
)

FLOW = sf.Sequence(
    sf.Step(str.strip, inline=True, name="clean"),
    sf.Compensatable(
        sf.Call("inventory", "reserve", compensate="release", name="reserve"),
        sf.Call("payments", "charge", compensate="refund", name="charge"),
        name="saga",
    ),
    sf.Conditional(lambda _x: True, sf.Sleep(dt.timedelta(days=3), name="wait"), name="maybe"),
    sf.WaitForSignal("go", name="go"),
)


def make_services() -> dict[str, MockService]:
    inventory = MockService("inventory")
    inventory.on("reserve").returns("r-1")
    inventory.on("release")
    payments = MockService("payments")
    payments.on("charge").returns("p-1")
    payments.on("refund")
    return {"inventory": inventory, "payments": payments}


class TestLists:
    def test_failure_points_are_the_effects(self):
        """Failure points are the steps and calls, depth first."""
        assert [("clean",), ("saga", "reserve"), ("saga", "charge")] == list_failure_points(FLOW)

    def test_failure_points_within(self):
        """within= keeps the points at or below a path."""
        assert [("saga", "reserve"), ("saga", "charge")] == list_failure_points(FLOW, within="saga")

    def test_crash_points_are_every_checkpoint(self):
        """Crash points: before and after each step, decision, timer and signal."""
        paths = [point.path for point in list_crash_points(FLOW, when=["after"])]

        assert [
            ("clean",),
            ("saga", "reserve"),
            ("saga", "charge"),
            ("maybe",),
            ("maybe", "wait"),
            ("go",),
        ] == paths

    def test_crash_points_before_and_after(self):
        """By default each checkpoint gives two points."""
        assert [CrashPoint("clean", when="before"), CrashPoint("clean")] == list_crash_points(FLOW)[
            :2
        ]


class TestStrategies:
    @given(path=strategies.failure_points(FLOW, within="saga"))
    def test_draws_failure_points(self, path):
        """The strategy draws only points of the tree."""
        assert path in list_failure_points(FLOW)

    @given(point=strategies.crash_points(FLOW))
    def test_draws_crash_points(self, point):
        """The crash strategy draws only points of the tree."""
        assert point in list_crash_points(FLOW)

    def test_no_points_is_an_error(self):
        """A subtree without steps has no failure points: said, not an empty strategy."""
        with pytest.raises(ValueError, match="has no steps or calls at or below 'maybe'"):
            strategies.failure_points(FLOW, within="maybe")
        with pytest.raises(ValueError, match="has no checkpoints at or below 'nowhere'"):
            strategies.crash_points(FLOW, within="nowhere")


class TestProperties:
    @settings(max_examples=20, deadline=None)
    @given(path=strategies.failure_points(FLOW, within="saga"))
    async def test_compensation_leaves_every_mock_as_it_was(self, path):
        """For every failure point in the saga, what was done is undone."""
        services = make_services()
        result = await FlowHarness().run(FLOW, " o ", services=services, faults={path: OSError})
        done = [c.method for c in result.calls]

        assert done.count("reserve") == done.count("release")
        assert done.count("charge") == done.count("refund")

    @settings(max_examples=20, deadline=None)
    @given(point=strategies.crash_points(FLOW))
    async def test_crash_anywhere_then_resume_equals_an_uninterrupted_run(self, point):
        """For every crash point, resuming gives what an uninterrupted run gives."""
        harness = FlowHarness()
        reference = harness.durable(FLOW)
        expected = await reference.run(" o ", services=make_services())
        await reference.signal(expected.record.id, "go", "payload")
        expected = await reference.result((await reference.resume(expected.record.id)).id)

        durable = harness.durable(FLOW)
        first = await durable.run(" o ", services=make_services(), crash_at=point)
        await durable.signal(first.record.id, "go", "payload")
        record = await durable.resume(first.record.id, services=make_services(), crash_at=point)
        if record.status is sf.state.RunStatus.RUNNING:
            record = await durable.resume(record.id, services=make_services())

        assert (expected.output, "payload") == (record.output, record.output)
