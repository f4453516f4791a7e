"""bench/speed.py's comparison on one GPU, timed with CUDA events (run by bench/gpu.sh).

The seed loop cannot run on a GPU as it is (its tensors stay on the CPU), so this runs its own
models, loss and DataLoader the way a GPU user of the seed note would: models on the device,
each batch moved there with .to(device), the teacher's forward on every batch. The kd side is
the Trainer itself on the same device, data, pair and batch size. Sides alternate A/B/A/B;
each epoch is timed between CUDA events recorded on the stream, so queued work is counted.

Prints the median seconds per teacher and per distillation epoch, their ratios, both distilled
students' test accuracies, MFU of teacher training (over an fp32 matmul measured here, TF32 off),
peak GPU memory and peak RSS, and the conv pair (lenet5 -> lenet5-half, kd only).

usage: python bench/gpu_speed.py [--baseline ../shared/bench/seed_loop.py] [--data-dir ../shared/data]
                                 [--epochs 3] [--repeats 3] [--device cuda] [--interleave] [--json]
(--device cpu runs the same code with wall-clock timing, to check the script without a GPU.
--interleave alternates the sides epoch by epoch in one process and prints the paired ratios:
on a machine whose speed drifts, each pair sees the same moment.)
"""

import importlib.util
import json
import resource
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kd.config import RunConfig  # noqa: E402
from kd.trainer import Trainer  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from speed import arguments, matmul_flops, print_report, summarize  # noqa: E402


class Clock:
    """Marks on the device's stream (CUDA events) or the host's clock; seconds between marks."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def mark(self):
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def seconds(self, a, b) -> float:
        if not self.cuda:
            return b - a
        b.synchronize()
        return a.elapsed_time(b) / 1000


def seed_module(path: str):
    # The seed's KLDivLoss() uses reduction 'mean' (one of its defects, kept as it is); torch warns.
    warnings.filterwarnings("ignore", message="reduction: 'mean' divides")
    spec = importlib.util.spec_from_file_location("seed_loop", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class SeedLoop:
    """The seed note's train_teacher_model / train_student_model, one epoch per call, with the
    models and each batch on `device` (its DataLoader, models, Adam and loss as they are)."""

    def __init__(self, seed_loop, data, seed: int, device: torch.device):
        from torch.utils.data import DataLoader, TensorDataset

        torch.manual_seed(seed)
        self.seed_loop, self.device = seed_loop, device
        xtr, ytr, self.xte, self.yte = data
        n_cls = int(ytr.max()) + 1
        self.loader = DataLoader(TensorDataset(xtr, ytr), batch_size=64, shuffle=True)
        self.teacher = seed_loop.TeacherModel(xtr.shape[1], n_cls).to(device)
        self.student = seed_loop.StudentModel(xtr.shape[1], n_cls).to(device)
        self.crit = torch.nn.CrossEntropyLoss()
        self.teacher_opt = torch.optim.Adam(self.teacher.parameters(), lr=0.001)
        self.student_opt = torch.optim.Adam(self.student.parameters(), lr=0.001)

    def teacher_epoch(self) -> None:
        self.teacher.train()
        for inputs, targets in self.loader:
            inputs, targets = inputs.to(self.device), targets.to(self.device)
            self.teacher_opt.zero_grad()
            loss = self.crit(self.teacher(inputs), targets)
            loss.backward()
            self.teacher_opt.step()

    def distill_epoch(self) -> None:
        self.student.train()
        self.teacher.eval()
        for inputs, targets in self.loader:
            inputs, targets = inputs.to(self.device), targets.to(self.device)
            self.student_opt.zero_grad()
            s = self.student(inputs)
            with torch.no_grad():
                t = self.teacher(inputs)
            loss = self.seed_loop.distillation_loss(s, targets, t, 3)
            loss.backward()
            self.student_opt.step()

    def accuracy(self, model) -> float:
        return self.seed_loop.accuracy(model, self.xte.to(self.device), self.yte.to(self.device))


def seed_side(seed_loop, data, epochs: int, seed: int, device: torch.device, clock: Clock) -> dict:
    run = SeedLoop(seed_loop, data, seed, device)
    t0 = clock.mark()
    for _ in range(epochs):
        run.teacher_epoch()
    t1 = clock.mark()
    for _ in range(epochs):
        run.distill_epoch()
    t2 = clock.mark()
    return {
        "teacher_epoch_s": clock.seconds(t0, t1) / epochs,
        "distill_epoch_s": clock.seconds(t1, t2) / epochs,
        "student_acc": run.accuracy(run.student),
        "teacher_acc": run.accuracy(run.teacher),
    }


def interleaved(
    seed_loop, data, data_dir: str, epochs: int, seed: int, device: torch.device, clock: Clock
) -> dict[str, list[float]]:
    """Epoch by epoch in turn: each kd epoch is followed by the seed loop's matching epoch, so
    both see the same moment of a machine whose speed drifts. Seconds per epoch, both sides."""
    seed_run = SeedLoop(seed_loop, data, seed, device)
    cfg = RunConfig(
        dataset="mnist",
        data_dir=data_dir,
        epochs=epochs,
        teacher_epochs=epochs,
        batch_size=64,
        val_fraction=0.0,
        seed=seed,
        device=device.type,
    )
    times: dict[str, list[float]] = {"kd_teacher": [], "seed_teacher": [], "kd_distill": [], "seed_distill": []}
    start = [None]

    def emit(event: dict) -> None:
        if event["kind"] == "stage" and event["status"] == "started":
            start[0] = clock.mark()
        elif event["kind"] == "epoch" and event["stage"] in ("teacher", "student"):
            side = "teacher" if event["stage"] == "teacher" else "distill"
            end = clock.mark()
            times[f"kd_{side}"].append(clock.seconds(start[0], end))
            (seed_run.teacher_epoch if side == "teacher" else seed_run.distill_epoch)()
            times[f"seed_{side}"].append(clock.seconds(end, clock.mark()))
            start[0] = clock.mark()  # the kd clock starts again after the seed loop's epoch

    Trainer(cfg, emit=emit).run()
    return times


def kd_side(
    data_dir: str, epochs: int, seed: int, device: str, clock: Clock, teacher="mlp-512-256", student="mlp-128"
) -> dict:
    cfg = RunConfig(
        dataset="mnist",
        data_dir=data_dir,
        teacher=teacher,
        student=student,
        epochs=epochs,
        teacher_epochs=epochs,
        batch_size=64,
        val_fraction=0.0,
        seed=seed,
        device=device,
    )
    marks: dict[str, list] = {}

    def emit(event: dict) -> None:  # called in the training loop's thread, in stream order
        if (event["kind"] == "stage" and event["status"] == "started") or event["kind"] == "epoch":
            marks.setdefault(event["stage"], []).append(clock.mark())

    result = Trainer(cfg, emit=emit).run()
    per_epoch = {k: clock.seconds(m[0], m[-1]) / (len(m) - 1) for k, m in marks.items()}
    return {
        "teacher_epoch_s": per_epoch["teacher"],
        "distill_epoch_s": per_epoch["student"],
        "student_acc": result.metrics["student"]["accuracy"],
        "teacher_acc": result.metrics["teacher"]["accuracy"],
        "teacher_flops": result.metrics["teacher"]["flops"],
    }


def main() -> None:
    ap = arguments(__doc__.splitlines()[0], repeats=3)
    ap.add_argument("--device", default="cuda")
    ap.add_argument(
        "--interleave",
        action="store_true",
        help="alternate the two sides epoch by epoch in one process and print paired ratios",
    )
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_speed.py: no CUDA device here (use --device cpu to check the script)")
    device = torch.device(args.device)
    clock = Clock(device)
    seed_loop = seed_module(args.baseline)
    data = seed_loop.load(f"mnist:{args.data_dir}")
    if args.interleave:
        print_interleaved(
            [interleaved(seed_loop, data, args.data_dir, args.epochs, i, device, clock) for i in range(args.repeats)],
            args.json,
        )
        return

    seed, ours = [], []
    for i in range(args.repeats):  # A/B/A/B
        seed.append(seed_side(seed_loop, data, args.epochs, i, device, clock))
        ours.append(kd_side(args.data_dir, args.epochs, i, args.device, clock))
    torch.backends.cuda.matmul.allow_tf32 = False  # the fp32 rate, not TF32's
    peak = matmul_flops(8192 if device.type == "cuda" else 2048, device, clock.mark, clock.seconds)
    conv = kd_side(args.data_dir, args.epochs, 0, args.device, clock, "lenet5", "lenet5-half")
    n_train = len(data[1])
    out = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        **summarize(seed, ours, [peak] * len(ours), n_train, conv, args),
        "peak_gpu_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if args.json:
        print(json.dumps(out))
        return
    timing = "CUDA events" if device.type == "cuda" else "wall clock"
    print_report(
        out,
        f"{out['device']}: MNIST, {n_train:,} training images, batch 64, {args.epochs} epochs, "
        f"{args.repeats} A/B repeats, {timing}",
    )
    if out["peak_gpu_mib"] is not None:
        print(f"peak GPU memory {out['peak_gpu_mib']:.0f} MiB")
    print(f"peak RSS of this process: {out['peak_rss_mib']:.0f} MiB")


def print_interleaved(runs: list[dict[str, list[float]]], as_json: bool) -> None:
    pairs = {
        side: [s / k for run in runs for s, k in zip(run[f"seed_{side}"], run[f"kd_{side}"])]
        for side in ("teacher", "distill")
    }
    out = {f"{side}_ratio_median": statistics.median(r) for side, r in pairs.items()}
    out.update({f"{side}_ratio_min": min(r) for side, r in pairs.items()})
    out.update({f"{side}_ratio_max": max(r) for side, r in pairs.items()})
    out.update({f"{k}_epoch_s_median": statistics.median(x for run in runs for x in run[k]) for k in runs[0]})
    if as_json:
        print(json.dumps({**out, "runs": runs}))
        return
    print(f"epoch by epoch, {len(pairs['distill'])} pairs per side (seed loop epoch / kd epoch):")
    for side in ("teacher", "distill"):
        print(
            f"  {side:8} median {out[side + '_ratio_median']:.2f}x  (min {out[side + '_ratio_min']:.2f}x, "
            f"max {out[side + '_ratio_max']:.2f}x); seconds: seed {out['seed_' + side + '_epoch_s_median']:.3f}, "
            f"kd {out['kd_' + side + '_epoch_s_median']:.3f}"
        )


if __name__ == "__main__":
    main()
