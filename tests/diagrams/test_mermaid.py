"""
to_mermaid: the shapes of a tree, ids and labels, and a run's colours.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest
from mermaid_syntax import parse

import systemflow as sf
from systemflow._diagrams._text import escape, node_id
from systemflow.state import Event, InMemoryStateStore, RunRecord, RunStatus

ROOT = Path(__file__).resolve().parent.parent.parent


def inc(x: int) -> int:
    return x + 1


def dbl(x: int) -> int:
    return x * 2


def positive(x: int) -> bool:
    return x > 0


def undo_inc(x: int, out: int) -> None:
    pass


def boom(x: int) -> int:
    raise ValueError("boom")


def draw(flow: sf.Flow[Any, Any], **kwargs: Any):
    return parse(sf.to_mermaid(flow, **kwargs))


def chain_from(diagram, ident: str) -> list[str]:
    """Follow the only solid edge out of each node, from ``ident``."""
    out = [ident]
    while edges := diagram.out(out[-1]):
        assert 1 == len(edges), edges
        out.append(edges[0].target)
    return out


class TestShapes:
    def test_sequence_is_a_chain(self):
        """A Sequence is drawn start -> each step in order -> end."""
        d = draw(sf.Step(inc) >> sf.Step(dbl, name="double") >> sf.Step(inc, name="again"))

        assert ["n___start", "n__0", "n__double", "n__again", "n___end"] == chain_from(
            d, "n___start"
        )
        assert ["inc", "double\n(dbl)", "again\n(inc)"] == [
            d.nodes[i].text for i in ("n__0", "n__double", "n__again")
        ]
        assert {"box"} == {d.nodes[i].shape for i in ("n__0", "n__double", "n__again")}

    def test_conditional_is_a_decision(self):
        """A Conditional is a {decision} whose yes and no edges lead to its branches."""
        d = draw(sf.Conditional(positive, sf.Step(inc, name="up"), sf.Step(dbl, name="down")))

        decision = d.nodes["n"]
        assert ("decision", "positive?") == (decision.shape, decision.text)
        assert {("yes", "n__up"), ("no", "n__down")} == {(e.label, e.target) for e in d.out("n")}
        assert {"n__up", "n__down"} == {e.source for e in d.into("n___end")}

    def test_conditional_without_otherwise_passes_through(self):
        """Without otherwise, the no edge goes straight to what follows."""
        d = draw(sf.Conditional(positive, sf.Step(inc, name="up")) >> sf.Step(dbl, name="then"))

        assert {("yes", "n__0__up"), ("no", "n__then")} == {
            (e.label, e.target) for e in d.out("n__0")
        }

    def test_parallel_forks_and_joins(self):
        """A Parallel forks to every branch; every branch ends in its join."""
        d = draw(sf.Parallel(a=sf.Step(inc), b=sf.Step(dbl) >> sf.Step(inc), max_concurrency=2))

        fork, join = "n", "n___join"
        assert "stadium" == d.nodes[fork].shape
        assert "parallel\nat most 2 at once" == d.nodes[fork].text
        assert {("a", "n__a"), ("b", "n__b__0")} == {(e.label, e.target) for e in d.out(fork)}
        assert {"n__a", "n__b__1"} == {e.source for e in d.into(join)}
        assert ["n___join", "n___end"] == chain_from(d, join)

    def test_compensatable_is_a_box_with_undos(self):
        """A Compensatable is a subgraph; a step's undo hangs off it on a dashed edge."""
        saga = sf.Compensatable(
            sf.Step(inc, compensate=undo_inc, name="reserve"), sf.Step(dbl), name="order"
        )

        d = draw(sf.Step(inc, name="first") >> saga)

        title, parents = d.subgraphs["n__order"]
        assert () == parents
        assert "↩ order: compensatable (undone on failure)" == title
        assert ("n__order",) == d.nodes["n__order__reserve"].subgraphs
        assert ("n__order",) == d.nodes["n__order__1"].subgraphs
        [undo] = d.out("n__order__reserve", dashed=True)
        assert ("undo", "n__order__reserve___undo") == (undo.label, undo.target)
        assert "↩ undo: undo_inc" == d.nodes[undo.target].text
        assert ("n__order",) == d.nodes[undo.target].subgraphs
        assert "n__order__reserve" in d.reachable("n___start")
        assert undo.target not in d.reachable("n___start")

    def test_call_undo_names_the_service_method(self):
        """A Call is a subroutine box; its undo by method name says service.method."""
        d = draw(sf.Compensatable(sf.Call("bank", "pay", compensate="refund")))

        assert ("subroutine", "bank.pay") == (d.nodes["n__0"].shape, d.nodes["n__0"].text)
        assert "↩ undo: bank.refund" == d.nodes["n__0___undo"].text

    def test_pause_points_are_hexagons(self):
        """WaitForSignal and Sleep are hexagons marked as pauses."""
        d = draw(
            sf.WaitForSignal("approval")
            >> sf.WaitForSignal("docs", name="papers")
            >> sf.Sleep(dt.timedelta(hours=2), name="cool")
            >> sf.Sleep(1.5)
        )

        assert [
            ("hexagon", "⏸ wait for signal approval"),
            ("hexagon", "papers\n⏸ wait for signal docs"),
            ("hexagon", "cool\n⏸ sleep 2:00:00"),
            ("hexagon", "⏸ sleep 1.5s"),
        ] == [(d.nodes[i].shape, d.nodes[i].text) for i in ("n__0", "n__papers", "n__cool", "n__3")]

    def test_retry_timeout_and_critical_are_noted(self):
        """A leaf's retry policy, timeout and non-critical flag are written on it."""
        step = sf.Step(
            inc, retry=sf.RetryPolicy(max_attempts=4), timeout=90, critical=False, name="try"
        )

        d = draw(sf.Sequence(step))

        assert "try\n(inc)\n↻ up to 4 attempts\n⏱ timeout 0:01:30\nnon-critical" == (
            d.nodes["n__try"].text
        )

    def test_instrumented_leaf_gets_a_note(self):
        """An Instrumented leaf keeps its path and id, with a note."""
        d = draw(sf.Instrumented(sf.Step(inc, name="seen")) >> sf.Step(dbl))

        assert "seen\n(inc)\n◉ instrumented" == d.nodes["n__seen"].text
        assert {} == d.subgraphs

    def test_instrumented_tree_is_a_box(self):
        """An Instrumented tree is a box around it, saying whether it observes every node."""
        inner = sf.Sequence(sf.Step(inc), sf.Step(dbl), name="work")

        d = draw(sf.Instrumented(inner, recursive=True))

        title, _ = d.subgraphs["n___instrumented"]
        assert "◉ instrumented, every node below: work" == title
        assert "work: sequence" == d.subgraphs["n"][0]
        assert ("n___instrumented", "n") == d.nodes["n__0"].subgraphs

    def test_stateful_is_marked_durable(self):
        """A Stateful draws its flow in a box marked durable with the runs' name."""
        flow = sf.Stateful(sf.Step(inc) >> sf.Step(dbl), store=InMemoryStateStore(), name="calc")

        d = draw(flow)

        assert ("durable: calc", ()) == d.subgraphs["n___durable"]
        assert ("n___durable",) == d.nodes["n__1"].subgraphs

    def test_assign_is_a_box_of_fields(self):
        """An Assign is a box naming its fields; each flow shows the field it sets."""
        assign = sf.Assign(total=sf.Step(inc), check=sf.Conditional(positive, dbl), name="calc")

        d = draw(sf.Step(dict) >> assign)

        assert ("calc: assign total, check", ()) == d.subgraphs["n__calc"]
        assert "total: inc" == d.nodes["n__calc__total"].text
        assert "check: positive?" == d.nodes["n__calc__check"].text

    def test_empty_containers(self):
        """An empty Sequence passes through; an empty box still holds a node."""
        d = draw(sf.Sequence() >> sf.Compensatable(name="nothing"))

        assert "nothing to do" == d.nodes["n__nothing___empty"].text
        assert ["n___start", "n__nothing___empty", "n___end"] == chain_from(d, "n___start")

    def test_a_node_of_ones_own(self):
        """A user's own leaf is a box with its kind; one with children, a box of them."""

        @attrs.frozen
        class Twice:
            flow: Any
            children: Any = attrs.field(init=False)

            def __attrs_post_init__(self):
                object.__setattr__(self, "children", (("first", self.flow), ("second", self.flow)))

            async def execute(self, ctx, input):
                return input

        @attrs.frozen
        class Noop:
            name: str = "noop"

            async def execute(self, ctx, input):
                return input

        d = draw(Twice(Noop()))

        assert "Twice" == d.subgraphs["n"][0]
        assert ["n___start", "n__first", "n__second", "n___end"] == chain_from(d, "n___start")
        assert "first: Noop noop" == d.nodes["n__first"].text

    @pytest.mark.parametrize("direction", ["TD", "LR"])
    def test_direction(self, direction):
        """The direction is the flowchart's."""
        assert sf.to_mermaid(sf.Step(inc), direction=direction).startswith(
            f"flowchart {direction}\n"
        )

    def test_unknown_direction(self):
        """An unknown direction is refused, naming the ones there are."""
        with pytest.raises(ValueError, match=r"TD, TB, BT, LR, RL, got 'down'"):
            sf.to_mermaid(sf.Step(inc), direction="down")


class TestText:
    def test_ids_are_paths(self):
        """Ids read like the path; extra nodes of a path take a role after ___."""
        assert "n" == node_id(())
        assert "n__intake__with_address__0" == node_id(("intake", "with_address", 0))
        assert "n__intake___join" == node_id(("intake",), "join")

    @pytest.mark.parametrize(
        "paths",
        [
            [("a", "b"), ("a__b",), ("a_", "b"), ("a", "_b"), ("a", "b", "")],
            [("a_b",), ("a", "b"), ("a__b",), ("a___b",)],
            [(1,), ("1",), ("Z",), ("Z31Z",), ("é",), ("a b",), ("a-b",)],
            [("x", "undo"), ("x",)],
        ],
    )
    def test_ids_differ_and_are_valid(self, paths):
        """Different paths (and roles) never share an id, and ids use only [A-Za-z0-9_]."""
        ids = [node_id(p) for p in paths] + [node_id(p, "undo") for p in paths]

        assert len(ids) == len(set(ids))
        assert all(all(c.isascii() and (c.isalnum() or c == "_") for c in i) for i in ids)

    def test_labels_are_escaped(self):
        """Quotes, #, brackets, HTML and unicode in names survive as the same text."""
        name = 'say "hi" #1; <b>[x]{y}<br> & ü ✓ | `z` \\'

        d = draw(sf.Step(inc, name=name) >> sf.Step(dbl))

        assert f"{name}\n(inc)" == d.nodes[node_id((name,))].text
        assert '"' not in escape(name)

    def test_newlines_become_breaks(self):
        """A line break in a label is a <br>, not a new Mermaid line."""
        assert "a<br>b" == escape("a\nb")

    def test_same_tree_same_text(self):
        """A diagram is a pure function of the tree: two builds give the same text."""

        def build():
            return sf.Compensatable(sf.Step(inc, compensate=undo_inc)) >> sf.Parallel(
                sf.Step(dbl), sf.WaitForSignal("go")
            )

        assert sf.to_mermaid(build()) == sf.to_mermaid(build())


def load_loan_example():
    name = "examples_loan_application"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "examples/loan_application.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(name="loan")
def _loan():
    return load_loan_example()


class TestRunColours:
    async def test_paused_in_parallel(self, loan, clock):
        """A run paused in a Parallel is paused at every wait of the branch it took."""
        store = InMemoryStateStore()
        flow = loan.build(store, clock=clock, cooling_off=0)
        record = await flow.start(
            loan.LoanApplication("Jane Smith", 75_000), services=loan.make_services().services
        )

        d = draw(flow, record=record, history=await store.history(record.id))

        waits = ("identity", "income", "address")
        paused = {node_id(("intake", "documents", "with_address", w)) for w in waits}
        assert paused == d.classes["paused"]
        assert {"n__open_case", "n__intake__credit", "n__intake__documents"} == d.classes[
            "completed"
        ]
        [taken] = d.link_styles
        edge = d.edges[taken]
        assert ("n__intake__documents", "yes") == (edge.source, edge.label)

    async def test_failed_and_compensated(self, loan, clock):
        """A failed step is failed; the step undone and its undo, compensated."""
        store = InMemoryStateStore()
        flow = loan.build(store, clock=clock, cooling_off=0)
        services = loan.make_services(servicing_down=True).services
        record = await flow.start(loan.LoanApplication("Jane Smith", 40_000), services=services)
        for kind in ("identity", "income"):
            await store.signal(record.id, f"document:{kind}", {"document_id": kind})
        record = await flow.resume(record.id, services=services)
        assert RunStatus.FAILED is record.status

        d = draw(flow, record=record, history=await store.history(record.id))

        funds = ("outcome", "payout", "funds")
        assert {node_id((*funds, "account"))} == d.classes["failed"]
        assert {node_id((*funds, "disbursement")), node_id((*funds, "disbursement"), "undo")} == (
            d.classes["compensated"]
        )
        assert "paused" not in d.classes
        assert {node_id(("cooling_off",)), node_id(("outcome",))} <= d.classes["completed"]
        without = ("intake", "documents", "without_address")
        assert node_id((*without, "identity")) in d.classes["completed"]
        assert node_id(("intake", "documents", "with_address", "identity")) not in set().union(
            *d.classes.values()
        )

    async def test_paused_at_a_timer(self, clock):
        """A run waiting for a timer is paused there, not at timers it went past."""
        store = InMemoryStateStore()
        flow = sf.Stateful(
            sf.Sleep(0, name="short") >> sf.Sleep(60, name="long") >> sf.Step(inc, name="last"),
            store=store,
            name="timers",
            clock=clock,
        )
        record = await flow.start(1)

        d = draw(flow, record=record, history=await store.history(record.id))

        assert {"n__long"} == d.classes["paused"]
        assert {"n__short"} == d.classes["completed"]

    def test_record_without_history(self):
        """With only a record, the run's current path is where it waits or failed."""
        flow = sf.Step(inc, name="a") >> sf.WaitForSignal("go", name="b")
        record = RunRecord("r1", "f", RunStatus.PAUSED, 1, current_path=("b",))

        paused = draw(flow, record=record)
        failed = draw(flow, record=attrs.evolve(record, status=RunStatus.FAILED))

        assert {"n__b"} == paused.classes["paused"]
        assert {"n__b"} == failed.classes["failed"]

    def test_history_without_record(self):
        """With only a history, its last events say whether the run is paused."""
        at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        flow = sf.Step(inc, name="a") >> sf.WaitForSignal("go", name="b")
        history = [
            Event(1, "r", "started", None, "1", at),
            Event(2, "r", "step", ("a",), "2", at),
            Event(3, "r", "paused", ("b",), '{"wake_at": null, "signals": ["go"]}', at),
        ]

        paused = draw(flow, history=history)
        resumed = draw(flow, history=[*history, Event(4, "r", "resumed", None, None, at)])

        assert {"n__b"} == paused.classes["paused"]
        assert {"n__a"} == paused.classes["completed"]
        assert "paused" not in resumed.classes

    def test_abandoned_run_is_not_paused(self):
        """An abandoned event ends the run as failed: after it, it waits nowhere."""
        at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        flow = sf.WaitForSignal("go", name="b")
        history = [
            Event(1, "r", "paused", ("b",), '{"signals": ["go"]}', at),
            Event(2, "r", "abandoned", None, '{"error": "abandoned"}', at),
        ]

        assert {} == draw(flow, history=history).classes

    def test_decision_without_otherwise_and_bad_data(self):
        """A true decision without otherwise skips nothing; data that is not JSON is nothing."""
        at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        flow = sf.Conditional(positive, sf.WaitForSignal("go", name="w")) >> sf.WaitForSignal(
            "go", name="v"
        )
        history = [
            Event(1, "r", "decision", (0,), "true", at),
            Event(2, "r", "timer", ("v",), "not json", at),
            Event(3, "r", "paused", (0, "w"), '{"signals": ["go"]}', at),
        ]

        d = draw(flow, history=history)

        assert {"n__0__w", "n__v"} == d.classes["paused"]
        assert [i for i, e in enumerate(d.edges) if e.label == "yes"] == d.link_styles

    def test_without_a_run_no_colours(self):
        """A diagram of a tree alone declares no classes."""
        d = draw(sf.Step(inc) >> sf.Step(dbl))

        assert ({}, {}, []) == (d.class_defs, d.classes, d.link_styles)


class TestDocs:
    def test_rendered_diagrams_are_well_formed(self):
        """docs/diagrams.md's Mermaid blocks parse; the first is the output shown above it."""
        text = (ROOT / "docs" / "diagrams.md").read_text()
        blocks = re.findall(r"^```(\w+)\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)
        mermaid = [body for lang, body in blocks if lang == "mermaid"]
        outputs = [body for lang, body in blocks if lang == "text"]

        assert 2 == len(mermaid)
        assert [parse(body) for body in mermaid]
        assert outputs[0] == mermaid[0]
