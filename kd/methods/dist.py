"""`dist`: Huang, You, Wang, Qian & Xu, "Knowledge Distillation from A Stronger Teacher", NeurIPS 2022.

CE(student, y) + tau^2 * (beta * inter + gamma * intra) (kd.losses.dist_terms): the student
matches the teacher's relations rather than its exact probabilities: the Pearson correlation of
each example's class probabilities (inter-class) and of each class across the batch
(intra-class). Defaults as in the authors' code (DIST(beta=1, gamma=1, tau=1), CE weight 1).
"""

import torch.nn.functional as F

import kd.methods.standard as standard
from kd.losses import dist_terms
from kd.methods.base import METHODS
from kd.schema import option


@METHODS.register("dist", "Huang et al. 2022: match the teacher's class ranking and class relations (Pearson)")
class DIST:
    uses_teacher = True
    knobs = ("standardize",)
    options = {
        "dist_beta": option(
            1.0,
            "DIST beta (inter-class)",
            "weight of the inter-class term: each example's class probabilities, correlated with the teacher's",
            lo=0,
            hi=1000,
        ),
        "dist_gamma": option(
            1.0,
            "DIST gamma (intra-class)",
            "weight of the intra-class term: each class's "
            "probabilities across the batch, correlated with the teacher's",
            lo=0,
            hi=1000,
        ),
        "dist_tau": option(
            1.0, "DIST temperature tau", "softens both distributions before they are correlated", lo=0.05, hi=1000
        ),
    }

    def __init__(self, cfg):
        self.beta, self.gamma, self.tau = cfg.option("dist_beta"), cfg.option("dist_gamma"), cfg.option("dist_tau")
        self.standardize = cfg.standardize

    def formula(self) -> tuple[str, str]:
        return (
            rf"\mathcal{{L}} = \mathrm{{CE}}(s, y) + {self.tau:g}^2\big({self.beta:g}\,(1 - \bar\rho_\mathrm{{inter}}) "
            rf"+ {self.gamma:g}\,(1 - \bar\rho_\mathrm{{intra}})\big)",
            f"ρ: Pearson correlation of the student's and the teacher's softmax(·/{self.tau:g}), per example "
            "(inter-class) and per class across the batch (intra-class)." + standard.caption(self.standardize),
        )

    def prepare(self, teacher_logits):
        return standard.of(teacher_logits, self.standardize)

    def __call__(self, student_logits, targets, teacher_logits):
        return {
            "ce": F.cross_entropy(student_logits, targets),
            **dist_terms(
                standard.of(student_logits, self.standardize), teacher_logits, self.beta, self.gamma, self.tau
            ),
        }
