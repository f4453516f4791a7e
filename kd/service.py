"""The one module the dashboard's pages talk to: runs (start, stop, resume, delete, list, read
their events and results), the choices that fit a data set, the checks made before a start,
uploads, and the measured figures a page may cite.

A thin facade: each function calls kd.jobs, kd.store, kd.lease, kd.data, kd.models, kd.methods,
kd.uploads, kd.inspect or kd.results and decides nothing itself. A run's state (an active run
whose process is dead is "interrupted") is kd/lease.py's `state()`, the same function the CLI's
`runs` and `show` use, so the dashboard and the command line always agree.

torch is imported only inside the functions that need it: a page that lists runs or follows one
(Live, Runs) loads without it.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

from kd import jobs, lease
from kd.config import FEW_LABELS, RunConfig, field_type, knobs
from kd.errors import KDError
from kd.events import STAGES
from kd.schema import Knob
from kd.store import Run, Store, default_root

ACTIVE = lease.ACTIVE  # states of a run that is queued or training
RESUMABLE = lease.RESUMABLE  # states Resume accepts


# -- the run store ----------------------------------------------------------------------------
CHECK_EVERY_S = 5.0  # check_store reads the whole database: at most this often per folder
_stores: dict[str, Store] = {}
_checked: dict[str, float] = {}
_lock = threading.Lock()


def _store() -> Store:
    """The run store of $KD_RUNS_DIR (or ./runs), opened once per folder in this process."""
    root = str(default_root().resolve())
    with _lock:
        if root not in _stores:
            _stores[root] = Store(root)
        return _stores[root]


def check_store() -> None:
    """Open the run store and check it for damage (at most every CHECK_EVERY_S): a StoreError
    (a KDError) that says what to do when it cannot be used."""
    store = _store()
    if time.monotonic() - _checked.get(str(store.root), -CHECK_EVERY_S) >= CHECK_EVERY_S:
        store.check()
        _checked[str(store.root)] = time.monotonic()


# -- runs ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class RunInfo(Run):
    """A stored run (kd.store.Run: id, config, stored status, models, summary, message, pid...)
    and its `state`, the status to show and act on, as kd/lease.py decides it."""

    state: str = ""


def _info(run: Run | None) -> RunInfo | None:
    if run is None:
        return None
    return RunInfo(**{f.name: getattr(run, f.name) for f in dataclasses.fields(Run)}, state=lease.state(run))


def runs() -> list[RunInfo]:
    """Every stored run, newest first."""
    return [_info(r) for r in _store().runs()]


def get_run(run_id: str) -> RunInfo | None:
    """One run, or None for an unknown id (or anything that is not a run id)."""
    return _info(_store().get(run_id))


def events(run_id: str, since: int = 0) -> list[tuple[int, dict]]:
    """The run's events after number `since`, as (number, event) in order: poll with the last
    number seen."""
    return _store().events(run_id, since=since)


def quiet_for(run: Run) -> float:
    """Seconds since the run's process last gave a sign of life."""
    return lease.quiet_for(run)


def check(cfg: RunConfig) -> None:
    """Refuse, before a run exists, what its worker would refuse later: a data set that cannot be
    read, a model that does not fit it, a method the pair cannot run, a teacher file of the wrong
    shapes or values. A KDError names the field. The CLI's train makes the same check."""
    from kd import trainer

    trainer.check(cfg)


def start(cfg: RunConfig) -> str:
    """Check the config (check()), queue the run and start its worker process; returns its id."""
    check(cfg)
    return jobs.start(cfg, _store())


def keep_warm() -> None:
    """Keep a worker process waiting with torch imported (kd.jobs.Standby), so that the next
    Start trains at once, while no run of this store is active (a standby never takes CPU from
    a run). KD_WARM_WORKER=0 turns it off. The dashboard calls this on each page it draws."""
    if os.environ.get("KD_WARM_WORKER", "1").strip().lower() in ("0", "no", "false", "off"):
        return
    if jobs.standby.ready():  # the common case, checked without reading the store
        return
    store = _store()
    if any(jobs.state(r) in ACTIVE for r in store.runs() + store.runs(sweeps=True)):
        return
    jobs.standby.keep()


def stop(run_id: str) -> None:
    """Ask the run to stop; it ends after the current batch and keeps what it has."""
    jobs.stop(run_id, _store())


def resume(run_id: str) -> None:
    """Go on with an interrupted, stopped or failed run from its last finished epoch; a KDError
    says why not otherwise."""
    jobs.resume(run_id, _store())


def delete(run_id: str) -> None:
    """Delete a run that is not active: its record, events and files."""
    run = get_run(run_id)
    if run is not None and run.state in ACTIVE:
        raise KDError(f"run {run_id} is {run.state}: stop it before deleting it")
    _store().delete(run_id)


# -- time ------------------------------------------------------------------------------------------
def estimate_seconds(cfg: RunConfig) -> tuple[float, RunInfo] | None:
    """The training time a run of cfg (one seed) will take on this machine, judged from the
    newest finished run of the same data set, pair and batch size (its seconds per epoch of each
    model, times cfg's epochs; no teacher time when cfg loads one; the students' share scaled),
    and that run; None without such a run. Start-up, data loading and the final measurements
    come on top; several seeds cost seeds_cost's factor."""
    same = [
        r
        for r in runs()
        if r.state == "done"
        and all(r.config.get(k) == getattr(cfg, k) for k in ("dataset", "teacher", "student", "batch_size"))
        and all((r.models.get(m) or {}).get("epochs") for m in STAGES)
    ]
    if not same:
        return None
    r = same[0]
    per_epoch = {m: r.models[m]["train_seconds"] / r.models[m]["epochs"] for m in STAGES}
    share = cfg.student_fraction / (r.config.get("student_fraction") or 1.0)
    teacher = 0.0 if cfg.teacher_checkpoint else per_epoch["teacher"] * cfg.teacher_epochs_resolved
    students = (per_epoch["baseline"] + per_epoch["student"]) * cfg.epochs * share
    return teacher + students, r


# -- names -----------------------------------------------------------------------------------------
NAME_MAX = 80
_UNNAMED = ("data_dir", "teacher_checkpoint", "device")  # where it ran or read from: not what it is
FIRST = ("dataset", "method", "temperature", "alpha", "student", "teacher")  # what people vary most, named first


def rename(run_id: str, name: str) -> None:
    """Give a run a name (at most NAME_MAX characters, one line); an empty one gives back the
    name names() makes."""
    name = " ".join(str(name).split())
    if len(name) > NAME_MAX:
        raise KDError(f"name: at most {NAME_MAX} characters, got {len(name)}")
    if get_run(run_id) is None:
        raise KDError(f"no such run: {run_id!r}")
    _store().update(run_id, name=name or None)


def differing(runs: list[Run]) -> list[str]:
    """The RunConfig fields whose values differ among the runs (method knobs as options.NAME):
    those in FIRST first, then in declaration order; none for fewer than two runs."""
    if len(runs) < 2:
        return []
    flat = [_flat(r.config) for r in runs]
    keys = [k for k in dict.fromkeys(k for f in flat for k in f) if k not in _UNNAMED]
    keys.sort(key=lambda k: FIRST.index(k) if k in FIRST else len(FIRST))  # stable: declaration order after
    return [k for k in keys if len({repr(f.get(k)) for f in flat}) > 1]


def names(runs: list[Run]) -> dict[str, str]:
    """Each run's name, by id: the one it was given, else its data set and what sets it apart from
    the other runs listed: of the settings that differ among them (differing()), in that order,
    each that tells more of them apart, e.g. "digits · T=1 α=0.9"; a run with nothing apart is
    named by its method and the numbers the method uses. Names made alike get the run's time."""
    apart, flats = [k for k in differing(runs) if k != "dataset"], [_flat(r.config) for r in runs]
    kinds = lambda keys: len({tuple(repr(f.get(k)) for k in ["dataset", *keys]) for f in flats})
    told: list[str] = []  # the settings that tell the runs apart, fewest first by FIRST's order
    for k in apart:
        if kinds(told) == len(runs):
            break
        if kinds([*told, k]) > kinds(told):
            told.append(k)
    apart = told
    out: dict[str, str] = {}
    for r in runs:
        if r.name:
            out[r.id] = r.name
            continue
        c, flat = r.config, _flat(r.config)
        method = methods().get(c.get("method"))
        used = method.knobs if method else ("temperature", "alpha")
        shown = apart or ["method", *[k for k in ("temperature", "alpha") if k in used]]
        words = [_setting(k, flat[k]) for k in shown if flat.get(k) is not None]
        out[r.id] = " · ".join([dataset_name(c.get("dataset", "?")), *([" ".join(words)] if words else [])])
    made = [n for i, n in out.items() if not next(r for r in runs if r.id == i).name]
    for r in runs:
        if not r.name and made.count(out[r.id]) > 1:
            out[r.id] += time.strftime(" · %d %b %H:%M:%S", time.localtime(r.created))
    return out


def dataset_name(dataset: str) -> str:
    """A data set as a person knows it: a registered name, a folder's own name, an upload's file name."""
    if not is_own_data(dataset):
        return dataset
    from kd import uploads

    return uploads.original_name(dataset) or Path(dataset.split(":", 1)[1]).name or dataset


SHORT = {"temperature": "T", "alpha": "α", "lr": "lr", "weight_decay": "wd", "batch_size": "batch"}


def _setting(key: str, value: Any) -> str:
    if key in ("method", "student", "teacher", "dataset"):
        return f"{'teacher ' if key == 'teacher' else ''}{value}"
    if key == "student_fraction":
        return f"students on {value:.0%}"
    if isinstance(value, bool):
        return key.replace("_", " ") if value else f"no {key.replace('_', ' ')}"
    label = SHORT.get(key, key.removeprefix("options."))
    return f"{label}={value:g}" if isinstance(value, float) else f"{label}={value}"


def config_value(config: dict, key: str) -> Any:
    """A setting of a run's config by the names differing() gives (options.NAME for a method's knob)."""
    return _flat(config).get(key)


def _flat(config: dict) -> dict:
    out = {k: v for k, v in config.items() if k != "options"}
    out.update({f"options.{k}": v for k, v in (config.get("options") or {}).items()})
    return out


def weights_file(run_id: str, model: str) -> Path | None:
    """The saved weights (.safetensors) of a run's teacher, baseline or student; None when absent."""
    path = _store().weights_path(run_id, model)
    return path if path.exists() else None


def teachers_for(dataset: str, teacher: str) -> list[RunInfo]:
    """Earlier runs with a trained `teacher` architecture on `dataset` whose weights are saved:
    teachers the Train page may reuse."""
    return [
        r
        for r in runs()
        if r.config["dataset"] == dataset
        and r.config["teacher"] == teacher
        and "teacher" in r.models
        and weights_file(r.id, "teacher")
    ]


# -- sweeps ---------------------------------------------------------------------------------------
# A sweep is a row of runs (its state, stop, resume, delete and events are a run's: the functions
# above take its id) plus its grid; each (cell, seed) it finishes is a run of its own.
def sweep_axes() -> list[str]:
    """What a sweep may vary: temperature, alpha, method, student and every method's
    own knobs."""
    from kd.config import method_options
    from kd.sweep import AXES

    return [*AXES, *method_options()]


def start_sweep(cfg: RunConfig, axes: dict[str, list], seeds: list[int], max_group: int | None = None) -> str:
    """Check every cell (as start() checks a run), queue the sweep, start its worker; its id."""
    from kd import sweep_run
    from kd.sweep import DEFAULT_MAX_GROUP, Sweep

    sweep = Sweep(cfg, axes, tuple(seeds), max_group or DEFAULT_MAX_GROUP)
    return sweep_run.start(_store(), sweep)


def seeds_cost(cfg: RunConfig, ns: tuple[int, ...]) -> dict[int, float]:
    """What training cfg with n seeds costs against one seed, for each n, estimated (kd.sweep.seeds_cost)."""
    from kd.sweep import seeds_cost

    return seeds_cost(cfg, ns)


def start_seeds(cfg: RunConfig, n: int) -> str:
    """cfg trained with seeds cfg.seed, cfg.seed + 1, ...: one teacher, the students in lockstep
    (a sweep of one cell); its id, shown by the Sweep page."""
    return start_sweep(cfg, {}, [cfg.seed + i for i in range(n)])


def sweeps() -> list[RunInfo]:
    """Every stored sweep (its row of runs), newest first."""
    return [_info(r) for r in _store().runs(sweeps=True)]


def is_sweep(run_id: str) -> bool:
    return _store().sweep_spec(run_id) is not None


def sweep_result(sweep_id: str) -> dict:
    """The sweep as `python -m kd show-sweep --json` prints it (kd.sweep_run.result)."""
    from kd import sweep_run

    return sweep_run.result(_store(), sweep_id)


def seed_runs(cell: dict) -> list[dict]:
    """A sweep cell's stored seeds: [{"seed", "run", "baseline", "student"}], accuracies in %."""
    out = []
    for seed, run_id in zip(cell["seeds"], cell["run_ids"]):
        r = get_run(run_id)
        if r and r.models.get("student") and r.models.get("baseline"):
            b, s = (100 * r.models[k]["accuracy"] for k in ("baseline", "student"))
            out.append({"seed": seed, "run": r, "baseline": b, "student": s})
    return out


def sweep_of(run_id: str) -> tuple[str, dict] | None:
    """For a run that is a sweep's cell: (the sweep's id, that cell of its result), else None."""
    found = _store().sweep_of_run(run_id)
    if found is None:
        return None
    sweep_id, cell, _ = found
    return sweep_id, sweep_result(sweep_id)["cells"][cell]


# -- results ------------------------------------------------------------------------------------
def headline(run: Run) -> tuple[str, str] | None:
    """(tone, sentence): what this run shows, weighed against its test set's noise (kd.metrics.headline)."""
    from kd import metrics

    return metrics.headline(run.models, run.config)


def no_gain_note(run: Run) -> str | None:
    """Why distillation did not clearly pay in this run and what to try, two sentences at most
    (kd.metrics.no_gain_note), else None."""
    from kd import metrics

    return metrics.no_gain_note(run.models, run.config)


def run_spec(run: Run):
    """The run's data set as a kd.data.DataSpec (name, input_shape, num_classes, class_names,
    description), or None when it can no longer be read (a folder that is gone)."""
    c = run.config
    try:
        from kd import data

        return data.spec_for(c)
    except KDError:
        return None


def decision_regions(run: Run) -> dict:
    """For a 2-D data set, what each stored model predicts over a grid, and the test points:
    {"xx", "yy", "predictions": {model: classes}, "points", "labels", "class_names"}."""
    from kd import inspect

    return inspect.decision_regions(_store(), run)


def teacher_outputs(run_id: str, n: int = 512):
    """The run's teacher on its first n test examples, as numpy arrays: (logits (n, K), the raw
    inputs for display, the labels (n,), the class names)."""
    import torch

    from kd import inspect

    run = _store().get(run_id)
    bundle = inspect.load_data(run)
    with torch.no_grad():
        logits = inspect.load_model(_store(), run, "teacher")(bundle.x_test[:n])
    raw = bundle.raw(bundle.x_test[:n]).numpy()
    return logits.numpy(), raw, bundle.y_test[:n].numpy(), list(bundle.spec.class_names)


def softened(logits, temperature: float):
    """softmax(logits / T) of one example's logits (K,), as a numpy array."""
    import torch

    from kd import inspect

    return inspect.softened(torch.as_tensor(logits), temperature)


def entropy_curve(logits, temperatures):
    """The entropy in bits of softmax(logits / T) for each T, as a numpy array."""
    import torch

    from kd import inspect

    return inspect.entropy_curve(torch.as_tensor(logits), temperatures)


# -- deploy -----------------------------------------------------------------------------------------
EXPORT_FORMATS = {"onnx": "ONNX", "pt2": "PyTorch 2 (torch.export)", "safetensors": "safetensors weights"}


def export_model(run_id: str, model: str, fmt: str) -> dict:
    """Write a finished run's model as `fmt` into its folder, checked against PyTorch on the test
    set and timed (kd.export.export; ONNX with an int8 copy): {"path", "bytes", "max_abs_diff",
    "agreement", "ok", "accuracy", "latency_ms", "int8", ...}."""
    from kd import export

    return export.export(run_id, model, fmt, store=_store(), int8_too=fmt == "onnx")


def exports(run: Run) -> dict[str, dict[str, dict]]:
    """The files exported from a run so far, model -> format -> figures, those still on disk."""
    out = {}
    for model, files in ((run.results or {}).get("exports") or {}).items():
        kept = {fmt: r for fmt, r in files.items() if Path(r.get("path", "")).is_file()}
        if kept:
            out[model] = kept
    return out


# -- the choices that fit a data set ------------------------------------------------------------
def datasets() -> dict[str, str]:
    """Every registered data set: key -> one-line description."""
    from kd.data import DATASETS

    return {e.key: e.description for e in DATASETS}


def needs_data_dir(dataset: str) -> bool:
    """Whether a registered data set is read from a folder (downloaded there when online)."""
    from kd.data import DATASETS

    return DATASETS.get(dataset).needs_dir


def dataset_spec(
    dataset: str, data_dir: str | None = None, image_size: int = 32, label: str = "", fill_missing: str = "none"
):
    """A data set's kd.data.DataSpec (name, input_shape, num_classes, class_names, description),
    known without loading it; a KDError when it cannot be read."""
    from kd import data

    return data.spec(dataset, data_dir, image_size, label, fill_missing)


def is_own_data(dataset: str | None) -> bool:
    """A person's own data: a folder, a table or an npz file (uploaded or on this machine)."""
    from kd.owndata import OWN

    return isinstance(dataset, str) and dataset.startswith(OWN)


def own_data_name(path: str) -> str:
    """The data set name for a path on this machine: table: for .csv / .parquet, npz: for .npz,
    folder: for anything else."""
    from kd.owndata import FILE_KINDS

    return FILE_KINDS.get(Path(path.strip()).suffix.lower(), "folder:") + path.strip()


def table_columns(dataset: str) -> list[str]:
    """A table's column names (its header only), for choosing the label column."""
    from kd import owndata

    return owndata.columns(dataset)


def data_summary(dataset: str, label: str = "", fill_missing: str = "none") -> dict:
    """What a person's data set holds, before training: layout, class_names, counts (split -> the
    examples of each class), notes (how it was read, where each split came from), and a preview:
    rows (a table's first rows), examples ((x, y) arrays: one signal or image a class) or files
    ([(class, [image paths])]). A KDError when it cannot be read."""
    from kd import data, owndata

    if dataset.startswith("folder:"):
        return data.folder_summary(dataset)
    return owndata.summary(dataset, label, fill_missing)


def architectures() -> dict[str, str]:
    """Every registered model architecture: key -> one-line description."""
    from kd.models import MODELS

    return {e.key: e.description for e in MODELS}


def param_count(arch: str, spec) -> int:
    """Trainable parameters of `arch` built for the data set `spec`; a KDError when it does not fit."""
    from kd import models

    return models.param_count(arch, spec.input_shape, spec.num_classes)


def models_for(spec) -> dict[str, int]:
    """The architectures that can take the data set's inputs, with their parameter counts."""
    out = {}
    for arch in architectures():
        try:
            out[arch] = param_count(arch, spec)
        except KDError:
            pass
    return out


def taps(arch: str, spec) -> list[str]:
    """The layers of `arch` a feature method may read (kd/models.py declares them)."""
    from kd.features import tap_names

    return tap_names(arch, spec.input_shape, spec.num_classes)


class MethodInfo(NamedTuple):
    description: str
    uses_teacher: bool
    knobs: tuple[str, ...]  # the RunConfig fields it uses (temperature, alpha, standardize...)
    options: dict  # its own knobs: name -> kd.schema.Option (default, knob, tap_of)


def methods() -> dict[str, MethodInfo]:
    """Every registered distillation method, in registry order."""
    from kd.methods import METHODS

    return {
        e.key: MethodInfo(e.description, e.obj.uses_teacher, tuple(e.obj.knobs), dict(getattr(e.obj, "options", {})))
        for e in METHODS
    }


def method_formula(cfg: RunConfig, spec) -> tuple[str, str]:
    """The loss of cfg's method with cfg's numbers: (LaTeX, what it means in a line). A KDError
    when the pair cannot run the method (attention transfer on an MLP)."""
    from kd import methods as registry

    return registry.check(cfg, spec.input_shape, spec.num_classes).formula()


def devices() -> list[str]:
    """The devices this machine can train on: auto, cpu, and cuda or mps where present."""
    from kd.trainer import available_devices

    return available_devices()


class Field(NamedTuple):
    """What a widget needs to show one setting: its declaration, default and type."""

    knob: Knob  # label, help, range, choices
    default: Any
    kind: type  # bool | int | float | str | dict
    optional: bool  # None is allowed


def field(name: str) -> Field:
    """A RunConfig field's declaration (kd/config.py)."""
    f = RunConfig.__dataclass_fields__[name]
    return Field(knobs()[name], f.default, *field_type(f))


def fields_in(section: str) -> list[str]:
    """The RunConfig fields of one section of the Train page (data, models, method, training, teacher)."""
    return [name for name, k in knobs().items() if k.section == section]


# -- the Train page's form in its URL ---------------------------------------------------------
NOT_IN_LINKS = ("teacher_checkpoint", "data_dir")  # files of this machine: a link says the setup, not paths


def form_to_query(cfg: RunConfig) -> dict[str, str]:
    """The settings of cfg that differ from the defaults, as URL query parameters (a method's own
    knobs as o.NAME), for a link that reopens the Train page set up the same way. A data set that
    is a folder or an upload on this machine is left out."""
    default, out = RunConfig().to_dict(), {}
    for name, value in cfg.to_dict().items():
        if name in NOT_IN_LINKS or value == default[name] or name == "options":
            continue
        if name == "dataset" and value not in datasets():
            continue
        out[name] = _query_value(value)
    for name, value in (cfg.options or {}).items():
        out[f"o.{name}"] = _query_value(value)
    return out


def form_from_query(params: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """The settings a Train page URL holds (form_to_query's), each checked as RunConfig checks it,
    and the parameters that were refused, each as 'name: why'. Unknown names are refused too."""
    from kd.config import method_options

    base, values, refused = RunConfig().to_dict(), {}, []
    fields = RunConfig.__dataclass_fields__
    own = {k: v for k, v in params.items() if k.startswith("o.")}
    for key, text in [(k, v) for k, v in params.items() if k not in own]:
        try:
            if key not in fields or key in NOT_IN_LINKS or key == "options":
                raise KDError(f"{key}: not a setting of the Train page")
            value = _parse_query(key, text, *field_type(fields[key]))
            RunConfig.from_dict({**base, key: value})
            values[key] = value
        except KDError as e:
            refused.append(str(e))
    for key, text in own.items():  # a method's own knobs, checked against the method chosen
        try:
            opt = method_options().get(key[2:])
            if opt is None:
                raise KDError(f"{key}: no method has this setting")
            value = _parse_query(key, text, opt[0].kind, False)
            RunConfig.from_dict({**base, **values, "options": {**values.get("options", {}), key[2:]: value}})
            values.setdefault("options", {})[key[2:]] = value
        except KDError as e:
            refused.append(str(e))
    return values, refused


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _parse_query(key: str, text: str, kind: type, optional: bool) -> Any:
    if text == "" and optional:
        return None
    try:
        if kind is bool:
            if text not in ("0", "1", "true", "false"):
                raise ValueError
            return text in ("1", "true")
        return int(text) if kind is int else float(text) if kind is float else text
    except ValueError:
        raise KDError(f"{key}: {text!r} is not a {kind.__name__}") from None


def method_option(name: str) -> Field:
    """A method's own knob, declared in the method's file (kd.schema.option)."""
    from kd.config import method_options

    opt = method_options()[name][0]
    return Field(opt.knob, opt.default, opt.kind, False)


# -- uploads --------------------------------------------------------------------------------------
def save_image_zip(data: bytes, name: str | None = None) -> str:
    """Unpack a .zip of images, one folder per class, into the store's uploads; returns the data
    set name (folder:PATH) to train on. `name`: the file's own name, which names the data set in
    titles and tables (dataset_name). A KDError says what is wrong with the archive."""
    from kd import uploads

    return "folder:" + str(uploads.save_image_zip(data, _store().root, name))


def save_data_file(data: bytes, name: str) -> str:
    """Keep an uploaded table (.csv, .parquet) or NumPy archive (.npz) in the store's uploads;
    returns the data set name (table:PATH or npz:PATH), named by `name` in titles and tables."""
    from kd import uploads

    return uploads.save_data_file(data, _store().root, name)


def save_teacher_file(data: bytes) -> str:
    """Keep an uploaded .safetensors teacher in the store's uploads, after checking it is one;
    returns its path (the config's teacher_checkpoint)."""
    from kd import uploads

    return str(uploads.save_checkpoint(data, _store().root))


# -- the demos, and what was measured of them -----------------------------------------------------
def quick_demo() -> RunConfig:
    """The Home page's quick demo: every default, but T and alpha from the best cell of the
    newest grid of the defaults (bench/grids.py), when there is one."""
    return _best_of_grid(RunConfig())


def _best_of_grid(base: RunConfig) -> RunConfig:
    from kd import results

    grid = demo_grid(base)
    cell = results.best_cell(grid["sweep"]) if grid else None
    return base.replace(**cell["params"]) if cell else base


def demo_grid(cfg: RunConfig) -> dict | None:
    """The newest T x alpha grid measured for a demo's config (kd.results.grid_result): {"file",
    "date", "sweep"}, or None."""
    from kd import results

    return results.grid_result(cfg.to_dict())


def best_cell(cfg: RunConfig) -> dict | None:
    """The best cell of the grid measured for cfg's demo (T and alpha aside), or None."""
    from kd import results

    grid = demo_grid(cfg)
    return results.best_cell(grid["sweep"]) if grid else None


def paying_cell(cfg: RunConfig) -> dict | None:
    """best_cell, if it gains beyond its seeds' spread; else None."""
    from kd import results

    grid = demo_grid(cfg)
    return results.paying_cell(grid["sweep"]) if grid else None


def few_labels_demo() -> RunConfig:
    """The Home page's few-labels demo: the students learn from 5 % of digits' training images;
    T and alpha from the best cell of its newest grid, when there is one."""
    return _best_of_grid(RunConfig(**FEW_LABELS))


def measured(cfg: RunConfig) -> dict | None:
    """What bench/seeds.py measured of this config (kd.results.seeds_result), or None."""
    from kd import results

    return results.seeds_result(cfg.to_dict())
