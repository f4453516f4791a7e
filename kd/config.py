"""RunConfig: everything that defines one run. Frozen, validated, JSON round-trip.

Saved with every checkpoint, so a model file says how it was made (nanoGPT's GPTConfig).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, fields
from typing import Any

from kd.errors import ConfigError
from kd.schema import Knob, Option, knob, option, option_error  # noqa: F401  (also kd.config's to import)

OPTIMIZERS = ("adam", "sgd")
DEVICES = ("auto", "cpu", "cuda", "mps")
AUGMENT = ("none", "teacher", "all")  # which stages see shifted images
# The "few labels" demo (Hinton et al. 2015, sec. 5, soft targets as a regularizer): the students
# learn from 5 % of digits' training images (63, about 6 a class), the teacher from all of them.
# Its measured time and gains: bench/results/seeds-*.json, cited in docs/benchmarks.md, "Does
# distillation help?", and on the Home page (kd/results.py reads them).
FEW_LABELS = dict(student_fraction=0.05, batch_size=16, epochs=60, teacher_epochs=10, lr=3e-3)


def method_options() -> dict[str, tuple[Option, list[str]]]:
    """Every method's own knob: name -> (its declaration, the methods that have it)."""
    from kd.methods import METHODS

    out: dict[str, tuple[Option, list[str]]] = {}
    for entry in METHODS:
        for name, opt in getattr(entry.obj, "options", {}).items():
            out.setdefault(name, (opt, []))[1].append(entry.key)
    return out


def _datasets() -> list[str]:
    from kd.data import DATASETS

    return DATASETS.keys()


def _models() -> list[str]:
    from kd.models import MODELS

    return MODELS.keys()


def _methods() -> list[str]:
    from kd.methods import METHODS

    return METHODS.keys()


def _method_knobs(name: str) -> tuple[str, ...]:
    from kd.methods import METHODS

    return METHODS.get(name).knobs


def _dataset(value: str) -> str | None:
    for prefix, example in (
        ("folder:", "/data/my_images"),
        ("table:", "/data/my_table.csv"),
        ("npz:", "/data/my_arrays.npz"),
    ):
        if value.startswith(prefix):
            return None if value[len(prefix) :].strip() else f"{prefix} needs a path, e.g. {prefix}{example}"
    return None if value in _datasets() else _choices(value, _datasets() + ["folder:PATH", "table:PATH", "npz:PATH"])


def _path(value: str) -> str | None:
    return "must be a path (or left empty)" if not value or "\x00" in value else None


def _checkpoint(value: str) -> str | None:
    if _path(value):
        return _path(value)
    if not value.endswith(".safetensors"):
        return "must be a .safetensors file"
    return None if os.path.isfile(value) else f"no such file: {value}"


SHARES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


@dataclass(frozen=True)
class RunConfig:
    dataset: str = knob(
        "digits",
        "Data set",
        "a registered data set; folder:PATH (one sub-folder of images per class, or train/, val/ "
        "and test/ of those); table:PATH (.csv or .parquet); npz:PATH (NumPy arrays x, y); digits "
        "is bundled and trains in seconds",
        check=_dataset,
        section="data",
    )
    teacher: str = knob(
        "mlp-512-256",
        "Teacher",
        "the large model (python -m kd list models); the seed note's teacher MLP by default",
        choices=_models,
        section="models",
    )
    student: str = knob(
        "mlp-128",
        "Student",
        "the small model, trained alone and distilled; the seed note's student MLP by default",
        choices=_models,
        section="models",
    )
    method: str = knob(
        "kd",
        "Method",
        "how the student learns from the teacher (python -m kd list methods); none trains on labels only",
        choices=_methods,
        section="method",
    )
    temperature: float = knob(
        4.0,
        "Temperature T",
        "softens both distributions; Hinton et al. used 1 to 20, 2 to 8 is usual",
        lo=0.05,
        hi=1000,
        section="method",
    )
    alpha: float = knob(
        0.9,
        "alpha (weight of the teacher's soft targets)",
        "weight of the soft (teacher) term; 1 - alpha weighs the labels",
        lo=0,
        hi=1,
        section="method",
    )
    standardize: bool = knob(
        False,
        "Logit standardisation",
        "z-score the student's and the teacher's logits "
        "before they are softened (Sun et al. CVPR 2024), so the student matches the shape of "
        "the teacher's logits, not their scale; for the logit methods",
        section="method",
    )
    epochs: int = knob(
        10, "Epochs", "epochs for the student alone and for the distilled student (the same budget)", lo=1, hi=10_000
    )
    teacher_epochs: int | None = knob(
        None, "Teacher epochs", "epochs for the teacher; empty: as many as epochs", lo=1, hi=10_000
    )
    batch_size: int = knob(
        64,
        "Batch size",
        "examples per step (64: the seed loop's)",
        lo=1,
        hi=1_000_000,
        options=(16, 32, 64, 128, 256, 512, 1024),
    )
    lr: float = knob(
        1e-3, "Learning rate", "peak learning rate, cosine-decayed to 0 over each stage", lo=0, lo_open=True, hi=10
    )
    optimizer: str = knob(
        "adam",
        "Optimizer",
        "adam (AdamW when weight decay is set), or sgd with Nesterov momentum 0.9",
        choices=OPTIMIZERS,
    )
    weight_decay: float = knob(0.0, "Weight decay", "L2 penalty (decoupled for adam: AdamW)", lo=0, hi=1)
    seed: int = knob(0, "Seed", "model init and batch order; the val split uses its own fixed seed", lo=0, hi=2**31 - 1)
    device: str = knob("auto", "Device", "auto picks cuda, then mps, then cpu", choices=DEVICES)
    val_fraction: float = knob(
        0.1,
        "Validation share",
        "share of the train split held out for the validation curves (0: none)",
        lo=0,
        hi=0.5,
        options=(0.0, 0.05, 0.1, 0.2, 0.3, 0.5),
        share=True,
    )
    teacher_checkpoint: str | None = knob(
        None,
        "Teacher weights",
        "a .safetensors file: load this teacher instead of training one",
        check=_checkpoint,
        section="teacher",
    )
    data_dir: str | None = knob(
        None,
        "Data folder",
        "where mnist, fashion-mnist and cifar10 are read (and "
        "downloaded when online); empty: $KD_DATA_DIR, else ~/.cache/distill-lab/data",
        check=_path,
        section="data",
    )
    image_size: int = knob(
        32,
        "Resize images to (pixels)",
        "side in pixels that folder:PATH images are resized to",
        lo=8,
        hi=256,
        options=(16, 24, 32, 48, 64, 96, 128),
        section="data",
    )
    label: str = knob(
        "",
        "Label column",
        "for table:PATH, the column holding the class; empty: 'label' where there is one, else the last column",
        check=lambda v: "must be one line" if "\n" in v else None,
        section="data",
    )
    fill_missing: str = knob(
        "none",
        "Missing values",
        "for table:PATH: none refuses a table with missing values (naming the column), mean fills "
        "a number column with its mean over the rows that are not test, zero with 0; a missing text "
        "value becomes a value of its own",
        choices=("none", "mean", "zero"),
        section="data",
    )
    augment: str = knob(
        "none",
        "Jitter (random shifts)",
        "shift training images by up to 2 pixels (1 on 8x8): none, "
        "teacher (Hinton's recipe: the students then learn from its smoother outputs) or all",
        choices=AUGMENT,
    )
    student_fraction: float = knob(
        1.0,
        "Students learn from",
        "share of the training set both students learn from "
        "(an equal share of each class, the same examples for any seed); the teacher "
        "learns from all of it (Hinton et al. 2015, sec. 5)",
        lo=0,
        lo_open=True,
        hi=1,
        options=SHARES,
        share=True,
    )
    options: dict | None = knob(
        None,
        "Method options",
        "the chosen method's own knobs by name, e.g. "
        '{"dkd_beta": 4.0} (python -m kd list methods names them; each is also a '
        "flag of its own); a knob left out takes its default",
        section="method",
    )

    def __post_init__(self) -> None:
        self.validate()

    @property
    def teacher_epochs_resolved(self) -> int:
        return self.epochs if self.teacher_epochs is None else self.teacher_epochs

    # -- validation -------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ConfigError naming the first field that is not allowed (from each field's Knob)."""
        for f in fields(self):
            value, k = getattr(self, f.name), f.metadata["knob"]
            kind, optional = field_type(f)
            if optional and value is None:
                continue
            if kind is dict:
                self._check_options()
            elif kind is bool:
                _bool(f.name, value)
            elif kind is str:
                _str(f.name, value)
            elif kind is int:
                _int(f.name, value, k.lo, k.hi)
            else:
                _number(f.name, value, k.lo, k.hi, k.lo_open)
            choices = k.choices() if callable(k.choices) else k.choices
            if choices is not None and value not in choices:
                raise ConfigError(f.name, _choices(value, list(choices)))
            problem = k.check(value) if k.check else None
            if problem:
                raise ConfigError(f.name, problem)
        if self.standardize and "standardize" not in _method_knobs(self.method):
            users = [m for m in _methods() if "standardize" in _method_knobs(m)]
            raise ConfigError(
                "standardize", f"is a switch of the logit methods ({', '.join(users)}), not of method {self.method!r}"
            )

    def _check_options(self) -> None:
        """options: a dict of the chosen method's own knobs, each of its type and in its range;
        a knob of another method is refused naming both."""
        if not isinstance(self.options, dict):
            raise ConfigError("options", f"must be a JSON object of the method's knobs, got {self.options!r}")
        declared = method_options()
        for name, value in self.options.items():
            if name not in declared:
                raise option_error(name, f"no method has this knob; knobs: {', '.join(declared) or 'none'}")
            opt, owners = declared[name]
            if self.method not in owners:
                raise option_error(name, f"is a knob of {', '.join(owners)}, not of method {self.method!r}")
            try:
                if opt.kind is str:
                    _str(name, value)
                    if not value.strip():
                        raise ConfigError(name, "must not be empty")
                else:
                    (_int if opt.kind is int else _number)(name, value, opt.knob.lo, opt.knob.hi)
            except ConfigError as e:
                raise option_error(name, e.message) from None

    def option(self, name: str) -> Any:
        """The value of the method's knob `name`: as given in options, else its declared default."""
        given = self.options or {}
        return given[name] if name in given else method_options()[name][0].default

    # -- JSON ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        if not isinstance(data, dict):
            raise ConfigError("config", "must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(unknown[0], f"unknown field; known fields: {', '.join(sorted(known))}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as e:
            raise ConfigError("config", f"not valid JSON ({e})") from None
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)


def _choices(value: Any, valid: list[str]) -> str:
    return f"{value!r} is not one of: {', '.join(valid)}"


def field_type(f: dataclasses.Field) -> tuple[type, bool]:
    """(bool | int | float | str | dict, whether None is allowed) of a RunConfig field, from its annotation."""
    text = str(f.type)
    kind = next(t for t in (bool, int, float, str, dict) if t.__name__ in text)
    return kind, "None" in text or "Optional" in text  # int | None, or Optional[int]


def knobs() -> dict[str, Knob]:
    """Every RunConfig field's Knob, in declaration order."""
    return {f.name: f.metadata["knob"] for f in fields(RunConfig)}


def _str(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise ConfigError(name, f"must be text, got {value!r}")


def _bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(name, f"must be true or false, got {value!r}")


def _int(name: str, value: Any, lo: float | None, hi: float | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, f"must be a whole number, got {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(name, f"must be between {lo} and {hi}, got {value}")


def _number(name: str, value: Any, lo: float | None, hi: float | None, lo_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(name, f"must be a finite number, got {value!r}")
    too_low = value <= lo if lo_open else value < lo
    if too_low or value > hi:
        low = f"> {lo:g}" if lo_open else f">= {lo:g}"
        shown = f"{value:g}"
        if float(shown) != value or 0 < abs(value) < 1e-300:  # 1e-320 as typed, not 9.99989e-321
            shown = repr(value)
        raise ConfigError(name, f"must be {low} and <= {hi:g}, got {shown}")
