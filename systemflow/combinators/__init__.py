"""
The nodes trees are built from: leaves and the combinators that join them.
"""

from ._assign import Assign
from ._compensatable import Compensatable
from ._conditional import Conditional
from ._parallel import Parallel
from ._retry import RetryPolicy
from ._sequence import Sequence
from ._step import Call, Step, step
from ._wait import Sleep, WaitForSignal

__all__ = [
    "Assign",
    "Call",
    "Compensatable",
    "Conditional",
    "Parallel",
    "RetryPolicy",
    "Sequence",
    "Sleep",
    "Step",
    "WaitForSignal",
    "step",
]
