"""
A durable run that dies with its process: the child process of test_crash.py.

    crash_child.py URL RUN_ID KILL_AT EFFECTS_FILE [--fail-at K] [--kill-in-undo J]
                   [--stall-at S] [--resume]

Starts run RUN_ID of the flow "crashy" in the store at URL (``--resume``:
resumes it). The flow is a saga of five steps; step i appends ``do i`` to
EFFECTS_FILE and returns ``10 * input + i``, and the undos of steps 1, 2, 3 and
5 append ``undo i``. The process kills itself with SIGKILL right after the
effect of step KILL_AT (0: never), before its checkpoint can be written, or
right after the effect of the undo of step J. Step K raises before its effect.
Step S sleeps after its effect, holding the run, until the process is killed.

Prints two JSON lines: its pid at once, and the run's final status, output and
error at the end. Exits with 3 if another live claim holds the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import structlog

import systemflow as sf
from systemflow.state import Stateful
from systemflow.state._sql import SqlStateStore

STEPS = 5
WITH_UNDO = frozenset({1, 2, 3, 5})
INPUT = 7
LEASE_SECONDS = 60.0
LOCKED = 3


def die() -> None:
    """Kill this process the hard way: no cleanup, no finally, no checkpoint."""
    os.kill(os.getpid(), signal.SIGKILL)


def build(store: SqlStateStore, options: argparse.Namespace) -> Stateful:
    """The run's flow; its shape is the same whatever the options."""
    effects = Path(options.effects)

    def effect(line: str) -> None:
        with effects.open("a", encoding="utf-8") as file:
            file.write(f"{line}\n")

    def step(i: int) -> sf.Step:
        async def run(x: int) -> int:
            if i == options.fail_at:
                raise RuntimeError(f"step {i} fails")
            effect(f"do {i}")
            if i == options.kill_at:
                die()
            if i == options.stall_at:
                await asyncio.sleep(600)
            return 10 * x + i

        async def undo(x: int, out: int) -> None:
            effect(f"undo {i}")
            if i == options.kill_in_undo:
                die()

        return sf.Step(run, compensate=undo if i in WITH_UNDO else None, name=f"step_{i}")

    saga = sf.Compensatable(*[step(i) for i in range(1, STEPS + 1)])
    return Stateful(saga, store=store, name="crashy", lease_seconds=LEASE_SECONDS)


async def main(options: argparse.Namespace) -> int:
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))  # stdout: JSON
    sys.stdout.write(f"{json.dumps({'pid': os.getpid()})}\n")
    sys.stdout.flush()  # before any step can kill the process
    store = SqlStateStore(options.url)
    try:
        durable = build(store, options)
        if options.resume:
            record = await durable.resume(options.run_id)
        else:
            record = await durable.start(INPUT, run_id=options.run_id)
    except sf.RunLocked as locked:
        sys.stderr.write(f"RunLocked: {locked}\n")
        return LOCKED
    finally:
        await store.close()
    summary = {"status": record.status.value, "output": record.output, "error": record.error}
    sys.stdout.write(f"{json.dumps(summary)}\n")
    return 0


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("run_id")
    parser.add_argument("kill_at", type=int)
    parser.add_argument("effects")
    parser.add_argument("--fail-at", type=int)
    parser.add_argument("--kill-in-undo", type=int)
    parser.add_argument("--stall-at", type=int)
    parser.add_argument("--resume", action="store_true")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse(sys.argv[1:]))))
