"""
Exercises the public API for the type checker only (mypy --strict); never run.
"""

from __future__ import annotations

import datetime as dt

import systemflow as sf


async def inc(x: int) -> int:
    return x + 1


async def with_ctx(ctx: sf.FlowContext, x: int) -> str:
    return f"{ctx.run_id}:{ctx.idempotency_key}:{x}"


def refund(x: int, out: int) -> None:
    return None


@sf.step
async def decorated(x: int) -> int:
    return x


@sf.step(name="named", retry=sf.RetryPolicy(max_attempts=2), timeout=dt.timedelta(seconds=1))
def decorated_sync(x: int) -> int:
    return x


step: sf.Step[int, int] = sf.Step(inc, compensate=refund, timeout=1.5, inline=False)
chain: sf.Flow[int, int] = step >> decorated >> decorated_sync
seq = sf.Sequence(inc, with_ctx, name="seq")
cond = sf.Conditional(lambda x: x > 0, inc, otherwise=None, name="cond")
par_list = sf.Parallel(inc, inc, max_concurrency=2)
par_dict = sf.Parallel(a=inc, b=with_ctx)
saga = sf.Compensatable(step, sf.Call("payments", "charge", compensate="refund"), name="saga")
assign = sf.Assign(payment=sf.Call("payments", "charge"))
observed = sf.Instrumented(saga, name="order", recursive=True, log_input=False)
paths: list[sf.Path] = [path for path, _node in sf.walk(observed)]
ctx = sf.FlowContext(services={"payments": object()}, run_id="r")
child: sf.FlowContext = ctx.child("x")
clock: sf.Clock = sf.SystemClock()


async def use() -> None:
    out: int = await sf.execute(chain, 1)
    out2: int = sf.run(chain, 1, {"payments": object()})
    try:
        await sf.execute(seq, 1, context=ctx)
    except sf.StepFailed as exc:
        where: sf.Path = exc.path
        run: str | None = exc.run_id
        del where, run
    del out, out2


def _reveal() -> None:
    typed: sf.Flow[int, int] = sf.Step(inc) >> sf.Step(inc) >> sf.Step(inc)
    del typed


async def takes_str(s: str) -> str:
    return s


def _mismatch_is_caught() -> None:
    # int output into a str input: the type checker must refuse it.
    bad = sf.Step(inc) >> sf.Step(takes_str)  # type: ignore[arg-type]
    del bad
