"""Runs as background processes: start, stop, and tell whether one is still alive.

A run is an OS process (`python -m kd worker RUN_ID`), not a thread of the web server: it
survives page changes, browser refreshes, a second tab and a restart of the dashboard.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from kd.config import RunConfig
from kd.errors import KDError
from kd.store import Run, Store

STALE_AFTER_S = 10.0  # no heartbeat for this long: the process is gone (kill -9, power loss)
ACTIVE = ("queued", "running")
RESUMABLE = ("interrupted", "stopped", "failed")  # what `python -m kd resume` and Resume accept


def start(cfg: RunConfig, store: Store | None = None) -> str:
    """Queue a run and spawn its worker; returns the run id at once.

    A runs folder that is not writable, or a disk without room for the run's weights and
    checkpoints, is a StoreError here, before anything is written."""
    from kd.runner import disk_needed
    store = store or Store()
    run_id = store.create_run(cfg.to_dict(), status="queued", needed_bytes=disk_needed(cfg))
    _spawn(store, run_id)
    return run_id


def resume(run_id: str, store: Store | None = None) -> None:
    """Go on with an interrupted or stopped run in a new worker (checked here, so a refusal is
    the caller's KDError rather than a line in the worker's log)."""
    store = store or Store()
    run = store.get(run_id)
    if run is None or status(run) not in RESUMABLE:
        raise KDError(f"run {run_id} cannot be resumed: it is {status(run) if run else 'unknown'}")
    store.update(run_id, status="queued", heartbeat=time.time())
    _spawn(store, run_id, "--resume")


def _spawn(store: Store, run_id: str, *flags: str) -> None:
    log = open(store.run_dir(run_id) / "worker.log", "ab")  # the folder is made by create_run
    env = {**os.environ, "KD_RUNS_DIR": str(store.root.resolve())}
    proc = subprocess.Popen([sys.executable, "-m", "kd", "worker", run_id, *flags], stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                            cwd=str(Path(__file__).resolve().parents[1]))
    log.close()
    store.update(run_id, pid=proc.pid, host=socket.gethostname(), heartbeat=time.time())


def stop(run_id: str, store: Store | None = None) -> None:
    """Ask the run to stop; the trainer honours it between batches and keeps what it has."""
    (store or Store()).request_stop(run_id)


def is_stale(run: Run, now: float | None = None) -> bool:
    """An active run whose process is gone (on this machine) or has not been heard from for
    STALE_AFTER_S (a frozen process, a closed laptop lid, another machine)."""
    if run.status not in ACTIVE:
        return False
    if run.pid and run.host == socket.gethostname() and not _alive(run.pid):
        return True
    last = run.heartbeat or run.updated
    return (now or time.time()) - last > STALE_AFTER_S


def _alive(pid: int) -> bool:
    """Whether a process with this pid exists (a zombie, killed but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:  # no /proc (macOS): kill() said it exists
        return True


def status(run: Run) -> str:
    """The status to show: an active run that stopped beating is 'interrupted'."""
    return "interrupted" if is_stale(run) else run.status
