"""
The testing kit: run flows against mocked services in ordinary unit tests.

``MockService`` stands in for a service; ``FlowCase`` and ``FlowTestCase``
run tables of cases; ``FlowHarness`` runs a flow under a ``FakeClock``, with
injected failures, and durably with simulated crashes (``CrashPoint``).
``systemflow.testing.strategies`` has hypothesis strategies, and the pytest
plugin fixtures for a harness and for stores. See docs/testing.md.
"""

from .._core import publish
from ._assertions import (
    assert_call_order,
    assert_called,
    assert_compensated,
    assert_failed_at,
    assert_not_called,
)
from ._case import FlowCase, FlowTestCase
from ._clock import FakeClock
from ._faults import CrashingStore, CrashPoint, SimulatedCrash
from ._harness import DurableFlow, FlowHarness, FlowResult
from ._mock import CallLog, MockMethod, MockService, ServiceCall, UnexpectedCall
from ._points import list_crash_points, list_failure_points

__all__ = [
    "CallLog",
    "CrashPoint",
    "CrashingStore",
    "DurableFlow",
    "FakeClock",
    "FlowCase",
    "FlowHarness",
    "FlowResult",
    "FlowTestCase",
    "MockMethod",
    "MockService",
    "ServiceCall",
    "SimulatedCrash",
    "UnexpectedCall",
    "assert_call_order",
    "assert_called",
    "assert_compensated",
    "assert_failed_at",
    "assert_not_called",
    "list_crash_points",
    "list_failure_points",
]

publish(globals(), "systemflow.testing")
