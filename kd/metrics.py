"""What the results page and the CLI table compare: accuracy, size, FLOPs, latency,
teacher-student agreement and calibration, per model; and per run, what distillation bought."""

from __future__ import annotations

import copy
import math
import statistics
import time
from contextlib import contextmanager

import torch
from safetensors.torch import save as safetensors_bytes
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from kd.events import STAGES


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch_size: int = 2048) -> Tensor:
    """Logits (N, K) in eval mode, computed in chunks so big test sets fit in memory."""
    was_training = model.training
    model.eval()
    out = torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]) if len(x) else None
    model.train(was_training)
    return out.float() if out is not None else torch.empty(0)


def accuracy(logits: Tensor, targets: Tensor) -> float:
    return float((logits.argmax(1) == targets).float().mean()) if len(targets) else float("nan")


def agreement(logits_a: Tensor, logits_b: Tensor) -> float:
    """Share of examples on which two models predict the same class (top-1)."""
    return float((logits_a.argmax(1) == logits_b.argmax(1)).float().mean())


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def state_dict_for_saving(model: nn.Module) -> dict[str, Tensor]:
    """Contiguous CPU copies (safetensors refuses shared or strided storage)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def size_mb(model: nn.Module) -> float:
    """Size of the weights saved as safetensors, in MB (10^6 bytes), buffers included."""
    return len(safetensors_bytes(state_dict_for_saving(model))) / 1e6


def flops_per_example(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Forward FLOPs for one example (a multiply-add counts 2), by torch.utils.flop_counter."""
    model = copy.deepcopy(model).to("cpu").eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, *input_shape))
    return int(counter.get_total_flops())


@contextmanager
def threads(n: int | None):
    """torch's intra-op threads set to n (None: unchanged) for the block, then put back."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def latencies_ms(models: dict[str, nn.Module], input_shape: tuple[int, ...], batch_size: int, **timing) -> dict:
    """Median CPU wall time of one forward pass on a batch, in ms, per model (latency_quartiles)."""
    quartiles = latency_quartiles(models, input_shape, batch_size, **timing)
    return {name: q[1] for name, q in quartiles.items()}


@torch.no_grad()
def latency_quartiles(
    models: dict[str, nn.Module],
    input_shape: tuple[int, ...],
    batch_size: int,
    budget_s: float = 0.75,
    max_rounds: int = 50,
) -> dict[str, tuple[float, float, float]]:
    """CPU wall time of one forward pass on a batch, in ms, per model, after warm-up: its first
    quartile, median and third quartile over the timed rounds.

    On one thread, and the models timed in turn, round after round: a busy moment (the
    dashboard's browser drawing, another run) then slows every model alike instead of one. Timed
    one model after another on several threads, a busy moment fell on one model only and made
    the speed-up on the results page many times what it was."""
    copies = {name: copy.deepcopy(m).to("cpu").eval() for name, m in models.items()}
    x = torch.randn(batch_size, *input_shape, generator=torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {name: [] for name in copies}
    with threads(1):
        first = 0.0
        for m in copies.values():
            t0 = time.perf_counter()
            m(x)  # warm-up: allocator, lazy init, oneDNN primitive creation
            first += time.perf_counter() - t0
            m(x)
        for _ in range(int(min(max_rounds, max(5, budget_s / max(first, 1e-6))))):
            for name, m in copies.items():
                t0 = time.perf_counter()
                m(x)
                times[name].append(time.perf_counter() - t0)
    return {name: tuple(q * 1e3 for q in _quartiles(t)) for name, t in times.items()}


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return (values[0],) * 3
    q1, median, q3 = statistics.quantiles(values, n=4)
    return q1, median, q3


def latency_ms(model: nn.Module, input_shape: tuple[int, ...], batch_size: int, budget_s: float = 0.25) -> float:
    """latencies_ms for one model."""
    return latencies_ms({"model": model}, input_shape, batch_size, budget_s=budget_s)["model"]


def reliability_bins(logits: Tensor, targets: Tensor, n_bins: int = 15) -> list[dict[str, float]]:
    """Per equal-width confidence bin (lo, hi]: count, mean confidence, accuracy."""
    probs = torch.softmax(logits.float(), dim=1)
    confidence, predicted = probs.max(dim=1)  # (N,), (N,)
    correct = (predicted == targets).float()
    edges = torch.linspace(0, 1, n_bins + 1)
    index = torch.bucketize(confidence, edges[1:-1])  # boundaries[i-1] < c <= boundaries[i]
    out = []
    for b in range(n_bins):
        mask = index == b
        count = int(mask.sum())
        out.append(
            {
                "lo": float(edges[b]),
                "hi": float(edges[b + 1]),
                "count": count,
                "confidence": float(confidence[mask].mean()) if count else 0.0,
                "accuracy": float(correct[mask].mean()) if count else 0.0,
            }
        )
    return out


def expected_calibration_error(logits: Tensor, targets: Tensor, n_bins: int = 15) -> float:
    """ECE: over confidence bins, |accuracy - confidence| weighted by the bin's share of examples."""
    bins = reliability_bins(logits, targets, n_bins)
    n = sum(b["count"] for b in bins)
    return sum(b["count"] / n * abs(b["accuracy"] - b["confidence"]) for b in bins) if n else float("nan")


def confusion_matrix(logits: Tensor, targets: Tensor, num_classes: int) -> list[list[int]]:
    """counts[true][predicted]."""
    flat = targets.long() * num_classes + logits.argmax(1)
    return torch.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes).tolist()


def model_report(
    model: nn.Module,
    test_logits: Tensor,
    targets: Tensor,
    teacher_logits: Tensor | None,
    input_shape: tuple[int, ...],
    num_classes: int,
    latency: tuple[float, float],
) -> dict:
    """Every per-model figure of the results table (plain floats and lists, JSON-ready).
    `latency`: (ms at batch 1, ms at batch 256), measured with the other models (latencies_ms)."""
    return {
        "accuracy": accuracy(test_logits, targets),
        "params": param_count(model),
        "size_mb": size_mb(model),
        "flops": flops_per_example(model, input_shape),
        "latency_ms": latency[0],
        "latency_ms_256": latency[1],
        "agreement": agreement(test_logits, teacher_logits) if teacher_logits is not None else None,
        "ece": expected_calibration_error(test_logits, targets),
        "reliability": reliability_bins(test_logits, targets),
        "confusion": confusion_matrix(test_logits, targets, num_classes),
    }


def run_summary(models: dict[str, dict]) -> dict[str, float | None]:
    """What distillation bought: gain over the student alone, share of the teacher's accuracy
    kept, and how much smaller (parameters) and faster (batch-256 CPU latency, one thread) than the teacher."""
    t, b, s = (models.get(k) for k in STAGES)

    def ratio(num, den):
        return num / den if num is not None and den else None

    return {
        "gain": s["accuracy"] - b["accuracy"] if s and b else None,
        "kept": ratio(s and s["accuracy"], t and t["accuracy"]),
        "compression": ratio(t and t["params"], s and s["params"]),
        "speedup": ratio(t and t["latency_ms_256"], s and s["latency_ms_256"]),
    }


def noise(models: dict[str, dict]) -> float | None:
    """How far apart two equally good models' test accuracies land by chance on this test set:
    two standard errors of the difference of the student alone's and the distilled student's
    accuracies on its n examples (unpaired, so on the safe side). None without both."""
    b, s = models.get("baseline"), models.get("student")
    if not (b and s and s.get("confusion")):
        return None
    n = sum(map(sum, s["confusion"]))
    if not n:
        return None
    pb, ps = b["accuracy"], s["accuracy"]
    return 2 * math.sqrt((pb * (1 - pb) + ps * (1 - ps)) / n) or 1 / n  # 100 % both: one example


def headline(models: dict[str, dict], config: dict | None = None) -> tuple[str, str] | None:
    """One sentence that is true for this run, and its tone ("good", "neutral" or "bad"): the
    distilled student against the same student trained alone, the difference weighed against
    this test set's noise (noise()); then what it keeps of the teacher at what size. None
    without the three models."""
    config = config or {}
    t, b, s = (models.get(k) for k in STAGES)
    band = noise(models)
    if not (t and b and s) or band is None:
        return None
    gain = s["accuracy"] - b["accuracy"]
    pts = f"{100 * gain:+.2f} points"
    band_txt = f"±{100 * band:.2f} points"
    keeps = (
        f"it keeps {100 * s['accuracy'] / t['accuracy']:.1f} % of the teacher's accuracy with "
        f"{t['params'] / s['params']:.1f}× fewer parameters."
        if t["accuracy"] and s.get("params") and t.get("params")
        else ""
    )
    tail = f"; {keeps}" if keeps else "."
    if config.get("method") == "none":
        return "neutral", f"Method none: both students trained alone, {pts} apart (noise {band_txt}){tail}"
    if gain > band:
        return (
            "good",
            f"Distillation paid: {pts} over the same student trained alone, beyond the noise of {band_txt}{tail}",
        )
    if gain < -band:
        return (
            "bad",
            f"Distillation cost accuracy: {pts} against the same student alone, beyond the noise of {band_txt}{tail}",
        )
    return (
        "neutral",
        f"No clear difference: {pts} against the same student trained alone, within the noise of {band_txt}{tail}",
    )


def no_gain_note(models: dict[str, dict], config: dict | None = None) -> str | None:
    """Where distillation did not clearly pay (headline() is not "good"): why this run likely
    went so and what to try, in two sentences at most, from this run's own numbers and settings.
    None when it paid, for method none, or when a model is missing."""
    config = config or {}
    said = headline(models, config)
    if said is None or said[0] == "good" or config.get("method") == "none":
        return None
    t, b = models["teacher"], models["baseline"]
    lead = t["accuracy"] - b["accuracy"]
    T = config.get("temperature", 1.0)
    if lead <= (noise(models) or 0):
        why = (
            f"The teacher is only {100 * lead:+.2f} points above the student alone: it knows little "
            "that the labels do not already say."
        )
    elif config.get("method") == "kd" and T > 1:
        why = (
            f"At T\u00a0=\u00a0{T:g} the soft term asks the student to match the teacher's whole "
            "distribution, which a short run learns more slowly than the labels."
        )
    else:
        why = f"The teacher is {100 * lead:.2f} points above the student alone, so there is something to learn."
    return why + " A sweep of T and α on this data shows where distillation pays, and by how much."
