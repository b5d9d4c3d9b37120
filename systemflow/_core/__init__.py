"""
The core: the flow protocol, contexts, errors, and running a tree.

It imports nothing from the rest of the package.
"""

from ._callables import callable_name, input_type, make_caller, return_type, wants_context
from ._clock import SYSTEM_CLOCK, Clock, SystemClock
from ._context import CompensationScope, FlowContext, Observer, Undo, new_run_id
from ._errors import (
    CompensationFailed,
    FlowDefinitionError,
    FlowError,
    FlowPaused,
    FlowTimeout,
    FlowVersionMismatch,
    RunExists,
    RunFinished,
    RunLocked,
    RunNotFound,
    SerializationError,
    StepFailed,
    format_path,
)
from ._execute import execute, run
from ._flow import (
    Child,
    Flow,
    Path,
    Segment,
    check_name,
    children_of,
    describe,
    is_wrapper,
    publish,
    segment_children,
    title,
    unwrap,
    walk,
)
from ._invoke import SKIPPED, WRAPPED, error_fields, invoke, named_error
from ._journal import COMPENSATED, DECISION, FAILED, SIGNAL, STEP, TIMER, Journal, Recorded

__all__ = [
    "COMPENSATED",
    "DECISION",
    "FAILED",
    "SIGNAL",
    "SKIPPED",
    "STEP",
    "SYSTEM_CLOCK",
    "TIMER",
    "WRAPPED",
    "Child",
    "Clock",
    "CompensationFailed",
    "CompensationScope",
    "Flow",
    "FlowContext",
    "FlowDefinitionError",
    "FlowError",
    "FlowPaused",
    "FlowTimeout",
    "FlowVersionMismatch",
    "Journal",
    "Observer",
    "Path",
    "Recorded",
    "RunExists",
    "RunFinished",
    "RunLocked",
    "RunNotFound",
    "Segment",
    "SerializationError",
    "StepFailed",
    "SystemClock",
    "Undo",
    "callable_name",
    "check_name",
    "children_of",
    "describe",
    "error_fields",
    "execute",
    "format_path",
    "input_type",
    "invoke",
    "is_wrapper",
    "make_caller",
    "named_error",
    "new_run_id",
    "publish",
    "return_type",
    "run",
    "segment_children",
    "title",
    "unwrap",
    "walk",
    "wants_context",
]
