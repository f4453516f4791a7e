"""A run's stages and the events it writes, declared once.

A run has three stages, in this order (STAGES): the teacher (trained, or loaded from a weights
file), the student alone ("baseline") and the distilled student ("student"). Both students start
from the same weights and see the same batches; only the distilled one learns from the teacher.

The events of a run, in the order it writes them:

    RunStarted          data loaded; status "running", or "resumed" when it goes on from a checkpoint
    for each stage in STAGES:
        StageStarted    not for a loaded teacher, nor for a stage resumed from its checkpoint
        Step ...        about 20 per epoch, each over the steps since the one before
        Epoch           at each epoch's end, after validation
        StageEnded      done, loaded, stopped or diverged; after stopped or diverged no stage follows
    Metrics ...         one per model that exists, measured on the test set
    RunEnded            done, stopped or diverged, with what distillation bought

A sweep (kd/sweep.py) writes RunStarted and its teacher's stage, then a Cell event at each epoch
of each student it trains (and one when the student is stored as a run), then RunEnded.

A resumed run writes RunStarted again and goes on where its kept events end (kd/runner.py drops
the events after its last checkpoint); a finished stage it kept writes nothing more.

Who writes and who reads: kd/trainer.py builds each event and emits `to_dict(event)`, a plain
JSON-ready dict; kd/runner.py hands the dicts to the store (kd/store.py keeps each as one JSON row,
in order, and never looks inside) and to the CLI's progress lines. Readers turn a dict back into
its type with `parse`: the CLI (kd/cli.py), the charts (kd/plots.py) and the runner when it
resumes a run. The dashboard's pages read them through kd/plots.

Units: accuracies and agreement are fractions in [0, 1]; losses are per example (batch means);
seconds are wall-clock seconds; an optional field is None when absent.

Old and new runs: `to_dict` writes the same keys and shapes the store has always held, so runs
already on disk read as before. `parse` never raises on a dict from the store: a field that
older runs lack (marked "absent in older runs") is None; keys it does not know are kept in the
event's `extra` (and written back by `to_dict`); a kind it does not know, or a dict without a
field its kind needs, becomes `Unknown`, which readers skip.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import ClassVar, Literal

STAGES = ("teacher", "baseline", "student")  # the order they train in; baseline = student alone
STAGE_TITLES = {"teacher": "teacher", "baseline": "student alone", "student": "distilled student"}


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStarted:
    """The data are loaded and training starts (or goes on, when resumed)."""

    kind: ClassVar[str] = "run"
    OPTIONAL: ClassVar[tuple[str, ...]] = ("data_notes",)
    status: Literal["running", "resumed"]
    device: str  # the torch device it trains on: "cpu", "cuda", "mps"
    train_size: int  # training examples (the teacher's; StageStarted.train_size says the students' share)
    val_size: int  # validation examples, split off the training set (0: no validation)
    test_size: int  # test examples, for the Metrics events
    num_classes: int
    data_notes: list | None = None  # how a person's file was read: label column, splits... (None: nothing to say)
    extra: dict = field(default_factory=dict)  # keys this version does not know


@dataclass(frozen=True, slots=True, kw_only=True)
class StageStarted:
    """A stage begins training (from its first epoch)."""

    kind: ClassVar[str] = "stage"
    stage: str  # one of STAGES
    status: Literal["started"] = "started"
    epochs: int  # epochs it will train
    steps_per_epoch: int  # optimizer steps (batches) per epoch
    params: int  # the model's parameters
    train_size: int | None = None  # examples it trains on (a share, for the students); absent in older runs
    teacher_outputs: str | None = None  # how the teacher's outputs are had (cached once, how big, or per batch);
    # only for a stage that learns from the teacher
    extra: dict = field(default_factory=dict)

    OPTIONAL: ClassVar[tuple[str, ...]] = ("train_size", "teacher_outputs")  # left out of the dict when None


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """Training progress over a log window: the optimizer steps since the previous Step event
    (about 1/20 of an epoch; the epoch's last window may be shorter)."""

    kind: ClassVar[str] = "step"
    stage: str
    epoch: int  # 1-based
    step: int  # optimizer steps taken in this stage so far, this window's included
    total_steps: int  # the stage's steps: epochs * steps_per_epoch
    loss: float  # training loss (the sum of the terms), averaged over the window's examples
    terms: dict[str, float]  # each weighted loss term ("ce", "soft", ...), averaged alike; stored as
    # one key per term, "loss_<name>"
    lr: float  # learning rate of the window's last step
    samples_per_s: float | None  # training examples per second over the window (None: no time measured)
    epochs: int | None = None  # the stage's epochs, for an x axis in epochs (absent from older runs)
    extra: dict = field(default_factory=dict)

    TERM_PREFIX: ClassVar[str] = "loss_"
    OPTIONAL: ClassVar[tuple[str, ...]] = ("epochs",)


@dataclass(frozen=True, slots=True, kw_only=True)
class Epoch:
    """An epoch ended: its training accuracy and the validation figures (the checkpoint follows)."""

    kind: ClassVar[str] = "epoch"
    stage: str
    epoch: int  # 1-based, the epoch that ended
    epochs: int  # the stage's epochs
    step: int  # optimizer steps taken in this stage so far
    train_acc: float  # fraction of the epoch's training examples predicted right, as they were trained on
    val_acc: float | None  # validation accuracy, model in eval mode (None: no validation split)
    val_loss: float | None  # validation cross-entropy, mean per example (None: no validation split)
    seconds: float  # the stage's training time so far, time before a resume included
    method: dict[str, float] | None = None  # what the method reports, e.g. CTKD's learned {"T": 3.2};
    # absent for methods that report nothing
    extra: dict = field(default_factory=dict)

    OPTIONAL: ClassVar[tuple[str, ...]] = ("method",)


FINISHED = ("done", "loaded")  # a stage that ended with these has its weights: it is not trained again


@dataclass(frozen=True, slots=True, kw_only=True)
class StageEnded:
    """A stage ended (its weights are saved before this is written)."""

    kind: ClassVar[str] = "stage"
    stage: str
    status: Literal["done", "loaded", "stopped", "diverged"]  # loaded: the teacher came from a file
    epochs: int  # epochs completed (0 for a loaded teacher)
    seconds: float | None = None  # training time, time before a resume included; absent in older "loaded" events
    message: str = ""  # why it stopped or diverged, or where a loaded teacher came from
    extra: dict = field(default_factory=dict)

    OPTIONAL: ClassVar[tuple[str, ...]] = ("seconds",)


@dataclass(frozen=True, slots=True, kw_only=True)
class Metrics:
    """One model's figures on the test set (the run's results table holds the same, and also
    the reliability bins and the confusion matrix, which are not in the event)."""

    kind: ClassVar[str] = "metrics"
    model: str  # one of STAGES
    accuracy: float  # test accuracy
    params: int
    size_mb: float  # the weights as safetensors, MB = 10^6 bytes
    flops: int  # forward FLOPs per example (a multiply-add counts 2)
    latency_ms: float  # median CPU forward time, one thread, batch of 1, ms
    latency_ms_256: float  # the same for a batch of 256
    agreement: float | None  # share of test examples with the teacher's top-1 class (None: the teacher)
    ece: float  # expected calibration error, 15 equal-width bins, in [0, 1]
    train_seconds: float  # the stage's training time (0 for a loaded teacher)
    epochs: int  # epochs completed
    status: str  # the stage's end status (StageEnded.status)
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunEnded:
    """The run is over: every stage ended and every model was measured."""

    kind: ClassVar[str] = "run"
    status: Literal["done", "stopped", "diverged"]
    summary: dict[str, float | None]  # kd.metrics.run_summary: gain (distilled minus alone, accuracy
    # fraction), kept (distilled / teacher accuracy), compression (teacher / distilled parameters),
    # speedup (teacher / distilled batch-256 latency); None where a model is missing
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Cell:
    """A sweep's event (kd/sweep.py): one student of a cell (or a seed's student alone, cell -1)
    finished an epoch, or, with run_id, ended and was stored as a run of its own."""

    kind: ClassVar[str] = "cell"
    OPTIONAL: ClassVar[tuple] = ("student", "val_acc", "run_id", "accuracy", "gain", "status")
    stage: Literal["baseline", "student"]
    cell: int  # index into the sweep's grid; -1 for a student alone
    seed: int
    student: str | None = None  # its architecture (a student alone is one per architecture and seed)
    epoch: int  # epochs finished
    epochs: int
    train_acc: float | None
    val_acc: float | None = None
    run_id: str | None = None  # once stored: the run that holds it
    accuracy: float | None = None  # then: test accuracy
    gain: float | None = None  # then: minus its seed's student alone
    status: str | None = None  # then: done or diverged
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Unknown:
    """A dict parse cannot read as an event: a kind this version does not know (a newer run's),
    or one that lacks a field its kind needs. Kept whole, so to_dict gives it back unchanged."""

    data: dict


Event = RunStarted | StageStarted | Step | Epoch | StageEnded | Metrics | RunEnded | Cell | Unknown
RUN_STARTED_STATUSES = ("running", "resumed")
_FIELDS = {  # each type's fields but extra, in declaration order
    cls: tuple(f.name for f in fields(cls) if f.name != "extra")
    for cls in (RunStarted, StageStarted, Step, Epoch, StageEnded, Metrics, RunEnded, Cell)
}
_KEYS = {cls: frozenset(names) - {"terms"} for cls, names in _FIELDS.items()}  # stored under their own name


_BY_KIND = {"step": Step, "epoch": Epoch, "metrics": Metrics, "cell": Cell}


def type_of(d: dict) -> type:
    """The event type `parse(d)` builds, read from the kind (and, for run and stage, the status)."""
    kind = d.get("kind")
    if kind == "run":
        return RunStarted if d.get("status") in RUN_STARTED_STATUSES else RunEnded
    if kind == "stage":
        return StageStarted if d.get("status") == "started" else StageEnded
    return _BY_KIND.get(kind, Unknown)


def parse(d: dict) -> Event:
    """The typed event of a stored dict. Never raises: see the module's docstring."""
    cls = type_of(d)
    if cls is Unknown:
        return Unknown(d)
    known, values, terms, extra = _KEYS[cls], {}, {}, {}
    for k, v in d.items():
        if k in known:
            values[k] = v
        elif cls is Step and k.startswith(Step.TERM_PREFIX):
            terms[k[len(Step.TERM_PREFIX) :]] = v
        elif k != "kind":
            extra[k] = v
    if cls is Step:
        values["terms"] = terms
    try:
        return cls(**values, extra=extra)
    except TypeError:  # a field its kind needs is missing
        return Unknown(d)


def to_dict(event: Event) -> dict:
    """The dict the store keeps: "kind", then each field under its own name, in declaration
    order; an optional field left out when None (as older runs wrote it); Step.terms as one
    "loss_<name>" key each; then the extra keys."""
    if isinstance(event, Unknown):
        return dict(event.data)
    out = {"kind": event.kind}
    optional = getattr(event, "OPTIONAL", ())
    for name in _FIELDS[type(event)]:
        value = getattr(event, name)
        if name == "terms":
            out.update({Step.TERM_PREFIX + k: v for k, v in value.items()})
        elif value is not None or name not in optional:
            out[name] = value
    out.update(event.extra)
    return out
