"""
``systemflow graph MODULE:ATTR``: a flow as a Mermaid flowchart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._diagrams import to_mermaid
from ..state import Stateful
from ._load import CliError, load_flow
from ._show import say

if TYPE_CHECKING:
    from ._app import Session


async def graph(session: Session) -> int:
    """
    Print the flow's diagram; with ``--run``, coloured by that run.
    """
    args = session.args
    flow = load_flow(args.flow, "the flow argument")
    record = history = None
    if args.run is not None:
        record = await session.store.get(args.run)
        if isinstance(flow, Stateful) and flow.name != record.name:
            msg = f"run {record.id} is a run of {record.name!r}, not of {flow.name!r}"
            raise CliError(msg)
        history = await session.store.history(record.id)
    say(to_mermaid(flow, record=record, history=history, direction=args.direction).rstrip("\n"))
    return 0
