"""
Measure what systemflow adds on top of plain asyncio, against baselines timed in the same run.

What it measures (CPU time of the machinery only: every step is trivial):

1. A ``Sequence`` of 10 async steps (``async def f(x): return x``), run through
   ``invoke`` and through ``execute`` with one pre-built ``FlowContext`` (and,
   for information, ``execute`` making a new context per run), against the
   same 10 awaits written by hand. Reported: microseconds per run, overhead
   per node ((flow - hand) / 11 nodes: the sequence and its 10 steps), per
   step ((flow - hand) / 10) and the ratio flow / hand.
2. A ``Parallel`` of 10,000 async branches against ``asyncio.gather`` of the
   same 10,000 coroutines: milliseconds per run and the ratio.
3. A ``Sequence`` of 10 sync steps run in a worker thread (the default) and
   with ``inline=True``, against 10 plain sync calls: microseconds per step.
4. ``Instrumented`` over the 10-step sequence, alone and ``recursive=True``,
   with only opentelemetry-api (no SDK: no-op spans and metrics) and
   structlog configured to drop events below WARNING without rendering them.

Every figure is the median of several timed runs (``time.perf_counter``). The
cases are interleaved within each repeat so machine noise hits flows and
baselines alike; before each timed run a case is warmed up with a tenth of its
calls (so the allocator and the thread pool are in its own steady state, not
the previous case's), then ``gc.collect()`` runs. The cyclic GC stays enabled.
A timed run loops enough times to last about 0.15 s (0.03 s with ``--quick``),
except the 10,000-branch cases: one call per timed run, so the collections
their 10,000 live tasks trigger are charged to the call that caused them
rather than piling up across calls, and three timed runs per repeat, as one
call is short and noisy.

Targets: (1) at most 2 us of overhead per node, (2) ``Parallel`` at most 2x
``asyncio.gather``. The script prints PASS/FAIL lines and exits 0 either way,
unless ``--check`` is given: then a missed target exits 1.

Run it from the repository root::

    python benchmarks/bench_overhead.py            # full: 7 repeats, about 20 s
    python benchmarks/bench_overhead.py --quick    # smoke run: 3 repeats, a few seconds
    python benchmarks/bench_overhead.py --check    # exit 1 if a target is missed
"""

from __future__ import annotations

import asyncio
import logging
import platform
import sys
import time
from typing import Any, Final

import structlog
from _harness import Case, measure, new_parser, report_verdicts, usable_cpus

import systemflow as sf
from systemflow._core import invoke

STEPS: Final = 10
SEQ_NODES: Final = STEPS + 1  # the Sequence and its steps
INSTRUMENTED_NODES: Final = SEQ_NODES + 1  # plus the Instrumented wrapper
BRANCHES: Final = 10_000
TARGET_US_PER_NODE: Final = 2.0
TARGET_PARALLEL_RATIO: Final = 2.0
STRUCTLOG_CONFIG: Final = (
    "configure(processors=[], logger_factory=ReturnLoggerFactory(),\n"
    "             wrapper_class=make_filtering_bound_logger(logging.WARNING),\n"
    "             cache_logger_on_first_use=True)\n"
    "             info events are dropped by a no-op method; ctx.logger still builds\n"
    "             and binds a logger per access"
)


# --- the work: trivial steps and hand-written baselines ----------------------------


async def step_async(x: Any) -> Any:
    """
    The trivial async step.
    """
    return x


def step_sync(x: Any) -> Any:
    """
    The trivial sync step.
    """
    return x


async def hand_awaits(x: Any) -> Any:
    """
    The 10 awaits a ``Sequence`` of 10 steps replaces, written out.
    """
    x = await step_async(x)
    x = await step_async(x)
    x = await step_async(x)
    x = await step_async(x)
    x = await step_async(x)
    x = await step_async(x)
    x = await step_async(x)
    x = await step_async(x)
    x = await step_async(x)
    return await step_async(x)


async def hand_sync_calls(x: Any) -> Any:
    """
    The 10 sync calls a ``Sequence`` of 10 sync steps replaces, written out.
    """
    x = step_sync(x)
    x = step_sync(x)
    x = step_sync(x)
    x = step_sync(x)
    x = step_sync(x)
    x = step_sync(x)
    x = step_sync(x)
    x = step_sync(x)
    x = step_sync(x)
    return step_sync(x)


async def hand_gather(x: Any) -> list[Any]:
    """
    ``asyncio.gather`` of the branches a ``Parallel`` of 10,000 steps runs.
    """
    return await asyncio.gather(*[step_async(x) for _ in range(BRANCHES)])


# --- reporting -------------------------------------------------------------------


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:10.2f} us"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:10.2f} ms"


def _spread(case: Case) -> str:
    low, high = min(case.samples), max(case.samples)
    return f"(min {low * 1e6:.2f}, max {high * 1e6:.2f} us)"


def _spread_ms(case: Case) -> str:
    low, high = min(case.samples), max(case.samples)
    return f"(min {low * 1e3:.2f}, max {high * 1e3:.2f} ms)"


def _header(repeats: int, run_seconds: float) -> None:
    cpus = usable_cpus()
    print("systemflow overhead benchmark")
    print(
        f"  {platform.python_implementation()} {platform.python_version()} on "
        f"{platform.system()} {platform.machine()}, {cpus} CPUs usable, "
        f"systemflow {sf.__version__}"
    )
    print(
        f"  median of {repeats} repeats per case, each timed run looping for ~{run_seconds:g} s\n"
        "  (cases interleaved; a warm-up and gc.collect() before each timed run; GC enabled;\n"
        "  time.perf_counter; the 10,000-branch cases: one call per run, 3 runs per repeat)"
    )
    print("  OpenTelemetry: API only, no SDK configured (no-op tracer and meter)")
    print(f"  structlog: {STRUCTLOG_CONFIG}")
    print()


def _report(c: dict[str, Case]) -> list[tuple[bool, str]]:
    hand = c["hand"].median
    per_node = {
        key: (c[key].median - hand) / SEQ_NODES for key in ("invoke", "execute_ctx", "execute")
    }

    print(f"1. Sequence of {STEPS} async steps ({SEQ_NODES} nodes) vs {STEPS} awaits by hand")
    print(f"   {'case':<34}{'per run':>13}{'/node':>10}{'/step':>10}{'ratio':>9}")
    print(f"   {'hand-written awaits':<34}{_us(hand)}   {_spread(c['hand'])}")
    labels = {
        "invoke": "invoke(seq, ctx, None, v)",
        "execute_ctx": "execute(seq, v, context=ctx)",
        "execute": "execute(seq, v)  [new ctx per run]",
    }
    for key, label in labels.items():
        t = c[key].median
        print(
            f"   {label:<34}{_us(t)}{(t - hand) * 1e6 / SEQ_NODES:10.2f}"
            f"{(t - hand) * 1e6 / STEPS:10.2f}{t / hand:8.1f}x"
        )
    print("   (/node = (flow - hand) / 11, /step = (flow - hand) / 10, both in us)")
    print()

    gather, parallel = c["gather"].median, c["parallel"].median
    par_ratio = parallel / gather
    print(f"2. Parallel of {BRANCHES:,} async branches vs asyncio.gather of {BRANCHES:,}")
    print(f"   {'asyncio.gather':<34}{_ms(gather)}   {_spread_ms(c['gather'])}")
    print(f"   {'invoke(Parallel, ctx, None, v)':<34}{_ms(parallel)}{par_ratio:8.2f}x")
    print(f"   {'':<34}{'':13}   {_spread_ms(c['parallel'])}")
    per_branch = (parallel - gather) * 1e6 / BRANCHES
    print(f"   (overhead per branch: {per_branch:.2f} us)")
    print()

    sync_hand = c["sync_hand"].median
    print(f"3. Sequence of {STEPS} sync steps vs {STEPS} plain sync calls")
    print(f"   {'case':<34}{'per run':>13}{'per step':>13}{'over hand/step':>16}")
    print(f"   {'hand-written sync calls':<34}{_us(sync_hand)}{_us(sync_hand / STEPS)}")
    for key, label in (
        ("thread", "Step(fn)  [worker thread]"),
        ("inline", "Step(fn, inline=True)"),
    ):
        t = c[key].median
        print(f"   {label:<34}{_us(t)}{_us(t / STEPS)}{_us((t - sync_hand) / STEPS)}")
    print()

    plain = c["invoke"].median
    print(f"4. Instrumented over the {STEPS}-step sequence ({INSTRUMENTED_NODES} nodes)")
    print(f"   {'case':<34}{'per run':>13}{'/node':>10}{'/observed':>11}")
    print(f"   {'plain sequence (from 1.)':<34}{_us(plain)}{per_node['invoke'] * 1e6:10.2f}")
    for key, label, observed in (
        ("instrumented", "Instrumented(seq)", 1),
        ("recursive", "Instrumented(seq, recursive=True)", SEQ_NODES),
    ):
        t = c[key].median
        print(
            f"   {label:<34}{_us(t)}{(t - hand) * 1e6 / INSTRUMENTED_NODES:10.2f}"
            f"{(t - plain) * 1e6 / observed:11.2f}"
        )
    print(f"   (/node = (flow - hand) / {INSTRUMENTED_NODES} nodes; /observed = (flow - plain")
    print(f"   sequence) / nodes observed: 1, or {SEQ_NODES} when recursive; both in us)")
    print()

    worst = max(per_node["invoke"], per_node["execute_ctx"])
    return [
        (
            worst * 1e6 <= TARGET_US_PER_NODE,
            (
                f"1: sequence overhead {worst * 1e6:.2f} us/node (the worse of invoke and "
                f"execute with a context) <= {TARGET_US_PER_NODE:g} us/node"
            ),
        ),
        (
            par_ratio <= TARGET_PARALLEL_RATIO,
            f"2: Parallel of {BRANCHES:,} {par_ratio:.2f}x gather <= {TARGET_PARALLEL_RATIO:g}x",
        ),
    ]


# --- main ------------------------------------------------------------------------


def _configure_structlog() -> None:
    structlog.configure(
        processors=[],
        logger_factory=structlog.ReturnLoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        cache_logger_on_first_use=True,
    )


def _cases() -> list[Case]:
    ctx = sf.FlowContext()
    seq = sf.Sequence(*[sf.Step(step_async) for _ in range(STEPS)])
    thread_seq = sf.Sequence(*[sf.Step(step_sync) for _ in range(STEPS)])
    inline_seq = sf.Sequence(*[sf.Step(step_sync, inline=True) for _ in range(STEPS)])
    parallel = sf.Parallel(*[sf.Step(step_async) for _ in range(BRANCHES)])
    instrumented = sf.Instrumented(seq)
    recursive = sf.Instrumented(seq, recursive=True)
    return [
        Case("hand", hand_awaits, (1,)),
        Case("invoke", invoke, (seq, ctx, None, 1)),
        Case("execute_ctx", sf.execute, (seq, 1), {"context": ctx}),
        Case("execute", sf.execute, (seq, 1)),
        Case("gather", hand_gather, (1,), fixed_number=1, runs_per_repeat=3),
        Case("parallel", invoke, (parallel, ctx, None, 1), fixed_number=1, runs_per_repeat=3),
        Case("sync_hand", hand_sync_calls, (1,)),
        Case("thread", invoke, (thread_seq, ctx, None, 1)),
        Case("inline", invoke, (inline_seq, ctx, None, 1)),
        Case("instrumented", invoke, (instrumented, ctx, None, 1)),
        Case("recursive", invoke, (recursive, ctx, None, 1)),
    ]


async def _run(repeats: int, run_seconds: float) -> list[tuple[bool, str]]:
    cases = _cases()
    # At least one warm-up call: the 10,000-branch cases time one call per run.
    await measure(cases, repeats, run_seconds, min_warm_up=1)
    return _report({case.key: case for case in cases})


def main(argv: list[str] | None = None) -> int:
    """
    Run the benchmark, print the table and the verdicts; return the exit code.
    """
    parser = new_parser(__doc__)
    parser.add_argument("--repeats", type=int, help="timed runs per case (default 7, quick 3)")
    options = parser.parse_args(argv)
    repeats = options.repeats or (3 if options.quick else 7)
    run_seconds = 0.03 if options.quick else 0.15

    _configure_structlog()
    _header(repeats, run_seconds)
    started = time.perf_counter()
    verdicts = asyncio.run(_run(repeats, run_seconds))
    return report_verdicts(verdicts, started, check=options.check)


if __name__ == "__main__":
    sys.exit(main())
