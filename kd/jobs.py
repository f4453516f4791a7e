"""Runs as background processes: start, stop, resume, and what state each is in.

A run is an OS process (`python -m kd worker RUN_ID`), not a thread of the web server: it
survives page changes, browser refreshes, a second tab and a restart of the dashboard. Who may
write a run, and when it counts as interrupted, is decided in kd/lease.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from kd.config import RunConfig
from kd.errors import KDError
from kd.lease import ACTIVE, HOST, RESUMABLE, LeaseLost, max_runs, process_start, state, why_not_resumable  # noqa: F401
from kd.store import Run, Store

TEACHER_COPY = "input-teacher.safetensors"  # a run's own copy of a reused or uploaded teacher


def disk_needed(cfg: RunConfig) -> int:
    """Bytes a run writes at most: each model's weights, and a checkpoint (weights and two Adam
    moments) of the larger model; events are small beside them."""
    from kd import data, models

    spec = data.spec_for(cfg)
    params = {
        k: models.param_count(getattr(cfg, k), spec.input_shape, spec.num_classes) for k in ("teacher", "student")
    }
    return 4 * (params["teacher"] + 2 * params["student"] + 3 * max(params.values()))


def start(cfg: RunConfig, store: Store | None = None) -> str:
    """Queue a run and spawn its worker; returns the run id at once.

    A runs folder that is not writable, or a disk without room for the run's weights and
    checkpoints, is a StoreError here, before anything is written. A teacher file is copied into
    the run, which owns it from then on."""
    store = store or Store()
    run_id = store.create_run(
        cfg.to_dict(), status="queued", needed_bytes=disk_needed(cfg), inputs={"teacher_checkpoint": TEACHER_COPY}
    )
    spawn(store, run_id)
    return run_id


def resume(run_id: str, store: Store | None = None) -> None:
    """Queue an interrupted, stopped or failed run again and spawn a worker to go on with it.

    The check and the change are one store transaction: of several resumes at once (two tabs,
    a double click) one is accepted, and the others are refused because the run is queued."""
    store = store or Store()
    if store.get(run_id) is None:
        raise KDError(f"no such run: {run_id!r}")

    def queue(run: Run) -> dict:
        why = why_not_resumable(run)
        if why:
            raise KDError(f"run {run_id} cannot be resumed: {why}")
        now = time.time()
        return dict(
            status="queued",
            token=None,
            pid=os.getpid(),
            host=HOST,
            pid_start=process_start(os.getpid()),
            heartbeat=now,
            queued_at=now,
            stop_requested=0,
            message="Queued again: its worker is starting.",
        )

    store.change(run_id, queue)
    spawn(store, run_id, "--resume")


ROOT = str(Path(__file__).resolve().parents[1])


def spawn(store: Store, run_id: str, *flags: str) -> None:
    """Start the worker (or hand the run to the standby one) and record its pid as the run's
    owner until it claims the run itself."""
    log_path = store.run_dir(run_id) / "worker.log"  # the folder is made by create_run
    runs_dir = str(store.root.resolve())
    try:
        proc = standby.hand_over(runs_dir, log_path, run_id, *flags)
        if proc is None:
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "kd", "worker", run_id, *flags],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "KD_RUNS_DIR": runs_dir},
                    start_new_session=True,
                    cwd=ROOT,
                )
    except OSError as e:
        store.update(run_id, status="failed", message=f"the worker process could not start ({e})")
        raise KDError(f"run {run_id}: the worker process could not start ({e})") from None

    def record(run: Run) -> dict:
        return {} if run.token else dict(pid=proc.pid, host=HOST, pid_start=process_start(proc.pid))

    store.change(run_id, record)


IMPORT_TIME_ENV = ("OMP_", "MKL_", "KMP_", "OPENBLAS_", "CUDA_", "NVIDIA_", "PYTORCH_", "LD_", "PYTHON")


class Standby:
    """One worker process started ahead of the next run, with torch and the trainer imported
    and warmed up, waiting on its stdin: a run handed to it starts training at once instead of
    after the seconds a fresh process takes to import torch (`python -m kd standby`).

    The dashboard keeps one (keep()) while no run of its store is active, so a standby never
    takes CPU from a run. It serves only runs started with the environment it was started with
    as far as it matters once torch is loaded (thread counts, devices, library paths: the rest
    of the environment comes with the run); any other run gets a fresh process. It
    ends when its stdin closes: when the dashboard that started it ends, or is killed."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.proc: subprocess.Popen | None = None
        self.env: dict[str, str] = {}

    @staticmethod
    def _env() -> dict[str, str]:
        """The variables read when torch and its libraries load, which a process started earlier
        cannot take on later; the rest of the environment comes with the run."""
        return {k: v for k, v in os.environ.items() if k.startswith(IMPORT_TIME_ENV) or k == "PATH"}

    def ready(self) -> bool:
        """Whether a standby worker is alive for this environment."""
        return self.proc is not None and self.proc.poll() is None and self.env == self._env()

    def keep(self) -> None:
        """Start a standby worker unless one is alive for this environment."""
        with self.lock:
            if self.ready():
                return
            self.close()
            self.env = self._env()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kd", "standby"],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=os.environ.copy(),
                start_new_session=True,  # a run it takes outlives the dashboard, as any worker does
                cwd=ROOT,
            )

    def hand_over(self, runs_dir: str, log: Path, run_id: str, *flags: str) -> subprocess.Popen | None:
        """Give the run to the standby worker and return its process; None when there is none
        for this environment (the caller starts a fresh one)."""
        with self.lock:
            ready, proc, self.proc = self.ready(), self.proc, None
            if not ready:
                self.close(proc)
                return None
            env = {**os.environ, "KD_RUNS_DIR": runs_dir}
            job = {"run_id": run_id, "flags": list(flags), "env": env, "log": str(log)}
            try:
                proc.stdin.write((json.dumps(job) + "\n").encode())
                proc.stdin.close()
            except OSError:  # it ended just now
                self.close(proc)
                return None
            return proc

    def close(self, proc: subprocess.Popen | None = None) -> None:
        """End the standby worker (or `proc`): its stdin closed, it exits by itself."""
        proc = proc or self.proc
        if proc is not None and proc.stdin and not proc.stdin.closed:
            with contextlib.suppress(OSError):
                proc.stdin.close()  # its stdin closed: it ends by itself
        if proc is self.proc:
            self.proc = None

    def pid(self) -> int | None:
        """The standby worker's pid while one is alive."""
        with self.lock:
            return self.proc.pid if self.proc is not None and self.proc.poll() is None else None


standby = Standby()


def serve_standby(cli: Callable[[list[str]], int]) -> int:
    """`python -m kd standby`: import and warm up what a run needs, then wait for one run on
    stdin (a JSON line from Standby.hand_over) and train it as `python -m kd worker` would (`cli`:
    kd.cli.main, passed in so that this module does not import the command line); end quietly
    when stdin closes first."""
    import sklearn.datasets  # noqa: F401  (the bundled sets, and their stratified split)
    import sklearn.model_selection  # noqa: F401
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters())
    for _ in range(3):  # the first steps pay for thread pools and kernels; a run should not
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(torch.randn(64, 64)), torch.zeros(64, dtype=torch.long)).backward()
        opt.step()
    line = sys.stdin.readline()
    if not line:
        return 0
    job = json.loads(line)
    os.environ.clear()
    os.environ.update(job["env"])  # the limits (KD_MAX_*, ...) as the dashboard has them now
    log = os.open(job["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    return cli(["worker", job["run_id"], *job["flags"]])


def stop(run_id: str, store: Store | None = None) -> None:
    """Ask the run to stop; the trainer honours it between batches and keeps what it has."""
    (store or Store()).request_stop(run_id)


def status(run: Run) -> str:
    """The status to show: an active run whose owner is dead is 'interrupted' (kd/lease.py)."""
    return state(run)


# -- the worker's side: take the run, wait for a turn, beat ----------------------------------
def claim(
    store: Store, run_id: str, accept: Callable[[Run], str | None], requeue: bool = False, verb: str = "taken"
) -> str:
    """Take the run's lease in one store transaction and return its token. accept(run) says why
    this process may not own the run (None: it may); of two claimants at once, one wins and the
    other is refused. requeue: the run joins the queue again (a resume)."""
    token = secrets.token_hex(8)

    def take(run: Run) -> dict:
        why = accept(run)
        if why:
            raise KDError(f"run {run_id} cannot be {verb}: {why}")
        now, pid = time.time(), os.getpid()
        fields = dict(token=token, pid=pid, host=HOST, pid_start=process_start(pid), heartbeat=now)
        if requeue:  # a run queued by resume() keeps its place in line
            fields.update(
                status="queued",
                queued_at=run.queued_at if run.status == "queued" else now,
                # resume() queued it with the request cleared: one asked since (Stop right after
                # Resume) stands; a run resumed straight from stopped or interrupted starts clear
                stop_requested=run.stop_requested if run.status == "queued" else 0,
                message=None,
            )
        return fields

    store.change(run_id, take)
    return token


def unclaimed_queued(run: Run) -> str | None:
    """accept() for `python -m kd worker RUN_ID`: only a queued run that no worker owns."""
    if run.status == "queued" and not run.token:
        return None
    s = state(run)
    if s in ACTIVE:
        return f"it already has a worker (pid {run.pid} on {run.host})"
    return f"it is {s}; python -m kd resume {run.id} goes on with it"


def resumable(run: Run) -> str | None:
    """accept() for a resume: an interrupted, stopped or failed run."""
    return why_not_resumable(run)


def queued_or_resumable(run: Run) -> str | None:
    """accept() for `python -m kd worker --resume`: queued again by resume(), or resumable."""
    return unclaimed_queued(run) and resumable(run)


class Heartbeat:
    """Marks the run alive every `every_s` seconds from a daemon thread, even in a long batch;
    notes when the lease is lost, so the trainer stops."""

    def __init__(self, store: Store, run_id: str, lease: str, every_s: float = 2.0):
        self.store, self.run_id, self.lease, self.every_s = store, run_id, lease, every_s
        self.done, self.lost = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True, name=f"heartbeat-{run_id}")

    def _beat(self) -> None:
        while not self.done.wait(self.every_s):
            try:
                self.store.update(self.run_id, lease=self.lease, heartbeat=time.time())
            except LeaseLost:
                self.lost.set()
                return
            except Exception:  # a busy or full store must not kill the run; the next beat retries
                pass

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()


def take_turn(store: Store, run_id: str, lease: str, say: Callable[[str], None] = lambda line: None) -> bool:
    """Wait, beating, for the run's turn (wait_turn); False, with the run marked stopped, when a
    stop was asked first. Returns at once for a run that already has its turn."""
    with Heartbeat(store, run_id, lease):
        if wait_turn(store, run_id, lease, say):
            return True
    store.update(run_id, lease=lease, status="stopped", message="stopped while it waited for its turn")
    return False


def wait_turn(
    store: Store, run_id: str, lease: str, say: Callable[[str], None] = lambda line: None, every_s: float = 0.5
) -> bool:
    """Wait, queued, until fewer than max_runs() runs are running and the runs queued before
    this one have started; then the run is marked running. False when a stop was asked first."""
    limit, said = max_runs(), None
    while True:
        place = store.take_slot(run_id, lease, limit)
        if place is None:
            if said is not None:
                store.update(run_id, lease=lease, message=None)
            return True
        if store.stop_requested(run_id):
            return False
        line = (
            f"Waiting for its turn: {limit} run{'s train' if limit != 1 else ' trains'} at a time "
            f"(KD_MAX_RUNS), and this run is {'next' if place == 1 else f'number {place}'} in line."
        )
        if line != said:
            store.update(run_id, lease=lease, message=line)
            say(line)
            said = line
        time.sleep(every_s)
