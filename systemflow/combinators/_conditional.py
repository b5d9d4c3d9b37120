"""
Conditional: choose a branch by a predicate on the input.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, final

import attrs

from .._core import (
    DECISION,
    Child,
    Flow,
    callable_name,
    check_name,
    invoke,
    make_caller,
    segment_children,
    wants_context,
)
from ._node import Node, as_flow, node_repr

if TYPE_CHECKING:
    from collections import abc

    from .._core import FlowContext


@final
@attrs.frozen(init=False, repr=False)
class Conditional(Node[Any, Any]):
    """
    Run ``then`` when the predicate holds for the input, else ``otherwise``.

    The predicate takes ``(input)`` or ``(ctx, input)``; a coroutine function
    is awaited. A sync predicate runs inline, not in a thread: a predicate is
    a decision over the input and must not block. With ``otherwise=None`` a
    false predicate passes the input through unchanged.

    Attributes:
        predicate: Decides the branch.
        then: The branch for a true predicate (path segment: its name, or 0).
        otherwise: The branch for a false one (its name, or 1), if any.
        name: The conditional's path segment; its index in its parent if not given.

    .. versionadded:: 0.1.0
    """

    predicate: abc.Callable[..., Any]
    then: Flow[Any, Any]
    otherwise: Flow[Any, Any] | None = None
    name: str | None = attrs.field(default=None, kw_only=True)
    children: tuple[Child, ...] = attrs.field(init=False, eq=False, repr=False)
    _decide: abc.Callable[..., abc.Awaitable[Any]] = attrs.field(init=False, eq=False, repr=False)

    def __init__(
        self,
        predicate: abc.Callable[..., Any],
        then: Flow[Any, Any] | abc.Callable[..., Any],
        otherwise: Flow[Any, Any] | abc.Callable[..., Any] | None = None,
        name: str | None = None,
    ) -> None:
        owner = f"Conditional {name!r}" if name else "Conditional"
        check_name(name, owner)
        with_ctx = wants_context(
            predicate, 1, role=f"{owner}: predicate", form="(input) or (ctx, input)"
        )
        branches = [as_flow(then, f"{owner}: then")]
        if otherwise is not None:
            branches.append(as_flow(otherwise, f"{owner}: otherwise"))
        self.__attrs_init__(
            predicate, branches[0], branches[1] if otherwise is not None else None, name=name
        )
        object.__setattr__(self, "children", segment_children(owner, [(None, b) for b in branches]))
        object.__setattr__(self, "_decide", make_caller(predicate, with_ctx=with_ctx, inline=True))

    async def execute(self, ctx: FlowContext, input: Any) -> Any:
        """
        Decide, then run the chosen branch on ``input``.
        """
        if await self._choose(ctx, input):
            segment, branch = self.children[0]
        elif len(self.children) > 1:
            segment, branch = self.children[1]
        else:
            return input
        return await invoke(branch, ctx, segment, input)

    async def _choose(self, ctx: FlowContext, input: Any) -> bool:
        # In a durable run the choice is journaled: a predicate that reads the
        # clock or a service must not send a resumed run down another branch.
        journal = ctx.journal
        if journal is None:
            return bool(await self._decide(ctx, input))
        got = journal.get(DECISION, ctx.path, bool)
        if got is not None:
            return bool(got.value)
        decided = bool(await self._decide(ctx, input))
        journal.record(DECISION, ctx.path, decided)
        await journal.commit()
        return decided

    def __repr__(self) -> str:
        return node_repr(
            "Conditional",
            [callable_name(self.predicate), self.then],
            otherwise=self.otherwise,
            name=self.name,
        )
