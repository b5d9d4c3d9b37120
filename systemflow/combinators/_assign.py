"""
Assign: keep the value flowing through a sequence and add computed fields to it.
"""

from __future__ import annotations

import dataclasses
from collections import abc
from typing import TYPE_CHECKING, Any, final

import attrs

from .._core import (
    SKIPPED,
    Child,
    Flow,
    FlowDefinitionError,
    check_name,
    invoke,
    segment_children,
)
from ._node import Node, as_flow, node_repr

if TYPE_CHECKING:
    from .._core import FlowContext


def _merge(value: Any, key: str, out: Any) -> Any:
    if isinstance(value, abc.Mapping):
        return {**value, key: out}
    if attrs.has(type(value)):
        return attrs.evolve(value, **{key: out})
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{key: out})
    msg = (
        f"cannot set {key!r} on a {type(value).__name__}; "
        "the input must be a mapping, an attrs class or a dataclass"
    )
    raise TypeError(msg)


@final
@attrs.frozen(init=False, repr=False)
class Assign(Node[Any, Any]):
    """
    Run each flow on the value and store its output under its keyword.

    ``Assign(payment=charge)`` runs ``charge`` on its input and returns the
    input with ``payment`` set to charge's output: a new dict for a mapping,
    ``attrs.evolve`` for an attrs instance, ``dataclasses.replace`` for a
    dataclass. So a value computed early (a reservation) is still there for a
    later step (its undo, the final result). Flows run in the order given,
    and each sees the fields the earlier ones set. The keywords are the
    flows' path segments. A non-critical flow that fails leaves its field unset.

    Attributes:
        flows: The flows, in order.
        keys: The field each flow's output is stored under.
        name: The assign's path segment; its index in its parent if not given.

    .. versionadded:: 0.1.0
    """

    flows: tuple[Flow[Any, Any], ...]
    keys: tuple[str, ...] = attrs.field(kw_only=True)
    name: str | None = attrs.field(default=None, kw_only=True)
    children: tuple[Child, ...] = attrs.field(init=False, eq=False, repr=False)

    def __init__(
        self, *, name: str | None = None, **fields: Flow[Any, Any] | abc.Callable[..., Any]
    ) -> None:
        owner = f"Assign {name!r}" if name else "Assign"
        check_name(name, owner)
        if not fields:
            msg = f"{owner}: give at least one field=flow"
            raise FlowDefinitionError(msg)
        keys = tuple(fields)
        for key in keys:
            check_name(key, f"{owner} field {key!r}")
        flows = tuple(as_flow(f, f"{owner} field {k!r}") for k, f in fields.items())
        self.__attrs_init__(flows, keys=keys, name=name)
        object.__setattr__(self, "children", segment_children(owner, zip(keys, flows, strict=True)))

    async def execute(self, ctx: FlowContext, input: Any) -> Any:
        """
        Run the flows in order, adding each output to the value.
        """
        value = input
        for segment, child in self.children:
            out = await invoke(child, ctx, segment, value, SKIPPED)
            if out is not SKIPPED:  # a failed non-critical flow sets nothing
                value = _merge(value, str(segment), out)
        return value

    def __repr__(self) -> str:
        fields = [f"{k}={f!r}" for k, f in zip(self.keys, self.flows, strict=True)]
        return node_repr("Assign", fields, name=self.name)
