"""The --standardize switch of the logit methods: Sun, Ren, Li, Wang & Cao, "Logit
Standardization in Knowledge Distillation", CVPR 2024 (kd.losses.standardize).

Both the student's and the teacher's logits are z-scored per example before they are softened,
so the student matches the shape of the teacher's logits rather than their scale; the
cross-entropy on the labels keeps the raw logits, as in the authors' code.
"""

from torch import Tensor

from kd.losses import standardize


def of(logits: Tensor, on: bool) -> Tensor:
    return standardize(logits) if on else logits


def caption(on: bool) -> str:
    return " Logits z-scored per example first (logit standardisation)." if on else ""
