"""
FakeClock: time that moves only when told to.
"""

from __future__ import annotations

import datetime as dt

import pytest

import systemflow as sf
from systemflow.testing import FakeClock

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class TestFakeClock:
    def test_is_a_clock(self):
        """It implements the systemflow.Clock protocol."""
        assert isinstance(FakeClock(), sf.Clock)

    def test_starts_at_a_fixed_time(self):
        """Without a start it stands at 2026-01-01 UTC, so tests are reproducible."""
        assert START == FakeClock().now()

    def test_refuses_a_naive_start(self):
        """A naive start time is refused: flows compare aware times."""
        with pytest.raises(ValueError, match="timezone-aware"):
            FakeClock(dt.datetime(2026, 1, 1))  # noqa: DTZ001 -- the point of the test

    async def test_sleep_moves_time_and_records(self):
        """sleep() returns at once, moving the clock and recording the request."""
        clock = FakeClock()
        await clock.sleep(1.5)
        await clock.sleep(2)

        assert (START + dt.timedelta(seconds=3.5), [1.5, 2]) == (clock.now(), clock.sleeps)

    def test_advance_by_seconds_and_units(self):
        """advance() takes seconds, a timedelta, or days/hours/minutes/seconds."""
        clock = FakeClock()
        clock.advance(30)
        clock.advance(dt.timedelta(minutes=1))
        now = clock.advance(days=3, hours=1, minutes=1, seconds=1)

        assert START + dt.timedelta(days=3, hours=1, minutes=2, seconds=31) == now

    def test_advance_refuses_going_back(self):
        """Time does not go back."""
        with pytest.raises(ValueError, match="cannot go back"):
            FakeClock().advance(-1)

    def test_advance_to_never_goes_back(self):
        """advance_to() moves to a later time and ignores an earlier one."""
        clock = FakeClock()
        later = START + dt.timedelta(hours=2)
        clock.advance_to(later)
        clock.advance_to(START)

        assert later == clock.now()

    def test_current_can_be_set(self):
        """Assigning current sets the time outright."""
        clock = FakeClock()
        clock.current += dt.timedelta(days=1)

        assert START + dt.timedelta(days=1) == clock.now()

    def test_repr(self):
        """The repr shows the time."""
        assert "FakeClock(2026-01-01T00:00:00+00:00)" == repr(FakeClock())

    async def test_retry_backoff_takes_no_real_time(self):
        """Retry delays go through the clock: a test retries instantly and sees the delays."""
        attempts = []

        async def flaky(x: int) -> int:
            attempts.append(x)
            if len(attempts) < 3:
                raise ConnectionError
            return x

        clock = FakeClock()
        step = sf.Step(
            flaky, retry=sf.RetryPolicy(max_attempts=3, initial_delay=1, backoff=3.0, jitter=0)
        )
        out = await sf.execute(step, 1, context=sf.FlowContext(clock=clock))

        assert (1, [1.0, 3.0]) == (out, clock.sleeps)
