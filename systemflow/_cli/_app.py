"""
The ``systemflow`` command: its options, subcommands, and exit codes.

A subcommand is an async function of a ``Session`` that returns the exit code,
and one ``add_parser`` entry in ``make_parser`` that sets it as ``handler``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final, final

import sqlalchemy as sa
import structlog

from .._core import FlowError, FlowVersionMismatch
from ..state import RunStatus, SqlStateStore
from ..state._sql import _DEFAULT_FILE
from . import _graph, _runs, _worker
from ._load import CliError, target
from ._show import complain

if TYPE_CHECKING:
    from collections import abc

DB_ENV: Final = "SYSTEMFLOW_DB"
"""The environment variable that names the database when ``--db`` does not."""

OK: Final = 0
FAILED: Final = 1
USAGE: Final = 2


@final
class UsageError(Exception):
    """
    Strictly private: an option's value cannot be used (exit code 2).
    """


@final
class Session:
    """
    Strictly private: what a command works with: its arguments, and the store.

    The store is opened on first use, so commands that need none (``graph``
    without ``--run``) never touch a database.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.url: str | None = getattr(args, "db", None) or os.environ.get(DB_ENV) or None
        self._store: SqlStateStore | None = None
        self.pool_size = 20  # PostgreSQL connections kept (the worker asks for more)

    @property
    def where(self) -> str:
        """
        The database's URL for messages (without a password).
        """
        if self.url is None:
            return f"sqlite:///{Path.cwd() / _DEFAULT_FILE}"
        with contextlib.suppress(sa.exc.ArgumentError):
            return sa.make_url(self.url).render_as_string(hide_password=True)
        return self.url

    @property
    def store(self) -> SqlStateStore:
        """
        The store of ``--db`` (else ``$SYSTEMFLOW_DB``, else ``SqlStateStore()``'s file).

        Raises:
            UsageError: The URL is not one ``SqlStateStore`` takes.
        """
        if self._store is None:
            try:
                self._store = SqlStateStore(self.url, pool_size=self.pool_size)
            except (ValueError, sa.exc.ArgumentError) as exc:
                msg = f"--db: {exc}"
                raise UsageError(msg) from exc
        return self._store

    async def close(self) -> None:
        """
        Close the store, if it was opened.
        """
        if self._store is not None:
            await self._store.close()


def _add_common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # On the command and on each subcommand, so either place works; SUPPRESS
    # keeps a subcommand from resetting what was given before it.
    default = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--db",
        metavar="URL",
        default=default,
        help=(
            "the database of the runs: sqlite:///path/to/file or "
            f"postgresql+psycopg://user@host/db (default: ${DB_ENV}, else the file "
            f"{_DEFAULT_FILE} in the working directory, as SqlStateStore())"
        ),
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="show systemflow's info logs (on standard error; warnings are always shown)",
    )


_FLOW_HELP: Final = (
    "the flow, as MODULE:ATTR (MODULE may be a .py file's path): a Stateful, "
    "a flow (then the runs' name comes from --name, else the run), or a function "
    "of no arguments that returns either"
)
_EXIT_CODES: Final = """\
exit status:
  0  done
  1  the run or flow could not be used: unknown or finished run, bad JSON, a flow
     that cannot be imported, a run that failed when resumed, a database that
     cannot be reached
  2  the command line is wrong
"""


def make_parser() -> argparse.ArgumentParser:
    """
    Return the parser of the ``systemflow`` command and its subcommands.
    """
    parser = argparse.ArgumentParser(
        prog="systemflow",
        description="Look at durable runs, move them on, and draw flows.",
        epilog=_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(parser, top=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    runs = commands.add_parser("runs", help="list, show, signal, resume and cancel runs")
    runs_commands = runs.add_subparsers(dest="runs_command", metavar="COMMAND", required=True)

    def add(
        group: abc.Callable[..., argparse.ArgumentParser], name: str, text: str, handler: object
    ) -> argparse.ArgumentParser:
        sub = group(
            name,
            help=text,
            description=text,
            epilog=_EXIT_CODES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_common(sub, top=False)
        sub.set_defaults(handler=handler)
        return sub

    sub = add(runs_commands.add_parser, "list", "the runs, newest first", _runs.list_runs)
    sub.add_argument("--name", help="only the runs of this Stateful name")
    sub.add_argument(
        "--status", choices=[s.value for s in RunStatus], help="only the runs in this status"
    )
    sub.add_argument("--limit", type=_positive, default=100, help="at most this many (100)")
    sub.add_argument("--json", action="store_true", help="print JSON")

    sub = add(runs_commands.add_parser, "show", "a run: its record and history", _runs.show)
    sub.add_argument("run_id", metavar="RUN_ID")
    sub.add_argument("--json", action="store_true", help="print JSON")

    sub = add(runs_commands.add_parser, "signal", "deliver a signal to a run", _runs.signal)
    sub.add_argument("run_id", metavar="RUN_ID")
    sub.add_argument("signal", metavar="NAME", help="the signal's name")
    sub.add_argument("payload", metavar="JSON", help="its payload, e.g. '{\"approved\": true}'")
    sub.add_argument(
        "--flow",
        type=target,
        metavar="MODULE:ATTR",
        help="check the signal and its payload against this flow's waits first",
    )
    sub.add_argument("--name", help="the runs' name, when --flow is not a Stateful")

    sub = add(
        runs_commands.add_parser,
        "resume",
        "carry a paused run on, until it completes, fails or pauses again",
        _runs.resume,
    )
    sub.add_argument("run_id", metavar="RUN_ID")
    sub.add_argument("--flow", type=target, required=True, metavar="MODULE:ATTR", help=_FLOW_HELP)
    sub.add_argument("--name", help="the runs' name, when --flow is not a Stateful")
    sub.add_argument(
        "--services",
        type=target,
        metavar="MODULE:ATTR",
        help="the services its steps call: a mapping, or a function of no arguments returning one",
    )
    sub.add_argument(
        "--accept-version-change",
        action="store_true",
        help="resume though the flow changed since the run started",
    )

    sub = add(runs_commands.add_parser, "cancel", "cancel a run: it never runs again", _runs.cancel)
    sub.add_argument("run_id", metavar="RUN_ID")

    sub = add(commands.add_parser, "graph", "print a flow as a Mermaid flowchart", _graph.graph)
    sub.add_argument("flow", type=target, metavar="MODULE:ATTR", help=_FLOW_HELP)
    sub.add_argument(
        "--direction", choices=["TD", "TB", "BT", "LR", "RL"], default="TD", help="(TD)"
    )
    sub.add_argument("--run", metavar="RUN_ID", help="colour it by this run of the database")

    _worker.configure(add(commands.add_parser, "worker", _worker.HELP, _worker.worker))
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"must be a positive whole number, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


@contextlib.contextmanager
def _logs_to_stderr(*, verbose: bool) -> abc.Iterator[None]:
    # Standard output is the command's own; systemflow's logs (a resumed run's
    # compensations, retries) go to standard error. Restored afterwards, so
    # main() can be called in a process that configured structlog itself.
    saved = structlog.get_config()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.INFO if verbose else logging.WARNING
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    try:
        yield
    finally:
        structlog.configure(**saved)


def _database_errors() -> tuple[type[BaseException], ...]:
    # The drivers' own errors escape from raw cursors; psycopg only if loaded.
    errors: list[type[BaseException]] = [sa.exc.SQLAlchemyError, sqlite3.Error]
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None:
        errors.append(psycopg.Error)
    return tuple(errors)


def _first_line(exc: BaseException) -> str:
    reason = getattr(exc, "orig", None) or exc
    lines = str(reason).strip().splitlines()
    return lines[0] if lines else type(reason).__name__


async def _run(session: Session) -> int:
    handler: abc.Callable[[Session], abc.Awaitable[int]] = session.args.handler
    try:
        return await handler(session)
    finally:
        await session.close()


def main(argv: abc.Sequence[str] | None = None) -> int:
    """
    Run the ``systemflow`` command with ``argv`` (else ``sys.argv[1:]``); return its exit code.
    """
    parser = make_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse printed
        return exc.code if isinstance(exc.code, int) else USAGE
    session = Session(args)
    with _logs_to_stderr(verbose=bool(getattr(args, "verbose", False))):
        try:
            return asyncio.run(_run(session))
        except UsageError as exc:
            parser.print_usage(sys.stderr)
            complain(f"systemflow: error: {exc}")
            return USAGE
        except (CliError, FlowError) as exc:
            complain(f"error: {exc}")
            if isinstance(exc, FlowVersionMismatch):
                complain("(the option is --accept-version-change)")
            return FAILED
        except _database_errors() as exc:
            complain(f"error: cannot use the database {session.where}: {_first_line(exc)}")
            return FAILED
