"""
The testing kit: run flows against mocked services in ordinary unit tests.

``MockService`` stands in for a service; ``FlowCase`` and ``FlowTestCase``
run tables of cases; ``FlowHarness`` runs a flow under a ``FakeClock``, with
injected failures, and durably with simulated crashes (``CrashPoint``).
``systemflow.testing.strategies`` has hypothesis strategies, and the pytest
plugin fixtures for a harness and for stores. See docs/testing.md.
"""

from .._core import publish
from ._clock import FakeClock
from ._mock import CallLog, MockMethod, MockService, ServiceCall, UnexpectedCall

__all__ = [
    "CallLog",
    "FakeClock",
    "MockMethod",
    "MockService",
    "ServiceCall",
    "UnexpectedCall",
]

publish(globals(), "systemflow.testing")
