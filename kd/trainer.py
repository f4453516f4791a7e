"""The three stages of a run: teacher (train or load) -> student alone -> distilled student.

The trainer only emits events (plain dicts of floats and strings, minGPT's callbacks); it never
prints, plots or imports streamlit. Data sit on the device as tensors and are batched by slicing
(airbench); the teacher's logits on the (unaugmented) train set are computed once and sliced per
batch; the device is picked once.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from torch import Tensor, nn

from kd import data as datasets
from kd import methods, metrics, models
from kd.config import RunConfig
from kd.errors import ConfigError, FitError

Event = dict
STAGES = ("teacher", "baseline", "student")  # baseline = student alone, student = distilled
STAGE_TITLES = {"teacher": "teacher", "baseline": "student alone", "student": "distilled student"}


def pick_device(name: str) -> torch.device:
    """auto: cuda, then mps, then cpu. An explicit device that is absent is a ConfigError."""
    has = {"cuda": torch.cuda.is_available(),
           "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
           "cpu": True}
    if name == "auto":
        return torch.device(next(d for d in ("cuda", "mps", "cpu") if has[d]))
    if not has.get(name, False):
        raise ConfigError("device", f"{name} is not available here; available: auto, "
                          + ", ".join(d for d in ("cpu", "cuda", "mps") if has[d]))
    return torch.device(name)


def available_devices() -> list[str]:
    return ["auto"] + [d for d in ("cpu", "cuda", "mps")
                       if d == "cpu" or (d == "cuda" and torch.cuda.is_available())
                       or (d == "mps" and torch.backends.mps.is_available())]


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
    """Refuse a teacher or student that cannot take the data set's inputs (before any training)."""
    for field_name in ("teacher", "student"):
        try:
            models.check_fit(getattr(cfg, field_name), spec.input_shape, spec.num_classes)
        except FitError as e:
            raise ConfigError(field_name, str(e)) from None
    if cfg.augment != "none" and len(spec.input_shape) != 3:
        raise ConfigError("augment", f"random shifts need images; {spec.name} has {spec.input_shape[0]} features")


def load_teacher_weights(model: nn.Module, path: str, arch: str) -> None:
    """Safetensors only: nothing in the file can run code. A shape mismatch is a ConfigError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    try:
        state = load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise ConfigError("teacher_checkpoint", f"{path} is not a readable safetensors file ({e})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise ConfigError("teacher_checkpoint", f"{path} does not fit teacher {arch!r}: {detail}") from None


class Trainer:
    def __init__(self, cfg: RunConfig, emit: Callable[[Event], None] = lambda e: None,
                 should_stop: Callable[[], bool] = lambda: False,
                 on_stage_end: Callable[[str, nn.Module, StageResult], None] = lambda *a: None):
        self.cfg = cfg
        self.emit = emit
        self.should_stop = should_stop  # polled between batches; must be cheap
        self.on_stage_end = on_stage_end  # e.g. save the weights
        self.device = pick_device(cfg.device)

    # -- the run ------------------------------------------------------------------------
    def run(self) -> RunResult:
        cfg = self.cfg
        spec = datasets.spec(cfg.dataset, cfg.data_dir, cfg.image_size)
        build_pair(cfg, spec)
        bundle = datasets.load(cfg.dataset, cfg.data_dir, cfg.val_fraction, cfg.image_size)
        dev = self.device
        self.x_train, self.y_train = bundle.x_train.to(dev), bundle.y_train.to(dev)  # (N, *shape), (N,)
        self.x_val, self.y_val = bundle.x_val.to(dev), bundle.y_val.to(dev)
        self.emit({"kind": "run", "status": "running", "device": str(dev),
                   "train_size": len(self.y_train), "val_size": len(self.y_val),
                   "test_size": len(bundle.y_test), "num_classes": spec.num_classes})
        result = RunResult(status="done")

        teacher = self._build(cfg.teacher, spec, cfg.seed)
        if cfg.teacher_checkpoint:
            load_teacher_weights(teacher, cfg.teacher_checkpoint, cfg.teacher)
            teacher.to(dev)
            stage = StageResult("loaded", 0, 0.0, f"loaded from {cfg.teacher_checkpoint}")
            self.emit({"kind": "stage", "stage": "teacher", "status": "loaded", "epochs": 0,
                       "message": stage.message})
        else:
            ce = methods.METHODS.get("none")(cfg)
            stage = self._fit("teacher", teacher, lambda s, x, y, idx: ce(s, y), cfg.teacher_epochs_resolved)
        self._finish_stage(result, "teacher", teacher, stage)
        # Frozen from here on: eval mode (no dropout, fixed BN statistics), no gradients.
        teacher.eval().requires_grad_(False)

        method = methods.build(cfg)
        cached = None
        if result.status == "done" and method.uses_teacher and cfg.augment != "all":
            cached = metrics.predict(teacher, self.x_train)  # (N, K): inputs never change, so once

        def teacher_logits(x: Tensor, idx: Tensor) -> Tensor:
            if cached is not None:
                return cached[idx]
            with torch.no_grad():  # augmented inputs are new each batch: ask the frozen teacher
                return teacher(x)
        for name, loss in (("baseline", methods.METHODS.get("none")(cfg)), ("student", method)):
            if result.status != "done":
                break
            student = self._build(cfg.student, spec, cfg.seed + 1)  # same init and batch order for both

            def loss_fn(s: Tensor, x: Tensor, y: Tensor, idx: Tensor, loss=loss) -> dict[str, Tensor]:
                return loss(s, y, teacher_logits(x, idx) if loss.uses_teacher else None)
            stage = self._fit(name, student, loss_fn, cfg.epochs)
            self._finish_stage(result, name, student, stage)

        self._report(result, bundle, spec)
        self.emit({"kind": "run", "status": result.status, "summary": result.summary})
        return result

    def _build(self, arch: str, spec: datasets.DataSpec, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return models.build(arch, spec.input_shape, spec.num_classes).to(self.device)

    def _finish_stage(self, result: RunResult, name: str, model: nn.Module, stage: StageResult) -> None:
        result.models[name] = model
        result.stages[name] = stage
        if stage.status in ("stopped", "diverged"):
            result.status = stage.status
        self.on_stage_end(name, model, stage)

    # -- one stage ------------------------------------------------------------------------
    def _fit(self, stage: str, model: nn.Module,
             loss_fn: Callable[[Tensor, Tensor, Tensor, Tensor], dict[str, Tensor]], epochs: int) -> StageResult:
        cfg, dev = self.cfg, self.device
        n = len(self.y_train)
        bs = min(cfg.batch_size, n)
        steps_per_epoch = math.ceil(n / bs)
        total_steps = epochs * steps_per_epoch
        log_every = max(1, steps_per_epoch // 20)  # ~20 step events per epoch
        optimizer = _optimizer(cfg, model)
        schedule = torch.optim.lr_scheduler.LambdaLR(  # cosine from lr to 0 over the stage
            optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps)))
        order = torch.Generator().manual_seed(2 * cfg.seed + (stage == "teacher"))  # students share an order
        jitter = torch.Generator().manual_seed(2 * cfg.seed + (stage == "teacher"))  # ... and their shifts
        shift = cfg.augment == "all" or (cfg.augment == "teacher" and stage == "teacher")
        max_shift = max(1, round(self.x_train.shape[-1] / 14))  # 2 px on 28x28 (Hinton's jitter), 1 px on 8x8
        self.emit({"kind": "stage", "stage": stage, "status": "started", "epochs": epochs,
                   "steps_per_epoch": steps_per_epoch, "params": metrics.param_count(model)})
        started = time.perf_counter()
        step = 0
        for epoch in range(1, epochs + 1):
            model.train()
            perm = torch.randperm(n, generator=order).to(dev)  # CPU generator: same order on any device
            # One gather per epoch, then every batch is a view (no per-batch index kernels).
            xs, ys = self.x_train[perm], self.y_train[perm]
            sums: dict[str, Tensor] = {}  # running sums of each loss term over the log window (on device)
            correct = torch.zeros((), device=dev)
            window_start, window_steps, window_samples = time.perf_counter(), 0, 0
            epoch_correct, epoch_seen = 0.0, 0
            for i in range(steps_per_epoch):
                if self.should_stop():
                    return self._end(stage, model, "stopped", epoch - 1, started,
                                     f"stopped by request in epoch {epoch}")
                idx = perm[i * bs:(i + 1) * bs]
                x, y = xs[i * bs:(i + 1) * bs], ys[i * bs:(i + 1) * bs]
                if shift:
                    x = datasets.random_shift(x, max_shift, jitter)
                logits = model(x)
                terms = loss_fn(logits, x, y, idx)
                loss = sum(terms.values())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                step += 1
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0) + v.detach()
                correct += (logits.detach().argmax(1) == y).sum()
                window_steps += 1
                window_samples += len(idx)
                if window_steps == log_every or i == steps_per_epoch - 1:
                    values = {k: float(v) / window_steps for k, v in sums.items()}  # one sync per window
                    total = sum(values.values())
                    if not math.isfinite(total):
                        return self._end(stage, model, "diverged", epoch - 1, started,
                                         f"loss became {total} at step {step} (epoch {epoch}); try a lower lr")
                    epoch_correct += float(correct)
                    epoch_seen += window_samples
                    elapsed = time.perf_counter() - window_start
                    self.emit({"kind": "step", "stage": stage, "epoch": epoch, "step": step,
                               "total_steps": total_steps, "loss": total,
                               **{f"loss_{k}": v for k, v in values.items()},
                               "lr": optimizer.param_groups[0]["lr"],
                               "samples_per_s": window_samples / elapsed if elapsed > 0 else None})
                    sums, correct = {}, torch.zeros((), device=dev)
                    window_start, window_steps, window_samples = time.perf_counter(), 0, 0
            val_loss, val_acc = self._validate(model)
            self.emit({"kind": "epoch", "stage": stage, "epoch": epoch, "epochs": epochs, "step": step,
                       "train_acc": epoch_correct / epoch_seen, "val_acc": val_acc, "val_loss": val_loss,
                       "seconds": time.perf_counter() - started})
        return self._end(stage, model, "done", epochs, started)

    def _end(self, stage: str, model: nn.Module, status: str, epochs: int, started: float,
             message: str = "") -> StageResult:
        result = StageResult(status, epochs, time.perf_counter() - started, message)
        self.emit({"kind": "stage", "stage": stage, "status": status, "epochs": epochs,
                   "seconds": result.seconds, "message": message})
        return result

    def _validate(self, model: nn.Module) -> tuple[Optional[float], Optional[float]]:
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
        for name, model in result.models.items():
            stage = result.stages[name]
            report = metrics.model_report(model, logits[name], y,
                                          teacher_logits if name != "teacher" else None,
                                          spec.input_shape, spec.num_classes)
            report.update(train_seconds=stage.seconds, epochs=stage.epochs, status=stage.status)
            result.metrics[name] = report
            self.emit({"kind": "metrics", "model": name,
                       **{k: v for k, v in report.items() if k not in ("reliability", "confusion")}})
        result.summary = metrics.run_summary(result.metrics)


def _optimizer(cfg: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Fused kernels where this torch has them: one pass over all parameters per step instead
    of a Python loop of small ops (a third of a small MLP's step time on a CPU)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        make = lambda **kw: torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, nesterov=True,
                                            weight_decay=cfg.weight_decay, **kw)
    elif cfg.weight_decay:
        make = lambda **kw: torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **kw)
    else:
        make = lambda **kw: torch.optim.Adam(params, lr=cfg.lr, **kw)
    try:
        return make(fused=True)
    except (RuntimeError, TypeError, ValueError):  # an older torch, or a device without fused kernels
        return make()
