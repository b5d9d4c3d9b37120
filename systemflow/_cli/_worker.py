"""
``systemflow worker MODULE:ATTR``: run the runs of durable flows as they become due.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Final

import structlog

from ..state import Stateful, Worker
from ._load import CliError, load_as, load_services, target

if TYPE_CHECKING:
    import argparse
    from collections import abc

    from ._app import Session
    from ._load import Target

HELP: Final = "run the runs of durable flows as they become due, until SIGTERM or SIGINT"


def configure(sub: argparse.ArgumentParser) -> None:
    """
    Add the ``worker`` subcommand's arguments to its parser.
    """
    sub.add_argument(
        "flows",
        type=target,
        metavar="MODULE:ATTR",
        help=(
            "the durable flows to run (MODULE may be a .py file's path): a Stateful, "
            "a list or tuple of them, or a function of no arguments returning either; "
            "their runs are taken from --db whatever store they were made with"
        ),
    )
    sub.add_argument(
        "--concurrency", type=_positive_int, default=10, help="runs driven at once (10)"
    )
    sub.add_argument(
        "--services",
        type=target,
        metavar="MODULE:ATTR",
        help="the services the steps call: a mapping, or a function of no arguments returning one",
    )
    sub.add_argument(
        "--poll",
        type=_positive_float,
        default=1.0,
        metavar="SECONDS",
        help="the longest wait between two looks for due runs, e.g. timers (1.0)",
    )
    sub.add_argument(
        "--max-attempts",
        type=_positive_int,
        default=5,
        metavar="N",
        help="claims in a row that may die before a run is failed as abandoned (5)",
    )
    sub.add_argument(
        "--grace",
        type=_non_negative_float,
        default=30.0,
        metavar="SECONDS",
        help="on SIGTERM or SIGINT, how long runs in flight may take to finish or pause (30)",
    )


async def worker(session: Session) -> int:
    """
    Run a ``Worker`` on ``--db``'s store until SIGTERM or SIGINT; 0 after a graceful stop.
    """
    args = session.args
    flows = _flows(args.flows)
    services = load_services(args.services)
    # A worker's log is its output: info lines (debug with --verbose), on standard error.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.DEBUG if getattr(args, "verbose", False) else logging.INFO
        )
    )
    session.pool_size = max(session.pool_size, args.concurrency + 1)  # runs in flight + claim
    try:
        runner = Worker(
            session.store,
            flows,
            concurrency=args.concurrency,
            services=services,
            poll_seconds=args.poll,
            max_attempts=args.max_attempts,
            grace_seconds=args.grace,
        )
    except ValueError as exc:
        hint = " (pass them with --services MODULE:ATTR)" if "services=" in str(exc) else ""
        raise CliError(f"{exc}{hint}") from exc
    await runner.run(handle_signals=True)
    return 0


def _flows(where: Target) -> list[Stateful]:
    value = load_as(where, "the flows argument", _are_flows, "a Stateful or a list of them")
    return [value] if isinstance(value, Stateful) else list(value)


def _are_flows(value: object) -> bool:
    if isinstance(value, Stateful):
        return True
    return (
        isinstance(value, list | tuple)
        and bool(value)
        and all(isinstance(flow, Stateful) for flow in value)
    )


def _number(text: str, convert: abc.Callable[[str], float], what: str, *, zero: bool) -> float:
    import argparse  # noqa: PLC0415 -- argparse types only

    try:
        value = convert(text)
    except ValueError:
        value = -1
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        msg = f"must be a {'non-negative' if zero else 'positive'} {what}, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _positive_int(text: str) -> int:
    return int(_number(text, int, "whole number", zero=False))


def _positive_float(text: str) -> float:
    return _number(text, float, "number", zero=False)


def _non_negative_float(text: str) -> float:
    return _number(text, float, "number", zero=True)
