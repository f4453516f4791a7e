"""The method interface and the registry every method file registers with (kd/methods/__init__.py
says what each part is for)."""

from __future__ import annotations

from typing import Protocol

from torch import Tensor, nn

from kd.registry import Registry


class Method(Protocol):
    uses_teacher: bool  # False: the trainer never runs or caches the teacher for this method
    knobs: tuple[str, ...]  # the RunConfig fields it uses: the Train page shows only those
    options: dict  # optional: its own knobs, name -> kd.config.option(...) (values in RunConfig.options)

    # The loss with this run's numbers (LaTeX) and a line saying what it means: the Train page's.
    def formula(self) -> tuple[str, str]: ...

    # Optional: called at the start of each epoch (from 1), e.g. for a warm-up, and before each step.
    def on_epoch(self, epoch: int, epochs: int) -> None: ...

    def on_step(self, step: int, total_steps: int) -> None: ...

    def prepare(self, teacher_logits: Tensor) -> Tensor: ...

    def __call__(self, student_logits: Tensor, targets: Tensor, teacher: Tensor | None) -> dict[str, Tensor]: ...

    # Optional: the gradient of the terms' sum in the student's logits, written out. The trainer
    # then calls logits.backward(grad) instead of building the loss's graph, and computes the
    # terms' values with __call__ once per log window; tests/test_losses.py checks every
    # registered method's grad against autograd on its own __call__.
    def grad(self, student_logits: Tensor, targets: Tensor, teacher: Tensor | None) -> Tensor: ...

    # Optional: see kd/methods/__init__.py.
    def bind(self, student: nn.Module, teacher: nn.Module, input_shape: tuple) -> None: ...


METHODS: Registry[type] = Registry("method")
