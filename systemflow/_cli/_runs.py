"""
``systemflow runs ...``: list, show, signal, resume and cancel durable runs.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .._core import FlowError
from ..state import RunStatus, Stateful
from ._load import CliError, load_flow, load_services
from ._show import complain, event_data, record_data, record_lines, runs_table, say, timeline

if TYPE_CHECKING:
    from ..state import RunRecord
    from ._app import Session


def _print_json(value: Any) -> None:
    say(json.dumps(value, indent=2, ensure_ascii=False, default=str))


async def list_runs(session: Session) -> int:
    """
    Print the runs, newest first, filtered by ``--name`` and ``--status``.
    """
    args = session.args
    status = None if args.status is None else RunStatus(args.status)
    records = await session.store.list_runs(name=args.name, status=status, limit=args.limit)
    if args.json:
        _print_json([record_data(r) for r in records])
    elif records:
        say(*runs_table(records))
    else:
        say(f"no runs in {session.where}")
    return 0


async def show(session: Session) -> int:
    """
    Print a run's record (status, current path, input, output or error) and its history.
    """
    store = session.store
    record = await store.get(session.args.run_id)
    history = await store.history(record.id)
    if session.args.json:
        _print_json({"run": record_data(record), "history": [event_data(e) for e in history]})
        return 0
    say(*record_lines(record, history), "", "history:", *timeline(history))
    return 0


async def signal(session: Session) -> int:
    """
    Deliver a signal with a JSON payload; the run takes it when it is resumed.

    With ``--flow``, through the flow: a signal it does not wait for, or a
    payload that does not fit the wait's type, is refused and not delivered.
    """
    args = session.args
    try:
        payload = json.loads(args.payload)
    except ValueError as exc:
        msg = f"the payload of signal {args.signal!r} is not JSON ({exc}): {args.payload}"
        raise CliError(msg) from exc
    if args.flow is None:
        if args.name is not None:
            msg = "--name goes with --flow: it names the runs of a flow that is not a Stateful"
            raise CliError(msg)
        await session.store.signal(args.run_id, args.signal, payload)
    else:
        durable = _durable(session, await session.store.get(args.run_id))
        try:
            await durable.signal(args.run_id, args.signal, payload)
        except FlowError:
            raise
        except ValueError as exc:
            raise CliError(str(exc)) from exc
    say(f"signal {args.signal} delivered to run {args.run_id}")
    return 0


def _unfinished(record: RunRecord, doing: str) -> None:
    if record.status.is_finished:
        msg = f"run {record.id} is {record.status.value}: there is nothing to {doing}"
        raise CliError(msg)


def _durable(session: Session, record: RunRecord) -> Stateful:
    # The flow named by --flow, keeping its runs in --db's store.
    args = session.args
    flow = load_flow(args.flow, "--flow")
    if isinstance(flow, Stateful):
        if args.name is not None and args.name != flow.name:
            msg = f"--flow {args.flow} runs {flow.name!r}, but --name says {args.name!r}"
            raise CliError(msg)
        durable = flow.with_store(session.store)
    else:
        durable = Stateful(flow, store=session.store, name=args.name or record.name)
    if durable.name != record.name:
        msg = f"run {record.id} is a run of {record.name!r}, not of {durable.name!r} (--flow)"
        raise CliError(msg)
    return durable


async def resume(session: Session) -> int:
    """
    Resume a run with the flow of ``--flow``; exit code 1 if it fails.
    """
    args = session.args
    store = session.store
    record = await store.get(args.run_id)
    _unfinished(record, "resume")
    durable = _durable(session, record)
    record = await durable.resume(
        record.id,
        services=load_services(session.args.services),
        accept_version_change=args.accept_version_change,
    )
    say(*record_lines(record, await store.history(record.id)))
    if record.status in {RunStatus.FAILED, RunStatus.CANCELLED}:
        complain(f"error: run {record.id} {record.status.value}: {record.error}")
        return 1
    return 0


async def cancel(session: Session) -> int:
    """
    Cancel a run that has not finished.
    """
    store = session.store
    record = await store.get(session.args.run_id)
    _unfinished(record, "cancel")
    record = await store.cancel(record.id)
    say(f"run {record.id} {record.status.value}")
    return 0
