"""
Durable flows for the worker processes of test_workers_processes.py.

    python -m systemflow._cli worker tests/state/worker_flows.py:pipeline --db URL

Each step appends one line, ``<step> <key> <pid>``, to the file named by
``$SYSTEMFLOW_TEST_EFFECTS`` (one ``write`` with ``O_APPEND``, so lines of
several processes never mix): that is its effect, which the tests count.
The store here is a placeholder: a worker takes the runs from its ``--db``.
"""

from __future__ import annotations

import asyncio
import os

import systemflow as sf
from systemflow.state import InMemoryStateStore

SLEEP_SECONDS = 0.3  # pipeline's timer
SLOW_SECONDS = 1.0  # how long slow's first step holds its run
LEASE_SECONDS = 2.0  # slow's lease: a killed worker's runs are taken over after it


def effect(step: str, key: str) -> None:
    """Record that ``step`` ran for ``key`` in this process."""
    fd = os.open(os.environ["SYSTEMFLOW_TEST_EFFECTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{step} {key} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


async def first(key: str) -> str:
    effect("first", key)
    return key


async def second(payload: dict[str, str]) -> str:
    effect("second", payload["key"])
    return f"done {payload['key']}"


async def hold(key: str) -> str:
    effect("hold", key)
    await asyncio.sleep(SLOW_SECONDS)
    return key


async def finish(key: str) -> str:
    effect("finish", key)
    return f"done {key}"


_PLACEHOLDER = InMemoryStateStore()

pipeline = sf.Stateful(
    sf.Step(first, name="first")
    >> sf.Sleep(SLEEP_SECONDS, name="nap")
    >> sf.WaitForSignal("go", name="wait")
    >> sf.Step(second, name="second"),
    store=_PLACEHOLDER,
    name="pipeline",
)
"""step(effect) >> Sleep >> WaitForSignal("go") >> step(effect); the payload is {"key": key}."""

slow = sf.Stateful(
    sf.Step(hold, name="hold") >> sf.Step(finish, name="finish"),
    store=_PLACEHOLDER,
    name="slow",
    lease_seconds=LEASE_SECONDS,
)
"""A step that holds its run for SLOW_SECONDS, then a quick one."""
