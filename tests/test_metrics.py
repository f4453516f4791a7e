"""Metrics against values that can be worked out by hand."""

import pytest
import torch
from torch import nn

from kd import metrics


def test_accuracy_and_agreement():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 1.0], [0.0, 1.0]])
    assert metrics.accuracy(logits, torch.tensor([0, 1, 1, 1])) == pytest.approx(0.75)
    other = torch.tensor([[2.0, 1.0], [3.0, 0.0], [5.0, 1.0], [3.0, 1.0]])
    assert metrics.agreement(logits, other) == pytest.approx(0.5)


def test_params_size_and_flops_of_a_linear_layer():
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    assert metrics.param_count(model) == 7850
    # safetensors: 7850 float32 = 31,400 bytes plus a small JSON header
    assert 31_400 / 1e6 < metrics.size_mb(model) < 32_000 / 1e6
    assert metrics.flops_per_example(model, (1, 28, 28)) == 2 * 784 * 10  # a multiply-add counts 2


def test_flops_grow_with_the_model():
    small = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    big = nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
    assert metrics.flops_per_example(big, (64,)) == 2 * (64 * 256 + 256 * 10)
    assert metrics.flops_per_example(small, (64,)) < metrics.flops_per_example(big, (64,))


def test_latency_is_positive_and_larger_for_a_bigger_batch():
    model = nn.Sequential(nn.Linear(256, 1024), nn.ReLU(), nn.Linear(1024, 10))
    one, many = metrics.latency_ms(model, (256,), 1), metrics.latency_ms(model, (256,), 256)
    assert 0 < one < many


def test_latency_quartiles_are_ordered_and_their_median_is_the_latency():
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
    (q1, median, q3) = metrics.latency_quartiles({"m": model}, (64,), 32)["m"]
    assert 0 < q1 <= median <= q3
    # A run keeps them beside its median, for the Results chart's whiskers.
    from kd.config import RunConfig
    from kd.trainer import Trainer

    result = Trainer(RunConfig(epochs=1, teacher_epochs=1, batch_size=256, device="cpu")).run()
    for report in result.metrics.values():
        low, mid, high = report["latency_ms_256_quartiles"]
        assert low <= mid == report["latency_ms_256"] <= high


def test_latencies_are_timed_in_turn_on_one_thread_and_the_count_is_put_back():
    calls = []
    pair = {
        "big": nn.Sequential(nn.Linear(256, 1024), nn.ReLU(), nn.Linear(1024, 10)),
        "small": nn.Sequential(nn.Linear(256, 16), nn.ReLU(), nn.Linear(16, 10)),
    }
    for name, m in pair.items():
        m.register_forward_pre_hook(lambda mod, args, name=name: calls.append((name, torch.get_num_threads())))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        ms = metrics.latencies_ms(pair, (256,), 64, budget_s=0.05)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert {n for _, n in calls} == {1}
    timed = [name for name, _ in calls[4:]]  # after two warm-up passes each
    assert len(timed) >= 10 and timed == ["big", "small"] * (len(timed) // 2)  # round robin
    assert 0 < ms["small"] < ms["big"]


def test_calibration_of_hand_made_predictions():
    # Two examples at confidence 0.85 (one right), two at 0.65 (both right).
    p = torch.tensor([[0.85, 0.15], [0.85, 0.15], [0.65, 0.35], [0.35, 0.65]])
    logits, y = p.log(), torch.tensor([0, 1, 0, 1])
    bins = metrics.reliability_bins(logits, y, n_bins=10)
    assert sum(b["count"] for b in bins) == 4
    high = next(b for b in bins if b["lo"] < 0.85 <= b["hi"])
    assert high["count"] == 2 and high["accuracy"] == pytest.approx(0.5) and high["confidence"] == pytest.approx(0.85)
    # ECE = 2/4 * |0.5 - 0.85| + 2/4 * |1.0 - 0.65| = 0.35
    assert metrics.expected_calibration_error(logits, y, n_bins=10) == pytest.approx(0.35, abs=1e-6)


def test_confusion_matrix_rows_are_true_classes():
    logits = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    assert metrics.confusion_matrix(logits, torch.tensor([0, 1, 2, 2]), 3) == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]


def test_run_summary():
    models = {
        "teacher": {"accuracy": 0.98, "params": 1000, "latency_ms_256": 4.0},
        "baseline": {"accuracy": 0.90, "params": 100, "latency_ms_256": 1.0},
        "student": {"accuracy": 0.95, "params": 100, "latency_ms_256": 1.0},
    }
    s = metrics.run_summary(models)
    assert s["gain"] == pytest.approx(0.05) and s["kept"] == pytest.approx(0.95 / 0.98)
    assert s["compression"] == pytest.approx(10) and s["speedup"] == pytest.approx(4)
    assert metrics.run_summary({"teacher": models["teacher"]})["gain"] is None


def _three(teacher: float, alone: float, distilled: float, n: int = 400) -> dict:
    """Three models' reports on n test examples: accuracy and a confusion matrix that sums to n."""
    model = lambda acc: {"accuracy": acc, "confusion": [[round(acc * n), 0], [n - round(acc * n), 0]]}
    return {"teacher": model(teacher), "baseline": model(alone), "student": model(distilled)}


def test_headline_weighs_the_gain_against_the_test_sets_noise():
    # 400 examples near 94 %: two standard errors of the difference are about 3.3 points.
    assert metrics.noise(_three(0.97, 0.94, 0.94)) == pytest.approx(2 * (2 * 0.94 * 0.06 / 400) ** 0.5)
    tone, said = metrics.headline(_three(0.97, 0.94, 0.925))  # 6 of 400 fewer: within the noise
    assert tone == "neutral" and said.startswith("No clear difference: -1.50 points") and "±3.55 points" in said
    tone, said = metrics.headline(_three(0.97, 0.80, 0.90))
    assert tone == "good" and said.startswith("Distillation paid: +10.00 points")
    tone, said = metrics.headline(_three(0.97, 0.90, 0.80))
    assert tone == "bad" and said.startswith("Distillation cost accuracy: -10.00 points")
    assert metrics.headline(_three(0.97, 0.80, 0.90), {"method": "none"})[0] == "neutral"  # nothing distilled
    assert metrics.headline({"teacher": _three(0.9, 0.9, 0.9)["teacher"]}) is None


def test_no_gain_note_says_why_in_two_sentences_and_speaks_only_of_this_run():
    hot = metrics.no_gain_note(_three(0.97, 0.90, 0.89), {"method": "kd", "temperature": 4.0})
    assert hot.startswith("At T\u00a0=\u00a04 the soft term asks the student to match the teacher's")
    assert hot.count(". ") == 1 and hot.endswith("shows where distillation pays, and by how much.")
    # A teacher within the noise of the student alone is named as the reason, whatever T.
    flat = metrics.no_gain_note(_three(0.945, 0.94, 0.94), {"method": "kd", "temperature": 4.0})
    assert "it knows little that the labels do not already say" in flat
    assert "soft term" not in metrics.no_gain_note(_three(0.97, 0.90, 0.89), {"method": "kd", "temperature": 1.0})
    # Nothing measured on other data (MNIST, spirals, the few-labels demo) under this run's results.
    assert not any(word in hot for word in ("MNIST", "spirals", "seeds", "demo"))
    # It paid, or nothing was distilled, or a model is missing: no note.
    assert metrics.no_gain_note(_three(0.97, 0.80, 0.90)) is None
    assert metrics.no_gain_note(_three(0.97, 0.94, 0.94), {"method": "none"}) is None
    assert metrics.no_gain_note({"teacher": _three(0.9, 0.9, 0.9)["teacher"]}) is None
