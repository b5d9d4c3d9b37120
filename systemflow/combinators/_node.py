"""
What every node of ours shares: ``>>``, turning plain functions into steps, repr.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from .._core import Flow, FlowContext, FlowDefinitionError

if TYPE_CHECKING:
    from collections import abc

In = TypeVar("In", contravariant=True)
Out = TypeVar("Out", covariant=True)
T = TypeVar("T")


class Node(Flow[In, Out]):
    """
    Strictly private: the base of the library's own nodes.
    """

    __slots__ = ()

    async def execute(self, ctx: FlowContext, input: In) -> Out:
        raise NotImplementedError

    def __rshift__(self, other: Flow[Out, T] | abc.Callable[..., Any]) -> Node[In, T]:
        """
        ``a >> b`` is ``Sequence(a, b)``: the output of ``a`` is the input of ``b``.
        """
        from ._sequence import Sequence  # noqa: PLC0415 -- Sequence is itself a Node

        return Sequence(self, other)

    def __rrshift__(self, other: abc.Callable[..., Any]) -> Node[Any, Out]:
        """
        ``fn >> node`` is ``Sequence(fn, node)``, with ``fn`` made a ``Step``.
        """
        from ._sequence import Sequence  # noqa: PLC0415

        return Sequence(other, self)


def as_flow(obj: object, owner: str) -> Flow[Any, Any]:
    """
    Return ``obj`` as a node: a flow as it is, a plain callable wrapped in a ``Step``.

    Raises:
        TypeError: ``obj`` is neither.
    """
    if callable(getattr(obj, "execute", None)):
        return obj  # type: ignore[return-value]
    if callable(obj):
        from ._step import Step  # noqa: PLC0415 -- Step is itself a Node

        return Step(obj)
    msg = f"{owner}: expected a flow or a callable, got {type(obj).__name__} {obj!r}"
    raise FlowDefinitionError(msg)


def node_repr(kind: str, args: abc.Iterable[object], **options: object) -> str:
    """
    Render a node as its shape: ``Sequence(Step(inc), Step(dbl), name='x')``.

    Options left at their defaults (``None``, ``False``, ``True`` for flags
    that default to it) are passed as ``None`` by callers and left out.
    """
    parts = [repr(a) if not isinstance(a, str) else a for a in args]
    parts += [f"{key}={value!r}" for key, value in options.items() if value is not None]
    return f"{kind}({', '.join(parts)})"
