"""
The state store contract, on every store: memory, a SQLite file and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import sqlite3
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from systemflow._core import RunExists, RunFinished, RunLocked, RunNotFound, SerializationError
from systemflow.state._model import Claim, NewEvent, RunStatus
from systemflow.state._sql import SqlStateStore

LONG = 30.0


def claim(owner: str = "a", lease: float = LONG) -> Claim:
    return Claim(owner, lease)


def never_dead(owner: str) -> bool:
    return False


async def create(store, run_id="r1", *, owner="a", lease=LONG, name="flow", input_json='{"n":1}'):
    return await store.create_run(
        run_id=run_id,
        name=name,
        input_json=input_json,
        fingerprint="fp",
        claim=claim(owner, lease),
    )


async def finish(store, run_id="r1", *, owner="a", status=RunStatus.COMPLETED, **kwargs):
    kind = {RunStatus.COMPLETED: "completed", RunStatus.FAILED: "run_failed"}.get(status, "paused")
    return await store.finish(
        run_id, claim=claim(owner), status=status, event=NewEvent(kind), **kwargs
    )


def kinds(events) -> list[str]:
    return [event.kind for event in events]


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class TestCreateRun:
    async def test_returns_running_record(self, store):
        """A new run is running under the creator's claim, with its input decoded."""
        rec = await create(store)

        assert (RunStatus.RUNNING, {"n": 1}, 1, "a") == (
            rec.status,
            rec.input,
            rec.version,
            rec.lease_owner,
        )

    async def test_get_returns_the_same_record(self, store):
        """get() reads back exactly what create_run returned."""
        rec = await create(store)

        assert rec == await store.get("r1")

    async def test_timestamps_are_aware_utc(self, store):
        """Timestamps come back as aware UTC datetimes."""
        await create(store)

        rec = await store.get("r1")

        assert [dt.UTC] * 3 == [
            rec.created_at.tzinfo,
            rec.updated_at.tzinfo,
            rec.lease_expires_at.tzinfo,
        ]

    async def test_history_starts_with_started(self, store):
        """The first event is ``started``, holding the input."""
        await create(store)

        history = await store.history("r1")

        assert [("started", None, '{"n":1}')] == [(e.kind, e.path, e.data) for e in history]

    async def test_started_data(self, store):
        """The ``started`` event holds ``started_data`` when given."""
        await store.create_run(
            run_id="r1",
            name="flow",
            input_json="1",
            fingerprint="fp",
            claim=claim(),
            started_data='{"input":1,"shape":[]}',
        )

        assert '{"input":1,"shape":[]}' == (await store.history("r1"))[0].data

    async def test_existing_id_raises_run_exists(self, store):
        """A second run with the same id is refused, naming the id."""
        await create(store)

        with pytest.raises(RunExists, match="r1") as info:
            await create(store, owner="b")

        assert "r1" == info.value.run_id

    async def test_existing_run_is_unchanged(self, store):
        """A refused create_run leaves the existing run as it was."""
        rec = await create(store)
        with pytest.raises(RunExists):
            await create(store, owner="b", input_json='{"n":2}')

        assert rec == await store.get("r1")


class TestGet:
    async def test_unknown_run_raises_run_not_found(self, store):
        """get() of an unknown id is a RunNotFound (a LookupError) naming it."""
        with pytest.raises(LookupError, match="nope") as info:
            await store.get("nope")

        assert isinstance(info.value, RunNotFound)

    async def test_unknown_history_raises_run_not_found(self, store):
        """history() of an unknown id is a RunNotFound."""
        with pytest.raises(RunNotFound, match="nope"):
            await store.history("nope")


class TestClaimRun:
    async def test_finished_run_raises_run_finished(self, store):
        """A completed run cannot be claimed."""
        await create(store)
        await finish(store, output_json="1")

        with pytest.raises(RunFinished, match="r1") as info:
            await store.claim_run("r1", claim=claim("b"), is_dead=never_dead)

        assert "completed" == info.value.status

    async def test_live_lease_raises_run_locked(self, store):
        """A run whose lease holds is locked for another claim."""
        await create(store)

        with pytest.raises(RunLocked, match="r1"):
            await store.claim_run("r1", claim=claim("b"), is_dead=never_dead)

    async def test_expired_lease_is_claimable(self, store):
        """A running run whose lease expired is taken over."""
        await create(store, lease=-1)

        rec, _ = await store.claim_run("r1", claim=claim("b"), is_dead=never_dead)

        assert (RunStatus.RUNNING, "b") == (rec.status, rec.lease_owner)

    async def test_short_lease_expires(self, store):
        """A lease of 50 ms can be taken over once 50 ms have passed."""
        await create(store, lease=0.05)
        await asyncio.sleep(0.06)

        rec, _ = await store.claim_run("r1", claim=claim("b"), is_dead=never_dead)

        assert "b" == rec.lease_owner

    async def test_dead_owner_is_claimable(self, store):
        """A live lease of an owner that is_dead says is gone is taken over at once."""
        await create(store)

        rec, _ = await store.claim_run("r1", claim=claim("b"), is_dead=lambda owner: owner == "a")

        assert "b" == rec.lease_owner

    async def test_sets_the_new_lease(self, store):
        """The claim's lease starts when it is claimed."""
        await create(store, lease=-1)
        before = now()

        rec, _ = await store.claim_run("r1", claim=claim("b", 60), is_dead=never_dead)

        assert before + dt.timedelta(seconds=59) < rec.lease_expires_at

    async def test_bumps_the_version(self, store):
        """Claiming is a change of the row: the version goes up."""
        await create(store, lease=-1)

        rec, _ = await store.claim_run("r1", claim=claim("b"), is_dead=never_dead)

        assert 2 == rec.version

    async def test_returns_history_with_resumed(self, store):
        """The claim returns the history, ending with its ``resumed`` event."""
        await create(store, lease=-1)

        _, history = await store.claim_run("r1", claim=claim("b"), is_dead=never_dead)

        assert (["started", "resumed"], history) == (kinds(history), await store.history("r1"))

    async def test_paused_run_is_claimable(self, store):
        """A paused run is claimed, and its wake_at cleared."""
        await create(store)
        await finish(store, status=RunStatus.PAUSED, wake_at=now())

        rec, _ = await store.claim_run("r1", claim=claim("b"), is_dead=never_dead)

        assert (RunStatus.RUNNING, None) == (rec.status, rec.wake_at)

    async def test_released_run_is_claimable(self, store):
        """A run whose lease was given back is claimed at once."""
        await create(store)
        await store.release("r1", claim=claim("a"))

        rec, _ = await store.claim_run("r1", claim=claim("b"), is_dead=never_dead)

        assert "b" == rec.lease_owner

    async def test_unknown_run_raises_run_not_found(self, store):
        """Claiming an unknown run is a RunNotFound."""
        with pytest.raises(RunNotFound, match="nope"):
            await store.claim_run("nope", claim=claim(), is_dead=never_dead)

    async def test_two_tasks_one_wins(self, store):
        """Of two concurrent claims of one run, exactly one wins; the other gets RunLocked."""
        await create(store, lease=-1)

        results = await asyncio.gather(
            store.claim_run("r1", claim=claim("b"), is_dead=never_dead),
            store.claim_run("r1", claim=claim("c"), is_dead=never_dead),
            return_exceptions=True,
        )

        locked = [r for r in results if isinstance(r, RunLocked)]
        winners = [r[0].lease_owner for r in results if isinstance(r, tuple)]
        assert (1, winners) == (len(locked), [(await store.get("r1")).lease_owner])


CLAIMER = """
import asyncio, sys
from systemflow._core import RunLocked
from systemflow.state._model import Claim
from systemflow.state._sql import SqlStateStore

async def main(url, owner):
    store = SqlStateStore(url)
    await store.get("r1")  # connected, schema in place
    print("ready", flush=True)
    sys.stdin.readline()
    try:
        await store.claim_run("r1", claim=Claim(owner, 30), is_dead=lambda owner: False)
        print("won", flush=True)
    except RunLocked:
        print("locked", flush=True)
    finally:
        await store.close()

asyncio.run(main(*sys.argv[1:]))
"""


class TestClaimAcrossProcesses:
    async def test_one_process_wins(self, sql_store, sql_url):
        """Two processes claim one run at once: exactly one wins, the other gets RunLocked."""
        await create(sql_store, lease=-1)
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                CLAIMER,
                sql_url,
                owner,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                cwd=Path(__file__).parents[2],
            )
            for owner in ("p1", "p2")
        ]
        readies = [await proc.stdout.readline() for proc in procs]
        for proc in procs:  # both are waiting: release them together
            proc.stdin.write(b"go\n")
        for proc in procs:
            await proc.stdin.drain()
        outputs = [(await proc.communicate())[0].decode().strip() for proc in procs]

        winner = "p1" if outputs[0] == "won" else "p2"
        assert ([b"ready\n"] * 2, ["locked", "won"], winner) == (
            readies,
            sorted(outputs),
            (await sql_store.get("r1")).lease_owner,
        )


class TestAppend:
    async def test_returns_increasing_seqs(self, store):
        """Appends return one sequence number per event, increasing."""
        await create(store)

        first = await store.append("r1", [NewEvent("step", ("a",), "1")], claim=claim())
        more = await store.append(
            "r1",
            [NewEvent("step", ("b", 0), "2"), NewEvent("decision", ("c",), "true")],
            claim=claim(),
        )

        seqs = first + more
        assert (3, seqs) == (len(seqs), sorted(set(seqs)))

    async def test_events_are_in_history(self, store):
        """Appended events are in the history, in order, with their seqs."""
        await create(store)
        events = [NewEvent("step", ("saga", 0), '{"x":1}'), NewEvent("step", ("saga", 1), None)]

        seqs = await store.append("r1", events, claim=claim())

        history = (await store.history("r1"))[1:]
        assert [
            (seqs[0], "step", ("saga", 0), '{"x":1}'),
            (seqs[1], "step", ("saga", 1), None),
        ] == [(e.seq, e.kind, e.path, e.data) for e in history]

    async def test_many_events_at_once(self, store):
        """A large append keeps every event, in order."""
        await create(store)
        events = [NewEvent("step", (i,), str(i)) for i in range(250)]

        seqs = await store.append("r1", events, claim=claim())

        history = (await store.history("r1"))[1:]
        assert (seqs, [str(i) for i in range(250)]) == (
            [e.seq for e in history],
            [e.data for e in history],
        )

    async def test_renews_the_lease(self, store):
        """An append renews a lease that is running out."""
        await create(store, lease=0.5)
        before = now()

        await store.append("r1", [NewEvent("step", ("a",), "1")], claim=claim("a", 60))

        assert before + dt.timedelta(seconds=59) < (await store.get("r1")).lease_expires_at

    async def test_renewed_lease_holds_off_a_takeover(self, store):
        """A lease renewed by an append keeps another claim from taking the run."""
        await create(store, lease=-1)
        await store.append("r1", [NewEvent("step", ("a",), "1")], claim=claim("a", 60))

        with pytest.raises(RunLocked, match="r1"):
            await store.claim_run("r1", claim=claim("b"), is_dead=never_dead)

    async def test_finish_after_append_releases_the_lease(self, store):
        """A run finished after an append holds no lease, whatever the append renewed."""
        await create(store)
        await store.append("r1", [NewEvent("step", ("a",), "1")], claim=claim("a", 60))

        record = await finish(store)

        assert (None, None) == (record.lease_owner, record.lease_expires_at)

    async def test_after_takeover_raises_run_locked(self, store):
        """A claim that lost its run to another cannot append to it."""
        await create(store, lease=-1)
        await store.claim_run("r1", claim=claim("b"), is_dead=never_dead)

        with pytest.raises(RunLocked, match="r1"):
            await store.append("r1", [NewEvent("step", ("a",), "1")], claim=claim("a"))

    async def test_after_cancel_raises_run_locked(self, store):
        """A cancelled run takes no more events."""
        await create(store)
        await store.cancel("r1")

        with pytest.raises(RunLocked, match="cancelled"):
            await store.append("r1", [NewEvent("step", ("a",), "1")], claim=claim())

    async def test_failed_append_writes_nothing(self, store):
        """Events of a claim that lost the run are not recorded."""
        await create(store, lease=-1)
        await store.claim_run("r1", claim=claim("b"), is_dead=never_dead)
        with pytest.raises(RunLocked):
            await store.append("r1", [NewEvent("step", ("a",), "1")], claim=claim("a"))

        assert ["started", "resumed"] == kinds(await store.history("r1"))

    async def test_nothing_to_append_still_checks_the_claim(self, store):
        """An empty append is refused to a claim that lost the run."""
        await create(store)
        await store.cancel("r1")

        with pytest.raises(RunLocked):
            await store.append("r1", [], claim=claim())

    async def test_nothing_to_append_returns_no_seqs(self, store):
        """An empty append by the holder returns no sequence numbers."""
        await create(store)

        assert [] == await store.append("r1", [], claim=claim())

    async def test_unknown_run_raises_run_not_found(self, store):
        """Appending to an unknown run is a RunNotFound."""
        with pytest.raises(RunNotFound):
            await store.append("nope", [NewEvent("step", ("a",), "1")], claim=claim())


class TestTakeSignal:
    async def test_none_waiting_returns_none(self, store):
        """With no signal waiting, take_signal returns None."""
        await create(store)

        assert None is await store.take_signal("r1", "go", ("w",), claim=claim())

    async def test_oldest_first(self, store):
        """Signals are consumed oldest first, each once."""
        await create(store)
        for payload in (1, 2):
            await store.signal("r1", "go", payload)

        taken = [await store.take_signal("r1", "go", ("w", i), claim=claim()) for i in range(3)]

        assert ["1", "2", None] == [e and e.data for e in taken]

    async def test_returns_the_signal_event(self, store):
        """The consumed signal becomes a ``signal`` event at the path, as in the history."""
        await create(store)
        await store.signal("r1", "go", {"ok": True})

        event = await store.take_signal("r1", "go", ("w",), claim=claim())

        assert (("signal", ("w",), '{"ok":true}'), event) == (
            (event.kind, event.path, event.data),
            (await store.history("r1"))[-1],
        )

    async def test_other_signals_stay(self, store):
        """Taking one signal leaves signals of other names waiting."""
        await create(store)
        await store.signal("r1", "a", 1)

        missing = await store.take_signal("r1", "b", ("w",), claim=claim())
        found = await store.take_signal("r1", "a", ("w",), claim=claim())

        assert (None, "1") == (missing, found.data)

    async def test_signal_sent_before_pause_is_kept(self, store):
        """A signal sent while the run works waits for the next claim."""
        await create(store)
        await store.signal("r1", "go", 7)
        await finish(store, status=RunStatus.PAUSED)
        await store.claim_run("r1", claim=claim("b"), is_dead=never_dead)

        event = await store.take_signal("r1", "go", ("w",), claim=claim("b"))

        assert "7" == event.data

    async def test_not_held_raises_run_locked(self, store):
        """A claim that lost the run cannot take its signals."""
        await create(store)
        await store.signal("r1", "go", 1)
        await store.cancel("r1")

        with pytest.raises(RunLocked):
            await store.take_signal("r1", "go", ("w",), claim=claim())

    async def test_unknown_run_raises_run_not_found(self, store):
        """Taking a signal of an unknown run is a RunNotFound."""
        with pytest.raises(RunNotFound):
            await store.take_signal("nope", "go", ("w",), claim=claim())


class TestSignal:
    async def test_unknown_run_raises_run_not_found(self, store):
        """A signal to an unknown run is a RunNotFound naming it."""
        with pytest.raises(RunNotFound, match="nope"):
            await store.signal("nope", "go", 1)

    async def test_finished_run_raises_run_finished(self, store):
        """A signal to a finished run is a RunFinished."""
        await create(store)
        await finish(store, status=RunStatus.FAILED, error="boom")

        with pytest.raises(RunFinished, match="r1") as info:
            await store.signal("r1", "go", 1)

        assert "failed" == info.value.status

    async def test_records_signalled(self, store):
        """Delivering a signal adds a ``signalled`` event naming it."""
        await create(store)

        await store.signal("r1", "go", 1)

        last = (await store.history("r1"))[-1]
        assert ("signalled", {"signal": "go"}) == (last.kind, json.loads(last.data))

    async def test_wakes_a_paused_run(self, store):
        """A signal to a paused run makes it due now."""
        await create(store)
        await finish(store, status=RunStatus.PAUSED)
        before = now()

        await store.signal("r1", "go", 1)

        rec = await store.get("r1")
        assert (True, 3) == (before <= rec.wake_at <= now(), rec.version)

    async def test_running_run_stays_unwoken(self, store):
        """A signal to a running run sets no wake_at."""
        await create(store)

        await store.signal("r1", "go", 1)

        assert (None, 1) == ((rec := await store.get("r1")).wake_at, rec.version)

    async def test_unstorable_payload_raises_serialization_error(self, store):
        """A payload with no JSON form is refused, naming the run, and nothing is kept."""
        await create(store)

        with pytest.raises(SerializationError, match="r1"):
            await store.signal("r1", "go", object())

        assert ["started"] == kinds(await store.history("r1"))


class TestFinish:
    async def test_completed(self, store):
        """Completing sets status and output, and releases the lease."""
        await create(store)

        rec = await finish(store, output_json='{"total":3}')

        assert (RunStatus.COMPLETED, {"total": 3}, None, None, None, 2) == (
            rec.status,
            rec.output,
            rec.lease_owner,
            rec.lease_expires_at,
            rec.wake_at,
            rec.version,
        )

    async def test_failed(self, store):
        """Failing keeps the error."""
        await create(store)

        rec = await finish(store, status=RunStatus.FAILED, error="card declined")

        assert (RunStatus.FAILED, "card declined") == (rec.status, rec.error)

    async def test_appends_its_event(self, store):
        """The finishing event ends the history."""
        await create(store)

        await finish(store)

        assert ["started", "completed"] == kinds(await store.history("r1"))

    async def test_returns_what_get_returns(self, store):
        """finish() returns the stored record."""
        await create(store)

        rec = await finish(store, output_json="5")

        assert rec == await store.get("r1")

    async def test_paused_keeps_wake_at(self, store):
        """A paused run keeps its timer's wake_at."""
        await create(store)
        wake = dt.datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)

        rec = await finish(store, status=RunStatus.PAUSED, wake_at=wake)

        assert (RunStatus.PAUSED, wake) == (rec.status, rec.wake_at)

    async def test_paused_with_waiting_signal_is_due(self, store):
        """A run that pauses while a signal waits is due at once."""
        await create(store)
        await store.signal("r1", "go", 1)
        before = now()

        rec = await finish(
            store, status=RunStatus.PAUSED, wake_at=before + dt.timedelta(days=1), signals=["go"]
        )

        assert before <= rec.wake_at <= now()

    async def test_paused_with_other_signal_waiting_is_not_due(self, store):
        """A signal the run does not wait for leaves its wake time alone (no busy loop)."""
        await create(store)
        await store.signal("r1", "other", 1)
        wake = now() + dt.timedelta(days=1)

        rec = await finish(store, status=RunStatus.PAUSED, wake_at=wake, signals=["go"])

        assert wake == rec.wake_at

    async def test_not_held_raises_run_locked(self, store):
        """A claim that lost the run cannot finish it."""
        await create(store, lease=-1)
        await store.claim_run("r1", claim=claim("b"), is_dead=never_dead)

        with pytest.raises(RunLocked, match="r1"):
            await finish(store)


class TestHeartbeat:
    async def test_renews_the_lease(self, store):
        """A heartbeat pushes the lease forward."""
        await create(store, lease=-1)
        before = now()

        await store.heartbeat("r1", claim=claim("a", 60))

        assert before + dt.timedelta(seconds=59) < (await store.get("r1")).lease_expires_at

    async def test_not_held_raises_run_locked(self, store):
        """A claim that lost the run cannot renew it."""
        await create(store)
        await store.cancel("r1")

        with pytest.raises(RunLocked):
            await store.heartbeat("r1", claim=claim())


class TestRelease:
    async def test_gives_the_lease_back(self, store):
        """Releasing clears the owner, expires the lease now, keeps status, bumps version."""
        await create(store)
        before = now()

        await store.release("r1", claim=claim())

        rec = await store.get("r1")
        assert (RunStatus.RUNNING, None, 2) == (rec.status, rec.lease_owner, rec.version)
        assert before <= rec.lease_expires_at <= now()

    async def test_other_claim_changes_nothing(self, store):
        """Releasing someone else's lease does nothing."""
        rec = await create(store)

        await store.release("r1", claim=claim("b"))

        assert rec == await store.get("r1")

    async def test_unknown_run_raises_run_not_found(self, store):
        """Releasing an unknown run is a RunNotFound."""
        with pytest.raises(RunNotFound):
            await store.release("nope", claim=claim())


class TestCancel:
    async def test_cancels_a_running_run(self, store):
        """Cancelling sets the status, clears lease and wake_at, records ``cancelled``."""
        await create(store)

        rec = await store.cancel("r1")

        assert (RunStatus.CANCELLED, None, "cancelled") == (
            rec.status,
            rec.lease_owner,
            (await store.history("r1"))[-1].kind,
        )

    async def test_finished_run_is_unchanged(self, store):
        """Cancelling a completed run returns it as it was."""
        await create(store)
        done = await finish(store, output_json="1")

        assert done == await store.cancel("r1")

    async def test_unknown_run_raises_run_not_found(self, store):
        """Cancelling an unknown run is a RunNotFound."""
        with pytest.raises(RunNotFound, match="nope"):
            await store.cancel("nope")


class TestListRuns:
    async def test_newest_first(self, store):
        """Runs come newest first."""
        for run_id in ("r1", "r2", "r3"):
            await create(store, run_id)

        assert ["r3", "r2", "r1"] == [rec.id for rec in await store.list_runs()]

    async def test_by_name(self, store):
        """Runs can be listed by the name of their flow."""
        await create(store, "r1", name="order")
        await create(store, "r2", name="refund")

        assert ["r1"] == [rec.id for rec in await store.list_runs(name="order")]

    async def test_by_status(self, store):
        """Runs can be listed by status."""
        await create(store, "r1")
        await create(store, "r2")
        await finish(store, "r2")

        assert ["r2"] == [rec.id for rec in await store.list_runs(status=RunStatus.COMPLETED)]

    async def test_by_name_and_status(self, store):
        """Both filters apply together."""
        await create(store, "r1", name="order")
        await create(store, "r2", name="refund")
        await create(store, "r3", name="order")
        await finish(store, "r3")

        listed = await store.list_runs(name="order", status=RunStatus.RUNNING)

        assert ["r1"] == [rec.id for rec in listed]

    async def test_limit(self, store):
        """At most ``limit`` runs, the newest."""
        for run_id in ("r1", "r2", "r3"):
            await create(store, run_id)

        assert ["r3", "r2"] == [rec.id for rec in await store.list_runs(limit=2)]

    async def test_records_match_get(self, store):
        """Listed records are the ones get() returns."""
        await create(store)
        await store.append("r1", [NewEvent("step", ("a",), "1")], claim=claim())

        assert [await store.get("r1")] == await store.list_runs()


class TestCurrentPath:
    async def test_none_at_start(self, store):
        """A run that recorded nothing at a path has no current path."""
        await create(store)

        assert None is (await store.get("r1")).current_path

    async def test_newest_event_with_a_path(self, store):
        """The current path is the path of the newest event that has one."""
        await create(store)
        await store.append(
            "r1",
            [NewEvent("step", ("saga", 0), "1"), NewEvent("step", ("saga", 1, "charge"), "2")],
            claim=claim(),
        )
        await store.signal("r1", "go", 1)  # an event without a path

        assert ("saga", 1, "charge") == (await store.get("r1")).current_path

    async def test_root_path(self, store):
        """The root's empty path counts as a path."""
        await create(store)
        await store.append("r1", [NewEvent("step", (), "1")], claim=claim())

        assert () == (await store.get("r1")).current_path


class TestTamperedRows:
    async def test_invalid_input_json(self, sql_store, raw_sql):
        """Garbage in the input column is a SerializationError naming the run and column."""
        await create(sql_store)
        raw_sql("UPDATE runs SET input = '{not json' WHERE id = 'r1'")

        with pytest.raises(SerializationError, match=r"run r1: column runs\.input") as info:
            await sql_store.get("r1")

        assert "r1" == info.value.run_id

    async def test_invalid_output_json(self, sql_store, raw_sql):
        """Garbage in the output column is a SerializationError naming the column."""
        await create(sql_store)
        raw_sql("UPDATE runs SET output = 'pickle:xyz' WHERE id = 'r1'")

        with pytest.raises(SerializationError, match=r"run r1: column runs\.output"):
            await sql_store.list_runs()

    async def test_invalid_path(self, sql_store, raw_sql):
        """A path that is not a JSON array of segments is a SerializationError."""
        await create(sql_store)
        await sql_store.append("r1", [NewEvent("step", ("a",), "1")], claim=claim())
        raw_sql("""UPDATE events SET path = '{"a": 1}' WHERE kind = 'step'""")

        with pytest.raises(SerializationError, match=r"run r1: column events\.path"):
            await sql_store.history("r1")

    async def test_path_that_is_not_json(self, sql_store, raw_sql):
        """A path that is not JSON at all is a SerializationError too."""
        await create(sql_store)
        await sql_store.append("r1", [NewEvent("step", ("a",), "1")], claim=claim())
        raw_sql("UPDATE events SET path = 'a/b' WHERE kind = 'step'")

        with pytest.raises(SerializationError, match=r"'a/b', which is not a path"):
            await sql_store.history("r1")

    async def test_invalid_current_path(self, sql_store, raw_sql):
        """The record's current path is checked the same way."""
        await create(sql_store)
        await sql_store.append("r1", [NewEvent("step", ("a",), "1")], claim=claim())
        raw_sql("UPDATE events SET path = '[1.5]' WHERE kind = 'step'")

        with pytest.raises(SerializationError, match=r"run r1: column events\.path"):
            await sql_store.get("r1")

    async def test_unknown_status(self, sql_store, raw_sql):
        """A status the store does not know is a SerializationError naming the column."""
        await create(sql_store)
        raw_sql("UPDATE runs SET status = 'sleeping' WHERE id = 'r1'")

        with pytest.raises(SerializationError, match=r"run r1: column runs\.status"):
            await sql_store.claim_run("r1", claim=claim("b"), is_dead=never_dead)

    async def test_invalid_timestamp(self, sqlite_url):
        """A timestamp SQLite cannot read back is a SerializationError naming the column."""
        store = SqlStateStore(sqlite_url)
        try:
            await create(store)
            with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as conn:
                conn.execute("UPDATE runs SET created_at = 'yesterday'")
            conn.close()

            with pytest.raises(SerializationError, match=r"run r1: column runs\.created_at"):
                await store.get("r1")
        finally:
            await store.close()


class TestVersionRace:
    async def test_lost_race_raises_run_locked(self, postgresql_url):
        """A claim whose row changed since it read it gets RunLocked (PostgreSQL reads unlocked)."""
        store = SqlStateStore(postgresql_url)
        engine = sa.create_engine(postgresql_url)

        def racing_claim(owner: str) -> bool:
            # Another claim takes the run between our read and our update.
            with engine.begin() as conn:
                conn.exec_driver_sql("UPDATE runs SET version = version + 1, lease_owner = 'c'")
            return True

        try:
            await create(store)
            with pytest.raises(RunLocked, match="at the same time"):
                await store.claim_run("r1", claim=claim("b"), is_dead=racing_claim)
            owner = (await store.get("r1")).lease_owner
        finally:
            await store.close()
            engine.dispose()

        assert "c" == owner


class TestSqlStateStore:
    async def test_default_url_is_a_file_in_the_cwd(self, tmp_path, monkeypatch):
        """Without a URL, the store is systemflow.sqlite3 in the current directory, in WAL mode."""
        monkeypatch.chdir(tmp_path)
        store = SqlStateStore()
        try:
            await create(store)
        finally:
            await store.close()

        with sqlite3.connect(tmp_path / "systemflow.sqlite3") as conn:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            ids = conn.execute("SELECT id FROM runs").fetchall()
        conn.close()
        assert ("wal", [("r1",)]) == (mode, ids)

    async def test_paths_are_stored_as_json(self, sql_store, sql_url):
        """A path is kept as the JSON text of its segments."""
        await create(sql_store)
        await sql_store.append("r1", [NewEvent("step", ("saga", 0), "1")], claim=claim())
        engine = sa.create_engine(sql_url)
        with engine.connect() as conn:
            stored = conn.exec_driver_sql("SELECT path FROM events WHERE kind = 'step'").scalar()
        engine.dispose()

        assert '["saga",0]' == stored

    async def test_reopened_store_reads_runs(self, sql_url):
        """A second store on the same database sees the runs of the first."""
        first = SqlStateStore(sql_url)
        rec = await create(first)
        await first.close()
        second = SqlStateStore(sql_url)
        try:
            assert rec == await second.get("r1")
        finally:
            await second.close()

    async def test_usable_after_close(self, sql_store):
        """A closed store reconnects when used again."""
        rec = await create(sql_store)
        await sql_store.close()

        assert rec == await sql_store.get("r1")

    async def test_echo_logs_statements(self, sql_url, caplog):
        """echo=True logs the statements the store runs."""
        logger = logging.getLogger("sqlalchemy.engine.Engine")
        level, handlers = logger.level, list(logger.handlers)
        store = SqlStateStore(sql_url, echo=True)
        try:
            with caplog.at_level(logging.INFO, logger="sqlalchemy.engine.Engine"):
                await create(store)
        finally:
            await store.close()
            logger.setLevel(level)
            logger.handlers[:] = handlers

        assert any("INSERT INTO events" in r.getMessage() for r in caplog.records)

    def test_other_databases_are_refused(self):
        """A URL of another database is a ValueError naming it."""
        with pytest.raises(ValueError, match="mysql"):
            SqlStateStore("mysql://u@h/db")

    def test_unknown_synchronous_is_refused(self, tmp_path):
        """synchronous takes SQLite's words only."""
        with pytest.raises(ValueError, match="synchronous"):
            SqlStateStore(f"sqlite:///{tmp_path}/x.sqlite3", synchronous="NORMAL; DROP TABLE runs")

    def test_repr_hides_the_password(self):
        """The repr shows the URL without its password, and does no I/O."""
        store = SqlStateStore("postgresql://me:secret@db.example/runs")

        assert "SqlStateStore('postgresql://me:***@db.example/runs')" == repr(store)

    async def test_naive_wake_at_is_refused(self, sql_store):
        """wake_at must be timezone-aware."""
        await create(sql_store)

        with pytest.raises(ValueError, match="wake_at"):
            await finish(sql_store, status=RunStatus.PAUSED, wake_at=dt.datetime(2030, 1, 1))  # noqa: DTZ001


class TestOldLayout:
    async def test_tables_of_an_earlier_layout_are_refused(self, sql_url, raw_sql):
        """A database whose tables lack this version's columns is refused, by name."""
        raw_sql("CREATE TABLE runs (id TEXT PRIMARY KEY, name TEXT NOT NULL)")
        store = SqlStateStore(sql_url)
        try:
            with pytest.raises(RuntimeError, match="'runs' lacks status"):
                await store.list_runs()
        finally:
            await store.close()
