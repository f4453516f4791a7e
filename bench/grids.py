"""The Home page's evidence: a T x alpha grid over 3 seeds for each one-click demo, by the CLI.

usage: python bench/grids.py [--seeds 0,1,2]

Runs `python -m kd sweep --temperature 1,2,4,8 --alpha 0.5,0.7,0.9 --seeds ... --json` on the
quick demo's config (every default) and on the few-labels demo's, in a temporary run store, and
writes bench/results/grids-DATE-TIME.json: for each demo its base config and the sweep's JSON
(cells with accuracy and gain, mean and std over the seeds). kd/results.py reads the newest file;
the Home page draws each grid and takes its demo's T and alpha from a cell that pays.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from record import write  # noqa: E402

from kd.cli import train_argv  # noqa: E402
from kd.config import FEW_LABELS, RunConfig  # noqa: E402

GRID = ["--temperature", "1,2,4,8", "--alpha", "0.5,0.7,0.9"]
DEMOS = {"quick": RunConfig(), "few_labels": RunConfig(**FEW_LABELS)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args()
    out = {"grid": GRID, "seeds": args.seeds, "demos": {}}
    for name, cfg in DEMOS.items():
        flags = train_argv(cfg)[1:]  # the demo's own flags, then the grid's
        with tempfile.TemporaryDirectory() as runs:
            start = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "kd", "sweep", *flags, *GRID, "--seeds", args.seeds, "--json"],
                cwd=ROOT,
                env={**os.environ, "KD_RUNS_DIR": runs},
                capture_output=True,
                text=True,
                check=True,
            )
            seconds = time.perf_counter() - start
        result = json.loads(done.stdout)
        out["demos"][name] = {"config": cfg.to_dict(), "seconds": seconds, "sweep": result}
        best = max(result["cells"], key=lambda c: c["gain_mean"])
        print(
            f"{name}: {seconds:.0f} s; best {best['params']}: "
            f"{100 * best['gain_mean']:+.2f} ± {100 * best['gain_std']:.2f} points"
        )
    print(f"written: {write('grids', out).relative_to(ROOT)}")


if __name__ == "__main__":
    main()
