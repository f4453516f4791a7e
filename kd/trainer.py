"""The three stages of a run: teacher (train or load) -> student alone -> distilled student.

The trainer only emits events (declared in kd/events.py, each sent as its plain dict: minGPT's
callbacks); it never prints, plots or imports streamlit. Data sit on the device as tensors, a batch
is one index_select (airbench); what the method needs from the teacher on the (unaugmented) train set is
computed once and sliced per batch; plain MLPs step without autograd (kd/fastpath.py); the
device is picked once. At each epoch's end a checkpoint (kd/checkpoint.py) lets an interrupted
run go on exactly; `Resume` says what a run already has.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from kd import data as datasets
from kd import methods, metrics, models
from kd.checkpoint import Checkpoint, capture
from kd.config import RunConfig
from kd.errors import ConfigError, DataError, FitError
from kd.events import Epoch, Event, Metrics, RunEnded, RunStarted, StageEnded, StageStarted, Step, to_dict
from kd.fastpath import MLPStep, Stepper, written_gradient
from kd.features import Features, Tap
from kd.optim import cosine, make_optimizer
from kd.teacher import TeacherSide

# Forward multiply-adds per batch below which a CPU step runs on one thread. Below it a second
# thread gains nothing on an idle machine, and when another process wants a core (the
# dashboard's browser drawing the live charts) the threads wait on each other at every op;
# docs/benchmarks.md ("Where the time went", "Watching costs little") has the measurements.
SMALL_STEP_MACS = 12e6


def pick_device(name: str) -> torch.device:
    """auto: cuda, then mps, then cpu. An explicit device that is absent is a ConfigError."""
    has = {
        "cuda": torch.cuda.is_available(),
        "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
        "cpu": True,
    }
    if name == "auto":
        return torch.device(next(d for d in ("cuda", "mps", "cpu") if has[d]))
    if not has.get(name, False):
        raise ConfigError(
            "device",
            f"{name} is not available here; available: auto, " + ", ".join(d for d in ("cpu", "cuda", "mps") if has[d]),
        )
    return torch.device(name)


def cpu_threads(model: nn.Module, input_shape: tuple[int, ...], batch_size: int, device: torch.device) -> int | None:
    """Threads to train `model` with: 1 on a CPU when it has no convolution and a batch's forward
    pass is under SMALL_STEP_MACS multiply-adds, else None (torch's own choice, one per core).
    Convolutions split well over images, so they keep every thread (docs/benchmarks.md, "Where
    the time went"). A thread count the user set (OMP_NUM_THREADS, MKL_NUM_THREADS) is left alone."""
    if (
        device.type != "cpu"
        or os.environ.get("OMP_NUM_THREADS")
        or os.environ.get("MKL_NUM_THREADS")
        or any(isinstance(m, nn.Conv1d | nn.Conv2d) for m in model.modules())
    ):
        return None
    macs = metrics.flops_per_example(model, input_shape) / 2 * batch_size
    return 1 if macs < SMALL_STEP_MACS else None


def available_devices() -> list[str]:
    return ["auto"] + [
        d
        for d in ("cpu", "cuda", "mps")
        if d == "cpu"
        or (d == "cuda" and torch.cuda.is_available())
        or (d == "mps" and torch.backends.mps.is_available())
    ]


@dataclass
class StageResult:
    status: str  # done | loaded | stopped | diverged
    epochs: int  # epochs completed
    seconds: float  # wall time spent training (0 for a loaded teacher)
    message: str = ""


@dataclass
class RunResult:
    status: str  # done | stopped | diverged
    models: dict[str, nn.Module] = field(default_factory=dict)
    stages: dict[str, StageResult] = field(default_factory=dict)
    metrics: dict[str, dict] = field(default_factory=dict)  # per model: metrics.model_report + training
    summary: dict = field(default_factory=dict)  # metrics.run_summary


def build_pair(cfg: RunConfig, spec: datasets.DataSpec) -> None:
    """Refuse a teacher or student that cannot take the data set's inputs, or a method the pair
    cannot run (before any training)."""
    for field_name in ("teacher", "student"):
        try:
            models.check_fit(getattr(cfg, field_name), spec.input_shape, spec.num_classes)
        except FitError as e:
            raise ConfigError(field_name, str(e)) from None
    if cfg.augment != "none" and len(spec.input_shape) != 3:
        raise ConfigError("augment", f"random shifts need images; {spec.name} has {spec.input_shape[0]} features")
    methods.check(cfg, spec.input_shape, spec.num_classes)


# A float weight or buffer beyond this in absolute value is corrupt, not trained: weights and the
# BatchNorm statistics of normalised inputs are orders of magnitude smaller.
CHECKPOINT_MAX_ABS = 1e6


def load_teacher_weights(model: nn.Module, path: str, arch: str) -> str:
    """Load a safetensors file into `model` (nothing in the file can run code). A file that does
    not fit the architecture, holds NaN/inf or absurd values, or puts integers or booleans where
    the model has floats (quantised, or not weights at all) is a ConfigError naming the tensor,
    and the model is not to be used. Returns the dtype conversions it made, as the "loaded"
    stage states them ("converted float16 -> float32"), or "" when there were none."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise ConfigError("teacher_checkpoint", f"{path} is not a readable safetensors file ({e})") from None
    conversions = _check_tensors(state, model.state_dict(), path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise ConfigError("teacher_checkpoint", f"{path} does not fit teacher {arch!r}: {detail}") from None
    return f"converted {', '.join(conversions)}" if conversions else ""


def _check_tensors(state: dict[str, Tensor], expected: dict[str, Tensor], path: str) -> list[str]:
    """Refuse a tensor of the file whose kind of dtype differs from the model's (integer, bool or
    8-bit float for a float, or the other way) or whose float values are non-finite or beyond
    CHECKPOINT_MAX_ABS; return the dtype conversions loading makes, e.g. ["float16 -> float32"].
    Names the model lacks or shapes that differ are left to load_state_dict's own message."""
    conversions: list[str] = []
    for name, value in state.items():
        want = expected.get(name)
        if want is None or want.shape != value.shape:
            continue
        got_dtype, want_dtype = _dtype_name(value.dtype), _dtype_name(want.dtype)
        if _kind(value.dtype) != _kind(want.dtype):
            raise ConfigError(
                "teacher_checkpoint",
                f"{path}: tensor {name!r} is {got_dtype}; the teacher's is "
                f"{want_dtype} (quantised, or not weights: a cast would change the model); refused",
            )
        if value.is_floating_point():
            values = value if value.dtype in (torch.float32, torch.float64) else value.float()
            bad = int((~torch.isfinite(values)).sum())
            if bad:
                raise ConfigError(
                    "teacher_checkpoint",
                    f"{path}: tensor {name!r} has {bad:,} non-finite value{'s' if bad != 1 else ''} (NaN/inf); refused",
                )
            big = values.abs() > CHECKPOINT_MAX_ABS
            if big.any():
                count, top = int(big.sum()), float(values.abs().max())
                raise ConfigError(
                    "teacher_checkpoint",
                    f"{path}: tensor {name!r} has {count:,} value"
                    f"{'s' if count != 1 else ''} with |x| > {CHECKPOINT_MAX_ABS:g} (up to {top:.2g}); refused",
                )
        if value.dtype != want.dtype and f"{got_dtype} -> {want_dtype}" not in conversions:
            conversions.append(f"{got_dtype} -> {want_dtype}")
    return conversions


def _kind(dtype: torch.dtype) -> str:
    """Dtypes of one kind convert without changing what a tensor means; 8-bit floats are a
    quantised format (they come with scales), not a narrower float."""
    if dtype == torch.bool or dtype.is_complex:
        return str(dtype)
    if dtype.is_floating_point:
        return "float" if dtype.itemsize > 1 else "float8"
    return "integer"


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")  # float16, bfloat16, int8, bool


def check_teacher_checkpoint(cfg: RunConfig, spec: datasets.DataSpec) -> str:
    """Load cfg.teacher_checkpoint into a freshly built teacher for `spec`, on the CPU: shapes,
    values and dtypes are checked before a run exists (the CLI's train, the Train page's Start).
    Returns the conversion note of load_teacher_weights; "" without a checkpoint."""
    if not cfg.teacher_checkpoint:
        return ""
    try:
        teacher = models.build(cfg.teacher, spec.input_shape, spec.num_classes)
    except FitError as e:
        raise ConfigError("teacher", str(e)) from None
    return load_teacher_weights(teacher, cfg.teacher_checkpoint, cfg.teacher)


def check(cfg: RunConfig, load_data: bool = False) -> None:
    """Refuse, before a run exists, what its training would refuse later: a data set that cannot
    be read, a model that does not fit it, a method the pair cannot run, a device this machine
    lacks, a teacher file of the wrong shapes or values; a ConfigError names the field. With
    `load_data`, the data set is loaded too (cached for a run in this process: the CLI's train)."""
    try:
        spec = datasets.spec_for(cfg)
        build_pair(cfg, spec)
        pick_device(cfg.device)
        if load_data:
            datasets.load_for(cfg)
    except DataError as e:  # the data set named by --dataset (and --data-dir) cannot be read
        raise ConfigError("dataset", str(e)) from None
    check_teacher_checkpoint(cfg, spec)


@dataclass
class Resume:
    """What an interrupted run already has: finished stages, and where the next one stood."""

    finished: dict[str, tuple[dict, StageResult]] = field(default_factory=dict)  # stage -> (weights, result)
    partial: Checkpoint | None = None  # the first unfinished stage at its last epoch end


class Trainer:
    def __init__(
        self,
        cfg: RunConfig,
        emit: Callable[[dict], None] = lambda e: None,  # gets to_dict of each kd.events event
        should_stop: Callable[[], bool] = lambda: False,
        on_stage_end: Callable[[str, nn.Module, StageResult], None] = lambda *a: None,
        on_checkpoint: Callable[[Callable[[], Checkpoint]], None] | None = None,
        resume: Resume | None = None,
    ):
        self.cfg = cfg
        self.emit = emit
        self.should_stop = should_stop  # polled between batches; must be cheap
        self.on_stage_end = on_stage_end  # e.g. save the weights
        self.on_checkpoint = on_checkpoint  # called at each epoch end with a function that captures one
        self.resume = resume or Resume()
        self.device = pick_device(cfg.device)

    def _send(self, event: Event) -> None:
        self.emit(to_dict(event))

    # -- the run ------------------------------------------------------------------------
    def run(self) -> RunResult:
        cfg, resume = self.cfg, self.resume
        spec, bundle = self.load()
        result = RunResult(status="done")
        teacher = self.teacher_stage(spec, result)

        if cfg.student_fraction < 1:  # from here on the students' share of the training set
            keep = datasets.stratified_subset(self.y_train, cfg.student_fraction)
            self.x_train, self.y_train = self.x_train[keep], self.y_train[keep]
        method = methods.build(cfg)
        for name, loss in (("baseline", methods.METHODS.get("none")(cfg)), ("student", method)):
            if result.status != "done":
                break
            student = self._build(cfg.student, spec, cfg.seed + 1)  # same init and batch order for both
            if name in resume.finished:
                weights, stage = resume.finished[name]
                student.load_state_dict(weights)
                self._finish_stage(result, name, student, stage, saved=True)
                continue
            stage = self._fit(name, student, loss, cfg.epochs, teacher, spec.input_shape)
            self._finish_stage(result, name, student, stage)

        self._report(result, bundle, spec)
        self._send(RunEnded(status=result.status, summary=result.summary))
        return result

    def load(self) -> tuple[datasets.DataSpec, datasets.DataBundle]:
        """Check the pair, put the data on the device and say so (RunStarted)."""
        cfg, resume = self.cfg, self.resume
        spec = datasets.spec_for(cfg)
        build_pair(cfg, spec)
        bundle = datasets.load_for(cfg)
        dev = self.device
        self.x_train, self.y_train = bundle.x_train.to(dev), bundle.y_train.to(dev)  # (N, *shape), (N,)
        self.x_val, self.y_val = bundle.x_val.to(dev), bundle.y_val.to(dev)
        resuming = bool(resume.finished or resume.partial)
        self._send(
            RunStarted(
                status="resumed" if resuming else "running",
                device=str(dev),
                train_size=len(self.y_train),
                val_size=len(self.y_val),
                test_size=len(bundle.y_test),
                num_classes=spec.num_classes,
                data_notes=list(spec.notes) or None,
            )
        )
        return spec, bundle

    def teacher_stage(self, spec: datasets.DataSpec, result: RunResult) -> nn.Module:
        """The teacher trained (or loaded, or kept from before a resume), then frozen."""
        cfg, resume = self.cfg, self.resume
        teacher = self._build(cfg.teacher, spec, cfg.seed)
        if "teacher" in resume.finished:
            weights, stage = resume.finished["teacher"]
            teacher.load_state_dict(weights)
        elif cfg.teacher_checkpoint:
            converted = load_teacher_weights(teacher, cfg.teacher_checkpoint, cfg.teacher)
            teacher.to(self.device)
            stage = StageResult(
                "loaded", 0, 0.0, f"loaded from {cfg.teacher_checkpoint}" + (f" ({converted})" if converted else "")
            )
        else:
            stage = self._fit(
                "teacher",
                teacher,
                methods.METHODS.get("none")(cfg),
                cfg.teacher_epochs_resolved,
                None,
                spec.input_shape,
            )
        self._finish_stage(result, "teacher", teacher, stage, saved="teacher" in resume.finished)
        # Frozen from here on: eval mode (no dropout, fixed BN statistics), no gradients.
        return teacher.eval().requires_grad_(False)

    def _build(self, arch: str, spec: datasets.DataSpec, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        model = models.build(arch, spec.input_shape, spec.num_classes).to(self.device)
        if self.device.type == "cpu" and any(isinstance(m, nn.Conv2d) for m in model.modules()):
            # oneDNN's CPU convolutions and pooling are faster in NHWC (docs/benchmarks.md, "Where the
            # time went"); conv outputs follow the weights' layout, so the data stay as they are.
            model = model.to(memory_format=torch.channels_last)
        return model

    def _finish_stage(
        self, result: RunResult, name: str, model: nn.Module, stage: StageResult, saved: bool = False
    ) -> None:
        result.models[name] = model
        result.stages[name] = stage
        if stage.status in ("stopped", "diverged"):
            result.status = stage.status
        if not saved:  # the weights first: a stage that says "done" always has them on disk
            self.on_stage_end(name, model, stage)
            self._send(
                StageEnded(
                    stage=name,
                    status=stage.status,
                    epochs=stage.epochs,
                    seconds=stage.seconds,
                    message=stage.message,
                )
            )

    # -- one stage ------------------------------------------------------------------------
    def _fit(
        self,
        stage: str,
        model: nn.Module,
        method: methods.Method,
        epochs: int,
        teacher: nn.Module | None,
        input_shape: tuple,
    ) -> StageResult:
        """Bind the method to the pair (its taps, its own parameters), then train one stage."""
        bs = min(self.cfg.batch_size, len(self.y_train))
        if stage == "student":  # as kd.methods.check did on meta-device copies before the run
            methods.bind(method, model, teacher, input_shape)
        with metrics.threads(cpu_threads(model, tuple(self.x_train.shape[1:]), bs, self.device)):
            return self._train(stage, model, method, epochs, teacher)

    def _train(
        self, stage: str, model: nn.Module, method: methods.Method, epochs: int, teacher: nn.Module | None
    ) -> StageResult:
        """Train one model for `epochs` epochs (from the resume checkpoint, if it is this stage's).

        The hot loop issues no host sync: each step's loss terms stay on the device (for a method
        with a written-out gradient, the logits, and the terms are computed from them) until the
        end of a log window (~1/20 epoch), which is also where a non-finite loss is found (its
        exact step is reported) and the stage ends as diverged with the weights of its last
        finished epoch.
        """
        cfg, dev = self.cfg, self.device
        n = len(self.y_train)
        bs = min(cfg.batch_size, n)
        steps_per_epoch = math.ceil(n / bs)
        total_steps = epochs * steps_per_epoch
        log_every = max(1, steps_per_epoch // 20)  # ~20 step events per epoch
        own = getattr(method, "module", None)  # parameters the method owns: trained with the model's
        if own is not None:
            own.to(dev)
        optimizer = make_optimizer(cfg, model, *([own] if own is not None else []))
        order = torch.Generator().manual_seed(2 * cfg.seed + (stage == "teacher"))  # students share an order
        jitter = torch.Generator().manual_seed(2 * cfg.seed + (stage == "teacher"))  # ... and their shifts
        shift = cfg.augment == "all" or (cfg.augment == "teacher" and stage == "teacher")
        max_shift = max(1, round(self.x_train.shape[-1] / 14))  # 2 px on 28x28 (Hinton's jitter), 1 px on 8x8
        side = TeacherSide(method, teacher) if method.uses_teacher else None
        student_taps = tuple(getattr(method, "taps", {}).get("student", ()))
        reads_features = bool(student_taps or (side is not None and side.taps))  # the call gets Features
        logit_grad = written_gradient(method)  # the loss's gradient in the logits: no graph (kd/fastpath.py)
        by_hand = MLPStep.of(model) if logit_grad is not None else None  # plain MLPs: no autograd either
        first_epoch, step, spent = 1, 0, 0.0
        start = self.resume.partial if self.resume.partial and self.resume.partial.stage == stage else None
        if start is not None:  # go on exactly where the checkpoint left off
            model.load_state_dict(start.model)
            if own is not None:
                own.load_state_dict(start.method)
            optimizer.load_state_dict(start.optimizer)
            order.set_state(start.rng["order"])
            jitter.set_state(start.rng["jitter"])
            torch.set_rng_state(start.rng["torch"])
            if dev.type == "cuda" and "cuda" in start.rng:
                torch.cuda.set_rng_state(start.rng["cuda"], dev)
            first_epoch, step, spent = start.epoch + 1, start.step, start.seconds
        if side is not None:
            if shift:
                side.note = "inputs are shifted anew each batch: the teacher runs on each batch"
            else:
                side.cache(self.x_train)  # inputs never change: once
        if start is None:
            self._send(
                StageStarted(
                    stage=stage,
                    epochs=epochs,
                    steps_per_epoch=steps_per_epoch,
                    params=metrics.param_count(model),
                    train_size=n,
                    teacher_outputs=side.note if side is not None else None,
                )
            )
        stepper = Stepper(optimizer)

        def snapshot() -> list[dict[str, Tensor]]:  # the model's (and the method's) weights, copied
            return [{k: v.clone() for k, v in m.state_dict().items()} for m in (model, own) if m is not None]

        last_good = snapshot()  # the last finished epoch's: restored if the loss blows up
        started = time.perf_counter() - spent

        def rng() -> dict[str, Tensor]:
            states = {"order": order.get_state(), "jitter": jitter.get_state(), "torch": torch.get_rng_state()}
            if dev.type == "cuda":
                states["cuda"] = torch.cuda.get_rng_state(dev)
            return states

        on_epoch = getattr(method, "on_epoch", None)  # warm-ups and schedules of the method's own
        on_step = getattr(method, "on_step", None)
        tap = Tap(model, student_taps, "student") if student_taps else None
        try:
            for epoch in range(first_epoch, epochs + 1):
                model.train()
                if own is not None:
                    own.train()
                if on_epoch is not None:
                    on_epoch(epoch, epochs)
                perm = torch.randperm(n, generator=order).to(dev)  # CPU generator: same order on any device
                # Labels and teacher targets are small: gathered once per epoch, then sliced. Inputs
                # (and cached teacher features) are gathered per batch, so each batch is copied
                # straight into cache (a whole-epoch gather would write and re-read the whole training set).
                ys = self.y_train[perm]
                per_batch = side is not None and (shift or side.needs_teacher_per_batch)
                ts = side.logits[perm] if side is not None and not per_batch else None
                window: list[tuple[Tensor, Tensor | None, Tensor | None]] = []  # (logits, t, terms)
                names: list[str] = []
                window_start, window_first = time.perf_counter(), 0
                epoch_correct, epoch_seen = 0, 0
                for i in range(steps_per_epoch):
                    if self.should_stop():
                        return self._end(
                            stage, model, "stopped", epoch - 1, started, f"stopped by request in epoch {epoch}"
                        )
                    idx = perm[i * bs : (i + 1) * bs]
                    x, y = self.x_train.index_select(0, idx), ys[i * bs : (i + 1) * bs]
                    if shift:
                        x = datasets.random_shift(x, max_shift, jitter)
                    if on_step is not None:
                        on_step(step, total_steps)
                    logits = by_hand.forward(x) if by_hand is not None else model(x)
                    t, t_feats = None, None
                    if per_batch:
                        t, t_feats = side.batch(x)
                    elif side is not None:
                        t = ts[i * bs : (i + 1) * bs]
                        if side.features is not None:
                            t_feats = {k: v.index_select(0, idx) for k, v in side.features.items()}
                    stepper.zero_grad()
                    if by_hand is not None:
                        by_hand.backward(logit_grad(logits, y, t))
                    elif logit_grad is not None:
                        logits.backward(logit_grad(logits, y, t))
                    else:
                        feats = (Features(tap.out if tap else {}, t_feats or {}),) if reads_features else ()
                        terms = method(logits, y, t, *feats)
                        names = list(terms)
                        _total(terms).backward()
                        if tap is not None:
                            tap.out.clear()  # nothing of this step is kept past it
                    stepper.step(cfg.lr * cosine(step, total_steps))
                    step += 1
                    if logit_grad is not None:
                        window.append((logits.detach(), t, None))
                    else:
                        window.append((logits.detach(), None, torch.stack([v.detach() for v in terms.values()])))
                    if len(window) == log_every or i == steps_per_epoch - 1:
                        seen = ys[window_first * bs : (i + 1) * bs]
                        names, values = self._window_terms(method, window, seen, names)
                        total = sum(values)
                        if not math.isfinite(total):
                            for m, weights in zip((model, own), last_good):
                                m.load_state_dict(weights)
                            return self._end(
                                stage,
                                model,
                                "diverged",
                                epoch - 1,
                                started,
                                self._diverged(method, window, seen, step, epoch, bs),
                            )
                        epoch_correct += int((torch.cat([w[0] for w in window]).argmax(1) == seen).sum())
                        epoch_seen += len(seen)
                        elapsed = time.perf_counter() - window_start
                        self._send(
                            Step(
                                stage=stage,
                                epoch=epoch,
                                step=step,
                                total_steps=total_steps,
                                loss=total,
                                terms=dict(zip(names, values)),
                                lr=optimizer.param_groups[0]["lr"],
                                samples_per_s=len(seen) / elapsed if elapsed > 0 else None,
                                epochs=epochs,
                            )
                        )
                        window, window_start, window_first = [], time.perf_counter(), i + 1
                val_loss, val_acc = self._validate(model)
                if tap is not None:
                    tap.out.clear()  # the validation set's features, taken by the hooks on the way
                report = getattr(method, "report", None)  # e.g. ctkd's learned temperature
                self._send(
                    Epoch(
                        stage=stage,
                        epoch=epoch,
                        epochs=epochs,
                        step=step,
                        train_acc=epoch_correct / epoch_seen,
                        val_acc=val_acc,
                        val_loss=val_loss,
                        seconds=time.perf_counter() - started,
                        method=report() if report else None,
                    )
                )
                last_good = snapshot()
                if self.on_checkpoint is not None and epoch < epochs:
                    self.on_checkpoint(  # called at once, with this epoch's numbers
                        lambda epoch=epoch, step=step: capture(
                            stage, epoch, step, time.perf_counter() - started, model, optimizer, rng(), own
                        )
                    )
        finally:
            if tap is not None:
                tap.close()
        return self._end(stage, model, "done", epochs, started)

    @staticmethod
    def _window_terms(method, window: list, seen: Tensor, names: list[str]) -> tuple[list[str], list[float]]:
        """The loss terms averaged over a log window's examples, in one host sync. Each step's
        terms were kept (autograd), or are computed now from the window's logits (written-out
        gradient: the step built no loss)."""
        if window[0][2] is None:
            with torch.no_grad():
                terms = method(
                    torch.cat([w[0] for w in window]),
                    seen,
                    torch.cat([w[1] for w in window]) if window[0][1] is not None else None,
                )
            return list(terms), torch.stack(list(terms.values())).tolist()
        sizes = torch.tensor([float(len(w[0])) for w in window], device=seen.device)
        per_step = torch.stack([w[2] for w in window])  # (steps, terms)
        return names, ((per_step * sizes[:, None]).sum(0) / sizes.sum()).tolist()

    @staticmethod
    def _diverged(method, window: list, seen: Tensor, step: int, epoch: int, bs: int) -> str:
        """The message for a window whose loss is not finite, naming the first step that was not."""
        first = step - len(window) + 1
        for k, (lg, tw, kept) in enumerate(window):
            if kept is not None:
                value = float(kept.sum())
            else:
                with torch.no_grad():
                    value = float(_total(method(lg, seen[k * bs : k * bs + len(lg)], tw)))
            if not math.isfinite(value):
                break
        kept_weights = f"kept the weights of epoch {epoch - 1}" if epoch > 1 else "kept the initial weights"
        return f"loss became {value} at step {first + k} (epoch {epoch}); {kept_weights}; try a lower lr"

    @staticmethod
    def _end(stage: str, model: nn.Module, status: str, epochs: int, started: float, message: str = "") -> StageResult:
        return StageResult(status, epochs, time.perf_counter() - started, message)

    def _validate(self, model: nn.Module) -> tuple[float | None, float | None]:
        if not len(self.y_val):
            return None, None
        logits = metrics.predict(model, self.x_val)
        return (float(nn.functional.cross_entropy(logits, self.y_val)), metrics.accuracy(logits, self.y_val))

    # -- final report --------------------------------------------------------------------
    def _report(self, result: RunResult, bundle: datasets.DataBundle, spec: datasets.DataSpec) -> None:
        """Test-set figures for every model that finished at least one epoch (or was loaded)."""
        x_test, y_test = bundle.x_test.to(self.device), bundle.y_test.to(self.device)
        logits = {name: metrics.predict(m, x_test).cpu() for name, m in result.models.items()}
        teacher_logits = logits.get("teacher")
        y = y_test.cpu()
        latency = [metrics.latency_quartiles(result.models, spec.input_shape, b) for b in (1, 256)]
        for name, model in result.models.items():
            stage = result.stages[name]
            report = metrics.model_report(
                model,
                logits[name],
                y,
                teacher_logits if name != "teacher" else None,
                spec.input_shape,
                spec.num_classes,
                latency=(latency[0][name][1], latency[1][name][1]),
            )
            report.update(train_seconds=stage.seconds, epochs=stage.epochs, status=stage.status)
            shown = {k: v for k, v in report.items() if k not in ("reliability", "confusion")}
            self._send(Metrics(model=name, **shown))
            # Kept with the results (not in the event): the batch-256 latency's quartiles, its spread.
            result.metrics[name] = {**report, "latency_ms_256_quartiles": list(latency[1][name])}
        result.summary = metrics.run_summary(result.metrics)


def _total(terms: dict[str, Tensor]) -> Tensor:
    """The sum of the loss terms (no `0 +` kernel, unlike sum())."""
    values = iter(terms.values())
    total = next(values)
    for v in values:
        total = total + v
    return total
