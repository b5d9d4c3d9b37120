"""
The ``systemflow`` command: look at durable runs, move them on, draw flows.
"""

from ._app import main

__all__ = ["main"]
