"""What a deployed student costs and keeps: the seed pair and a conv pair trained on MNIST, their
distilled students exported to ONNX (with an int8 copy) and pt2, each checked against PyTorch on
the 10,000 test images, then timed: p50 / p95 ms at batch 1 and 256, one thread and every core,
in PyTorch eager, onnxruntime (fp32 and int8) and the torch.export program.

Prints a table per pair and writes bench/results/export-DATE-TIME.json; docs/export.md cites it.

usage: python bench/export.py [--data-dir ../shared/data] [--epochs 5]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from record import write  # noqa: E402

PAIRS = {"seed pair (MLP)": ("hinton-1200", "hinton-800"), "conv pair": ("lenet5", "lenet5-half")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--epochs", type=int, default=5)
    args = ap.parse_args()
    env = {**os.environ, "KD_RUNS_DIR": tempfile.mkdtemp(prefix="kd-export-")}
    kd = lambda *a: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "kd", *a, "--json"], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    out = {}
    for title, (teacher, student) in PAIRS.items():
        flags = ["--dataset", "mnist", "--data-dir", args.data_dir, "--teacher", teacher, "--student", student]
        flags += ["--epochs", str(args.epochs), "--temperature", "8", "--device", "cpu"]
        run = json.loads(kd("train", *flags).stdout)
        onnx = json.loads(kd("export", run["run_id"], "--format", "onnx", "--int8").stdout)
        pt2 = json.loads(kd("export", run["run_id"], "--format", "pt2").stdout)
        out[title] = {"train": "python -m kd train " + " ".join(flags), "onnx": onnx, "pt2": pt2}
        print(f"{title}: {teacher} -> {student}, distilled student")
        print(
            f"  fp32 ONNX: {onnx['bytes']:,} bytes, test accuracy {100 * onnx['accuracy']:.2f} %, parity "
            f"{'ok' if onnx['ok'] else 'FAILED'} (largest logit difference {onnx['max_abs_diff']:.1e})"
        )
        q = onnx["int8"]
        print(
            f"  int8 ONNX: {q['bytes']:,} bytes, test accuracy {100 * q['accuracy']:.2f} %, same top-1 as fp32 on "
            f"{100 * q['agreement']:.2f} % ({q['quantiser']})"
        )
        print(f"  pt2: {pt2['bytes']:,} bytes, parity {'ok' if pt2['ok'] else 'FAILED'}")
        rows = {
            "PyTorch eager": onnx["latency_ms"]["pytorch"],
            "onnxruntime fp32": onnx["latency_ms"]["onnxruntime"],
            "onnxruntime int8": q["latency_ms"]["onnxruntime"],
            "torch.export (pt2)": pt2["latency_ms"]["pytorch (torch.export)"],
        }
        print(
            "  ms p50 / p95        batch 1, 1 thread   batch 256, 1 thread   batch 1, all cores   batch 256, all cores"
        )
        for runtime, lat in rows.items():
            cells = [lat[t][f"batch {b}"] for t in ("1 thread", "all threads") for b in (1, 256)]
            print(f"  {runtime:19s} " + "   ".join(f"{c['p50']:8.3f} / {c['p95']:<8.3f}" for c in cells))
    path = write("export", out)
    print(f"written to {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
