"""
Compensatable: a saga scope that undoes completed steps when it fails.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, final

import attrs

from .._core import (
    COMPENSATED,
    Child,
    CompensationFailed,
    CompensationScope,
    Flow,
    StepFailed,
    check_name,
    error_fields,
    format_path,
    interrupts,
    invoke,
    segment_children,
    sibling_failed,
    title,
)
from ._node import Node, as_flow, node_repr

if TYPE_CHECKING:
    from collections import abc

    from .._core import FlowContext


@final
@attrs.frozen(init=False, repr=False)
class Compensatable(Node[Any, Any]):
    """
    A saga scope: run the children in sequence; on failure, undo what completed.

    Every step with ``compensate=`` that completes anywhere below the scope
    (inside a ``Parallel``, a nested ``Sequence``, ...) registers its undo
    with the nearest enclosing scope. When a child fails, the scope runs the
    undos newest first, each at most once, with the input and output of the
    step it undoes, then raises the original error with a note naming what
    was undone. If undos fail too, it raises ``CompensationFailed``, which
    carries the original error and every undo failure: none is swallowed.

    A nested scope that succeeds hands its undos to its parent scope, so they
    run if a later step of the parent fails. If the scope is cancelled, the
    undos still run, shielded from the cancellation, before it goes on. A
    pause (``FlowPaused``) is not a failure and undoes nothing; nor, in a
    durable run, is a cancellation (the run is handed back and resumes from
    its journal) or a ``ServiceNotFound`` (the run waits for a process that
    has the service).

    Attributes:
        flows: The children, run in order like a ``Sequence``.
        name: The scope's path segment; its index in its parent if not given.

    .. versionadded:: 0.1.0
    """

    flows: tuple[Flow[Any, Any], ...]
    name: str | None = attrs.field(default=None, kw_only=True)
    children: tuple[Child, ...] = attrs.field(init=False, eq=False, repr=False)

    def __init__(
        self, *flows: Flow[Any, Any] | abc.Callable[..., Any], name: str | None = None
    ) -> None:
        owner = f"Compensatable {name!r}" if name else "Compensatable"
        check_name(name, owner)
        items = tuple(as_flow(f, f"{owner} child {i}") for i, f in enumerate(flows))
        self.__attrs_init__(items, name=name)
        object.__setattr__(self, "children", segment_children(owner, [(None, f) for f in items]))

    async def execute(self, ctx: FlowContext, input: Any) -> Any:
        """
        Run the children in order inside a new compensation scope.
        """
        scope = CompensationScope()
        inner = ctx._with(scope=scope)  # noqa: SLF001 -- the context's private hook, ours
        value = input
        try:
            for segment, child in self.children:
                value = await invoke(child, inner, segment, value)
        except asyncio.CancelledError:
            # A durable run cancelled from outside is handed back, not ended: it
            # goes on from its journal when resumed, so nothing is undone. A
            # branch cancelled because a sibling failed undoes its own.
            if ctx.journal is None or sibling_failed():
                await _shielded(self._compensate(ctx, scope, "cancelled"))
            raise
        except Exception as exc:
            if interrupts(exc, ctx.journal is not None):
                raise
            errors = await self._compensate(ctx, scope, exc)
            self._raise(ctx, exc, errors)
        parent = ctx._scope  # noqa: SLF001 -- the context's private hook, ours
        if parent is not None:
            parent.undos.extend(scope.undos)
        return value

    async def _compensate(
        self, ctx: FlowContext, scope: CompensationScope, reason: BaseException | str
    ) -> list[StepFailed]:
        errors: list[StepFailed] = []
        done: list[str] = []
        log = ctx.logger
        journal = ctx.journal
        # Newest first by completion order (the journal's, in a durable run, so a
        # resumed run undoes in the order the steps first completed).
        scope.undos.sort(key=lambda undo: undo.seq)
        while scope.undos:
            undo = scope.undos.pop()  # popped, so at most once
            where = format_path(undo.ctx.path)
            if journal is not None and journal.get(COMPENSATED, undo.ctx.path) is not None:
                done.append(where)  # undone before a restart: not again
                continue
            if journal is not None:
                await journal.settle()  # an undo is an effect: the records go first
            try:
                await undo.node.undo(undo.ctx, undo.input, undo.output)  # type: ignore[attr-defined]
            except Exception as exc:  # collected and raised below
                if interrupts(exc, journal is not None):
                    raise  # handed back: a resume compensates again, skipping what is done
                msg = (
                    f"compensation of {title(undo.node)} at {where} "
                    f"in run {undo.ctx.run_id} failed: {type(exc).__name__}: {exc}"
                )
                error = StepFailed(msg, path=undo.ctx.path, run_id=undo.ctx.run_id)
                error.__cause__ = exc
                errors.append(error)
                log.error(  # noqa: TRY400 -- the error travels on, no traceback here
                    "systemflow.compensation_failed", step=where, **error_fields(error)
                )
            else:
                if journal is not None:
                    journal.record(COMPENSATED, undo.ctx.path, value=True)
                    await journal.commit()
                done.append(where)
                log.info("systemflow.compensated", step=where, failed=_failed_path(reason))
        if done and isinstance(reason, BaseException):
            reason.add_note(f"compensated, newest first: {', '.join(done)}")
        return errors

    def _raise(self, ctx: FlowContext, original: Exception, errors: list[StepFailed]) -> None:
        if not errors:
            raise original
        where = format_path(ctx.path)
        failed = ", ".join(format_path(e.path) for e in errors)
        msg = (
            f"{title(self)} at {where} in run {ctx.run_id} failed "
            f"({original}) and {len(errors)} undo(s) failed too: {failed}"
        )
        error = CompensationFailed(
            msg, path=ctx.path, run_id=ctx.run_id, original=original, errors=errors
        )
        for undo_error in errors:
            error.add_note(str(undo_error))
        raise error from original

    def __repr__(self) -> str:
        return node_repr("Compensatable", self.flows, name=self.name)


async def _shielded(work: abc.Coroutine[Any, Any, list[StepFailed]]) -> None:
    # Run the undos to the end even if we are cancelled again meanwhile. The
    # cancellation goes on afterwards and cannot carry undo failures: those
    # were logged as systemflow.compensation_failed by _compensate.
    task = asyncio.ensure_future(work)
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            continue


def _failed_path(reason: BaseException | str) -> str:
    # What made the scope undo: the failed node's path, or "cancelled".
    if isinstance(reason, str):
        return reason
    return format_path(getattr(reason, "path", ()))
