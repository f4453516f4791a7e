"""`ctkd`: Li, Li, Yang, Zhang, Li, Dong & Cheng, "Curriculum Temperature for Knowledge
Distillation", AAAI 2023.

Hinton's loss, (1 - alpha) * CE(student, y) + alpha * T^2 * KL at temperature T, where T is not
set but learned: T = t_start + t_range * sigmoid(theta), and theta climbs the distillation loss
that the student descends, through a gradient-reversal layer whose strength lambda rises from 0
to 1 along a cosine over the first `ctkd_ramp` epochs (the curriculum: easy, then harder).
theta is a parameter of the method, optimised, checkpointed and resumed with the student's.
Defaults as in the authors' code (zhengli97/CTKD, scripts/run_cifar_distill.sh: Global_T,
--t_start 1 --t_end 20 --decay_max 0 --decay_min -1 --decay_loops 10, -r 0.1 -a 0.9: alpha 0.9).
"""

import torch
import torch.nn.functional as F

import kd.methods.standard as standard
from kd.losses import GlobalTemperature, ctkd_lambda, soft_kl
from kd.methods.base import METHODS
from kd.schema import option


@METHODS.register("ctkd", "Li et al. 2023: Hinton's loss with a temperature learned adversarially, on a curriculum")
class CTKD:
    uses_teacher = True
    knobs = ("alpha", "standardize")
    group_knobs = ("ctkd_t_start", "ctkd_t_range")  # they live in its module: one value per lockstep group
    options = {
        "ctkd_t_start": option(
            1.0,
            "CTKD lowest temperature",
            "T = t_start + t_range · sigmoid(θ): the temperature never falls below this",
            lo=0.05,
            hi=100,
        ),
        "ctkd_t_range": option(
            20.0, "CTKD temperature range", "how far above t_start the learned T can go", lo=0.1, hi=1000
        ),
        "ctkd_ramp": option(
            10,
            "CTKD curriculum (epochs)",
            "the reversal strength λ rises from 0 to 1 along a cosine over this many epochs, then stays at 1",
            lo=1,
            hi=10_000,
        ),
    }

    def __init__(self, cfg):
        self.alpha, self.standardize = cfg.alpha, cfg.standardize
        self.ramp = cfg.option("ctkd_ramp")
        self.module = GlobalTemperature(cfg.option("ctkd_t_start"), cfg.option("ctkd_t_range"))  # θ = 1 at first
        self.strength = 0.0  # λ, set at each epoch's start

    def on_epoch(self, epoch: int, epochs: int) -> None:
        self.strength = ctkd_lambda(epoch, self.ramp)  # epochs from 1, as the reference's loop

    def formula(self) -> tuple[str, str]:
        a, m = self.alpha, self.module
        return (
            rf"\mathcal{{L}} = {1 - a:.2f}\,\mathrm{{CE}}(s, y) + {a:.2f}\,T^2\,\mathrm{{KL}}\!\left("
            rf"\mathrm{{softmax}}(t/T)\,\|\,\mathrm{{softmax}}(s/T)\right),\quad "
            rf"T = {m.t_start:g} + {m.t_end:g}\,\sigma(\theta)",
            f"θ is learned: it ascends the loss the student descends (gradient reversal, strength λ rising "
            f"from 0 to 1 over {self.ramp} epochs). T starts at {self.report()['T']:.2f}."
            + standard.caption(self.standardize),
        )

    def prepare(self, teacher_logits):
        return standard.of(teacher_logits, self.standardize)

    def __call__(self, student_logits, targets, teacher_logits):
        temperature = self.module(self.strength)
        soft = soft_kl(standard.of(student_logits, self.standardize), teacher_logits, temperature)
        return {"ce": (1 - self.alpha) * F.cross_entropy(student_logits, targets), "soft": self.alpha * soft}

    def report(self) -> dict:
        with torch.no_grad():
            return {"T": float(self.module(self.strength))}
