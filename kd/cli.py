"""The command line: python -m kd train | sweep | resume | runs | sweeps | show | show-sweep | export | list |
worker | standby.

Bad input is one line naming the flag and what is allowed, exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import textwrap
from collections.abc import Sequence

from kd import events
from kd.config import RunConfig, field_type, knobs
from kd.errors import ConfigError, KDError

JSON_MODEL_KEYS = tuple(f.name for f in dataclasses.fields(events.Metrics) if f.name not in ("model", "extra"))
# flag -> RunConfig field, type: one flag per field, made from its declaration (kd/config.py)
# (the methods' own knobs, RunConfig.options, get a flag each too: _option_flags)
TRAIN_FLAGS = {
    "--" + f.name.replace("_", "-"): (f.name, field_type(f)[0])
    for f in dataclasses.fields(RunConfig)
    if f.name != "options"
}
FIELD_TO_FLAG = {f: flag for flag, (f, _) in TRAIN_FLAGS.items()}
FIELD_TO_FLAG.update({f: f"--{f}" for f in ("out", "model", "format", "int8")})  # export's own flags


def train_argv(cfg: RunConfig) -> list[str]:
    """`python -m kd train` arguments that make `cfg`: a flag for each field that is not at its
    default, a method's own knobs included (benchmarks and tests start real CLI runs with it)."""
    argv, defaults = ["train"], RunConfig()
    for flag, (name, _) in TRAIN_FLAGS.items():
        value = getattr(cfg, name)
        if value != getattr(defaults, name):
            argv += [flag] if value is True else [flag, str(value)]
    for name, value in (cfg.options or {}).items():
        argv += [_flag(name), str(value)]
    return argv


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _option_flags(train: argparse.ArgumentParser) -> None:
    """A flag for each method's own knob (kd.config.method_options), e.g. --dkd-beta 8."""
    from kd.config import method_options

    for name, (opt, owners) in method_options().items():
        FIELD_TO_FLAG[name] = _flag(name)
        train.add_argument(
            _flag(name),
            dest=f"option_{name}",
            type=_typed(_flag(name), opt.kind),
            default=None,
            metavar=name.upper(),
            help=f"{', '.join(owners)} only: {opt.knob.help} (default: {opt.default})".replace("%", "%%"),
        )


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints usage + message)
        raise UsageError(message)


def _parser(argv: Sequence[str] | None = None) -> Parser:
    p = Parser(prog="python -m kd", description="Distill Lab: knowledge distillation, headless.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    train = sub.add_parser("train", help="train teacher, student alone and distilled student")
    defaults, described = RunConfig(), knobs()
    for flag, (field, kind) in TRAIN_FLAGS.items():
        k = described[field]
        if kind is bool:  # a switch: --standardize
            train.add_argument(flag, dest=field, action="store_true", default=None, help=k.help)
            continue
        choices = None if callable(k.choices) else k.choices  # registries: python -m kd list ...
        train.add_argument(
            flag,
            dest=field,
            type=_typed(flag, kind),
            default=None,
            metavar=field.upper(),
            help=f"{k.help}"
            + (f"; one of {', '.join(map(str, choices))}" if choices else "")
            + f" (default: {getattr(defaults, field)})".replace("%", "%%"),
        )
    if not argv or argv[0] in ("train", "-h", "--help"):  # the methods import torch: only where needed
        _option_flags(train)
    train.add_argument("--json", action="store_true", help="print one JSON object at the end")
    train.add_argument(
        "--dry-run",
        action="store_true",
        help="check the flags, the data set, the models and a teacher checkpoint, print the config, train nothing",
    )
    _sweep_parser(sub, argv)
    resume = sub.add_parser(
        "resume", help="go on with an interrupted or stopped run (or sweep) from its last checkpoint"
    )
    resume.add_argument("run_id")
    resume.add_argument("--json", action="store_true", help="print one JSON object at the end")
    runs = sub.add_parser("runs", help="list stored runs")
    runs.add_argument("--json", action="store_true")
    sweeps = sub.add_parser("sweeps", help="list stored sweeps")
    sweeps.add_argument("--json", action="store_true")
    show_sweep = sub.add_parser("show-sweep", help="show one sweep's grid: accuracy and gain per cell")
    show_sweep.add_argument("sweep_id")
    show_sweep.add_argument("--json", action="store_true")
    show = sub.add_parser("show", help="show one run's config and results")
    show.add_argument("run_id")
    show.add_argument("--json", action="store_true")
    exp = sub.add_parser(
        "export", help="write a run's model as ONNX, pt2 (torch.export) or safetensors, checked against PyTorch"
    )
    exp.add_argument("run_id")
    exp.add_argument("--model", default="student", help="student (default), baseline (the student alone) or teacher")
    exp.add_argument("--format", default="onnx", help="onnx (default), pt2 (torch.export) or safetensors")
    exp.add_argument("--out", help="the file to write (default: MODEL.onnx / .pt2 / .safetensors in the run's folder)")
    exp.add_argument("--int8", action="store_true", help="an int8 copy too (onnxruntime quantisation; ONNX only)")
    exp.add_argument("--json", action="store_true")
    lst = sub.add_parser("list", help="list registered models, data sets or methods")
    lst.add_argument("what", choices=["models", "datasets", "methods"])
    worker = sub.add_parser("worker", help="train a queued run (used by the dashboard)")
    worker.add_argument("run_id")
    worker.add_argument("--resume", action="store_true", help="go on from the run's checkpoint")
    sub.add_parser("standby", help="wait, warmed up, for a run to train (used by the dashboard)")
    return p


def _sweep_parser(sub, argv) -> None:
    """`sweep`: every train flag, each taking one value or, on an axis, a comma list."""
    from kd.sweep import AXES

    sweep = sub.add_parser(
        "sweep",
        help="train a grid (T, alpha, method and its knobs, student) over seeds against one teacher",
        description="Give an axis several values with commas: --temperature 1,2,4,8 --alpha 0.5,0.9. "
        f"Axes: {', '.join(AXES)} and the methods' own knobs; any other train flag takes one value. "
        "--seed seeds the teacher; --seeds the students.",
    )
    for flag, (field, kind) in TRAIN_FLAGS.items():
        if kind is bool:
            sweep.add_argument(flag, dest=field, action="store_true", default=None)
        else:
            sweep.add_argument(flag, dest=field, default=None, metavar="V[,V...]" if field in AXES else field.upper())
    FIELD_TO_FLAG.update(seeds="--seeds", max_group="--max-group")  # the sweep's own, in its messages
    if not argv or argv[0] in ("sweep", "-h", "--help"):
        from kd.config import method_options

        for name in method_options():
            FIELD_TO_FLAG[name] = _flag(name)
            sweep.add_argument(_flag(name), dest=f"option_{name}", default=None, metavar="V[,V...]")
    sweep.add_argument("--seeds", default="0", metavar="S[,S...]", help="the students' seeds (default: 0)")
    sweep.add_argument(
        "--max-group", type=_typed("--max-group", int), default=None, help="students per lockstep group at most"
    )
    sweep.add_argument(
        "--sequential", action="store_true", help="train each student alone, one after another (no lockstep)"
    )
    sweep.add_argument("--json", action="store_true", help="print the sweep's JSON at the end")


def _typed(flag: str, kind: type):
    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            word = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"must be {word}, got {text!r}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        return value

    convert.__name__ = kind.__name__
    return convert


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser(sys.argv[1:] if argv is None else argv).parse_args(argv)
        return COMMANDS[args.command](args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
    except ConfigError as e:
        knob = getattr(e, "knob", None)  # a method's own knob: its flag
        if isinstance(knob, str) and knob in FIELD_TO_FLAG:
            print(f"error: {FIELD_TO_FLAG[knob]}: {e.knob_message}", file=sys.stderr)
        else:
            print(f"error: {FIELD_TO_FLAG.get(e.field, e.field)}: {e.message}", file=sys.stderr)
    except KDError as e:
        print(f"error: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `python -m kd list models | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 2


# -- train ----------------------------------------------------------------------------------
def cmd_train(args) -> int:
    from kd import runner
    from kd.store import Store
    from kd.trainer import check

    given = {f: getattr(args, f) for f, _ in TRAIN_FLAGS.values() if getattr(args, f) is not None}
    options = {k[len("option_") :]: v for k, v in vars(args).items() if k.startswith("option_") and v is not None}
    cfg = RunConfig(**given, options=options or None)
    check(cfg, load_data=True)  # as the dashboard's Start does, and the data loaded: no run is made to fail
    if args.dry_run:
        print(cfg.to_json())
        return 0
    store = Store()
    run_id, result = runner.train_new(store, cfg, progress=None if args.json else Progress(cfg), say=_err)
    return _finished(store, run_id, result, args.json)


def cmd_sweep(args) -> int:
    from kd import sweep_run
    from kd.store import Store
    from kd.sweep import AXES, DEFAULT_MAX_GROUP, Sweep

    base, axes = {}, {}
    kinds = {f: kind for f, kind in TRAIN_FLAGS.values()}
    from kd.config import method_options

    for name, (opt, _) in method_options().items():
        kinds[name] = opt.kind
    given = {f: getattr(args, f) for f in kinds if getattr(args, f, None) is not None}
    given.update({k[len("option_") :]: v for k, v in vars(args).items() if k.startswith("option_") and v is not None})
    options = {}
    for name, text in given.items():
        kind, flag = kinds[name], FIELD_TO_FLAG.get(name, _flag(name))
        is_option = name not in {f for f, _ in TRAIN_FLAGS.values()}
        listed = name in AXES or is_option  # only an axis takes a comma list: a path may hold a comma
        if kind is bool:
            values = [True]
        else:
            try:
                values = [_typed(flag, kind)(v.strip()) for v in (str(text).split(",") if listed else [text])]
            except argparse.ArgumentTypeError as e:
                raise UsageError(f"argument {flag}: {e}") from None
        if len(values) > 1:
            if name not in AXES and not is_option:
                raise UsageError(f"argument {flag}: one value only; the axes are {', '.join(AXES)} and method knobs")
            axes[name] = values
        elif is_option:
            options[name] = values[0]
        else:
            base[name] = values[0]
    try:
        seeds = tuple(int(v) for v in args.seeds.split(","))
    except ValueError:
        raise UsageError(f"argument --seeds: whole numbers separated by commas, got {args.seeds!r}") from None
    sweep = Sweep(
        RunConfig(**base, options=options or None),
        axes,
        seeds,
        DEFAULT_MAX_GROUP if args.max_group is None else args.max_group,
        "sequential" if args.sequential else "lockstep",
    )
    sweep_run.check(sweep)  # refused in one line before anything is said or made
    if not args.json:
        for line in plan_lines(sweep):
            _err(line)
    store = Store()
    progress = None if args.json else SweepProgress(sweep)
    sweep_id, status = sweep_run.train_new(store, sweep, progress=progress, say=_err)
    return _sweep_finished(store, sweep_id, status, args.json)


def plan_lines(sweep) -> list[str]:
    """How the sweep will train its students, a line per kind of group (kd.sweep.plan)."""
    from kd.sweep import plan

    out = []
    for g in plan(sweep):
        who = "students alone" if g["stage"] == "baseline" else f"distilled students ({g['method']})"
        n, size = g["students"], min(g["group"], g["students"])
        groups = -(-n // size)
        how = "one after another" if size == 1 else f"in {groups} lockstep group{'s' if groups > 1 else ''} of {size}"
        out.append(f"{n} {g['student']} {who}: {how}, about {g['mb_each']:.1f} MB each (budget: KD_GROUP_MB)")
    return out


def _sweep_finished(store, sweep_id: str, status: str, as_json: bool) -> int:
    from kd import sweep_run

    result = sweep_run.result(store, sweep_id)
    if as_json:
        print(json.dumps(result))
    else:
        print(sweep_table(result))
        print(f"\nsweep {sweep_id}: {result['status']}; each cell and seed is a run (python -m kd show RUN_ID)")
    return 0 if status == "done" else 1


def _pm(mean, std, scale=100.0, sign="") -> str:
    if mean is None:
        return "-"
    return f"{scale * mean:{sign}.2f} ± {scale * std:.2f}"


def sweep_table(result: dict) -> str:
    """The cells as text: the axes' values, accuracy and gain (points) as mean ± std over the seeds."""
    names = list(result["axes"]) or ["cell"]
    rows = [[*names, "accuracy %", "gain (points)", "seeds"]]
    for i, c in enumerate(result["cells"]):
        values = [
            f"{c['params'][n]:g}" if isinstance(c["params"].get(n), float) else str(c["params"].get(n, i))
            for n in names
        ]
        rows.append(
            [
                *values,
                _pm(c["accuracy_mean"], c["accuracy_std"]),
                _pm(c["gain_mean"], c["gain_std"], sign="+"),
                str(len(c["seeds"])),
            ]
        )
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    b = result["baseline"]
    head = (
        f"teacher {result['teacher']['arch']}: "
        + (f"{100 * result['teacher']['accuracy']:.2f} %" if result["teacher"]["accuracy"] is not None else "-")
        + f"; student alone: {_pm(b['accuracy_mean'], b['accuracy_std'])} %"
    )
    return "\n".join([head, *("  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows)])


class SweepProgress:
    """The teacher's progress lines, then one line per student stored."""

    def __init__(self, sweep):
        self.sweep, self.teacher = sweep, Progress(sweep.base)
        self.cells = sweep.cells()

    def __call__(self, d: dict) -> None:
        e = events.parse(d)
        if isinstance(e, events.Cell):
            if e.run_id:
                params = ", ".join(f"{k}={v}" for k, v in self.cells[e.cell].items()) or "cell"
                gain = f"{100 * e.gain:+.2f}" if e.gain is not None else "-"
                _err(f"  {params} seed {e.seed}: {100 * e.accuracy:.2f} % ({gain} points), run {e.run_id}")
        elif getattr(e, "stage", "teacher") == "teacher":
            self.teacher(d)


def cmd_sweeps(args) -> int:
    from kd import sweep_run
    from kd.store import Store

    store = Store()
    results = []
    for r in store.runs(sweeps=True):  # one that cannot be read (a folder gone) is said, not fatal
        try:
            results.append(sweep_run.result(store, r.id))
        except KDError as e:
            results.append({"sweep_id": r.id, "error": str(e)})
    if args.json:
        print(json.dumps(results))
        return 0
    if not results:
        print("no sweeps yet: python -m kd sweep --temperature 1,2,4,8 --alpha 0.5,0.9 --seeds 0,1,2")
        return 0
    for r in results:
        if "error" in r:
            print(f"{r['sweep_id']}  cannot be read: {r['error']}")
            continue
        done = sum(len(c["seeds"]) for c in r["cells"])
        total = len(r["cells"]) * len(r["seeds"])
        axes = " x ".join(f"{k}({len(v)})" for k, v in r["axes"].items()) or "one cell"
        best = max((c for c in r["cells"] if c["gain_mean"] is not None), key=lambda c: c["gain_mean"], default=None)
        line = f"{r['sweep_id']}  {r['status']:<11} {axes}  seeds {len(r['seeds'])}  {done}/{total} trained"
        if best:
            line += f"  best {best['params']}: {_pm(best['gain_mean'], best['gain_std'], sign='+')} points"
        print(line)
    return 0


def cmd_show_sweep(args) -> int:
    from kd.store import Store

    store = Store()
    return (
        _sweep_finished(store, args.sweep_id, "done", args.json)
        if store.get(args.sweep_id)
        else _no_sweep(args.sweep_id)
    )


def _no_sweep(sweep_id: str) -> int:
    raise KDError(f"no such sweep: {sweep_id!r} (python -m kd sweeps lists them)")


def cmd_resume(args) -> int:
    from kd import runner
    from kd.store import Store

    store = Store()
    run = store.get(args.run_id)
    if run is None:
        raise KDError(f"no such run: {args.run_id!r} (python -m kd runs lists them)")
    if store.sweep_spec(run.id) is not None:
        from kd import jobs, sweep_run

        lease = jobs.claim(store, run.id, jobs.queued_or_resumable, requeue=True, verb="resumed")
        status = sweep_run.run_owned(
            store,
            run.id,
            lease,
            None if args.json else SweepProgress(sweep_run.Sweep.from_dict(run.config, store.sweep_spec(run.id))),
            say=_err,
        )
        return _sweep_finished(store, run.id, status, args.json)
    cfg = RunConfig.from_dict(run.config)
    result = runner.resume_run(store, run.id, progress=None if args.json else Progress(cfg), say=_err)
    return _finished(store, run.id, result, args.json)


def _finished(store, run_id: str, result, as_json: bool) -> int:
    run = store.get(run_id)
    if as_json:
        print(json.dumps(run_json(run)))
    else:
        print(results_table(run.models, run.config))
        print(
            f"\nrun {run_id}: {run.status}{' (' + run.message + ')' if run.message else ''}; "
            f"weights in {store.run_dir(run_id)}"
        )
    return 0 if result.status == "done" else 1


class Progress:
    """Human progress on stderr: one line per epoch, and a line when each stage ends."""

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.speed = 0.0
        self.train_size = 0

    def __call__(self, d: dict) -> None:
        e = events.parse(d)
        title = events.STAGE_TITLES.get(getattr(e, "stage", ""), "")
        if isinstance(e, events.RunStarted):
            self.train_size = e.train_size
            _err(
                f"{self.cfg.dataset}: {e.train_size:,} train / {e.val_size:,} val / "
                f"{e.test_size:,} test examples on {e.device}"
            )
            for note in e.data_notes or []:
                _err(f"  {note}")
        elif isinstance(e, events.StageStarted):
            share = e.train_size if e.train_size is not None else self.train_size
            _err(
                f"{title}: {e.params:,} parameters, {e.epochs} epoch{'s' if e.epochs != 1 else ''}"
                + (f", on {share:,} of the {self.train_size:,} training examples" if share != self.train_size else "")
            )
            if e.teacher_outputs:
                _err(f"  {e.teacher_outputs}")
        elif isinstance(e, events.Step) and e.samples_per_s:
            self.speed = e.samples_per_s
        elif isinstance(e, events.Epoch):
            val = f"  val {100 * e.val_acc:5.1f}%" if e.val_acc is not None else ""
            _err(
                f"  {title:<17} epoch {e.epoch:>3}/{e.epochs}  train {100 * e.train_acc:5.1f}%{val}"
                f"  {e.seconds:6.1f} s  {self.speed:,.0f} samples/s"
                + "".join(f"  {k} {v:.3g}" for k, v in (e.method or {}).items())
            )
        elif isinstance(e, events.StageEnded) and e.status in ("loaded", "stopped", "diverged"):
            _err(f"{title}: {e.status} {e.message}")


def _err(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except OSError:  # the reader went away (`... 2>&1 | head`): the run goes on without its progress lines
        pass


def run_json(run) -> dict:
    from kd.lease import state

    return {
        "run_id": run.id,
        "status": state(run),
        "message": run.message,
        "config": run.config,
        "models": {
            name: {k: m.get(k) for k in JSON_MODEL_KEYS} if m else None
            for name, m in ((n, run.models.get(n)) for n in events.STAGES)
        },
        "summary": run.summary,
    }


def results_table(models: dict, config: dict | None = None) -> str:
    from kd import metrics  # torch: imported only when there are results to show

    head = ("model", "test acc", "params", "size MB", "MFLOPs", "ms @1", "ms @256", "agree", "ECE", "train s")
    rows = [head]
    for name, title in events.STAGE_TITLES.items():
        m = models.get(name)
        if not m:
            rows.append((title, "-", "", "", "", "", "", "", "", ""))
            continue
        rows.append(
            (
                title,
                f"{100 * m['accuracy']:.2f} %",
                f"{m['params']:,}",
                f"{m['size_mb']:.3f}",
                f"{m['flops'] / 1e6:.3f}",
                f"{m['latency_ms']:.3f}",
                f"{m['latency_ms_256']:.2f}",
                "-" if m["agreement"] is None else f"{100 * m['agreement']:.1f} %",
                f"{m['ece']:.3f}",
                f"{m['train_seconds']:.1f}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    said = metrics.headline(models, config)
    if said is not None:
        lines += ["", textwrap.fill(said[1], 100)]
        note = metrics.no_gain_note(models, config)
        if note:
            lines += ["", textwrap.fill(note, 100)]
    return "\n".join(lines)


# -- runs, show, list, worker ------------------------------------------------------------------
def cmd_runs(args) -> int:
    from kd.lease import state
    from kd.store import Store

    runs = Store().runs()
    if args.json:
        print(json.dumps([run_json(r) for r in runs]))
        return 0
    if not runs:
        print("no runs yet: python -m kd train")
        return 0
    for r in runs:
        c = r.config
        acc = "  ".join(
            f"{k[:1]} {100 * r.models[k]['accuracy']:.2f}" if r.models.get(k) else f"{k[:1]} -" for k in events.STAGES
        )
        print(
            f"{r.id}  {state(r):<11} {c['dataset']:<14} {c['teacher']} -> {c['student']}  "
            f"{c['method']} T={c['temperature']:g} a={c['alpha']:g} e={c['epochs']}  {acc}"
        )
    return 0


def cmd_show(args) -> int:
    from kd.store import Store

    run = Store().get(args.run_id)
    if run is None:
        raise KDError(f"no such run: {args.run_id!r} (python -m kd runs lists them)")
    if args.json:
        print(json.dumps(run_json(run)))
        return 0
    from kd.lease import state

    print(f"run {run.id}: {state(run)}" + (f" ({run.message})" if run.message else ""))
    print("config: " + ", ".join(f"{k}={v}" for k, v in run.config.items() if v is not None))
    print(results_table(run.models, run.config))
    return 0


def cmd_list(args) -> int:
    from kd.data import DATASETS
    from kd.methods import METHODS
    from kd.models import MODELS

    registry = {"models": MODELS, "datasets": DATASETS, "methods": METHODS}[args.what]
    width = max(len(k) for k in registry.keys())
    defaults = RunConfig()
    for entry in registry:
        used = getattr(entry.obj, "knobs", ()) if args.what == "methods" else ()
        flags = [
            FIELD_TO_FLAG[k] + (" (off)" if getattr(defaults, k) is False else f" {getattr(defaults, k)}") for k in used
        ]  # each with its default (a switch: off)
        flags += [f"{_flag(name)} {opt.default}" for name, opt in getattr(entry.obj, "options", {}).items()]
        print(f"{entry.key:<{width}}  {entry.description}" + (f" [{', '.join(flags)}]" if flags else ""))
    if args.what == "datasets":
        print(f"{'folder:PATH':<{width}}  your own images, one sub-folder per class (resized to --image-size)")
    return 0


def cmd_worker(args) -> int:
    from kd import jobs  # no torch yet: a run waiting for its turn stays a small process
    from kd.store import Store

    store = Store()
    if store.get(args.run_id) is None:
        raise KDError(f"no such run: {args.run_id!r}")
    if args.resume:
        lease = jobs.claim(store, args.run_id, jobs.queued_or_resumable, requeue=True, verb="resumed")
    else:
        lease = jobs.claim(store, args.run_id, jobs.unclaimed_queued)
    if not jobs.take_turn(store, args.run_id, lease):
        return 0
    from kd import runner  # the run has its turn (it is "running"): run_owned goes straight on

    # A run that has trained before goes on from what it kept, never from scratch over it.
    if store.sweep_spec(args.run_id) is not None:
        from kd import sweep_run

        sweep_run.run_owned(store, args.run_id, lease)
        return 0
    runner.run_owned(store, args.run_id, lease, resuming=args.resume or store.has_events(args.run_id))
    return 0


def cmd_export(args) -> int:
    from kd import export

    result = export.export(args.run_id, args.model, args.format, args.out, int8_too=args.int8)
    if args.json:
        print(json.dumps(result))
        return 0 if result["ok"] else 1
    verdict = "parity ok" if result["ok"] else "PARITY FAILED: do not use this file"
    print(
        f"{result['path']}: {result['format']} ({result['exporter']}), {result['bytes']:,} bytes; "
        f"{verdict}: on {result['test_examples']:,} test examples the largest logit difference is "
        f"{result['max_abs_diff']:.2e} (at most {result['tolerance']:.2g}) and top-1 agrees on "
        f"{100 * result['agreement']:.2f} %; test accuracy {100 * result['accuracy']:.2f} %"
    )
    q = result.get("int8")
    if q:
        print(
            f"{q['path']}: int8 ({q['quantiser']}), {q['bytes']:,} bytes; test accuracy "
            f"{100 * q['accuracy']:.2f} %, top-1 as the fp32 model on {100 * q['agreement']:.2f} %"
        )
    rows = [(rt, lat) for rt, lat in result.get("latency_ms", {}).items()]
    rows += [("int8 onnxruntime", lat) for lat in (q or {}).get("latency_ms", {}).values()]
    if rows:
        print("latency, ms p50 / p95:        batch 1, 1 thread   batch 256, 1 thread   batch 1, all   batch 256, all")
        for runtime, lat in rows:
            cells = [lat[t][f"batch {b}"] for t in ("1 thread", "all threads") for b in (1, 256)]
            print(f"  {runtime:26s} " + "   ".join(f"{c['p50']:8.3f} / {c['p95']:<8.3f}" for c in cells))
    return 0 if result["ok"] else 1


def cmd_standby(args) -> int:
    from kd import jobs, runner, sweep_run  # noqa: F401  (imported now: the run it takes needs them at once)

    return jobs.serve_standby(main)


COMMANDS = {
    "train": cmd_train,
    "resume": cmd_resume,
    "runs": cmd_runs,
    "show": cmd_show,
    "sweep": cmd_sweep,
    "sweeps": cmd_sweeps,
    "show-sweep": cmd_show_sweep,
    "list": cmd_list,
    "worker": cmd_worker,
    "standby": cmd_standby,
    "export": cmd_export,
}
