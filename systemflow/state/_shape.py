"""
A tree's shape: what a run's fingerprint is made of, and its input and output types.
"""

from __future__ import annotations

import hashlib
from typing import Any

from .._core import Flow, format_path, is_wrapper, unwrap, walk
from ..combinators import Assign, Compensatable, Conditional, Parallel, Sequence


def shape(flow: Flow[Any, Any]) -> list[str]:
    """
    Describe a tree, one line per node: path, kind, and what it runs.

    What it runs is the node's label: a function, a service method, a signal, a duration.

    Two trees with the same lines run the same journal: a resumed run can
    reuse what it recorded. Anything else is a new version of the flow.
    """
    return [
        f"{format_path(path)} {type(node).__name__} {getattr(node, 'label', '')}".rstrip()
        for path, node in walk(flow)
        if not is_wrapper(node)  # Instrumented and the like journal nothing
    ]


def fingerprint(lines: list[str]) -> str:
    """
    Return a short, stable hash of a shape.
    """
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def diff(stored: list[str], current: list[str]) -> str:
    """
    Say what changed between two shapes, in a few lines.
    """
    removed = [line for line in stored if line not in current]
    added = [line for line in current if line not in stored]
    parts = [f"- {line}" for line in removed] + [f"+ {line}" for line in added]
    if not parts:
        return "the nodes are the same but their order changed"
    shown = 10
    more = f"; ... {len(parts) - shown} more" if len(parts) > shown else ""
    return "; ".join(parts[:shown]) + more


def edge_types(flow: Flow[Any, Any]) -> tuple[Any, Any]:
    """
    Return the input and output types of a tree, from its steps' annotations.

    ``Any`` where they cannot be told (a ``Parallel``'s output, a ``Call``).
    """
    node = unwrap(flow)
    if isinstance(node, Sequence | Compensatable):
        if not node.flows:
            return Any, Any
        return edge_types(node.flows[0])[0], edge_types(node.flows[-1])[1]
    if isinstance(node, Conditional):
        then = edge_types(node.then)
        other = (then[0], then[0]) if node.otherwise is None else edge_types(node.otherwise)
        return then[0], then[1] if then[1] == other[1] else Any
    if isinstance(node, Parallel):
        return (edge_types(node.flows[0])[0] if node.flows else Any), Any
    if isinstance(node, Assign):
        first = edge_types(node.flows[0])[0]
        return first, first
    return getattr(node, "input_type", Any), getattr(node, "output_type", Any)
