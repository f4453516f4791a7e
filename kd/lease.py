"""Who owns a run, and what its status really is: the run's state machine, in one place.

A run is written by one process at a time, its owner. The owner holds a lease in the store: a
random token, with the owner's host, pid and process start time. It is taken in one store
transaction (`kd.jobs.claim` through `Store.change`), so of two processes that try at once
exactly one gets it, and every
later write the owner makes carries the token: a write from a process that lost its lease is
rejected (`LeaseLost`), never mixed into the new owner's events.

Liveness is decided by the operating system, not by how fast anything runs:
- owner on this host: alive while its pid exists with the same start time (a frozen or very
  busy process is alive; a pid reused by another program is not the owner);
- owner on another host: alive until its heartbeat is older than `lease_lapse_s()`, a span no
  loaded machine explains ($KD_LEASE_LAPSE_S);
- a run being started (queued, no pid recorded yet): alive for START_GRACE_S after it was queued.
An active run (queued or running) whose owner is dead is "interrupted", and only then resumable.

Stored statuses:   queued -> running -> done | stopped | diverged | failed | interrupted (Ctrl-C)
                   queued -> stopped (stopped before its turn)
Shown in addition: interrupted (an active run whose owner is dead)
Claiming, the heartbeat and waiting for a turn (KD_MAX_RUNS) are kd/jobs.py's; the rules here decide.
"""

from __future__ import annotations

import os
import socket
import time

from kd.errors import KDError
from kd.limits import env_limit

ACTIVE = ("queued", "running")
RESUMABLE = ("interrupted", "stopped", "failed")  # what Resume and `python -m kd resume` accept
START_GRACE_S = 60.0  # a queued run with no process recorded yet counts as starting this long
PLACE_LAPSE_S = 30.0  # a claimed queued run silent this long lets the runs queued after it go first
HOST = socket.gethostname()


class LeaseLost(KDError):
    """This process no longer owns the run (another worker took it over, or it was deleted)."""


def lease_lapse_s() -> float:
    """Seconds without a heartbeat after which an owner on another host counts as dead."""
    return max(env_limit("KD_LEASE_LAPSE_S", 300.0, error=KDError), 10.0)


def max_runs() -> int:
    """Runs that train at once ($KD_MAX_RUNS); the rest wait as queued and start in turn.
    Default: one per two cores and per 2 GB of memory, at least 2."""
    try:
        memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        memory_gb = 4.0
    default = max(2, min((os.cpu_count() or 2) // 2, int(memory_gb // 2)))
    return int(env_limit("KD_MAX_RUNS", default, whole=True, error=KDError))


def process_start(pid: int) -> str | None:
    """When the process started (clock ticks since boot, from /proc), or None where unknown.
    With the pid it names one process for good: a pid the system reuses gets another start."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def pid_alive(pid: int, start: str | None = None) -> bool:
    """Whether the process `pid` (started at `start`, when given) exists on this host; a
    zombie, killed but not yet reaped, counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:  # no /proc (macOS): kill() said it exists
        return True
    if fields[0] == "Z":
        return False
    return start is None or fields[19] == start


def owner_alive(run, now: float | None = None) -> bool:
    """Whether the process that owns (or is starting) an active run is alive; see the module doc."""
    now = time.time() if now is None else now
    if run.pid and run.host == HOST:
        return pid_alive(run.pid, run.pid_start)
    if not run.pid:
        return now - (run.queued_at or run.updated) <= START_GRACE_S
    return now - (run.heartbeat or run.updated) <= lease_lapse_s()


def keeps_place(run, now: float | None = None) -> bool:
    """Whether a queued run keeps its place in the line for a turn (KD_MAX_RUNS): its owner is
    alive, and a claimed run's worker has written a sign of life within PLACE_LAPSE_S (a worker
    still starting keeps its place; one that stopped beating lets the runs behind it go first)."""
    now = time.time() if now is None else now
    return owner_alive(run, now) and (not run.token or now - (run.heartbeat or run.updated) < PLACE_LAPSE_S)


def state(run, now: float | None = None) -> str:
    """The status to show and act on: an active run whose owner is dead is 'interrupted'."""
    if run.status in ACTIVE and not owner_alive(run, now):
        return "interrupted"
    return run.status


def quiet_for(run, now: float | None = None) -> float:
    """Seconds since the run's owner last wrote a sign of life."""
    return (time.time() if now is None else now) - (run.heartbeat or run.updated)


def why_not_resumable(run, now: float | None = None) -> str | None:
    """None when the run may be resumed now, else why not, in words."""
    s = state(run, now)
    if s in RESUMABLE:
        return None
    if s in ACTIVE:
        who = f"pid {run.pid} on {run.host}" if run.pid else "a process being started"
        return f"it is still {s} ({who} owns it)"
    return {"done": "it has finished", "diverged": "its loss diverged: start a new run with a lower lr"}.get(
        s, f"it is {s}"
    )
