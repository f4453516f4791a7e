"""Two commits' trainers, interleaved: did a change make an epoch slower?

Checks out BEFORE in a temporary git worktree and runs `python -m kd train` from it and from this
working tree in turn (ABBA order, so a drift of this shared machine's speed falls on both), on
MNIST with the seed note's pair and `kd`, and compares the seconds per distillation epoch (and
per teacher epoch). Prints the medians and their ratio; writes bench/results/commits-DATE-TIME.json
(command, commits, machine, every figure).

usage: python bench/commits.py BEFORE [--repeats 4] [--epochs 5] [--data-dir ../shared/data] [-- TRAIN FLAGS]
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def per_epoch(tree: Path, flags: list[str], seed: int) -> dict:
    """Seconds per epoch of the teacher and of the distilled student, from one CLI run's JSON."""
    with tempfile.TemporaryDirectory(prefix="kd-commits-") as runs:
        out = subprocess.run(
            [sys.executable, "-m", "kd", "train", *flags, "--seed", str(seed), "--json"],
            cwd=tree,
            capture_output=True,
            text=True,
            env={**os.environ, "KD_RUNS_DIR": runs},
        )
    if out.returncode != 0:
        raise SystemExit(f"{tree}: python -m kd train failed:\n{out.stderr}")
    models = json.loads(out.stdout)["models"]
    return {k: models[k]["train_seconds"] / models[k]["epochs"] for k in ("teacher", "student")}


def main() -> int:
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", help="the commit to compare this working tree against")
    ap.add_argument("--repeats", type=int, default=4, help="runs per side")
    ap.add_argument("--epochs", type=int, default=5, help="epochs per stage")
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    args, extra = ap.parse_args(argv[:split]), argv[split + 1 :]
    flags = [
        "--dataset",
        "mnist",
        "--data-dir",
        args.data_dir,
        "--epochs",
        str(args.epochs),
        "--teacher-epochs",
        str(args.epochs),
        "--val-fraction",
        "0",
        "--device",
        "cpu",
        *extra,
    ]
    before = git("rev-parse", "--short", args.before)
    after = git("rev-parse", "--short", "HEAD") + (
        "+changes" if git("status", "--porcelain", "--untracked-files=no") else ""
    )
    figures: dict[str, list[dict]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="kd-before-") as tmp:
        old = Path(tmp) / "tree"
        git("worktree", "add", "--detach", str(old), args.before)
        try:
            for rep in range(args.repeats):
                order = [("before", old), ("after", ROOT)]
                for side, tree in order if rep % 2 == 0 else order[::-1]:
                    figures[side].append(per_epoch(tree, flags, rep))
                    f = figures[side][-1]
                    print(
                        f"{side:<6} repeat {rep}: teacher {f['teacher']:.3f} s/epoch, distillation "
                        f"{f['student']:.3f} s/epoch",
                        file=sys.stderr,
                        flush=True,
                    )
        finally:
            git("worktree", "remove", "--force", str(old))
    medians = {
        side: {k: statistics.median(f[k] for f in figures[side]) for k in ("teacher", "student")} for side in figures
    }
    ratios = {k: medians["after"][k] / medians["before"][k] for k in ("teacher", "student")}
    print(f"{'':<28}{before:>12}{after:>16}   after / before")
    for k, title in (("teacher", "s per teacher epoch"), ("student", "s per distillation epoch")):
        print(f"{title:<28}{medians['before'][k]:>12.3f}{medians['after'][k]:>16.3f}   {ratios[k]:.3f}")
    result = {
        "command": "python bench/commits.py " + " ".join(sys.argv[1:]),
        "before": before,
        "after": after,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{platform.platform()}, {os.cpu_count()} cores, python {platform.python_version()}",
        "train_flags": flags,
        "per_repeat": figures,
        "medians": medians,
        "after_over_before": ratios,
    }
    out = ROOT / "bench" / "results" / f"commits-{time.strftime('%Y-%m-%d-%H%M')}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
