"""
The flow protocol, node paths, and walking a tree.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypeVar, runtime_checkable

from ._errors import FlowDefinitionError

if TYPE_CHECKING:
    from collections import abc

    from ._context import FlowContext

In = TypeVar("In", contravariant=True)
Out = TypeVar("Out", covariant=True)

Segment: TypeAlias = str | int
"""One step of a node path: the node's name if it has one, else its index in its parent."""

Path: TypeAlias = tuple[Segment, ...]
"""Where a node sits in its tree, from the root; ``()`` is the root itself."""

Child: TypeAlias = "tuple[Segment | None, Flow[Any, Any]]"
"""A child and the segment it adds to the path (``None``: it shares its parent's path)."""


@runtime_checkable
class Flow(Protocol[In, Out]):
    """
    The one protocol every node implements.

    A node takes the context it runs in and its input, and returns its output.
    Nodes that have children expose them as ``children``: pairs of the path
    segment each child adds and the child itself.

    .. versionadded:: 0.1.0
    """

    __slots__ = ()

    async def execute(self, ctx: FlowContext, input: In) -> Out: ...


def children_of(node: object) -> tuple[Child, ...]:
    """
    Return a node's children with their path segments (none for a leaf).
    """
    children: tuple[Child, ...] = getattr(node, "children", ())
    return children


def walk(flow: Flow[Any, Any]) -> abc.Iterator[tuple[Path, Flow[Any, Any]]]:
    """
    Yield ``(path, node)`` for every node of a tree, depth first, parents first.

    Wrappers that add no path segment (``Instrumented``) share the path of the
    node they wrap, so both are yielded with the same path.

    Args:
        flow: The root of the tree.

    .. versionadded:: 0.1.0
    """
    stack: list[tuple[Path, Flow[Any, Any]]] = [((), flow)]
    while stack:
        path, node = stack.pop()
        yield path, node
        stack.extend(
            (path if seg is None else (*path, seg), child)
            for seg, child in reversed(children_of(node))
        )


def describe(node: object) -> str:
    """
    Name a node for messages and telemetry: its name, else what it wraps.
    """
    name = getattr(node, "name", None)
    if name is not None:
        return str(name)
    label = getattr(node, "label", None)
    if label is not None:
        return str(label)
    return type(node).__name__


def title(node: object, *, quote: bool = True) -> str:
    """
    Name a node with its kind for messages: ``Step 'charge'``, or just ``Parallel``.
    """
    kind = type(node).__name__
    name = getattr(node, "name", None) or getattr(node, "label", None)
    if name is None:
        return kind
    return f"{kind} {name!r}" if quote else f"{kind} {name}"


def is_wrapper(node: object) -> bool:
    """
    Tell whether a node only wraps one child at its own path (``Instrumented``).
    """
    children = children_of(node)
    return len(children) == 1 and children[0][0] is None


def unwrap(node: Flow[Any, Any]) -> Flow[Any, Any]:
    """
    Return the first node below any wrappers: the one that does the work.
    """
    while is_wrapper(node):
        node = children_of(node)[0][1]
    return node


def segment_name(node: Flow[Any, Any]) -> Segment | None:
    """
    Return the name a node puts in its parent's path, if it has one.

    Wrappers are transparent: the node they wrap decides.
    """
    name: Segment | None = getattr(unwrap(node), "name", None)
    return name


def check_name(name: object, owner: str) -> None:
    """
    Refuse a name that cannot be a path segment.

    Names must be non-empty strings without ``/`` and not made of digits only
    (those would read like a sibling's index in a rendered path).
    """
    if name is None:
        return
    if not isinstance(name, str):
        msg = f"{owner}: name must be a str, got {type(name).__name__} {name!r}"
        raise FlowDefinitionError(msg)
    if not name or "/" in name or name.isdigit():
        msg = (
            f"{owner}: name {name!r} cannot be a path segment "
            "(it must be non-empty, contain no '/', and not be all digits)"
        )
        raise FlowDefinitionError(msg)


def segment_children(
    owner: str, flows: abc.Iterable[tuple[Segment | None, Flow[Any, Any]]]
) -> tuple[Child, ...]:
    """
    Give each child its path segment and refuse two siblings on one path.

    A child passed with segment ``None`` gets its own name, or else its index.
    """
    result: list[Child] = []
    seen: dict[Segment, int] = {}
    for index, (given, child) in enumerate(flows):
        seg: Segment
        if given is not None:
            seg = given
        else:
            name = segment_name(child)
            seg = index if name is None else name
        if seg in seen:
            msg = (
                f"{owner}: children {seen[seg]} and {index} are both named {seg!r}; "
                "siblings need distinct names because a name is a path segment"
            )
            raise FlowDefinitionError(msg)
        seen[seg] = index
        result.append((seg, child))
    return tuple(result)


def publish(namespace: dict[str, Any], home: str) -> None:
    """
    Set ``__module__`` of a package's exported names to the package (``home``).

    Tracebacks and reprs then name the public home, not the private module.
    """
    for name in namespace["__all__"]:
        obj = namespace[name]
        if getattr(obj, "__module__", "").startswith("systemflow."):
            with contextlib.suppress(AttributeError, TypeError):  # aliases like Path
                obj.__module__ = home
