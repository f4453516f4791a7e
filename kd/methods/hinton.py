"""`kd`: Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network".

(1 - alpha) * CE(student, y) + alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)).
"""
from kd.losses import kd_grad, kd_terms_to, soft_targets
from kd.methods import METHODS


@METHODS.register("kd", "Hinton et al. 2015: match the teacher's softened probabilities at temperature T")
class HintonKD:
    uses_teacher = True
    knobs = ("temperature", "alpha")  # the RunConfig fields it uses

    def __init__(self, cfg):
        self.temperature = cfg.temperature
        self.alpha = cfg.alpha

    def prepare(self, teacher_logits):
        return soft_targets(teacher_logits, self.temperature)

    def __call__(self, student_logits, targets, teacher_log_probs):
        return kd_terms_to(student_logits, teacher_log_probs, targets, self.temperature, self.alpha)

    def grad(self, student_logits, targets, teacher_log_probs):
        return kd_grad(student_logits, teacher_log_probs, targets, self.temperature, self.alpha)
