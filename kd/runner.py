"""Runs one RunConfig to the end, with the store as the trainer's event sink.

Used in-process by `python -m kd train` and in a background process by `python -m kd worker`
(the dashboard's runs). Events are buffered and written in batches, so the store costs the
training loop almost nothing; stage and epoch boundaries are written at once.
"""
from __future__ import annotations

import os
import threading
import time
import traceback
from typing import Callable, Optional

from kd.config import RunConfig
from kd.errors import KDError
from kd.metrics import state_dict_for_saving
from kd.store import Store
from kd.trainer import RunResult, Trainer

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


def execute(store: Store, run_id: str, cfg: RunConfig,
            progress: Optional[Callable[[dict], None]] = None) -> RunResult:
    """Train, save each stage's weights as it ends, store the final metrics and status.

    A KDError (bad input found late, e.g. a missing data folder) marks the run failed with its
    message and is re-raised; anything else also marks it failed, with the exception's last line.
    """
    writer = EventWriter(store, run_id, also=progress)
    store.update(run_id, status="running", pid=os.getpid(), heartbeat=time.time())
    config = cfg.to_dict()

    def save(stage: str, model, stage_result) -> None:
        arch = cfg.teacher if stage == "teacher" else cfg.student
        store.save_weights(run_id, stage, state_dict_for_saving(model), config, arch)

    try:
        with Heartbeat(store, run_id):
            result = Trainer(cfg, emit=writer, should_stop=StopFlag(store, run_id), on_stage_end=save).run()
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
    return result
