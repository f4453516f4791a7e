"""Taps and features: every architecture declares where features can be taken, forward hooks
take them, and the teacher's side is computed once within KD_MAX_CACHE_MB or per batch."""

import math

import pytest
import torch
from torch import nn

from kd import features, models
from kd.config import RunConfig
from kd.errors import ConfigError
from kd.methods import METHODS, build, check
from kd.methods.fitnet import adapter
from kd.teacher import TeacherSide
from kd.trainer import Trainer

IMAGES = (3, 32, 32)


@pytest.mark.parametrize("key", models.MODELS.keys())
def test_every_architecture_declares_taps_in_order_of_depth_and_an_embedding(key):
    shape = (1, 28, 28) if key in ("lenet5", "lenet5-half") else (1, 64) if key.startswith("cnn1d") else IMAGES
    model = models.check_built(key, shape, 10)
    found = features.shapes(model, shape)
    assert list(found)[-1] == models.EMBEDDING
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    if key == "mobilenet_v3_small":  # its pooled features, before the head's hidden layer and dropout
        assert found[models.EMBEDDING] == (576, 1, 1)
    else:
        assert found[models.EMBEDDING] == (last.in_features,)
    stages = features.stages(model)
    assert len(stages) >= 1 and features.pick(model, "middle", "student") in stages
    if key.startswith(("mlp", "hinton")):
        assert features.conv_stages(model, shape) == [] and all(len(found[s]) == 1 for s in stages)
    elif key.startswith("cnn1d"):  # signals: (C, L) maps that shrink, no 2-D maps for attention transfer
        assert features.conv_stages(model, shape) == [] and all(len(found[s]) == 2 for s in stages)
        assert [found[s][1] for s in stages] == sorted((found[s][1] for s in stages), reverse=True)
    else:  # conv models: feature maps that shrink (or keep their size) with depth
        conv = features.conv_stages(model, shape)
        assert len(conv) >= 2
        sides = [found[s][1] for s in conv]
        assert sides == sorted(sides, reverse=True)


def test_a_tap_keeps_what_the_layer_computed_and_closing_it_gives_the_mlp_its_fast_step_back():
    from kd.fastpath import MLPStep

    torch.manual_seed(0)
    model = models.build("mlp-512-256", (64,), 10)
    x = torch.randn(5, 64)
    with features.Tap(model, ["hidden1", "embedding"]) as tap:
        assert MLPStep.of(model) is None  # hooks: autograd serves the step
        model(x)
        want = torch.relu(model[1](x))
        torch.testing.assert_close(tap.out["hidden1"], want)
        torch.testing.assert_close(tap.out["embedding"], torch.relu(model[3](want)))
    assert MLPStep.of(model) is not None
    with pytest.raises(ConfigError, match="has no tap 'layer2'; its taps: hidden1, hidden2, embedding"):
        features.Tap(model, ["hidden1", "layer2"], "student mlp-512-256")
    assert MLPStep.of(model) is not None  # the refusal left no hook behind


@pytest.mark.parametrize(
    "student,teacher",
    [
        ((8, 16, 16), (16, 16, 16)),
        ((8, 16, 16), (16, 8, 8)),
        ((8, 8, 8), (16, 16, 16)),
        ((8, 10, 10), (16, 6, 6)),
        ((8, 4, 4), (16, 12, 12)),
        ((128,), (16, 8, 8)),
        ((8, 4, 4), (256,)),
        ((128,), (256,)),
    ],
)
def test_fitnets_adapter_maps_any_student_hint_onto_the_teachers_shape(student, teacher):
    r = adapter(student, teacher)
    out = r(torch.randn(4, *student))
    assert out.shape[1:] == (teacher if len(student) == 3 and len(teacher) == 3 else (math.prod(teacher),))


def test_the_teachers_side_is_cached_when_it_fits_and_said_how_big(monkeypatch):
    torch.manual_seed(0)
    teacher = models.build("cnn-x0.5", (1, 8, 8), 10).eval().requires_grad_(False)
    student = models.build("cnn-x0.25", (1, 8, 8), 10)
    method = build(RunConfig(method="at", teacher="cnn-x0.5", student="cnn-x0.25"))
    method.bind(student, teacher, (1, 8, 8))
    x = torch.randn(300, 1, 8, 8)
    side = TeacherSide(method, teacher)
    side.cache(x)
    # AT keeps the teacher's attention maps (one value per position), not its feature maps
    assert set(side.features) == set(method.taps["teacher"])
    assert all(v.shape == (300, 16) or v.shape == (300, 4) for v in side.features.values())
    assert "teacher outputs computed once for 300 examples: logits 10" in side.note and "block" in side.note
    logits, feats = side.batch(x[:7])
    torch.testing.assert_close(side.logits[:7], logits)
    for k in feats:
        torch.testing.assert_close(side.features[k][:7], feats[k])
    monkeypatch.setenv("KD_MAX_CACHE_MB", "0")
    small = TeacherSide(method, teacher)
    small.cache(x)
    assert small.features is None and small.needs_teacher_per_batch
    assert "exceed KD_MAX_CACHE_MB (0): the teacher runs on each batch" in small.note


def test_a_feature_method_trains_the_same_with_its_teacher_features_cached_or_computed_per_batch(monkeypatch):
    cfg = RunConfig(
        method="fitnet", teacher="cnn-x0.5", student="cnn-x0.25", epochs=2, teacher_epochs=1, device="cpu", seed=4
    )
    events = []
    cached = Trainer(cfg, emit=events.append).run()
    note = next(
        e["teacher_outputs"]
        for e in events
        if e["kind"] == "stage" and e.get("stage") == "student" and e["status"] == "started"
    )
    assert note.startswith("teacher outputs computed once for 1,293 examples") and "block2" in note
    monkeypatch.setenv("KD_MAX_CACHE_MB", "0")
    per_batch = Trainer(cfg).run()
    for k, v in cached.models["student"].state_dict().items():
        torch.testing.assert_close(per_batch.models["student"].state_dict()[k], v, rtol=1e-4, atol=1e-5)


def test_a_method_the_pair_cannot_run_is_refused_before_training_naming_the_method_and_the_model():
    with pytest.raises(
        ConfigError, match="at \\(attention transfer\\) needs convolutional feature maps; the student mlp-128 has none"
    ):
        check(RunConfig(method="at"), (1, 8, 8), 10)
    with pytest.raises(ConfigError, match="the teacher mlp-512-256 has none"):
        check(RunConfig(method="at", student="cnn-x0.25"), (1, 8, 8), 10)
    with pytest.raises(ConfigError) as e:
        check(RunConfig(method="fitnet", options={"fitnet_teacher_tap": "layer3"}), (1, 8, 8), 10)
    assert e.value.knob == "fitnet_teacher_tap" and "teacher mlp-512-256 has no tap 'layer3'" in e.value.message
    with pytest.raises(ConfigError, match="standardize.*logit methods \\(kd, dkd, dist, ctkd\\), not of method 'rkd'"):
        RunConfig(method="rkd", standardize=True)
    with pytest.raises(ConfigError, match="rkd compares every triple.*at most 256, got 512"):
        check(RunConfig(method="rkd", batch_size=512), (1, 8, 8), 10)
    bound = check(RunConfig(method="at", teacher="cnn-x1", student="lenet5-half"), (1, 28, 28), 10)
    assert bound.taps == {"student": ("conv1", "conv2"), "teacher": ("block2", "block3")}
    assert "conv2↔block3" in bound.formula()[1]


def test_eight_methods_with_the_papers_in_their_docstrings():
    import importlib

    assert len(METHODS.keys()) >= 8
    for key in ("kd", "dkd", "dist", "ctkd", "fitnet", "at", "rkd", "none"):
        assert key in METHODS.keys()
    for name in ("hinton", "dkd", "dist", "ctkd", "fitnet", "at", "rkd"):
        doc = importlib.import_module(f"kd.methods.{name}").__doc__
        assert any(year in doc for year in ("2015", "2017", "2019", "2022", "2023")), name
