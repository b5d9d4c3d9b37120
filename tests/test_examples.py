"""
The examples run, print what they promise, and do what they say.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import pytest
from example_runner import load_example, run_example

from systemflow.testing import CallLog, FlowCase, FlowTestCase, MockService, list_failure_points

if TYPE_CHECKING:
    import subprocess

example = load_example("order_processing")


@pytest.fixture(scope="module")
def script() -> subprocess.CompletedProcess[str]:
    return run_example("order_processing")


class TestOrderProcessingScript:
    def test_exits_zero(self, script):
        """The script runs to the end without error."""
        expected = (0, "")
        assert expected == (script.returncode, script.stderr)

    def test_prints_the_happy_order(self, script):
        """The happy order ends in a processed output."""
        expected = (
            "=> OK: OrderOutput(order_id='A-1001', reservation_id='R-1', payment_id='P-1', "
            "shipping_id='L-1', status='processed')"
        )
        assert expected in script.stdout.splitlines()

    def test_prints_the_retry(self, script):
        """The flaky gateway's retry is logged."""
        assert "systemflow.retry_scheduled" in script.stdout

    def test_prints_where_shipping_failed(self, script):
        """The shipping failure names the step's path and its cause."""
        expected = [
            "=> FAILED at step saga/fulfil/label",
            "   because: CarrierUnavailableError: carrier answered 503 Service Unavailable",
        ]
        lines = script.stdout.splitlines()
        assert expected == [line for line in lines if line in expected]

    def test_prints_what_was_undone(self, script):
        """The shipping failure lists the undone steps, newest first."""
        expected = (
            "   compensated, newest first: saga/fulfil/payment, saga/fulfil/reservation/reserve"
        )
        assert expected in script.stdout.splitlines()

    def test_prints_the_ignored_publish_failure(self, script):
        """The publish failure is logged as ignored and the order still succeeds."""
        lines = script.stdout.splitlines()
        assert any("systemflow.step_failed_ignored" in line for line in lines)
        expected = (
            "=> OK: OrderOutput(order_id='A-1003', reservation_id='R-1', payment_id='P-1', "
            "shipping_id='L-1', status='processed')"
        )
        assert expected in lines

    def test_prints_no_traceback(self, script):
        """The console output stays readable: no traceback."""
        assert "Traceback" not in script.stdout


def mocks(
    *,
    charge: tuple[object, ...] = (example.Payment("P-1", 5998, "EUR"),),
    label: object = example.ShippingLabel("L-1", "1 Main St, Springfield"),
    publish: object = None,
    in_stock: bool = True,
) -> dict[str, MockService]:
    """The order flow's services as mocks checked against the example's protocols."""
    log = CallLog()
    inventory = MockService("inventory", spec=example.InventoryService, log=log)
    inventory.on("check_availability").returns(in_stock)
    inventory.on("reserve").returns(example.Reservation("R-1", "SKU-42", 2))
    inventory.on("release")
    payments = MockService("payments", spec=example.PaymentService, log=log)
    payments.on("charge").then(*charge)
    payments.on("refund")
    shipping = MockService("shipping", spec=example.ShippingService, log=log)
    shipping.on("create_label").then(label)
    events = MockService("events", spec=example.EventPublisher, log=log)
    events.on("publish").then(publish)
    return {"inventory": inventory, "payments": payments, "shipping": shipping, "events": events}


OUTPUT = example.OrderOutput("T-1", "R-1", "P-1", "L-1", "processed")
GATEWAY_DOWN = example.GatewayUnavailableError("payment gateway did not answer")
CARRIER_DOWN = example.CarrierUnavailableError("carrier answered 503")


class TestOrderProcessing(FlowTestCase):
    """The order flow on mocked services."""

    flow = example.build_flow()
    order = example.make_order("T-1")

    async def test_cases(self) -> None:
        """Each kind of order ends as it should."""
        await self.run_cases(
            self.flow,
            [
                FlowCase("happy", self.order, expected_output=OUTPUT, mocks=mocks()),
                FlowCase(
                    "gateway hiccup",
                    self.order,
                    expected_output=OUTPUT,
                    mocks=mocks(charge=(GATEWAY_DOWN, example.Payment("P-1", 5998, "EUR"))),
                ),
                FlowCase(
                    "gateway down for good",
                    self.order,
                    expected_error=example.GatewayUnavailableError,
                    mocks=mocks(charge=(GATEWAY_DOWN,)),
                ),
                FlowCase(
                    "shipping down",
                    self.order,
                    expected_error="carrier answered 503",
                    mocks=mocks(label=CARRIER_DOWN),
                ),
                FlowCase(
                    "event bus down",
                    self.order,
                    expected_output=OUTPUT,
                    mocks=mocks(publish=example.EventBusUnavailableError("unreachable")),
                ),
                FlowCase(
                    "out of stock",
                    self.order,
                    expected_error=example.OutOfStockError,
                    mocks=mocks(in_stock=False),
                ),
                FlowCase(
                    "invalid order",
                    attrs.evolve(self.order, quantity=0),
                    expected_error="quantity must be at least 1",
                    mocks=mocks(),
                ),
            ],
        )

    async def test_gateway_is_retried_on_the_fake_clock(self) -> None:
        """A gateway that fails once is charged on the second attempt, after a backoff delay."""
        services = mocks(charge=(GATEWAY_DOWN, example.Payment("P-1", 5998, "EUR")))
        await self.run_flow(self.flow, self.order, services=services)

        self.assert_called(services["payments"], "charge", times=2)
        assert 1 == len(self.clock.sleeps)

    async def test_charge_carries_the_idempotency_key(self) -> None:
        """The charge is made with the node's idempotency key."""
        services = mocks()
        run_id = "run-T-1"
        await self.harness.run(self.flow, self.order, services=services, run_id=run_id)
        (charge,) = services["payments"].calls_to("charge")

        assert {"idempotency_key": f"{run_id}:saga/fulfil/payment"} == charge.kwargs

    async def test_shipping_failure_is_undone_newest_first(self) -> None:
        """Shipping fails: the payment is refunded, then the stock released."""
        services = mocks(label=CARRIER_DOWN)
        result = await self.run_flow(self.flow, self.order, services=services)

        self.assert_failed_at(result, "saga/fulfil/label")
        self.assert_compensated(result, "saga/fulfil/payment", "saga/fulfil/reservation/reserve")
        self.assert_call_order(result, "payments.refund", "inventory.release")
        self.assert_called(
            services["payments"], "refund", args=[example.Payment("P-1", 5998, "EUR")]
        )
        self.assert_not_called(services["events"])

    async def test_publish_failure_is_not_undone(self) -> None:
        """A failed publish is logged and ignored: nothing is undone."""
        services = mocks(publish=example.EventBusUnavailableError("unreachable"))
        result = await self.run_flow(self.flow, self.order, services=services)

        self.assert_compensated(result)
        assert any(e["event"] == "systemflow.step_failed_ignored" for e in result.logs)

    async def test_out_of_stock_touches_nothing(self) -> None:
        """An order for more than the stock fails before any reservation or charge."""
        services = mocks(in_stock=False)
        result = await self.run_flow(self.flow, self.order, services=services)

        self.assert_failed_at(result, "check_inventory")
        assert ["inventory.check_availability"] == [c.target for c in result.calls]

    async def test_a_failure_anywhere_in_the_saga_is_undone(self) -> None:
        """Whichever saga step fails, every reservation is released and every charge refunded."""
        for path in list_failure_points(self.flow, within="saga"):
            with self.subTest(path=path):
                services = mocks()
                result = await self.run_flow(
                    self.flow, self.order, services=services, faults={path: OSError}
                )
                done = [c.target for c in result.calls]

                self.assert_failed_at(result, path)
                assert done.count("inventory.reserve") == done.count("inventory.release")
                assert done.count("payments.charge") == done.count("payments.refund")
