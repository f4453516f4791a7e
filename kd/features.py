"""Intermediate features, taken with forward hooks at the taps each architecture declares.

A feature method (FitNet, attention transfer, RKD) names the taps it reads on the student and
on the teacher (kd/models.py declares them: `hidden1`, `layer2`, `embedding`...). `Tap` keeps
what those places computed in the model's last forward pass; the trainer reads it after each
student step, and for the teacher either once over the whole training set (when it fits in
KD_MAX_CACHE_MB) or per batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import torch
from torch import Tensor, nn

from kd import models
from kd.errors import ConfigError


class Features(NamedTuple):
    """What a feature method is handed each step besides the logits."""

    student: dict[str, Tensor]  # tap -> (B, ...), with the graph back to the student's weights
    teacher: dict[str, Tensor]  # tap -> (B, ...), or what the method's prepare_features made of it


class Tap:
    """Forward hooks on `names` of `model`; after each forward pass, `self.out[name]` holds the
    tap's tensor. `close()` removes the hooks (and so gives plain MLPs their hand-written step back)."""

    def __init__(self, model: nn.Module, names: Iterable[str], who: str = "model"):
        available = models.taps(model)
        self.out: dict[str, Tensor] = {}
        self.handles = []
        names = list(names)
        for name in names:  # every name checked before any hook is added: a refusal leaves none behind
            if name not in available:
                raise ConfigError("method", f"the {who} has no tap {name!r}; its taps: {', '.join(available)}")
        for name in names:
            module, where = available[name]
            if where == "input":
                self.handles.append(module.register_forward_pre_hook(self._keep_input(name)))
            else:
                self.handles.append(module.register_forward_hook(self._keep_output(name)))

    def _keep_input(self, name: str):
        def hook(module, args):
            self.out[name] = args[0]

        return hook

    def _keep_output(self, name: str):
        def hook(module, args, output):
            self.out[name] = output

        return hook

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def __enter__(self) -> Tap:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def shapes(model: nn.Module, input_shape: tuple, names: Iterable[str] | None = None) -> dict[str, tuple]:
    """Each tap's shape per example (no batch dimension), from one forward pass of a zero example
    on the model's own device (the meta device costs nothing) in eval mode."""
    names = list(models.taps(model)) if names is None else list(names)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    try:
        with Tap(model, names) as tap, torch.no_grad():
            model(torch.zeros((1, *input_shape), device=device))
            return {name: tuple(tap.out[name].shape[1:]) for name in names}
    finally:
        model.train(was_training)


def stages(model: nn.Module) -> list[str]:
    """The declared taps in order of depth (not "embedding")."""
    return [name for name in getattr(model, "taps", {}) if name != models.EMBEDDING]


def conv_stages(model: nn.Module, input_shape: tuple) -> list[str]:
    """The taps that are feature maps (C, H, W) past the stem: where attention maps can be taken."""
    found = shapes(model, input_shape, stages(model))
    return [name for name, shape in found.items() if len(shape) == 3 and name != "stem"]


def pick(model: nn.Module, name: str, who: str) -> str:
    """A tap named by a knob: "middle" is the declared tap halfway down (layer2 of a CIFAR ResNet,
    as FitNet's reference hints with); any other name must be one of the model's taps."""
    if name == "middle":
        declared = stages(model)
        return declared[len(declared) // 2] if declared else models.EMBEDDING
    available = models.taps(model)
    if name not in available:
        raise ConfigError("method", f"the {who} has no tap {name!r}; its taps: middle, {', '.join(available)}")
    return name


def tap_names(arch: str, input_shape: tuple, num_classes: int) -> list[str]:
    """The taps of architecture `arch` built for this data (on the meta device: no memory)."""
    return list(models.taps(models.check_built(arch, input_shape, num_classes)))
