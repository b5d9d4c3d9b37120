"""
Lease owners: who holds a run, and whether that holder is gone.

An owner names the host, the process (its pid and start time, so a reused pid
is not mistaken for the old process) and the claim. A run held by a process of
this host that no longer exists can be taken over at once: an application
restarted after a crash resumes its runs without waiting for leases to expire.
"""

from __future__ import annotations

import json
import os
import socket
from functools import cache


@cache
def _host() -> str:
    return socket.gethostname()


def _start_ticks(pid: int) -> str:
    # Field 22 of /proc/PID/stat: when the process started (Linux). Elsewhere
    # the pid alone identifies the process.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:  # noqa: PTH123
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return "-"
    return fields[19] if len(fields) > 19 else "-"  # noqa: PLR2004 -- field 22 of the line


@cache
def _this_process() -> str:
    pid = os.getpid()
    return f"{_host()}/{pid}/{_start_ticks(pid)}"


def new_owner() -> str:
    """
    Return an owner id for a new claim by this process.
    """
    # 48 random bits in hex, as the first 12 digits of a uuid4 (made faster).
    return f"{_this_process()}/{os.urandom(6).hex()}"


def is_dead(owner: str) -> bool:
    """
    Tell whether the process that made ``owner`` is known to be gone.

    Only a process of this host can be known gone; others count as alive
    until their lease expires.
    """
    try:
        host, pid_text, ticks, _claim = owner.rsplit("/", 3)
        pid = int(pid_text)
    except ValueError:
        return False
    if host != _host():
        return False
    if f"{host}/{pid}/{ticks}" == _this_process():
        return False  # this very process: alive, whichever claim it was
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # exists, owned by someone else
    return ticks not in ("-", _start_ticks(pid))


def check_tenant(tenant: object) -> str:
    """
    Return ``tenant`` if it is a usable tenant id (a non-empty string).
    """
    if isinstance(tenant, str) and tenant:
        return tenant
    msg = f"a tenant id is a non-empty string, not {tenant!r}"
    raise ValueError(msg)


def abandoned(run_id: str, attempts: int) -> tuple[str, str]:
    """
    Return the error of a run whose claims kept dying, and its event's data.
    """
    error = (
        f"run {run_id} abandoned: its last {attempts} claims ended without a checkpoint "
        "of its end (the process running it died each time)"
    )
    data = json.dumps({"error": error, "error_type": "RunAbandoned", "attempts": attempts})
    return error, data
