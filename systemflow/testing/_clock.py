"""
FakeClock: a clock that moves only when told to, for tests that skip time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import final

_START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@final
class FakeClock:
    """
    A ``systemflow.Clock`` for tests: time stands still until the test moves it.

    ``sleep`` returns at once and moves the clock forward by what was asked
    (retry backoff takes no real time); ``advance`` moves it by hand, to make
    a durable ``Sleep`` due. Pass it to ``Stateful(..., clock=)`` or
    ``FlowContext(clock=)``; the harness does.

    Attributes:
        sleeps: Every ``sleep`` asked for, in seconds, oldest first.

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_now", "sleeps")

    def __init__(self, start: dt.datetime = _START) -> None:
        self._now = _START
        self.current = start
        self.sleeps: list[float] = []

    def now(self) -> dt.datetime:
        """
        Return the clock's time.
        """
        return self._now

    @property
    def current(self) -> dt.datetime:
        """
        The clock's time; assign to it to set the time outright.
        """
        return self._now

    @current.setter
    def current(self, when: dt.datetime) -> None:
        if when.tzinfo is None:
            msg = f"FakeClock: the time must be timezone-aware, got {when!r}"
            raise ValueError(msg)
        self._now = when

    async def sleep(self, seconds: float) -> None:
        """
        Move the clock ``seconds`` forward and return at once (after one loop turn).
        """
        self.sleeps.append(seconds)
        self._now += dt.timedelta(seconds=max(seconds, 0.0))
        await asyncio.sleep(0)

    def advance(
        self,
        by: float | dt.timedelta = 0.0,
        *,
        days: float = 0.0,
        hours: float = 0.0,
        minutes: float = 0.0,
        seconds: float = 0.0,
    ) -> dt.datetime:
        """
        Move the clock forward: ``advance(90)``, ``advance(days=3)``; return the new time.

        Raises:
            ValueError: The step is negative (time does not go back).
        """
        step = by if isinstance(by, dt.timedelta) else dt.timedelta(seconds=by)
        step += dt.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
        if step < dt.timedelta(0):
            msg = f"FakeClock.advance: cannot go back in time ({step})"
            raise ValueError(msg)
        self._now += step
        return self._now

    def advance_to(self, when: dt.datetime) -> dt.datetime:
        """
        Move the clock to ``when``, if that is later than now; return the new time.
        """
        self._now = max(self._now, when)
        return self._now

    def __repr__(self) -> str:
        return f"FakeClock({self._now.isoformat()})"
