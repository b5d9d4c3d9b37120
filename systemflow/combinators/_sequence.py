"""
Sequence: the output of each child is the input of the next.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, final

import attrs

from .._core import Child, Flow, check_name, invoke, segment_children
from ._node import Node, as_flow, node_repr

if TYPE_CHECKING:
    from collections import abc

    from .._core import FlowContext


@final
@attrs.frozen(init=False, repr=False)
class Sequence(Node[Any, Any]):
    """
    Run children one after the other, each on the previous one's output.

    ``a >> b`` is ``Sequence(a, b)``. Unnamed sequences nested in a sequence
    are flattened, so grouping never changes the tree or its paths; a named
    sequence is a path segment of its own and stays whole. Plain callables
    given as children become steps. An empty sequence returns its input.

    Attributes:
        flows: The children, in order.
        name: The sequence's path segment; its index in its parent if not given.

    .. versionadded:: 0.1.0
    """

    flows: tuple[Flow[Any, Any], ...]
    name: str | None = attrs.field(default=None, kw_only=True)
    children: tuple[Child, ...] = attrs.field(init=False, eq=False, repr=False)

    def __init__(
        self, *flows: Flow[Any, Any] | abc.Callable[..., Any], name: str | None = None
    ) -> None:
        owner = f"Sequence {name!r}" if name else "Sequence"
        check_name(name, owner)
        flat: list[Flow[Any, Any]] = []
        for index, item in enumerate(flows):
            flow = as_flow(item, f"{owner} child {index}")
            if isinstance(flow, Sequence) and flow.name is None:
                flat.extend(flow.flows)
            else:
                flat.append(flow)
        self.__attrs_init__(tuple(flat), name=name)
        object.__setattr__(
            self, "children", segment_children(owner, [(None, f) for f in self.flows])
        )

    async def execute(self, ctx: FlowContext, input: Any) -> Any:
        """
        Feed ``input`` through the children in order and return the last output.
        """
        value = input
        for segment, child in self.children:
            value = await invoke(child, ctx, segment, value)
        return value

    def __repr__(self) -> str:
        return node_repr("Sequence", self.flows, name=self.name)
