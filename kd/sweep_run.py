"""A sweep owned by this process: its row of runs holds the lease, status, stop request and
events; each (cell, seed) that ends is stored as a finished run of its own (teacher, its seed's
student alone, its distilled student), so any page or command that reads runs reads it.

A sweep that stops, or whose process dies, keeps every cell it stored; run again (`python -m kd
resume ID`, or Resume) it reloads its teacher and trains only the cells it lacks.
"""

from __future__ import annotations

import dataclasses
import secrets
import traceback
from collections.abc import Callable

from kd import jobs, metrics
from kd.errors import KDError
from kd.events import Cell, Metrics, RunEnded, RunStarted, StageEnded, StageStarted, to_dict
from kd.lease import LeaseLost
from kd.runner import EventWriter, StopFlag
from kd.store import Store
from kd.sweep import Finished, Sweep, SweepTrainer, mean_std, plan, table


def check(sweep: Sweep) -> None:
    """Refuse a sweep whose cells a run would refuse (kd.trainer.check on each): before it exists."""
    from kd.trainer import check as check_run

    for params in sweep.cells():
        check_run(sweep.config(params, sweep.seeds[0]))


def create(store: Store, sweep: Sweep, lease: str | None = None) -> str:
    """The sweep's row (queued) and its grid; nothing trains yet."""
    check(sweep)
    sweep_id = store.create_run(
        sweep.base.to_dict(),
        status="queued",
        needed_bytes=jobs.disk_needed(sweep.base) * (1 + len(sweep.cells()) * len(sweep.seeds)),
        lease=lease,
        inputs={"teacher_checkpoint": jobs.TEACHER_COPY},
    )
    store.mark_sweep(sweep_id, {**sweep.to_dict(), "groups": plan(sweep)})  # the plan kept: pages read it
    return sweep_id


def start(store: Store, sweep: Sweep) -> str:
    """Queue a sweep and spawn its worker (the dashboard's Start); returns its id at once."""
    sweep_id = create(store, sweep)
    jobs.spawn(store, sweep_id)
    return sweep_id


def train_new(
    store: Store, sweep: Sweep, progress: Callable[[dict], None] | None = None, say=lambda line: None
) -> tuple[str, str]:
    """Create a sweep owned by this process and train it here (the CLI's `sweep`)."""
    lease = secrets.token_hex(8)
    sweep_id = create(store, sweep, lease)
    return sweep_id, run_owned(store, sweep_id, lease, progress, say)


def run_owned(store: Store, sweep_id: str, lease: str, progress=None, say=lambda line: None) -> str:
    if not jobs.take_turn(store, sweep_id, lease, say):
        return "stopped"
    with jobs.Heartbeat(store, sweep_id, lease) as beat:
        return execute(store, sweep_id, lease, beat, progress)


def execute(store: Store, sweep_id: str, lease: str, beat, progress=None) -> str:
    run = store.get(sweep_id)
    sweep = Sweep.from_dict(run.config, store.sweep_spec(sweep_id))
    kept = store.weights_path(sweep_id, "teacher")
    if kept.exists():  # trained before the sweep stopped or died: loaded, not trained again
        sweep = dataclasses.replace(sweep, base=sweep.base.replace(teacher_checkpoint=str(kept.resolve())))
    writer = EventWriter(store, sweep_id, lease, also=progress)
    stop = StopFlag(store, sweep_id, beat)
    saver = _Saver(store, sweep_id, lease, sweep, writer)
    trainer = SweepTrainer(
        sweep,
        emit=writer,
        should_stop=stop,
        on_teacher=saver.teacher,
        on_member=saver.member,
        done=_kept(store, sweep_id),
    )
    saver.trainer, saver.stop = trainer, stop
    try:
        status = trainer.run()
    except LeaseLost:
        raise
    except BaseException as e:
        message = str(e) if isinstance(e, KDError) else traceback.format_exception_only(type(e), e)[-1].strip()
        try:
            writer.flush()
            store.update(
                sweep_id,
                lease=lease,
                status="interrupted" if isinstance(e, KeyboardInterrupt) else "failed",
                message=message,
            )
            store.update(sweep_id, lease=lease, results=result(store, sweep_id, sweep))  # what it has, if it can
        except Exception:
            pass
        raise
    writer(to_dict(RunEnded(status=status, summary={})))
    writer.flush()
    store.update(sweep_id, lease=lease, status=status, results=result(store, sweep_id, sweep))
    return status


def _kept(store: Store, sweep_id: str) -> set[tuple[int, int]]:
    """The (cell, seed)s whose run was stored whole; a run left half-written by a process that
    died while storing it is deleted, and its cell trained again."""
    kept = set()
    for key, run_id in store.sweep_runs(sweep_id).items():
        run = store.get(run_id)
        if run is not None and run.status in ("done", "diverged") and run.results:
            kept.add(key)
        else:
            store.delete(run_id)
    return kept


class _Saver:
    """Stores the teacher once and each finished (cell, seed) as a run."""

    def __init__(self, store: Store, sweep_id: str, lease: str, sweep: Sweep, writer):
        self.store, self.sweep_id, self.lease, self.sweep, self.writer = store, sweep_id, lease, sweep, writer
        self.reports: dict = {}  # baseline config -> its report; "teacher" -> the teacher's
        self.latency: dict[str, tuple[float, float]] = {}  # arch -> (ms at batch 1, ms at batch 256)

    def teacher(self, model) -> None:
        cfg = self.sweep.base
        self.store.check_lease(self.sweep_id, self.lease)
        self.teacher_path = self.store.save_weights(
            self.sweep_id, "teacher", metrics.state_dict_for_saving(model), cfg.to_dict(), cfg.teacher
        )
        t = self.trainer
        self.x_test, self.y_test = t.bundle.x_test.to(t.trainer.device), t.bundle.y_test
        self.teacher_logits = metrics.predict(model, self.x_test).cpu()
        self.reports["teacher"] = self._report(model, cfg.teacher, self.teacher_logits, None)

    def _latency(self, model, arch: str) -> tuple[float, float]:
        if arch not in self.latency:
            shape = self.trainer.spec.input_shape
            self.latency[arch] = tuple(metrics.latencies_ms({arch: model}, shape, b)[arch] for b in (1, 256))
        return self.latency[arch]

    def _report(self, model, arch, logits, teacher_logits) -> dict:
        spec = self.trainer.spec
        return metrics.model_report(
            model,
            logits,
            self.y_test,
            teacher_logits,
            spec.input_shape,
            spec.num_classes,
            latency=self._latency(model, arch),
        )

    def _model_report(self, end: Finished) -> dict:
        logits = metrics.predict(end.model, self.x_test).cpu()
        report = self._report(end.model, end.cfg.student, logits, self.teacher_logits)
        report.update(train_seconds=end.seconds, epochs=end.epochs, status=end.status)
        return report

    def member(self, cell: int, seed: int, end: Finished, alone: Finished) -> None:
        if end.status == "stopped" or alone.status == "stopped":
            return  # trained again when the sweep resumes
        store, lease = self.store, self.lease
        if alone.cfg not in self.reports:
            self.reports[alone.cfg] = self._model_report(alone)
        teacher = {**self.reports["teacher"], "train_seconds": 0.0, "epochs": 0, "status": "loaded"}
        models = {"teacher": teacher, "baseline": self.reports[alone.cfg], "student": self._model_report(end)}
        summary = metrics.run_summary(models)
        cfg = end.cfg.replace(teacher_checkpoint=str(self.teacher_path))
        store.check_lease(self.sweep_id, lease)  # not ours any more: nothing written
        run_id = store.create_run(
            cfg.to_dict(), status="running", lease=lease, inputs={"teacher_checkpoint": jobs.TEACHER_COPY}
        )
        try:  # registered at once: a process that dies from here on leaves a run the resume deletes
            store.add_sweep_run(self.sweep_id, cell, seed, run_id, lease)
        except LeaseLost:
            store.delete(run_id)
            raise
        t = self.trainer.trainer
        events = [
            RunStarted(
                status="running",
                device=str(t.device),
                train_size=len(self.trainer.bundle.y_train),
                val_size=len(t.y_val),
                test_size=len(self.y_test),
                num_classes=self.trainer.spec.num_classes,
            ),
            StageEnded(
                stage="teacher", status="loaded", epochs=0, seconds=0.0, message=f"trained by sweep {self.sweep_id}"
            ),
        ]
        for stage, part in (("baseline", alone), ("student", end)):
            params = metrics.param_count(part.model)
            events.append(
                StageStarted(
                    stage=stage, epochs=part.cfg.epochs, steps_per_epoch=None, params=params, train_size=len(t.y_train)
                )
            )
            events.extend(part.events)
            events.append(
                StageEnded(
                    stage=stage, status=part.status, epochs=part.epochs, seconds=part.seconds, message=part.message
                )
            )
        for name, report in models.items():
            shown = {k: v for k, v in report.items() if k not in ("reliability", "confusion")}
            events.append(Metrics(model=name, **shown))
        status = "diverged" if "diverged" in (end.status, alone.status) else "done"
        events.append(RunEnded(status=status, summary=summary))
        store.append_events(run_id, [e if isinstance(e, dict) else to_dict(e) for e in events], lease=lease)
        for name, part in (("baseline", alone), ("student", end)):
            store.save_weights(run_id, name, metrics.state_dict_for_saving(part.model), cfg.to_dict(), cfg.student)
        store.update(
            run_id,
            lease=lease,
            status=status,
            message=end.message or None,
            results={"models": models, "summary": summary},
        )
        self.stop.refresh()  # a stop asked now is seen before the next group starts
        self.writer(
            to_dict(
                Cell(
                    stage="student",
                    cell=cell,
                    seed=seed,
                    student=end.cfg.student,
                    epoch=end.epochs,
                    epochs=end.cfg.epochs,
                    train_acc=None,
                    run_id=run_id,
                    accuracy=models["student"]["accuracy"],
                    gain=summary["gain"],
                    status=status,
                )
            )
        )


def result(store: Store, sweep_id: str, sweep: Sweep | None = None) -> dict:
    """The sweep as JSON: sweep_id, status, axes, teacher, baseline (per seed and mean ± std) and
    the cells (kd.sweep.table)."""
    run = store.get(sweep_id)
    if run is None:
        raise KDError(f"no such sweep: {sweep_id!r} (python -m kd sweeps lists them)")
    spec = store.sweep_spec(sweep_id)
    if spec is None:
        raise KDError(f"{sweep_id} is a run, not a sweep (python -m kd show {sweep_id})")
    sweep = sweep or Sweep.from_dict(run.config, spec)
    found: dict[tuple[int, int], dict] = {}
    teacher, baseline = None, {}
    for (cell, seed), run_id in store.sweep_runs(sweep_id).items():
        child = store.get(run_id)
        if child is None or not child.models.get("student"):
            continue
        found[(cell, seed)] = {
            "run_id": run_id,
            "accuracy": child.models["student"]["accuracy"],
            "gain": child.summary.get("gain"),
        }
        teacher = teacher or child.models.get("teacher")
        alone = child.models.get("baseline")
        if alone:
            baseline.setdefault(f"{child.config['student']} seed {seed}", alone["accuracy"])
    mean, std = mean_std(list(baseline.values()))
    from kd.lease import state

    return {
        "sweep_id": sweep_id,
        "status": state(run),
        "axes": sweep.axes,
        "seeds": list(sweep.seeds),
        "dataset": sweep.base.dataset,
        "student": sweep.axes.get("student", sweep.base.student),  # a list where it is an axis
        "method": sweep.axes.get("method", sweep.base.method),
        "teacher": {"arch": sweep.base.teacher, "accuracy": teacher["accuracy"] if teacher else None},
        "baseline": {"accuracy_mean": mean, "accuracy_std": std, "per_seed": baseline},
        "groups": spec.get("groups") or plan(sweep),
        "cells": table(sweep, found),
    }
