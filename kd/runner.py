"""Runs one RunConfig to the end, with the store as the trainer's event sink.

Used in-process by `python -m kd train` and in a background process by `python -m kd worker`
(the dashboard's runs). Events are buffered and written in batches, so the store costs the
training loop almost nothing; stage and epoch boundaries are written at once.
"""
from __future__ import annotations

import os
import socket
import threading
import time
import traceback
from typing import Callable, Optional

from kd import checkpoint, jobs
from kd.config import RunConfig
from kd.errors import KDError
from kd.metrics import state_dict_for_saving
from kd.store import Store
from kd.trainer import STAGES, Resume, RunResult, StageResult, Trainer

FLUSH_EVERY_S = 0.5  # the live view polls about once a second


class EventWriter:
    """Collects events; writes them to the store every FLUSH_EVERY_S and at boundaries."""

    def __init__(self, store: Store, run_id: str, also: Optional[Callable[[dict], None]] = None):
        self.store, self.run_id, self.also = store, run_id, also
        self.buffer: list[dict] = []
        self.last_flush = time.monotonic()

    def __call__(self, event: dict) -> None:
        self.buffer.append(event)
        if self.also is not None:
            self.also(event)
        if event["kind"] != "step" or time.monotonic() - self.last_flush > FLUSH_EVERY_S:
            self.flush()

    def flush(self) -> None:
        self.store.append_events(self.run_id, self.buffer)
        self.buffer = []
        self.last_flush = time.monotonic()


class Heartbeat:
    """Marks the run alive every `every_s` seconds from a daemon thread, even in a long batch."""

    def __init__(self, store: Store, run_id: str, every_s: float = 2.0):
        self.store, self.run_id, self.every_s = store, run_id, every_s
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True, name=f"heartbeat-{run_id}")

    def _beat(self) -> None:
        while not self.done.wait(self.every_s):
            try:
                self.store.update(self.run_id, heartbeat=time.time())
            except Exception:  # a busy or vanished store must not kill the run; the next beat retries
                pass

    def __enter__(self) -> "Heartbeat":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()


class StopFlag:
    """should_stop for the trainer: reads the store at most every `every_s` seconds."""

    def __init__(self, store: Store, run_id: str, every_s: float = 0.25):
        self.store, self.run_id, self.every_s = store, run_id, every_s
        self.last, self.value = 0.0, False

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self.value and now - self.last > self.every_s:
            self.last = now
            self.value = self.store.stop_requested(self.run_id)
        return self.value


def disk_needed(cfg: RunConfig) -> int:
    """Bytes a run writes at most: each model's weights, and a checkpoint (weights and two Adam
    moments) of the larger model; events are small beside them."""
    from kd import data, models
    spec = data.spec(cfg.dataset, cfg.data_dir, cfg.image_size)
    params = {k: models.param_count(getattr(cfg, k), spec.input_shape, spec.num_classes)
              for k in ("teacher", "student")}
    return 4 * (params["teacher"] + 2 * params["student"] + 3 * max(params.values()))


def execute(store: Store, run_id: str, cfg: RunConfig,
            progress: Optional[Callable[[dict], None]] = None, resume: Optional[Resume] = None) -> RunResult:
    """Train, save each stage's weights as it ends and a checkpoint at each epoch's end, store
    the final metrics and status.

    A KDError (bad input found late, e.g. a missing data folder) marks the run failed with its
    message and is re-raised; anything else also marks it failed, with the exception's last line.
    """
    writer = EventWriter(store, run_id, also=progress)
    store.update(run_id, status="running", pid=os.getpid(), host=socket.gethostname(), heartbeat=time.time())
    config = cfg.to_dict()

    def save(stage: str, model, stage_result) -> None:
        arch = cfg.teacher if stage == "teacher" else cfg.student
        store.save_weights(run_id, stage, state_dict_for_saving(model), config, arch)

    def save_checkpoint(take) -> None:
        writer.flush()  # the epoch's events are in the store before the checkpoint that follows them
        checkpoint.save(take(), store.checkpoint_path(run_id), {"run_id": run_id})

    try:
        with Heartbeat(store, run_id):
            result = Trainer(cfg, emit=writer, should_stop=StopFlag(store, run_id), on_stage_end=save,
                             on_checkpoint=save_checkpoint, resume=resume).run()
    except BaseException as e:
        writer.flush()
        message = str(e) if isinstance(e, KDError) else (
            "interrupted" if isinstance(e, KeyboardInterrupt)
            else traceback.format_exception_only(type(e), e)[-1].strip())
        store.update(run_id, status="interrupted" if isinstance(e, KeyboardInterrupt) else "failed",
                     message=message)
        raise
    writer.flush()
    messages = [f"{name}: {s.message}" for name, s in result.stages.items() if s.message and s.status != "loaded"]
    store.update(run_id, status=result.status, message="; ".join(messages) or None,
                 results={"models": result.metrics, "summary": result.summary})
    if result.status in ("done", "diverged"):  # nothing left to go on from
        store.checkpoint_path(run_id).unlink(missing_ok=True)
    return result


def prepare_resume(store: Store, run_id: str, queued: bool = False) -> tuple[RunConfig, Resume]:
    """What an unfinished run has kept, its stale events dropped, and the run marked running again.

    Kept: every stage that ended "done" (or "loaded"), with its saved weights, and the stage after
    it at its last checkpoint. The events after that point (a half epoch, a stop) are deleted so
    the curves do not show them twice; the resumed training emits them again.
    """
    run = store.get(run_id)
    if run is None:
        raise KDError(f"no such run: {run_id!r} (python -m kd runs lists them)")
    status = jobs.status(run)
    if status not in jobs.RESUMABLE and not (queued and status == "queued"):  # queued: by jobs.resume
        why = {"done": "it has finished", "diverged": "its loss diverged: start a new run with a lower lr",
               "running": f"it is still running (pid {run.pid})", "queued": "it is about to start"}
        raise KDError(f"run {run_id} cannot be resumed: {why.get(status, status)}")
    cfg = RunConfig.from_dict(run.config)
    events = store.events(run_id)
    ends = {e["stage"]: (seq, e) for seq, e in events if e["kind"] == "stage" and e["status"] != "started"}
    resume, keep = Resume(), 0
    for stage in STAGES:
        seq, e = ends.get(stage, (0, {"status": None}))
        if e["status"] not in ("done", "loaded"):
            break
        try:
            weights = _load_weights(store.weights_path(run_id, stage))
        except Exception as e:  # missing or unreadable: redo that stage
            print(f"weights of {stage} not used: {e}", flush=True)
            break
        resume.finished[stage] = (weights, StageResult(e["status"], e["epochs"], e.get("seconds", 0.0),
                                                       e.get("message", "")))
        keep = seq
    path = store.checkpoint_path(run_id)
    next_stage = next((s for s in STAGES if s not in resume.finished), None)
    if next_stage and path.exists():
        ckpt = None
        try:
            ckpt, _ = checkpoint.load(path)
        except Exception as e:  # unreadable: that stage starts over rather than the resume failing
            print(f"checkpoint {path} not used: {e}", flush=True)
        epoch_seq = next((seq for seq, e in events if ckpt is not None and e["kind"] == "epoch"
                          and e["stage"] == ckpt.stage and e["epoch"] == ckpt.epoch), None)
        if ckpt is not None and ckpt.stage == next_stage and epoch_seq is not None:
            resume.partial, keep = ckpt, epoch_seq
    store.truncate_events(run_id, keep)
    store.update(run_id, status="running", stop_requested=0, message=None, resumed=run.resumed + 1,
                 heartbeat=time.time())
    return cfg, resume


def _load_weights(path) -> dict:
    from safetensors.torch import load_file
    return load_file(str(path), device="cpu")


def resume_run(store: Store, run_id: str, progress: Optional[Callable[[dict], None]] = None,
               queued: bool = False) -> RunResult:
    """Go on with an interrupted or stopped run from what it kept, to the end."""
    cfg, resume = prepare_resume(store, run_id, queued)
    return execute(store, run_id, cfg, progress=progress, resume=resume)
