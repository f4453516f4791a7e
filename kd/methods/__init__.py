"""Distillation methods: one small file each (mdistiller's distillers/*.py are the model).

A method is a class registered with @METHODS.register(key, description) and built from the
RunConfig. Per batch it is called with the student's logits, the targets and what `prepare`
made of the teacher's logits (None when it does not use a teacher), and returns a dict of named,
already-weighted loss terms: the trainer sums them and back-propagates (autograd), and the
dashboard plots each one. That is all a logits method needs (docs/extending.md walks one through).

Optional, each only where a method needs it:
- `options`: its own knobs (kd.schema.option), a CLI flag and a widget each.
- `on_epoch(epoch, epochs)`: called at each epoch's start (from 1), for warm-ups and schedules;
  `on_step(step, total_steps)` before each optimizer step (from 0), for schedules within an epoch.
- `bind(student, teacher, input_shape)`: called before the distilled student trains (again on resume; and
  on meta-device models before a run is accepted, so a pair it cannot run is refused first).
  It may set `taps = {"student": (...), "teacher": (...)}`, the features it reads (kd/features.py),
  and `module`, an nn.Module of parameters of its own (an adapter, a learned temperature) that the
  trainer optimises, checkpoints and resumes with the student's.
- With taps, the call gets a fourth argument, kd.features.Features(student, teacher): dicts of
  each tap's tensor; `prepare_features(feats)` may reduce the teacher's before they are cached.
- `report()`: scalars to log at each epoch's end (ctkd: its learned temperature).
- `grad(student_logits, targets, teacher)`: the gradient of the terms' sum in the logits,
  written out: a fast path the trainer then takes (kd and none have one; tests/test_losses.py
  checks it against autograd). Never required.
"""

from __future__ import annotations

from torch import nn

from kd.methods.base import METHODS, Method  # noqa: F401  (METHODS: where the files below register)

from kd.methods import hinton, none, dkd, dist, ctkd, fitnet, at, rkd  # noqa: F401  # isort: skip  (in this order)


def build(cfg) -> Method:
    """The method named by cfg.method, configured from cfg (temperature, alpha...)."""
    return METHODS.get(cfg.method)(cfg)


def bind(method: Method, student: nn.Module, teacher: nn.Module, input_shape: tuple) -> None:
    """Let the method see the pair: its taps and its own parameters (see the module docstring)."""
    if hasattr(method, "bind"):
        method.bind(student, teacher, tuple(input_shape))


def check(cfg, input_shape: tuple, num_classes: int) -> Method:
    """Refuse, before any training, a method the pair cannot run (attention transfer on an MLP,
    a tap that does not exist): the method binds to meta-device copies of the two models, which
    cost no memory and no arithmetic. A ConfigError names the method and the model. Returns the
    method so bound (its formula then names the taps it reads)."""
    from kd import models

    method = build(cfg)
    if hasattr(method, "bind"):
        method.bind(
            models.check_built(cfg.student, input_shape, num_classes),
            models.check_built(cfg.teacher, input_shape, num_classes),
            tuple(input_shape),
        )
    return method
