"""`fitnet`: Romero, Ballas, Kahou, Chassang, Gatta & Bengio, "FitNets: Hints for Thin Deep Nets", ICLR 2015.

CE(student, y) + weight * MSE(r(student hint), teacher hint) (kd.losses_features.fitnet_loss):
a student layer is regressed onto a teacher layer through a learned adapter r, which the method
owns (optimised, checkpointed and resumed with the student). As in mdistiller (distillers/FitNet.py,
cfg.FITNET: HINT_LAYER 2, FEAT_WEIGHT 100, CE weight 1) hint and labels are trained together in
one stage, not in the paper's two; the hint is the middle stage of each model by default (layer2
of a CIFAR ResNet). r is mdistiller's ConvReg for feature maps (a conv sized to map the student's
map onto the teacher's, then BatchNorm and ReLU) and a Linear + BatchNorm + ReLU otherwise.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from kd import features
from kd.errors import ConfigError
from kd.losses_features import fitnet_loss
from kd.methods.base import METHODS
from kd.schema import option, option_error

MAX_ADAPTER = 20_000_000  # parameters: a hint pair needing more is refused, naming the taps


def adapter(student: tuple, teacher: tuple) -> nn.Module:
    """r: student hint (per example) -> teacher hint's shape."""
    if len(student) == 3 and len(teacher) == 3:
        (cs, hs, ws), (ct, ht, wt) = student, teacher
        if hs == 2 * ht:
            conv = nn.Conv2d(cs, ct, 3, stride=2, padding=1)
        elif 2 * hs == ht:
            conv = nn.ConvTranspose2d(cs, ct, 4, stride=2, padding=1)
        elif hs >= ht and ws >= wt:
            conv = nn.Conv2d(cs, ct, (1 + hs - ht, 1 + ws - wt))
        else:  # smaller in some other ratio: resize, then map the channels
            conv = nn.Sequential(nn.Upsample(size=(ht, wt)), nn.Conv2d(cs, ct, 1))
        return nn.Sequential(conv, nn.BatchNorm2d(ct), nn.ReLU())
    return nn.Sequential(
        nn.Flatten(), nn.Linear(math.prod(student), math.prod(teacher)), nn.BatchNorm1d(math.prod(teacher)), nn.ReLU()
    )


@METHODS.register("fitnet", "Romero et al. 2015: regress a student layer onto a teacher layer through an adapter")
class FitNet:
    uses_teacher = True
    knobs = ()
    options = {
        "fitnet_weight": option(
            100.0, "FitNet hint weight", "weight of the hint term (mean squared error)", lo=0, hi=1e6
        ),
        "fitnet_student_tap": option(
            "middle",
            "FitNet student hint layer",
            "the student's tap regressed onto the "
            "teacher's: middle (its middle stage) or a tap name such as hidden1, conv2, "
            "block2, layer2, embedding",
            tap_of="student",
        ),
        "fitnet_teacher_tap": option(
            "middle",
            "FitNet teacher hint layer",
            "the teacher's tap it is regressed onto: middle or a tap name",
            tap_of="teacher",
        ),
    }

    def __init__(self, cfg):
        self.weight = cfg.option("fitnet_weight")
        self.names = {"student": cfg.option("fitnet_student_tap"), "teacher": cfg.option("fitnet_teacher_tap")}
        self.models = {"student": cfg.student, "teacher": cfg.teacher}
        self.taps = {"student": (), "teacher": ()}
        self.module = None
        self.flat = False

    def bind(self, student: nn.Module, teacher: nn.Module, input_shape: tuple) -> None:
        found = {}
        for who, model in (("student", student), ("teacher", teacher)):
            try:
                tap = features.pick(model, self.names[who], f"{who} {self.models[who]}")
            except ConfigError as e:  # named by the knob that chose it
                raise option_error(f"fitnet_{who}_tap", e.message) from None
            found[who] = (tap, features.shapes(model, input_shape, [tap])[tap])
        (s_tap, s_shape), (t_tap, t_shape) = found["student"], found["teacher"]
        self.taps = {"student": (s_tap,), "teacher": (t_tap,)}
        with torch.device("meta"):  # counted before it takes any memory
            size = sum(p.numel() for p in adapter(s_shape, t_shape).parameters())
        if size > MAX_ADAPTER:
            raise ConfigError(
                "method",
                f"fitnet: an adapter from student {self.models['student']} {s_tap} "
                f"({'×'.join(map(str, s_shape))}) to teacher {self.models['teacher']} {t_tap} "
                f"({'×'.join(map(str, t_shape))}) would have {size:,} parameters (at most "
                f"{MAX_ADAPTER:,}); choose other taps (--fitnet-student-tap, --fitnet-teacher-tap)",
            )
        self.module = adapter(s_shape, t_shape)
        self.flat = len(s_shape) != 3 or len(t_shape) != 3

    def formula(self) -> tuple[str, str]:
        s, t = self.taps["student"] or (self.names["student"],), self.taps["teacher"] or (self.names["teacher"],)
        return (
            rf"\mathcal{{L}} = \mathrm{{CE}}(s, y) + {self.weight:g}\,\mathrm{{MSE}}\big(r(h_s), h_t\big)",
            f"h_s: the student's {s[0]} features, h_t: the teacher's {t[0]}; r: an adapter learned with the "
            "student (a conv + BatchNorm + ReLU for feature maps, else linear).",
        )

    def prepare(self, teacher_logits):
        return teacher_logits  # not used: only the hint is

    def __call__(self, student_logits, targets, teacher, feats):
        (s_tap,), (t_tap,) = self.taps["student"], self.taps["teacher"]
        ce = F.cross_entropy(student_logits, targets)
        if len(targets) < 2 and self.module.training:  # BatchNorm has no statistics of one example
            return {"ce": ce, "hint": 0.0 * ce}
        hint = feats.teacher[t_tap]
        adapted = self.module(feats.student[s_tap])
        if self.flat:
            hint = hint.reshape(len(hint), -1)
        return {"ce": ce, "hint": self.weight * fitnet_loss(adapted, hint)}
