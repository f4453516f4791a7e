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


def kd_terms_fused(student_logits: Tensor, teacher_log_probs: Tensor, targets: Tensor,
                   temperature: float, alpha: float) -> dict[str, Tensor]:
    """kd_terms_to as one autograd node with its gradient written out; what the trainer uses.

    Same values and gradients as the functions above (tests/test_losses.py checks both, and
    gradcheck), at a fraction of the cost: on (64, 10) logits the composed version is ~25 small
    kernels and as many autograd nodes, more time than the student's matmuls on a CPU.
    """
    ce, soft = _KDTerms.apply(student_logits, teacher_log_probs, targets, float(temperature), float(alpha))
    return {"ce": ce, "soft": soft}


class _KDTerms(torch.autograd.Function):
    """(1-a)·CE(s, y) and a·T²·KL(p_t || softmax(s/T)), batchmean, and their gradient in s:

        d/ds (1-a)·CE   = (1-a)/B · (softmax(s) - onehot(y))
        d/ds a·T²·KL    = a·T/B  · (softmax(s/T) - p_t)
    """

    @staticmethod
    def forward(ctx, s: Tensor, log_p_t: Tensor, y: Tensor, T: float, alpha: float):
        b = s.shape[0]
        log_q = torch.log_softmax(s, 1)
        log_q_t = torch.log_softmax(s / T, 1)
        p_t = log_p_t.exp()
        ce = log_q.gather(1, y[:, None]).sum() * (-(1.0 - alpha) / b)
        soft = (p_t * (log_p_t - log_q_t)).sum() * (alpha * T * T / b)
        ctx.save_for_backward(log_q, log_q_t, p_t, y)
        ctx.T, ctx.alpha = T, alpha
        return ce, soft

    @staticmethod
    def backward(ctx, g_ce: Tensor, g_soft: Tensor):
        log_q, log_q_t, p_t, y = ctx.saved_tensors
        b, T, alpha = log_q.shape[0], ctx.T, ctx.alpha
        d_ce = log_q.exp().scatter_add_(1, y[:, None], torch.full_like(log_q[:, :1], -1.0))
        d_soft = log_q_t.exp().sub_(p_t)
        grad = d_ce.mul_(g_ce * ((1.0 - alpha) / b)).add_(d_soft.mul_(g_soft * (alpha * T / b)))
        return grad, None, None, None, None


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, targets: Tensor,
            temperature: float, alpha: float) -> Tensor:
    """(1 - alpha) * CE + alpha * T^2 * KL(softmax(t/T) || softmax(s/T)), KL batchmean."""
    terms = kd_terms(student_logits, teacher_logits, targets, temperature, alpha)
    return terms["ce"] + terms["soft"]

