import uuid

import pytest

import systemflow as sf
from systemflow._core import new_run_id


class TestFlowContext:
    def test_run_id_is_uuid7(self):
        """A root context gets a fresh UUIDv7 run id."""
        ctx = sf.FlowContext()

        parsed = uuid.UUID(ctx.run_id)
        assert 7 == parsed.version
        assert uuid.RFC_4122 == parsed.variant

    def test_run_ids_sort_by_time(self):
        """UUIDv7 ids made later sort later (millisecond prefix)."""
        ids = [new_run_id() for _ in range(50)]

        assert [i[:13] for i in ids] == sorted(i[:13] for i in ids)
        assert len(set(ids)) == 50

    def test_child_extends_path_and_keeps_run(self):
        """child() appends one segment and keeps run id and services."""
        services = {"payments": object()}
        ctx = sf.FlowContext(services=services, run_id="r1")

        child = ctx.child("order").child(2)

        assert ("order", 2) == child.path
        assert "r1" == child.run_id
        assert services["payments"] is child.services["payments"]

    def test_services_are_read_only(self):
        """The services mapping cannot be changed through the context."""
        ctx = sf.FlowContext(services={"a": 1})

        with pytest.raises(TypeError):
            ctx.services["b"] = 2  # type: ignore[index]

    def test_idempotency_key_stable_per_run_and_path(self):
        """The key depends on run id and path only."""
        a = sf.FlowContext(run_id="r1").child("charge")
        b = sf.FlowContext(run_id="r1", services={"x": 1}).child("charge")
        c = sf.FlowContext(run_id="r2").child("charge")

        assert a.idempotency_key == b.idempotency_key
        assert a.idempotency_key != c.idempotency_key
        assert "r1:charge" == a.idempotency_key

    def test_frozen(self):
        """Contexts are immutable values."""
        ctx = sf.FlowContext()

        with pytest.raises(AttributeError):
            ctx.path = ("x",)  # type: ignore[misc]

    def test_a_copy_is_equal_and_immutable(self):
        """copy.copy makes a context equal to the original, sharing its services; frozen too."""
        import copy

        ctx = sf.FlowContext(services={"a": 1}, run_id="r3").child("charge")

        made = copy.copy(ctx)

        assert (ctx, hash(ctx)) == (made, hash(made))
        assert ctx.services is made.services
        with pytest.raises(AttributeError):
            made.path = ()  # type: ignore[misc]

    def test_equality_is_by_run_and_path(self):
        """Two contexts are equal when their run ids and paths are; nothing else counts."""
        a = sf.FlowContext(run_id="r1", services={"x": 1}).child("s")
        b = sf.FlowContext(run_id="r1").child("s")

        assert a == b
        assert a != sf.FlowContext(run_id="r1").child("t")
        assert a != "r1"
        assert "FlowContext(run_id='r1', path=('s',))" == repr(a)

    def test_matches_by_position_as_services_run_id_and_path(self):
        """A match pattern takes services, run id and path positionally, in that order."""
        ctx = sf.FlowContext(run_id="r4").child("x")

        match ctx:
            case sf.FlowContext(_, run_id, path):
                assert ("r4", ("x",)) == (run_id, path)
            case _:  # pragma: no cover -- the test fails below
                pytest.fail("no match")

    def test_logger_binds_run_and_path(self):
        """ctx.logger carries the run id and the node path."""
        import structlog

        ctx = sf.FlowContext(run_id="r9").child("charge")

        with structlog.testing.capture_logs() as logs:
            ctx.logger.info("hello")

        assert [{"event": "hello", "run_id": "r9", "path": "charge", "log_level": "info"}] == logs
