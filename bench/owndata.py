"""Worked examples of a person's own data, end to end through the CLI: a CSV table and an npz of
1-D signals, 3 seeds each; teacher, student alone and distilled student test accuracy.

- The table: scikit-learn's bundled Wisconsin breast cancer set (569 rows, 30 measurements, no
  download) written as a CSV with a text label column `diagnosis` (malignant / benign), as a
  spreadsheet's export would be. `table:FILE --label diagnosis`.
- The signals: an npz of synthetic vibration recordings, (N, 1, 256), three machine states
  (normal: a shaft tone; imbalance: the tone and its second harmonic stronger; bearing fault:
  short rings at a fault frequency), in noise, synthetic (no download), with an x_test of its own. `npz:FILE` with the
  1-D CNNs cnn1d-x1 -> cnn1d-x0.25.

Prints the table and writes bench/results/owndata-DATE-TIME.json; docs/owndata.md cites it.

usage: python bench/owndata.py [--seeds 0 1 2] [--keep DIR]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from record import write  # noqa: E402


def breast_cancer_csv(path: Path) -> Path:
    import pandas as pd
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    df = pd.DataFrame(d.data, columns=d.feature_names)
    df.insert(0, "diagnosis", np.array(d.target_names)[d.target])  # text labels, not in the last column
    df.to_csv(path, index=False)
    return path


def vibration_npz(path: Path, n_train: int = 1200, n_test: int = 300, length: int = 256) -> Path:
    rng = np.random.default_rng(2026)
    n = n_train + n_test
    y = rng.integers(0, 3, n)
    t = np.arange(length) / length
    shaft = rng.uniform(8, 12, (n, 1))  # cycles per recording
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    imbalance = (y == 1)[:, None]
    x = np.where(imbalance, 1.6, 1.0) * np.sin(2 * np.pi * shaft * t + phase)  # a stronger shaft tone ...
    x += np.where(imbalance, 0.6, 0.15) * np.sin(4 * np.pi * shaft * t + 2 * phase)  # ... and second harmonic
    impulses = np.zeros((n, length))
    for i in np.flatnonzero(y == 2):  # a fault: a short decaying ring every period of the fault frequency
        period = int(length / rng.uniform(5, 7))
        for start in range(int(rng.integers(0, period)), length - 8, period):
            impulses[i, start : start + 8] = 2.0 * np.exp(-np.arange(8) / 2) * np.sin(np.arange(8) * 2.5)
    x = (x + impulses + rng.normal(0, 0.5, (n, length))).astype(np.float32)[:, None, :]
    names = np.array(["normal", "imbalance", "bearing fault"])
    np.savez(path, x=x[:n_train], y=names[y[:n_train]], x_test=x[n_train:], y_test=names[y[n_train:]])
    return path


CASES = {
    "csv": lambda d: (
        ["--dataset", f"table:{breast_cancer_csv(d / 'breast-cancer.csv')}", "--label", "diagnosis"]
        + ["--epochs", "30", "--teacher", "mlp-512-256", "--student", "mlp-128"]
    ),
    "npz": lambda d: (
        ["--dataset", f"npz:{vibration_npz(d / 'vibration.npz')}", "--epochs", "20"]
        + ["--teacher", "cnn1d-x1", "--student", "cnn1d-x0.25"]
    ),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--keep", help="write the example files here (default: a temporary folder)")
    args = ap.parse_args()
    files = Path(args.keep or tempfile.mkdtemp(prefix="kd-owndata-"))
    files.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "KD_RUNS_DIR": tempfile.mkdtemp(prefix="kd-owndata-runs-")}
    out = {}
    for case, flags_of in CASES.items():
        flags = flags_of(files)
        runs = []
        for seed in args.seeds:
            cmd = [sys.executable, "-m", "kd", "train", *flags, "--seed", str(seed), "--device", "cpu", "--json"]
            done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
            result = json.loads(done.stdout)
            runs.append({m: result["models"][m]["accuracy"] * 100 for m in ("teacher", "baseline", "student")})
        summary = {
            m: (statistics.mean(r[m] for r in runs), statistics.stdev(r[m] for r in runs) if len(runs) > 1 else 0.0)
            for m in ("teacher", "baseline", "student")
        }
        out[case] = {
            "command": "python -m kd train " + " ".join(flags),
            "seeds": args.seeds,
            "runs": runs,
            "mean_std": summary,
        }
        print(f"{case}: python -m kd train {' '.join(flags)}")
        for m, title in (("teacher", "teacher"), ("baseline", "student alone"), ("student", "distilled student")):
            mean, std = summary[m]
            print(f"  {title:18s} {mean:6.2f} ± {std:.2f} %  (" + ", ".join(f"{r[m]:.2f}" for r in runs) + ")")
    path = write("owndata", out)
    print(f"written to {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
