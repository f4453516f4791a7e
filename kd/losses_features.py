"""Distillation losses on features and embeddings, as plain functions (logit losses: kd/losses.py).

Each docstring gives the paper, the formula, the shapes, the reduction and the reference code's
defaults (mdistiller, megvii-research/mdistiller, mdistiller/distillers/*.py, and engine/cfg.py).
The weights the reference puts on a whole term (its FEAT_WEIGHT) belong to the method, not here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# -- RKD (Park et al., "Relational Knowledge Distillation", CVPR 2019) ---------------------------
# Reference: mdistiller/distillers/RKD.py (cfg.RKD: DISTANCE_WEIGHT 25, ANGLE_WEIGHT 50,
# PDIST.SQUARED False, PDIST.EPSILON 1e-12, LOSS.FEAT_WEIGHT 1.0, applied to the pooled features).


def pairwise_distances(embed: Tensor, squared: bool = False, eps: float = 1e-12) -> Tensor:
    """(B, D) -> (B, B): |e_i - e_j| (or its square), from |e_i|^2 + |e_j|^2 - 2 <e_i, e_j> clamped
    below at eps (so the square root has a gradient), with the diagonal set to 0, as the reference's _pdist."""
    sq = embed.pow(2).sum(dim=1)
    d2 = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * embed @ embed.t()).clamp(min=eps)
    d = d2 if squared else d2.sqrt()
    eye = torch.eye(len(embed), dtype=torch.bool, device=embed.device)
    return d.masked_fill(eye, 0.0)


def _distance_potential(embed: Tensor, squared: bool, eps: float) -> Tensor:
    d = pairwise_distances(embed, squared, eps)
    return d / (d.sum() / (d > 0).sum())  # the mean of the positive distances, without a boolean index (vmap)


def _angle_potential(embed: Tensor) -> Tensor:
    """(B, D) -> (B^3,): entry [i, j, k] = cos of the angle at e_i between e_j and e_k,
    <(e_j - e_i) / |e_j - e_i|, (e_k - e_i) / |e_k - e_i|>; 0 where j = i or k = i (F.normalize of 0)."""
    diff = F.normalize(embed.unsqueeze(0) - embed.unsqueeze(1), p=2, dim=2)  # [i, j] = e_j - e_i
    return torch.bmm(diff, diff.transpose(1, 2)).reshape(-1)


def rkd_terms(
    student_embed: Tensor,
    teacher_embed: Tensor,
    distance_weight: float = 25.0,
    angle_weight: float = 50.0,
    squared: bool = False,
    eps: float = 1e-12,
) -> dict[str, Tensor]:
    """The two weighted terms of RKD; they sum to rkd_loss(). Embeddings (B, ...), flattened to (B, D)
    (student and teacher D may differ: only relations among the B examples are compared).

        distance = distance_weight * mean_{i,j} smoothL1(d_s[i,j] / mu_s - d_t[i,j] / mu_t)
        angle    = angle_weight    * mean_{i,j,k} smoothL1(cos_s[i,j,k] - cos_t[i,j,k])

    d = pairwise_distances(), mu = the mean of the nonzero entries of d, cos = the cosine of the
    angle at example i formed with examples j and k. smoothL1(x) = x^2 / 2 if |x| < 1 else |x| - 1/2
    (F.smooth_l1_loss, beta 1). Means run over all B^2 pairs and all B^3 triplets, the degenerate
    ones (zeros on both sides) included, as in the reference. The teacher's side is computed under
    no_grad, as in the reference: no gradient reaches teacher_embed.
    """
    stu = student_embed.reshape(student_embed.shape[0], -1)
    tea = teacher_embed.reshape(teacher_embed.shape[0], -1)
    with torch.no_grad():
        t_d = _distance_potential(tea, squared, eps)
        t_angle = _angle_potential(tea)
    loss_d = F.smooth_l1_loss(_distance_potential(stu, squared, eps), t_d)
    loss_a = F.smooth_l1_loss(_angle_potential(stu), t_angle)
    return {"distance": distance_weight * loss_d, "angle": angle_weight * loss_a}


def rkd_loss(
    student_embed: Tensor,
    teacher_embed: Tensor,
    distance_weight: float = 25.0,
    angle_weight: float = 50.0,
    squared: bool = False,
    eps: float = 1e-12,
) -> Tensor:
    """RKD = distance_weight * RKD-D + angle_weight * RKD-A (see rkd_terms); 25 and 50 are
    mdistiller's defaults, which adds CE(student, y) with weight 1."""
    terms = rkd_terms(student_embed, teacher_embed, distance_weight, angle_weight, squared, eps)
    return terms["distance"] + terms["angle"]


# -- Attention transfer (Zagoruyko & Komodakis, "Paying More Attention to Attention", ICLR 2017) ---
# Reference: mdistiller/distillers/AT.py (single_stage_at_loss; cfg.AT: P 2, FEAT_WEIGHT 1000),
# from szagoruyko/attention-transfer's at() / at_loss().


def attention_map(feature: Tensor, p: float = 2) -> Tensor:
    """(B, C, H, W) -> (B, H*W): mean over channels of |F|^p, flattened, divided by its L2 norm.

    The reference writes feat.pow(p) (no abs): the same for even p and for post-ReLU features.
    The mean (the paper writes a sum) changes nothing after the normalisation.
    """
    return F.normalize(feature.abs().pow(p).mean(1).reshape(feature.shape[0], -1), dim=1)


def at_loss(student_feature: Tensor, teacher_feature: Tensor, p: float = 2) -> Tensor:
    """AT for one pair of feature maps: mean over (B, H*W) of (a_s - a_t)^2, a = attention_map().

    Features (B, C_s, H_s, W_s) and (B, C_t, H_t, W_t): channel counts may differ. Where the spatial
    sizes differ, the larger map is average-pooled to the smaller (F.adaptive_avg_pool2d), as the
    reference does; it compares heights only and pools to a square (H, H), here each side is pooled
    to (min H, min W), the same on square maps. Reduction: mean over all B * H * W entries (not a
    per-example L2 norm of the difference, as the paper writes). The reference sums this over the
    stages it distils (feats[1:]) and weights the sum by 1000.
    """
    size = (
        min(student_feature.shape[2], teacher_feature.shape[2]),
        min(student_feature.shape[3], teacher_feature.shape[3]),
    )
    if tuple(student_feature.shape[2:]) != size:
        student_feature = F.adaptive_avg_pool2d(student_feature, size)
    if tuple(teacher_feature.shape[2:]) != size:
        teacher_feature = F.adaptive_avg_pool2d(teacher_feature, size)
    return (attention_map(student_feature, p) - attention_map(teacher_feature, p)).pow(2).mean()


# -- FitNets (Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015) ----------------------
# Reference: mdistiller/distillers/FitNet.py (cfg.FITNET: HINT_LAYER 2, FEAT_WEIGHT 100, CE 1.0).


def fitnet_loss(student_hint: Tensor, teacher_hint: Tensor) -> Tensor:
    """Mean squared error between the adapted student hint and the teacher hint, same shape (B, ...):
    mean over all elements (F.mse_loss), as in the reference (the paper writes 1/2 |u_h - r(v_g)|^2).

    The adapter r (the regressor) belongs to the method, and is trained with the student: in the
    reference, ConvReg = conv (1x1 when sizes match, 3x3 stride 2 to halve, a transposed conv to
    double) + BatchNorm + ReLU. Shapes must match here (no broadcasting).
    """
    if student_hint.shape != teacher_hint.shape:
        raise ValueError(
            f"hint shapes differ: student {tuple(student_hint.shape)}, "
            f"teacher {tuple(teacher_hint.shape)}; adapt the student's hint first"
        )
    return F.mse_loss(student_hint, teacher_hint)
