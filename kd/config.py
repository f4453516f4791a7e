"""RunConfig: everything that defines one run. Frozen, validated, JSON round-trip.

Saved with every checkpoint, so a model file says how it was made (nanoGPT's GPTConfig).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, fields
from typing import Any, Optional

from kd.errors import ConfigError

OPTIMIZERS = ("adam", "sgd")
DEVICES = ("auto", "cpu", "cuda", "mps")
AUGMENT = ("none", "teacher", "all")  # which stages see shifted images
# The "few labels" demo (Hinton et al. 2015, sec. 5, soft targets as a regularizer): the students
# learn from 5 % of digits' training images (63, about 6 a class), the teacher from all of them.
# About 9 s on a 2-core CPU (README, "Does distillation help?").
FEW_LABELS = dict(student_fraction=0.05, batch_size=16, epochs=60, teacher_epochs=10, lr=3e-3)
FEW_LABELS_GAINS = (2.78, 3.33, 3.89)  # distilled minus alone, test points, seeds 0, 1, 2 (bench/seeds.py)


@dataclass(frozen=True)
class RunConfig:
    dataset: str = "digits"  # registry key or folder:PATH; digits is bundled, trains in seconds
    teacher: str = "mlp-512-256"  # the seed note's teacher MLP
    student: str = "mlp-128"  # the seed note's student MLP (~5x fewer parameters)
    method: str = "kd"  # Hinton et al. 2015; "none" trains on labels only
    temperature: float = 4.0  # softens both distributions; Hinton used 1..20, 2..8 is usual
    alpha: float = 0.9  # weight of the soft (teacher) term; 1 - alpha weighs the labels
    epochs: int = 10  # epochs for the student alone and for the distilled student (same budget)
    teacher_epochs: Optional[int] = None  # None: same as epochs
    batch_size: int = 64  # the seed loop's batch size
    lr: float = 1e-3  # peak learning rate, cosine-decayed to 0 over each stage
    optimizer: str = "adam"  # adam, or sgd with Nesterov momentum 0.9
    weight_decay: float = 0.0  # L2 penalty (decoupled for adam: AdamW)
    seed: int = 0  # model init and batch order; the val split uses its own fixed seed
    device: str = "auto"  # auto picks cuda, then mps, then cpu
    val_fraction: float = 0.1  # share of the train split held out for validation curves
    teacher_checkpoint: Optional[str] = None  # .safetensors file: load this teacher, skip training
    data_dir: Optional[str] = None  # None: $KD_DATA_DIR, else ~/.cache/distill-lab/data
    image_size: int = 32  # side in pixels that folder:PATH images are resized to
    augment: str = "none"  # random shifts (2 px on 28x28) of training images: none | teacher (Hinton's recipe) | all
    student_fraction: float = 1.0  # share of the training set both students learn from (an equal share of each
    # class, the same fixed examples for any seed); the teacher learns from all of it (Hinton et al. 2015, sec. 5)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def teacher_epochs_resolved(self) -> int:
        return self.epochs if self.teacher_epochs is None else self.teacher_epochs

    # -- validation -------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ConfigError naming the first field that is not allowed."""
        from kd.data import DATASETS
        from kd.methods import METHODS
        from kd.models import MODELS

        _str(self, "dataset")
        if self.dataset.startswith("folder:"):
            path = self.dataset[len("folder:"):]
            if not path:
                raise ConfigError("dataset", "folder: needs a path, e.g. folder:/data/my_images")
        elif self.dataset not in DATASETS:
            raise ConfigError("dataset", _choices(self.dataset, DATASETS.keys() + ["folder:PATH"]))
        for name, reg in (("teacher", MODELS), ("student", MODELS), ("method", METHODS)):
            _str(self, name)
            if getattr(self, name) not in reg:
                raise ConfigError(name, _choices(getattr(self, name), reg.keys()))
        # Below 0.05, softmax(z / T) is one-hot for any logit gap over 1 (e^-20), and as T -> 0
        # z / T overflows to inf and the loss to NaN: a run would end "diverged", blaming the lr.
        t = self.temperature
        if isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) and not 0.05 <= t <= 1000:
            # repr, as typed: 1e-320 (":g" writes the subnormal as 9.99989e-321)
            raise ConfigError("temperature", f"must be >= 0.05 and <= 1000, got {t!r}")
        _number(self, "temperature", lo=0.05, hi=1000)  # not a number, not finite
        _number(self, "alpha", lo=0, hi=1)
        _int(self, "epochs", lo=1, hi=10_000)
        if self.teacher_epochs is not None:
            _int(self, "teacher_epochs", lo=1, hi=10_000)
        _int(self, "batch_size", lo=1, hi=1_000_000)
        _number(self, "lr", lo=0, lo_open=True, hi=10)
        _str(self, "optimizer")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError("optimizer", _choices(self.optimizer, list(OPTIMIZERS)))
        _number(self, "weight_decay", lo=0, hi=1)
        _int(self, "seed", lo=0, hi=2**31 - 1)
        _str(self, "device")
        if self.device not in DEVICES:
            raise ConfigError("device", _choices(self.device, list(DEVICES)))
        _number(self, "val_fraction", lo=0, hi=0.5)
        for name in ("teacher_checkpoint", "data_dir"):
            value = getattr(self, name)
            if value is not None:
                _str(self, name)
                if not value or "\x00" in value:
                    raise ConfigError(name, "must be a path (or left empty)")
        if self.teacher_checkpoint is not None:
            if not self.teacher_checkpoint.endswith(".safetensors"):
                raise ConfigError("teacher_checkpoint", "must be a .safetensors file")
            if not os.path.isfile(self.teacher_checkpoint):
                raise ConfigError("teacher_checkpoint", f"no such file: {self.teacher_checkpoint}")
        _int(self, "image_size", lo=8, hi=256)
        _number(self, "student_fraction", lo=0, lo_open=True, hi=1)
        _str(self, "augment")
        if self.augment not in AUGMENT:
            raise ConfigError("augment", _choices(self.augment, list(AUGMENT)))

    # -- JSON ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        if not isinstance(data, dict):
            raise ConfigError("config", "must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(unknown[0], f"unknown field; known fields: {', '.join(sorted(known))}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as e:
            raise ConfigError("config", f"not valid JSON ({e})") from None
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> "RunConfig":
        return dataclasses.replace(self, **changes)


def _choices(value: Any, valid: list[str]) -> str:
    return f"{value!r} is not one of: {', '.join(valid)}"


def _str(cfg: RunConfig, name: str) -> None:
    if not isinstance(getattr(cfg, name), str):
        raise ConfigError(name, f"must be text, got {getattr(cfg, name)!r}")


def _int(cfg: RunConfig, name: str, lo: int, hi: int) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, f"must be a whole number, got {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(name, f"must be between {lo} and {hi}, got {value}")


def _number(cfg: RunConfig, name: str, lo: float, hi: float, lo_open: bool = False) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(name, f"must be a finite number, got {value!r}")
    too_low = value <= lo if lo_open else value < lo
    if too_low or value > hi:
        low = f"> {lo:g}" if lo_open else f">= {lo:g}"
        raise ConfigError(name, f"must be {low} and <= {hi:g}, got {value:g}")
