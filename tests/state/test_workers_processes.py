"""
Worker processes (``systemflow worker``) sharing one real PostgreSQL, killed and stopped.

The flows are in ``worker_flows.py``; each step appends ``<step> <key> <pid>``
to an effects file, which the tests count. Every test gets a fresh schema of
the session's server (``postgresql_url``) and runs ``python -m systemflow._cli
worker`` in subprocesses, whose logs go to files in ``tmp_path``.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
import worker_flows

from systemflow.state import RunStatus
from systemflow.state._sql import SqlStateStore

if TYPE_CHECKING:
    from collections import abc

FLOWS = Path(worker_flows.__file__)
ROOT = Path(__file__).parents[2]
TIMEOUT = 60.0  # seconds any wait of these tests may take before it fails


class Workers:
    """The worker processes of one test, their effects file and their logs."""

    def __init__(self, url: str, tmp_path: Path) -> None:
        self.url = url
        self.tmp_path = tmp_path
        self.effects = tmp_path / "effects.txt"
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, flow: str, *options: str) -> subprocess.Popen[bytes]:
        """Start ``systemflow worker`` for ``worker_flows.py:<flow>``; wait until it listens."""
        log = self.tmp_path / f"worker-{len(self.processes)}.log"
        command = [sys.executable, "-m", "systemflow._cli", "worker", f"{FLOWS}:{flow}"]
        with log.open("wb") as out:
            process = subprocess.Popen(
                [*command, "--db", self.url, *options],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env={**os.environ, "SYSTEMFLOW_TEST_EFFECTS": str(self.effects)},
            )
        process.log = log  # type: ignore[attr-defined]
        self.processes.append(process)
        wait_for(lambda: "worker_started" in self.log(process), f"worker {process.pid} started")
        return process

    def log(self, process: subprocess.Popen[bytes]) -> str:
        log: Path = process.log  # type: ignore[attr-defined]
        return log.read_text(encoding="utf-8", errors="replace")

    def stop(self, process: subprocess.Popen[bytes]) -> int:
        """SIGTERM the worker and return its exit code."""
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        return process.wait(timeout=TIMEOUT)

    def kill_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=TIMEOUT)

    def effects_by_key(self) -> dict[tuple[str, str], list[int]]:
        """Each (step, key) with the pids of the processes its effect happened in."""
        found: dict[tuple[str, str], list[int]] = collections.defaultdict(list)
        if self.effects.exists():
            for line in self.effects.read_text(encoding="utf-8").splitlines():
                step, key, pid = line.split()
                found[step, key].append(int(pid))
        return dict(found)


def wait_for(predicate: abc.Callable[[], bool], what: str, seconds: float = TIMEOUT) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {seconds} s: {what}")
        time.sleep(0.02)


def query(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run a query on the test's schema with a plain psycopg connection."""
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        return conn.execute(sql, params).fetchall()


def count(url: str, where: str, *params: Any) -> int:
    rows = query(url, f"SELECT count(*) FROM runs WHERE {where}", *params)  # noqa: S608
    return int(rows[0][0])


@pytest.fixture(name="workers")
def _workers(postgresql_url: str, tmp_path: Path) -> abc.Iterator[Workers]:
    workers = Workers(postgresql_url, tmp_path)
    try:
        yield workers
    finally:
        workers.kill_all()


@pytest.fixture(name="store")
async def _store(postgresql_url: str) -> abc.AsyncIterator[SqlStateStore]:
    store = SqlStateStore(postgresql_url)
    await store.list_runs()  # the tables exist before any worker starts
    yield store
    await store.close()


async def test_three_workers_complete_300_runs_with_signals_and_timers(
    workers: Workers, store: SqlStateStore, postgresql_url: str
) -> None:
    """
    300 runs of step >> Sleep >> WaitForSignal >> step, on three worker processes.

    Every run completes with its output, each step's effect happened exactly
    once, every worker took a share, and each stops with exit code 0 on SIGTERM.
    """
    total = 300
    processes = [
        workers.start("pipeline", "--concurrency", "20", "--poll", "0.2") for _ in range(3)
    ]
    flow = worker_flows.pipeline.with_store(store)
    keys = {await flow.enqueue(f"k{i}"): f"k{i}" for i in range(total)}

    signalled: set[str] = set()
    deadline = time.monotonic() + TIMEOUT
    while len(signalled) < total:
        # Paused without a wake time: waiting for the signal (after the timer).
        waiting = {row[0] for row in query(postgresql_url, _WAITING)} - signalled
        for run_id in waiting:
            await store.signal(run_id, "go", {"key": keys[run_id]})
            signalled.add(run_id)
        assert time.monotonic() < deadline, f"{len(signalled)} of {total} runs reached the wait"
        await asyncio.sleep(0.05)
    await asyncio.to_thread(
        wait_for,
        lambda: count(postgresql_url, "status = 'completed'") == total,
        "every run completed",
    )
    codes = [workers.stop(process) for process in processes]

    records = await store.list_runs(name="pipeline", limit=2 * total)
    assert [0, 0, 0] == codes
    assert {(r.id, RunStatus.COMPLETED, f"done {keys[r.id]}") for r in records} == {
        (run_id, RunStatus.COMPLETED, f"done {key}") for run_id, key in keys.items()
    }
    effects = workers.effects_by_key()
    assert {(step, key): 1 for step in ("first", "second") for key in keys.values()} == {
        step_key: len(pids) for step_key, pids in effects.items()
    }
    assert {p.pid for p in processes} == {pid for pids in effects.values() for pid in pids}
    for process in processes:
        log = workers.log(process)
        assert "worker_stopped" in log
        assert "run_ended" in log


_WAITING = "SELECT id FROM runs WHERE status = 'paused' AND wake_at IS NULL"


async def test_killed_workers_runs_are_completed_by_another_after_the_lease(
    workers: Workers, store: SqlStateStore, postgresql_url: str
) -> None:
    """
    SIGKILL one of two workers while it holds runs; the other takes them once the lease expires.

    Every run completes. A step's effect happened at most twice, and twice only
    for runs the killed worker held; those were taken over after their lease
    expired, not before.
    """
    total = 20
    doomed = workers.start("slow", "--concurrency", "5", "--poll", "0.2")
    flow = worker_flows.slow.with_store(store)
    keys = {await flow.enqueue(f"k{i}"): f"k{i}" for i in range(total)}
    await asyncio.to_thread(
        wait_for,
        lambda: count(postgresql_url, "lease_owner LIKE %s", f"%/{doomed.pid}/%") >= 5,
        "the doomed worker holds runs",
    )
    survivor = workers.start("slow", "--concurrency", "5", "--poll", "0.2")

    doomed.kill()
    doomed.wait(timeout=TIMEOUT)
    killed_at = dt.datetime.now(dt.UTC)
    held = dict(
        query(
            postgresql_url,
            "SELECT id, lease_expires_at FROM runs WHERE lease_owner LIKE %s",
            f"%/{doomed.pid}/%",
        )
    )
    await asyncio.to_thread(
        wait_for,
        lambda: count(postgresql_url, "status = 'completed'") == total,
        "every run completed",
    )
    code = workers.stop(survivor)

    assert held, "the killed worker held no run: nothing was tested"
    assert (-signal.SIGKILL, 0) == (doomed.returncode, code)
    records = await store.list_runs(name="slow", limit=2 * total)
    assert {(r.id, f"done {keys[r.id]}") for r in records} == {
        (run_id, f"done {key}") for run_id, key in keys.items()
    }
    effects = workers.effects_by_key()
    assert {(s, k) for s in ("hold", "finish") for k in keys.values()} == set(effects)
    held_keys = {keys[run_id] for run_id in held}
    twice = {key for (_, key), pids in effects.items() if len(pids) > 1}
    assert max(len(pids) for pids in effects.values()) <= 2
    assert twice <= held_keys
    assert all(pids[0] == doomed.pid for (_, key), pids in effects.items() if len(pids) > 1)
    for run_id, expires in held.items():
        taken = [e.at for e in await store.history(run_id) if e.kind == "resumed"]
        assert taken[-1] >= expires, f"run {run_id} taken over before its lease expired"
        assert taken[-1] > killed_at


async def test_sigterm_hands_runs_back_and_a_new_worker_completes_them(
    workers: Workers, store: SqlStateStore, postgresql_url: str
) -> None:
    """
    SIGTERM with runs in flight and --grace 0.1: exit 0, nothing left half-claimed.

    The runs in flight are cancelled after the grace and their leases handed
    back, so a new worker completes them at once, without waiting for a lease.
    """
    total = 10
    first = workers.start("slow", "--concurrency", "5", "--poll", "0.2", "--grace", "0.1")
    flow = worker_flows.slow.with_store(store)
    keys = {await flow.enqueue(f"k{i}"): f"k{i}" for i in range(total)}
    await asyncio.to_thread(
        wait_for,
        lambda: count(postgresql_url, "lease_owner IS NOT NULL") == 5,
        "the worker holds five runs",
    )

    code = workers.stop(first)

    assert 0 == code
    assert 0 == count(postgresql_url, "lease_owner IS NOT NULL")
    assert 0 == count(postgresql_url, "status = 'completed'")  # all cut off in their 1 s step
    assert "run_handed_back" in workers.log(first)
    second = workers.start("slow", "--concurrency", "10", "--poll", "0.2")
    await asyncio.to_thread(
        wait_for,
        lambda: count(postgresql_url, "status = 'completed'") == total,
        "every run completed",
    )
    assert 0 == workers.stop(second)
    records = await store.list_runs(name="slow", limit=2 * total)
    assert {r.id: r.output for r in records} == {i: f"done {k}" for i, k in keys.items()}
    assert 0 == count(postgresql_url, "lease_owner IS NOT NULL")
