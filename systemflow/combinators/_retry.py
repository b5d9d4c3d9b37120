"""
Retry policies, and the attempt loop leaves run their calls in.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections import abc
from typing import TYPE_CHECKING, Any, final

import attrs

from .._core import (
    FlowDefinitionError,
    FlowPaused,
    FlowTimeout,
    ServiceNotFound,
    describe,
    format_path,
    title,
)

if TYPE_CHECKING:
    from .._core import Flow, FlowContext


def _check_positive(owner: str, field: str, value: float, *, allow_zero: bool) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        bound = "at least 0" if allow_zero else "greater than 0"
        msg = f"{owner}: {field} must be {bound}, got {value!r}"
        raise FlowDefinitionError(msg)


RetryOn = tuple[type[BaseException], ...] | abc.Callable[[BaseException], bool]


def _to_retry_on(value: object) -> RetryOn:
    types = (value,) if isinstance(value, type) else value
    if isinstance(types, list | tuple):
        if not all(isinstance(t, type) and issubclass(t, BaseException) for t in types):
            msg = f"RetryPolicy: retry_on must hold exception types, got {value!r}"
            raise FlowDefinitionError(msg)
        return tuple(types)
    if callable(types):
        return types
    msg = f"RetryPolicy: retry_on must be exception types or a predicate, got {value!r}"
    raise FlowDefinitionError(msg)


@final
@attrs.frozen
class RetryPolicy:
    """
    How a step retries: exponential backoff with jitter, filtered by exception.

    The delay before attempt ``n + 1`` is ``initial_delay * backoff ** (n - 1)``,
    plus up to ``jitter`` of itself at random, capped at ``max_delay``. Every
    scheduled retry logs ``systemflow.retry_scheduled`` with the attempt number.

    Attributes:
        max_attempts: Attempts in all, the first one included.
        initial_delay: Seconds before the second attempt.
        backoff: Factor the delay grows by per attempt.
        max_delay: Upper bound of any delay, in seconds.
        retry_on: Exception types to retry, or a predicate on the exception.
        jitter: Fraction of the delay added at random (0 turns it off).

    .. versionadded:: 0.1.0
    """

    max_attempts: int = 3
    initial_delay: float = 0.1
    backoff: float = 2.0
    max_delay: float = 10.0
    retry_on: RetryOn = attrs.field(default=(Exception,), converter=_to_retry_on)
    jitter: float = 0.1

    def __attrs_post_init__(self) -> None:
        """
        Refuse settings that make no sense, naming the field.
        """
        if self.max_attempts < 1:
            msg = f"RetryPolicy: max_attempts must be at least 1, got {self.max_attempts!r}"
            raise FlowDefinitionError(msg)
        _check_positive("RetryPolicy", "initial_delay", self.initial_delay, allow_zero=True)
        _check_positive("RetryPolicy", "max_delay", self.max_delay, allow_zero=True)
        _check_positive("RetryPolicy", "jitter", self.jitter, allow_zero=True)
        if self.backoff < 1:
            msg = f"RetryPolicy: backoff must be at least 1, got {self.backoff!r}"
            raise FlowDefinitionError(msg)

    def retries(self, exc: BaseException) -> bool:
        """
        Tell whether ``exc`` is worth another attempt under this policy.
        """
        if isinstance(exc, (FlowPaused, ServiceNotFound)):
            return False  # not a failure, or not one that another attempt mends
        if isinstance(self.retry_on, tuple):
            return isinstance(exc, self.retry_on)
        return bool(self.retry_on(exc))

    def delay(self, attempt: int) -> float:
        """
        Return the seconds to wait after failed attempt number ``attempt`` (from 1).
        """
        base = self.initial_delay * self.backoff ** (attempt - 1)
        if self.jitter:
            base += random.uniform(0, self.jitter * base)  # noqa: S311 -- not cryptography
        return min(base, self.max_delay)


def to_seconds(value: float | dt.timedelta | None) -> float | None:
    """
    Convert a timeout given as seconds or a timedelta to seconds.
    """
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return None if value is None else float(value)


async def call_with_policy(
    node: Flow[Any, Any],
    ctx: FlowContext,
    call: abc.Callable[..., abc.Awaitable[Any]],
    *args: Any,
    retry: RetryPolicy | None,
    timeout: float | None,  # noqa: ASYNC109 -- per attempt, applied with asyncio.timeout
) -> Any:
    """
    Await ``call(ctx, *args)`` under a timeout per attempt and a retry policy.

    Raises:
        FlowTimeout: An attempt ran past ``timeout`` (and was the last attempt).
    """
    attempt = 1
    while True:
        try:
            if timeout is None:
                return await call(ctx, *args)
            return await _with_timeout(node, ctx, call(ctx, *args), timeout)
        except Exception as exc:
            if retry is None or not retry.retries(exc):
                raise
            if attempt >= retry.max_attempts:
                exc.add_note(f"gave up after {attempt} attempts (RetryPolicy)")
                raise
            delay = retry.delay(attempt)
            ctx.bind_logger(flow=describe(node), node=type(node).__name__).warning(
                "systemflow.retry_scheduled",
                attempt=attempt,
                max_attempts=retry.max_attempts,
                delay=round(delay, 3),
                error=str(exc),
                error_type=type(exc).__name__,
            )
            await ctx.clock.sleep(delay)
            attempt += 1


async def _with_timeout(
    node: Flow[Any, Any],
    ctx: FlowContext,
    awaitable: abc.Awaitable[Any],
    timeout: float,  # noqa: ASYNC109
) -> Any:
    try:
        async with asyncio.timeout(timeout) as deadline:
            return await awaitable
    except TimeoutError as exc:
        if not deadline.expired():
            raise  # the step's own TimeoutError, not our deadline
        msg = (
            f"{title(node)} at {format_path(ctx.path)} "
            f"in run {ctx.run_id} timed out after {timeout} s"
        )
        raise FlowTimeout(msg, path=ctx.path, run_id=ctx.run_id, timeout=timeout) from exc
