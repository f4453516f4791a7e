"""Repeat one `python -m kd train` over several seeds and print test error as mean ± std.

usage: python bench/seeds.py --seeds 0 1 2 -- --dataset mnist --data-dir ../shared/data --temperature 8 ...
Everything after `--` goes to `python -m kd train` unchanged (with --seed and --json added).
"""

import argparse
import json
import statistics
import subprocess
import sys

TITLES = {"teacher": "teacher", "baseline": "student alone", "student": "distilled student"}


def main() -> int:
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args, train_args = ap.parse_args(argv[:split]), argv[split + 1 :]
    errors = {k: [] for k in TITLES}
    for seed in args.seeds:
        out = subprocess.run(
            [sys.executable, "-m", "kd", "train", *train_args, "--seed", str(seed), "--json"],
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            return out.returncode
        run = json.loads(out.stdout)
        for k in TITLES:
            errors[k].append(100 * (1 - run["models"][k]["accuracy"]))
        print(
            f"seed {seed}: run {run['run_id']}  " + "  ".join(f"{TITLES[k]} {errors[k][-1]:.2f} %" for k in TITLES),
            file=sys.stderr,
            flush=True,
        )
    print(f"| model | test error % (mean ± std over seeds {', '.join(map(str, args.seeds))}) |")
    print("|---|---|")
    for k, title in TITLES.items():
        sd = statistics.stdev(errors[k]) if len(errors[k]) > 1 else 0.0
        print(f"| {title} | {statistics.mean(errors[k]):.2f} ± {sd:.2f} |")
    gain = [b - s for b, s in zip(errors["baseline"], errors["student"])]
    print(
        f"\ndistillation lowered the student's error by {statistics.mean(gain):.2f} points on average "
        f"(per seed: {', '.join(f'{g:+.2f}' for g in gain)})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
