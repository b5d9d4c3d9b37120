"""
systemflow worker, in-process: what it refuses, and a run to completion stopped by SIGTERM.

The multi-process runs (three workers, SIGKILL, SIGTERM with runs in flight) are in
tests/state/test_workers_processes.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from systemflow._cli import main
from systemflow.state import RunStatus, SqlStateStore


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ("worker {flows}:not_a_flow", "is a int, not a Stateful or a list of them"),
        ("worker {flows}:flow", "is a Compensatable, not a Stateful"),
        ("worker {flows}:broken", "RuntimeError: no flow today"),
        ("worker {flows}:durable --services {flows}:not_a_flow", "not a mapping"),
        ("worker {flows}:durable", "calls service 'limits' (at check), which services= lacks"),
        ("worker {flows}:durable", "(pass them with --services MODULE:ATTR)"),
    ],
)
def test_refuses_what_is_not_durable_flows(setup, capsys, argv, message):
    """Not durable flows, services that are not a mapping or lack one: exit 1, one line."""
    argv = argv.replace("{flows}", setup.flows).split()

    code, _, err = run(capsys, "--db", setup.url, *argv)

    assert 1 == code
    assert message in err
    assert 1 == err.count("\n")


@pytest.mark.parametrize("option", ["--concurrency 0", "--poll 0", "--poll nan", "--grace -1"])
def test_bad_numbers_are_usage_errors(setup, capsys, option):
    """Numbers out of range are usage errors (exit 2)."""
    code, _, err = run(
        capsys, "--db", setup.url, "worker", f"{setup.flows}:durable", *option.split()
    )

    assert 2 == code
    assert f"argument {option.split()[0]}" in err


def test_runs_until_sigterm(setup, capsys):
    """The worker resumes the signalled run, and SIGTERM stops it gracefully (exit 0)."""

    async def signal_run() -> None:
        store = SqlStateStore(setup.url)
        try:
            await store.signal(setup.paused, "go", 21)
        finally:
            await store.close()

    async def status() -> RunStatus:
        store = SqlStateStore(setup.url)
        try:
            return (await store.get(setup.paused)).status
        finally:
            await store.close()

    asyncio.run(signal_run())

    def stop_when_done() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and asyncio.run(status()) is not RunStatus.COMPLETED:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    watcher = threading.Thread(target=stop_when_done)
    watcher.start()
    code, _, err = run(
        capsys,
        *("--db", setup.url, "worker", f"{setup.flows}:durable"),
        *("--services", f"{setup.flows}:make_services", "--poll", "0.05"),
    )
    watcher.join()

    assert 0 == code
    assert RunStatus.COMPLETED is asyncio.run(status())
    assert "worker_started" in err
    assert "worker_stopped" in err


def test_python_dash_m_systemflow_is_the_command():
    """``python -m systemflow`` runs the same command as ``systemflow``."""
    done = subprocess.run(
        [sys.executable, "-m", "systemflow", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert 0 == done.returncode
    assert done.stdout.startswith("usage: systemflow")
