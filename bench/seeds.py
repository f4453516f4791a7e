"""Repeat one `python -m kd train` over several seeds and print test error as mean ± std.

usage: python bench/seeds.py --seeds 0 1 2 -- --dataset mnist --data-dir ../shared/data --temperature 8 ...
Everything after `--` goes to `python -m kd train` unchanged (with --seed and --json added); the
runs go to a temporary run store. Prints a markdown table and writes every per-seed figure to
bench/results/seeds-DATE-TIME.json (command, commit, machine, date, each run's config, test
errors and seconds, and the summary), which docs/benchmarks.md and the Home page cite.
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
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TITLES = {"teacher": "teacher", "baseline": "student alone", "student": "distilled student"}


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.rstrip()


def torch_version() -> str | None:
    try:
        return version("torch")
    except PackageNotFoundError:
        return None


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def main() -> int:
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args, train_args = ap.parse_args(argv[:split]), argv[split + 1 :]
    threads = os.environ.get("OMP_NUM_THREADS")
    result = {
        "command": (f"OMP_NUM_THREADS={threads} " if threads else "") + "python bench/seeds.py " + " ".join(argv),
        "commit": git("rev-parse", "HEAD"),
        "uncommitted_changes": git("status", "--porcelain", "--untracked-files=no").splitlines(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch_version(),
            "OMP_NUM_THREADS": threads,
        },
        "seeds": args.seeds,
        "train_args": train_args,
        "runs": {},  # seed -> the run's config, each model's test error % and train seconds, wall seconds
        "summary": None,
    }
    errors = {k: [] for k in TITLES}
    with tempfile.TemporaryDirectory(prefix="kd-seeds-") as runs_dir:
        for seed in args.seeds:
            t0 = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-m", "kd", "train", *train_args, "--seed", str(seed), "--json"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                env={**os.environ, "KD_RUNS_DIR": runs_dir},
            )
            wall = time.perf_counter() - t0
            if out.returncode != 0:
                print(out.stderr, file=sys.stderr)
                return out.returncode
            run = json.loads(out.stdout)
            for k in TITLES:
                errors[k].append(100 * (1 - run["models"][k]["accuracy"]))
            result["runs"][str(seed)] = {
                "config": run["config"],
                "test_error": {k: errors[k][-1] for k in TITLES},
                "train_seconds": {k: run["models"][k]["train_seconds"] for k in TITLES},
                "wall_s": round(wall, 2),
            }
            print(
                f"seed {seed}: run {run['run_id']}, {wall:.1f} s  "
                + "  ".join(f"{TITLES[k]} {errors[k][-1]:.2f} %" for k in TITLES),
                file=sys.stderr,
                flush=True,
            )
    gain = [b - s for b, s in zip(errors["baseline"], errors["student"])]
    result["summary"] = {
        "test_error": {k: mean_sd(errors[k]) for k in TITLES},  # (mean, sd) over seeds, %
        "gain_points": gain,  # per seed: the student alone's test error minus the distilled student's
    }
    print(f"| model | test error % (mean ± std over seeds {', '.join(map(str, args.seeds))}) |")
    print("|---|---|")
    for k, title in TITLES.items():
        m, sd = result["summary"]["test_error"][k]
        print(f"| {title} | {m:.2f} ± {sd:.2f} |")
    print(
        f"\ndistillation lowered the student's error by {statistics.mean(gain):.2f} points on average "
        f"(per seed: {', '.join(f'{g:+.2f}' for g in gain)})"
    )
    path = ROOT / "bench" / "results" / f"seeds-{time.strftime('%Y-%m-%d-%H%M')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {path.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
