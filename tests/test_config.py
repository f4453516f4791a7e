"""RunConfig: defaults, validation of every field (message names the field), JSON round-trip."""

import json

import pytest

from kd.config import RunConfig, knobs
from kd.errors import ConfigError


def test_defaults_are_valid_and_documented():
    cfg = RunConfig()
    assert (cfg.dataset, cfg.teacher, cfg.student, cfg.method) == ("digits", "mlp-512-256", "mlp-128", "kd")
    assert cfg.teacher_epochs_resolved == cfg.epochs
    for name, k in knobs().items():  # each field says what it is for, once: flag, page and message use it
        assert len(k.label) > 2 and len(k.help) > 20, f"{name} has no label or help"
    assert list(knobs()) == list(RunConfig.__dataclass_fields__)


def test_frozen():
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        RunConfig().alpha = 0.5


def test_json_round_trip():
    cfg = RunConfig(
        dataset="moons",
        teacher="hinton-1200",
        student="hinton-800",
        temperature=20.0,
        alpha=0.7,
        epochs=3,
        teacher_epochs=5,
        batch_size=128,
        lr=0.05,
        optimizer="sgd",
        weight_decay=5e-4,
        seed=7,
        device="cpu",
        val_fraction=0.0,
        data_dir="/tmp/x",
    )
    again = RunConfig.from_json(cfg.to_json())
    assert again == cfg
    assert json.loads(cfg.to_json())["teacher_epochs"] == 5


BAD = [
    ("dataset", "imagenet", "digits"),
    ("dataset", "folder:", "folder:"),
    ("dataset", 3, "text"),
    ("teacher", "vgg99", "mlp-512-256"),
    ("student", "", "mlp-128"),
    ("method", "fitnet-x", "kd"),
    ("temperature", 0, ">= 0.05 and <= 1000, got 0"),
    ("temperature", -1.0, ">= 0.05"),
    ("temperature", 1e-320, "must be >= 0.05 and <= 1000, got 1e-320"),
    ("temperature", 0.049, ">= 0.05"),
    ("temperature", 1000.5, "<= 1000"),
    ("temperature", float("nan"), "finite"),
    ("temperature", "4", "number"),
    ("alpha", 1.5, "<= 1"),
    ("alpha", -0.1, ">= 0"),
    ("epochs", 0, "between 1"),
    ("epochs", 2.5, "whole number"),
    ("epochs", True, "whole number"),
    ("teacher_epochs", 0, "between 1"),
    ("batch_size", 0, "between 1"),
    ("lr", 0.0, "> 0"),
    ("lr", float("inf"), "finite"),
    ("optimizer", "rmsprop", "adam, sgd"),
    ("weight_decay", -1.0, ">= 0"),
    ("seed", -1, "between 0"),
    ("device", "tpu", "auto, cpu, cuda, mps"),
    ("val_fraction", 0.9, "<= 0.5"),
    ("teacher_checkpoint", "model.pt", ".safetensors"),
    ("teacher_checkpoint", "/no/such/file.safetensors", "no such file"),
    ("data_dir", "", "path"),
    ("image_size", 4, "between 8"),
    ("augment", "flip", "none, teacher, all"),
    ("augment", True, "text"),
    ("student_fraction", 0, "> 0"),
    ("student_fraction", 1.5, "<= 1"),
]


@pytest.mark.parametrize("field,value,hint", BAD)
def test_bad_values_are_refused_naming_the_field(field, value, hint):
    with pytest.raises(ConfigError) as err:
        RunConfig(**{field: value})
    assert err.value.field == field
    assert str(err.value).startswith(f"{field}: ")
    assert hint in str(err.value)


def test_from_dict_refuses_unknown_fields():
    with pytest.raises(ConfigError, match="temprature: unknown field"):
        RunConfig.from_dict({"temprature": 3})
    with pytest.raises(ConfigError, match="config: not valid JSON"):
        RunConfig.from_json("{")
