"""The loss math as plain functions, tested against numbers computed by hand.

Convention (stated in the UI next to the sliders):
    loss = (1 - alpha) * CE(student, y) + alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T))
with KL summed over classes and averaged over the batch ("batchmean"). The T^2 factor keeps the
soft term's gradient magnitude roughly independent of T (Hinton et al. 2015, section 2), which
the seed note's loss lacked (it also averaged KL over classes, and had no alpha).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def soft_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """T^2 * KL(softmax(t/T) || softmax(s/T)), summed over classes, mean over the batch."""
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)  # (B, K)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=1)  # (B, K), exact in log space
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2


def kd_terms(student_logits: Tensor, teacher_logits: Tensor, targets: Tensor,
             temperature: float, alpha: float) -> dict[str, Tensor]:
    """The two weighted terms of the KD loss; they sum to kd_loss()."""
    return {
        "ce": (1.0 - alpha) * F.cross_entropy(student_logits, targets),
        "soft": alpha * soft_kl(student_logits, teacher_logits, temperature),
    }


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, targets: Tensor,
            temperature: float, alpha: float) -> Tensor:
    """(1 - alpha) * CE + alpha * T^2 * KL(softmax(t/T) || softmax(s/T)), KL batchmean."""
    terms = kd_terms(student_logits, teacher_logits, targets, temperature, alpha)
    return terms["ce"] + terms["soft"]

