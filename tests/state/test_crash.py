"""
Real crashes: a process running a durable saga kills itself with SIGKILL, a new one resumes.

The flow is in ``crash_child.py``: five steps, each appending ``do i`` to a file
(its effect) and returning ``10 * input + i``; the undos of steps 1, 2, 3 and 5
append ``undo i``. Every scenario runs on a SQLite file and on the session's
PostgreSQL, in real processes that die between a step's effect and its
checkpoint. The processes are what takes time, so each scenario runs once per
database and module (its run id is its name), and its tests look at the result.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import functools
import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import psycopg
import pytest
import sqlalchemy as sa

from systemflow.state import RunStatus
from systemflow.state._sql import SqlStateStore

if TYPE_CHECKING:
    from collections import abc

    from systemflow.state import Event, RunRecord

T = TypeVar("T")

CHILD = Path(__file__).with_name("crash_child.py")
STEPS = 5
LEASE_SECONDS = 60.0  # crash_child.LEASE_SECONDS
LOCKED = 3  # crash_child's exit code for RunLocked
TIMEOUT = 30.0  # seconds a child may take before the test gives up on it


@attrs.frozen
class Child:
    """A finished child process: how it ended, what it printed, how long it took."""

    returncode: int
    pid: int
    summary: dict[str, Any] | None
    stderr: str
    seconds: float


@attrs.frozen
class Reference:
    """A run that no process interrupted."""

    child: Child
    record: RunRecord
    effects: list[str]


@attrs.frozen
class Scenario:
    """A run as a killed process left it, and as a new process finished it."""

    kill_at: int  # 0 if the process died elsewhere
    killed: Child
    held: RunRecord  # the run between the kill and the resume
    held_at: dt.datetime
    resumed: Child
    record: RunRecord
    history: list[Event]
    effects: list[str]


def child_args(url: str, run_id: str, kill_at: int, effects: Path, *options: str) -> list[str]:
    return [sys.executable, str(CHILD), url, run_id, str(kill_at), str(effects), *options]


def finished(returncode: int, stdout: str, stderr: str, seconds: float) -> Child:
    lines = [json.loads(line) for line in stdout.splitlines()]
    summary = lines[1] if len(lines) > 1 else None
    return Child(returncode, lines[0]["pid"], summary, stderr, seconds)


def run_child(url: str, run_id: str, kill_at: int, effects: Path, *options: str) -> Child:
    """Run the child to its end (or its death)."""
    began = time.monotonic()
    done = subprocess.run(
        child_args(url, run_id, kill_at, effects, *options),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    return finished(done.returncode, done.stdout, done.stderr, time.monotonic() - began)


def read_effects(effects: Path) -> list[str]:
    return effects.read_text(encoding="utf-8").splitlines() if effects.exists() else []


def stored(url: str, run_id: str) -> tuple[RunRecord, list[Event]]:
    """The run's record and history, read by this process."""

    async def read() -> tuple[RunRecord, list[Event]]:
        store = SqlStateStore(url)
        try:
            return await store.get(run_id), await store.history(run_id)
        finally:
            await store.close()

    return asyncio.run(read())


def run_reference(url: str, run_id: str, effects: Path) -> Reference:
    """Run the flow in one process, uninterrupted."""
    child = run_child(url, run_id, 0, effects)
    record, _ = stored(url, run_id)
    return Reference(child, record, read_effects(effects))


def crash_and_resume(
    url: str,
    run_id: str,
    effects: Path,
    kill_at: int,
    *,
    kill_options: abc.Sequence[str] = (),
    resume_options: abc.Sequence[str] = (),
) -> Scenario:
    """Start the run in a child that kills itself, then resume it in a new child."""
    killed = run_child(url, run_id, kill_at, effects, *kill_options)
    held, _ = stored(url, run_id)
    held_at = dt.datetime.now(dt.UTC)
    resumed = run_child(url, run_id, 0, effects, "--resume", *resume_options)
    record, history = stored(url, run_id)
    effects_seen = read_effects(effects)
    return Scenario(kill_at, killed, held, held_at, resumed, record, history, effects_seen)


def entries(history: list[Event]) -> list[str]:
    """The history as "kind path" lines."""
    return [" ".join([event.kind, *map(str, event.path or ())]) for event in history]


def steps(first: int, last: int) -> list[str]:
    return [f"step step_{i}" for i in range(first, last + 1)]


def does(first: int, last: int) -> list[str]:
    return [f"do {i}" for i in range(first, last + 1)]


class Lab:
    """
    The module's databases, made on first use, and the scenarios run in them, each once.
    """

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tmp = tmp_path_factory
        self._urls: dict[str, str] = {}
        self._schemas: list[tuple[str, str]] = []  # (server URI, schema) to drop
        self._done: dict[tuple[str, str], Any] = {}

    def sqlite(self) -> str:
        if "sqlite" not in self._urls:
            self._urls["sqlite"] = f"sqlite:///{self._tmp.mktemp('sqlite')}/s.sqlite3"
        return self._urls["sqlite"]

    def postgresql(self, uri: str) -> str:
        """A schema of the server at ``uri``, as conftest's postgresql_url, for the module."""
        if "postgresql" not in self._urls:
            schema = f"t_{uuid.uuid4().hex}"
            with psycopg.connect(uri, autocommit=True) as admin:
                admin.execute(f"CREATE SCHEMA {schema}")
            self._schemas.append((uri, schema))
            url = sa.make_url(uri)
            url = url.set(
                drivername="postgresql+psycopg",
                query={**url.query, "options": f"-csearch_path={schema}"},
            )
            self._urls["postgresql"] = url.render_as_string(hide_password=False)
        return self._urls["postgresql"]

    def once(self, url: str, run_id: str, scenario: abc.Callable[[str, str, Path], T]) -> T:
        """Run ``scenario(url, run_id, effects file)`` the first time; its result after."""
        key = (url, run_id)
        if key not in self._done:
            effects = self._tmp.mktemp(run_id) / "effects.txt"
            self._done[key] = scenario(url, run_id, effects)
        result: T = self._done[key]
        return result

    def close(self) -> None:
        for uri, schema in self._schemas:
            with psycopg.connect(uri, autocommit=True) as admin:
                admin.execute(f"DROP SCHEMA {schema} CASCADE")


# -- fixtures --------------------------------------------------------------------


@pytest.fixture(name="lab", scope="module")
def _lab(tmp_path_factory: pytest.TempPathFactory) -> abc.Iterator[Lab]:
    lab = Lab(tmp_path_factory)
    yield lab
    lab.close()


@pytest.fixture(name="database", params=["sqlite", "postgresql"])
def _database(request: pytest.FixtureRequest, lab: Lab) -> str:
    """
    The URL of the module's database of each kind: a SQLite file, a PostgreSQL schema.
    """
    if request.param == "sqlite":
        return lab.sqlite()
    uri: str = request.getfixturevalue("postgresql_uri")
    return lab.postgresql(uri)


@pytest.fixture(name="reference")
def _reference(lab: Lab, database: str) -> Reference:
    """
    A run that no process interrupted.
    """
    return lab.once(database, "reference", run_reference)


@pytest.fixture(name="crashed", params=range(1, STEPS + 1))
def _crashed(request: pytest.FixtureRequest, lab: Lab, database: str) -> Scenario:
    """
    A run killed right after the effect of step ``request.param``, then resumed.
    """
    kill_at: int = request.param
    scenario = functools.partial(crash_and_resume, kill_at=kill_at)
    return lab.once(database, f"crash-after-{kill_at}", scenario)


def live_contender(url: str, run_id: str, effects: Path) -> Child:
    """A resumer that tries while the run's holder stalls, alive, inside step 2."""
    holder = subprocess.Popen(
        child_args(url, run_id, 0, effects, "--stall-at", "2"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while "do 2" not in read_effects(effects):
            assert holder.poll() is None, holder.stderr.read() if holder.stderr else ""
            assert time.monotonic() < deadline, "the holder never reached step 2"
            time.sleep(0.05)
        return run_child(url, run_id, 0, effects, "--resume")
    finally:
        holder.kill()
        holder.communicate(timeout=TIMEOUT)


@pytest.fixture(name="contender")
def _contender(lab: Lab, database: str) -> Child:
    """
    A resumer that came while the run's holder was alive.
    """
    return lab.once(database, "live-holder", live_contender)


@pytest.fixture(name="failed")
def _failed(lab: Lab, database: str) -> Scenario:
    """
    Killed after step 2's effect; after the resume, step 5 fails.
    """
    fail = ("--fail-at", "5")
    scenario = functools.partial(
        crash_and_resume, kill_at=2, kill_options=fail, resume_options=fail
    )
    return lab.once(database, "fail-after-restart", scenario)


@pytest.fixture(name="undoing")
def _undoing(lab: Lab, database: str) -> Scenario:
    """
    Step 5 fails; the process dies inside the undo of step 2, after its effect.
    """
    fail = ("--fail-at", "5")
    kill = (*fail, "--kill-in-undo", "2")
    scenario = functools.partial(
        crash_and_resume, kill_at=0, kill_options=kill, resume_options=fail
    )
    return lab.once(database, "crash-in-undo", scenario)


# -- the tests -------------------------------------------------------------------


class TestUninterruptedRun:
    def test_output(self, reference):
        """The reference run threads the input through every step and completes."""
        assert 0 == reference.child.returncode, reference.child.stderr
        assert (RunStatus.COMPLETED, 712345) == (reference.record.status, reference.record.output)

    def test_each_effect_once(self, reference):
        """Without a crash every step's effect happens once, in order."""
        assert does(1, STEPS) == reference.effects


class TestCrashAfterStepEffect:
    def test_child_died_of_sigkill(self, crashed):
        """The first process died of its own SIGKILL, mid-run."""
        assert -signal.SIGKILL == crashed.killed.returncode
        assert crashed.killed.summary is None

    def test_same_output_as_uninterrupted(self, crashed, reference):
        """Resumed in a new process, the run ends with the uninterrupted run's output."""
        assert 0 == crashed.resumed.returncode, crashed.resumed.stderr
        assert reference.record.output == crashed.record.output
        assert reference.record.output == crashed.resumed.summary["output"]

    def test_completed(self, crashed):
        """The resumed run is completed."""
        assert RunStatus.COMPLETED == crashed.record.status

    def test_only_the_killed_step_ran_twice(self, crashed, reference):
        """Every effect happened once, but the killed step's: twice (effect, no checkpoint)."""
        kill_at = crashed.kill_at
        expected = collections.Counter(reference.effects) + collections.Counter([f"do {kill_at}"])
        assert expected == collections.Counter(crashed.effects)
        assert does(1, kill_at) + does(kill_at, STEPS) == crashed.effects

    def test_history_is_well_formed(self, crashed):
        """Started, a checkpoint per step before the kill, resumed, the rest, completed."""
        kill_at = crashed.kill_at
        expected = ["started", *steps(1, kill_at - 1), "resumed", *steps(kill_at, STEPS)]
        assert [*expected, "completed"] == entries(crashed.history)
        seqs = [event.seq for event in crashed.history]
        assert sorted(set(seqs)) == seqs


class TestDeadHolder:
    def test_lease_outlived_its_holder(self, crashed):
        """After the kill the run is still running, leased to the dead process, not expired."""
        held = crashed.held
        assert RunStatus.RUNNING == held.status
        assert str(crashed.killed.pid) == (held.lease_owner or "").split("/")[-3]
        assert held.lease_expires_at is not None
        assert held.lease_expires_at - crashed.held_at > dt.timedelta(seconds=LEASE_SECONDS / 2)

    def test_new_process_resumes_at_once(self, crashed):
        """The resumer takes the run over without RunLocked and without waiting for the lease."""
        assert 0 == crashed.resumed.returncode, crashed.resumed.stderr
        assert crashed.resumed.seconds < LEASE_SECONDS / 2


class TestLiveHolder:
    def test_live_holder_locks_the_run(self, contender):
        """A lease held by a live process of this host is respected: RunLocked."""
        assert LOCKED == contender.returncode
        assert "RunLocked" in contender.stderr


class TestCompensationAfterRestart:
    def test_child_died_of_sigkill(self, failed):
        """The first process died of its own SIGKILL, mid-run."""
        assert -signal.SIGKILL == failed.killed.returncode

    def test_run_failed(self, failed):
        """The run ends failed, with the failing step's error."""
        assert 0 == failed.resumed.returncode, failed.resumed.stderr
        assert RunStatus.FAILED == failed.record.status
        assert "step 5 fails" in (failed.record.error or "")

    def test_every_completed_step_undone_newest_first(self, failed):
        """Steps done before the kill are undone too, newest first, each once."""
        assert ["undo 3", "undo 2", "undo 1"] == [e for e in failed.effects if "undo" in e]
        assert [*does(1, 2), *does(2, 4), "undo 3", "undo 2", "undo 1"] == failed.effects

    def test_history_is_well_formed(self, failed):
        """The resumed claim records the rest of the steps, the failure and each undo once."""
        expected = [
            "started",
            *steps(1, 1),
            "resumed",
            *steps(2, 4),
            "failed step_5",
            "compensated step_3",
            "compensated step_2",
            "compensated step_1",
            "run_failed step_5",
        ]
        assert expected == entries(failed.history)


class TestCrashDuringCompensation:
    def test_child_died_of_sigkill(self, undoing):
        """The first process died of its own SIGKILL, while compensating."""
        assert -signal.SIGKILL == undoing.killed.returncode

    def test_run_failed(self, undoing):
        """The resumed run finishes compensating and ends failed."""
        assert 0 == undoing.resumed.returncode, undoing.resumed.stderr
        assert RunStatus.FAILED == undoing.record.status

    def test_remaining_undos_run_finished_ones_not_repeated(self, undoing):
        """Undo 3 (checkpointed) is not repeated; undo 2 (killed) runs again; then undo 1."""
        expected = [*does(1, 4), "undo 3", "undo 2", "undo 2", "undo 1"]
        assert expected == undoing.effects

    def test_history_is_well_formed(self, undoing):
        """Each undo is recorded once; the steps and the failure are not recorded again."""
        expected = [
            "started",
            *steps(1, 4),
            "failed step_5",
            "compensated step_3",
            "resumed",
            "compensated step_2",
            "compensated step_1",
            "run_failed step_5",
        ]
        assert expected == entries(undoing.history)
