"""
Parallel: run branches concurrently on the same input.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, final

import attrs

from .._core import (
    IN_BRANCH,
    Branches,
    Child,
    Flow,
    FlowDefinitionError,
    FlowPaused,
    check_name,
    format_path,
    interrupts,
    invoke,
    segment_children,
)
from ._node import Node, as_flow, node_repr

if TYPE_CHECKING:
    from collections import abc

    from .._core import FlowContext, Segment


async def _branch(  # noqa: PLR0917 -- private, called once
    child: Flow[Any, Any],
    ctx: FlowContext,
    segment: Segment | None,
    value: Any,
    limit: asyncio.Semaphore | None,
    paused: list[FlowPaused],
    branches: Branches,
) -> Any:
    # A pause must not cancel the siblings: they finish or pause too, and the
    # Parallel pauses once all of them have.
    IN_BRANCH.set(branches)  # this task's context only: lets the journal batch siblings
    try:
        # A failed non-critical branch yields None, not the shared input.
        if limit is None:
            return await invoke(child, ctx, segment, value, None)
        async with limit:
            return await invoke(child, ctx, segment, value, None)
    except FlowPaused as exc:
        paused.append(exc)
        return None
    except Exception as exc:
        if not interrupts(exc, ctx.journal is not None):
            branches.failed = True  # before the siblings are cancelled because of it
        raise


@final
@attrs.frozen(init=False, repr=False)
class Parallel(Node[Any, Any]):
    """
    Run every branch on the same input, concurrently; collect their outputs.

    ``Parallel(a, b)`` returns ``[out_a, out_b]`` in declaration order,
    whatever order the branches finish in; ``Parallel(a=x, b=y)`` returns
    ``{"a": out_x, "b": out_y}`` (the keywords are the branches' path
    segments, so ``name`` and ``max_concurrency`` cannot be branch names).
    Branches run as tasks of an ``asyncio.TaskGroup``: the first failure
    cancels the other branches and waits for them, then is raised as it is
    (a ``StepFailed`` whose path names the failed branch); failures that
    happened at the same time are added to it as notes. Nothing outlives the
    call. A non-critical branch that fails yields ``None``. If branches
    pause, the others still finish or pause, then the Parallel pauses.

    Attributes:
        flows: The branches, in order.
        keys: The branch names for the keyword form, else ``None``.
        max_concurrency: At most this many branches run at once, if given.
        name: The parallel's path segment; its index in its parent if not given.

    .. versionadded:: 0.1.0
    """

    flows: tuple[Flow[Any, Any], ...]
    keys: tuple[str, ...] | None = attrs.field(default=None, kw_only=True)
    max_concurrency: int | None = attrs.field(default=None, kw_only=True)
    name: str | None = attrs.field(default=None, kw_only=True)
    children: tuple[Child, ...] = attrs.field(init=False, eq=False, repr=False)

    def __init__(
        self,
        *flows: Flow[Any, Any] | abc.Callable[..., Any],
        max_concurrency: int | None = None,
        name: str | None = None,
        **named_flows: Flow[Any, Any] | abc.Callable[..., Any],
    ) -> None:
        owner = f"Parallel {name!r}" if name else "Parallel"
        check_name(name, owner)
        if flows and named_flows:
            msg = f"{owner}: give branches positionally (-> list) or by keyword (-> dict), not both"
            raise FlowDefinitionError(msg)
        if max_concurrency is not None and max_concurrency < 1:
            msg = f"{owner}: max_concurrency must be a positive int, got {max_concurrency!r}"
            raise FlowDefinitionError(msg)
        keys: tuple[str, ...] | None = None
        if named_flows:
            keys = tuple(named_flows)
            for key in keys:
                check_name(key, f"{owner} branch {key!r}")
            branches = [as_flow(f, f"{owner} branch {k!r}") for k, f in named_flows.items()]
        else:
            branches = [as_flow(f, f"{owner} branch {i}") for i, f in enumerate(flows)]
        self.__attrs_init__(tuple(branches), keys=keys, max_concurrency=max_concurrency, name=name)
        given = keys if keys is not None else (None,) * len(branches)
        object.__setattr__(
            self, "children", segment_children(owner, zip(given, branches, strict=True))
        )

    async def execute(self, ctx: FlowContext, input: Any) -> Any:
        """
        Run all branches on ``input``; return their outputs as a list or a dict.
        """
        limit = None if self.max_concurrency is None else asyncio.Semaphore(self.max_concurrency)
        paused: list[FlowPaused] = []
        branches = Branches(IN_BRANCH.get())
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(_branch(child, ctx, segment, input, limit, paused, branches))
                    for segment, child in self.children
                ]
        except BaseExceptionGroup as group_error:
            failure: BaseException | None = _first_failure(group_error)
        else:
            failure = None
        if failure is not None:
            raise failure
        if paused:
            raise _all_paused(ctx, paused)
        outputs = [task.result() for task in tasks]
        if self.keys is None:
            return outputs
        return dict(zip(self.keys, outputs, strict=True))

    def __repr__(self) -> str:
        if self.keys is None:
            return node_repr(
                "Parallel", self.flows, max_concurrency=self.max_concurrency, name=self.name
            )
        branches = [f"{k}={f!r}" for k, f in zip(self.keys, self.flows, strict=True)]
        return node_repr("Parallel", branches, max_concurrency=self.max_concurrency, name=self.name)


def _first_failure(group: BaseExceptionGroup[BaseException]) -> BaseException:
    # TaskGroup records failures in the order the tasks ended: the first one
    # is the failure that cancelled the others.
    first, *others = group.exceptions
    for other in others:
        where = format_path(getattr(other, "path", ()))
        first.add_note(f"branch {where} failed at the same time: {type(other).__name__}: {other}")
    return first


def _all_paused(ctx: FlowContext, paused: list[FlowPaused]) -> FlowPaused:
    # The Parallel waits for everything its branches wait for: every signal,
    # and the earliest timer (a scheduler wakes the run then).
    if len(paused) == 1:
        return paused[0]
    signals = list(dict.fromkeys(s for p in paused for s in p.signals))
    deadlines = [p.wake_at for p in paused if p.wake_at is not None]
    where = ", ".join(format_path(p.path) for p in paused)
    msg = f"run {ctx.run_id} waits in {len(paused)} branches: {where}"
    return FlowPaused(
        msg,
        path=paused[0].path,
        run_id=ctx.run_id,
        wake_at=min(deadlines) if deadlines else None,
        signals=signals,
    )
