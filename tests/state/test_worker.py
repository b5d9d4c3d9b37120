"""
Workers, tenants and enqueued runs, on every store (memory, a SQLite file, PostgreSQL).

The multi-process tests (three worker processes, SIGKILL) are in test_workers_processes.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest
import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import create_async_engine

import systemflow as sf
from systemflow.state import RunStatus, SqlStateStore, Worker
from systemflow.state._model import Claim, NewEvent


async def double(x: int) -> int:
    return 2 * x


def echo_flow(store, name="echo"):
    """A durable flow: double, then wait for "go" and return its payload."""
    return sf.Stateful(
        sf.Step(double, name="double") >> sf.WaitForSignal("go", name="wait"),
        store=store,
        name=name,
    )


async def until(predicate, seconds=10.0):
    """Poll ``predicate`` (async) until it is true, or fail after ``seconds``."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"not true within {seconds} s: {predicate.__doc__}")
        await asyncio.sleep(0.01)


async def versions_warnings(worker):
    """Start ``worker``, stop it at once; return its runs_of_other_versions log events."""
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(0.05)
        worker.stop()
        await task
    return [e for e in logs if e["event"] == "runs_of_other_versions"]


async def statuses(store, run_ids):
    return [(await store.get(run_id)).status for run_id in run_ids]


class TestEnqueue:
    async def test_enqueued_run_is_pending(self, store):
        """enqueue records a pending run with its started event, and returns its id."""
        flow = sf.Stateful(sf.Step(double), store=store, name="d")

        run_id = await flow.enqueue(21)

        rec = await store.get(run_id)
        assert (RunStatus.PENDING, 21, None) == (rec.status, rec.input, rec.lease_owner)
        assert ["started"] == [e.kind for e in await store.history(run_id)]

    async def test_enqueue_same_id_twice_raises(self, store):
        """An id is one run: enqueueing it again is RunExists, and the first run is kept."""
        flow = sf.Stateful(sf.Step(double), store=store, name="d")
        await flow.enqueue(1, run_id="r1")

        with pytest.raises(sf.RunExists, match="r1"):
            await flow.enqueue(2, run_id="r1")

        assert 1 == (await store.get("r1")).input

    async def test_enqueue_on_connection_needs_sql_store(self):
        """A caller's connection only makes sense with a SqlStateStore."""
        flow = sf.Stateful(sf.Step(double), store=sf.state.InMemoryStateStore(), name="d")

        with pytest.raises(TypeError, match="SqlStateStore"):
            await flow.enqueue(1, connection=object())


class TestEnqueueInCallersTransaction:
    async def test_sync_connection_commit_and_rollback(self, sql_url):
        """The run is written in the caller's transaction: kept on commit, gone on rollback."""
        store = SqlStateStore(sql_url)
        flow = sf.Stateful(sf.Step(double), store=store, name="d")
        await store.list_runs()  # the tables exist
        engine = sa.create_engine(sql_url)
        try:
            with engine.begin() as conn:
                kept = await flow.enqueue(1, connection=conn)
            with engine.connect() as conn, conn.begin() as tx:
                lost = await flow.enqueue(2, connection=conn)
                tx.rollback()
        finally:
            engine.dispose()

        assert RunStatus.PENDING == (await store.get(kept)).status
        with pytest.raises(sf.RunNotFound):
            await store.get(lost)
        await store.close()

    async def test_async_connection(self, postgresql_url):
        """An asyncio connection works too (PostgreSQL, psycopg)."""
        store = SqlStateStore(postgresql_url)
        flow = sf.Stateful(sf.Step(double), store=store, name="d")
        await store.list_runs()
        engine = create_async_engine(
            postgresql_url.replace("postgresql://", "postgresql+psycopg://")
        )
        try:
            async with engine.begin() as conn:
                run_id = await flow.enqueue(5, connection=conn)
        finally:
            await engine.dispose()

        assert 5 == (await store.get(run_id)).input
        await store.close()

    async def test_other_database_kind_refused(self, sqlite_url):
        """A connection to another kind of database is refused, naming it."""
        store = SqlStateStore(sqlite_url)
        engine = sa.create_engine("sqlite://")
        flow = sf.Stateful(sf.Step(double), store=store, name="d")
        try:
            with engine.connect() as conn:
                conn.dialect.name = "postgresql"  # as if it were another database
                with pytest.raises(ValueError, match="postgresql"):
                    await flow.enqueue(1, connection=conn)
        finally:
            engine.dispose()
            await store.close()


class TestClaimDue:
    async def test_claims_pending_then_nothing(self, store):
        """A pending run is claimed once; a second look finds nothing."""
        flow = sf.Stateful(sf.Step(double), store=store, name="d")
        run_id = await flow.enqueue(1)
        claims = [Claim("w/1", 30), Claim("w/2", 30)]

        first = await store.claim_due({"d": flow.fingerprint}, claims=claims, max_attempts=3)
        second = await store.claim_due({"d": flow.fingerprint}, claims=claims, max_attempts=3)

        assert [(claims[0], run_id)] == [(c, rec.id) for c, rec, _ in first]
        assert (RunStatus.RUNNING, 1) == (first[0][1].status, first[0][1].attempts)
        assert [] == second

    async def test_claims_several_at_once(self, store):
        """Several due runs are claimed together, each by its own claim, with its own history."""
        flow = sf.Stateful(sf.Step(double), store=store, name="d")
        run_ids = {await flow.enqueue(n) for n in range(3)}
        claims = [Claim(f"w/{i}", 30) for i in range(4)]

        claimed = await store.claim_due({"d": flow.fingerprint}, claims=claims, max_attempts=3)

        assert run_ids == {rec.id for _, rec, _ in claimed}
        for claim, rec, history in claimed:
            assert (claim.owner, RunStatus.RUNNING, 1) == (
                rec.lease_owner,
                rec.status,
                rec.attempts,
            )
            assert [(rec.id, "started"), (rec.id, "resumed")] == [
                (e.run_id, e.kind) for e in history
            ]
            assert rec == await store.get(rec.id)

    async def test_only_named_flows(self, store):
        """Runs of other flows are left alone."""
        await sf.Stateful(sf.Step(double), store=store, name="other").enqueue(1)

        claims = [Claim("w", 30)]
        d = sf.Stateful(sf.Step(double), store=store, name="d")

        assert [] == await store.claim_due({"d": d.fingerprint}, claims=claims, max_attempts=3)

    async def test_only_the_same_version(self, store):
        """A run started with another tree is left for a worker that has that version."""
        old = sf.Stateful(sf.Step(double, name="a"), store=store, name="d")
        new = sf.Stateful(sf.Step(double, name="a") >> sf.Step(double), store=store, name="d")
        run_id = await old.enqueue(1)
        claims = [Claim("w", 30)]

        by_new = await store.claim_due({"d": new.fingerprint}, claims=claims, max_attempts=3)
        by_old = await store.claim_due({"d": old.fingerprint}, claims=claims, max_attempts=3)

        assert ([], [run_id]) == (by_new, [rec.id for _, rec, _ in by_old])

    async def test_longest_waiting_first(self, store):
        """With fewer claims than due runs, the oldest are taken."""
        flow = sf.Stateful(sf.Step(double), store=store, name="d")
        run_ids = [await flow.enqueue(n) for n in range(3)]

        claimed = await store.claim_due(
            {"d": flow.fingerprint}, claims=[Claim("w", 30)], max_attempts=3
        )

        assert [run_ids[0]] == [rec.id for _, rec, _ in claimed]

    async def test_expired_lease_is_due_and_counts_attempts(self, store):
        """A run whose holder's lease expired is claimed again; claims count as attempts."""
        await store.create_run(
            run_id="r1", name="d", input_json="1", fingerprint="f", claim=Claim("dead", -1)
        )

        first = await store.claim_due({"d": "f"}, claims=[Claim("w1", -1)], max_attempts=5)
        second = await store.claim_due({"d": "f"}, claims=[Claim("w2", 30)], max_attempts=5)

        assert [1, 2] == [first[0][1].attempts, second[0][1].attempts]
        assert "w2" == (await store.get("r1")).lease_owner

    async def test_abandoned_after_max_attempts(self, store):
        """A run whose claims keep dying is failed, with an abandoned event, not retried."""
        await store.create_run(
            run_id="r1", name="d", input_json="1", fingerprint="f", claim=Claim("dead", -1)
        )
        for _ in range(2):
            await store.claim_due({"d": "f"}, claims=[Claim("w", -1)], max_attempts=2)

        claimed = await store.claim_due({"d": "f"}, claims=[Claim("w", 30)], max_attempts=2)

        rec = await store.get("r1")
        assert [] == claimed
        assert RunStatus.FAILED == rec.status
        assert "abandoned" in rec.error
        last = (await store.history("r1"))[-1]
        assert ("abandoned", 2) == (last.kind, json.loads(last.data)["attempts"])
        assert [rec.id] == [r.id for r in await store.list_runs(status=RunStatus.FAILED)]

    async def test_finish_resets_attempts(self, store):
        """Pausing or finishing ends a claim well: attempts start again from zero."""
        await store.create_run(
            run_id="r1", name="d", input_json="1", fingerprint="f", claim=Claim("dead", -1)
        )
        [(claim, _, _)] = await store.claim_due({"d": "f"}, claims=[Claim("w", 30)], max_attempts=5)

        rec = await store.finish(
            "r1", claim=claim, status=RunStatus.PAUSED, event=NewEvent("paused")
        )

        assert 0 == rec.attempts

    async def test_release_keeps_attempts_only_after_a_failure(self, store):
        """A hand-back (shutdown) starts attempts again; a release after an error keeps them."""
        await store.create_run(
            run_id="r1", name="d", input_json="1", fingerprint="f", claim=Claim("dead", -1)
        )
        await store.create_run(
            run_id="r2", name="d", input_json="1", fingerprint="f", claim=Claim("dead", -1)
        )
        claimed = await store.claim_due(
            {"d": "f"}, claims=[Claim("w1", 30), Claim("w2", 30)], max_attempts=5
        )
        by_id = {rec.id: claim for claim, rec, _ in claimed}

        await store.release("r1", claim=by_id["r1"])
        await store.release("r2", claim=by_id["r2"], failed=True)

        r1, r2 = await store.get("r1"), await store.get("r2")
        assert (None, 0) == (r1.lease_owner, r1.attempts)
        assert (None, 1) == (r2.lease_owner, r2.attempts)
        again = await store.claim_due(
            {"d": "f"}, claims=[Claim("w3", 30), Claim("w4", 30)], max_attempts=5
        )
        assert {"r1": 1, "r2": 2} == {rec.id: rec.attempts for _, rec, _ in again}

    async def test_paused_run_due_when_woken(self, store):
        """A paused run is due once its wake time has come, not before."""
        claim = Claim("a", 30)
        await store.create_run(run_id="r1", name="d", input_json="1", fingerprint="f", claim=claim)
        later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        await store.finish(
            "r1", claim=claim, status=RunStatus.PAUSED, event=NewEvent("paused"), wake_at=later
        )

        before = await store.claim_due({"d": "f"}, claims=[Claim("w", 30)], max_attempts=5)
        await store.signal("r1", "go", 1)
        after = await store.claim_due({"d": "f"}, claims=[Claim("w", 30)], max_attempts=5)

        assert ([], ["r1"]) == (before, [rec.id for _, rec, _ in after])


class TestTenants:
    async def test_tenant_sees_only_its_runs(self, store):
        """Listing, reading, signalling, cancelling: another tenant's run is unknown."""
        acme, globex = store.for_tenant("acme"), store.for_tenant("globex")
        run_id = await echo_flow(acme).enqueue(1)

        assert "acme" == (await acme.get(run_id)).tenant
        assert [run_id] == [r.id for r in await acme.list_runs()]
        assert [] == await globex.list_runs()
        for call in (globex.get, globex.history, globex.cancel):
            with pytest.raises(sf.RunNotFound):
                await call(run_id)
        with pytest.raises(sf.RunNotFound):
            await globex.signal(run_id, "go", 1)
        assert [] == await globex.claim_due(
            {"echo": echo_flow(store).fingerprint}, claims=[Claim("w", 30)], max_attempts=3
        )
        assert run_id in [r.id for r in await store.list_runs()]  # the unscoped store: all

    async def test_resume_under_another_tenant_is_not_found(self, store):
        """A tenant's Stateful cannot resume another tenant's run."""
        acme, globex = store.for_tenant("acme"), store.for_tenant("globex")
        rec = await echo_flow(acme).start(1)

        with pytest.raises(sf.RunNotFound):
            await echo_flow(globex).resume(rec.id)
        assert RunStatus.PAUSED == (await acme.get(rec.id)).status

    async def test_id_of_another_tenants_run(self, store):
        """Starting with the id of another tenant's run is RunExists; that run is untouched."""
        acme, globex = store.for_tenant("acme"), store.for_tenant("globex")
        await echo_flow(acme).enqueue(1, run_id="r1")

        with pytest.raises(sf.RunExists, match="r1"):
            await echo_flow(globex).start(2, run_id="r1")

        assert (RunStatus.PENDING, 1) == ((rec := await acme.get("r1")).status, rec.input)

    def test_tenant_must_be_a_name(self, store):
        """An empty tenant id is refused."""
        with pytest.raises(ValueError, match="tenant"):
            store.for_tenant("")


class TestWorker:
    async def test_runs_enqueued_and_signalled_runs(self, store):
        """A worker runs new runs until they pause, and resumes them when signalled."""
        flow = echo_flow(store)
        run_ids = [await flow.enqueue(n) for n in range(6)]
        worker = Worker(store, [flow], concurrency=3, poll_seconds=0.05)
        task = asyncio.create_task(worker.run())
        try:

            async def all_paused():
                """every run paused"""
                return {RunStatus.PAUSED} == set(await statuses(store, run_ids))

            await until(all_paused)
            for run_id in run_ids:
                await store.signal(run_id, "go", "ok")

            async def all_completed():
                """every run completed"""
                return {RunStatus.COMPLETED} == set(await statuses(store, run_ids))

            await until(all_completed)
        finally:
            worker.stop()
            await task
        assert ["ok"] * 6 == [(await store.get(r)).output for r in run_ids]
        assert 6 == worker.finished

    async def test_timer_wakes_run(self, store):
        """A run sleeping on a durable timer is resumed by the worker once it is due."""
        flow = sf.Stateful(
            sf.Sleep(dt.timedelta(milliseconds=100)) >> sf.Step(double), store=store, name="t"
        )
        run_id = await flow.enqueue(4)
        worker = Worker(store, [flow], poll_seconds=0.02)
        task = asyncio.create_task(worker.run())
        try:

            async def done():
                """the run completed"""
                return RunStatus.COMPLETED == (await store.get(run_id)).status

            await until(done)
        finally:
            worker.stop()
            await task
        kinds = [e.kind for e in await store.history(run_id)]
        assert "paused" in kinds
        assert 8 == (await store.get(run_id)).output

    async def test_stop_hands_back_runs_in_flight(self, store):
        """On stop, a run still working after the grace period is cancelled and handed back."""
        started = asyncio.Event()

        async def slow(x: int) -> int:
            started.set()
            await asyncio.sleep(60)
            return x

        flow = sf.Stateful(sf.Step(slow, name="slow"), store=store, name="s")
        run_id = await flow.enqueue(1)
        worker = Worker(store, [flow], poll_seconds=0.02, grace_seconds=0.05)
        task = asyncio.create_task(worker.run())
        await asyncio.wait_for(started.wait(), 10)

        worker.stop()
        await task

        rec = await store.get(run_id)
        assert (RunStatus.RUNNING, None) == (rec.status, rec.lease_owner)
        assert 0 == worker.in_flight
        claimed = await store.claim_due(
            {"s": flow.fingerprint}, claims=[Claim("next", 30)], max_attempts=5
        )
        assert [run_id] == [r.id for _, r, _ in claimed]  # at once, no lease to wait for

    async def test_warns_of_runs_of_other_versions(self, store):
        """Runs started with another tree are not claimed: the worker says so when it starts."""
        old = sf.Stateful(sf.Step(double, name="a"), store=store, name="d")
        new = sf.Stateful(sf.Step(double, name="a") >> sf.Step(double), store=store, name="d")
        waiting = [await old.enqueue(n) for n in range(2)]

        [warning] = await versions_warnings(Worker(store, [new], poll_seconds=0.02))

        assert (2, [old.fingerprint], new.fingerprint) == (
            warning["runs"],
            warning["fingerprints"],
            warning["version"],
        )
        assert {RunStatus.PENDING} == set(await statuses(store, waiting))

    async def test_run_whose_input_does_not_fit_fails_once(self, store):
        """A claimed run whose stored input is not the flow's input type fails, naming it."""
        flow = sf.Stateful(sf.Step(double), store=store, name="d")
        await store.create_run(
            run_id="bad", name="d", input_json='"abc"', fingerprint=flow.fingerprint, claim=None
        )
        worker = Worker(store, [flow], poll_seconds=0.02)
        task = asyncio.create_task(worker.run())
        try:

            async def failed():
                """the run failed"""
                return RunStatus.FAILED == (await store.get("bad")).status

            await until(failed)
        finally:
            worker.stop()
            await task
        rec = await store.get("bad")
        assert "bad" in rec.error
        assert "int" in rec.error
        assert "abc" == rec.input  # the stored input is kept as it was
        assert ["started", "resumed", "run_failed"] == [e.kind for e in await store.history("bad")]

    async def test_heartbeat_outlives_a_transient_error(self, store):
        """A heartbeat that fails once is logged and tried again; the run completes."""

        class FlakyHeartbeat:
            def __init__(self, inner):
                self.inner = inner
                self.beats = 0

            async def heartbeat(self, run_id, *, claim):
                self.beats += 1
                if self.beats == 1:
                    msg = "connection reset"
                    raise OSError(msg)
                await self.inner.heartbeat(run_id, claim=claim)

            def __getattr__(self, name):
                return getattr(self.inner, name)

        async def slow(x: int) -> int:
            await asyncio.sleep(0.4)
            return x

        flaky = FlakyHeartbeat(store)
        flow = sf.Stateful(sf.Step(slow, name="slow"), store=flaky, name="h", lease_seconds=0.15)

        with structlog.testing.capture_logs() as logs:
            rec = await flow.start(3)

        assert (RunStatus.COMPLETED, 3) == (rec.status, rec.output)
        assert flaky.beats >= 3  # every 50 ms, on after the failure
        assert ["systemflow.heartbeat_failed"] == [
            e["event"] for e in logs if e["event"].startswith("systemflow.heartbeat")
        ]

    async def test_warns_of_an_old_run_behind_many_newer_ones(self):
        """The warning looks at unfinished runs only: newer finished ones do not hide it."""
        store = sf.state.InMemoryStateStore()
        old = sf.Stateful(
            sf.Step(double, name="a") >> sf.WaitForSignal("go", name="w"), store=store, name="f"
        )
        new = sf.Stateful(sf.Step(double, name="b"), store=store, name="f")
        await old.start(1)
        for i in range(1_100):
            await new.start(i)

        [warning] = await versions_warnings(Worker(store, [new], poll_seconds=0.02))

        assert (1, [old.fingerprint]) == (warning["runs"], warning["fingerprints"])

    async def test_rejects_bad_configuration(self, store):
        """Workers name what is wrong with their configuration."""
        flow = echo_flow(store)
        with pytest.raises(ValueError, match="no flows"):
            Worker(store, [])
        with pytest.raises(ValueError, match="two flows"):
            Worker(store, [flow, flow])
        with pytest.raises(ValueError, match="concurrency"):
            Worker(store, [flow], concurrency=0)

    async def test_flows_rebound_to_the_workers_store(self, store):
        """A flow made with another store runs on the worker's store."""
        flow = echo_flow(sf.state.InMemoryStateStore())

        worker = Worker(store, [flow])

        assert worker.flows["echo"].store is store
        assert "echo" in repr(worker)


class TestListening:
    async def test_notification_wakes_the_waiter(self, postgresql_url):
        """On PostgreSQL a new run enqueued by another store wakes wait_for_work at once."""
        waiter, other = SqlStateStore(postgresql_url), SqlStateStore(postgresql_url)
        flow = sf.Stateful(sf.Step(double), store=other, name="d")
        await waiter.wait_for_work(0)  # listening from now on
        loop = asyncio.get_running_loop()
        try:
            started = loop.time()
            waiting = asyncio.create_task(waiter.wait_for_work(30))
            await asyncio.sleep(0.05)
            assert not waiting.done()  # nothing to do yet: it waits
            await flow.enqueue(1)
            await asyncio.wait_for(waiting, 10)
            assert loop.time() - started < 10
        finally:
            await waiter.close()
            await other.close()

    async def test_broken_listener_is_replaced(self, postgresql_url):
        """A LISTEN connection killed by the server: one poll, then a new one listens."""
        waiter, other = SqlStateStore(postgresql_url), SqlStateStore(postgresql_url)
        flow = sf.Stateful(sf.Step(double), store=other, name="d")
        await waiter.wait_for_work(0)
        engine = create_async_engine(
            postgresql_url.replace("postgresql://", "postgresql+psycopg://")
        )
        try:
            async with engine.begin() as conn:
                await conn.exec_driver_sql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE query LIKE 'LISTEN%%' AND pid <> pg_backend_pid()"
                )
            await waiter.wait_for_work(0.05)  # finds it broken: polls, no error
            await waiter.wait_for_work(0)  # listens again
            waiting = asyncio.create_task(waiter.wait_for_work(30))
            await asyncio.sleep(0.05)
            await flow.enqueue(1)
            await asyncio.wait_for(waiting, 10)
        finally:
            await engine.dispose()
            await waiter.close()
            await other.close()
