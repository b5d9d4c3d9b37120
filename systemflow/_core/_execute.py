"""
Running a tree from the top.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, TypeVar

from ._context import FlowContext
from ._invoke import invoke

if TYPE_CHECKING:
    from collections import abc

    from ._flow import Flow

T = TypeVar("T")
U = TypeVar("U")


async def execute(
    flow: Flow[T, U],
    input: T,
    services: abc.Mapping[str, Any] | None = None,
    *,
    context: FlowContext | None = None,
) -> U:
    """
    Run a tree on ``input`` and return its output.

    Args:
        flow: The root of the tree.
        input: The root's input.
        services: The services steps find in ``ctx.services``.
        context: A root context to run in, for a chosen run id, logger or
            clock; ``services`` then must not be given too.

    Raises:
        StepFailed: A node failed; its ``path`` says which.

    .. versionadded:: 0.1.0
    """
    if context is None:
        context = FlowContext(services=services)
    elif services is not None:
        msg = "execute: give services either directly or in context=, not both"
        raise TypeError(msg)
    out: U = await invoke(flow, context, None, input)
    return out


def run(
    flow: Flow[T, U],
    input: T,
    services: abc.Mapping[str, Any] | None = None,
    *,
    context: FlowContext | None = None,
) -> U:
    """
    Run a tree from synchronous code (``asyncio.run`` around ``execute``).

    Raises:
        RuntimeError: Called from a running event loop; ``await execute(...)`` there.

    .. versionadded:: 0.1.0
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(execute(flow, input, services, context=context))
    msg = "systemflow.run() cannot be called from a running event loop; use await execute()"
    raise RuntimeError(msg)
