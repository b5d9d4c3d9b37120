"""
What a durable run's journal offers the nodes that run in it.

The core only knows this protocol; ``systemflow.state`` implements it. Nodes
look recorded results up by kind and path (synchronously: the journal of a run
is loaded before it runs) and record new ones (synchronously too), which are
written before the next effect starts (``settle``), at once in a ``Parallel``
branch (``commit``), or with the run's end.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol, final

if TYPE_CHECKING:
    from ._flow import Path


@final
class Branches:
    """
    Strictly private: the branches of one ``Parallel`` run, and whether one of them failed.
    """

    __slots__ = ("failed", "outer")

    def __init__(self, outer: Branches | None) -> None:
        self.outer = outer  # the branches of the enclosing Parallel, if any
        self.failed = False


IN_BRANCH: ContextVar[Branches | None] = ContextVar("systemflow_in_branch", default=None)
"""
Inside a ``Parallel`` branch, its siblings (else ``None``): they may be about to
record too (group commit), and a branch cancelled because one of them failed
is not a cancelled run.
"""


def sibling_failed() -> bool:
    """
    Tell whether a branch of this or an enclosing ``Parallel`` failed.

    A cancellation then comes from that failure (the ``Parallel`` stops the
    other branches), not from outside the run.
    """
    branches = IN_BRANCH.get()
    while branches is not None:
        if branches.failed:
            return True
        branches = branches.outer
    return False


STEP = "step"
"""A leaf's output."""
FAILED = "failed"
"""A leaf's failure: ``{"error": message, "error_type": ..., "cause_type": ...}``."""
DECISION = "decision"
"""A ``Conditional``'s choice (a bool)."""
TIMER = "timer"
"""A ``Sleep``'s deadline (an aware datetime)."""
SIGNAL = "signal"
"""The payload a ``WaitForSignal`` consumed."""
COMPENSATED = "compensated"
"""An undo that completed, at the path of the step it undid."""


@final
class Recorded:
    """
    Strictly private: a value found in the journal, and its place in the run's order.
    """

    __slots__ = ("seq", "value")

    def __init__(self, value: Any, seq: int) -> None:
        self.value = value
        self.seq = seq


class Journal(Protocol):
    """
    A durable run's record of everything that is not a pure function of its input.

    .. versionadded:: 0.1.0
    """

    def get(self, kind: str, path: Path, type_: Any = Any) -> Recorded | None:
        """
        Return what was recorded for ``kind`` at ``path``, structured as ``type_``.
        """
        ...

    def record(self, kind: str, path: Path, value: Any) -> Recorded:
        """
        Record ``value`` for ``kind`` at ``path``, durable by the next ``settle``.

        Synchronous, so that nothing can come between a step's record and the
        registration of its undo. The record is kept in order with the run's
        others; a run's last records are written with its end (pause,
        completion, failure).

        Raises:
            SerializationError: ``value`` cannot be stored (nothing is recorded).
        """
        ...

    async def commit(self) -> None:
        """
        In a ``Parallel`` branch, store this branch's records now; elsewhere, nothing.

        A branch's siblings do not settle its records before their effects, so
        a branch stores its own, in one commit with the records the other
        branches make meanwhile (group commit).
        """
        ...

    async def settle(self) -> None:
        """
        Make every record so far durable: called before an effect starts.

        A step's effect thus never runs before the records of the steps that
        completed earlier are stored, and a crash loses at most the records of
        steps whose effects may run once more (steps are at-least-once).
        """
        ...

    async def take_signal(self, path: Path, signal: str, type_: Any = Any) -> Recorded | None:
        """
        Consume the oldest pending ``signal`` for this run into ``path``, if any.
        """
        ...
