"""
The examples run, print what they promise, and do what they say.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import pytest

import systemflow as sf

if TYPE_CHECKING:
    from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
ORDER_PROCESSING = ROOT / "examples" / "order_processing.py"


def load_example(path: Path) -> ModuleType:
    name = f"examples_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


example = load_example(ORDER_PROCESSING)


@pytest.fixture(scope="module")
def script() -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ORDER_PROCESSING)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def process(order_id: str = "T-1", **options):
    """Run one order through the flow on fresh fakes; return (fakes, output or error)."""
    fakes = example.make_services(**options)
    try:
        output = await sf.execute(
            example.build_flow(), example.make_order(order_id), services=fakes.services
        )
    except sf.FlowError as exc:
        return fakes, exc
    return fakes, output


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


class TestOrderProcessing:
    async def test_happy_order_returns_output(self):
        """A happy order returns the ids of what it reserved, charged and labelled."""
        _, output = await process("T-1")
        assert example.OrderOutput("T-1", "R-1", "P-1", "L-1", "processed") == output

    async def test_happy_order_reserves_stock(self):
        """A happy order reserves the quantity and takes it out of stock."""
        fakes, _ = await process()
        expected = ([example.Reservation("R-1", "SKU-42", 2)], {"SKU-42": 8})
        assert expected == (fakes.inventory.reserved, fakes.inventory.stock)

    async def test_happy_order_charges_once_after_a_retry(self):
        """A happy order charges once, on the second attempt of the flaky gateway."""
        fakes, _ = await process()
        expected = ([example.Payment("P-1", 5998, "EUR")], 2)
        assert expected == (fakes.payments.charged, fakes.payments.attempts)

    async def test_happy_order_creates_label(self):
        """A happy order creates a shipping label for the order's address."""
        fakes, _ = await process()
        assert [example.ShippingLabel("L-1", "1 Main St, Springfield")] == fakes.shipping.labels

    async def test_happy_order_publishes_event(self):
        """A happy order publishes OrderCreated with the ids of what it did."""
        fakes, _ = await process("T-1")
        expected = example.OrderCreated("T-1", "C-7", "R-1", "P-1", "L-1")
        assert [expected] == fakes.events.published

    async def test_happy_order_undoes_nothing(self):
        """A happy order refunds nothing and releases nothing."""
        fakes, _ = await process()
        expected: tuple[list[object], list[object]] = ([], [])
        assert expected == (fakes.payments.refunded, fakes.inventory.released)

    async def test_gateway_down_for_good_fails_at_payment(self):
        """A gateway that fails every attempt fails the order at the payment step."""
        fakes, error = await process(flaky_payment_attempts=3)
        expected = (("saga", "fulfil", "payment"), 3)
        assert expected == (error.path, fakes.payments.attempts)

    async def test_shipping_failure_raises_step_failed_at_shipping_step(self):
        """A shipping failure raises StepFailed whose path names the shipping step."""
        _, error = await process(shipping_down=True)
        assert (sf.StepFailed, ("saga", "fulfil", "label")) == (type(error), error.path)

    async def test_shipping_failure_keeps_the_cause(self):
        """A shipping failure carries the carrier's error as its cause."""
        _, error = await process(shipping_down=True)
        assert example.CarrierUnavailableError is type(error.__cause__)

    async def test_shipping_failure_refunds_payment(self):
        """A shipping failure refunds the payment it charged."""
        fakes, _ = await process(shipping_down=True)
        expected = fakes.payments.charged
        assert expected == fakes.payments.refunded

    async def test_shipping_failure_releases_reservation(self):
        """A shipping failure releases the reservation and restores the stock."""
        fakes, _ = await process(shipping_down=True)
        expected = (fakes.inventory.reserved, {"SKU-42": 10})
        assert expected == (fakes.inventory.released, fakes.inventory.stock)

    async def test_shipping_failure_undoes_newest_first(self):
        """The refund (newer) comes before the release (older)."""
        fakes, _ = await process(shipping_down=True)
        expected = [
            "inventory.reserve R-1",
            "payments.charge P-1",
            "shipping.create_label failed",
            "payments.refund P-1",
            "inventory.release R-1",
        ]
        assert expected == fakes.ledger

    async def test_shipping_failure_publishes_nothing(self):
        """A failed order publishes no OrderCreated event."""
        fakes, _ = await process(shipping_down=True)
        expected: list[object] = []
        assert expected == fakes.events.published

    async def test_publish_failure_still_returns_output(self):
        """A failed publish is not critical: the order is still processed."""
        _, output = await process("T-3", event_bus_down=True)
        assert example.OrderOutput("T-3", "R-1", "P-1", "L-1", "processed") == output

    async def test_publish_failure_undoes_nothing(self):
        """A failed publish keeps the payment and the reservation."""
        fakes, _ = await process(event_bus_down=True)
        expected: tuple[list[object], list[object]] = ([], [])
        assert expected == (fakes.payments.refunded, fakes.inventory.released)

    async def test_out_of_stock_touches_nothing(self):
        """An order for more than the stock fails before any reservation or charge."""
        fakes, error = await process(stock={"SKU-42": 1})
        expected: tuple[sf.Path, list[str]] = (("check_inventory",), [])
        assert expected == (error.path, fakes.ledger)

    async def test_invalid_order_fails_at_validate(self):
        """A malformed order fails at the validate step."""
        fakes = example.make_services()
        bad = attrs.evolve(example.make_order("T-9"), quantity=0)
        with pytest.raises(sf.StepFailed) as info:
            await sf.execute(example.build_flow(), bad, services=fakes.services)
        expected: tuple[sf.Path, list[str]] = (("validate",), [])
        assert expected == (info.value.path, fakes.ledger)
