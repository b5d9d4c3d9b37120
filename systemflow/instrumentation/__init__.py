"""
Observing flows: structlog events, OpenTelemetry spans and metrics.
"""

from ._instrumented import Instrumented

__all__ = ["Instrumented"]
