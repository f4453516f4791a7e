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


def soft_targets(teacher_logits: Tensor, temperature: float) -> Tensor:
    """log softmax(t/T): the teacher's softened distribution, in log space (exact, no log(0))."""
    return F.log_softmax(teacher_logits / temperature, dim=1)


def soft_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """T^2 * KL(softmax(t/T) || softmax(s/T)), summed over classes, mean over the batch."""
    return soft_kl_to(student_logits, soft_targets(teacher_logits, temperature), temperature)


def soft_kl_to(student_logits: Tensor, teacher_log_probs: Tensor, temperature: float) -> Tensor:
    """soft_kl with the teacher's side already softened by soft_targets() (the trainer caches it)."""
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)  # (B, K)
    kl = F.kl_div(log_p_student, teacher_log_probs, reduction="batchmean", log_target=True)
    return kl * temperature**2


def kd_terms(student_logits: Tensor, teacher_logits: Tensor, targets: Tensor,
             temperature: float, alpha: float) -> dict[str, Tensor]:
    """The two weighted terms of the KD loss; they sum to kd_loss()."""
    return kd_terms_to(student_logits, soft_targets(teacher_logits, temperature), targets, temperature, alpha)


def kd_terms_to(student_logits: Tensor, teacher_log_probs: Tensor, targets: Tensor,
                temperature: float, alpha: float) -> dict[str, Tensor]:
    """kd_terms with the teacher's side already softened by soft_targets()."""
    return {
        "ce": (1.0 - alpha) * F.cross_entropy(student_logits, targets),
        "soft": alpha * soft_kl_to(student_logits, teacher_log_probs, temperature),
    }


# -- the gradient written out (what the trainer uses) -------------------------------------------
# On (64, 10) logits the composed functions above are ~25 small kernels forward and backward,
# each with an autograd node: on a CPU more time than a small student's matmuls. The trainer
# hands these gradients to logits.backward() and computes the terms' values once per log window
# with the functions above. tests/test_losses.py checks them against autograd.

def ce_grad(student_logits: Tensor, targets: Tensor, weight: float = 1.0) -> Tensor:
    """d/ds weight * CE(s, y) (mean over the batch) = weight/B · (softmax(s) - onehot(y))."""
    grad = torch.softmax(student_logits.detach(), 1)
    grad.scatter_add_(1, targets.unsqueeze(1), _minus_ones(grad))
    return grad.mul_(weight / grad.shape[0])


def kd_grad(student_logits: Tensor, teacher_log_probs: Tensor, targets: Tensor,
            temperature: float, alpha: float) -> Tensor:
    """The gradient in s of kd_terms_to's sum:

        d/ds (1-a)·CE   = (1-a)/B · (softmax(s) - onehot(y))
        d/ds a·T²·KL    = a·T/B  · (softmax(s/T) - p_t)
    """
    T = float(temperature)
    grad = ce_grad(student_logits, targets, 1.0 - alpha)
    soft = torch.softmax(student_logits.detach() / T, 1).sub_(teacher_log_probs.exp())
    return grad.add_(soft, alpha=alpha * T / grad.shape[0])


_MINUS_ONES: dict[tuple, Tensor] = {}  # (rows, dtype, device) -> a (rows, 1) column of -1


def _minus_ones(like: Tensor) -> Tensor:
    """What scatter_add_ subtracts at each row's target: made once per batch size, not per step."""
    key = (like.shape[0], like.dtype, like.device)
    column = _MINUS_ONES.get(key)
    if column is None:
        column = _MINUS_ONES[key] = torch.full((like.shape[0], 1), -1.0, dtype=like.dtype, device=like.device)
    return column


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, targets: Tensor,
            temperature: float, alpha: float) -> Tensor:
    """(1 - alpha) * CE + alpha * T^2 * KL(softmax(t/T) || softmax(s/T)), KL batchmean."""
    terms = kd_terms(student_logits, teacher_logits, targets, temperature, alpha)
    return terms["ce"] + terms["soft"]

