"""A sweep's students in lockstep against the same cells one after another, alternated in one run.

usage: python bench/sweep.py [--data-dir ../shared/data] [--skip-mnist] [--cli-sample N] [--repeats N] [--json]

Two grids of 4 temperatures x 3 alphas x 3 seeds (36 students each), each trained by
kd.sweep.SweepTrainer both ways in this process, alternated (lockstep, sequential, then
sequential, lockstep, ...) after one untimed lockstep warm-up, `--repeats` times each way on
digits and 2 fewer (at least 2) on MNIST; each way's figure is the median of its runs:
(a) the default pair (mlp-512-256 -> mlp-128) on digits, 10 epochs: small steps, bound by the
    work around each step, which lockstep shares (`lockstep_speedup`, target >= 5);
(b) the seed pair on MNIST, 3 epochs: steps bound by arithmetic (`mnist_lockstep_speedup`, and
    `mnist_lockstep_mfu`: the lockstep students' training FLOP/s over an fp32 matmul's, measured
    in the same run, target >= 0.6).
Both: `max_cell_acc_diff` (test accuracy of a (cell, seed) between the two ways, points),
seconds per cell each way (the sweep's whole wall time over its 36 students, teacher included),
`cells_speedup` (the students alone and distilled only: the sweep with its teacher reused) and
`peak_rss_mib`. `cli_speedup`: grid (a) against its cells as separate `python -m kd train`
runs, timed on `--cli-sample` of them (default 4) and scaled to 36. Writes
bench/results/sweep-DATE-TIME.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402
from record import write  # noqa: E402
from speed import matmul_flops  # noqa: E402

from kd import metrics, models  # noqa: E402
from kd.cli import train_argv  # noqa: E402
from kd.config import RunConfig  # noqa: E402
from kd.sweep import Sweep, SweepTrainer  # noqa: E402

GRID = {"temperature": [1.0, 2.0, 4.0, 8.0], "alpha": [0.5, 0.7, 0.9]}
SEEDS = (0, 1, 2)


def one_way(base: RunConfig, mode: str) -> dict:
    """Train the grid one way; the wall time, each (cell, seed)'s test accuracy, and the time the
    distilled students' groups took."""
    accuracy: dict[str, float] = {}
    trainer = None

    def on_member(cell, seed, end, alone):
        x, y = trainer.bundle.x_test, trainer.bundle.y_test
        accuracy[f"{cell}/{seed}"] = metrics.accuracy(metrics.predict(end.model, x), y)

    trainer = SweepTrainer(Sweep(base, GRID, SEEDS, max_group=64, mode=mode), on_member=on_member)
    start = time.perf_counter()
    status = trainer.run()
    seconds = time.perf_counter() - start
    assert status == "done", status
    student = [s for stage, s in trainer.timings if stage == "student"]
    return {
        "seconds": seconds,
        "student_seconds": sum(student),
        "cells_seconds": sum(s for _, s in trainer.timings),  # students alone and distilled: no teacher
        "accuracy": accuracy,
        "n_train": len(trainer.trainer.y_train),
    }


def compare(base: RunConfig, name: str, repeats: int) -> dict:
    runs = {"lockstep": [], "sequential": []}
    one_way(base, "lockstep")  # warm-up, not timed: first calls, caches, the data set read once
    for r in range(repeats):
        for mode in ("lockstep", "sequential") if r % 2 == 0 else ("sequential", "lockstep"):
            runs[mode].append(one_way(base, mode))
            print(f"  {name} {mode}: {runs[mode][-1]['seconds']:.2f} s", file=sys.stderr)
    median = lambda mode, key: statistics.median(r[key] for r in runs[mode])
    cells = len(runs["lockstep"][0]["accuracy"])
    diff = max(
        abs(a["accuracy"][k] - b["accuracy"][k])
        for a in runs["lockstep"]
        for b in runs["sequential"]
        for k in a["accuracy"]
    )
    return {
        "speedup": median("sequential", "seconds") / median("lockstep", "seconds"),
        "students_speedup": median("sequential", "student_seconds") / median("lockstep", "student_seconds"),
        "cells_speedup": median("sequential", "cells_seconds") / median("lockstep", "cells_seconds"),
        "teacher_seconds": median("lockstep", "seconds") - median("lockstep", "cells_seconds"),
        "seconds_per_cell": {m: median(m, "seconds") / cells for m in runs},
        "seconds_per_cell_distilled_only": {m: median(m, "student_seconds") / cells for m in runs},
        "max_cell_acc_diff": 100 * diff,
        "cells": cells,
        "student_seconds_lockstep": median("lockstep", "student_seconds"),
        "n_train": runs["lockstep"][0]["n_train"],
    }


def cli_seconds(base: RunConfig, sample: int) -> float:
    """Seconds for `sample` cells of grid (a) as separate `python -m kd train` runs."""
    cfgs = [
        base.replace(temperature=t, alpha=a, seed=s) for t in GRID["temperature"] for a in GRID["alpha"] for s in SEEDS
    ][:sample]
    with tempfile.TemporaryDirectory() as runs:
        env = {**os.environ, "KD_RUNS_DIR": runs}
        start = time.perf_counter()
        for cfg in cfgs:
            subprocess.run(
                [sys.executable, "-m", "kd", *train_argv(cfg), "--json"],
                env=env,
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
        return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--skip-mnist", action="store_true")
    ap.add_argument("--cli-sample", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5, help="timed runs each way on digits (MNIST: 2 fewer)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out: dict = {"grid": GRID, "seeds": list(SEEDS)}
    digits = RunConfig(epochs=10)
    a = compare(digits, "digits", args.repeats)
    out["digits"] = a
    out["lockstep_speedup"] = a["speedup"]
    sample = max(1, min(args.cli_sample, 36))
    cli = cli_seconds(digits, sample) * 36 / sample
    out["cli_seconds_36_cells"] = cli
    out["cli_sample"] = sample
    out["cli_speedup"] = cli / (a["seconds_per_cell"]["lockstep"] * a["cells"])
    out["max_cell_acc_diff"] = a["max_cell_acc_diff"]
    if not args.skip_mnist:
        mnist = RunConfig(dataset="mnist", data_dir=args.data_dir, epochs=3, teacher_epochs=3)
        b = compare(mnist, "mnist", max(2, args.repeats - 2))
        out["mnist"] = b
        out["mnist_lockstep_speedup"] = b["speedup"]
        student = models.build(mnist.student, (1, 28, 28), 10)
        flops = 3 * metrics.flops_per_example(student, (1, 28, 28)) * b["n_train"] * mnist.epochs * b["cells"]
        peak = matmul_flops()
        out["matmul_gflops"] = peak / 1e9
        out["mnist_lockstep_gflops"] = flops / b["student_seconds_lockstep"] / 1e9
        out["mnist_lockstep_mfu"] = flops / b["student_seconds_lockstep"] / peak
        out["max_cell_acc_diff"] = max(a["max_cell_acc_diff"], b["max_cell_acc_diff"])
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["threads"] = torch.get_num_threads()
    path = write("sweep", out)
    if args.json:
        print(json.dumps(out))
    else:
        print(json.dumps({k: v for k, v in out.items() if not isinstance(v, dict)}, indent=1))
    print(f"written: {path.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
