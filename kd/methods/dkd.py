"""`dkd`: Zhao, Cui, Song, Qiu & Liang, "Decoupled Knowledge Distillation", CVPR 2022.

CE(student, y) + ramp * (alpha * TCKD + beta * NCKD), both KL terms at temperature T and scaled
by T^2 (kd.losses.dkd_terms): TCKD matches how much probability the target class gets, NCKD the
distribution among the other classes. ramp = min(epoch / warmup, 1). Defaults as in the
authors' code (mdistiller, distillers/DKD.py: CE weight 1, alpha 1, beta 8, T 4, warm-up 20).
"""

import torch.nn.functional as F

import kd.methods.standard as standard
from kd.losses import dkd_terms, dkd_warmup
from kd.methods.base import METHODS
from kd.schema import option


@METHODS.register("dkd", "Zhao et al. 2022: the target and the non-target classes' KL, weighted apart")
class DKD:
    uses_teacher = True
    knobs = ("temperature", "standardize")
    options = {
        "dkd_alpha": option(
            1.0,
            "DKD alpha (target-class term)",
            "weight of TCKD: the KL between the teacher's and the student's target vs. other-classes split",
            lo=0,
            hi=1000,
        ),
        "dkd_beta": option(
            8.0, "DKD beta (non-target term)", "weight of NCKD: the KL among the non-target classes", lo=0, hi=1000
        ),
        "dkd_warmup": option(
            20,
            "DKD warm-up (epochs)",
            "the DKD terms ramp up linearly over this many epochs (0: from the start at full weight)",
            lo=0,
            hi=10_000,
        ),
    }

    def __init__(self, cfg):
        self.temperature = cfg.temperature
        self.alpha, self.beta, self.warmup = cfg.option("dkd_alpha"), cfg.option("dkd_beta"), cfg.option("dkd_warmup")
        self.ramp = 1.0
        self.standardize = cfg.standardize

    def on_epoch(self, epoch: int, epochs: int) -> None:
        """Epochs count from 1, as in the reference: the first epoch trains at 1 / warmup."""
        self.ramp = dkd_warmup(epoch, self.warmup) if self.warmup else 1.0

    def formula(self) -> tuple[str, str]:
        t = self.temperature
        ramp = rf"\min(\tfrac{{e}}{{{self.warmup}}}, 1)\," if self.warmup else ""
        return (
            rf"\mathcal{{L}} = \mathrm{{CE}}(s, y) + {ramp}{t:g}^2\big({self.alpha:g}\,\mathrm{{KL}}(b_t\|b_s) + "
            rf"{self.beta:g}\,\mathrm{{KL}}(\hat p_t\|\hat p_s)\big)",
            f"b: the target class's probability against all the others', p̂: the distribution among the "
            f"non-target classes, both at T = {t:g}"
            + (f"; e: the epoch, the DKD terms reach full weight at epoch {self.warmup}" if self.warmup else "")
            + "."
            + standard.caption(self.standardize),
        )

    def prepare(self, teacher_logits):
        return standard.of(teacher_logits, self.standardize)

    def __call__(self, student_logits, targets, teacher_logits):
        terms = dkd_terms(
            standard.of(student_logits, self.standardize),
            teacher_logits,
            targets,
            self.alpha,
            self.beta,
            self.temperature,
        )
        return {
            "ce": F.cross_entropy(student_logits, targets),
            "tckd": self.ramp * terms["tckd"],
            "nckd": self.ramp * terms["nckd"],
        }
