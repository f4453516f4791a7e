"""The method interface and the registry every method file registers with (kd/methods/__init__.py
says what each part is for)."""

from __future__ import annotations

from typing import Protocol

from torch import Tensor, nn

from kd.registry import Registry


class Method(Protocol):
    uses_teacher: bool  # False: the trainer never runs or caches the teacher for this method
    knobs: tuple[str, ...]  # the RunConfig fields it uses: the Train page shows only those
    options: dict  # optional: its own knobs, name -> kd.schema.option(...) (values in RunConfig.options)
    # Optional, for feature methods (set in the class or by bind): the taps read on each model,
    # {"student": (...), "teacher": (...)}; with any, __call__ gets a fourth argument,
    # kd.features.Features(student={tap: tensor}, teacher={tap: tensor}).
    taps: dict
    # Optional: parameters of the method's own (nn.Module), trained, checkpointed and resumed
    # with the student's (FitNet's adapter, CTKD's temperature).
    module: nn.Module | None
    # Optional: float knobs of its own that students trained in lockstep (kd/lockstep.py) must
    # share, because they shape what is computed once for the group (the teacher's cached
    # features) or live in `module` rather than on the method.
    group_knobs: tuple[str, ...]

    # The loss with this run's numbers (LaTeX) and a line saying what it means: the Train page's.
    def formula(self) -> tuple[str, str]: ...

    # Optional: called at the start of each epoch (from 1), e.g. for a warm-up, and before each step.
    def on_epoch(self, epoch: int, epochs: int) -> None: ...

    def on_step(self, step: int, total_steps: int) -> None: ...

    # What the loss needs of the teacher's logits, per example; cached for the whole training set,
    # so it must not depend on the epoch, the step or the method's own parameters.
    def prepare(self, teacher_logits: Tensor) -> Tensor: ...

    # Named, already-weighted loss terms; (..., feats) for a method with taps.
    def __call__(self, student_logits: Tensor, targets: Tensor, teacher: Tensor | None) -> dict[str, Tensor]: ...

    # Optional: reduce the teacher's features before they are cached (AT keeps attention maps).
    def prepare_features(self, feats: dict[str, Tensor]) -> dict[str, Tensor]: ...

    # Optional: scalars logged at each epoch's end (CTKD's learned temperature).
    def report(self) -> dict[str, float]: ...

    # Optional: the gradient of the terms' sum in the student's logits, written out. The trainer
    # then calls logits.backward(grad) instead of building the loss's graph, and computes the
    # terms' values with __call__ once per log window; tests/test_losses.py checks every
    # registered method's grad against autograd on its own __call__. A method with grad() is also
    # called for K students in lockstep at once (kd.fastpath.GroupMLPStep): prepare() and grad()
    # then get (K, B, C) logits and each float knob as a (K, 1, 1) tensor, so they work over the
    # last dimension and broadcast their knobs (tests/test_losses.py checks that too).
    def grad(self, student_logits: Tensor, targets: Tensor, teacher: Tensor | None) -> Tensor: ...

    # Optional: see kd/methods/__init__.py.
    def bind(self, student: nn.Module, teacher: nn.Module, input_shape: tuple) -> None: ...


METHODS: Registry[type] = Registry("method")
