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

    def formula(self) -> tuple[str, str]:
        """The loss with this run's numbers, as LaTeX, and a line saying what it means."""
        a, t = self.alpha, self.temperature
        return (rf"\mathcal{{L}} = {1 - a:.2f}\,\mathrm{{CE}}(s, y) + {a:.2f}\cdot{t:g}^2\,"
                rf"\mathrm{{KL}}\!\left(\mathrm{{softmax}}(t/{t:g})\,\|\,\mathrm{{softmax}}(s/{t:g})\right)",
                f"(1 − α)·CE + α·T²·KL with α = {a:.2f}, T = {t:g}; s, t: student and teacher logits. KL is "
                "averaged over the batch; T² keeps the soft term's gradient the same size for any T.")

    def prepare(self, teacher_logits):
        return soft_targets(teacher_logits, self.temperature)

    def __call__(self, student_logits, targets, teacher_log_probs):
        return kd_terms_to(student_logits, teacher_log_probs, targets, self.temperature, self.alpha)

    def grad(self, student_logits, targets, teacher_log_probs):
        return kd_grad(student_logits, teacher_log_probs, targets, self.temperature, self.alpha)
