"""
Diagrams of flow trees: Mermaid flowcharts, coloured by a run's history.
"""

from ._mermaid import to_mermaid

__all__ = ["to_mermaid"]
