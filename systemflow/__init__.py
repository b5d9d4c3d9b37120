"""
systemflow: business flows as trees of small, composable flow objects.

Build a tree from leaves (``Step``, ``Call``) and combinators (``Sequence``,
``Conditional``, ``Parallel``, ``Compensatable``, ``Assign``, ``Instrumented``),
then run it with ``execute`` (async) or ``run`` (sync); draw it with ``to_mermaid``.
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

from ._core import (
    Clock,
    CompensationFailed,
    Flow,
    FlowContext,
    FlowDefinitionError,
    FlowError,
    FlowPaused,
    FlowTimeout,
    FlowVersionMismatch,
    Path,
    RunExists,
    RunFinished,
    RunLocked,
    RunNotFound,
    Segment,
    SerializationError,
    ServiceNotFound,
    StepFailed,
    SystemClock,
    execute,
    publish,
    run,
    walk,
)
from ._diagrams import to_mermaid
from .combinators import (
    Assign,
    Call,
    Compensatable,
    Conditional,
    Parallel,
    RetryPolicy,
    Sequence,
    Sleep,
    Step,
    WaitForSignal,
    step,
)
from .instrumentation import Instrumented
from .state import Stateful, Worker

try:
    __version__ = _version("systemflow")
except PackageNotFoundError:  # pragma: no cover -- running from a bare checkout
    __version__ = "0.0.0"

__all__ = [
    "Assign",
    "Call",
    "Clock",
    "Compensatable",
    "CompensationFailed",
    "Conditional",
    "Flow",
    "FlowContext",
    "FlowDefinitionError",
    "FlowError",
    "FlowPaused",
    "FlowTimeout",
    "FlowVersionMismatch",
    "Instrumented",
    "Parallel",
    "Path",
    "RetryPolicy",
    "RunExists",
    "RunFinished",
    "RunLocked",
    "RunNotFound",
    "Segment",
    "Sequence",
    "SerializationError",
    "ServiceNotFound",
    "Sleep",
    "Stateful",
    "Step",
    "StepFailed",
    "SystemClock",
    "WaitForSignal",
    "Worker",
    "execute",
    "run",
    "step",
    "to_mermaid",
    "walk",
]

publish(globals(), "systemflow")
