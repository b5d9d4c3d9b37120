"""
Durable runs: ``Stateful``, the state stores, and the records they keep.
"""

from .._core import publish
from ._memory import InMemoryStateStore
from ._model import Event, RunRecord, RunStatus
from ._sql import SqlStateStore
from ._stateful import Stateful
from ._store import StateStore
from ._worker import Worker

__all__ = [
    "Event",
    "InMemoryStateStore",
    "RunRecord",
    "RunStatus",
    "SqlStateStore",
    "StateStore",
    "Stateful",
    "Worker",
]

publish(globals(), "systemflow.state")
