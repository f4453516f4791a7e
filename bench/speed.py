"""The kd trainer against the seed note's loop, side by side on the same data, pair and batch.

Alternates A/B/A/B: the seed loop (`--baseline`, run as it is) and `python -m kd train` with the
seed's pair (mlp-512-256 -> mlp-128), batch 64, no validation split, on MNIST. Prints the median
seconds per teacher epoch and per distillation epoch, their ratios, both distilled students'
test accuracies (mean over the repeats' seeds), MFU of teacher training (achieved FLOP/s over an
fp32 matmul measured just before each kd run; this shared machine's speed drifts), peak memory
(RSS) of a whole MNIST run, and the same figures for a conv pair
(lenet5 -> lenet5-half, kd trainer only: the seed loop has no conv models).

usage: python bench/speed.py [--baseline ../shared/bench/seed_loop.py] [--data-dir ../shared/data]
                             [--epochs 3] [--repeats 5] [--json]
"""

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
ENV = {**os.environ, "KD_RUNS_DIR": tempfile.mkdtemp(prefix="kd-speed-")}


def seed_loop(path: str, data_dir: str, epochs: int, seed: int) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            path,
            "--data",
            f"mnist:{data_dir}",
            "--epochs",
            str(epochs),
            "--batch",
            "64",
            "--seed",
            str(seed),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    fields = dict(kv.split("=") for kv in out.stdout.split())
    return {
        "teacher_epoch_s": float(fields["teacher_epoch_s"]),
        "distill_epoch_s": float(fields["distill_epoch_s"]),
        "student_acc": float(fields["student_acc"]),
        "teacher_acc": float(fields["teacher_acc"]),
    }


def kd_run(data_dir: str, epochs: int, seed: int, teacher="mlp-512-256", student="mlp-128", extra=()) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "kd",
            "train",
            "--dataset",
            "mnist",
            "--data-dir",
            data_dir,
            "--teacher",
            teacher,
            "--student",
            student,
            "--epochs",
            str(epochs),
            "--teacher-epochs",
            str(epochs),
            "--batch-size",
            "64",
            "--val-fraction",
            "0",
            "--seed",
            str(seed),
            "--device",
            "cpu",
            *extra,
            "--json",
        ],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        check=True,
    )
    m = json.loads(out.stdout)["models"]
    return {
        "teacher_epoch_s": m["teacher"]["train_seconds"] / m["teacher"]["epochs"],
        "distill_epoch_s": m["student"]["train_seconds"] / m["student"]["epochs"],
        "student_acc": m["student"]["accuracy"],
        "teacher_acc": m["teacher"]["accuracy"],
        "teacher_flops": m["teacher"]["flops"],
    }


def matmul_flops(n: int = 2048, device="cpu", mark=time.perf_counter, seconds=lambda a, b: b - a) -> float:
    """fp32 FLOP/s of an n^3 matmul (median of 10, after warm-up); bench/gpu_speed.py passes
    CUDA-event marks."""
    import torch

    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(10):
        start = mark()
        a @ b
        times.append(seconds(start, mark()))
    return 2 * n**3 / statistics.median(times)


def arguments(description: str, repeats: int) -> argparse.ArgumentParser:
    """The flags both benchmarks take (bench/gpu_speed.py adds --device)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--baseline", default=str(ROOT.parent / "shared" / "bench" / "seed_loop.py"))
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=repeats, help="A/B pairs; repeat i uses seed i")
    ap.add_argument("--json", action="store_true")
    return ap


def main() -> None:
    args = arguments(__doc__.splitlines()[0], repeats=5).parse_args()

    # Peak RSS of one whole MNIST run (teacher, student alone, distilled student), measured first
    # so that no other child process can have set the maximum.
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    kd_run(args.data_dir, args.epochs, 0)
    rss_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux: KiB
    if rss_mib * 1024 <= before:
        rss_mib = float("nan")

    seed, ours, peaks = [], [], []
    for i in range(args.repeats):  # A/B/A/B: drifts in machine speed hit both sides alike
        seed.append(seed_loop(args.baseline, args.data_dir, args.epochs, i))
        peaks.append(matmul_flops())  # next to the kd run whose MFU it measures
        ours.append(kd_run(args.data_dir, args.epochs, i))
    n_train = 24_680  # the shared MNIST's training images, all used by both sides
    conv = kd_run(args.data_dir, 1, 0, "lenet5", "lenet5-half")
    out = summarize(seed, ours, peaks, n_train, conv, args)
    out["peak_rss_mib"] = rss_mib
    if args.json:
        print(json.dumps(out))
        return
    print_report(out, f"MNIST, {n_train:,} training images, batch 64, {args.epochs} epochs, {args.repeats} A/B repeats")
    rows = out["per_repeat"]
    ratios = lambda k: ", ".join(f"{r['seed_loop'][k] / r['kd'][k]:.2f}" for r in rows)
    mfus = ", ".join(f"{100 * r['mfu_teacher']:.0f}" for r in rows)
    print(f"per repeat: teacher {ratios('teacher_epoch_s')}x; distill {ratios('distill_epoch_s')}x; MFU {mfus} %")
    print(f"peak RSS of a whole MNIST run: {out['peak_rss_mib']:.0f} MiB")


def summarize(seed: list[dict], ours: list[dict], peaks: list[float], n_train: int, conv: dict, args) -> dict:
    """Medians, ratios, mean accuracies and MFU of the A/B repeats (bench/gpu_speed.py too)."""
    med = lambda rows, k: statistics.median(r[k] for r in rows)
    teacher_flops = 3 * ours[0]["teacher_flops"] * n_train  # forward + backward ~ 3x forward, per epoch
    mfu = [teacher_flops / r["teacher_epoch_s"] / p for r, p in zip(ours, peaks)]
    return {
        "seed_teacher_epoch_s": med(seed, "teacher_epoch_s"),
        "kd_teacher_epoch_s": med(ours, "teacher_epoch_s"),
        "seed_distill_epoch_s": med(seed, "distill_epoch_s"),
        "kd_distill_epoch_s": med(ours, "distill_epoch_s"),
        "teacher_speedup": med(seed, "teacher_epoch_s") / med(ours, "teacher_epoch_s"),
        "distill_speedup": med(seed, "distill_epoch_s") / med(ours, "distill_epoch_s"),
        "seed_student_acc": statistics.mean(r["student_acc"] for r in seed),
        "kd_student_acc": statistics.mean(r["student_acc"] for r in ours),
        "matmul_gflops": statistics.median(peaks) / 1e9,
        "mfu_teacher": statistics.median(mfu),
        "conv_teacher_epoch_s": conv["teacher_epoch_s"],
        "conv_distill_epoch_s": conv["distill_epoch_s"],
        "conv_student_acc": conv["student_acc"],
        "epochs": args.epochs,
        "repeats": args.repeats,
        "per_repeat": [
            {"seed": i, "seed_loop": a, "kd": b, "matmul_gflops": p / 1e9, "mfu_teacher": m}
            for i, (a, b, p, m) in enumerate(zip(seed, ours, peaks, mfu))
        ],
    }


def print_report(out: dict, title: str) -> None:
    """The table both benchmarks print (bench/gpu_speed.py too)."""
    print(title)
    print(f"{'':24}{'seed loop':>12}{'kd':>12}{'ratio':>8}")
    print(
        f"{'s per teacher epoch':24}{out['seed_teacher_epoch_s']:12.3f}{out['kd_teacher_epoch_s']:12.3f}"
        f"{out['teacher_speedup']:7.2f}x"
    )
    print(
        f"{'s per distill epoch':24}{out['seed_distill_epoch_s']:12.3f}{out['kd_distill_epoch_s']:12.3f}"
        f"{out['distill_speedup']:7.2f}x"
    )
    print(f"{'distilled student acc':24}{100 * out['seed_student_acc']:11.2f}%{100 * out['kd_student_acc']:11.2f}%")
    print(
        f"teacher training MFU {100 * out['mfu_teacher']:.1f} % of {out['matmul_gflops']:.0f} GFLOP/s "
        "(fp32 matmul; medians)"
    )
    print(
        f"conv pair lenet5 -> lenet5-half: {out['conv_teacher_epoch_s']:.3f} s per teacher epoch, "
        f"{out['conv_distill_epoch_s']:.3f} s per distill epoch, student acc {100 * out['conv_student_acc']:.2f} %"
    )


if __name__ == "__main__":
    main()
