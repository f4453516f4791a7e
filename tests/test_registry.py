"""Registries fail loudly on unknown and duplicate keys; the real ones are populated."""

import pytest

from kd.errors import UnknownKeyError
from kd.methods import METHODS
from kd.models import MODELS
from kd.registry import Registry


def test_register_get_keys_and_descriptions():
    reg = Registry("widget")
    reg.register("a", "first")(1)
    reg.add("b", 2, "second")
    assert reg.keys() == ["a", "b"] and reg.get("b") == 2 and reg.description("a") == "first"
    assert "a" in reg and "z" not in reg and len(reg) == 2


def test_unknown_key_lists_valid_keys():
    reg = Registry("widget")
    reg.add("a", 1, "first")
    reg.add("b", 2, "second")
    with pytest.raises(UnknownKeyError) as err:
        reg.get("c")
    assert str(err.value) == "unknown widget 'c'; choose one of: a, b"


def test_duplicate_and_undescribed_keys_are_refused():
    reg = Registry("widget")
    reg.add("a", 1, "first")
    with pytest.raises(ValueError, match="duplicate widget key 'a'"):
        reg.add("a", 3, "again")
    with pytest.raises(ValueError, match="description"):
        reg.add("b", 3, "")


def test_project_registries():
    assert {"none", "kd"} <= set(METHODS.keys())
    assert {
        "mlp-512-256",
        "mlp-128",
        "hinton-1200",
        "hinton-800",
        "lenet5",
        "lenet5-half",
        "resnet8x4",
        "resnet32x4",
        "resnet20",
        "resnet56",
        "resnet18",
        "mobilenet_v3_small",
    } <= set(MODELS.keys())
    for reg in (METHODS, MODELS):
        for entry in reg:
            assert entry.description and "\n" not in entry.description
