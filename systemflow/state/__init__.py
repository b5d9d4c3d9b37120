"""
Durable runs: ``Stateful``, the state stores, and the records they keep.
"""

from ._memory import InMemoryStateStore
from ._model import Event, RunRecord, RunStatus
from ._stateful import Stateful
from ._store import StateStore

__all__ = [
    "Event",
    "InMemoryStateStore",
    "RunRecord",
    "RunStatus",
    "StateStore",
    "Stateful",
]

# Tracebacks and reprs name the public home, not the private module.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("systemflow.state._"):
        _obj.__module__ = "systemflow.state"
del _name, _obj
