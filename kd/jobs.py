"""Runs as background processes: start, stop, and tell whether one is still alive.

A run is an OS process (`python -m kd worker RUN_ID`), not a thread of the web server: it
survives page changes, browser refreshes, a second tab and a restart of the dashboard.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from kd.config import RunConfig
from kd.store import Run, Store

STALE_AFTER_S = 10.0  # no heartbeat for this long: the process is gone (kill -9, power loss)
ACTIVE = ("queued", "running")


def start(cfg: RunConfig, store: Store | None = None) -> str:
    """Queue a run and spawn its worker; returns the run id at once."""
    store = store or Store()
    run_id = store.create_run(cfg.to_dict(), status="queued")
    folder = store.run_dir(run_id)
    folder.mkdir(parents=True, exist_ok=True)
    log = open(folder / "worker.log", "ab")
    env = {**os.environ, "KD_RUNS_DIR": str(store.root.resolve())}
    proc = subprocess.Popen([sys.executable, "-m", "kd", "worker", run_id], stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                            cwd=str(Path(__file__).resolve().parents[1]))
    log.close()
    store.update(run_id, pid=proc.pid, heartbeat=time.time())
    return run_id


def stop(run_id: str, store: Store | None = None) -> None:
    """Ask the run to stop; the trainer honours it between batches and keeps what it has."""
    (store or Store()).request_stop(run_id)


def is_stale(run: Run, now: float | None = None) -> bool:
    """An active run whose process has not been heard from for STALE_AFTER_S."""
    if run.status not in ACTIVE:
        return False
    last = run.heartbeat or run.updated
    return (now or time.time()) - last > STALE_AFTER_S


def status(run: Run) -> str:
    """The status to show: an active run that stopped beating is 'interrupted'."""
    return "interrupted" if is_stale(run) else run.status
