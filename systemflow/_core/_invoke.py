"""
The one place where a node runs a child.

Every combinator calls its children through ``invoke``. It makes the child's
context; in a durable run, returns a leaf's journaled result instead of running
it again, and journals a leaf's new result; hands the run to instrumentation
when an ``Instrumented`` asked for it; turns a foreign exception into a
``StepFailed`` naming the node's path; lets a non-critical node's failure go
(the parent says what the skipped node yields: by default its input, so a
Sequence carries on with the same value); and registers a completed step's undo
with the nearest compensation scope. Pauses and cancellation pass through before
any failure handling: they never trigger a retry or a compensation.
"""

from __future__ import annotations

import enum
import itertools
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final

from ._context import Undo
from ._errors import FlowError, StepFailed, format_path, interrupts
from ._flow import describe, title
from ._journal import FAILED, STEP

if TYPE_CHECKING:
    from collections import abc

    from ._context import FlowContext
    from ._flow import Flow, Segment
    from ._journal import Journal


class Skip(enum.Enum):
    """
    Strictly private: what a failed non-critical node yields, when not a value.
    """

    INPUT = enum.auto()  # its own input, as if it were not there
    MARKER = enum.auto()  # this marker, for a parent that must tell (Assign)
    RAISE = enum.auto()  # nothing: the failure goes up to the wrapper's parent


SKIPPED: Final = Skip.MARKER
WRAPPED: Final = Skip.RAISE
"""For wrappers: a failure goes up, and the wrapper's parent decides what a skip yields."""

# Completion order of undos outside a journal (inside one, the journal's order).
_completions = itertools.count()

NODE_HOOK: ContextVar[abc.Callable[[Flow[Any, Any], FlowContext], None] | None] = ContextVar(
    "systemflow_node_hook", default=None
)
"""
Strictly private, for ``systemflow.testing``'s fault injection: when set, it is
called with each node and its context just before the node runs (not when a
durable run reuses a journaled result). What it raises counts as the node's own
failure: wrapped, journaled, compensated or ignored like any other.
"""


async def invoke(  # noqa: C901 -- one frame per node on the hot path (see the docstring)
    node: Flow[Any, Any],
    parent: FlowContext,
    segment: Segment | None,
    value: Any,
    skipped: Any = Skip.INPUT,
) -> Any:
    """
    Run ``node`` on ``value`` as the child of ``parent`` at ``segment``.

    ``segment=None`` runs the node at its parent's own path (wrappers, the root).
    ``skipped`` is what the node yields if it is non-critical and fails.

    One coroutine per node, on the path of every step: what it does is inline.
    """
    ctx = parent if segment is None else parent.child(segment)
    shared = ctx._shared  # noqa: SLF001 -- read once: the run's journal, observer and scope
    journal = shared.journal
    if journal is not None and getattr(node, "is_effect", False):
        found, out = _replay(node, ctx, value, skipped, journal)
        if found:
            return out
        await journal.settle()  # earlier records are stored before this effect runs
    else:
        journal = None  # only leaves with effects are journaled here
    observer = shared.observer
    token = None if observer is None else observer.node_started(node, ctx, value)
    try:
        try:
            hook = NODE_HOOK.get()
            if hook is not None:
                hook(node, ctx)
            out = await node.execute(ctx, value)
        except Exception as exc:
            if interrupts(exc, shared.journal is not None):
                raise  # a pause or a hand-back: not a failure of this node
            out = await _failure(node, ctx, value, exc, skipped=skipped, journal=journal)
        else:
            if journal is None:
                _register_undo(node, ctx, value, out, next(_completions))
            else:
                await _journaled(node, ctx, value, out, journal)
    except BaseException as exc:
        if observer is not None:
            observer.node_finished(token, exc, None)
        raise
    if observer is not None:
        observer.node_finished(token, None, out)
    return out


async def _journaled(
    node: Flow[Any, Any], ctx: FlowContext, value: Any, out: Any, journal: Journal
) -> None:
    # Recorded and registered with no await between: a cancellation cannot
    # leave a stored step without its undo.
    _register_undo(node, ctx, value, out, journal.record(STEP, ctx.path, out).seq)
    await journal.commit()


async def _failure(
    node: Flow[Any, Any],
    ctx: FlowContext,
    value: Any,
    exc: Exception,
    *,
    skipped: Any,
    journal: Journal | None,
) -> Any:
    # The node failed: the failure is named, journaled, then raised, or skipped
    # if the node is non-critical.
    error = named_error(node, ctx, exc)
    if journal is not None:
        journal.record(FAILED, ctx.path, error_fields(error))
        await journal.commit()
    _failed(node, ctx, error, skipped)
    return value if skipped is Skip.INPUT else skipped


def _replay(
    node: Flow[Any, Any], ctx: FlowContext, value: Any, skipped: Any, journal: Journal
) -> tuple[bool, Any]:
    # A leaf of a durable run that already ran: reuse its recorded outcome.
    observer = ctx._observer  # noqa: SLF001
    done = journal.get(STEP, ctx.path, getattr(node, "output_type", Any))
    if done is not None:
        if observer is not None:
            observer.node_reused(node, ctx, None, done.value)
        _register_undo(node, ctx, value, done.value, done.seq)
        return True, done.value
    failed = journal.get(FAILED, ctx.path)
    if failed is None:
        return False, None
    error = StepFailed(f"{failed.value['error']} (recorded)", path=ctx.path, run_id=ctx.run_id)
    out = value if skipped is Skip.INPUT else skipped
    if observer is not None:  # as the first run reported it: skipped, or failed
        skips = _skips(node, skipped)
        observer.node_reused(node, ctx, None if skips else error, out if skips else None)
    _failed(node, ctx, error, skipped)
    return True, out


def _register_undo(node: Flow[Any, Any], ctx: FlowContext, value: Any, out: Any, seq: int) -> None:
    scope = ctx._scope  # noqa: SLF001
    if scope is not None and getattr(node, "compensate", None) is not None:
        scope.undos.append(Undo(node, ctx, value, out, seq))


def named_error(node: Flow[Any, Any], ctx: FlowContext, exc: Exception) -> FlowError:
    """
    Return ``exc`` as a ``FlowError`` that names the node's path and run.
    """
    if isinstance(exc, FlowError):
        return exc
    msg = (
        f"{title(node)} at {format_path(ctx.path)} "
        f"in run {ctx.run_id} failed: {type(exc).__name__}: {exc}"
    )
    error = StepFailed(msg, path=ctx.path, run_id=ctx.run_id)
    error.__cause__ = exc
    return error


def _skips(node: Flow[Any, Any], skipped: Any) -> bool:
    # A failure of this node is skipped here: it is non-critical, and its parent decides.
    return skipped is not Skip.RAISE and not getattr(node, "critical", True)


def _failed(node: Flow[Any, Any], ctx: FlowContext, error: FlowError, skipped: Any) -> None:
    # Raise the failure, unless the node is non-critical: then log it and go on.
    if not _skips(node, skipped):
        raise error
    ctx.bind_logger(flow=describe(node), node=type(node).__name__).warning(
        "systemflow.step_failed_ignored", **error_fields(error)
    )


def error_fields(error: BaseException) -> dict[str, str]:
    """
    Describe an error for a log event or a journal: message, type, type of its cause.
    """
    fields = {"error": str(error), "error_type": type(error).__name__}
    if error.__cause__ is not None:
        fields["cause_type"] = type(error.__cause__).__name__
    return fields
