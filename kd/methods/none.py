"""`none`: the student alone, trained on the labels with cross-entropy."""

from kd.losses import ce_grad, cross_entropy
from kd.methods.base import METHODS


@METHODS.register("none", "No teacher: cross-entropy on the labels only (the student alone)")
class NoDistillation:
    uses_teacher = False
    knobs = ()  # no RunConfig field of its own: temperature and alpha are not used

    def __init__(self, cfg):
        pass

    def formula(self) -> tuple[str, str]:
        return (
            r"\mathcal{L} = \mathrm{CE}(s, y)",
            "No teacher: the distilled student is trained exactly like the student alone.",
        )

    def prepare(self, teacher_logits):
        return teacher_logits

    def __call__(self, student_logits, targets, teacher=None):
        return {"ce": cross_entropy(student_logits, targets)}

    def grad(self, student_logits, targets, teacher=None):
        return ce_grad(student_logits, targets)
