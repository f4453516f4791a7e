"""Every registered distillation method on the same teachers and students: test error, 3 seeds.

Three settings (--settings picks some):
- mnist-mlp: MNIST, the seed note's pair mlp-512-256 -> mlp-128, T = 8, alpha 0.9, 20 epochs per
  stage, batch 64, the teacher trained on jittered images (augment "teacher"), cpu;
- mnist-conv: the same with the conv pair lenet5 -> lenet5-half and --epochs-conv epochs per stage
  (teacher and students);
- few-labels: digits, kd.config.FEW_LABELS (the students see 5 % of the images), the default pair,
  T and alpha as RunConfig's defaults.
Per setting and seed the teacher and the student alone are trained once (one run of method none)
and handed to every method's run as finished stages (kd.trainer.Resume), so only the distilled
student trains; the script checks that neither is retrained and that their test accuracies are
the same in every run. For each distilled student it keeps the test error at every epoch (the
trainer's per-epoch checkpoint, evaluated on the test set) and reports it at the final epoch and
at the epoch of best validation accuracy (the first one; never chosen by test). Methods a pair
cannot run (at on MLPs) are shown as such; any other error is kept with its message.

Prints one markdown table per setting and writes every per-seed figure to
bench/results/methods-DATE-TIME.json (command, commit, machine).

usage: python bench/methods.py [--settings mnist-mlp mnist-conv few-labels] [--seeds 0 1 2]
                               [--epochs-conv 10] [--methods kd kd+standardize dkd ...] [--data-dir DIR]
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from kd import data as datasets  # noqa: E402
from kd import metrics, models  # noqa: E402
from kd.config import FEW_LABELS, RunConfig  # noqa: E402
from kd.errors import ConfigError  # noqa: E402
from kd.methods import METHODS  # noqa: E402
from kd.trainer import Resume, Trainer  # noqa: E402

STANDARDIZED = "kd+standardize"  # a row of its own: kd with logit standardisation (Sun et al. 2024)
TITLES = {STANDARDIZED: "kd + standardize"}
SETTING_TITLES = {
    "mnist-mlp": "MNIST, mlp-512-256 -> mlp-128 (T = 8, alpha 0.9, 20 epochs a stage, batch 64, teacher jittered)",
    "mnist-conv": "MNIST, lenet5 -> lenet5-half (T = 8, alpha 0.9, {epochs} epochs a stage, batch 64, "
    "teacher jittered)",
    "few-labels": "digits, few labels (students on 5 %: batch 16, 60 epochs, teacher 10 epochs, lr 3e-3; "
    "T = 4, alpha 0.9)",
}


def row_keys() -> list[str]:
    """kd, kd+standardize, then every other registered method but none, in registry order."""
    keys = [k for k in METHODS.keys() if k != "none"]
    if "kd" in keys:
        keys.insert(keys.index("kd") + 1, STANDARDIZED)
    return keys


def settings(epochs_conv: int, data_dir: str | None) -> dict[str, dict]:
    mnist = dict(
        dataset="mnist",
        data_dir=data_dir,
        temperature=8.0,
        alpha=0.9,
        epochs=20,
        teacher_epochs=20,
        batch_size=64,
        augment="teacher",
        device="cpu",
    )
    return {
        "mnist-mlp": dict(mnist, teacher="mlp-512-256", student="mlp-128"),
        "mnist-conv": dict(
            mnist, teacher="lenet5", student="lenet5-half", epochs=epochs_conv, teacher_epochs=epochs_conv
        ),
        "few-labels": dict(dataset="digits", teacher="mlp-512-256", student="mlp-128", device="cpu", **FEW_LABELS),
    }


def log(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


class Watch:
    """Collects, for the stages asked, the validation accuracy of every epoch (from the events) and
    the test accuracy of every epoch but the last (from the checkpoint the trainer offers at each
    epoch's end); also notes every stage that started training."""

    def __init__(self, cfg: RunConfig, stages: tuple[str, ...], x_test, y_test, spec):
        self.cfg, self.stages, self.x_test, self.y_test, self.spec = cfg, stages, x_test, y_test, spec
        self.val = {s: {} for s in stages}  # stage -> epoch -> val acc
        self.test = {s: {} for s in stages}  # stage -> epoch -> test acc
        self.started: list[str] = []
        self.eval_seconds = 0.0
        self._models = {}

    def emit(self, event: dict) -> None:
        if event.get("kind") == "epoch" and event.get("stage") in self.stages:
            self.val[event["stage"]][event["epoch"]] = event["val_acc"]
        elif event.get("kind") == "stage" and event.get("status") == "started":
            self.started.append(event["stage"])

    def on_checkpoint(self, capture) -> None:
        ckpt = capture()
        if ckpt.stage not in self.stages:
            return
        t0 = time.perf_counter()
        arch = self.cfg.teacher if ckpt.stage == "teacher" else self.cfg.student
        if arch not in self._models:
            self._models[arch] = models.build(arch, self.spec.input_shape, self.spec.num_classes)
        model = self._models[arch]
        model.load_state_dict(ckpt.model)
        with torch.no_grad():
            self.test[ckpt.stage][ckpt.epoch] = metrics.accuracy(metrics.predict(model, self.x_test), self.y_test)
        self.eval_seconds += time.perf_counter() - t0


def curve(watch: Watch, stage: str, final_test: float, epochs_done: int) -> dict:
    """Per-epoch test error (%) and val accuracy of a stage, the final epoch's and the val-chosen one's."""
    test = dict(watch.test[stage])
    test[epochs_done] = final_test
    val = watch.val[stage]
    epochs = sorted(val)
    best = max(epochs, key=lambda e: (val[e], -e)) if epochs else None  # first max of val accuracy
    return {
        "epochs": epochs_done,
        "test_error_per_epoch": [round(100 * (1 - test[e]), 4) if e in test else None for e in epochs],
        "val_acc_per_epoch": [val[e] for e in epochs],
        "final_test_error": 100 * (1 - final_test),
        "val_best_epoch": best,
        "val_best_test_error": 100 * (1 - test[best]) if best in test else None,
    }


def run_setting(name: str, base: dict, seeds: list[int], keys: list[str]) -> dict:
    out = {"config": {k: v for k, v in base.items()}, "seeds": {}}
    spec = datasets.spec(base["dataset"], base.get("data_dir"))
    probe = RunConfig(method="none", **base)
    bundle = datasets.load(probe.dataset, probe.data_dir, probe.val_fraction, probe.image_size)
    x_test, y_test = bundle.x_test, bundle.y_test
    for seed in seeds:
        per_seed: dict = {"methods": {}}
        out["seeds"][str(seed)] = per_seed
        cfg_none = RunConfig(method="none", seed=seed, **base)
        watch = Watch(cfg_none, ("baseline",), x_test, y_test, spec)
        t0 = time.perf_counter()
        result = Trainer(cfg_none, emit=watch.emit, on_checkpoint=watch.on_checkpoint).run()
        wall = time.perf_counter() - t0
        if result.status != "done":
            raise SystemExit(
                f"{name} seed {seed}: the run of method none ended {result.status}: "
                f"{[(k, s.message) for k, s in result.stages.items()]}"
            )
        finished = {
            s: ({k: v.detach().clone() for k, v in result.models[s].state_dict().items()}, result.stages[s])
            for s in ("teacher", "baseline")
        }
        teacher_acc = result.metrics["teacher"]["accuracy"]
        baseline_acc = result.metrics["baseline"]["accuracy"]
        per_seed["teacher"] = {
            "final_test_error": 100 * (1 - teacher_acc),
            "train_seconds": result.stages["teacher"].seconds,
        }
        per_seed["alone"] = {
            **curve(watch, "baseline", baseline_acc, result.stages["baseline"].epochs),
            "train_seconds": result.stages["baseline"].seconds,
        }
        per_seed["none_run_wall_s"] = round(wall, 2)
        log(
            f"[{name} seed {seed}] none run {wall:.1f} s: teacher {per_seed['teacher']['final_test_error']:.2f} %, "
            f"alone {per_seed['alone']['final_test_error']:.2f} % "
            f"(val-chosen epoch {per_seed['alone']['val_best_epoch']}: "
            f"{per_seed['alone']['val_best_test_error']:.2f} %)"
        )
        for key in keys:
            method = "kd" if key == STANDARDIZED else key
            entry: dict = {}
            per_seed["methods"][key] = entry
            t0 = time.perf_counter()
            try:
                cfg = RunConfig(method=method, standardize=key == STANDARDIZED, seed=seed, **base)
                watch = Watch(cfg, ("student",), x_test, y_test, spec)
                res = Trainer(
                    cfg, emit=watch.emit, on_checkpoint=watch.on_checkpoint, resume=Resume(finished=dict(finished))
                ).run()
            except ConfigError as e:
                entry.update(status="refused", error=str(e))
                log(f"[{name} seed {seed}] {key}: refused: {e}")
                continue
            except Exception as e:  # noqa: BLE001  (kept with its message; the other methods go on)
                entry.update(status="error", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
                log(f"[{name} seed {seed}] {key}: ERROR {type(e).__name__}: {e}")
                continue
            wall = time.perf_counter() - t0
            stage = res.stages["student"]
            entry.update(
                status=stage.status,
                message=stage.message,
                wall_s=round(wall, 2),
                train_seconds=round(stage.seconds, 2),
                test_eval_seconds=round(watch.eval_seconds, 2),
                retrained=[s for s in watch.started if s != "student"],
                teacher_same=res.metrics["teacher"]["accuracy"] == teacher_acc,
                alone_same=res.metrics["baseline"]["accuracy"] == baseline_acc,
                **curve(watch, "student", res.metrics["student"]["accuracy"], stage.epochs),
            )
            log(
                f"[{name} seed {seed}] {key}: {entry['final_test_error']:.2f} % final, "
                f"{entry['val_best_test_error']:.2f} % at val-chosen epoch {entry['val_best_epoch']} "
                f"({stage.status}; {wall:.1f} s wall, {stage.seconds:.1f} s training; retrained: "
                f"{entry['retrained'] or 'nothing'}; teacher/alone accuracy unchanged: "
                f"{entry['teacher_same']}/{entry['alone_same']})"
            )
    return out


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def fmt(values: list[float]) -> str:
    m, s = mean_sd(values)
    return f"{m:.2f} ± {s:.2f}"


def table(name: str, res: dict, keys: list[str]) -> tuple[str, dict]:
    """The markdown table of one setting, and its summary figures (means, sds, gap closed)."""
    seeds = list(res["seeds"].values())
    teacher = [s["teacher"]["final_test_error"] for s in seeds]
    alone = [s["alone"]["final_test_error"] for s in seeds]
    alone_val = [s["alone"]["val_best_test_error"] for s in seeds]
    t_mean, a_mean = statistics.mean(teacher), statistics.mean(alone)
    per_seed = lambda xs: " / ".join(f"{x:.2f}" for x in xs)  # noqa: E731
    lines = [
        "| model | test error %, final epoch | test error %, best-val epoch | gap closed (final) | final, per seed |",
        "|---|---|---|---|---|",
        f"| teacher | {fmt(teacher)} | | | {per_seed(teacher)} |",
        f"| student alone | {fmt(alone)} | {fmt(alone_val)} | 0 % | {per_seed(alone)} |",
    ]
    summary = {
        "teacher": mean_sd(teacher),
        "alone": mean_sd(alone),
        "alone_val_chosen": mean_sd(alone_val),
        "methods": {},
    }
    for key in keys:
        entries = [s["methods"].get(key) for s in seeds]
        title = TITLES.get(key, key)
        if any(e is None for e in entries):
            continue
        bad = [e for e in entries if e["status"] in ("refused", "error")]
        if bad:
            conv_only = key == "at" and all(e["status"] == "refused" and "convolutional" in e["error"] for e in bad)
            text = "n/a (conv only)" if conv_only else f"{bad[0]['status']}: {bad[0]['error']}"
            lines.append(f"| {title} | {text} | | | |")
            summary["methods"][key] = {"status": "n/a" if conv_only else bad[0]["status"], "error": bad[0]["error"]}
            continue
        final = [e["final_test_error"] for e in entries]
        chosen = [e["val_best_test_error"] for e in entries]
        gap = (a_mean - statistics.mean(final)) / (a_mean - t_mean) if a_mean != t_mean else float("nan")
        note = "".join(f" ({e['status']} at epoch {e['epochs']})" for e in entries if e["status"] != "done")
        lines.append(f"| {title}{note} | {fmt(final)} | {fmt(chosen)} | {100 * gap:.0f} % | {per_seed(final)} |")
        summary["methods"][key] = {
            "final": mean_sd(final),
            "val_chosen": mean_sd(chosen),
            "gap_closed": gap,
            "val_best_epochs": [e["val_best_epoch"] for e in entries],
        }
    return "\n".join(lines), summary


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.rstrip()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--settings",
        nargs="+",
        default=["mnist-mlp", "mnist-conv", "few-labels"],
        choices=["mnist-mlp", "mnist-conv", "few-labels"],
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs-conv", type=int, default=10, help="epochs per stage of the conv pair (teacher too)")
    p.add_argument("--methods", nargs="+", default=None, help=f"rows to run (default: all): {', '.join(row_keys())}")
    p.add_argument("--data-dir", default=None, help="where MNIST is (torchvision layout); default: kd's")
    args = p.parse_args()
    keys = args.methods or row_keys()
    unknown = [k for k in keys if k not in row_keys()]
    if unknown:
        p.error(f"--methods: unknown {', '.join(unknown)}; known: {', '.join(row_keys())}")
    all_settings = settings(args.epochs_conv, args.data_dir)
    started, stamp = time.time(), time.strftime("%Y-%m-%d-%H%M")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    threads = os.environ.get("OMP_NUM_THREADS")
    result = {
        "command": (f"OMP_NUM_THREADS={threads} " if threads else "")
        + "python bench/methods.py "
        + " ".join(sys.argv[1:]),
        "commit": git("rev-parse", "HEAD"),
        "uncommitted_changes": dirty.splitlines(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        },
        "seeds": args.seeds,
        "methods": keys,
        "settings": {},
        "total_s": None,
    }
    out = ROOT / "bench" / "results" / f"methods-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tables = []
    for name in args.settings:
        t0 = time.time()
        res = run_setting(name, all_settings[name], args.seeds, keys)
        res["wall_s"] = round(time.time() - t0, 1)
        text, summary = table(name, res, keys)
        res["summary"] = summary
        result["settings"][name] = res
        title = SETTING_TITLES[name].format(epochs=args.epochs_conv)
        tables.append(f"### {title}\n\nseeds {', '.join(map(str, args.seeds))}, {res['wall_s']:.0f} s\n\n{text}\n")
        print(tables[-1], flush=True)
        result["total_s"] = round(time.time() - started, 1)
        out.write_text(json.dumps(result, indent=2) + "\n")  # after each setting: a long run keeps what it has
    log(f"total {result['total_s']:.0f} s; written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
