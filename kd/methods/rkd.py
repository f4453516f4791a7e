"""`rkd`: Park, Kim, Lu & Cho, "Relational Knowledge Distillation", CVPR 2019.

CE(student, y) + distance_weight * RKD-D + angle_weight * RKD-A on the penultimate embeddings
(kd.losses_features.rkd_terms): the student matches how the teacher's embeddings of a batch lie
relative to one another (pairwise distances, normalised by their mean, and the angles of every
triple), not the embeddings themselves, so their widths may differ. Defaults as in mdistiller
(distillers/RKD.py, cfg.RKD: DISTANCE_WEIGHT 25, ANGLE_WEIGHT 50, CE weight 1, pooled features).
"""

import torch.nn.functional as F

from kd.errors import ConfigError
from kd.losses_features import rkd_terms
from kd.methods.base import METHODS
from kd.models import EMBEDDING
from kd.schema import option

MAX_BATCH = 256  # the angle term compares every triple of a batch: memory grows as batch^3


@METHODS.register("rkd", "Park et al. 2019: match the distances and angles among the teacher's embeddings")
class RKD:
    uses_teacher = True
    knobs = ()
    taps = {"student": (EMBEDDING,), "teacher": (EMBEDDING,)}
    options = {
        "rkd_distance": option(25.0, "RKD distance weight", "weight of the pairwise-distance term", lo=0, hi=1e6),
        "rkd_angle": option(
            50.0, "RKD angle weight", "weight of the angle term (every triple of a batch)", lo=0, hi=1e6
        ),
    }

    def __init__(self, cfg):
        if cfg.batch_size > MAX_BATCH:
            raise ConfigError(
                "batch_size",
                f"method rkd compares every triple of examples in a batch (memory "
                f"grows as batch³): at most {MAX_BATCH}, got {cfg.batch_size}",
            )
        self.distance, self.angle = cfg.option("rkd_distance"), cfg.option("rkd_angle")

    def formula(self) -> tuple[str, str]:
        return (
            rf"\mathcal{{L}} = \mathrm{{CE}}(s, y) + {self.distance:g}\,\ell_\delta(\psi_D(f_s), \psi_D(f_t)) "
            rf"+ {self.angle:g}\,\ell_\delta(\psi_A(f_s), \psi_A(f_t))",
            "f: the penultimate embeddings of a batch; ψ_D: their pairwise distances over the mean distance; "
            "ψ_A: the cosine of the angle of every triple; ℓ_δ: the Huber (smooth L1) loss.",
        )

    def prepare(self, teacher_logits):
        return teacher_logits  # not used: only the embeddings are

    def __call__(self, student_logits, targets, teacher, feats):
        ce = F.cross_entropy(student_logits, targets)
        if len(targets) < 2:  # one example has no distances or angles to others (a last batch of one)
            return {"ce": ce, "distance": 0.0 * ce, "angle": 0.0 * ce}
        return {
            "ce": ce,
            **rkd_terms(feats.student[EMBEDDING], feats.teacher[EMBEDDING], self.distance, self.angle),
        }
