"""The trainer's stages, events, determinism, frozen teacher, stop, divergence, checkpoints."""

import math
import re

import pytest
import torch

from kd import runner
from kd.config import RunConfig
from kd.errors import ConfigError
from kd.store import Store
from kd.trainer import Trainer, pick_device

TINY = dict(dataset="digits", epochs=2, teacher_epochs=2, batch_size=128, device="cpu")


def run(cfg, **kw):
    events = []
    result = Trainer(cfg, emit=events.append, **kw).run()
    return result, events


def test_three_stages_emit_every_kind_of_event():
    result, events = run(RunConfig(**TINY))
    assert result.status == "done"
    assert set(result.models) == {"teacher", "baseline", "student"}
    stages = [(e["stage"], e["status"]) for e in events if e["kind"] == "stage"]
    assert stages == [(s, st) for s in ("teacher", "baseline", "student") for st in ("started", "done")]
    steps = [e for e in events if e["kind"] == "step"]
    distilled = [e for e in steps if e["stage"] == "student"]
    assert {"loss", "loss_ce", "loss_soft", "lr", "samples_per_s", "epoch", "step"} <= set(distilled[0])
    assert distilled[-1]["loss"] == pytest.approx(distilled[-1]["loss_ce"] + distilled[-1]["loss_soft"])
    assert "loss_soft" not in [e for e in steps if e["stage"] == "baseline"][0]  # student alone: CE only
    assert distilled[-1]["lr"] < distilled[0]["lr"]  # cosine decay
    epochs = [e for e in events if e["kind"] == "epoch"]
    assert len(epochs) == 6 and all(0 <= e["train_acc"] <= 1 and 0 <= e["val_acc"] <= 1 for e in epochs)
    reports = {e["model"]: e for e in events if e["kind"] == "metrics"}
    assert set(reports) == {"teacher", "baseline", "student"}
    for name, m in result.metrics.items():
        assert 0.2 < m["accuracy"] <= 1, (name, m["accuracy"])  # well above chance (0.1) after two short epochs
        assert m["params"] > 0 and m["flops"] > 0 and m["latency_ms"] > 0 and m["size_mb"] > 0
        assert m["epochs"] == 2 and m["train_seconds"] > 0
    assert result.metrics["teacher"]["agreement"] is None and 0 < result.metrics["student"]["agreement"] <= 1
    assert result.summary["compression"] > 10  # 167,178 vs 9,610 parameters on 8x8 digits


def test_deterministic_on_cpu():
    cfg = RunConfig(**TINY, seed=3)
    (a, ea), (b, eb) = run(cfg), run(cfg)
    strip = lambda evs: [
        {
            k: v
            for k, v in e.items()
            if k not in ("samples_per_s", "seconds", "latency_ms", "latency_ms_256", "train_seconds")
        }
        for e in evs
        if e["kind"] in ("step", "epoch", "metrics")
    ]
    assert strip(ea) == strip(eb)
    for name in a.models:
        assert a.metrics[name]["accuracy"] == b.metrics[name]["accuracy"]
        for (k, v), (_, w) in zip(a.models[name].state_dict().items(), b.models[name].state_dict().items()):
            assert torch.equal(v, w), (name, k)
    other, _ = run(RunConfig(**TINY, seed=4))
    assert any(
        not torch.equal(v, w)
        for v, w in zip(a.models["student"].state_dict().values(), other.models["student"].state_dict().values())
    )


def test_teacher_is_frozen_while_students_train():
    snapshots = {}

    def on_stage_end(stage, model, result):
        snapshots[stage] = {k: v.clone() for k, v in model.state_dict().items()}

    result, _ = run(RunConfig(**TINY, teacher="hinton-1200", student="hinton-800"), on_stage_end=on_stage_end)
    teacher = result.models["teacher"]
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, snapshots["teacher"][k]), k


def test_baseline_and_distilled_student_start_from_the_same_weights_and_differ_after():
    cfg = RunConfig(**TINY)
    trainer = Trainer(cfg)
    result = trainer.run()
    b, s = result.models["baseline"].state_dict(), result.models["student"].state_dict()
    assert any(not torch.equal(b[k], s[k]) for k in b)  # KD changed the path of training
    same_init = Trainer(cfg.replace(method="none")).run()  # method none: the same as the baseline
    for k in b:
        assert torch.equal(same_init.models["student"].state_dict()[k], b[k])


def test_stop_request_between_batches_keeps_partial_results():
    calls = {"n": 0}

    def should_stop():
        calls["n"] += 1
        return calls["n"] > 25  # during the student-alone stage (teacher: 2 epochs x 12 batches)

    result, events = run(RunConfig(**TINY), should_stop=should_stop)
    assert result.status == "stopped"
    assert result.stages["teacher"].status == "done" and result.stages["baseline"].status == "stopped"
    assert "student" not in result.models
    assert set(result.metrics) == {"teacher", "baseline"}  # partial results are measured and kept
    assert events[-1] == {"kind": "run", "status": "stopped", "summary": result.summary}


def test_divergence_ends_the_stage_at_the_first_non_finite_loss_and_keeps_finite_weights():
    result, events = run(RunConfig(**TINY, optimizer="sgd", lr=10.0, teacher="hinton-1200"))
    assert result.status == "diverged"
    stage = result.stages["teacher"]
    assert stage.status == "diverged" and "lower lr" in stage.message, stage.message
    bad_step = int(re.search(r"at step (\d+)", stage.message).group(1))
    steps = [e for e in events if e["kind"] == "step"]
    assert all(math.isfinite(e["loss"]) for e in steps) and all(e["step"] < bad_step for e in steps)
    assert "kept the" in stage.message  # the weights of the last finished epoch (or the initial ones)
    teacher = result.models["teacher"]
    assert all(torch.isfinite(p).all() for p in teacher.state_dict().values())
    assert 0 <= result.metrics["teacher"]["accuracy"] <= 1 and result.metrics["teacher"]["status"] == "diverged"
    assert "baseline" not in result.models


def test_teacher_checkpoint_is_loaded_instead_of_trained(runs_dir):
    store = Store()
    cfg = RunConfig(**TINY)
    first_id, first = runner.train_new(store, cfg)
    path = str(store.weights_path(first_id, "teacher"))
    result, events = run(cfg.replace(teacher_checkpoint=path))
    assert result.stages["teacher"].status == "loaded"
    assert not any(e["kind"] == "step" and e["stage"] == "teacher" for e in events)
    assert result.metrics["teacher"]["accuracy"] == first.metrics["teacher"]["accuracy"]
    with pytest.raises(ConfigError, match="teacher_checkpoint: .* does not fit teacher 'hinton-1200'"):
        Trainer(cfg.replace(teacher="hinton-1200", teacher_checkpoint=path)).run()


def test_a_pickle_checkpoint_is_refused_without_being_run(tmp_path):
    bad = tmp_path / "evil.safetensors"
    bad.write_bytes(b"\x80\x04\x95" + b"cos\nsystem\n" * 10)
    with pytest.raises(ConfigError, match="teacher_checkpoint: .* is not a readable safetensors file"):
        Trainer(RunConfig(**TINY, teacher_checkpoint=str(bad))).run()


def test_a_pair_that_does_not_fit_is_refused_before_training():
    with pytest.raises(ConfigError, match="student: lenet5-half needs images of at least"):
        Trainer(RunConfig(**TINY, student="lenet5-half")).run()
    with pytest.raises(ConfigError, match="teacher: resnet20 needs images"):
        Trainer(RunConfig(**{**TINY, "dataset": "moons"}, teacher="resnet20")).run()


def test_device_choice():
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type in ("cuda", "mps", "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="device: cuda is not available here"):
            pick_device("cuda")


def test_random_shift_moves_whole_pixels_and_repeats_edges():
    from kd.data import random_shift

    x = torch.arange(25.0).reshape(1, 1, 5, 5).repeat(64, 1, 1, 1)
    y = random_shift(x, 1, torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    values = set(torch.unique(y).tolist())
    assert values <= set(range(25))  # nearest sampling: no blurred values
    shifted = [
        (dy, dx)
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
        if any(torch.equal(y[i, 0, 1:4, 1:4], x[0, 0, 1 + dy : 4 + dy, 1 + dx : 4 + dx]) for i in range(64))
    ]
    assert len(shifted) == 9  # every offset in [-1, 1]^2 occurs among 64 images
    again = random_shift(x, 1, torch.Generator().manual_seed(0))
    assert torch.equal(y, again)


def test_augmenting_every_stage_asks_the_teacher_each_batch():
    result, _ = run(RunConfig(**{**TINY, "epochs": 1, "teacher_epochs": 1}, augment="all"))
    assert result.status == "done" and set(result.models) == {"teacher", "baseline", "student"}
    teacher_only, _ = run(RunConfig(**{**TINY, "epochs": 1, "teacher_epochs": 1}, augment="teacher"))
    plain, _ = run(RunConfig(**{**TINY, "epochs": 1, "teacher_epochs": 1}))
    # Students never see shifted images with augment="teacher": the student alone matches a plain run's
    # when the teacher is the only thing that changed.
    for k, v in teacher_only.models["baseline"].state_dict().items():
        assert torch.equal(v, plain.models["baseline"].state_dict()[k])
    assert any(
        not torch.equal(v, plain.models["teacher"].state_dict()[k])
        for k, v in teacher_only.models["teacher"].state_dict().items()
    )


def test_the_teacher_runs_once_on_the_training_set_unless_inputs_are_augmented(monkeypatch):
    """Unaugmented: the teacher's outputs are cached before the students train, and no distillation
    step runs it. augment="all": every distillation step asks it about its own shifted batch."""
    from kd import models

    stage, calls = ["none"], []
    real_build = models.build

    def build(arch, *a, **kw):
        model = real_build(arch, *a, **kw)
        if arch == "mlp-512-256":  # the teacher here; the student is mlp-128
            model.register_forward_pre_hook(lambda m, args: calls.append((stage[0], len(args[0]))))
        return model

    monkeypatch.setattr(models, "build", build)

    def emit(event):
        if event["kind"] == "stage":  # "started", then "done": the test-set report comes after
            stage[0] = event["stage"] if event["status"] == "started" else "after " + event["stage"]
            if event["stage"] == "student" and event["status"] == "started":
                steps.append(event["steps_per_epoch"])

    for augment in ("none", "all"):
        calls.clear()
        steps = []
        cfg = RunConfig(
            **{**TINY, "epochs": 1, "teacher_epochs": 1}, teacher="mlp-512-256", student="mlp-128", augment=augment
        )
        Trainer(cfg, emit=emit).run()
        during = [n for s, n in calls if s == "student"]
        if augment == "none":
            assert during == []
            assert any(s == "teacher" and n > cfg.batch_size for s, n in calls)  # the one pass over train
        else:
            assert len(during) == steps[0] and max(during) <= cfg.batch_size


def test_augment_needs_images():
    with pytest.raises(ConfigError, match="augment: random shifts need images; moons has 2 features"):
        Trainer(RunConfig(**{**TINY, "dataset": "moons"}, augment="teacher")).run()


@pytest.mark.parametrize("user_set", [False, True])
def test_small_cpu_steps_train_on_one_thread_and_a_user_setting_wins(monkeypatch, user_set):
    """The students' steps (mlp-128 on digits: 1.2 M multiply-adds a batch) run on one thread, the
    teacher's (mlp-512-256: 21 M) on as many as before; the count is put back after each stage.
    OMP_NUM_THREADS, when the user set it, is never overridden."""
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    if user_set:
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
    else:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = {}
        Trainer(
            RunConfig(**TINY),
            emit=lambda e: e["kind"] == "step" and seen.setdefault(e["stage"], set()).add(torch.get_num_threads()),
        ).run()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    students = {2} if user_set else {1}
    assert seen == {"teacher": {2}, "baseline": students, "student": students}


def test_students_learn_from_their_share_and_the_few_labels_demo_shows_a_gain():
    """FEW_LABELS: the teacher trains on all 1,293 training images, both students on the same
    63; with so few labels the distilled student beats the student alone (seed 0: +2.8 points)."""
    from kd.config import FEW_LABELS

    result, events = run(RunConfig(**FEW_LABELS, device="cpu"))
    sizes = {e["stage"]: e["train_size"] for e in events if e["kind"] == "stage" and e["status"] == "started"}
    assert sizes == {"teacher": 1293, "baseline": 63, "student": 63}
    acc = {k: m["accuracy"] for k, m in result.metrics.items()}
    assert acc["student"] - acc["baseline"] >= 0.02, acc
    assert acc["teacher"] > acc["student"]
