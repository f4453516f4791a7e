"""Distillation methods: one small file each (mdistiller's distillers/KD.py is the model).

A method is built from the RunConfig. `prepare` turns the teacher's logits into what the loss
needs from the teacher (for `kd`, the softened log-probabilities); the trainer calls it once on
the whole training set when the inputs are not augmented, and caches the result. The method is
then called per batch with the student's logits, the targets and that prepared batch (None when
it does not use a teacher). It returns a dict of named, already-weighted loss terms; the trainer
sums them, and the dashboard plots each one.
"""
from __future__ import annotations

from typing import Optional, Protocol

from torch import Tensor

from kd.registry import Registry


class Method(Protocol):
    uses_teacher: bool  # False: the trainer never runs or caches the teacher for this method
    knobs: tuple[str, ...]  # the RunConfig fields it uses: the Train page shows only those
    options: dict  # optional: its own knobs, name -> kd.config.option(...) (values in RunConfig.options)

    # The loss with this run's numbers (LaTeX) and a line saying what it means: the Train page's.
    def formula(self) -> tuple[str, str]: ...

    # Optional: called at the start of each epoch (from 1), e.g. for a warm-up.
    def on_epoch(self, epoch: int, epochs: int) -> None: ...

    def prepare(self, teacher_logits: Tensor) -> Tensor: ...

    def __call__(self, student_logits: Tensor, targets: Tensor,
                 teacher: Optional[Tensor]) -> dict[str, Tensor]: ...

    # Optional: the gradient of the terms' sum in the student's logits, written out. The trainer
    # then calls logits.backward(grad) instead of building the loss's graph, and computes the
    # terms' values with __call__ once per log window; tests/test_losses.py checks every
    # registered method's grad against autograd on its own __call__.
    def grad(self, student_logits: Tensor, targets: Tensor, teacher: Optional[Tensor]) -> Tensor: ...


METHODS: Registry[type] = Registry("method")

from kd.methods import hinton, none, dkd, dist  # noqa: E402,F401,I001  (register on import, in this order)


def build(cfg) -> Method:
    """The method named by cfg.method, configured from cfg (temperature, alpha...)."""
    return METHODS.get(cfg.method)(cfg)
