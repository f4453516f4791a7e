"""The loss math as plain functions, tested against numbers computed by hand.

Convention (stated in the UI next to the sliders):
    loss = (1 - alpha) * CE(student, y) + alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T))
with KL summed over classes and averaged over the batch ("batchmean"). The T^2 factor keeps the
soft term's gradient magnitude roughly independent of T (Hinton et al. 2015, section 2), which
the seed note's loss lacked (it also averaged KL over classes, and had no alpha).

After kd_loss: the logit losses of other published methods (DKD, DIST, logit standardization,
CTKD's learned temperature), each with its paper, formula and the reference code's defaults.
Losses on features and embeddings (RKD, AT, FitNets) are in kd/losses_features.py.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from kd.fastpath import cross_entropy, log_softmax, softmax


def kl_sum(log_p_student: Tensor, teacher: Tensor, log_target: bool) -> Tensor:
    """F.kl_div(log_p_student, teacher, reduction="sum", log_target=...) written in the ops it
    computes, which vmap batches (kl_div has no batching rule, and students in lockstep,
    kd/lockstep.py, would run it once per student): sum of p_t * (log p_t - log p_s), with
    0 * log 0 = 0 where the teacher's probability is 0."""
    if log_target:
        return (teacher.exp() * (teacher - log_p_student)).sum()
    return (torch.xlogy(teacher, teacher) - teacher * log_p_student).sum()


def soft_targets(teacher_logits: Tensor, temperature: float) -> Tensor:
    """log softmax(t/T): the teacher's softened distribution, in log space (exact, no log(0)).
    Over the last dimension: (B, C) logits, or (K, B, C) with T a (K, 1, 1) tensor (lockstep)."""
    return log_softmax(teacher_logits / temperature)


def soft_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """T^2 * KL(softmax(t/T) || softmax(s/T)), summed over classes, mean over the batch."""
    return soft_kl_to(student_logits, soft_targets(teacher_logits, temperature), temperature)


def soft_kl_to(student_logits: Tensor, teacher_log_probs: Tensor, temperature: float) -> Tensor:
    """soft_kl with the teacher's side already softened by soft_targets() (the trainer caches it)."""
    log_p_student = log_softmax(student_logits / temperature)  # (B, K)
    kl = kl_sum(log_p_student, teacher_log_probs, log_target=True) / log_p_student.shape[0]  # batchmean
    return kl * temperature**2


def kd_terms(
    student_logits: Tensor, teacher_logits: Tensor, targets: Tensor, temperature: float, alpha: float
) -> dict[str, Tensor]:
    """The two weighted terms of the KD loss; they sum to kd_loss()."""
    return kd_terms_to(student_logits, soft_targets(teacher_logits, temperature), targets, temperature, alpha)


def kd_terms_to(
    student_logits: Tensor, teacher_log_probs: Tensor, targets: Tensor, temperature: float, alpha: float
) -> dict[str, Tensor]:
    """kd_terms with the teacher's side already softened by soft_targets()."""
    return {
        "ce": (1.0 - alpha) * cross_entropy(student_logits, targets),
        "soft": alpha * soft_kl_to(student_logits, teacher_log_probs, temperature),
    }


# -- the gradient written out (what the trainer uses) -------------------------------------------
# On small logits the composed functions above are many small kernels forward and backward,
# each with an autograd node: on a CPU they can cost more than a small student's matmuls
# (docs/benchmarks.md, "What the fast paths buy"). The trainer
# hands these gradients to logits.backward() and computes the terms' values once per log window
# with the functions above. tests/test_losses.py checks them against autograd.


def ce_grad(student_logits: Tensor, targets: Tensor, weight: float | Tensor = 1.0) -> Tensor:
    """d/ds weight * CE(s, y) (mean over the batch) = weight/B · (softmax(s) - onehot(y)).

    Logits (B, C), or (K, B, C) for K students in lockstep (kd/lockstep.py), with targets (K, B)
    and a weight that may be a (K, 1, 1) tensor: each student's gradient, stacked."""
    grad = softmax(student_logits.detach())
    grad.scatter_add_(-1, targets.unsqueeze(-1), _minus_ones(grad))
    return grad.mul_(weight / grad.shape[-2])


def kd_grad(
    student_logits: Tensor,
    teacher_log_probs: Tensor,
    targets: Tensor,
    temperature: float | Tensor,
    alpha: float | Tensor,
) -> Tensor:
    """The gradient in s of kd_terms_to's sum:

    d/ds (1-a)·CE   = (1-a)/B · (softmax(s) - onehot(y))
    d/ds a·T²·KL    = a·T/B  · (softmax(s/T) - p_t)

    Stacked students as in ce_grad: T and alpha then may be (K, 1, 1) tensors."""
    T = temperature if isinstance(temperature, Tensor) else float(temperature)
    grad = ce_grad(student_logits, targets, 1.0 - alpha)
    soft = softmax(student_logits.detach() / T).sub_(teacher_log_probs.exp())
    scale = alpha * T / grad.shape[-2]
    if isinstance(scale, Tensor):
        return grad.add_(soft.mul_(scale))
    return grad.add_(soft, alpha=scale)


_MINUS_ONES: dict[tuple, Tensor] = {}  # (leading shape, dtype, device) -> a column of -1


def _minus_ones(like: Tensor) -> Tensor:
    """What scatter_add_ subtracts at each row's target: made once per batch shape, not per step."""
    key = (like.shape[:-1], like.dtype, like.device)
    column = _MINUS_ONES.get(key)
    if column is None:
        column = _MINUS_ONES[key] = torch.full((*like.shape[:-1], 1), -1.0, dtype=like.dtype, device=like.device)
    return column


def kd_loss(
    student_logits: Tensor, teacher_logits: Tensor, targets: Tensor, temperature: float, alpha: float
) -> Tensor:
    """(1 - alpha) * CE + alpha * T^2 * KL(softmax(t/T) || softmax(s/T)), KL batchmean."""
    terms = kd_terms(student_logits, teacher_logits, targets, temperature, alpha)
    return terms["ce"] + terms["soft"]


# -- Decoupled KD (Zhao et al., "Decoupled Knowledge Distillation", CVPR 2022) -------------------
# Reference: mdistiller, mdistiller/distillers/DKD.py (dkd_loss; cfg.DKD: ALPHA 1.0, BETA 8.0,
# T 4.0, WARMUP 20, CE_WEIGHT 1.0).


def dkd_terms(
    student_logits: Tensor,
    teacher_logits: Tensor,
    targets: Tensor,
    alpha: float = 1.0,
    beta: float = 8.0,
    temperature: float = 4.0,
) -> dict[str, Tensor]:
    """The two weighted terms of DKD; they sum to dkd_loss(). Logits (B, K), targets (B,) int.

    With p = softmax(z/T), b = [p_y, 1 - p_y] (target vs. all non-target mass) and p^ the
    distribution over the K-1 non-target classes:

        tckd = alpha * T^2 * KL(b_teacher || b_student)
        nckd = beta  * T^2 * KL(p^_teacher || p^_student)

    p^ is softmax(z/T - 1000 * onehot(y)), as in the reference: the target's logit is pushed down
    by 1000 (after dividing by T) so its probability is 0 in floating point. Reduction, as in the
    reference (kl_div size_average=False, then / B): summed over classes, divided by the batch size.
    The binary log-probabilities are taken in log space (log p_y and logsumexp of the other
    logits); the reference takes log() of the summed probabilities, the same value except where a
    probability underflows to 0 (there it gives inf).
    """
    T = temperature
    classes = torch.arange(student_logits.shape[1], device=student_logits.device)
    gt = targets.reshape(-1, 1) == classes  # (B, K) one-hot mask of the targets (no in-place scatter: vmap)
    batch = student_logits.shape[0]

    def binary_log_probs(logits: Tensor) -> Tensor:  # (B, 2): log p_y, log (1 - p_y)
        z = logits / T
        log_norm = torch.logsumexp(z, dim=1, keepdim=True)
        log_target = z.masked_fill(~gt, float("-inf")).logsumexp(1, keepdim=True)
        log_other = z.masked_fill(gt, float("-inf")).logsumexp(1, keepdim=True)
        return torch.cat([log_target, log_other], dim=1) - log_norm

    tckd = kl_sum(binary_log_probs(student_logits), binary_log_probs(teacher_logits), log_target=True) * T**2 / batch
    log_p_student_nt = F.log_softmax(student_logits / T - 1000.0 * gt, dim=1)
    p_teacher_nt = F.softmax(teacher_logits / T - 1000.0 * gt, dim=1)
    nckd = kl_sum(log_p_student_nt, p_teacher_nt, log_target=False) * T**2 / batch
    return {"tckd": alpha * tckd, "nckd": beta * nckd}


def dkd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    targets: Tensor,
    alpha: float = 1.0,
    beta: float = 8.0,
    temperature: float = 4.0,
) -> Tensor:
    """DKD = alpha * TCKD + beta * NCKD, both * T^2, summed over classes and / B (see dkd_terms).

    The reference adds CE(student, y) (weight 1.0) and scales this term by dkd_warmup(epoch).
    """
    terms = dkd_terms(student_logits, teacher_logits, targets, alpha, beta, temperature)
    return terms["tckd"] + terms["nckd"]


def dkd_warmup(epoch: float, warmup: float = 20) -> float:
    """min(epoch / warmup, 1): the reference's linear ramp on the DKD term (epochs counted from 1)."""
    return min(epoch / warmup, 1.0)


# -- DIST (Huang et al., "Knowledge Distillation from A Stronger Teacher", NeurIPS 2022) -----------
# Reference: hunto/DIST_KD and hunto/image_classification_sota, lib/models/losses/dist_kd.py
# (DIST(beta=1.0, gamma=1.0, tau=1.0); its first release had no tau, i.e. tau = 1).


def _mean_row_pearson(a: Tensor, b: Tensor, eps: float = 1e-8) -> Tensor:
    """Mean over rows of the Pearson correlation of a[i] and b[i]; eps in the denominator as in the reference."""
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return ((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)).mean()


def dist_terms(
    student_logits: Tensor, teacher_logits: Tensor, beta: float = 1.0, gamma: float = 1.0, temperature: float = 1.0
) -> dict[str, Tensor]:
    """The two weighted terms of DIST; they sum to dist_loss(). Logits (B, K).

    With Y = softmax(Z / T) row-wise (B, K) and rho the Pearson correlation:

        inter = beta  * T^2 * (1 - mean_i rho(Y_s[i, :], Y_t[i, :]))   (each example's class ranking)
        intra = gamma * T^2 * (1 - mean_k rho(Y_s[:, k], Y_t[:, k]))   (each class across the batch)

    rho(u, v) = <u - mean u, v - mean v> / (|u - mean u| |v - mean v| + 1e-8), as in the reference.
    Reduction: means over rows (inter) and over columns (intra); no sum over classes.
    """
    T = temperature
    y_s = F.softmax(student_logits / T, dim=1)
    y_t = F.softmax(teacher_logits / T, dim=1)
    return {
        "inter": beta * T**2 * (1 - _mean_row_pearson(y_s, y_t)),
        "intra": gamma * T**2 * (1 - _mean_row_pearson(y_s.t(), y_t.t())),
    }


def dist_loss(
    student_logits: Tensor, teacher_logits: Tensor, beta: float = 1.0, gamma: float = 1.0, temperature: float = 1.0
) -> Tensor:
    """DIST = T^2 * (beta * (1 - mean row Pearson) + gamma * (1 - mean column Pearson)); see dist_terms."""
    terms = dist_terms(student_logits, teacher_logits, beta, gamma, temperature)
    return terms["inter"] + terms["intra"]


# -- Logit standardization (Sun et al., "Logit Standardization in Knowledge Distillation", CVPR 2024)
# Reference: sunshangquan/logit-standardization-KD, mdistiller/distillers/KD.py (normalize()).


def standardize(logits: Tensor, eps: float = 1e-7) -> Tensor:
    """Z-score each row: (z - mean(z)) / (std(z) + eps), over the last dimension. (B, K) -> (B, K).

    std is torch's default, the unbiased one (divides by K - 1), as in the reference; eps = 1e-7 is
    the reference's (its CTKD variant has none). Apply it to both the student's and the teacher's
    logits, then soften with a base temperature as usual: soft_kl(standardize(s), standardize(t), T).
    The reference keeps the temperature (--base-temp 2 or 3 on CIFAR-100) and raises the KD weight
    to 9 (CE weight left at mdistiller's 0.1); for DKD it multiplies alpha and beta by its kd weight.
    """
    mean = logits.mean(dim=-1, keepdim=True)
    std = logits.std(dim=-1, keepdim=True)
    return (logits - mean) / (std + eps)


# -- CTKD (Li et al., "Curriculum Temperature for Knowledge Distillation", AAAI 2023) -------------
# Reference: zhengli97/CTKD, models/temp_global.py (Global_T, GradientReversalFunction) and
# train_student.py (CosineDecay; --t_start 1 --t_end 20 --decay_max 0 --decay_min -1 --decay_loops 10).


class GradientReversal(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by -lambda_ (Ganin & Lempitsky 2015).

    Use GradientReversal.apply(x, lambda_). The reference's function multiplies by lambda_ itself
    and is handed a negative value (its schedule runs from 0 to -1); here the sign is in the layer
    and lambda_ >= 0, as in the paper, so the same training gets the same gradients.
    """

    generate_vmap_rule = True  # vmap (kd/lockstep.py) batches forward and backward as they are

    @staticmethod
    def forward(x: Tensor, lambda_: float) -> Tensor:
        return x.clone()

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # apart from forward: vmap can batch it (kd/lockstep.py)
        ctx.lambda_ = float(inputs[1])

    @staticmethod
    def backward(ctx, grad: Tensor):
        return -ctx.lambda_ * grad, None


def ctkd_lambda(epoch: float, total_epochs: float, lambda_max: float = 1.0, lambda_min: float = 0.0) -> float:
    """The curriculum's cosine ramp of the reversal strength:

        lambda = lambda_min + (lambda_max - lambda_min) * (1 - cos(pi * e / total_epochs)) / 2,
        e = epoch clamped to [0, total_epochs]

    lambda_min at epoch 0, lambda_max from total_epochs on. The reference (CosineDecay) gives
    (cos(pi * e / loops) + 1) / 2 * (max - min) + min with max = 0, min = -1, loops = 10 (its
    --decay_loops: the ramp lasts 10 of the 240 training epochs, counted from 1), which is
    -ctkd_lambda(epoch, 10).
    """
    e = min(max(epoch, 0), total_epochs)
    return lambda_min + (lambda_max - lambda_min) * (1.0 - math.cos(math.pi * e / total_epochs)) / 2.0


def ctkd_temperature(raw: Tensor, lambda_: float, t_start: float = 1.0, t_end: float = 20.0) -> Tensor:
    """T = t_start + t_end * sigmoid(GradientReversal(raw, lambda_)): a temperature in (t_start, t_start + t_end).

    The reversal makes the temperature's parameter climb the distillation loss that the student
    descends (the adversarial curriculum). The reference bounds T with this sigmoid, not a clamp.
    """
    return t_start + t_end * torch.sigmoid(GradientReversal.apply(raw, lambda_))


class GlobalTemperature(torch.nn.Module):
    """CTKD's global temperature: one learnable scalar, initialised to 1 as in the reference
    (Global_T: nn.Parameter(torch.ones(1))), so T starts at 1 + 20 * sigmoid(1) = 15.62.

    forward(lambda_) returns T as a 0-d tensor, to be used as the temperature of the KD loss;
    the parameter goes to the student's optimizer (the reference's SGD holds both).
    """

    def __init__(self, t_start: float = 1.0, t_end: float = 20.0, init: float = 1.0):
        super().__init__()
        self.t_start, self.t_end = t_start, t_end
        self.raw = torch.nn.Parameter(torch.full((1,), float(init)))

    def forward(self, lambda_: float) -> Tensor:
        return ctkd_temperature(self.raw, lambda_, self.t_start, self.t_end).reshape(())
