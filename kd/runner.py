"""Runs one RunConfig to the end, with the store as the trainer's event sink.

Used in-process by `python -m kd train` and in a background process by `python -m kd worker`
(the dashboard's runs). Events are buffered and written in batches, so the store costs the
training loop almost nothing; stage and epoch boundaries are written at once.
"""

from __future__ import annotations

import errno
import secrets
import time
import traceback
from collections.abc import Callable

from kd import checkpoint, jobs
from kd.config import RunConfig
from kd.errors import KDError
from kd.events import FINISHED, STAGES, Epoch, StageEnded, Step, parse, type_of
from kd.jobs import TEACHER_COPY, disk_needed
from kd.lease import LeaseLost
from kd.metrics import state_dict_for_saving
from kd.store import DiskFull, Store
from kd.trainer import Resume, RunResult, StageResult, Trainer

FLUSH_EVERY_S = 0.5  # the live view polls about once a second


class EventWriter:
    """Collects events; writes them to the store every FLUSH_EVERY_S and at boundaries."""

    def __init__(self, store: Store, run_id: str, lease: str, also: Callable[[dict], None] | None = None):
        self.store, self.run_id, self.lease, self.also = store, run_id, lease, also
        self.buffer: list[dict] = []
        self.last_flush = time.monotonic()

    def __call__(self, event: dict) -> None:
        self.buffer.append(event)
        if self.also is not None:
            self.also(event)
        if type_of(event) is not Step or time.monotonic() - self.last_flush > FLUSH_EVERY_S:
            self.flush()

    def flush(self) -> None:
        self.store.append_events(self.run_id, self.buffer, lease=self.lease)
        self.buffer = []
        self.last_flush = time.monotonic()


class StopFlag:
    """should_stop for the trainer: reads the store at most every `every_s` seconds; also true
    once the heartbeat found the lease lost (the run's next write then raises LeaseLost)."""

    def __init__(self, store: Store, run_id: str, beat: jobs.Heartbeat, every_s: float = 0.25):
        self.store, self.run_id, self.beat, self.every_s = store, run_id, beat, every_s
        self.last, self.value = 0.0, False

    def refresh(self) -> None:
        """Read the store at the next call: at an epoch's end, so a stop asked during an epoch
        is honoured at the next one's first batch however fast the epochs run."""
        self.last = float("-inf")

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self.value and now - self.last > self.every_s:
            self.last = now
            self.value = self.beat.lost.is_set() or self.store.stop_requested(self.run_id)
        return self.value


def train_new(
    store: Store,
    cfg: RunConfig,
    progress: Callable[[dict], None] | None = None,
    say: Callable[[str], None] = lambda line: None,
) -> tuple[str, RunResult]:
    """Create a run owned by this process from the start and train it here (the CLI's `train`)."""
    lease = secrets.token_hex(8)
    run_id = store.create_run(
        cfg.to_dict(),
        status="queued",
        needed_bytes=disk_needed(cfg),
        lease=lease,
        inputs={"teacher_checkpoint": TEACHER_COPY},
    )
    return run_id, run_owned(store, run_id, lease, progress, say=say)


def run_owned(
    store: Store,
    run_id: str,
    lease: str,
    progress: Callable[[dict], None] | None = None,
    resuming: bool = False,
    say: Callable[[str], None] = lambda line: None,
) -> RunResult:
    """Wait for a turn, then train the run this process owns (from what it kept, when resuming)."""
    if not jobs.take_turn(store, run_id, lease, say):
        return RunResult(status="stopped")
    with jobs.Heartbeat(store, run_id, lease) as beat:
        if resuming:
            cfg, resume = prepare_resume(store, run_id, lease)
        else:
            cfg, resume = RunConfig.from_dict(store.get(run_id).config), None
        return execute(store, run_id, cfg, lease, beat, progress=progress, resume=resume)


def execute(
    store: Store,
    run_id: str,
    cfg: RunConfig,
    lease: str,
    beat: jobs.Heartbeat,
    progress: Callable[[dict], None] | None = None,
    resume: Resume | None = None,
) -> RunResult:
    """Train, save each stage's weights as it ends and a checkpoint at each epoch's end, store
    the final metrics and status; every write carries the lease, so a worker that lost the run
    writes nothing more (LeaseLost).

    A KDError (bad input found late, e.g. a missing data folder) marks the run failed with its
    message and is re-raised; a full disk marks it "failed: disk full" (resumable once space is
    freed) and is re-raised as one DiskFull line; anything else also marks it failed, with the
    exception's last line.
    """
    writer = EventWriter(store, run_id, lease, also=progress)
    stop = StopFlag(store, run_id, beat)
    config = cfg.to_dict()

    def save(stage: str, model, stage_result) -> None:
        arch = cfg.teacher if stage == "teacher" else cfg.student
        store.check_lease(run_id, lease)
        store.save_weights(run_id, stage, state_dict_for_saving(model), config, arch)

    def save_checkpoint(take) -> None:
        writer.flush()  # the epoch's events are in the store before the checkpoint that follows them
        store.check_lease(run_id, lease)
        checkpoint.save(take(), store.checkpoint_path(run_id), {"run_id": run_id})
        stop.refresh()

    try:
        result = Trainer(
            cfg, emit=writer, should_stop=stop, on_stage_end=save, on_checkpoint=save_checkpoint, resume=resume
        ).run()
    except LeaseLost:
        raise  # not ours any more: write nothing
    except BaseException as e:
        full = _disk_full(e)
        if full:
            message = f"disk full: {full}; free some space, then resume the run (python -m kd resume {run_id})"
        elif isinstance(e, KDError):
            message = str(e)
        elif isinstance(e, KeyboardInterrupt):
            message = "interrupted"
        else:
            message = traceback.format_exception_only(type(e), e)[-1].strip()
        if full:
            store.release_reserve()
        try:
            writer.flush()
            store.update(
                run_id,
                lease=lease,
                status="interrupted" if isinstance(e, KeyboardInterrupt) else "failed",
                message=message,
            )
        except LeaseLost:
            raise
        except Exception:  # the store cannot take it either (full disk): this process ends, and
            pass  # with its owner gone the run shows as interrupted, resumable
        if full:
            raise DiskFull(message) from None
        raise
    writer.flush()
    messages = [f"{name}: {s.message}" for name, s in result.stages.items() if s.message and s.status != "loaded"]
    store.update(
        run_id,
        lease=lease,
        status=result.status,
        message="; ".join(messages) or None,
        results={"models": result.metrics, "summary": result.summary},
    )
    if result.status in ("done", "diverged"):  # nothing left to go on from
        store.checkpoint_path(run_id).unlink(missing_ok=True)
    return result


def _disk_full(e: BaseException) -> str | None:
    """What ran out of space, when `e` (or an exception it came from) is a full disk; else None."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, DiskFull):  # the store said so in its own words
            return str(e)
        if (
            isinstance(e, OSError)
            and e.errno in (errno.ENOSPC, errno.EDQUOT)
            or "No space left on device" in str(e)
            or "StorageFull" in str(e)
        ):  # safetensors' wording
            where = getattr(e, "filename", None)
            return "no space left on the device" + (f" writing {where}" if where else "")
        e = e.__cause__ or e.__context__
    return None


def prepare_resume(store: Store, run_id: str, lease: str) -> tuple[RunConfig, Resume]:
    """What an unfinished run this process owns has kept, and its stale events dropped.

    Kept: every stage that ended "done" (or "loaded"), with its saved weights, and the stage after
    it at its last checkpoint. The events after that point (a half epoch, a stop) are deleted so
    the curves do not show them twice; the resumed training emits them again.
    """
    run = store.get(run_id)
    if run is None:
        raise LeaseLost(f"run {run_id} was deleted; this worker stops")
    cfg = RunConfig.from_dict(run.config)
    events = [(seq, parse(d)) for seq, d in store.events(run_id)]
    ends = {e.stage: (seq, e) for seq, e in events if isinstance(e, StageEnded)}
    resume, keep = Resume(), 0
    for stage in STAGES:
        seq, e = ends.get(stage, (0, None))
        if e is None or e.status not in FINISHED:
            break
        try:
            weights = _load_weights(store.weights_path(run_id, stage))
        except Exception as e:  # missing or unreadable: redo that stage
            print(f"weights of {stage} not used: {e}", flush=True)
            break
        resume.finished[stage] = (
            weights,
            StageResult(e.status, e.epochs, e.seconds or 0.0, e.message),
        )
        keep = seq
    path = store.checkpoint_path(run_id)
    next_stage = next((s for s in STAGES if s not in resume.finished), None)
    if next_stage and path.exists():
        ckpt = None
        try:
            ckpt, _ = checkpoint.load(path)
        except Exception as e:  # unreadable: that stage starts over rather than the resume failing
            print(f"checkpoint {path} not used: {e}", flush=True)
        epoch_seq = next(
            (
                seq
                for seq, e in events
                if ckpt is not None and isinstance(e, Epoch) and e.stage == ckpt.stage and e.epoch == ckpt.epoch
            ),
            None,
        )
        if ckpt is not None and ckpt.stage == next_stage and epoch_seq is not None:
            resume.partial, keep = ckpt, epoch_seq
    store.truncate_events(run_id, keep, lease=lease)
    store.update(run_id, lease=lease, message=None, resumed=run.resumed + 1, heartbeat=time.time())
    return cfg, resume


def _load_weights(path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path), device="cpu")


def resume_run(
    store: Store,
    run_id: str,
    progress: Callable[[dict], None] | None = None,
    queued: bool = False,
    say: Callable[[str], None] = lambda line: None,
) -> RunResult:
    """Take an interrupted, stopped or failed run (queued: one that resume() queued again) and go
    on with it from what it kept, to the end."""
    if store.get(run_id) is None:
        raise KDError(f"no such run: {run_id!r} (python -m kd runs lists them)")
    lease = jobs.claim(
        store, run_id, jobs.queued_or_resumable if queued else jobs.resumable, requeue=True, verb="resumed"
    )
    return run_owned(store, run_id, lease, progress, resuming=True, say=say)
