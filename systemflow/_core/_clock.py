"""
Time, as flows see it: wall-clock now, and sleeping.

Retry backoff (and, later, durable timers) go through the context's clock, so a
test can swap in a clock that skips time instead of waiting.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Protocol, final, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """
    Where flows get the time and how they wait.

    .. versionadded:: 0.1.0
    """

    def now(self) -> dt.datetime:
        """
        Return the current time, timezone-aware (UTC).
        """
        ...

    async def sleep(self, seconds: float) -> None:
        """
        Wait for ``seconds``.
        """
        ...


@final
class SystemClock:
    """
    The real clock: ``datetime.now(UTC)`` and ``asyncio.sleep``.

    .. versionadded:: 0.1.0
    """

    __slots__ = ()

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK = SystemClock()
