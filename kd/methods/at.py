"""`at`: Zagoruyko & Komodakis, "Paying More Attention to Attention: Improving the Performance of
Convolutional Neural Networks via Attention Transfer", ICLR 2017.

CE(student, y) + weight * sum over stage pairs of mean (a_s - a_t)^2, a = the attention map of a
stage's features (kd.losses_features.attention_map: mean over channels of |F|^p, normalised):
the student learns where the teacher's stages look. Conv models only. The stages past the stem
are paired (mdistiller, distillers/AT.py, pairs feats[1:]; cfg.AT: P 2, FEAT_WEIGHT 1000, CE
weight 1); where the two models have different numbers of stages, the reference's zip pairs them
from the shallowest and drops the deepest of the longer one, while here they are paired from the
deepest (the last k of each, k the smaller count), so the stages nearest the classifier always
take part. Where sizes differ, the larger map is average-pooled to the smaller. The teacher's
maps are what is cached, not its features.
"""

import torch.nn.functional as F
from torch import Tensor, nn

from kd import features
from kd.errors import ConfigError
from kd.losses_features import attention_map
from kd.methods.base import METHODS
from kd.schema import option


def _pooled(feature: Tensor, size: tuple) -> Tensor:
    return feature if tuple(feature.shape[2:]) == size else F.adaptive_avg_pool2d(feature, size)


@METHODS.register("at", "Zagoruyko & Komodakis 2017: match where the teacher's conv stages look (conv models)")
class AT:
    uses_teacher = True
    knobs = ()
    group_knobs = ("at_p",)  # the teacher's cached maps depend on it: one value per lockstep group
    options = {
        "at_weight": option(1000.0, "AT weight", "weight of the attention term", lo=0, hi=1e7),
        "at_p": option(2.0, "AT power p", "attention map: mean over channels of |F|^p", lo=1, hi=8),
    }

    def __init__(self, cfg):
        self.weight, self.p = cfg.option("at_weight"), cfg.option("at_p")
        self.models = {"student": cfg.student, "teacher": cfg.teacher}
        self.taps = {"student": (), "teacher": ()}
        self.sizes: list[tuple] = []  # the map size of each pair

    def bind(self, student: nn.Module, teacher: nn.Module, input_shape: tuple) -> None:
        found = {}
        for who, model in (("student", student), ("teacher", teacher)):
            found[who] = features.conv_stages(model, input_shape)
            if not found[who]:
                raise ConfigError(
                    "method",
                    f"at (attention transfer) needs convolutional feature maps; the "
                    f"{who} {self.models[who]} has none: choose a convolutional {who}, or another "
                    "method",
                )
        k = min(len(found["student"]), len(found["teacher"]))
        self.taps = {who: tuple(found[who][-k:]) for who in found}
        s_shapes = features.shapes(student, input_shape, self.taps["student"])
        t_shapes = features.shapes(teacher, input_shape, self.taps["teacher"])
        self.sizes = [
            (min(s_shapes[s][1], t_shapes[t][1]), min(s_shapes[s][2], t_shapes[t][2]))
            for s, t in zip(self.taps["student"], self.taps["teacher"])
        ]

    def formula(self) -> tuple[str, str]:
        pairs = ", ".join(f"{s}↔{t}" for s, t in zip(self.taps["student"], self.taps["teacher"])) or "the conv stages"
        return (
            rf"\mathcal{{L}} = \mathrm{{CE}}(s, y) + {self.weight:g}\sum_j \mathrm{{mean}}\big(a(F^s_j) - "
            rf"a(F^t_j)\big)^2,\quad a(F) = \frac{{\mathrm{{mean}}_c |F_c|^{{{self.p:g}}}}}{{\|\cdot\|_2}}",
            f"F_j: the feature maps of paired stages ({pairs}); a: their spatial attention map. The default "
            "weight, 1000, is the reference's for CIFAR's 32×32 maps; the term is a mean over map positions, "
            "so it weighs more as the maps shrink"
            + (f" (here {', '.join(f'{h}×{w}' for h, w in self.sizes)})" if self.sizes else "")
            + ": small images may want less.",
        )

    def prepare(self, teacher_logits):
        return teacher_logits  # not used: only the attention maps are

    def prepare_features(self, feats: dict) -> dict:
        """The teacher's attention maps at each pair's size: all the loss needs of the teacher."""
        return {t: attention_map(_pooled(feats[t], size), self.p) for t, size in zip(self.taps["teacher"], self.sizes)}

    def __call__(self, student_logits, targets, teacher, feats):
        loss = 0.0
        for s, t, size in zip(self.taps["student"], self.taps["teacher"], self.sizes):
            loss = loss + (attention_map(_pooled(feats.student[s], size), self.p) - feats.teacher[t]).pow(2).mean()
        return {"ce": F.cross_entropy(student_logits, targets), "at": self.weight * loss}
