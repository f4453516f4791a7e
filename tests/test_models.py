"""kd.models: every architecture builds, runs, or refuses a shape with a FitError naming it."""

import pytest
import torch

from kd import models
from kd.errors import FitError, UnknownKeyError
from kd.models import MODELS, build, check_fit, param_count

TABULAR, SIGNAL, DIGITS, MNIST, CIFAR = (2,), (2, 64), (1, 8, 8), (1, 28, 28), (3, 32, 32)
SHAPES = [TABULAR, SIGNAL, DIGITS, MNIST, CIFAR]
MLPS = {"mlp-512-256", "mlp-128", "hinton-1200", "hinton-800"}
LENETS = {"lenet5", "lenet5-half"}


def accepts(key, shape):
    if key in MLPS:
        return True
    if key.startswith("cnn1d-"):  # 1-D convolutions: signals (C, L) only
        return len(shape) == 2
    if len(shape) != 3:
        return False
    return key not in LENETS or shape[1] >= 12


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("key", MODELS.keys())
def test_builds_and_runs_or_refuses(key, shape):
    num_classes = 3 if shape in (DIGITS, CIFAR) else 10  # both class counts get exercised
    if not accepts(key, shape):
        with pytest.raises(FitError, match=key):
            build(key, shape, num_classes)
        with pytest.raises(FitError, match=key):
            check_fit(key, shape, num_classes)
        return
    check_fit(key, shape, num_classes)
    torch.manual_seed(0)
    model = build(key, shape, num_classes)
    assert all(p.device.type == "cpu" for p in model.parameters())
    model.train()  # the trainer's mode; batch 2 keeps BatchNorm happy even at 1x1
    logits = model(torch.randn(2, *shape))
    assert logits.shape == (2, num_classes)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


def test_descriptions_are_one_line():
    for entry in MODELS:
        assert entry.description and "\n" not in entry.description


def test_lenet5_refuses_digits():
    with pytest.raises(FitError, match=r"lenet5 needs images of at least 12x12 pixels; this data set is 8x8"):
        build("lenet5", DIGITS, 10)


def test_resnet20_refuses_tabular():
    with pytest.raises(FitError, match=r"resnet20 needs images \(C, H, W\); this data set has 2 features"):
        build("resnet20", TABULAR, 2)


def test_unknown_key_lists_valid_keys():
    with pytest.raises(UnknownKeyError) as info:
        build("resnet9000", CIFAR, 10)
    message = str(info.value)
    assert "resnet9000" in message
    assert all(k in message for k in MODELS.keys())


def test_bad_shape_and_class_count_refused():
    with pytest.raises(FitError, match="mlp-128"):
        check_fit("mlp-128", (2, 3, 4, 5), 10)
    with pytest.raises(FitError, match="at least 2 classes"):
        check_fit("mlp-128", MNIST, 1)


def test_dry_run_turns_runtime_error_into_fit_error():
    model = torch.nn.Conv2d(1, 1, 5)  # a 5x5 kernel cannot slide over a 3x3 image
    with pytest.raises(FitError, match=r"demo cannot take 3x3 images"):
        models._dry_run("demo", model, (1, 3, 3), "cpu")


def test_param_counts():
    assert param_count("mlp-512-256", MNIST, 10) == 784 * 512 + 512 + 512 * 256 + 256 + 256 * 10 + 10 == 535_818
    assert param_count("mlp-128", MNIST, 10) == 784 * 128 + 128 + 128 * 10 + 10 == 101_770
    assert (
        param_count("hinton-1200", (784,), 10) == (784 * 1200 + 1200 + 1200 * 1200 + 1200 + 1200 * 10 + 10) == 2_395_210
    )
    lenet = (1 * 6 * 25 + 6) + (6 * 16 * 25 + 16) + (16 * 5 * 5 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10)
    assert param_count("lenet5", MNIST, 10) == lenet == 61_706
    # param_count (meta device) agrees with a real build
    real = sum(p.numel() for p in build("resnet20", CIFAR, 10).parameters() if p.requires_grad)
    assert param_count("resnet20", CIFAR, 10) == real


@pytest.mark.parametrize(
    "teacher,student",
    [
        ("mlp-512-256", "mlp-128"),
        ("hinton-1200", "hinton-800"),
        ("lenet5", "lenet5-half"),
        ("resnet32x4", "resnet8x4"),
        ("resnet56", "resnet20"),
        ("cnn-x1", "cnn-x0.5"),
        ("cnn-x2", "cnn-x1"),
        ("cnn-x0.5", "cnn-x0.25"),
    ],
)
def test_teachers_bigger_than_students(teacher, student):
    shape = MNIST if teacher in MLPS | LENETS else CIFAR
    assert param_count(teacher, shape, 10) > param_count(student, shape, 10)


@pytest.mark.parametrize("key", ["mlp-128", "hinton-1200", "cnn-x0.5", "resnet8x4", "mobilenet_v3_small"])
def test_same_seed_same_parameters(key):
    shape = TABULAR if key in MLPS else CIFAR
    torch.manual_seed(123)
    a = build(key, shape, 10).state_dict()
    torch.manual_seed(123)
    b = build(key, shape, 10).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    torch.manual_seed(124)
    c = build(key, shape, 10).state_dict()
    assert not all(torch.equal(a[k], c[k]) for k in a)
