"""What each part of kd/fastpath.py buys: seconds per epoch with it and without it.

Runs `python -m kd train` on MNIST (the seed note's pair mlp-512-256 -> mlp-128 and the conv pair
lenet5 -> lenet5-half, batch 64, no validation split, cpu) with $KD_FAST_PATH set to every part
("all"), to all but one part, and to "none" (the public path: autograd and optimizer.step()), in
a rotating order so a drift of the machine's speed falls on every variant alike. Prints the
median seconds per teacher epoch and per distillation epoch and each variant's time over the
full fast path's; writes bench/results/fastpath-DATE-TIME.json.

Without the written-out gradient ("adam,mlp") MLPStep has nothing to run on either: that row is
the written-out gradient and MLPStep together.

usage: python bench/fastpath.py [--repeats 4] [--epochs 3] [--pairs mlp conv] [--data-dir ../shared/data]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import record  # noqa: E402

VARIANTS = {
    "all": "every part",
    "mlp,grad": "without Adam's kernel",
    "adam,grad": "without MLPStep",
    "adam,mlp": "without the written-out gradient (and so MLPStep)",
    "none": "the public path",
}
PAIRS = {"mlp": ("mlp-512-256", "mlp-128"), "conv": ("lenet5", "lenet5-half")}


def per_epoch(pair: str, variant: str, args, seed: int) -> dict:
    """Seconds per teacher epoch and per distillation epoch of one CLI run."""
    teacher, student = PAIRS[pair]
    flags = ["--dataset", "mnist", "--data-dir", args.data_dir, "--teacher", teacher, "--student", student]
    flags += ["--epochs", str(args.epochs), "--teacher-epochs", str(args.epochs), "--batch-size", "64"]
    flags += ["--val-fraction", "0", "--device", "cpu", "--seed", str(seed), "--json"]
    with tempfile.TemporaryDirectory(prefix="kd-fastpath-") as runs:
        env = {**os.environ, "KD_RUNS_DIR": runs, "KD_FAST_PATH": variant}
        out = subprocess.run([sys.executable, "-m", "kd", "train", *flags], cwd=ROOT, env=env, capture_output=True)
    if out.returncode != 0:
        raise SystemExit(f"KD_FAST_PATH={variant}: python -m kd train failed:\n{out.stderr.decode()}")
    models = json.loads(out.stdout)["models"]
    return {k: models[k]["train_seconds"] / models[k]["epochs"] for k in ("teacher", "student")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=4, help="runs per variant and pair")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per stage")
    ap.add_argument("--pairs", nargs="+", choices=sorted(PAIRS), default=["mlp", "conv"])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    args = ap.parse_args()
    names = list(VARIANTS)
    runs = {pair: {v: [] for v in names} for pair in args.pairs}
    for rep in range(args.repeats):
        order = names[rep % len(names) :] + names[: rep % len(names)]  # each variant first once in a while
        for pair in args.pairs:
            for variant in order:
                f = per_epoch(pair, variant, args, seed=rep)
                runs[pair][variant].append(f)
                print(
                    f"{pair} {variant:<10} repeat {rep}: teacher {f['teacher']:.3f} s/epoch, "
                    f"distillation {f['student']:.3f} s/epoch",
                    file=sys.stderr,
                    flush=True,
                )
    medians = {
        pair: {v: {k: statistics.median(f[k] for f in fs) for k in ("teacher", "student")} for v, fs in by.items()}
        for pair, by in runs.items()
    }
    print(f"{'':<58}{'teacher epoch':>16}{'distillation epoch':>22}")
    for pair, by in medians.items():
        print(f"{' -> '.join(PAIRS[pair])}")
        full = by["all"]
        for v, m in by.items():
            cells = "".join(
                f"{m[k]:>9.3f} s {m[k] / full[k]:>5.2f}x" + " " * (4 if k == "teacher" else 0)
                for k in ("teacher", "student")
            )
            print(f"  {VARIANTS[v] + f' ({v})':<56}{cells}")
    out = record.write("fastpath", {"epochs": args.epochs, "per_run": runs, "medians": medians})
    print(f"written to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
