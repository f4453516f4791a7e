"""A sweep: a grid over temperature, alpha, the method and its knobs, the student, and seeds, on
one data set and one teacher.

The teacher is trained (or loaded) once; each (student, seed)'s student alone once; then every
cell's distilled students, in lockstep groups (kd/lockstep.py) of at most `max_group` students
that share an architecture and a method. Each finished (cell, seed) becomes a run of its own in
the store, with the teacher, its seed's student alone and its distilled student, so the Results
page opens it like any run. The sweep itself is a row of runs (its lease, status, stop request
and events) plus its grid (Store.mark_sweep); its events add one `cell` event per student epoch.
"""

from __future__ import annotations

import itertools
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from kd import data as datasets
from kd import lockstep, methods, metrics, models
from kd.config import RunConfig, method_options
from kd.errors import ConfigError
from kd.events import Cell, Epoch, Step, to_dict, type_of
from kd.trainer import RunResult, Trainer

AXES = ("temperature", "alpha", "method", "student")  # besides every method's own knobs
DEFAULT_MAX_GROUP = 64  # students per lockstep group unless --max-group says otherwise
GROUP_MB = 1024  # a lockstep group's estimated memory at most ($KD_GROUP_MB): bigger ones split


@dataclass(frozen=True)
class Sweep:
    base: RunConfig  # every field not on an axis; base.seed seeds the teacher
    axes: dict[str, list] = field(default_factory=dict)  # name -> values, in the order given
    seeds: tuple[int, ...] = (0,)
    max_group: int = DEFAULT_MAX_GROUP
    mode: str = "lockstep"  # or "sequential": each student alone, one after another (the benchmark's other way)

    def __post_init__(self) -> None:
        known = set(AXES) | set(method_options())
        for name, values in self.axes.items():
            if name not in known:
                raise ConfigError(name, f"cannot be swept; the axes are {', '.join(AXES)} and the methods' own knobs")
            if not values:
                raise ConfigError(name, "an axis needs at least one value")
            if len(set(map(repr, values))) != len(values):
                raise ConfigError(name, f"a value is given twice: {values}")
        methods_swept = set(self.axes.get("method", [self.base.method]))
        for name in self.axes:
            owners = method_options().get(name, (None, None))[1]
            if owners is not None and not methods_swept & set(owners):
                raise ConfigError(
                    name, f"is a knob of {', '.join(owners)}; this sweep's methods: {', '.join(sorted(methods_swept))}"
                )
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError("seeds", f"give one or more different seeds, got {list(self.seeds)}")
        if self.max_group < 1:
            raise ConfigError("max_group", f"must be at least 1, got {self.max_group}")
        for seed in self.seeds:  # every seed and every cell valid, or the sweep is refused before it starts
            try:
                self.base.replace(seed=seed)
            except ConfigError as e:
                raise ConfigError("seeds", e.message) from None
        for cell in self.cells():
            self.config(cell, self.seeds[0])

    def cells(self) -> list[dict]:
        names = list(self.axes)
        return [dict(zip(names, values)) for values in itertools.product(*self.axes.values())]

    def config(self, params: dict, seed: int) -> RunConfig:
        """The RunConfig of one cell for one seed (a ConfigError names the axis a value breaks).
        A method's own knob on an axis applies to the cells of the methods that have it (kd
        against dkd at several dkd_beta: the kd cells share one config, trained once)."""
        fields = {k: v for k, v in params.items() if k in AXES}
        method = fields.get("method", self.base.method)
        owners = method_options()
        options = dict(self.base.options or {})
        options.update({k: v for k, v in params.items() if k not in AXES})
        options = {k: v for k, v in options.items() if k not in owners or method in owners[k][1]}
        return self.base.replace(**fields, seed=seed, options=options or None)

    def to_dict(self) -> dict:
        return {"axes": self.axes, "seeds": list(self.seeds), "max_group": self.max_group, "mode": self.mode}

    @classmethod
    def from_dict(cls, base: dict, spec: dict) -> Sweep:
        return cls(
            RunConfig.from_dict(base),
            {k: list(v) for k, v in spec["axes"].items()},
            tuple(spec["seeds"]),
            spec.get("max_group", DEFAULT_MAX_GROUP),
            spec.get("mode", "lockstep"),
        )


@dataclass
class Finished:
    """One (cell, seed) or one baseline, trained: its model, how it ended, its epoch events."""

    cfg: RunConfig
    model: nn.Module
    status: str
    epochs: int
    message: str
    seconds: float
    events: list[dict] = field(default_factory=list)


class SweepTrainer:
    """Trains a sweep in this process; `on_member(cell, seed, finished, baseline)` is called as
    each distilled student ends (the runner stores it as a run)."""

    def __init__(
        self,
        sweep: Sweep,
        emit: Callable[[dict], None] = lambda e: None,
        should_stop: Callable[[], bool] = lambda: False,
        on_teacher: Callable[[nn.Module], None] = lambda m: None,
        on_member: Callable[..., None] = lambda *a: None,
        done: set[tuple[int, int]] = frozenset(),  # (cell, seed) already stored: skipped
    ):
        self.sweep, self.emit, self.should_stop = sweep, emit, should_stop
        self.on_teacher, self.on_member, self.done = on_teacher, on_member, set(done)
        self.stopped = False
        self.timings: list[tuple[str, float]] = []  # (stage, seconds) per group trained

    def run(self) -> str:
        sweep = self.sweep
        trainer = Trainer(sweep.base, emit=self.emit, should_stop=self.should_stop)
        self.trainer = trainer
        spec, bundle = trainer.load()
        self.spec, self.bundle = spec, bundle
        result = RunResult(status="done")
        teacher = trainer.teacher_stage(spec, result)
        if result.status != "done":
            return result.status
        self.on_teacher(teacher)
        self.teacher = teacher
        if sweep.base.student_fraction < 1:
            keep = datasets.stratified_subset(trainer.y_train, sweep.base.student_fraction)
            trainer.x_train, trainer.y_train = trainer.x_train[keep], trainer.y_train[keep]
        todo = [
            (c, s, sweep.config(params, s))
            for c, params in enumerate(sweep.cells())
            for s in sweep.seeds
            if (c, s) not in self.done
        ]
        baselines = self._baselines({_baseline_cfg(cfg) for _, _, cfg in todo})
        if self.stopped:
            return "stopped"
        same: dict[str, list[tuple[int, int]]] = {}  # cells whose configs are one (an unused knob)
        first: dict[str, tuple] = {}
        for c, s, cfg in todo:
            same.setdefault(cfg.to_json(), []).append((c, s))
            first.setdefault(cfg.to_json(), (c, s, cfg))
        groups = self._groups(list(first.values()))
        for i, group in enumerate(groups):
            ends = self._train([cfg for _, _, cfg in group], [(c, s) for c, s, _ in group], "student")
            for (_, _, cfg), end in zip(group, ends):
                for c, s in same[cfg.to_json()]:
                    self.on_member(c, s, end, baselines[_baseline_cfg(cfg)])
            if i < len(groups) - 1 and self._stop():  # asked between groups: the next one does not start
                return "stopped"
        return "stopped" if self.stopped else "done"

    def _groups(self, todo: list) -> list[list]:
        """Lockstep groups: members with one group_key, in grid order, at most max_group each and
        as many as fit in $KD_GROUP_MB by lockstep.student_bytes' estimate, in whole cells where
        that many fit."""
        by_key: dict[str, list] = {}
        for item in todo:
            by_key.setdefault(lockstep.group_key(item[2]), []).append(item)
        groups = []
        for members in by_key.values():
            size = 1 if self.sweep.mode == "sequential" else group_size(self.sweep, members[0][2], self.spec)
            # Each group's students ordered by seed: those who see the same batches sit together.
            groups += [sorted(members[i : i + size], key=lambda m: m[2].seed) for i in range(0, len(members), size)]
        return groups

    def _baselines(self, cfgs: set[RunConfig]) -> dict[RunConfig, Finished]:
        out: dict[RunConfig, Finished] = {}
        todo = sorted(cfgs, key=lambda c: (c.student, c.seed))
        for group in self._groups([(None, c.seed, c) for c in todo]):
            ends = self._train([c for _, _, c in group], [(-1, c.seed) for _, _, c in group], "baseline")
            out.update({c: e for (_, _, c), e in zip(group, ends)})
            if self.stopped:
                break
        return out

    def _train(self, cfgs: list[RunConfig], who: list[tuple[int, int]], stage: str) -> list[Finished]:
        """Train one group: in lockstep when it can, else each alone with the trainer."""
        started = time.perf_counter()
        try:
            return self._train_group(cfgs, who, stage)
        finally:
            self.timings.append((stage, time.perf_counter() - started))

    def _train_group(self, cfgs: list[RunConfig], who: list[tuple[int, int]], stage: str) -> list[Finished]:
        t = self.trainer
        events: dict[int, list] = {j: [] for j in range(len(cfgs))}
        started = time.perf_counter()
        probe = models.build(cfgs[0].student, self.spec.input_shape, self.spec.num_classes)
        if len(cfgs) > 1 and lockstep.can_share(probe):

            def emit(j: int, e: dict) -> None:
                e = {**e, "stage": stage}
                events[j].append(e)
                if type_of(e) is Epoch:
                    self._cell_event(who[j], e, cfgs[j].student)

            group = lockstep.Group(
                cfgs, self.spec, t.x_train, t.y_train, t.x_val, t.y_val, self.teacher, t.device, emit, self._stop
            )
            with metrics.threads(None):
                ends = group.train()
            seconds = (time.perf_counter() - started) / len(cfgs)
            return [
                Finished(c, m.model, m.status, m.epochs, m.message, seconds, events[j])
                for j, (c, m) in enumerate(zip(cfgs, ends))
            ]
        out = []
        for j, cfg in enumerate(cfgs):
            mine: list[dict] = []

            def emit(e: dict, j=j, mine=mine) -> None:
                if type_of(e) in (Epoch, Step):
                    e = {**e, "stage": stage}
                    mine.append(e)
                    if type_of(e) is Epoch:
                        self._cell_event(who[j], e, cfgs[j].student)

            alone = Trainer(cfg, emit=emit, should_stop=self._stop)
            alone.x_train, alone.y_train, alone.x_val, alone.y_val = t.x_train, t.y_train, t.x_val, t.y_val
            student = alone._build(cfg.student, self.spec, cfg.seed + 1)
            method = methods.build(cfg) if stage == "student" else methods.METHODS.get("none")(cfg)
            res = alone._fit("student", student, method, cfg.epochs, self.teacher, self.spec.input_shape)
            out.append(Finished(cfg, student, res.status, res.epochs, res.message, res.seconds, mine))
            if self.stopped:
                break
        return out

    def _stop(self) -> bool:
        if self.should_stop():
            self.stopped = True
        return self.stopped

    def _cell_event(self, who: tuple[int, int], e: dict, student: str) -> None:
        cell, seed = who
        self.emit(
            to_dict(
                Cell(
                    stage=e["stage"],
                    cell=cell,
                    seed=seed,
                    student=student,
                    epoch=e["epoch"],
                    epochs=e["epochs"],
                    train_acc=e.get("train_acc"),
                    val_acc=e.get("val_acc"),
                )
            )
        )


def seeds_cost(cfg: RunConfig, ns: tuple[int, ...]) -> dict[int, float]:
    """What a run with n seeds costs against one seed, for each n, estimated from the models' FLOPs: the
    teacher trains once (not at all when loaded); the n students alone and n distilled students
    train in lockstep, each extra one at the cost bench/sweep.py measured (kd.results.lockstep_cost),
    or at full cost where no result says otherwise or the student cannot share (dropout,
    convolutions: not measured)."""
    from kd import results

    spec = datasets.spec_for(cfg)
    built = {k: models.build(getattr(cfg, k), spec.input_shape, spec.num_classes) for k in ("teacher", "student")}
    flops = {k: metrics.flops_per_example(m, spec.input_shape) for k, m in built.items()}
    teacher = 0.0 if cfg.teacher_checkpoint else flops["teacher"] * cfg.teacher_epochs_resolved
    students = 2 * flops["student"] * cfg.epochs * cfg.student_fraction
    probe = built["student"]
    convolutional = any(isinstance(m, nn.Conv1d | nn.Conv2d) for m in probe.modules())
    extra = results.lockstep_cost() if lockstep.can_share(probe) and not convolutional else None
    extra = 1.0 if extra is None else extra
    return {n: (teacher + students * (1 + (n - 1) * extra)) / (teacher + students) for n in ns}


def group_size(sweep: Sweep, cfg: RunConfig, spec: datasets.DataSpec) -> int:
    """Students per lockstep group for cfg's architecture: max_group, or fewer where their
    estimated memory would pass $KD_GROUP_MB."""
    from kd.limits import env_limit

    budget = env_limit("KD_GROUP_MB", GROUP_MB, error=ConfigError) * 2**20
    each = lockstep.student_bytes(cfg, spec.input_shape, spec.num_classes)
    size = max(1, min(sweep.max_group, int(budget // each)))
    seeds = len(sweep.seeds)
    return size - size % seeds if size > seeds else size  # whole cells: each seed's students share batches


def plan(sweep: Sweep) -> list[dict]:
    """How the sweep trains its students: one entry per kind of group (the students alone, then
    each architecture and method), with how many students, in groups of how many, and the
    estimated memory of one student. The CLI prints it; the sweep's JSON holds it."""
    spec = datasets.spec_for(sweep.base)
    cfgs = [sweep.config(p, s) for p in sweep.cells() for s in sweep.seeds]
    kinds: dict[tuple[str, str], list[RunConfig]] = {}
    for stage, group in (
        ("baseline", sorted({_baseline_cfg(c) for c in cfgs}, key=lambda c: (c.student, c.seed))),
        ("student", cfgs),
    ):
        for cfg in group:
            kinds.setdefault((stage, lockstep.group_key(cfg)), []).append(cfg)
    out = []
    for (stage, _), members in kinds.items():
        cfg = members[0]
        probe = models.build(cfg.student, spec.input_shape, spec.num_classes)
        shared = sweep.mode == "lockstep" and lockstep.can_share(probe) and len(members) > 1
        out.append(
            {
                "stage": stage,
                "student": cfg.student,
                "method": cfg.method,
                "students": len(members),
                "group": group_size(sweep, cfg, spec) if shared else 1,
                "mb_each": lockstep.student_bytes(cfg, spec.input_shape, spec.num_classes) / 2**20,
            }
        )
    return out


def _baseline_cfg(cfg: RunConfig) -> RunConfig:
    """The config of the student alone that a distilled student is compared with: its own but
    for the method (none) and the method's knobs, at their defaults."""
    base = RunConfig()
    return cfg.replace(method="none", temperature=base.temperature, alpha=base.alpha, standardize=False, options=None)


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def table(sweep: Sweep, runs: dict[tuple[int, int], dict]) -> list[dict]:
    """The sweep's cells as JSON: params, seeds, accuracy and gain (distilled minus alone, same
    seed) as mean and standard deviation over the seeds that finished, and their run ids.
    `runs` maps (cell, seed) to {"run_id", "accuracy", "gain"}."""
    out = []
    for c, params in enumerate(sweep.cells()):
        mine = {s: runs[(c, s)] for s in sweep.seeds if (c, s) in runs}
        acc_mean, acc_std = mean_std([r["accuracy"] for r in mine.values()])
        gain_mean, gain_std = mean_std([r["gain"] for r in mine.values()])
        out.append(
            {
                "params": params,
                "seeds": list(mine),
                "accuracy_mean": acc_mean,
                "accuracy_std": acc_std,
                "gain_mean": gain_mean,
                "gain_std": gain_std,
                "run_ids": [r["run_id"] for r in mine.values()],
            }
        )
    return out
