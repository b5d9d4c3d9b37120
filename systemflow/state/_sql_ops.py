"""
The operations of ``SqlStateStore``: each a function of a ``Tx``, for a driver to run.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any, Final

import attrs

from .._core import SIGNAL, RunExists, RunFinished, RunLocked
from ._codec import encode_payload
from ._lease import abandoned
from ._model import (
    ABANDONED,
    CANCELLED,
    RESUMED,
    SIGNALLED,
    STARTED,
    Event,
    NewEvent,
    RunRecord,
    RunStatus,
)
from ._sql_schema import (
    append_events,
    cancel_run,
    consume_signal,
    due_runs,
    fail_run,
    finish_run,
    finish_run_with_events,
    get_histories,
    get_history,
    get_lease,
    get_status,
    insert_run,
    insert_run_started,
    insert_signal,
    list_records,
    lock_run,
    notify_workers,
    release,
    renew_lease,
    take_over,
    take_over_all,
    wake,
    wake_if_signalled,
)
from ._sql_tx import dump_path, load_json, load_status, not_found

if TYPE_CHECKING:
    from collections import abc

    from .._core import Path
    from ._model import Claim
    from ._sql_tx import Op, Tx

_MAX_BATCH: Final = 100  # events per INSERT; a bigger append takes several, in one transaction
_EVENT_PARAMS: Final = [(f"kind_{i}", f"path_{i}", f"data_{i}") for i in range(_MAX_BATCH)]
_RUNNING: Final = RunStatus.RUNNING.value


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def create_run(
    tx: Tx,
    *,
    run_id: str,
    name: str,
    input_json: str,
    fingerprint: str,
    claim: Claim | None,
    started_data: str | None,
) -> Op[RunRecord]:
    value = load_json(run_id, "runs.input", input_json)  # before anything is stored
    now = _now()
    expires = None if claim is None else claim.expires(now)
    status = RunStatus.PENDING if claim is None else RunStatus.RUNNING
    params = run_params(
        run_id=run_id, name=name, input_json=input_json, fingerprint=fingerprint, status=status
    )
    params |= {
        "now": tx.dump(now),
        "owner": None if claim is None else claim.owner,
        "expires": tx.dump(expires),
    }
    data = started_data or input_json
    if tx.dialect == "postgresql" and claim is not None:  # one statement, one round trip
        created = bool(
            (yield from tx.rows(insert_run_started, params | {"kind": STARTED, "data": data}))
        )
    else:
        yield from tx.begin()
        created = bool((yield from tx.count(insert_run, params, tx.dialect)))
        if created:
            yield from tx.insert_event(run_id, NewEvent(STARTED, data=data), now)
            if claim is None:
                yield from notify(tx, name)
    if not created:
        msg = f"a run with id {run_id!r} exists"
        raise RunExists(msg, run_id=run_id)
    return RunRecord(
        id=run_id,
        name=name,
        status=status,
        input=value,
        created_at=now,
        updated_at=now,
        fingerprint=fingerprint,
        version=1,
        lease_owner=None if claim is None else claim.owner,
        lease_expires_at=expires,
        tenant=tx.tenant,
    )


def run_params(
    *, run_id: str, name: str, input_json: str, fingerprint: str, status: RunStatus
) -> dict[str, Any]:
    """
    Return the parameters of ``insert_run`` but the instants and the lease.
    """
    return {
        "run_id": run_id,
        "name": name,
        "status": status.value,
        "input": input_json,
        "fingerprint": fingerprint,
    }


def notify(tx: Tx, name: str) -> Op[None]:
    """
    Tell listening workers (PostgreSQL ``NOTIFY``, sent on commit) that a run of ``name`` is due.
    """
    if tx.dialect == "postgresql":
        yield from tx.rows(notify_workers, {"name": name})


def claim_due(
    tx: Tx, flows: abc.Mapping[str, str], claims: abc.Sequence[Claim], max_attempts: int
) -> Op[list[tuple[Claim, RunRecord, list[Event]]]]:
    yield from tx.begin()
    now = _now()
    params: dict[str, Any] = {"now": tx.dump(now), "limit": len(claims)}
    for i, (name, fingerprint) in enumerate(sorted(flows.items())):
        params |= {f"name_{i}": name, f"fingerprint_{i}": fingerprint}
    chosen: list[tuple[str, int, Claim]] = []
    due = yield from tx.rows(due_runs, params, len(flows))
    for (run_id, version, attempts), claim in zip(due, claims, strict=False):
        if attempts >= max_attempts:
            yield from _abandon(tx, run_id, attempts, now)
        else:
            chosen.append((run_id, version, claim))
    if tx.dialect == "postgresql" and chosen:
        return (yield from _take_over_all(tx, chosen, now))
    claimed = []
    for run_id, version, claim in chosen:
        record, events = yield from _take_over(tx, run_id, version, claim, now)
        claimed.append((claim, record, events))
    return claimed


def _take_over_all(
    tx: Tx, chosen: abc.Sequence[tuple[str, int, Claim]], now: dt.datetime
) -> Op[list[tuple[Claim, RunRecord, list[Event]]]]:
    # PostgreSQL: the runs, their resumed events and their histories in two
    # statements, whatever their number (the rows are locked by due_runs).
    ids = [run_id for run_id, _, _ in chosen]
    params = {
        "ids": ids,
        "versions": [version for _, version, _ in chosen],
        "owners": [claim.owner for _, _, claim in chosen],
        "expiries": [tx.dump(claim.expires(now)) for _, _, claim in chosen],
        "running": _RUNNING,
        "kind": RESUMED,
        "now": tx.dump(now),
    }
    rows = yield from tx.rows(take_over_all, params)
    taken = {row[8]: row for row in rows}  # by lease owner
    histories: dict[str, list[Event]] = {run_id: [] for run_id in ids}
    for row in (yield from tx.rows(get_histories, {"ids": ids})):
        histories[row[1]].append(tx.event(row))
    claimed = []
    for run_id, _, claim in chosen:
        row = taken.get(claim.owner)
        if row is None:
            msg = f"run {run_id} was claimed by another claim at the same time"
            raise RunLocked(msg, run_id=run_id)
        history = histories[run_id]
        path = next((e.path for e in reversed(history) if e.path is not None), None)
        record = attrs.evolve(tx.record((*row, None)), current_path=path)
        claimed.append((claim, record, history))
    return claimed


def _abandon(tx: Tx, run_id: str, attempts: int, now: dt.datetime) -> Op[None]:
    error, data = abandoned(run_id, attempts)
    params = {"run_id": run_id, "failed": RunStatus.FAILED.value, "error": error}
    yield from tx.count(fail_run, params | {"now": tx.dump(now)})
    yield from tx.insert_event(run_id, NewEvent(ABANDONED, data=data), now)


def _take_over(
    tx: Tx, run_id: str, version: int, claim: Claim, now: dt.datetime
) -> Op[tuple[RunRecord, list[Event]]]:
    params = {
        "run_id": run_id,
        "version": version,
        "running": _RUNNING,
        "owner": claim.owner,
        "expires": tx.dump(claim.expires(now)),
        "now": tx.dump(now),
    }
    if not (yield from tx.count(take_over, params)):
        msg = f"run {run_id} was claimed by another claim at the same time"
        raise RunLocked(msg, run_id=run_id)
    yield from tx.insert_event(run_id, NewEvent(RESUMED), now)
    record = yield from tx.get_record(run_id)
    rows = yield from tx.rows(get_history, {"run_id": run_id})
    return record, [tx.event(row) for row in rows]


def claim_run(
    tx: Tx, run_id: str, claim: Claim, is_dead: abc.Callable[[str], bool]
) -> Op[tuple[RunRecord, list[Event]]]:
    rows = yield from tx.rows(get_lease, {"run_id": run_id})
    if not rows:
        raise not_found(run_id)
    status_text, version, owner, expires_value = rows[0]
    status = load_status(run_id, status_text)
    if status.is_finished:
        msg = f"run {run_id} is {status.value}: there is nothing to resume"
        raise RunFinished(msg, run_id=run_id, status=status.value)
    now = _now()
    expires = tx.load(run_id, "runs.lease_expires_at", expires_value)
    if (
        status is RunStatus.RUNNING
        and owner is not None
        and expires is not None
        and expires > now
        and not is_dead(owner)
    ):
        msg = f"run {run_id} is held by {owner} until {expires}"
        raise RunLocked(msg, run_id=run_id)
    return (yield from _take_over(tx, run_id, version, claim, now))


def append(tx: Tx, run_id: str, events: abc.Sequence[NewEvent], claim: Claim) -> Op[list[int]]:
    if not events:
        yield from heartbeat(tx, run_id, claim)
        return []
    now = _now()
    expires = claim.expires(now)
    # Renew the lease once less than half of it is left (see the docstring of ``_sql``).
    renew_after = tx.dump(now + (expires - now) / 2)
    seqs: list[int] = []
    if len(events) > _MAX_BATCH:
        yield from tx.begin()  # several statements, one append
    for start in range(0, len(events), _MAX_BATCH):
        batch = events[start : start + _MAX_BATCH]
        params = {
            "run_id": run_id,
            "owner": claim.owner,
            "running": _RUNNING,
            "at": tx.dump(now),
            "renew_after": renew_after,
        }
        params |= event_params(batch)
        added = yield from tx.inserted(append_events, params, len(batch))
        if not added:
            yield from tx.begin()  # renew, then insert again: together or not at all
            renewed = tx.dump(expires)
            held = {"run_id": run_id, "owner": claim.owner, "running": _RUNNING}
            if not (yield from tx.count(renew_lease, held | {"expires": renewed})):
                raise (yield from tx.not_held(run_id))
            renew_after = params["renew_after"] = renewed
            added = yield from tx.inserted(append_events, params, len(batch))
        seqs += added  # ascending seqs are the events' order
    return seqs


def take_signal(tx: Tx, run_id: str, signal: str, path: Path, claim: Claim) -> Op[Event | None]:
    rows = yield from tx.rows(lock_run, {"run_id": run_id})
    if not rows:
        raise not_found(run_id)
    if rows[0][1] != claim.owner or rows[0][0] != _RUNNING:
        raise (yield from tx.not_held(run_id))
    now = _now()
    taken = yield from tx.rows(
        consume_signal, {"run_id": run_id, "name": signal, "now": tx.dump(now)}
    )
    if not taken:
        return None
    payload: str = taken[0][0]
    seq = yield from tx.insert_event(run_id, NewEvent(SIGNAL, path, payload), now)
    return Event(seq, run_id, SIGNAL, path, payload, now)


def finish(
    tx: Tx,
    *,
    run_id: str,
    claim: Claim,
    status: RunStatus,
    event: NewEvent,
    output_json: str | None,
    error: str | None,
    wake_at: dt.datetime | None,
    signals: abc.Collection[str],
    events: abc.Sequence[NewEvent],
) -> Op[RunRecord]:
    now = _now()
    params = {
        "run_id": run_id,
        "owner": claim.owner,
        "running": _RUNNING,
        "status": status.value,
        "output": output_json,
        "error": error,
        "wake_at": tx.dump(wake_at),
        "now": tx.dump(now),
    }
    written = [*events, event]
    if tx.dialect == "postgresql" and status is not RunStatus.PAUSED and len(written) <= _MAX_BATCH:
        # One statement: one round trip, no transaction.
        rows = yield from tx.rows(
            finish_run_with_events, params | event_params(written), len(written)
        )
        if not rows:
            raise (yield from tx.not_held(run_id))
        record = tx.record(rows[0])
    else:
        yield from tx.begin()
        rows = yield from tx.rows(finish_run, params)
        if not rows:
            raise (yield from tx.not_held(run_id))
        record = tx.record(rows[0])
        # A statement of its own, after the row is locked: on PostgreSQL it then
        # sees every signal committed before (see ``deliver_signal``).
        if status is RunStatus.PAUSED and signals:
            awaited = {f"signal_{i}": name for i, name in enumerate(sorted(signals))}
            woken = {"run_id": run_id, "now": tx.dump(now)} | awaited
            if (yield from tx.count(wake_if_signalled, woken, len(awaited))):
                record = attrs.evolve(record, wake_at=now)
                yield from notify(tx, record.name)
        for new in written:
            yield from tx.insert_event(run_id, new, now)
    path = next((new.path for new in reversed(written) if new.path is not None), None)
    if path is not None:  # the newest event with a path, as get() would read it
        record = attrs.evolve(record, current_path=path)
    return record


def event_params(events: abc.Sequence[NewEvent]) -> dict[str, Any]:
    """
    Return the parameters ``kind_i``, ``path_i``, ``data_i`` of a batch of events.
    """
    params: dict[str, Any] = {}
    for (kind, path, data), new in zip(_EVENT_PARAMS, events, strict=False):
        params[kind] = new.kind
        params[path] = dump_path(new.path)
        params[data] = new.data
    return params


def heartbeat(tx: Tx, run_id: str, claim: Claim) -> Op[None]:
    params = {
        "run_id": run_id,
        "owner": claim.owner,
        "running": _RUNNING,
        "expires": tx.dump(claim.expires(_now())),
    }
    if not (yield from tx.count(renew_lease, params)):
        raise (yield from tx.not_held(run_id))


def release_run(tx: Tx, run_id: str, claim: Claim, *, failed: bool) -> Op[None]:
    params = {"run_id": run_id, "owner": claim.owner, "now": tx.dump(_now()), "failed": failed}
    released = yield from tx.rows(release, params)
    if released:
        yield from notify(tx, released[0][0])  # another worker may take it at once
    elif not (yield from tx.rows(get_status, {"run_id": run_id})):
        raise not_found(run_id)


def deliver_signal(tx: Tx, run_id: str, signal: str, payload: Any) -> Op[None]:
    rows = yield from tx.rows(lock_run, {"run_id": run_id})
    if not rows:
        raise not_found(run_id)
    status = load_status(run_id, rows[0][0])
    if status.is_finished:
        msg = f"run {run_id} is {status.value}: it takes no more signals ({signal!r})"
        raise RunFinished(msg, run_id=run_id, status=status.value)
    data = encode_payload(run_id, signal, payload)
    now = _now()
    params = {"run_id": run_id, "name": signal, "payload": data, "now": tx.dump(now)}
    yield from tx.count(insert_signal, params)
    yield from tx.insert_event(
        run_id, NewEvent(SIGNALLED, data=json.dumps({"signal": signal})), now
    )
    if status is RunStatus.PAUSED:
        yield from tx.count(wake, {"run_id": run_id, "now": tx.dump(now)})
        yield from notify(tx, rows[0][2])


def cancel(tx: Tx, run_id: str) -> Op[RunRecord]:
    now = _now()
    params = {
        "run_id": run_id,
        "now": tx.dump(now),
        "cancelled": RunStatus.CANCELLED.value,
        "pending": RunStatus.PENDING.value,
        "running": _RUNNING,
        "paused": RunStatus.PAUSED.value,
    }
    if (yield from tx.count(cancel_run, params)):
        yield from tx.insert_event(run_id, NewEvent(CANCELLED), now)
    return (yield from tx.get_record(run_id))


def history(tx: Tx, run_id: str) -> Op[list[Event]]:
    if not (yield from tx.rows(get_status, {"run_id": run_id})):  # also: another tenant's run
        raise not_found(run_id)
    rows = yield from tx.rows(get_history, {"run_id": run_id})
    return [tx.event(row) for row in rows]


def list_runs(
    tx: Tx, name: str | None, status: RunStatus | None, limit: int
) -> Op[list[RunRecord]]:
    params: dict[str, Any] = {"limit": limit}
    if name is not None:
        params["name"] = name
    if status is not None:
        params["status"] = status.value
    rows = yield from tx.rows(list_records, params, name is not None, status is not None)
    return [tx.record(row) for row in rows]
