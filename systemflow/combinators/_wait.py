"""
Pause points of durable runs: waiting for a signal, and durable timers.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, final

import attrs

from .._core import (
    SIGNAL,
    TIMER,
    FlowDefinitionError,
    FlowPaused,
    StepFailed,
    check_name,
    format_path,
)
from ._node import Node, node_repr

if TYPE_CHECKING:
    from .._core import FlowContext


def _needs_journal(node: str, ctx: FlowContext) -> StepFailed:
    msg = (
        f"{node} at {format_path(ctx.path)} in run {ctx.run_id} can only wait in a durable "
        "run: wrap the flow in sf.Stateful(flow, store=..., name=...)"
    )
    return StepFailed(msg, path=ctx.path, run_id=ctx.run_id)


@final
@attrs.frozen(repr=False)
class WaitForSignal(Node[Any, Any]):
    """
    Wait until the run receives ``signal``, then return its payload.

    ``await store.signal(run_id, signal, payload)`` delivers it. A signal sent
    before the run reaches the wait is kept until consumed; two waits for the
    same signal consume two deliveries, oldest first. Until one arrives the run
    pauses (``FlowPaused``, never a failure). The consumed payload is journaled,
    so a resumed run gets the same payload without consuming another.

    Attributes:
        signal: The signal's name.
        payload_type: What the payload is structured as (plain JSON data if not given).
        name: The wait's path segment; its index in its parent if not given.

    .. versionadded:: 0.1.0
    """

    signal: str
    payload_type: Any = attrs.field(default=Any, kw_only=True)
    name: str | None = attrs.field(default=None, kw_only=True)

    def __attrs_post_init__(self) -> None:
        """
        Validate the names.
        """
        check_name(self.name, f"WaitForSignal {self.signal!r}")
        if not self.signal:
            msg = f"WaitForSignal: signal must be a non-empty str, got {self.signal!r}"
            raise FlowDefinitionError(msg)

    @property
    def label(self) -> str:
        """
        ``signal:<name>``, for messages, logs and diagrams.
        """
        return f"signal:{self.signal}"

    async def execute(self, ctx: FlowContext, input: Any) -> Any:  # noqa: ARG002 -- protocol
        """
        Return the signal's payload, or pause the run until it arrives.
        """
        journal = ctx.journal
        if journal is None:
            raise _needs_journal(f"WaitForSignal {self.signal!r}", ctx)
        got = journal.get(SIGNAL, ctx.path, self.payload_type)
        if got is None:
            got = await journal.take_signal(ctx.path, self.signal, self.payload_type)
        if got is not None:
            return got.value
        msg = f"run {ctx.run_id} waits at {format_path(ctx.path)} for signal {self.signal!r}"
        raise FlowPaused(msg, path=ctx.path, run_id=ctx.run_id, signals=(self.signal,))

    def __repr__(self) -> str:
        return node_repr("WaitForSignal", [repr(self.signal)], name=self.name)


def _to_timedelta(value: float | dt.timedelta) -> dt.timedelta:
    if isinstance(value, dt.timedelta):
        return value
    return dt.timedelta(seconds=value)


@final
@attrs.frozen(repr=False)
class Sleep(Node[Any, Any]):
    """
    A durable timer: pass the input through once ``duration`` has passed.

    The deadline is set (by the context's clock) and journaled the first time
    the run reaches the timer; until it is due the run pauses, with
    ``FlowPaused.wake_at`` telling when to resume it. Outside a durable run it
    simply waits on the clock.

    Attributes:
        duration: How long, as a timedelta or seconds.
        name: The timer's path segment; its index in its parent if not given.

    .. versionadded:: 0.1.0
    """

    duration: dt.timedelta = attrs.field(converter=_to_timedelta)
    name: str | None = attrs.field(default=None, kw_only=True)

    def __attrs_post_init__(self) -> None:
        """
        Refuse a negative duration.
        """
        check_name(self.name, "Sleep")
        if self.duration < dt.timedelta(0):
            msg = f"Sleep: duration must not be negative, got {self.duration}"
            raise FlowDefinitionError(msg)

    @property
    def label(self) -> str:
        """
        ``sleep <duration>``, for messages, logs and diagrams.
        """
        return f"sleep {self.duration}"

    async def execute(self, ctx: FlowContext, input: Any) -> Any:
        """
        Pass ``input`` through if the deadline has passed, else pause until it.
        """
        journal = ctx.journal
        if journal is None:
            await ctx.clock.sleep(self.duration.total_seconds())
            return input
        got = journal.get(TIMER, ctx.path, dt.datetime)
        if got is None:
            deadline = ctx.clock.now() + self.duration
            journal.record(TIMER, ctx.path, deadline)
            await journal.commit()
        else:
            deadline = got.value
        if ctx.clock.now() >= deadline:
            return input
        msg = f"run {ctx.run_id} sleeps at {format_path(ctx.path)} until {deadline.isoformat()}"
        raise FlowPaused(msg, path=ctx.path, run_id=ctx.run_id, wake_at=deadline)

    def __repr__(self) -> str:
        return node_repr("Sleep", [repr(self.duration)], name=self.name)
